"""DAPO's batch-shaping helpers: dynamic sampling (drop groups without signal) and overlong shaping.

Dynamic sampling: a group whose responses are all correct or all wrong has zero advantage
under GRPO-style estimators and only dilutes the batch. :func:`group_accuracy_filter` marks
the responses to keep; the trainer samples more prompts until it has enough kept groups and
takes the first ones in order with :func:`kept_group_indices`.
"""
from __future__ import annotations

import torch


def _group_stats(group_ids: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index (B,), count (G,), min (G,), max (G,)) of ``values`` per group."""
    if group_ids.shape != values.shape or values.dim() != 1:
        raise ValueError(f"group_ids {tuple(group_ids.shape)} and values {tuple(values.shape)} must both be (B,)")
    _, index = torch.unique(group_ids, return_inverse=True)
    num_groups = int(index.max().item()) + 1 if index.numel() else 0
    values = values.double()
    count = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, index, torch.ones_like(values))
    low = torch.full((num_groups,), float("inf"), dtype=torch.float64).scatter_reduce_(0, index, values, "amin")
    high = torch.full((num_groups,), float("-inf"), dtype=torch.float64).scatter_reduce_(0, index, values, "amax")
    return index, count, low, high


def group_accuracy_filter(group_ids: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """Keep mask for dynamic sampling: drop groups whose accuracy is exactly 0 or exactly 1.

    Args:
        group_ids: ``(B,)`` group id per response.
        correct: ``(B,)`` bool (or 0/1) correctness; with real-valued rewards the rule is
            "keep groups whose rewards are not all equal", which is the same test.

    Returns:
        ``(B,)`` bool: True for responses of groups that carry signal. Single-member groups
        are dropped (one response cannot be compared with anything).
    """
    if correct.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    index, _, low, high = _group_stats(group_ids, correct.to(torch.float64))
    return (high > low)[index]


def zero_variance_group_share(group_ids: torch.Tensor, rewards: torch.Tensor) -> float:
    """Share of groups whose rewards are all equal (they give zero GRPO/RLOO advantage).

    Single-member groups count as zero-variance: they carry no signal either. 0.0 for an empty batch.
    Log it every step: when it nears 1 the run is not learning (ENVIRONMENT.md's probe).
    """
    if rewards.numel() == 0:
        return 0.0
    _, _, low, high = _group_stats(group_ids, rewards.to(torch.float64))
    return float((high <= low).double().mean())


def kept_group_indices(group_ids: torch.Tensor, keep: torch.Tensor, max_groups: int | None = None) -> torch.Tensor:
    """Indices of the responses of the first ``max_groups`` kept groups, in batch order.

    Groups are ordered by their first appearance in the batch, so refilling is deterministic.

    Args:
        group_ids: ``(B,)``; keep: ``(B,)`` bool, as from :func:`group_accuracy_filter`.
        max_groups: how many groups to take (None = all kept).

    Returns:
        ``(K,)`` long indices into the batch.
    """
    if group_ids.shape != keep.shape:
        raise ValueError(f"group_ids {tuple(group_ids.shape)} and keep {tuple(keep.shape)} must match")
    chosen: dict[int, None] = {}
    for gid, k in zip(group_ids.tolist(), keep.tolist()):
        if k and gid not in chosen and (max_groups is None or len(chosen) < max_groups):
            chosen[gid] = None
    selected = [i for i, gid in enumerate(group_ids.tolist()) if gid in chosen and bool(keep[i])]
    return torch.tensor(selected, dtype=torch.long)


def overlong_penalty(lengths: torch.Tensor, max_len: int, buffer: int, factor: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment, added to the outcome reward.

    penalty = min(−(len − (L_max − buf)) / buf, 0) × factor: 0 up to L_max − buf, then falling
    linearly to −factor at L_max. Lengths beyond L_max (an engine cannot produce them when
    ``max_tokens = L_max``) are held at −factor, as in DAPO, rather than extrapolated.

    Args:
        lengths: ``(B,)`` response lengths in tokens.
        max_len: L_max, the generation limit.
        buffer: the soft zone's width (0 < buffer ≤ max_len).
        factor: penalty scale [1.0].

    Returns:
        ``(B,)`` float penalties (≤ 0).
    """
    if not 0 < buffer <= max_len:
        raise ValueError(f"overlong buffer must satisfy 0 < buffer <= max_len, got buffer={buffer}, max_len={max_len}")
    if factor < 0:
        raise ValueError(f"overlong factor must be >= 0, got {factor}")
    lengths = lengths.to(torch.float32)
    penalty = (-(lengths - (max_len - buffer)) / buffer).clamp(min=-1.0, max=0.0)
    return penalty * factor
