"""Hostile programs: each test asserts the verdict AND what happened on the host, seen from outside.

Host-side checks: canary files (one shown to programs read-only, one not shown at all) are
untouched; a listening socket on 127.0.0.1 is never reached; no process a program started is
left (by a unique marker in its command line, and by the sandbox's uids); the worker is the same
process afterwards and the next good program passes.

Every dangerous test is bounded: ``kill(-1)`` and fork bombs run only where the sandbox reports a
PID namespace (and fork bombs under a small process limit too); everything has a short wall limit.
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from reasonrl.verifiers.code import CodeVerifier
from reasonrl.verifiers.code.harness import grade, grade_many
from reasonrl.verifiers.code.pool import PoolConfig, SandboxPool
from reasonrl.verifiers.code.sandbox import SandboxLimits, run_program
from tests.conftest import conformance_path, read_jsonl

LIMITS = SandboxLimits(wall_time_s=3.0, cpu_time_s=3.0, max_processes=16)
ADD = {"test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-4, 4) == 0\n", "entry_point": "add"}
GOOD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def canaries(tmp_path_factory):
    # The shown folder cannot live under /tmp (the sandbox mounts its own /tmp there) and must be
    # world-readable (programs run under an unprivileged uid).
    try:
        shown = Path(tempfile.mkdtemp(prefix="reasonrl-canary-", dir="/var/tmp"))
    except OSError:
        pytest.skip("/var/tmp is not writable here")
    hidden = tmp_path_factory.mktemp("canary_hidden")
    for folder in (shown, hidden):
        (folder / "canary.txt").write_text("alive")
        (folder / "tmp").mkdir()
        (folder / "tmp" / "inner.txt").write_text("alive")
        for path in [folder, *folder.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    yield shown, hidden
    shutil.rmtree(shown, ignore_errors=True)


@pytest.fixture(scope="module")
def pool(canaries):
    # The first canary folder is shown to programs (read-only), the second is not.
    with SandboxPool(2, PoolConfig(extra_paths=(str(canaries[0]),))) as sandbox_pool:
        yield sandbox_pool


@pytest.fixture(scope="module")
def namespaced(pool):
    if not pool.isolation.get("pid_namespace"):
        pytest.skip("no PID namespace on this machine: kill(-1) and fork-bomb tests are not run without one")
    return pool


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.read_text() if p.is_file() else None, p.stat().st_mtime_ns) for p in folder.rglob("*"))


def _assert_canaries_untouched(canaries, before):
    for folder, snapshot in zip(canaries, before):
        assert _snapshot(folder) == snapshot


def _worker_pids(pool):
    return sorted(w.process.pid for w in pool._idle)


def _sandbox_uid_processes(pool):
    """Host processes running under the program uid of any of this pool's workers."""
    uids = {w.program_uid for w in pool._idle}
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in uids:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _processes_with(marker):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def _good_program_still_passes(pool):
    verdict = grade(GOOD, ADD, pool, LIMITS)
    assert verdict.correct, verdict


# ---------------------------------------------------------------------------------------------
# The filesystem


def test_writes_renames_and_deletes_outside_the_scratch_dir_fail(pool, canaries):
    shown, hidden = canaries
    before = [_snapshot(shown), _snapshot(hidden)]
    attacks = [
        f"import os; os.remove({str(shown / 'canary.txt')!r})",
        f"import os; os.rename({str(shown / 'canary.txt')!r}, {str(shown / 'moved.txt')!r})",
        f"open({str(shown / 'canary.txt')!r}, 'w').write('owned')",
        f"open({str(shown / 'new.txt')!r}, 'w').write('x')",
        f"import shutil; shutil.rmtree({str(shown)!r})",
        f"import os; os.chmod({str(shown / 'canary.txt')!r}, 0)",
        f"import os; os.symlink('/etc/passwd', {str(shown / 'link')!r})",
        f"open({str(hidden / 'canary.txt')!r}).read()",
        f"import shutil; shutil.rmtree({str(hidden)!r})",
        "import subprocess; subprocess.run('rm -rf tmp', shell=True, check=True); print(open('tmp/inner.txt').read())",
        "open('/etc/passwd', 'a').write('x')",
        "open('/usr/lib/reasonrl-was-here', 'w')",
    ]
    results = [run_program(code, limits=LIMITS, pool=pool) for code in attacks]
    for code, result in zip(attacks, results):
        assert result.reason == "runtime_error", (code, result)
    _assert_canaries_untouched(canaries, before)
    seen = run_program(f"print(open({str(shown / 'canary.txt')!r}).read())", limits=LIMITS, pool=pool)
    assert seen.stdout == "alive\n"  # the shown folder really is visible: the writes above were refused
    assert not os.path.exists("/usr/lib/reasonrl-was-here")


