"""``reasonrl verify``: score a JSONL file of responses with a task's verifier.

Each input line is a JSON object with ``response`` (a string) and ``answer`` (the task's answer
field, see DESIGN.md); any other fields pass through. Each output line is the input object plus
``verdict`` (``Verdict.to_dict()``; an input ``verdict`` field is replaced). The whole input is
checked before anything is verified, and the output is written to a temporary file that is
renamed into place at the end, so a bad row or an interrupt never leaves a half-written file.

This module imports no torch (and nothing else heavy): ``reasonrl verify`` starts fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

# Show a progress bar for files at least this long (when stderr is a terminal).
PROGRESS_MIN_ROWS = 1000


class InputError(ValueError):
    """A malformed input file; the message names the file, the line and the field."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (
        "Input rows: {\"response\": str, \"answer\": <task answer>, ...other fields pass through}.\n"
        "Output rows: the input row plus \"verdict\": {reward, correct, extracted, reason, details}.\n"
        "Without --output the rows go to stdout and the summary line to stderr; with --output\n"
        "the summary goes to stdout. Exit status: 0 done (timeouts and errors are verdicts),\n"
        "2 bad input, unknown task or bad option.\n\n"
        "example:\n"
        "  reasonrl verify --example                       # the bundled gsm8k-style file\n"
        "  reasonrl verify --task math --input runs.jsonl --output scored.jsonl --workers 2\n"
        "  reasonrl verify --task kk --input kk.jsonl --option format=logic-rl"
    )
    parser.add_argument("--task", help="task name (see `reasonrl tasks`) or module.path:attr of a user Task; "
                        "default gsm8k with --example")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", help="JSONL file of rows with 'response' and 'answer' ('-' for stdin)")
    source.add_argument("--example", action="store_true", help="verify the bundled example file (gsm8k-style responses)")
    parser.add_argument("--output", help="JSONL file to write (default: stdout; '-' for stdout)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: CPU count; 0: in this process, no hard time limit)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="hard per-item time limit in seconds (default: the verifier's own)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="verifier option, repeatable; VALUE is read as JSON when it parses "
                        "(true, 0.5, [1,2]), else as a string. e.g. strict=true, format=logic-rl")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help=f"progress bar on stderr (default: on for {PROGRESS_MIN_ROWS}+ rows on a terminal)")


def example_path() -> Path:
    """The bundled example file (gsm8k-style responses with ``response`` and ``answer``)."""
    return Path(__file__).resolve().parents[1] / "examples" / "verify_example.jsonl"


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["strict=true", "format=logic-rl"]`` -> ``{"strict": True, "format": "logic-rl"}``."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:  # Python spellings too: True / False / None
            value = {"true": True, "false": False, "none": None}.get(raw.strip().lower(), raw)
        options[key] = value
    return options


def read_rows(path: str) -> list[dict[str, Any]]:
    """Read and check every row; raise :class:`InputError` naming ``path``, the line and the field."""
    label = "<stdin>" if path == "-" else path
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{label}: is a directory, expected a JSONL file") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark some editors write
        data = data[3:]
    rows = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{label}: line {number}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{where}: invalid UTF-8 at byte {exc.start} of the line") from None
        try:
            row = json.loads(text, parse_constant=_NonFinite, parse_float=_finite_float)
        except ValueError as exc:
            raise InputError(f"{where}: invalid JSON: {getattr(exc, 'msg', exc)} (column {getattr(exc, 'colno', '?')})") from None
        bad = _first_non_finite(row)
        if bad is not None:
            # JSON has no NaN or infinity: such a row could not be written back as valid JSON.
            raise InputError(f"{where}: field '{bad[0]}' holds {bad[1]} (JSON numbers must be finite)")
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object with fields 'response' and 'answer', got a JSON {_json_type(row)}")
        for field in ("response", "answer"):
            if field not in row:
                raise InputError(f"{where}: field '{field}' is missing (every row needs 'response' and 'answer')")
        if not isinstance(row["response"], str):
            raise InputError(f"{where}: field 'response' must be a string, got {_json_type(row['response'])}")
        rows.append(row)
    return rows


class _NonFinite(str):
    """A NaN / Infinity / overflowing number as the input spelled it (found and refused after parsing)."""


def _finite_float(text: str) -> Any:
    value = float(text)
    return value if value not in (float("inf"), float("-inf")) else _NonFinite(text)


def _first_non_finite(value: Any, path: str = "") -> tuple[str, str] | None:
    """``(dotted field path, spelling)`` of the first non-finite number in a parsed row, or None."""
    if isinstance(value, _NonFinite):
        return path, str(value)
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _first_non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__)


def write_rows(path: str | None, rows: list[dict[str, Any]]) -> None:
    """Write JSONL to ``path`` by :func:`reasonrl.output_file.open_output`'s rules (a regular file
    replaced atomically with its mode kept, a link's target replaced, a device or FIFO written
    through); None or '-': stdout. Lone surrogates are written as their JSON escapes."""
    from reasonrl.output_file import json_line, open_output

    if path is None or path == "-":
        for row in rows:
            sys.stdout.write(json_line(row, default=str))
        sys.stdout.flush()
        return
    with open_output(path) as out:
        for row in rows:
            out.write(json_line(row, default=str))


