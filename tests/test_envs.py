"""Environments: spaces, TaskEnv over generator and dataset tasks, CodeEnv, batching, gymnasium registration."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import reasonrl
from reasonrl import tasks
from reasonrl.data_gen import ConfigError, Generator
from reasonrl.envs import CodeEnv, TaskEnv, verify_problems
from reasonrl.envs.code_env import render_feedback
from reasonrl.envs.process_rewards import CallableRewarder
from reasonrl.envs.spaces import ChatMessages, UnicodeText
from reasonrl.types import ProblemError, Verdict
from reasonrl.verifiers import Verifier
from reasonrl.verifiers.extract import extract_tag

from conftest import conformance_path, read_jsonl

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# A tiny self-contained task (so these tests do not depend on the built-in task modules)


@dataclass(frozen=True)
class ParityConfig:
    width: int = 6


class ParityGenerator(Generator):
    Config = ParityConfig

    def generate(self, seed: int) -> dict:
        bits = "".join(random.Random(seed).choice("01") for _ in range(self.config.width))
        answer = "odd" if bits.count("1") % 2 else "even"
        return reasonrl.make_problem(
            f"parity-{self.config.width}-{seed}", "test_parity", f"Is the number of 1s in {bits} even or odd? <answer>...</answer>",
            answer, {"width": self.config.width}, {"worked_solution": f"Count the ones.\n\n<answer>{answer}</answer>"},
        )


class ParityVerifier(Verifier):
    def verify(self, response: str, answer: str) -> Verdict:
        got = extract_tag(response)
        if got is None:
            return Verdict.failure("no_answer")
        ok = got.strip().lower() == answer
        return Verdict(float(ok), ok, got, "ok" if ok else "wrong_answer")


@pytest.fixture
def parity_task():
    task = reasonrl.register_task("test_parity", ParityGenerator, ParityVerifier, overwrite=True)
    yield task
    tasks.unregister_task("test_parity")


def _dataset_rows(n: int = 5) -> list[dict]:
    generator = ParityGenerator()
    rows = [generator.generate(seed) for seed in range(n)]
    for row in rows:
        row["task"] = "test_parity_rows"
    return rows


@pytest.fixture
def parity_rows_task():
    task = reasonrl.register_task("test_parity_rows", _dataset_rows(), ParityVerifier, overwrite=True)
    yield task
    tasks.unregister_task("test_parity_rows")


def strict_check_env(env) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


# ---------------------------------------------------------------------------------------
# Spaces


def test_unicode_text_accepts_any_text_and_rejects_the_rest():
    space = UnicodeText(max_length=20)
    for text in ["", "Q: 1+1=?", "naïve ∑ 🙂 — 你好", "\x00\n\t"]:
        assert text in space
    assert "x" * 21 not in space
    assert "bad \ud800 surrogate" not in space  # cannot be written as UTF-8
    assert 5 not in space and None not in space and b"bytes" not in space
    assert "ab" not in UnicodeText(min_length=3)


def test_unicode_text_samples_are_members_and_reproducible():
    space = UnicodeText(max_length=30, seed=3)
    samples = [space.sample() for _ in range(300)]
    assert all(s in space for s in samples)
    assert any(ord(c) > 127 for s in samples for c in s)  # not just ASCII
    again = UnicodeText(max_length=30, seed=3)
    assert [again.sample() for _ in range(300)] == samples


def test_chat_messages_space():
    space = ChatMessages(seed=0)
    assert [{"role": "user", "content": "Q: ∫x dx?"}] in space
    assert [{"role": "user", "content": "hi", "name": "bob"}] in space
    assert [] not in space  # a conversation has at least one message
    assert [{"role": "robot", "content": "hi"}] not in space
    assert [{"role": "user"}] not in space
    assert [{"role": "user", "content": 3}] not in space
    assert ({"role": "user", "content": "hi"},) not in space
    samples = [space.sample() for _ in range(100)]
    assert all(s in space for s in samples)
    again = ChatMessages(seed=0)
    assert [again.sample() for _ in range(100)] == samples
    assert space == ChatMessages() and space != ChatMessages(max_messages=3)


# ---------------------------------------------------------------------------------------
# TaskEnv over a generator task


def test_reset_returns_prompt_messages_and_problem_info(parity_task):
    env = reasonrl.make("test_parity", width=8)
    obs, info = env.reset(seed=5)
    problem = info["problem"]
    assert obs == problem["prompt"] and obs[0]["role"] == "user"
    assert info["problem_id"] == problem["id"] and info["difficulty"] == {"width": 8} and info["task"] == "test_parity"
    assert problem == ParityGenerator(width=8).generate(problem_seed_of(env))
    # The same seed gives the same problem; the observation is a copy, not the env's state.
    obs[0]["content"] = "changed"
    assert env.reset(seed=5)[1]["problem"] == problem


def problem_seed_of(env) -> int:
    """Replay the env's draw: the problem seed reset(seed=5) used."""
    rng = np.random.default_rng(5)
    return int(rng.integers(0, 2**62))


