"""One-call task registration: the README tutorial task end to end, user modules from the CLI and
from an entry point, dataset-backed registration, and the contract checker catching a bad task."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium
import pytest

import reasonrl
from reasonrl import tasks

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_task.py"
EXAMPLE_SPEC = "examples/my_task.py:task"
COMMANDS = ROOT / "reasonrl" / "commands"


def run(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_tutorial_is_short():
    assert len(EXAMPLE.read_text().splitlines()) <= 30


def test_readme_shows_the_tested_tutorial():
    """If the README carries the tutorial, it is this file, verbatim (so the tested code is the shown code)."""
    readme = ROOT / "README.md"
    if not readme.exists() or "examples/my_task.py" not in readme.read_text():
        pytest.skip("README.md does not include the tutorial yet")
    assert EXAMPLE.read_text().strip() in readme.read_text()


def test_tutorial_end_to_end(tmp_path):
    """Register (the example file), then `reasonrl gen`, `reasonrl verify`, reasonrl.make and gymnasium.make."""
    # gen: the user's task from its file, no other change.
    problems_path = tmp_path / "sort.jsonl"
    if (COMMANDS / "gen.py").exists():
        done = run([sys.executable, "-m", "reasonrl", "gen", "--task", EXAMPLE_SPEC, "--n", "6", "--seed", "1",
                    "--difficulty", "length=7", "--output", str(problems_path)])
        assert done.returncode == 0, done.stderr
        problems = [json.loads(line) for line in problems_path.read_text().splitlines()]
        assert len(problems) == 6 and all(p["task"] == "sort_numbers" and p["difficulty"] == {"length": 7} for p in problems)
    else:  # the gen command is not in this checkout: make the same rows in-process
        task = reasonrl.get_task(str(EXAMPLE) + ":task")
        problems = [task.make_generator(length=7).generate(seed) for seed in range(6)]
    # verify: half right, half wrong (the last number off by one).
    rows = []
    for i, p in enumerate(problems):
        answer = p["answer"] if i % 2 == 0 else p["answer"].rsplit(" ", 1)[0] + " 100"
        rows.append({"response": f"Sorted: <answer>{answer}</answer>", "answer": p["answer"], "id": p["id"]})
    input_path, output_path = tmp_path / "answers.jsonl", tmp_path / "scored.jsonl"
    input_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if (COMMANDS / "verify.py").exists():
        done = run([sys.executable, "-m", "reasonrl", "verify", "--task", EXAMPLE_SPEC, "--input", str(input_path),
                    "--output", str(output_path), "--workers", "1"])
        assert done.returncode == 0, done.stderr
        scored = [json.loads(line) for line in output_path.read_text().splitlines()]
        assert [r["verdict"]["correct"] for r in scored] == [True, False] * 3
        assert [r["id"] for r in scored] == [r["id"] for r in rows]  # other fields pass through
    # The Python side, in a fresh interpreter: register by importing the file, then both makes.
    script = f"""
        import runpy, gymnasium, reasonrl
        runpy.run_path({str(EXAMPLE)!r})
        env = reasonrl.make("sort_numbers", length=6)
        obs, info = env.reset(seed=0)
        assert info["difficulty"] == {{"length": 6}}, info
        assert env.step(info["problem"]["metadata"]["worked_solution"])[1] == 1.0
        env = gymnasium.make("reasonrl/SortNumbers-v0", length=3)
        obs, info = env.reset(seed=1)
        print(len(info["problem"]["answer"].split()), env.step("<answer>1 2 3</answer>")[1])
    """
    done = run([sys.executable, "-c", textwrap.dedent(script)])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "0.0"]


def test_task_from_module_path_on_the_cli(tmp_path):
    """`--task module:attr` with the module on PYTHONPATH (the form for an installed package)."""
    if not (COMMANDS / "verify.py").exists():
        pytest.skip("the verify command is not in this checkout")
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({"response": "<answer>1 2</answer>", "answer": "1 2"}) + "\n")
    done = run([sys.executable, "-m", "reasonrl", "verify", "--task", "my_task:task", "--input", str(data),
                "--output", str(tmp_path / "out.jsonl"), "--workers", "1"], env={"PYTHONPATH": str(ROOT / "examples")})
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "out.jsonl").read_text())["verdict"]["correct"] is True


def test_task_from_an_entry_point(tmp_path):
    """An installed package declaring `[project.entry-points."reasonrl.tasks"]` is loaded with the registry."""
    package = tmp_path / "fancytasks"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent("""
        import reasonrl
        from reasonrl.types import Verdict
        from reasonrl.verifiers import Verifier

        class Echo(Verifier):
            def verify(self, response, answer):
                ok = response.strip() == answer
                return Verdict(float(ok), ok, response.strip(), "ok" if ok else "wrong_answer")

        rows = [reasonrl.make_problem("e0", "echo", "Say hi", "hi")]
        reasonrl.register_task("echo", rows, Echo)
    """))
    dist = tmp_path / "fancytasks-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fancytasks\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[reasonrl.tasks]\necho = fancytasks\n")
    script = """
        import reasonrl, gymnasium
        assert "echo" in [t.name for t in reasonrl.list_tasks()]
        env = gymnasium.make("reasonrl/Echo-v0")
        env.reset(seed=0)
        print(env.step("hi")[1])
    """
    done = run([sys.executable, "-c", textwrap.dedent(script)], env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0"


def test_register_a_dataset_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [reasonrl.make_problem(f"q{i}", "test_qa", f"Say {i}", str(i)) for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Exact(reasonrl.verifiers.Verifier):
        def verify(self, response, answer):
            ok = response.strip() == answer
            return reasonrl.Verdict(float(ok), ok, response.strip(), "ok" if ok else "wrong_answer")

    task = reasonrl.register_task("test_qa", str(path), Exact)
    try:
        assert task.dataset == str(path) and task.generator is None
        env = gymnasium.make("reasonrl/TestQa-v0")
        _, info = env.reset(options={"index": 2})
        assert info["problem"] == rows[2] and env.step("2")[1] == 1.0
        assert reasonrl.envs.verify_problems(rows, ["0", "5", "2"], workers=0)[1].correct is False
    finally:
        tasks.unregister_task("test_qa")


def test_get_task_errors(tmp_path):
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        reasonrl.get_task(f"{EXAMPLE}:nope")
    with pytest.raises(ValueError, match="must name a Task"):
        reasonrl.get_task(f"{EXAMPLE}:SortConfig")
    with pytest.raises(ValueError, match="does not exist"):
        reasonrl.get_task(f"{tmp_path / 'missing.py'}:task")
    with pytest.raises(ModuleNotFoundError):
        reasonrl.get_task("no_such_module_xyz:task")
    # The same file under two spellings is imported once (no double registration).
    assert reasonrl.get_task(f"{EXAMPLE}:task") is reasonrl.get_task(EXAMPLE_SPEC)


def test_contract_checker_catches_broken_tasks(monkeypatch):
    """The contract checks fail on a verifier that accepts near-misses or garbage, and on a
    generator that is not deterministic (so a passing contract means something)."""
    import test_contract as contract

    example = reasonrl.get_task(f"{EXAMPLE}:task")
    module = sys.modules[example.generator.__module__]

    class Lenient(module.SortVerifier):
        def verify(self, response, answer):  # accepts numbers off by one
            verdict = super().verify(response, answer)
            got = (verdict.extracted or "").split()
            close = len(got) == len(answer.split()) and all(abs(int(a) - int(b)) <= 1 for a, b in zip(got, answer.split()))
            return reasonrl.Verdict(float(close), close, verdict.extracted, "ok" if close else verdict.reason)

    class Gullible(module.SortVerifier):
        def verify(self, response, answer):
            return reasonrl.Verdict(1.0, True, response, "ok")

    class Flaky(module.SortGenerator):
        calls = 0

        def generate(self, seed):
            Flaky.calls += 1
            return super().generate(seed + Flaky.calls)

    for name, generator, verifier, check, message in (
        ("test_lenient", module.SortGenerator, Lenient, contract.test_near_misses_score_zero, "near-miss"),
        ("test_gullible", module.SortGenerator, Gullible, contract.test_garbage_scores_zero, "garbage"),
        ("test_flaky", Flaky, module.SortVerifier, contract.test_determinism_under_seed, "same seed"),
    ):
        task = reasonrl.register_task(name, generator, verifier)
        try:
            monkeypatch.setitem(contract.TASKS, name, task)
            contract.test_oracle_scores_one(name)  # the oracle still passes...
            with pytest.raises(AssertionError, match=message):
                check(name)  # ...but the broken part is caught
        finally:
            tasks.unregister_task(name)
