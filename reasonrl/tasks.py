"""The task registry: a task is a verifier plus a source of problems (a generator or a dataset).

Built-in tasks are registered here. ``register_task`` adds a user's task; after that one call
the task works in ``reasonrl gen``/``verify``/``train``/``eval``, ``reasonrl.make`` and
``gymnasium.make`` (the env side is wired in :mod:`reasonrl.envs`).

Loading a user's task module, two ways:

* on the command line, ``--task mypkg.tasks:my_task`` (a module path, or a file path such as
  ``examples/my_task.py:task``, then ``:`` and the module attribute holding the
  :class:`Task` that ``register_task`` returned, or the task's name as a string);
* from an installed package, an entry point in the group ``reasonrl.tasks``; every entry point of
  that group is loaded the first time the registry is read::

      [project.entry-points."reasonrl.tasks"]
      my_task = "mypkg.tasks"

Dataset-backed tasks read Problem rows from a JSONL / JSON / Parquet file, a directory saved
by ``datasets.Dataset.save_to_disk``, a list of rows or a ``datasets.Dataset``
(:func:`load_problem_rows`).
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from reasonrl import verifiers as _verifiers
from reasonrl.registry import import_module_or_file
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
        oracle: optional ``oracle(problem) -> str``, a response that scores 1 (contract checks);
            falls back to the generator's ``oracle_response`` and ``metadata["worked_solution"]``.
        near_misses: optional ``near_misses(problem) -> list[str]``, almost-right responses that
            must score 0; falls back to the generator's ``near_miss_responses``.
    """

    name: str
    verifier: str | Callable[..., Verifier]
    generator: Any = None
    dataset: Any = None
    env_name: str = ""
    env_version: int = 0
    verifier_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    oracle: Callable[[dict[str, Any]], str] | None = None
    near_misses: Callable[[dict[str, Any]], list[str]] | None = None

    @property
    def env_id(self) -> str:
        return f"reasonrl/{self.env_name}-v{self.env_version}"

    def make_verifier(self, **options: Any) -> Verifier:
        merged = {**self.verifier_options, **options}
        if isinstance(self.verifier, str):
            return _verifiers.get(self.verifier, **merged)
        from reasonrl.verifiers.base import build  # applies the shared format=... options

        return build(self.verifier, self.name, **merged)

    def make_generator(self, config: Any = None, **difficulty: Any):
        from reasonrl import data_gen

        if self.generator is None:
            raise ValueError(f"task {self.name!r} has no generator; it is backed by a dataset")
        if isinstance(self.generator, str):
            return data_gen.get(self.generator, config, **difficulty)
        return self.generator(config, **difficulty)

    def load_problems(self, dataset: Any = None) -> list[dict[str, Any]]:
        """The Problem rows of ``dataset`` (default: the task's own), validated; see :func:`load_problem_rows`."""
        source = self.dataset if dataset is None else dataset
        if source is None:
            raise ValueError(
                f"task {self.name!r} is backed by a dataset but none was given: pass dataset=PATH "
                "(.jsonl, .json, .parquet, a saved datasets folder), a list of Problem rows or a datasets.Dataset"
            )
        return load_problem_rows(source, task_name=self.name)

    def oracle_response(self, problem: dict[str, Any]) -> str | None:
        """A response that should score 1 on ``problem``, or None when the task cannot say."""
        if self.oracle is not None:
            return self.oracle(problem)
        if self.generator is not None:
            try:
                generator = self.make_generator()
            except Exception:  # a generator whose defaults need knobs: fall back to the row itself
                generator = None
            method = getattr(generator, "oracle_response", None)
            if method is not None:
                found = method(problem)
                if found is not None:
                    return found
        metadata = problem.get("metadata") or {}
        return metadata.get("oracle_response", metadata.get("worked_solution"))

    def near_miss_responses(self, problem: dict[str, Any]) -> list[str]:
        """Well-formed responses that are almost right and must score 0 (may be empty)."""
        if self.near_misses is not None:
            return list(self.near_misses(problem))
        if self.generator is not None:
            try:
                generator = self.make_generator()
            except Exception:
                generator = None
            method = getattr(generator, "near_miss_responses", None)
            if method is not None:
                found = list(method(problem))
                if found:
                    return found
        return list((problem.get("metadata") or {}).get("near_miss_responses") or [])


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
    oracle: Callable[[dict[str, Any]], str] | None = None,
    near_misses: Callable[[dict[str, Any]], list[str]] | None = None,
) -> Task:
    """Register a task. ``generator_or_dataset`` is a Generator class / registered generator name,
    or a dataset (path, list of Problem rows, ``datasets.Dataset``). ``verifier`` defaults to ``name``
    and may be a registered verifier name or a factory (e.g. a Verifier subclass).

    ``oracle`` / ``near_misses`` feed the contract checks (see :class:`Task`). The env id
    ``reasonrl/<env_name>-v<env_version>`` must not belong to another task.
    """
    _load_builtins()  # so a user's task cannot take a built-in task's name or env id unnoticed
    if name in _TASKS and not overwrite:
        raise ValueError(f"task {name!r} is already registered (pass overwrite=True to replace it)")
    wanted_env = f"reasonrl/{env_name or _env_name_from(name)}-v{env_version}"
    for other in _TASKS.values():
        if other.name != name and other.env_id == wanted_env:
            raise ValueError(
                f"env id {wanted_env!r} of task {name!r} is already used by task {other.name!r}; pass env_name=... or env_version=..."
            )
    generator, dataset = None, None
    if isinstance(generator_or_dataset, type) or (
        isinstance(generator_or_dataset, str)
        and not generator_or_dataset.endswith((".jsonl", ".json", ".parquet"))
        and "/" not in generator_or_dataset  # a path (e.g. a saved datasets folder) is a dataset
        and not os.path.exists(generator_or_dataset)
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
        oracle=oracle,
        near_misses=near_misses,
    )
    _TASKS[name] = task
    _after_register(task)
    return task


