"""The batch every trainer step fills in: rollout → verify → tensorize → score → advantages.

:class:`RolloutBatch` holds one row per sampled response. Its :meth:`~RolloutBatch.select` and
:func:`concat` work over *every* field (lists and tensors alike), so a trainer that adds a field
(PRIME's token rewards, TTRL's pseudo-labels) never has to teach them about it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from reasonrl.engines.base import Sample
from reasonrl.types import Verdict


@dataclass
class RolloutBatch:
    """Everything one step knows about its B responses (G groups of n).

    Per-response lists have length B; tensors are ``(B,)`` or ``(B, T)`` with T the longest
    response. Tensors are filled in as the step goes.
    """

    problems: list[dict[str, Any]]  # the problem of each response (repeated within a group)
    group_ids: torch.Tensor  # (B,) long
    samples: list[Sample]
    verdicts: list[Verdict] = field(default_factory=list)
    rewards: torch.Tensor | None = None  # (B,) reward used for advantages (rewarder total + shaping)
    correct: torch.Tensor | None = None  # (B,) bool
    reward_components: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> (B,) named rewards
    baseline_rewards: torch.Tensor | None = None  # (B,) ReMax greedy-rollout reward
    token_rewards: torch.Tensor | None = None  # (B, T) optional dense rewards (process rewards)
    # Model inputs: [left-padded prompt | right-padded response]
    input_ids: torch.Tensor | None = None  # (B, P + T)
    attention_mask: torch.Tensor | None = None  # (B, P + T)
    response_mask: torch.Tensor | None = None  # (B, T) float
    rollout_logprobs: torch.Tensor | None = None  # (B, T) as the engine reported
    old_logprobs: torch.Tensor | None = None  # (B, T) trainer log π_old
    ref_logprobs: torch.Tensor | None = None  # (B, T) log π_ref
    old_values: torch.Tensor | None = None  # (B, T) critic values (ppo)
    advantages: torch.Tensor | None = None  # (B, T)
    returns: torch.Tensor | None = None  # (B, T)
    stats: dict[str, float] = field(default_factory=dict)  # batch-level metrics (not per row)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def response_length(self) -> int:
        return 0 if self.response_mask is None else self.response_mask.shape[1]

    def select(self, index: torch.Tensor) -> "RolloutBatch":
        """The rows ``index`` of every per-row field (``stats`` is batch-level and starts empty)."""
        rows = index.tolist()
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "stats":
                values[f.name] = {}
            elif isinstance(value, torch.Tensor):
                values[f.name] = value[index.to(value.device)]
            elif isinstance(value, dict):
                values[f.name] = {k: v[index.to(v.device)] for k, v in value.items()}
            elif isinstance(value, list):
                values[f.name] = [value[i] for i in rows] if value else []
            else:
                values[f.name] = value
        return RolloutBatch(**values)


def concat(batches: list[RolloutBatch]) -> RolloutBatch:
    """Rows of several batches, in order, over every per-row field. Tensor fields of ``(B, T)``
    shape must share T (concatenate before tensorizing)."""
    if len(batches) == 1:
        return batches[0]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(RolloutBatch):
        parts = [getattr(b, f.name) for b in batches]
        if f.name == "stats":
            values[f.name] = {}
        elif isinstance(parts[0], torch.Tensor):
            values[f.name] = torch.cat(parts)
        elif isinstance(parts[0], dict):
            values[f.name] = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        elif isinstance(parts[0], list):
            values[f.name] = [item for part in parts for item in part]
        else:
            values[f.name] = parts[0]
    return RolloutBatch(**values)


def tensorize(batch: RolloutBatch, pad_token_id: int, device: torch.device | str) -> None:
    """Build ``[left-padded prompt | right-padded response]`` inputs, the response mask and the
    engine's log-probs (an empty response gets one pad token, masked out)."""
    prompts = [s.prompt_token_ids for s in batch.samples]
    responses = [s.token_ids if s.token_ids else [pad_token_id] for s in batch.samples]
    P = max((len(p) for p in prompts), default=0)
    T = max((len(r) for r in responses), default=1)
    B = len(batch.samples)
    input_ids = torch.full((B, P + T), pad_token_id, dtype=torch.long)
    attention = torch.zeros((B, P + T), dtype=torch.long)
    response_mask = torch.zeros((B, T), dtype=torch.float32)
    rollout_lp = torch.zeros((B, T), dtype=torch.float32)
    for row, (prompt, sample) in enumerate(zip(prompts, batch.samples)):
        input_ids[row, P - len(prompt) : P] = torch.tensor(prompt, dtype=torch.long)
        attention[row, P - len(prompt) : P] = 1
        n = len(sample.token_ids)
        if n:
            input_ids[row, P : P + n] = torch.tensor(sample.token_ids, dtype=torch.long)
            attention[row, P : P + n] = 1
            response_mask[row, :n] = 1.0
            if sample.logprobs is not None:
                rollout_lp[row, :n] = torch.tensor(sample.logprobs, dtype=torch.float32)
    batch.input_ids = input_ids.to(device)
    batch.attention_mask = attention.to(device)
    batch.response_mask = response_mask.to(device)
    batch.rollout_logprobs = rollout_lp.to(device)
