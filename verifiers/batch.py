"""Verify many ``(response, answer)`` pairs across worker processes, each under a hard time limit.

Why a parent-enforced limit: verifiers call into sympy / math-verify / user programs, any of
which can run for minutes on a pathological input (``9^9^9^9``) or hold the GIL inside C code.
``signal.alarm`` only works in the main thread of the main interpreter and cannot interrupt C
code that never returns to the eval loop (math-verify's timeout fails this way inside TRL and
verl). So the *parent* watches the clock: each worker notes in shared memory which item it is
on and since when, and the parent kills the worker (its whole process group) when the limit
passes. The item gets ``Verdict.failure("timeout")``; a worker that dies (a
segfault, ``os._exit``, the OOM killer) gives its item ``Verdict.failure("error")``; either way a
fresh worker takes over the rest of the work. The batch always completes, in input order.

Efficiency: workers are persistent for the life of a :class:`VerifierPool` (one per
:func:`verify_many` call; hold a pool yourself to reuse workers across calls, as the TRL / verl
adapters do); items travel in chunks, one message out and (for fast items) one message back per
chunk; the verifier is sent once per worker. The parent times each item without a message per
item: a worker writes the index and start time of the item it is on into a two-slot shared
array before starting it.

Start method (:func:`default_start_method`): ``fork`` when the calling process has one Python
thread and no library with native thread pools loaded (the CLI, scripts, tests: workers start in
milliseconds), else ``forkserver`` (a trainer, a call from a non-main thread: forking a
multi-threaded process can leave the child stuck on a lock another thread held). forkserver
workers do not re-import the caller's ``__main__`` (see :func:`_process_class`), so no
``if __name__ == "__main__":`` guard is needed either way. The verifier is sent to the workers
with dill, so verifiers built from closures or classes defined in a function or in ``__main__`` work.
"""
from __future__ import annotations

import math
import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from reasonrl.types import Verdict

# Largest number of items sent to a worker in one message. Smaller chunks balance load better
# and lose less queued work when a worker is killed; larger ones cost fewer messages.
MAX_CHUNK = 64
# A worker must import the verifier's modules (sympy and math-verify take seconds on a busy
# 2-core machine) before it says it is ready; this bounds a start-up that hangs.
DEFAULT_STARTUP_TIMEOUT = 120.0
# Consecutive worker start-ups that die before saying "ready" before the pool gives up.
MAX_STARTUP_FAILURES = 3
# A worker sends its finished results at least this often (seconds) during a long chunk.
FLUSH_INTERVAL = 0.05


class WorkerStartupError(RuntimeError):
    """Worker processes could not be started (the verifier could not be sent to them, or they died at once)."""


