"""The task registry: a task is a verifier plus a source of problems (a generator or a dataset).

Built-in tasks are registered here. ``register_task`` adds a user's task; after that one call
the task works in ``reasonrl gen``/``verify``/``train``/``eval``, ``reasonrl.make`` and
``gymnasium.make`` (the env side is wired in :mod:`reasonrl.envs`).
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from reasonrl import verifiers as _verifiers
from reasonrl.verifiers.base import Verifier


@dataclass(frozen=True)
class Task:
    """A registered verifiable task.

    Attributes:
        name: task name used on the CLI (``kk``, ``gsm8k``...).
        verifier: a registered verifier name, or a factory returning a :class:`Verifier`.
        generator: a registered generator name, a Generator class, or None for dataset-only tasks.
        dataset: a JSONL/Parquet path, a list of Problem rows, or a ``datasets.Dataset`` (or None).
        env_name: the Gymnasium id stem: ``reasonrl/<env_name>-v<env_version>``.
        env_version: bump when results for the same inputs would change.
        verifier_options: keyword options passed to the verifier factory.
        description: one line for ``reasonrl tasks``.
    """

    name: str
    verifier: str | Callable[..., Verifier]
    generator: Any = None
    dataset: Any = None
    env_name: str = ""
    env_version: int = 0
    verifier_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def env_id(self) -> str:
        return f"reasonrl/{self.env_name}-v{self.env_version}"

    def make_verifier(self, **options: Any) -> Verifier:
        merged = {**self.verifier_options, **options}
        if isinstance(self.verifier, str):
            return _verifiers.get(self.verifier, **merged)
        return self.verifier(**merged)

    def make_generator(self, config: Any = None, **difficulty: Any):
        from reasonrl import data_gen

        if self.generator is None:
            raise ValueError(f"task {self.name!r} has no generator; it is backed by a dataset")
        if isinstance(self.generator, str):
            return data_gen.get(self.generator, config, **difficulty)
        return self.generator(config, **difficulty)


_TASKS: dict[str, Task] = {}


def _env_name_from(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("-", "_").split("_"))


def register_task(
    name: str,
    generator_or_dataset: Any = None,
    verifier: str | Callable[..., Verifier] | None = None,
    *,
    env_name: str | None = None,
    env_version: int = 0,
    verifier_options: dict[str, Any] | None = None,
    description: str = "",
    overwrite: bool = False,
) -> Task:
    """Register a task. ``generator_or_dataset`` is a Generator class / registered generator name,
    or a dataset (path, list of Problem rows, ``datasets.Dataset``). ``verifier`` defaults to ``name``."""
    if name in _TASKS and not overwrite:
        raise ValueError(f"task {name!r} is already registered (pass overwrite=True to replace it)")
    generator, dataset = None, None
    if isinstance(generator_or_dataset, type) or (
        isinstance(generator_or_dataset, str) and not generator_or_dataset.endswith((".jsonl", ".json", ".parquet"))
    ):
        generator = generator_or_dataset
    else:
        dataset = generator_or_dataset
    task = Task(
        name=name,
        verifier=verifier if verifier is not None else name,
        generator=generator,
        dataset=dataset,
        env_name=env_name or _env_name_from(name),
        env_version=env_version,
        verifier_options=dict(verifier_options or {}),
        description=description,
    )
    _TASKS[name] = task
    _after_register(task)
    return task


_register_hooks: list[Callable[[Task], None]] = []


def _after_register(task: Task) -> None:
    for hook in _register_hooks:
        hook(task)


def get_task(name: str) -> Task:
    """A task by name, or ``module.path:attr`` to import a user's module that registers it."""
    _load_builtins()
    if name not in _TASKS and ":" in name:
        module, _, attr = name.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        if isinstance(obj, Task):
            return obj
        if isinstance(obj, str) and obj in _TASKS:
            return _TASKS[obj]
        raise ValueError(f"{name!r} must name a Task object (the return value of register_task)")
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown task {name!r}.{hint} Available tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def list_tasks() -> list[Task]:
    _load_builtins()
    return [_TASKS[k] for k in sorted(_TASKS)]


_loaded = False


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    builtin = [
        # name, generator, verifier, env name, description
        ("gsm8k", None, "gsm8k", "Gsm8k", "grade-school math, exact numeric match"),
        ("math", None, "math", "Math", "competition math, flexible symbolic match"),
        ("code", None, "code", "Code", "Python programs run against tests in a sandbox"),
        ("ifeval", None, "ifeval", "IFEval", "instruction-following constraints, strict"),
        ("ifeval-loose", None, "ifeval-loose", "IFEvalLoose", "instruction-following constraints, loose"),
        ("kk", "kk", "kk", "KnightsKnaves", "Knights & Knaves logic puzzles (procedural)"),
        ("arith", "arith", "arith", "Arithmetic", "arithmetic expressions to evaluate (procedural)"),
        ("countdown", "countdown", "countdown", "Countdown", "reach a target with the given numbers (procedural)"),
        ("graph_coloring", "graph_coloring", "graph_coloring", "GraphColoring", "proper k-coloring of a graph (procedural)"),
    ]
    from reasonrl import data_gen

    available_generators = set(data_gen.names())
    available_verifiers = set(_verifiers.names())
    for name, gen, ver, env, desc in builtin:
        if ver not in available_verifiers or (gen is not None and gen not in available_generators):
            continue  # a module not built yet in this checkout
        if name not in _TASKS:
            register_task(name, gen, ver, env_name=env, description=desc)
    # Tasks from installed packages: entry point group "reasonrl.tasks" (each loads a module that registers).
    from importlib.metadata import entry_points

    for ep in entry_points(group="reasonrl.tasks"):
        ep.load()
