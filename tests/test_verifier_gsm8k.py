"""The ``gsm8k`` verifier: extraction order, number formats, strict mode, near-misses, conformance."""
from __future__ import annotations

import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import conformance_path, read_jsonl
from reasonrl import verifiers
from reasonrl.types import Verdict
from reasonrl.verifiers.math_exact import Gsm8kVerifier, extract_gsm8k_answer, parse_gold


@pytest.fixture(scope="module")
def gsm8k():
    return verifiers.get("gsm8k")


def test_registered_and_returns_verdict(gsm8k):
    assert "gsm8k" in verifiers.names()
    verdict = gsm8k.verify("She makes 9 * 2 = $18 every day.", "18")
    assert isinstance(verdict, Verdict)
    assert verdict.to_dict() == {
        "reward": 1.0,
        "correct": True,
        "extracted": "18",
        "reason": "ok",
        "details": {"gold": "18", "strict": False, "source": "last_number"},
    }


@pytest.mark.parametrize(
    "response, source",
    [
        ("I think 5. <answer>18</answer> then 7 \\boxed{3} #### 4 the answer is 6", "tag"),
        ("I think 5. \\boxed{18} #### 4 the answer is 6. Finally 7", "boxed"),
        ("I think 5.\n#### 18\nthe answer is 6. Finally 7", "####"),
        ("I think 5. The answer is 18. Checking: 7 + 11 = 18, not 20", "answer_is"),
        ("I think 5, then 7, so 18", "last_number"),
    ],
)
def test_extraction_order_of_preference(gsm8k, response, source):
    verdict = gsm8k.verify(response, "18")
    assert verdict.correct, verdict
    assert verdict.details["source"] == source


@pytest.mark.parametrize(
    "response, gold",
    [
        ("The total is $1,234.", "1234"),
        ("It costs $18.00 in all.", "18"),
        ("18.0", "18"),
        ("She walks 18 miles per day.", "18"),
        ("The discount is 25%.", "25"),
        ("The temperature fell to -3 degrees.", "-3"),
        ("The temperature fell to −3 degrees.", "-3"),
        ("Each gets 1/2 of a pizza.", "0.5"),
        ("Each gets \\boxed{\\frac{3}{4}} cup.", "0.75"),
        ("\\boxed{\\$1{,}600}", "1600"),
        ("<answer> 2,125 dollars </answer>", "2,125"),
        ("The answer is: 1,450,000", "1450000"),
        ("Total: .5 liters", "0.5"),
    ],
)
def test_number_formats(gsm8k, response, gold):
    assert gsm8k.verify(response, gold).correct


@pytest.mark.parametrize(
    "response, gold, reason",
    [
        ("The answer is 17.", "18", "wrong_answer"),  # off by one
        ("The answer is 19.", "18", "wrong_answer"),
        ("The answer is -18.", "18", "wrong_answer"),  # sign flipped
        ("The answer is 18.5.", "18", "wrong_answer"),
        ("The answer is 1.8.", "18", "wrong_answer"),
        ("The answer is 180.", "18", "wrong_answer"),
        ("Each gets 2/1 pizzas.", "0.5", "wrong_answer"),  # fraction upside down
        ("The answer is 0.333.", "1/3", "wrong_answer"),  # exact comparison
        ("5 - 3 = 2 apples", "-3", "wrong_answer"),  # a binary minus is no sign
        ("I do not know.", "18", "no_answer"),
        ("", "18", "no_answer"),
    ],
)
def test_near_misses_rejected(gsm8k, response, gold, reason):
    verdict = gsm8k.verify(response, gold)
    assert not verdict.correct
    assert verdict.reward == 0.0
    assert verdict.reason == reason


def test_strict_mode_reads_only_tag_or_box():
    strict = Gsm8kVerifier(strict=True)
    assert strict.verify("<answer>18</answer>", "18").correct
    assert strict.verify("so \\boxed{18}", "18").correct
    for loose_only in ("#### 18", "The answer is 18.", "so 18"):
        verdict = strict.verify(loose_only, "18")
        assert verdict.reason == "no_answer" and not verdict.correct
        assert Gsm8kVerifier().verify(loose_only, "18").correct
    assert verifiers.get("gsm8k", strict=True).strict


@pytest.mark.parametrize(
    "answer, value",
    [
        ("18", 18),
        (18, 18),
        (2.5, Fraction(5, 2)),
        ("1,600", 1600),
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18", 18),
        ("#### -7", -7),
    ],
)
def test_answer_field_forms(answer, value):
    assert parse_gold(answer) == value


@pytest.mark.parametrize("bad", [None, "no number here", True])
def test_bad_answer_field_names_the_field(bad):
    with pytest.raises(ValueError, match="'answer'"):
        Gsm8kVerifier().verify("18", bad)


@pytest.mark.parametrize("bad", [["18"], {"x": 1}, b"18"])
def test_answer_of_a_type_gsm8k_cannot_read_is_a_type_error(bad):
    with pytest.raises(TypeError, match=r"verifier 'gsm8k'.*argument 'answer' must be str or int or float, got"):
        Gsm8kVerifier().verify("18", bad)


