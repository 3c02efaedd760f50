"""Run an untrusted program and get its stdout, stderr, exit status and time: the plain sandbox API.

>>> from reasonrl.verifiers.code.sandbox import run_program
>>> result = run_program("print(int(input()) * 2)", stdin="21\\n")   # doctest: +SKIP
>>> result.stdout, result.exit_code, result.reason                  # doctest: +SKIP
('42\\n', 0, 'ok')

Every program runs in a fresh process forked from a warm worker (see
:mod:`~reasonrl.verifiers.code.worker`), isolated as :mod:`~reasonrl.verifiers.code.isolation`
describes, under :class:`SandboxLimits`. ``SandboxResult.isolation`` says which isolation was in
force for that run. Pass/fail against tests lives in :mod:`~reasonrl.verifiers.code.harness`.

Default limits (each configurable through :class:`SandboxLimits`):

=====================  ==========  ====================================================
wall_time_s            5 s         whole run, measured by the worker; then everything is killed
cpu_time_s             5 s         per process (``RLIMIT_CPU``); the program is killed past it
memory_bytes           1 GiB       address space per process (``RLIMIT_AS``)
max_processes          64          processes + threads of the program's uid (``RLIMIT_NPROC``)
max_open_files         256         per process (``RLIMIT_NOFILE``)
max_file_size_bytes    16 MiB      largest file the program may write (``RLIMIT_FSIZE``)
max_output_bytes       1 MiB       stdout + stderr together; past it: reason ``output_limit``
=====================  ==========  ====================================================

Reasons: ``ok`` (exit status 0), ``runtime_error`` (non-zero exit, a signal, or the worker
died), ``timeout`` (wall clock or CPU limit), ``memory_limit`` (``MemoryError``),
``output_limit``, ``compile_error`` (the source does not compile), ``error`` (the sandbox itself
failed; the details say why).
"""
from __future__ import annotations

import signal as signal_module
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from reasonrl.verifiers.code.pool import JobSpec, PoolConfig, SandboxPool, get_pool

LANGUAGES = ("python", "cpp")
# Extra wall and CPU seconds a C++ program gets for its compilation (inside the same sandbox).
CPP_COMPILE_ALLOWANCE_S = 20.0


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one run (see the module table for the defaults and their meaning)."""

    wall_time_s: float = 5.0
    cpu_time_s: float = 5.0
    memory_bytes: int = 1 << 30
    max_processes: int = 64
    max_open_files: int = 256
    max_file_size_bytes: int = 16 << 20
    max_output_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        for name in ("wall_time_s", "cpu_time_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value <= 3600):
                raise ValueError(f"SandboxLimits.{name} must be a number of seconds in (0, 3600], got {value!r}")
        minimums = {"memory_bytes": 64 << 20, "max_processes": 1, "max_open_files": 16, "max_file_size_bytes": 0, "max_output_bytes": 0}
        for name, minimum in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"SandboxLimits.{name} must be an integer >= {minimum}, got {value!r}")

    def replace(self, **changes: Any) -> "SandboxLimits":
        return SandboxLimits(**{**asdict(self), **changes})

    def as_dict(self) -> dict:
        """The limits as a plain dict (what travels to the worker). ``dataclasses.asdict`` deep-copies
        field by field, a measurable share of the caller's time per job; the fields are plain numbers."""
        return {name: getattr(self, name) for name in _LIMIT_FIELDS}


_LIMIT_FIELDS = tuple(f.name for f in fields(SandboxLimits))


@dataclass
class SandboxResult:
    """What one run produced.

    ``exit_code`` is None when the program was ended by a signal (``signal`` holds its number)
    or never ran; ``time`` is wall-clock seconds; ``timed_out`` is True when the wall clock or
    the CPU limit ended it; ``reason`` is one of the module's reasons; ``isolation`` says which
    isolation was in force; ``details`` holds the rest (CPU time, peak memory, worker notes).
    """

    stdout: str
    stderr: str
    exit_code: int | None
    signal: int | None
    time: float
    timed_out: bool
    reason: str
    isolation: dict
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason == "ok"


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def classify(raw: dict, limits: SandboxLimits) -> tuple[str, dict]:
    """The reason for a finished program-mode run, and the details behind it."""
    details: dict[str, Any] = {}
    for key in ("cpu_time", "max_rss_kb", "killed_by_sandbox"):
        if raw.get(key) is not None:
            details[key] = raw[key]
    if raw.get("worker_died"):
        details["message"] = f"the sandbox worker died: {raw['worker_died']}"
        return "runtime_error", details
    if raw.get("error"):
        details["message"] = f"sandbox error: {raw['error']}"
        return "error", details
    status = raw.get("status", "")
    if raw.get("output_limit"):
        return "output_limit", details
    if raw.get("timed_out") or _cpu_limit_hit(raw, limits):
        return "timeout", details
    if "R" not in status:
        details["message"] = "the sandbox could not start the program"
        return "error", details
    if raw.get("exit_code") == 0:
        return "ok", details
    if "C" in status or raw.get("stderr", b"").startswith(b"compile_error:"):
        return "compile_error", details
    if "M" in status:
        return "memory_limit", details
    return "runtime_error", details