def test_the_hidden_host_is_not_there(pool):
    listing = run_program("import os\nprint(sorted(os.listdir('/')))\nprint(os.listdir('/tmp'))", limits=LIMITS, pool=pool)
    assert listing.reason == "ok"
    top = eval(listing.stdout.splitlines()[0])  # our own program's output: a list of names
    assert "work" not in top and "home" not in top and "proc" in top
    assert len(eval(listing.stdout.splitlines()[1])) == 1  # only this program's scratch directory


# ---------------------------------------------------------------------------------------------
# The network


def test_a_local_listening_socket_is_never_reached(pool):
    if not pool.isolation["network"].startswith("none"):
        pytest.skip("no network namespace on this machine (the fallback says so in its isolation report)")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                pass

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        attempt = (
            "import socket\n"
            f"s = socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "s.sendall(b'hello')\n"
            "print('connected')\n"
        )
        result = run_program(attempt, limits=LIMITS, pool=pool)
        assert result.reason == "runtime_error" and "connected" not in result.stdout
        assert "unreachable" in result.stderr.lower() or "refused" in result.stderr.lower()
        time.sleep(0.3)
        assert accepted == []
    finally:
        stop.set()
        thread.join(2)
        server.close()


# ---------------------------------------------------------------------------------------------
# Processes


def test_no_process_survives_its_verdict(pool):
    marker = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**6}"
    spawner = (
        "import os, subprocess, sys\n"
        f"subprocess.Popen(['sleep', '{marker}'])\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execvp('sleep', ['sleep', '{marker}'])\n"
        "    os._exit(0)\n"
        "print('spawned')\n"
    )
    result = run_program(spawner, limits=LIMITS, pool=pool)
    assert result.reason == "ok" and result.stdout == "spawned\n"
    assert _processes_with(marker) == []
    # The same inside a test job, where the program keeps serving the judge until killed.
    program = spawner.replace("print('spawned')\n", "") + GOOD
    assert grade(program, ADD, pool, LIMITS).correct
    assert _processes_with(marker) == []
    assert _sandbox_uid_processes(pool) == []
    _assert_no_zombies(pool)


def _assert_no_zombies(pool):
    for worker in pool._idle:
        below = _children(worker.process.pid)  # the worker, then its zygote and judge, then theirs
        while below:
            pid = below.pop()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            assert state != "Z", f"zombie {pid} under the worker"
            below += _children(pid)


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


_CLONE_SYSCALL = {"x86_64": 56, "aarch64": 220}.get(os.uname().machine)


@pytest.mark.skipif(_CLONE_SYSCALL is None, reason="clone(2) number known for x86_64 and aarch64 only")
def test_a_sibling_made_with_clone_parent_is_killed_and_reaped(pool):
    # clone(CLONE_PARENT) makes the new process a child of the program's parent (the zygote that
    # forked it), not of the program: it must be found, killed and reaped all the same.
    marker = f"{uuid.uuid4().int % 10**6}.{uuid.uuid4().int % 10**6}"
    sibling = (
        "import ctypes, os\n"
        f"if ctypes.CDLL(None).syscall({_CLONE_SYSCALL}, 0x8000 | 17, 0, 0, 0, 0) == 0:\n"  # CLONE_PARENT | SIGCHLD
        f"    os.execv('/bin/sleep', ['sleep', '{marker}'])\n"
    )
    workers = _worker_pids(pool)
    started = time.monotonic()
    result = run_program(sibling + "print('cloned')\n", limits=LIMITS, pool=pool)
    assert result.reason == "ok" and result.stdout == "cloned\n", result
    assert grade(sibling + GOOD, ADD, pool, LIMITS).correct
    assert time.monotonic() - started < 10
    assert _processes_with(marker) == []
    assert _sandbox_uid_processes(pool) == []
    _assert_no_zombies(pool)
    _good_program_still_passes(pool)
    assert _worker_pids(pool) == workers


