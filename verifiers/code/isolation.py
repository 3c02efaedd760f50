"""Putting a sandbox worker and its children in isolation, and saying exactly which isolation holds.

Three levels, tried in order when ``isolation="auto"`` (each can be asked for by name):

``namespaces`` (root, as on the project's machines and CI)
    The worker enters new PID, network, mount, IPC and UTS namespaces. It is PID 1 of its PID
    namespace, so every process a program starts stays inside it, cannot see or signal anything
    outside it, and dies when the worker ends the job (killed and reaped by PID 1).
    The network namespace has only a loopback interface, left down: no network at all. The
    filesystem is a new root on a tmpfs holding read-only bind mounts of the system directories
    (``/usr``, ``/etc``, ``/lib*``, ``/bin``, ``/sbin`` and Python's own directories): the
    rest of the host (home directories, ``/work``, datasets, the host ``/tmp``) is not there at
    all. ``/dev`` is the sandbox's own: ``null``, ``zero``, ``full``, ``random``, ``urandom``
    (bound from the host's), ``fd``/``stdin``/``stdout``/``stderr`` links and ``shm``; no
    terminals (see :data:`DEVICE_FILES`). ``/tmp`` is a private size-capped tmpfs holding the
    per-program scratch directories, ``/dev/shm`` another; both are wiped after each program. ``/proc`` is the namespace's own
    (read-only, ``hidepid=2``). The program runs under its own unprivileged uid (one per worker),
    the judge under another, both with ``no_new_privs``; the judge is not dumpable.
``userns`` (no root, but unprivileged user namespaces allowed)
    The same namespaces and filesystem view inside a new user namespace. No second uid exists
    there, so the program and the judge share a uid; both drop every capability, and the judge
    is not dumpable, so the program still cannot ptrace it (it can kill it, which fails its own
    test, never passes it).
``rlimits`` (namespaces refused)
    Each program in its own session and process group, a fresh scratch directory as working
    directory, a scrubbed environment, resource limits, and (as root) its own unprivileged uid.
    No network or filesystem isolation: the program can read what its uid can read and write
    where its uid can write, and it sees the host's ``/dev`` (``details.isolation["devices"]``
    says so: the host's pseudo-terminals are bounded only by the open-file and process limits). The worker is a child subreaper and kills every remaining
    descendant (and, as root, every process of the sandbox uid) after each program.

Whatever holds is reported by :func:`describe` and lands in every ``SandboxResult.isolation``
and in ``verdict.details["isolation"]``: never silently weaker.
"""
from __future__ import annotations

import _signal
import os
import resource
import signal
import stat
import sys
from typing import Iterable, NamedTuple

from reasonrl.verifiers.code import linux

MODES = ("auto", "namespaces", "userns", "rlimits")

# Directories every program needs to run Python and ordinary tools, bound read-only.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# The device files of the private root's own /dev, each bound from the host's (a bind mount works
# in a user namespace, where mknod does not). No terminal devices: every pseudo-terminal a program
# opened through the host's /dev/ptmx counted against the host's kernel.pty.max (4096 for all of
# it), and a private devpts instance still counts there (the kernel keeps one global count), so
# programs get no ptys at all. /dev/shm (multiprocessing's semaphores) is a private tmpfs.
DEVICE_FILES = ("null", "zero", "full", "random", "urandom")
DEVICE_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                ("stderr", "/proc/self/fd/2"))
# First uid of the range the sandbox uses as root: two per worker (program, judge). Chosen far
# above login users and the usual subuid ranges; configurable.
DEFAULT_UID_BASE = 1_500_000_000


class IsolationError(RuntimeError):
    """The requested isolation level cannot be put in force on this machine."""


