"""Policy losses: one signature, registered by name, selected by ``PolicyLossConfig.name``.

A registered policy loss is
``fn(logprobs, old_logprobs, advantages, mask, config) -> (loss_mat (B, T), metrics)``: the
per-token surrogate loss before aggregation, plus metric tensors. :func:`compute_policy_loss`
adds the optional KL-in-the-loss term (+β·k per token), aggregates with the configured mode and
turns metrics into floats, so every registered loss gets KL and the four aggregation modes for
free.

- ``ppo_clip``: ρ = exp(clamp(log π − log π_old, ±log_ratio_clamp)),
  loss = −min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)·A), with decoupled ε_low / ε_high (DAPO's
  clip-higher is ε_high 0.28). ``dual_clip_c`` = c > 1 adds the dual clip for A < 0:
  loss = min(loss, −c·A), which bounds the loss when ρ ≫ 1 on a negative-advantage token.
- ``vanilla_pg``: −ρA with no clip (REINFORCE; its gradient at ρ = 1 is −A·∇log π). Fine for
  one on-policy update per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from reasonrl.algorithms.aggregation import LOSS_AGGREGATION_REGISTRY, aggregate_loss, masked_mean
from reasonrl.algorithms.kl import get_kl_estimator, kl_penalty
from reasonrl.registry import Registry


@dataclass(frozen=True)
class PolicyLossConfig:
    """Policy loss settings.

    Attributes:
        name: registered policy loss (:func:`policy_loss_names`) [ppo_clip].
        clip_low: ε_low, ratio lower bound 1 − ε_low [0.2].
        clip_high: ε_high, ratio upper bound 1 + ε_high [0.2; DAPO/ProRL 0.28/0.4].
        dual_clip_c: dual-clip constant c > 1 for A < 0, or None (off) [None; 3 in the papers].
        kl_coef: β of the KL term added to the loss (GRPO) [0.0 = off].
        kl_estimator: KL estimator for the loss term [k3].
        loss_agg_mode: one of the four aggregation modes [token-mean].
        log_ratio_clamp: |log ρ| is clamped to this before exp, so one extreme token cannot overflow [20].
        max_response_length: Dr. GRPO normaliser length for ``seq-mean-token-sum-norm`` [None = padded T].
    """

    name: str = "ppo_clip"
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip_c: float | None = None
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    loss_agg_mode: str = "token-mean"
    log_ratio_clamp: float = 20.0
    max_response_length: int | None = None

    def __post_init__(self) -> None:
        # Each raises with the valid choices.
        POLICY_LOSS_REGISTRY.resolve(self.name)
        LOSS_AGGREGATION_REGISTRY.resolve(self.loss_agg_mode)
        get_kl_estimator(self.kl_estimator)
        if not 0.0 <= self.clip_low < 1.0:
            raise ValueError(f"clip_low must be in [0, 1), got {self.clip_low}")
        if self.clip_high < 0.0:
            raise ValueError(f"clip_high must be >= 0, got {self.clip_high}")
        if self.dual_clip_c is not None and self.dual_clip_c <= 1.0:
            raise ValueError(f"dual_clip_c must be > 1 (or None), got {self.dual_clip_c}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.log_ratio_clamp <= 0:
            raise ValueError(f"log_ratio_clamp must be > 0, got {self.log_ratio_clamp}")
        if self.max_response_length is not None and self.max_response_length <= 0:
            raise ValueError(f"max_response_length must be positive or None, got {self.max_response_length}")


PolicyLoss = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, PolicyLossConfig],
    "tuple[torch.Tensor, dict[str, torch.Tensor]]",
]
POLICY_LOSS_REGISTRY: Registry[PolicyLoss] = Registry("policy loss")


def register_policy_loss(name: str, **metadata) -> Callable[[PolicyLoss], PolicyLoss]:
    """Decorator registering ``fn(logprobs, old_logprobs, advantages, mask, config) -> (loss_mat (B,T), metrics)``.

    ``metrics`` maps names to scalar tensors (already reduced over the mask). Written in a user's
    file, the loss is selected as ``algorithm.policy_loss: path/to/file.py:name``.
    """
    return POLICY_LOSS_REGISTRY.register(name, **metadata)


def policy_loss_names() -> list[str]:
    return POLICY_LOSS_REGISTRY.names()


def get_policy_loss(name: str) -> PolicyLoss:
    return POLICY_LOSS_REGISTRY.get(name)


def _ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, clamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    log_ratio = (logprobs - old_logprobs).clamp(-clamp, clamp)
    return log_ratio, torch.exp(log_ratio)


@register_policy_loss("ppo_clip")
def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: PolicyLossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate with decoupled bounds and optional dual clip (shapes ``(B, T)``)."""
    log_ratio, ratio = _ratio(logprobs, old_logprobs, config.log_ratio_clamp)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    fmask = mask.to(logprobs.dtype)
    metrics = {
        # Share of tokens whose gradient the clip removed (the clipped branch won strictly).
        "clipfrac": masked_mean((clipped > unclipped).to(fmask.dtype), fmask),
        "clipfrac_low": masked_mean(((ratio < 1.0 - config.clip_low) & (advantages < 0)).to(fmask.dtype), fmask),
        "clipfrac_high": masked_mean(((ratio > 1.0 + config.clip_high) & (advantages > 0)).to(fmask.dtype), fmask),
    }
    if config.dual_clip_c is not None:
        bound = -advantages * config.dual_clip_c  # positive where A < 0
        dual = torch.minimum(loss_mat, bound)
        dual_active = (advantages < 0) & (bound < loss_mat)
        loss_mat = torch.where(advantages < 0, dual, loss_mat)
        metrics["dual_clipfrac"] = masked_mean(dual_active.to(fmask.dtype), fmask)
    metrics["ratio_mean"] = masked_mean(ratio.detach(), fmask)
    # k3 estimate of KL(π_old ‖ π) over the sampled tokens: how far this update has moved.
    metrics["approx_kl"] = masked_mean((torch.expm1(-log_ratio) + log_ratio).detach(), fmask)
    return loss_mat, metrics


