"""``reasonrl gen``: files, determinism across workers, splits, levels, formats, errors, user generators."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from reasonrl.cli import main
from reasonrl.data_gen import export
from reasonrl.data_gen.dataset import canonical_key


def gen(*args: str) -> int:
    return main(["gen", *args])


def test_jsonl_with_difficulty(tmp_path, capsys):
    out = tmp_path / "kk.jsonl"
    assert gen("--task", "kk", "--n", "20", "--seed", "3", "--difficulty", "people=5", "depth=3", "--output", str(out)) == 0
    rows = export.read_rows(out)
    assert len(rows) == 20 and all(r["difficulty"] == {"people": 5, "depth": 3, "width": 2} for r in rows)
    assert "generated 20 kk problems" in capsys.readouterr().out


def test_same_bytes_for_any_number_of_workers(tmp_path):
    paths = []
    for workers in ("1", "2"):
        path = tmp_path / f"w{workers}.jsonl"
        assert gen("--task", "kk", "--n", "400", "--seed", "9", "--workers", workers, "--output", str(path)) == 0
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    parquet = [tmp_path / f"w{w}.parquet" for w in ("1", "2")]
    for w, path in zip(("1", "2"), parquet):
        assert gen("--task", "arith", "--n", "300", "--workers", w, "--output", str(path)) == 0
    assert export.read_rows(parquet[0]) == export.read_rows(parquet[1])


def test_splits_go_to_separate_files_and_share_nothing(tmp_path):
    out = tmp_path / "kk.parquet"
    assert gen("--task", "kk", "--n", "50", "--split", "train=0.8", "test=0.2", "--output", str(out), "--format", "verl") == 0
    train = export.read_rows(tmp_path / "kk.train.parquet")
    test = export.read_rows(tmp_path / "kk.test.parquet")
    assert (len(train), len(test)) == (40, 10)
    assert {r["extra_info"]["split"] for r in test} == {"test"}
    assert not {r["extra_info"]["id"] for r in train} & {r["extra_info"]["id"] for r in test}
    assert gen("--task", "kk", "--n", "50", "--split", "train=30", "test=10", "--output", str(out)) == 2  # sizes != n


def test_levels_make_a_mix(tmp_path):
    out = tmp_path / "mix.jsonl"
    args = ["--task", "kk", "--n", "20", "--level", "people=2", "3", "--level", "people=3;depth=3", "1", "--output", str(out)]
    assert gen(*args) == 0
    rows = export.read_rows(out)
    assert [r["difficulty"]["people"] for r in rows] == [2] * 15 + [3] * 5
    assert all(r["difficulty"]["depth"] == 3 for r in rows[15:])
    assert len({canonical_key(r) for r in rows}) == 20


def test_trl_format_to_stdout(capsys):
    assert gen("--task", "arith", "--n", "3", "--output", "-", "--format", "trl") == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(rows) == 3 and set(rows[0]) >= {"prompt", "answer"}
    assert "generated 3" in captured.err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task", "nope"], "unknown task 'nope'; tasks with a generator: arith, countdown, graph_coloring, kk"),
        (["--task", "kk", "--difficulty", "peopel=3"], "unknown difficulty key 'peopel' for kk (did you mean people?); valid keys: people, depth, width, roles"),
        (["--task", "kk", "--difficulty", "people=many"], "people: expected int, got 'many'"),
        (["--task", "kk", "--difficulty", "people=99"], "people must be an integer in 2..12"),
        (["--task", "kk", "--difficulty", "people"], "expected KEY=VALUE"),
        (["--task", "gsm8k"], "backed by a dataset"),
    ],
)
def test_errors_name_the_problem(tmp_path, capsys, args, message):
    assert gen(*args, "--n", "2", "--output", str(tmp_path / "x.jsonl")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_bad_output_extension(tmp_path, capsys):
    assert gen("--task", "kk", "--n", "2", "--output", str(tmp_path / "x.txt")) == 2
    assert ".jsonl or .parquet" in capsys.readouterr().err


USER_GENERATOR = textwrap.dedent(
    '''
    import random
    from dataclasses import dataclass

    from reasonrl.data_gen import ConfigError, Generator, register
    from reasonrl.types import make_problem


    @dataclass(frozen=True)
    class ParityConfig:
        bits: int = 8

        def __post_init__(self):
            if not 1 <= self.bits <= 64:
                raise ConfigError(f"bits must be in 1..64, got {self.bits}")


    @register("parity_user_test")
    class ParityGenerator(Generator):
        Config = ParityConfig
        verifier = "arith"

        def generate(self, seed):
            rng = random.Random(seed)
            word = "".join(rng.choice("01") for _ in range(self.config.bits))
            answer = str(word.count("1") % 2)
            return make_problem(f"parity-{word}", "parity_user_test", f"Parity of {word}?", answer,
                                {"bits": self.config.bits}, {"worked_solution": f"<answer>{answer}</answer>"})
    '''
)


def test_user_generator_works_with_gen(tmp_path, capsys, monkeypatch):
    from reasonrl.data_gen import base

    base.names()  # load the built-ins, then keep the user's registration local to this test
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    module = tmp_path / "my_parity.py"
    module.write_text(USER_GENERATOR)
    out = tmp_path / "p.jsonl"
    assert gen("--import", str(module), "--task", "parity_user_test", "--n", "30", "--difficulty", "bits=12",
               "--output", str(out)) == 0
    rows = export.read_rows(out)
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30  # deduplicated by the default canonical form
    assert all(len(r["id"]) == len("parity-") + 12 for r in rows)
    from reasonrl import verifiers

    assert all(verifiers.get("arith").verify(r["metadata"]["worked_solution"], r["answer"]).correct for r in rows)
    # FILE.py:Class works without --import, and bad knobs of the user's config are reported
    out2 = tmp_path / "q.parquet"
    assert gen("--task", f"{module}:ParityGenerator", "--n", "5", "--difficulty", "bits=4", "--output", str(out2)) == 0
    assert [r["difficulty"]["bits"] for r in export.read_rows(out2)] == [4] * 5
    assert gen("--task", f"{module}:ParityGenerator", "--n", "5", "--difficulty", "bits=0", "--output", str(out2)) == 2
    assert "bits must be in 1..64" in capsys.readouterr().err


def test_console_entry_point_is_deterministic_across_processes(tmp_path):
    """Two fresh interpreters with different string-hash seeds write the same bytes."""
    import os

    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"a{hash_seed}.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "reasonrl", "gen", "--task", "kk", "--n", "40", "--difficulty", "roles=random",
             "--output", str(out)],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
        assert done.returncode == 0, done.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 40


def test_closed_pipe_ends_quietly():
    """`reasonrl gen --output - | head` must not end in a BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "reasonrl", "gen", "--task", "arith", "--n", "20000", "--output", "-", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, like `head -1`
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"{") and "Traceback" not in stderr and "BrokenPipe" not in stderr


