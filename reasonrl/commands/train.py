"""``reasonrl train [--config FILE.yaml] [key=value ...]``: training, end to end (``trainer=NAME``, default ``rl``).

With no arguments it runs the embedded default (reasonrl/configs/default.yaml): build the tiny
model, SFT warm-up on 3-digit addition, GRPO, pass@1 before/after on held-out problems, all on
CPU in minutes. ``model=/path/to/hf/checkpoint task=gsm8k dataset=train.jsonl ...`` trains a real
model with the same loop. Run the same command again to resume an interrupted run.
"""
from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", default=None, help=f"YAML config (default: the embedded {DEFAULT_CONFIG.name})")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides, nested with dots: seed=1 output_dir=runs/x algorithm.estimator=rloo")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--list-keys", action="store_true", help="list every config key and exit")
    parser.add_argument("--list-trainers", action="store_true", help="list the registered trainers (trainer=NAME) and exit")


def prepare_cpu_threads() -> None:
    """Idle OpenMP threads sleep instead of spinning: on a loaded CPU (tests, other jobs) spinning
    threads of small matmuls made steps ~10x slower here. Must run before torch is imported."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextmanager
def hf_progress_bars(enabled: bool) -> Iterator[None]:
    """transformers' own bars ("Loading weights", "Writing model shards" at every checkpoint) follow
    the command's ``progress`` setting: ``progress=false`` gives a log without them. Restored after."""
    from transformers.utils import logging as hf_logging

    silence = not enabled and hf_logging.is_progress_bar_enabled()
    if silence:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if silence:
            hf_logging.enable_progress_bar()


# Keys of the embedded default that are tuned for its task (3-digit addition): with another task=
# and no value of the user's, they fall back to what follows the task (its generator's own
# defaults; a response length derived from its answers) instead of carrying arith's over.
TASK_SPECIFIC_DEFAULTS = ("task_options={}", "rollout.max_tokens=0")


def load_train_config(config_path: str | None, overrides: list[str]):
    from reasonrl.config import TrainConfig, load_config

    config = load_config(TrainConfig, config_path or DEFAULT_CONFIG, overrides)
    default_task = load_config(TrainConfig, DEFAULT_CONFIG, []).task
    if config_path is None and config.task != default_task:
        # Prepended: the user's own keys come later and win (task_options.length=6 lands in an empty mapping).
        given = {item.partition("=")[0] for item in overrides}
        extra = [item for item in TASK_SPECIFIC_DEFAULTS if item.partition("=")[0] not in given or item.startswith("task_options")]
        config = load_config(TrainConfig, DEFAULT_CONFIG, [*extra, *overrides])
    return config


def run(args: argparse.Namespace) -> int:
    prepare_cpu_threads()
    from reasonrl.config import ConfigError, TrainConfig, describe_keys, to_yaml

    if args.list_keys:
        rows = describe_keys(TrainConfig)
        width = max(len(key) for key, *_ in rows)
        for key, type_name, default, help_text in rows:
            print(f"{key:{width}}  {type_name:6}  {default:18}  {help_text}".rstrip())
        return 0
    if args.list_trainers:
        from reasonrl.trainers.registry import describe_trainers

        print(describe_trainers())
        return 0
    try:
        config = load_train_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"reasonrl train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(to_yaml(config), end="")
        return 0
    return run_config(config)


def run_config(config) -> int:
    from reasonrl.trainers.run import RunError, main

    try:
        # transformers' own bars redraw with carriage returns: on a terminal only, like ours.
        with hf_progress_bars(config.progress and sys.stderr.isatty()):
            main(config)
    except (RunError, KeyError, FileNotFoundError, ValueError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"reasonrl train: {message}", file=sys.stderr)
        return 2
    return 0
