"""Write and read generated datasets: JSONL / Parquet, in reasonrl's, verl's or TRL's layout.

Three row layouts (``format``):

``problem`` (default)
    The Problem schema as is: ``id, task, prompt, answer, difficulty, metadata``.
    JSONL keeps every field native. Parquet keeps ``id``/``task`` as strings and ``prompt``
    as a list of ``{role, content}`` structs, and stores ``answer``, ``difficulty`` and
    ``metadata`` as **JSON text** (they change shape from task to task, e.g. a string answer
    for ``arith`` and an object for ``kk``, and K&K statement trees mix strings and ints,
    which Arrow cannot type); the file's schema metadata lists those columns under
    ``reasonrl.json_columns`` and :func:`read_rows` decodes them, so a Parquet file
    round-trips to exactly the rows written.

``verl``
    verl's RL parquet layout, one row per problem::

        {"data_source": task, "prompt": [messages], "ability": "logic" | "arithmetic" | task,
         "reward_model": {"style": "rule", "ground_truth": answer},
         "extra_info": {"index": i, "id": id, "split": split, "difficulty": JSON text, "metadata": JSON text}}

    ``ground_truth`` is the answer string, or the answer object as JSON text (verl keeps the
    column as written); ``reasonrl.verifiers.adapters.compute_score`` decodes it again.

``trl``
    TRL's prompt-only layout for ``GRPOTrainer``: ``prompt`` (chat messages) plus answer
    columns that TRL hands to reward functions as keyword arguments: ``answer`` (string, or
    JSON text for structured answers; what ``trl_reward_function(task)`` reads), ``task``,
    ``id``, ``difficulty`` (JSON text) and, when the generator made one, ``worked_solution``.

The file type follows the extension: ``.jsonl`` or ``.parquet``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

from reasonrl.data_gen.dataset import JSON_FIELDS, decode_row, encode_row

FORMATS = ("problem", "verl", "trl")
EXTENSIONS = (".jsonl", ".parquet")

# verl's "ability" column: a coarse skill label per task; other tasks use their own name.
ABILITY = {"kk": "logic", "graph_coloring": "logic", "arith": "arithmetic", "countdown": "arithmetic"}


def _answer_text(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False, sort_keys=True)


def to_verl_rows(rows: Sequence[Mapping[str, Any]], split: str = "train") -> list[dict[str, Any]]:
    """Problem rows in verl's parquet layout (see the module docstring)."""
    return [_verl_row(row, index, split) for index, row in enumerate(rows)]


def _verl_row(row: Mapping[str, Any], index: int, split: str) -> dict[str, Any]:
    return {
        "data_source": row["task"],
        "prompt": [dict(m) for m in row["prompt"]],
        "ability": ABILITY.get(row["task"], row["task"]),
        "reward_model": {"style": "rule", "ground_truth": _answer_text(row["answer"])},
        "extra_info": {
            "index": index,
            "id": row["id"],
            "split": split,
            "difficulty": json.dumps(row.get("difficulty") or {}, sort_keys=True),
            "metadata": json.dumps(row.get("metadata") or {}, ensure_ascii=False, sort_keys=True),
        },
    }


def to_trl_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Problem rows in TRL's prompt + answer-columns layout (see the module docstring)."""
    return [_trl_row(row) for row in rows]


def _trl_row(row: Mapping[str, Any]) -> dict[str, Any]:
    item = {
        "prompt": [dict(m) for m in row["prompt"]],
        "answer": _answer_text(row["answer"]),
        "task": row["task"],
        "id": row["id"],
        "difficulty": json.dumps(row.get("difficulty") or {}, sort_keys=True),
    }
    worked = (row.get("metadata") or {}).get("worked_solution")
    if worked is not None:
        item["worked_solution"] = worked
    return item


def convert(rows: Sequence[Mapping[str, Any]], format: str = "problem", split: str = "train") -> list[dict[str, Any]]:
    """Rows in the given layout (``problem`` returns plain copies)."""
    return list(iter_converted(rows, format, split))


