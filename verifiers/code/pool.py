"""The caller's side of the sandbox: a pool of warm worker processes, one job at a time each.

A worker (see :mod:`~reasonrl.verifiers.code.worker`) is started lazily, the first time a job
finds no idle one and the pool is below its size, so a sequential ``verify`` loop only ever
starts one. Jobs from many threads are spread over the workers; a worker that dies (or stops
answering) gives its job a ``worker_died`` result and is replaced by the next job that needs it.

Pools are shared per process and per :class:`PoolConfig` through :func:`get_pool`; a process
forked from the owner gets its own (sockets to another process's workers are never reused).
"""
from __future__ import annotations

import array
import atexit
import itertools
import json
import math
import os
import select
import socket
import subprocess
import sys
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from reasonrl.verifiers.code import isolation as isolation_module
from reasonrl.verifiers.code.worker import DEFAULT_PRELOAD, received_fds

# Extra seconds the caller waits for a worker's answer beyond the job's own wall limit (the
# worker enforces the limit; this only catches a worker that hangs or is stopped).
ANSWER_GRACE_S = 15.0
# The worker runs ``python -I -S`` and gets this package's modules through bare package
# objects instead of importing ``reasonrl`` (whose ``__init__`` chain pulls in the task registry,
# environments and their dependencies) and ``site`` (whose ``.pth`` hooks import more). Every
# module in the worker is in the image each program's fork copies and its exit unmaps: the lean
# worker has 40% less anonymous memory (6.9 MB instead of 11.3). The caller's absolute
# ``sys.path`` (site-packages included) is kept, so programs import what a program run by this
# Python would find.
_BOOTSTRAP = (
    "import json, sys, types\n"
    "config = json.loads(sys.argv[1])\n"
    "sys.path[:0] = [p for p in config['sys_path'] if p not in sys.path]\n"
    "for name, path in config['packages']:\n"
    "    package = sys.modules[name] = types.ModuleType(name)\n"
    "    package.__path__ = [path] if path else []\n"
    "from reasonrl.verifiers.code.worker import main\n"
    "main(config)\n"
)


def _package_stubs() -> list[tuple[str, str | None]]:
    """``(name, directory)`` of this package and its parents, the parents without a directory."""
    parts = __name__.split(".")[:-1]  # reasonrl.verifiers.code
    here = os.path.dirname(os.path.abspath(__file__))
    return [(".".join(parts[:i]), here if i == len(parts) else None) for i in range(1, len(parts) + 1)]


_FDS_SPACE = socket.CMSG_SPACE(4 * array.array("i").itemsize)  # a result carries two fds at most


class SandboxStartError(RuntimeError):
    """A sandbox worker could not be started (or could not put the requested isolation in force)."""


class WorkerDied(RuntimeError):
    """The worker running a job died or stopped answering."""


@dataclass(frozen=True)
class PoolConfig:
    """How the workers are isolated (shared by every job of a pool).

    Attributes:
        isolation: ``auto`` (strongest this machine allows), ``namespaces``, ``userns`` or ``rlimits``
            (see :mod:`~reasonrl.verifiers.code.isolation`); an explicit level that is refused is an error.
        uid_base: first uid of the range the sandbox runs programs under when it is root (two per worker).
        preload: modules imported once per worker so each program gets them for free.
        extra_paths: host paths to show programs read-only, besides the system and Python directories
            (not ``/``, nor under ``/tmp`` or ``/dev``, which are the sandbox's own; programs run under an
            unprivileged uid, so the files must be world-readable).
        tmp_size: size cap of the private ``/tmp`` tmpfs that holds the scratch directories.
        shm_size: size cap of the private ``/dev/shm``.
        startup_timeout_s: how long a worker may take to say it is ready.
        pin_cpus: pin each worker, and with it its zygote, judge and programs, to one of the
            caller's usable cores, spreading the workers evenly over them. A job's processes hand
            the work to each other about twenty times (job, fork, every test call, report); on one
            core each hand-off is a plain context switch, across cores it is a cross-CPU wake-up.
            Measured on 2 cores, HumanEval: ~15-20% more programs/s, idle or with a CPU hog
            beside it (``benchmarks/results/sandbox.md``). A program's own threads and processes
            share its worker's core unless it moves them itself. False: the scheduler places them.
    """

    isolation: str = "auto"
    uid_base: int = isolation_module.DEFAULT_UID_BASE
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    extra_paths: tuple[str, ...] = ()
    tmp_size: str = "256m"
    shm_size: str = "64m"
    startup_timeout_s: float = 60.0
    pin_cpus: bool = True

    def __post_init__(self) -> None:
        if self.isolation not in isolation_module.MODES:
            raise ValueError(f"isolation must be one of {', '.join(isolation_module.MODES)}, got {self.isolation!r}")
        for path in self.extra_paths:
            normal = os.path.normpath(path)
            if normal in ("/", "/dev", "/tmp") or normal.startswith(("/dev/", "/tmp/")):
                # The host's /dev would bring its pseudo-terminals back; /tmp and /dev/shm are the sandbox's own.
                raise ValueError(f"extra_paths: {path!r} cannot be shown to programs (not /, /tmp or anything under /dev)")


