"""The plain sandbox API (``run_program``), its limits and reasons, the isolation report and
its fallbacks, the plain-data codec and the stdin/stdout comparison."""
from __future__ import annotations

import collections
import decimal
import fractions
import json
import math
import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrl.verifiers.code import codec
from reasonrl.verifiers.code.harness import normalize_output, outputs_match
from reasonrl.verifiers.code.pool import PoolConfig, SandboxPool
from reasonrl.verifiers.code.sandbox import SandboxLimits, run_program, run_programs

IS_ROOT = os.geteuid() == 0
FAST = SandboxLimits(wall_time_s=2.0, cpu_time_s=2.0)


def test_stdin_stdout_exit_code_and_time():
    result = run_program("a, b = map(int, input().split())\nprint(a + b)\n", stdin="2 40\n")
    assert (result.stdout, result.exit_code, result.signal, result.reason) == ("42\n", 0, None, "ok")
    assert result.ok and not result.timed_out
    assert 0 < result.time < 5
    assert result.isolation["mode"] in ("namespaces", "userns", "rlimits")


@pytest.mark.skipif(not IS_ROOT, reason="the project's machines run as root: the full namespace isolation is expected there")
def test_full_isolation_is_in_force_as_root():
    iso = run_program("pass").isolation
    assert iso["mode"] == "namespaces"
    assert iso["pid_namespace"] and iso["uid_separation"]
    assert iso["network"].startswith("none")
    assert iso["filesystem"].startswith("private read-only root")


@pytest.mark.parametrize(
    "source, reason, exit_code, stderr_part",
    [
        ("import sys; sys.exit(3)", "runtime_error", 3, ""),
        ("import sys; sys.exit('bye')", "runtime_error", 1, "bye"),
        ("raise ValueError('boom')", "runtime_error", 1, "ValueError: boom"),
        ("def f(:\n    pass", "compile_error", 1, "SyntaxError"),
        ("x = bytearray(3 << 30)", "memory_limit", 1, "MemoryError"),
        ("import sys; sys.exit(0)", "ok", 0, ""),
        ("print(input())", "runtime_error", 1, "EOFError"),
    ],
)
def test_exit_statuses_and_reasons(source, reason, exit_code, stderr_part):
    result = run_program(source, limits=FAST)
    assert result.reason == reason, result
    assert result.exit_code == exit_code
    assert stderr_part in result.stderr


def test_traceback_shows_the_program_not_the_sandbox():
    result = run_program("def f():\n    return 1 / 0\nf()\n", limits=FAST)
    assert 'File "main.py", line 2, in f' in result.stderr
    assert "candidate.py" not in result.stderr


def test_wall_clock_limit():
    result = run_program("import time\ntime.sleep(60)", limits=SandboxLimits(wall_time_s=1.0, cpu_time_s=1.0))
    assert result.reason == "timeout" and result.timed_out
    assert result.exit_code is None and result.signal == 9
    assert 0.9 <= result.time < 10


def test_cpu_time_limit():
    # Plenty of wall time: only the CPU limit can end this loop.
    result = run_program("while True:\n    pass", limits=SandboxLimits(wall_time_s=60.0, cpu_time_s=1.0))
    assert result.reason == "timeout" and result.timed_out
    assert result.time < 60


def test_output_limit():
    limits = SandboxLimits(wall_time_s=5.0, max_output_bytes=10_000)
    result = run_program("while True:\n    print('x' * 1000)", limits=limits)
    assert result.reason == "output_limit"
    assert len(result.stdout) + len(result.stderr) <= 10_000
    small = run_program("print('x' * 5000)", limits=limits)
    assert small.reason == "ok" and len(small.stdout) == 5001


def test_large_output_under_the_cap_comes_back_whole():
    result = run_program("import sys\nsys.stdout.write('y' * 900_000)\nsys.stderr.write('e' * 50_000)")
    assert result.reason == "ok"
    assert result.stdout == "y" * 900_000 and result.stderr == "e" * 50_000


