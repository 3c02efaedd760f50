"""Contract tests for every built-in generator and its verifier, plus family-specific checks."""
from __future__ import annotations

import json
import pytest

from reasonrl import data_gen, verifiers
from reasonrl.data_gen.base import ConfigError
from reasonrl.data_gen.dataset import generate_dataset
from reasonrl.types import validate_problem

BUILTIN = ["arith", "countdown", "graph_coloring", "kk"]


@pytest.mark.parametrize("task", BUILTIN)
def test_contract(task):
    gen = data_gen.get(task)
    verifier = verifiers.get(gen.verifier)
    rows = generate_dataset(task, 30, seed=3)
    assert rows == generate_dataset(task, 30, seed=3)  # deterministic
    assert rows != generate_dataset(task, 30, seed=4)  # seed matters
    assert len({r["id"] for r in rows}) == len(rows)
    for row in rows:
        validate_problem(row)
        assert row["task"] == task
        assert json.loads(json.dumps(row)) == row  # JSON round trip keeps everything
        assert verifier.verify(row["metadata"]["worked_solution"], row["answer"]).correct, row
        for garbage in ["", "I don't know", "<answer></answer>", "<answer>" + "x" * 1000 + "</answer>"]:
            v = verifier.verify(garbage, row["answer"])
            assert not v.correct and v.reward == 0.0
        misses = gen.near_miss_responses(row)
        assert misses
        for miss in misses:
            v = verifier.verify(miss, row["answer"])
            assert not v.correct and v.reward == 0.0, (miss, row["answer"])


@pytest.mark.parametrize("task", BUILTIN)
def test_unknown_and_bad_knobs_are_named(task):
    gen_cls = type(data_gen.get(task))
    with pytest.raises(ConfigError, match="valid keys"):
        data_gen.get(task, no_such_knob=1)
    assert gen_cls.Config() is not None


# --- arith --------------------------------------------------------------------------------


def test_arith_values_match_python_precedence():
    gen = data_gen.get("arith", digits=3, operands=5, ops=("+", "-", "*"))
    for seed in range(300):
        p = gen.generate(seed)
        expr = p["metadata"]["expression"]
        assert int(p["answer"]) == eval(expr)  # test-only oracle on our own digits-and-ops string
        steps = p["metadata"]["worked_solution_steps"].splitlines()
        assert steps[-1] == f"<answer>{p['answer']}</answer>"
        for line in steps[:-1]:  # each step is itself a true equation
            lhs, rhs = line.split("=")
            assert eval(lhs) == int(rhs)
        assert p["prompt"][0]["content"] == f"Compute {expr}. Put the final answer in <answer></answer>."
        assert p["prompt"][0]["content"].isascii()


def test_arith_knobs_and_validation():
    gen = data_gen.get("arith", digits=2, operands=3, ops="+,-")
    for seed in range(50):
        p = gen.generate(seed)
        nums = [int(x) for x in p["metadata"]["expression"].replace("-", "+").split("+")]
        assert len(nums) == 3 and all(0 <= x <= 99 for x in nums)
        assert "*" not in p["metadata"]["expression"]
        assert p["difficulty"] == {"digits": 2, "operands": 3, "ops": ["+", "-"]}
    with pytest.raises(ConfigError, match="digits"):
        data_gen.get("arith", digits=0)
    with pytest.raises(ConfigError, match="operands"):
        data_gen.get("arith", operands=1)
    with pytest.raises(ConfigError, match=r"valid: \+, -, \*"):
        data_gen.get("arith", ops="/")
    # CLI strings are coerced by the field type
    assert data_gen.get("arith", digits="4").config.digits == 4


def test_arith_verifier_modes():
    v = verifiers.get("arith")
    assert v.verify("<answer> 1,234 </answer>", "1234").correct
    assert v.verify("<answer>-5</answer>", "-5").correct
    assert v.verify("so 579", "579").reason == "no_answer"  # strict by default
    assert v.verify("<answer>579.5</answer>", "579").reason == "format_error"
    assert v.verify("<answer>57,9</answer>", "579").reason == "format_error"
    loose = verifiers.get("arith", strict=False)
    assert loose.verify("the sum is 579", "579").correct
    assert not loose.verify("the sum is 578", "579").correct
    assert v.verify("<answer>1</answer> then <answer>579</answer>", 579).correct  # last tag wins


# --- countdown ------------------------------------------------------------------------------

CD = verifiers.get("countdown")
CD_ANSWER = {"numbers": [3, 7, 25, 50], "target": 97}


@pytest.mark.parametrize(
    "text",
    ["<answer>50+25+3*7+1</answer>", "<answer>(50+25)+(7*3)+1</answer>"],
)
def test_countdown_right_value_from_a_number_not_given_is_rejected(text):
    verdict = CD.verify(text, CD_ANSWER)
    assert not verdict.correct and verdict.reason == "wrong_numbers" and verdict.details["not_given"] == [1]


@pytest.mark.parametrize(
    "text,reason",
    [
        ("<answer>50+25+3*7</answer>", "wrong_answer"),  # off by one
        ("<answer>50+25+22</answer>", "wrong_numbers"),  # 22 not given, 3 and 7 unused
        ("<answer>50+50-3</answer>", "wrong_numbers"),  # 50 used twice
        ("<answer>50+25+7</answer>", "wrong_numbers"),  # 3 unused (use_all)
        ("<answer>2**10</answer>", "format_error"),
        ("<answer>9**9**9**9</answer>", "format_error"),  # no power operator, nothing is evaluated
        ("<answer>-3+100</answer>", "format_error"),  # unary minus makes a number not given
        ("<answer>__import__('os').system('true')</answer>", "format_error"),
        ("<answer>50/(7-7)+25+3</answer>", "wrong_answer"),  # division by zero
        ("<answer>50+25+3*7 = 96</answer>", "wrong_answer"),
        ("<answer>" + "(" * 300 + "1" + ")" * 300 + "</answer>", "format_error"),
        ("50+25+3*7+1", "no_answer"),  # strict: the tag is required
    ],
)
def test_countdown_near_misses(text, reason):
    verdict = CD.verify(text, CD_ANSWER)
    assert not verdict.correct and verdict.reward == 0.0
    assert verdict.reason == reason, verdict


