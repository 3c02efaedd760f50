"""Verifiers for the procedural puzzle families: ``arith``, ``countdown``, ``graph_coloring``.

Each reads the model's answer from the ``<answer>...</answer>`` tag (the last one, see
:func:`reasonrl.verifiers.extract.extract_tag`). The ``answer`` argument is the Problem's
``answer`` field, which carries everything the check needs (the target and numbers for
countdown, the graph and ``k`` for graph coloring), so a verifier never needs the prompt.
"""
from __future__ import annotations

import ast
import json
import re
from collections import Counter
from fractions import Fraction
from typing import Any, Sequence

from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier, register
from reasonrl.verifiers.extract import extract_tag

# An integer literal, optionally signed, optionally with well-formed thousands separators.
_INT_RE = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_LAST_INT_RE = re.compile(r"[+-]?\d+")


def _parse_int(text: str) -> int | None:
    text = text.strip().replace(" ", "")
    if not _INT_RE.fullmatch(text):
        return None
    return int(text.replace(",", ""))


@register("arith")
class ArithmeticVerifier(Verifier):
    """Exact integer match for ``arith``.

    Args:
        strict: (default True) the answer must be inside ``<answer>...</answer>`` and be an
            integer literal (sign and ``1,234`` separators allowed). With ``strict=False`` a
            response without the tag is scored on its last integer.

    ``answer``: the value as a string (``"579"``) or an int.
    Reasons: ``ok``, ``wrong_answer``, ``no_answer`` (no tag / no integer), ``format_error``
    (a tag whose content is not an integer).
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def verify(self, response: str, answer: Any) -> Verdict:
        gold = int(str(answer).strip())
        tagged = extract_tag(response or "")
        if tagged is None:
            if self.strict:
                return Verdict.failure("no_answer")
            found = _LAST_INT_RE.findall(response or "")
            if not found:
                return Verdict.failure("no_answer")
            tagged = found[-1]
        value = _parse_int(tagged)
        if value is None:
            return Verdict.failure("format_error", extracted=tagged[:200])
        if value != gold:
            return Verdict(reward=0.0, correct=False, extracted=tagged, reason="wrong_answer")
        return Verdict(reward=1.0, correct=True, extracted=tagged, reason="ok")


# ---------------------------------------------------------------------------------------
# countdown

_ALLOWED_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
MAX_EXPRESSION_CHARS = 500
MAX_LITERAL = 10**12


class _ExpressionError(ValueError):
    pass


def evaluate_expression(text: str, allowed_ops: Sequence[str] = ("+", "-", "*", "/")) -> tuple[Fraction, list[int]]:
    """Exact value and the integer literals of an arithmetic expression, without ``eval``.

    Only non-negative integer literals, the binary operators in ``allowed_ops`` and
    parentheses are accepted (no unary minus, powers, names or calls), parsed with
    :mod:`ast` and evaluated with :class:`fractions.Fraction`, so ``7/2*2`` is exactly 7.
    Without powers the value stays small (at most the product of the literals), so
    there is nothing to guard beyond the input length and literal size. Raises
    ``_ExpressionError`` (a ValueError) with a short reason; division by zero included.
    """
    if len(text) > MAX_EXPRESSION_CHARS:
        raise _ExpressionError("expression too long")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise _ExpressionError("not an arithmetic expression") from None
    literals: list[int] = []

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _ALLOWED_BINOPS:
            symbol = _ALLOWED_BINOPS[type(node.op)]
            if symbol not in allowed_ops:
                raise _ExpressionError(f"operator {symbol} not allowed")
            left, right = walk(node.left), walk(node.right)
            if symbol == "+":
                return left + right
            if symbol == "-":
                return left - right
            if symbol == "*":
                return left * right
            if right == 0:
                raise _ExpressionError("division by zero")
            return left / right
        if isinstance(node, ast.Constant) and type(node.value) is int and 0 <= node.value <= MAX_LITERAL:
            literals.append(node.value)
            return Fraction(node.value)
        raise _ExpressionError(f"unsupported element {type(node).__name__}")

    try:
        value = walk(tree.body)
    except RecursionError:
        raise _ExpressionError("expression nested too deeply") from None
    return value, literals


@register("countdown")
class CountdownVerifier(Verifier):
    """Countdown: the expression must equal the target **and** use exactly the given numbers.

    ``answer`` = ``{"numbers": [...], "target": int, "ops"?: [...], "use_all"?: bool}``
    (``ops`` defaults to ``+ - * /``, ``use_all`` to True).

    Reads the last ``<answer>`` tag (``strict=False``: the whole response when there is no
    tag). ``×``/``÷`` are read as ``*``/``/``; a trailing ``= target`` is allowed (the right
    side must then equal the target). Each given number may be used at most once (as many
    times as it is given); with ``use_all`` every one must be used. Numbers that were not
    given, a number used too often, or a missing number → ``wrong_numbers``; a value other
    than the target → ``wrong_answer``; unparsable or disallowed syntax (unary minus,
    ``**``, names) → ``format_error``; ``1/0`` → ``wrong_answer`` with the reason in details.
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def verify(self, response: str, answer: Any) -> Verdict:
        if isinstance(answer, str):
            answer = json.loads(answer)
        numbers = [int(x) for x in answer["numbers"]]
        target = Fraction(int(answer["target"]))
        ops = tuple(answer.get("ops") or ("+", "-", "*", "/"))
        use_all = bool(answer.get("use_all", True))
        text = extract_tag(response or "")
        if text is None:
            if self.strict:
                return Verdict.failure("no_answer")
            text = (response or "").strip()
        if not text:
            return Verdict.failure("no_answer", extracted=text)
        expression = text.replace("×", "*").replace("÷", "/").replace("\u2212", "-")
        if "=" in expression:
            expression, _, claimed = expression.rpartition("=")
            if _parse_int(claimed) != target:
                return Verdict.failure("wrong_answer", extracted=text[:200], problem="claimed result is not the target")
        try:
            value, literals = evaluate_expression(expression, ops)
        except _ExpressionError as exc:
            reason = "wrong_answer" if str(exc) == "division by zero" else "format_error"
            return Verdict.failure(reason, extracted=text[:200], problem=str(exc))
        remaining = Counter(numbers)
        remaining.subtract(literals)
        details = {"value": str(value), "numbers_used": literals}
        if any(c < 0 for c in remaining.values()):
            extra = sorted((+Counter(literals) - Counter(numbers)).elements())
            return Verdict(0.0, False, text, "wrong_numbers", {**details, "not_given": extra})
        if use_all and any(c > 0 for c in remaining.values()):
            return Verdict(0.0, False, text, "wrong_numbers", {**details, "unused": sorted((+remaining).elements())})
        if value != target:
            return Verdict(0.0, False, text, "wrong_answer", details)
        return Verdict(1.0, True, text, "ok", details)


