"""Plain-data codec and message framing between the judge and the candidate process.

Why a codec of our own rather than pickle: the judge (the process that runs the tests and
alone can say "passed") must never run code chosen by the candidate. Unpickling runs
arbitrary callables; this decoder only ever builds the exact built-in types listed below, so a
value that crosses from the candidate is *data* and nothing else. An object of any other type,
including a subclass of ``int`` or ``list`` whose ``__eq__`` always answers True, never crosses
by value: the candidate keeps it and the judge gets an opaque handle (see ``judge.RemoteObject``).

Wire form: JSON. ``None``, ``bool``, ``str``, ``float`` and small ``int`` are JSON scalars; every
container or other type is a JSON list whose first item is a one/two-letter tag:

=====  ===============================  =====  ===============================
``l``  list                             ``t``  tuple
``s``  set                              ``f``  frozenset
``d``  dict (k0, v0, k1, v1, ...)       ``b``  bytes (latin-1 text)
``y``  bytearray (latin-1 text)         ``i``  int beyond 64 bits (hex text)
``c``  complex (re, im)                 ``r``  range (start, stop, step)
``F``  fractions.Fraction (num, den)    ``D``  decimal.Decimal (text)
``C``  collections.Counter (as ``d``)   ``O``  collections.OrderedDict (as ``d``)
``dd`` defaultdict (factory name, as d) ``q``  collections.deque (maxlen, items...)
``e``  Ellipsis                         ``h``  handle to a candidate object (id, type name)
``T``  a built-in type or pure built-in ``cb`` a function of the tests (id), called back
       function, by name (``int``,             in the judge when the program calls it
       ``len``: :data:`BUILTINS`)
=====  ===============================  =====  ===============================

``T`` lets a test pass ``int`` to the program (MBPP 533) and the program return one: each side
gets its *own* built-in, so nothing of the other process crosses. ``cb`` lets a test pass a
lambda or a function of its own: the program gets a stand-in whose calls travel back to the
judge with plain data, and the function runs there (see ``judge.Connection``).

Frames: 4-byte big-endian length, then that many bytes of UTF-8 JSON (:func:`send_frame`, :class:`FrameReader`).
"""
from __future__ import annotations

import builtins
import collections
import decimal
import fractions
import json
import os
import struct
from typing import Any, Callable

# The largest frame either side accepts (a candidate returning a gigantic value is a failure,
# not a reason for the judge to run out of memory).
MAX_FRAME_BYTES = 64 * 1024 * 1024
# Deeper nesting than this is sent as a handle (encode) or refused (decode).
MAX_DEPTH = 200

_SMALL_INT = 1 << 63
_DEFAULTDICT_FACTORIES = {"int": int, "float": float, "str": str, "list": list, "dict": dict, "set": set, "tuple": tuple, "bool": bool}


# The built-ins that cross by name: every built-in type (``int``, ``list``, ``ValueError``) and
# the pure built-in functions tests pass as keys. Taken when this module is imported, before any
# program runs: a program that rebinds ``builtins.int`` sends a handle, not a name.
_PURE_BUILTIN_FUNCTIONS = ("abs", "all", "any", "ascii", "bin", "callable", "chr", "divmod", "hash", "hex", "isinstance",
                           "issubclass", "len", "max", "min", "oct", "ord", "pow", "repr", "round", "sorted", "sum")
BUILTINS = {
    name: value for name, value in vars(builtins).items()
    if not name.startswith("_") and (type(value) is type or name in _PURE_BUILTIN_FUNCTIONS)
}
_BUILTIN_NAMES = {id(value): name for name, value in BUILTINS.items()}


class _Callback:
    def __repr__(self) -> str:
        return "CALLBACK"


# What ``decode`` passes as the type name to ``on_handle`` for a ``cb`` value: never a ``str``, so
# a program's class, whatever name it gives itself, cannot pass for a callback.
CALLBACK = _Callback()


class ProtocolError(Exception):
    """A frame or value that does not follow the wire form (a hostile or dead peer)."""


class Unencodable(Exception):
    """Raised by :func:`encode` when ``on_other`` is None and a value is not plain data."""


