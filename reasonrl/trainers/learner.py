"""The update loop every trainer shares: minibatches, micro-batches, accumulation, clipping, steps.

A trainer hands :meth:`Learner.update` a ``loss_fn(rows, scale) -> (loss, metrics, weight)`` over
the row indices of its batch; the learner walks the minibatches (shuffled per epoch by a seed
derived from the run seed, the step and the epoch, so a resumed run replays them), splits each
into micro-batches, accumulates gradients, clips and steps — in one process or over several
ranks through DeepSpeed (:mod:`reasonrl.trainers.strategy`), with no code of the trainer's own
for either. The GRPO-family loss is one ``loss_fn``; SFT on verified samples (expert iteration),
a pairwise or a DPO-family loss are others.

``scale`` carries the normalisers of the *whole* minibatch (its response tokens and its rows),
already adjusted for ranks and accumulation: a loss that divides its micro-batch sum by them gives
the gradient of the minibatch mean, however the minibatch is cut.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from reasonrl.trainers.data import derived_seed
from reasonrl.trainers.strategy import OptimizerSettings, ParamGroup, Strategy


@dataclass(frozen=True)
class MinibatchScale:
    """What a micro-batch loss divides by to give the minibatch mean."""

    tokens: float  # response tokens of the whole minibatch (token-mean losses)
    sequences: float  # rows of the whole minibatch (sequence-mean losses)


LossFn = Callable[[torch.Tensor, MinibatchScale], "tuple[torch.Tensor, dict[str, float], float]"]


class WeightedMetrics:
    """Weighted means of per-micro-batch metrics, merged over ranks."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, float] = {}

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + value * weight
        self.counts[name] = self.counts.get(name, 0.0) + weight

    def means(self, strategy: Strategy) -> dict[str, float]:
        sums, counts = {}, {}
        for rank_sums, rank_counts in strategy.gather_objects((self.sums, self.counts)):
            for key in rank_sums:
                sums[key] = sums.get(key, 0.0) + rank_sums[key]
                counts[key] = counts.get(key, 0.0) + rank_counts[key]
        return {k: sums[k] / counts[k] for k in sums if counts[k] > 0}


class Learner:
    """Trains one set of model roles with one optimizer (a param group, learning rate and schedule per role).

    Args:
        strategy: one process or several ranks.
        module: the module the optimizer steps (a role's model, or several wrapped together so that
            DeepSpeed shards and steps them as one, e.g. a policy and its value head).
        groups: the trainable parameters, one :class:`ParamGroup` per role.
        settings: AdamW betas, clipping, minibatch and micro-batch sizes.
        schedules: role -> ``step -> learning rate``.
        seed: the run seed (minibatch order derives from it).
    """

    def __init__(
        self, strategy: Strategy, module: torch.nn.Module, groups: Sequence[ParamGroup], settings: OptimizerSettings,
        schedules: dict[str, Callable[[int], float]], seed: int,
    ) -> None:
        self.strategy = strategy
        self.settings = settings
        self.schedules = schedules
        self.seed = seed
        self.roles = [g.role for g in groups]
        self.optimizer = strategy.optimizer(module, groups, settings)

    @property
    def forward_module(self) -> torch.nn.Module:
        """What the training forward runs through (the DeepSpeed engine over several ranks)."""
        return self.optimizer.forward_module

    @property
    def distributed(self) -> bool:
        return self.optimizer.distributed

    def learning_rates(self, step: int) -> dict[str, float]:
        return {role: self.schedules[role](step) for role in self.roles}

    def update(
        self, step: int, row_tokens: torch.Tensor, loss_fn: LossFn, epochs: int = 1,
        active_rows: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """``epochs`` passes over the batch in minibatches; returns the weighted-mean metrics.

        Args:
            step: the trainer step (learning rates and the minibatch order depend on it).
            row_tokens: ``(B,)`` response tokens per row (the token normaliser of each minibatch).
            loss_fn: ``(rows, scale) -> (loss, metrics, weight)`` for the micro-batch ``rows``.
            active_rows: in one process, the rows of a minibatch that carry gradient (the others are
                left out of the forward and backward pass; the normalisers still count them). Over
                several ranks every row runs: each rank must run the same number of backward passes.
        """
        lrs = self.learning_rates(step)
        self.optimizer.set_lrs(lrs)
        metrics = WeightedMetrics()
        B = len(row_tokens)
        minibatch = self.settings.minibatch_rows or B
        for epoch in range(epochs):
            generator = torch.Generator().manual_seed(derived_seed(self.seed, "minibatch", step, epoch) % 2**63)
            order = torch.randperm(B, generator=generator) if minibatch < B else torch.arange(B)
            for start in range(0, B, minibatch):
                rows = order[start : start + minibatch].to(row_tokens.device)
                self._minibatch(rows, row_tokens, loss_fn, metrics, active_rows)
        self.optimizer.zero_grad()
        result = metrics.means(self.strategy)
        for role, lr in lrs.items():
            result["lr" if role == self.roles[0] else f"lr_{role}"] = lr
        return result

    def _minibatch(
        self, rows: torch.Tensor, row_tokens: torch.Tensor, loss_fn: LossFn, metrics: WeightedMetrics,
        active_rows: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> None:
        opt = self.optimizer
        scale = MinibatchScale(tokens=opt.normalizer(float(row_tokens[rows].sum())), sequences=opt.normalizer(float(len(rows))))
        active = opt.share(rows, self.strategy) if opt.distributed else (active_rows(rows) if active_rows else rows)
        metrics.add("rows_trained_share", float(len(active)) / max(len(rows), 1) * self.strategy.world_size)
        opt.zero_grad()
        micro = opt.micro_rows(len(rows))
        runs = 0
        for start in range(0, len(active), micro):
            loss, micro_metrics, weight = loss_fn(active[start : start + micro], scale)
            opt.backward(loss)
            runs += 1
            for name, value in micro_metrics.items():
                metrics.add(name, value, weight)
        grad_norm = opt.finish_minibatch(runs, lambda: loss_fn(rows[:1], scale)[0])
        if grad_norm is not None:
            metrics.add("grad_norm", grad_norm)
