"""Knights & Knaves: solver, generator and the ``kk`` verifier."""
from __future__ import annotations

import ast
import collections
import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrl import data_gen, verifiers
from reasonrl.data_gen import kk_solver
from reasonrl.data_gen import knights_knaves as kk
from reasonrl.data_gen.base import ConfigError
from reasonrl.verifiers.knights_knaves import ROLE_PAIRS, parse_claims, render_solution

from conftest import conformance_path, read_jsonl

# --- solver ---------------------------------------------------------------------------------


def _statement(draw_depth: int, n: int):
    leaf = st.tuples(st.sampled_from(["telling-truth", "lying"]), st.integers(0, n - 1)).map(list)
    if draw_depth <= 1:
        return leaf
    sub = _statement(draw_depth - 1, n)
    return st.one_of(
        leaf,
        sub.map(lambda s: ["not", s]),
        st.lists(sub, min_size=2, max_size=3).map(lambda a: ["and", *a]),
        st.lists(sub, min_size=2, max_size=3).map(lambda a: ["or", *a]),
        st.tuples(sub, sub).map(lambda a: ["->", *a]),
        st.tuples(sub, sub).map(lambda a: ["<=>", *a]),
    )


@st.composite
def puzzles(draw):
    n = draw(st.integers(2, 6))
    return [draw(_statement(3, n)) for _ in range(n)]


@settings(max_examples=80, deadline=None)
@given(puzzles())
def test_bitmask_solver_matches_brute_force(statements):
    assert kk_solver.solve(statements) == kk_solver.solve_bruteforce(statements)


def test_truth_mask_matches_tree_walk():
    rng = random.Random(0)
    n = 5
    masks, full = kk_solver.knight_masks(n)
    for _ in range(200):
        tree, mask = kk._sample_statement(3, n, 3, rng.random, masks, full)
        assert kk_solver.truth_mask(tree, n) == mask
        for a in range(1 << n):
            assert bool(mask >> a & 1) == kk_solver.evaluate(tree, kk_solver.assignment_to_bools(a, n))


def test_solver_rejects_malformed_statements():
    with pytest.raises(kk_solver.StatementError, match="person index"):
        kk_solver.truth_mask(["telling-truth", 3], 3)
    with pytest.raises(kk_solver.StatementError, match="unknown operator"):
        kk_solver.truth_mask(["xor", ["lying", 0], ["lying", 1]], 2)
    with pytest.raises(kk_solver.StatementError, match="two operands"):
        kk_solver.truth_mask(["->", ["lying", 0]], 2)


@pytest.mark.conformance
def test_solver_agrees_with_all_logic_rl_puzzles():
    rows = read_jsonl(conformance_path("kk", "kk_test_3to7ppl.jsonl"))
    assert len(rows) == 500
    for row in rows:
        statements = kk_solver.parse_statements(row["statements"])  # Logic-RL's tuple-literal strings
        assert len(statements) == len(row["names"])
        assert kk_solver.solve(statements) == [row["solution"]], row["index"]


# --- generator ------------------------------------------------------------------------------


@pytest.mark.parametrize("people,depth,width", [(2, 2, 2), (3, 2, 2), (4, 2, 3), (5, 3, 2), (8, 2, 2), (6, 4, 3)])
def test_every_puzzle_has_exactly_the_stored_solution(people, depth, width):
    gen = data_gen.get("kk", people=people, depth=depth, width=width)
    for seed in range(15 if people < 8 else 5):
        p = gen.generate(seed)
        statements = p["metadata"]["statements"]
        assert len(statements) == people == len(p["answer"]["names"]) == len(set(p["answer"]["names"]))
        assert kk_solver.solve_bruteforce(statements) == [p["answer"]["solution"]]
        assert max(kk_solver.depth_of(s) for s in statements) <= depth
        for s in statements:
            for node in _nodes(s):
                if node[0] in ("and", "or"):
                    assert 2 <= len(node) - 1 <= width
        assert p["difficulty"] == {"people": people, "depth": depth, "width": width}


def _nodes(tree):
    yield tree
    if tree[0] not in kk_solver.LEAVES:
        for child in tree[1:]:
            yield from _nodes(child)


def test_deterministic_and_seed_dependent():
    gen = data_gen.get("kk", people=5)
    a = [json.dumps(gen.generate(s)) for s in range(20)]
    b = [json.dumps(data_gen.get("kk", people=5).generate(s)) for s in range(20)]
    assert a == b
    assert len(set(a)) == 20