@register_policy_loss("vanilla_pg")
def vanilla_pg_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: PolicyLossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Unclipped importance-weighted policy gradient −ρA (shapes ``(B, T)``)."""
    log_ratio, ratio = _ratio(logprobs, old_logprobs, config.log_ratio_clamp)
    fmask = mask.to(logprobs.dtype)
    metrics = {
        "ratio_mean": masked_mean(ratio.detach(), fmask),
        "approx_kl": masked_mean((torch.expm1(-log_ratio) + log_ratio).detach(), fmask),
    }
    return -advantages * ratio, metrics


def compute_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    config: PolicyLossConfig,
    ref_logprobs: torch.Tensor | None = None,
    *,
    num_tokens: float | None = None,
    num_sequences: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The configured policy loss, plus β·KL to the reference when ``kl_coef`` > 0, aggregated.

    Args:
        logprobs: ``(B, T)`` log π of the sampled tokens under the current policy (with grad).
        old_logprobs: ``(B, T)`` log π_old (the policy that sampled; detached).
        advantages: ``(B, T)`` from :func:`~reasonrl.algorithms.advantages.compute_advantages`.
        mask: ``(B, T)`` response mask.
        config: :class:`PolicyLossConfig`.
        ref_logprobs: ``(B, T)`` log π_ref; required when ``kl_coef`` > 0; when given with
            ``kl_coef`` 0 the KL is still measured (metric ``kl``) but adds nothing to the loss.
        num_tokens / num_sequences: minibatch-wide normalisers for gradient accumulation
            (see :func:`~reasonrl.algorithms.aggregation.aggregate_loss`).

    Returns:
        ``(loss, metrics)``: scalar loss; float metrics ``pg_loss``, ``clipfrac``…, and ``kl``
        (masked token mean of the configured estimator) when ``ref_logprobs`` is given.
    """
    for name, tensor in (("old_logprobs", old_logprobs), ("advantages", advantages), ("mask", mask)):
        if tensor.shape != logprobs.shape:
            raise ValueError(f"{name} shape {tuple(tensor.shape)} != logprobs shape {tuple(logprobs.shape)}")
    if config.kl_coef > 0 and ref_logprobs is None:
        raise ValueError("kl_coef > 0 needs ref_logprobs (the reference model's log-probs)")
    old_logprobs = old_logprobs.detach()
    advantages = advantages.detach().to(logprobs.dtype)
    loss_mat, raw_metrics = get_policy_loss(config.name)(logprobs, old_logprobs, advantages, mask, config)
    agg = dict(mode=config.loss_agg_mode, max_response_length=config.max_response_length,
               num_tokens=num_tokens, num_sequences=num_sequences)
    pg_loss = aggregate_loss(loss_mat, mask, **agg)
    loss = pg_loss
    metrics = {name: float(value.detach()) for name, value in raw_metrics.items()}
    metrics["pg_loss"] = float(pg_loss.detach())
    if ref_logprobs is not None:
        kl_mat = kl_penalty(logprobs, ref_logprobs.detach().to(logprobs.dtype), config.kl_estimator)
        metrics["kl"] = float(masked_mean(kl_mat.detach(), mask.to(logprobs.dtype)))
        if config.kl_coef > 0:
            kl_loss = aggregate_loss(kl_mat, mask, **agg)
            loss = loss + config.kl_coef * kl_loss
            metrics["kl_loss"] = float(kl_loss.detach())
    metrics["loss"] = float(loss.detach())
    return loss, metrics