@pytest.mark.parametrize(
    "attack",
    [
        "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
        "import os, signal\nos.kill(1, signal.SIGKILL)",
        "import os, signal\nos.killpg(0, signal.SIGKILL)",
        "import os, signal\nos.killpg(os.getpgid(os.getppid()), signal.SIGKILL)",
    ],
    ids=["kill-parent", "kill-pid-1", "kill-own-group", "kill-parent-group"],
)
def test_killing_parent_group_or_worker_fails_only_the_program(pool, attack):
    workers = _worker_pids(pool)
    program = "def add(a, b):\n" + "".join(f"    {line}\n" for line in attack.splitlines()) + "    return a + b + 1\n"
    verdict = grade(program, ADD, pool, LIMITS)
    assert not verdict.correct and verdict.reason in ("runtime_error", "wrong_answer"), verdict
    result = run_program(attack + "\nprint('still here')", limits=LIMITS, pool=pool)
    assert result.reason != "ok" or result.stdout == "still here\n"
    _good_program_still_passes(pool)
    assert _worker_pids(pool) == workers  # the same worker processes: none was killed


def test_kill_minus_one_inside_the_namespace(namespaced):
    workers = _worker_pids(namespaced)
    program = "import os, signal\ndef add(a, b):\n    os.kill(-1, signal.SIGKILL)\n    return a - b\n"
    verdict = grade(program, ADD, namespaced, LIMITS)
    assert not verdict.correct
    _good_program_still_passes(namespaced)
    assert _worker_pids(namespaced) == workers


def test_fork_bomb_is_bounded_and_cleaned_up(namespaced):
    bomb = (
        "import os\n"
        "def add(a, b):\n"
        "    while True:\n"
        "        try:\n"
        "            os.fork()\n"
        "        except OSError:\n"
        "            pass\n"
    )
    started = time.monotonic()
    verdict = grade(bomb, ADD, namespaced, LIMITS.replace(wall_time_s=1.0, max_processes=12))
    assert not verdict.correct and verdict.reason in ("timeout", "runtime_error")
    assert time.monotonic() - started < 20
    assert _sandbox_uid_processes(namespaced) == []
    _good_program_still_passes(namespaced)


# Generous wall time: on a loaded machine a memory or recursion failure must still come before the clock.
SHORT = LIMITS.replace(wall_time_s=5.0, cpu_time_s=3.0, memory_bytes=384 << 20)
slow = pytest.mark.slow


@pytest.mark.parametrize(
    "program, reasons",
    [
        pytest.param("import ctypes\nctypes.string_at(0)\n" + GOOD, {"runtime_error"}, id="segfault-import"),
        pytest.param("def add(a, b):\n    import ctypes\n    ctypes.string_at(0)\n", {"runtime_error"}, id="segfault-call"),
        pytest.param("def add(a, b):\n    return bytearray(8 << 30)\n", {"memory_limit"}, id="huge-alloc"),
        # 16 MiB steps: reaches the 384 MiB cap in ~24 allocations, well inside the wall limit even on a loaded machine.
        pytest.param("def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(16 << 20))\n", {"memory_limit"}, id="memory-growth"),
        pytest.param("def add(a, b):\n    while True:\n        print('flood' * 1000)\n", {"output_limit"}, id="output-flood"),
        pytest.param("def add(a, b):\n    return add(a, b)\n", {"runtime_error"}, id="recursion"),
        pytest.param("def add(a, b):\n    while True:\n        pass\n", {"timeout"}, id="busy-loop"),
        pytest.param("import time\ndef add(a, b):\n    time.sleep(60)\n", {"timeout"}, id="sleep"),
        # Python 3.11 frames live on the heap: an unbounded recursion ends in a crash, memory or time.
        pytest.param("import sys\nsys.setrecursionlimit(10**7)\ndef add(a, b):\n    return add(a, b)\n",
                     {"runtime_error", "memory_limit", "timeout"}, id="deep-recursion", marks=slow),
        pytest.param("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n" + GOOD, {"timeout"}, id="sigstop", marks=slow),
    ],
)
def test_crashes_and_exhaustion_fail_and_the_batch_goes_on(pool, program, reasons):
    verdicts = grade_many([program, GOOD], [ADD, ADD], pool, SHORT, concurrency=2)
    assert not verdicts[0].correct and verdicts[0].reason in reasons, verdicts[0]
    assert verdicts[1].correct