_register_hooks: list[Callable[[Task], None]] = []
# Called with the Task being removed by unregister_task (the env side drops its gymnasium id).
_unregister_hooks: list[Callable[[Task], None]] = []


def _after_register(task: Task) -> None:
    for hook in _register_hooks:
        hook(task)


def unregister_task(name: str) -> Task:
    """Remove a task (and its gymnasium env id); mainly for tests and notebooks that re-register."""
    task = _TASKS.pop(name)
    for hook in _unregister_hooks:
        hook(task)
    return task


def get_task(name: str) -> Task:
    """A task by name, or ``module.path:attr`` to import a user's module that registers it."""
    _load_builtins()
    if name not in _TASKS and ":" in name:
        module, _, attr = name.rpartition(":")
        obj = getattr(_import_task_module(module), attr, None)
        if obj is None:
            raise ValueError(f"{name!r}: module {module!r} has no attribute {attr!r}")
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


# The loader lives with the registries, which load user files the same way (``file.py:name``).
_import_task_module = import_module_or_file


def list_tasks() -> list[Task]:
    _load_builtins()
    return [_TASKS[k] for k in sorted(_TASKS)]


_loaded = False

# name, generator, verifier, env name, description. Read by reasonrl.envs.registration to
# register the gymnasium ids at `import reasonrl` without importing any task module.
BUILTIN_TASKS = (
        ("gsm8k", None, "gsm8k", "Gsm8k", "grade-school math, exact numeric match"),
        ("math", None, "math", "Math", "competition math, flexible symbolic match"),
        ("code", None, "code", "Code", "Python programs run against tests in a sandbox"),
        ("ifeval", None, "ifeval", "IFEval", "instruction-following constraints, strict"),
        ("ifeval-loose", None, "ifeval-loose", "IFEvalLoose", "instruction-following constraints, loose"),
        ("kk", "kk", "kk", "KnightsKnaves", "Knights & Knaves logic puzzles (procedural)"),
        ("arith", "arith", "arith", "Arithmetic", "arithmetic expressions to evaluate (procedural)"),
        ("countdown", "countdown", "countdown", "Countdown", "reach a target with the given numbers (procedural)"),
        ("graph_coloring", "graph_coloring", "graph_coloring", "GraphColoring", "proper k-coloring of a graph (procedural)"),
)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    builtin = BUILTIN_TASKS
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