def test_step_scores_and_terminates(parity_task):
    env = gymnasium.make("reasonrl/TestParity-v0")
    _, info = env.reset(seed=0)
    answer = info["problem"]["answer"]
    obs, reward, terminated, truncated, step_info = env.step(f"<answer>{answer}</answer>")
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert step_info["verdict"].correct and step_info["outcome_reward"] == 1.0
    assert obs[-1] == {"role": "assistant", "content": f"<answer>{answer}</answer>"}
    wrong = "even" if answer == "odd" else "odd"
    env.reset(seed=0)
    _, reward, terminated, _, step_info = env.step(f"<answer>{wrong}</answer>")
    assert reward == 0.0 and terminated and step_info["verdict"].reason == "wrong_answer"


def test_step_errors(parity_task):
    env = TaskEnv("test_parity")
    with pytest.raises(RuntimeError, match="reset"):
        env.step("too early")
    env.reset(seed=1)
    with pytest.raises(TypeError, match="response string"):
        env.step(42)
    env.step("<answer>odd</answer>")
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("again")


def test_difficulty_knobs_are_validated(parity_task):
    with pytest.raises(ConfigError, match="width"):
        reasonrl.make("test_parity", widht=3)
    env = TaskEnv("test_parity", difficulty={"width": 3})
    assert env.reset(seed=0)[1]["difficulty"] == {"width": 3}


def test_reset_options(parity_task):
    env = TaskEnv("test_parity")
    _, info = env.reset(options={"problem_seed": 7})
    assert info["problem"] == ParityGenerator().generate(7)
    _, info = env.reset(options={"difficulty": {"width": 12}, "problem_seed": 7})
    assert info["problem"] == ParityGenerator(width=12).generate(7)
    row = ParityGenerator(width=2).generate(99)
    assert env.reset(options={"problem": row})[1]["problem"] == row
    with pytest.raises(ValueError, match="valid: difficulty, index, problem, problem_seed"):
        env.reset(options={"seed": 3})
    with pytest.raises(ValueError, match="problem_seed"):
        env.reset(options={"index": 0})
    with pytest.raises(ProblemError, match="answer"):
        env.reset(options={"problem": {"id": "x", "task": "test_parity", "prompt": []}})


def test_make_accepts_names_ids_and_tasks(parity_task):
    for spec in ("test_parity", "reasonrl/TestParity-v0", "TestParity-v0", parity_task):
        env = reasonrl.make(spec, width=4)
        assert env.unwrapped.task is parity_task and env.spec.id == "reasonrl/TestParity-v0"
    with pytest.raises(KeyError, match="Available tasks"):
        reasonrl.make("no_such_task")


def test_token_budget_truncates(parity_task):
    env = TaskEnv("test_parity", token_budget=25, overlong_reward=-1.0)
    _, info = env.reset(seed=0)
    answer = info["problem"]["answer"]
    _, reward, terminated, truncated, step_info = env.step(f"<answer>{answer}</answer>")
    assert (reward, terminated, truncated) == (1.0, True, False)
    env.reset(seed=0)
    _, reward, terminated, truncated, step_info = env.step("x" * 30 + f"<answer>{answer}</answer>")
    assert (reward, terminated, truncated) == (-1.0, True, True)
    assert step_info["verdict"].correct and step_info["overlong"]  # verified, then penalized
    env = TaskEnv("test_parity", token_budget=3, count_tokens=lambda s: len(s.split()))
    env.reset(seed=0)
    assert env.step("a b c d <answer>odd</answer>")[3] is True


