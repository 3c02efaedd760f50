"""Trainer name → trainer class (``reasonrl train trainer=NAME``; ``--list-trainers``).

A trainer module registers its class with ``@TRAINERS.register("name")``. The built-in modules
are imported on the first look-up (importing them pulls in torch), and a user's trainer is a
file spec: ``trainer=path/to/my_trainer.py:MyTrainer``.
"""
from __future__ import annotations

import importlib
from typing import Any

from reasonrl.registry import Registry

TRAINERS: Registry[Any] = Registry("trainer")

# Modules holding the built-in trainers, imported on the first look-up.
BUILTIN_TRAINER_MODULES = ("reasonrl.trainers.rl", "reasonrl.trainers.expert_iteration")


def _load_builtins() -> None:
    for module in BUILTIN_TRAINER_MODULES:
        importlib.import_module(module)


def get_trainer(name: str) -> Any:
    """The trainer class registered as ``name`` (or a file spec); the error lists the registered names."""
    _load_builtins()
    return TRAINERS.get(name)


def trainer_names() -> list[str]:
    _load_builtins()
    return TRAINERS.names()


def describe_trainers() -> str:
    """One line per registered trainer: its name and the first line of its docstring."""
    lines = []
    for name in trainer_names():
        doc = (TRAINERS.get(name).__doc__ or "").strip().splitlines()
        lines.append(f"{name:20} {doc[0] if doc else ''}")
    return "\n".join(lines)
