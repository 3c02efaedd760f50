"""A Gymnasium environment over any registered task (generator- or dataset-backed).

One episode is one problem. ``reset`` draws a problem and returns its prompt as chat
messages; ``step(response)`` verifies the assistant's response and returns its reward::

    >>> import reasonrl
    >>> env = reasonrl.make("kk", people=3)              # or gymnasium.make("reasonrl/KnightsKnaves-v0", people=3)
    >>> messages, info = env.reset(seed=0)               # messages: [{"role": "user", "content": ...}]
    >>> obs, reward, terminated, truncated, info = env.step("<answer>...</answer>")
    >>> info["verdict"].correct, terminated
    (False, True)

Observation: the conversation so far, a list of ``{"role", "content"}`` dicts
(:class:`~reasonrl.envs.spaces.ChatMessages`); after a step it ends with the assistant's
response. Action: the response string (:class:`~reasonrl.envs.spaces.UnicodeText`).

Problems:

* generator-backed tasks draw a problem seed from the env's ``np_random``; every keyword that
  is not an env option is a difficulty knob of the generator (``people=4``), validated by its
  config. ``reset(options={"difficulty": {...}})`` changes the knobs for one episode
  (curricula).
* dataset-backed tasks (``dataset=`` a path, rows or a ``datasets.Dataset``; default: the
  task's own dataset) draw a row index from ``np_random``; ``options={"index": i}`` picks a row.
* ``options={"problem": row}`` plays the given Problem row (any task);
  ``options={"problem_seed": s}`` plays ``generator.generate(s)``.

``reset(seed=s)`` is deterministic: the same seed gives the same problem.

Info: ``reset`` gives ``problem_id``, ``task``, ``difficulty`` and ``problem`` (the whole
row, a fresh copy). ``step`` adds ``verdict`` (:class:`~reasonrl.types.Verdict`),
``outcome_reward`` and, when a process rewarder is attached, ``steps`` (character spans),
``step_rewards`` and ``process_reward``.

Episode end: single-turn tasks terminate after one step (``terminated=True``). ``truncated``
is set when the response exceeds ``token_budget`` (measured with ``count_tokens``, characters
by default); the response is still verified, and ``overlong_reward`` (if not None) replaces
its reward. Stepping a finished episode raises; call ``reset``.

Verification here runs in-process, one response at a time, through the task's verifier (a
verifier that raises gives an ``error`` verdict, as in the batch runner). For many responses at
once with worker processes and hard per-item time limits use
:func:`reasonrl.envs.batch.verify_problems` (same verdicts, except where its time limit stops a
verification that would have gone on here).

``gymnasium.make`` deep-copies its keyword arguments: ``dataset=`` rows are copied per env;
process rewarders are shared (they do not copy themselves).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, SupportsFloat

import gymnasium as gym

from reasonrl.envs.process_rewards import ProcessRewarder, StepSegmenter, combine_rewards, reduce_step_rewards
from reasonrl.envs.spaces import ChatMessages, UnicodeText
from reasonrl.types import Verdict

# Keyword arguments the env takes itself; every other keyword is a generator difficulty knob.
ENV_OPTIONS = (
    "task", "dataset", "difficulty", "verifier_options", "process_rewarder", "segmenter",
    "process_reduce", "process_weight", "process_gamma", "token_budget", "count_tokens",
    "overlong_reward", "max_response_length", "render_mode",
)


def resolve_task(task: Any):
    """A :class:`reasonrl.tasks.Task` from a Task, a task name, an env id or ``module:attr``."""
    from reasonrl import tasks

    if isinstance(task, tasks.Task):
        return task
    if not isinstance(task, str):
        raise TypeError(f"task must be a task name, an env id or a Task, got {type(task).__name__}")
    name = task
    for candidate in tasks.list_tasks():
        if name in (candidate.name, candidate.env_id, candidate.env_id.removeprefix("reasonrl/")):
            return candidate
    return tasks.get_task(name)


class TaskEnv(gym.Env):
    """A single-turn Gymnasium env over a registered task.

    Args:
        task: task name (``"kk"``), env id (``"reasonrl/KnightsKnaves-v0"``) or a Task.
        dataset: Problem rows for a dataset-backed task (path, list, ``datasets.Dataset``);
            also accepted by generator tasks to replay a fixed set of generated rows.
        difficulty: generator knobs as a dict (same as passing them as keywords).
        verifier_options: options for the task's verifier (e.g. ``{"strict": True}``).
        process_rewarder: a :class:`~reasonrl.envs.process_rewards.ProcessRewarder`; puts
            ``info["step_rewards"]`` beside the verdict.
        segmenter: how responses are split into steps (a StepSegmenter or a method name).
        process_reduce / process_weight / process_gamma: how step rewards enter the reward,
            see :func:`~reasonrl.envs.process_rewards.combine_rewards`; the default weight 0
            keeps the reward the outcome alone.
        token_budget / count_tokens / overlong_reward: see the module docstring.
        max_response_length: the action space's length limit in characters (None: none).
        render_mode: ``"ansi"`` (render returns the conversation as text) or ``"human"`` (prints it).
        **knobs: generator difficulty knobs (``people=4``).
    """

    # render_fps: gymnasium's checker expects one with "human" rendering; text has no frame rate.
    metadata = {"render_modes": ["ansi", "human"], "render_fps": 1}

    def __init__(
        self,
        task: Any,
        *,
        dataset: Any = None,
        difficulty: dict[str, Any] | None = None,
        verifier_options: dict[str, Any] | None = None,
        process_rewarder: ProcessRewarder | None = None,
        segmenter: StepSegmenter | str = "blank_lines",
        process_reduce: str = "min",
        process_weight: float = 0.0,
        process_gamma: float = 1.0,
        token_budget: int | None = None,
        count_tokens: Callable[[str], int] | None = None,
        overlong_reward: float | None = None,
        max_response_length: int | None = None,
        render_mode: str | None = None,
        **knobs: Any,
    ) -> None:
        super().__init__()
        self.task = resolve_task(task)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; valid: {', '.join(self.metadata['render_modes'])}")
        self.render_mode = render_mode
        self.difficulty = {**(difficulty or {}), **knobs}
        self.verifier = self.task.make_verifier(**(verifier_options or {}))
        self._rows: list[dict[str, Any]] | None = None
        self._generator = None
        self._generators: dict[tuple, Any] = {}
        if dataset is not None or self.task.generator is None:
            if self.difficulty:
                valid = ", ".join(ENV_OPTIONS)
                raise TypeError(
                    f"task {self.task.name!r} is played from a dataset, so it has no difficulty knobs; "
                    f"unexpected keyword(s) {', '.join(sorted(self.difficulty))}. Env options: {valid}"
                )
            self._rows = self.task.load_problems(dataset)
            if not self._rows:
                raise ValueError(f"task {self.task.name!r}: the dataset has no rows")
        else:
            self._generator = self._generator_for(self.difficulty)
        self.segmenter = StepSegmenter(segmenter) if isinstance(segmenter, str) else segmenter
        self.process_rewarder = process_rewarder
        if process_weight and process_rewarder is None:
            raise ValueError("process_weight > 0 needs a process_rewarder")
        reduce_step_rewards([1.0], process_reduce)  # validate the name now
        self.process_reduce = process_reduce
        self.process_weight = float(process_weight)
        self.process_gamma = float(process_gamma)
        self.token_budget = token_budget
        self.count_tokens = count_tokens or len
        self.overlong_reward = overlong_reward

        self.observation_space = ChatMessages()
        self.action_space = UnicodeText(max_response_length)
        self.problem: dict[str, Any] | None = None
        self.messages: list[dict[str, str]] = []
        self._done = True

    # ----------------------------------------------------------------------------------
    # problems

    def _generator_for(self, difficulty: dict[str, Any]):
        key = tuple(sorted((k, repr(v)) for k, v in difficulty.items()))
        if key not in self._generators:
            self._generators[key] = self.task.make_generator(**difficulty)
        return self._generators[key]

    @property
    def num_problems(self) -> int | None:
        """Rows in the dataset, or None for a generator (unbounded)."""
        return None if self._rows is None else len(self._rows)

    def _draw_problem(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - {"problem", "problem_seed", "index", "difficulty"}
        if unknown:
            raise ValueError(f"unknown reset option(s) {', '.join(sorted(unknown))}; valid: difficulty, index, problem, problem_seed")
        if "problem" in options:
            from reasonrl.types import validate_problem

            return validate_problem(copy.deepcopy(options["problem"]), where="reset option 'problem'")
        if self._rows is not None:
            if "problem_seed" in options or "difficulty" in options:
                raise ValueError(f"task {self.task.name!r} is played from a dataset: use options={{'index': i}}")
            index = options.get("index")
            if index is None:
                index = int(self.np_random.integers(len(self._rows)))
            if not 0 <= int(index) < len(self._rows):
                raise IndexError(f"index {index} is out of range for a dataset of {len(self._rows)} rows")
            return copy.deepcopy(self._rows[int(index)])
        if "index" in options:
            raise ValueError(f"task {self.task.name!r} is generated: use options={{'problem_seed': s}}, not 'index'")
        generator = self._generator
        if "difficulty" in options:
            generator = self._generator_for({**self.difficulty, **options["difficulty"]})
        seed = options.get("problem_seed")
        if seed is None:
            seed = int(self.np_random.integers(0, 2**62))
        return generator.generate(int(seed))

    # ----------------------------------------------------------------------------------
    # gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.problem = self._draw_problem(dict(options or {}))
        self.messages = copy.deepcopy(self.problem["prompt"])
        self._done = False
        self._on_reset()
        return copy.deepcopy(self.messages), self._problem_info()

    def _on_reset(self) -> None:
        """Hook for multi-turn subclasses (reset their counters)."""

    def _problem_info(self) -> dict[str, Any]:
        problem = copy.deepcopy(self.problem)
        return {
            "problem_id": problem["id"],
            "task": problem["task"],
            "difficulty": copy.deepcopy(problem.get("difficulty", {})),
            "problem": problem,
        }

    def step(self, action: str) -> tuple[list[dict[str, str]], SupportsFloat, bool, bool, dict[str, Any]]:
        response = self._check_action(action)
        verdict = self.verify(response)
        self.messages.append({"role": "assistant", "content": response})
        reward, info = self._score(response, verdict)
        truncated = self._over_budget(response)
        if truncated:
            info["overlong"] = True
            if self.overlong_reward is not None:
                reward = float(self.overlong_reward)
        self._done = True
        return copy.deepcopy(self.messages), reward, True, truncated, info

    def _check_action(self, action: Any) -> str:
        if self.problem is None or self._done:
            raise RuntimeError("the episode is over (or never started): call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"the action must be the response string, got {type(action).__name__}")
        if action not in self.action_space:
            raise ValueError(f"the action is not in {self.action_space} (too long, or a lone surrogate character)")
        return action

    def verify(self, response: str, problem: dict[str, Any] | None = None) -> Verdict:
        """The task verifier's verdict on ``response`` for ``problem`` (default: the current one)."""
        from reasonrl.verifiers.batch import verify_one_safely

        problem = self.problem if problem is None else problem
        # A verifier that raises gives an "error" verdict, as in the batched path.
        return verify_one_safely(self.verifier, response, problem["answer"])

    def _score(self, response: str, verdict: Verdict) -> tuple[float, dict[str, Any]]:
        """The step reward and info for a verified response (outcome plus optional process reward)."""
        outcome = float(verdict.reward)
        info = {**self._problem_info(), "verdict": verdict, "outcome_reward": outcome}
        reward = outcome
        if self.process_rewarder is not None:
            spans = self.segmenter.spans(response)
            steps = [response[a:b] for a, b in spans]
            step_rewards = self.process_rewarder.score(copy.deepcopy(self.problem["prompt"]), steps, copy.deepcopy(self.problem))
            info["steps"] = [list(span) for span in spans]
            info["step_rewards"] = list(step_rewards)
            info["process_reward"] = reduce_step_rewards(step_rewards, self.process_reduce, self.process_gamma)
            reward = combine_rewards(outcome, step_rewards, self.process_reduce, self.process_weight, self.process_gamma)
        return float(reward), info

    def _over_budget(self, text: str) -> bool:
        return self.token_budget is not None and self.count_tokens(text) > self.token_budget

    def render(self) -> str | None:
        text = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in self.messages)
        if self.render_mode == "human":
            print(text)
            return None
        if self.render_mode == "ansi":
            return text
        return None
