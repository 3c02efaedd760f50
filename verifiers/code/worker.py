"""The sandbox worker: a warm, pre-imported process whose zygote forks one fresh isolated child per program.

Process tree of one worker (``namespaces`` isolation, as root)::

    caller (SandboxPool)
      └─ launcher              python -I -S; entered new PID/net/mount/IPC/UTS namespaces (unshare(2))
           └─ worker           PID 1 of the new PID namespace; private read-only root; no network
                ├─ zygote      forked once from the worker; forks each program's process, reaps it
                │    └─ candidate  the program (its own session, program uid, rlimits); one per job
                └─ judge       runs the tests (judge uid, not dumpable); kept across jobs

With ``PoolConfig.pin_cpus`` (the default) the launcher first pins itself to the one core the
pool gave it, so the whole tree above, programs included, runs on that core: the many hand-offs
of a job between these processes are then context switches, not cross-CPU wake-ups.

Where the program cannot get a uid of its own (``userns``, or ``rlimits`` without root), the
judge is forked per job instead. After each job the worker kills every process of the job: in a
PID namespace every process but itself, the zygote and a kept judge (a scan of its own
``/proc``); otherwise process groups, the sandbox uids' processes and its children (it is a
child subreaper), until none is left.

Why a zygote: see :class:`_Zygote` (a fork makes the parent's pages copy-on-write; the worker,
busy supervising while the program runs, would pay a page copy for every page it writes).

The worker never reads the program's source nor the tests: they arrive as memfds passed over
the control socket (SCM_RIGHTS) and only the child that needs each one reads it. So a program
cannot find the tests (or another program's source) in the memory it inherits (the zygote's,
forked from the worker before any job ran).

One job at a time: have the zygote fork the candidate (and hand the tests to the judge), watch
stdout/stderr (the output cap), the judge's report, the program's exit (reported by the zygote)
and the wall clock; then kill every process of the job, reap them all, wipe the scratch
directory and answer.
"""
from __future__ import annotations

import array
import gc
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any, Iterable, NamedTuple

from reasonrl.verifiers.code import candidate, codec, isolation, judge, linux

# Modules a program is likely to import, loaded once in the worker so that every forked child
# has them for free (what makes a fork cheaper than a fresh interpreter). Kept short on purpose:
# each preloaded module makes every fork dearer (measured: the 32 modules of an earlier list
# added ~0.45 ms of CPU per fork), while a rarely used one costs only the programs that import it.
DEFAULT_PRELOAD = (
    "math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "typing", "random",
    "operator", "copy",
)
# Where a program's uid cannot read the standard library on disk (rlimits mode as root, Python
# under a private home such as /root/.pyenv), a program can import only what its worker has
# loaded: then these are loaded too, the modules programs (HumanEval, MBPP, contest solutions)
# import most, so that a correct program is not failed for its imports. Each costs every fork a
# little; the price is paid only in that mode.
UNREADABLE_STDLIB_PRELOAD = (
    "abc", "array", "bisect", "calendar", "cmath", "collections.abc", "contextlib", "copy", "dataclasses",
    "datetime", "decimal", "enum", "fractions", "hashlib", "io", "json", "numbers", "queue", "statistics",
    "string", "struct", "textwrap", "time", "types", "unicodedata",
)
MAX_HEADER_BYTES = 1 << 16
STATUS_READY = b"R"
# Exit code of a child whose sandbox set-up failed before any program code ran.
SETUP_FAILED_EXIT = 121
# A kept judge process is replaced after this many jobs (bounds what tests leave behind in it).
JUDGE_RECYCLE_JOBS = 500
# After the program is gone, how long a kept judge has to report before it is replaced.
JUDGE_GRACE_S = 2.0
# How long the zygote may take to fork a program's process, or to report a killed one's exit,
# before it is replaced (it runs no untrusted code, but where the program shares its uid, in
# ``userns`` isolation, the program can stop it: that costs this long, once).
ZYGOTE_TIMEOUT_S = 3.0
# Worker -> zygote: test job?, then the ChildLimits fields. Zygote -> worker: the program's pid,
# then (after reaping it) its wait status, user and system CPU seconds, peak RSS in KiB.
_SPAWN_REQUEST = struct.Struct("<?dqqqq")
_SPAWNED = struct.Struct("<i")
_EXITED = struct.Struct("<iddq")


