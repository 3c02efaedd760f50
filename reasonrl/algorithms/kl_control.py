"""KL coefficient controllers: how β (``algorithm.kl_coef``) evolves over a run.

A controller holds the current β in ``value``; the trainer reads it before a step and calls
``update(current_kl, n_samples)`` after it. Its state is checkpointed (``state_dict`` /
``load_state_dict``) so a resumed run continues with the same β.

- ``fixed``: β never changes.
- ``adaptive`` (Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences";
  ALGORITHMS.md): after each step ``e = clip((KL − target) / target, −0.2, 0.2)`` and
  ``β ← β·(1 + e·n / horizon)`` with ``n`` the samples (responses) in the step
  [target 6 nats, horizon 10,000]. β grows while the policy drifts further from the reference
  than the target and shrinks while it stays closer; the clip bounds the change per sample.

``current_kl`` is the KL of a *response* (the sum over its tokens of the per-token estimate),
averaged over the step's responses: that is the quantity the 6-nat target was set for, not the
per-token mean the trainer logs as ``kl``. β = 0 stays 0 under the adaptive rule (it is
multiplicative), so the adaptive controller needs a positive initial β.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from reasonrl.registry import Registry

KL_CONTROLLER_REGISTRY: Registry[Callable[..., "KLController"]] = Registry("KL controller")


def register_kl_controller(name: str) -> Callable[[type], type]:
    """Class decorator registering a controller built as ``cls(value, target=..., horizon=...)``."""
    return KL_CONTROLLER_REGISTRY.register(name)


class KLController:
    """The interface: ``value`` (current β), ``update``, ``state_dict`` / ``load_state_dict``."""

    value: float

    def update(self, current_kl: float, n_samples: int) -> float:  # pragma: no cover - interface
        """Account for a finished step (its mean per-response KL and response count); returns the new β."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


@register_kl_controller("fixed")
class FixedKLController(KLController):
    """β stays at its initial value (``target`` and ``horizon`` are accepted and unused)."""

    def __init__(self, value: float, target: float = 6.0, horizon: int = 10_000) -> None:
        _check_value(value)
        self.value = float(value)

    def update(self, current_kl: float, n_samples: int) -> float:
        return self.value


@register_kl_controller("adaptive")
class AdaptiveKLController(KLController):
    """Ziegler et al.'s proportional controller (see the module docstring).

    Args:
        value: initial β (> 0).
        target: the KL per response to hold, in nats [6].
        horizon: samples over which a full ±20% error moves β by ±20% [10,000].
    """

    ERROR_CLIP = 0.2

    def __init__(self, value: float, target: float = 6.0, horizon: int = 10_000) -> None:
        _check_value(value)
        if value <= 0:
            raise ValueError(f"the adaptive KL controller needs an initial kl_coef > 0 (β = 0 would stay 0), got {value}")
        if not target > 0:
            raise ValueError(f"kl_target must be > 0, got {target}")
        if not horizon > 0:
            raise ValueError(f"kl_horizon must be > 0, got {horizon}")
        self.value = float(value)
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_samples: int) -> float:
        if not math.isfinite(current_kl):
            raise ValueError(f"adaptive KL controller: the step's KL is {current_kl}; β cannot follow it")
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        error = min(max((current_kl - self.target) / self.target, -self.ERROR_CLIP), self.ERROR_CLIP)
        factor = 1.0 + error * n_samples / self.horizon
        if factor <= 0:  # only when one step holds >= horizon / 0.2 samples
            raise ValueError(
                f"adaptive KL controller: {n_samples} samples in one step against kl_horizon={self.horizon} "
                f"would make β negative; raise kl_horizon above {n_samples * self.ERROR_CLIP:g}"
            )
        self.value *= factor
        return self.value

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A checkpoint restores β only: target and horizon come from the run's config.
        self.value = float(state["value"])


def make_kl_controller(name: str, value: float, target: float = 6.0, horizon: int = 10_000) -> KLController:
    """Build the controller registered as ``name`` with initial β ``value``."""
    return KL_CONTROLLER_REGISTRY.get(name)(value, target=target, horizon=horizon)


def _check_value(value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0, got {value}")
