"""The think/answer format rule, the "format" verifier, and its combination with task correctness."""
from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrl import verifiers
from reasonrl.tasks import register_task
from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier
from reasonrl.verifiers.batch import verify_many
from reasonrl.verifiers.extract import extract_tag
from reasonrl.verifiers.format_reward import (
    LOGIC_RL_CORRECT,
    LOGIC_RL_UNPARSED,
    LOGIC_RL_WRONG,
    FormatWrapped,
    check_format,
    with_format,
)

GOOD = "<think>\n6 * 7 = 42\n</think>\n<answer>\n42\n</answer>"


class TagEquals(Verifier):
    """Test-only task verifier: the <answer> tag (else the last word) must equal the answer.

    ``details["seen"]`` records the text it was given, to check what the wrapper passes on.
    """

    name = "tag_equals"

    def verify(self, response, answer):
        found = extract_tag(response)
        if found is None:
            words = response.split()
            found = words[-1] if words else None
        if not found:
            return Verdict.failure("no_answer", seen=response)
        ok = found == str(answer)
        return Verdict(float(ok), ok, extracted=found, reason="ok" if ok else "wrong_answer", details={"seen": response})


def reference_format_ok(response: str, allow_text_outside: bool = False) -> bool:
    """The rule written the obvious slow way: counts, then one regex with five groups."""
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        if response.count(tag) != 1:
            return False
    m = re.fullmatch(r"(.*)<think>(.*)</think>(.*)<answer>(.*)</answer>(.*)", response, re.DOTALL)
    if m is None:
        return False
    before, think, between, answer, after = m.groups()
    if not think.strip() or not answer.strip():
        return False
    return allow_text_outside or not (before.strip() or between.strip() or after.strip())


# --- the rule ------------------------------------------------------------------------------------

def test_well_formed_response_passes_and_parts_are_extracted():
    check = check_format(GOOD)
    assert check.ok and check.problem == ""
    assert check.think == "6 * 7 = 42" and check.answer == "42"
    assert check_format("<think>a</think><answer>b</answer>").ok  # no whitespace needed
    assert check_format("  \n<think>a</think>\n\n<answer>b</answer>\n ").ok  # whitespace around is fine


@pytest.mark.parametrize(
    "response, problem",
    [
        ("<answer>42</answer>", "missing_tag"),
        ("<think>x</think>", "missing_tag"),
        ("<think>x</think><answer>42", "missing_tag"),
        ("x</think><answer>42</answer>", "missing_tag"),
        ("<think>x</think><think>y</think><answer>42</answer>", "repeated_tag"),
        ("<think>x</think><answer>41</answer><answer>42</answer>", "repeated_tag"),
        ("<answer>42</answer><think>x</think>", "wrong_order"),
        ("<think>x<answer>42</think></answer>", "wrong_order"),
        ("</think>x<think><answer>42</answer>", "wrong_order"),
        ("<think>  \n</think><answer>42</answer>", "empty_think"),
        ("<think>x</think><answer> </answer>", "empty_answer"),
        ("So: <think>x</think><answer>42</answer>", "text_outside"),
        ("<think>x</think> the answer is 41 <answer>42</answer>", "text_outside"),
        ("<think>x</think><answer>42</answer> or maybe 41", "text_outside"),
        ("<think>x</think><answer>42</answer><|im_end|>", "text_outside"),
        ("<THINK>x</THINK><answer>42</answer>", "missing_tag"),  # tags are case-sensitive
    ],
)
def test_near_misses_fail_with_the_broken_rule_named(response, problem):
    check = check_format(response)
    assert not check.ok and check.problem == problem


def test_allow_text_outside_is_logic_rl_checker():
    assert check_format("Sure! <think>x</think> so <answer>42</answer> done", allow_text_outside=True).ok
    assert not check_format("<think>x</think><answer>42</answer><answer>1</answer>", allow_text_outside=True).ok


