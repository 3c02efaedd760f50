"""What runs inside the judge process: the tests, calling into the candidate process over two pipes.

The judge alone decides "passed", and it runs only trusted code (the tests from the problem's
``answer`` and this module). The program under test lives in another process, under another
uid where the machine allows it; the judge reaches its functions through
:class:`RemoteObject` stand-ins. What the program returns crosses as plain data
(:mod:`~reasonrl.verifiers.code.codec`: exact built-in types only), so:

* ``assert candidate(x) == y`` compares two plain values in the judge: an object whose
  ``__eq__`` always answers True, or an ``int`` subclass that lies, never gets here by value.
  It arrives as a handle, and a handle never equals a plain value.
* ``sys.exit(0)``, ``os._exit(0)``, killing its own process group or an ``atexit`` hook in the
  program ends or fails the *candidate* process; the judge sees a dead peer and fails the test.
* The tests and the expected values never enter the candidate process, so the program cannot
  read them (from a caller's frame, the stack or its memory).

Operations between handles (``sorted`` over objects of a class the program defined, ``==``
between two such objects) do run the program's methods: a test that asks for that trusts the
program's semantics by construction, as it would in-process. A handle next to a plain value
answers ``NotImplemented`` for comparisons and arithmetic.

What the judge takes from the program (:class:`TestNamespace`): the functions under test (the
entry point; for MBPP and plain asserts, also the functions and classes the tests name and
nothing trusted defines), never a module, a built-in or a helper of the problem's prompt.
Everything else a test names resolves here: its own definitions and imports, the set-up code,
the prompt's helpers, built-ins and the standard library's modules by name.

What a test may hand the program besides plain data: built-in types and pure built-in functions
(by name: the program gets its own ``int``), its own functions and lambdas (the program gets a
stand-in; each call comes back here with plain data and runs in this process, see
:meth:`Connection.receive`), and the program's objects (handles; attributes set on them, as
MBPP 367's set-up code builds a tree of the program's ``Node``, are set in the program).
"""
from __future__ import annotations

import builtins
import importlib
import os
import sys
from typing import Any

from reasonrl.verifiers.code import codec


# Compiled test code by source text: a kept judge sees the same problem many times (a GRPO group
# holds several samples of one prompt). Bounded; only trusted test sources are keys.
_COMPILED: dict[tuple[str, str], Any] = {}
_COMPILED_MAX = 512


def _compile(source: str, filename: str) -> Any:
    key = (source, filename)
    code = _COMPILED.get(key)
    if code is None:
        code = compile(source, filename, "exec")
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.clear()
        _COMPILED[key] = code
    return code


class CandidateDied(Exception):
    """The candidate process closed the connection (it exited, crashed or was killed)."""


