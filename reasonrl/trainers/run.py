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
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from reasonrl.config import ConfigError, TrainConfig, config_hash, diff_configs, from_dict, to_dict, to_yaml

SFT_CACHE_FORMAT = 1


class RunError(RuntimeError):
    """The run cannot start (bad model path, a different run in the output directory...)."""


def main(config: TrainConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole job; returns the summary (also written to ``summary.json``)."""
    import torch

    from reasonrl.tasks import get_task

    t_start = time.time()
    budget_s = config.max_minutes * 60 if config.max_minutes > 0 else None
    if config.threads:
        torch.set_num_threads(config.threads)
    from reasonrl.trainers import checkpoint as ckpt
    from reasonrl.trainers.data import ProblemSource
    from reasonrl.trainers.rl import RLTrainer, warn_on_dead_signal

    # Bad input fails here, before anything is written.
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    config.check_world_size(world_size)
    task = get_task(config.task)  # KeyError lists the registered tasks
    if not config.is_tiny:
        check_model_path(config.model)
    device = _device(config)
    ranks = Ranks.start(world_size, device)  # several ranks: DeepSpeed's process group
    if ranks.world_size > 1:
        device = str(ranks.context.device)
        if not ranks.is_main:
            log = _silent  # rank 0 speaks for the run (log lines, progress bars, files)
    source = ProblemSource(
        task, seed=config.seed, task_options=config.task_options, dataset=config.dataset or None,
        eval_dataset=config.eval_dataset or None, num_test=config.eval.problems, num_val=config.sft.eval_problems,
    )
    run_dir = config.resolved_output_dir()
    existing = ranks.on_main(lambda: _prepare_run_dir(run_dir, config, log))
    if existing is not None:
        ranks.finish()
        return existing
    timings: dict[str, float] = {}
    # Fails early when tensorboard/wandb is asked for but missing; only rank 0 logs.
    trackers = ExternalTrackers(config if ranks.is_main else replace(config, tensorboard=False, wandb=False), run_dir)
    resume_from = ckpt.latest_checkpoint(run_dir)

    # 1. The initial policy: the given checkpoint, or the tiny model warmed up by SFT (on rank 0;
    #    the other ranks load its result).
    t0 = time.time()
    sft_deadline = t_start + budget_s / 2 if budget_s else None
    if resume_from is None:
        init_path = ranks.on_main(lambda: _initial_policy(config, source, run_dir, device, log, sft_deadline))
    else:
        init_path = ckpt.load_trainer_state(resume_from)["init_model"]
        if not Path(init_path).exists():
            raise RunError(f"cannot resume: the initial policy {init_path} recorded in {resume_from} is gone")
    timings["prepare_s"] = time.time() - t0

    model, tokenizer = load_policy(init_path, device, config)
    # Frozen copies run under bf16 autocast on a GPU anyway: keep them in bf16 there (half the memory).
    copy_dtype = "bfloat16" if device.startswith("cuda") and config.dtype == "auto" else None
    ref_model = None
    if config.algorithm.kl_coef > 0 or config.track_ref_kl:
        ref_model, _ = load_policy(init_path, device, config, dtype=copy_dtype)
        ref_model.requires_grad_(False).eval()
    # Under ZeRO-3 the trained module's parameters are partitioned over the ranks: the rollout
    # engine decodes with a whole copy, refreshed after every step (RLTrainer.sync_engine_weights).
    rollout_model = model
    if ranks.world_size > 1 and config.deepspeed.zero_stage == 3:
        rollout_model, _ = load_policy(init_path, device, config, dtype=copy_dtype)
        rollout_model.requires_grad_(False)
    engine = _make_engine(config, rollout_model, tokenizer, init_path)

    # 2. pass@1 before RL (kept in the run dir so a resumed run does not redo it).
    t0 = time.time()
    eval_before = ranks.on_main(lambda: _cached_eval(
        run_dir / "eval_before.json", config.eval.before, engine, tokenizer, source, config, "before", log
    ))
    timings["eval_before_s"] = time.time() - t0

    # 3. RL.
    trainer = RLTrainer(config, model, tokenizer, engine, source, ref_model=ref_model, log=log,
                        dist=ranks.context if ranks.world_size > 1 else None)
    metrics_path = run_dir / "metrics.jsonl"
    history: list[dict[str, float]] = []
    if resume_from is not None:
        if trainer.deepspeed is not None:
            state = _restore_on_ranks(resume_from, trainer)
        else:
            try:
                state, extra = ckpt.restore_checkpoint(resume_from, model, trainer.optimizer)
            except FileNotFoundError as error:
                raise RunError(str(error)) from None
            trainer.load_extra_state(extra)
        trainer.load_state(state)
        trainer.sync_engine_weights()
        history = ranks.on_main(lambda: _truncate_metrics(metrics_path, trainer.step))
        log(f"resuming from {resume_from} (step {trainer.step} of {config.steps})")
    elif ranks.is_main:
        metrics_path.write_text("")
    rl_seconds_before = history[-1].get("elapsed_rl_s", 0.0) if history else 0.0

    t0 = time.time()
    bar = _progress(config, trainer.step) if ranks.is_main else None
    last_warning_step = -100
    with open(metrics_path, "a", encoding="utf-8") if ranks.is_main else open(os.devnull, "w") as metrics_file:
        stopped_by_clock = False
        while trainer.step < config.steps:
            # The clock is read on rank 0 only: every rank must stop at the same step.
            if budget_s and ranks.on_main(lambda: bool(history) and _out_of_time(t_start, budget_s, history, eval_before)):
                stopped_by_clock = True
                _write(bar, log, f"warning: stopping RL at step {trainer.step} of {config.steps}: the run would exceed "
                                 f"max_minutes={config.max_minutes:g}")
                break
            metrics = trainer.train_step()
            metrics["elapsed_rl_s"] = rl_seconds_before + time.time() - t0
            history.append(metrics)
            metrics_file.write(json.dumps(metrics) + "\n")
            metrics_file.flush()
            trackers.log(metrics, trainer.step)
            warning = warn_on_dead_signal(metrics, history[:-1])
            if warning and trainer.step - last_warning_step >= 25:
                _write(bar, log, warning)
                last_warning_step = trainer.step
            if bar is not None:
                recent = history[-10:]
                bar.update(1)
                bar.set_postfix(
                    reward=f"{sum(m.get('reward', 0.0) for m in recent) / len(recent):.3f}",
                    acc=f"{sum(m.get('accuracy', 0.0) for m in recent) / len(recent):.2f}",
                )
            if trainer.step % config.save_every == 0 or trainer.step == config.steps:
                state = {**trainer.state(), "init_model": str(init_path), "config_hash": config_hash(config)}
                if trainer.deepspeed is not None:
                    ckpt.save_deepspeed_checkpoint(run_dir, trainer.step, trainer.deepspeed, tokenizer, state,
                                                   is_main=ranks.is_main, keep=config.keep_checkpoints)
                else:
                    ckpt.save_checkpoint(run_dir, trainer.step, model, tokenizer, trainer.optimizer, state,
                                         extra=trainer.extra_state(), keep=config.keep_checkpoints)
    if bar is not None:
        bar.close()
    trackers.close()
    timings["rl_s"] = time.time() - t0

    # 4. pass@1 after RL, plots, summary (rank 0; the others get its summary).
    summary = ranks.on_main(lambda: _report(config, run_dir, engine, tokenizer, source, init_path, eval_before, history,
                                            trainer.step, stopped_by_clock, timings, t_start, log))
    close = getattr(engine, "close", None)
    if callable(close) and config.engine == "vllm":
        close()
    ranks.finish()
    return summary


def _report(
    config: TrainConfig, run_dir: Path, engine: Any, tokenizer: Any, source: Any, init_path: Any, eval_before: Any,
    history: list[dict[str, float]], steps: int, stopped_by_clock: bool, timings: dict[str, float], t_start: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """pass@1 after RL, the plots and ``summary.json``."""
    from reasonrl import plots
    from reasonrl.trainers import checkpoint as ckpt

    t0 = time.time()
    eval_after = _evaluate(engine, tokenizer, source, config, "after", log) if config.eval.after else None
    timings["eval_after_s"] = time.time() - t0

    summary = {
        "task": config.task,
        "model": config.model,
        "initial_policy": str(init_path),
        "eval_before": eval_before,
        "eval_after": eval_after,
        "improvement": (
            eval_after["pass@1"] - eval_before["pass@1"] if eval_before is not None and eval_after is not None else None
        ),
        "steps": steps,
        "stopped_by_time_budget": stopped_by_clock,
        "world_size": int(os.environ.get("WORLD_SIZE", "1") or 1),
        "final_checkpoint": str(ckpt.latest_checkpoint(run_dir)),
        "sft": _read_json(run_dir / "sft" / "sft.json"),
        "timings": {**timings, "total_s": time.time() - t_start},
        "config": to_dict(config),
    }
    summary["plots"] = [str(p) for p in plots.plot_run(run_dir, history, eval_before, eval_after)]
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(format_summary(summary, run_dir))
    return summary


# ----------------------------------------------------------------------------------------------
# Pieces
# ----------------------------------------------------------------------------------------------


def _silent(message: str) -> None:
    """The log of ranks other than 0."""


class Ranks:
    """The run's place among the ranks of a multi-process launch (one rank when not launched).

    :meth:`on_main` runs a piece of the job (SFT, evaluation, files in the run directory) on rank
    0 only and hands its result, or its error, to every rank, so all ranks go on together.
    """

    def __init__(self, context: Any = None) -> None:
        self.context = context
        self.world_size = 1 if context is None else context.world_size
        self.is_main = context is None or context.is_main

    @classmethod
    def start(cls, world_size: int, device: str) -> "Ranks":
        if world_size <= 1:
            return cls()
        from reasonrl.distributed import init_distributed

        return cls(init_distributed("nccl" if device == "cuda" else "gloo"))

    def on_main(self, fn: Callable[[], Any]) -> Any:
        if self.world_size == 1:
            return fn()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except Exception as error:  # handed to every rank, raised everywhere
                box[0] = ("error", error)
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def finish(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()


def _restore_on_ranks(checkpoint: Path, trainer: Any) -> dict[str, Any]:
    from reasonrl.trainers import checkpoint as ckpt

    try:
        return ckpt.restore_deepspeed_checkpoint(checkpoint, trainer.deepspeed)
    except FileNotFoundError as error:
        raise RunError(str(error)) from None


def _prepare_run_dir(run_dir: Path, config: TrainConfig, log: Callable[[str], None]) -> dict[str, Any] | None:
    """Create the run dir, or check that an existing one holds this very config (resume)."""
    config_file = run_dir / "config.yaml"
    if config.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    if config_file.exists():
        import yaml

        previous = from_dict(TrainConfig, yaml.safe_load(config_file.read_text()) or {})
        differing = [k for k in diff_configs(previous, config) if k not in ("overwrite", "progress")]
        if differing:
            raise RunError(
                f"{run_dir} holds a run with a different config ({', '.join(differing[:8])} differ); "
                f"pick another output_dir=... or pass overwrite=true to replace it"
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


def check_model_path(path: str) -> Path:
    """A Hugging Face checkpoint directory, or a clear error."""
    p = Path(path).expanduser()
    if not p.exists():
        raise RunError(f"model path not found: {p} (give a Hugging Face checkpoint directory, or model=tiny)")
    if not p.is_dir() or not (p / "config.json").exists():
        raise RunError(f"{p} is not a Hugging Face checkpoint directory (no config.json in it)")
    return p


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
    from reasonrl.trainers.rl import _autocast_dtype

    if config.engine == "hf":
        from reasonrl.engines.hf_engine import HFEngine

        return HFEngine(model, tokenizer, max_batch_size=config.rollout.max_batch_size,
                        autocast_dtype=_autocast_dtype(config, next(model.parameters()).device))
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
        base = check_model_path(config.model)
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
    if not config.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=config.steps, initial=initial, desc="rl", dynamic_ncols=True)


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
