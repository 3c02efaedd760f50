"""The RLVR trainer: rollout → verify → advantages → minibatched policy update → weight sync.

One loop serves every outcome-reward algorithm; the config picks the pieces by name
(formulas in ALGORITHMS.md, implementations in :mod:`reasonrl.algorithms`):

=========================  ============================================================
``algorithm.estimator``    what changes
=========================  ============================================================
grpo / dr_grpo             group-normalised outcome reward (dr_grpo: no std division)
rloo                       leave-one-out group baseline
reinforce_plus_plus(+_baseline)  batch-whitened returns; KL may go in the reward
remax                      an extra greedy rollout per prompt gives the baseline
ppo (= gae)                a value head on the policy's last hidden state, GAE(γ, λ)
=========================  ============================================================

plus DAPO's options (``clip_high`` > ``clip_low``, ``dynamic_sampling``, ``overlong_buffer``) and a
frozen reference model when ``kl_coef`` > 0 (or ``track_ref_kl`` for the metric only).

Read :meth:`RLTrainer.train_step` top to bottom: it is the whole algorithm. Everything a step
produces lives in one :class:`RolloutBatch`; later trainers (PRIME's token rewards, TTRL's
pseudo-labels, ProRL's reference resets) add fields to it or hook in through
:class:`TrainerHooks` rather than growing special cases here.

Determinism: rollouts are sampled with seeds derived from (run seed, step), minibatch order from
(run seed, step, epoch), and the data stream's position is checkpointed, so a run resumed from a
checkpoint replays exactly what the uninterrupted run would have done.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
import torch.utils.checkpoint

from reasonrl.algorithms import (
    AdvantageConfig,
    AdvantageInputs,
    PolicyLossConfig,
    compute_advantages,
    compute_policy_loss,
    group_accuracy_filter,
    kept_group_indices,
    overlong_penalty,
    value_loss,
    zero_variance_group_share,
)
from reasonrl.config import TrainConfig
from reasonrl.distributed import DistributedContext, micro_batch_normalizer
from reasonrl.engines.base import Sample, SamplingParams
from reasonrl.trainers.data import ProblemSource, ProblemStream, derived_seed, render_prompt
from reasonrl.types import Verdict

# What each per-step metric means (metrics.jsonl has one object per step with these keys).
METRICS = {
    "reward": "mean reward of the trained responses (verifier reward + overlong shaping)",
    "accuracy": "share of trained responses the verifier marks correct",
    "accuracy_sampled": "share correct over every sampled response (before dynamic-sampling filtering)",
    "zero_variance_share": "share of sampled groups whose rewards are all equal (no GRPO/RLOO signal)",
    "truncation_rate": "share of responses that hit rollout.max_tokens",
    "verifier_timeouts": "verifications that timed out this step",
    "kl": "mean per-token KL(policy || reference), algorithm.kl_estimator, over all responses",
    "entropy": "Monte-Carlo policy entropy: mean -log pi(y_t) of the sampled tokens (all responses)",
    "entropy_trained": "exact mean token entropy over the rows that entered the update",
    "response_length": "mean response length in tokens",
    "tokens_per_s": "generated tokens per second of generation time",
    "time_generate / time_verify / time_train": "seconds spent sampling, verifying, and on the update",
    "logprob_gap": "mean |rollout log-prob - trainer log-prob| over response tokens (trained rows when "
                   "the single-update shortcut is on, else all rows)",
    "rows_trained_share": "share of responses that entered the forward/backward (zero-advantage rows skipped)",
    "pg_loss / clipfrac / ratio_mean / approx_kl / grad_norm / lr": "policy-update diagnostics",
    "groups_trained / sampling_rounds": "groups in the update and rollout rounds (dynamic sampling)",
    "data_position": "position of the training problem stream (checkpointed for exact resume)",
}

# ----------------------------------------------------------------------------------------------
# The batch
# ----------------------------------------------------------------------------------------------


@dataclass
class RolloutBatch:
    """Everything one RL step knows about its B responses (G groups of n).

    Per-response lists have length B; tensors are ``(B,)`` or ``(B, T)`` with T the longest
    response. Tensors are filled in as the step goes: rollout → verify → tensorize → score →
    advantages.
    """

    problems: list[dict[str, Any]]  # the problem of each response (repeated within a group)
    group_ids: torch.Tensor  # (B,) long
    samples: list[Sample]
    verdicts: list[Verdict] = field(default_factory=list)
    rewards: torch.Tensor | None = None  # (B,) reward used for advantages (verdict reward + shaping)
    correct: torch.Tensor | None = None  # (B,) bool
    baseline_rewards: torch.Tensor | None = None  # (B,) ReMax greedy-rollout reward
    token_rewards: torch.Tensor | None = None  # (B, T) optional dense rewards (process rewards)
    # Model inputs: [left-padded prompt | right-padded response]
    input_ids: torch.Tensor | None = None  # (B, P + T)
    attention_mask: torch.Tensor | None = None  # (B, P + T)
    response_mask: torch.Tensor | None = None  # (B, T) float
    rollout_logprobs: torch.Tensor | None = None  # (B, T) as the engine reported
    old_logprobs: torch.Tensor | None = None  # (B, T) trainer log π_old
    ref_logprobs: torch.Tensor | None = None  # (B, T) log π_ref
    old_values: torch.Tensor | None = None  # (B, T) critic values (ppo)
    advantages: torch.Tensor | None = None  # (B, T)
    returns: torch.Tensor | None = None  # (B, T)
    stats: dict[str, float] = field(default_factory=dict)  # rollout-side metrics

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def response_length(self) -> int:
        return 0 if self.response_mask is None else self.response_mask.shape[1]


class TrainerHooks:
    """Extension points for later trainers; override what you need (all default to no-ops)."""

    def after_verify(self, trainer: "RLTrainer", batch: RolloutBatch) -> None:
        """Change rewards (e.g. TTRL pseudo-labels) or add ``token_rewards`` (PRIME) before advantages."""

    def after_step(self, trainer: "RLTrainer", step: int, metrics: dict[str, float]) -> None:
        """React to a finished step (e.g. ProRL reference resets); may add metrics."""


# ----------------------------------------------------------------------------------------------
# Log-probs from the trainer's side
# ----------------------------------------------------------------------------------------------


class ValueHead(torch.nn.Module):
    """PPO critic: a linear head on the policy's last hidden state, one value per token."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