# ---------------------------------------------------------------------------------------------
# Faked passes: none of these may count.

FAKES = {
    "os._exit at import": "import os\nos._exit(0)\n",
    "sys.exit at import": "import sys\nsys.exit(0)\n",
    "sys.exit in the function": "import sys\ndef add(a, b):\n    sys.exit(0)\n",
    "os._exit in the function": "import os\ndef add(a, b):\n    os._exit(0)\n",
    "atexit hook": "import atexit, os\natexit.register(lambda: os._exit(0))\ndef add(a, b):\n    raise RuntimeError\n",
    "prints passed": "print('passed')\nprint('All tests passed')\ndef add(a, b):\n    print('ok')\n    return None\n",
    "__eq__ always True": "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\ndef add(a, b):\n    return Yes()\n",
    "int subclass that lies": "class Lie(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = int.__hash__\ndef add(a, b):\n    return Lie(0)\n",
    "str subclass that lies": "class S(str):\n    def __eq__(self, other):\n        return True\n    __hash__ = str.__hash__\ndef add(a, b):\n    return S('')\n",
    "patched AssertionError": "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\ndef add(a, b):\n    return 0\n",
    "patched isinstance and len": "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.len = lambda x: 0\ndef add(a, b):\n    return 0\n",
    "caller frame": "import sys\ndef add(a, b):\n    frame = sys._getframe(1)\n    return frame.f_locals.get('expected', frame.f_back and frame.f_back.f_locals)\n",
    "raise SystemExit from __del__": "class Bye:\n    def __del__(self):\n        raise SystemExit(0)\ndef add(a, b):\n    return Bye()\n",
    "kill the judge": "import os, signal\ndef add(a, b):\n    for pid in range(2, 400):\n        try:\n            os.kill(pid, signal.SIGKILL)\n        except OSError:\n            pass\n    return 0\n",
}


def test_no_faked_pass(pool):
    names = list(FAKES)
    verdicts = grade_many([FAKES[n] for n in names] + [GOOD], [ADD] * (len(names) + 1), pool, LIMITS, concurrency=2)
    for name, verdict in zip(names, verdicts):
        assert not verdict.correct and verdict.reward == 0.0, (name, verdict)
    assert verdicts[-1].correct