_slot_lock = threading.Lock()
_next_slot = 0


def _allocate_slot() -> int:
    """A worker number for its uids: distinct within this process, and spread across processes."""
    global _next_slot
    with _slot_lock:
        _next_slot += 1
        return (os.getpid() % 16384) * 1024 + _next_slot % 1024


def _worker_environment() -> dict[str, str]:
    # Scrubbed: nothing of the caller's environment (tokens, proxies, paths) reaches the sandbox.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "MALLOC_ARENA_MAX": "2",  # glibc reserves 64 MiB of address space per thread arena otherwise
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }


class WorkerProcess:
    """One worker: its launcher process and the control socket to it (pinned to ``cpu`` if not None)."""

    def __init__(self, config: PoolConfig, cpu: int | None = None) -> None:
        self.cpu = cpu
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        slot = _allocate_slot()
        # The uids this worker's programs and judge run under (where the worker is root).
        self.program_uid, self.judge_uid = config.uid_base + 2 * slot, config.uid_base + 2 * slot + 1
        worker_config = {
            "sys_path": [p for p in sys.path if p and os.path.isabs(p)],
            "packages": _package_stubs(),
            "isolation": config.isolation,
            "worker_index": slot,
            "uid_base": config.uid_base,
            "preload": list(config.preload),
            "extra_paths": list(config.extra_paths),
            "tmp_size": config.tmp_size,
            "shm_size": config.shm_size,
            "sock_fd": theirs.fileno(),
            "cpu": cpu,
        }
        self.sock = ours
        self._buffer = bytearray(1 << 20)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, json.dumps(worker_config)],
                pass_fds=[theirs.fileno()], env=_worker_environment(), cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        ready = self._receive(config.startup_timeout_s, "start-up")
        message = json.loads(ready[0] or b"{}")
        if not message.get("ready"):
            self.kill()
            hint = "" if config.isolation == "rlimits" else " (isolation='rlimits' needs no namespaces)"
            raise SandboxStartError((message.get("fatal") or "the sandbox worker exited during start-up") + hint)
        self.isolation: dict = message["isolation"]

    def _receive(self, timeout: float, what: str) -> tuple[bytes, list[int]]:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            self.kill()
            raise WorkerDied(f"the sandbox worker gave no answer within {timeout:g}s ({what})")
        try:
            # Into a buffer kept across jobs (one thread uses a worker at a time): a fresh
            # megabyte per answer is an mmap and munmap each time.
            size, ancillary, _, _ = self.sock.recvmsg_into([self._buffer], _FDS_SPACE)
        except OSError as exc:
            raise WorkerDied(f"the sandbox worker's socket failed: {exc}") from None
        fds = received_fds(ancillary)
        if not size:
            for fd in fds:
                os.close(fd)
            raise WorkerDied("the sandbox worker exited")
        return bytes(self._buffer[:size]), fds

    def run(self, header: dict, fds: list[int], timeout: float) -> tuple[dict, list[int]]:
        try:
            socket.send_fds(self.sock, [json.dumps(header).encode()], fds)
        except OSError as exc:
            raise WorkerDied(f"could not send the job to the sandbox worker: {exc}") from None
        data, out_fds = self._receive(timeout, "job")
        return json.loads(data), out_fds

    def kill(self) -> None:
        try:
            self.process.kill()  # the worker has PDEATHSIG=SIGKILL on the launcher: it goes too
            self.process.wait(timeout=10)
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()  # EOF: the worker exits and its namespace with everything in it
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()


@dataclass
class JobSpec:
    """One program to run: its source, optional stdin, optional tests (run by a judge process)."""

    source: str
    limits: dict
    stdin: bytes | None = None
    tests: dict | None = None
    extra: dict = field(default_factory=dict)


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)  # the child shares this file offset: it must read from the start
    return fd


def _read_memfd(fd: int) -> bytes:
    try:
        chunks, offset = [], 0
        while True:
            chunk = os.pread(fd, 1 << 20, offset)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            offset += len(chunk)
    finally:
        os.close(fd)


# Per thread: whether it is one of SandboxPool.map's threads (which follow their worker's core)
# and the core it is on now.
_feeder = threading.local()


