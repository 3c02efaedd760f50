"""TRL and verl adapters, called the way those trainers call them."""
from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from reasonrl import verifiers
from reasonrl.tasks import register_task
from reasonrl.types import Verdict
from reasonrl.verifiers import adapters
from reasonrl.verifiers.adapters import (
    completion_text,
    compute_score,
    decode_answer,
    make_compute_score,
    trl_reward_function,
)
from reasonrl.verifiers.base import Verifier

ROOT = Path(__file__).resolve().parents[1]


class LastWordEquals(Verifier):
    """Test-only string task: the last word must equal the answer; "hang" never returns."""

    name = "last_word_equals"

    def verify(self, response, answer):
        if response == "hang":
            time.sleep(60)
        words = response.replace("<answer>", " ").replace("</answer>", " ").split()
        if not words:
            return Verdict.failure("no_answer")
        ok = words[-1] == str(answer)
        return Verdict(float(ok), ok, extracted=words[-1], reason="ok" if ok else "wrong_answer")


class PeopleEqual(Verifier):
    """Test-only structured task (like kk): the answer is {"names": [...], "solution": [...]}."""

    name = "people_equal"

    def verify(self, response, answer):
        if not isinstance(answer, dict):
            return Verdict.failure("error", message=f"answer must be a dict, got {type(answer).__name__}")
        said = dict(part.split("=") for part in response.split())
        truth = {n: ("knight" if s else "knave") for n, s in zip(answer["names"], answer["solution"])}
        ok = said == truth
        return Verdict(float(ok), ok, extracted=response, reason="ok" if ok else "wrong_answer")


class ListAnswer(Verifier):
    structured_answer = True

    def verify(self, response, answer):
        ok = isinstance(answer, list) and response == ",".join(map(str, answer))
        return Verdict(float(ok), ok)


STRING_TASK = register_task("_test_adapt_words", None, LastWordEquals, env_name="TestAdaptWords", overwrite=True)
PEOPLE_TASK = register_task("_test_adapt_people", None, PeopleEqual, env_name="TestAdaptPeople", overwrite=True)
LIST_TASK = register_task("_test_adapt_list", None, ListAnswer, env_name="TestAdaptList", overwrite=True)


# --- TRL ---------------------------------------------------------------------------------------

def test_trl_reward_with_plain_completions_called_like_grpo_trainer():
    reward = trl_reward_function("_test_adapt_words", workers=1)
    try:
        assert reward.__name__ == "reasonrl__test_adapt_words"
        # GRPOTrainer: reward_func(prompts=..., completions=..., completion_ids=..., **dataset columns, trainer_state=...)
        out = reward(
            prompts=["Q1", "Q2", "Q3"],
            completions=["so it is 7", "so it is 8", ""],
            completion_ids=[[1], [2], [3]],
            answer=["7", "7", "7"],
            question=["a", "b", "c"],
            trainer_state=None,
        )
        assert out == [1.0, 0.0, 0.0]
        assert all(isinstance(x, float) for x in out)
        assert [v.reason for v in reward.last_verdicts] == ["ok", "wrong_answer", "no_answer"]
    finally:
        reward.close()


def test_trl_reward_with_conversational_completions_takes_the_last_assistant_message():
    reward = trl_reward_function(STRING_TASK, workers=0, answer_column="solution")
    completions = [
        [{"role": "assistant", "content": "the answer is 3"}],
        [{"role": "assistant", "content": "draft 3"}, {"role": "user", "content": "again"}, {"role": "assistant", "content": "final 4"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "parts: "}, {"type": "image"}, {"type": "text", "text": "3"}]}],
    ]
    prompts = [[{"role": "user", "content": "q"}]] * 3
    assert reward(prompts=prompts, completions=completions, solution=["3", "3", "3"]) == [1.0, 0.0, 1.0]


def test_trl_reward_names_the_missing_column():
    reward = trl_reward_function(STRING_TASK, workers=0)
    with pytest.raises(KeyError, match=r"'answer'.*columns passed: question, solution"):
        reward(prompts=["q"], completions=["1"], solution=["1"], question=["q"], trainer_state=None)


def test_trl_reward_has_hard_limits_and_keeps_working():
    reward = trl_reward_function(STRING_TASK, workers=1, timeout=0.5)
    try:
        assert reward(prompts=["a", "b"], completions=["hang", "x 1"], answer=["1", "1"]) == [0.0, 1.0]
        assert reward.last_verdicts[0].reason == "timeout"
        assert reward(prompts=["a"], completions=["y 2"], answer=["2"]) == [1.0]
        assert reward.stats()["timeouts"] == 1
    finally:
        reward.close()


