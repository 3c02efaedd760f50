"""The RLVR trainer (``trainer=rl``): rollout → reward → advantages → minibatched policy update → weight sync.

One loop serves every outcome-reward algorithm; the config picks the pieces by registered name
(formulas in ALGORITHMS.md, implementations in :mod:`reasonrl.algorithms`):

=========================  ============================================================
``algorithm.estimator``    what changes
=========================  ============================================================
grpo / dr_grpo             group-normalised outcome reward (dr_grpo: no std division)
rloo                       leave-one-out group baseline
reinforce_plus_plus(+_baseline)  batch-whitened returns; KL may go in the reward
remax                      needs a greedy baseline: an extra greedy rollout per prompt
ppo (= gae)                needs a critic: a value head on the policy, or ``critic.model=``
=========================  ============================================================

plus DAPO's options (``clip_high`` > ``clip_low``, ``dynamic_sampling``, ``overlong_buffer``), a
reference role when ``kl_coef`` > 0 (or ``track_ref_kl`` for the metric only), and an adaptive KL
coefficient (``algorithm.kl_controller=adaptive``). The trainer asks an estimator what it needs
(:func:`~reasonrl.algorithms.estimator_needs`) rather than testing its name, so an estimator
registered in a user file runs here unchanged.

Read :meth:`RLTrainer.train_step` top to bottom: it is the whole algorithm. The update loop
(minibatches, accumulation, clipping, DeepSpeed) is the shared :class:`~reasonrl.trainers.learner.Learner`;
this file supplies the loss.

Determinism: rollouts are sampled with seeds derived from (run seed, step), minibatch order from
(run seed, step, epoch), and the data stream's position is checkpointed, so a run resumed from a
checkpoint replays exactly what the uninterrupted run would have done.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from reasonrl.algorithms import (
    AdvantageConfig,
    AdvantageInputs,
    PolicyLossConfig,
    compute_advantages,
    compute_policy_loss,
    estimator_needs,
    group_accuracy_filter,
    kept_group_indices,
    kl_penalty,
    make_kl_controller,
    overlong_penalty,
    value_loss,
    zero_variance_group_share,
)
from reasonrl.config import TrainConfig
from reasonrl.trainers.base import RoleRequest, Trainer, TrainContext
from reasonrl.trainers.batch import RolloutBatch, concat, tensorize
from reasonrl.trainers.learner import MinibatchScale
from reasonrl.trainers.logprobs import ValueHead, response_logprobs, response_values
from reasonrl.trainers.registry import TRAINERS

# What each per-step metric means (metrics.jsonl has one object per step with these keys).
METRICS = {
    "reward": "mean reward of the trained responses (rewarder total + overlong shaping)",
    "reward/<name>": "mean of each named reward component (rewards=[...]) over the trained responses",
    "accuracy": "share of trained responses the task verifier marks correct",
    "accuracy_sampled": "share correct over every sampled response (before dynamic-sampling filtering)",
    "zero_variance_share": "share of sampled groups whose rewards are all equal (no GRPO/RLOO signal)",
    "truncation_rate": "share of responses that hit rollout.max_tokens",
    "verifier_timeouts": "verifications that timed out this step",
    "kl / kl_per_response / kl_coef": "mean per-token KL(policy || reference) (algorithm.kl_estimator) over all responses; "
                                      "its mean sum per response (what kl_controller=adaptive steers); the coefficient in force",
    "entropy": "Monte-Carlo policy entropy: mean -log pi(y_t) of the sampled tokens (all responses)",
    "entropy_trained": "exact mean token entropy over the rows that entered the update",
    "response_length": "mean response length in tokens",
    "sampled_tokens": "tokens generated since the start of the run (the budget algorithms are compared at)",
    "tokens_per_s": "generated tokens per second of generation time",
    "time_generate / time_verify / time_train": "seconds spent sampling, verifying, and on the update",
    "logprob_gap": "mean |rollout log-prob - trainer log-prob| over response tokens",
    "rows_trained_share": "share of responses that entered the forward/backward (zero-advantage rows skipped)",
    "pg_loss / clipfrac / ratio_mean / approx_kl / grad_norm / lr": "policy-update diagnostics",
    "groups_trained / sampling_rounds": "groups in the update and rollout rounds (dynamic sampling)",
    "data_position": "position of the training problem stream (checkpointed for exact resume)",
}


@TRAINERS.register("rl")
class RLTrainer(Trainer):
    """Online RL with verifiable rewards on one task (the GRPO family, REINFORCE++, RLOO, ReMax, PPO)."""

    name = "rl"

    @classmethod
    def roles_needed(cls, config: TrainConfig) -> list[RoleRequest]:
        roles = super().roles_needed(config)
        if config.algorithm.kl_coef > 0 or config.track_ref_kl:
            roles.append(RoleRequest("reference", "algorithm.kl_coef"))
        if "critic" in estimator_needs(config.estimator_name) and config.critic.model:
            roles.append(RoleRequest("critic", "critic.model", trainable=True))
        return roles

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__(ctx)
        c, algo = self.config, self.config.algorithm
        needs = estimator_needs(c.estimator_name)
        self.reference = self.roles.get("reference")
        critic_role = self.roles.get("critic")
        self.critic_model = critic_role.model if critic_role is not None else None
        # Without critic.model, PPO's critic is a value head on the policy's last hidden state.
        self.value_head = ValueHead(self.policy.model.config.hidden_size).to(self.device) if "critic" in needs and critic_role is None else None
        self.has_critic = "critic" in needs
        self.greedy_baseline = "greedy_baseline" in needs
        self.kl_controller = make_kl_controller(algo.kl_controller, algo.kl_coef, algo.kl_target, algo.kl_horizon)
        kl_in_reward = algo.kl_in == "reward" and algo.kl_coef > 0
        self.advantage_config = AdvantageConfig(
            estimator=c.estimator_name, norm_by_std=algo.norm_by_std, std_scope=algo.std_scope, gamma=algo.gamma, lam=algo.lam,
            kl_coef_in_reward=algo.kl_coef if kl_in_reward else 0.0,
            kl_estimator="k1",  # REINFORCE++ / PPO-RLHF put -beta * k1 in the per-token reward
        )
        self.loss_config = PolicyLossConfig(
            name=algo.policy_loss, clip_low=algo.clip_low, clip_high=algo.clip_high, dual_clip_c=algo.dual_clip_c or None,
            kl_coef=algo.kl_coef if algo.kl_in == "loss" else 0.0, kl_estimator=algo.kl_estimator,
            loss_agg_mode=algo.loss_agg_mode, max_response_length=c.rollout.max_tokens,
        )
        self.learner = self.build_learner(critic=self.value_head if self.value_head is not None else self.critic_model,
                                          critic_role=critic_role)
        # Rows whose advantage is 0 everywhere add exactly nothing to the loss without a KL or value
        # term: the update leaves them out of the forward and backward pass (one process only).
        self.skip_zero_advantage_rows = algo.kl_coef == 0 and not self.has_critic
        self.share_prompts = self.prompt_sharing()  # one forward per distinct prompt (groups share theirs)
        # The update can reuse its own forward pass's log-probs as log π_old only when it is the
        # single, first update on this batch and nothing needed log π_old beforehand.
        self.single_update = (c.optim.epochs == 1 and c.optim.minibatch_size in (0, c.rollout.prompts_per_step * c.rollout.group_size)
                              and not kl_in_reward and not self.has_critic)

    # -- one step -------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One RL step; returns its metrics."""
        self.step += 1
        timings: dict[str, float] = {"generate": 0.0, "verify": 0.0, "train": 0.0}
        self._apply_kl_coef()
        batch = self.rollout(timings)  # sample + reward (+ dynamic sampling, + ReMax baseline)

        start = time.perf_counter()
        update_metrics: dict[str, float] = {}
        if len(batch):  # empty only when dynamic sampling found no group with any signal
            tensorize(batch, self._pad_token_id(), self.device)
            self.score(batch)  # log π_ref, log π_old and values where the update needs them first
            self.hooks.fire("before_advantages", self, batch)
            self.compute_advantages(batch)
            update_metrics = self.update(batch)
            self.hooks.fire("after_update", self, batch, update_metrics)
            self.sync_engine_weights()
        timings["train"] = time.perf_counter() - start

        metrics = self.step_metrics(batch, update_metrics, timings)
        if "kl_per_response" in metrics:
            self.kl_controller.update(metrics["kl_per_response"], len(batch))
        self.hooks.fire("after_step", self, self.step, metrics)
        return metrics

    def rollout(self, timings: dict[str, float]) -> RolloutBatch:
        """``group_size`` responses for ``prompts_per_step`` prompts, rewarded. With dynamic sampling,
        groups whose responses are all correct or all wrong are dropped and more prompts sampled (up
        to ``max_sampling_rounds`` rounds) until the batch is full."""
        algo, wanted = self.config.algorithm, self.config.rollout.prompts_per_step
        batches, kept_groups = [], 0
        zero_groups = sampled_groups = correct_sampled = rounds = 0.0
        for round_index in range(algo.max_sampling_rounds if algo.dynamic_sampling else 1):
            problems = self.stream.take(wanted)
            batch = self.sample_groups(problems, round_index, timings, greedy_baseline=self.greedy_baseline)
            if algo.overlong_buffer > 0 and len(batch):
                lengths = torch.tensor([len(s.token_ids) for s in batch.samples], dtype=torch.float32)
                batch.rewards = batch.rewards + overlong_penalty(lengths, self.config.rollout.max_tokens,
                                                                 algo.overlong_buffer, algo.overlong_factor)
            self.hooks.fire("after_verify", self, batch)
            zero_groups += zero_variance_group_share(batch.group_ids, batch.rewards) * len(problems)
            sampled_groups += len(problems)
            correct_sampled += float(batch.correct.float().sum())
            rounds += 1
            if algo.dynamic_sampling:
                keep = group_accuracy_filter(batch.group_ids, batch.correct)
                batch = batch.select(kept_group_indices(batch.group_ids, keep, max_groups=wanted - kept_groups))
                kept_groups += len(set(batch.group_ids.tolist()))
            else:
                kept_groups += len(problems)
            batches.append(batch)
            if kept_groups >= wanted:
                break
        batch = concat(batches)  # may be empty: every sampled group had zero variance
        batch.stats = {
            "zero_variance_share": zero_groups / max(sampled_groups, 1),
            "accuracy_sampled": correct_sampled / max(sampled_groups * self.config.rollout.group_size, 1),
            "sampling_rounds": rounds,
            "groups_trained": float(len(set(batch.group_ids.tolist()))) if len(batch) else 0.0,
        }
        return batch

    # -- scoring and advantages -------------------------------------------------------------------

    @torch.no_grad()
    def score(self, batch: RolloutBatch) -> None:
        """Log-probs the update needs before it starts: π_ref (KL), π_old and values (multi-update / PPO)."""
        if self.reference is not None:
            batch.ref_logprobs = self._score_rows(self.reference.model, batch)[0]
        if not self.single_update:
            self.policy.model.eval()
            batch.old_logprobs, batch.old_values = self._score_rows(self.learner.forward_module, batch, self.has_critic)
            self.policy.model.train()

    def _score_rows(self, model: Any, batch: RolloutBatch, with_values: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs (and values) of every row without gradient. Over several ranks each rank scores
        an equal share (the last padded with row 0, dropped after the gather: ZeRO-3 gathers
        parameters in every forward, so every rank must run the same forwards)."""
        n, world = len(batch), self.strategy.world_size
        first, last = self.strategy.rank_slice(n)
        rows = list(range(first, last)) + [0] * (-(-n // world) - (last - first))
        index = torch.tensor(rows, dtype=torch.long, device=self.device)
        micro = self.config.optim.micro_batch_size or n
        logprobs, values = [], []
        for start in range(0, len(rows), micro):
            with self.autocast():
                lp, _, v = self._forward(model, batch, index[start : start + micro], with_values)
            logprobs.append(lp.float())
            values.extend([v.float()] if v is not None else [])
        lp, v = torch.cat(logprobs), (torch.cat(values) if values else None)
        if world > 1:
            lp, v = self.strategy.all_gather_rows(lp)[:n], (None if v is None else self.strategy.all_gather_rows(v)[:n])
        return lp, v

    def _forward(self, model: Any, batch: RolloutBatch, rows: torch.Tensor, with_values: bool,
                 with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        ids, attention, T = batch.input_ids[rows], batch.attention_mask[rows], batch.response_length
        logprobs, entropy, values = response_logprobs(
            model, ids, attention, T, self.config.rollout.temperature, with_entropy=with_entropy,
            value_head=self.value_head if with_values else None, share_prompts=self.share_prompts,
        )
        if with_values and self.critic_model is not None:
            values = response_values(lambda **kw: self.learner.forward_module(value_only=True, **kw), ids, attention, T)
        return logprobs, entropy, values

    def compute_advantages(self, batch: RolloutBatch) -> None:
        inputs = AdvantageInputs(
            rewards=batch.rewards.to(self.device), response_mask=batch.response_mask, group_ids=batch.group_ids.to(self.device),
            old_logprobs=batch.old_logprobs if batch.old_logprobs is not None else batch.rollout_logprobs,
            ref_logprobs=batch.ref_logprobs, values=batch.old_values,
            baseline_rewards=None if batch.baseline_rewards is None else batch.baseline_rewards.to(self.device),
            token_rewards=batch.token_rewards,
        )
        batch.advantages, batch.returns = compute_advantages(inputs, self.advantage_config)

    # -- the update -------------------------------------------------------------------------------

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """The policy (and critic) update through the learner, with the policy-gradient loss."""
        def with_signal(rows: torch.Tensor) -> torch.Tensor:
            return rows[(batch.advantages[rows].abs() * batch.response_mask[rows]).sum(-1) > 0]

        self.policy.model.train()
        metrics = self.learner.update(
            self.step, batch.response_mask.sum(-1), lambda rows, scale: self._loss(batch, rows, scale),
            epochs=self.config.optim.epochs, active_rows=with_signal if self.skip_zero_advantage_rows else None,
        )
        mask = batch.response_mask
        if batch.old_logprobs is not None:  # the engine's numbers against the trainer's, over every row
            metrics["logprob_gap"] = float(((batch.old_logprobs - batch.rollout_logprobs).abs() * mask).sum() / mask.sum().clamp(min=1))
        if batch.ref_logprobs is not None:
            trainer_lp = batch.old_logprobs if batch.old_logprobs is not None else batch.rollout_logprobs
            kl = kl_penalty(trainer_lp, batch.ref_logprobs, self.config.algorithm.kl_estimator)
            metrics["kl"] = float((kl * mask).sum() / mask.sum().clamp(min=1))
            metrics["kl_per_response"] = float((kl * mask).sum(-1).mean())
        return metrics

    def _loss(self, batch: RolloutBatch, rows: torch.Tensor, scale: MinibatchScale) -> tuple[torch.Tensor, dict[str, float], float]:
        """The policy-gradient loss (+ the value loss) of micro-batch ``rows``, normalised by the minibatch."""
        with self.autocast():
            logprobs, entropy, values = self._forward(self.learner.forward_module, batch, rows, self.has_critic, with_entropy=True)
        logprobs, mask = logprobs.float(), batch.response_mask[rows]
        old = batch.old_logprobs[rows] if batch.old_logprobs is not None else logprobs.detach()
        ref = batch.ref_logprobs[rows] if batch.ref_logprobs is not None else None
        loss, raw = compute_policy_loss(logprobs, old, batch.advantages[rows], mask, self.loss_config, ref,
                                        num_tokens=scale.tokens, num_sequences=scale.sequences)
        metrics = {k: float(v) for k, v in raw.items()}
        weight = float(mask.sum())
        if self.has_critic:
            vloss, vm = value_loss(values.float(), batch.old_values[rows], batch.returns[rows], mask, clip_range=self.config.algorithm.value_clip)
            # value_loss averages over this micro-batch's tokens: reweight to the minibatch.
            loss = loss + self.config.algorithm.vf_coef * vloss * weight / max(scale.tokens, 1.0)
            metrics.update({k: float(v) for k, v in vm.items()})
        metrics["entropy_trained"] = float((entropy * mask).sum() / mask.sum().clamp(min=1))
        if batch.old_logprobs is None:  # the single-update shortcut: this pass's log-probs are log π_old
            metrics["logprob_gap"] = float(((logprobs.detach() - batch.rollout_logprobs[rows]).abs() * mask).sum() / mask.sum().clamp(min=1))
        return loss, metrics, weight

    def _apply_kl_coef(self) -> None:
        """The KL coefficient of this step: fixed, or the adaptive controller's current β."""
        beta = self.kl_controller.value
        if self.loss_config.kl_coef > 0:
            self.loss_config = dataclasses.replace(self.loss_config, kl_coef=beta)
        if self.advantage_config.kl_coef_in_reward > 0:
            self.advantage_config = dataclasses.replace(self.advantage_config, kl_coef_in_reward=beta)

    # -- metrics and state ------------------------------------------------------------------------

    def step_metrics(self, batch: RolloutBatch, update: dict[str, float], timings: dict[str, float]) -> dict[str, float]:
        generated = sum(len(s.token_ids) for s in batch.samples)
        metrics: dict[str, float] = {"step": float(self.step)}
        if len(batch):
            mask = batch.response_mask
            metrics.update(
                reward=float(batch.rewards.mean()),
                accuracy=float(batch.correct.float().mean()),
                truncation_rate=sum(s.finish_reason == "length" for s in batch.samples) / len(batch),
                verifier_timeouts=float(sum(v.reason == "timeout" for v in batch.verdicts)),
                response_length=generated / len(batch),
                # Monte-Carlo entropy, E[-log pi(y_t)] over the sampled tokens: free (the engine reports
                # the log-probs) and covers every response, also those the update skips.
                entropy=float(-(batch.rollout_logprobs * mask).sum() / mask.sum().clamp(min=1)),
                advantage_abs_mean=float((batch.advantages.abs() * mask).sum() / mask.sum().clamp(min=1)),
            )
            metrics.update({f"reward/{name}": float(v.mean()) for name, v in batch.reward_components.items()})
        metrics.update(batch.stats)
        metrics.update(update)
        if self.reference is not None:
            metrics["kl_coef"] = self.kl_controller.value
        metrics["sampled_tokens"] = float(self.sampled_tokens)
        metrics["tokens_per_s"] = generated / max(timings["generate"], 1e-9)
        metrics.update({f"time_{k}": v for k, v in timings.items()})
        metrics["data_position"] = float(self.stream.position)
        metrics["max_tokens"] = float(self.config.rollout.max_tokens)
        return metrics

    def _pad_token_id(self) -> int:
        return self.engine.pad_token_id if hasattr(self.engine, "pad_token_id") else (self.tokenizer.pad_token_id or 0)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "kl_controller": self.kl_controller.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        if "kl_controller" in state:
            self.kl_controller.load_state_dict(state["kl_controller"])
        super().load_state(state)

    def extra_state(self) -> dict[str, Any]:
        return {"value_head": self.value_head.state_dict()} if self.value_head is not None else {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        if self.value_head is not None and "value_head" in extra:
            self.value_head.load_state_dict(extra["value_head"])
