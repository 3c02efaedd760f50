"""``reasonrl gen``: generate a procedural dataset and write it as JSONL or Parquet.

    reasonrl gen --task kk --n 1000 --seed 0 --difficulty people=5 depth=2 --output kk.jsonl
    reasonrl gen --task kk --n 1000 --split train=900 test=100 --output kk.parquet --format verl
    reasonrl gen --task kk --n 1000 --level "people=3" 0.5 --level "people=5;depth=3" 0.5 --output mix.jsonl
    reasonrl gen --import my_tasks.py --task my_puzzle --n 100 --output mine.jsonl
    reasonrl gen --task my_tasks.py:MyGenerator --n 100 --output mine.jsonl

The same task, seed and knobs always give the same bytes, whatever ``--workers``.
With ``--split`` each split goes to its own file (``kk.train.jsonl``, ``kk.test.jsonl``) and
no puzzle appears in two splits (deduplicated on the puzzle's canonical form). ``--level``
makes a difficulty mix: each level is ``KNOBS WEIGHT`` (knobs separated by ``;`` or spaces, on
top of ``--difficulty``), in curriculum order unless ``--order shuffle``.
Rows are written as they are made (constant memory; a shuffled mix is made whole first).
--output: a file is written under a temporary name and renamed when complete; a symlink is
followed, a device or FIFO written through, a directory refused.
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path
from typing import Any, Generator, Iterable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--task", required=True, help="task or generator name (see `reasonrl tasks`), or FILE.py:Class / module:attr")
    parser.add_argument("--n", type=int, required=True, help="number of problems (the total over all splits)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--difficulty", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                        help="difficulty knobs, e.g. people=5 depth=3 (repeatable)")
    parser.add_argument("--output", required=True, help="output file: .jsonl or .parquet ('-' writes JSONL to stdout)")
    parser.add_argument("--format", choices=("problem", "verl", "trl"), default="problem",
                        help="row layout: reasonrl Problem rows (default), verl's RL parquet layout, or TRL's prompt+answer columns")
    parser.add_argument("--split", nargs="+", metavar="NAME=SIZE",
                        help="disjoint splits, e.g. train=900 test=100 (sizes are counts or fractions of --n)")
    parser.add_argument("--level", nargs=2, action="append", metavar=("KNOBS", "WEIGHT"),
                        help='a difficulty level and its share, e.g. --level "people=3" 0.7 --level "people=6" 0.3')
    parser.add_argument("--order", choices=("curriculum", "shuffle"), default="curriculum",
                        help="with --level: keep levels in the given order (default) or interleave them")
    parser.add_argument("--workers", type=int, default=1, help="generator processes (output is identical for any number)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: on for 1000+ problems on a terminal)")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import a module or .py file first (one that registers your generator or task); repeatable")


def parse_difficulty(groups: list[list[str]]) -> dict[str, str]:
    """``[["people=5", "depth=3"]]`` -> ``{"people": "5", "depth": "3"}`` (values typed later by the config)."""
    out: dict[str, str] = {}
    for group in groups:
        for pair in group:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"--difficulty {pair!r}: expected KEY=VALUE")
            out[key.strip()] = value.strip()
    return out


def parse_splits(specs: list[str], n: int) -> dict[str, int]:
    """``["train=0.9", "test=0.1"]`` or counts -> sizes summing to ``n``."""
    raw: dict[str, float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            raw[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--split {spec!r}: expected NAME=SIZE with a number") from None
        if not sep or not name.strip() or raw[name.strip()] < 0:
            raise ValueError(f"--split {spec!r}: expected NAME=SIZE with SIZE >= 0")
    if all(v <= 1 for v in raw.values()) and any(v < 1 for v in raw.values()):
        from reasonrl.data_gen.dataset import _largest_remainder

        return dict(zip(raw, _largest_remainder(n, list(raw.values()))))
    sizes = {k: int(v) for k, v in raw.items()}
    if sum(sizes.values()) != n:
        raise ValueError(f"--split sizes add up to {sum(sizes.values())}, but --n is {n}")
    return sizes


def _import(spec: str) -> None:
    from reasonrl.tasks import _import_task_module

    _import_task_module(spec)


def run(args: argparse.Namespace) -> int:
    from reasonrl.data_gen import ConfigError
    from reasonrl.data_gen import dataset as ds
    from reasonrl.data_gen import export

    try:
        for module in args.imports:
            _import(module)
        difficulty = parse_difficulty(args.difficulty)
        if args.n < 0:
            raise ValueError(f"--n must be >= 0, got {args.n}")
        generator = ds.resolve_generator(args.task, difficulty)
        if args.output != "-" and not args.output.lower().endswith(export.EXTENSIONS):
            raise ValueError(f"--output {args.output!r}: use a .jsonl or .parquet file (or '-' for stdout)")
        splits = parse_splits(args.split, args.n) if args.split else {None: args.n}
        targets = {name: _target(args.output, name) for name in splits}
    except (KeyError, ValueError, ConfigError, TypeError, ImportError) as exc:
        print(f"reasonrl gen: {_message(exc)}", file=sys.stderr)
        return 2

    progress = args.progress if args.progress is not None else (args.n >= 1000 and sys.stderr.isatty())
    started = time.perf_counter()
    outputs = []
    try:
        # Closed when written, not when collected: the worker pool and the progress bar end
        # before the summary line.
        with contextlib.closing(_rows(args, generator, difficulty, progress)) as rows:
            for name, size in splits.items():
                # One stream cut in order: the splits share no puzzle (deduplicated as one).
                part = itertools.islice(rows, size)
                split = name or "train"
                if targets[name] is None:
                    _write_stdout(export.iter_converted(part, args.format, split=split))
                else:
                    outputs.append(export.write_stream(part, targets[name], args.format, split=split))
    except (KeyError, ValueError, ConfigError) as exc:
        print(f"reasonrl gen: {_message(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise  # the reader went away (| head): the CLI's handler ends quietly
    except OSError as exc:
        print(f"reasonrl gen: cannot write {exc.filename or args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - started

    total = sum(count for _, count in outputs) if outputs else args.n
    rate = total / elapsed if elapsed > 0 else float("inf")
    where = ", ".join(f"{path} ({count})" for path, count in outputs) or "stdout"
    summary = (
        f"generated {total} {generator.name or args.task} problems (seed {args.seed}) "
        f"in {elapsed:.2f}s, {rate:,.0f}/s -> {where}"
    )
    print(summary, file=sys.stderr if args.output == "-" else sys.stdout)
    return 0


def _target(output: str, split: str | None) -> Path | None:
    """Where a split goes (None: stdout); a directory there is refused before anything is made."""
    from reasonrl.data_gen import export

    if output == "-":
        return None
    path = export.split_path(output, split) if split else Path(output)
    if path.is_dir():
        raise ValueError(f"--output {str(path)!r} is a directory; give a file path ending in .jsonl or .parquet")
    return path


def _rows(args: argparse.Namespace, generator: Any, difficulty: dict[str, str], progress: bool) -> Generator[dict[str, Any], None, None]:
    """The rows in output order, made as they are consumed (a shuffled level mix is made whole first)."""
    from reasonrl.data_gen import dataset as ds

    if not args.level:
        return ds.iter_dataset(generator, args.n, seed=args.seed, workers=args.workers, progress=progress)
    levels = [({**difficulty, **ds._parse_level(spec)}, float(weight)) for spec, weight in args.level]
    if args.order == "shuffle":
        mix = ds.generate_curriculum(
            type(generator), args.n, levels, seed=args.seed, order="shuffle", workers=args.workers, progress=progress
        )
        return (row for row in mix)
    return ds.iter_curriculum(type(generator), args.n, levels, seed=args.seed, workers=args.workers, progress=progress)


def _write_stdout(rows: Iterable[dict[str, Any]]) -> None:
    from reasonrl.output_file import json_line

    for row in rows:
        sys.stdout.write(json_line(row))
    sys.stdout.flush()


def _message(exc: BaseException) -> str:
    # KeyError quotes its message; print the text itself.
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)