def main(config: dict) -> None:
    """Entry point of the launcher process (see the module docstring). Never returns."""
    sock_fd = config["sock_fd"]
    if config.get("cpu") is not None:
        # Before anything else, so every process of this worker inherits it (PoolConfig.pin_cpus).
        try:
            os.sched_setaffinity(0, {config["cpu"]})
        except OSError:
            pass  # a core taken away since (cpuset change): the scheduler places us instead
    _site_builtins()
    _import_all(config.get("preload", DEFAULT_PRELOAD))
    try:
        mode = isolation.enter_namespaces(config["isolation"])
    except Exception as exc:
        _send_fatal(sock_fd, f"{type(exc).__name__}: {exc}")
        os._exit(1)
    if mode == "rlimits":
        _worker_main(sock_fd, mode, config)
    pid = os.fork()
    if pid == 0:
        try:
            # The launcher is our only link to the caller: if it dies, so do we (and the namespace).
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass
        _worker_main(sock_fd, mode, config)
    os.close(sock_fd)  # so the caller sees EOF as soon as the worker is gone
    signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGKILL))
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            status = 0
            break
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF if status else 0)


def _import_all(names: Iterable[str]) -> None:
    """Preload: import each module that imports here; one that does not is the programs' to miss."""
    for name in names:
        try:
            __import__(name)
        except Exception:
            pass


def _site_builtins() -> None:
    """``exit``, ``quit``, ``help``, ``copyright``, ``credits``, ``license``: the built-ins ``site`` adds.

    The worker runs with ``-S`` (see ``pool._BOOTSTRAP``); programs still expect these (a script
    ending in ``exit()``). Importing ``site`` under ``-S`` changes nothing else.
    """
    import site

    site.setquit()
    site.setcopyright()
    site.sethelper()


def _send_fatal(sock_fd: int, message: str) -> None:
    try:
        os.write(sock_fd, json.dumps({"fatal": message}).encode())
    except OSError:
        pass


def _worker_main(sock_fd: int, mode: str, config: dict) -> None:
    try:
        iso = isolation.setup_worker(
            mode, config["worker_index"], config["uid_base"], config.get("extra_paths", ()),
            config.get("tmp_size", "256m"), config.get("shm_size", "64m"),
        )
        worker = Worker(socket.socket(fileno=sock_fd), iso)
    except Exception as exc:
        _send_fatal(sock_fd, f"sandbox set-up failed ({mode}): {type(exc).__name__}: {exc}")
        os._exit(1)
    if not iso.stdlib_readable:
        _import_all(UNREADABLE_STDLIB_PRELOAD)
    if iso.private_root:
        # /tmp and /dev/shm are the programs' to write in this root: a module the worker or the
        # judge imports later (shutil on a wipe, what a test imports) must never be found there.
        sys.path[:] = [p for p in sys.path if not p.startswith(("/tmp/", "/dev/shm/")) and p not in ("/tmp", "/dev/shm")]
    _prewarm()
    # Objects that exist now are never collected in the children: without this, the first garbage
    # collection in each forked child walks (and so copies, page by page) the whole inherited heap.
    gc.collect()
    gc.freeze()
    worker.sock.send(json.dumps({"ready": True, "isolation": iso.describe(), "pid_in_namespace": os.getpid()}).encode())
    try:
        worker.serve()
    finally:
        os._exit(0)


def _prewarm(rounds: int = 16) -> None:
    """Run, in the worker, the code paths every child runs (framing, codec, compile, the request loop).

    Lazily built state (JSON encoders, struct formats, the compiler's and codec's first-use
    caches) is then made once here and shared with every child, instead of being built (and
    its pages allocated and copied) again in each one. ``rounds`` times, because CPython 3.11
    rewrites a function's bytecode in place ("quickening", then specialising each instruction)
    only after several calls: done here, every child inherits the finished code instead of
    rewriting (and so copying) those pages itself. Nothing of a program or a test is involved.
    """
    import linecache

    # Two pipes, as between a judge and a program.
    requests_r, requests_w = os.pipe()
    replies_r, replies_w = os.pipe()
    name, filename = "_reasonrl_prewarm", "_reasonrl_prewarm.py"
    source = "def f(x, y=()):\n    y.append(x) if isinstance(y, list) else None\n    return [x] * 2, {'k': x}\n"
    try:
        json.loads(json.dumps({"status": "passed", "tests_passed": 1}))
        judge_side, program_side = codec.FrameReader(replies_r), codec.FrameReader(requests_r)
        for _ in range(rounds):
            candidate._register_source(filename, source)
            module = candidate._fresh_module(name, filename)
            exec(compile(source, filename, "exec"), module.__dict__)
            table = candidate._ObjectTable()
            table.namespace = module.__dict__
            table.replies_fd = replies_w
            codec.send_frame(requests_w, ["get", "f"])
            candidate._serve_one(program_side.recv(), table)
            handle = codec.decode(judge_side.recv()[1], lambda key, type_name: key)
            codec.send_frame(requests_w, ["call", handle, [codec.encode(2.5), codec.encode([1, (True, None), "a"])], {}])
            candidate._serve_one(program_side.recv(), table)
            codec.decode(judge_side.recv()[1], lambda key, type_name: None)
    except Exception:
        pass  # only an optimisation
    finally:
        sys.modules.pop(name, None)
        linecache.cache.pop(filename, None)
        for fd in (requests_r, requests_w, replies_r, replies_w):
            os.close(fd)


