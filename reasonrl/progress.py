"""Progress for long work: a tqdm bar on a terminal, plain lines in a log.

A bar redraws itself with carriage returns; written to a file (``reasonrl train > log``, a CI log,
a job scheduler's output) every redraw stays in the file, and the main job's log grew to 165 KB of
them. :func:`progress_bar` gives the bar only when standard error is a terminal, and otherwise a
:class:`LineProgress` with the same methods that prints one line every twentieth of the way.
"""
from __future__ import annotations

import sys
from typing import Any


class LineProgress:
    """The tqdm methods the trainers use, printing ``desc: n/total key=value ...`` lines instead of redrawing."""

    def __init__(self, total: int, desc: str, initial: int = 0, lines: int = 20) -> None:
        self.total, self.desc, self.n = total, desc, initial
        self.every = max(1, total // lines)
        self.postfix: dict[str, Any] = {}

    def update(self, count: int = 1) -> None:
        self.n += count
        if self.n % self.every == 0 or self.n == self.total:
            fields = " ".join(f"{k}={v}" for k, v in self.postfix.items())
            print(f"{self.desc}: {self.n}/{self.total} {fields}".rstrip(), file=sys.stderr, flush=True)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def write(self, message: str) -> None:
        print(message, flush=True)

    def close(self) -> None:
        """Nothing to tidy up: every line is already written."""


def progress_bar(total: int, desc: str, enabled: bool = True, initial: int = 0, leave: bool = True) -> Any:
    """A tqdm bar on a terminal, :class:`LineProgress` otherwise; None when ``enabled`` is false."""
    if not enabled:
        return None
    if not sys.stderr.isatty():
        return LineProgress(total, desc, initial)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=leave)