def iter_converted(rows: Iterable[Mapping[str, Any]], format: str = "problem", split: str = "train") -> Iterator[dict[str, Any]]:
    """:func:`convert`, one row at a time."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; valid: {', '.join(FORMATS)}")
    for index, row in enumerate(rows):
        if format == "problem":
            yield dict(row)
        elif format == "verl":
            yield _verl_row(row, index, split)
        else:
            yield _trl_row(row)


# Rows per Parquet row group: a batch is all that is held while writing.
PARQUET_ROW_GROUP = 8192


def write_rows(
    rows: Iterable[Mapping[str, Any]], path: str | os.PathLike, format: str = "problem", split: str = "train"
) -> Path:
    """Write Problem rows to ``path`` (``.jsonl`` or ``.parquet``) in ``format``; returns the path."""
    return write_stream(rows, path, format, split)[0]


def write_stream(
    rows: Iterable[Mapping[str, Any]], path: str | os.PathLike, format: str = "problem", split: str = "train"
) -> tuple[Path, int]:
    """Write Problem rows to ``path`` as they come from ``rows`` (any iterable, e.g. a
    generator making them); returns the path and the number of rows.

    Written through :func:`reasonrl.output_file.open_output`: a regular file is written under
    a temporary name and renamed at the end (an interrupted run never leaves a half-written
    file under the final name), a symbolic link is followed, a device or FIFO is written
    through. JSONL rows reach the file as they are made; Parquet rows in row groups of
    :data:`PARQUET_ROW_GROUP`. A missing parent folder is created.

    Raises:
        ValueError: the extension is neither ``.jsonl`` nor ``.parquet``, or ``format`` is unknown.
        IsADirectoryError: ``path`` is a directory.
    """
    from reasonrl.output_file import json_line, open_output

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise ValueError(f"output {str(path)!r}: unknown extension {path.suffix!r}; valid: {', '.join(EXTENSIONS)}")
    converted = iter_converted(rows, format, split=split)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open_output(path, binary=suffix == ".parquet") as handle:
        if suffix == ".jsonl":
            for row in converted:
                handle.write(json_line(row))
                count += 1
        else:
            count = _write_parquet(converted, handle, format)
    return path, count


def _write_parquet(rows: Iterable[dict[str, Any]], handle: IO[bytes], format: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    json_columns: tuple[str, ...] = JSON_FIELDS if format == "problem" else ()
    schema = _schema(format).with_metadata({"reasonrl.format": format, "reasonrl.json_columns": ",".join(json_columns)})
    count = 0
    with pq.ParquetWriter(handle, schema) as writer:
        for batch in _batches(rows, PARQUET_ROW_GROUP):
            if json_columns:
                batch = [encode_row(r) for r in batch]
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
        if count == 0:
            writer.write_table(schema.empty_table())
    return count


def _batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _schema(format: str):
    import pyarrow as pa

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    if format == "problem":
        columns = [("id", pa.string()), ("task", pa.string()), ("prompt", messages)]
        return pa.schema(columns + [(c, pa.string()) for c in JSON_FIELDS])
    if format == "verl":
        return pa.schema(
            [
                ("data_source", pa.string()),
                ("prompt", messages),
                ("ability", pa.string()),
                ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
                (
                    "extra_info",
                    pa.struct(
                        [
                            ("index", pa.int64()),
                            ("id", pa.string()),
                            ("split", pa.string()),
                            ("difficulty", pa.string()),
                            ("metadata", pa.string()),
                        ]
                    ),
                ),
            ]
        )
    return pa.schema(
        [
            ("prompt", messages),
            ("answer", pa.string()),
            ("task", pa.string()),
            ("id", pa.string()),
            ("difficulty", pa.string()),
            ("worked_solution", pa.string()),
        ]
    )


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows written by :func:`write_rows`, as written (Problem rows come back with native fields)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}: line {line_no}: invalid JSON ({exc.msg})") from None
        return rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
        json_columns = tuple(c for c in meta.get("reasonrl.json_columns", "").split(",") if c)
        rows = table.to_pylist()
        if json_columns:
            rows = [decode_row(r, json_columns) for r in rows]
        if meta.get("reasonrl.format") == "trl":
            for r in rows:  # a column the schema always has, absent from rows without a worked solution
                if r.get("worked_solution") is None:
                    r.pop("worked_solution", None)
        return rows
    raise ValueError(f"{str(path)!r}: unknown extension {path.suffix!r}; valid: {', '.join(EXTENSIONS)}")


def to_hf_dataset(rows: Sequence[Mapping[str, Any]], format: str = "problem"):
    """A ``datasets.Dataset`` in the given layout (``problem``: see :func:`reasonrl.data_gen.dataset.to_hf_dataset`)."""
    if format == "problem":
        from reasonrl.data_gen.dataset import to_hf_dataset as problem_dataset

        return problem_dataset(rows)
    import datasets
    import pyarrow as pa

    converted = convert(rows, format)
    schema = _schema(format)
    table = pa.Table.from_pylist(converted, schema=schema) if converted else schema.empty_table()
    return datasets.Dataset(table)


def split_path(path: str | os.PathLike, split: str) -> Path:
    """``data.jsonl`` + ``test`` -> ``data.test.jsonl`` (where ``reasonrl gen --split`` writes each split)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.{split}{path.suffix}")


def iter_jsonl_lines(rows: Iterable[Mapping[str, Any]]) -> Iterable[str]:
    for row in rows:
        yield json.dumps(row, ensure_ascii=False) + "\n"