# Today's bytes for these arguments, recorded before gen streamed its rows: streaming must not change them.
STREAMED_BYTES = {
    "problem": "e153b3c2b536f65ddff410b708ad635e01d391ff9bf38a2ccc5ade2121e3c78b",
    "verl": "0b352dc356077050540e8f64b276af5b9fdfea8067d7f46435baedddf075f899",
    "trl": "a4bf26ebf69e28ee31b13495a9f2e2577426151090548af0659e0fa29acd92a9",
}


@pytest.mark.parametrize("layout", sorted(STREAMED_BYTES))
def test_streamed_output_has_the_same_bytes_and_rows_as_before(tmp_path, layout):
    import hashlib

    jsonl, parquet = tmp_path / "kk.jsonl", tmp_path / "kk.parquet"
    for path in (jsonl, parquet):
        assert gen("--task", "kk", "--n", "50", "--seed", "3", "--format", layout, "--output", str(path)) == 0
    assert hashlib.sha256(jsonl.read_bytes()).hexdigest() == STREAMED_BYTES[layout]
    assert export.read_rows(parquet) == export.read_rows(jsonl)


def test_streamed_splits_and_levels_keep_their_bytes(tmp_path):
    import hashlib

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    out = tmp_path / "sp.jsonl"
    assert gen("--task", "kk", "--n", "40", "--seed", "3", "--split", "train=30", "test=10", "--output", str(out)) == 0
    assert digest(tmp_path / "sp.train.jsonl") == "1e5d610f8695288bb8f2635d729ea56b4483907b475d1eec2a11eb3ec049466d"
    assert digest(tmp_path / "sp.test.jsonl") == "ef704db1ef7ea5b3db6e9bdcf13c73fa15b9f027ca956db47276f06094e08841"
    mix = tmp_path / "lv.jsonl"
    assert gen("--task", "kk", "--n", "40", "--level", "people=3", "0.5", "--level", "people=4", "0.5", "--output", str(mix)) == 0
    assert digest(mix) == "a2c3bfdf63999069ad495b0428b17f19ae0598311fe2de2f2ba2d3de2ddc99ff"


