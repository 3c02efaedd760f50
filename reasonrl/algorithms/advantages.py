"""Advantage estimators: one signature, registered by name, selected by ``AdvantageConfig.estimator``.

Every estimator is ``fn(inputs: AdvantageInputs, config: AdvantageConfig) -> (advantages, returns)``,
both ``(B, T)`` and 0 outside the response mask. New inputs go into :class:`AdvantageInputs`
(never into special cases at the call site); a new estimator is one decorated function that
declares what it needs from the trainer (:data:`ESTIMATOR_NEEDS`)::

    @register_advantage_estimator("my_estimator", token_level=False, needs=("groups",))
    def my_estimator(inputs, config): ...

and a trainer asks :func:`estimator_needs` / :func:`is_token_level` rather than testing names.
Written in a user's file, it is selected as ``algorithm.estimator: path/to/file.py:my_estimator``
(see :mod:`reasonrl.registry`).

Formulas (ALGORITHMS.md):

- ``grpo``: A_i = (r_i − mean_G r) / (std_G r + ε), broadcast to every token of y_i.
  ``norm_by_std=False`` is Dr. GRPO (no division); ``std_scope="batch"`` divides by the std of
  all rewards in the batch instead of the group's. ``dr_grpo`` is the no-std variant by name.
- ``reinforce_plus_plus``: per-token reward −β·k(π_old, π_ref) on every token plus r at the
  last response token; G_t = Σ_{s≥t} γ^{s−t} r_s; advantages = G whitened over every response
  token of the batch (mean/std), not per group.
- ``reinforce_plus_plus_baseline``: r − mean_G r first, then exactly as ``reinforce_plus_plus``.
- ``rloo``: A_i = r_i − (Σ_{j≠i} r_j)/(n − 1); no std division.
- ``remax``: A_t = G_t − b with G the reverse cumulative sum of the per-token rewards and b the
  reward of the greedy response to the same prompt (``baseline_rewards``).
- ``gae``: PPO with a critic: GAE(γ, λ) over per-token rewards (as REINFORCE++ builds them),
  advantages whitened over the batch (``whiten_gae_advantages``), returns = A + V unwhitened.

Choices worth knowing:

- **Which std.** Every std here is the *sample* std (Bessel's correction, divide by n − 1), as
  ``torch.std`` computes and as the GRPO implementations the formulas come from (TRL, verl)
  use. With groups of 8 the population std is √(7/8) ≈ 0.94 of it, so the advantages'
  scale would shift by ~7% between implementations for no reason; we keep the common one.
- **Single-member groups** have no baseline to compare with: their GRPO/RLOO advantage is 0
  (the same as a zero-variance group), never NaN. (verl instead uses mean 0 and std 1,
  i.e. A = r, which silently turns GRPO into unbaselined REINFORCE for such prompts.)
- **Zero-variance groups** give A = 0 exactly: (r − mean) is 0 and ε keeps the division finite.
- **All-masked rows** get advantages and returns of 0 and do not enter batch statistics.
- **Where the outcome reward sits** for token-level estimators: the last token with mask 1.
- **KL in the reward** (``kl_coef_in_reward`` β > 0) uses ``old_logprobs`` (the policy that
  sampled) against ``ref_logprobs``; only the token-level estimators (``reinforce_plus_plus``,
  ``reinforce_plus_plus_baseline``, ``remax``, ``gae``) accept it, and dense ``token_rewards``,
  because an outcome-only estimator has nowhere to put a per-token reward. For GRPO/RLOO put
  KL in the loss (``PolicyLossConfig.kl_coef``).
- **Distributed training**: batch statistics (REINFORCE++ whitening, batch std) must be taken
  over the *global* batch: compute advantages before sharding the batch across ranks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from reasonrl.algorithms.aggregation import masked_whiten
from reasonrl.algorithms.kl import get_kl_estimator, kl_penalty
from reasonrl.algorithms.value import compute_gae, discounted_returns
from reasonrl.config import ESTIMATOR_ALIASES
from reasonrl.registry import Registry


@dataclass
class AdvantageInputs:
    """Everything an estimator may read. ``B`` responses, ``T`` padded response length.

    Attributes:
        rewards: ``(B,)`` outcome reward per response.
        response_mask: ``(B, T)`` 1 on response tokens.
        group_ids: ``(B,)`` long; responses to the same prompt share an id (any values).
        old_logprobs: ``(B, T)`` log-probs under the sampling policy (for KL in the reward).
        ref_logprobs: ``(B, T)`` log-probs under the reference policy (for KL in the reward).
        values: ``(B, T)`` critic values at rollout time (``gae``).
        baseline_rewards: ``(B,)`` reward of the greedy response to each response's prompt (``remax``).
        token_rewards: ``(B, T)`` optional dense (process) rewards, added to the per-token rewards.
    """

    rewards: torch.Tensor
    response_mask: torch.Tensor
    group_ids: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    baseline_rewards: torch.Tensor | None = None
    token_rewards: torch.Tensor | None = None


@dataclass(frozen=True)
class AdvantageConfig:
    """Advantage estimation settings.

    Attributes:
        estimator: registered name (see :data:`ADVANTAGE_ESTIMATORS`) [grpo].
        norm_by_std: GRPO divides by the std [True]; False is Dr. GRPO.
        std_scope: ``group`` (each prompt's responses) or ``batch`` (all rewards) for GRPO's std [group].
        epsilon: added to every std before dividing [1e-6].
        gamma: discount per response token for token-level estimators [1.0].
        lam: GAE λ [0.95].
        kl_coef_in_reward: β of the per-token −β·KL reward [0.0 = off].
        kl_estimator: estimator for the KL in the reward [k1, as REINFORCE++ and PPO-RLHF use].
        whiten_gae_advantages: whiten ``gae`` advantages over the batch (standard PPO practice) [True].
    """

    estimator: str = "grpo"
    norm_by_std: bool = True
    std_scope: str = "group"
    epsilon: float = 1e-6
    gamma: float = 1.0
    lam: float = 0.95
    kl_coef_in_reward: float = 0.0
    kl_estimator: str = "k1"
    whiten_gae_advantages: bool = True

    def __post_init__(self) -> None:
        ADVANTAGE_ESTIMATOR_REGISTRY.resolve(self.estimator)  # raises with the valid choices
        if self.std_scope not in STD_SCOPES:
            raise ValueError(f"unknown std_scope {self.std_scope!r}; valid choices: {', '.join(STD_SCOPES)}")
        get_kl_estimator(self.kl_estimator)  # raises with the valid choices
        if self.epsilon < 0:
            raise ValueError(f"epsilon must be >= 0, got {self.epsilon}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.kl_coef_in_reward < 0:
            raise ValueError(f"kl_coef_in_reward must be >= 0, got {self.kl_coef_in_reward}")


STD_SCOPES = ("group", "batch")
AdvantageEstimator = Callable[[AdvantageInputs, AdvantageConfig], "tuple[torch.Tensor, torch.Tensor]"]
# What an estimator may declare it needs, so a trainer asks the registry instead of testing names.
ESTIMATOR_NEEDS = {
    "critic": "a value model: values (B, T) at rollout time in AdvantageInputs (gae / ppo)",
    "greedy_baseline": "one extra greedy response per prompt, its reward in baseline_rewards (remax)",
    "groups": "several responses per prompt (rollout.group_size >= 2): the baseline comes from the group",
}
ADVANTAGE_ESTIMATOR_REGISTRY: Registry[AdvantageEstimator] = Registry(
    "advantage estimator", aliases=ESTIMATOR_ALIASES, defaults={"token_level": False, "needs": frozenset()}
)
# The registered names, live (later registrations appear), for modules that import the list.
ADVANTAGE_ESTIMATORS = ADVANTAGE_ESTIMATOR_REGISTRY.live_names()


def register_advantage_estimator(
    name: str, *, token_level: bool = False, needs: Iterable[str] = ()
) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Decorator registering ``fn(inputs, config) -> (advantages (B,T), returns (B,T))`` as ``name``.

    Args:
        token_level: the estimator consumes per-token rewards (KL in the reward,
            ``token_rewards``); outcome-only estimators reject those inputs with a clear error.
        needs: what the trainer must provide, among :data:`ESTIMATOR_NEEDS`: ``"critic"``,
            ``"greedy_baseline"``, ``"groups"``. Read back with :func:`estimator_needs`.
    """
    needs = frozenset(needs)
    unknown = sorted(needs - set(ESTIMATOR_NEEDS))
    if unknown:
        raise ValueError(f"advantage estimator {name!r}: unknown needs {unknown}; valid: {', '.join(ESTIMATOR_NEEDS)}")
    return ADVANTAGE_ESTIMATOR_REGISTRY.register(name, token_level=bool(token_level), needs=needs)


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """The estimator registered as ``name`` (an alias or ``file.py:name`` too); a clear error naming the choices otherwise."""
    return ADVANTAGE_ESTIMATOR_REGISTRY.get(name)


def estimator_needs(name: str) -> frozenset[str]:
    """What estimator ``name`` needs from the trainer (subset of :data:`ESTIMATOR_NEEDS`).

    >>> sorted(estimator_needs("gae")), sorted(estimator_needs("remax"))
    (['critic'], ['greedy_baseline'])
    """
    return ADVANTAGE_ESTIMATOR_REGISTRY.metadata(name)["needs"]


def is_token_level(name: str) -> bool:
    """Whether estimator ``name`` builds per-token rewards (so it accepts KL in the reward and dense rewards)."""
    return bool(ADVANTAGE_ESTIMATOR_REGISTRY.metadata(name)["token_level"])


def compute_advantages(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the configured estimator after checking the inputs.

    Returns:
        ``(advantages, returns)``: ``(B, T)`` float tensors, 0 outside ``response_mask``, no grad.
    """
    _check_inputs(inputs, config)
    with torch.no_grad():
        advantages, returns = get_advantage_estimator(config.estimator)(inputs, config)
    mask = inputs.response_mask.to(advantages.dtype)
    return advantages * mask, returns * mask


# ----------------------------------------------------------------------------- shared pieces


def _check_inputs(inputs: AdvantageInputs, config: AdvantageConfig) -> None:
    rewards, mask = inputs.rewards, inputs.response_mask
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be (B,), got shape {tuple(rewards.shape)}")
    if mask.dim() != 2 or mask.shape[0] != rewards.shape[0]:
        raise ValueError(f"response_mask must be (B, T) with B={rewards.shape[0]}, got {tuple(mask.shape)}")
    if inputs.group_ids.shape != rewards.shape:
        raise ValueError(f"group_ids must be (B,)={tuple(rewards.shape)}, got {tuple(inputs.group_ids.shape)}")
    for field_name in ("old_logprobs", "ref_logprobs", "values", "token_rewards"):
        value = getattr(inputs, field_name)
        if value is not None and value.shape != mask.shape:
            raise ValueError(f"{field_name} must have response_mask's shape {tuple(mask.shape)}, got {tuple(value.shape)}")
    if inputs.baseline_rewards is not None and inputs.baseline_rewards.shape != rewards.shape:
        raise ValueError(f"baseline_rewards must be (B,)={tuple(rewards.shape)}, got {tuple(inputs.baseline_rewards.shape)}")
    token_level = is_token_level(config.estimator)
    if config.kl_coef_in_reward > 0:
        if not token_level:
            raise ValueError(
                f"kl_coef_in_reward > 0 needs a token-level estimator ({', '.join(_token_level_names())}); "
                f"{config.estimator!r} uses one reward per response: put the KL in the loss (kl_coef) instead"
            )
        if inputs.old_logprobs is None or inputs.ref_logprobs is None:
            raise ValueError("kl_coef_in_reward > 0 needs old_logprobs and ref_logprobs in AdvantageInputs")
    if inputs.token_rewards is not None and not token_level:
        raise ValueError(
            f"token_rewards (dense rewards) need a token-level estimator ({', '.join(_token_level_names())}), "
            f"not {config.estimator!r}"
        )


def _token_level_names() -> list[str]:
    return [name for name in ADVANTAGE_ESTIMATOR_REGISTRY.names() if is_token_level(name)]


def group_index(group_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary group ids to ``0..G-1``. Returns ``(index (B,), G)``."""
    _, index = torch.unique(group_ids, return_inverse=True)
    return index, int(index.max().item()) + 1 if index.numel() else 0


def group_mean_std(values: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-response group statistics of ``values`` (B,).

    Returns ``(mean, std, count)``, each ``(B,)`` (the statistic of the response's group);
    ``std`` is the sample std (n − 1), 0 for single-member groups.
    """
    values = values.to(torch.float64) if values.dtype == torch.float64 else values.float()
    index, num_groups = group_index(group_ids)
    count = torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add_(0, index, torch.ones_like(values))
    total = torch.zeros_like(count).index_add_(0, index, values)
    mean = total / count
    squared = torch.zeros_like(count).index_add_(0, index, (values - mean[index]) ** 2)
    std = (squared / (count - 1).clamp(min=1)).sqrt()
    return mean[index], std[index], count[index]


def last_token_positions(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the last response token of each row and whether the row has one. Returns ``((B,), (B,) bool)``."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, torch.full_like(positions, -1)).max(dim=1).values
    return last.clamp(min=0), last >= 0


def token_level_rewards(inputs: AdvantageInputs, config: AdvantageConfig, outcome: torch.Tensor) -> torch.Tensor:
    """Per-token rewards ``(B, T)``: ``outcome`` (B,) at the last response token, −β·KL on every
    response token when ``kl_coef_in_reward`` > 0, plus ``token_rewards`` when given."""
    mask = inputs.response_mask.to(outcome.dtype)
    rewards = torch.zeros_like(mask)
    if config.kl_coef_in_reward > 0:
        kl = kl_penalty(inputs.old_logprobs.to(mask.dtype), inputs.ref_logprobs.to(mask.dtype), config.kl_estimator)
        rewards = rewards - config.kl_coef_in_reward * kl * mask
    if inputs.token_rewards is not None:
        rewards = rewards + inputs.token_rewards.to(mask.dtype) * mask
    last, has_tokens = last_token_positions(inputs.response_mask)
    rows = torch.arange(mask.shape[0], device=mask.device)
    rewards[rows, last] += torch.where(has_tokens, outcome, torch.zeros_like(outcome))
    return rewards


def _broadcast(per_response: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return per_response[:, None] * mask.to(per_response.dtype)


def _float_rewards(inputs: AdvantageInputs) -> torch.Tensor:
    rewards = inputs.rewards
    return rewards if rewards.dtype == torch.float64 else rewards.float()


# ----------------------------------------------------------------------------- estimators


@register_advantage_estimator("grpo", needs=("groups",))
def compute_grpo_advantages(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO (and Dr. GRPO with ``norm_by_std=False``); returns equal the advantages."""
    return _grpo(inputs, config, norm_by_std=config.norm_by_std)


@register_advantage_estimator("dr_grpo", needs=("groups",))
def compute_dr_grpo_advantages(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Dr. GRPO: A_i = r_i − mean_G r (no std division, whatever ``norm_by_std`` says)."""
    return _grpo(inputs, config, norm_by_std=False)


def _grpo(inputs: AdvantageInputs, config: AdvantageConfig, norm_by_std: bool) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = _float_rewards(inputs)
    mean, std, count = group_mean_std(rewards, inputs.group_ids)
    centred = rewards - mean
    if norm_by_std:
        if config.std_scope == "batch":
            # The sample std of every reward in the batch (Bessel), one number for all responses.
            std = rewards.std(unbiased=True) if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype)
        centred = centred / (std + config.epsilon)
    # A lone response has no baseline: no signal rather than an unbaselined reward.
    scores = torch.where(count > 1, centred, torch.zeros_like(centred))
    advantages = _broadcast(scores, inputs.response_mask)
    return advantages, advantages.clone()


@register_advantage_estimator("rloo", needs=("groups",))
def compute_rloo_advantages(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO: A_i = r_i − mean of the other responses' rewards; 0 for single-member groups."""
    rewards = _float_rewards(inputs)
    mean, _, count = group_mean_std(rewards, inputs.group_ids)
    others_mean = (mean * count - rewards) / (count - 1).clamp(min=1)
    scores = torch.where(count > 1, rewards - others_mean, torch.zeros_like(rewards))
    advantages = _broadcast(scores, inputs.response_mask)
    return advantages, advantages.clone()


@register_advantage_estimator("reinforce_plus_plus", token_level=True)
def compute_reinforce_plus_plus_advantages(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: discounted returns of the per-token rewards, whitened over the batch's tokens."""
    return _reinforce_plus_plus(inputs, config, _float_rewards(inputs))


@register_advantage_estimator("reinforce_plus_plus_baseline", token_level=True)
def compute_reinforce_plus_plus_baseline_advantages(
    inputs: AdvantageInputs, config: AdvantageConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++-baseline: outcome reward minus its group mean, then as REINFORCE++."""
    rewards = _float_rewards(inputs)
    mean, _, _ = group_mean_std(rewards, inputs.group_ids)
    return _reinforce_plus_plus(inputs, config, rewards - mean)


def _reinforce_plus_plus(inputs: AdvantageInputs, config: AdvantageConfig, outcome: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mask = inputs.response_mask.to(outcome.dtype)
    returns = discounted_returns(token_level_rewards(inputs, config, outcome), mask, config.gamma)
    return masked_whiten(returns, mask, config.epsilon), returns


@register_advantage_estimator("remax", token_level=True, needs=("greedy_baseline",))
def compute_remax_advantages(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """ReMax: A_t = G_t − b, b = the greedy response's reward (``baseline_rewards``)."""
    if inputs.baseline_rewards is None:
        raise ValueError("remax needs baseline_rewards (the reward of a greedy response per prompt) in AdvantageInputs")
    rewards = _float_rewards(inputs)
    mask = inputs.response_mask.to(rewards.dtype)
    returns = discounted_returns(token_level_rewards(inputs, config, rewards), mask, config.gamma)
    advantages = (returns - inputs.baseline_rewards.to(rewards.dtype)[:, None]) * mask
    return advantages, returns


@register_advantage_estimator("gae", token_level=True, needs=("critic",))
def compute_gae_advantages(inputs: AdvantageInputs, config: AdvantageConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO with a critic: GAE(γ, λ) on the per-token rewards; returns are the critic's targets."""
    if inputs.values is None:
        raise ValueError("gae needs values (critic values at rollout time) in AdvantageInputs")
    rewards = _float_rewards(inputs)
    mask = inputs.response_mask.to(rewards.dtype)
    advantages, returns = compute_gae(
        token_level_rewards(inputs, config, rewards), inputs.values.to(rewards.dtype), mask, config.gamma, config.lam
    )
    if config.whiten_gae_advantages:
        advantages = masked_whiten(advantages, mask, config.epsilon)
    return advantages, returns