def test_table_sampler_matches_recursive_sampler():
    """The precomputed statement table must draw from the same distribution as the recursive sampler."""
    n, depth, width = 3, 2, 3
    table = kk._statement_table(n, depth, width)
    expected = collections.Counter()
    for statement, weight in zip(table.statements, table.weights):
        expected[statement.tree] += weight / table.total
    rng = random.Random(1)
    masks, full = kk_solver.knight_masks(n)
    draws = 60000
    seen = collections.Counter(kk._sample_statement(depth, n, width, rng.random, masks, full)[0] for _ in range(draws))
    assert set(seen) <= set(expected)  # the table covers everything the recursive sampler makes
    assert len(expected) == kk._StatementTable.size(n, depth, width)
    total_variation = 0.5 * sum(abs(seen[t] / draws - p) for t, p in expected.items())
    assert total_variation < 0.05, total_variation
    # and the per-target split tables hold exactly the statements of the right truth value
    for target in range(1 << n):
        for value in (0, 1):
            statements, cumulative, total = table.matching(target)[value]
            assert all((s.mask >> target & 1) == value for s in statements)
            assert abs(total - sum(w for s, w in zip(table.statements, table.weights) if (s.mask >> target & 1) == value)) < 1e-9


def test_solutions_are_balanced():
    gen = data_gen.get("kk", people=4)
    knights = sum(sum(gen.generate(s)["answer"]["solution"]) for s in range(300))
    assert 0.4 < knights / 1200 < 0.6


def test_prompt_states_format_and_renders_statements_faithfully():
    gen = data_gen.get("kk", people=4, depth=3, width=3, roles="random")
    for seed in range(40):
        p = gen.generate(seed)
        text = p["prompt"][0]["content"]
        good, bad = p["answer"]["roles"]
        assert (good, bad) in ROLE_PAIRS
        assert "<answer>(1) NAME is ROLE\n(2) NAME is ROLE\n...</answer>" in text
        assert f'ROLE is "{kk._article(good)}" or "{kk._article(bad)}"' in text
        for name in p["answer"]["names"]:
            assert name in text
        # Each statement's third-person English appears in the worked solution or is spoken in the prompt.
        assert p["metadata"]["worked_solution"].endswith(
            "<answer>" + render_solution(p["answer"]["names"], p["answer"]["solution"], (good, bad)) + "</answer>"
        )


def test_roles_knob_and_validation():
    p = data_gen.get("kk", roles="saint/sinner").generate(0)
    assert p["answer"]["roles"] == ["saint", "sinner"]
    assert "saint" in p["prompt"][0]["content"] and "knight" not in p["prompt"][0]["content"]
    with pytest.raises(ConfigError, match="people must be an integer in 2..12"):
        data_gen.get("kk", people=1)
    with pytest.raises(ConfigError, match="depth must be an integer in 2..5"):
        data_gen.get("kk", depth=1)
    with pytest.raises(ConfigError, match="width"):
        data_gen.get("kk", width=1)
    with pytest.raises(ConfigError, match="roles must be one of knight/knave, saint/sinner"):
        data_gen.get("kk", roles="elf/orc")
    with pytest.raises(ConfigError, match="valid keys: people, depth, width, roles"):
        data_gen.get("kk", n_people=3)


def test_worked_solution_steps_are_true():
    """Every "X is a knight/knave" conclusion in the deduction matches the solution, and each
    "If/Suppose X were/is R ... So X is R'" flips the role."""
    gen = data_gen.get("kk", people=5, depth=2)
    for seed in range(60):
        p = gen.generate(seed)
        names, solution = p["answer"]["names"], p["answer"]["solution"]
        truth = {n: ("a knight" if k else "a knave") for n, k in zip(names, solution)}
        steps = p["metadata"]["worked_solution"].split("\n<answer>")[0].splitlines()
        settled = set()
        for line in steps:
            match = re.search(r"So (\w+) is (an? \w+)\.$", line)
            if match:  # a case step: the conclusion is the true role
                assert truth[match.group(1)] == match.group(2), line
                supposed = re.match(r"Suppose (\w+) is (an? \w+)", line)
                assert supposed.group(1) == match.group(1) and supposed.group(2) != match.group(2)
                settled.add(match.group(1))
            else:  # a direct step ends with "hence X is R [and Y is R]" / "only if X is R ..."
                tail = re.split(r"hence |only if ", line)[-1].rstrip(".")
                for name, role in re.findall(r"(\w+) is (an? \w+)", tail):
                    assert truth[name] == role, line
                    settled.add(name)
        assert settled == set(names)


