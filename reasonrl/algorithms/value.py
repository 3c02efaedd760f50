"""Critic-side math for PPO: discounted returns, GAE(γ, λ) and the clipped value loss.

Masks may have holes (multi-turn rollouts where environment tokens are not the policy's):
the backward recursions skip masked-out positions and carry their running values across
them, so "the next token" always means the next *response* token. With ordinary right
padding this is the textbook recursion.
"""
from __future__ import annotations

import torch

from reasonrl.algorithms.aggregation import aggregate_loss, masked_mean


def discounted_returns(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = Σ_{s ≥ t} γ^{s−t} r_s over response tokens (reverse cumulative sum for γ = 1).

    Args:
        token_rewards: ``(B, T)`` per-token rewards (only masked positions count).
        mask: ``(B, T)`` 1 on response tokens.
        gamma: discount per response token.

    Returns:
        ``(B, T)`` returns, 0 outside the mask.
    """
    mask = mask.to(token_rewards.dtype)
    returns = torch.zeros_like(token_rewards)
    running = torch.zeros_like(token_rewards[:, 0])
    for t in reversed(range(token_rewards.shape[1])):
        on = mask[:, t] > 0
        running = torch.where(on, token_rewards[:, t] + gamma * running, running)
        returns[:, t] = running * mask[:, t]
    return returns


def compute_gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation.

    δ_t = r_t + γ·V_{t+1} − V_t (V after the last response token is 0: the episode ends),
    A_t = δ_t + γλ·A_{t+1}, returns R_t = A_t + V_t (the critic's regression target).

    Args:
        token_rewards: ``(B, T)`` per-token rewards (outcome reward at the last response token,
            optional −β·KL per token and dense rewards).
        values: ``(B, T)`` critic values V(s_t) of the rollout (detached).
        mask: ``(B, T)`` 1 on response tokens.
        gamma: discount [1.0]; lam: GAE λ [0.95].

    Returns:
        ``(advantages, returns)``, both ``(B, T)``, 0 outside the mask; not whitened.
    """
    if not (token_rewards.shape == values.shape == mask.shape):
        raise ValueError(
            f"shapes differ: token_rewards {tuple(token_rewards.shape)}, values {tuple(values.shape)}, mask {tuple(mask.shape)}"
        )
    mask = mask.to(token_rewards.dtype)
    values = values.detach().to(token_rewards.dtype)
    advantages = torch.zeros_like(token_rewards)
    next_value = torch.zeros_like(token_rewards[:, 0])
    running_advantage = torch.zeros_like(token_rewards[:, 0])
    for t in reversed(range(token_rewards.shape[1])):
        on = mask[:, t] > 0
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        running_advantage = torch.where(on, delta + gamma * lam * running_advantage, running_advantage)
        next_value = torch.where(on, values[:, t], next_value)
        advantages[:, t] = running_advantage * mask[:, t]
    returns = (advantages + values) * mask
    return advantages, returns


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float | None = 0.2,
    agg_mode: str = "token-mean",
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped value loss: ½·max((V − R)², (V_clip − R)²), V_clip = V_old + clip(V − V_old, ±c).

    Clipping keeps the critic close to the values the advantages were computed from, as the
    policy's ratio clip does for the actor. ``clip_range=None`` gives the plain ½(V − R)².

    Args:
        values: ``(B, T)`` current critic values (with grad).
        old_values: ``(B, T)`` values at rollout time.
        returns: ``(B, T)`` targets from :func:`compute_gae`.
        mask: ``(B, T)`` response mask.
        clip_range: c [0.2] or None.
        agg_mode: a loss aggregation mode (:data:`~reasonrl.algorithms.aggregation.LOSS_AGG_MODES`).

    Returns:
        ``(loss, metrics)``: scalar loss; metrics ``vf_loss``, ``vf_clipfrac`` (share of tokens
        where the clipped branch was larger), ``value_mean``.
    """
    unclipped = (values - returns).square()
    if clip_range is None:
        loss_mat = 0.5 * unclipped
        clipfrac = torch.zeros(())
    else:
        clipped_values = old_values + (values - old_values).clamp(-clip_range, clip_range)
        clipped = (clipped_values - returns).square()
        loss_mat = 0.5 * torch.maximum(unclipped, clipped)
        clipfrac = masked_mean((clipped > unclipped).to(values.dtype), mask.to(values.dtype))
    loss = aggregate_loss(loss_mat, mask, agg_mode)
    metrics = {
        "vf_loss": float(loss.detach()),
        "vf_clipfrac": float(clipfrac),
        "value_mean": float(masked_mean(values.detach(), mask.to(values.dtype))),
    }
    return loss, metrics
