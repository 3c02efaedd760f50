"""Frozen dataclass configs, loaded from YAML and overridden with ``key=value`` strings.

Every section is a frozen dataclass with one documented field per setting. :func:`load_config`
reads an optional YAML file, applies ``key=value`` overrides (nested keys with dots:
``algorithm.estimator=rloo``), coerces strings to each field's type, and rejects

* unknown keys, naming the close matches and the valid keys of that section;
* values of the wrong type, naming the key and the expected type;
* values outside a ``Literal[...]`` field's choices, naming the valid choices.

The generic machinery (:func:`from_dict`, :func:`to_dict`, :func:`load_config`) works for any
dataclass; :class:`TrainConfig` is the schema of ``reasonrl train`` and :class:`SFTConfig` the
schema of ``reasonrl sft`` (also the ``sft`` section of a train config).
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from reasonrl.data_gen.base import ConfigError as _BaseConfigError


class ConfigError(_BaseConfigError):
    """A config key or value is invalid; the message names the key and the valid choices."""


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------

# Other spellings of registered advantage estimators (the estimator registry accepts them too).
ESTIMATOR_ALIASES = {
    "drgrpo": "dr_grpo",
    "reinforce++": "reinforce_plus_plus",
    "reinforce++-baseline": "reinforce_plus_plus_baseline",
    "reinforce_pp": "reinforce_plus_plus",
    "ppo": "gae",
}


@dataclass(frozen=True)
class TinyModelSection:
    """Sizes of the embedded tiny model (used when ``model=tiny``); see :class:`reasonrl.models.tiny.TinyModelConfig`."""

    hidden_size: int = 128  # model width
    num_layers: int = 4  # transformer blocks
    num_heads: int = 4  # attention heads
    num_kv_heads: int = 2  # key/value heads (grouped-query attention)
    intermediate_size: int = 0  # MLP width; 0 = 4 * hidden_size
    max_position_embeddings: int = 512  # longest prompt + response
    bpe_merges: int = 256  # merges of the tiny BPE tokenizer (0 = bytes only)


@dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning on generated worked solutions (the warm-up before RL, or ``reasonrl sft``).

    Training stops at ``max_steps`` or, when ``target_accuracy`` > 0, as soon as the sampled accuracy
    on a validation split (disjoint from train and test) reaches it: the warm-up aims at a
    non-trivial but imperfect policy, which is where RL has signal to work with.
    """

    enabled: Literal["auto", "true", "false"] = "auto"  # auto: on for model=tiny, off for a given checkpoint
    max_steps: int = 1500  # optimizer steps at most
    batch_size: int = 64  # sequences per step
    lr: float = 2e-3  # peak learning rate (AdamW)
    warmup_steps: int = 50  # linear warm-up steps
    lr_schedule: str = "constant"  # after the warm-up: constant | linear | cosine (decay to min_lr_ratio * lr at max_steps)
    min_lr_ratio: float = 0.0  # linear/cosine: final learning rate as a share of lr, in [0, 1]
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    target_accuracy: float = 0.3  # stop once validation sampled accuracy >= this (0 = train max_steps)
    eval_every: int = 25  # steps between validation checks (for target_accuracy)
    eval_problems: int = 256  # validation problems per check
    eval_temperature: float = 1.0  # sampling temperature of the validation check
    solution_field: str = "worked_solution"  # metadata field holding the SFT target text
    max_length: int = 512  # longest prompt + solution in tokens (longer examples are skipped)
    cache: bool = True  # reuse a finished warm-up with the same config hash (REASONRL_CACHE)

    def __post_init__(self) -> None:
        _check_schedule(self, "sft")


@dataclass(frozen=True)
class RolloutConfig:
    """How responses are sampled each step."""

    prompts_per_step: int = 32  # prompts per RL step
    group_size: int = 8  # responses per prompt (the GRPO group)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16  # response length limit (truncated responses count in truncation_rate); 0 = from the task's answers
    stop: tuple = ()  # stop strings
    max_batch_size: int = 256  # sequences the engine decodes at once (memory bound)


