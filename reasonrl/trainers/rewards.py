"""Rewarders: how a rollout's responses become rewards.

A rewarder is called as ``rewarder(problems, responses) -> RewardOutput``: one problem row per
response (a group's problem repeated), and returns

* ``verdicts``: the task verifier's verdicts, where ``correct`` (accuracy, pass@k) comes from;
* ``rewards``: the scalar reward of each response, what the advantages are computed from;
* ``components``: each named component's reward per response (logged as ``reward/<name>``).

:func:`build_rewarder` builds the run's rewarder from the config:

* ``rewards: []`` (the default): the task's verifier alone (:class:`VerifierRewarder`), with
  ``verifier_options`` (``{format: logic-rl}``, ``{strict: true}``...: the options
  ``reasonrl verify --option`` takes); its verdict rewards are the rewards, as before rewarders.
* ``rewards: [{name: task}, {name: format, weight: 0.5}]``: a :class:`WeightedSum`, the total
  Σ wᵢ·rᵢ over the components (TRL's ``reward_funcs`` + ``reward_weights``). A component's
  ``name`` is ``task`` (the run's task verifier, with ``verifier_options``), a registered
  verifier (``format``, ``gsm8k``... run on the problem's ``answer`` with the component's
  ``options``), a registered rewarder, or ``path/to/file.py:name`` naming, in a user's file,
  a rewarder registered with :func:`register_rewarder`, a class built as
  ``cls(config, task, **options)``, or a function called as
  ``fn(problems, responses, **options) -> list[float]`` (or a :class:`RewardOutput`).
  The verdicts are the task verifier's whether or not ``task`` is a component (it then
  decides correctness only and costs one more verification).

Every verification goes through the batched path (``verify_workers`` processes, a hard
``verify_timeout`` per item), as the trainer's own verification always has.

A component reward that is not a finite number (NaN, ±inf, a string) stops the run with an error
naming the component and the response: a NaN would otherwise poison every advantage of its
batch, and treating it as 0 would hide a broken reward function behind a plausible curve.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

from reasonrl.config import ConfigError
from reasonrl.registry import FILE_SPEC_HINT, Registry, is_file_spec
from reasonrl.types import Verdict


@dataclass
class RewardOutput:
    """What a rewarder returns for ``B`` responses.

    Attributes:
        verdicts: ``B`` task verdicts (empty when the rewarder does not judge correctness).
        rewards: ``B`` combined scalar rewards.
        components: component name → ``B`` rewards of that component.
    """

    verdicts: list[Verdict]
    rewards: list[float]
    components: dict[str, list[float]] = field(default_factory=dict)


class Rewarder(Protocol):
    def __call__(self, problems: list[dict], responses: list[str]) -> RewardOutput: ...


class RewardError(ValueError):
    """A reward component returned something that is not one finite number per response."""


def _from_attribute(obj: Any) -> Callable[..., Rewarder]:
    """An unregistered object named by a file spec, as a rewarder factory: a class is the factory
    itself; a function (or callable object) is a reward function."""
    if isinstance(obj, type):
        return obj
    if not callable(obj):
        raise ConfigError(f"a reward component must be a class or a function, got {type(obj).__name__}")

    def factory(config: Any, task: Any, **options: Any) -> Rewarder:
        return FunctionRewarder(obj, options)

    return factory


# name -> factory(config, task, **options) -> Rewarder
REWARDER_REGISTRY: Registry[Callable[..., Rewarder]] = Registry("rewarder", from_attribute=_from_attribute)


def register_rewarder(name: str, **metadata: Any) -> Callable[[Callable[..., Rewarder]], Callable[..., Rewarder]]:
    """Decorator registering a rewarder factory (a class or function) called as
    ``factory(config, task, **options) -> Rewarder``; ``options`` come from the component's ``options``."""
    return REWARDER_REGISTRY.register(name, **metadata)


# ----------------------------------------------------------------------------------------------
# Rewarders
# ----------------------------------------------------------------------------------------------


