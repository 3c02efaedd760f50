"""Thin ctypes wrappers over the Linux calls the sandbox needs and Python 3.11 lacks.

``unshare(2)``, ``mount(2)``, ``umount2(2)``, ``pivot_root(2)``, ``mount_setattr(2)``,
``prctl(2)``, ``capset(2)`` and a seccomp filter (:func:`refuse_affinity_changes`). Every wrapper raises :class:`OSError` with the errno, so callers
can tell "refused here" (EPERM, EINVAL, ENOSYS) from a bug. Nothing here runs at import time
beyond loading libc.
"""
from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1

# System call numbers that glibc may not wrap (x86_64 / aarch64 share the new-style numbers).
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_MOUNT_SETATTR = 442
_SYS_CAPSET = {"x86_64": 126, "aarch64": 91}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
# Declared once so a call converts plain ints in C (no ctypes objects built per call: each
# program's process calls prctl right after its fork, where every object touched costs a page copy).
_libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    """Move the calling process into new namespaces (``CLONE_NEW*`` flags)."""
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(
        _libc.mount(_bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags), _bytes(data)),
        f"mount {target}",
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_bytes(target), ctypes.c_int(flags)), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"pivot_root: unknown syscall number on {os.uname().machine}")
    _check(_libc.syscall(ctypes.c_long(number), _bytes(new_root), _bytes(put_old)), "pivot_root")


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def make_readonly_recursive(path: str) -> None:
    """Make ``path`` and every mount below it read-only (``mount_setattr``, Linux >= 5.12)."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    _check(
        _libc.syscall(
            ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), _bytes(path),
            ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        f"mount_setattr {path}",
    )


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), "prctl")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_all_capabilities() -> None:
    """Clear the effective, permitted and inheritable capability sets of this thread.

    Used where the sandbox cannot switch to an unprivileged uid (inside a user namespace the
    process is "root" of that namespace): without capabilities it cannot remount, ptrace the
    judge process or undo any of the limits.
    """
    number = _SYS_CAPSET.get(os.uname().machine)
    if number is None:
        raise OSError(38, f"capset: unknown syscall number on {os.uname().machine}")
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit data words
    data = (_CapData * 2)()
    _check(_libc.syscall(ctypes.c_long(number), ctypes.byref(header), ctypes.byref(data)), "capset")


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


_BPF_LD_W_ABS, _BPF_JEQ_K, _BPF_AND_K, _BPF_RET_K = 0x20, 0x15, 0x54, 0x06
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
# sched_setaffinity(2) by audit architecture, for each ABI a process of this machine can call the
# kernel through: the native one and its 32-bit compat (a program can reach ``int 0x80`` with
# ctypes). The mask clears the x32 bit, so x32's number is caught as the native one.
_AFFINITY_SYSCALLS = {
    "x86_64": ((0xC000003E, 0xBFFFFFFF, 203), (0x40000003, 0xFFFFFFFF, 241)),
    "aarch64": ((0xC00000B7, 0xFFFFFFFF, 122), (0x40000028, 0xFFFFFFFF, 241)),
}


def refuse_affinity_changes() -> None:
    """From now on ``sched_setaffinity(2)`` fails with EPERM in this process and every process it
    starts: a seccomp filter, inherited across fork and exec and never removable. So a program
    cannot widen the CPU set its worker pinned it to (re-pinning it afterwards would not hold: it
    could set its affinity again, or from a thread the worker never sees).

    Needs ``no_new_privs`` or CAP_SYS_ADMIN; raises :class:`OSError` where refused.
    """
    table = _AFFINITY_SYSCALLS.get(os.uname().machine)
    if table is None:
        raise OSError(38, f"seccomp: no syscall table for {os.uname().machine}")
    code = [(_BPF_LD_W_ABS, 0, 0, 4)]  # seccomp_data.arch
    for arch, mask, number in table:
        chunk = [(_BPF_LD_W_ABS, 0, 0, 0), (_BPF_AND_K, 0, 0, mask), (_BPF_JEQ_K, 0, 1, number),
                 (_BPF_RET_K, 0, 0, _SECCOMP_RET_ERRNO | 1), (_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW)]
        code.append((_BPF_JEQ_K, 0, len(chunk), arch))  # another ABI: on to its own check
        code.extend(chunk)
    code.append((_BPF_RET_K, 0, 0, _SECCOMP_RET_ALLOW))
    filters = (_SockFilter * len(code))(*[_SockFilter(*instruction) for instruction in code])
    program = _SockFprog(len(code), filters)
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(program), 0, 0), "seccomp")