def test_environment_is_scrubbed_and_cwd_is_a_fresh_scratch_dir(monkeypatch):
    monkeypatch.setenv("REASONRL_TEST_SECRET", "do-not-leak")
    source = (
        "import os, json\n"
        "open('scratch.txt', 'w').write('mine')\n"
        "print(json.dumps({'env': dict(os.environ), 'cwd': os.getcwd(), 'files': sorted(os.listdir('.'))}))\n"
    )
    with SandboxPool(1) as pool:  # a new worker, started while the secret is in our environment
        first = json.loads(run_program(source, pool=pool).stdout)
        second = json.loads(run_program("import os, json\nprint(json.dumps(sorted(os.listdir('.'))))", pool=pool).stdout)
    assert "REASONRL_TEST_SECRET" not in first["env"]
    assert not any("do-not-leak" in value for value in first["env"].values())
    assert first["env"]["HOME"] == first["cwd"] == first["env"]["TMPDIR"]
    assert first["files"] == ["scratch.txt"]
    assert second == []  # the next program's scratch directory is fresh


def test_file_size_limit():
    limits = SandboxLimits(max_file_size_bytes=1 << 20)
    result = run_program("open('big', 'wb').write(b'0' * (4 << 20))", limits=limits)
    assert result.reason == "runtime_error"
    assert "File too large" in result.stderr or "Errno 27" in result.stderr


def test_run_programs_keeps_order_across_workers():
    sources = [f"print({i} * {i})" for i in range(24)]
    results = run_programs(sources, workers=2)
    assert [r.stdout for r in results] == [f"{i * i}\n" for i in range(24)]
    assert all(r.reason == "ok" for r in results)


def _affinities(pool: SandboxPool, count: int) -> list[list[int]]:
    """The cores each of ``count`` programs may run on, the programs holding their workers at once."""
    source = "import os, time\ntime.sleep(0.3)\nprint(sorted(os.sched_getaffinity(0)))\n"
    results = run_programs([source] * count, pool=pool, workers=count)
    assert all(r.reason == "ok" for r in results), results
    return [json.loads(r.stdout) for r in results]


def test_workers_are_pinned_one_core_each_and_spread_evenly():
    cores = sorted(os.sched_getaffinity(0))
    size = min(2 * len(cores), 6)
    with SandboxPool(size) as pool:
        seen = _affinities(pool, size)
        # Every program runs on its worker's one core, one of ours, and the workers are spread
        # evenly: no core carries two more workers than another.
        assert all(len(a) == 1 and a[0] in cores for a in seen), seen
        per_core = collections.Counter(a[0] for a in seen)
        assert len(per_core) == min(size, len(cores))
        assert max(per_core.values()) - min(per_core.values()) <= 1
        assert sum(pool._workers_on.values()) == pool._count == size
    assert sum(pool._workers_on.values()) == pool._count == 0  # closed: no live worker counted


def test_the_pools_own_threads_follow_their_workers_core_and_the_callers_thread_stays():
    from reasonrl.verifiers.code.sandbox import _program_job

    mine = os.sched_getaffinity(0)
    cores = sorted(mine)
    job = _program_job("print(1)", "", SandboxLimits(), "python")

    def run_and_say_where(_):
        raw = pool.execute(job)
        assert raw["exit_code"] == 0, raw
        return sorted(os.sched_getaffinity(0))

    with SandboxPool(len(cores) + 1) as pool:
        seen = pool.map(run_and_say_where, range(12))
        # Each feeding thread ended on one core, a worker's; the caller's own thread never moved.
        assert all(len(a) == 1 and a[0] in cores for a in seen), seen
        assert os.sched_getaffinity(0) == mine
        assert pool.execute(job)["exit_code"] == 0  # from the caller's thread: still not moved
        assert os.sched_getaffinity(0) == mine
    with SandboxPool(2, PoolConfig(pin_cpus=False)) as pool:
        assert all(a == cores for a in pool.map(run_and_say_where, range(4)))