def test_think_prefilled_by_the_chat_template():
    assert check_format("reasoning here</think>\n<answer>42</answer>", think_prefilled=True).ok
    assert not check_format(GOOD, think_prefilled=True).ok  # a second <think>
    assert check_format("</think><answer>42</answer>", think_prefilled=True).problem == "empty_think"


_PIECES = st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x", "42", "<", ">", "/"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=12), st.booleans())
def test_rule_agrees_with_slow_reference(pieces, allow_outside):
    response = "".join(pieces)
    assert check_format(response, allow_text_outside=allow_outside).ok == reference_format_ok(response, allow_outside)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1).filter(lambda t: t.strip() and "<" not in t), st.text(min_size=1).filter(lambda t: t.strip() and "<" not in t))
def test_any_nonempty_parts_in_the_template_pass(think, answer):
    check = check_format(f"<think>{think}</think>\n<answer>{answer}</answer>")
    assert check.ok and check.answer == answer.strip()


def test_a_megabyte_response_is_checked_quickly():
    import time

    big = "<think>" + "a" * 1_000_000 + "</think><answer>1</answer>"
    started = time.monotonic()
    assert check_format(big).ok
    assert not check_format(big + "<think>").ok
    assert time.monotonic() - started < 1.0


# --- the "format" verifier ---------------------------------------------------------------------

def test_format_verifier_is_registered_and_ignores_the_answer():
    v = verifiers.get("format")
    assert "format" in verifiers.names()
    assert v.verify(GOOD, None) == Verdict(1.0, True, extracted="42", reason="ok", details={"problem": ""})
    bad = v.verify("<answer>42</answer>", "whatever")
    assert bad.reward == 0.0 and not bad.correct and bad.reason == "format_error"
    assert bad.details["problem"] == "missing_tag"
    assert verifiers.get("format", allow_text_outside=True).verify("ok: " + GOOD, None).correct


# --- combination with a task verifier ----------------------------------------------------------

@pytest.mark.parametrize(
    "response, answer, reward, correct",
    [
        (GOOD, "42", 1.0 + LOGIC_RL_CORRECT, True),  # 3
        (GOOD, "41", 1.0 + LOGIC_RL_WRONG, False),  # -0.5: an answer was parsed, it is wrong
        ("<think>x</think><answer>42</answer> 42", "42", -1.0 + LOGIC_RL_UNPARSED, False),  # -3: format broken
        ("42", "42", -1.0 + LOGIC_RL_UNPARSED, False),  # right number, no format: still -3
    ],
)
def test_logic_rl_scores(response, answer, reward, correct):
    v = with_format(TagEquals(), mode="logic-rl")
    verdict = v.verify(response, answer)
    assert verdict.reward == pytest.approx(reward) and verdict.correct is correct


def test_logic_rl_unparsable_answer_scores_minus_two():
    class NeverParses(Verifier):
        def verify(self, response, answer):
            return Verdict.failure("no_answer")

    verdict = with_format(NeverParses(), mode="logic-rl").verify(GOOD, "42")
    assert verdict.reward == pytest.approx(1.0 + LOGIC_RL_UNPARSED)
    assert verdict.details["format_score"] == 1.0 and verdict.details["answer_score"] == LOGIC_RL_UNPARSED


def test_logic_rl_format_weight_scales_the_format_score_only():
    v = with_format(TagEquals(), mode="logic-rl", format_weight=0.5)
    assert v.verify(GOOD, "42").reward == pytest.approx(2.5)
    assert v.verify("42", "42").reward == pytest.approx(-2.5)


def test_multiply_mode_counts_correctness_only_with_the_format():
    v = with_format(TagEquals(), mode="multiply")
    assert (v.verify(GOOD, "42").reward, v.verify(GOOD, "42").correct) == (1.0, True)
    assert (v.verify(GOOD, "41").reward, v.verify(GOOD, "41").correct) == (0.0, False)
    broken = v.verify("<answer>42</answer>", "42")  # right answer, broken format
    assert (broken.reward, broken.correct, broken.reason) == (0.0, False, "format_error")
    assert broken.details["inner_correct"] is True and broken.details["format_problem"] == "missing_tag"