def test_process_rewarder_in_env(parity_task):
    rewarder = CallableRewarder(lambda prompt, steps: [0.25 if "Count" in s else 1.0 for s in steps])
    env = TaskEnv("test_parity", process_rewarder=rewarder, process_reduce="min", process_weight=0.5)
    _, info = env.reset(seed=0)
    response = info["problem"]["metadata"]["worked_solution"]  # "Count the ones.\n\n<answer>..</answer>"
    _, reward, _, _, step_info = env.step(response)
    assert [response[a:b] for a, b in step_info["steps"]] == ["Count the ones.", f"<answer>{info['problem']['answer']}</answer>"]
    assert step_info["step_rewards"] == [0.25, 1.0] and step_info["process_reward"] == 0.25
    assert step_info["outcome_reward"] == 1.0 and reward == pytest.approx(0.5 * 1.0 + 0.5 * 0.25)
    outcome_only = TaskEnv("test_parity", process_rewarder=rewarder)
    outcome_only.reset(seed=0)
    _, reward, _, _, step_info = outcome_only.step(response)
    assert reward == 1.0 and step_info["step_rewards"] == [0.25, 1.0]
    # gymnasium.make deep-copies its kwargs; the rewarder (a model, an engine) is shared, not copied.
    assert gymnasium.make("reasonrl/TestParity-v0", process_rewarder=rewarder).unwrapped.process_rewarder is rewarder
    with pytest.raises(ValueError, match="process_rewarder"):
        TaskEnv("test_parity", process_weight=0.5)
    with pytest.raises(ValueError, match="valid: min, last, mean, discounted_sum"):
        TaskEnv("test_parity", process_rewarder=rewarder, process_reduce="max")


def test_render(parity_task):
    env = reasonrl.make("test_parity", render_mode="ansi")
    env.reset(seed=0)
    env.step("<answer>odd</answer>")
    text = env.render()
    assert "[user]" in text and "[assistant]\n<answer>odd</answer>" in text
    with pytest.raises(ValueError, match="render_mode"):
        TaskEnv("test_parity", render_mode="rgb_array")


def test_check_env_generator_task(parity_task):
    strict_check_env(gymnasium.make("reasonrl/TestParity-v0", width=5))


# ---------------------------------------------------------------------------------------
# Dataset-backed tasks


def test_dataset_task_env(parity_rows_task):
    rows = _dataset_rows()
    env = reasonrl.make("test_parity_rows")
    seen = {env.reset(seed=s)[1]["problem_id"] for s in range(40)}
    assert seen == {r["id"] for r in rows}  # draws cover the rows
    _, info = env.reset(options={"index": 3})
    assert info["problem"] == rows[3]
    _, reward, terminated, _, _ = env.step(f"<answer>{rows[3]['answer']}</answer>")
    assert reward == 1.0 and terminated
    with pytest.raises(IndexError, match="out of range"):
        env.reset(options={"index": 5})
    with pytest.raises(TypeError, match="no difficulty knobs"):
        reasonrl.make("test_parity_rows", width=3)
    strict_check_env(gymnasium.make("reasonrl/TestParityRows-v0"))


def test_dataset_argument_overrides_and_generator_task_can_replay_rows(parity_task, parity_rows_task):
    other = _dataset_rows(2)
    env = TaskEnv("test_parity_rows", dataset=other)
    assert env.num_problems == 2
    replay = [ParityGenerator(width=9).generate(s) for s in range(3)]
    env = TaskEnv("test_parity", dataset=replay)
    assert env.reset(options={"index": 1})[1]["problem"] == replay[1]


def _encoded(row: dict) -> dict:
    """A row as data_gen's Parquet/HF export writes it (nested fields as JSON text)."""
    return {**row, **{k: json.dumps(row[k]) for k in ("answer", "difficulty", "metadata")}}


