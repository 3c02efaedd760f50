"""The two contracts every part of reasonrl speaks: Problem rows and Verdicts.

Both are plain, JSON-serializable data. A Problem is kept as a ``dict`` (so rows read from
JSONL, Parquet or ``datasets`` pass through untouched); :func:`make_problem` builds one and
:func:`validate_problem` checks one, naming the offending field. A Verdict is a small
dataclass with ``to_dict``/``from_dict``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

# Short machine-readable reasons. Verifiers may add their own words, but these are shared.
REASONS = (
    "ok", "wrong_answer", "no_answer", "format_error", "timeout", "error",
    "runtime_error", "memory_limit", "output_limit", "compile_error",
)

PROBLEM_FIELDS = ("id", "task", "prompt", "answer", "difficulty", "metadata")


@dataclass
class Verdict:
    """What every verifier returns.

    ``reward`` is what a trainer optimizes; ``correct`` is what pass@k counts.
    ``extracted`` is the answer string the verifier read from the response (None if none).
    """

    reward: float
    correct: bool
    extracted: str | None = None
    reason: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Verdict":
        return cls(
            reward=float(data["reward"]),
            correct=bool(data["correct"]),
            extracted=data.get("extracted"),
            reason=data.get("reason", "ok"),
            details=dict(data.get("details") or {}),
        )

    @classmethod
    def failure(cls, reason: str, extracted: str | None = None, **details: Any) -> "Verdict":
        """A zero-reward, incorrect verdict with a reason (timeouts, crashes, bad format...)."""
        return cls(reward=0.0, correct=False, extracted=extracted, reason=reason, details=details)


class ProblemError(ValueError):
    """A Problem row is malformed; the message names the field (and the line when known)."""


def make_problem(
    id: str,
    task: str,
    prompt: list[dict[str, str]] | str,
    answer: Any,
    difficulty: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a Problem row. A string prompt becomes a single user message."""
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    return {
        "id": str(id),
        "task": task,
        "prompt": prompt,
        "answer": answer,
        "difficulty": dict(difficulty or {}),
        "metadata": dict(metadata or {}),
    }


def validate_problem(row: Any, where: str = "") -> dict[str, Any]:
    """Check a Problem row; raise :class:`ProblemError` naming ``where`` (e.g. ``"line 7"``) and the field."""
    prefix = f"{where}: " if where else ""
    if not isinstance(row, dict):
        raise ProblemError(f"{prefix}a problem must be a JSON object, got {type(row).__name__}")
    for key in ("id", "task", "prompt", "answer"):
        if key not in row:
            raise ProblemError(f"{prefix}missing field '{key}'")
    prompt = row["prompt"]
    if not isinstance(prompt, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    ):
        raise ProblemError(f"{prefix}field 'prompt' must be a list of {{'role': str, 'content': str}} messages")
    for key in ("difficulty", "metadata"):
        if key in row and not isinstance(row[key], dict):
            raise ProblemError(f"{prefix}field '{key}' must be an object")
    try:
        json.dumps(row)
    except (TypeError, ValueError) as exc:
        raise ProblemError(f"{prefix}row is not JSON-serializable: {exc}") from None
    return row