def test_add_mode_adds_weighted_format_and_keeps_inner_correctness():
    v = with_format(TagEquals(), mode="add", format_weight=0.25)
    assert v.verify(GOOD, "42").reward == pytest.approx(1.25)
    assert v.verify(GOOD, "41").reward == pytest.approx(0.25)
    loose = v.verify("<answer>42</answer>", "42")
    assert loose.reward == pytest.approx(1.0) and loose.correct and loose.reason == "ok"


def test_inner_verifier_sees_only_the_answer_part_when_the_format_holds():
    response = "<think>maybe 41? \\boxed{41}</think>\n<answer> 42 </answer>"
    verdict = with_format(TagEquals(), mode="multiply").verify(response, "42")
    assert verdict.details["inner_details"]["seen"] == "<answer>42</answer>"
    assert verdict.correct
    # Broken format: the whole response goes to the task verifier (only "add" mode can use it).
    broken = "<think>x</think> 42"
    assert with_format(TagEquals(), mode="add").verify(broken, "42").details["inner_details"]["seen"] == broken
    bare = verifiers.get("format", format="add", format_inner_input="answer")
    assert bare.inner_input == "answer"
    assert with_format(TagEquals(), inner_input="answer").verify(response, "42").details["inner_details"]["seen"] == "42"
    assert with_format(TagEquals(), inner_input="response").verify(response, "42").details["inner_details"]["seen"] == response
    with pytest.raises(ValueError, match="answer_tag, answer, response"):
        with_format(TagEquals(), inner_input="think")


def test_bad_mode_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="logic-rl, multiply, add"):
        FormatWrapped(TagEquals(), mode="times")


def test_format_option_through_get_and_task_make_verifier():
    wrapped = verifiers.get("format", format="multiply")  # any registered verifier takes the option
    assert isinstance(wrapped, FormatWrapped) and wrapped.mode == "multiply"
    assert not isinstance(verifiers.get("format", format="none"), FormatWrapped)
    with pytest.raises(ValueError, match="valid formats"):
        verifiers.get("format", format="sum")
    with pytest.raises(ValueError, match="without format"):
        verifiers.get("format", format_weight=2.0)

    task = register_task("_test_tag_equals", None, TagEquals, env_name="TestTagEqualsFormat", overwrite=True)
    v = task.make_verifier(format="logic-rl", format_weight=0.5, format_think_prefilled=True)
    assert isinstance(v, FormatWrapped) and v.think_prefilled and v.format_weight == 0.5
    assert v.verify("x</think><answer>42</answer>", "42").reward == pytest.approx(2.5)
    assert not isinstance(task.make_verifier(), FormatWrapped)


def test_wrapped_verifier_runs_in_worker_processes():
    v = with_format(TagEquals(), mode="logic-rl")
    responses = [GOOD, "<think>x</think><answer>41</answer>", "42", "<answer>42</answer>"]
    answers = ["42"] * 4
    assert verify_many(v, responses, answers, workers=2) == [v.verify(r, a) for r, a in zip(responses, answers)]


def test_with_a_real_task_verifier_when_available():
    if "gsm8k" not in verifiers.names():
        pytest.skip("gsm8k verifier not in this checkout")
    v = verifiers.get("gsm8k", format="logic-rl")
    assert v.verify("<think>48/2=24, 48+24=72</think>\n<answer>72</answer>", "72").reward == pytest.approx(3.0)
    assert v.verify("<think>48/2=24, 48+24=72</think>\n<answer>71</answer>", "72").reward == pytest.approx(-0.5)
    assert v.verify("48/2=24, 48+24=72. #### 72", "72").reward == pytest.approx(-3.0)
