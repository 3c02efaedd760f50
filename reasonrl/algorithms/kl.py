"""Per-token KL estimators between the policy and the reference (Schulman's k1/k2/k3).

With Δ_t = log π(y_t) − log π_ref(y_t) on tokens sampled from π:

- ``k1`` = Δ: unbiased for KL(π‖π_ref), high variance, can be negative per token.
- ``k2`` = ½Δ²: biased, low variance, always ≥ 0.
- ``k3`` = exp(−Δ) + Δ − 1: unbiased and ≥ 0 (low variance); clamped to [−10, 10] because
  exp(−Δ) explodes when the reference assigns a sampled token far more mass than the policy.

Aliases accepted (names other libraries use): ``kl`` → k1, ``mse`` → k2, ``low_var_kl`` → k3.
KL enters either the reward (−β·k per token, see ``AdvantageConfig.kl_coef_in_reward``) or
the loss (+β·k per token, see ``PolicyLossConfig.kl_coef``).
"""
from __future__ import annotations

from typing import Callable

import torch

from reasonrl.registry import Registry

KLEstimator = Callable[[torch.Tensor], torch.Tensor]
KL_ESTIMATOR_REGISTRY: Registry[KLEstimator] = Registry(
    "KL estimator", aliases={"kl": "k1", "mse": "k2", "low_var_kl": "k3"}
)
K3_CLAMP = 10.0


def register_kl_estimator(name: str) -> Callable[[KLEstimator], KLEstimator]:
    """Decorator: register ``fn(log_ratio (B, T)) -> (B, T)`` under ``name``."""
    return KL_ESTIMATOR_REGISTRY.register(name)


@register_kl_estimator("k1")
def kl_k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


@register_kl_estimator("k2")
def kl_k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio.square()


@register_kl_estimator("k3")
def kl_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    # exp(-Δ) - 1 + Δ; written with expm1 for accuracy when Δ is near 0 (the common case).
    return (torch.expm1(-log_ratio) + log_ratio).clamp(min=-K3_CLAMP, max=K3_CLAMP)


def kl_estimator_names() -> list[str]:
    """Registered estimator names plus aliases."""
    return sorted([*KL_ESTIMATOR_REGISTRY.names(), *KL_ESTIMATOR_REGISTRY.aliases()])


def get_kl_estimator(name: str) -> KLEstimator:
    """The estimator registered as ``name`` (aliases resolved); a clear error otherwise."""
    return KL_ESTIMATOR_REGISTRY.get(name)


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL estimate.

    Args:
        logprobs: ``(B, T)`` log π of the sampled tokens.
        ref_logprobs: ``(B, T)`` log π_ref of the same tokens.
        estimator: ``k1`` | ``k2`` | ``k3`` (or an alias, see the module docstring).

    Returns:
        ``(B, T)`` estimates (not masked: multiply by the response mask before reducing).
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(f"logprobs shape {tuple(logprobs.shape)} != ref_logprobs shape {tuple(ref_logprobs.shape)}")
    return get_kl_estimator(estimator)(logprobs - ref_logprobs)