# ---------------------------------------------------------------------------------------
# Dataset-backed tasks: Problem rows from files, lists and datasets.Dataset

# Fields that data_gen's Arrow/Parquet export stores as JSON text (one Arrow type per column).
_JSON_ENCODED_FIELDS = ("answer", "difficulty", "metadata")


def load_problem_rows(source: Any, task_name: str | None = None) -> list[dict[str, Any]]:
    """Problem rows from ``source``, each checked by :func:`reasonrl.types.validate_problem`.

    ``source`` is one of: a path to ``.jsonl`` (one row a line), ``.json`` (an array of rows),
    ``.parquet``, or a folder written by ``datasets.Dataset.save_to_disk``; a list/tuple of row
    dicts; a ``datasets.Dataset``. Rows written by :func:`reasonrl.data_gen.dataset.encode_row`
    (``answer``/``difficulty``/``metadata`` as JSON text, as in Parquet and HF exports) are decoded.
    A row without ``task`` gets ``task_name``; missing ``difficulty``/``metadata`` become ``{}``.
    Errors name the file and line (or row index) and the field.
    """
    from reasonrl.types import ProblemError

    rows: Sequence[Any]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = str(path)
        if path.is_dir():
            import datasets

            rows = list(datasets.load_from_disk(str(path)))
            where = lambda i: f"{label}: row {i}"  # noqa: E731
        elif not path.exists():
            raise FileNotFoundError(f"dataset file {label!r} does not exist")
        elif path.suffix == ".jsonl":
            rows = []
            with open(path, encoding="utf-8") as handle:
                for line_no, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        rows.append((line_no, json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise ProblemError(f"{label}: line {line_no}: invalid JSON ({exc.msg})") from None
            return [_normalize_row(row, task_name, f"{label}: line {n}") for n, row in rows]
        elif path.suffix == ".json":
            with open(path, encoding="utf-8") as handle:
                rows = json.load(handle)
            if not isinstance(rows, list):
                raise ProblemError(f"{label}: a .json dataset must hold an array of Problem rows")
            where = lambda i: f"{label}: row {i}"  # noqa: E731
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
            where = lambda i: f"{label}: row {i}"  # noqa: E731
        else:
            raise ValueError(f"dataset {label!r}: unknown format {path.suffix!r}; use .jsonl, .json, .parquet or a saved datasets folder")
    elif isinstance(source, (list, tuple)):
        rows = source
        where = lambda i: f"row {i}"  # noqa: E731
    elif hasattr(source, "features") and hasattr(source, "__iter__"):  # datasets.Dataset, duck-typed
        rows = list(source)
        where = lambda i: f"dataset row {i}"  # noqa: E731
    else:
        raise TypeError(
            f"cannot read Problem rows from {type(source).__name__}: give a path (.jsonl/.json/.parquet/saved datasets folder), "
            "a list of rows or a datasets.Dataset"
        )
    return [_normalize_row(row, task_name, where(i)) for i, row in enumerate(rows)]


def _normalize_row(row: Any, task_name: str | None, where: str) -> dict[str, Any]:
    from reasonrl.types import ProblemError, validate_problem

    if not isinstance(row, dict):
        raise ProblemError(f"{where}: a problem must be a JSON object, got {type(row).__name__}")
    row = dict(row)
    if isinstance(row.get("difficulty"), str) or isinstance(row.get("metadata"), str):
        for key in _JSON_ENCODED_FIELDS:  # written by encode_row: decode all three together
            if isinstance(row.get(key), str):
                try:
                    row[key] = json.loads(row[key])
                except json.JSONDecodeError:
                    raise ProblemError(f"{where}: field {key!r} holds text that is not the JSON its export promised") from None
    if task_name is not None and not row.get("task"):
        row["task"] = task_name
    if isinstance(row.get("prompt"), str):
        row["prompt"] = [{"role": "user", "content": row["prompt"]}]
    elif isinstance(row.get("prompt"), list):
        row["prompt"] = [dict(message) for message in row["prompt"]]
    for key in ("difficulty", "metadata"):
        if row.get(key) is None:
            row[key] = {}
    if "id" in row and not isinstance(row["id"], str):
        row["id"] = str(row["id"])
    return validate_problem(row, where=where)