def encode(value: Any, on_other: Callable[[Any], list] | None = None, depth: int = 0) -> Any:
    """Turn ``value`` into its JSON-able wire form; exact types only (``type(v) is int``, not isinstance).

    ``on_other(obj)`` is called for anything else and returns the wire form to use (a handle);
    without it such a value raises :class:`Unencodable`.
    """
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -_SMALL_INT < value < _SMALL_INT else ["i", format(value, "x")]
    if kind is float:
        return value
    if depth > MAX_DEPTH:
        return _other(value, on_other)
    depth += 1
    if kind is list:
        return ["l", *[encode(v, on_other, depth) for v in value]]
    if kind is tuple:
        return ["t", *[encode(v, on_other, depth) for v in value]]
    if kind is dict:
        return ["d", *_encode_items(value, on_other, depth)]
    if kind is set:
        return ["s", *[encode(v, on_other, depth) for v in value]]
    if kind is frozenset:
        return ["f", *[encode(v, on_other, depth) for v in value]]
    if kind is bytes:
        return ["b", value.decode("latin-1")]
    if kind is bytearray:
        return ["y", value.decode("latin-1")]
    if kind is complex:
        return ["c", value.real, value.imag]
    if kind is range:
        return ["r", encode(value.start), encode(value.stop), encode(value.step)]
    if kind is fractions.Fraction:
        return ["F", encode(value.numerator), encode(value.denominator)]
    if kind is decimal.Decimal:
        return ["D", str(value)]
    if kind is collections.Counter:
        return ["C", *_encode_items(value, on_other, depth)]
    if kind is collections.OrderedDict:
        return ["O", *_encode_items(value, on_other, depth)]
    if kind is collections.defaultdict:
        factory = value.default_factory
        name = getattr(factory, "__name__", None)
        if factory is None or _DEFAULTDICT_FACTORIES.get(name) is factory:
            return ["dd", name if factory is not None else None, *_encode_items(value, on_other, depth)]
        return _other(value, on_other)
    if kind is collections.deque:
        return ["q", value.maxlen, *[encode(v, on_other, depth) for v in value]]
    if value is Ellipsis:
        return ["e"]
    name = _BUILTIN_NAMES.get(id(value))
    if name is not None and BUILTINS[name] is value:
        return ["T", name]
    return _other(value, on_other)


def _encode_items(mapping: dict, on_other: Any, depth: int) -> list:
    out = []
    for key, item in mapping.items():
        out.append(encode(key, on_other, depth))
        out.append(encode(item, on_other, depth))
    return out


def _other(value: Any, on_other: Callable[[Any], list] | None) -> Any:
    if on_other is None:
        raise Unencodable(type(value).__name__)
    return on_other(value)


def decode(wire: Any, on_handle: Callable[[int, str], Any] | None = None, depth: int = 0) -> Any:
    """Rebuild a value from its wire form, building only the built-in types of the table above.

    ``on_handle(id, type_name)`` makes the local stand-in for a ``["h", id, name]`` handle, and
    ``on_handle(id, CALLBACK)`` the one for a ``["cb", id]`` callback; without it either is a
    :class:`ProtocolError`. Malformed input raises :class:`ProtocolError`.
    """
    kind = type(wire)
    if wire is None or kind is bool or kind is str or kind is float:
        return wire
    if kind is int:
        return wire
    if kind is not list or not wire or type(wire[0]) is not str:
        raise ProtocolError(f"malformed value of type {kind.__name__}")
    if depth > MAX_DEPTH + 2:
        raise ProtocolError("value nested too deeply")
    depth += 1
    tag, rest = wire[0], wire[1:]
    try:
        if tag == "l":
            return [decode(v, on_handle, depth) for v in rest]
        if tag == "t":
            return tuple(decode(v, on_handle, depth) for v in rest)
        if tag == "d":
            return dict(_decode_items(rest, on_handle, depth))
        if tag == "s":
            return {decode(v, on_handle, depth) for v in rest}
        if tag == "f":
            return frozenset(decode(v, on_handle, depth) for v in rest)
        if tag == "i":
            return int(_text(rest[0]), 16)
        if tag == "b":
            return _text(rest[0]).encode("latin-1")
        if tag == "y":
            return bytearray(_text(rest[0]).encode("latin-1"))
        if tag == "c":
            return complex(_float(rest[0]), _float(rest[1]))
        if tag == "r":
            return range(_int(decode(rest[0])), _int(decode(rest[1])), _int(decode(rest[2])))
        if tag == "F":
            return fractions.Fraction(_int(decode(rest[0])), _int(decode(rest[1])))
        if tag == "D":
            return decimal.Decimal(_text(rest[0]))
        if tag == "C":
            return collections.Counter(dict(_decode_items(rest, on_handle, depth)))
        if tag == "O":
            return collections.OrderedDict(_decode_items(rest, on_handle, depth))
        if tag == "dd":
            name = rest[0]
            factory = None if name is None else _DEFAULTDICT_FACTORIES[_text(name)]
            return collections.defaultdict(factory, _decode_items(rest[1:], on_handle, depth))
        if tag == "q":
            maxlen = rest[0]
            if maxlen is not None:
                maxlen = _int(maxlen)
            return collections.deque((decode(v, on_handle, depth) for v in rest[1:]), maxlen)
        if tag == "e":
            return Ellipsis
        if tag == "h":
            if on_handle is None:
                raise ProtocolError("unexpected handle")
            return on_handle(_int(rest[0]), _text(rest[1]))
        if tag == "T":
            return BUILTINS[_text(rest[0])]
        if tag == "cb":
            if on_handle is None:
                raise ProtocolError("unexpected callback")
            return on_handle(_int(rest[0]), CALLBACK)
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, ArithmeticError, decimal.InvalidOperation) as exc:
        raise ProtocolError(f"malformed {tag!r} value: {type(exc).__name__}: {exc}") from None
    raise ProtocolError(f"unknown tag {tag!r}")


