"""The think/answer format reward (DeepSeek-R1, Logic-RL) and its combination with a task's correctness.

The format rule (:func:`check_format`), checked on the raw response text:

1. each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` occurs exactly once
   (tags are case-sensitive, as models are prompted with them);
2. in that order: ``<think> … </think> … <answer> … </answer>``;
3. the think part is not empty (after stripping whitespace);
4. the answer part is not empty (after stripping whitespace): there is an answer to extract;
5. nothing but whitespace before ``<think>``, between ``</think>`` and ``<answer>``, or after
   ``</answer>`` (DeepSeek-R1 / open-r1's "the response matches the pattern" rule).

Rule 5 is our choice, stricter than Logic-RL's own checker (which counts and orders the four tags
and ignores text around them): text outside the tags is where a policy hides a second answer for
a lenient extractor ("last number in the text") to find. ``allow_text_outside=True`` drops rule 5
and reproduces Logic-RL's checker exactly. Decode responses with special tokens skipped: an
``<|im_end|>`` after ``</answer>`` is text outside the tags.

``think_prefilled=True`` is for chat templates that open the assistant turn with ``<think>`` in
the prompt (DeepSeek-R1 distills, Qwen3 thinking mode): the response then starts inside the think
block, and ``<think>`` is taken as given (the response itself must not contain another one).

Combination with a task's verifier (:func:`with_format`, :class:`FormatWrapped`); ``ok`` is the
format rule above, ``inner`` the task verifier's verdict on the answer:

================ ======================================================== =========================
mode             reward                                                   correct
================ ======================================================== =========================
``"logic-rl"``   format score ``+w`` if ok else ``-w``, plus answer score: ``ok and inner.correct``
                 ``+2`` correct, ``-1.5`` wrong or partial (an answer was
                 extracted), ``-2`` no parsable answer or format broken
                 (Logic-RL, arXiv 2502.14768; range [-3, 3] with w = 1)
``"multiply"``   ``inner.reward`` if ok else ``0``                        ``ok and inner.correct``
``"add"``        ``inner.reward + w * (1 if ok else 0)``                  ``inner.correct``
================ ======================================================== =========================

``w`` is ``format_weight`` (default 1.0: Logic-RL's format score is ±1, and open-r1's GRPO recipe
sums its accuracy and format rewards with equal weights). When the format holds, the task
verifier sees only the answer part (``inner_input``): by default re-wrapped as
``<answer>…</answer>`` (every built-in verifier reads that tag first), so a ``\\boxed{}`` left in
the thinking cannot be taken as the answer; ``inner_input="answer"`` passes the bare answer text
(the right choice for ``ifeval``, whose constraints apply to the text the user sees) and
``"response"`` the whole response. When the format does not hold, the task verifier sees the
whole response (this only matters in ``"add"`` mode: the strict modes give no credit then).

The same combination is a verifier option: ``reasonrl.verifiers.get("gsm8k", format="logic-rl")``
and ``task.make_verifier(format="multiply", format_weight=0.5)`` return a wrapped verifier
(``format_inner_input``, ``format_allow_text_outside`` and ``format_think_prefilled`` pass on).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier, register

THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE = "<think>", "</think>", "<answer>", "</answer>"
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

MODES = ("logic-rl", "multiply", "add")
INNER_INPUTS = ("answer_tag", "answer", "response")
# Logic-RL's answer scores: full match, mismatch (an answer was parsed), nothing parsable.
LOGIC_RL_CORRECT, LOGIC_RL_WRONG, LOGIC_RL_UNPARSED = 2.0, -1.5, -2.0
# Reasons a task verifier gives when it found no answer at all (Logic-RL's "fail to parse": -2).
_NO_ANSWER_REASONS = ("no_answer", "format_error", "timeout", "error")


@dataclass(frozen=True)
class FormatCheck:
    """The outcome of :func:`check_format`.

    Attributes:
        ok: every rule holds.
        problem: ``""`` when ok, else the first rule broken: ``missing_tag``, ``repeated_tag``,
            ``wrong_order``, ``empty_think``, ``empty_answer`` or ``text_outside``.
        think: the think part (stripped), or None when the tags are not usable.
        answer: the answer part (stripped), or None when the tags are not usable.
    """

    ok: bool
    problem: str = ""
    think: str | None = None
    answer: str | None = None


def check_format(response: str, *, allow_text_outside: bool = False, think_prefilled: bool = False) -> FormatCheck:
    """Check the ``<think>…</think><answer>…</answer>`` rule (see the module docstring). Linear in the length."""
    if think_prefilled:
        if THINK_OPEN in response:
            return FormatCheck(False, "repeated_tag")
        response = THINK_OPEN + response
    for tag in _TAGS:
        count = response.count(tag)
        if count == 0:
            return FormatCheck(False, "missing_tag")
        if count > 1:
            return FormatCheck(False, "repeated_tag")
    positions = [response.find(tag) for tag in _TAGS]
    if positions != sorted(positions):
        return FormatCheck(False, "wrong_order")
    think_open, think_close, answer_open, answer_close = positions
    think = response[think_open + len(THINK_OPEN) : think_close].strip()
    answer = response[answer_open + len(ANSWER_OPEN) : answer_close].strip()
    if not think:
        return FormatCheck(False, "empty_think", think, answer)
    if not answer:
        return FormatCheck(False, "empty_answer", think, answer)
    if not allow_text_outside:
        outside = (
            response[:think_open],
            response[think_close + len(THINK_CLOSE) : answer_open],
            response[answer_close + len(ANSWER_CLOSE) :],
        )
        if any(part.strip() for part in outside):
            return FormatCheck(False, "text_outside", think, answer)
    return FormatCheck(True, "", think, answer)


@register("format")
class FormatVerifier(Verifier):
    """Reward 1 when the response follows the think/answer format, else 0; ``answer`` is ignored.

    ``extracted`` is the answer part; ``reason`` is ``ok`` or ``format_error`` with
    ``details["problem"]`` naming the broken rule.
    """

    name = "format"
    default_timeout = 5.0

    def __init__(self, allow_text_outside: bool = False, think_prefilled: bool = False) -> None:
        self.allow_text_outside = bool(allow_text_outside)
        self.think_prefilled = bool(think_prefilled)

    def verify(self, response: str, answer: Any = None) -> Verdict:
        check = check_format(response, allow_text_outside=self.allow_text_outside, think_prefilled=self.think_prefilled)
        if check.ok:
            return Verdict(reward=1.0, correct=True, extracted=check.answer, reason="ok", details={"problem": ""})
        return Verdict.failure("format_error", extracted=check.answer, problem=check.problem)


class FormatWrapped(Verifier):
    """A task verifier whose reward also depends on the think/answer format (see the module docstring).

    Args:
        inner: the task's verifier.
        mode: ``"logic-rl"``, ``"multiply"`` or ``"add"``.
        format_weight: ``w`` in the table; None means 1.0. Not used by ``"multiply"``.
        allow_text_outside, think_prefilled: passed to :func:`check_format`.
        inner_input: what the task verifier sees when the format holds: ``"answer_tag"``
            (``<answer>…</answer>``), ``"answer"`` (the bare answer text) or ``"response"`` (all of it).

    ``details`` holds ``format_ok``, ``format_problem``, ``mode``, the task verifier's
    ``inner_reward``, ``inner_correct``, ``inner_reason`` and its own ``inner_details``; in
    ``"logic-rl"`` mode also ``format_score`` and ``answer_score``.
    """

    def __init__(
        self,
        inner: Verifier,
        mode: str = "logic-rl",
        format_weight: float | None = None,
        allow_text_outside: bool = False,
        think_prefilled: bool = False,
        inner_input: str = "answer_tag",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown format mode {mode!r}; valid modes: {', '.join(MODES)}")
        if inner_input not in INNER_INPUTS:
            raise ValueError(f"unknown inner_input {inner_input!r}; valid: {', '.join(INNER_INPUTS)}")
        self.inner_input = inner_input
        if not isinstance(inner, Verifier) and not callable(getattr(inner, "verify", None)):
            raise TypeError(f"inner must be a Verifier, got {type(inner).__name__}")
        self.inner = inner
        self.mode = mode
        self.format_weight = 1.0 if format_weight is None else float(format_weight)
        self.allow_text_outside = bool(allow_text_outside)
        self.think_prefilled = bool(think_prefilled)
        self.name = f"{getattr(inner, 'name', '') or type(inner).__name__}+format"
        self.default_timeout = float(getattr(inner, "default_timeout", Verifier.default_timeout))
        self.structured_answer = getattr(inner, "structured_answer", None)

    def verify(self, response: str, answer: Any) -> Verdict:
        check = check_format(response, allow_text_outside=self.allow_text_outside, think_prefilled=self.think_prefilled)
        if not check.ok or self.inner_input == "response":
            inner_text = response
        elif self.inner_input == "answer":
            inner_text = check.answer or ""
        else:
            inner_text = f"{ANSWER_OPEN}{check.answer}{ANSWER_CLOSE}"
        inner = self.inner.verify(inner_text, answer)
        details: dict[str, Any] = {
            "mode": self.mode,
            "format_ok": check.ok,
            "format_problem": check.problem,
            "inner_reward": inner.reward,
            "inner_correct": inner.correct,
            "inner_reason": inner.reason,
            "inner_details": inner.details,
        }
        strict = self.mode in ("logic-rl", "multiply")
        correct = bool(inner.correct and (check.ok or not strict))
        if self.mode == "logic-rl":
            format_score = self.format_weight if check.ok else -abs(self.format_weight)
            if not check.ok or inner.extracted is None or inner.reason in _NO_ANSWER_REASONS:
                answer_score = LOGIC_RL_UNPARSED
            elif inner.correct:
                answer_score = LOGIC_RL_CORRECT
            else:
                answer_score = LOGIC_RL_WRONG
            details["format_score"], details["answer_score"] = format_score, answer_score
            reward = format_score + answer_score
        elif self.mode == "multiply":
            reward = inner.reward if check.ok else 0.0
        else:
            reward = inner.reward + self.format_weight * (1.0 if check.ok else 0.0)
        reason = inner.reason if (check.ok or not strict) else "format_error"
        return Verdict(reward=float(reward), correct=correct, extracted=inner.extracted, reason=reason, details=details)


def with_format(
    verifier: Verifier,
    mode: str = "logic-rl",
    format_weight: float | None = None,
    *,
    allow_text_outside: bool = False,
    think_prefilled: bool = False,
    inner_input: str = "answer_tag",
) -> FormatWrapped:
    """``verifier`` combined with the think/answer format reward by ``mode`` (see the module docstring).

    >>> from reasonrl import verifiers
    >>> v = with_format(verifiers.get("gsm8k"), mode="logic-rl")
    >>> v.verify("<think>2+2=4</think> <answer>4</answer>", "4").reward
    3.0
    >>> v.verify("<think>2+2=5</think> <answer>5</answer>", "4").reward
    -0.5
    >>> v.verify("2+2=4, so 4", "4").reward
    -3.0
    """
    return FormatWrapped(
        verifier,
        mode=mode,
        format_weight=format_weight,
        allow_text_outside=allow_text_outside,
        think_prefilled=think_prefilled,
        inner_input=inner_input,
    )