def summary_line(rows: int, verdicts: list, seconds: float) -> str:
    """``verified 20 rows: accuracy 0.650, mean reward 0.650, 412.3 rows/s, 0 timeouts, 0 errors``."""
    correct = sum(1 for v in verdicts if v.correct)
    timeouts = sum(1 for v in verdicts if v.reason == "timeout")
    errors = sum(1 for v in verdicts if v.reason == "error")
    accuracy = f"{correct / rows:.3f}" if rows else "n/a"
    mean_reward = f"{sum(v.reward for v in verdicts) / rows:.3f}" if rows else "n/a"
    rate = rows / seconds if seconds > 0 else float("inf")
    return (f"verified {rows} rows: accuracy {accuracy}, mean reward {mean_reward}, {rate:.1f} rows/s, "
            f"{timeouts} timeouts, {errors} errors")


def _error(message: str) -> int:
    print(f"reasonrl verify: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from reasonrl.tasks import get_task

    task_name = args.task or ("gsm8k" if args.example else None)
    if task_name is None:
        return _error("--task is required (see `reasonrl tasks` for the list)")
    if not args.example and not args.input:
        return _error("--input is required (or --example for the bundled example file)")
    if args.workers is not None and args.workers < 0:
        return _error(f"--workers must be >= 0, got {args.workers}")
    if args.timeout is not None and not args.timeout > 0:
        return _error(f"--timeout must be > 0 seconds, got {args.timeout}")
    try:
        options = parse_options(args.option)
    except InputError as exc:
        return _error(str(exc))

    try:
        task = get_task(task_name)
    except KeyError as exc:  # the message lists close matches and every registered task
        return _error(str(exc.args[0]) if exc.args else f"unknown task {task_name!r}")
    except (ImportError, AttributeError, ValueError) as exc:
        return _error(f"cannot load task {task_name!r}: {exc}")
    try:
        options = _typed_options(task, options)
    except ValueError as exc:
        return _error(str(exc))
    try:
        verifier = task.make_verifier(**options)
    except TypeError as exc:
        return _error(f"bad --option for task {task.name!r}: {exc}{_valid_options_hint(task)}")
    except (ValueError, KeyError) as exc:
        return _error(f"bad --option for task {task.name!r}: {exc.args[0] if exc.args else exc}")

    if args.output not in (None, "-") and os.path.isdir(args.output):  # before verifying: nothing is lost
        return _error(f"cannot write {args.output}: is a directory, expected a file path")
    input_path = str(example_path()) if args.example else args.input
    try:
        rows = read_rows(input_path)
    except InputError as exc:
        return _error(str(exc))

    show_progress = args.progress if args.progress is not None else (len(rows) >= PROGRESS_MIN_ROWS and sys.stderr.isatty())
    started = time.perf_counter()
    verdicts = verifier.verify_batch(
        [row["response"] for row in rows],
        [row["answer"] for row in rows],
        workers=args.workers,
        timeout=args.timeout,
        progress=show_progress,
    )
    seconds = time.perf_counter() - started
    out_rows = [{**row, "verdict": verdict.to_dict()} for row, verdict in zip(rows, verdicts)]
    try:
        write_rows(args.output, out_rows)
    except OSError as exc:
        return _error(f"cannot write {args.output}: {exc.strerror or exc}")
    line = summary_line(len(rows), verdicts, seconds)
    to_stdout = args.output not in (None, "-")
    print(line, file=sys.stdout if to_stdout else sys.stderr)
    return 0


def _verifier_parameters(task: Any) -> dict[str, Any]:
    """The keyword parameters of the task's verifier factory (empty when its signature cannot be read)."""
    import inspect

    factory = task.verifier
    if isinstance(factory, str):
        from reasonrl.verifiers import base

        base._load_builtins()
        factory = base._REGISTRY.get(factory)
    if factory is None:
        return {}
    try:
        target = factory.__init__ if isinstance(factory, type) else factory
        return {name: p for name, p in inspect.signature(target).parameters.items() if name not in ("self", "args", "kwargs")}
    except (TypeError, ValueError):
        return {}


# Format options that take booleans (the format wrapper's, not the task verifier's signature).
BOOLEAN_FORMAT_OPTIONS = ("format_allow_text_outside", "format_think_prefilled")


def _typed_options(task: Any, options: dict[str, Any]) -> dict[str, Any]:
    """Booleans parsed as ``reasonrl train`` parses them (true/false/yes/no/on/off/1/0): a verifier
    parameter whose default is a bool gets a bool or a clear error, never a truthy string like "no"."""
    from reasonrl.config import ConfigError, _coerce

    params = _verifier_parameters(task)
    typed = dict(options)
    for key, value in options.items():
        param = params.get(key)
        if key in BOOLEAN_FORMAT_OPTIONS or (param is not None and isinstance(param.default, bool)):
            try:
                typed[key] = _coerce(bool, value, f"--option {key}")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
    return typed


def _valid_options_hint(task: Any) -> str:
    """``; valid options: strict, ...`` from the verifier factory's signature, when it can be read."""
    from reasonrl.verifiers.base import FORMAT_OPTIONS

    params = list(_verifier_parameters(task))
    return f"; valid options: {', '.join(params + list(FORMAT_OPTIONS)) or 'none'}" if params or task.verifier else ""