class CandidateError(Exception):
    """The program raised an exception that is not a built-in ``Exception`` subclass (``SystemExit``, its own class, ...)."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name


class Connection:
    """The judge's ends of the pipes to the candidate: replies come in on ``replies_fd``, requests
    go out on ``requests_fd``."""

    def __init__(self, replies_fd: int, requests_fd: int) -> None:
        self.fd = requests_fd
        self.replies = codec.FrameReader(replies_fd)
        self.calls = 0
        # The exception types the program raised, most recent last (labels a failure).
        self.raised: list[str] = []
        # The tests' functions passed to the program, by the key it calls them back with.
        self.callbacks: dict[int, Any] = {}

    def send(self, message: list) -> None:
        try:
            codec.send_frame(self.fd, message)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise CandidateDied(f"the program's process ended during the tests ({exc})") from None

    def receive(self) -> list:
        """The program's reply to the oldest request not yet answered (running the tests' functions
        the program calls back meanwhile)."""
        while True:
            try:
                reply = self.replies.recv()
            except (EOFError, BrokenPipeError, ConnectionResetError) as exc:
                raise CandidateDied(f"the program's process ended during the tests ({exc})") from None
            if type(reply) is not list or not reply:
                raise codec.ProtocolError("malformed reply")
            if reply[0] != "cb":
                break
            self._call_back(reply)
        if reply[0] == "x":
            type_name, message_text = str(reply[1]), str(reply[2])
            self.raised.append(type_name)
            raise _exception_from(type_name, message_text)
        if reply[0] != "v":
            raise codec.ProtocolError(f"unexpected reply {reply[0]!r}")
        return reply

    def request(self, message: list) -> list:
        self.send(message)
        return self.receive()

    def _call_back(self, message: list) -> None:
        """Run the tests' function the program called (``["cb", key, args, kwargs]``) and send its
        value, or the exception it raised, back on the requests pipe."""
        if len(message) != 4 or type(message[2]) is not list or type(message[3]) is not dict:
            raise codec.ProtocolError("malformed callback")
        function = self.make_handle(message[1], codec.CALLBACK) if type(message[1]) is int else None
        if function is None:
            raise codec.ProtocolError("malformed callback")
        args = [codec.decode(a, self.make_handle) for a in message[2]]
        kwargs = {str(k): codec.decode(v, self.make_handle) for k, v in message[3].items()}
        try:
            answer = ["r", _encode_argument(self, function(*args, **kwargs))]
        except (CandidateDied, CandidateError, codec.ProtocolError, MissingName):
            raise  # not the test function's own failure: it ends the tests
        except Exception as exc:
            answer = ["rx", type(exc).__name__, str(exc)[:2000]]
        self.send(answer)

    def value(self, reply: list) -> Any:
        return codec.decode(reply[1], self.make_handle)

    def make_handle(self, key: int, type_name: Any) -> Any:
        if type_name is codec.CALLBACK:
            try:
                return self.callbacks[key]
            except KeyError:
                raise codec.ProtocolError(f"unknown callback {key}") from None
        return RemoteObject(self, key, type_name)

    def non_plain(self, obj: Any) -> list:
        """What an argument that is not plain data becomes on its way to the program: the program's
        own object (a handle), or a function of the tests, which the program calls back here."""
        if isinstance(obj, RemoteObject):
            return ["h", obj._key, obj._type_name]
        if callable(obj) and not _is_unsafe_builtin(obj):
            key = id(obj)
            self.callbacks[key] = obj  # held (so the id stays this function's) until the job ends
            return ["cb", key]
        raise TypeError(f"cannot pass a {type(obj).__name__} to the program under test "
                        "(only plain data, built-in types, the tests' functions and the program's own objects)")

    def get(self, name: str) -> Any:
        return self.value(self.request(["get", name]))

    def wait_loaded(self) -> list:
        try:
            message = self.replies.recv()
        except (EOFError, ConnectionResetError):
            raise CandidateDied("the program's process ended while loading") from None
        return message


def _exception_from(type_name: str, message: str) -> BaseException:
    cls = getattr(builtins, type_name, None)
    # Built-in Exception subclasses are re-raised as themselves so `except ValueError` in a test
    # works; SystemExit, KeyboardInterrupt and the program's own classes become CandidateError.
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:
            pass
    return CandidateError(type_name, message)


# The built-in callables that are not pure (``eval``, ``getattr``, ``open``, ``__import__``...): never
# handed to the program to call here, whatever the test passes, since the program would choose
# their arguments.
_UNSAFE_BUILTINS = {id(value) for name, value in vars(builtins).items() if callable(value) and name not in codec.BUILTINS}


def _is_unsafe_builtin(obj: Any) -> bool:
    return id(obj) in _UNSAFE_BUILTINS and any(obj is value for value in vars(builtins).values())


def _encode_argument(conn: "Connection", value: Any) -> Any:
    return codec.encode(value, conn.non_plain)


class RemoteObject:
    """Stand-in for an object that lives in the candidate process (a function, an instance, an iterator)."""

    __slots__ = ("_conn", "_key", "_type_name")

    def __init__(self, conn: Connection, key: int, type_name: str) -> None:
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_type_name", type_name)

    def __setattr__(self, name: str, value: Any) -> None:
        # ``root.left = Node(2)`` in MBPP 367's set-up code: the attribute is set program-side.
        if name.startswith("__") or name in RemoteObject.__slots__:
            raise AttributeError(f"cannot set {name!r} on an object of the program under test")
        self._op("setattr", name, value)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._op("setitem", key, value)

    def __repr__(self) -> str:  # local: never asks the program (used in assertion messages)
        return f"<{self._type_name} object of the program under test>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        conn.calls += 1
        reply = conn.request(
            ["call", self._key, [_encode_argument(conn, a) for a in args], {str(k): _encode_argument(conn, v) for k, v in kwargs.items()}]
        )
        result = conn.value(reply)
        for index, wire in reply[2] if len(reply) > 2 and type(reply[2]) is list else []:
            _copy_back(args[index], codec.decode(wire, conn.make_handle))
        return result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._conn.value(self._conn.request(["attr", self._key, name]))

    def _op(self, name: str, *args: Any) -> Any:
        conn = self._conn
        return conn.value(conn.request(["op", self._key, name, [_encode_argument(conn, a) for a in args]]))

    def _typed_op(self, name: str, kind: type) -> Any:
        value = self._op(name)
        if type(value) is not kind:
            raise TypeError(f"{name}() of the program's {self._type_name} returned {type(value).__name__}, not {kind.__name__}")
        return value

    def __iter__(self) -> Any:
        iterator = self._op("iter")
        if not isinstance(iterator, RemoteObject):
            raise TypeError("iter() of the program's object did not return an iterator")
        conn = self._conn
        while True:
            reply = conn.request(["next", iterator._key])
            items = conn.value(reply)
            yield from items
            if reply[2]:
                return

    def __len__(self) -> int:
        return self._typed_op("len", int)

    def __bool__(self) -> bool:
        return self._typed_op("bool", bool)

    def __str__(self) -> str:
        return self._typed_op("str", str)

    def __int__(self) -> int:
        return self._typed_op("int", int)

    def __float__(self) -> float:
        return self._typed_op("float", float)

    def __index__(self) -> int:
        return self._typed_op("index", int)

    def __hash__(self) -> int:
        return self._typed_op("hash", int)

    def __getitem__(self, key: Any) -> Any:
        return self._op("getitem", key)

    def __contains__(self, item: Any) -> bool:
        return bool(self._op("contains", item))

    def __abs__(self) -> Any:
        return self._op("abs")

    def __neg__(self) -> Any:
        return self._op("neg")


def _between_handles(name: str):
    # Comparisons and arithmetic run the program's method only when both sides are its objects.
    def method(self: RemoteObject, other: Any) -> Any:
        if not isinstance(other, RemoteObject):
            return NotImplemented
        return self._op(name, other)

    method.__name__ = f"__{name}__"
    return method


for _name in ("eq", "ne", "lt", "le", "gt", "ge", "add", "sub", "mul", "truediv", "floordiv", "mod", "pow"):
    setattr(RemoteObject, f"__{_name}__", _between_handles(_name))


def _copy_back(original: Any, new: Any) -> None:
    """Apply an in-place change the program made to an argument to the judge's own copy."""
    kind = type(original)
    if kind is not type(new):
        return
    if kind is list or kind is bytearray:
        original[:] = new
    elif kind is dict or kind is set:
        original.clear()
        original.update(new)