def _decode_items(items: list, on_handle: Any, depth: int) -> list:
    if len(items) % 2:
        raise ProtocolError("odd number of items in a mapping")
    return [(decode(items[i], on_handle, depth), decode(items[i + 1], on_handle, depth)) for i in range(0, len(items), 2)]


def _text(value: Any) -> str:
    if type(value) is not str:
        raise ProtocolError("expected text")
    return value


def _int(value: Any) -> int:
    if type(value) is not int:
        raise ProtocolError("expected an integer")
    return value


def _float(value: Any) -> float:
    if type(value) not in (int, float):
        raise ProtocolError("expected a number")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Framing over a blocking file descriptor (a socketpair end).


# One encoder for every frame: ``json.dumps`` with non-default separators builds a new encoder
# object per call (and, in a freshly forked program's process, touches its pages to do so).
# No circular-reference check: wire values are built by :func:`encode`, fresh and depth-bounded.
_ENCODER = json.JSONEncoder(separators=(",", ":"), check_circular=False)
# The C scanner alone: frames are compact JSON (no whitespace around the value), so ``json.loads``
# and its whitespace-skipping regular expressions have nothing to add.
_SCAN = json.JSONDecoder().scan_once
_HEADER = struct.Struct(">I")
# What one read asks for: a whole frame of the usual size arrives in one system call.
_READ_BYTES = 1 << 16


def encode_frame(message: Any) -> bytes:
    """One JSON message (already in wire form) as a length-prefixed frame."""
    data = _ENCODER.encode(message).encode("utf-8", "surrogatepass")
    if len(data) > MAX_FRAME_BYTES:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _HEADER.pack(len(data)) + data


def send_frame(fd: int, message: Any) -> None:
    """Send one JSON message (already in wire form) as a length-prefixed frame."""
    frame = encode_frame(message)
    sent = os.write(fd, frame)
    if sent < len(frame):  # only a frame larger than the pipe's buffer is written in parts
        view = memoryview(frame)[sent:]
        while view:
            view = view[os.write(fd, view):]


class FrameReader:
    """Frames from one connection, read in large chunks: usually one system call per frame.

    Bytes that arrive beyond the current frame (a peer that sent several requests at once) are
    kept for the next :meth:`recv`; they belong to this connection only.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def recv(self) -> Any:
        """Receive one frame; raises EOFError when the peer has gone, ProtocolError when it is malformed."""
        data = self.pending
        if not data:
            # The usual case, one request or reply at a time: the whole frame comes in one read.
            data = os.read(self.fd, _READ_BYTES)
            if not data:
                raise EOFError("peer closed the connection")
        if len(data) < _HEADER.size:
            data = self._fill(data, _HEADER.size)
        (length,) = _HEADER.unpack_from(data)
        if length > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
        end = _HEADER.size + length
        if len(data) < end:
            data = self._fill(data, end)
        body, self.pending = data[_HEADER.size:end], data[end:]
        try:
            text = body.decode("utf-8", "surrogatepass")
            value, used = _SCAN(text, 0)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ProtocolError(f"frame is not JSON: {exc}") from None
        except StopIteration:
            raise ProtocolError("frame is not JSON") from None
        if used != len(text):
            raise ProtocolError("frame holds more than one JSON value")
        return value

    def _fill(self, data: bytes, size: int) -> bytes:
        chunks = [data]
        have = len(data)
        while have < size:
            chunk = os.read(self.fd, max(_READ_BYTES, min(size - have, 1 << 20)))
            if not chunk:
                raise EOFError("peer closed the connection")
            chunks.append(chunk)
            have += len(chunk)
        return b"".join(chunks)


def read_whole(fd: int) -> bytes:
    """Everything in the file behind ``fd`` (a memfd holding a program, tests or stdin), from its start.

    Asks for the file's size first: a read "up to a megabyte" allocates that megabyte each time
    (an mmap and munmap in a freshly forked process).
    """
    chunks = []
    offset = 0
    want = max(os.fstat(fd).st_size, 1)
    while True:
        chunk = os.pread(fd, want, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)
        want = 1 << 16