# A generator that looks at its own output while it runs: each row carries a 64 KB payload, and
# at row 600, most of the rows made so far must already be in the temporary output file.
WATCHING_GENERATOR = textwrap.dedent(
    '''
    import os
    import random
    from dataclasses import dataclass

    from reasonrl.data_gen import Generator
    from reasonrl.types import make_problem


    @dataclass(frozen=True)
    class WatchConfig:
        folder: str = ""


    class WatchingGenerator(Generator):
        Config = WatchConfig
        canonical_ids = True  # one puzzle per seed: deduplicate on the id
        made = 0

        def generate(self, seed):
            type(self).made += 1
            if type(self).made == 600:
                written = sum(
                    os.path.getsize(os.path.join(self.config.folder, name))
                    for name in os.listdir(self.config.folder) if name.endswith(".tmp")
                )
                assert written > 3 * 2**20, f"only {written} bytes in the output after 599 rows"
            payload = random.Random(seed).randbytes(32768).hex()  # does not compress away
            return make_problem(f"w-{seed}", "watch", "Say it.", "1", {}, {"payload": payload})
    '''
)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_rows_reach_the_output_while_generating_and_memory_stays_bounded(tmp_path, suffix):
    import tracemalloc

    module = tmp_path / "watching.py"
    module.write_text(WATCHING_GENERATOR)
    folder = tmp_path / "out"
    folder.mkdir()
    out = folder / f"w{suffix}"
    n = 1500  # 1500 rows of 64 KB: about 100 MB if they were held
    if suffix == ".parquet":
        export_group = export.PARQUET_ROW_GROUP
        export.PARQUET_ROW_GROUP = 100  # row groups of 100 rows reach the file as they fill
    tracemalloc.start()
    try:
        assert gen("--task", f"{module}:WatchingGenerator", "--n", str(n), "--difficulty", f"folder={folder}",
                   "--output", str(out)) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if suffix == ".parquet":
            export.PARQUET_ROW_GROUP = export_group
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MiB while writing {n} rows of 64 KB"
    rows = export.read_rows(out)
    assert len(rows) == n and len({r["id"] for r in rows}) == n
    assert [p.name for p in folder.iterdir()] == [out.name]  # the temporary file became the output


def test_a_directory_as_output_is_refused_before_generating(tmp_path, capsys):
    folder = tmp_path / "data.jsonl"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    assert gen("--task", "kk", "--n", "5", "--output", str(folder)) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "data.jsonl" in err and "Traceback" not in err
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["data.jsonl"]
    # a split's file that is a directory is refused too, and no split is written
    (tmp_path / "kk.test.jsonl").mkdir()
    assert gen("--task", "kk", "--n", "10", "--split", "train=5", "test=5", "--output", str(tmp_path / "kk.jsonl")) == 2
    assert "kk.test.jsonl' is a directory" in capsys.readouterr().err
    assert not (tmp_path / "kk.train.jsonl").exists()


def test_output_through_a_symlink_and_to_a_device(tmp_path):
    target = tmp_path / "real.jsonl"
    target.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    assert gen("--task", "kk", "--n", "5", "--output", str(link)) == 0
    assert link.is_symlink() and len(export.read_rows(target)) == 5
    # /dev/null is written through, never replaced (its name ends in neither extension: a link to it does)
    null = tmp_path / "null.jsonl"
    null.symlink_to("/dev/null")
    assert gen("--task", "kk", "--n", "5", "--output", str(null)) == 0
    assert null.is_symlink() and os.path.realpath(null) == "/dev/null"
