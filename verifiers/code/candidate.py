"""What runs inside the candidate process (the untrusted program), after it has been locked down.

The process is a fork of the worker's zygote, which made its standard streams
(:func:`fresh_std_streams`), environment and signal dispositions once for all its children.

Two modes:

* :func:`run_as_main` — ``python main.py`` semantics: the source runs as ``__main__``; an
  uncaught exception prints a traceback and exits 1, ``sys.exit(n)`` exits ``n``. Used by
  :func:`reasonrl.verifiers.code.sandbox.run_program` and by stdin/stdout tests.
* :func:`serve_functions` — the source runs as a module named ``solution`` (so an
  ``if __name__ == "__main__":`` demo block does not run), then the process answers the
  judge's requests ("call this function with these arguments") until the judge hangs up.

Nothing in this module is trusted: the program can replace any of it once it runs. That is
by design: the decision "passed" is made in the judge process, which only ever receives plain
data (``codec``) from here.
"""
from __future__ import annotations

import atexit
import io
import linecache
import operator
import os
import sys
import traceback
import types
from typing import Any

from reasonrl.verifiers.code import codec

# Status bytes written to the status pipe (only used to label a failure; a program that writes
# them itself only mislabels its own failure).
STATUS_COMPILE_ERROR = b"C"
STATUS_MEMORY_ERROR = b"M"
STATUS_EXCEPTION = b"X"

PROGRAM_FILENAME = "main.py"


def fresh_std_streams() -> None:
    """New ``sys.stdin/stdout/stderr`` objects over fds 0/1/2, as a fresh interpreter would have them.

    Called once in the zygote (``worker._zygote_main``), not in each program's process: every
    child inherits them unused, and making them per child cost ~90 page copies.
    """
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8", errors="strict")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8", errors="strict")
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8", errors="backslashreplace", line_buffering=True
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _write_status(status_fd: int, status: bytes) -> None:
    try:
        os.write(status_fd, status)
    except OSError:
        pass


def _flush_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _fresh_module(name: str, filename: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = filename
    module.__builtins__ = __builtins__
    sys.modules[name] = module
    return module


def _register_source(filename: str, source: str) -> None:
    # So tracebacks show the program's lines without the source being written to disk.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)


def run_as_main(source: str, status_fd: int) -> None:
    """Run ``source`` as ``__main__`` and leave the process with the interpreter's exit code. Never returns."""
    sys.argv = [PROGRAM_FILENAME]
    _register_source(PROGRAM_FILENAME, source)
    main = _fresh_module("__main__", PROGRAM_FILENAME)
    exit_code = 0
    try:
        code = compile(source, PROGRAM_FILENAME, "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError):
        _write_status(status_fd, STATUS_COMPILE_ERROR)
        traceback.print_exc(limit=0)
        _flush_streams()
        os._exit(1)
    try:
        exec(code, main.__dict__)
    except SystemExit as exc:
        exit_code = _system_exit_code(exc)
    except MemoryError:
        _write_status(status_fd, STATUS_MEMORY_ERROR)
        exit_code = 1
        _print_exception()
    except BaseException:
        _write_status(status_fd, STATUS_EXCEPTION)
        exit_code = 1
        _print_exception()
    exit_code = _shutdown(exit_code)
    os._exit(exit_code)


def _print_exception() -> None:
    """The traceback the interpreter would print: from the program's first frame, not ours."""
    try:
        kind, value, tb = sys.exc_info()
        traceback.print_exception(kind, value, tb.tb_next if tb is not None else None)
    except BaseException:
        pass


def _system_exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except BaseException:
        pass
    return 1


def _shutdown(exit_code: int) -> int:
    """What the interpreter does at exit: join non-daemon threads, run atexit hooks, flush."""
    try:
        import threading

        threading._shutdown()  # type: ignore[attr-defined]
    except BaseException:
        pass
    try:
        atexit._run_exitfuncs()
    except SystemExit as exc:
        exit_code = _system_exit_code(exc)
    except BaseException:
        pass
    _flush_streams()
    return exit_code


# ---------------------------------------------------------------------------------------------
# Function mode: the judge calls into the program.

_OPERATIONS = {
    "len": len, "bool": bool, "str": str, "repr": repr, "hash": hash, "iter": iter,
    "int": int, "float": float, "index": operator.index, "abs": abs, "neg": operator.neg,
    "getitem": operator.getitem, "contains": operator.contains,
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge,
    "add": operator.add, "sub": operator.sub, "mul": operator.mul, "truediv": operator.truediv,
    "floordiv": operator.floordiv, "mod": operator.mod, "pow": operator.pow,
    "setitem": operator.setitem, "setattr": setattr,
}
_MUTABLE_TYPES = (list, dict, set, bytearray)
# Items fetched per "next" request when the judge iterates over a program's iterator.
ITERATION_BATCH = 64


class _ObjectTable:
    """Objects the judge holds handles to (anything that is not plain data), and the stand-ins for
    the test's functions the judge passed in (:class:`JudgeFunction`)."""

    def __init__(self) -> None:
        self.objects: dict[int, Any] = {}
        self.callbacks: dict[int, JudgeFunction] = {}
        # Set by serve_functions: the requests pipe's reader and the replies pipe (a callback
        # talks over both while the judge waits for the call that made it).
        self.requests: codec.FrameReader | None = None
        self.replies_fd = -1
        self.namespace: dict = {}

    def handle(self, obj: Any) -> list:
        key = id(obj)
        self.objects[key] = obj
        return ["h", key, type(obj).__name__]

    def non_plain(self, obj: Any) -> list:
        """Wire form of a value that is not plain data: a numpy scalar's Python value, a test's
        function given back, else a handle."""
        kind = type(obj)
        if kind is JudgeFunction:
            return ["cb", obj.key]
        if kind.__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "shape", None) == ():
            try:
                return codec.encode(obj.item())
            except codec.Unencodable:
                pass
        return self.handle(obj)

    def resolve(self, key: int, name: Any) -> Any:
        if name is codec.CALLBACK:
            function = self.callbacks.get(key)
            if function is None:
                function = self.callbacks[key] = JudgeFunction(self, key)
            return function
        try:
            return self.objects[key]
        except KeyError:
            raise codec.ProtocolError(f"unknown handle {key}") from None


class JudgeFunction:
    """Stand-in for a function of the tests (a lambda, a ``key=``): calling it asks the judge to
    run it there, with the arguments as plain data or handles, and waits for its value.

    While it waits, the judge may call into the program again (the test's function calls the
    program's): those requests are answered here, in order.
    """

    __slots__ = ("table", "key")

    def __init__(self, table: _ObjectTable, key: int) -> None:
        self.table = table
        self.key = key

    def __repr__(self) -> str:
        return "<function of the tests>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        table = self.table
        if table.requests is None:
            raise RuntimeError("a function of the tests can be called only while the tests run")
        _reply(table.replies_fd, ["cb", self.key, [_to_plain(a, table) for a in args],
                                  {str(k): _to_plain(v, table) for k, v in kwargs.items()}])
        while True:
            try:
                message = table.requests.recv()
            except (EOFError, OSError, codec.ProtocolError):
                _flush_streams()
                os._exit(0)
            if type(message) is list and message and message[0] == "r":
                return codec.decode(message[1], table.resolve)
            if type(message) is list and message and message[0] == "rx":
                raise _judge_exception(str(message[1]), str(message[2]))
            _serve_one(message, table)


def _judge_exception(type_name: str, message: str) -> BaseException:
    """The exception a test's function raised, as a built-in exception where it is one."""
    cls = codec.BUILTINS.get(type_name)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return RuntimeError(f"{type_name}: {message}")


def _to_plain(value: Any, table: _ObjectTable) -> Any:
    """Wire form of a result. numpy scalars become Python scalars (same comparisons), others stay handles."""
    return codec.encode(value, table.non_plain)


def serve_functions(source: str, requests_fd: int, replies_fd: int, module_name: str = "solution") -> None:
    """Load ``source`` as a module, tell the judge how it went, then answer its requests. Never returns.

    Requests arrive on ``requests_fd``, replies go to ``replies_fd`` (pipes from and to the judge).
    """
    filename = f"{module_name}.py"
    sys.argv = [filename]
    _register_source(filename, source)
    module = _fresh_module(module_name, filename)
    table = _ObjectTable()
    try:
        code = compile(source, filename, "exec")
    except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as exc:
        _reply(replies_fd, ["load_error", "compile_error", type(exc).__name__, _describe(exc)])
        os._exit(1)
    try:
        exec(code, module.__dict__)
    except BaseException as exc:  # SystemExit at import time is a failure too, not a pass
        kind = "memory_limit" if isinstance(exc, MemoryError) else "runtime_error"
        _flush_streams()
        _reply(replies_fd, ["load_error", kind, type(exc).__name__, _describe(exc)])
        os._exit(1)
    _flush_streams()
    _reply(replies_fd, ["loaded"])
    table.namespace = module.__dict__
    table.requests = requests = codec.FrameReader(requests_fd)
    table.replies_fd = replies_fd
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError, codec.ProtocolError):
            _flush_streams()
            os._exit(0)
        _serve_one(request, table)