# The judge takes from the program only the functions under test (and, for MBPP and plain asserts,
# the classes and functions the tests name); modules, built-ins and the prompt's helpers are its own.
CIRCLE = "assert math.isclose(circle_area(2), 12.566370614359172, rel_tol=1e-9)"
PATCHED_MATH = "import math\nmath.isclose = lambda *a, **k: True\ndef circle_area(r):\n    return -1\n"
GOOD_CIRCLE = "import math\ndef circle_area(r):\n    return math.pi * r * r\n"
TUPLE_SIZE = {  # MBPP 596: the test uses `sys` without importing it
    "test_list": [
        "assert tuple_size((\"A\", 1, \"B\", 2, \"C\", 3)) == sys.getsizeof((\"A\", 1, \"B\", 2, \"C\", 3))",
        "assert tuple_size(((1, \"Lion\"), (2, \"Tiger\"))) == sys.getsizeof(((1, \"Lion\"), (2, \"Tiger\")))",
    ],
    "test_imports": [],
}
EVENS = {"test_list": ["assert len(evens(5)) == 3", "assert sorted(evens(5)) == [0, 2, 4]", "assert abs(total(evens(5)) - 6) < 1e-9"]}
# A HumanEval-style problem whose test checks the answer with a helper only the prompt defines.
HELPER_PROMPT = "def square(x):\n    return x * x\n\n\ndef root(n):\n    \"\"\"Integer square root.\"\"\"\n"
HELPER_TEST = "def check(candidate):\n    for n in (4, 9, 144):\n        assert square(candidate(n)) == n\n"
HELPER_CHEAT = "def square(x):\n    return x\ndef root(n):\n    return n\n"  # passes wherever square is the program's
FREE_NAME_FAKES = {
    "program-defined sys (MBPP 596)": (
        TUPLE_SIZE, "class _Sys:\n    def getsizeof(self, value):\n        return 0\nsys = _Sys()\ndef tuple_size(t):\n    return 0\n"),
    "patched math, test_list": ({"test_list": [CIRCLE]}, PATCHED_MATH),
    "patched math, test": ({"test": CIRCLE}, PATCHED_MATH),
    "patched math the test imports": ({"test_list": [CIRCLE], "test_imports": ["import math"]}, PATCHED_MATH),
    "program-defined math module": (
        {"test_list": [CIRCLE]},
        "import types\nmath = types.ModuleType('math')\nmath.isclose = lambda *a, **k: True\ndef circle_area(r):\n    return -1\n"),
    "program-defined math object": (
        {"test": CIRCLE}, "class math:\n    isclose = staticmethod(lambda *a, **k: True)\ndef circle_area(r):\n    return -1\n"),
    "shadowed len, sorted, abs": (
        EVENS, "len = lambda x: 3\nsorted = lambda x: [0, 2, 4]\nabs = lambda x: 0\ndef evens(n):\n    return None\n"
               "def total(xs):\n    return None\n"),
    "patched builtins module": (
        EVENS, "import builtins\nbuiltins.len = lambda x: 3\nbuiltins.sorted = lambda x: [0, 2, 4]\nbuiltins.abs = lambda x: 0\n"
               "def evens(n):\n    return None\ndef total(xs):\n    return None\n"),
    "helper without the prompt": ({"test": HELPER_TEST, "entry_point": "root"}, HELPER_CHEAT),
    "helper with the prompt": ({"test": HELPER_TEST, "entry_point": "root", "prompt": HELPER_PROMPT}, HELPER_CHEAT),
    "a function the test imports": (
        {"test_list": ["assert isclose(circle_area(2), 12.566370614359172)"], "test_imports": ["from math import isclose"]},
        "def isclose(*a, **k):\n    return True\ndef circle_area(r):\n    return -1\n"),
    "set-up code's helper": (
        {"test_list": ["assert f(3) == helper(3)"], "test_setup_code": "def helper(x):\n    return x * x\n"},
        "def helper(x):\n    return 0\ndef f(x):\n    return 0\n"),
    "prompt helper in plain asserts": (
        {"test": "for n in (4, 9, 144):\n    assert square(root(n)) == n\n", "prompt": HELPER_PROMPT}, HELPER_CHEAT),
}


def test_the_tests_free_names_are_not_the_programs(pool):
    names = list(FREE_NAME_FAKES)
    answers = [FREE_NAME_FAKES[n][0] for n in names]
    verdicts = grade_many([FREE_NAME_FAKES[n][1] for n in names], answers, pool, LIMITS, concurrency=2)
    for name, verdict in zip(names, verdicts):
        assert not verdict.correct and verdict.reward == 0.0, (name, verdict)
    # The honest programs pass the same tests.
    honest = {
        "program-defined sys (MBPP 596)": "import sys\ndef tuple_size(t):\n    return sys.getsizeof(t)\n",
        "patched math, test_list": GOOD_CIRCLE, "patched math, test": GOOD_CIRCLE,
        "shadowed len, sorted, abs": "def evens(n):\n    return list(range(0, n, 2))\ndef total(xs):\n    return float(sum(xs))\n",
        "helper with the prompt": "    return int(n ** 0.5)\n",
        "prompt helper in plain asserts": "def root(n):\n    return int(n ** 0.5)\n",
    }
    verdicts = grade_many(list(honest.values()), [FREE_NAME_FAKES[n][0] for n in honest], pool, LIMITS, concurrency=2)
    assert [v.correct for v in verdicts] == [True] * len(honest), verdicts


def test_a_helper_only_the_prompt_defines_is_named_when_the_prompt_is_missing(pool):
    answer = {"test": HELPER_TEST, "entry_point": "root"}
    for program in (HELPER_CHEAT, "def square(x):\n    return x * x\ndef root(n):\n    return int(n ** 0.5)\n"):
        verdict = grade(program, answer, pool, LIMITS)
        assert not verdict.correct and verdict.reason == "error", verdict
        assert "'square'" in verdict.details["error"] and "prompt" in verdict.details["error"]
    # A test that swallows every exception does not swallow that one.
    swallow = {"test": "def check(candidate):\n    try:\n        square(candidate(4))\n    except:\n        pass\n", "entry_point": "root"}
    verdict = grade(HELPER_CHEAT, swallow, pool, LIMITS)
    assert not verdict.correct and verdict.reason == "error" and "'square'" in verdict.details["error"], verdict