class WorkerIsolation:
    """What the worker achieved; the children read it to lock themselves down.

    A plain class, not a dataclass: this module is imported by the worker, and ``dataclasses``
    (with ``inspect``, ``ast``, ``dis``) would add 1.3 MB to the image every program's fork copies.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.pid_namespace = False
        self.network_namespace = False
        self.mount_namespace = False
        self.private_root = False
        self.private_dev: tuple[str, ...] = ()
        self.hidepid = False
        self.uid_separation = False
        self.program_uid = -1
        self.judge_uid = -1
        # False where the program's uid cannot read Python's standard library on disk.
        self.stdlib_readable = True
        # True once sched_setaffinity is refused to this worker's processes (seccomp).
        self.affinity_fixed = False
        self.notes: tuple[str, ...] = ()

    def describe(self) -> dict:
        """The JSON-able summary that goes into results and verdicts."""
        return {
            "mode": self.mode,
            "pid_namespace": self.pid_namespace,
            "network": "none (own namespace)" if self.network_namespace else "host network",
            "filesystem": (
                "private read-only root, writable scratch dir on tmpfs" if self.private_root
                else "host filesystem (uid permissions only)"
            ),
            "devices": (
                f"private /dev: {', '.join(self.private_dev)}, shm (tmpfs), fd links; no ptys or other devices"
                if self.private_dev else "host /dev (ptys included: bounded only by the open-file and process limits)"
            ),
            "cpu_affinity": (
                "fixed: sched_setaffinity refused (seccomp)" if self.affinity_fixed
                else "not fixed: a program can change its CPU affinity (seccomp refused)"
            ),
            "uid_separation": self.uid_separation,
            "scrubbed_environment": True,
            "rlimits": ["cpu", "address_space", "processes", "open_files", "file_size", "core"],
            "wall_clock_kill": True,
            "output_cap": True,
            "notes": list(self.notes),
        }


def enter_namespaces(mode: str) -> str:
    """Called in the launcher process (before it forks the worker): unshare what ``mode`` allows.

    Returns the mode in force (``namespaces``, ``userns`` or ``rlimits``). With ``mode="auto"``
    falls back level by level; with an explicit level raises :class:`IsolationError` if refused.
    """
    if mode not in MODES:
        raise ValueError(f"unknown isolation {mode!r}; valid: {', '.join(MODES)}")
    base = linux.CLONE_NEWNS | linux.CLONE_NEWPID | linux.CLONE_NEWNET | linux.CLONE_NEWIPC | linux.CLONE_NEWUTS
    errors = []
    if mode in ("auto", "namespaces") and os.geteuid() == 0:
        try:
            linux.unshare(base)
            return "namespaces"
        except OSError as exc:
            errors.append(f"namespaces: {exc}")
    if mode in ("auto", "userns"):
        uid, gid = os.geteuid(), os.getegid()
        try:
            linux.unshare(base | linux.CLONE_NEWUSER)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"0 {uid} 1")
            _write("/proc/self/gid_map", f"0 {gid} 1")
            return "userns"
        except OSError as exc:
            errors.append(f"userns: {exc}")
    if mode in ("auto", "rlimits"):
        return "rlimits"
    raise IsolationError(f"isolation {mode!r} refused on this machine: {'; '.join(errors) or 'needs root'}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def setup_worker(mode: str, worker_index: int, uid_base: int, extra_paths: Iterable[str], tmp_size: str, shm_size: str) -> WorkerIsolation:
    """Called in the worker (PID 1 of its namespace for the namespace modes): build the filesystem view."""
    iso = WorkerIsolation(mode=mode)
    notes = []
    if mode in ("namespaces", "userns"):
        iso.pid_namespace = os.getpid() == 1
        iso.network_namespace = True
        iso.mount_namespace = True
        _build_private_root(extra_paths, tmp_size, shm_size, iso, notes)
    else:
        notes.append("namespaces refused: no PID, network or filesystem isolation")
        try:
            linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
        except OSError as exc:
            notes.append(f"child subreaper refused ({exc}): programs that daemonize may outlive their job")
    if mode == "namespaces" or (mode == "rlimits" and os.geteuid() == 0):
        iso.uid_separation = True
        iso.program_uid = uid_base + 2 * worker_index
        iso.judge_uid = uid_base + 2 * worker_index + 1
        if mode == "rlimits" and not _world_searchable(os.path.dirname(os.__file__)):
            iso.stdlib_readable = False
            notes.append("the standard library is not readable by the program's uid on the host filesystem: "
                         "programs can import only the modules the worker preloaded (in this mode the common "
                         "standard-library ones: worker.UNREADABLE_STDLIB_PRELOAD; add more with PoolConfig.preload)")
    elif mode == "userns":
        notes.append("one uid in the user namespace: program and judge share it (capabilities dropped)")
    else:
        notes.append("not root: program runs under the caller's uid")
    _fix_affinity(iso, notes)
    iso.notes = tuple(notes)
    return iso


def _fix_affinity(iso: WorkerIsolation, notes: list) -> None:
    """Refuse sched_setaffinity to the worker and everything it forks (the launcher has pinned
    itself already): a program stays on the core it was given."""
    try:
        linux.refuse_affinity_changes()
    except OSError as exc:
        if exc.errno != 13:  # EACCES: neither no_new_privs nor CAP_SYS_ADMIN here yet
            notes.append(f"seccomp refused ({exc.strerror}): a program can change its CPU affinity")
            return
        try:
            # The worker never executes anything, so no_new_privs costs it nothing.
            linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
            linux.refuse_affinity_changes()
        except OSError as exc2:
            notes.append(f"seccomp refused ({exc2.strerror}): a program can change its CPU affinity")
            return
    iso.affinity_fixed = True


def _world_searchable(path: str) -> bool:
    """Whether every directory from ``/`` down to ``path`` lets any uid through (o+x)."""
    path = os.path.realpath(path)
    while True:
        try:
            if not os.stat(path).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _python_paths() -> list[str]:
    """Python's own directories and every installed-packages directory on ``sys.path``.

    Other ``sys.path`` entries (a source checkout, the current directory, a test folder) are left
    out on purpose: they may hold data, tests or answers a program must not read.
    """
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.isdir(entry) and os.path.basename(entry) in ("site-packages", "dist-packages"):
            paths.add(entry)
    return sorted(paths)


def _covered(path: str, chosen: list[str]) -> bool:
    return any(path == c or path.startswith(c.rstrip("/") + "/") for c in chosen)


def _build_private_root(extra_paths: Iterable[str], tmp_size: str, shm_size: str, iso: WorkerIsolation, notes: list) -> None:
    new_root = "/tmp"  # any existing directory works as the mount point of the new root's tmpfs
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount("sandbox-root", new_root, "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, "size=4m,mode=755")
    iso.private_dev = _build_private_dev(new_root + "/dev")
    chosen: list[str] = []
    for path in [*SYSTEM_PATHS, *_python_paths(), *extra_paths]:
        path = os.path.normpath(path)
        if not os.path.lexists(path) or _covered(path, chosen):
            continue
        target = new_root + path
        if os.path.islink(path) and os.path.dirname(path) == "/":
            # Merged-/usr systems: /bin -> usr/bin. Recreate the link, the target is bound already.
            os.symlink(os.readlink(path), target)
            continue
        real = os.path.realpath(path)
        if os.path.isdir(real):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        linux.mount(real, target, None, linux.MS_BIND | linux.MS_REC)
        chosen.append(path)
    for name in ("tmp", "proc", ".old"):
        os.makedirs(f"{new_root}/{name}", exist_ok=True)
    os.chmod(f"{new_root}/tmp", 0o755)
    # /proc of our own PID namespace, mounted while the host's /proc is still in view (inside a
    # user namespace the kernel only allows a new procfs next to a fully visible one).
    proc_flags = linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC | linux.MS_RDONLY
    try:
        linux.mount("proc", f"{new_root}/proc", "proc", proc_flags, "hidepid=2")
        iso.hidepid = True
    except OSError:
        try:
            linux.mount("proc", f"{new_root}/proc", "proc", proc_flags)
            notes.append("hidepid refused: the program can list the judge's process")
        except OSError as exc:
            notes.append(f"procfs refused ({exc.strerror}): programs see an empty /proc")
    os.chdir(new_root)
    linux.pivot_root(".", ".old")
    os.chdir("/")
    linux.umount("/.old", linux.MNT_DETACH)
    os.rmdir("/.old")
    iso.private_root = True
    try:
        linux.make_readonly_recursive("/")
    except OSError as exc:
        if exc.errno not in (38, 22):  # ENOSYS / EINVAL: kernel before 5.12
            raise
        _remount_readonly_one_by_one()
    linux.mount("sandbox-tmp", "/tmp", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, f"size={tmp_size},mode=755")
    if os.path.isdir("/dev/shm"):  # always there in the private /dev; made here for the namespace modes only
        linux.mount("sandbox-shm", "/dev/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV, f"size={shm_size},mode=1777")


def _build_private_dev(dev: str) -> tuple[str, ...]:
    """A /dev of the sandbox's own under the new root: the harmless device files, bound from the host's."""
    os.makedirs(dev, exist_ok=True)
    linux.mount("sandbox-dev", dev, "tmpfs", linux.MS_NOSUID | linux.MS_NOEXEC, "size=64k,mode=755")
    present = []
    for name in DEVICE_FILES:
        host = f"/dev/{name}"
        if not os.path.exists(host):
            continue
        open(f"{dev}/{name}", "a").close()
        linux.mount(host, f"{dev}/{name}", None, linux.MS_BIND)
        present.append(name)
    for name, target in DEVICE_LINKS:
        os.symlink(target, f"{dev}/{name}")
    os.mkdir(f"{dev}/shm")
    return tuple(present)


def _remount_readonly_one_by_one() -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        try:
            linux.mount(None, point, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV)
        except OSError:
            linux.mount(None, point, None, linux.MS_REMOUNT | linux.MS_BIND | linux.MS_RDONLY)


class ChildLimits(NamedTuple):
    """Resource limits of one sandboxed process (see ``sandbox.SandboxLimits`` for the meanings)."""

    cpu_time_s: float
    memory_bytes: int
    max_processes: int
    max_open_files: int
    max_file_size_bytes: int


def handled_signals() -> tuple[int, ...]:
    """The signals whose disposition in this process is not the default (what a forked child inherits)."""
    found = []
    for signum in signal.valid_signals():
        if signum not in (signal.SIGKILL, signal.SIGSTOP):
            try:
                if signal.getsignal(signum) != signal.SIG_DFL:
                    found.append(signum)
            except (OSError, ValueError, RuntimeError):
                pass
    return tuple(found)


def reset_signals(inherited_handlers: Iterable[int] | None = None) -> None:
    """Signal dispositions and mask as a fresh interpreter has them (a forked child inherits these).

    ``inherited_handlers``: :func:`handled_signals` of the parent, taken before the fork (a
    child inherits exactly those dispositions; saves scanning every signal); None scans here.
    Calls ``_signal`` directly: the ``signal`` module's wrappers convert every result to an enum,
    and each object that touches is a page copied in a freshly forked child.
    """
    for signum in handled_signals() if inherited_handlers is None else inherited_handlers:
        try:  # the parent's handlers must not carry over
            _signal.signal(signum, _signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    # As a fresh interpreter has them: broken pipes and oversized files raise, Ctrl-C interrupts.
    _signal.signal(_signal.SIGPIPE, _signal.SIG_IGN)
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])


# Hard limits of a prepared forker (the zygote), unchanged in the children it forks: read once
# there rather than once per limit in every child.
_forker_hard_limits: dict[int, int] = {}


def prepare_forker(inherited_handlers: Iterable[int] | None = None) -> None:
    """Called once in a process that only forks sandboxed children (the zygote): apply to itself
    what every child needs and inherits across fork, so each ``lock_down(..., prepared=True)`` does
    less: signal dispositions and mask, ``no_new_privs`` (irreversible), no core dumps; and note
    its hard limits."""
    reset_signals(inherited_handlers)
    linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    _setrlimit(resource.RLIMIT_CORE, 0, 0)
    for which in (resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC):
        _forker_hard_limits[which] = resource.getrlimit(which)[1]


def lock_down(
    iso: WorkerIsolation, uid: int, limits: ChildLimits, keep_fds: Iterable[int], workdir: str, dumpable: bool,
    inherited_handlers: Iterable[int] | None = None, prepared: bool = False,
) -> None:
    """In a freshly forked child, before any untrusted code: drop everything the child must not have.

    Order matters: fds first (nothing of the parent leaks), then the session, limits, uid (the
    last privileged step), then ``no_new_privs`` so no setuid binary can win privileges back.
    ``inherited_handlers``: see :func:`reset_signals`. ``prepared``: the parent called
    :func:`prepare_forker` (the zygote does, once); the child inherits what it set.
    """
    keep = sorted(set(keep_fds) | {0, 1, 2})
    _close_fds_except(keep)
    os.setsid()
    os.chdir(workdir)
    if not prepared:
        reset_signals(inherited_handlers)
    known = _forker_hard_limits if prepared else {}
    cpu = max(1, int(-(-limits.cpu_time_s // 1)))
    _setrlimit(resource.RLIMIT_CPU, cpu, cpu + 1, known)
    _setrlimit(resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes, known)
    _setrlimit(resource.RLIMIT_FSIZE, limits.max_file_size_bytes, limits.max_file_size_bytes, known)
    _setrlimit(resource.RLIMIT_NOFILE, limits.max_open_files, limits.max_open_files, known)
    if not prepared:
        _setrlimit(resource.RLIMIT_CORE, 0, 0)
    if iso.uid_separation and uid >= 0:
        _setrlimit(resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes, known)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    else:
        if iso.mode == "userns":
            # Counted per uid within this user namespace (Linux >= 5.14 ucounts): bounds a fork bomb.
            _setrlimit(resource.RLIMIT_NPROC, limits.max_processes, limits.max_processes)
        else:
            # Sharing the caller's uid: the count includes the caller's own processes.
            _setrlimit(resource.RLIMIT_NPROC, limits.max_processes + _count_own_processes(), None)
        if iso.mode != "rlimits":
            linux.drop_all_capabilities()
    if not prepared:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    if not dumpable:
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
    if prepared and iso.pid_namespace:
        # Not needed: the worker is PID 1 here, and when it goes the kernel kills everything in the
        # namespace; a child whose zygote died is the worker's to kill and reap at once.
        return
    try:
        linux.prctl(linux.PR_SET_PDEATHSIG, 9)
    except OSError:
        pass


def _setrlimit(which: int, soft: int, hard: int | None, known_hard: dict[int, int] | None = None) -> None:
    current_hard = known_hard.get(which) if known_hard else None
    if current_hard is None:
        _, current_hard = resource.getrlimit(which)
    hard = current_hard if hard is None else hard
    if current_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > current_hard):
        hard = current_hard  # an unprivileged process can only lower its hard limit
    soft = min(soft, hard) if hard != resource.RLIM_INFINITY else soft
    resource.setrlimit(which, (soft, hard))


def _count_own_processes() -> int:
    uid = os.getuid()
    count = 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        count += 1 + max(0, len(os.listdir(f"/proc/{entry.name}/task")) - 1)
                except OSError:
                    pass
    except OSError:
        return 1024
    return count


def _close_fds_except(keep: list[int]) -> None:
    low = 0
    for fd in keep:
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, 1 << 20)


def make_scratch_dir(path: str, uid: int) -> None:
    os.mkdir(path, 0o700)
    if uid >= 0:
        os.chown(path, uid, uid)


def is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
