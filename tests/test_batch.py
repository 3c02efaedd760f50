"""The batch runner: results equal sequential verification; hard per-item limits; crashes contained."""
from __future__ import annotations

import os
import random
import threading
import time

import pytest

from reasonrl import verifiers
from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier
from reasonrl.verifiers.batch import VerifierPool, WorkerStartupError, default_start_method, verify_many

FAST = 0.5  # seconds: the hard limit used for hanging items, small to keep the suite fast


class ScriptedVerifier(Verifier):
    """Test-only verifier: the response says what to do (hang, crash, raise) or is compared to the answer."""

    name = "scripted"

    def verify(self, response: str, answer):
        if response == "sleep":
            time.sleep(60)
        elif response == "spin":  # a busy loop that never yields to a signal handler either
            while True:
                pass
        elif response == "exit":
            os._exit(3)
        elif response == "segfault":
            import ctypes

            ctypes.string_at(0)
        elif response == "raise":
            raise ValueError("bad input")
        elif response == "not-a-verdict":
            return 1.0
        elif response.startswith("nap"):
            time.sleep(float(response[3:]))
        ok = response.strip() == str(answer)
        return Verdict(reward=float(ok), correct=ok, extracted=response.strip(), reason="ok" if ok else "wrong_answer",
                       details={"length": len(response)})


class PidVerifier(Verifier):
    """Reports which process verified the item (to check workers are reused, not one per item)."""

    def verify(self, response, answer):
        return Verdict(reward=1.0, correct=True, details={"pid": os.getpid()})


class SpawnsChildVerifier(Verifier):
    """Starts a long-lived program, writes its pid to ``answer``, then hangs (like a code sandbox gone wrong)."""

    def verify(self, response, answer):
        import subprocess

        child = subprocess.Popen(["sleep", "60"])
        with open(answer, "w") as f:
            f.write(str(child.pid))
        time.sleep(60)


class SlowDefaultVerifier(Verifier):
    default_timeout = FAST

    def verify(self, response, answer):
        time.sleep(60)


class BreaksInWorker(Verifier):
    """Pickles fine, fails to load in the worker: the pool must say so instead of retrying forever."""

    def __reduce__(self):
        return (_raise_on_load, ())


def _raise_on_load():
    raise RuntimeError("cannot load me")


def _random_pairs(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    responses = [str(rng.randint(0, 9)) + rng.choice(["", " ", "\n"]) for _ in range(n)]
    answers = [str(rng.randint(0, 9)) for _ in range(n)]
    return responses, answers


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_verdicts_equal_sequential(workers):
    v = ScriptedVerifier()
    responses, answers = _random_pairs(300, seed=workers)
    expected = [v.verify(r, a) for r, a in zip(responses, answers)]
    assert verify_many(v, responses, answers, workers=workers) == expected


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_start_methods_agree(start_method):
    v = ScriptedVerifier()
    responses, answers = _random_pairs(120, seed=7)
    expected = [v.verify(r, a) for r, a in zip(responses, answers)]
    assert verify_many(v, responses, answers, workers=2, start_method=start_method) == expected


def test_real_verifier_over_random_responses_equals_sequential():
    v = verifiers.get("format")
    rng = random.Random(3)
    pieces = ["<think>", "</think>", "<answer>", "</answer>", "x", " ", "42", "\n"]
    soup = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(100)]
    formed = [f"<think>{rng.choice(pieces)}</think>{rng.choice(['', ' ', 'x'])}<answer>{rng.choice(pieces)}</answer>" for _ in range(100)]
    responses = soup + formed
    expected = [v.verify(r, None) for r in responses]
    assert verify_many(v, responses, [None] * len(responses), workers=2) == expected
    assert any(e.correct for e in expected) and not all(e.correct for e in expected)


def test_order_kept_when_items_take_different_times():
    v = ScriptedVerifier()
    responses = [f"nap{0.02 if i % 3 == 0 else 0}" for i in range(30)]
    answers = [r for r in responses]
    out = verify_many(v, responses, answers, workers=2)
    assert [o.extracted for o in out] == responses
    assert all(o.correct for o in out)