def test_a_module_the_test_does_not_import_is_never_the_programs(pool):
    answer = {"test_list": ["assert np.allclose(double([1.0]), [2.0])"]}  # not a standard module
    cheat = "import types\nnp = types.ModuleType('np')\nnp.allclose = lambda *a, **k: True\ndef double(xs):\n    return []\n"
    verdict = grade(cheat, answer, pool, LIMITS)
    assert not verdict.correct and verdict.reason == "error" and "'np'" in verdict.details["error"], verdict
    # Nor an object that does not call itself a module.
    disguised = "class Numpy:\n    allclose = staticmethod(lambda *a, **k: True)\nnp = Numpy()\ndef double(xs):\n    return []\n"
    verdict = grade(disguised, answer, pool, LIMITS)
    assert not verdict.correct and verdict.reason == "error" and "'np'" in verdict.details["error"], verdict


@pytest.mark.conformance
def test_humaneval_helpers_without_the_prompt_are_not_the_programs(pool):
    rows = {r["task_id"]: r for r in read_jsonl(conformance_path("humaneval", "HumanEval.jsonl"))}
    cheats = {
        "HumanEval/32": "def poly(xs, x):\n    return 0\ndef find_zero(xs):\n    return 0\n",
        "HumanEval/38": "def encode_cyclic(s):\n    return s\ndef decode_cyclic(s):\n    return s\n",
        "HumanEval/50": "def encode_shift(s):\n    return s\ndef decode_shift(s):\n    return s\n",
    }
    for task_id, cheat in cheats.items():
        row = rows[task_id]
        verdict = grade(cheat, {"test": row["test"], "entry_point": row["entry_point"]}, pool, LIMITS)
        assert not verdict.correct and verdict.reason == "error" and "prompt" in verdict.details["error"], (task_id, verdict)
        with_prompt = {"test": row["test"], "entry_point": row["entry_point"], "prompt": row["prompt"]}
        assert not grade(cheat, with_prompt, pool, LIMITS).correct, task_id
        assert grade(row["canonical_solution"], with_prompt, pool, LIMITS).correct, task_id


PTY_COUNT = "/proc/sys/kernel/pty/nr"
PTMX_HOLDER = (
    "import os, time\n"
    "held = []\n"
    "for _ in range(200):\n"
    "    try:\n"
    "        held.append(os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY))\n"
    "    except OSError:\n"
    "        break\n"
    "try:\n"
    "    held.extend(os.openpty())\n"
    "except OSError:\n"
    "    pass\n"
    "print(len(held), flush=True)\n"
    "time.sleep(1.0)\n"
)
STANDARD_DEVICES = (
    "import multiprocessing, os, sys\n"
    "with open('/dev/null', 'w') as f:\n"
    "    f.write('gone')\n"
    "assert open('/dev/zero', 'rb').read(4) == bytes(4)\n"
    "assert len(open('/dev/urandom', 'rb').read(16)) == 16 and len(open('/dev/random', 'rb').read(16)) == 16\n"
    "assert len(os.urandom(8)) == 8\n"
    "lock = multiprocessing.Lock()\n"  # a POSIX semaphore: needs /dev/shm
    "assert lock.acquire(timeout=1)\n"
    "print(open('/dev/stdin').read(), os.path.exists('/dev/fd/0'))\n"
)


