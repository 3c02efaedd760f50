"""Expert iteration (``trainer=expert_iteration``): rejection-sampling fine-tuning, as in STaR and RAFT.

Each step: sample ``rollout.group_size`` responses for each of ``rollout.prompts_per_step``
prompts, keep the ones the rewarder's task verifier accepts (at most
``expert_iteration.max_per_prompt`` per prompt, distinct texts only, in sampling order), and
fine-tune the policy on them with the SFT loss — the mean negative log-likelihood of the kept
response tokens. Repeat. No advantages, no reference, no critic: the verifier is the filter.

This file is the worked example of writing a trainer on the foundation: sampling and rewards
come from :meth:`Trainer.sample_groups`, the update loop (minibatches, accumulation, clipping,
DeepSpeed) from :class:`~reasonrl.trainers.learner.Learner`; what is left is the method.
"""
from __future__ import annotations

import time
from typing import Any

import torch

from reasonrl.trainers.base import Trainer, TrainContext
from reasonrl.trainers.batch import RolloutBatch, tensorize
from reasonrl.trainers.learner import MinibatchScale
from reasonrl.trainers.logprobs import response_logprobs
from reasonrl.trainers.registry import TRAINERS


def verified_rows(batch: RolloutBatch, max_per_prompt: int) -> torch.Tensor:
    """Row indices of the correct responses to keep: per group, distinct texts (after stripping
    surrounding whitespace), first come first kept, at most ``max_per_prompt``."""
    kept: list[int] = []
    seen: dict[int, set[str]] = {}
    for row, (group, verdict, sample) in enumerate(zip(batch.group_ids.tolist(), batch.verdicts, batch.samples)):
        texts = seen.setdefault(group, set())
        text = sample.text.strip()
        if verdict.correct and text not in texts and len(texts) < max_per_prompt:
            texts.add(text)
            kept.append(row)
    return torch.tensor(kept, dtype=torch.long)


@TRAINERS.register("expert_iteration")
class ExpertIterationTrainer(Trainer):
    """Expert iteration / rejection-sampling fine-tuning: SFT on the policy's own verified samples."""

    name = "expert_iteration"

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        self.settings = self.config.expert_iteration
        self.learner = self.build_learner()

    def train_step(self) -> dict[str, float]:
        self.step += 1
        timings: dict[str, float] = {"generate": 0.0, "verify": 0.0, "train": 0.0}
        batch = self.sample_groups(self.stream.take(self.config.rollout.prompts_per_step), 0, timings)
        self.hooks.fire("after_verify", self, batch)
        kept = batch.select(verified_rows(batch, self.settings.max_per_prompt))

        start = time.perf_counter()
        update: dict[str, float] = {}
        if len(kept):  # nothing verified this step: the policy stays as it is
            tensorize(kept, self.tokenizer.pad_token_id or 0, self.device)
            self.policy.model.train()
            update = self.learner.update(self.step, kept.response_mask.sum(-1), lambda rows, scale: self._sft_loss(kept, rows, scale),
                                         epochs=self.settings.epochs)
            self.hooks.fire("after_update", self, kept, update)
            self.sync_engine_weights()
        timings["train"] = time.perf_counter() - start
        metrics = self._metrics(batch, kept, update, timings)
        self.hooks.fire("after_step", self, self.step, metrics)
        return metrics

    def _sft_loss(self, kept: RolloutBatch, rows: torch.Tensor, scale: MinibatchScale) -> tuple[torch.Tensor, dict[str, float], float]:
        """Summed NLL of the micro-batch's response tokens over the minibatch's token count (token mean)."""
        with self.autocast():
            logprobs, _, _ = response_logprobs(self.learner.forward_module, kept.input_ids[rows], kept.attention_mask[rows],
                                               kept.response_length, share_prompts=self.prompt_sharing())
        mask = kept.response_mask[rows]
        nll = -(logprobs.float() * mask).sum()
        weight = float(mask.sum())
        return nll / max(scale.tokens, 1.0), {"sft_loss": float(nll.detach()) / max(weight, 1.0)}, weight

    def _metrics(self, batch: RolloutBatch, kept: RolloutBatch, update: dict[str, float], timings: dict[str, float]) -> dict[str, Any]:
        groups = max(len(set(batch.group_ids.tolist())), 1)
        generated = sum(len(s.token_ids) for s in batch.samples)
        metrics: dict[str, float] = {
            "step": float(self.step),
            "reward": float(batch.rewards.mean()) if len(batch) else 0.0,
            "accuracy": float(batch.correct.float().mean()) if len(batch) else 0.0,
            "kept_share": len(kept) / max(len(batch), 1),
            "kept_per_prompt": len(kept) / groups,
            "prompts_with_a_kept_response": len(set(kept.group_ids.tolist())) / groups,
            "truncation_rate": sum(s.finish_reason == "length" for s in batch.samples) / max(len(batch), 1),
            "response_length": generated / max(len(batch), 1),
            "sampled_tokens": float(self.sampled_tokens),
            "tokens_per_s": generated / max(timings["generate"], 1e-9),
            "data_position": float(self.stream.position),
            "max_tokens": float(self.config.rollout.max_tokens),
        }
        metrics.update({f"reward/{name}": float(v.mean()) for name, v in batch.reward_components.items() if len(v)})
        metrics.update(update)
        metrics.update({f"time_{k}": v for k, v in timings.items()})
        return metrics