def _follow(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})  # this thread only
        _feeder.cpu = cpu
    except OSError:
        _feeder.follows_workers = False  # the core was taken away from us: stay where we are


class SandboxPool:
    """Up to ``size`` warm workers; :meth:`execute` runs one job, :meth:`map` many across all of them."""

    def __init__(self, size: int | None = None, config: PoolConfig | None = None) -> None:
        self.size = max(1, size or default_pool_size())
        self.config = config or PoolConfig()
        self._idle: list[WorkerProcess] = []
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        self._owner_pid = os.getpid()
        self._isolation: dict | None = None
        self.stats = {"jobs": 0, "workers_started": 0, "worker_deaths": 0}
        # Live workers per core (with pin_cpus): a new worker goes to the least used core. Ties go
        # in an order that starts at a core chosen by our pid, so small pools of several
        # processes (one per rank, say) do not all start on core 0.
        cores = _usable_core_list() if self.config.pin_cpus else []
        if cores:
            start = os.getpid() % len(cores)
            cores = cores[start:] + cores[:start]
        self._workers_on: dict[int, int] = {core: 0 for core in cores}

    @property
    def isolation(self) -> dict:
        """What isolation the workers run with (starts one worker if none has started yet)."""
        if self._isolation is None:
            worker = self._acquire()
            self._release(worker)
        return dict(self._isolation or {})

    def _acquire(self) -> WorkerProcess:
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("this SandboxPool is closed")
                if self._idle:
                    return self._idle.pop()
                if self._count < self.size:
                    self._count += 1
                    cpu = min(self._workers_on, key=self._workers_on.__getitem__) if self._workers_on else None
                    if cpu is not None:
                        self._workers_on[cpu] += 1
                    break
                self._cond.wait()
        try:
            worker = WorkerProcess(self.config, cpu)
        except BaseException:
            with self._cond:
                self._free_slot(cpu)
                self._cond.notify()
            raise
        self.stats["workers_started"] += 1
        self._isolation = worker.isolation
        return worker

    def _free_slot(self, cpu: int | None) -> None:
        """A worker is gone (or never started): its place in the pool and on its core are free. Under ``_cond``."""
        self._count -= 1
        if cpu is not None:
            self._workers_on[cpu] -= 1

    def _release(self, worker: WorkerProcess, dead: bool = False) -> None:
        with self._cond:
            if dead or self._closed:
                if not dead:
                    worker.close()
                self._free_slot(worker.cpu)
            else:
                self._idle.append(worker)
            self._cond.notify()

    def execute(self, job: JobSpec) -> dict:
        """Run one job; the raw result dict of the worker plus ``stdout``/``stderr`` bytes and ``isolation``."""
        fds, names = [], []
        try:
            fds.append(_memfd("program", job.source.encode("utf-8", "surrogatepass")))
            names.append("code")
            if job.tests is not None:
                fds.append(_memfd("tests", json.dumps(job.tests).encode()))
                names.append("tests")
            if job.stdin is not None:
                fds.append(_memfd("stdin", job.stdin))
                names.append("stdin")
            header = {"fds": names, "limits": job.limits, **job.extra}
            worker = self._acquire()
            if worker.cpu is not None and getattr(_feeder, "follows_workers", False) and _feeder.cpu != worker.cpu:
                _follow(worker.cpu)
            try:
                raw, out_fds = worker.run(header, fds, job.limits["wall_time_s"] + ANSWER_GRACE_S)
            except WorkerDied as exc:
                worker.kill()
                self._release(worker, dead=True)
                self.stats["worker_deaths"] += 1
                return {"worker_died": str(exc), "isolation": dict(self._isolation or {}), "stdout": b"", "stderr": b""}
            self._release(worker)
        finally:
            for fd in fds:
                os.close(fd)
        self.stats["jobs"] += 1
        if "inline_stdout" in raw:
            raw["stdout"] = raw.pop("inline_stdout").encode("latin-1")
            raw["stderr"] = raw.pop("inline_stderr").encode("latin-1")
        else:
            outputs = [_read_memfd(fd) for fd in out_fds]
            raw["stdout"], raw["stderr"] = (outputs + [b"", b""])[:2]
        raw["isolation"] = worker.isolation
        return raw

    def map(self, function: Callable[[Any], Any], items: Sequence[Any], concurrency: int | None = None) -> list:
        """``[function(item) for item in items]`` on ``concurrency`` threads (default: the pool size).

        ``function`` typically calls :meth:`execute` one or more times; threads only wait on
        sockets, the work happens in the workers. Each thread takes the next item as soon as it
        is done with one, and the calling thread only waits for them all: no per-item future or
        wake-up of the caller. If ``function`` raises, no new item is started and the exception
        of the first failing item (in ``items`` order) is raised once the others in flight end.
        """
        items = list(items)
        threads = max(1, min(concurrency or self.size, len(items) or 1))
        if threads == 1:
            return [function(item) for item in items]
        results: list[Any] = [None] * len(items)
        failures: list[tuple[int, BaseException]] = []
        stop = threading.Event()  # a failure, or the caller interrupted: start no new item
        next_index = itertools.count().__next__  # one C call: atomic under the GIL

        def feed() -> None:
            # With pinned workers (PoolConfig.pin_cpus), each of these threads moves to the core
            # of the worker it hands a job to: the job's two hand-offs between us and the worker
            # are then wake-ups on one core, not cross-CPU ones (on 2 cores: ahead in most
            # interleaved A/B pairs, by a few percent, within that machine's noise; see
            # benchmarks/results/sandbox.md). Only this pool's own threads move, never the caller's.
            _feeder.follows_workers, _feeder.cpu = True, None
            while not stop.is_set():
                index = next_index()
                if index >= len(items):
                    return
                try:
                    results[index] = function(items[index])
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    failures.append((index, exc))
                    stop.set()

        feeders = [threading.Thread(target=feed, name=f"sandbox-{i}", daemon=True) for i in range(threads)]
        try:
            for thread in feeders:
                thread.start()
            for thread in feeders:
                thread.join()
        except BaseException:  # Ctrl-C in the caller: the items in flight end, no new one starts
            stop.set()
            raise
        if failures:
            raise min(failures, key=lambda failure: failure[0])[1]
        return results

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            for worker in idle:
                self._free_slot(worker.cpu)
            self._cond.notify_all()
        if os.getpid() != self._owner_pid:
            return  # inherited through fork: the workers belong to the parent
        for worker in idle:
            worker.close()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _usable_core_list() -> list[int]:
    """The cores this process may run on, or ``[]`` where the platform does not say."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time this process's cgroup may use (its CPU quota), or None without one.

    cgroup v2 (``cpu.max`` of our cgroup, else of the root we see) or v1 (``cpu.cfs_quota_us``).
    A container limited to 4 CPUs on a 64-core host still sees 64 cores in its affinity mask.
    """
    candidates = []
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    candidates.append(os.path.join("/sys/fs/cgroup", line[3:].strip().lstrip("/"), "cpu.max"))
    except OSError:
        pass
    candidates.append("/sys/fs/cgroup/cpu.max")
    for path in candidates:
        try:
            with open(path) as f:
                return _parse_cpu_max(f.read())
        except (OSError, ValueError):
            continue
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            quota_us = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period_us = int(f.read())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _parse_cpu_max(text: str) -> float | None:
    """cgroup v2 ``cpu.max`` (``"$QUOTA $PERIOD"`` or ``"max $PERIOD"``) as CPUs, None for no quota."""
    quota, period = text.split()[:2]
    return None if quota == "max" else int(quota) / int(period)