_BUILTIN_NAMES = vars(builtins)
# Free names of a test that the judge resolves itself, as the standard library's modules: never the
# program's (a program that defines ``sys`` or patches its own ``math`` does not change ``math.isclose``).
_STANDARD_MODULES = frozenset(name for name in sys.stdlib_module_names if not name.startswith("_"))


class MissingName(BaseException):
    """The tests use a name the judge may not take from the program and nothing trusted defines.

    A ``BaseException``: a test's own ``except Exception`` must not swallow it (the namespace also
    remembers it, so a bare ``except`` cannot either).
    """


class TestNamespace(dict):
    """Globals for the test code. A name the tests do not define or import is resolved here, in order:

    1. the functions under test (``entry_points``, put here by :func:`run_tests`): the program's,
       even where one shadows a built-in (MBPP 126 tests a function called ``sum``);
    2. built-ins: the judge's, so a program that redefines ``len`` changes nothing;
    3. the standard library's modules by name (MBPP 596 uses ``sys`` without importing it);
    4. with ``program_names`` (MBPP and plain asserts), the program's other functions and classes
       (``Pair`` in an MBPP assert); never a module, nor a name the tests use as one
       (``judge_only``: ``np`` in ``np.allclose``), whatever its object claims to be. Without it (HumanEval: only the entry point is
       the program's) the name is a helper the problem's prompt should have defined:
       :class:`MissingName`.
    """

    def __init__(self, conn: Connection, program_names: bool, prompt_given: bool, judge_only: frozenset = frozenset()) -> None:
        super().__init__()
        self._conn = conn
        self._program_names = program_names
        self._judge_only = judge_only
        self._prompt_given = prompt_given
        self.missing: str | None = None
        self["__name__"] = "__test__"
        self["__builtins__"] = builtins

    def __missing__(self, name: str) -> Any:
        if name.startswith("__"):
            raise KeyError(name)
        if name in _BUILTIN_NAMES:
            # Kept here once found: every global lookup of a built-in in the tests lands in this
            # method (about fifty per HumanEval problem), and a KeyError each time is dear.
            value = self[name] = _BUILTIN_NAMES[name]
            return value
        if name in _STANDARD_MODULES:
            try:
                value = self[name] = importlib.import_module(name)
            except ImportError as exc:  # never the program's instead
                self._refuse(name, f"the test uses the standard module {name!r} without importing it, and the judge "
                                   f"cannot import it here ({exc})")
            return value
        if not self._program_names:
            where = "the answer's prompt does not define it" if self._prompt_given else "the answer has no prompt"
            self._refuse(name, f"the test uses {name!r}, a helper that neither the test, its imports nor the standard "
                               f"library defines, and {where}; the judge takes only the entry point from the program "
                               "(give the problem's prompt, which defines its helpers)")
        if name in self._judge_only:
            self._refuse(name, f"the test uses {name!r} as a module ({name}.…) without importing it; the judge takes no "
                               "modules from the program (add the import to the test's imports)")
        try:
            value = self._conn.get(name)
        except NameError:
            raise KeyError(name) from None
        if isinstance(value, RemoteObject) and value._type_name == "module":
            self._refuse(name, f"the test uses {name!r} without importing it, and the program's {name!r} is a module; "
                               "the judge takes no modules from the program (add the import to the test's imports)")
        self[name] = value
        return value

    def _refuse(self, name: str, message: str) -> None:
        if self.missing is None:
            self.missing = message
        raise MissingName(message)