# ---------------------------------------------------------------------------------------
# graph_coloring

_PAIR_RE = re.compile(r"""["']?(\d+)["']?\s*(?::|=|->)\s*["']?(\d+)["']?""")


def parse_coloring(text: str) -> dict[int, int]:
    """``{node: color}`` from ``0:1, 1:2`` (also ``0=1``, ``0->1``, ``{"0": 1}``); a repeated node keeps its last color.

    Use :func:`parse_coloring_pairs` to see repeats.
    """
    return dict(parse_coloring_pairs(text))


def parse_coloring_pairs(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in _PAIR_RE.findall(text)]


@register("graph_coloring")
class GraphColoringVerifier(Verifier):
    """A proper coloring: every node gets exactly one color in ``1..k``, no edge joins two nodes of one color.

    ``answer`` = ``{"nodes": n, "edges": [[u, v], ...], "k": k}``. The coloring is read from the
    last ``<answer>`` tag (``strict=False``: the whole response when there is no tag) as
    ``node:color`` pairs. Reasons: ``no_answer``, ``unknown_node``, ``conflicting_colors``
    (one node, two colors), ``invalid_color`` (outside 1..k), ``missing_node``,
    ``wrong_answer`` (an edge inside one color; ``details.conflicts`` lists them).
    """

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    def verify(self, response: str, answer: Any) -> Verdict:
        if isinstance(answer, str):
            answer = json.loads(answer)
        n, k = int(answer["nodes"]), int(answer["k"])
        edges = [(int(u), int(v)) for u, v in answer["edges"]]
        text = extract_tag(response or "")
        if text is None:
            if self.strict:
                return Verdict.failure("no_answer")
            text = response or ""
        pairs = parse_coloring_pairs(text)
        extracted = text[:2000]
        if not pairs:
            return Verdict.failure("no_answer", extracted=extracted)
        colors: dict[int, int] = {}
        for node, color in pairs:
            if not 0 <= node < n:
                return Verdict.failure("unknown_node", extracted=extracted, node=node)
            if colors.get(node, color) != color:
                return Verdict.failure("conflicting_colors", extracted=extracted, node=node)
            if not 1 <= color <= k:
                return Verdict.failure("invalid_color", extracted=extracted, node=node, color=color)
            colors[node] = color
        missing = [v for v in range(n) if v not in colors]
        if missing:
            return Verdict.failure("missing_node", extracted=extracted, missing=missing)
        conflicts = [[u, v] for u, v in edges if colors[u] == colors[v]]
        if conflicts:
            return Verdict(0.0, False, extracted, "wrong_answer", {"conflicts": conflicts})
        return Verdict(1.0, True, extracted, "ok", {"colors_used": len(set(colors.values()))})