def _usable_cores() -> int:
    """Cores this process may run on, capped by its cgroup's CPU quota (rounded up)."""
    cores = len(_usable_core_list()) or os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def default_pool_size() -> int:
    """Workers of a pool by default: one more than the usable cores (see :func:`_usable_cores`).

    A worker is idle for part of every job (while the caller reads the result and sends the next
    job); one extra worker keeps a core busy meanwhile (measured on 2 cores, HumanEval, before
    workers were pinned: ~+20% programs/s over one per core; pinned, 2, 3 and 4 workers were
    within the machine's noise of each other). With ``pin_cpus``, a program that sleeps leaves
    its worker's core to the other workers pinned there: with one, that core idles meanwhile.
    """
    return _usable_cores() + 1


_pools: dict[PoolConfig, SandboxPool] = {}
_pools_lock = threading.Lock()
_pools_pid = os.getpid()


def get_pool(config: PoolConfig | None = None, size: int | None = None) -> SandboxPool:
    """The process-wide pool for ``config``, grown to at least ``size`` workers (default: :func:`default_pool_size`)."""
    global _pools_pid
    config = config or PoolConfig()
    with _pools_lock:
        if os.getpid() != _pools_pid:  # forked: the parent's workers are not ours to talk to
            _pools.clear()
            _pools_pid = os.getpid()
        pool = _pools.get(config)
        if pool is None or pool._closed:
            pool = _pools[config] = SandboxPool(size or default_pool_size(), config)
        elif size and size > pool.size:
            with pool._cond:
                pool.size = size
                pool._cond.notify_all()
        return pool


@atexit.register
def _close_pools() -> None:
    with _pools_lock:
        pools = list(_pools.values()) if os.getpid() == _pools_pid else []
        _pools.clear()
    for pool in pools:
        pool.close()


def limits_dict(limits: Any) -> dict:
    return asdict(limits)
