"""Learning-rate schedules: a pure ``lr_at(step, ...)``, the decay shape selected by name.

Every schedule is a linear warm-up from 0 over ``warmup_steps`` followed by a registered decay
shape ``fn(progress, min_lr_ratio) -> factor`` with ``progress`` running from 0 (end of the
warm-up) to 1 (the last step):

- ``constant``: factor 1 after the warm-up (``min_lr_ratio`` unused).
- ``linear``: from 1 down to ``min_lr_ratio`` in a straight line.
- ``cosine``: ``min_lr_ratio + (1 − min_lr_ratio)·½(1 + cos(π·progress))``, also reaching
  ``min_lr_ratio`` at the last step.

Steps count from 1 (the first optimizer step is step 1), as the trainers count them: with
``warmup_steps`` W the first W steps use ``lr·step/W``, so step W is the first at full ``lr``.
``constant`` is exactly the trainers' former ``lr · min(1, step / W)``.

A new shape is one decorated function::

    @register_lr_schedule("step_half")
    def step_half(progress, min_lr_ratio):
        return 1.0 if progress < 0.5 else 0.5
"""
from __future__ import annotations

import math
from typing import Callable

from reasonrl.registry import Registry

LRShape = Callable[[float, float], float]
LR_SCHEDULE_REGISTRY: Registry[LRShape] = Registry("learning-rate schedule")


def register_lr_schedule(name: str) -> Callable[[LRShape], LRShape]:
    """Decorator registering a decay shape ``fn(progress in [0, 1], min_lr_ratio) -> factor of the peak lr``."""
    return LR_SCHEDULE_REGISTRY.register(name)


@register_lr_schedule("constant")
def constant_shape(progress: float, min_lr_ratio: float) -> float:
    return 1.0


@register_lr_schedule("linear")
def linear_shape(progress: float, min_lr_ratio: float) -> float:
    return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)


@register_lr_schedule("cosine")
def cosine_shape(progress: float, min_lr_ratio: float) -> float:
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def lr_at(
    step: int,
    total_steps: int,
    base_lr: float,
    schedule: str = "constant",
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
) -> float:
    """The learning rate of optimizer step ``step`` (counted from 1) of ``total_steps``.

    Args:
        step: the step about to be taken (1 = first); steps past ``total_steps`` stay at the end value.
        total_steps: the run's last step (the decay reaches ``min_lr_ratio·base_lr`` there).
        base_lr: the peak learning rate.
        schedule: a registered schedule name (:data:`LR_SCHEDULE_REGISTRY`).
        warmup_steps: linear warm-up from 0 over this many steps (0 = none).
        min_lr_ratio: the decay's final learning rate as a share of ``base_lr``, in [0, 1].

    >>> lr_at(5, 100, 1.0, "constant", warmup_steps=10)
    0.5
    >>> lr_at(100, 100, 1.0, "cosine", warmup_steps=10, min_lr_ratio=0.1)
    0.1
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    shape = LR_SCHEDULE_REGISTRY.get(schedule)
    if warmup_steps and step < warmup_steps:
        return base_lr * (max(step, 0) / warmup_steps)  # the trainers' own order of operations, bit for bit
    # The decay runs over the steps after the warm-up; a run no longer than its warm-up has none.
    decay_steps = total_steps - warmup_steps
    progress = 1.0 if decay_steps <= 0 else min(max(step - warmup_steps, 0) / decay_steps, 1.0)
    return base_lr * shape(progress, min_lr_ratio)
