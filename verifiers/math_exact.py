"""``gsm8k`` — exact numeric match for grade-school math answers.

The response's answer is read from the first source below that yields a number (order of
preference, documented and tested):

1. ``<answer>...</answer>`` — the last tag; its last number.
2. ``\\boxed{...}`` — the last box; its last number (``\\frac{a}{b}``, ``\\$``, ``\\%`` and
   ``{,}`` are understood).
3. ``#### n`` — GSM8K's own solution format; the number after the last ``####``.
4. "the answer is n" / "answer: n" — the first number after the last such phrase.
5. The last number anywhere in the text.

With ``strict=True`` only sources 1 and 2 count (for RL, where the format matters): a
response without a tag or box gets ``no_answer`` even if it ends in the right number.

Numbers: thousands separators (``1,234``), currency (``$18``), units and trailing words
(``18 dollars.``), percents (``50%`` is read as 50, the way GSM8K writes such answers),
signs (``-3``, ``−3``), decimals that equal integers (``18.0`` = ``18``), fractions
(``1/2`` = ``0.5``), scientific notation (``1.8e1`` = ``18``, ``1e400``) and numbers of any
length (past Python's 4,300-digit conversion limit). Comparison is exact on rationals (:class:`fractions.Fraction`), so
``0.333`` is not ``1/3``.

``answer`` (the Problem's field): a number as a string (``"18"``, ``"1,600"``), an int or
float, or a whole GSM8K solution ending in ``#### 18`` (the number after the last ``####``).

Verdict: reward 1/0; reason ``ok``, ``wrong_answer`` or ``no_answer``; ``extracted`` is the
number read from the response (as written, minus ``$`` and separators); ``details`` holds
``source`` (``tag``/``boxed``/``####``/``answer_is``/``last_number``) and ``gold``.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier, register
from reasonrl.verifiers.extract import extract_last_boxed, extract_tag

# A number as written in prose. The sign counts only when it cannot be a binary minus
# ("5-3" is not "-3"), thousands separators only in well-formed groups of three.
_NUMBER_RE = re.compile(
    r"(?<![\w.])"  # not glued to a word ("x2", "v1.5") or another number
    r"(?P<sign>(?<![\d)\]}])[-−])?"
    r"\$?\s?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?P<exp>[eE][-+]?\d+(?![\w.]))?"  # scientific notation: 1.8e1 is 18
    r"(?:\s?/\s?(?P<den>\d+(?:\.\d+)?)(?!\d|\.\d))?"
    r"(?P<pct>\s?%)?"
)
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:|=)", re.IGNORECASE)
# LaTeX that may wrap a number inside a box or tag, reduced to plain text before reading.
_LATEX_FRAC_RE = re.compile(r"\\[dtc]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_LATEX_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textnormal)\s*\{([^{}]*)\}")
# Only this much of a response is scanned for the last number (a 1 MB response costs one
# bounded pass); the tag, box and "####" searches use rfind and see the whole text.
_TAIL_CHARS = 20_000


def _delatex(text: str) -> str:
    text = _LATEX_FRAC_RE.sub(r"\1/\2", text)
    text = _LATEX_TEXT_RE.sub(r" \1 ", text)
    for token, repl in (("\\$", "$"), ("\\%", "%"), ("{,}", ","), ("\\!", ""), ("\\,", ""), ("−", "-")):
        text = text.replace(token, repl)
    return text


# Exponents beyond this are not read as numbers: 1e999999999 would be a billion-digit integer.
_MAX_EXPONENT = 100_000


def _exact(text: str) -> Fraction:
    """``text`` (digits, a point, an optional exponent) as an exact rational.

    Through :class:`~decimal.Decimal`, which reads any number of digits: ``Fraction(str)``
    goes through ``int(str)`` and refuses more than 4,300 digits (Python's conversion limit).
    """
    number = Decimal(text)
    if abs(number.as_tuple().exponent) > _MAX_EXPONENT:
        raise ValueError(f"exponent out of range: {text[:40]}")
    return Fraction(number)


def _value(match: re.Match) -> tuple[Fraction, str] | None:
    """The rational value of a :data:`_NUMBER_RE` match and its canonical text."""
    num = match.group("num").replace(",", "") + (match.group("exp") or "")
    try:
        value = _exact(num)
        text = num
        if match.group("den"):
            den = _exact(match.group("den"))
            if den == 0:
                return None
            value /= den
            text = f"{num}/{match.group('den')}"
    except (ValueError, ZeroDivisionError):
        return None
    if match.group("sign"):
        value, text = -value, "-" + text
    return value, text


def _numbers(text: str) -> list[tuple[Fraction, str]]:
    return [v for v in (_value(m) for m in _NUMBER_RE.finditer(text)) if v is not None]


def _last_number(text: str) -> tuple[Fraction, str] | None:
    found = _numbers(text)
    return found[-1] if found else None


def _first_number(text: str) -> tuple[Fraction, str] | None:
    for m in _NUMBER_RE.finditer(text):
        v = _value(m)
        if v is not None:
            return v
    return None


def parse_gold(answer: Any) -> Fraction:
    """The gold value from a Problem's ``answer``: a number, or a solution ending in ``#### n``.

    Raises:
        ValueError: naming the ``answer`` field when no number can be read.
    """
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError(f"gsm8k: field 'answer' must be a number or a string, got {type(answer).__name__}")
    if isinstance(answer, float) and not math.isfinite(answer):
        raise ValueError(f"gsm8k: field 'answer' must be a finite number, got {answer}")
    if isinstance(answer, (int, float)):
        return Fraction(answer)
    text = answer
    cut = text.rfind("####")
    if cut >= 0:
        text = text[cut + 4 :]
    found = _first_number(_delatex(text)) if cut >= 0 else _last_number(_delatex(text))
    if found is None:
        raise ValueError(f"gsm8k: field 'answer' holds no number: {answer[:80]!r}")
    return found[0]


def extract_gsm8k_answer(response: str, strict: bool = False) -> tuple[Fraction, str, str] | None:
    """``(value, text, source)`` of the response's answer in the documented order, or None."""
    tagged = extract_tag(response)
    if tagged is not None:
        found = _last_number(_delatex(tagged))
        return (*found, "tag") if found else None
    boxed = extract_last_boxed(response)
    if boxed is not None:
        found = _last_number(_delatex(boxed))
        return (*found, "boxed") if found else None
    if strict:
        return None
    cut = response.rfind("####")
    if cut >= 0:
        found = _first_number(_window(response, cut + 4))
        if found:
            return (*found, "####")
    tail = response[-_TAIL_CHARS:]
    anchors = list(_ANSWER_IS_RE.finditer(tail))
    if anchors:
        found = _first_number(_delatex(_window(tail, anchors[-1].end())))
        if found:
            return (*found, "answer_is")
    found = _last_number(_delatex(tail))
    return (*found, "last_number") if found else None


# The rest of a number that runs past the end of a search window.
_NUMBER_REST_RE = re.compile(r"[\d,.]*(?:[eE][-+]?\d+)?")


def _window(text: str, start: int, size: int = 200) -> str:
    """The ``size`` characters from ``start``, and the rest of a number cut at the end (a
    5,000-digit answer is read whole, not as its first digits)."""
    end = start + size
    return text[start : _NUMBER_REST_RE.match(text, end).end()] if end < len(text) else text[start:]


def _fmt(value: Fraction) -> str:
    if max(abs(value.numerator), value.denominator).bit_length() > _PLAIN_BITS:
        # str(int) refuses more than 4,300 digits; a Decimal prints any length.
        num, den = Decimal(value.numerator), Decimal(value.denominator)
        return f"{num:f}" if value.denominator == 1 else f"{num:f}/{den:f}"
    return str(value.numerator) if value.denominator == 1 else str(value)


# Integers of at most this many bits have fewer than 4,300 decimal digits.
_PLAIN_BITS = 14_000


@register("gsm8k")
class Gsm8kVerifier(Verifier):
    """Exact numeric match (GSM8K style).

    Args:
        strict: read the answer only from ``<answer>`` or ``\\boxed{}`` (default False).

    >>> Gsm8kVerifier().verify("She makes $18.00 a day.", "#### 18").correct
    True
    >>> Gsm8kVerifier(strict=True).verify("She makes 18 a day.", "18").reason
    'no_answer'
    """

    default_timeout = 5.0
    answer_types = (str, int, float)

    def __init__(self, strict: bool = False) -> None:
        self.strict = bool(strict)

    def verify(self, response: str, answer: Any) -> Verdict:
        gold = parse_gold(answer)
        found = extract_gsm8k_answer(response or "", strict=self.strict)
        details = {"gold": _fmt(gold), "strict": self.strict}
        if found is None:
            return Verdict(reward=0.0, correct=False, extracted=None, reason="no_answer", details=details)
        value, text, source = found
        details["source"] = source
        correct = value == gold
        return Verdict(
            reward=1.0 if correct else 0.0,
            correct=correct,
            extracted=text,
            reason="ok" if correct else "wrong_answer",
            details=details,
        )
