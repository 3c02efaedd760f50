"""Batched verification for trainers: many (problem, response) pairs at once.

:func:`verify_problems` groups the pairs by ``problem["task"]``, runs each group through its
task's verifier with :meth:`Verifier.verify_batch` (worker processes, a hard per-item time
limit; a verifier may override it with a faster path) and puts the verdicts back in input
order. The verdicts are the ones :meth:`TaskEnv.step` gives for the same pairs, one by one,
except where the batch's time limit stops a verification that would otherwise run on.

>>> from reasonrl.envs.batch import verify_problems
>>> verdicts = verify_problems(problems, responses, workers=2)   # doctest: +SKIP
>>> [v.reward for v in verdicts]                                  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Sequence

from reasonrl.types import Verdict


def verify_problems(
    problems: Sequence[dict[str, Any]],
    responses: Sequence[str],
    workers: int | None = None,
    timeout: float | None = None,
    verifier_options: dict[str, dict[str, Any]] | None = None,
) -> list[Verdict]:
    """Verify ``responses[i]`` against ``problems[i]`` for every ``i``; verdicts in input order.

    Args:
        problems: Problem rows; ``problem["task"]`` names a registered task.
        responses: one response string per problem.
        workers: worker processes per task group (None: the batch runner's default; 0: in this process).
        timeout: per-item time limit in seconds (None: the verifier's ``default_timeout``).
        verifier_options: per-task verifier options, ``{"gsm8k": {"strict": True}}``.

    Raises:
        ValueError: lengths differ, or a problem has no ``task``/``answer`` (the message names the index).
        KeyError: a task name is not registered (the message lists the registered ones).
    """
    from reasonrl.tasks import get_task

    if len(problems) != len(responses):
        raise ValueError(f"verify_problems: {len(problems)} problems but {len(responses)} responses")
    groups: dict[str, list[int]] = {}
    for i, problem in enumerate(problems):
        if not isinstance(problem, dict) or "task" not in problem or "answer" not in problem:
            raise ValueError(f"problem {i}: a Problem row with 'task' and 'answer' fields is needed")
        if not isinstance(responses[i], str):
            raise TypeError(f"response {i}: expected a string, got {type(responses[i]).__name__}")
        groups.setdefault(problem["task"], []).append(i)

    verdicts: list[Verdict | None] = [None] * len(problems)
    options = verifier_options or {}
    for task_name, indices in groups.items():
        verifier = get_task(task_name).make_verifier(**options.get(task_name, {}))
        group_verdicts = verifier.verify_batch(
            [responses[i] for i in indices],
            [problems[i]["answer"] for i in indices],
            workers=workers,
            timeout=timeout,
        )
        if len(group_verdicts) != len(indices):
            raise RuntimeError(f"task {task_name!r}: the verifier returned {len(group_verdicts)} verdicts for {len(indices)} items")
        for i, verdict in zip(indices, group_verdicts):
            verdicts[i] = verdict
    return verdicts  # type: ignore[return-value]
