"""Build datasets from generators: reproducible, deduplicated, split, mixed, parallel.

>>> from reasonrl.data_gen.dataset import generate_dataset
>>> rows = generate_dataset("kk", n=100, seed=0, difficulty={"people": 4})
>>> len(rows), rows[0]["task"]
(100, 'kk')

Reproducibility: item ``i`` is generated from a seed derived from ``(seed, i)`` alone
(:func:`derive_seed`), so the output is byte-identical whatever the number of worker
processes, and a larger ``n`` extends a smaller one's prefix. When item ``i`` repeats an
earlier puzzle (same :meth:`Generator.canonical` form) it is redrawn from
``(seed, i, attempt)``; duplicates are decided in index order in the parent process, so
this too does not depend on the workers.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import sys
from typing import Any, Iterable, Iterator, Mapping, Sequence

from reasonrl.data_gen.base import ConfigError, Generator, make_config

# How many redraws one item gets before we conclude the puzzle space is exhausted.
MAX_ATTEMPTS_PER_ITEM = 64


def derive_seed(seed: int, index: int, attempt: int = 0, salt: str = "") -> int:
    """A 63-bit seed for item ``index`` (redraw ``attempt``) of a dataset built with ``seed``.

    Hash-derived rather than ``seed + index`` so that datasets with nearby seeds share no items.
    """
    digest = hashlib.blake2b(f"{seed}/{salt}/{index}/{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def resolve_generator(task_or_generator: Any, difficulty: Mapping[str, Any] | None = None) -> Generator:
    """A configured :class:`Generator` from a task name, generator name, Generator class or instance.

    Names are looked up among registered tasks first (so a user's ``register_task`` works),
    then among registered generators. ``difficulty`` overrides the config's knobs and is
    validated (an unknown key raises :class:`ConfigError` naming the valid keys).
    """
    difficulty = dict(difficulty or {})
    if isinstance(task_or_generator, Generator):
        if not difficulty:
            return task_or_generator
        merged = {**dataclasses.asdict(task_or_generator.config), **difficulty}
        return type(task_or_generator)(make_config(task_or_generator.Config, merged, owner=task_or_generator.name))
    if isinstance(task_or_generator, type) and issubclass(task_or_generator, Generator):
        return task_or_generator(make_config(task_or_generator.Config, difficulty, owner=task_or_generator.name))
    if isinstance(task_or_generator, str) and ":" in task_or_generator:
        return resolve_generator(_import_reference(task_or_generator), difficulty)
    if isinstance(task_or_generator, str):
        from reasonrl import data_gen, tasks

        name = task_or_generator
        try:
            task = tasks.get_task(name)
        except KeyError:
            task = None
        if task is not None and task.generator is not None:
            gen_ref = task.generator
            cls = data_gen.base._REGISTRY.get(gen_ref) if isinstance(gen_ref, str) else gen_ref
            if cls is None:
                return data_gen.get(gen_ref, **difficulty)
            return cls(make_config(cls.Config, difficulty, owner=name))
        if task is not None:
            raise ValueError(f"task {name!r} is backed by a dataset, not a generator; nothing to generate")
        if name in data_gen.names():
            cls = data_gen.base._REGISTRY[name]
            return cls(make_config(cls.Config, difficulty, owner=name))
        available = sorted({t.name for t in tasks.list_tasks() if t.generator is not None} | set(data_gen.names()))
        raise KeyError(f"unknown task {name!r}; tasks with a generator: {', '.join(available)}")
    from reasonrl.tasks import Task

    if isinstance(task_or_generator, Task):
        if task_or_generator.generator is None:
            raise ValueError(f"task {task_or_generator.name!r} is backed by a dataset, not a generator; nothing to generate")
        return resolve_generator(task_or_generator.generator, difficulty)
    raise TypeError(f"expected a task name, Generator class or instance, got {type(task_or_generator).__name__}")


def _import_reference(reference: str) -> Any:
    """``module.path:attr`` or ``path/to/file.py:attr`` -> the attribute (a Generator class, a Task or a name)."""
    from reasonrl.tasks import _import_task_module

    module, _, attr = reference.rpartition(":")
    try:
        loaded = _import_task_module(module)
    except ModuleNotFoundError as exc:
        raise KeyError(f"cannot import {module!r} for task {reference!r}: {exc}") from None
    if not hasattr(loaded, attr):
        raise KeyError(f"{reference!r}: module {module!r} has no attribute {attr!r}")
    return getattr(loaded, attr)


def canonical_key(problem: Mapping[str, Any], generator: Generator | None = None) -> str:
    """The dedup key of a Problem row: a hash of its generator's canonical form.

    Without ``generator`` the registered generator named by ``problem["task"]`` is used when
    there is one, else the base rule (prompt + answer).
    """
    if generator is None:
        generator = _generator_for_task(problem.get("task", ""))
    if generator is None:
        text = Generator.canonical(None, dict(problem))  # type: ignore[arg-type]
    else:
        text = generator.canonical(dict(problem))
    return hashlib.sha1(f"{problem.get('task', '')}\0{text}".encode()).hexdigest()


def _dedup_key(row: Mapping[str, Any], generator: Generator) -> str:
    """The key :func:`generate_dataset` deduplicates on: the id when ids are canonical, else :func:`canonical_key`."""
    return row["id"] if generator.canonical_ids else canonical_key(row, generator)


_GEN_CACHE: dict[str, Generator | None] = {}


def _generator_for_task(task: str) -> Generator | None:
    if task not in _GEN_CACHE:
        try:
            _GEN_CACHE[task] = resolve_generator(task)
        except (KeyError, ValueError, ConfigError, TypeError):
            _GEN_CACHE[task] = None
    return _GEN_CACHE[task]


# ---------------------------------------------------------------------------------------
# Generation across processes

_WORKER_GENERATOR: Generator | None = None


def _init_worker(generator: Generator) -> None:
    global _WORKER_GENERATOR
    _WORKER_GENERATOR = generator


def _generate_in_worker(seed: int) -> dict[str, Any]:
    assert _WORKER_GENERATOR is not None
    return _WORKER_GENERATOR.generate(seed)


class _Producer:
    """Yields ``generator.generate(seed)`` for a stream of seeds, in order, in this process or a pool."""

    def __init__(self, generator: Generator, workers: int) -> None:
        self.generator = generator
        self.workers = max(1, int(workers or 1))
        self.pool = None
        if self.workers > 1:
            # The standard library's pool, not multiprocess: rows travel back through the C pickler,
            # several times faster than dill for these dicts. Under fork the generator itself is
            # inherited, not pickled, so generators defined in a script or notebook work too.
            import multiprocessing

            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            self.pool = multiprocessing.get_context(method).Pool(self.workers, _init_worker, (generator,))

    def map(self, seeds: Sequence[int]) -> Iterator[dict[str, Any]]:
        if self.pool is None or len(seeds) < 2 * self.workers:
            return (self.generator.generate(s) for s in seeds)
        chunk = max(1, min(256, len(seeds) // (self.workers * 8)))
        return self.pool.imap(_generate_in_worker, seeds, chunksize=chunk)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while rows pile up.

    Problem rows are plain acyclic dicts and lists, freed by reference counting. Left on,
    the collector re-scans the growing pile of rows again and again (about a third of K&K
    generation time). On the way out, everything allocated meanwhile is moved straight to
    the oldest generation (``gc.freeze()`` then ``gc.unfreeze()``, two O(1) list moves), where
    the rows would end up after two more scans anyway; nothing is left frozen. Skipped when
    the caller has frozen objects of its own (``gc.get_freeze_count() > 0``), so that their
    freeze is never undone.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _progress_bar(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="puzzle", file=sys.stderr, dynamic_ncols=True)


def _fill(
    generator: Generator,
    producer: _Producer,
    n: int,
    seed: int,
    seen: set[str],
    salt: str,
    dedup: bool,
    bar,
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` rows as they are made; redraw duplicates of ``seen`` in index order (deterministic)."""
    block = max(256, 64 * producer.workers)
    for start in range(0, n, block):
        indices = range(start, min(n, start + block))
        for index, problem in zip(indices, producer.map([derive_seed(seed, i, 0, salt) for i in indices])):
            attempt = 0
            while dedup:
                key = problem["id"] if generator.canonical_ids else canonical_key(problem, generator)
                if key not in seen:
                    seen.add(key)
                    break
                attempt += 1
                if attempt >= MAX_ATTEMPTS_PER_ITEM:
                    raise ValueError(
                        f"{generator.name}: only {len(seen)} distinct puzzles found after {attempt} redraws of item "
                        f"{index}; the puzzle space at difficulty {_knobs(generator)} is too small for this many "
                        "items (raise the difficulty, lower n, or pass dedup=False)"
                    )
                problem = generator.generate(derive_seed(seed, index, attempt, salt))
            if bar is not None:
                bar.update(1)
            yield problem


def _knobs(generator: Generator) -> dict[str, Any]:
    try:
        return dataclasses.asdict(generator.config)
    except TypeError:
        return {}


def generate_dataset(
    task_or_generator: Any,
    n: int,
    seed: int = 0,
    difficulty: Mapping[str, Any] | None = None,
    workers: int = 1,
    progress: bool = False,
    dedup: bool = True,
    exclude: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """``n`` Problem rows from a generator, reproducible and free of duplicates.

    Args:
        task_or_generator: task or generator name (``"kk"``), a Generator class or instance.
        n: number of rows.
        seed: dataset seed; item ``i`` uses :func:`derive_seed` ``(seed, i)``.
        difficulty: knob overrides, e.g. ``{"people": 5}`` (validated).
        workers: processes to generate in (output identical for any value).
        progress: show a tqdm bar on stderr.
        dedup: redraw items whose canonical form repeats an earlier item (default on).
        exclude: rows no generated item may equal (e.g. a test set), by canonical form.

    Returns:
        A list of Problem dicts (see :func:`reasonrl.types.make_problem`). :func:`iter_dataset`
        yields the same rows one at a time, for datasets too large to hold.
    """
    rows = iter_dataset(task_or_generator, n, seed, difficulty, workers, progress, dedup, exclude)
    with _gc_paused():
        return list(rows)


def iter_dataset(
    task_or_generator: Any,
    n: int,
    seed: int = 0,
    difficulty: Mapping[str, Any] | None = None,
    workers: int = 1,
    progress: bool = False,
    dedup: bool = True,
    exclude: Iterable[Mapping[str, Any]] = (),
) -> Iterator[dict[str, Any]]:
    """The rows of :func:`generate_dataset` (same arguments), yielded as they are made.

    Only the deduplication keys (one short string per row) are kept, so memory does not grow
    with the rows; ``reasonrl gen`` writes each row as it comes.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    generator = resolve_generator(task_or_generator, difficulty)
    seen = {_dedup_key(row, generator) for row in exclude}
    return _closing_fill(generator, [(generator, n, "")], seed, seen, bool(dedup), workers, progress)


def _closing_fill(
    base: Generator,
    parts: Sequence[tuple[Generator, int, str]],
    seed: int,
    seen: set[str],
    dedup: bool,
    workers: int,
    progress: bool,
) -> Iterator[dict[str, Any]]:
    """Rows of each ``(generator, count, salt)`` part in turn; pools and the bar closed at the end."""
    bar = _progress_bar(sum(count for _, count, _ in parts), progress, base.name or "generate")
    try:
        for generator, count, salt in parts:
            producer = _Producer(generator, workers)
            try:
                yield from _fill(generator, producer, count, seed, seen, salt, dedup, bar)
            finally:
                producer.close()
    finally:
        if bar is not None:
            bar.close()


def generate_splits(
    task_or_generator: Any,
    sizes: Mapping[str, int],
    seed: int = 0,
    difficulty: Mapping[str, Any] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Named splits (``{"train": 1000, "test": 100}``) that share no puzzle (canonical form).

    One deduplicated stream is generated and cut in the order of ``sizes``, so the splits
    are disjoint by construction and each is reproducible from ``seed``.
    """
    total = sum(int(v) for v in sizes.values())
    rows = generate_dataset(task_or_generator, total, seed, difficulty, workers=workers, progress=progress)
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = rows[start : start + int(size)]
        start += int(size)
    return out


def split_rows(
    rows: Sequence[Mapping[str, Any]], test_size: float | int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split existing rows (e.g. read from a file) into train/test with no puzzle in both.

    Rows are first deduplicated on their canonical form (:func:`canonical_key`), then
    shuffled with ``seed`` and cut; ``test_size`` is a fraction (< 1) or a count.
    """
    import random

    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(canonical_key(row), dict(row))
    items = list(unique.values())
    random.Random(seed).shuffle(items)
    n_test = int(round(test_size * len(items))) if isinstance(test_size, float) and test_size < 1 else int(test_size)
    if not 0 <= n_test <= len(items):
        raise ValueError(f"test_size {test_size!r} is out of range for {len(items)} unique rows")
    return items[n_test:], items[:n_test]


def _largest_remainder(n: int, weights: Sequence[float]) -> list[int]:
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError(f"proportions must be non-negative and not all zero, got {list(weights)}")
    exact = [n * w / total for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda j: (-(exact[j] - counts[j]), j))
    for j in order[: n - sum(counts)]:
        counts[j] += 1
    return counts


def generate_curriculum(
    task_or_generator: Any,
    n: int,
    levels: Sequence[tuple[Mapping[str, Any], float]] | Mapping[str, float],
    seed: int = 0,
    order: str = "curriculum",
    workers: int = 1,
    progress: bool = False,
    exclude: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, Any]]:
    """A difficulty mix: ``levels`` are ``(difficulty, proportion)`` pairs, e.g.
    ``[({"people": 3}, 0.5), ({"people": 5}, 0.3), ({"people": 7}, 0.2)]``.

    Counts are split by largest remainder (they sum to ``n`` exactly). ``order="curriculum"``
    keeps the levels in the given order (easy first, for curriculum training);
    ``order="shuffle"`` interleaves them with a seeded shuffle. No puzzle repeats across
    levels. A ``{"people=3": 0.5, ...}`` mapping is accepted too (knobs joined by ``,``).
    :func:`iter_curriculum` yields the curriculum-ordered rows one at a time.
    """
    import random

    if order not in ("curriculum", "shuffle"):
        raise ValueError(f"order must be 'curriculum' or 'shuffle', got {order!r}")
    with _gc_paused():
        rows = list(iter_curriculum(task_or_generator, n, levels, seed, workers, progress, exclude))
    if order == "shuffle":
        random.Random(seed).shuffle(rows)
    return rows


def iter_curriculum(
    task_or_generator: Any,
    n: int,
    levels: Sequence[tuple[Mapping[str, Any], float]] | Mapping[str, float],
    seed: int = 0,
    workers: int = 1,
    progress: bool = False,
    exclude: Iterable[Mapping[str, Any]] = (),
) -> Iterator[dict[str, Any]]:
    """The rows of :func:`generate_curriculum` in curriculum order, yielded as they are made
    (a shuffled mix needs every row at once)."""
    if isinstance(levels, Mapping):
        levels = [(_parse_level(spec), weight) for spec, weight in levels.items()]
    if not levels:
        raise ValueError("levels must name at least one (difficulty, proportion) pair")
    counts = _largest_remainder(n, [float(w) for _, w in levels])
    base = resolve_generator(task_or_generator)
    seen: set[str] = {_dedup_key(row, base) for row in exclude}
    parts = [
        (resolve_generator(task_or_generator, difficulty), count, f"level{level_index}")
        for level_index, ((difficulty, _), count) in enumerate(zip(levels, counts))
    ]
    return _closing_fill(base, parts, seed, seen, True, workers, progress)


def _parse_level(spec: str) -> dict[str, str]:
    out = {}
    for part in filter(None, (p.strip() for p in spec.split(";" if ";" in spec else " "))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"level {spec!r}: expected key=value pairs, got {part!r}")
        out[key.strip()] = value.strip()
    return out


# ---------------------------------------------------------------------------------------
# Hugging Face datasets

# Fields whose value differs in shape between tasks (a string for arith, a dict for kk, nested
# lists of mixed types in kk metadata): Arrow needs one type per column, so they travel as JSON text.
JSON_FIELDS = ("answer", "difficulty", "metadata")


def encode_row(row: Mapping[str, Any], json_fields: Sequence[str] = JSON_FIELDS) -> dict[str, Any]:
    """A Problem row with ``json_fields`` serialized to JSON strings (Arrow/Parquet friendly)."""
    out = dict(row)
    for key in json_fields:
        if key in out:
            out[key] = json.dumps(out[key], ensure_ascii=False, sort_keys=True)
    return out


def decode_row(row: Mapping[str, Any], json_fields: Sequence[str] = JSON_FIELDS) -> dict[str, Any]:
    """Inverse of :func:`encode_row`."""
    out = dict(row)
    for key in json_fields:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    if "prompt" in out and out["prompt"] is not None:
        out["prompt"] = [dict(m) for m in out["prompt"]]
    return out


def to_hf_dataset(rows: Sequence[Mapping[str, Any]]):
    """A ``datasets.Dataset`` of Problem rows.

    ``prompt`` stays a native list of ``{role, content}`` structs; ``answer``, ``difficulty``
    and ``metadata`` are JSON strings (see :data:`JSON_FIELDS`; :func:`decode_row` restores
    them, e.g. ``ds.map(decode_row)`` is *not* possible because Arrow needs one type, so
    decode when reading: ``[decode_row(r) for r in ds]``).
    """
    import datasets

    columns = ["id", "task", "prompt", *JSON_FIELDS]
    encoded = [encode_row(r) for r in rows]
    data = {c: [r.get(c) for r in encoded] for c in columns}
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "task": datasets.Value("string"),
            "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
            **{c: datasets.Value("string") for c in JSON_FIELDS},
        }
    )
    return datasets.Dataset.from_dict(data, features=features)