def test_hanging_item_times_out_and_the_rest_finish():
    v = ScriptedVerifier()
    responses = ["1", "sleep", "2", "spin"] + [str(i % 10) for i in range(4)]
    answers = ["1", "1", "2", "1"] + [str(i % 10) for i in range(4)]
    started = time.monotonic()
    out = verify_many(v, responses, answers, workers=2, timeout=FAST)
    elapsed = time.monotonic() - started
    assert [o.reason for o in out[:4]] == ["ok", "timeout", "ok", "timeout"]
    assert out[1] == Verdict.failure("timeout", timeout=FAST)
    assert all(o.correct for o in out[4:]) and len(out) == 8
    assert elapsed < 50, elapsed  # two limits of 0.5 s, side by side; never the 60 s sleep (slack for a loaded CPU)
    # Many items behind a hang on one worker: the other worker and the replacement finish them.
    out = verify_many(v, ["sleep"] + ["3"] * 300, ["3"] * 301, workers=2, timeout=FAST)
    assert out[0].reason == "timeout" and all(o.correct for o in out[1:])


def test_crashing_workers_give_error_verdicts_and_the_batch_goes_on():
    v = ScriptedVerifier()
    responses = ["exit", "1", "segfault", "2", "raise", "not-a-verdict"] + ["3"] * 20
    answers = ["1", "1", "1", "2", "1", "1"] + ["3"] * 20
    out = verify_many(v, responses, answers, workers=2, timeout=5)
    assert out[0].reason == "error" and "exit code 3" in out[0].details["message"]
    assert out[2].reason == "error" and "SIGSEGV" in out[2].details["message"]
    assert out[4].reason == "error" and out[4].details["message"] == "ValueError: bad input"
    assert out[5].reason == "error" and "expected Verdict" in out[5].details["message"]
    assert out[1].correct and out[3].correct and all(o.correct for o in out[6:])
    assert all(not o.correct and o.reward == 0.0 for o in (out[0], out[2], out[4], out[5]))


def test_works_from_a_non_main_thread():
    v = ScriptedVerifier()
    responses = ["1", "sleep", "exit", "2"] + ["5"] * 10
    answers = ["1", "1", "1", "2"] + ["5"] * 10
    box = {}

    def work():
        box["start_method"] = default_start_method()
        box["out"] = verify_many(v, responses, answers, workers=2, timeout=FAST)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(30)
    assert not thread.is_alive()
    assert box["start_method"] != "fork"  # never fork a multi-threaded process
    assert [o.reason for o in box["out"][:4]] == ["ok", "timeout", "error", "ok"]
    assert all(o.correct for o in box["out"][4:])


def test_workers_are_persistent_not_one_process_per_item():
    out = verify_many(PidVerifier(), ["x"] * 200, [None] * 200, workers=2)
    pids = {o.details["pid"] for o in out}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids


def test_pool_reuses_workers_across_calls_and_replaces_a_killed_one():
    with VerifierPool(ScriptedVerifier(), workers=1, timeout=FAST) as pool:
        first = pool.map(["1", "2"], ["1", "2"])
        assert all(o.correct for o in first)
        assert pool.stats["workers_started"] == 1
        second = pool.map(["sleep", "3"], ["1", "3"])
        assert [o.reason for o in second] == ["timeout", "ok"]
        assert pool.stats["workers_started"] == 2 and pool.stats["timeouts"] == 1
    with pytest.raises(RuntimeError):
        pool.map(["1"], ["1"])


def test_workers_zero_runs_in_process_and_zero_with_timeout_still_limits():
    out = verify_many(PidVerifier(), ["x"] * 3, [None] * 3, workers=0)
    assert {o.details["pid"] for o in out} == {os.getpid()}
    limited = verify_many(ScriptedVerifier(), ["sleep", "1"], ["1", "1"], workers=0, timeout=FAST)
    assert [o.reason for o in limited] == ["timeout", "ok"]
    raised = verify_many(ScriptedVerifier(), ["raise"], ["1"], workers=0)
    assert raised[0].reason == "error"


def test_default_timeout_comes_from_the_verifier():
    started = time.monotonic()
    out = verify_many(SlowDefaultVerifier(), ["a"], [None], workers=1)
    assert out[0].reason == "timeout" and out[0].details["timeout"] == FAST
    assert time.monotonic() - started < 10