@pytest.mark.skipif(not os.path.exists(PTY_COUNT), reason="the kernel does not show its pty count here")
@pytest.mark.parametrize("mode", ["namespaces", "userns"])
def test_programs_get_no_host_ptys_and_the_standard_devices_work(mode):
    """Each /dev/ptmx a program opened on the host's /dev took one of the host's kernel.pty.max
    pseudo-terminals (4096 for the whole machine) until its job ended."""
    try:
        pool = SandboxPool(1, PoolConfig(isolation=mode))
        pool.isolation
    except Exception as exc:  # a machine that refuses this mode: the other one still runs
        pytest.skip(f"isolation {mode!r} refused here: {exc}")
    with pool:
        before = int(open(PTY_COUNT).read())
        peak = [before]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], int(open(PTY_COUNT).read()))
                time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            held = run_program(PTMX_HOLDER, limits=LIMITS, pool=pool)
        finally:
            done.set()
            watcher.join()
        assert held.reason == "ok" and held.stdout == "0\n", held
        assert peak[0] <= before + 2, f"the host's pty count went from {before} to {peak[0]}"  # 2: another job on the host
        devices = run_program(STANDARD_DEVICES, stdin="hello", limits=LIMITS, pool=pool)
        assert (devices.reason, devices.stdout) == ("ok", "hello True\n"), devices
        assert "no ptys" in devices.isolation["devices"] and "urandom" in devices.isolation["devices"]


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid-separated rlimits fallback needs root")
def test_the_rlimits_fallback_says_the_host_dev_is_in_view():
    with SandboxPool(1, PoolConfig(isolation="rlimits")) as pool:
        # (multiprocessing is not importable there when the standard library is not readable)
        result = run_program("open('/dev/null', 'w').write('x')\nprint(open('/dev/stdin').read())", stdin="hello", limits=LIMITS, pool=pool)
    assert (result.reason, result.stdout) == ("ok", "hello\n"), result
    assert result.isolation["devices"].startswith("host /dev") and "ptys" in result.isolation["devices"]


# What a test may now pass to the program (a built-in type, a function of its own called back in
# the judge, attributes set on the program's objects) gives the program no way to a pass.
CALLBACK_FAKES = {
    "a liar through the callback": "class Liar:\n    def __eq__(self, other):\n        return True\n"
                                   "def count_if(xs, pred):\n    return sum(1 for _ in range(3) if pred(Liar()))\n",
    "the callback given back": "def count_if(xs, pred):\n    return pred\n",
    "a forged callback": "import os\nfrom reasonrl.verifiers.code import codec\n"
                         "def count_if(xs, pred):\n    for fd in range(3, 20):\n        try:\n"
                         "            codec.send_frame(fd, ['cb', 12345, [], {}])\n        except OSError:\n            pass\n    return 1\n",
    "the callback's exception swallowed": "def count_if(xs, pred):\n    try:\n        pred(None)\n    except Exception:\n        pass\n    return 0\n",
    "a type that lies": "class int(int):\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
                        "def count_if(xs, pred):\n    return int(5)\n",
    "calls back forever": "def count_if(xs, pred):\n    while True:\n        pred(1)\n",
}
COUNT_IF = {"test_list": ["assert count_if([1, 2, 3, 2], lambda x: x == 2) == 2", "assert count_if([], bool) == 0"]}


def test_callbacks_types_and_proxies_fake_no_pass(pool):
    names = list(CALLBACK_FAKES)
    verdicts = grade_many([CALLBACK_FAKES[n] for n in names], [COUNT_IF] * len(names), pool, LIMITS, concurrency=2)
    for name, verdict in zip(names, verdicts):
        assert not verdict.correct and verdict.reward == 0.0, (name, verdict)
    assert grade("def count_if(xs, pred):\n    return sum(1 for x in xs if pred(x))\n", COUNT_IF, pool, LIMITS).correct
    # Built-ins that reach into the judge (eval, getattr, open) are never handed over to be called
    # back, even by a test: the program would choose their arguments.
    for unsafe in ("eval", "getattr", "open"):
        verdict = grade("def call(f, *a):\n    return f(*a)\n", {"test_list": [f"assert call({unsafe}, 'x') == 1"]}, pool, LIMITS)
        assert not verdict.correct and "cannot pass" in verdict.details["error"], (unsafe, verdict)
    # Set-up code that sets attributes on the program's objects sets them program-side: a program
    # whose class ignores them (a slotted __setattr__ that drops writes) does not pass.
    tree = {"test_list": ["assert depth(root) == 2"], "test_setup_code": "root = Node(1)\nroot.left = Node(2)"}
    ignore = "class Node:\n    def __init__(self, v):\n        pass\n    def __setattr__(self, k, v):\n        pass\n" \
             "def depth(n):\n    return 0 if n is None else 1 + max(depth(getattr(n, 'left', None)), depth(getattr(n, 'right', None)))\n"
    assert not grade(ignore, tree, pool, LIMITS).correct
    honest = ignore.replace("    def __setattr__(self, k, v):\n        pass\n", "").replace("        pass\n", "        self.left = self.right = None\n", 1)
    assert grade(honest, tree, pool, LIMITS).correct