def test_dataset_sources(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _dataset_rows(3)
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]) + "\n")
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows))
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([_encoded(r) for r in rows]), parquet)
    hf = datasets.Dataset.from_list([_encoded(r) for r in rows])
    hf.save_to_disk(str(tmp_path / "saved"))
    for source in (jsonl, str(array), parquet, hf, tmp_path / "saved", rows):
        assert tasks.load_problem_rows(source) == rows, source
    # Rows may leave out task/difficulty/metadata and give the prompt as a string.
    bare = [{"id": 1, "prompt": "2+2?", "answer": "4"}]
    assert tasks.load_problem_rows(bare, task_name="t") == [
        {"id": "1", "prompt": [{"role": "user", "content": "2+2?"}], "answer": "4", "task": "t", "difficulty": {}, "metadata": {}}
    ]


def test_dataset_errors_name_line_and_field(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(_dataset_rows(1)[0]) + "\n{not json\n")
    with pytest.raises(ProblemError, match=r"bad.jsonl: line 2: invalid JSON"):
        tasks.load_problem_rows(bad)
    missing = tmp_path / "missing.jsonl"
    row = _dataset_rows(1)[0]
    del row["answer"]
    missing.write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(ProblemError, match=r"missing.jsonl: line 2: missing field 'answer'"):
        tasks.load_problem_rows(missing)
    with pytest.raises(ValueError, match="unknown format '.csv'"):
        tasks.load_problem_rows(tmp_path / "x.csv") if (tmp_path / "x.csv").write_text("") is not None else None
    with pytest.raises(FileNotFoundError):
        tasks.load_problem_rows(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="none was given"):
        TaskEnv(reasonrl.register_task("test_no_rows", None, ParityVerifier, overwrite=True))
    tasks.unregister_task("test_no_rows")


@pytest.mark.conformance
def test_dataset_env_over_gsm8k_conformance_rows():
    if "gsm8k" not in {t.name for t in reasonrl.list_tasks()}:
        pytest.skip("gsm8k verifier not in this checkout")
    raw = read_jsonl(conformance_path("gsm8k", "test.jsonl"))[:5]
    rows = [reasonrl.make_problem(f"gsm8k-{i}", "gsm8k", r["question"], r["answer"].split("####")[-1].strip()) for i, r in enumerate(raw)]
    env = gymnasium.make("reasonrl/Gsm8k-v0", dataset=rows)
    _, info = env.reset(options={"index": 0})
    _, reward, terminated, _, step_info = env.step(raw[0]["answer"])  # the reference solution ends "#### 18"
    assert reward == 1.0 and terminated and step_info["verdict"].correct


# ---------------------------------------------------------------------------------------
# CodeEnv: multi-turn with feedback and documented shaping


class ScoreVerifier(Verifier):
    """Toy verifier: a response "score=0.5" gets reward 0.5 (1.0 = all tests pass)."""

    def verify(self, response: str, answer) -> Verdict:
        score = float(response.split("=")[1])
        return Verdict(score, score == 1.0, str(score), "ok" if score == 1.0 else "wrong_answer",
                       {"error": f"AssertionError: expected 3, got {score}"})


@pytest.fixture
def score_task():
    rows = [reasonrl.make_problem("s-0", "test_scores", "write f", "unused")]
    task = reasonrl.register_task("test_scores", rows, ScoreVerifier, overwrite=True)
    yield task
    tasks.unregister_task("test_scores")


def test_code_env_shaping_telescopes(score_task):
    env = CodeEnv("test_scores", max_attempts=4, attempt_discount=0.9)
    env.reset(seed=0)
    results = [env.step(f"score={s}") for s in (0.5, 0.25, 1.0)]
    rewards = [r[1] for r in results]
    assert rewards == pytest.approx([0.5, 0.9 * 0.25 - 0.5, 0.81 * 1.0 - 0.9 * 0.25])
    assert sum(rewards) == pytest.approx(0.9**2 * 1.0)  # the return is the final attempt's discounted score
    assert [(r[2], r[3]) for r in results] == [(False, False), (False, False), (True, False)]
    assert [r[4]["attempt"] for r in results] == [1, 2, 3]
    # Feedback between attempts: the reason and the error text, as a user message.
    obs = results[0][0]
    assert obs[-2] == {"role": "assistant", "content": "score=0.5"}
    assert obs[-1]["role"] == "user" and "wrong_answer" in obs[-1]["content"] and "expected 3, got 0.5" in obs[-1]["content"]
    assert results[2][0][-1] == {"role": "assistant", "content": "score=1.0"}  # no feedback after success