class Worker:
    """The job loop of one worker process."""

    def __init__(self, sock: socket.socket, iso: isolation.WorkerIsolation) -> None:
        self.sock = sock
        self.iso = iso
        self.jobs = 0
        self.is_namespace_init = iso.pid_namespace and os.getpid() == 1
        # A judge kept across jobs needs a way to kill the program's processes and not the judge:
        # a uid of the program's own.
        self.persistent_judge = iso.uid_separation
        self.judge: _JudgeServer | None = None
        self.devnull = os.open(os.devnull, os.O_RDWR)
        # What every child inherits (the worker's handlers never change after start-up).
        self.inherited_handlers = isolation.handled_signals()
        if iso.private_root:
            self.scratch_root = "/tmp"
        else:
            import tempfile

            self.scratch_root = tempfile.mkdtemp(prefix="reasonrl-sandbox-")
        if not iso.private_root:
            os.chmod(self.scratch_root, 0o711)
        # One job at a time, and its directory is wiped before the next: one path serves them all,
        # so the programs' environment (HOME, TMPDIR) is the same for every job and the zygote
        # sets it once.
        self.scratch = os.path.join(self.scratch_root, "job")
        self.zygote: _Zygote | None = None
        # Our own PID namespace's /proc: its entries but the pids, and us (PID 1).
        self._proc_fixed_entries = (
            {e for e in os.listdir("/proc") if not e.isdigit()} | {"1"} if self.is_namespace_init else set()
        )

    def serve(self) -> None:
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, MAX_HEADER_BYTES, 8)
            except (OSError, ValueError):
                return
            if not data:
                self._close_fds(fds)
                if self.judge is not None:
                    self.judge.stop()
                if self.zygote is not None:
                    self.zygote.stop()
                if not self.iso.private_root:
                    _rmtree(self.scratch_root, ignore_errors=True)
                return  # the caller went away: our exit ends the namespace and all in it
            try:
                header = json.loads(data)
                result = self.run_job(header, fds)
                payload, out_fds = _result_message(result)
            except Exception as exc:
                self._close_fds(fds)
                payload, out_fds = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode(), []
            try:
                socket.send_fds(self.sock, [payload], out_fds)
            except OSError:
                return
            finally:
                self._close_fds(out_fds)

    @staticmethod
    def _close_fds(fds: list[int]) -> None:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    # -- one job -----------------------------------------------------------------------------

    def run_job(self, header: dict, fds: list[int]) -> dict:
        self.jobs += 1
        by_name = dict(zip(header["fds"], fds))  # which fd is which: "code", "tests"?, "stdin"?
        code_fd = by_name["code"]
        tests_fd = by_name.get("tests")
        stdin_fd = by_name.get("stdin", self.devnull)
        limits = header["limits"]
        is_test_job = tests_fd is not None
        child_limits = isolation.ChildLimits(
            cpu_time_s=limits["cpu_time_s"], memory_bytes=limits["memory_bytes"], max_processes=limits["max_processes"],
            max_open_files=limits["max_open_files"], max_file_size_bytes=limits["max_file_size_bytes"],
        )
        scratch = self.scratch
        try:
            isolation.make_scratch_dir(scratch, self.iso.program_uid)
        except FileExistsError:  # left by a job whose wipe failed part-way
            _rmtree(scratch)
            isolation.make_scratch_dir(scratch, self.iso.program_uid)
        job = _Job(started=time.monotonic(), wall=limits["wall_time_s"], max_output=limits["max_output_bytes"])
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        # The status pipe labels a main-mode run ("R": set up, then how it failed). A test job's
        # program reports to the judge instead; without the pipe the worker is woken once less.
        status_r, status_w = os.pipe() if not is_test_job else (-1, -1)
        # The judge and the program talk over two pipes, one each way: a round trip over pipes
        # costs the kernel about half what it does over a socket pair (6 vs 11 us, one core).
        requests_r = requests_w = replies_r = replies_w = -1
        if is_test_job:
            requests_r, requests_w = os.pipe()
            replies_r, replies_w = os.pipe()
        try:
            child_fds = [code_fd, stdin_fd, out_w, err_w, *((requests_r, replies_w) if is_test_job else (status_w,))]
            zygote = self._zygote_server()
            zygote.spawn(is_test_job, child_limits, child_fds)
            # The judge gets its job while the zygote forks (on the other core, usually).
            if is_test_job:
                if self.persistent_judge:
                    self._judge_server().submit(self.jobs, tests_fd, replies_r, requests_w)
                else:
                    job.judge_pid, job.result_r = self._fork_judge(tests_fd, replies_r, requests_w, limits)
            job.cand_pid = zygote.spawned_pid()
        finally:
            for fd in (code_fd, tests_fd, out_w, err_w, status_w, requests_r, requests_w, replies_r, replies_w):
                if fd is not None and fd >= 0:
                    os.close(fd)
            if stdin_fd != self.devnull:
                os.close(stdin_fd)
        try:
            result = self._supervise(job, out_r, err_r, status_r, is_test_job)
        finally:
            self._kill_job_processes(job)
            for fd in (out_r, err_r, status_r, job.result_r):
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            self._wipe(scratch)
        return result

    def _judge_limits(self, wall: float) -> isolation.ChildLimits:
        return isolation.ChildLimits(cpu_time_s=wall + 1, memory_bytes=4 << 30, max_processes=8, max_open_files=64, max_file_size_bytes=0)

    def _fork_judge(self, tests_fd: int, replies_fd: int, requests_fd: int, limits: dict) -> tuple[int, int]:
        """A judge process for this job only (where the program and the judge share a uid)."""
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                for fd in (0, 1, 2):
                    os.dup2(self.devnull, fd)
                isolation.lock_down(self.iso, self.iso.judge_uid, self._judge_limits(limits["wall_time_s"]),
                                    [tests_fd, replies_fd, requests_fd, result_w], "/", dumpable=False,
                                    inherited_handlers=self.inherited_handlers)
                spec = json.loads(codec.read_whole(tests_fd))
                os.close(tests_fd)
            except BaseException as exc:
                _write_report(result_w, {"status": "failed", "origin": "judge", "error": "SetupError", "message": str(exc)})
                os._exit(SETUP_FAILED_EXIT)
            report = judge.judge_report(spec, replies_fd, requests_fd)
            _write_report(result_w, report)
            os._exit(0)
        os.close(result_w)
        return pid, result_r

    def _zygote_server(self) -> "_Zygote":
        if self.zygote is not None and not self.zygote.alive:
            self.zygote.stop()
            self.zygote = None
        if self.zygote is None:
            self.zygote = _Zygote(self)
        return self.zygote

    def _judge_server(self) -> "_JudgeServer":
        if self.judge is not None and (not self.judge.alive or self.judge.jobs >= JUDGE_RECYCLE_JOBS):
            self.judge.stop()
            self.judge = None
        if self.judge is None:
            self.judge = _JudgeServer(self)
        return self.judge

    def _supervise(self, job: "_Job", out_r: int, err_r: int, status_r: int, is_test_job: bool) -> dict:
        poller = select.poll()
        outputs = {out_r: bytearray(), err_r: bytearray()}
        for fd in (out_r, err_r, status_r):
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        report_fd = -1
        if is_test_job:
            report_fd = job.result_r if job.judge_pid > 0 else self.judge.sock.fileno()
            poller.register(report_fd, select.POLLIN)
        # The program's exit comes from the zygote (its parent); a judge forked for this job is ours.
        zygote_fd = self.zygote.sock.fileno()
        poller.register(zygote_fd, select.POLLIN)
        pidfds = {}
        polled: list[int] = []  # kernels before 5.3 have no pidfds: check these with waitpid
        for pid in (job.judge_pid,):
            if pid > 0:
                try:
                    pidfd = os.pidfd_open(pid)
                except (OSError, AttributeError):
                    polled.append(pid)
                    continue
                pidfds[pidfd] = pid
                poller.register(pidfd, select.POLLIN)
        status = bytearray()
        report = bytearray()  # from a judge forked for this job
        kept_judge_report: dict | None = None  # from the kept judge, already parsed
        report_done = False
        total_output = 0
        timed_out = output_limit = False
        deadline = job.started + job.wall
        try:
            while True:
                if is_test_job:
                    if report_done and (job.judge_pid < 0 or job.judge_pid in job.exits):
                        break
                elif job.cand_pid in job.exits:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for pid in polled:
                    if pid not in job.exits:
                        done_pid, wait_status, usage = os.wait4(pid, os.WNOHANG)
                        if done_pid:
                            job.exits[pid] = (wait_status, usage)
                wait_ms = max(1, int(remaining * 1000))
                if polled:
                    wait_ms = min(wait_ms, 5)
                for fd, _event in poller.poll(wait_ms):
                    if fd == zygote_fd:
                        poller.unregister(fd)
                        self._collect_program_exit(job, timeout=0.0)
                    elif fd in pidfds:
                        poller.unregister(fd)
                        pid = pidfds[fd]
                        _, wait_status, usage = os.wait4(pid, 0)
                        job.exits[pid] = (wait_status, usage)
                    elif fd == report_fd and job.judge_pid < 0:
                        message = self.judge.receive(job_id=self.jobs)
                        if message is not None:
                            kept_judge_report = message
                            report_done = True
                        elif not self.judge.alive:
                            poller.unregister(fd)
                            report_done = True
                    else:
                        data = os.read(fd, 1 << 16)
                        if fd == status_r:
                            status += data[:64]
                            if not data:
                                poller.unregister(fd)
                        elif fd == report_fd:
                            report += data[: 1 << 20]
                            if not data:
                                poller.unregister(fd)
                                report_done = True
                        elif not data:
                            poller.unregister(fd)
                        else:
                            room = max(0, job.max_output - total_output)
                            outputs[fd] += data[:room]
                            total_output += len(data)
                            if total_output > job.max_output:
                                output_limit = True
                if output_limit:
                    break
        finally:
            for pidfd in pidfds:
                os.close(pidfd)
        elapsed = time.monotonic() - job.started
        candidate_running = job.cand_pid not in job.exits
        self._kill_job_processes(job)
        if is_test_job and job.judge_pid < 0 and not report_done:
            # The program is gone, so a judge still waiting on it reports at once; one that does
            # not (stuck in a test's own loop) is replaced.
            message = self.judge.receive(job_id=self.jobs, timeout=JUDGE_GRACE_S)
            if message is None:
                self.judge.stop()
                self.judge = None
            else:
                kept_judge_report = message
        # Every writer is gone now: what is left in the pipes is bounded; read it up to the cap.
        for fd in (out_r, err_r):
            while total_output <= job.max_output:
                try:
                    data = os.read(fd, 1 << 16)
                except OSError:
                    break
                if not data:
                    break
                room = max(0, job.max_output - total_output)
                outputs[fd] += data[:room]
                total_output += len(data)
                if total_output > job.max_output:
                    output_limit = True
        wait_status, usage = job.exits.get(job.cand_pid, (None, None))
        result = {
            "exit_code": None, "signal": None, "timed_out": timed_out, "output_limit": output_limit,
            "killed_by_sandbox": candidate_running, "time": elapsed,
            "cpu_time": (usage.ru_utime + usage.ru_stime) if usage is not None else None,
            "max_rss_kb": usage.ru_maxrss if usage is not None else None,
            "status": status.decode("ascii", "replace"),
            "stdout": bytes(outputs[out_r]), "stderr": bytes(outputs[err_r]),
            "judge": None,
        }
        if wait_status is not None:
            if os.WIFSIGNALED(wait_status):
                result["signal"] = os.WTERMSIG(wait_status)
            else:
                result["exit_code"] = os.waitstatus_to_exitcode(wait_status)
        if is_test_job:
            parsed = kept_judge_report
            if parsed is None and report:
                parsed = _parse_report(bytes(report))
            if isinstance(parsed, dict):
                parsed.pop("job", None)
            result["judge"] = parsed
        return result

    # -- clean-up ------------------------------------------------------------------------------

    def _collect_program_exit(self, job: "_Job", timeout: float) -> None:
        """Record the program's exit status as its parent, the zygote, reports it (it has reaped it)."""
        if job.cand_pid in job.exits:
            return
        exit_report = self.zygote.receive_exit(timeout)
        if exit_report is not None:
            job.exits[job.cand_pid] = exit_report
        elif not self.zygote.alive:
            # The zygote died: its child came to us (PID 1 / subreaper) or was never started.
            try:
                os.kill(job.cand_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                _, wait_status, usage = os.wait4(job.cand_pid, 0)
                job.exits[job.cand_pid] = (wait_status, usage)
            except ChildProcessError:
                job.exits[job.cand_pid] = (signal.SIGKILL, None)

    def _kill_job_processes(self, job: "_Job") -> None:
        """Kill and reap every process the job started; afterwards none is left, not even a zombie."""
        if job.cleaned:
            return
        job.cleaned = True
        if job.cand_pid > 0 and job.cand_pid not in job.exits:
            # The usual case: the program's one process, still waiting for the judge. Its pid
            # cannot be reused before the zygote reaps it, and the zygote reports that reaping.
            try:
                os.killpg(job.cand_pid, signal.SIGKILL)  # its own session and group (setsid)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.kill(job.cand_pid, signal.SIGKILL)  # in case it had not reached setsid yet
            except (ProcessLookupError, PermissionError):
                pass
            self._collect_program_exit(job, timeout=ZYGOTE_TIMEOUT_S)
            if job.cand_pid not in job.exits and self.zygote is not None:
                # No report: replace the zygote; its children (the program's process among them)
                # come to us and are reaped below.
                self.zygote.stop()
                self.zygote = None
        keep = {self.zygote.pid} if self.zygote is not None and self.zygote.alive else set()
        if self.judge is not None:
            keep.add(self.judge.pid)
        if self.is_namespace_init:
            # PID 1 of our own namespace: every process in it but us, the zygote and a kept judge
            # is the job's, and every orphan is our child.
            self._kill_namespace_except(job, keep)
            return
        # Otherwise: the judge's process group, every process of the sandbox uid(s) (all a program
        # can start keeps its uid: no_new_privs), and our children but the zygote and the judge
        # server (orphans come back to us: we are a child subreaper), until none is left.
        if job.judge_pid > 0:
            try:
                os.killpg(job.judge_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        uids = {self.iso.program_uid} if self.iso.uid_separation else set()
        if self.iso.uid_separation and not self.persistent_judge:
            uids.add(self.iso.judge_uid)
        while True:
            victims = (_processes_of(uids) if uids else set()) | _children_of(os.getpid())
            victims -= keep
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            if not victims:
                return
            if not self._reap(job, keep):
                time.sleep(0.0005)

    def _reap(self, job: "_Job", keep: set[int]) -> bool:
        """Reap every exited child; whether there was any. A kept process that exited is marked dead."""
        reaped_any = False
        while True:
            try:
                pid, wait_status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return reaped_any
            if pid == 0:
                return reaped_any
            reaped_any = True
            if pid in keep:
                for server in (self.judge, self.zygote):
                    if server is not None and server.pid == pid:
                        server.alive = False
            job.record_exit(pid, wait_status, usage)

    def _kill_namespace_except(self, job: "_Job", keep: set[int]) -> None:
        # /proc lists ~50 fixed entries before the pids: a set difference against what is always
        # there (read once) leaves the job's processes without parsing every name each time.
        spare = self._proc_fixed_entries | {str(pid) for pid in keep}
        while True:
            victims = [int(e) for e in set(os.listdir("/proc")) - spare if e.isdigit()]
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            reaped_any = self._reap(job, keep)
            if not victims:
                return
            if not reaped_any:
                time.sleep(0.0002)

    def _wipe(self, scratch: str) -> None:
        try:
            os.rmdir(scratch)  # the common case: the program wrote nothing
        except OSError:
            _rmtree(scratch)
        if self.iso.private_root:
            # With a uid of its own the program cannot write in /tmp itself (root's, 0755), only in
            # its scratch directory and /dev/shm.
            for directory in ("/dev/shm",) if self.iso.uid_separation else ("/tmp", "/dev/shm"):
                try:
                    entries = os.listdir(directory)
                except OSError:
                    continue
                for name in entries:
                    path = os.path.join(directory, name)
                    if isolation.is_dir(path):
                        _rmtree(path)
                    else:
                        try:
                            os.unlink(path)
                        except OSError:
                            pass


class _Job:
    """Book-keeping of the job in progress."""

    def __init__(self, started: float, wall: float, max_output: int) -> None:
        self.started = started
        self.wall = wall
        self.max_output = max_output
        self.cand_pid = -1
        self.judge_pid = -1
        self.result_r = -1
        self.cleaned = False
        self.exits: dict[int, tuple[int, Any]] = {}

    def record_exit(self, pid: int, wait_status: int, usage: Any) -> None:
        if pid in (self.cand_pid, self.judge_pid) and pid not in self.exits:
            self.exits[pid] = (wait_status, usage)


class _Usage(NamedTuple):
    """The part of a program's rusage the results use (reported by the zygote, which reaped it)."""

    ru_utime: float
    ru_stime: float
    ru_maxrss: int


class _KeptChild:
    """A process the worker keeps across jobs (the zygote, the judge server): its pid and socket."""

    pid: int
    sock: socket.socket
    alive: bool

    def stop(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        self.sock.close()
        self.alive = False


class _Zygote(_KeptChild):
    """The process that forks each program's process: the worker's handle on it.

    Why not fork in the worker itself: a fork write-protects every page of the parent, and
    while the program runs, each page the worker then writes (its supervision loop, JSON,
    dicts) is copied; measured ~250 page copies (~0.8 ms) per job. The zygote does nothing
    between forks but wait for its child's exit, so it copies almost nothing. It is forked from
    the worker once, after start-up, so programs start from the same warm, pre-imported image,
    and it prepares once what every program's process would otherwise redo (environment,
    signal dispositions, standard streams). It never reads a program's source or tests (they
    are fds it passes on) and runs no untrusted code; a program cannot reach it (another uid).
    """

    def __init__(self, worker: Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                _zygote_main(worker, theirs)
            finally:
                os._exit(SETUP_FAILED_EXIT)
        theirs.close()
        self.pid = pid
        self.sock = ours
        self.alive = True

    def spawn(self, test_job: bool, limits: isolation.ChildLimits, fds: list[int]) -> None:
        """Ask for a program's process with ``fds`` (code, stdin, stdout, stderr, rpc or status);
        :meth:`spawned_pid` then gives its pid."""
        try:
            socket.send_fds(self.sock, [_SPAWN_REQUEST.pack(test_job, *limits)], fds)
        except OSError:
            self.alive = False
            raise RuntimeError("the sandbox's zygote process is gone") from None

    def spawned_pid(self) -> int:
        try:
            ready, _, _ = select.select([self.sock], [], [], ZYGOTE_TIMEOUT_S)
            data = self.sock.recv(64) if ready else b""
        except OSError:
            data = b""
        if len(data) != _SPAWNED.size:
            self.alive = False
            raise RuntimeError("the sandbox's zygote process failed to start a program")
        return _SPAWNED.unpack(data)[0]

    def receive_exit(self, timeout: float) -> tuple[int, _Usage] | None:
        """The wait status and usage of the program's process, once the zygote has reaped it."""
        try:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            data = self.sock.recv(64) if ready else None
        except OSError:
            data = b""
        if data is None:
            return None
        if len(data) != _EXITED.size:
            self.alive = False
            return None
        wait_status, user, system, max_rss = _EXITED.unpack(data)
        return wait_status, _Usage(user, system, max_rss)


def _zygote_main(worker: Worker, sock: socket.socket) -> None:
    """The zygote process (see :class:`_Zygote`): fork a program's process per request. Never returns."""
    try:
        # The worker gone, so are we (our children: by their own parent-death signal, or, in a
        # PID namespace, with everything in it).
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    # Standard fds as the programs' will be: stdin a file, stdout/stderr pipes. The std streams
    # made over them here are inherited by every child, unused (their buffers empty), and see
    # the child's own fds 0/1/2 once it has put its pipes there; made over a pipe, they rightly
    # say "not seekable".
    os.dup2(worker.devnull, 0)
    pipe_r, pipe_w = os.pipe()
    os.dup2(pipe_w, 1)
    os.dup2(pipe_w, 2)
    isolation._close_fds_except([0, 1, 2, sock.fileno()])  # the caller's socket, the worker's devnull, ...
    candidate.fresh_std_streams()
    os.environ.clear()
    os.environ.update(_program_environment(worker.scratch))
    isolation.prepare_forker(worker.inherited_handlers)
    iso = worker.iso
    # Everything below runs once per program. After each fork, every page this process writes
    # while its child lives is copied: the loop is kept to a few plain calls.
    fd_bytes = socket.CMSG_LEN(8 * _FD_SIZE)
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(256, fd_bytes)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)
        fds = received_fds(ancillary)
        test_job, *limit_values = _SPAWN_REQUEST.unpack(data)
        pid = os.fork()
        if pid == 0:
            _program_process(iso, fds, test_job, isolation.ChildLimits(*limit_values), worker.scratch)
        for fd in fds:
            os.close(fd)
        sock.send(_SPAWNED.pack(pid))
        # A program can give us more children (clone with CLONE_PARENT makes siblings of it): we
        # reap them all, its own process's status is the one reported.
        while True:
            child, wait_status, usage = os.wait4(-1, 0)
            if child == pid:
                break
        sock.send(_EXITED.pack(wait_status, usage.ru_utime, usage.ru_stime, usage.ru_maxrss))
        # Siblings still alive are being killed by the worker now: reap them before the next job,
        # so none is left as a zombie (usually there are none and this returns at once).
        while True:
            try:
                os.wait4(-1, 0)
            except ChildProcessError:
                break


_FD_SIZE = array.array("i").itemsize


def received_fds(ancillary: list) -> list[int]:
    """The fds of an SCM_RIGHTS message from ``recvmsg``, as ``socket.recv_fds`` returns them
    (which allocates a receive buffer per call; callers here keep theirs)."""
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % _FD_SIZE])
    return list(fds)


def _program_process(iso: isolation.WorkerIsolation, fds: list[int], test_job: bool, limits: isolation.ChildLimits, scratch: str) -> None:
    """The program's own process, just forked by the zygote: lock it down, then run the program. Never returns."""
    # Then the pipes from and to the judge (test job), or the status pipe (main mode).
    code_fd, stdin_fd, out_w, err_w, *channel = fds
    last_fd = channel[-1]
    try:
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        keep = [code_fd, *channel]
        isolation.lock_down(iso, iso.program_uid, limits, keep, scratch, dumpable=True, prepared=True)
        source = codec.read_whole(code_fd).decode("utf-8", "surrogateescape")
        os.close(code_fd)
        if not test_job:
            os.write(last_fd, STATUS_READY)
    except BaseException as exc:
        try:
            os.write(2, f"sandbox set-up failed: {type(exc).__name__}: {exc}\n".encode())
        except BaseException:
            pass
        os._exit(SETUP_FAILED_EXIT)
    if test_job:
        candidate.serve_functions(source, channel[0], channel[1])
    candidate.run_as_main(source, last_fd)


class _JudgeServer(_KeptChild):
    """A judge process kept across jobs (where the program runs under a uid of its own).

    Saves a fork per test job. It runs only the problems' tests and this package's code, and
    receives only plain data from programs, so nothing a program does carries over to the next
    job; it runs under the judge uid, is not dumpable, and is replaced every
    ``JUDGE_RECYCLE_JOBS`` jobs, when it dies, or when it does not report after a timeout.
    """

    def __init__(self, worker: Worker) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.jobs = 0
        self.alive = True
        pid = os.fork()
        if pid == 0:
            try:
                ours.close()
                for fd in (0, 1, 2):
                    os.dup2(worker.devnull, fd)
                limits = isolation.ChildLimits(
                    cpu_time_s=1e6, memory_bytes=4 << 30, max_processes=8, max_open_files=64, max_file_size_bytes=0
                )
                # No CPU limit that would add up over jobs: the worker's wall clock bounds each one.
                isolation.lock_down(worker.iso, worker.iso.judge_uid, limits, [theirs.fileno()], "/", dumpable=False,
                                    inherited_handlers=worker.inherited_handlers)
            except BaseException:
                os._exit(SETUP_FAILED_EXIT)
            judge.serve_jobs(theirs.fileno())
        theirs.close()
        self.pid = pid
        self.sock = ours
        self._buffer = bytearray(1 << 20)

    def submit(self, job_id: int, tests_fd: int, replies_fd: int, requests_fd: int) -> None:
        self.jobs += 1
        try:
            socket.send_fds(self.sock, [json.dumps({"job": job_id}).encode()], [tests_fd, replies_fd, requests_fd])
        except OSError:
            self.alive = False

    def receive(self, job_id: int, timeout: float = 0.0) -> dict | None:
        """The report for ``job_id``, parsed, if one is waiting (reports of abandoned jobs are dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                # Into a buffer kept across jobs: a fresh megabyte per report is an mmap and munmap.
                size = self.sock.recv_into(self._buffer, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
                    return None
                continue
            except OSError:
                size = 0
            if not size:
                self.alive = False
                return None
            report = _parse_report(self._buffer[:size])
            if report.get("job", job_id) == job_id:  # an unreadable report has no job: it is this one's
                return report


def _parse_report(data: bytes | bytearray) -> dict:
    """A judge's report; one that is not a JSON object becomes a failure saying so."""
    try:
        report = json.loads(data)
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return {"status": "failed", "origin": "judge", "error": "BadReport", "message": "unreadable judge report"}
    return report


def _write_report(fd: int, report: dict) -> None:
    try:
        os.write(fd, json.dumps(report).encode())
    except (OSError, TypeError, ValueError):
        pass


def _rmtree(path: str, ignore_errors: bool = False) -> None:
    # Imported here: only a job whose program left files behind needs it, and shutil (with the
    # compression modules it imports) would otherwise sit in the image every fork copies.
    import shutil

    if ignore_errors:
        shutil.rmtree(path, ignore_errors=True)
    else:
        shutil.rmtree(path, onerror=_force_remove)


def _force_remove(function: Any, path: str, _exc_info: Any) -> None:
    # A program may leave directories without write/exec permission: give them back, retry.
    try:
        os.chmod(os.path.dirname(path), 0o700)
        if isolation.is_dir(path):
            os.chmod(path, 0o700)
            _rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def _children_of(parent: int) -> set[int]:
    found = set()
    try:
        with open(f"/proc/{parent}/task/{parent}/children") as f:
            found.update(int(p) for p in f.read().split())
        return found
    except OSError:
        pass
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == parent:
                    found.add(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return found


def _processes_of(uids: set[int]) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in uids:
                    found.add(int(entry))
            except OSError:
                pass
    return found


def _program_environment(scratch: str) -> dict[str, str]:
    """The whole environment of a program: nothing is inherited from the caller."""
    python_bin = os.path.dirname(os.path.realpath(sys.executable))
    return {
        "PATH": f"{python_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


# Outputs up to this size travel inside the result message; larger ones in memfds.
INLINE_OUTPUT_BYTES = 32 * 1024


def _result_message(result: dict) -> tuple[bytes, list[int]]:
    """Result header (JSON) and, for large outputs, memfds holding stdout / stderr (up to a megabyte each)."""
    if len(result["stdout"]) + len(result["stderr"]) <= INLINE_OUTPUT_BYTES:
        result["inline_stdout"] = result.pop("stdout").decode("latin-1")
        result["inline_stderr"] = result.pop("stderr").decode("latin-1")
        return json.dumps(result).encode(), []
    fds = []
    for name in ("stdout", "stderr"):
        data = result.pop(name)
        fd = os.memfd_create(f"sandbox-{name}")
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fds.append(fd)
    return json.dumps(result).encode(), fds
