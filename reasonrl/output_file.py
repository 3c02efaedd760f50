"""Where ``reasonrl verify`` and ``reasonrl gen`` write their output files, and how.

:func:`open_output` is the one write path both commands use:

* a **regular file** (or a path that does not exist yet) is written to a temporary file in
  the same folder and renamed over it at the end, so an error or an interrupt never leaves a
  half-written file under the final name. The replaced file's permission bits are kept; a
  new file gets the mode ``open()`` would give it (0666 less the umask, e.g. 0644);
* a **symbolic link** is followed: its target is replaced as above and the link stays a link;
* anything else that exists — a device such as ``/dev/null``, a FIFO, a socket, or a name
  for an open descriptor such as ``/dev/stdout`` or ``/proc/self/fd/1`` — is **written
  through**, opened and written in place, never replaced;
* a **directory** raises :class:`IsADirectoryError`.

:func:`json_line` encodes one JSONL row so that any Python string can be written as UTF-8.

Standard library only: ``reasonrl verify`` imports this and must start fast.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import stat
import tempfile
from typing import IO, Any, Callable, Iterator

# A lone UTF-16 surrogate (from a JSON "\ud800" escape): legal in a Python str, not in UTF-8.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# Folders whose entries name open descriptors (/dev/fd resolves to /proc/<pid>/fd).
_DESCRIPTOR_DIR_RE = re.compile(r"/proc/(?:self|thread-self|\d+)(?:/task/\d+)?/fd")


def json_line(row: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``row`` as one line of JSON text with its newline, writable as UTF-8 whatever it holds.

    Non-ASCII text stays as is (``ensure_ascii=False``). Two things plain ``json.dumps``
    would get wrong are mended, only in the rows that hold them: a lone surrogate
    (``"\\ud800"``), which no UTF-8 file can hold, is written as its JSON escape (valid JSON
    that reads back to the same string); NaN and infinities, which JSON has no spelling
    for, are written as ``null``. ``default`` is ``json.dumps``'s: how to encode other objects.
    """
    try:
        line = json.dumps(row, ensure_ascii=False, allow_nan=False, default=default)
    except ValueError:
        line = json.dumps(_finite(row), ensure_ascii=False, allow_nan=False, default=default)
    if _SURROGATE_RE.search(line):
        line = _SURROGATE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", line)
    return line + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@contextlib.contextmanager
def open_output(path: str | os.PathLike, binary: bool = False) -> Iterator[IO[Any]]:
    """Open ``path`` for writing by the rules in the module docstring; yields the file object.

    Text mode writes UTF-8 with ``\\n`` line ends; ``binary=True`` yields a binary file (for
    Parquet). The file is complete under its final name only when the ``with`` block ends
    without an exception.

    Raises:
        IsADirectoryError: ``path`` is a directory.
        OSError: the folder does not exist or cannot be written.
    """
    path = os.fspath(path)
    try:
        info = os.stat(path)  # follows links, /proc's descriptor links included
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, expected a file path", path)
    if info is not None and (not stat.S_ISREG(info.st_mode) or _names_open_descriptor(path)):
        with open(path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as handle:
            yield handle
        return
    target = os.path.realpath(path)  # replace a link's target, never the link
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=os.path.dirname(target))
    try:
        _set_mode(fd, info)
        with open(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _set_mode(fd: int, replaced: os.stat_result | None) -> None:
    """Give the temporary file the replaced file's mode and owner, or a new file's usual mode.

    ``mkstemp`` creates 0600 files; left so, every rewrite would make the output private.
    """
    if replaced is not None:
        os.fchmod(fd, stat.S_IMODE(replaced.st_mode))
        if (replaced.st_uid, replaced.st_gid) != (os.getuid(), os.getgid()):
            with contextlib.suppress(OSError):  # only root (or the owner, for the group) may
                os.fchown(fd, replaced.st_uid, replaced.st_gid)
        return
    os.fchmod(fd, 0o666 & ~_umask())


def _umask() -> int:
    # Reading the umask means setting it; put it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _names_open_descriptor(path: str) -> bool:
    """Whether ``path`` or a link on the way to its file is an entry of /proc/<pid>/fd (or /dev/fd).

    Such a name (``/dev/stdout``) stands for a descriptor the caller already holds, e.g. a
    shell redirection; replacing the file it points at would leave that descriptor writing
    to a deleted file.
    """
    current = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        if _DESCRIPTOR_DIR_RE.fullmatch(os.path.realpath(os.path.dirname(current))):
            return True
        if not os.path.islink(current):
            return False
        current = os.path.join(os.path.dirname(current), os.readlink(current))
    return False
