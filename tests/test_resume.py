"""Exact resume: a run killed with SIGKILL and restarted with the same command ends with the metrics
of an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import torch

from reasonrl.trainers.checkpoint import latest_checkpoint, list_checkpoints, restore_checkpoint, save_checkpoint

MICRO = [
    "tiny.hidden_size=32", "tiny.num_layers=2", "tiny.bpe_merges=32", "sft.max_steps=10", "sft.batch_size=8",
    "sft.target_accuracy=0", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_tokens=6",
    "eval.problems=8", "eval.samples=2", "sft.eval_problems=4", "steps=40", "save_every=5", "progress=false",
    "optim.lr=3e-3", "algorithm.kl_coef=0.01",
    # One torch thread: on a loaded machine a multithreaded reduction may split its work
    # differently between the two runs (last-digit differences); resuming is what is tested here.
    "threads=1",
]
# Wall-clock measurements differ between runs by nature; everything else must match exactly.
TIMING_KEYS = {"tokens_per_s", "time_generate", "time_verify", "time_train", "elapsed_rl_s"}


def train_command(out: Path, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", "reasonrl", "train", f"output_dir={out}", *MICRO, *extra]


def env(cache: Path) -> dict[str, str]:
    return {**os.environ, "REASONRL_CACHE": str(cache), "OMP_WAIT_POLICY": "PASSIVE"}


def read_metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def comparable(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in metrics]


# A hook with state of its own (an average over steps, logged every step): a resume that did not
# restore it would log different numbers after the restart.
STATEFUL_HOOK = """
from reasonrl.trainers.hooks import Hook


class EntropyAverage(Hook):
    def __init__(self, decay=0.7):
        self.decay, self.average = decay, 0.0

    def after_step(self, trainer, step, metrics):
        self.average = self.decay * self.average + (1 - self.decay) * metrics["entropy"]
        metrics["entropy_average"] = self.average

    def state_dict(self):
        return {"average": self.average}

    def load_state_dict(self, state):
        self.average = state["average"]
"""


def variant_args(variant: str, tmp_path: Path) -> list[str]:
    if variant == "stateful_hooks":
        (tmp_path / "hooks.py").write_text(STATEFUL_HOOK)
        # A soft reference sync every 3 steps (the reference drifts: it must be checkpointed too).
        return [f"hooks=[{{name: reference_sync, options: {{every: 3, alpha: 0.5}}}}, {{name: {tmp_path / 'hooks.py'}:EntropyAverage}}]"]
    if variant == "separate_critic":
        return ["algorithm.estimator=ppo", "critic.model=policy", "critic.lr=1e-3", "optim.minibatch_size=8"]
    return []


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["plain", "stateful_hooks", "separate_critic"])
def test_sigkill_then_rerun_matches_uninterrupted(tmp_path, variant):
    cache = tmp_path / "cache"
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = variant_args(variant, tmp_path)
    subprocess.run(train_command(straight, extra), env=env(cache), check=True, capture_output=True, timeout=600)

    proc = subprocess.Popen(train_command(killed, extra), env=env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    try:
        # Kill it between checkpoints, after the second one: steps 11.. are logged but not saved.
        while time.time() < deadline:
            lines = (killed / "metrics.jsonl").read_text().count("\n") if (killed / "metrics.jsonl").exists() else 0
            if lines >= 12 and len(list_checkpoints(killed)) >= 2:
                break
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed; make it longer")
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    logged_before_kill = len(read_metrics(killed))
    last_saved = int(latest_checkpoint(killed).name.split("-")[1])
    assert logged_before_kill > last_saved  # the rerun must drop and redo those steps

    result = subprocess.run(train_command(killed, extra), env=env(cache), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resuming from {killed / 'checkpoints' / f'step-{last_saved}'}" in result.stdout

    assert comparable(read_metrics(killed)) == comparable(read_metrics(straight))
    if variant == "stateful_hooks":
        assert read_metrics(straight)[-1]["entropy_average"] > 0 and read_metrics(straight)[-1]["reference_syncs"] > 1
        assert (latest_checkpoint(killed) / "roles" / "reference" / "model.safetensors").exists()
    if variant == "separate_critic":
        assert (latest_checkpoint(killed) / "roles" / "critic" / "model.safetensors").exists()
    a = json.loads((straight / "summary.json").read_text())
    b = json.loads((killed / "summary.json").read_text())
    assert a["eval_after"]["pass@1"] == b["eval_after"]["pass@1"]
    drop_time = lambda e: {k: v for k, v in e.items() if k != "seconds"}  # noqa: E731
    assert drop_time(a["eval_before"]) == drop_time(b["eval_before"])
    assert drop_time(a["eval_after"]) == drop_time(b["eval_after"])


def test_checkpoint_round_trip_restores_everything(tmp_path):
    import random

    import numpy as np
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

    path = build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, bpe_merges=0), tmp_path / "m")
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    for step in (1, 2, 3):
        save_checkpoint(tmp_path / "run", step, model, tok, opt, {"rl_stream_position": 7 * step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-2", "step-3"]
    expected = (random.random(), np.random.rand(), torch.rand(1))
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {k: v.clone() for k, v in opt.state_dict()["state"][0].items()}

    fresh = AutoModelForCausalLM.from_pretrained(path)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    state, _ = restore_checkpoint(latest_checkpoint(tmp_path / "run"), fresh, fresh_opt)
    assert state == {"step": 3, "rl_stream_position": 21}
    assert all(torch.equal(weights[k], v) for k, v in fresh.state_dict().items())
    assert all(torch.equal(moments[k], v) for k, v in fresh_opt.state_dict()["state"][0].items())
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected
    # Any checkpoint loads as an ordinary Hugging Face model.
    AutoModelForCausalLM.from_pretrained(latest_checkpoint(tmp_path / "run"))


def test_half_written_checkpoint_is_ignored(tmp_path):
    (tmp_path / "checkpoints" / "step-9.tmp").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-8").mkdir()  # no trainer_state.json: incomplete
    assert latest_checkpoint(tmp_path) is None
