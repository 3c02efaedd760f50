"""A multi-turn code environment: the model may fix its program after seeing test feedback.

Each step is one attempt (a response holding a program). The attempt is run against the
problem's tests by the task's verifier (the ``code`` sandbox). If it passes, the episode
terminates. If not, and attempts remain, the next observation is the conversation with the
attempt and a user message carrying the test feedback (the verdict's reason and the error
text the sandbox reported), and the model tries again.

With ``max_attempts=1`` (the default, what ``reasonrl/Code-v0`` gives) this is exactly the
single-turn :class:`~reasonrl.envs.task_env.TaskEnv`.

Episode end:

* ``terminated=True`` when an attempt passes (``verdict.correct``), and always with
  ``max_attempts=1``;
* ``truncated=True`` when ``max_attempts`` attempts failed (the turn budget) or the
  responses together exceed ``token_budget`` (counted with ``count_tokens``).

Reward shaping (documented, tested): let ``s_t`` be attempt ``t``'s verifier reward (in
``[0, 1]``; 1 when all tests pass) and ``phi_t = attempt_discount ** (t - 1) * s_t`` (with
``phi_0 = 0``). Step ``t`` returns ``r_t = phi_t - phi_{t-1}``, a potential difference, so the
undiscounted episode return telescopes to ``phi_T = attempt_discount ** (T - 1) * s_T``: the
final attempt's score, discounted by how many attempts it took. Solving on the first try
returns 1; on the second, ``attempt_discount``; failing everything, 0. A later attempt that
scores lower than an earlier one gets a negative step reward. ``info["attempt"]`` is ``t``
and ``info["shaped_score"]`` is ``phi_t``. A process rewarder, if attached, still puts
``info["step_rewards"]`` on every attempt; with ``max_attempts > 1`` the step reward is the
shaped outcome above (mix in process scores in the trainer, from ``info``).
"""
from __future__ import annotations

import copy
import json
from typing import Any, SupportsFloat

from reasonrl.envs.task_env import TaskEnv
from reasonrl.types import Verdict

# Verdict detail keys that carry text worth showing the model, in the order they are shown.
_FEEDBACK_KEYS = ("feedback", "error", "stderr", "stdout", "message", "traceback", "failed", "failures", "failed_tests")


def render_feedback(verdict: Verdict, max_chars: int = 2000) -> str:
    """The user message sent after a failed attempt: the reason, then the sandbox's error text.

    Long texts keep their end (where Python puts the exception), cut to ``max_chars``.
    """
    lines = [f"Your program did not pass the tests (reason: {verdict.reason})."]
    details = verdict.details or {}
    shown = 0
    for key in _FEEDBACK_KEYS:
        value = details.get(key)
        if value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        lines.append(f"{key}:\n{text}")
        shown += 1
    if not shown and details:
        lines.append(json.dumps(details, ensure_ascii=False, default=str, sort_keys=True))
    body = "\n".join(lines)
    if len(body) > max_chars:
        body = "..." + body[-(max_chars - 3) :]
    return body + "\nFix the program and reply with the complete corrected code."


class CodeEnv(TaskEnv):
    """Up to ``max_attempts`` attempts at a code task with test feedback between them.

    Args:
        task: a task verified by a code verifier (default ``"code"``).
        max_attempts: attempts per episode (>= 1).
        attempt_discount: the shaping discount per extra attempt (see the module docstring).
        feedback_chars: longest feedback message.
        **kwargs: everything :class:`TaskEnv` takes (``dataset=``, ``token_budget=``...).
    """

    def __init__(
        self,
        task: Any = "code",
        *,
        max_attempts: int = 1,
        attempt_discount: float = 0.9,
        feedback_chars: int = 2000,
        **kwargs: Any,
    ) -> None:
        if int(max_attempts) < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not 0.0 <= attempt_discount <= 1.0:
            raise ValueError(f"attempt_discount must be in [0, 1], got {attempt_discount}")
        super().__init__(task, **kwargs)
        self.max_attempts = int(max_attempts)
        self.attempt_discount = float(attempt_discount)
        self.feedback_chars = int(feedback_chars)
        self._attempt = 0
        self._potential = 0.0
        self._tokens_used = 0

    def _on_reset(self) -> None:
        self._attempt = 0
        self._potential = 0.0
        self._tokens_used = 0

    def step(self, action: str) -> tuple[list[dict[str, str]], SupportsFloat, bool, bool, dict[str, Any]]:
        if self.max_attempts == 1:
            return super().step(action)
        response = self._check_action(action)
        self._attempt += 1
        verdict = self.verify(response)
        self.messages.append({"role": "assistant", "content": response})
        _, info = self._score(response, verdict)
        potential = self.attempt_discount ** (self._attempt - 1) * float(verdict.reward)
        reward = potential - self._potential
        self._potential = potential
        self._tokens_used += self.count_tokens(response)

        terminated = bool(verdict.correct)
        over_tokens = self.token_budget is not None and self._tokens_used > self.token_budget
        truncated = not terminated and (self._attempt >= self.max_attempts or over_tokens)
        info.update(attempt=self._attempt, shaped_score=potential, attempts_left=self.max_attempts - self._attempt)
        if over_tokens:
            info["overlong"] = True
        if not (terminated or truncated):
            self.messages.append({"role": "user", "content": render_feedback(verdict, self.feedback_chars)})
        else:
            self._done = True
        return copy.deepcopy(self.messages), float(reward), terminated, bool(truncated), info
