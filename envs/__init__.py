"""Gymnasium environments over every registered task, and process-reward (PRM) hooks.

>>> import reasonrl, gymnasium
>>> env = reasonrl.make("kk", people=4)                               # a task name ...
>>> env = gymnasium.make("reasonrl/KnightsKnaves-v0", people=4)      # ... or its gymnasium id

* :class:`TaskEnv` — single-turn env over any task (generator- or dataset-backed).
* :class:`CodeEnv` — multi-turn code env with test feedback (``max_attempts``).
* :func:`verify_problems` — batched verification for trainers.
* :mod:`~reasonrl.envs.process_rewards` — step segmentation, ProcessRewarder, combinations.
* :mod:`~reasonrl.envs.prm_data` — PRM800K step labels to the project's step-label rows.
* :mod:`~reasonrl.envs.registration` — how the ids reach gymnasium's registry.

Names are resolved lazily (``import reasonrl.envs`` does not import gymnasium or numpy).
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TaskEnv": "reasonrl.envs.task_env",
    "resolve_task": "reasonrl.envs.task_env",
    "CodeEnv": "reasonrl.envs.code_env",
    "render_feedback": "reasonrl.envs.code_env",
    "ChatMessages": "reasonrl.envs.spaces",
    "UnicodeText": "reasonrl.envs.spaces",
    "verify_problems": "reasonrl.envs.batch",
    "ProcessRewarder": "reasonrl.envs.process_rewards",
    "CallableRewarder": "reasonrl.envs.process_rewards",
    "MonteCarloRewarder": "reasonrl.envs.process_rewards",
    "ModelPRMScorer": "reasonrl.envs.process_rewards",
    "StepSegmenter": "reasonrl.envs.process_rewards",
    "segment_steps": "reasonrl.envs.process_rewards",
    "combine_rewards": "reasonrl.envs.process_rewards",
    "reduce_step_rewards": "reasonrl.envs.process_rewards",
    "discounted_returns": "reasonrl.envs.process_rewards",
    "load_prm800k": "reasonrl.envs.prm_data",
    "register_task_env": "reasonrl.envs.registration",
    "register_builtin_envs": "reasonrl.envs.registration",
    "reasonrl_env_ids": "reasonrl.envs.registration",
}

__all__ = ["make", "env_id_for", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reasonrl.envs' has no attribute {name!r}")


def env_id_for(task: Any) -> str:
    """The gymnasium id of a task given by name, env id (with or without ``reasonrl/``), ``module:attr`` or Task."""
    from reasonrl.envs.task_env import resolve_task

    return resolve_task(task).env_id


def make(task: Any, **kwargs: Any):
    """``gymnasium.make`` for a task name (``"kk"``), an env id (``"reasonrl/KnightsKnaves-v0"`` or
    ``"KnightsKnaves-v0"``), ``"mypkg.tasks:my_task"`` or a Task; keywords go to the env
    (difficulty knobs, ``dataset=``, env options, and gymnasium's own such as ``max_episode_steps``).

    The result carries gymnasium's usual wrappers; ``env.unwrapped`` is the :class:`TaskEnv`.
    """
    import gymnasium

    from reasonrl.envs.registration import register_task_env
    from reasonrl.envs.task_env import resolve_task

    resolved = resolve_task(task)
    register_task_env(resolved)  # a Task object made elsewhere, or an id dropped by hand
    return gymnasium.make(resolved.env_id, **kwargs)
