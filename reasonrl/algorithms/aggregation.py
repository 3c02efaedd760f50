"""Masked reductions and the four loss-aggregation modes.

Every per-token loss in reasonrl is a ``(B, T)`` matrix plus a ``(B, T)`` response mask; how it
is reduced to a scalar changes which tokens and sequences weigh more (ALGORITHMS.md, "Loss
aggregation"):

- ``token-mean``: sum of token losses / number of response tokens (DAPO, verl default).
  Every token weighs the same, so long responses weigh more than short ones.
- ``seq-mean-token-mean``: mean over each sequence's tokens, then mean over sequences
  (original GRPO). Every sequence weighs the same; tokens of long responses weigh less.
- ``seq-mean-token-sum``: sum over each sequence's tokens, then mean over sequences.
- ``seq-mean-token-sum-norm``: total sum / (B × max_response_length) (Dr. GRPO): a constant
  normaliser, so no length bias at all.

Rows with no response token (all-masked) carry no loss; the two ``seq-mean-*`` modes leave
them out of the mean over sequences (dividing by them would scale the loss by the share of
empty rows), ``token-mean`` ignores them naturally, ``seq-mean-token-sum-norm`` keeps its
constant normaliser by design.

Gradient accumulation: a minibatch split into micro-batches gives the same gradient as the
whole minibatch only if every micro-batch divides by the *minibatch's* normaliser. Pass
``num_tokens`` (token-mean) or ``num_sequences`` (the seq modes) counted over the whole
minibatch, and sum the micro-batch losses.
"""
from __future__ import annotations

from typing import Callable

import torch

from reasonrl.registry import Registry

# fn(loss_mat (B, T), mask (B, T) float, *, max_response_length, num_tokens, num_sequences) -> scalar
LossAggregation = Callable[..., torch.Tensor]
LOSS_AGGREGATION_REGISTRY: Registry[LossAggregation] = Registry("loss aggregation mode")
# The registered mode names, live (a user's registered mode appears too).
LOSS_AGG_MODES = LOSS_AGGREGATION_REGISTRY.live_names()


def register_loss_aggregation(name: str) -> Callable[[LossAggregation], LossAggregation]:
    """Decorator registering ``fn(loss_mat, mask, *, max_response_length, num_tokens, num_sequences) -> scalar``
    (``mask`` arrives as ``loss_mat``'s dtype; the three keywords may be None, see :func:`aggregate_loss`)."""
    return LOSS_AGGREGATION_REGISTRY.register(name)


def masked_sum(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``values`` where ``mask`` is 1. ``values``/``mask``: same shape."""
    masked = values * mask
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1; 0 (not NaN) where there are none."""
    count = mask.sum() if dim is None else mask.sum(dim=dim)
    return masked_sum(values, mask, dim) / count.clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``values`` over the masked positions (a scalar).

    ``unbiased`` applies Bessel's correction (divide by count − 1). With fewer than two
    positions the variance is 0: one value has no spread to measure.
    """
    count = mask.sum()
    mean = masked_sum(values, mask) / count.clamp(min=1)
    squared = masked_sum((values - mean) ** 2, mask)
    denominator = (count - 1) if unbiased else count
    if count < 2:
        return torch.zeros((), dtype=values.dtype, device=values.device)
    return squared / denominator


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, epsilon: float = 1e-6) -> torch.Tensor:
    """(values − mean) / (std + ε) over the masked positions (unbiased std); 0 outside the mask."""
    mean = masked_mean(values, mask)
    std = masked_var(values, mask, unbiased=True).sqrt()
    return (values - mean) / (std + epsilon) * mask


def aggregate_loss(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    mode: str,
    max_response_length: int | None = None,
    *,
    num_tokens: float | None = None,
    num_sequences: float | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    Args:
        loss_mat: ``(B, T)`` per-token losses.
        mask: ``(B, T)`` 1 on response tokens.
        mode: one of :data:`LOSS_AGG_MODES`.
        max_response_length: the Dr. GRPO normaliser's length (default ``T = mask.shape[1]``);
            set it to the generation limit so the scale does not depend on the batch's padding.
        num_tokens: token-mean denominator override (the whole minibatch's token count when
            accumulating gradients over micro-batches).
        num_sequences: sequence-count override for the three ``seq-mean-*`` modes.

    Returns:
        a scalar tensor (differentiable).
    """
    if loss_mat.shape != mask.shape:
        raise ValueError(f"loss_mat shape {tuple(loss_mat.shape)} != mask shape {tuple(mask.shape)}")
    aggregate = LOSS_AGGREGATION_REGISTRY.get(mode)
    return aggregate(
        loss_mat, mask.to(loss_mat.dtype),
        max_response_length=max_response_length, num_tokens=num_tokens, num_sequences=num_sequences,
    )


@register_loss_aggregation("token-mean")
def token_mean(loss_mat: torch.Tensor, mask: torch.Tensor, *, num_tokens: float | None = None, **_: object) -> torch.Tensor:
    denominator = mask.sum().clamp(min=1) if num_tokens is None else max(float(num_tokens), 1.0)
    return masked_sum(loss_mat, mask) / denominator


@register_loss_aggregation("seq-mean-token-mean")
def seq_mean_token_mean(loss_mat: torch.Tensor, mask: torch.Tensor, *, num_sequences: float | None = None, **_: object) -> torch.Tensor:
    return _seq_mean(loss_mat, mask, num_sequences, per_token=True)


@register_loss_aggregation("seq-mean-token-sum")
def seq_mean_token_sum(loss_mat: torch.Tensor, mask: torch.Tensor, *, num_sequences: float | None = None, **_: object) -> torch.Tensor:
    return _seq_mean(loss_mat, mask, num_sequences, per_token=False)


def _seq_mean(loss_mat: torch.Tensor, mask: torch.Tensor, num_sequences: float | None, per_token: bool) -> torch.Tensor:
    tokens_per_seq = mask.sum(dim=-1)
    seq_losses = masked_sum(loss_mat, mask, dim=-1)
    if per_token:
        seq_losses = seq_losses / tokens_per_seq.clamp(min=1)
    has_tokens = (tokens_per_seq > 0).to(loss_mat.dtype)
    denominator = has_tokens.sum().clamp(min=1) if num_sequences is None else max(float(num_sequences), 1.0)
    return (seq_losses * has_tokens).sum() / denominator


@register_loss_aggregation("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    loss_mat: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_response_length: int | None = None,
    num_sequences: float | None = None,
    **_: object,
) -> torch.Tensor:
    length = mask.shape[1] if max_response_length is None else int(max_response_length)
    if length <= 0:
        raise ValueError(f"max_response_length must be positive, got {max_response_length}")
    sequences = mask.shape[0] if num_sequences is None else float(num_sequences)
    return masked_sum(loss_mat, mask) / max(sequences * length, 1.0)
