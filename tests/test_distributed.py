"""DeepSpeed ZeRO on 2 CPU ranks (gloo, under torchrun) against one plain torch process on the
same global batches, plus the config/normaliser helpers (those run in the default suite)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reasonrl.distributed import DistributedContext, deepspeed_config, micro_batch_normalizer, shard_for_rank

ROOT = Path(__file__).resolve().parents[1]


def load_worker():
    """tests/zero_step_worker.py, the script torchrun runs (shared batch builders)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import zero_step_worker

    return zero_step_worker


def test_deepspeed_config_sections():
    config = deepspeed_config(2, micro_batch_size=4, grad_accum_steps=2, world_size=2, lr=1e-5, grad_clip=1.0)
    assert config["train_batch_size"] == 16
    assert config["zero_optimization"]["stage"] == 2
    assert config["optimizer"]["type"] == "AdamW" and config["optimizer"]["params"]["torch_adam"] is True
    assert config["optimizer"]["params"]["lr"] == 1e-5 and config["gradient_clipping"] == 1.0
    assert config["bf16"]["enabled"] is False
    stage3 = deepspeed_config(3, micro_batch_size=1, grad_clip=None, bf16=True)
    assert stage3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert stage3["gradient_clipping"] == 0.0 and stage3["bf16"]["enabled"] is True  # DeepSpeed would clip at 1.0
    with pytest.raises(ValueError, match="stage"):
        deepspeed_config(4, micro_batch_size=1)
    with pytest.raises(ValueError, match="micro_batch_size"):
        deepspeed_config(2, micro_batch_size=0)


def test_micro_batch_normalizer_and_sharding():
    assert micro_batch_normalizer(120, world_size=2, grad_accum_steps=3) == 20.0
    assert micro_batch_normalizer(0) == 1.0
    rows = list(range(8))
    assert shard_for_rank(rows, DistributedContext(rank=1, world_size=2)) == [4, 5, 6, 7]
    with pytest.raises(ValueError, match="divide"):
        shard_for_rank(rows, DistributedContext(rank=0, world_size=3))


def single_process_reference(stage_optimizer: str):
    """The worker's steps in one process: whole global batch, plain torch optimizer."""
    worker = load_worker()
    optimizer_name = stage_optimizer.split("-")[1]
    model = worker.build_model()
    if optimizer_name == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=worker.LR["adamw"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=worker.LR["sgd"])
    losses = []
    for step in range(worker.STEPS):
        batch = worker.make_batch(step)
        loss = worker.policy_loss(model, batch, slice(0, worker.SEQUENCES), num_tokens=None)
        loss.backward()
        if worker.GRAD_CLIP[optimizer_name] is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), worker.GRAD_CLIP[optimizer_name])
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses, model.state_dict()


@pytest.mark.deepspeed
@pytest.mark.slow
def test_two_rank_zero_matches_single_process(tmp_path):
    pytest.importorskip("deepspeed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
        str(ROOT / "tests" / "zero_step_worker.py"), str(tmp_path),
    ]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]

    worker = load_worker()
    for stage, optimizer_name in worker.CONFIGS:
        name = f"{stage}-{optimizer_name}"
        saved = torch.load(tmp_path / f"{name}.pt")
        losses, reference = single_process_reference(name)
        assert saved["losses"] == pytest.approx(losses, abs=1e-5), name
        initial = worker.build_model().state_dict()
        for key, value in reference.items():
            torch.testing.assert_close(saved["state"][key], value, atol=2e-5, rtol=1e-4, msg=f"{name}: {key}")
        # The steps really moved the weights (the comparison is not between two untouched models).
        moved = max((reference[k] - initial[k]).abs().max().item() for k in reference)
        assert moved > 1e-3, name


def test_per_shard_token_mean_would_not_match():
    """Guards the normaliser: dividing each shard by its own token count gives another gradient."""
    worker = load_worker()

    model = worker.build_model()
    batch = worker.make_batch(0)
    params = [p for p in model.parameters()]
    full = torch.autograd.grad(worker.policy_loss(model, batch, slice(0, 8), None), params)
    halves = [worker.policy_loss(model, batch, slice(0, 4), None), worker.policy_loss(model, batch, slice(4, 8), None)]
    naive = torch.autograd.grad(sum(halves) / 2, params)
    tokens = batch["mask"].sum().item()
    normalised = [worker.policy_loss(model, batch, slice(i, i + 4), micro_batch_normalizer(tokens, 2, 1)) for i in (0, 4)]
    exact = torch.autograd.grad(sum(normalised) / 2, params)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full, exact))
    assert not all(torch.allclose(a, b, atol=1e-4) for a, b in zip(full, naive))
