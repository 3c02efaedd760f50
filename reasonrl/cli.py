"""The ``reasonrl`` command line. Each subcommand lives in ``reasonrl/commands/<name>.py``
with ``add_arguments(parser)`` and ``run(args) -> int``; they are imported only when used,
so ``reasonrl verify`` never pays for torch."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "tasks": "list registered tasks and environments",
    "verify": "score a JSONL file of responses with a task's verifier",
    "gen": "generate a procedural dataset (JSONL or Parquet)",
    "sft": "supervised fine-tuning on worked solutions",
    "train": "training: RL, expert iteration, ... (no arguments: the embedded tiny-model default, end to end)",
    "eval": "evaluate checkpoints: pass@k, maj@k, best-of-N",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    from reasonrl import __version__

    parser = argparse.ArgumentParser(prog="reasonrl", description="Reinforcement learning with verifiable rewards.")
    parser.add_argument("--version", action="version", version=f"reasonrl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = argv[0] if argv and argv[0] in COMMANDS else None
    for name, help_text in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # only import the module of the command being run
            module = importlib.import_module(f"reasonrl.commands.{name.replace('-', '_')}")
            module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        resumable = getattr(args, "command", None) == "train" or argv[:1] == ["train"]
        print("interrupted" + ("; run the same command again to resume from the last checkpoint" if resumable else ""),
              file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`reasonrl gen --output - | head`): stop quietly, like other Unix tools.
        # Point stdout at /dev/null so the interpreter's final flush does not raise again.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