class VerifierRewarder:
    """A verifier's verdicts, their rewards as the rewards.

    Args:
        verifier: ``"task"`` — each problem's task verifier, through
            :func:`reasonrl.envs.batch.verify_problems` — or a registered verifier name, run on
            each problem's ``answer``.
        options: the verifier's options (for ``"task"``: ``verifier_options``, applied to the
            verifier of every task in the batch).
        workers, timeout: worker processes and the per-item hard time limit (seconds).
    """

    def __init__(self, verifier: str = "task", options: dict[str, Any] | None = None, workers: int | None = 0,
                 timeout: float | None = None) -> None:
        from reasonrl import verifiers

        self.verifier = verifier
        self.options = dict(options or {})
        self.workers = workers
        self.timeout = timeout
        self._verifier = None if verifier == "task" else verifiers.get(verifier, **self.options)

    def __call__(self, problems: list[dict], responses: list[str]) -> RewardOutput:
        if self._verifier is None:
            from reasonrl.envs.batch import verify_problems

            options = {p.get("task"): self.options for p in problems} if self.options else None
            verdicts = verify_problems(problems, responses, workers=self.workers, timeout=self.timeout,
                                       verifier_options=options)
        else:
            answers = [p.get("answer") for p in problems]
            verdicts = self._verifier.verify_batch(list(responses), answers, workers=self.workers, timeout=self.timeout)
        rewards = [float(v.reward) for v in verdicts]
        return RewardOutput(verdicts=verdicts, rewards=rewards, components={self.verifier: rewards})


class FunctionRewarder:
    """A user's reward function ``fn(problems, responses, **options) -> list[float]`` (or a RewardOutput)."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any] | None = None) -> None:
        self.fn = fn
        self.options = dict(options or {})
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def __call__(self, problems: list[dict], responses: list[str]) -> RewardOutput:
        out = self.fn(problems, responses, **self.options)
        if isinstance(out, RewardOutput):
            return out
        rewards = checked_rewards(out, len(responses), self.name)
        return RewardOutput(verdicts=[], rewards=rewards, components={self.name: rewards})


class WeightedSum:
    """Σ wᵢ·rᵢ over named components; the verdicts are ``primary``'s (the task verifier's).

    Args:
        components: ``(name, weight, rewarder)`` triples; names are unique.
        primary: the task verifier's rewarder. When it is also a component (the same object) it
            runs once.
    """

    def __init__(self, components: Sequence[tuple[str, float, Rewarder]], primary: Rewarder) -> None:
        if not components:
            raise ValueError("a weighted sum needs at least one component")
        names = [name for name, _, _ in components]
        if len(set(names)) != len(names):
            raise ValueError(f"reward component names must be unique, got {names}")
        self.components = [(name, float(weight), rewarder) for name, weight, rewarder in components]
        self.primary = primary

    def __call__(self, problems: list[dict], responses: list[str]) -> RewardOutput:
        n = len(responses)
        values: dict[str, list[float]] = {}
        primary_out = None
        for name, _, rewarder in self.components:
            out = rewarder(problems, responses)
            values[name] = checked_rewards(out.rewards, n, name)
            if rewarder is self.primary:
                primary_out = out
        if primary_out is None:
            primary_out = self.primary(problems, responses)
        rewards = [0.0] * n
        for name, weight, _ in self.components:
            rewards = [total + weight * r for total, r in zip(rewards, values[name])]
        return RewardOutput(verdicts=list(primary_out.verdicts), rewards=rewards, components=values)


def checked_rewards(values: Any, n: int, name: str) -> list[float]:
    """``values`` as ``n`` finite floats; RewardError naming the component and response otherwise."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise RewardError(f"reward component {name!r} returned {type(values).__name__}; expected a list of {n} numbers")
    if len(values) != n:
        raise RewardError(f"reward component {name!r} returned {len(values)} rewards for {n} responses")
    out = []
    for i, value in enumerate(values):
        try:
            number = float(value) if not isinstance(value, (str, bytes)) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise RewardError(
                f"reward component {name!r} returned {value!r} for response {i}; a reward must be a finite number"
            )
        out.append(number)
    return out


# ----------------------------------------------------------------------------------------------
# Building the run's rewarder
# ----------------------------------------------------------------------------------------------


def build_rewarder(config: Any, task: Any) -> Rewarder:
    """The run's rewarder: the task verifier alone (``config.rewards`` empty) or the weighted sum
    of ``config.rewards``.

    Args:
        config: a :class:`reasonrl.config.TrainConfig` (``verifier_options``, ``rewards``,
            ``verify_workers``, ``verify_timeout``).
        task: the run's :class:`reasonrl.tasks.Task`.

    Raises:
        ConfigError: the verifier options or a component's options are not accepted.
    """
    if not config.rewards:
        return task_rewarder(config, task)
    return REWARDER_REGISTRY.get("weighted_sum")(config, task, components=config.rewards)