def test_pool_map_keeps_the_order_and_raises_the_first_failure():
    import threading
    import time

    with SandboxPool(1) as pool:  # map itself starts no worker
        # Later items finish first: the results still come back in the items' order.
        assert pool.map(lambda i: time.sleep(0.002 * (20 - i)) or i * i, range(20), concurrency=4) == [i * i for i in range(20)]
        started = []
        lock = threading.Lock()

        def fail_on_odd(i):
            with lock:
                started.append(i)
            time.sleep(0.01)
            if i % 2:
                raise ValueError(f"item {i}")
            return i

        with pytest.raises(ValueError, match="item 1$"):
            pool.map(fail_on_odd, range(40), concurrency=4)
        # Once an item failed no new one was started: only those already in flight ran.
        assert len(started) < 40
        assert pool.map(lambda i: i, [], concurrency=4) == []


def test_pool_map_interrupted_in_the_caller_starts_no_new_item():
    import signal
    import time

    class Interrupted(Exception):
        pass

    def interrupt(*_):
        raise Interrupted

    started = []
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with SandboxPool(1) as pool:
            signal.setitimer(signal.ITIMER_REAL, 0.05)  # arrives while the caller waits in map
            with pytest.raises(Interrupted):
                pool.map(lambda i: started.append(i) or time.sleep(0.02), range(200), concurrency=2)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    time.sleep(0.1)  # the items in flight end
    ran = len(started)
    time.sleep(0.1)
    assert len(started) == ran < 200


WIDEN_AFFINITY = (
    "import ctypes, os, threading\n"
    "cores = set(range(os.cpu_count()))\n"
    "def widen():\n"
    "    try:\n"
    "        os.sched_setaffinity(0, cores)\n"
    "    except OSError:\n"
    "        pass\n"
    "    mask = ctypes.c_ulong((1 << os.cpu_count()) - 1)\n"  # the raw system call, and x32's number for it
    "    for number in (203, 203 | 0x40000000) if os.uname().machine == 'x86_64' else (122,):\n"
    "        ctypes.CDLL(None).syscall(number, 0, ctypes.sizeof(mask), ctypes.byref(mask))\n"
    "    return sorted(os.sched_getaffinity(0))\n"
    "seen = [widen()]\n"
    "thread = threading.Thread(target=lambda: seen.append(widen()))\n"
    "thread.start()\n"
    "thread.join()\n"
    "read, write = os.pipe()\n"
    "if os.fork() == 0:\n"
    "    os.write(write, repr(widen()).encode())\n"
    "    os._exit(0)\n"
    "os.wait()\n"
    "seen.append(eval(os.read(read, 100)))\n"
    "print(seen)\n"
)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: nothing to widen to")
@pytest.mark.parametrize("mode", ["auto", "rlimits"])
def test_a_program_cannot_widen_its_cpu_affinity(mode):
    """A pinned program that set its affinity to every core (itself, from a thread, from a child,
    by the raw system call) ran beside the other workers' programs on their cores."""
    with SandboxPool(1, PoolConfig(isolation=mode)) as pool:
        result = run_program(WIDEN_AFFINITY, pool=pool)
    assert result.reason == "ok", result
    seen = json.loads(result.stdout)
    assert len(seen) == 3 and all(len(cores) == 1 for cores in seen) and len({c[0] for c in seen}) == 1, seen
    assert result.isolation["cpu_affinity"].startswith("fixed")


def test_pinning_can_be_turned_off():
    with SandboxPool(1, PoolConfig(pin_cpus=False)) as pool:
        assert _affinities(pool, 1) == [sorted(os.sched_getaffinity(0))]


def test_a_dead_workers_core_goes_to_its_replacement():
    with SandboxPool(1) as pool:
        first = _affinities(pool, 1)[0]
        (worker,) = pool._idle
        worker.process.kill()
        worker.process.wait()
        died = run_program("print(1)", pool=pool)
        assert died.reason == "runtime_error" and "worker died" in died.details["message"]
        # The replacement is pinned again, and the book-keeping counts only live workers.
        assert _affinities(pool, 1) == [first]
        assert sum(pool._workers_on.values()) == pool._count == 1