def run_tests(spec: dict, conn: Connection) -> dict:
    """Run the tests of ``spec`` against the program behind ``conn``; the result dict is the judge's report."""
    entry_points = spec.get("entry_points", [])
    try:
        # Asked before the program has loaded: the requests wait in the pipe and the program
        # answers them right after "loaded", which saves a round trip per name.
        for name in entry_points:
            conn.send(["get", name])
    except CandidateDied:
        pass  # gone already: wait_loaded says how
    try:
        loaded = conn.wait_loaded()
    except (CandidateDied, codec.ProtocolError) as exc:
        return {"status": "load_error", "kind": "runtime_error", "error": type(exc).__name__, "message": str(exc)}
    if loaded[:1] == ["load_error"]:
        return {"status": "load_error", "kind": loaded[1], "error": loaded[2], "message": loaded[3]}
    if loaded != ["loaded"]:
        return {"status": "failed", "origin": "protocol", "error": "ProtocolError", "message": "unexpected first message"}
    kind = spec["kind"]
    prompt_given = any(filename == "<prompt>" for filename, _ in spec.get("setup", []))
    namespace = TestNamespace(conn, program_names=kind != "humaneval", prompt_given=prompt_given,
                              judge_only=frozenset(spec.get("judge_only", ())))
    done = 0
    try:
        fetched = {}
        for name in entry_points:  # the replies to the requests sent ahead, in order
            try:
                fetched[name] = conn.value(conn.receive())
            except NameError:
                pass
        for filename, source in spec.get("setup", []):
            if filename == "<prompt>":
                # The problem's own helpers (HumanEval/32's ``poly``) are defined here, trusted; a
                # prompt that does not run here only loses them (a test that needs one then fails
                # with MissingName, never takes the program's).
                try:
                    exec(_compile(source, filename), namespace, namespace)
                except Exception:
                    pass
                continue
            exec(_compile(source, filename), namespace, namespace)
        # The functions under test are the program's, even where a name is also a built-in
        # (MBPP 126 tests a function called ``sum``) or a prompt stub (HumanEval/33's check calls
        # ``sort_third`` by name). Only these names: a program that defines ``set`` or ``len``
        # does not change what the rest of a test means.
        for name in entry_points:
            namespace.pop(name, None)
            if name in fetched:
                namespace[name] = fetched[name]
        if kind == "humaneval":
            exec(_compile(spec["test"], "<test>"), namespace, namespace)
            check = namespace["check"]
            entry_point = spec["entry_point"]
            # Fetched above already (one round trip to the program saved); asked again only if not.
            candidate = fetched[entry_point] if entry_point in fetched else conn.get(entry_point)
            if not callable(candidate):
                return {"status": "failed", "origin": "candidate", "error": "TypeError",
                        "message": f"{spec['entry_point']} is a {type(candidate).__name__}, not a function"}
            check(candidate)
            done = 1
            if namespace.missing:  # the test caught MissingName itself
                raise MissingName(namespace.missing)
        else:
            for done, source in enumerate(spec["tests"]):
                exec(_compile(source, f"<test {done}>"), namespace, namespace)
            done = len(spec["tests"])
            if namespace.missing:
                raise MissingName(namespace.missing)
    except BaseException as exc:  # any way out of the tests but the end is a failure
        if namespace.missing:
            return {"status": "failed", "origin": "answer", "error": "MissingName", "message": namespace.missing,
                    "tests_passed": done, "calls": conn.calls}
        origin = "candidate" if isinstance(exc, (CandidateDied, CandidateError)) or (
            conn.raised and type(exc).__name__ == conn.raised[-1]
        ) else "test"
        if isinstance(exc, codec.ProtocolError):
            origin = "protocol"
        if isinstance(exc, NameError) and "is not defined" in str(exc):
            origin = "candidate"  # the program does not define a name the tests use
        return {
            "status": "failed", "origin": origin, "error": type(exc).__name__, "message": str(exc)[:2000],
            "tests_passed": done, "calls": conn.calls, "program_raised": conn.raised[-1:] or None,
        }
    return {"status": "passed", "tests_passed": done, "calls": conn.calls}