class PolicyAndValue(torch.nn.Module):
    """What DeepSpeed wraps over several ranks: the policy and, for PPO, its value head, so both
    are sharded, all-reduced and stepped together. Its forward is the policy's."""

    def __init__(self, policy: Any, value_head: ValueHead | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.policy(*args, **kwargs)


def response_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_length: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    value_head: ValueHead | None = None,
    share_prompts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Log-probs of the response tokens under ``model`` (at the rollout temperature).

    Args:
        input_ids / attention_mask: ``(B, P + T)``, responses occupying the last T columns.
        response_length: T.
        temperature: logits are divided by it, as the engine did when sampling.
        with_entropy: also return the per-token entropy (no gradient).
        value_head: also return per-token values ``(B, T)`` (the value before each response token).
        share_prompts: run each distinct prompt through the model once and let its responses attend
            to that one (differentiable) KV cache. A GRPO group of n responses shares its prompt, so
            this saves (n-1)/n of the prompt compute in the forward *and* backward pass; the result
            and its gradient are the same as the plain pass (the cache is index-selected, so autograd
            sums the n copies' gradients).

    Returns:
        ``(logprobs (B, T), entropy (B, T) or None, values (B, T) or None)``.
    """
    T = response_length
    if share_prompts and T > 1:
        logits, hidden = _shared_prompt_forward(model, input_ids, attention_mask, T, value_head is not None)
    else:
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            logits_to_keep=T + 1,  # only the positions that predict response tokens
            output_hidden_states=value_head is not None,
            use_cache=False,
        )
        logits = out.logits[:, :-1, :]
        hidden = out.hidden_states[-1][:, -T - 1 : -1, :] if value_head is not None else None
    targets = input_ids[:, -T:]
    # The fp32 copy of (rows, T, vocab) logits is the largest tensor of the step (2.5 GiB for a
    # micro-batch of 16 x 257 positions of a 152k vocabulary). Work through it a few rows at a time and, when it
    # needs a gradient, recompute each chunk's fp32 copy in the backward pass (checkpointing)
    # instead of keeping all of them alive: only the model's own logits stay in memory.
    rows = max(1, LOGPROB_CHUNK_ELEMENTS // max(T * logits.shape[-1], 1))
    logprob_parts, entropy_parts = [], []
    for start in range(0, logits.shape[0], rows):
        chunk, chunk_targets = logits[start : start + rows], targets[start : start + rows]
        if chunk.requires_grad and logits.shape[0] > rows:
            logprob_parts.append(
                torch.utils.checkpoint.checkpoint(_token_logprobs, chunk, chunk_targets, temperature, use_reentrant=False)
            )
        else:
            logprob_parts.append(_token_logprobs(chunk, chunk_targets, temperature))
        if with_entropy:
            with torch.no_grad():
                entropy_parts.append(_token_entropy(chunk, temperature))
    logprobs = torch.cat(logprob_parts)
    entropy = torch.cat(entropy_parts) if with_entropy else None
    values = value_head(hidden) if value_head is not None else None
    return logprobs, entropy, values


# Logits elements converted to fp32 at once in response_logprobs (64M floats = 256 MiB).
LOGPROB_CHUNK_ELEMENTS = 1 << 26


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax(logits / temperature)`` at ``targets``, in fp32: ``(rows, T, V) -> (rows, T)``."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _token_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)`` per position, in fp32 (no gradient)."""
    logits = logits.detach().float()
    if temperature != 1.0:
        logits = logits / temperature
    log_norm = torch.logsumexp(logits, dim=-1)
    return log_norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def _shared_prompt_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, T: int, want_hidden: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits ``(B, T, V)`` predicting the T response tokens (and the matching last hidden states),
    computing every distinct prompt once."""
    from transformers import DynamicCache

    P = input_ids.shape[1] - T
    prompts, prompt_mask = input_ids[:, :P], attention_mask[:, :P]
    unique, inverse = torch.unique(prompts, dim=0, return_inverse=True)
    first_row = torch.full((unique.shape[0],), -1, dtype=torch.long, device=input_ids.device)
    first_row.scatter_reduce_(0, inverse, torch.arange(len(inverse), device=input_ids.device), reduce="amax", include_self=True)
    unique_mask = prompt_mask[first_row]
    prompt_out = model(
        input_ids=unique, attention_mask=unique_mask, position_ids=(unique_mask.cumsum(-1) - 1).clamp(min=0),
        past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1, output_hidden_states=want_hidden,
    )
    cache = prompt_out.past_key_values
    cache.batch_select_indices(inverse)  # row i attends to its prompt's keys/values (differentiable gather)
    # Feed response tokens 0..T-2; their outputs predict tokens 1..T-1 (token 0 comes from the prompt's last position).
    response_in = input_ids[:, P : P + T - 1]
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, P : P + T - 1]
    response_out = model(
        input_ids=response_in, attention_mask=attention_mask[:, : P + T - 1], position_ids=positions,
        past_key_values=cache, use_cache=True, output_hidden_states=want_hidden,
    )
    logits = torch.cat([prompt_out.logits[:, -1:, :][inverse], response_out.logits], dim=1)
    hidden = None
    if want_hidden:
        hidden = torch.cat([prompt_out.hidden_states[-1][:, -1:, :][inverse], response_out.hidden_states[-1]], dim=1)
    return logits, hidden


# ----------------------------------------------------------------------------------------------
# The trainer
# ----------------------------------------------------------------------------------------------


class RLTrainer:
    """Online RL with verifiable rewards on one task.

    Args:
        config: the resolved :class:`TrainConfig`.
        model: the policy (a ``transformers`` causal LM, on its device, trained in place).
        tokenizer: its tokenizer.
        engine: a rollout engine (:class:`HFEngine` sharing ``model``, or a vLLM engine kept in sync).
        source: the task's problems; training prompts come from its ``"rl"`` stream.
        ref_model: frozen reference policy (needed when ``algorithm.kl_coef`` > 0).
        hooks: :class:`TrainerHooks` instances.
        verify_fn: ``(problems, responses) -> verdicts``; default: the envs' batched verification.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: Any,
        tokenizer: Any,
        engine: Any,
        source: ProblemSource,
        ref_model: Any = None,
        hooks: Sequence[TrainerHooks] = (),
        verify_fn: Callable[[list[dict[str, Any]], list[str]], list[Verdict]] | None = None,
        log: Callable[[str], None] = print,
        dist: DistributedContext | None = None,
    ) -> None:
        self.config = config
        self.dist = dist or DistributedContext()
        config.check_world_size(self.dist.world_size)
        self.algo = config.algorithm
        self.model = model
        self.tokenizer = tokenizer
        self.engine = engine
        self.source = source
        self.stream: ProblemStream = source.stream("rl")
        self.ref_model = ref_model
        self.hooks = list(hooks)
        self.verify_fn = verify_fn or self._verify_with_envs
        self.log = log
        self.device = next(model.parameters()).device
        self.autocast = _autocast_dtype(config, self.device)
        estimator = config.estimator_name
        self.is_ppo = estimator == "gae"
        self.value_head = ValueHead(model.config.hidden_size).to(self.device) if self.is_ppo else None
        kl_in_reward = self.algo.kl_in == "reward" and self.algo.kl_coef > 0
        self.advantage_config = AdvantageConfig(
            estimator=estimator,
            norm_by_std=self.algo.norm_by_std,
            std_scope=self.algo.std_scope,
            gamma=self.algo.gamma,
            lam=self.algo.lam,
            kl_coef_in_reward=self.algo.kl_coef if kl_in_reward else 0.0,
            kl_estimator="k1",  # REINFORCE++ / PPO-RLHF put -beta * k1 in the per-token reward
        )
        self.loss_config = PolicyLossConfig(
            name=self.algo.policy_loss,
            clip_low=self.algo.clip_low,
            clip_high=self.algo.clip_high,
            dual_clip_c=self.algo.dual_clip_c or None,
            kl_coef=self.algo.kl_coef if self.algo.kl_in == "loss" else 0.0,
            kl_estimator=self.algo.kl_estimator,
            loss_agg_mode=self.algo.loss_agg_mode,
            max_response_length=config.rollout.max_tokens,
        )
        params = list(model.parameters()) + (list(self.value_head.parameters()) if self.value_head else [])
        opt = config.optim
        self.step = 0
        # Several ranks: DeepSpeed ZeRO owns the optimizer, and the training forward goes through
        # its engine (see _setup_deepspeed); one process: a plain torch AdamW.
        self.deepspeed = None
        self.forward_model = model
        if self.dist.world_size > 1:
            self._setup_deepspeed()
        else:
            self.optimizer = torch.optim.AdamW(
                params, lr=opt.lr, weight_decay=opt.weight_decay, betas=(opt.beta1, opt.beta2)
            )
        # Rows whose advantage is 0 everywhere are left out of the update when that is exact (see
        # update()). Not across ranks: every rank must run the same number of backward passes.
        self.skip_zero_advantage_rows = self.deepspeed is None
        # One forward per distinct prompt (groups share theirs); HF drops the KV cache under
        # gradient checkpointing, so that path keeps the plain forward. ZeRO-3 fetches parameters
        # module by module as the forward runs; it keeps the plain single forward too.
        self.share_prompts = (
            config.optim.share_prompt_forward and not config.optim.gradient_checkpointing
            and not (self.deepspeed is not None and config.deepspeed.zero_stage == 3)
        )
        # The update can reuse the forward pass's own log-probs as log π_old only when it is the
        # single, first update on this batch and nothing needed log π_old beforehand.
        self.single_update = (
            opt.epochs == 1
            and opt.minibatch_size in (0, config.rollout.prompts_per_step * config.rollout.group_size)
            and not kl_in_reward
            and not self.is_ppo
        )

    def _setup_deepspeed(self) -> None:
        """Wrap the policy in a DeepSpeed ZeRO engine for a run over several ranks.

        Each rank updates on its share of every minibatch (``minibatch / world_size`` rows, in
        micro-batches of ``optim.micro_batch_size``): that is ``grad_accum_steps`` backward passes
        per optimizer step, the same count on every rank. Gradient clipping is DeepSpeed's (global
        norm over all ranks); the learning rate is set on its optimizer before each step.
        """
        from reasonrl.distributed import deepspeed_config, wrap_with_deepspeed

        c, opt, world = self.config, self.config.optim, self.dist.world_size
        rows_per_rank = (opt.minibatch_size or c.rollout.prompts_per_step * c.rollout.group_size) // world
        micro = min(opt.micro_batch_size or rows_per_rank, rows_per_rank)
        self.deepspeed_micro = micro  # fixed for the run: DeepSpeed's accumulation count depends on it
        self.grad_accum_steps = -(-rows_per_rank // micro)
        ds_config = deepspeed_config(
            c.deepspeed.zero_stage, micro_batch_size=micro, grad_accum_steps=self.grad_accum_steps, world_size=world,
            lr=opt.lr, betas=(opt.beta1, opt.beta2), weight_decay=opt.weight_decay,
            grad_clip=opt.grad_clip if opt.grad_clip > 0 else None,
            offload_optimizer=c.deepspeed.offload_optimizer,
        )
        # fp32 master weights; bf16 comes from the same torch.autocast as in one process.
        self.deepspeed = wrap_with_deepspeed(PolicyAndValue(self.model, self.value_head), ds_config)
        self.forward_model = self.deepspeed
        self.optimizer = self.deepspeed.optimizer

    # -- one step -------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One RL step; returns its metrics."""
        self.step += 1
        timings: dict[str, float] = {"generate": 0.0, "verify": 0.0, "train": 0.0}

        batch = self.rollout(timings)  # sample + verify (+ dynamic sampling, + ReMax baseline)
        for hook in self.hooks:
            hook.after_verify(self, batch)

        start = time.perf_counter()
        update_metrics: dict[str, float] = {}
        if len(batch):  # empty only when dynamic sampling found no group with any signal
            self.tensorize(batch)
            self.score(batch)  # log π_old / log π_ref / values where needed before the update
            self.compute_advantages(batch)
            update_metrics = self.update(batch)
            self.sync_engine_weights()
        timings["train"] = time.perf_counter() - start

        metrics = self.step_metrics(batch, update_metrics, timings)
        for hook in self.hooks:
            hook.after_step(self, self.step, metrics)
        return metrics

    # -- rollout and verification ---------------------------------------------------------------

    def rollout(self, timings: dict[str, float]) -> RolloutBatch:
        """Sample ``group_size`` responses for ``prompts_per_step`` prompts and verify them.

        With dynamic sampling, groups whose responses are all correct or all wrong are dropped and
        more prompts are sampled (up to ``max_sampling_rounds`` rounds) until the batch is full.
        """
        r = self.config.rollout
        wanted = r.prompts_per_step
        batches: list[RolloutBatch] = []
        kept_groups = 0
        stats = {"zero_variance_share": 0.0, "sampled_groups": 0.0, "accuracy_all": 0.0, "rounds": 0.0}
        for round_index in range(self.algo.max_sampling_rounds if self.algo.dynamic_sampling else 1):
            problems = self.stream.take(wanted)
            batch = self._sample_groups(problems, round_index, timings)
            zero_share = zero_variance_group_share(batch.group_ids, batch.rewards)
            groups = len(problems)
            stats["zero_variance_share"] += zero_share * groups
            stats["sampled_groups"] += groups
            stats["accuracy_all"] += float(batch.correct.float().sum())
            stats["rounds"] += 1
            if self.algo.dynamic_sampling:
                keep = group_accuracy_filter(batch.group_ids, batch.correct)
                index = kept_group_indices(batch.group_ids, keep, max_groups=wanted - kept_groups)
                batch = _select(batch, index)
                kept_groups += len(set(batch.group_ids.tolist()))
            else:
                kept_groups += groups
            batches.append(batch)
            if kept_groups >= wanted:
                break
        batch = _concat(batches)  # may be empty: every sampled group had zero variance
        n_sampled = stats["sampled_groups"] * r.group_size
        batch.stats = {
            "zero_variance_share": stats["zero_variance_share"] / max(stats["sampled_groups"], 1),
            "accuracy_sampled": stats["accuracy_all"] / max(n_sampled, 1),
            "sampling_rounds": stats["rounds"],
            "groups_trained": float(len(set(batch.group_ids.tolist()))) if len(batch) else 0.0,
        }
        return batch

    def _sample_groups(self, problems: list[dict[str, Any]], round_index: int, timings: dict[str, float]) -> RolloutBatch:
        """Sample and verify the groups of ``problems``. Over several ranks, each rank samples and
        verifies a contiguous share of the prompts (prompt ``i`` keeps its own seeded stream, so the
        samples are those one process would draw) and the shares are gathered: every rank then holds
        the whole batch, and advantages use whole-batch statistics."""
        r = self.config.rollout
        first, last = self._rank_slice(len(problems))  # a dynamic-sampling refill may not split evenly
        mine = problems[first:last]
        prompts = [render_prompt(self.tokenizer, p["prompt"]) for p in mine]
        params = SamplingParams(
            n=r.group_size, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, stop=tuple(r.stop),
            seed=derived_seed(self.config.seed, "rollout", self.step, round_index), first_prompt_index=first,
        )
        start = time.perf_counter()
        groups = self.engine.generate(prompts, params) if prompts else []
        baseline_groups = None
        if self.config.estimator_name == "remax" and prompts:
            greedy = SamplingParams(n=1, temperature=0.0, max_tokens=r.max_tokens, stop=tuple(r.stop))
            baseline_groups = self.engine.generate(prompts, greedy)
        timings["generate"] += time.perf_counter() - start

        start = time.perf_counter()
        verdicts = self.verify_fn([p for p, g in zip(mine, groups) for _ in g], [s.text for g in groups for s in g]) if groups else []
        base_rewards = None
        if self.config.estimator_name == "remax":
            base_rewards = [v.reward for v in self.verify_fn(mine, [g[0].text for g in baseline_groups])] if mine else []
        timings["verify"] += time.perf_counter() - start
        if self.dist.world_size > 1:
            groups, verdicts, base_rewards = self._gather_shares(groups, verdicts, base_rewards)

        flat_problems = [p for p, g in zip(problems, groups) for _ in g]
        samples = [s for g in groups for s in g]
        group_ids = torch.tensor([i for i, g in enumerate(groups) for _ in g], dtype=torch.long)
        # Group ids must stay distinct across dynamic-sampling rounds.
        group_ids += round_index * max(len(problems), 1)
        baseline = None
        if base_rewards is not None:
            baseline = torch.tensor([base_rewards[i] for i, g in enumerate(groups) for _ in g], dtype=torch.float32)

        rewards = torch.tensor([v.reward for v in verdicts], dtype=torch.float32)
        if self.algo.overlong_buffer > 0 and samples:
            lengths = torch.tensor([len(s.token_ids) for s in samples], dtype=torch.float32)
            rewards = rewards + overlong_penalty(lengths, r.max_tokens, self.algo.overlong_buffer, self.algo.overlong_factor)
        return RolloutBatch(
            problems=flat_problems, group_ids=group_ids, samples=samples, verdicts=verdicts, rewards=rewards,
            correct=torch.tensor([v.correct for v in verdicts], dtype=torch.bool), baseline_rewards=baseline,
        )

    def _gather_shares(self, groups: list, verdicts: list, base_rewards: list | None) -> tuple[list, list, list | None]:
        """Every rank's (groups, verdicts, baseline rewards), concatenated in rank order."""
        import torch.distributed as torch_dist

        shares: list[Any] = [None] * self.dist.world_size
        torch_dist.all_gather_object(shares, (groups, verdicts, base_rewards))
        groups = [g for share in shares for g in share[0]]
        verdicts = [v for share in shares for v in share[1]]
        base_rewards = None if base_rewards is None else [b for share in shares for b in share[2]]
        return groups, verdicts, base_rewards

    def sync_engine_weights(self) -> None:
        """Hand the updated weights to the rollout engine. Under ZeRO-3 the parameters are
        partitioned over ranks: they are gathered for the copy (a collective: every rank calls this)."""
        if self.deepspeed is not None and self.config.deepspeed.zero_stage == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.model.parameters()), modifier_rank=None):
                self.engine.sync_weights(self.model)
            return
        self.engine.sync_weights(self.model)

    def _verify_with_envs(self, problems: list[dict[str, Any]], responses: list[str]) -> list[Verdict]:
        from reasonrl.envs.batch import verify_problems

        return verify_problems(problems, responses, workers=self.config.verify_workers, timeout=self.config.verify_timeout)

    # -- tensors and scoring ----------------------------------------------------------------------

    def tensorize(self, batch: RolloutBatch) -> None:
        """Build ``[left-padded prompt | right-padded response]`` inputs and the response mask."""
        pad = self.engine.pad_token_id if hasattr(self.engine, "pad_token_id") else (self.tokenizer.pad_token_id or 0)
        prompts = [s.prompt_token_ids for s in batch.samples]
        responses = [s.token_ids if s.token_ids else [pad] for s in batch.samples]
        P = max((len(p) for p in prompts), default=0)
        T = max((len(r) for r in responses), default=1)
        B = len(batch.samples)
        input_ids = torch.full((B, P + T), pad, dtype=torch.long)
        attention = torch.zeros((B, P + T), dtype=torch.long)
        response_mask = torch.zeros((B, T), dtype=torch.float32)
        rollout_lp = torch.zeros((B, T), dtype=torch.float32)
        for row, (prompt, sample) in enumerate(zip(prompts, batch.samples)):
            input_ids[row, P - len(prompt) : P] = torch.tensor(prompt, dtype=torch.long)
            attention[row, P - len(prompt) : P] = 1
            n = len(sample.token_ids)
            if n:
                input_ids[row, P : P + n] = torch.tensor(sample.token_ids, dtype=torch.long)
                attention[row, P : P + n] = 1
                response_mask[row, :n] = 1.0
                rollout_lp[row, :n] = torch.tensor(sample.logprobs, dtype=torch.float32)
        batch.input_ids = input_ids.to(self.device)
        batch.attention_mask = attention.to(self.device)
        batch.response_mask = response_mask.to(self.device)
        batch.rollout_logprobs = rollout_lp.to(self.device)

    @torch.no_grad()
    def score(self, batch: RolloutBatch) -> None:
        """Log-probs the update needs before it starts: π_ref (KL), π_old and values (multi-update / PPO)."""
        micro = self._micro_size(len(batch))
        if self.ref_model is not None:
            batch.ref_logprobs = self._forward_in_chunks(self.ref_model, batch, micro)[0]
        if not self.single_update:
            was_training = self.model.training
            self.model.eval()
            batch.old_logprobs, batch.old_values = self._forward_in_chunks(self.forward_model, batch, micro, self.value_head)
            self.model.train(was_training)

    def _forward_in_chunks(
        self, model: Any, batch: RolloutBatch, micro: int, value_head: ValueHead | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probs (and values) of every row without gradient; over several ranks each rank
        scores its share of the rows and the shares are gathered."""
        world = self.dist.world_size
        if world > 1:
            # Every rank scores the same number of rows (the last share is padded with row 0 and
            # the padding dropped after the gather): ZeRO-3 gathers parameters in every forward.
            first, last = self._rank_slice(len(batch))
            share = -(-len(batch) // world)
            rows = list(range(first, last)) + [0] * (share - (last - first))
            logprobs, values = self._forward_rows(model, batch, rows, micro, value_head)
            gathered = self._all_gather_rows(logprobs)[: len(batch)]
            return gathered, None if values is None else self._all_gather_rows(values)[: len(batch)]
        return self._forward_rows(model, batch, list(range(len(batch))), micro, value_head)

    def _rank_slice(self, count: int) -> tuple[int, int]:
        """``[first, last)`` of this rank's contiguous share of ``count`` items (all of them in one
        process; the last ranks' shares may be shorter or empty)."""
        if self.dist.world_size == 1:
            return 0, count
        share = -(-count // self.dist.world_size)
        first = min(self.dist.rank * share, count)
        return first, min(first + share, count)

    def _all_gather_rows(self, mine: torch.Tensor) -> torch.Tensor:
        import torch.distributed as torch_dist

        parts = [torch.empty_like(mine) for _ in range(self.dist.world_size)]
        torch_dist.all_gather(parts, mine.contiguous())
        return torch.cat(parts)

    def _forward_rows(
        self, model: Any, batch: RolloutBatch, row_list: list[int], micro: int, value_head: ValueHead | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        logprobs, values = [], []
        index = torch.tensor(row_list, dtype=torch.long, device=self.device)
        for start in range(0, len(row_list), micro):
            rows = index[start : start + micro]
            with self._autocast():
                lp, _, v = response_logprobs(
                    model, batch.input_ids[rows], batch.attention_mask[rows], batch.response_length,
                    self.config.rollout.temperature, value_head=value_head, share_prompts=self.share_prompts,
                )
            logprobs.append(lp.float())
            if v is not None:
                values.append(v.float())
        return torch.cat(logprobs), (torch.cat(values) if values else None)

    def compute_advantages(self, batch: RolloutBatch) -> None:
        inputs = AdvantageInputs(
            rewards=batch.rewards.to(self.device),
            response_mask=batch.response_mask,
            group_ids=batch.group_ids.to(self.device),
            old_logprobs=batch.old_logprobs if batch.old_logprobs is not None else batch.rollout_logprobs,
            ref_logprobs=batch.ref_logprobs,
            values=batch.old_values,
            baseline_rewards=None if batch.baseline_rewards is None else batch.baseline_rewards.to(self.device),
            token_rewards=batch.token_rewards,
        )
        batch.advantages, batch.returns = compute_advantages(inputs, self.advantage_config)

    # -- the update -------------------------------------------------------------------------------

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """Minibatched policy (and value) update with gradient accumulation and clipping."""
        opt = self.config.optim
        B = len(batch)
        if B == 0:
            return {}
        minibatch = opt.minibatch_size or B
        world = self.dist.world_size
        micro = self.deepspeed_micro if self.deepspeed is not None else self._micro_size(minibatch)
        self.model.train()
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        sums: dict[str, float] = {}
        counts: dict[str, float] = {}
        trainer_lp_first_pass: list[torch.Tensor] = []

        def add(name: str, value: float, weight: float = 1.0) -> None:
            sums[name] = sums.get(name, 0.0) + value * weight
            counts[name] = counts.get(name, 0.0) + weight

        # A row whose advantage is 0 on every token (a zero-variance group) adds exactly nothing to
        # the policy-gradient loss; without a KL or value term it can be left out of the forward and
        # backward pass. The normalisers below still count every row, so the loss is unchanged.
        skippable = self.skip_zero_advantage_rows and self.loss_config.kl_coef == 0 and not self.is_ppo

        for epoch in range(opt.epochs):
            generator = torch.Generator().manual_seed(derived_seed(self.config.seed, "minibatch", self.step, epoch) % 2**63)
            order = torch.randperm(B, generator=generator) if minibatch < B else torch.arange(B)
            for mb_start in range(0, B, minibatch):
                mb_rows = order[mb_start : mb_start + minibatch].to(self.device)
                mb_mask = batch.response_mask[mb_rows]
                num_tokens = float(mb_mask.sum())
                num_sequences = float(len(mb_rows))
                active = mb_rows
                if skippable:
                    nonzero = (batch.advantages[mb_rows].abs() * mb_mask).sum(-1) > 0
                    active = mb_rows[nonzero]
                if world > 1:
                    # This rank's share of the minibatch. DeepSpeed averages gradients over the ranks
                    # and divides each backward by grad_accum_steps; the normalisers are scaled to
                    # match so the step equals the one-process step on the whole minibatch.
                    first, last = self._rank_slice(len(mb_rows))
                    active = mb_rows[first:last]
                    num_tokens = micro_batch_normalizer(num_tokens, world, self.grad_accum_steps)
                    num_sequences = micro_batch_normalizer(num_sequences, world, self.grad_accum_steps)
                add("rows_trained_share", float(len(active)) / max(len(mb_rows), 1) * world)
                if self.deepspeed is None:
                    self.optimizer.zero_grad(set_to_none=True)
                for mc_start in range(0, len(active), micro):
                    rows = active[mc_start : mc_start + micro]
                    with self._autocast():
                        logprobs, entropy, values = response_logprobs(
                            self.forward_model, batch.input_ids[rows], batch.attention_mask[rows], batch.response_length,
                            self.config.rollout.temperature, with_entropy=True, value_head=self.value_head,
                            share_prompts=self.share_prompts,
                        )
                    logprobs = logprobs.float()
                    mask = batch.response_mask[rows]
                    old = batch.old_logprobs[rows] if batch.old_logprobs is not None else logprobs.detach()
                    if epoch == 0 and batch.old_logprobs is None:
                        trainer_lp_first_pass.append(torch.stack([logprobs.detach(), batch.rollout_logprobs[rows], mask]))
                    ref = batch.ref_logprobs[rows] if batch.ref_logprobs is not None else None
                    loss, m = compute_policy_loss(
                        logprobs, old, batch.advantages[rows], mask, self.loss_config, ref,
                        num_tokens=num_tokens, num_sequences=num_sequences,
                    )
                    if self.value_head is not None:
                        vloss, vm = value_loss(values, batch.old_values[rows], batch.returns[rows], mask,
                                               clip_range=self.algo.value_clip)
                        # value_loss averages over this micro-batch's tokens: reweight to the minibatch.
                        loss = loss + self.algo.vf_coef * vloss * float(mask.sum()) / max(num_tokens, 1.0)
                        for k, v in vm.items():
                            add(k, float(v), float(mask.sum()))
                    if self.deepspeed is not None:
                        self.deepspeed.backward(loss)
                        # DeepSpeed counts micro-batches in step(): called after every backward, it
                        # updates the weights at the accumulation boundary (the minibatch's last one).
                        self.deepspeed.step()
                    else:
                        loss.backward()
                    weight = float(mask.sum())
                    for k, v in m.items():
                        add(k, float(v), weight)
                    add("entropy_trained", float((entropy * mask).sum() / mask.sum().clamp(min=1)), weight)
                if self.deepspeed is not None:
                    # A short share (a dynamic-sampling batch that does not split evenly) still runs
                    # grad_accum_steps backward passes, the extra ones with zero loss, so that every
                    # rank joins every gradient reduction and the step falls on the boundary.
                    for _ in range(self.grad_accum_steps - -(-len(active) // micro)):
                        self._zero_loss_backward(batch, mb_rows[:1])
                    add("grad_norm", float(self.deepspeed.get_global_grad_norm() or 0.0))
                    continue
                if len(active) == 0:
                    continue  # nothing carries gradient: skip the optimizer step (Adam state untouched)
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                if opt.grad_clip > 0:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, opt.grad_clip)
                else:
                    grad_norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                add("grad_norm", float(grad_norm))
                self.optimizer.step()
        if self.deepspeed is None:
            self.optimizer.zero_grad(set_to_none=True)

        if world > 1:  # each rank saw its share of the rows: weigh them all together
            import torch.distributed as torch_dist

            shares: list[Any] = [None] * world
            torch_dist.all_gather_object(shares, (sums, counts))
            sums, counts = {}, {}
            for rank_sums, rank_counts in shares:
                for key in rank_sums:
                    sums[key] = sums.get(key, 0.0) + rank_sums[key]
                    counts[key] = counts.get(key, 0.0) + rank_counts[key]
        metrics = {k: sums[k] / counts[k] for k in sums if counts[k] > 0}
        metrics["lr"] = lr
        # Rollout-vs-trainer log-prob gap: how far the engine's numbers are from the trainer's.
        if batch.old_logprobs is not None:
            gap_lp, gap_roll, gap_mask = batch.old_logprobs, batch.rollout_logprobs, batch.response_mask
        elif trainer_lp_first_pass:
            stacked = torch.cat(trainer_lp_first_pass, dim=1)
            gap_lp, gap_roll, gap_mask = stacked[0], stacked[1], stacked[2]
        else:
            gap_lp = None
        if gap_lp is not None and float(gap_mask.sum()) > 0:
            metrics["logprob_gap"] = float(((gap_lp - gap_roll).abs() * gap_mask).sum() / gap_mask.sum())
        if batch.ref_logprobs is not None:
            from reasonrl.algorithms import kl_penalty

            trainer_lp = batch.old_logprobs if batch.old_logprobs is not None else batch.rollout_logprobs
            kl = kl_penalty(trainer_lp, batch.ref_logprobs, self.algo.kl_estimator)
            metrics["kl"] = float((kl * batch.response_mask).sum() / batch.response_mask.sum().clamp(min=1))
        return metrics

    def _zero_loss_backward(self, batch: RolloutBatch, rows: torch.Tensor) -> None:
        """A DeepSpeed backward pass and micro-step that changes no gradient (padding)."""
        with self._autocast():
            logprobs, _, values = response_logprobs(
                self.forward_model, batch.input_ids[rows], batch.attention_mask[rows], batch.response_length,
                self.config.rollout.temperature, value_head=self.value_head, share_prompts=self.share_prompts,
            )
        loss = logprobs.float().sum() * 0.0 + (values.float().sum() * 0.0 if values is not None else 0.0)
        self.deepspeed.backward(loss)
        self.deepspeed.step()

    # -- metrics ----------------------------------------------------------------------------------

    def step_metrics(self, batch: RolloutBatch, update: dict[str, float], timings: dict[str, float]) -> dict[str, float]:
        lengths = [len(s.token_ids) for s in batch.samples]
        generated = sum(lengths)
        metrics: dict[str, float] = {"step": float(self.step)}
        if len(batch):
            metrics.update(
                reward=float(batch.rewards.mean()),
                accuracy=float(batch.correct.float().mean()),
                truncation_rate=sum(s.finish_reason == "length" for s in batch.samples) / len(batch),
                verifier_timeouts=float(sum(v.reason == "timeout" for v in batch.verdicts)),
                response_length=generated / len(batch),
                # Monte-Carlo entropy estimate, E[-log pi(y_t)] over the sampled tokens: free (the engine
                # reports the log-probs) and covers every response, also those the update skips.
                entropy=float(
                    -(batch.rollout_logprobs * batch.response_mask).sum() / batch.response_mask.sum().clamp(min=1)
                ),
                advantage_abs_mean=float(
                    (batch.advantages.abs() * batch.response_mask).sum() / batch.response_mask.sum().clamp(min=1)
                ),
            )
        metrics.update(batch.stats)
        metrics.update(update)
        metrics["tokens_per_s"] = generated / max(timings["generate"], 1e-9)
        metrics.update({f"time_{k}": v for k, v in timings.items()})
        metrics["data_position"] = float(self.stream.position)
        metrics["max_tokens"] = float(self.config.rollout.max_tokens)
        return metrics

    # -- helpers ----------------------------------------------------------------------------------

    def _lr(self) -> float:
        opt = self.config.optim
        if opt.warmup_steps:
            return opt.lr * min(1.0, self.step / opt.warmup_steps)
        return opt.lr

    def _micro_size(self, minibatch: int) -> int:
        return self.config.optim.micro_batch_size or minibatch

    def _autocast(self):
        if self.autocast is None:
            import contextlib

            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast)

    # -- checkpoint state -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able state for exact resume (the optimizer and RNG are saved separately)."""
        return {"rl_step": self.step, "rl_stream_position": self.stream.position}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["rl_step"])
        self.stream.position = int(state["rl_stream_position"])

    def extra_state(self) -> dict[str, Any]:
        return {"value_head": self.value_head.state_dict()} if self.value_head is not None else {}

    def load_extra_state(self, extra: dict[str, Any]) -> None:
        if self.value_head is not None and "value_head" in extra:
            self.value_head.load_state_dict(extra["value_head"])


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPU with fp32 master weights (dtype=auto); none on CPU or with explicit dtypes."""
    if device.type == "cuda" and config.dtype == "auto":
        return torch.bfloat16
    return None


def _select(batch: RolloutBatch, index: torch.Tensor) -> RolloutBatch:
    rows = index.tolist()
    return RolloutBatch(
        problems=[batch.problems[i] for i in rows],
        group_ids=batch.group_ids[index],
        samples=[batch.samples[i] for i in rows],
        verdicts=[batch.verdicts[i] for i in rows],
        rewards=batch.rewards[index],
        correct=batch.correct[index],
        baseline_rewards=None if batch.baseline_rewards is None else batch.baseline_rewards[index],
    )


def _concat(batches: list[RolloutBatch]) -> RolloutBatch:
    if len(batches) == 1:
        return batches[0]
    return RolloutBatch(
        problems=[p for b in batches for p in b.problems],
        group_ids=torch.cat([b.group_ids for b in batches]),
        samples=[s for b in batches for s in b.samples],
        verdicts=[v for b in batches for v in b.verdicts],
        rewards=torch.cat([b.rewards for b in batches]),
        correct=torch.cat([b.correct for b in batches]),
        baseline_rewards=(
            None if batches[0].baseline_rewards is None else torch.cat([b.baseline_rewards for b in batches])
        ),
    )


def warn_on_dead_signal(metrics: dict[str, float], history: list[dict[str, float]], window: int = 10) -> str | None:
    """A warning when zero-variance groups or truncation dominate the last ``window`` steps, else None."""
    recent = (history + [metrics])[-window:]
    if len(recent) < min(window, 3):
        return None
    zero = sum(m.get("zero_variance_share", 0.0) for m in recent) / len(recent)
    trunc = sum(m.get("truncation_rate", 0.0) for m in recent) / len(recent)
    acc = sum(m.get("accuracy", 0.0) for m in recent) / len(recent)
    if trunc > 0.5:
        return (
            f"warning: {trunc:.0%} of responses hit rollout.max_tokens={int(metrics.get('max_tokens', 0))} over "
            f"the last {len(recent)} steps; raise rollout.max_tokens or the verifier sees cut-off answers"
        )
    if zero > 0.8:
        kind = "all-wrong" if acc < 0.5 else "all-correct"
        return (
            f"warning: {zero:.0%} of groups had zero reward variance (mostly {kind}) over the last {len(recent)} "
            f"steps, so they carry no learning signal; "
            + ("warm the model up more (SFT) or use easier problems" if acc < 0.5 else "use harder problems")
            + ", or enable algorithm.dynamic_sampling"
        )
    return None


def is_finite_metrics(metrics: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in metrics.values())