def test_the_workers_warm_up_leaves_nothing_for_programs_to_see():
    # The worker runs the request loop on a throwaway module before forking programs (worker._prewarm).
    result = run_program(
        "import sys, linecache\n"
        "print(any('prewarm' in name for name in sys.modules), any('prewarm' in name for name in linecache.cache))\n"
    )
    assert result.stdout == "False False\n", result


def test_default_pool_size_follows_the_affinity_mask_and_the_cgroup_cpu_quota(monkeypatch):
    from reasonrl.verifiers.code import pool as pool_module

    assert pool_module._parse_cpu_max("max 100000\n") is None
    assert pool_module._parse_cpu_max("150000 100000\n") == 1.5
    monkeypatch.setattr(pool_module, "_usable_core_list", lambda: list(range(8)))
    for quota, workers in ((None, 9), (1.5, 3), (0.2, 2), (16.0, 9)):
        monkeypatch.setattr(pool_module, "_cgroup_cpu_quota", lambda quota=quota: quota)
        assert pool_module.default_pool_size() == workers


def test_limits_are_validated():
    with pytest.raises(ValueError, match="wall_time_s"):
        SandboxLimits(wall_time_s=0)
    with pytest.raises(ValueError, match="memory_bytes"):
        SandboxLimits(memory_bytes=1024)
    with pytest.raises(ValueError, match="language"):
        run_program("print(1)", language="cobol")
    with pytest.raises(ValueError, match="isolation"):
        PoolConfig(isolation="docker")
    for path in ("/dev", "/dev/pts/", "/", "/tmp/data"):  # the host's /dev would bring its ptys back
        with pytest.raises(ValueError, match="extra_paths"):
            PoolConfig(extra_paths=(path,))


@pytest.mark.skipif(not IS_ROOT, reason="needs root to compare with the uid-separated fallback")
def test_rlimits_fallback_says_so_and_still_contains_programs():
    with SandboxPool(1, PoolConfig(isolation="rlimits")) as pool:
        result = run_program("import os\nprint(os.getuid())", pool=pool)
        iso = result.isolation
        assert iso["mode"] == "rlimits"
        assert iso["pid_namespace"] is False and iso["network"] == "host network"
        assert iso["filesystem"].startswith("host filesystem")
        assert any("namespaces refused" in note for note in iso["notes"])
        assert int(result.stdout) != 0  # still its own unprivileged uid
        slow = run_program("import time\ntime.sleep(60)", limits=SandboxLimits(wall_time_s=1.0), pool=pool)
        assert slow.reason == "timeout"
        # Where Python lives under /root (0700, as here), the program's uid cannot read the
        # standard library: the modules programs import most are preloaded in this mode.
        imports = run_program(
            "import hashlib, datetime, statistics, decimal, fractions, textwrap, dataclasses\n"
            "print(hashlib.sha256(b'x').hexdigest()[:8], statistics.mean([1, 2, 6]), datetime.date(2024, 2, 29).isoformat())",
            pool=pool,
        )
        assert imports.stdout == "2d711642 3 2024-02-29\n", imports.stderr
        # A program that leaves a daemon behind: gone when its result is back.
        marker = "4321.8765"
        daemon = (
            "import os\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            f"    os.execv('/bin/sleep', ['sleep', '{marker}'])\n"
            "print('left')\n"
        )
        assert run_program(daemon, pool=pool).stdout == "left\n"
        assert not _host_processes_with(marker)
        _check_tests_run_and_judge(pool)


@pytest.mark.skipif(not IS_ROOT, reason="a user namespace as root maps root: exercises the userns code path")
def test_userns_mode_runs_and_reports_the_shared_uid():
    with SandboxPool(1, PoolConfig(isolation="userns")) as pool:
        result = run_program("import os\nprint(sorted(os.listdir('/')))", pool=pool)
        _check_tests_run_and_judge(pool)
    assert result.reason == "ok"
    assert result.isolation["mode"] == "userns" and result.isolation["pid_namespace"]
    assert any("share" in note for note in result.isolation["notes"])
    assert "work" not in result.stdout and "home" not in result.stdout


