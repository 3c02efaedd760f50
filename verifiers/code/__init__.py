"""The ``code`` verifier: model-written programs run in a sandbox against tests.

>>> from reasonrl import verifiers
>>> v = verifiers.get("code")
>>> answer = {"test_list": ["assert add(2, 3) == 5"]}
>>> v.verify("```python\\ndef add(a, b):\\n    return a + b\\n```", answer).correct    # doctest: +SKIP
True

Modules:

* :mod:`.sandbox` — ``run_program(source, stdin, limits) -> SandboxResult``: the plain
  "run this program" API (also for rStar-style step execution), and its limits.
* :mod:`.harness` — the test formats of the ``answer`` field (HumanEval, MBPP, asserts,
  stdin/stdout), the response extraction rule and the output comparison.
* :mod:`.isolation` — what isolation is put in force and how it falls back.
* :mod:`.worker`, :mod:`.pool` — warm pre-imported workers; each one's zygote forks a fresh child per program.
* :mod:`.judge`, :mod:`.candidate`, :mod:`.codec` — tests and program in separate processes,
  talking plain data only: why a pass cannot be faked.

Defaults: 5 s wall clock and 5 s CPU per program (per test case for stdin/stdout tests), 1 GiB
of address space, 1 MiB of output; see :class:`~reasonrl.verifiers.code.sandbox.SandboxLimits`.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier, register
from reasonrl.verifiers.code.harness import AnswerFormatError, grade, grade_many, parse_answer
from reasonrl.verifiers.code.pool import PoolConfig, SandboxPool, get_pool
from reasonrl.verifiers.code.sandbox import SandboxLimits, SandboxResult, run_program, run_programs

__all__ = [
    "CodeVerifier", "SandboxLimits", "SandboxResult", "run_program", "run_programs", "PoolConfig",
    "SandboxPool", "get_pool", "parse_answer", "AnswerFormatError",
]


@register("code")
class CodeVerifier(Verifier):
    """Runs the response's program against the answer's tests in the sandbox; reward 1 only when every test passed.

    Args:
        wall_time_s: wall-clock limit per program (per case for stdin/stdout tests).
        cpu_time_s: CPU-time limit per process; None: equal to ``wall_time_s``.
        memory_mb: address-space limit per process, in MiB.
        max_output_bytes: stdout + stderr cap; past it the verdict is ``output_limit``.
        max_processes: processes and threads the program may have at once.
        isolation: ``auto`` (strongest this machine allows), ``namespaces``, ``userns`` or ``rlimits``.
        workers: sandbox workers for :meth:`verify_batch` (default: see
            :func:`~reasonrl.verifiers.code.pool.default_pool_size`).
        pin_cpus: pin each worker and its programs to one core, spread over the usable cores
            (faster; see :class:`~reasonrl.verifiers.code.pool.PoolConfig`).

    The options are plain values, so the verifier pickles (``verify_many`` and the CLI send it
    to worker processes; each process then starts its own sandbox workers on first use).
    """

    name = "code"
    structured_answer = True
    # verify_many's per-item limit: above the sandbox's own wall limit plus a cold worker start.
    default_timeout = 60.0

    def __init__(
        self,
        wall_time_s: float = 5.0,
        cpu_time_s: float | None = None,
        memory_mb: int = 1024,
        max_output_bytes: int = 1 << 20,
        max_processes: int = 64,
        isolation: str = "auto",
        workers: int | None = None,
        pin_cpus: bool = True,
    ) -> None:
        self.limits = SandboxLimits(
            wall_time_s=wall_time_s,
            cpu_time_s=cpu_time_s if cpu_time_s is not None else wall_time_s,
            memory_bytes=int(memory_mb) << 20,
            max_output_bytes=max_output_bytes,
            max_processes=max_processes,
        )
        self.config = PoolConfig(isolation=isolation, pin_cpus=pin_cpus)
        self.workers = workers

    def __getstate__(self) -> dict:
        return {"limits": asdict(self.limits), "config": asdict(self.config), "workers": self.workers, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.limits = SandboxLimits(**state["limits"])
        config = dict(state["config"])
        config["preload"] = tuple(config.get("preload", ()))
        config["extra_paths"] = tuple(config.get("extra_paths", ()))
        self.config = PoolConfig(**config)
        self.workers = state["workers"]
        self.name = state.get("name", "code")

    def _pool(self, size: int | None = None) -> SandboxPool:
        return get_pool(self.config, size=size or self.workers)

    def verify(self, response: str, answer: Any) -> Verdict:
        """One response; a malformed ``answer`` raises :class:`AnswerFormatError` (it names the field)."""
        return grade(response, answer, self._pool(), self.limits)

    def verify_batch(
        self,
        responses: Sequence[str],
        answers: Sequence[Any],
        workers: int | None = None,
        timeout: float | None = None,
        progress: bool = False,
    ) -> list[Verdict]:
        """Verify many pairs on the sandbox's own warm workers (one per core + 1 by default).

        Better than the generic process pool here: the sandbox already isolates and time-limits
        every program, so one thread per worker just feeds jobs. ``timeout`` replaces the wall
        (and CPU) limit per program. A malformed answer gives its item an ``error`` verdict.
        """
        limits = self.limits
        if timeout is not None:
            limits = limits.replace(wall_time_s=float(timeout), cpu_time_s=min(float(timeout), limits.cpu_time_s))
        pool = self._pool(workers)
        concurrency = workers or pool.size
        if not progress:
            return grade_many(responses, answers, pool, limits, concurrency=concurrency)
        from tqdm import tqdm

        bar = tqdm(total=len(responses), unit="item", desc="verify code")
        out: list[Verdict] = []
        step = max(1, concurrency * 8)
        for start in range(0, len(responses), step):
            out.extend(grade_many(responses[start:start + step], answers[start:start + step], pool, limits, concurrency=concurrency))
            bar.update(min(step, len(responses) - start))
        bar.close()
        return out