def test_canonical_form_ignores_names_wording_and_operand_order():
    gen = data_gen.get("kk", people=3)
    p = gen.generate(0)
    q = json.loads(json.dumps(p))
    q["answer"]["names"] = ["X", "Y", "Z"]
    q["prompt"][0]["content"] = "different text"
    for s in q["metadata"]["statements"]:
        if s[0] in ("and", "or", "<=>"):
            s[1:] = list(reversed(s[1:]))
    assert gen.canonical(p) == gen.canonical(q)
    assert p["id"] == "kk-" + __import__("hashlib").sha1(gen.canonical(p).encode()).hexdigest()[:16]


# --- verifier -------------------------------------------------------------------------------

ANSWER = {"names": ["Alice", "Bob", "Carol"], "solution": [True, False, True]}
V = verifiers.get("kk")


def test_verifier_accepts_gold_in_various_layouts():
    for text in [
        "<answer>(1) Alice is a knight\n(2) Bob is a knave\n(3) Carol is a knight</answer>",
        "<think>hmm</think><answer>Alice is a knight, Bob is a knave, and Carol is a knight.</answer>",
        "<answer>alice is a Knight; BOB IS A KNAVE; Carol is knight</answer>",
        "Alice is a knight, Bob is a knave and Carol is a knight.",  # no tag: whole text
        "<answer>(1) Alice is a knight\n(2) Bob is a knave\n(3) Carol is a knight\n(1) Alice is a knight</answer>",
    ]:
        verdict = V.verify(text, ANSWER)
        assert verdict.correct and verdict.reward == 1.0, (text, verdict)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("<answer>(1) Alice is a knight\n(2) Bob is a knight\n(3) Carol is a knight</answer>", "wrong_answer"),
        ("<answer>(1) Alice is a knight\n(2) Bob is a knave</answer>", "missing_person"),
        ("<answer>Alice is a knight, Bob is a knave, Bob is a knight, Carol is a knight</answer>", "conflicting_roles"),
        ("<answer>Alice is a knight, Bob is a knave, Carol is a knight, Dave is a knave</answer>", "unknown_name"),
        ("<answer>I am not sure</answer>", "no_answer"),
        ("", "no_answer"),
        # The tag wins over the reasoning around it.
        ("Alice is a knight, Bob is a knave, Carol is a knight. <answer>Alice is a knave, Bob is a knave, Carol is a knight</answer>",
         "wrong_answer"),
        # Reasoning aloud without a tag names both roles for someone.
        ("Suppose Alice is a knave... no. So Alice is a knight, Bob is a knave, Carol is a knight.", "conflicting_roles"),
        # Other role words do not count for a knight/knave puzzle.
        ("<answer>Alice is a saint, Bob is a sinner, Carol is a saint</answer>", "no_answer"),
        # A hedge names no role.
        ("<answer>Alice: knight or knave\nBob: knave\nCarol: knight</answer>", "missing_person"),
        ("<answer>Alice is a knight or a knave, Bob is a knave, Carol is a knight</answer>", "missing_person"),
        ("<answer>Alice: knight/knave, Bob: knave, Carol: knight</answer>", "missing_person"),
        # The same person named twice with different roles, in either form.
        ("<answer>Alice: knight\nAlice: knave\nBob: knave\nCarol: knight</answer>", "conflicting_roles"),
        ("<answer>**Alice** is a **knight**, Alice: knave, Bob: knave, Carol: knight</answer>", "conflicting_roles"),
        # A negation is no claim (not read as the other role).
        ("<answer>Alice is **not** a knight, Bob is a knave, Carol is a knight</answer>", "missing_person"),
        ("<answer>Alice is not a knave, Bob is a knave, Carol is a knight</answer>", "missing_person"),
        # A wrong role in markdown is still wrong.
        ("<answer>**Alice**: knave, **Bob**: knave, **Carol**: knight</answer>", "wrong_answer"),
        # A word before a colon that is no one in the puzzle claims nothing.
        ("<answer>Answer: knight</answer>", "no_answer"),
    ],
)
def test_verifier_near_misses(text, reason):
    verdict = V.verify(text, ANSWER)
    assert not verdict.correct and verdict.reward == 0.0
    assert verdict.reason == reason, verdict