def test_the_tests_never_enter_the_program(pool):
    """A program that searches its memory, its files and the process table for the expected
    value (a marker in the test) finds nothing, even after the same problem ran before on the
    same worker."""
    marker = f"EXPECTED_{uuid.uuid4().hex}"
    answer = {"test": f"def check(candidate):\n    assert candidate() == {marker!r}\n", "entry_point": "leak"}
    searcher = (
        "import gc, os\n"
        "def leak():\n"
        "    for obj in gc.get_objects():\n"
        "        for text in (obj if isinstance(obj, (list, tuple)) else [obj]):\n"
        f"            if isinstance(text, str) and 'EXPECTED_' in text and len(text) == {len(marker)}:\n"
        "                return text\n"
        "    for root, dirs, files in os.walk('/tmp'):\n"
        "        for name in files:\n"
        "            try:\n"
        "                data = open(os.path.join(root, name)).read()\n"
        "            except OSError:\n"
        "                continue\n"
        "            if 'EXPECTED_' in data:\n"
        "                return data[data.index('EXPECTED_'):][:41]\n"
        "    for pid in os.listdir('/proc'):\n"
        "        for what in ('cmdline', 'environ'):\n"
        "            try:\n"
        "                data = open(f'/proc/{pid}/{what}', 'rb').read().decode('latin-1')\n"
        "            except OSError:\n"
        "                continue\n"
        "            if 'EXPECTED_' in data:\n"
        "                return data[data.index('EXPECTED_'):][:41]\n"
        "    return None\n"
    )
    # A sanity check of the searcher itself: with the marker in its own memory, it finds it.
    control = searcher.replace("def leak():", f"HELD = [{marker!r}]\ndef leak():")
    assert grade(control, answer, pool, LIMITS).correct
    honest_first = grade("def leak():\n    return 'no idea'\n", answer, pool, LIMITS)
    assert not honest_first.correct
    for _ in range(2):  # both workers have now run this problem at least once
        verdict = grade(searcher, answer, pool, LIMITS)
        assert not verdict.correct and verdict.reason == "wrong_answer", verdict


def test_expected_stdout_never_enters_the_sandbox(pool):
    marker = f"OUT_{uuid.uuid4().hex}"
    answer = {"io": [{"input": "1\n", "output": marker + "\n"}]}
    searcher = (
        "import gc, os, stat, sys\n"
        "found = None\n"
        "for obj in gc.get_objects():\n"
        "    if isinstance(obj, str) and obj.startswith('OUT_'):\n"
        "        found = obj\n"
        "for top in ('/tmp', '/dev/shm', '/proc'):\n"
        "    for root, dirs, files in os.walk(top):\n"
        "        if root.count('/') > 3:\n"
        "            dirs[:] = []\n"
        "        for name in files:\n"
        "            path = os.path.join(root, name)\n"
        "            try:\n"
        "                if not stat.S_ISREG(os.lstat(path).st_mode):\n"
        "                    continue\n"
        "                data = open(path, errors='ignore').read(1 << 16)\n"
        "            except OSError:\n"
        "                continue\n"
        "            if 'OUT_' in data:\n"
        "                found = data[data.index('OUT_'):][:36]\n"
        "data = sys.stdin.read()\n"
        "print(found)\n"
    )
    verdict = grade(searcher, answer, pool, LIMITS.replace(wall_time_s=10.0, cpu_time_s=10.0))
    assert not verdict.correct and verdict.reason == "wrong_answer", verdict
    assert verdict.details["stdout_tail"] == "None\n"


def test_the_code_verifier_survives_a_hostile_batch():
    verifier = CodeVerifier(wall_time_s=3.0, max_processes=16)
    programs = [GOOD, FAKES["os._exit at import"], GOOD, "def add(a, b):\n    while True: print('x' * 999)\n", GOOD,
                "import ctypes\nctypes.string_at(0)\n", GOOD]
    verdicts = verifier.verify_batch(programs, [ADD] * len(programs), workers=2)
    assert [v.correct for v in verdicts] == [True, False, True, False, True, False, True]
    assert verdicts[3].reason == "output_limit"
    assert all("isolation" in v.details for v in verdicts)
