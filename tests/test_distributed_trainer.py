"""`reasonrl train` over 2 DeepSpeed ranks (torchrun, gloo on CPU) against the same command in one process.

Both runs see the same global batch every step: each rank samples its share of the prompts from
their own seeded streams, so the samples equal the one-process ones; the update splits every
minibatch over the ranks with gradient accumulation. The test compares the per-step metrics, the
final weights, a resume from the middle checkpoint with the uninterrupted 2-rank run, and ZeRO-3.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.deepspeed, pytest.mark.slow]

# 1-digit sums after a short warm-up: some answers right, some wrong, so every step has a signal.
# 32 responses per step, minibatches of 16 (two optimizer steps, so log pi_old is scored), micro
# batches of 4 (two accumulated backward passes per rank), warm-up of the learning rate, and the
# reference model on for the KL metric.
ARGS = [
    "tiny.hidden_size=32", "tiny.num_layers=2", "tiny.bpe_merges=32", "task_options.digits=1", "sft.max_steps=200",
    "sft.batch_size=16", "sft.lr=3e-3", "sft.warmup_steps=10", "sft.target_accuracy=0", "rollout.prompts_per_step=8",
    "rollout.group_size=4", "rollout.max_tokens=8", "eval.problems=8", "eval.samples=2", "sft.eval_problems=4",
    "steps=4", "save_every=2", "progress=false", "optim.minibatch_size=16", "optim.micro_batch_size=4",
    "optim.warmup_steps=2", "optim.lr=3e-3",
]


def run(command: list[str], cache: Path, timeout: int = 600) -> None:
    env = {**os.environ, "REASONRL_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def two_ranks(output: Path, cache: Path, port: int, *extra: str) -> None:
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         "-m", "reasonrl", "train", *ARGS, *extra, f"output_dir={output}"], cache)


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(checkpoint / "model.safetensors"))


def test_two_ranks_match_one_process_and_resume_exactly(tmp_path):
    pytest.importorskip("deepspeed")
    cache = tmp_path / "cache"
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable, "-m", "reasonrl", "train", *ARGS, f"output_dir={one}"], cache)
    two_ranks(two, cache, 29561)

    # The same samples every step (rewards are exact), and the same update.
    m1, m2 = metrics(one), metrics(two)
    assert len(m1) == len(m2) == 4
    assert [m["reward"] for m in m1] == [m["reward"] for m in m2]
    assert 0 < sum(m["accuracy"] for m in m1) / 4 < 1
    for a, b in zip(m1, m2):
        assert a["lr"] == b["lr"]
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
        assert b["kl"] == pytest.approx(a["kl"], abs=1e-5)
    w1, w2 = weights(one / "checkpoints" / "step-4"), weights(two / "checkpoints" / "step-4")
    start = weights(one / "sft")
    assert sorted(w2) == sorted(w1)  # the same HF checkpoint layout (tied embeddings saved once)
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=2e-5, rtol=1e-4, msg=key)
    assert max((w1[k] - start[k]).abs().max().item() for k in w1) > 1e-3  # RL really moved the weights
    summary = json.loads((two / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["eval_after"] is not None
    assert sorted(p.name for p in (two / "checkpoints" / "step-4" / "deepspeed").iterdir())  # ZeRO shards saved

    # A run stopped after its step-2 checkpoint continues from there, over 2 ranks, to the same end.
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-4")
    (resumed / "summary.json").unlink()
    config = resumed / "config.yaml"
    config.write_text(config.read_text().replace(str(two), str(resumed)))
    two_ranks(resumed, cache, 29562)
    assert [m["grad_norm"] for m in metrics(resumed)] == [m["grad_norm"] for m in m2]
    final = weights(resumed / "checkpoints" / "step-4")
    assert all(torch.equal(final[k], w2[k]) for k in w2)

    # ZeRO-3 (parameters partitioned; the rollout engine decodes with a gathered copy): same run.
    three = tmp_path / "zero3"
    two_ranks(three, cache, 29563, "deepspeed.zero_stage=3")
    assert [m["reward"] for m in metrics(three)] == [m["reward"] for m in m1]
    w3 = weights(three / "checkpoints" / "step-4")
    for key in w1:
        torch.testing.assert_close(w3[key], w1[key], atol=2e-5, rtol=1e-4, msg=key)


def test_ppo_and_dynamic_sampling_over_two_ranks_match_one_process(tmp_path):
    """PPO's value head is sharded and stepped with the policy (roles.PolicyWithCritic), and
    DAPO's dynamic sampling leaves batches of 4 or 6 groups that do not split evenly over the
    ranks: the short share runs zero-loss backward passes so every rank joins every reduction.
    Under ZeRO-3, where every forward pass gathers parameters. The policy weights only match when
    the critic (its values feed GAE) and the uneven splits match too."""
    pytest.importorskip("deepspeed")
    cache = tmp_path / "cache"
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["algorithm.estimator=ppo", "algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=3"]
    run([sys.executable, "-m", "reasonrl", "train", *ARGS, *extra, f"output_dir={one}"], cache)
    two_ranks(two, cache, 29564, *extra, "deepspeed.zero_stage=3")
    m1, m2 = metrics(one), metrics(two)
    assert [m["reward"] for m in m1] == [m["reward"] for m in m2]
    assert [m["groups_trained"] for m in m2] == [m["groups_trained"] for m in m1]
    assert any(m["groups_trained"] < 8 for m in m1)  # some batches were short (the uneven path ran)
    assert [m["grad_norm"] for m in m2] == pytest.approx([m["grad_norm"] for m in m1], rel=1e-4)
    w1, w2 = weights(one / "checkpoints" / "step-4"), weights(two / "checkpoints" / "step-4")
    assert sorted(w2) == sorted(w1)  # the value head stays out of the HF weights
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], atol=2e-5, rtol=1e-4, msg=key)


def test_expert_iteration_and_a_separate_critic_over_two_ranks_match_one_process(tmp_path):
    """Trainers built on the learner run under DeepSpeed with no code of their own for it: expert
    iteration (a varying number of kept rows per step, split unevenly over the ranks) and PPO with a
    separate critic model stepped in the same engine as the policy."""
    pytest.importorskip("deepspeed")
    cache = tmp_path / "cache"
    for name, extra in (
        ("expert_iteration", ["trainer=expert_iteration", "expert_iteration.max_per_prompt=3"]),
        ("critic", ["algorithm.estimator=ppo", "critic.model=policy", "critic.lr=1e-3"]),
    ):
        one, two = tmp_path / f"{name}-one", tmp_path / f"{name}-two"
        run([sys.executable, "-m", "reasonrl", "train", *ARGS, *extra, f"output_dir={one}"], cache)
        two_ranks(two, cache, 29565 if name == "critic" else 29566, *extra)
        m1, m2 = metrics(one), metrics(two)
        assert [m["reward"] for m in m1] == [m["reward"] for m in m2], name
        assert [m["grad_norm"] for m in m2] == pytest.approx([m["grad_norm"] for m in m1], rel=1e-4), name
        w1, w2 = weights(one / "checkpoints" / "step-4"), weights(two / "checkpoints" / "step-4")
        for key in w1:
            torch.testing.assert_close(w2[key], w1[key], atol=2e-5, rtol=1e-4, msg=f"{name}: {key}")
        if name == "expert_iteration":
            assert any(m["kept_share"] > 0 for m in m1) and "sft_loss" in m1[0]
        else:
            assert "vf_loss" in m1[0] and m1[1]["lr_critic"] == 1e-3  # its own learning rate (after the 2-step warm-up)