def test_countdown_accepts_any_correct_expression():
    answer = {"numbers": [3, 7, 25, 50], "target": 96}
    assert CD.verify("<answer>50+25+3*7</answer>", answer).correct
    assert CD.verify("<answer>(7*3) + 25 + 50 = 96</answer>", answer).correct
    assert CD.verify("<answer>7 × 3 + 50 + 25</answer>", answer).correct
    assert CD.verify("<answer>(50+25+7*3)/1</answer>", {"numbers": [1, 3, 7, 25, 50], "target": 96}).correct
    # exact rational arithmetic: 7/2*2 is 7
    assert CD.verify("<answer>7/2*2+3</answer>", {"numbers": [2, 2, 3, 7], "target": 10}).correct
    loose = {"numbers": [3, 7, 25, 50], "target": 75, "use_all": False}
    assert CD.verify("<answer>50+25</answer>", loose).correct
    assert not CD.verify("<answer>50+25+0</answer>", loose).correct  # 0 not given
    assert not CD.verify("<answer>50+25</answer>", {**loose, "ops": ["*"]}).correct  # + not allowed
    assert verifiers.get("countdown", strict=False).verify("50+25+3*7", answer).correct


def test_countdown_generator_knobs():
    gen = data_gen.get("countdown", numbers=5, max_value=9, max_target=200, ops="+,*")
    for seed in range(40):
        p = gen.generate(seed)
        a = p["answer"]
        assert len(a["numbers"]) == 5 and all(1 <= x <= 9 for x in a["numbers"])
        assert 1 <= a["target"] <= 200 and a["ops"] == ["+", "*"]
        assert "-" not in p["metadata"]["solution_expression"] and "/" not in p["metadata"]["solution_expression"]
    with pytest.raises(ConfigError, match="numbers must be an integer in 2..6"):
        data_gen.get("countdown", numbers=7)
    with pytest.raises(ConfigError, match="ops must be a non-empty subset"):
        data_gen.get("countdown", ops="^")


def test_countdown_canonical_ignores_number_order():
    gen = data_gen.get("countdown")
    p = gen.generate(0)
    q = json.loads(json.dumps(p))
    q["answer"]["numbers"] = list(reversed(q["answer"]["numbers"]))
    assert gen.canonical(p) == gen.canonical(q)


# --- graph coloring -------------------------------------------------------------------------

GC = verifiers.get("graph_coloring")
TRIANGLE_PLUS = {"nodes": 4, "edges": [[0, 1], [1, 2], [0, 2], [2, 3]], "k": 3}


def test_graph_coloring_accepts_any_proper_coloring():
    assert GC.verify("<answer>0:1, 1:2, 2:3, 3:1</answer>", TRIANGLE_PLUS).correct
    assert GC.verify("<answer>0:3, 1:1, 2:2, 3:3</answer>", TRIANGLE_PLUS).correct
    assert GC.verify('<answer>{"0": 2, "1": 3, "2": 1, "3": 2}</answer>', TRIANGLE_PLUS).correct
    assert GC.verify("<answer>0=1\n1=2\n2=3\n3=2</answer>", TRIANGLE_PLUS).correct


@pytest.mark.parametrize(
    "text,reason",
    [
        ("<answer>0:1, 1:2, 2:1, 3:2</answer>", "wrong_answer"),  # edge 0-2 inside color 1
        ("<answer>0:1, 1:2, 2:3</answer>", "missing_node"),
        ("<answer>0:1, 1:2, 2:3, 3:4</answer>", "invalid_color"),
        ("<answer>0:1, 1:2, 2:3, 3:0</answer>", "invalid_color"),
        ("<answer>0:1, 1:2, 2:3, 3:1, 4:2</answer>", "unknown_node"),
        ("<answer>0:1, 1:2, 2:3, 3:1, 3:2</answer>", "conflicting_colors"),
        ("<answer>red, green</answer>", "no_answer"),
        ("0:1, 1:2, 2:3, 3:1", "no_answer"),
    ],
)
def test_graph_coloring_near_misses(text, reason):
    verdict = GC.verify(text, TRIANGLE_PLUS)
    assert not verdict.correct and verdict.reward == 0.0
    assert verdict.reason == reason, verdict


def test_graph_coloring_generator_is_colorable_with_k():
    gen = data_gen.get("graph_coloring", nodes=9, edge_prob=0.8, k=3)
    for seed in range(30):
        p = gen.generate(seed)
        a = p["answer"]
        assert a["nodes"] == 9 and a["k"] == 3 and a["edges"]
        assert all(0 <= u < v < 9 for u, v in a["edges"]) and a["edges"] == sorted(a["edges"])
        assert GC.verify(p["metadata"]["worked_solution"], a).correct
    with pytest.raises(ConfigError, match="edge_prob must be a number in 0.05..1.0"):
        data_gen.get("graph_coloring", edge_prob=2)
    with pytest.raises(ConfigError, match="k must be an integer in 2..8"):
        data_gen.get("graph_coloring", k=1)