def verify_many(
    verifier: Any,
    responses: Sequence[str],
    answers: Sequence[Any],
    workers: int | None = None,
    timeout: float | None = None,
    progress: bool = False,
    start_method: str | None = None,
) -> list[Verdict]:
    """Verify ``responses[i]`` against ``answers[i]`` for every ``i``; one :class:`Verdict` each, in order.

    Args:
        verifier: a :class:`~reasonrl.verifiers.base.Verifier` (anything with
            ``verify(response, answer) -> Verdict``); must be picklable with dill.
        responses: the model outputs, length N.
        answers: the reference answers, length N (task-specific objects).
        workers: worker processes. None: the CPUs available (:func:`available_cpus`; never more than N). 0: run in
            this process, sequentially, for debugging and profiling. With ``workers=0`` and no
            ``timeout`` given there is NO hard limit (nothing can stop C code from inside its
            own process); with ``workers=0`` and an explicit ``timeout`` one worker process is
            used so the limit is real.
        timeout: hard per-item limit in seconds (``math.inf``: none). None: the verifier's
            ``default_timeout``.
        progress: show a tqdm bar on stderr.
        start_method: ``"fork"``, ``"forkserver"`` or ``"spawn"``; None: :func:`default_start_method`.

    Returns:
        N verdicts, equal to ``[verifier.verify(r, a) for r, a in zip(responses, answers)]`` except
        that an item that raised gets ``Verdict.failure("error", message=...)``, one over the limit
        ``Verdict.failure("timeout", timeout=...)``, and one whose worker died
        ``Verdict.failure("error", message="worker process died ...")``.
    """
    if len(responses) != len(answers):
        raise ValueError(f"responses and answers differ in length: {len(responses)} != {len(answers)}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0 or None, got {workers}")
    if not responses:
        return []
    if workers == 0 and timeout is None:
        return _verify_in_process(verifier, responses, answers, progress)
    if workers is None:
        workers = available_cpus()
    workers = max(1, min(workers, len(responses)))
    with VerifierPool(verifier, workers=workers, timeout=timeout, start_method=start_method) as pool:
        return pool.map(responses, answers, progress=progress)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers and ``taskset`` narrow), else ``os.cpu_count()``."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def verify_one_safely(verifier: Any, response: str, answer: Any) -> Verdict:
    """``verifier.verify`` with exceptions and non-Verdict results turned into ``error`` verdicts (no time limit)."""
    try:
        verdict = verifier.verify(response, answer)
    except Exception as exc:  # a verifier bug or a hostile input must not take the batch down
        return Verdict.failure("error", message=_describe_exception(exc))
    if not isinstance(verdict, Verdict):
        return Verdict.failure("error", message=f"verifier returned {type(verdict).__name__}, expected Verdict")
    return verdict


def _verify_in_process(verifier: Any, responses: Sequence[str], answers: Sequence[Any], progress: bool) -> list[Verdict]:
    bar = _progress_bar(len(responses), progress)
    out = []
    for response, answer in zip(responses, answers):
        out.append(verify_one_safely(verifier, response, answer))
        bar.update(1)
    bar.close()
    return out


def _describe_exception(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 500 else text[:497] + "..."


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="item", dynamic_ncols=True, desc="verify")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------
# Wire format. Plain pickle for speed (answers and verdicts are JSON-like data); dill when plain
# pickle refuses (a verdict whose details hold a lambda, an answer object from a closure).


