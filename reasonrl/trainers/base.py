"""What every trainer shares: the run's context, roles, hooks, rewarder, state and weight sync.

A trainer subclasses :class:`Trainer`, says which roles it needs (:meth:`Trainer.roles_needed`)
and implements :meth:`Trainer.train_step`; the generic job in :mod:`reasonrl.trainers.run` builds
the roles, resumes, loops, checkpoints and evaluates. The update arithmetic lives in
:class:`~reasonrl.trainers.learner.Learner`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from reasonrl.config import TrainConfig
from reasonrl.engines.base import SamplingParams
from reasonrl.trainers.batch import RolloutBatch
from reasonrl.trainers.data import derived_seed, render_prompt
from reasonrl.trainers.hooks import HookList
from reasonrl.trainers.learner import Learner
from reasonrl.trainers.roles import ModelRole, PolicyWithCritic
from reasonrl.trainers.strategy import OptimizerSettings, ParamGroup, Strategy


@dataclass
class RoleRequest:
    """A role a trainer needs, and the config key that provides it (named in the error when missing)."""

    name: str
    config_key: str
    trainable: bool = False


@dataclass
class TrainContext:
    """Everything a trainer is built from (assembled by :func:`reasonrl.trainers.run.main`)."""

    config: TrainConfig
    tokenizer: Any
    engine: Any  # the rollout engine (HF decoding with the policy itself, or vLLM kept in sync)
    source: Any  # ProblemSource: the task's training stream and held-out splits
    roles: dict[str, ModelRole]
    strategy: Strategy
    rewarder: Callable[[list[dict[str, Any]], list[str]], Any]  # -> RewardOutput
    hooks: HookList
    log: Callable[[str], None] = print


class Trainer:
    """Base class: holds the context, the step counter, the training stream and checkpointed state."""

    name = "trainer"

    @classmethod
    def roles_needed(cls, config: TrainConfig) -> list[RoleRequest]:
        """The roles this trainer needs for ``config`` (the policy is always there)."""
        return [RoleRequest("policy", "model", trainable=True)]

    def __init__(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.roles = ctx.roles
        self.strategy = ctx.strategy
        self.hooks = ctx.hooks
        self.engine = ctx.engine
        self.tokenizer = ctx.tokenizer
        self.log = ctx.log
        self.policy = ctx.roles["policy"]
        self.device = next(self.policy.model.parameters()).device
        self.stream = ctx.source.stream("rl")
        self.step = 0
        self.sampled_tokens = 0  # every token the engine generated so far (the algorithms' shared budget)
        self.learner: Learner | None = None

    @classmethod
    def from_models(cls, config: TrainConfig, model: Any, tokenizer: Any, engine: Any, source: Any, rewarder: Any,
                    ref_model: Any = None, hooks: HookList | None = None, log: Callable[[str], None] = print) -> "Trainer":
        """A trainer over models already in memory, in one process (notebooks, tests); ``reasonrl
        train`` builds its roles from checkpoints instead (:func:`reasonrl.trainers.run.build_roles`)."""
        roles = {"policy": ModelRole("policy", model, trainable=True, lr=config.optim.lr,
                                     weight_decay=config.optim.weight_decay, schedule=role_schedule(config, config.optim.lr))}
        if ref_model is not None:
            roles["reference"] = ModelRole("reference", ref_model)
        return cls(TrainContext(config, tokenizer, engine, source, roles, Strategy(), rewarder, hooks or HookList([]), log))

    def train_step(self) -> dict[str, float]:  # pragma: no cover - every trainer implements it
        raise NotImplementedError

    # -- building a learner -----------------------------------------------------------------------

    def build_learner(self, critic: torch.nn.Module | None = None, critic_role: ModelRole | None = None,
                      batch_rows: int = 0) -> Learner:
        """A learner over the policy (and, trained with it, a value head or critic model)."""
        c = self.config
        groups = [ParamGroup("policy", self.policy.parameters(), self.policy.lr, self.policy.weight_decay)]
        schedules = {"policy": self.policy.schedule}
        if critic is not None:
            lr = critic_role.lr if critic_role is not None else self.policy.lr
            groups.append(ParamGroup("critic", [p for p in critic.parameters() if p.requires_grad], lr,
                                     critic_role.weight_decay if critic_role is not None else self.policy.weight_decay))
            schedules["critic"] = critic_role.schedule if critic_role is not None else self.policy.schedule
        module = PolicyWithCritic(self.policy.model, critic) if critic is not None else self.policy.model
        settings = OptimizerSettings(
            betas=(c.optim.beta1, c.optim.beta2), grad_clip=c.optim.grad_clip, minibatch_rows=c.optim.minibatch_size,
            micro_batch_rows=c.optim.micro_batch_size, batch_rows=batch_rows or c.rollout.prompts_per_step * c.rollout.group_size,
            zero_stage=c.deepspeed.zero_stage, offload_optimizer=c.deepspeed.offload_optimizer,
        )
        return Learner(self.strategy, module, groups, settings, schedules, c.seed)

    def prompt_sharing(self) -> bool:
        """Whether a training forward may run each distinct prompt once (see ``response_logprobs``):
        HF drops the KV cache under gradient checkpointing, and ZeRO-3 fetches parameters module by
        module as the forward runs; both keep the plain forward."""
        c = self.config
        zero3 = self.learner is not None and self.learner.distributed and c.deepspeed.zero_stage == 3
        return c.optim.share_prompt_forward and not c.optim.gradient_checkpointing and not zero3

    def autocast(self):
        """bf16 autocast on a GPU with fp32 master weights (``dtype=auto``); none on a CPU."""
        import contextlib

        if self.device.type == "cuda" and self.config.dtype == "auto":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- sampling and rewards ---------------------------------------------------------------------

    def sample_groups(self, problems: list[dict[str, Any]], round_index: int, timings: dict[str, float],
                      greedy_baseline: bool = False) -> RolloutBatch:
        """Sample ``rollout.group_size`` responses per problem and reward them.

        Over several ranks, each rank samples and rewards a contiguous share of the prompts (prompt
        ``i`` keeps its own seeded stream, so the samples are those one process would draw) and the
        shares are gathered: every rank then holds the whole batch. ``greedy_baseline`` adds the
        reward of one greedy response per prompt (ReMax's baseline) as ``baseline_rewards``.
        """
        r = self.config.rollout
        first, last = self.strategy.rank_slice(len(problems))  # a dynamic-sampling refill may not split evenly
        mine = problems[first:last]
        prompts = [render_prompt(self.tokenizer, p["prompt"]) for p in mine]
        params = SamplingParams(
            n=r.group_size, temperature=r.temperature, top_p=r.top_p, max_tokens=r.max_tokens, stop=tuple(r.stop),
            seed=derived_seed(self.config.seed, "rollout", self.step, round_index), first_prompt_index=first,
        )
        start = time.perf_counter()
        groups = self.engine.generate(prompts, params) if prompts else []
        greedy = None
        if greedy_baseline and prompts:
            greedy = self.engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=r.max_tokens, stop=tuple(r.stop)))
        timings["generate"] = timings.get("generate", 0.0) + time.perf_counter() - start

        start = time.perf_counter()
        flat = [p for p, g in zip(mine, groups) for _ in g]
        rewarded = self.ctx.rewarder(flat, [s.text for g in groups for s in g]) if flat else None
        baseline = [float(v) for v in self.ctx.rewarder(mine, [g[0].text for g in greedy]).rewards] if greedy else []
        timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - start
        share = (groups, *(_reward_lists(rewarded)), baseline)
        parts = self.strategy.gather_objects(share) if self.strategy.world_size > 1 else [share]
        groups, verdicts, rewards, components, baseline = (
            [g for p in parts for g in p[0]], [v for p in parts for v in p[1]], [x for p in parts for x in p[2]],
            {k: [x for p in parts for x in p[3].get(k, [])] for k in dict.fromkeys(k for p in parts for k in p[3])}, [b for p in parts for b in p[4]],
        )
        samples = [s for g in groups for s in g]
        self.sampled_tokens += sum(len(s.token_ids) for s in samples) + sum(len(g[0].token_ids) for g in greedy or [])
        group_ids = torch.tensor([i for i, g in enumerate(groups) for _ in g], dtype=torch.long)
        group_ids += round_index * max(len(problems), 1)  # group ids stay distinct across sampling rounds
        return RolloutBatch(
            problems=[p for p, g in zip(problems, groups) for _ in g], group_ids=group_ids, samples=samples,
            verdicts=verdicts, rewards=torch.tensor(rewards, dtype=torch.float32),
            correct=torch.tensor([v.correct for v in verdicts], dtype=torch.bool),
            reward_components={k: torch.tensor(v, dtype=torch.float32) for k, v in components.items()},
            baseline_rewards=(
                torch.tensor([baseline[i] for i, g in enumerate(groups) for _ in g], dtype=torch.float32)
                if greedy_baseline else None
            ),
        )

    # -- roles and the engine ---------------------------------------------------------------------

    def sync_role(self, target: str, source: str, alpha: float = 1.0, reset_optimizer: bool = False) -> None:
        """``target ← α·source + (1−α)·target``; optionally restart the source's optimizer state."""
        if target not in self.roles:
            raise KeyError(f"no {target} role in this run (roles: {', '.join(self.roles)})")
        self.roles[target].sync_from(self.roles[source], alpha=alpha, step=self.step)
        if reset_optimizer and self.learner is not None:
            self.learner.optimizer.reset_state(source)

    def sync_engine_weights(self) -> None:
        """Hand the updated policy to the rollout engine. Under ZeRO-3 the parameters are
        partitioned over ranks: they are gathered for the copy (a collective: every rank calls this)."""
        model = self.policy.model
        if any(hasattr(p, "ds_id") for p in model.parameters()):
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
                self.engine.sync_weights(model)
            return
        self.engine.sync_weights(model)

    # -- checkpoint state -------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able state for exact resume (weights, optimizer and RNG are saved beside it)."""
        return {"rl_step": self.step, "rl_stream_position": self.stream.position, "sampled_tokens": self.sampled_tokens,
                "hooks": self.hooks.state_dict(), "role_syncs": {n: r.syncs for n, r in self.roles.items() if r.syncs}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.step = int(state["rl_step"])
        self.stream.position = int(state["rl_stream_position"])
        self.sampled_tokens = int(state.get("sampled_tokens", 0))
        self.hooks.load_state_dict(state.get("hooks", {}))
        for name, syncs in state.get("role_syncs", {}).items():
            if name in self.roles:
                self.roles[name].syncs = list(syncs)
        self.hooks.fire("on_load", self)


def role_schedule(config: TrainConfig, base_lr: float) -> Callable[[int], float]:
    """``step -> learning rate``: ``optim.lr_schedule`` peaking at ``base_lr`` after ``optim.warmup_steps``, over ``steps``."""
    from reasonrl.algorithms.schedules import lr_at

    o = config.optim
    return lambda step: lr_at(step, config.steps, base_lr, o.lr_schedule, o.warmup_steps, o.min_lr_ratio)


def _reward_lists(rewarded: Any) -> tuple[list, list[float], dict[str, list[float]]]:
    """(verdicts, rewards, components) of a RewardOutput, or empty ones."""
    if rewarded is None:
        return [], [], {}
    return list(rewarded.verdicts), [float(x) for x in rewarded.rewards], {k: list(v) for k, v in rewarded.components.items()}


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
