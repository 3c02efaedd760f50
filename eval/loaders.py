"""Loaders for the benchmarks people expect: GSM8K, MATH-500, HumanEval, MBPP, IFEval and K&K.

Nothing is downloaded. Each loader reads a local file (JSONL, JSON list or Parquet, or a
``datasets`` ``save_to_disk`` folder) in the benchmark's public layout and returns Problem rows
for the matching reasonrl task (gsm8k -> ``gsm8k``, math500 -> ``math``, humaneval and mbpp ->
``code``, ifeval -> ``ifeval``, kk -> ``kk``). Point ``path`` at the file, or set
``REASONRL_DATA_DIR`` to a folder laid out like ``../shared/conformance`` (see
:data:`DEFAULT_FILES`: ``gsm8k/test.jsonl``, ``math/math500_test.jsonl``,
``humaneval/HumanEval.jsonl``, ``mbpp/sanitized-mbpp.jsonl``, ``ifeval/input_data.jsonl``,
``kk/kk_test_3to7ppl.jsonl``). A ``datasets`` hub cache works too: pass
``hf_dataset="openai/gsm8k"`` (and ``hf_config``/``split``); it is read offline
(``HF_DATASETS_OFFLINE=1``), so it must have been downloaded before on this machine.

The public files' fields each loader reads: gsm8k ``question``, ``answer`` (gold after ``####``);
math500 ``problem``, ``answer``, ``level``, ``subject``, ``unique_id``; humaneval ``task_id``,
``prompt``, ``test``, ``entry_point``; mbpp ``task_id``, ``prompt`` (or ``text``),
``test_list``, ``test_imports``; ifeval ``key``, ``prompt``, ``instruction_id_list``,
``kwargs``; kk ``quiz``, ``names``, ``solution``, ``n_people``, ``index``.

>>> problems = load_benchmark("gsm8k", path="gsm8k/test.jsonl")  # doctest: +SKIP
>>> problems[0]["task"], problems[0]["answer"]                     # doctest: +SKIP
('gsm8k', '18')
"""
from __future__ import annotations

import ast
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from reasonrl.types import make_problem

# Default file inside REASONRL_DATA_DIR for each benchmark (the public files' usual names).
DEFAULT_FILES = {
    "gsm8k": "gsm8k/test.jsonl",
    "math500": "math/math500_test.jsonl",
    "humaneval": "humaneval/HumanEval.jsonl",
    "mbpp": "mbpp/sanitized-mbpp.jsonl",
    "ifeval": "ifeval/input_data.jsonl",
    "kk": "kk/kk_test_3to7ppl.jsonl",
}

MATH_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
GSM8K_INSTRUCTION = "Solve the problem step by step. Put the final answer (a number) in <answer></answer>."
CODE_INSTRUCTION = "Write the solution in Python inside a single ```python code block."
KK_INSTRUCTION = (
    "Think it through, then state the identity of each person inside <answer></answer>, "
    "one per line, e.g. <answer>(1) Zoey is a knight\n(2) Oliver is a knave</answer>."
)


class BenchmarkFormatError(ValueError):
    """A benchmark row lacks a field the loader needs; the message names the file, line and field."""


def read_rows(path: str | Path, split: str = "test") -> list[dict[str, Any]]:
    """Rows of a JSONL, JSON (list) or Parquet file, or of a folder written by ``datasets``'
    ``save_to_disk`` (a ``DatasetDict`` folder gives its ``split``)."""
    path = Path(path)
    if path.is_dir():
        import datasets

        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise BenchmarkFormatError(f"{path}: no split {split!r}; it has {', '.join(loaded)}")
            loaded = loaded[split]
        return list(loaded)
    if not path.exists():
        raise FileNotFoundError(f"benchmark file {str(path)!r} does not exist")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise BenchmarkFormatError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
    return rows


def _need(row: dict, key: str, where: str) -> Any:
    if key not in row:
        raise BenchmarkFormatError(f"{where}: missing field '{key}'")
    return row[key]


def _maybe_literal(value: Any) -> Any:
    """Some exports store lists/dicts as their Python repr; decode those."""
    if isinstance(value, str) and value[:1] in "[{(":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return ast.literal_eval(value)
    return value


def _gsm8k(row: dict, i: int, where: str) -> dict:
    answer = str(_need(row, "answer", where))
    final = answer.rsplit("####", 1)[-1].strip().replace(",", "")
    return make_problem(
        f"gsm8k-{i}", "gsm8k", f"{_need(row, 'question', where)}\n{GSM8K_INSTRUCTION}", final,
        metadata={"solution": answer},
    )


