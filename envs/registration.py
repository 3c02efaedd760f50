"""Gymnasium registration: every task is the env ``reasonrl/<EnvName>-v<N>``.

How it works. Gymnasium 1.x has no plugin entry-point group (gym 0.2x's ``gymnasium.envs``
group is gone): ids get into ``gymnasium.registry`` only by calling ``gymnasium.register``.
reasonrl does that for you, without making ``import reasonrl`` pay for importing gymnasium
(and numpy, ~0.3 s, which ``reasonrl verify`` never needs):

* ``import reasonrl`` (which any ``reasonrl.*`` import runs first) calls
  :func:`install_gymnasium_hooks`. If gymnasium is already imported, the ids are registered
  at once; otherwise a one-shot import hook registers them right after gymnasium's own
  ``import`` finishes. Either way, ``import reasonrl; import gymnasium;
  gymnasium.make("reasonrl/KnightsKnaves-v0", people=4)`` works, in any import order.
* The built-in tasks' ids come from the static table :data:`reasonrl.tasks.BUILTIN_TASKS`;
  registering them imports no verifier or generator module.
* A hook in ``reasonrl.tasks._register_hooks`` registers every task added later by
  :func:`reasonrl.register_task` (a user's task, or one loaded from the ``reasonrl.tasks``
  entry-point group) the moment it is registered (or, if gymnasium is not imported yet, when it
  is); ``unregister_task`` drops the id.
* Gymnasium's own ``"module:env_id"`` form also works and imports the module first:
  ``gymnasium.make("mypkg.tasks:reasonrl/MyTask-v0")`` for a user's task module.

The entry point is the env class as a string (``reasonrl.envs.task_env:TaskEnv``, or
``reasonrl.envs.code_env:CodeEnv`` for tasks verified by ``code``) with
``kwargs={"task": name}``; keywords given to ``gymnasium.make`` are passed on (difficulty
knobs, ``dataset=``, env options). The task itself is looked up when the env is made, so a
built-in id whose module is missing from a partial checkout fails then with "unknown task",
naming the available ones.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any

from reasonrl import tasks

TASK_ENV_ENTRY_POINT = "reasonrl.envs.task_env:TaskEnv"
CODE_ENV_ENTRY_POINT = "reasonrl.envs.code_env:CodeEnv"
# Tasks whose verifier is one of these get the multi-turn code env (still one attempt by default).
CODE_VERIFIERS = ("code",)


def entry_point_for(verifier: Any) -> str:
    """The env class (as ``module:Class``) for a task verified by ``verifier``."""
    return CODE_ENV_ENTRY_POINT if isinstance(verifier, str) and verifier in CODE_VERIFIERS else TASK_ENV_ENTRY_POINT


def _gymnasium_loaded() -> bool:
    module = sys.modules.get("gymnasium")
    # "Fully imported" = its registry is reachable (not a half-run __init__ mid-import).
    return module is not None and hasattr(module, "register") and hasattr(module, "registry")


def _register_id(env_id: str, task_name: str, verifier: Any) -> None:
    from gymnasium.envs.registration import register, registry

    entry_point = entry_point_for(verifier)
    existing = registry.get(env_id)
    if existing is not None:
        if existing.entry_point == entry_point and existing.kwargs == {"task": task_name}:
            return  # already there (a built-in id, registered again when its task loads)
        del registry[env_id]  # replaced on purpose (register_task(..., overwrite=True)); no gymnasium warning
    # Code envs are declared nondeterministic: a program's verdict depends on the wall clock (a
    # time limit under load) and its details carry measured run times, so gymnasium's checker
    # must not demand equal step infos. Their resets are still deterministic (tested separately).
    register(id=env_id, entry_point=entry_point, kwargs={"task": task_name}, nondeterministic=entry_point == CODE_ENV_ENTRY_POINT)


def register_task_env(task: "tasks.Task") -> str:
    """Register (or refresh) the gymnasium id of ``task``; returns the id. Imports gymnasium."""
    _register_id(task.env_id, task.name, task.verifier)
    return task.env_id


def unregister_task_env(task: "tasks.Task") -> None:
    """Drop the gymnasium id of ``task`` if it points at that task."""
    if not _gymnasium_loaded():
        return
    from gymnasium.envs.registration import registry

    spec = registry.get(task.env_id)
    if spec is not None and spec.kwargs == {"task": task.name}:
        del registry[task.env_id]


def builtin_env_ids() -> dict[str, str]:
    """``{env_id: task_name}`` for the built-in tasks (static, imports nothing)."""
    return {f"reasonrl/{env}-v0": name for name, _gen, _ver, env, _desc in tasks.BUILTIN_TASKS}


def register_builtin_envs() -> None:
    """Register the built-in ids and every task already in the registry (idempotent). Imports gymnasium."""
    for name, _gen, verifier, env, _desc in tasks.BUILTIN_TASKS:
        if name not in tasks._TASKS:  # a loaded task (possibly re-registered by a user) wins
            _register_id(f"reasonrl/{env}-v0", name, verifier)
    for task in list(tasks._TASKS.values()):
        register_task_env(task)


def reasonrl_env_ids() -> list[str]:
    """Every ``reasonrl/...`` id in gymnasium's registry (imports gymnasium)."""
    import gymnasium

    return sorted(env_id for env_id in gymnasium.registry if env_id.startswith("reasonrl/"))


def _on_task_registered(task: "tasks.Task") -> None:
    # Before gymnasium is imported there is nothing to register into; the import hook will
    # register every task in the registry then.
    if _gymnasium_loaded():
        register_task_env(task)


class _AfterGymnasiumImport(importlib.abc.MetaPathFinder):
    """One-shot import hook: lets the normal finders load ``gymnasium``, then registers our ids.

    It does not replace gymnasium's loader (``importlib.resources`` and friends keep working);
    it only wraps that loader instance's ``exec_module`` for this one import.
    """

    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname != "gymnasium":
            return None
        _remove_hook()
        spec = importlib.util.find_spec("gymnasium")  # the remaining finders; no recursion
        loader = getattr(spec, "loader", None) if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            try:
                original(module)
            finally:
                try:
                    del loader.exec_module  # back to the class's method
                except AttributeError:
                    pass
            try:
                register_builtin_envs()
            except Exception as exc:  # never break the user's gymnasium import
                warnings.warn(f"reasonrl could not register its gymnasium envs: {exc!r}", RuntimeWarning, stacklevel=2)

        loader.exec_module = exec_module
        return spec


_hook: _AfterGymnasiumImport | None = None


def _remove_hook() -> None:
    global _hook
    if _hook is not None and _hook in sys.meta_path:
        sys.meta_path.remove(_hook)
    _hook = None


def install_gymnasium_hooks() -> None:
    """Called by ``import reasonrl``: register now if gymnasium is loaded, else after it loads."""
    global _hook
    if _on_task_registered not in tasks._register_hooks:
        tasks._register_hooks.append(_on_task_registered)
    if unregister_task_env not in tasks._unregister_hooks:
        tasks._unregister_hooks.append(unregister_task_env)
    if _gymnasium_loaded():
        register_builtin_envs()
    elif "gymnasium" not in sys.modules and _hook is None:
        _hook = _AfterGymnasiumImport()
        sys.meta_path.insert(0, _hook)