def _cpu_limit_hit(raw: dict, limits: SandboxLimits) -> bool:
    sig = raw.get("signal")
    if sig == signal_module.SIGXCPU:
        return True
    cpu = raw.get("cpu_time")
    return sig == signal_module.SIGKILL and cpu is not None and cpu >= limits.cpu_time_s - 0.05


def result_from_raw(raw: dict, limits: SandboxLimits) -> SandboxResult:
    reason, details = classify(raw, limits)
    return SandboxResult(
        stdout=_decode(raw.get("stdout", b"")),
        stderr=_decode(raw.get("stderr", b"")),
        exit_code=raw.get("exit_code"),
        signal=raw.get("signal"),
        time=float(raw.get("time") or 0.0),
        timed_out=reason == "timeout",
        reason=reason,
        isolation=raw.get("isolation", {}),
        details=details,
    )


def _program_job(source: str, stdin: str | bytes | None, limits: SandboxLimits, language: str) -> JobSpec:
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; valid: {', '.join(LANGUAGES)}")
    if not isinstance(source, str):
        raise TypeError(f"source must be a str, got {type(source).__name__}")
    if language == "cpp":
        from reasonrl.verifiers.code.cpp import cpp_driver

        source = cpp_driver(source, limits.cpu_time_s)
        limits = limits.replace(
            wall_time_s=limits.wall_time_s + CPP_COMPILE_ALLOWANCE_S, cpu_time_s=limits.cpu_time_s + CPP_COMPILE_ALLOWANCE_S
        )
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    return JobSpec(source=source, limits=limits.as_dict(), stdin=data or None)


def run_program(
    source: str,
    stdin: str | bytes = "",
    limits: SandboxLimits | None = None,
    language: str = "python",
    *,
    isolation: str = "auto",
    pool: SandboxPool | None = None,
) -> SandboxResult:
    """Run ``source`` as a main program with ``stdin`` and return what happened.

    Args:
        source: the program (Python, or C++ with ``language="cpp"``: compiled with g++ -O2 in the sandbox).
        stdin: its standard input (text is UTF-8 encoded). Empty: reading stdin gives EOF.
        limits: resource limits; None: :class:`SandboxLimits` defaults.
        isolation: ``auto`` (strongest available) or a level from
            :mod:`~reasonrl.verifiers.code.isolation`; ignored when ``pool`` is given.
        pool: a :class:`~reasonrl.verifiers.code.pool.SandboxPool` to run in; None: the shared one.
    """
    limits = limits or SandboxLimits()
    job = _program_job(source, stdin, limits, language)
    pool = pool or get_pool(PoolConfig(isolation=isolation))
    return result_from_raw(pool.execute(job), limits)


def run_programs(
    sources: Sequence[str],
    stdins: Sequence[str | bytes] | None = None,
    limits: SandboxLimits | None = None,
    language: str = "python",
    *,
    workers: int | None = None,
    isolation: str = "auto",
    pool: SandboxPool | None = None,
) -> list[SandboxResult]:
    """:func:`run_program` over many programs at once, spread across ``workers`` warm workers (default: the cores + 1)."""
    limits = limits or SandboxLimits()
    stdins = list(stdins) if stdins is not None else [""] * len(sources)
    if len(stdins) != len(sources):
        raise ValueError(f"sources and stdins differ in length: {len(sources)} != {len(stdins)}")
    jobs = [_program_job(s, i, limits, language) for s, i in zip(sources, stdins)]
    pool = pool or get_pool(PoolConfig(isolation=isolation), size=workers)
    raws = pool.map(pool.execute, jobs, concurrency=workers)
    return [result_from_raw(raw, limits) for raw in raws]


__all__ = ["SandboxLimits", "SandboxResult", "run_program", "run_programs", "PoolConfig", "SandboxPool", "get_pool", "classify"]
