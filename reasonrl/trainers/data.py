"""Where trainers get problems: deterministic train streams and held-out splits, split by canonical form.

A :class:`ProblemSource` serves a task's problems in three disjoint parts:

* ``heldout("test")`` — the evaluation problems (pass@1 before/after RL);
* ``heldout("val")`` — a validation split (the SFT warm-up's early stop);
* ``stream(name)`` — an endless, reproducible sequence of training problems (``"sft"``, ``"rl"``),
  which skips every problem whose canonical form is in a held-out split.

For a generator task, problem ``i`` of a stream is ``generator.generate(seed_i)`` with
``seed_i`` a hash of (run seed, stream name, i); the canonical form is ``generator.canonical``
(``arith``: the expression) or, without one, the prompt text. A stream's position is one integer
(:attr:`ProblemStream.position`), which the trainer checkpoints for exact resume.

For a dataset task (rows from a JSONL/Parquet file), the test split is ``eval_dataset`` when given,
else a deterministic slice of the rows picked by hashing their canonical form; training rows are
served in a seeded shuffled order, epoch after epoch.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from typing import Any, Iterator, Sequence

from reasonrl.types import validate_problem


def derived_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts (stable across runs and platforms)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def canonical_key(problem: dict[str, Any], generator: Any = None) -> str:
    """The canonical form used to keep held-out problems out of training."""
    if generator is not None and hasattr(generator, "canonical"):
        try:
            return str(generator.canonical(problem))
        except (KeyError, TypeError, ValueError):
            pass
    return json.dumps(problem.get("prompt"), sort_keys=True)


class ProblemStream:
    """An endless, reproducible sequence of training problems; ``position`` is its checkpointable state."""

    def __init__(self, source: "ProblemSource", name: str, position: int = 0) -> None:
        self.source = source
        self.name = name
        self.position = position

    def take(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` problems (advances ``position``)."""
        out = []
        while len(out) < count:
            problem = self.source._train_problem(self.name, self.position)
            self.position += 1
            if problem is not None:
                out.append(problem)
        return out

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.take(1)[0]


class ProblemSource:
    """Problems of one task for training and evaluation.

    Args:
        task: a registered :class:`reasonrl.tasks.Task`.
        seed: the run seed (all splits and streams derive from it).
        task_options: generator difficulty knobs.
        dataset / eval_dataset: Problem rows (path or list) for dataset-backed tasks.
        num_test / num_val: sizes of the held-out splits.
    """

    def __init__(
        self,
        task: Any,
        seed: int = 0,
        task_options: dict[str, Any] | None = None,
        dataset: Any = None,
        eval_dataset: Any = None,
        num_test: int = 200,
        num_val: int = 128,
        revision: str = "",
    ) -> None:
        self.task = task
        self.revision = revision
        self.seed = seed
        self.generator = None
        self.rows: list[dict[str, Any]] | None = None
        dataset = dataset or getattr(task, "dataset", None)
        if dataset:
            self.rows = _load_rows(dataset, task.name, revision)
        elif task.generator is not None:
            self.generator = task.make_generator(None, **dict(task_options or {}))
        else:
            raise ValueError(
                f"task {task.name!r} has no generator: give it problems with dataset=PATH.jsonl (Problem rows)"
            )
        self.num_test, self.num_val = num_test, num_val
        self._splits: dict[str, list[dict[str, Any]]] = {}
        self._excluded: set[str] = set()
        self._build_splits(eval_dataset)

    # -- held-out splits ------------------------------------------------------------------------

    def heldout(self, split: str) -> list[dict[str, Any]]:
        """``"test"`` or ``"val"`` problems (disjoint from each other and from every training stream)."""
        if split not in self._splits:
            raise KeyError(f"unknown split {split!r}; valid: {', '.join(self._splits)}")
        return self._splits[split]

    def key(self, problem: dict[str, Any]) -> str:
        return canonical_key(problem, self.generator)

    def _build_splits(self, eval_dataset: Any) -> None:
        if self.generator is not None:
            for split, size in (("test", self.num_test), ("val", self.num_val)):
                rows: list[dict[str, Any]] = []
                i = 0
                while len(rows) < size:
                    problem = self.generator.generate(derived_seed(self.seed, "heldout", split, i))
                    i += 1
                    key = self.key(problem)
                    if key in self._excluded:
                        continue
                    self._excluded.add(key)
                    rows.append(problem)
                    if i > 50 * size + 1000:
                        raise ValueError(
                            f"task {self.task.name!r}: could only find {len(rows)} distinct problems for the {split} "
                            f"split; the problem space is too small for eval.problems={self.num_test}, "
                            f"sft.eval_problems={self.num_val}"
                        )
                self._splits[split] = rows
            return
        assert self.rows is not None
        if eval_dataset:
            test = _load_rows(eval_dataset, self.task.name, self.revision)[: self.num_test]
            self._excluded.update(self.key(p) for p in test)
            remaining = [r for r in self.rows if self.key(r) not in self._excluded]
        else:
            # Deterministic hash-ordered slice: the same rows are held out whatever the file order.
            ordered = sorted(self.rows, key=lambda r: derived_seed(self.seed, "split", self.key(r)))
            test = []
            for row in ordered:
                if len(test) >= self.num_test:
                    break
                if self.key(row) not in self._excluded:
                    test.append(row)
                    self._excluded.add(self.key(row))
            remaining = [r for r in ordered if self.key(r) not in self._excluded]
        val = []
        rest = []
        for row in remaining:
            if len(val) < self.num_val and self.key(row) not in self._excluded:
                val.append(row)
                self._excluded.add(self.key(row))
            else:
                rest.append(row)
        self.rows = [r for r in rest if self.key(r) not in self._excluded]
        if not self.rows:
            raise ValueError(f"task {self.task.name!r}: no training rows left after holding out the test/val splits")
        self._splits = {"test": test, "val": val}

    # -- training streams -----------------------------------------------------------------------

    def stream(self, name: str, position: int = 0) -> ProblemStream:
        """A training stream (``"sft"``, ``"rl"``...) starting at ``position``."""
        return ProblemStream(self, name, position)

    def _train_problem(self, stream: str, index: int) -> dict[str, Any] | None:
        """Problem ``index`` of a stream, or None when it collides with a held-out problem (skipped)."""
        if self.generator is not None:
            problem = self.generator.generate(derived_seed(self.seed, "train", stream, index))
            return None if self.key(problem) in self._excluded else problem
        assert self.rows is not None
        epoch, offset = divmod(index, len(self.rows))
        order = list(range(len(self.rows)))
        random.Random(derived_seed(self.seed, "order", stream, epoch)).shuffle(order)
        return self.rows[order[offset]]