def test_trl_reward_decodes_json_answers_for_structured_tasks_and_passes_options():
    reward = trl_reward_function(PEOPLE_TASK, workers=0)
    answer = {"names": ["Ann", "Bob"], "solution": [True, False]}
    out = reward(prompts=["p", "p"], completions=["Ann=knight Bob=knave", "Ann=knave Bob=knave"],
                 answer=[json.dumps(answer), answer])
    assert out == [1.0, 0.0]
    formatted = trl_reward_function(STRING_TASK, workers=0, format="logic-rl")
    assert formatted(prompts=["p"], completions=["<think>t</think><answer>5</answer>"], answer=["5"]) == [3.0]


def test_completion_text_shapes():
    assert completion_text("plain") == "plain"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"
    assert completion_text({"role": "assistant", "content": None}) == ""
    assert completion_text([]) == ""
    with pytest.raises(TypeError):
        completion_text(3)


# --- verl --------------------------------------------------------------------------------------

def test_make_compute_score_float_and_dict():
    score = make_compute_score("_test_adapt_words", workers=0)
    assert score(data_source="anything", solution_str="it is 9", ground_truth="9", extra_info={"index": 0}) == 1.0
    assert score("x", "it is 8", "9") == 0.0
    as_dict = make_compute_score(STRING_TASK, return_dict=True, workers=0)
    right = as_dict(data_source="x", solution_str="it is 9", ground_truth="9", extra_info=None)
    wrong = as_dict(data_source="x", solution_str="", ground_truth="9", extra_info=None)
    assert right == {"score": 1.0, "acc": 1.0, "pred": "9", "reason": "ok"}
    assert wrong == {"score": 0.0, "acc": 0.0, "pred": "", "reason": "no_answer"}
    assert set(right) == set(wrong)  # verl needs the same keys for every sample


def test_compute_score_uses_data_source_as_task_and_decodes_json_ground_truth():
    answer = {"names": ["Ann", "Bob"], "solution": [False, True]}
    got = compute_score("_test_adapt_people", "Ann=knave Bob=knight", json.dumps(answer), extra_info={"split": "test"})
    assert got == 1.0
    assert compute_score("_test_adapt_people", "Ann=knight Bob=knight", json.dumps(answer)) == 0.0
    assert compute_score("_test_adapt_list", "1,2", "[1, 2]") == 1.0  # lists only when the verifier says so
    with pytest.raises(KeyError, match="unknown task"):
        compute_score("no_such_dataset", "x", "1")


def test_compute_score_survives_a_hanging_item():
    score = make_compute_score(STRING_TASK, timeout=0.5)
    try:
        assert score("x", "hang", "1") == 0.0
        assert score("x", "it is 1", "1") == 1.0
    finally:
        score.close()


def test_decode_answer_rules():
    class Unknown(Verifier):
        pass

    class Strings(Verifier):
        structured_answer = False

    assert decode_answer('{"a": 1}', Unknown()) == {"a": 1}
    assert decode_answer("[1, 2]", Unknown()) == "[1, 2]"  # a LaTeX interval for math, not a list
    assert decode_answer("[1, 2]", ListAnswer()) == [1, 2]
    assert decode_answer('{"a": 1}', Strings()) == '{"a": 1}'
    assert decode_answer("{1, 2}", Unknown()) == "{1, 2}"  # not JSON: a set in LaTeX
    assert decode_answer("18", Unknown()) == "18"
    assert decode_answer({"a": 1}, Unknown()) == {"a": 1}


def test_verl_loads_this_file_by_path():
    # verl: custom_reward_function.path=<file>, name=compute_score -> spec_from_file_location + getattr
    spec = importlib.util.spec_from_file_location("custom_module", ROOT / "verifiers" / "adapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = getattr(module, "compute_score")
    assert fn(data_source="_test_adapt_words", solution_str="so 4", ground_truth="4", extra_info={}) == 1.0


def test_gsm8k_aliases_when_available():
    if "gsm8k" not in verifiers.names():
        pytest.skip("gsm8k verifier not in this checkout")
    assert adapters.DATA_SOURCE_ALIASES["openai/gsm8k"] == "gsm8k"
    assert compute_score("openai/gsm8k", "48 + 24 = 72\n#### 72", "72") == 1.0
    assert compute_score("openai/gsm8k", "48 + 24 = 71\n#### 71", "72") == 0.0


def test_a_verifiers_own_batch_runner_is_used():
    class OwnBatch(LastWordEquals):
        calls = []

        def verify_batch(self, responses, answers, workers=None, timeout=None, progress=False):
            OwnBatch.calls.append((list(responses), workers, timeout))
            return [self.verify(r, a) for r, a in zip(responses, answers)]

    task = register_task("_test_adapt_own_batch", None, OwnBatch, env_name="TestAdaptOwnBatch", overwrite=True)
    reward = trl_reward_function(task, workers=3, timeout=7.0)
    assert reward(prompts=["p"], completions=["is 1"], answer=["1"]) == [1.0]
    assert OwnBatch.calls == [(["is 1"], 3, 7.0)]