def judge_report(spec: dict, replies_fd: int, requests_fd: int) -> dict:
    """Run one job's tests against the program (replies from ``replies_fd``, requests to
    ``requests_fd``) and return the report (never raises)."""
    try:
        return run_tests(spec, Connection(replies_fd, requests_fd))
    except BaseException as exc:
        return {"status": "failed", "origin": "judge", "error": type(exc).__name__, "message": str(exc)[:2000]}


def serve_jobs(sock_fd: int) -> None:
    """Entry point of a judge process kept across jobs: receive ``(tests fd, replies pipe, requests
    pipe)`` per job from the worker, answer with the report. Never returns."""
    import json
    import socket

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
    sock = socket.socket(fileno=sock_fd)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 3)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)
        job = json.loads(data).get("job")
        tests_fd, replies_fd, requests_fd = (fds + [-1, -1, -1])[:3]
        try:
            spec = json.loads(codec.read_whole(tests_fd))
            report = judge_report(spec, replies_fd, requests_fd)
        except BaseException as exc:
            report = {"status": "failed", "origin": "judge", "error": type(exc).__name__, "message": str(exc)[:2000]}
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        report["job"] = job
        try:
            payload = json.dumps(report).encode()
        except (TypeError, ValueError):
            payload = json.dumps({"status": "failed", "origin": "judge", "error": "BadReport", "message": "", "job": job}).encode()
        try:
            sock.send(payload)
        except OSError:
            os._exit(0)