@dataclass(frozen=True)
class AlgorithmConfig:
    """Which RL algorithm and its knobs (formulas in ALGORITHMS.md).

    The four named pieces (``estimator``, ``policy_loss``, ``kl_estimator``, ``loss_agg_mode``)
    and ``kl_controller`` are checked against their registries (:mod:`reasonrl.algorithms`); each
    also takes ``path/to/file.py:name``, a function the user's file registers with the matching
    ``register_*`` decorator (see :mod:`reasonrl.registry`).
    """

    estimator: str = "grpo"  # advantage estimator: grpo | dr_grpo | rloo | reinforce_plus_plus | reinforce_plus_plus_baseline | remax | ppo (= gae, value head); aliases drgrpo, reinforce++, reinforce++-baseline
    norm_by_std: bool = True  # GRPO divides by the group std (False = Dr. GRPO)
    std_scope: Literal["group", "batch"] = "group"
    gamma: float = 1.0  # discount for token-level estimators
    lam: float = 0.95  # GAE lambda (ppo)
    policy_loss: str = "ppo_clip"  # ppo_clip | vanilla_pg
    clip_low: float = 0.2  # PPO epsilon_low
    clip_high: float = 0.2  # PPO epsilon_high (DAPO clip-higher: 0.28)
    dual_clip_c: float = 0.0  # dual clip constant for A < 0 (0 = off; papers use 3)
    kl_coef: float = 0.0  # beta (the initial beta under kl_controller=adaptive); > 0 loads a frozen reference model
    kl_estimator: str = "k3"  # k1 | k2 | k3 (aliases kl, mse, low_var_kl)
    kl_in: Literal["loss", "reward"] = "loss"  # GRPO: loss; REINFORCE++/PPO: reward
    kl_controller: str = "fixed"  # fixed: beta = kl_coef throughout | adaptive: beta steered toward kl_target (Ziegler et al.)
    kl_target: float = 6.0  # adaptive: KL per response (summed over its tokens) to hold, in nats
    kl_horizon: int = 10000  # adaptive: beta moves by at most 20% per this many sampled responses
    loss_agg_mode: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm
    dynamic_sampling: bool = False  # DAPO: drop all-correct/all-wrong groups and sample more prompts
    max_sampling_rounds: int = 4  # dynamic sampling: rollout rounds per step at most
    overlong_buffer: int = 0  # DAPO overlong shaping buffer in tokens (0 = off)
    overlong_factor: float = 1.0  # DAPO overlong penalty factor
    vf_coef: float = 0.5  # ppo: value loss weight
    value_clip: float = 0.2  # ppo: value clip range

    def __post_init__(self) -> None:
        from reasonrl import algorithms  # torch: only once a config is built, never at import

        for key, registry in (
            ("estimator", algorithms.ADVANTAGE_ESTIMATOR_REGISTRY),
            ("policy_loss", algorithms.POLICY_LOSS_REGISTRY),
            ("kl_estimator", algorithms.KL_ESTIMATOR_REGISTRY),
            ("loss_agg_mode", algorithms.LOSS_AGGREGATION_REGISTRY),
            ("kl_controller", algorithms.KL_CONTROLLER_REGISTRY),
        ):
            _check_registered(f"algorithm.{key}", getattr(self, key), registry)
        if self.kl_target <= 0 or self.kl_horizon <= 0:
            raise ConfigError(f"algorithm.kl_target and kl_horizon must be > 0, got {self.kl_target} and {self.kl_horizon}")
        if algorithms.KL_CONTROLLER_REGISTRY.resolve(self.kl_controller) == "adaptive" and self.kl_coef <= 0:
            raise ConfigError("algorithm.kl_controller=adaptive needs algorithm.kl_coef > 0 (its initial beta; 0 would stay 0)")


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer and update schedule of the policy."""

    lr: float = 2e-4  # peak learning rate (AdamW)
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps
    lr_schedule: str = "constant"  # after the warm-up: constant | linear | cosine (decay to min_lr_ratio * lr at the last step)
    min_lr_ratio: float = 0.0  # linear/cosine: final learning rate as a share of lr, in [0, 1]
    grad_clip: float = 1.0  # max gradient norm (0 = off)
    epochs: int = 1  # passes over each rollout batch (PPO epochs)
    minibatch_size: int = 0  # sequences per optimizer step (0 = the whole batch, one step per rollout)
    micro_batch_size: int = 0  # sequences per forward/backward (gradient accumulation; 0 = the minibatch)
    gradient_checkpointing: bool = False  # recompute activations in backward (large models)
    share_prompt_forward: bool = True  # forward each distinct prompt once per micro-batch (exact; saves compute)

    def __post_init__(self) -> None:
        _check_schedule(self, "optim")


@dataclass(frozen=True)
class CriticSection:
    """PPO's critic (estimators that need one, e.g. ``ppo``). Empty ``model``: a value head on the
    policy's last hidden state, trained with the policy. ``policy``: a separate critic model
    initialised from the initial policy; a path: from that Hugging Face checkpoint."""

    model: str = ""  # "" (value head on the policy) | "policy" | a checkpoint directory
    lr: float = 0.0  # critic learning rate (0 = optim.lr)
    weight_decay: float = 0.0


@dataclass(frozen=True)
class LoraSection:
    """Train the policy as a LoRA adapter over a frozen base (``r`` > 0; needs ``peft``). The
    reference is then the base with the adapter disabled (no second copy in memory), and
    checkpoints hold the adapter."""

    r: int = 0  # adapter rank (0 = full fine-tuning)
    alpha: float = 16.0  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.0
    target_modules: str = "all-linear"  # all-linear, or comma-separated module names (q_proj,v_proj)


@dataclass(frozen=True)
class ExpertIterationSection:
    """``trainer=expert_iteration`` (rejection-sampling fine-tuning, STaR / RAFT): each step samples
    ``rollout.group_size`` responses for ``rollout.prompts_per_step`` prompts, keeps the verified ones
    and fine-tunes on them with the SFT loss (learning rate ``optim.lr``)."""

    max_per_prompt: int = 4  # verified responses kept per prompt at most (distinct texts)
    epochs: int = 1  # passes over each step's kept responses


@dataclass(frozen=True)
class DeepSpeedSection:
    """Multi-process training through DeepSpeed ZeRO. Used when the run is launched with several
    ranks (``torchrun --nproc_per_node N -m reasonrl train ...``; ``WORLD_SIZE`` > 1); a run in one
    process trains with a plain torch AdamW and ignores this section."""

    zero_stage: int = 2  # 0-3: 1 shards optimizer state, 2 also gradients, 3 also parameters
    offload_optimizer: bool = False  # keep the optimizer state in CPU memory (stage >= 1)


@dataclass(frozen=True)
class EvalConfig:
    """pass@1 on held-out problems before and after RL."""

    problems: int = 200  # held-out problems (never used in SFT or RL: split by canonical form)
    samples: int = 4  # samples per problem (pass@1 = mean correctness)
    temperature: float = 1.0  # sampling temperature of the eval (0 = greedy, samples forced to 1)
    max_tokens: int = 0  # 0 = rollout.max_tokens
    before: bool = True
    after: bool = True
    every: int = 0  # also every N training steps, logged as heldout_pass@1 in metrics.jsonl (0 = off)


@dataclass(frozen=True)
class TrainConfig:
    """Schema of ``reasonrl train`` (defaults: the embedded tiny-model run; see reasonrl/configs/default.yaml)."""

    task: str = "arith"  # registered task name (reasonrl tasks), or module:attr
    task_options: dict = field(default_factory=dict)  # generator difficulty knobs (arith: digits, operands, ops)
    dataset: str = ""  # Problem rows (JSONL/Parquet) for dataset-backed tasks; empty = the task's generator
    eval_dataset: str = ""  # held-out Problem rows; empty = a split of dataset / the generator
    model: str = "tiny"  # "tiny" (build the embedded model), a Hugging Face checkpoint directory, or a Hub id (org/name)
    revision: str = ""  # Hub revision (branch, tag or commit) of a Hub id in model= / dataset= (empty = main)
    tiny: TinyModelSection = field(default_factory=TinyModelSection)
    engine: Literal["hf", "hf_fast", "vllm"] = "hf"  # rollouts: HF forward loop | static-cache (CUDA-graph) decode | vLLM
    output_dir: str = ""  # empty = runs/<task>-<model name>-seed<seed>
    overwrite: bool = False  # start afresh even if output_dir holds a run
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    threads: int = 0  # torch CPU threads (0 = torch's default)
    track_ref_kl: bool = True  # keep a frozen reference to log KL even when algorithm.kl_coef = 0
    steps: int = 300  # RL steps
    max_sampled_tokens: int = 0  # also stop once this many response tokens were sampled (0 = no limit): compares trainers at an equal budget
    max_minutes: float = 0.0  # wall-clock budget of the whole run (0 = none): SFT gets at most half, RL stops
    #                           early so the run ends in time (results then depend on the machine's speed)
    save_every: int = 50  # checkpoint every N steps (and at the end)
    keep_checkpoints: int = 2  # newest checkpoints kept (0 = all)
    vllm_gpu_memory_utilization: float = 0.0  # vllm engine: memory share (host RAM on CPU); 0 = engine default
    verify_workers: int = 0  # verifier worker processes (0 = in this process)
    verify_timeout: float = 10.0  # seconds per verification
    verifier_options: dict = field(default_factory=dict)  # options of the task's verifier, as `reasonrl verify --option` takes them: {format: logic-rl}, {strict: true}
    rewards: tuple = ()  # reward components summed with weights: [{name: task}, {name: format, weight: 0.5, options: {}}]; a name is task, a verifier, a rewarder or path/to/file.py:name; empty = the task's verifier alone
    progress: bool = True  # tqdm progress bar
    tensorboard: bool = False  # also log to TensorBoard (needs tensorboard installed)
    wandb: bool = False  # also log to Weights & Biases (needs wandb installed)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    deepspeed: DeepSpeedSection = field(default_factory=DeepSpeedSection)
    trainer: str = "rl"  # registered trainer (reasonrl train --list-trainers) or path/to/file.py:Name
    hooks: tuple = ()  # lifecycle hooks: names or {name, options} mappings (reasonrl.trainers.hooks)
    critic: CriticSection = field(default_factory=CriticSection)
    lora: LoraSection = field(default_factory=LoraSection)
    expert_iteration: ExpertIterationSection = field(default_factory=ExpertIterationSection)

    def __post_init__(self) -> None:
        _check_positive(self, ("steps", "save_every"))
        _check_non_negative(self, ("keep_checkpoints", "threads", "verify_workers"))
        _check_positive(self.rollout, ("prompts_per_step", "group_size"), "rollout")
        _check_non_negative(self.rollout, ("max_tokens",), "rollout")
        _check_positive(self.sft, ("max_steps", "batch_size", "eval_every", "eval_problems"), "sft")
        _check_positive(self.eval, ("problems", "samples"), "eval")
        _check_non_negative(self.optim, ("minibatch_size", "micro_batch_size", "warmup_steps"), "optim")
        _check_positive(self.optim, ("epochs",), "optim")
        _check_positive(self.expert_iteration, ("max_per_prompt", "epochs"), "expert_iteration")
        if self.lora.r > 0 and self.engine == "vllm":
            # vLLM reloads whole weights after every step; a LoRA policy holds an adapter over a base.
            raise ConfigError("lora.r > 0 needs engine=hf or engine=hf_fast (engine=vllm does not load LoRA adapters here)")
        _check_non_negative(self.lora, ("r",), "lora")
        _check_non_negative(self.critic, ("lr",), "critic")
        if self.deepspeed.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"deepspeed.zero_stage must be one of 0, 1, 2, 3, got {self.deepspeed.zero_stage}")
        if self.rollout.temperature <= 0:
            raise ConfigError("rollout.temperature must be > 0 for RL sampling")
        if not 0 < self.rollout.top_p <= 1:
            raise ConfigError(f"rollout.top_p must be in (0, 1], got {self.rollout.top_p}")
        from reasonrl.algorithms import ADVANTAGE_ESTIMATOR_REGISTRY, estimator_needs, is_token_level

        estimator = self.estimator_name
        if "groups" in estimator_needs(estimator) and self.rollout.group_size < 2:
            raise ConfigError(f"algorithm.estimator={self.algorithm.estimator} needs rollout.group_size >= 2")
        if self.algorithm.kl_in == "reward" and self.algorithm.kl_coef > 0 and not is_token_level(estimator):
            token_level = [name for name in ADVANTAGE_ESTIMATOR_REGISTRY.names() if is_token_level(name)]
            raise ConfigError(
                f"algorithm.kl_in=reward needs a token-level estimator ({', '.join(token_level)}); "
                f"{self.algorithm.estimator} takes KL in the loss"
            )
        if self.rewards:
            from reasonrl.trainers.rewards import normalize_reward_components

            # Defaults filled in, so the saved config.yaml spells out every weight.
            object.__setattr__(self, "rewards", normalize_reward_components(self.rewards))

    def check_world_size(self, world_size: int) -> None:
        """Reject settings a run over ``world_size`` ranks cannot split evenly (every rank must run
        the same number of micro-batches: ZeRO reduces gradients in each backward pass)."""
        if world_size <= 1:
            return
        r, o = self.rollout, self.optim
        batch = r.prompts_per_step * r.group_size
        minibatch = o.minibatch_size or batch
        problems = []
        if r.prompts_per_step % world_size:
            problems.append(f"rollout.prompts_per_step={r.prompts_per_step} must be a multiple of the {world_size} ranks")
        if batch % minibatch or minibatch % world_size:
            problems.append(
                f"optim.minibatch_size={o.minibatch_size} must divide the batch of {batch} sequences and be a "
                f"multiple of the {world_size} ranks"
            )
        if self.engine == "vllm" and self.deepspeed.zero_stage == 3:
            problems.append("engine=vllm with deepspeed.zero_stage=3 is not supported; use zero_stage<=2")
        if problems:
            raise ConfigError(f"launched with {world_size} ranks: " + "; ".join(problems))

    @property
    def estimator_name(self) -> str:
        """The registered advantage estimator: aliases resolved; for ``file.py:name``, the name the
        file registered (importing the file), or the spec itself when the file only defines it."""
        from reasonrl.algorithms import ADVANTAGE_ESTIMATOR_REGISTRY

        return ADVANTAGE_ESTIMATOR_REGISTRY.resolve(self.algorithm.estimator)

    @property
    def is_tiny(self) -> bool:
        return self.model == "tiny"

    @property
    def sft_enabled(self) -> bool:
        return self.sft.enabled == "true" or (self.sft.enabled == "auto" and self.is_tiny)

    def resolved_output_dir(self) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        model_name = "tiny" if self.is_tiny else Path(self.model.rstrip("/")).name or "model"
        task = self.task
        if ":" in task:  # a task from a user's file: its registered name, not the path (no colon, no nested folders)
            from reasonrl.tasks import get_task

            task = get_task(task).name
        return Path("runs") / f"{task}-{model_name}-seed{self.seed}"


def _check_registered(key: str, value: str, registry: Any) -> None:
    try:
        registry.resolve(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _check_schedule(section: Any, name: str) -> None:
    from reasonrl.algorithms.schedules import LR_SCHEDULE_REGISTRY

    _check_registered(f"{name}.lr_schedule", section.lr_schedule, LR_SCHEDULE_REGISTRY)
    if not 0.0 <= section.min_lr_ratio <= 1.0:
        raise ConfigError(f"{name}.min_lr_ratio must be in [0, 1], got {section.min_lr_ratio}")


def _check_positive(obj: Any, names: tuple[str, ...], section: str = "") -> None:
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section + '.' if section else ''}{name} must be > 0, got {getattr(obj, name)}")


def _check_non_negative(obj: Any, names: tuple[str, ...], section: str = "") -> None:
    for name in names:
        if getattr(obj, name) < 0:
            raise ConfigError(f"{section + '.' if section else ''}{name} must be >= 0, got {getattr(obj, name)}")


# ----------------------------------------------------------------------------------------------
# Generic machinery
# ----------------------------------------------------------------------------------------------


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Build ``cls`` from an optional YAML file plus ``key=value`` overrides (later wins).

    Raises:
        ConfigError: unknown key (with close matches and the valid keys), bad type or bad choice.
        FileNotFoundError: ``path`` does not exist.
    """
    import yaml

    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            try:
                loaded = yaml.safe_load(f) or {}
            except yaml.YAMLError as error:
                mark = getattr(error, "problem_mark", None)
                where = f": line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                problem = getattr(error, "problem", None) or str(error).splitlines()[0]
                raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
        data = loaded
    data = apply_overrides(cls, data, overrides)
    return from_dict(cls, data)