def task_rewarder(config: Any, task: Any) -> VerifierRewarder:
    """The task verifier with ``config.verifier_options``; the options are tried once here so a
    typo fails before any rollout."""
    try:
        task.make_verifier(**config.verifier_options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"verifier_options {config.verifier_options}: not accepted by task {task.name!r}'s verifier: {exc}") from None
    return VerifierRewarder("task", config.verifier_options, workers=config.verify_workers, timeout=config.verify_timeout)


@register_rewarder("verifier")
def verifier_rewarder(config: Any, task: Any, verifier: str = "task", **options: Any) -> VerifierRewarder:
    """A registered verifier (``verifier=NAME``, with ``options``) or the task's (``verifier=task``)."""
    if verifier == "task":
        if options:
            raise ConfigError("the task verifier's options go in verifier_options, not in a reward component's options")
        return task_rewarder(config, task)
    try:
        return VerifierRewarder(verifier, options, workers=config.verify_workers, timeout=config.verify_timeout)
    except (TypeError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ConfigError(f"reward component {verifier!r}: options {options} not accepted: {message}") from None


@register_rewarder("weighted_sum")
def weighted_sum_rewarder(config: Any, task: Any, components: Sequence[Any]) -> WeightedSum:
    """The weighted sum of ``components`` (entries as in ``TrainConfig.rewards``)."""
    primary = task_rewarder(config, task)
    built = []
    for entry in normalize_reward_components(components):
        name, options = entry["name"], entry["options"]
        kind = component_kind(name)
        if kind == "task":
            rewarder: Rewarder = primary
        elif kind == "verifier":
            rewarder = verifier_rewarder(config, task, verifier=name, **options)
        else:
            rewarder = REWARDER_REGISTRY.get(name)(config, task, **options)
        built.append((component_label(name), entry["weight"], rewarder))
    return WeightedSum(built, primary)


# ----------------------------------------------------------------------------------------------
# Reward components in the config
# ----------------------------------------------------------------------------------------------

COMPONENT_KEYS = ("name", "weight", "options")


def component_kind(name: str) -> str:
    """``"task"``, ``"rewarder"`` or ``"verifier"``: what a component name refers to. A file spec
    is imported here. Raises ConfigError listing the valid names."""
    from reasonrl import verifiers

    if name == "task":
        return "task"
    if name in REWARDER_REGISTRY or is_file_spec(name):
        REWARDER_REGISTRY.resolve(name)
        return "rewarder"
    if name in verifiers.names():
        return "verifier"
    valid = ["task", *REWARDER_REGISTRY.names(), *verifiers.names()]
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(
        f"unknown reward component {name!r}{hint}; valid names: task (the run's task verifier), "
        f"rewarders {', '.join(REWARDER_REGISTRY.names())}, verifiers {', '.join(verifiers.names())}, "
        f"or {FILE_SPEC_HINT}"
    )


def component_label(name: str) -> str:
    """The name a component's reward is logged under: the name, or a file spec's attribute."""
    return name.rpartition(":")[2] if is_file_spec(name) else name


def normalize_reward_components(entries: Sequence[Any], key: str = "rewards") -> tuple[dict[str, Any], ...]:
    """Check ``rewards`` entries and fill in the defaults: each becomes
    ``{"name": str, "weight": float, "options": dict}``; a bare string is ``{name: that}``.

    Raises:
        ConfigError: naming the entry (``rewards[1].weight``) and what is wrong.
    """
    out = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping like {{name: format, weight: 0.5}}, got {entry!r}")
        unknown = [k for k in entry if k not in COMPONENT_KEYS]
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; valid keys: {', '.join(COMPONENT_KEYS)}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}.name: expected a component name (task, a verifier, a rewarder or {FILE_SPEC_HINT}), got {name!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise ConfigError(f"{where}.weight: a weight must be a finite number, got {weight!r}")
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{where}.options: expected a mapping of option names to values, got {options!r}")
        if name == "task" and options:
            raise ConfigError(f"{where}.options: the task verifier's options go in verifier_options")
        try:
            component_kind(name)
        except ConfigError as exc:
            raise ConfigError(f"{where}.name: {exc}") from None
        out.append({"name": name, "weight": float(weight), "options": dict(options)})
    labels = [component_label(e["name"]) for e in out]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"{key}: component(s) {', '.join(repeated)} appear more than once")
    return tuple(out)