# Tasks whose public benchmark files (rows without a "prompt") are converted by reasonrl.eval.loaders.
BENCHMARK_LAYOUTS = {"gsm8k": "gsm8k", "math": "math500", "ifeval": "ifeval", "kk": "kk"}


def _load_rows(dataset: Any, task_name: str, revision: str = "") -> list[dict[str, Any]]:
    """Problem rows from a path (JSONL/JSON/Parquet), a list, a ``datasets.Dataset``, or a Hugging
    Face Hub dataset id (``org/name`` or ``org/name:config``, its ``train`` split, through ``datasets``
    and its cache).

    A GSM8K / MATH / IFEval / K&K file in its public layout (no ``prompt`` field) is converted with
    :func:`reasonrl.eval.loaders.load_benchmark`.
    """
    if isinstance(dataset, (list, tuple)):
        rows = [dict(r) for r in dataset]
    elif hasattr(dataset, "to_list"):
        rows = list(dataset.to_list())
    else:
        from pathlib import Path

        path = Path(str(dataset))
        if not path.exists() and HUB_DATASET.match(str(dataset)):
            return _load_rows(_hub_dataset(str(dataset), revision), task_name)
        if not path.exists():
            raise FileNotFoundError(f"dataset not found: {path}")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            rows = _parse_rows(path, text)
    if rows and "prompt" not in rows[0] and task_name in BENCHMARK_LAYOUTS and not isinstance(dataset, (list, tuple)):
        # A benchmark file in its public layout (GSM8K's question/answer...): convert it to Problem rows.
        from reasonrl.eval.loaders import load_benchmark

        rows = load_benchmark(BENCHMARK_LAYOUTS[task_name], path=str(dataset), split="train")
    out = []
    for i, row in enumerate(rows):
        row.setdefault("task", task_name)
        for key in ("difficulty", "metadata"):
            if row.get(key) is None:
                row[key] = {}
        if isinstance(row.get("prompt"), str):
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
        validate_problem(row, where=f"{dataset if isinstance(dataset, str) else 'dataset'} row {i + 1}")
        out.append(row)
    return out


# org/name or org/name:config, as the Hugging Face Hub spells datasets (a local path that exists always wins).
HUB_DATASET = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")


def _hub_dataset(spec: str, revision: str, split: str = "train") -> Any:
    """``split`` of a Hub dataset through ``datasets.load_dataset`` (its cache first); one clear line when
    it is neither cached nor reachable."""
    import datasets

    name, _, config = spec.partition(":")
    try:
        return datasets.load_dataset(name, config or None, split=split, revision=revision or None)
    except (ConnectionError, OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as error:
        raise FileNotFoundError(
            f"dataset={spec}: not a local file, and the Hugging Face Hub could not provide it here "
            f"({str(error).splitlines()[0][:160]}); download it where the Hub can be reached and pass the file"
        ) from None


def _parse_rows(path: Any, text: str) -> list[dict[str, Any]]:
    """A JSON array or JSONL; a malformed row is a ValueError naming the file and its line."""
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number}: not valid JSON ({error.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """Chat-template a prompt (with the generation prompt); a tokenizer without a template gets plain text."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in messages) + "\n"
