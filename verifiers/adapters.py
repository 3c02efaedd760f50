"""Use any registered task's verifier as a reward in other trainers: TRL and verl.

TRL (``GRPOTrainer(reward_funcs=[...])``)::

    from reasonrl.verifiers.adapters import trl_reward_function
    reward = trl_reward_function("gsm8k")              # the dataset has an "answer" column
    trainer = GRPOTrainer(..., reward_funcs=[reward])

TRL calls ``reward(prompts=..., completions=..., **columns)`` once per batch, with every extra
dataset column as a keyword list. Completions are strings, or (conversational datasets) lists of
chat messages, of which the last assistant message's content is scored. The batch is verified
by a persistent :class:`~reasonrl.verifiers.batch.VerifierPool`, so every item has a hard time
limit and a hang or crash in the verifier costs one item, never the training run.

verl (``custom_reward_function.path=<this file>``, ``custom_reward_function.name=compute_score``)::

    score = compute_score(data_source="gsm8k", solution_str=text, ground_truth="18")

``data_source`` names the task (a few common dataset ids are aliases, see :data:`DATA_SOURCE_ALIASES`).
verl stores ``ground_truth`` as written in the parquet file, often a string: for a task whose
answers are structured (kk, code, ifeval: JSON objects) a string that parses as a JSON object is
decoded; JSON lists are decoded only for verifiers that declare ``structured_answer = True``, and
never for string-answer tasks (``"[1, 2]"`` is a LaTeX interval to ``math``, not a list).
``make_compute_score(task, return_dict=True)`` gives verl's dict form
``{"score", "acc", "pred", "reason"}`` (same keys for every sample, as verl requires).
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Sequence

from reasonrl.types import Verdict

# Dataset ids that verl-style parquet files put in ``data_source``, mapped to our task names.
DATA_SOURCE_ALIASES = {
    "openai/gsm8k": "gsm8k",
    "gsm8k": "gsm8k",
    "lighteval/MATH": "math",
    "DigitalLearningGmbH/MATH-lighteval": "math",
    "HuggingFaceH4/MATH-500": "math",
    "google/IFEval": "ifeval",
    "openai_humaneval": "code",
    "openai/openai_humaneval": "code",
    "mbpp": "code",
    "knights-and-knaves": "kk",
    "K-and-K/knights-and-knaves": "kk",
}


def _resolve_task(task: Any) -> Any:
    from reasonrl.tasks import Task, get_task

    if isinstance(task, Task):
        return task
    name = str(task)
    return get_task(DATA_SOURCE_ALIASES.get(name, name))


def decode_answer(answer: Any, verifier: Any) -> Any:
    """Turn a JSON string back into the structured answer a verifier expects (see the module docstring)."""
    if not isinstance(answer, str):
        return answer
    structured = getattr(verifier, "structured_answer", None)
    if structured is False:
        return answer
    text = answer.strip()
    if not text or text[0] not in "{[":
        return answer
    try:
        value = json.loads(text)
    except ValueError:
        return answer
    if isinstance(value, dict) or (isinstance(value, list) and structured is True):
        return value
    return answer


def completion_text(completion: Any) -> str:
    """The text to score from one TRL completion: a string, or the last assistant message of a chat.

    A message's ``content`` may itself be a list of parts (``{"type": "text", "text": ...}``);
    the text parts are joined.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _message_text(completion)
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        assistant = [m for m in messages if m.get("role") == "assistant"]
        chosen = assistant[-1] if assistant else (messages[-1] if messages else None)
        return _message_text(chosen) if chosen is not None else ""
    raise TypeError(f"a completion must be a string or a list of chat messages, got {type(completion).__name__}")


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type", "text") == "text")
    return "" if content is None else str(content)