def _serve_one(request: Any, table: _ObjectTable) -> None:
    try:
        reply = _answer(request, table)
    except BaseException as exc:
        reply = ["x", type(exc).__name__, _describe(exc)]
    _flush_streams()
    _reply(table.replies_fd, reply)


def _answer(request: list, table: _ObjectTable) -> list:
    op = request[0]
    if op == "get":
        name = request[1]
        namespace = table.namespace
        if name not in namespace:
            return ["x", "NameError", f"name {name!r} is not defined"]
        return ["v", _to_plain(namespace[name], table)]
    target = table.resolve(request[1], "")
    if op == "call":
        args_wire, kwargs_wire = request[2], request[3]
        args = [codec.decode(a, table.resolve) for a in args_wire]
        kwargs = {k: codec.decode(v, table.resolve) for k, v in kwargs_wire.items()}
        result = target(*args, **kwargs)
        # Arguments the function changed in place travel back, so tests of in-place functions work.
        changed = []
        for index, (arg, wire) in enumerate(zip(args, args_wire)):
            if type(arg) in _MUTABLE_TYPES:
                after = _to_plain(arg, table)
                if after != wire:
                    changed.append([index, after])
        return ["v", _to_plain(result, table), changed]
    if op == "attr":
        return ["v", _to_plain(getattr(target, request[2]), table)]
    if op == "next":
        items = []
        for _ in range(ITERATION_BATCH):
            try:
                items.append(_to_plain(next(target), table))
            except StopIteration:
                return ["v", ["l", *items], True]
        return ["v", ["l", *items], False]
    if op == "op":
        function = _OPERATIONS[request[2]]
        args = [codec.decode(a, table.resolve) for a in request[3]]
        return ["v", _to_plain(function(target, *args), table)]
    raise codec.ProtocolError(f"unknown request {op!r}")


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:
        text = "<unprintable>"
    return text[:2000]


def _reply(fd: int, message: list) -> None:
    try:
        codec.send_frame(fd, message)
    except codec.ProtocolError as exc:
        codec.send_frame(fd, ["x", "ProtocolError", str(exc)])
    except OSError:
        os._exit(0)  # the judge has gone: nothing left to do
