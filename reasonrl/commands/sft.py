"""``reasonrl sft [--config FILE.yaml] [key=value ...] output_dir=DIR``: supervised fine-tuning alone.

Trains ``model`` (default: the tiny model) on a task's generated worked solutions with the
``sft.*`` settings of the train config, and saves the result as a Hugging Face checkpoint in
``output_dir`` (plus ``sft.json``). ``sft.target_accuracy=0`` trains all ``sft.max_steps`` steps.

Example: ``reasonrl sft task=arith sft.max_steps=800 sft.target_accuracy=0 output_dir=runs/sft-arith``
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None, help="YAML config (the train config schema; its sft section applies)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. task=arith sft.max_steps=500 output_dir=DIR")


def run(args: argparse.Namespace) -> int:
    from reasonrl.commands.train import hf_progress_bars, load_train_config, prepare_cpu_threads

    prepare_cpu_threads()
    from reasonrl.config import ConfigError

    try:
        config = load_train_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"reasonrl sft: {exc}", file=sys.stderr)
        return 2
    try:
        with hf_progress_bars(config.progress and sys.stderr.isatty()):
            path = run_sft(config)
    except (KeyError, FileNotFoundError, ValueError, RuntimeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"reasonrl sft: {message}", file=sys.stderr)
        return 2
    print(f"saved the fine-tuned model to {path}")
    return 0


def run_sft(config) -> Path:
    """Build/load the model, fine-tune it on the task's worked solutions, save it to the output dir."""
    import torch

    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model, describe
    from reasonrl.tasks import get_task
    from reasonrl.trainers.data import ProblemSource
    from reasonrl.trainers.run import _device, check_model_path, load_policy, resolve_max_tokens
    from reasonrl.trainers.sft import save_sft_result, train_sft

    if config.threads:
        torch.set_num_threads(config.threads)
    task = get_task(config.task)
    out = Path(config.output_dir) if config.output_dir else Path("runs") / f"sft-{config.task}-seed{config.seed}"
    base = build_tiny_model(TinyModelConfig(**asdict(config.tiny), seed=config.seed)) if config.is_tiny else check_model_path(config.model, config.revision)
    device = _device(config)
    model, tokenizer = load_policy(base, device, config)
    source = ProblemSource(task, seed=config.seed, task_options=config.task_options, dataset=config.dataset or None,
                           eval_dataset=config.eval_dataset or None, num_test=config.eval.problems,
                           num_val=config.sft.eval_problems)
    config = resolve_max_tokens(config, source)
    print(f"sft: {describe(model)} on {config.task}")
    result = train_sft(model, tokenizer, source.stream("sft"), config.sft, seed=config.seed,
                       val_problems=source.heldout("val"), max_tokens=config.rollout.max_tokens,
                       progress=config.progress)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_sft_result(result, out / "sft.json")
    return out