def test_code_env_turn_and_token_budgets(score_task):
    env = CodeEnv("test_scores", max_attempts=2)
    env.reset(seed=0)
    assert env.step("score=0.0")[2:4] == (False, False)
    _, reward, terminated, truncated, info = env.step("score=0.0")
    assert (reward, terminated, truncated, info["attempts_left"]) == (0.0, False, True, 0)
    with pytest.raises(RuntimeError):
        env.step("score=1.0")
    env = CodeEnv("test_scores", max_attempts=5, token_budget=15)
    env.reset(seed=0)
    assert env.step("score=0.0")[3] is False  # 9 characters used
    _, _, terminated, truncated, info = env.step("score=0.0")  # 18 > 15
    assert truncated and not terminated and info["overlong"]


def test_code_env_single_attempt_is_single_turn(score_task):
    env = CodeEnv("test_scores")
    env.reset(seed=0)
    _, reward, terminated, truncated, _ = env.step("score=0.5")
    assert (reward, terminated, truncated) == (0.5, True, False)


def test_code_env_check_env(score_task):
    # Through a spec, so check_env also re-makes the env for each render mode.
    gymnasium.register("reasonrl_test/CodeScores-v0", entry_point="reasonrl.envs.code_env:CodeEnv",
                       kwargs={"task": "test_scores", "max_attempts": 3})
    try:
        strict_check_env(gymnasium.make("reasonrl_test/CodeScores-v0"))
    finally:
        del gymnasium.registry["reasonrl_test/CodeScores-v0"]


def test_render_feedback_cuts_long_text():
    verdict = Verdict.failure("runtime_error", stderr="x" * 5000 + "ZeroDivisionError")
    text = render_feedback(verdict, max_chars=300)
    assert "ZeroDivisionError" in text and len(text) < 400 and text.startswith("...")


@pytest.mark.conformance
def test_code_env_on_humaneval_with_feedback():
    if "code" not in {t.name for t in reasonrl.list_tasks()}:
        pytest.skip("code verifier not in this checkout")
    row = read_jsonl(conformance_path("humaneval", "HumanEval.jsonl"))[2]  # truncate_number
    problem = reasonrl.make_problem(row["task_id"], "code", row["prompt"], {"test": row["test"], "entry_point": row["entry_point"]})
    env = gymnasium.make("reasonrl/Code-v0", dataset=[problem], max_attempts=3)
    env.reset(seed=0)
    wrong = f"```python\n{row['prompt']}    return 1.0 / 0\n```"
    obs, reward, terminated, truncated, info = env.step(wrong)
    assert (reward, terminated, truncated) == (0.0, False, False) and not info["verdict"].correct
    assert obs[-1]["role"] == "user" and info["verdict"].reason in obs[-1]["content"]
    obs, reward, terminated, truncated, info = env.step(f"```python\n{row['prompt']}{row['canonical_solution']}\n```")
    assert terminated and not truncated and info["verdict"].correct and reward == pytest.approx(0.9)


# ---------------------------------------------------------------------------------------
# Batched verification


def test_verify_problems_matches_stepping(parity_task, parity_rows_task):
    problems = [ParityGenerator(width=w).generate(s) for w in (3, 7) for s in range(6)] + _dataset_rows(4)
    responses = [f"<answer>{p['answer'] if i % 3 else 'maybe'}</answer>" if i % 5 else "no tag" for i, p in enumerate(problems)]
    batched = verify_problems(problems, responses, workers=2)
    env = TaskEnv("test_parity")
    single = []
    for problem, response in zip(problems, responses):
        env.reset(options={"problem": problem})
        single.append(env.step(response)[4]["verdict"])
    assert batched == single
    assert [v.reason for v in batched[:6]] == ["no_answer", "ok", "ok", "wrong_answer", "ok", "no_answer"]
    assert verify_problems(problems, responses, workers=0) == single


