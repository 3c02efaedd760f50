"""The end-to-end training job behind ``reasonrl train``: model → SFT warm-up → eval → RL → eval → report.

:func:`main` runs it for a :class:`~reasonrl.config.TrainConfig` and leaves a run directory::

    OUTPUT_DIR/
      config.yaml          the resolved config
      metrics.jsonl        one JSON object per RL step
      sft/                 the warm-up model (HF format) and sft.json, when SFT ran
      eval_before.json     pass@1 on the held-out problems before RL
      checkpoints/step-N/  HF weights + optimizer, RNG and data-order state (exact resume)
      summary.json         eval_before, eval_after, task, resolved config, timings
      plots/*.png          reward, accuracy, KL, entropy, response length, pass@1 before/after

Resume: run the same command again. If ``OUTPUT_DIR`` holds checkpoints of the same config, the run
continues from the newest one (killed with SIGKILL or not) and produces the metrics the
uninterrupted run would have. A finished run is reported, not redone (``overwrite=true`` starts afresh).

Caching: the tiny model and the SFT warm-up are cached under ``$REASONRL_CACHE`` (default
``~/.cache/reasonrl``) by a hash of the settings that determine them, so a second run with the same
model/task/seed/SFT settings skips straight to RL.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from reasonrl.config import ConfigError, TrainConfig, config_hash, diff_configs, from_dict, to_dict, to_yaml

SFT_CACHE_FORMAT = 1


class RunError(RuntimeError):
    """The run cannot start (bad model path, a different run in the output directory...)."""


@dataclass
class Job:
    """What the pieces of one run share: its config, folder, ranks, problems, log and clock."""

    config: TrainConfig
    run_dir: Path
    strategy: Any  # reasonrl.trainers.strategy.Strategy
    source: Any  # ProblemSource
    log: Callable[[str], None]
    t_start: float
    timings: dict[str, float] = field(default_factory=dict)
    earlier_s: float = 0.0  # wall time of the segments before a resume, up to their last checkpoint

    def elapsed_s(self) -> float:
        """The run's wall time so far, over every segment (a resumed run counts its earlier ones)."""
        return self.earlier_s + time.time() - self.t_start

    @property
    def budget_s(self) -> float | None:
        return self.config.max_minutes * 60 if self.config.max_minutes > 0 else None