@pytest.mark.parametrize(
    "text",
    [
        "<answer>**Alice** is a **knight**, **Bob** is a **knave**, **Carol** is a **knight**</answer>",
        "<answer>*Alice* is a *knight*; _Bob_ is a __knave__; `Carol` is a `knight`</answer>",
        "<answer>Alice: knight\nBob: knave\nCarol: knight</answer>",
        "<answer>(1) **Alice**: Knight\n(2) **Bob**: a knave\n(3) **Carol**: **knight**</answer>",
        "<answer>- Alice: knight\n- Bob is a knave\n- Carol : Knight</answer>",
        "Final answer: **Alice** is a **knight**, **Bob** is a **knave**, **Carol** is a **knight**.",
    ],
)
def test_verifier_reads_markdown_emphasis_and_the_colon_form(text):
    verdict = V.verify(text, ANSWER)
    assert verdict.correct and verdict.reason == "ok", verdict


def test_verifier_role_words_from_answer():
    answer = {**ANSWER, "roles": ["truth-teller", "liar"]}
    good = "<answer>(1) Alice is a truth-teller\n(2) Bob is a liar\n(3) Carol is a truth-teller</answer>"
    assert V.verify(good, answer).correct
    assert not V.verify(good.replace("Bob is a liar", "Bob is a truth-teller"), answer).correct
    assert not V.verify("<answer>Alice is a knight, Bob is a knave, Carol is a knight</answer>", answer).correct
    angel = {**ANSWER, "roles": ["angel", "devil"]}
    assert V.verify("<answer>Alice is an angel, Bob is a devil, Carol is an angel</answer>", angel).correct
    # answers may arrive as JSON text (Parquet / verl ground_truth)
    assert V.verify(good, json.dumps(answer)).correct


def test_partial_credit_is_opt_in():
    text = "<answer>(1) Alice is a knight\n(2) Bob is a knight\n(3) Carol is a knight</answer>"
    assert V.verify(text, ANSWER).reward == 0.0
    partial = verifiers.get("kk", partial=True).verify(text, ANSWER)
    assert partial.reward == pytest.approx(2 / 3) and not partial.correct
    both = verifiers.get("kk", partial=True).verify("<answer>Alice is a knight, Alice is a knave</answer>", ANSWER)
    assert both.reward == 0.0


def test_verifier_rejects_malformed_answers():
    with pytest.raises(ValueError, match="names"):
        V.verify("x", {"solution": [True]})
    with pytest.raises(ValueError, match="equal"):
        V.verify("x", {"names": ["A", "B"], "solution": [True]})


def test_names_are_whole_words():
    answer = {"names": ["Will", "William"], "solution": [True, False]}
    assert V.verify("<answer>Will is a knight, William is a knave</answer>", answer).correct
    assert V.verify("<answer>William is a knave, Will is a knight</answer>", answer).correct
    assert V.verify("<answer>Will is a knight, Williams is a knave</answer>", answer).reason == "unknown_name"


def _gold_texts(row):
    names, solution = row["names"], row["solution"]
    return [
        "<answer>" + row["solution_text_format"] + "</answer>",
        "<answer>" + row["solution_text"] + "</answer>",
        "<answer>" + render_solution(names, solution) + "</answer>",
    ]


@pytest.mark.conformance
def test_verifier_on_all_logic_rl_gold_solutions_and_every_flip():
    rows = read_jsonl(conformance_path("kk", "kk_test_3to7ppl.jsonl"))
    for row in rows:
        answer = {"names": row["names"], "solution": row["solution"]}
        for text in _gold_texts(row):
            assert V.verify(text, answer).correct, (row["index"], text)
        for i in range(len(row["names"])):
            flipped = list(row["solution"])
            flipped[i] = not flipped[i]
            text = "<answer>" + render_solution(row["names"], flipped) + "</answer>"
            verdict = V.verify(text, answer)
            assert not verdict.correct and verdict.reason == "wrong_answer", (row["index"], i)
        # and the gold text judged against a flipped answer
        flipped_answer = {"names": row["names"], "solution": [not row["solution"][0]] + row["solution"][1:]}
        assert not V.verify(_gold_texts(row)[0], flipped_answer).correct


def test_parse_claims_reports_unknown_and_ignores_pronouns():
    claims, unknown = parse_claims("He is a knight. Zed is a knave. Alice is a knave.", ["Alice"])
    assert claims == {"Alice": {False}} and unknown == ["Zed"]


def test_logic_rl_statement_strings_parse_safely():
    assert kk_solver.parse_statements("(('lying', 0), ('telling-truth', 1))") == [["lying", 0], ["telling-truth", 1]]
    with pytest.raises(kk_solver.StatementError):
        kk_solver.parse_statements("__import__('os').system('true')")
    assert ast.literal_eval("(1,)") == (1,)  # sanity: literal_eval is what parse_statements uses