class _Scorer:
    """A verifier plus a lazily started, persistent worker pool (hard per-item limits)."""

    def __init__(self, verifier: Any, workers: int | None, timeout: float | None) -> None:
        self.verifier = verifier
        self.workers = workers
        self.timeout = timeout
        self._pool = None
        self._lock = threading.Lock()
        self._in_process = workers == 0

    def __call__(self, responses: Sequence[str], answers: Sequence[Any]) -> list[Verdict]:
        from reasonrl.verifiers.base import Verifier

        own_batch = getattr(type(self.verifier), "verify_batch", None)
        if not self._in_process and own_batch is not None and own_batch is not Verifier.verify_batch:
            # A verifier with its own batch runner (the code sandbox keeps warm, time-limited workers).
            return self.verifier.verify_batch(list(responses), list(answers), workers=self.workers, timeout=self.timeout)
        if self._in_process:
            from reasonrl.verifiers.batch import verify_one_safely

            return [verify_one_safely(self.verifier, r, a) for r, a in zip(responses, answers)]
        with self._lock:
            if self._pool is None:
                from reasonrl.verifiers.batch import VerifierPool

                self._pool = VerifierPool(self.verifier, workers=self.workers, timeout=self.timeout)
            pool = self._pool
        try:
            return pool.map(responses, answers)
        except AssertionError as exc:  # "daemonic processes are not allowed to have children"
            import warnings

            warnings.warn(
                f"reasonrl: cannot start verifier worker processes here ({exc}); verifying in this "
                "process WITHOUT a hard time limit",
                RuntimeWarning,
                stacklevel=3,
            )
            self._in_process = True
            self.close()
            return self(responses, answers)

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._pool.stats) if self._pool is not None else {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def trl_reward_function(
    task: Any,
    *,
    answer_column: str = "answer",
    workers: int | None = None,
    timeout: float | None = None,
    **options: Any,
) -> Callable[..., list[float]]:
    """A TRL-style reward function ``f(prompts, completions, **kwargs) -> list[float]`` for ``task``.

    Args:
        task: a task name (``"gsm8k"``, ``"kk"``, ``"mypkg.tasks:my_task"``) or a :class:`~reasonrl.tasks.Task`.
        answer_column: the dataset column (a keyword argument TRL passes) holding the answers.
        workers: worker processes for the persistent pool (None: CPU count; 0: verify in the
            calling process, without a hard time limit).
        timeout: hard per-item limit in seconds (None: the verifier's default).
        **options: verifier options, e.g. ``strict=True`` or ``format="logic-rl"``.

    The returned function is named ``reasonrl_<task>`` (TRL logs rewards under the function's
    ``__name__``); ``f.verifier`` is the verifier, ``f.last_verdicts`` the verdicts of the latest
    call (for logging correctness, reasons, timeouts), ``f.close()`` stops its workers.
    """
    task_obj = _resolve_task(task)
    verifier = task_obj.make_verifier(**options)
    scorer = _Scorer(verifier, workers, timeout)

    def reward(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
        if completions is None:
            raise TypeError("the reward function needs completions=[...] (TRL passes it as a keyword)")
        if answer_column not in kwargs:
            available = ", ".join(sorted(k for k in kwargs if not k.startswith(("trainer_state", "log_")))) or "none"
            raise KeyError(
                f"the reward function for task {task_obj.name!r} reads answers from the dataset column "
                f"{answer_column!r}, which TRL did not pass; columns passed: {available}. "
                "Pass answer_column=... to trl_reward_function"
            )
        answers = list(kwargs[answer_column])
        texts = [completion_text(c) for c in completions]
        if len(answers) != len(texts):
            raise ValueError(f"{len(texts)} completions but {len(answers)} values in column {answer_column!r}")
        verdicts = scorer(texts, [decode_answer(a, verifier) for a in answers])
        reward.last_verdicts = verdicts
        return [float(v.reward) for v in verdicts]

    safe = task_obj.name.replace("-", "_").replace(".", "_").replace(":", "_")
    reward.__name__ = reward.__qualname__ = f"reasonrl_{safe}"
    reward.__doc__ = f"reasonrl reward for task {task_obj.name!r} (answers from column {answer_column!r})."
    reward.verifier = verifier
    reward.last_verdicts = []
    reward.close = scorer.close
    reward.stats = lambda: scorer.stats
    return reward


def make_compute_score(
    task: Any,
    return_dict: bool = False,
    *,
    workers: int | None = 1,
    timeout: float | None = None,
    **options: Any,
) -> Callable[..., Any]:
    """A verl-style ``compute_score(data_source, solution_str, ground_truth, extra_info=None)`` for one task.

    ``data_source`` is accepted and ignored (the task is fixed). Returns the verdict's reward, or
    with ``return_dict=True`` ``{"score": reward, "acc": 1.0/0.0, "pred": extracted or "", "reason": reason}``.
    Each call runs under a hard time limit in a persistent worker process (``workers=0``: in the
    calling process, no hard limit). ``**options`` are verifier options (``format="logic-rl"``...).
    """
    task_obj = _resolve_task(task)
    verifier = task_obj.make_verifier(**options)
    scorer = _Scorer(verifier, workers, timeout)

    def compute_score(data_source: Any = None, solution_str: str = "", ground_truth: Any = None, extra_info: Any = None, **kwargs: Any):
        verdict = scorer([solution_str if isinstance(solution_str, str) else completion_text(solution_str)],
                         [decode_answer(ground_truth, verifier)])[0]
        if return_dict:
            return {
                "score": float(verdict.reward),
                "acc": 1.0 if verdict.correct else 0.0,
                "pred": verdict.extracted if verdict.extracted is not None else "",
                "reason": verdict.reason,
            }
        return float(verdict.reward)

    compute_score.verifier = verifier
    compute_score.close = scorer.close
    return compute_score


_COMPUTE_SCORE_CACHE: dict[str, Callable[..., Any]] = {}
_cache_lock = threading.Lock()


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Any = None, **kwargs: Any) -> float:
    """verl's reward signature for every registered task: ``data_source`` names the task.

    One verifier (and one worker process) per task is kept for the life of the process.
    Unknown ``data_source`` raises ``KeyError`` naming the registered tasks.
    """
    key = str(data_source)
    with _cache_lock:
        scorer = _COMPUTE_SCORE_CACHE.get(key)
        if scorer is None:
            scorer = _COMPUTE_SCORE_CACHE[key] = make_compute_score(key)
    return scorer(data_source, solution_str, ground_truth, extra_info)
