"""`reasonrl verify` and `reasonrl tasks`: output rows, summary line, bad input, startup without torch."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reasonrl import verifiers
from reasonrl.cli import main
from reasonrl.commands import verify as verify_cmd
from reasonrl.tasks import register_task
from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(
    r"^verified (\d+) rows: accuracy (\d\.\d{3}|n/a), mean reward (-?\d+\.\d{3}|n/a), "
    r"(\d+\.\d|inf) rows/s, (\d+) timeouts, (\d+) errors$"
)


class EchoVerifier(Verifier):
    """Test-only task: correct when the stripped response equals the answer; "sleep" hangs."""

    name = "cli_echo"

    def __init__(self, ignore_case: bool = False):
        self.ignore_case = ignore_case

    def verify(self, response, answer):
        if response == "sleep":
            time.sleep(60)
        got, want = response.strip(), str(answer)
        if self.ignore_case:
            got, want = got.lower(), want.lower()
        ok = got == want
        return Verdict(float(ok), ok, extracted=response.strip(), reason="ok" if ok else "wrong_answer")


# Reached as --task test_cli_verify:ECHO_TASK from a subprocess (module:attr user tasks).
ECHO_TASK = register_task("_test_cli_echo", None, EchoVerifier, env_name="TestCliEcho", overwrite=True,
                          description="test-only echo task")


def write_jsonl(path: Path, rows) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def read_jsonl(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


ROWS = [
    {"id": 1, "response": "a", "answer": "a", "meta": {"k": [1, 2]}},
    {"id": 2, "response": "b", "answer": "a"},
    {"id": 3, "response": " c ", "answer": "c", "verdict": "old value is replaced"},
    {"id": 4, "response": "ü", "answer": "ü"},
]


def test_verify_writes_input_rows_plus_verdict_and_a_summary(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    rc = main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--output", str(out), "--workers", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["meta"] == {"k": [1, 2]} and rows[3]["response"] == "ü"
    assert [r["verdict"]["correct"] for r in rows] == [True, False, True, True]
    assert rows[1]["verdict"] == Verdict(0.0, False, extracted="b", reason="wrong_answer").to_dict()
    assert set(rows[0]) == {"id", "response", "answer", "meta", "verdict"}
    line = captured.out.strip()
    match = SUMMARY.match(line)
    assert match, line
    assert match.group(1) == "4" and match.group(2) == "0.750" and match.group(5) == "0" and match.group(6) == "0"
    assert "ü" in out.read_text(encoding="utf-8")  # written as UTF-8, not \\u escapes


def test_without_output_rows_go_to_stdout_and_summary_to_stderr(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:2])
    assert main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--workers", "0"]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["verdict"]["correct"] for r in rows] == [True, False]
    assert SUMMARY.match(captured.err.strip().splitlines()[-1])


def test_options_timeout_and_format(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [
        {"response": "A", "answer": "a"},
        {"response": "sleep", "answer": "a"},
        {"response": "<think>t</think><answer>a</answer>", "answer": "<answer>a</answer>"},
    ])
    out = tmp_path / "out.jsonl"
    rc = main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--output", str(out),
               "--timeout", "0.5", "--option", "ignore_case=true", "--workers", "2"])
    summary = capsys.readouterr().out.strip()
    assert rc == 0
    verdicts = [r["verdict"] for r in read_jsonl(out)]
    assert verdicts[0]["correct"] is True  # ignore_case=true reached the verifier as a bool
    assert verdicts[1]["reason"] == "timeout"
    assert SUMMARY.match(summary).group(5) == "1"

    src = write_jsonl(tmp_path / "in2.jsonl", [
        {"response": "a", "answer": "a"},
        {"response": "<think>t</think><answer>a</answer>", "answer": "<answer>a</answer>"},
    ])
    rc = main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--output", str(out),
               "--option", "format=multiply", "--workers", "0"])
    assert rc == 0
    verdicts = [r["verdict"] for r in read_jsonl(out)]
    assert verdicts[0]["reason"] == "format_error" and verdicts[0]["details"]["mode"] == "multiply"
    assert verdicts[1]["correct"] is True


BAD_INPUTS = [
    (b'{"response": "a", "answer": "a"}\n{"response": "b", "answer": \n', 2, "invalid JSON"),
    (b'{"response": "a", "answer": "a"}\n\n{"response": "\xff\xfe", "answer": "a"}\n', 3, "invalid UTF-8"),
    (b'{"response": "a", "answer": "a"}\n{"response": "b"}\n', 2, "field 'answer' is missing"),
    (b'{"answer": "a"}\n', 1, "field 'response' is missing"),
    (b'{"response": "a", "answer": "a"}\n["a", "a"]\n', 2, "expected a JSON object"),
    (b'{"response": null, "answer": "a"}\n', 1, "field 'response' must be a string, got null"),
    (b'{"response": "a", "answer": "a"}\n{"response": "a", "answer": NaN}\n', 2, "field 'answer' holds NaN"),
    (b'{"response": "a", "answer": "a", "meta": {"k": [1, -Infinity]}}\n', 1, "field 'meta.k.1' holds -Infinity"),
    (b'{"response": "a", "answer": 1e400}\n', 1, "field 'answer' holds 1e400"),
]


@pytest.mark.parametrize("content, line, message", BAD_INPUTS)
def test_bad_input_names_file_line_and_field_and_leaves_output_alone(tmp_path, capsys, content, line, message):
    src = tmp_path / "bad.jsonl"
    src.write_bytes(content)
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    rc = main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{src}: line {line}: " in err and message in err, err
    assert out.read_text() == "previous results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "out.jsonl"]  # no temp file left


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    calls = {"n": 0}
    real_dumps = json.dumps

    def failing_dumps(obj, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_dumps(obj, **kw)

    monkeypatch.setattr(verify_cmd.json, "dumps", failing_dumps)
    assert main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--output", str(out), "--workers", "0"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def _verify_to(output: Path | str, tmp_path: Path, rows=ROWS) -> int:
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    return main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--output", str(output), "--workers", "0"])


def test_output_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, capsys):
    target = tmp_path / "results" / "scored.jsonl"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    assert _verify_to(link, tmp_path) == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert [r["id"] for r in read_jsonl(target)] == [1, 2, 3, 4]
    assert sorted(p.name for p in target.parent.iterdir()) == ["scored.jsonl"]  # no temp file left beside it


def test_output_keeps_the_mode_of_the_file_it_replaces_and_new_files_follow_the_umask(tmp_path, capsys):
    kept = tmp_path / "shared.jsonl"
    kept.write_text("old\n")
    kept.chmod(0o664)
    assert _verify_to(kept, tmp_path) == 0
    assert kept.stat().st_mode & 0o777 == 0o664
    old_mask = os.umask(0o027)
    try:
        assert _verify_to(tmp_path / "new.jsonl", tmp_path) == 0
    finally:
        os.umask(old_mask)
    assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o640


def test_output_to_a_fifo_is_written_through_not_replaced(tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    # A non-blocking read end first: the writer's open never blocks, and a writer that replaced the
    # FIFO (the old behaviour) fails this test at once instead of hanging it.
    read_end = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        rc = _verify_to(fifo, tmp_path)
        received = os.read(read_end, 1 << 16)
    finally:
        os.close(read_end)
    assert rc == 0
    assert fifo.is_fifo()
    assert [json.loads(line)["id"] for line in received.decode().splitlines()] == [1, 2, 3, 4]


def test_output_to_dev_null_leaves_the_device_alone(tmp_path, capsys):
    import stat

    before = os.stat("/dev/null")
    assert stat.S_ISCHR(before.st_mode)
    assert _verify_to("/dev/null", tmp_path) == 0
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_ino == before.st_ino


def test_output_to_a_directory_is_a_clear_error(tmp_path, capsys):
    assert _verify_to(tmp_path, tmp_path) == 2
    assert f"cannot write {tmp_path}: is a directory" in capsys.readouterr().err


def test_a_lone_surrogate_is_written_as_its_json_escape(tmp_path, capsys):
    rows = [{"id": 1, "response": "\ud800", "answer": "\ud800"}, {"id": 2, "response": "é", "answer": "x"}]
    out = tmp_path / "out.jsonl"
    assert _verify_to(out, tmp_path, rows) == 0
    text = out.read_text(encoding="utf-8")  # valid UTF-8
    assert "\\ud800" in text and "é" in text  # escaped where it must be, readable elsewhere
    back = read_jsonl(out)
    assert back[0]["response"] == "\ud800" and back[0]["verdict"]["correct"] is True
    capsys.readouterr()
    assert main(["verify", "--task", "_test_cli_echo", "--input", str(tmp_path / "in.jsonl"), "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["response"] == "\ud800"


def test_unknown_task_lists_tasks_and_close_matches(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    rc = main(["verify", "--task", "_test_cli_ecko", "--input", str(src)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown task '_test_cli_ecko'" in err and "Did you mean _test_cli_echo" in err
    assert "Available tasks:" in err and "_test_cli_echo" in err


def test_bad_option_and_missing_file_are_clear(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:1])
    assert main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--option", "nope=1"]) == 2
    err = capsys.readouterr().err
    assert "bad --option" in err and "nope" in err and "valid options: ignore_case" in err
    assert main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--option", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["verify", "--task", "_test_cli_echo", "--input", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_parse_options_values():
    assert verify_cmd.parse_options(["a=1", "b=0.5", "c=true", "d=True", "e=logic-rl", "f=[1,2]", "g=", "h=a=b"]) == {
        "a": 1, "b": 0.5, "c": True, "d": True, "e": "logic-rl", "f": [1, 2], "g": "", "h": "a=b"}


def test_empty_input_gives_an_empty_output(tmp_path, capsys):
    src = tmp_path / "empty.jsonl"
    src.write_text("\n")
    out = tmp_path / "out.jsonl"
    assert main(["verify", "--task", "_test_cli_echo", "--input", str(src), "--output", str(out)]) == 0
    assert out.read_text() == ""
    assert capsys.readouterr().out.startswith("verified 0 rows: accuracy n/a")


def test_bundled_example_is_well_formed():
    rows = verify_cmd.read_rows(str(verify_cmd.example_path()))
    assert len(rows) == 20
    assert all(isinstance(r["answer"], str) and isinstance(r["expected_correct"], bool) for r in rows)
    assert 0 < sum(r["expected_correct"] for r in rows) < 20


def test_bundled_example_with_gsm8k_matches_its_labels(tmp_path, capsys):
    if "gsm8k" not in verifiers.names():
        pytest.skip("gsm8k verifier not in this checkout")
    out = tmp_path / "out.jsonl"
    assert main(["verify", "--example", "--output", str(out), "--workers", "2"]) == 0
    rows = read_jsonl(out)
    assert [r["verdict"]["correct"] for r in rows] == [r["expected_correct"] for r in rows]
    assert SUMMARY.match(capsys.readouterr().out.strip()).group(2) == "0.650"


def test_tasks_command_lists_registered_tasks(capsys):
    assert main(["tasks"]) == 0
    table = capsys.readouterr().out
    assert "TASK" in table and "GYMNASIUM ENV" in table
    assert "_test_cli_echo" in table and "reasonrl/TestCliEcho-v0" in table and "test-only echo task" in table
    assert main(["tasks", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    echo = next(r for r in rows if r["name"] == "_test_cli_echo")
    assert echo == {"name": "_test_cli_echo", "verifier": "cli_echo", "source": "dataset (bring your own)",
                    "env_id": "reasonrl/TestCliEcho-v0", "description": "test-only echo task"}


def test_verify_in_a_fresh_process_never_imports_torch(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "out.jsonl"
    code = (
        "import sys\n"
        "import reasonrl.commands.verify\n"
        "from reasonrl.cli import main\n"
        f"rc = main(['verify', '--task', 'test_cli_verify:ECHO_TASK', '--input', {str(src)!r}, '--output', {str(out)!r}])\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert SUMMARY.match(proc.stdout.splitlines()[0].strip())
    assert [r["verdict"]["correct"] for r in read_jsonl(out)] == [True, False, True, True]


def test_console_entry_runs_as_a_module(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ROWS[:2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "reasonrl", "verify", "--task", "test_cli_verify:ECHO_TASK",
                           "--input", str(src)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2 and SUMMARY.match(proc.stderr.strip().splitlines()[-1])
    help_text = subprocess.run([sys.executable, "-m", "reasonrl", "verify", "--help"], capture_output=True, text=True,
                               timeout=120).stdout
    assert "Without --output the rows go to stdout" in help_text


def test_boolean_options_parse_as_train_parses_them(tmp_path, capsys):
    """`--option strict=no` is not strict (a non-empty string is truthy in Python: it used to be),
    and a word that is no boolean is refused."""
    src = write_jsonl(tmp_path / "in.jsonl", [{"response": "The answer is 18.", "answer": "18"}])
    for value, accuracy in (("no", "1.000"), ("off", "1.000"), ("yes", "0.000"), ("1", "0.000")):
        assert main(["verify", "--task", "gsm8k", "--input", str(src), "--option", f"strict={value}", "--workers", "0"]) == 0
        assert f"accuracy {accuracy}" in capsys.readouterr().err, value
    assert main(["verify", "--task", "gsm8k", "--input", str(src), "--option", "strict=maybe"]) == 2
    assert "--option strict: expected true/false, got 'maybe'" in capsys.readouterr().err