def apply_overrides(cls: type, data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Merge ``key=value`` strings into a (nested) dict; keys are checked against ``cls`` right away."""
    data = json.loads(json.dumps(data, default=_jsonable))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. algorithm.estimator=rloo)")
        key, _, value = item.partition("=")
        key = key.strip().lstrip("-").replace("-", "_") if key.strip().startswith("--") else key.strip()
        parts = key.split(".")
        target_cls: Any = cls
        node = data
        for i, part in enumerate(parts):
            hints = _field_types(target_cls)
            if part not in hints:
                raise _unknown_key(".".join(parts[: i + 1]), part, list(hints), _dotted_keys(cls))
            hint = hints[part]
            if i == len(parts) - 1:
                if dataclasses.is_dataclass(hint):
                    raise ConfigError(
                        f"{key} is a section; set its keys, e.g. {key}.{dataclasses.fields(hint)[0].name}=VALUE "
                        f"(keys: {', '.join(f.name for f in dataclasses.fields(hint))})"
                    )
                node[part] = value  # coerced from its string form in from_dict
                break
            if dataclasses.is_dataclass(hint):
                target_cls = hint
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"{'.'.join(parts[: i + 1])} is a section; set its keys, e.g. {part}.KEY=VALUE")
            elif _origin(hint) is dict or hint is dict:
                # Free-form mapping (e.g. task_options.digits=4): the rest of the key is one entry.
                sub = node.setdefault(part, {})
                if not isinstance(sub, dict):
                    sub = node[part] = {}
                sub[".".join(parts[i + 1 :])] = _parse_scalar(value)
                break
            else:
                raise ConfigError(f"{'.'.join(parts[: i + 1])} is not a section (it takes a value: {part}=VALUE)")
    return data


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a (nested) dict, validating keys, types and choices."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in hints:
            raise _unknown_key(prefix + key, key, list(hints), None)
        kwargs[key] = _coerce(hints[key], value, prefix + key)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """A plain (YAML/JSON-ready) dict of a config dataclass; tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def to_yaml(obj: Any) -> str:
    import yaml

    return yaml.safe_dump(to_dict(obj), sort_keys=False, default_flow_style=False)


def config_hash(obj: Any, length: int = 12) -> str:
    """A stable short hash of a config (or any JSON-able value)."""
    payload = json.dumps(to_dict(obj), sort_keys=True, default=_jsonable)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def diff_configs(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts/dataclasses."""
    a, b = to_dict(a), to_dict(b)
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out.extend(diff_configs(a.get(key), b.get(key), f"{prefix}{key}."))
        return out
    return [] if a == b else [prefix.rstrip(".")]


def valid_keys(cls: type) -> list[str]:
    """Every dotted key of a config class (``algorithm.estimator``...)."""
    return _dotted_keys(cls)


def describe_keys(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(dotted key, type, default, one-line help)`` for every key of a config class; the help is
    the comment that documents the field in its class (``field: type = default  # help``)."""
    rows = []
    comments = _field_comments(cls)
    defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
    for name, hint in _field_types(cls).items():
        if dataclasses.is_dataclass(hint):
            rows.extend(describe_keys(hint, f"{prefix}{name}."))
            continue
        choices = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
        type_name = "|".join(map(str, choices)) if choices else getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
        rows.append((prefix + name, type_name, json.dumps(to_dict(defaults[name]), ensure_ascii=False), comments.get(name, "")))
    return rows


def _field_comments(cls: type) -> dict[str, str]:
    import inspect
    import re

    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    found = {}
    for line in source.splitlines():
        match = re.match(r"\s+(\w+):[^#]*?=.*?#\s*(.+)$", line)
        if match:
            found.setdefault(match.group(1), match.group(2).strip())
    return found


# -- helpers -------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serializable: {value!r}")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _dotted_keys(cls: type, prefix: str = "") -> list[str]:
    out = []
    for name, hint in _field_types(cls).items():
        if dataclasses.is_dataclass(hint):
            out.extend(_dotted_keys(hint, f"{prefix}{name}."))
        else:
            out.append(prefix + name)
    return out


def _unknown_key(full_key: str, key: str, section_keys: list[str], all_keys: list[str] | None) -> ConfigError:
    close = difflib.get_close_matches(key, section_keys, n=3, cutoff=0.6)
    close += [k for k in difflib.get_close_matches(full_key, all_keys or [], n=3, cutoff=0.6) if k not in close]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown config key {full_key!r}.{hint} Valid keys here: {', '.join(section_keys)}")


def _origin(hint: Any) -> Any:
    return typing.get_origin(hint)


def _parse_scalar(text: Any) -> Any:
    """A CLI string as YAML would read it (``3`` -> 3, ``true`` -> True, ``[1, 2]`` -> list)."""
    if not isinstance(text, str):
        return text
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = _origin(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value if value is not None else {}, key + ".")
    if origin is Literal:
        choices = typing.get_args(hint)
        if isinstance(value, bool) and all(isinstance(c, str) for c in choices):
            value = "true" if value else "false"  # YAML reads `enabled: true` as a bool
        if value not in choices:
            raise ConfigError(f"{key}: invalid value {value!r}; valid choices: {', '.join(map(str, choices))}")
        return value
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(args[0], value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if value is None:
            return ""
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if hint is tuple or origin is tuple:
        if isinstance(value, str):
            # A YAML flow sequence ("[{name: task}, {name: format, weight: 0.5}]") or mapping (one
            # entry) is parsed; anything else is a comma-separated list of strings.
            flow = value.strip().startswith(("[", "{"))
            value = _parse_scalar(value) if flow else [v for v in value.split(",") if v]
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            return (value,)
        return tuple(value)
    if hint is dict or origin is dict:
        if value is None:
            return {}
        if isinstance(value, str):
            value = _parse_scalar(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _parse_scalar(v) if isinstance(v, str) else v for k, v in value.items()}
    return value