def test_timeout_kills_programs_the_verifier_started(tmp_path):
    pid_file = tmp_path / "child.pid"
    out = verify_many(SpawnsChildVerifier(), ["x"], [str(pid_file)], workers=1, timeout=FAST)
    assert out[0].reason == "timeout"
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{child}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break  # gone
        if state == "Z":
            break  # dead, waiting to be reaped by init
        time.sleep(0.05)
    else:
        os.kill(child, 9)
        pytest.fail("the program started by the timed-out verifier is still running")


def test_verify_batch_method_and_empty_and_mismatched_inputs():
    v = ScriptedVerifier()
    assert v.verify_batch(["1", "2"], ["1", "1"], workers=1) == [v.verify("1", "1"), v.verify("2", "1")]
    assert verify_many(v, [], []) == []
    with pytest.raises(ValueError, match="differ in length"):
        verify_many(v, ["1"], [])
    with pytest.raises(ValueError, match="workers"):
        verify_many(v, ["1"], ["1"], workers=-1)


def test_unpicklable_verifier_is_a_clear_error():
    class HoldsGenerator(Verifier):
        def __init__(self):
            self.source = (i for i in range(3))

        def verify(self, response, answer):
            return Verdict(1.0, True)

    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        verify_many(HoldsGenerator(), ["a"], [None], workers=1)


def test_a_verifier_that_cannot_load_in_workers_raises_instead_of_retrying_forever():
    with pytest.raises(WorkerStartupError, match="cannot load me"):
        verify_many(BreaksInWorker(), ["a", "b"], [None, None], workers=2)


def test_closure_verifier_travels_with_dill():
    threshold = 5

    class Closure(Verifier):
        def verify(self, response, answer):
            ok = int(response) > threshold
            return Verdict(float(ok), ok)

    out = verify_many(Closure(), ["3", "7"], [None, None], workers=1, start_method="forkserver")
    assert [o.correct for o in out] == [False, True]


def test_progress_bar_goes_to_stderr(capfd):
    verify_many(ScriptedVerifier(), ["1"] * 5, ["1"] * 5, workers=1, progress=True)
    err = capfd.readouterr().err
    assert "5/5" in err


def test_a_worker_that_died_while_idle_costs_no_verdict():
    import signal

    with VerifierPool(PidVerifier(), workers=1) as pool:
        (first,) = pool.map(["a"], [None])
        os.kill(first.details["pid"], signal.SIGKILL)
        time.sleep(0.1)
        out = pool.map(["b", "c"], [None, None])
        assert all(o.correct for o in out) and {o.details["pid"] for o in out} != {first.details["pid"]}


def test_hang_and_crash_in_the_middle_of_a_chunk_hit_only_their_own_item():
    # 40 items on one worker travel as chunks of 10: results for the fast items before the hang
    # are still unsent when the worker is killed, and must be verified again, not lost or blamed.
    responses = [str(i % 10) for i in range(40)]
    responses[5], responses[17] = "sleep", "exit"
    answers = [str(i % 10) for i in range(40)]
    out = verify_many(ScriptedVerifier(), responses, answers, workers=1, timeout=FAST)
    assert out[5].reason == "timeout" and out[17].reason == "error"
    assert all(o.correct for i, o in enumerate(out) if i not in (5, 17))


def test_a_batch_dominated_by_failures_is_reported(caplog):
    with caplog.at_level("WARNING", logger="reasonrl.verifiers"):
        verify_many(ScriptedVerifier(), ["raise"] * 4 + ["1"], ["1"] * 5, workers=1)
    assert "4 of 5 items failed verification" in caplog.text


def test_in_process_math_batch_on_megabyte_responses_finishes_quickly():
    # workers=0 has no limit of its own: the math verifier's extraction must stay linear (unclosed
    # boxes once made a 1 MB response take about 1.5 h).
    v = verifiers.get("math", fast_only=True)
    responses = ["\\boxed{" * 140_000, "\\boxed{1}. " * 90_000 + "So \\boxed{2}"]
    started = time.monotonic()
    out = v.verify_batch(responses, ["1", "2"], workers=0)
    assert [o.correct for o in out] == [False, True]
    assert time.monotonic() - started < 20  # linear: about a second; quadratic: hours