def _dumps(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import dill

        return b"D" + dill.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def _loads(data: bytes) -> Any:
    if data[:1] == b"D":
        import dill

        return dill.loads(data[1:])
    return pickle.loads(data)


# ---------------------------------------------------------------------------------------------
# The worker side.


def _worker_main(conn: Any, verifier_blob: bytes, progress_cell: Any) -> None:
    """Loop: receive a chunk ``[(index, response, answer), ...]``, send back ``("r", [(index, verdict), ...])``.

    Before each item the worker writes ``(index, start time)`` into ``progress_cell`` (shared
    memory: no message, no system call), which is how the parent times every item and knows which
    one a hung or dead worker was on. Results go back in batches: at the end of a chunk, or when
    ``FLUSH_INTERVAL`` has passed since the last send (so a slow chunk still shows progress).
    """
    # Ctrl-C goes to the whole terminal process group: let the parent decide, it kills us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import faulthandler

    # A crash becomes an ``error`` verdict naming the signal; a traceback dump from a fault
    # handler inherited from the parent (pytest enables one) would only be noise on stderr.
    faulthandler.disable()
    if hasattr(os, "setpgid"):
        try:
            # Our own process group, so a kill also reaches programs a verifier started (code sandbox).
            os.setpgid(0, 0)
        except OSError:
            pass
    try:
        import dill

        verifier = dill.loads(verifier_blob)
    except BaseException as exc:
        conn.send_bytes(_dumps(("fatal", f"the verifier could not be loaded in a worker process: {_describe_exception(exc)}")))
        return
    conn.send_bytes(_dumps(("ready", os.getpid())))
    parent = os.getppid()
    clock = time.monotonic
    while True:
        try:
            # Wake up now and then to notice an orphaning: under fork, sibling workers hold copies
            # of our pipe's other end, so a parent killed with SIGKILL never shows up as EOF.
            while not conn.poll(1.0):
                if os.getppid() != parent:
                    return
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent went away
        try:
            chunk = _loads(message)
        except Exception as exc:
            conn.send_bytes(_dumps(("chunk_error", _describe_exception(exc))))
            continue
        if chunk is None:
            return
        done: list = []
        last_send = clock()
        for index, response, answer in chunk:
            progress_cell[1] = clock()  # start time first: the parent reads it to set the deadline
            progress_cell[0] = index
            done.append((index, verify_one_safely(verifier, response, answer)))
            if clock() - last_send >= FLUSH_INTERVAL:
                conn.send_bytes(_dump_results(done))
                done, last_send = [], clock()
        conn.send_bytes(_dump_results(done))


def _dump_results(done: list) -> bytes:
    try:
        return _dumps(("r", done))
    except Exception:  # one verdict whose details neither pickle nor dill can carry
        safe = []
        for index, verdict in done:
            try:
                _dumps(verdict)
            except Exception as exc:
                verdict = Verdict.failure("error", message=f"verdict not picklable: {_describe_exception(exc)}")
            safe.append((index, verdict))
        return _dumps(("r", safe))


# ---------------------------------------------------------------------------------------------
# The parent side.


@dataclass
class _Worker:
    process: Any
    conn: Any
    started_at: float
    ready: bool = False
    # Shared ``[index, start time]`` of the item the worker is on (written by the worker).
    cell: Any = None
    # Indices sent to this worker and not yet answered, in the order it works through them.
    queue: deque = field(default_factory=deque)
    # When the current chunk was sent: the cell may still describe the previous chunk until the
    # worker reads this one, so an item's clock starts no earlier than this.
    sent_at: float = 0.0

    def item_started(self) -> float:
        return max(self.cell[1], self.sent_at)

    def current_item(self) -> int:
        """The index the worker is on (or was on when it died); the queue head when the cell is stale."""
        index = int(self.cell[0])
        return index if index in self.queue else self.queue[0]


# Modules that run native threads of their own (invisible to ``threading``): forking a process
# that imported them risks a child stuck on a lock one of those threads held.
_NATIVE_THREAD_MODULES = ("torch", "tokenizers", "jax", "tensorflow", "vllm", "grpc")


def default_start_method() -> str:
    """``"fork"`` where it is safe and fastest, else ``"forkserver"`` (else ``"spawn"``).

    fork is taken only on Linux, from a process with a single Python thread that has not imported
    a library with native thread pools (torch, tokenizers, ...): the CLI, plain scripts, tests.
    A trainer process, or a call from a non-main thread, gets forkserver, which never forks a
    multi-threaded process.
    """
    import multiprocess

    methods = multiprocess.get_all_start_methods()
    if (
        sys.platform.startswith("linux")
        and "fork" in methods
        and threading.active_count() == 1
        and not any(name in sys.modules for name in _NATIVE_THREAD_MODULES)
    ):
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


_preload_lock = threading.Lock()


class VerifierPool:
    """Persistent worker processes that verify items under a hard per-item time limit.

    Use as a context manager, or call :meth:`close`. :meth:`map` may be called many times
    (workers are reused) and from any thread (calls are serialized).

    >>> with VerifierPool(verifier, workers=2, timeout=5.0) as pool:   # doctest: +SKIP
    ...     verdicts = pool.map(responses, answers)
    """

    def __init__(
        self,
        verifier: Any,
        workers: int | None = None,
        timeout: float | None = None,
        start_method: str | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        import dill
        import multiprocess

        self.verifier = verifier
        self.workers = max(1, workers if workers is not None else available_cpus())
        self.timeout = float(getattr(verifier, "default_timeout", 10.0) if timeout is None else timeout)
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds (math.inf for no limit), got {timeout}")
        self.startup_timeout = startup_timeout
        self.start_method = start_method or default_start_method()
        self._ctx = multiprocess.get_context(self.start_method)
        if self.start_method == "forkserver":
            self._preload_verifier_modules(verifier)
        try:
            self._verifier_blob = dill.dumps(verifier, protocol=pickle.HIGHEST_PROTOCOL, recurse=True)
        except Exception as exc:
            raise TypeError(
                f"the verifier {type(verifier).__name__} cannot be sent to worker processes ({_describe_exception(exc)}); "
                "its options must be picklable, or use workers=0"
            ) from exc
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        # Counters over the life of the pool (trainers log the timeout rate).
        self.stats = {"items": 0, "timeouts": 0, "worker_deaths": 0, "workers_started": 0}

    def _preload_verifier_modules(self, verifier: Any) -> None:
        """Have the fork server import the verifier's modules once, so each new worker (and each
        replacement after a timeout) starts without re-importing sympy & co. Only effective for
        the first pool of the process: the fork server is started once."""
        modules = {"reasonrl.verifiers.batch", "reasonrl.types"}
        obj, depth = verifier, 0
        while obj is not None and depth < 4:  # wrappers keep their inner verifier in `.inner`
            module = type(obj).__module__
            if module and module != "__main__":
                modules.add(module)
            obj, depth = getattr(obj, "inner", None), depth + 1
        with _preload_lock:
            from multiprocess import forkserver

            if getattr(forkserver._forkserver, "_forkserver_pid", None) is None:
                self._ctx.set_forkserver_preload(sorted(modules))

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> "VerifierPool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:  # a pool dropped without close() must not leave processes behind
        try:
            self.close()
        except Exception:
            pass

    def close(self) -> None:
        """Stop all workers (a polite stop, then a kill for any that do not leave at once)."""
        if self._closed:
            return
        self._closed = True
        for worker in self._pool:
            try:
                worker.conn.send_bytes(_dumps(None))
            except Exception:
                pass
        deadline = time.monotonic() + 1.0
        for worker in self._pool:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                self._kill(worker)
            self._discard(worker)
        self._pool = []

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        cell = self._ctx.RawArray("d", [-1.0, 0.0])
        process = _process_class(self._ctx)(
            target=_worker_main, args=(child_conn, self._verifier_blob, cell), daemon=True, name="reasonrl-verifier"
        )
        process.start()
        child_conn.close()  # the child has its own copy; closing ours lets us see EOF when it dies
        self.stats["workers_started"] += 1
        worker = _Worker(process=process, conn=parent_conn, started_at=time.monotonic(), cell=cell)
        self._pool.append(worker)
        return worker

    def _kill(self, worker: _Worker) -> None:
        pid = worker.process.pid
        killed = False
        if worker.ready and pid and hasattr(os, "killpg"):
            try:
                # Only the group the worker made itself leader of (pgid == its pid): never ours.
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                    killed = True
            except (ProcessLookupError, PermissionError):
                pass
        if not killed:
            try:
                worker.process.kill()
            except Exception:
                pass
        worker.process.join(5.0)

    def _discard(self, worker: _Worker) -> None:
        try:
            worker.conn.close()
        except Exception:
            pass
        if worker in self._pool:
            self._pool.remove(worker)
        try:
            worker.process.close()
        except Exception:
            pass

    # -- the work loop -------------------------------------------------------------------------

    def map(self, responses: Sequence[str], answers: Sequence[Any], progress: bool = False) -> list[Verdict]:
        """Verify all pairs; same contract as :func:`verify_many`."""
        if len(responses) != len(answers):
            raise ValueError(f"responses and answers differ in length: {len(responses)} != {len(answers)}")
        with self._lock:
            if self._closed:
                raise RuntimeError("this VerifierPool is closed")
            return self._map(list(responses), list(answers), progress)

    def _map(self, responses: list[str], answers: list[Any], progress: bool) -> list[Verdict]:
        n = len(responses)
        results: list[Verdict | None] = [None] * n
        if n == 0:
            return []
        target_workers = min(self.workers, n)
        chunk = max(1, min(MAX_CHUNK, math.ceil(n / (target_workers * 4))))
        pending: deque[list[int]] = deque(list(range(i, min(i + chunk, n))) for i in range(0, n, chunk))
        remaining = n
        startup_failures = 0
        bar = _progress_bar(n, progress)

        def record(index: int, verdict: Verdict) -> None:
            nonlocal remaining
            if results[index] is None:
                results[index] = verdict
                remaining -= 1
                bar.update(1)
                if verdict.reason == "timeout":
                    self.stats["timeouts"] += 1

        def requeue(worker: _Worker) -> None:
            left = [i for i in worker.queue if results[i] is None]
            worker.queue.clear()
            if left:
                pending.appendleft(left)

        def handle_death(worker: _Worker, why: str) -> None:
            nonlocal startup_failures
            self.stats["worker_deaths"] += 1
            if not worker.ready:
                startup_failures += 1
                self._discard(worker)
                if startup_failures >= MAX_STARTUP_FAILURES:
                    raise WorkerStartupError(
                        f"verifier worker processes die before they start ({why}); run with workers=0 to "
                        f"see the failure in this process (start method {self.start_method!r})"
                    )
                return
            if worker.queue:
                index = worker.current_item()
                worker.queue.remove(index)
                record(index, Verdict.failure("error", message=f"worker process died ({why}) while verifying this item"))
            requeue(worker)  # the rest, including results it had not sent yet: they are verified again
            self._discard(worker)

        def drain(worker: _Worker) -> bool:
            """Read every message waiting from a worker; False if its pipe is closed (it died)."""
            try:
                while worker.conn.poll():
                    handle_message(worker, _loads(worker.conn.recv_bytes()))
            except (EOFError, OSError):
                return False
            return True

        def handle_message(worker: _Worker, message: tuple) -> None:
            kind = message[0]
            if kind == "r":
                for index, verdict in message[1]:
                    if worker.queue and worker.queue[0] == index:
                        worker.queue.popleft()
                    else:  # cannot happen with one sequential worker loop; stay correct if it does
                        try:
                            worker.queue.remove(index)
                        except ValueError:
                            pass
                    record(index, verdict)
            elif kind == "ready":
                worker.ready = True
            elif kind == "chunk_error":
                for index in list(worker.queue):
                    record(index, Verdict.failure("error", message=f"could not send this item to a worker: {message[1]}"))
                worker.queue.clear()
            elif kind == "fatal":
                raise WorkerStartupError(message[1])

        try:
            while remaining > 0:
                # Keep enough workers while there is unassigned work, then hand chunks to idle ready ones.
                alive = len(self._pool)
                busy = sum(1 for w in self._pool if w.queue)
                want = min(target_workers, busy + len(pending))
                for _ in range(max(0, want - alive)):
                    self._start_worker()
                lost_idle_worker = False
                for worker in list(self._pool):
                    if not pending:
                        break
                    if worker.ready and not worker.queue:
                        indices = pending.popleft()
                        try:
                            if not worker.process.is_alive():  # died while idle (between two map calls)
                                raise BrokenPipeError
                            worker.conn.send_bytes(_dumps([(i, responses[i], answers[i]) for i in indices]))
                        except (BrokenPipeError, EOFError, OSError):
                            # None of these items started: they go back to the queue, not to an error verdict.
                            pending.appendleft(indices)
                            self._kill(worker)
                            self._discard(worker)
                            lost_idle_worker = True
                            continue
                        worker.queue.extend(indices)
                        worker.sent_at = time.monotonic()
                if lost_idle_worker:
                    continue  # start its replacement now rather than after the wait below

                now = time.monotonic()
                wait_for = 1.0
                for worker in self._pool:
                    if not worker.ready:
                        wait_for = min(wait_for, worker.started_at + self.startup_timeout - now)
                    elif worker.queue and math.isfinite(self.timeout):
                        wait_for = min(wait_for, worker.item_started() + self.timeout - now)
                handles = [w.conn for w in self._pool] + [w.process.sentinel for w in self._pool]
                ready = _wait(handles, max(0.0, wait_for))

                ready_set = set(id(h) for h in ready if not isinstance(h, int)) | set(h for h in ready if isinstance(h, int))
                for worker in list(self._pool):
                    if id(worker.conn) in ready_set or worker.process.sentinel in ready_set:
                        open_pipe = drain(worker)
                        if not open_pipe or not worker.process.is_alive():
                            worker.process.join(1.0)
                            handle_death(worker, _describe_exit(worker.process.exitcode))

                now = time.monotonic()
                for worker in list(self._pool):
                    if not worker.ready and now - worker.started_at > self.startup_timeout:
                        self._kill(worker)
                        handle_death(worker, f"no start-up within {self.startup_timeout:g}s")
                    elif worker.ready and worker.queue and now - worker.item_started() > self.timeout:
                        if not drain(worker):  # results may have arrived while we were busy
                            worker.process.join(1.0)
                            handle_death(worker, _describe_exit(worker.process.exitcode))
                            continue
                        if worker.queue and time.monotonic() - worker.item_started() > self.timeout:
                            self._kill(worker)
                            index = worker.current_item()
                            worker.queue.remove(index)
                            record(index, Verdict.failure("timeout", timeout=self.timeout))
                            requeue(worker)  # finished-but-unsent results are verified again elsewhere
                            self._discard(worker)
        except BaseException:
            # An interrupt or a start-up failure: leave no worker half-way through a chunk.
            for worker in list(self._pool):
                self._kill(worker)
                self._discard(worker)
            raise
        finally:
            bar.close()
        self.stats["items"] += n
        _warn_if_dominated(results, self.timeout)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]


_PROCESS_CLASSES: dict[str, type] = {}


def _process_class(ctx: Any) -> type:
    """``ctx.Process``, except that forkserver workers do not re-import the caller's ``__main__``.

    multiprocessing re-runs the parent's main script in spawn/forkserver children so that
    functions pickled by reference can be found. We need none of that (the verifier travels
    with dill, by value where it lives in ``__main__``), and it breaks callers whose main is
    ``<stdin>`` or a script without an ``if __name__ == "__main__":`` guard. The launch below is
    multiprocess's own forkserver launch with the two ``init_main_*`` keys dropped.
    """
    method = ctx.get_start_method()
    if method != "forkserver":
        return ctx.Process
    if method in _PROCESS_CLASSES:
        return _PROCESS_CLASSES[method]
    import io

    from multiprocess import forkserver, popen_forkserver, spawn, util
    from multiprocess.context import reduction, set_spawning_popen

    class _MainlessPopen(popen_forkserver.Popen):
        def _launch(self, process_obj: Any) -> None:
            prep_data = spawn.get_preparation_data(process_obj._name)
            prep_data.pop("init_main_from_path", None)
            prep_data.pop("init_main_from_name", None)
            buf = io.BytesIO()
            set_spawning_popen(self)
            try:
                reduction.dump(prep_data, buf)
                reduction.dump(process_obj, buf)
            finally:
                set_spawning_popen(None)
            self.sentinel, w = forkserver.connect_to_new_process(self._fds)
            parent_w = os.dup(w)  # kept open: the child watches it to notice our death
            self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            self.pid = forkserver.read_signed(self.sentinel)

    class _MainlessProcess(ctx.Process):
        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            return _MainlessPopen(process_obj)

    _PROCESS_CLASSES[method] = _MainlessProcess
    return _MainlessProcess


def _warn_if_dominated(verdicts: list[Verdict], timeout: float) -> None:
    """Say so loudly when most of a batch timed out or crashed: such rewards carry no signal."""
    failed = sum(1 for v in verdicts if v.reason in ("timeout", "error"))
    if len(verdicts) >= 4 and failed * 2 > len(verdicts):
        import logging

        timeouts = sum(1 for v in verdicts if v.reason == "timeout")
        logging.getLogger("reasonrl.verifiers").warning(
            "%d of %d items failed verification (%d timeouts at %gs, %d errors): these rewards are mostly "
            "failures; raise the timeout or check the verifier",
            failed, len(verdicts), timeouts, timeout, failed - timeouts,
        )


def _wait(handles: list, timeout: float) -> list:
    from multiprocess.connection import wait

    return wait(handles, timeout)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
