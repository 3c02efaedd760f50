"""reasonrl: reinforcement learning with verifiable rewards for language models.

Importing ``reasonrl`` is cheap: nothing heavy (torch, transformers) is imported until a
trainer, engine or evaluation is used. The names below are resolved lazily.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Verdict": ("reasonrl.types", "Verdict"),
    "make_problem": ("reasonrl.types", "make_problem"),
    "validate_problem": ("reasonrl.types", "validate_problem"),
    "register_task": ("reasonrl.tasks", "register_task"),
    "get_task": ("reasonrl.tasks", "get_task"),
    "list_tasks": ("reasonrl.tasks", "list_tasks"),
    "make": ("reasonrl.envs", "make"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'reasonrl' has no attribute {name!r}")



def _install_gymnasium_registration() -> None:
    """Make ``gymnasium.make("reasonrl/...")`` work after ``import reasonrl`` without importing
    gymnasium here (it costs ~0.3 s of numpy): ids are registered now if gymnasium is already
    imported, else right after its import (see reasonrl.envs.registration)."""
    from reasonrl.envs.registration import install_gymnasium_hooks

    install_gymnasium_hooks()


_install_gymnasium_registration()