def _check_tests_run_and_judge(pool: SandboxPool) -> None:
    """Test jobs work in this isolation mode: pass, fail, and a program killing what it can see."""
    from reasonrl.verifiers.code.harness import grade

    answer = {"test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "double"}
    assert grade("def double(x):\n    return 2 * x\n", answer, pool, FAST).correct
    assert grade("def double(x):\n    return x + 3\n", answer, pool, FAST).reason == "wrong_answer"
    assert not grade("import os\ndef double(x):\n    os._exit(0)\n", answer, pool, FAST).correct
    assert grade("def double(x):\n    return 2 * x\n", answer, pool, FAST).correct


def _host_processes_with(marker: str) -> list[int]:
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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_cpp_through_the_same_api():
    source = '#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a * b << "\\n"; }\n'
    result = run_program(source, stdin="6 7", language="cpp")
    assert (result.reason, result.stdout) == ("ok", "42\n")
    broken = run_program("int main() { return undeclared; }", language="cpp")
    assert broken.reason == "compile_error" and "undeclared" in broken.stderr


# ---------------------------------------------------------------------------------------------
# The plain-data codec between the judge and the program.

PLAIN_VALUES = [
    None, True, False, 0, -1, 2**63, -(2**70), 1.5, -0.0, float("inf"), "text", "\udc80 lone surrogate", b"\x00\xff",
    bytearray(b"ab"), [1, [2, (3,)]], (1, "a"), {"k": [1], 2: (3,)}, {1, 2}, frozenset({3}), 1 + 2j, range(1, 10, 2),
    fractions.Fraction(3, 7), decimal.Decimal("1.10"), collections.Counter("aab"), collections.OrderedDict(a=1),
    collections.defaultdict(list, {"x": [1]}), collections.deque([1, 2], maxlen=5), Ellipsis,
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=lambda v: type(v).__name__)
def test_codec_roundtrips_plain_values_with_their_exact_types(value):
    wire = json.loads(json.dumps(codec.encode(value)))
    back = codec.decode(wire)
    assert type(back) is type(value)
    assert back == value or (isinstance(value, float) and math.isnan(value))
    if isinstance(value, collections.defaultdict):
        assert back.default_factory is value.default_factory


def test_codec_never_lets_a_subclass_cross_by_value():
    class LyingInt(int):
        def __eq__(self, other):
            return True

    class AlwaysEqual:
        def __eq__(self, other):
            return True

    int_lookalike = type("int", (int,), {})  # a class that calls itself int is not the built-in
    for value in (LyingInt(3), AlwaysEqual(), [1, LyingInt(2)], {"k": AlwaysEqual()}, LyingInt, int_lookalike, print):
        with pytest.raises(codec.Unencodable):
            codec.encode(value)
    # Built-in types (and the pure built-in functions) cross by name: each side gets its own.
    assert codec.encode(True.__class__.__mro__) == ["t", ["T", "bool"], ["T", "int"], ["T", "object"]]
    assert codec.decode(codec.encode([len, ValueError])) == [len, ValueError]
    handles = []
    wire = codec.encode([1, LyingInt(2)], lambda obj: handles.append(obj) or ["h", 7, type(obj).__name__])
    assert wire == ["l", 1, ["h", 7, "LyingInt"]]


@pytest.mark.parametrize(
    "wire",
    [["zz", 1], ["d", 1], ["s", ["l"]], ["F", 1, 0], ["h", 1, "x"], {"a": 1}, ["i", 5], ["dd", "print"], ["r", 1.5, 2, 1], [],
     ["T", "eval"], ["T", "open"], ["T", 3], ["cb", 1]],
)
def test_codec_rejects_malformed_wire_values(wire):
    with pytest.raises(codec.ProtocolError):
        codec.decode(wire)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: st.lists(children) | st.tuples(children, children) | st.dictionaries(st.text() | st.integers(), children)
    | st.frozensets(st.integers() | st.text()),
    max_leaves=20,
)


