"""``reasonrl tasks``: the registered tasks, their verifier, problem source and Gymnasium env id."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per task instead of a table")


def describe_task(task: Any) -> dict[str, str]:
    """The columns shown for one task, as plain strings."""
    return {
        "name": task.name,
        "verifier": _name_of(task.verifier),
        "source": _source_of(task),
        "env_id": task.env_id if getattr(task, "env_name", "") else "-",
        "description": task.description or "",
    }


def _name_of(obj: Any) -> str:
    if obj is None:
        return "-"
    if isinstance(obj, str):
        return obj
    return getattr(obj, "name", "") or getattr(obj, "__name__", "") or type(obj).__name__


def _source_of(task: Any) -> str:
    if task.generator is not None:
        return f"generator {_name_of(task.generator)}"
    dataset = task.dataset
    if dataset is None:
        return "dataset (bring your own)"
    if isinstance(dataset, (str, bytes)) or hasattr(dataset, "__fspath__"):
        return f"dataset {dataset}"
    if isinstance(dataset, list):
        return f"dataset ({len(dataset)} rows)"
    return f"dataset ({type(dataset).__name__})"


def run(args: argparse.Namespace) -> int:
    from reasonrl.tasks import list_tasks

    rows = [describe_task(task) for task in list_tasks()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no tasks registered", file=sys.stderr)
        return 0
    headers = {"name": "TASK", "verifier": "VERIFIER", "source": "PROBLEMS", "env_id": "GYMNASIUM ENV", "description": "DESCRIPTION"}
    keys = list(headers)
    widths = {k: max(len(headers[k]), *(len(r[k]) for r in rows)) for k in keys[:-1]}
    print("  ".join(headers[k].ljust(widths[k]) for k in keys[:-1]) + "  " + headers["description"])
    for row in rows:
        print("  ".join(row[k].ljust(widths[k]) for k in keys[:-1]) + "  " + row["description"])
    return 0