def _math500(row: dict, i: int, where: str) -> dict:
    return make_problem(
        row.get("unique_id", f"math-{i}"), "math", f"{_need(row, 'problem', where)}\n{MATH_INSTRUCTION}",
        str(_need(row, "answer", where)),
        difficulty={"level": int(row["level"])} if str(row.get("level", "")).isdigit() else {},
        metadata={"subject": row.get("subject"), "solution": row.get("solution")},
    )


def _humaneval(row: dict, i: int, where: str) -> dict:
    prompt = _need(row, "prompt", where)
    return make_problem(
        row.get("task_id", f"humaneval-{i}"), "code",
        f"Complete this Python function.\n```python\n{prompt}```\n{CODE_INSTRUCTION}",
        {"test": _need(row, "test", where), "entry_point": _need(row, "entry_point", where), "prompt": prompt},
        metadata={"canonical_solution": row.get("canonical_solution")},
    )


def _mbpp(row: dict, i: int, where: str) -> dict:
    tests = _maybe_literal(_need(row, "test_list", where))
    text = row.get("prompt") or _need(row, "text", where)
    return make_problem(
        f"mbpp-{row.get('task_id', i)}", "code",
        f"{text}\nYour code should pass tests like: {tests[0] if tests else ''}\n{CODE_INSTRUCTION}",
        {"test_list": tests, "test_imports": _maybe_literal(row.get("test_imports") or []),
         "test_setup_code": row.get("test_setup_code", "")},
        metadata={"reference": row.get("code")},
    )


def _ifeval(row: dict, i: int, where: str) -> dict:
    prompt = _need(row, "prompt", where)
    kwargs = [{k: v for k, v in (kw or {}).items() if v is not None} for kw in _maybe_literal(_need(row, "kwargs", where))]
    return make_problem(
        f"ifeval-{row.get('key', i)}", "ifeval", prompt,
        {"instruction_id_list": _maybe_literal(_need(row, "instruction_id_list", where)), "kwargs": kwargs,
         "prompt": prompt},
    )


def _kk(row: dict, i: int, where: str) -> dict:
    names = _maybe_literal(_need(row, "names", where))
    solution = _maybe_literal(_need(row, "solution", where))
    n = int(row.get("n_people", len(names)))
    # The public K&K test files number puzzles within each people-count, so the count is part of the id.
    return make_problem(
        f"kk-{n}ppl-{row.get('index', i)}", "kk", f"{_need(row, 'quiz', where)}\n{KK_INSTRUCTION}",
        {"names": list(names), "solution": [bool(s) for s in solution]},
        difficulty={"people": n},
        metadata={"statements_repr": row.get("statements")},
    )


LOADERS: dict[str, Callable[[dict, int, str], dict]] = {
    "gsm8k": _gsm8k, "math500": _math500, "humaneval": _humaneval, "mbpp": _mbpp, "ifeval": _ifeval, "kk": _kk,
}


def benchmark_names() -> list[str]:
    return sorted(LOADERS)


def resolve_path(name: str, path: str | Path | None = None) -> Path:
    if path is not None:
        return Path(path)
    root = os.environ.get("REASONRL_DATA_DIR")
    if not root:
        raise FileNotFoundError(
            f"no file given for benchmark {name!r}: pass path=... (or --data FILE) or set REASONRL_DATA_DIR "
            f"to a folder holding {DEFAULT_FILES[name]}"
        )
    return Path(root) / DEFAULT_FILES[name]


def load_benchmark(
    name: str,
    path: str | Path | None = None,
    limit: int | None = None,
    hf_dataset: str | None = None,
    hf_config: str | None = None,
    split: str = "test",
) -> list[dict[str, Any]]:
    """Problem rows for a benchmark, from a local file or the local ``datasets`` cache.

    Args:
        name: one of :func:`benchmark_names`.
        path: a JSONL / JSON / Parquet file or a ``save_to_disk`` folder in the benchmark's public
            layout (default: ``$REASONRL_DATA_DIR/<DEFAULT_FILES[name]>``).
        limit: keep the first ``limit`` rows.
        hf_dataset: read ``datasets.load_dataset(hf_dataset, hf_config, split=split)`` instead,
            offline (``HF_DATASETS_OFFLINE=1`` unless set): it must already be in the local cache.
        split: the split of a ``DatasetDict`` folder or of ``hf_dataset``.
    """
    if name not in LOADERS:
        raise KeyError(f"unknown benchmark {name!r}; available: {', '.join(benchmark_names())}")
    if hf_dataset is not None:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        import datasets

        rows: Iterable[dict] = datasets.load_dataset(hf_dataset, hf_config, split=split)
        source = hf_dataset
    else:
        file = resolve_path(name, path)
        rows = read_rows(file, split=split)
        source = str(file)
    convert = LOADERS[name]
    problems = []
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            break
        problems.append(convert(row, i, f"{source}: row {i + 1}"))
    return problems