@given(json_like)
@settings(max_examples=80, deadline=None)
def test_codec_roundtrip_property(value):
    assert codec.decode(json.loads(json.dumps(codec.encode(value)))) == value


def _frames_through_a_pipe(write_in_pieces):
    """Frames written into a pipe by ``write_in_pieces(fd)``, read back with a FrameReader until EOF."""
    read_fd, write_fd = os.pipe()
    try:
        write_in_pieces(write_fd)
        os.close(write_fd)
        write_fd = -1
        reader, frames = codec.FrameReader(read_fd), []
        while True:
            try:
                frames.append(reader.recv())
            except EOFError:
                return frames
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def test_frame_reader_reassembles_frames_however_the_bytes_arrive():
    messages = [["get", "f"], ["call", 1, [1, 2], {}], ["v", "x" * 5000]]
    stream = b"".join(codec.encode_frame(m) for m in messages)
    # Byte by byte (a header split across reads), all at once (several frames in one read),
    # and in ragged pieces: the same frames, in order.
    assert _frames_through_a_pipe(lambda fd: [os.write(fd, stream[i:i + 1]) for i in range(len(stream))]) == messages
    assert _frames_through_a_pipe(lambda fd: os.write(fd, stream)) == messages
    assert _frames_through_a_pipe(lambda fd: [os.write(fd, stream[i:i + 7]) for i in range(0, len(stream), 7)]) == messages


def test_frame_reader_handles_frames_larger_than_one_read():
    big = ["v", ["l", *range(40000)]]  # ~230 kB: more than one read (and more than a pipe holds)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        codec.send_frame(write_fd, big)
        codec.send_frame(write_fd, ["v", 1])
        os._exit(0)
    os.close(write_fd)
    reader = codec.FrameReader(read_fd)
    try:
        assert reader.recv() == big
        assert reader.recv() == ["v", 1]
        with pytest.raises(EOFError):
            reader.recv()
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)


def test_frame_reader_refuses_malformed_and_truncated_frames():
    frame = codec.encode_frame(["get", "f"])
    # The peer died in the middle of a frame: EOF, and the partial frame is never delivered.
    assert _frames_through_a_pipe(lambda fd: os.write(fd, frame + frame[:-3])) == [["get", "f"]]
    oversized = (codec.MAX_FRAME_BYTES + 1).to_bytes(4, "big")
    with pytest.raises(codec.ProtocolError, match="exceeds"):
        _frames_through_a_pipe(lambda fd: os.write(fd, oversized + b"[]"))
    two_values = b'[1] [2]'
    with pytest.raises(codec.ProtocolError):
        _frames_through_a_pipe(lambda fd: os.write(fd, len(two_values).to_bytes(4, "big") + two_values))
    not_json = b"\xff\xfe"
    with pytest.raises(codec.ProtocolError):
        _frames_through_a_pipe(lambda fd: os.write(fd, len(not_json).to_bytes(4, "big") + not_json))


# ---------------------------------------------------------------------------------------------
# stdin/stdout comparison


def test_output_normalization():
    assert normalize_output("1 2 \r\n3\t\r\n\n\n") == ["1 2", "3"]
    assert outputs_match("42\r\n", "42")
    assert outputs_match("a  \nb\n\n", "a\nb")
    assert not outputs_match("42\n43\n", "42\n")  # an extra line
    assert not outputs_match("4 2\n", "42\n")  # inner whitespace matters
    assert not outputs_match("", "0\n")
    assert not outputs_match(" 42\n", "42\n")  # leading whitespace matters


def test_float_tolerance():
    assert not outputs_match("0.333333\n", "0.3333333333\n")
    assert outputs_match("0.333333\n", "0.3333333333\n", float_tolerance=1e-5)
    assert not outputs_match("0.33\n", "0.3333333333\n", float_tolerance=1e-5)  # near-miss
    assert outputs_match("1e6 x\n", "1000000.0000001 x\n", float_tolerance=1e-9)
    assert not outputs_match("1 y\n", "1 x\n", float_tolerance=1.0)  # words still exact
    assert not outputs_match("nan\n", "nan\n".upper(), float_tolerance=1.0)
