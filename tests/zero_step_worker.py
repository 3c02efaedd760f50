"""Worker for tests/test_distributed.py: a few GRPO-style policy-loss steps under DeepSpeed ZeRO.

Launched as ``torchrun --nproc_per_node 2 tests/zero_step_worker.py OUT_DIR``. Every rank takes
its shard of the same global batches, accumulates over micro-batches and steps through
DeepSpeed; rank 0 saves the gathered weights and the global losses per configuration to
OUT_DIR/<stage>-<optimizer>.pt. The test recomputes the same steps in one plain torch process
and compares. The batch builders here are shared with the test so both sides see the same data.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

SEQUENCES = 8  # global batch
MICRO_BATCH = 2
STEPS = int(__import__("os").environ.get("ZS_STEPS", 3))
SEQ_LEN = 12
CONFIGS = [(2, "adamw"), (2, "sgd"), (3, "adamw"), (3, "sgd")]
LR = {"adamw": 1e-2, "sgd": 0.5}
GRAD_CLIP = {"adamw": 1.0, "sgd": None}  # SGD unclipped: its update shows any gradient scale error


def build_model():
    """A tiny random Qwen2 (built here, not from reasonrl.models, so this check depends on nothing else)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64, tie_word_embeddings=True, use_cache=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        return Qwen2ForCausalLM(config)


def make_batch(step: int) -> dict[str, torch.Tensor]:
    """A global batch whose response lengths differ a lot between the two ranks' halves, so a
    per-shard token mean would give a different gradient than the global token mean."""
    gen = torch.Generator().manual_seed(100 + step)
    input_ids = torch.randint(0, 256, (SEQUENCES, SEQ_LEN), generator=gen)
    response_lengths = torch.tensor([10, 9, 8, 10, 2, 1, 3, 2]).roll(step)
    positions = torch.arange(SEQ_LEN - 1)
    # response tokens are the last `length` positions of the (shifted) sequence
    mask = (positions[None, :] >= (SEQ_LEN - 1 - response_lengths)[:, None]).float()
    advantages = torch.randn(SEQUENCES, generator=gen)[:, None].expand(-1, SEQ_LEN - 1).contiguous()
    # Fixed "old policy" log-probs near the random model's (log 1/259 ≈ −5.56): the ratio then
    # depends on the parameters, and some tokens fall outside the clip range.
    old_logprobs = -5.56 + torch.randn(SEQUENCES, SEQ_LEN - 1, generator=gen) * 0.2
    return {"input_ids": input_ids, "mask": mask, "advantages": advantages, "old_logprobs": old_logprobs}


def token_logprobs(model, input_ids: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    return torch.log_softmax(logits, dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)


def policy_loss(model, batch: dict[str, torch.Tensor], rows: slice, num_tokens: float | None):
    from reasonrl.algorithms import PolicyLossConfig, compute_policy_loss

    logprobs = token_logprobs(model, batch["input_ids"][rows])
    old = batch["old_logprobs"][rows]
    config = PolicyLossConfig(clip_low=0.2, clip_high=0.28, loss_agg_mode="token-mean")
    loss, _ = compute_policy_loss(logprobs, old, batch["advantages"][rows], batch["mask"][rows], config, num_tokens=num_tokens)
    return loss


def main(out_dir: str) -> None:
    import torch.distributed as dist

    from reasonrl.distributed import (
        all_reduce_mean,
        deepspeed_config,
        gathered_state_dict,
        init_distributed,
        micro_batch_normalizer,
        wrap_with_deepspeed,
    )

    torch.set_num_threads(1)
    ctx = init_distributed()
    per_rank = SEQUENCES // ctx.world_size
    grad_accum = per_rank // MICRO_BATCH
    for stage, optimizer_name in CONFIGS:
        model = build_model()
        config = deepspeed_config(
            stage, micro_batch_size=MICRO_BATCH, grad_accum_steps=grad_accum, world_size=ctx.world_size,
            lr=LR[optimizer_name], grad_clip=GRAD_CLIP[optimizer_name],
        )
        client_optimizer = (lambda params: torch.optim.SGD(params, lr=LR["sgd"])) if optimizer_name == "sgd" else None
        engine = wrap_with_deepspeed(model, config, optimizer=client_optimizer)
        losses = []
        for step in range(STEPS):
            batch = make_batch(step)
            global_tokens = batch["mask"].sum().item()
            normalizer = micro_batch_normalizer(global_tokens, ctx.world_size, grad_accum)
            step_loss = 0.0
            for micro in range(grad_accum):
                start = ctx.rank * per_rank + micro * MICRO_BATCH
                loss = policy_loss(engine, batch, slice(start, start + MICRO_BATCH), normalizer)
                engine.backward(loss)
                engine.step()
                step_loss += loss.item() / grad_accum
            # each rank's mean micro loss, averaged over ranks = the global token-mean loss
            losses.append(all_reduce_mean({"loss": step_loss}, ctx)["loss"])
        state = gathered_state_dict(engine)
        if ctx.is_main:
            torch.save({"losses": losses, "state": state}, Path(out_dir) / f"{stage}-{optimizer_name}.pt")
        dist.barrier()
        del engine
    dist.barrier()


if __name__ == "__main__":
    main(sys.argv[1])
