"""IFEval instruction-following verifiers: ``ifeval`` (strict) and ``ifeval-loose``.

The ``answer`` is IFEval's own row, exactly as in its ``input_data.jsonl``::

    {"instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
     "kwargs": [{}, {"relation": "at least", "num_words": 300}],
     "prompt": "..."}                      # optional, see below

``kwargs`` holds one object per instruction (``None`` values and keys an instruction does not
take are ignored, so Hugging Face rows work as they are). ``prompt`` is optional: the only
instruction that needs the prompt, ``combination:repeat_prompt``, reads it from its own
``prompt_to_repeat`` kwarg and falls back to ``answer["prompt"]``. Other keys (``key``...) are
ignored.

The verdict's ``details["followed"]`` lists one bool per instruction, in order; ``correct`` is
True when all are followed; ``reward`` is 1.0/0.0, or the fraction followed with
``partial=True`` (``get("ifeval", partial=True)``).

Strict mode checks the response as it is. Loose mode (IFEval's "loose" accuracy) counts an
instruction as followed when any of eight variants of the response follows it: the response,
without its first line, without its last line, without both, and each of these four with every
``*`` removed (see :func:`loose_variants`). A blank variant never follows anything.

All 25 instruction types of IFEval are registered (:data:`INSTRUCTION_IDS`); how each is
checked, and where this implementation deliberately departs from the official code, is
documented in :mod:`reasonrl.verifiers.ifeval.instructions` and
:mod:`reasonrl.verifiers.ifeval.text`.

>>> from reasonrl import verifiers
>>> answer = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
>>> verifiers.get("ifeval").verify("No commas here.", answer).correct
True
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier, register
from reasonrl.verifiers.ifeval.instructions import (
    INSTRUCTIONS,
    InstructionArgumentError,
    check_instruction,
    resolve_kwargs,
)

INSTRUCTION_IDS: tuple[str, ...] = tuple(sorted(INSTRUCTIONS))

__all__ = [
    "IFEvalVerifier",
    "IFEvalLooseVerifier",
    "INSTRUCTION_IDS",
    "InstructionArgumentError",
    "check_instruction",
    "follow_instructions",
    "loose_variants",
    "parse_answer",
]


def loose_variants(response: str) -> list[str]:
    """The eight responses IFEval's loose mode tries, in its order.

    With ``lines = response.split("\\n")``: the response; the response with every ``*`` removed;
    lines[1:], lines[:-1] and lines[1:-1] joined and stripped; and those three with ``*`` removed.
    """
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    return [
        response,
        response.replace("*", ""),
        without_first,
        without_last,
        without_both,
        without_first.replace("*", ""),
        without_last.replace("*", ""),
        without_both.replace("*", ""),
    ]


def parse_answer(answer: Any) -> tuple[list[str], list[dict[str, Any]], str | None]:
    """Validate an IFEval ``answer`` and return ``(instruction_ids, resolved_kwargs, prompt)``.

    Accepts the row as a mapping or as its JSON text. Raises :class:`InstructionArgumentError`
    (a ``ValueError``) naming the field, the instruction index and the valid choices.
    """
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except ValueError:
            raise InstructionArgumentError(
                "ifeval: field 'answer' must be an object with 'instruction_id_list' and 'kwargs' "
                "(got a non-JSON string)"
            ) from None
    if not isinstance(answer, Mapping):
        raise InstructionArgumentError(
            "ifeval: field 'answer' must be an object with 'instruction_id_list' and 'kwargs', "
            f"got {type(answer).__name__}"
        )
    ids = answer.get("instruction_id_list")
    if not isinstance(ids, (list, tuple)) or not ids or not all(isinstance(i, str) for i in ids):
        raise InstructionArgumentError(
            "ifeval: answer field 'instruction_id_list' must be a non-empty list of instruction ids "
            f"(valid ids: {', '.join(INSTRUCTION_IDS)})"
        )
    kwargs_list = answer.get("kwargs")
    if kwargs_list is None:
        kwargs_list = [{}] * len(ids)
    if not isinstance(kwargs_list, (list, tuple)) or len(kwargs_list) != len(ids):
        raise InstructionArgumentError(
            f"ifeval: answer field 'kwargs' must be a list with one object per instruction ({len(ids)})"
        )
    prompt = answer.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise InstructionArgumentError("ifeval: answer field 'prompt' must be a string")
    resolved = [
        resolve_kwargs(instruction_id, kwargs, prompt, where=f"ifeval: answer 'kwargs'[{index}]: ")
        for index, (instruction_id, kwargs) in enumerate(zip(ids, kwargs_list))
    ]
    return list(ids), resolved, prompt


def follow_instructions(
    response: str,
    instruction_id_list: Sequence[str],
    kwargs: Sequence[Mapping[str, Any] | None] | None = None,
    prompt: str | None = None,
    loose: bool = False,
) -> list[bool]:
    """One bool per instruction: does ``response`` follow it (strictly, or in IFEval's loose sense)?"""
    ids, resolved, _ = parse_answer(
        {"instruction_id_list": list(instruction_id_list), "kwargs": kwargs, "prompt": prompt}
    )
    return _followed(response, ids, resolved, loose)


def _followed(response: str, ids: list[str], resolved: list[dict[str, Any]], loose: bool) -> list[bool]:
    candidates = [v for v in (loose_variants(response) if loose else [response]) if v.strip()]
    return [
        any(INSTRUCTIONS[instruction_id].check(candidate, **params) for candidate in candidates)
        for instruction_id, params in zip(ids, resolved)
    ]


@register("ifeval")
class IFEvalVerifier(Verifier):
    """IFEval instruction constraints, strict.

    Args:
        partial: reward the fraction of instructions followed instead of 1/0 (``correct``
            still requires all of them).
        loose: use IFEval's loose variants (what ``ifeval-loose`` sets).
    """

    loose_default = False
    # Typical responses take about a millisecond; a megabyte response in loose mode with the
    # tokenizer-heavy checks (sentences, capital words) on all eight variants takes seconds.
    default_timeout = 30.0

    def __init__(self, partial: bool = False, loose: bool | None = None) -> None:
        self.partial = bool(partial)
        self.loose = self.loose_default if loose is None else bool(loose)

    def verify(self, response: str, answer: Any) -> Verdict:
        if not isinstance(response, str):
            raise TypeError(f"ifeval: field 'response' must be a string, got {type(response).__name__}")
        ids, resolved, _ = parse_answer(answer)
        followed = _followed(response, ids, resolved, self.loose)
        correct = all(followed)
        if self.partial:
            reward = sum(followed) / len(followed)
        else:
            reward = 1.0 if correct else 0.0
        return Verdict(
            reward=float(reward),
            correct=correct,
            extracted=None,
            reason="ok" if correct else "wrong_answer",
            details={
                "followed": followed,
                "instruction_id_list": ids,
                "mode": "loose" if self.loose else "strict",
            },
        )


@register("ifeval-loose")
class IFEvalLooseVerifier(IFEvalVerifier):
    """IFEval instruction constraints, loose (see :func:`loose_variants`)."""

    loose_default = True
