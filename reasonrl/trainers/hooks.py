"""Lifecycle hooks: extension points with checkpointed state, built from the config.

A hook subclasses :class:`Hook` and overrides the events it needs; the trainer calls every hook
at each event, in the order the config lists them::

    after_rollout(trainer, batch)        responses sampled, not yet verified
    after_verify(trainer, batch)         rewards and verdicts in (TTRL pseudo-labels, PRIME token rewards)
    before_advantages(trainer, batch)    tensors and log-probs ready, advantages next
    after_update(trainer, batch, metrics)
    after_step(trainer, step, metrics)   may add metrics (ProRL reference resets, schedules)
    on_save(trainer) / on_load(trainer)  around checkpoints

A hook's :meth:`Hook.state_dict` is written into every checkpoint and handed back through
:meth:`Hook.load_state_dict` on resume, so a hook that counts, averages or remembers resumes exactly.

Config: ``hooks: [reference_sync, {name: my_file.py:MyHook, options: {k: v}}]`` — a registered
name or ``path/to/file.py:name`` (a :class:`Hook` subclass, constructed with ``options`` as
keyword arguments).
"""
from __future__ import annotations

from typing import Any

from reasonrl.registry import Registry

HOOKS = Registry("hook")


class Hook:
    """Base class: every event is a no-op; state is empty. ``roles_needed`` names model roles the
    hook uses (the run refuses to start, naming the config key, when one is missing)."""

    name = "hook"
    roles_needed: tuple[str, ...] = ()

    def after_rollout(self, trainer: Any, batch: Any) -> None:
        """Responses are sampled; rewards are not in yet."""

    def after_verify(self, trainer: Any, batch: Any) -> None:
        """Rewards and verdicts are in: change rewards or add ``token_rewards`` before advantages."""

    def before_advantages(self, trainer: Any, batch: Any) -> None:
        """Inputs, masks and log-probs are in; advantages are computed next."""

    def after_update(self, trainer: Any, batch: Any, metrics: dict[str, float]) -> None:
        """The optimizer stepped on this batch."""

    def after_step(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        """The step is over; add entries to ``metrics`` to log them."""

    def on_save(self, trainer: Any) -> None:
        """A checkpoint is about to be written."""

    def on_load(self, trainer: Any) -> None:
        """The trainer was restored from a checkpoint (after :meth:`load_state_dict`)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state written into checkpoints."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """State written by :meth:`state_dict`."""


class HookList:
    """The run's hooks, called in order; their states are checkpointed under their position and name."""

    def __init__(self, hooks: list[Hook]) -> None:
        self.hooks = hooks

    def __iter__(self):
        return iter(self.hooks)

    def fire(self, event: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, event)(*args)

    def state_dict(self) -> dict[str, Any]:
        return {f"{i}:{hook.name}": hook.state_dict() for i, hook in enumerate(self.hooks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for i, hook in enumerate(self.hooks):
            key = f"{i}:{hook.name}"
            if key in state:
                hook.load_state_dict(state[key])


def build_hooks(specs: Any) -> HookList:
    """Hooks from the config's ``hooks`` list (names, or ``{name, options}`` mappings)."""
    hooks = []
    for spec in specs or ():
        name, options = (spec, {}) if isinstance(spec, str) else (spec.get("name"), dict(spec.get("options") or {}))
        if not name:
            raise ValueError(f"hooks: each entry needs a name, got {spec!r}")
        cls = HOOKS.get(name)
        try:
            hook = cls(**options)
        except TypeError as error:
            raise ValueError(f"hooks: {name}: bad options {options}: {error}") from None
        hook.name = name
        hooks.append(hook)
    return HookList(hooks)


@HOOKS.register("reference_sync")
class ReferenceSync(Hook):
    """Every ``every`` steps set the reference towards the policy: ``ref ← α·policy + (1−α)·ref``
    (α = 1: a hard reset, ProRL; α < 1: TR-DPO's soft update), optionally re-initialising the
    policy's optimizer state (ProRL does). Each sync is logged as ``reference_syncs``."""

    roles_needed = ("reference",)

    def __init__(self, every: int = 100, alpha: float = 1.0, reset_optimizer: bool = False) -> None:
        if every < 1:
            raise ValueError(f"reference_sync: every must be >= 1, got {every}")
        self.every, self.alpha, self.reset_optimizer = int(every), float(alpha), bool(reset_optimizer)
        self.syncs = 0

    def after_step(self, trainer: Any, step: int, metrics: dict[str, float]) -> None:
        if step % self.every == 0:
            trainer.sync_role("reference", "policy", alpha=self.alpha, reset_optimizer=self.reset_optimizer)
            self.syncs += 1
        metrics["reference_syncs"] = float(self.syncs)

    def state_dict(self) -> dict[str, Any]:
        return {"syncs": self.syncs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.syncs = int(state["syncs"])