def test_verify_problems_errors(parity_task):
    problem = ParityGenerator().generate(0)
    with pytest.raises(ValueError, match="1 problems but 2 responses"):
        verify_problems([problem], ["a", "b"])
    with pytest.raises(ValueError, match="problem 0"):
        verify_problems([{"prompt": []}], ["a"])
    with pytest.raises(KeyError, match="Available tasks"):
        verify_problems([{**problem, "task": "nope"}], ["a"])
    assert verify_problems([], []) == []


# ---------------------------------------------------------------------------------------
# Gymnasium registration


def test_every_registered_task_has_a_gymnasium_id(parity_task):
    ids = set(reasonrl.envs.reasonrl_env_ids())
    for task in reasonrl.list_tasks():
        assert task.env_id in ids
        assert gymnasium.spec(task.env_id).kwargs == {"task": task.name}
    for env_id, name in reasonrl.envs.registration.builtin_env_ids().items():
        assert env_id in ids and gymnasium.spec(env_id).kwargs == {"task": name}


def test_register_and_unregister_update_gymnasium(parity_task):
    assert "reasonrl/TestParity-v0" in gymnasium.registry
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # overwriting must not trip gymnasium's "Overriding environment" warning
        reasonrl.register_task("test_parity", ParityGenerator, ParityVerifier, overwrite=True, env_version=1)
    assert "reasonrl/TestParity-v1" in gymnasium.registry
    tasks.unregister_task("test_parity")
    assert "reasonrl/TestParity-v1" not in gymnasium.registry
    reasonrl.register_task("test_parity", ParityGenerator, ParityVerifier)  # for the fixture's teardown
    with pytest.raises(ValueError, match="already used by task 'test_parity'"):
        reasonrl.register_task("test-parity", ParityGenerator, ParityVerifier)


def test_code_tasks_get_the_code_env():
    from reasonrl.envs.registration import CODE_ENV_ENTRY_POINT

    assert gymnasium.spec("reasonrl/Code-v0").entry_point == CODE_ENV_ENTRY_POINT


def _run(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_gymnasium_make_after_import_reasonrl_in_any_order():
    if "kk" not in {t.name for t in reasonrl.list_tasks()}:
        pytest.skip("kk task not in this checkout")
    script = """
        import sys
        import reasonrl
        assert "gymnasium" not in sys.modules, "import reasonrl must stay cheap"
        import gymnasium
        env = gymnasium.make("reasonrl/KnightsKnaves-v0", people=4)
        obs, info = env.reset(seed=0)
        assert info["difficulty"]["people"] == 4, info["difficulty"]
        print("ok")
    """
    gym_first = """
        import gymnasium, reasonrl
        print(gymnasium.make("reasonrl/KnightsKnaves-v0", people=3).reset(seed=0)[1]["difficulty"]["people"])
    """
    module_form = """
        import gymnasium
        print(gymnasium.make("reasonrl:reasonrl/KnightsKnaves-v0").spec.id)
    """
    for code, expected in ((script, "ok"), (gym_first, "3"), (module_form, "reasonrl/KnightsKnaves-v0")):
        done = _run(code)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip().splitlines()[-1] == expected


def test_task_registered_before_gymnasium_import_is_registered_after():
    done = _run(
        """
        import sys, reasonrl
        reasonrl.register_task("late_task", [reasonrl.make_problem("a", "late_task", "q", "1")], "gsm8k")
        assert "gymnasium" not in sys.modules
        import gymnasium
        print(gymnasium.spec("reasonrl/LateTask-v0").kwargs)
        import importlib.resources
        assert importlib.resources.files("gymnasium").is_dir()  # the loader was left alone
        """
    )
    if "unknown verifier" in done.stderr:
        pytest.skip("gsm8k verifier not in this checkout")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'task': 'late_task'}"