def test_pathological_inputs_are_fast(gsm8k):
    huge = "blah " * 200_000 + "so the answer is 42"
    nested = "\\boxed{" + "{" * 100_000 + "42" + "}" * 100_000 + "}"
    start = time.perf_counter()
    assert gsm8k.verify(huge, "42").correct
    assert gsm8k.verify(nested, "42").correct
    # Without a tag, box or anchor only the last 20,000 characters are searched for a number.
    assert gsm8k.verify("42 " + "x" * 1_000_000, "42").reason == "no_answer"
    assert gsm8k.verify("\\boxed{" + "{" * 50_000, "42").reason in ("ok", "wrong_answer", "no_answer")
    assert time.perf_counter() - start < 5.0


_FORMATS = (
    "{}",
    "The answer is {}.",
    "#### {}",
    "\\boxed{{{}}}",
    "<answer>{}</answer>",
    "So she has {} dollars left.",
    "Total = ${}",
)


def _written(value: Fraction, style: int) -> str:
    """``value`` written the way people write numbers (integers may get separators or .0)."""
    if value.denominator != 1:
        return f"{float(value):.2f}" if style % 2 else f"{value.numerator}/{value.denominator}"
    n = value.numerator
    return [str(n), f"{n:,}", f"{n}.0", f"{n:,}.00"][style % 4]


@settings(max_examples=150, deadline=None)
@given(
    number=st.one_of(
        st.integers(min_value=-10**9, max_value=10**9).map(Fraction),
        st.integers(min_value=-9999, max_value=9999).map(lambda n: Fraction(n, 4)),
    ),
    style=st.integers(min_value=0, max_value=7),
    template=st.sampled_from(_FORMATS),
    delta=st.sampled_from([Fraction(1), Fraction(-1), Fraction(1, 4), Fraction(10)]),
)
def test_property_formats_accepted_and_shifted_values_rejected(number, style, template, delta):
    text = template.format(_written(number, style))
    gold = _written(number, 0) if number.denominator == 1 else str(float(number))
    assert Gsm8kVerifier().verify(text, gold).correct, (text, gold)
    wrong = template.format(_written(number + delta, style))
    assert not Gsm8kVerifier().verify(wrong, gold).correct, (wrong, gold)


def test_extract_returns_value_text_and_source():
    assert extract_gsm8k_answer("it is $1,234.50 total") == (Fraction(246900, 200), "1234.50", "last_number")
    assert extract_gsm8k_answer("nothing") is None


@pytest.mark.conformance
def test_agrees_with_every_labelled_gsm8k_model_solution():
    """All 5,276 labelled solutions: our verdict equals the human-side ``is_correct`` label.

    The gold comes from test.jsonl (``#### n``, same order) and, as a cross-check, from the
    ground truth's last ``A:`` (row 331 has an earlier ``(A):``).
    """
    solutions = read_jsonl(conformance_path("gsm8k", "example_model_solutions.jsonl"))
    tests = read_jsonl(conformance_path("gsm8k", "test.jsonl"))
    assert len(solutions) == len(tests) == 1319
    verifier = Gsm8kVerifier()
    checked, disagreements = 0, []
    for row, test in zip(solutions, tests):
        gold_from_a = row["ground_truth"].rsplit("A:", 1)[1]
        assert parse_gold(gold_from_a) == parse_gold(test["answer"])
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            sample = row[model]
            verdict = verifier.verify(sample["solution"], test["answer"])
            checked += 1
            if verdict.correct != sample["is_correct"]:
                disagreements.append((model, sample["solution"][-120:], test["answer"][-20:], verdict))
    assert checked == 5276
    assert disagreements == []


@pytest.mark.parametrize("source", ["The answer is {}.", "#### {}", "<answer>{}</answer>", "so we get {}"])
def test_numbers_past_pythons_4300_digit_limit_are_read_whole(gsm8k, source):
    # Fraction(str) refuses more than 4,300 digits: such numbers used to be skipped.
    big = "7" * 5000
    response = source.format(big)
    assert gsm8k.verify(response, big).correct
    assert gsm8k.verify(response, f"#### {big}").correct
    assert gsm8k.verify(response, big[:-1] + "8").reason == "wrong_answer"
    assert gsm8k.verify(response, big[:-1]).reason == "wrong_answer"  # not read as its first digits


@pytest.mark.parametrize(
    ("response", "gold", "correct"),
    [
        ("The answer is 1.8e1", "18", True),
        ("The answer is 1.8e1", "1.8", False),
        ("The answer is 1.8", "1.8e1", False),
        ("#### 2.5E+3", "2500", True),
        ("The answer is 5e-1", "1/2", True),
        ("The answer is 1e400", "1e400", True),
        ("The answer is 1", "1e400", False),
        ("The answer is 1e399", "1e400", False),
    ],
)
def test_scientific_notation_is_read_as_its_value(gsm8k, response, gold, correct):
    verdict = gsm8k.verify(response, gold)
    assert verdict.correct is correct, verdict
    assert verdict.reason == ("ok" if correct else "wrong_answer")


def test_gold_in_scientific_notation_is_its_full_value():
    assert parse_gold("1e400") == 10**400
    assert parse_gold("#### 1.8e1") == 18


def test_an_exponent_too_large_to_expand_is_not_a_number(gsm8k):
    start = time.perf_counter()
    assert gsm8k.verify("The answer is 1e999999999", "1").reason == "no_answer"
    assert time.perf_counter() - start < 1.0