def main(config: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole job with the trainer ``config.trainer`` names; returns the summary (also in ``summary.json``)."""
    import torch

    from reasonrl.tasks import get_task
    from reasonrl.trainers.base import TrainContext
    from reasonrl.trainers.hooks import build_hooks
    from reasonrl.trainers.registry import get_trainer
    from reasonrl.trainers.rewards import build_rewarder

    t_start = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    # Bad input fails here, before anything is written.
    trainer_cls = get_trainer(config.trainer)  # the error lists the registered trainers
    hooks = build_hooks(config.hooks)
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    config.check_world_size(world_size)
    task = get_task(config.task)  # KeyError lists the registered tasks
    if not config.is_tiny:
        check_model_path(config.model, config.revision)
    _check_output_dir(config.resolved_output_dir())
    job, device = _start_job(config, task, world_size, log, t_start)
    strategy, source, log = job.strategy, job.source, job.log
    config = job.config = resolve_max_tokens(config, source, log)
    existing = strategy.on_main(lambda: _prepare_run_dir(job.run_dir, config, log))
    if existing is not None:
        strategy.finish()
        return existing
    # Fails early when tensorboard/wandb is asked for but missing; only rank 0 logs.
    trackers = ExternalTrackers(config if strategy.is_main else replace(config, tensorboard=False, wandb=False), job.run_dir)

    # 1. The initial policy: the given checkpoint, or the tiny model warmed up by SFT (on rank 0;
    #    the other ranks load its result). A resumed run reads it from its checkpoints.
    t0 = time.time()
    checkpoints, init_path = _resume_candidates(job)
    if init_path is None:
        sft_deadline = t_start + job.budget_s / 2 if job.budget_s else None
        init_path = strategy.on_main(lambda: _initial_policy(config, source, job.run_dir, device, log, sft_deadline))
    job.timings["prepare_s"] = time.time() - t0
    roles, tokenizer = build_roles(trainer_cls.roles_needed(config), hooks, init_path, device, config)
    engine = _make_engine(config, _rollout_model(roles, init_path, device, config, strategy), tokenizer, init_path)

    # 2. pass@1 before training (kept in the run dir so a resumed run does not redo it).
    t0 = time.time()
    eval_before = strategy.on_main(lambda: _cached_eval(
        job.run_dir / "eval_before.json", config.eval.before, engine, tokenizer, source, config, "before", log
    ))
    job.timings["eval_before_s"] = time.time() - t0

    # 3. Train.
    trainer = trainer_cls(TrainContext(config, tokenizer, engine, source, roles, strategy, build_rewarder(config, task), hooks, log))
    history = _resume(job, trainer, checkpoints)
    stopped_by_clock = _train_loop(job, trainer, history, eval_before, trackers, init_path, tokenizer)

    # 4. pass@1 after training, plots, summary (rank 0; the others get its summary).
    summary = strategy.on_main(lambda: _report(job, engine, tokenizer, init_path, eval_before, history, trainer.step,
                                               stopped_by_clock))
    close = getattr(engine, "close", None)
    if callable(close) and config.engine == "vllm":
        close()
    strategy.finish()
    return summary


def resolve_max_tokens(config: TrainConfig, source: Any, log: Callable[[str], None] = print) -> TrainConfig:
    """``rollout.max_tokens=0``: a length that follows the task — 1.5x the longest of 64 training
    problems' answers (worked solutions where the task has them) in this model's tokens, plus 8,
    at least 16. A limit shorter than the answers would truncate every response and leave RL
    (and the warm-up's validation) with nothing to learn from."""
    import math
    from dataclasses import replace as replaced

    if config.rollout.max_tokens:
        return config
    from transformers import AutoTokenizer

    if config.is_tiny:
        from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

        model_dir = build_tiny_model(TinyModelConfig(**asdict(config.tiny), seed=config.seed))
    else:
        model_dir = check_model_path(config.model, config.revision)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    field_name = config.sft.solution_field
    texts = [str((p.get("metadata") or {}).get(field_name) or p["answer"]) for p in source.stream("sft").take(64)]
    longest = max(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    tokens = max(16, math.ceil(1.5 * longest) + 8)
    log(f"rollout.max_tokens=0: using {tokens} (the longest of 64 {source.task.name} answers takes {longest} tokens)")
    return replaced(config, rollout=replaced(config.rollout, max_tokens=tokens))


def _start_job(config: TrainConfig, task: Any, world_size: int, log: Callable[[str], None], t_start: float) -> tuple[Job, str]:
    """The ranks (DeepSpeed's process group over several), the task's problems, and the device."""
    from reasonrl.trainers.data import ProblemSource
    from reasonrl.trainers.strategy import start_strategy

    device = _device(config)
    strategy = start_strategy(world_size, device)
    if strategy.world_size > 1:
        device = str(strategy.context.device)
        if not strategy.is_main:
            log = _silent  # rank 0 speaks for the run (log lines, progress bars, files)
    source = ProblemSource(
        task, seed=config.seed, task_options=config.task_options, dataset=config.dataset or None,
        eval_dataset=config.eval_dataset or None, num_test=config.eval.problems, num_val=config.sft.eval_problems,
        revision=config.revision,
    )
    return Job(config, config.resolved_output_dir(), strategy, source, log, t_start), device


def _train_loop(job: Job, trainer: Any, history: list[dict[str, float]], eval_before: Any, trackers: Any,
                init_path: Any, tokenizer: Any) -> bool:
    """Train until ``config.steps`` (or the clock); True when stopped by ``max_minutes``."""
    from reasonrl.trainers.base import warn_on_dead_signal

    config, strategy = job.config, job.strategy
    metrics_path = job.run_dir / "metrics.jsonl"
    elapsed_before = history[-1].get("elapsed_rl_s", 0.0) if history else 0.0
    t0 = time.time()
    bar = _progress(config, trainer.step) if strategy.is_main else None
    warned: set[str] = set()
    stopped_by_clock = False
    with open(metrics_path, "a", encoding="utf-8") if strategy.is_main else open(os.devnull, "w") as metrics_file:
        while trainer.step < config.steps and not (config.max_sampled_tokens and trainer.sampled_tokens >= config.max_sampled_tokens):
            # The clock is read on rank 0 only: every rank must stop at the same step.
            if job.budget_s and strategy.on_main(lambda: bool(history) and _out_of_time(job.t_start, job.budget_s, history, eval_before)):
                stopped_by_clock = True
                _write(bar, job.log, f"warning: stopping at step {trainer.step} of {config.steps}: the run would exceed "
                                     f"max_minutes={config.max_minutes:g}")
                break
            metrics = trainer.train_step()
            if config.eval.every and trainer.step % config.eval.every == 0:
                # Not timed as training: elapsed_rl_s below leaves the evaluation out.
                t_eval = time.time()
                result = strategy.on_main(lambda: _evaluate(trainer.engine, tokenizer, job.source, config, f"at step {trainer.step}", _silent))
                metrics["heldout_pass@1"] = result["pass@1"]
                t0 += time.time() - t_eval
            metrics["elapsed_rl_s"] = elapsed_before + time.time() - t0
            history.append(metrics)
            metrics_file.write(json.dumps(metrics) + "\n")
            metrics_file.flush()
            trackers.log(metrics, trainer.step)
            warning = warn_on_dead_signal(metrics, history[:-1])
            kind = warning and ("truncation" if "rollout.max_tokens" in warning else "zero_variance")
            if warning and kind not in warned:  # each kind once per run, not again every 25 steps
                _write(bar, job.log, warning)
                warned.add(kind)
            if bar is not None:
                recent = history[-10:]
                bar.set_postfix(reward=f"{sum(m.get('reward', 0.0) for m in recent) / len(recent):.3f}",
                                acc=f"{sum(m.get('accuracy', 0.0) for m in recent) / len(recent):.2f}")
                bar.update(1)
            out_of_tokens = bool(config.max_sampled_tokens) and trainer.sampled_tokens >= config.max_sampled_tokens
            if trainer.step % config.save_every == 0 or trainer.step == config.steps or out_of_tokens:
                _save(job, trainer, tokenizer, init_path)
    if bar is not None:
        bar.close()
    trackers.close()
    job.timings["rl_s"] = time.time() - t0
    return stopped_by_clock


def _save(job: Job, trainer: Any, tokenizer: Any, init_path: Any) -> None:
    """A checkpoint of every role that needs one, the optimizer, the trainer's and hooks' state."""
    from reasonrl.trainers import checkpoint as ckpt

    trainer.hooks.fire("on_save", trainer)
    state = {**trainer.state(), "init_model": str(init_path), "config_hash": config_hash(job.config),
             "elapsed_s": job.elapsed_s()}
    others = [r for name, r in trainer.roles.items() if name != "policy" and r.checkpointed]
    extra = trainer.extra_state() if hasattr(trainer, "extra_state") else None
    keep = job.config.keep_checkpoints
    if trainer.learner.distributed:
        ckpt.save_deepspeed_checkpoint(job.run_dir, trainer.step, trainer.learner.optimizer.engine, tokenizer, state,
                                       is_main=job.strategy.is_main, keep=keep, roles=others)
    else:
        ckpt.save_checkpoint(job.run_dir, trainer.step, trainer.policy.model, tokenizer, trainer.learner.optimizer.optimizer,
                             state, extra=extra, keep=keep, roles=others)


def _resume_candidates(job: Job) -> tuple[list[Path], Any]:
    """The run's checkpoints, newest first, and the initial policy they record (None: a fresh run)."""
    from reasonrl.trainers import checkpoint as ckpt

    checkpoints = list(reversed(ckpt.list_checkpoints(job.run_dir)))
    for checkpoint in checkpoints:
        try:
            init_path = ckpt.load_trainer_state(checkpoint)["init_model"]
        except (OSError, ValueError, KeyError):
            continue
        if not Path(init_path).exists():
            raise RunError(f"cannot resume: the initial policy {init_path} recorded in {checkpoint} is gone")
        return checkpoints, init_path
    return checkpoints, None


def _resume(job: Job, trainer: Any, checkpoints: list[Path]) -> list[dict[str, float]]:
    """Restore the newest checkpoint that loads (warning about each one that does not); returns the
    metrics history up to its step. A run none of whose checkpoints loads starts from step 0."""
    from reasonrl.trainers import checkpoint as ckpt

    metrics_path = job.run_dir / "metrics.jsonl"
    for checkpoint in checkpoints:
        try:
            state = ckpt.restore_trainer(checkpoint, trainer)
        except ckpt.CheckpointLaunchMismatch as error:
            raise RunError(str(error)) from None
        except ckpt.CheckpointError as error:
            job.log(f"warning: skipping checkpoint {checkpoint}: it does not load ({error})")
            continue
        trainer.load_state(state)
        trainer.sync_engine_weights()
        job.earlier_s = float(state.get("elapsed_s", 0.0))
        job.timings["resumed_from_step"] = trainer.step
        job.log(f"resuming from {checkpoint} (step {trainer.step} of {job.config.steps})")
        return job.strategy.on_main(lambda: _truncate_metrics(metrics_path, trainer.step))
    if job.strategy.is_main:
        metrics_path.write_text("")
    return []


def build_roles(requests: list[Any], hooks: Any, init_path: Any, device: str, config: TrainConfig) -> tuple[dict[str, Any], Any]:
    """The model roles a trainer (and its hooks) asked for, loaded from their checkpoints.

    Raises:
        RunError: a role this config cannot provide, naming the config key that would.
    """
    from reasonrl.trainers.base import RoleRequest, role_schedule
    from reasonrl.trainers.roles import AdapterDisabled, CriticModel, ModelRole, apply_lora

    model, tokenizer = load_policy(init_path, device, config)
    if config.lora.r > 0:
        model = apply_lora(model, config.lora.r, config.lora.alpha, config.lora.dropout, config.lora.target_modules)
    roles = {"policy": ModelRole("policy", model, str(init_path), trainable=True, lr=config.optim.lr,
                                 weight_decay=config.optim.weight_decay, schedule=role_schedule(config, config.optim.lr))}
    # Frozen copies run under bf16 autocast on a GPU anyway: keep them in bf16 there (half the memory).
    copy_dtype = "bfloat16" if device.startswith("cuda") and config.dtype == "auto" else None
    wanted = {r.name: r for r in requests}
    for hook in hooks:
        for name in getattr(hook, "roles_needed", ()):
            wanted.setdefault(name, RoleRequest(name, f"hooks ({hook.name})"))
    for name, request in wanted.items():
        if name == "policy":
            continue
        if name == "reference" and config.lora.r > 0:
            roles[name] = ModelRole(name, AdapterDisabled(model), str(init_path))
        elif name == "reference" and (config.algorithm.kl_coef > 0 or config.track_ref_kl):
            ref, _ = load_policy(init_path, device, config, dtype=copy_dtype)
            roles[name] = ModelRole(name, ref.requires_grad_(False).eval(), str(init_path))
        elif name == "critic" and config.critic.model:
            path = init_path if config.critic.model == "policy" else check_model_path(config.critic.model, config.revision)
            lr = config.critic.lr or config.optim.lr
            roles[name] = ModelRole(name, CriticModel.from_pretrained(path).to(device), str(path), trainable=True, lr=lr,
                                    weight_decay=config.critic.weight_decay, schedule=role_schedule(config, lr))
        else:
            hint = "algorithm.kl_coef > 0 or track_ref_kl=true" if name == "reference" else f"{request.config_key}=..."
            raise RunError(f"{request.config_key} needs a {name} model, which this config does not give: set {hint}")
    return roles, tokenizer


def _rollout_model(roles: dict[str, Any], init_path: Any, device: str, config: TrainConfig, strategy: Any) -> Any:
    """What the engine decodes with: the policy itself, except under ZeRO-3, where the trained
    module's parameters are partitioned over the ranks and the engine decodes with a whole copy
    (refreshed after every step by ``Trainer.sync_engine_weights``)."""
    if strategy.world_size > 1 and config.deepspeed.zero_stage == 3:
        copy_dtype = "bfloat16" if device.startswith("cuda") and config.dtype == "auto" else None
        model, _ = load_policy(init_path, device, config, dtype=copy_dtype)
        return model.requires_grad_(False)
    return roles["policy"].model


def _check_output_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"output_dir={run_dir} is a file, not a folder: pick another output_dir=...")


def _report(job: Job, engine: Any, tokenizer: Any, init_path: Any, eval_before: Any, history: list[dict[str, float]],
            steps: int, stopped_by_clock: bool) -> dict[str, Any]:
    """pass@1 after training, the plots and ``summary.json``."""
    from reasonrl import plots
    from reasonrl.trainers import checkpoint as ckpt

    config, run_dir = job.config, job.run_dir
    t0 = time.time()
    eval_after = _evaluate(engine, tokenizer, job.source, config, "after", job.log) if config.eval.after else None
    job.timings["eval_after_s"] = time.time() - t0
    summary = {
        "task": config.task,
        "trainer": config.trainer,
        "model": config.model,
        "initial_policy": str(init_path),
        "eval_before": eval_before,
        "eval_after": eval_after,
        "improvement": (
            eval_after["pass@1"] - eval_before["pass@1"] if eval_before is not None and eval_after is not None else None
        ),
        "steps": steps,
        "sampled_tokens": history[-1].get("sampled_tokens") if history else None,
        "stopped_by_time_budget": stopped_by_clock,
        "world_size": int(os.environ.get("WORLD_SIZE", "1") or 1),
        "final_checkpoint": str(ckpt.latest_checkpoint(run_dir)),
        "sft": _read_json(run_dir / "sft" / "sft.json"),
        "timings": {**job.timings, "total_s": job.elapsed_s()},
        "config": to_dict(config),
    }
    summary["plots"] = [str(p) for p in plots.plot_run(run_dir, history, eval_before, eval_after)]
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    job.log(format_summary(summary, run_dir))
    return summary


# ----------------------------------------------------------------------------------------------
# Pieces
# ----------------------------------------------------------------------------------------------


def _silent(message: str) -> None:
    """The log of ranks other than 0."""


def _prepare_run_dir(run_dir: Path, config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Create the run dir, or check that an existing one holds this very config (resume)."""
    config_file = run_dir / "config.yaml"
    if config.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    if config_file.exists():
        import yaml

        previous = from_dict(TrainConfig, yaml.safe_load(config_file.read_text()) or {})
        # Where the run lives, whether to show a bar, and overwrite are not part of what it computes:
        # naming the default output_dir explicitly continues the same run.
        differing = [k for k in diff_configs(previous, config) if k not in ("overwrite", "progress", "output_dir")]
        if differing:
            raise RunError(
                f"{run_dir} holds a run with a different config ({', '.join(differing[:8])} differ); "
                f"pick another output_dir=... (overwrite=true would delete that run and start afresh)"
            )
        summary_file = run_dir / "summary.json"
        if summary_file.exists():
            summary = json.loads(summary_file.read_text())
            log(f"{run_dir} already holds this finished run (pass overwrite=true to run it again)")
            log(format_summary(summary, run_dir))
            return summary
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(to_yaml(config))
    return None


def _device(config: TrainConfig) -> str:
    import torch

    if config.device == "cuda" and not torch.cuda.is_available():
        raise RunError("device=cuda but no CUDA device is visible (use device=cpu or device=auto)")
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.device


def check_model_path(path: str, revision: str = "") -> Path:
    """A Hugging Face checkpoint directory, or a Hub id (``Qwen/Qwen2.5-0.5B-Instruct``) resolved through
    the Hugging Face cache (downloaded when the Hub can be reached, at ``revision``), or a clear error."""
    p = Path(path).expanduser()
    if not p.exists() and HUB_ID.match(path):
        return _from_hub(path, revision)
    if not p.exists():
        raise RunError(f"model path not found: {p} (give a Hugging Face checkpoint directory, a Hub id, or model=tiny)")
    if not p.is_dir() or not (p / "config.json").exists():
        raise RunError(f"{p} is not a Hugging Face checkpoint directory (no config.json in it)")
    return p


# org/name, as the Hugging Face Hub spells repositories (a local path that exists always wins).
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _from_hub(repo_id: str, revision: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, revision=revision or None))
    except LocalEntryNotFoundError:
        raise RunError(
            f"model={repo_id}: not a local folder, not in the Hugging Face cache, and the Hub cannot be reached from "
            f"this machine; download it where the Hub can be reached (huggingface-cli download {repo_id}) and pass "
            f"the folder, or point HF_HOME at a cache that holds it"
        ) from None
    except HfHubHTTPError as error:
        raise RunError(f"model={repo_id}: the Hugging Face Hub refused it ({str(error).splitlines()[0]})") from None


def load_policy(path: str | Path, device: str, config: TrainConfig, dtype: str | None = None) -> tuple[Any, Any]:
    """Model (train mode, on ``device``) and tokenizer from a checkpoint directory (``dtype``
    overrides ``config.dtype``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if (dtype or config.dtype) == "bfloat16" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype).to(device)
    if config.optim.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, tokenizer


def _make_engine(config: TrainConfig, model: Any, tokenizer: Any, init_path: str | Path) -> Any:
    """The rollout engine of ``config.engine``. ``hf`` and ``hf_fast`` decode with the trained
    module itself (no copy, no weight transfer); ``vllm`` loads the weights after every step."""
    import torch

    if config.engine == "hf":
        from reasonrl.engines.hf_engine import HFEngine

        # bf16 autocast on a GPU with fp32 master weights (dtype=auto), as the trainer's forward.
        on_gpu = next(model.parameters()).device.type == "cuda"
        return HFEngine(model, tokenizer, max_batch_size=config.rollout.max_batch_size,
                        autocast_dtype=torch.bfloat16 if on_gpu and config.dtype == "auto" else None)
    if config.engine == "hf_fast":
        from reasonrl.engines.fast_decode import FastHFEngine

        engine = FastHFEngine(model, tokenizer, max_batch_size=config.rollout.max_batch_size)
        if not engine.fast_path:
            print(f"note: engine=hf_fast falls back to the engine=hf decode loop: {engine.unsupported_reason}")
        return engine
    from reasonrl.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(
        str(init_path), seed=config.seed, gpu_memory_utilization=config.vllm_gpu_memory_utilization or None,
        dtype="bfloat16" if config.dtype != "float32" and _device(config) == "cuda" else "float32",
    )
    engine.sync_weights(model)
    return engine


def _initial_policy(
    config: TrainConfig, source: Any, run_dir: Path, device: str, log: Callable[[str], None], deadline: float | None = None
) -> Path:
    """The policy RL starts from: the given checkpoint, or the (cached) tiny model after SFT."""
    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model, cache_dir, describe

    if config.is_tiny:
        tiny = TinyModelConfig(**asdict(config.tiny), seed=config.seed)
        base = Path(build_tiny_model(tiny))
    else:
        base = check_model_path(config.model, config.revision)
    if not config.sft_enabled:
        return base
    key = config_hash(
        {
            "format": SFT_CACHE_FORMAT, "base": str(base.resolve()), "tiny": to_dict(config.tiny) if config.is_tiny else None,
            "task": config.task, "task_options": config.task_options, "dataset": config.dataset, "seed": config.seed,
            "sft": to_dict(replace(config.sft, cache=True)), "eval_problems": config.eval.problems,
            "max_tokens": config.rollout.max_tokens, "dtype": config.dtype,
        }
    )
    cached = cache_dir() / f"sft-{key}"
    target = run_dir / "sft"
    if config.sft.cache and (cached / "sft.json").exists():
        log(f"sft: reusing the cached warm-up {cached}")
        _copy_model_dir(cached, target)
        return target
    from reasonrl.trainers.sft import save_sft_result, train_sft

    model, tokenizer = load_policy(base, device, config)
    log(f"sft: warming up {describe(model)} on {config.task} worked solutions")
    result = train_sft(
        model, tokenizer, source.stream("sft"), config.sft, seed=config.seed, val_problems=source.heldout("val"),
        max_tokens=config.rollout.max_tokens, progress=config.progress, log=log, deadline=deadline,
    )
    if result.val_accuracy == 0.0:
        # Every group of RL would be all-wrong: no signal. Say why it may be, loudly, before RL starts.
        log(f"warning: the SFT warm-up ended at validation accuracy 0.00 after {result.steps} steps, so RL starts "
            f"with no signal; check that rollout.max_tokens={config.rollout.max_tokens} fits {config.task}'s answers "
            f"(rollout.max_tokens=0 derives it from them), or raise sft.max_steps")
    tmp = target.with_name("sft.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    save_sft_result(result, tmp / "sft.json")  # written last: marks a complete warm-up
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    if config.sft.cache and not result.out_of_time:  # a warm-up cut by the clock depends on the machine
        _copy_model_dir(target, cached)
    return target


def _copy_model_dir(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def _cached_eval(path: Path, enabled: bool, engine: Any, tokenizer: Any, source: Any, config: TrainConfig, label: str,
                 log: Callable[[str], None]) -> dict[str, Any] | None:
    if not enabled:
        return None
    if path.exists():
        return json.loads(path.read_text())
    result = _evaluate(engine, tokenizer, source, config, label, log)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _evaluate(engine: Any, tokenizer: Any, source: Any, config: TrainConfig, label: str, log: Callable[[str], None]) -> dict[str, Any]:
    """pass@1 (and pass@k for k = samples) on the held-out test split."""
    from reasonrl.engines.base import SamplingParams
    from reasonrl.eval.estimators import pass_at_k
    from reasonrl.eval.sampling import sample_and_verify
    from reasonrl.trainers.data import derived_seed

    ev = config.eval
    problems = source.heldout("test")
    greedy = ev.temperature <= 0
    n = 1 if greedy else ev.samples
    params = SamplingParams(
        n=n, temperature=max(ev.temperature, 0.0), top_p=1.0, max_tokens=ev.max_tokens or config.rollout.max_tokens,
        stop=tuple(config.rollout.stop), seed=derived_seed(config.seed, "eval"),
    )
    start = time.time()
    verdicts, samples = sample_and_verify(
        engine, problems, None, params, tokenizer=tokenizer, workers=config.verify_workers,
        timeout=config.verify_timeout, return_samples=True,
    )
    counts = [sum(v.correct for v in row) for row in verdicts]
    flat = [s for g in samples for s in g]
    result = {
        "pass@1": sum(pass_at_k(n, c, 1) for c in counts) / len(counts),
        f"pass@{n}": sum(pass_at_k(n, c, n) for c in counts) / len(counts),
        "problems": len(problems),
        "samples_per_problem": n,
        "temperature": ev.temperature,
        "mean_response_length": sum(len(s.token_ids) for s in flat) / max(len(flat), 1),
        "truncation_rate": sum(s.finish_reason == "length" for s in flat) / max(len(flat), 1),
        "seconds": time.time() - start,
    }
    log(f"eval {label} RL: pass@1 = {result['pass@1']:.3f} on {len(problems)} held-out problems ({n} samples each)")
    return result


def _out_of_time(t_start: float, budget_s: float, history: list[dict[str, float]], eval_before: Any) -> bool:
    """Would one more RL step plus the final eval and report overrun the budget?"""
    recent = history[-5:]
    step_s = max(m.get("time_generate", 0) + m.get("time_verify", 0) + m.get("time_train", 0) for m in recent)
    eval_s = (eval_before or {}).get("seconds", 0.0) * 2 + 15.0  # eval after + plots and summary, with margin
    return time.time() + step_s + eval_s > t_start + budget_s


def _truncate_metrics(path: Path, step: int) -> list[dict[str, float]]:
    """Keep the metrics of steps <= ``step`` (a killed run may have logged steps after its last checkpoint)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut off by the kill
        if record.get("step", 0) <= step:
            kept.append(record)
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


class ExternalTrackers:
    """Optional TensorBoard / Weights & Biases logging of the per-step metrics (``tensorboard=true``,
    ``wandb=true``); metrics.jsonl is always written."""

    def __init__(self, config: TrainConfig, run_dir: Path) -> None:
        self.writer = None
        self.wandb = None
        if config.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise RunError("tensorboard=true needs the tensorboard package: pip install tensorboard") from None
            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if config.wandb:
            try:
                import wandb
            except ImportError:
                raise RunError("wandb=true needs the wandb package: pip install wandb") from None
            self.wandb = wandb.init(project="reasonrl", name=run_dir.name, dir=str(run_dir), config=to_dict(config),
                                    resume="allow")

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in metrics.items():
                self.writer.add_scalar(f"rl/{key}", value, step)
        if self.wandb is not None:
            self.wandb.log({f"rl/{k}": v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _progress(config: TrainConfig, initial: int):
    from reasonrl.progress import progress_bar

    return progress_bar(config.steps, config.trainer, config.progress, initial)


def _write(bar: Any, log: Callable[[str], None], message: str) -> None:
    if bar is not None:
        bar.write(message)
    else:
        log(message)


def format_summary(summary: dict[str, Any], run_dir: Path) -> str:
    """The short table printed at the end of a run."""
    before, after = summary.get("eval_before") or {}, summary.get("eval_after") or {}

    def fmt(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, (int, float)) else "-"

    total = (summary.get("timings") or {}).get("total_s")
    lines = [
        "",
        f"task {summary.get('task')}  ·  {summary.get('steps')} RL steps  ·  "
        + (f"{total / 60:.1f} min" if total else ""),
        f"{'':22}{'before RL':>10}{'after RL':>10}",
        f"{'pass@1 (held-out)':22}{fmt(before.get('pass@1')):>10}{fmt(after.get('pass@1')):>10}",
        f"{'response length':22}{fmt(before.get('mean_response_length')):>10}{fmt(after.get('mean_response_length')):>10}",
        f"run directory: {run_dir}",
        f"plots:         {run_dir / 'plots'}",
    ]
    return "\n".join(lines)
