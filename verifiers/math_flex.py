"""``math`` — flexible symbolic match of a LaTeX answer (MATH, AIME, Olympiad-style tasks).

Pipeline for ``verify(response, answer)``:

1. **Extraction** of the prediction from the response, first source that yields a span:

   a. ``<answer>...</answer>`` — the last tag; inside it the order below applies, else the
      tag's whole content is the answer;
   b. the last ``\\boxed{}``/``\\fbox{}`` — boxes joined only by commas, "and", "or",
      ``\\quad`` or a short ``\\text{...}`` are read together as a list
      (``\\boxed{1}, \\boxed{2}``); a "final answer is $x$" written *after* the last box
      wins over the box. The scan is one forward pass, linear in the response however
      many boxes it opens and never closes;
   c. "final answer is" / "the answer is" / "answer:" — the math span or bare token right
      after the last such phrase, else the rest of that line as text;
   d. the last math span (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``), unless
      plain numbers follow it in the text;
   e. the last 4,000 characters of the text: a short bare LaTeX answer (``8n^2+4n+1``) is
      read as LaTeX, anything else is searched by math-verify itself (``1/3``, ``28 pct``,
      "... so there are 12 sequences").

   ``strict=True`` keeps only (a) and (b). The gold ``answer`` is a LaTeX string
   (``"\\frac{1}{2}"``, with or without ``$``); a full MATH solution is also accepted (its
   last box is the answer).

   **Several boxes.** When the gold is a list of several answers (``-1, 2`` or
   ``\\{-1, 2\\}``; a tuple or an interval is one answer) and the reading above is wrong,
   every box of the response (of the ``<answer>`` tag, when there is one) is read as one
   set: a solution may box each answer in its own sentence (``$a=\\boxed{-1}$ and
   $a=\\boxed{2}$``). The distinct boxed items must be exactly as many as the gold's, so a
   superset never matches, and against a single gold several distinct boxes stay a hedge
   (side by side they are one list, which a single gold rejects; apart, the last counts).
2. **Normalization** (:func:`reasonrl.verifiers.math_normalize.normalize_answer`):
   ``\\dfrac``/``\\tfrac``, ``\\left``/``\\right``, units (``10\\text{ cm}``,
   ``\\text{10 inches}``; never words that change the value: ``\\text{10 or 12}``,
   ``10\\text{ or more}``, ``5\\text{ million}``), degrees, thin spaces, ``\\$``, thousands
   separators (``{,}``, ``,\\!``, ``, \\!``, ``10,455``), single-token arguments
   (``\\frac \\pi4`` = ``\\frac{\\pi}{4}``), choice lists (``\\text{A,D}`` = ``A, D``).
   Both paths below see the normalized spans, so a cleanup cannot make them disagree.
   Only ASCII ``0``-``9`` are digits: ``１８`` or ``١٨`` is not 18 on either path (math-verify's
   reading; digits of other scripts are not normalized).

   **Degrees against radians.** A prediction whose angles carry degree marks (``90^\\circ``)
   is read in radians (``\\frac{90\\pi}{180}``) when the gold holds ``\\pi``; a gold in
   degrees accepts the plain number (``90``) but not radians.
3. **Fast path** (:func:`reasonrl.verifiers.math_normalize.fast_compare`): identical spans,
   or numbers, fractions, roots, pi, one-letter variables (evaluated at sample points),
   lists, intervals, ``\\pm``, matrices — compared by value: exactly for rationals, to
   ``float_rounding`` (6) decimal places when a side is a decimal literal. It answers only
   when the outcome is certain and never says "equal" where the slow path would not (tested
   against the slow path on random expressions with hypothesis); on MATH-500 it decides
   every gold solution and most wrong answers.
4. **Slow path**: math-verify's ``parse``/``verify`` (its own timeouts disabled) in a
   persistent helper subprocess, with corrections of its known wrong verdicts:

   * two spans that are the same LaTeX up to spaces are equal (math-verify falls back to a
     space-sensitive string compare when it cannot parse them);
   * a parse that dropped part of the span (unbalanced braces in what it read, e.g.
     ``1-\\frac{1}{\\mathrm{e}}`` read as ``1``) is not trusted (and ``\\mathrm{e}`` is
     normalized to ``e`` first);
   * two constants whose values differ are never equal (``1-1/e`` vs ``1+1/e``), except
     under math-verify's percent rule (``28\\%`` = ``28``);
   * expressions that agree wherever both are real are equal (``\\sqrt{1/n}`` =
     ``1/\\sqrt{n}``; ``\\sqrt{x^2}`` vs ``x`` still fails: they differ at negative x);
   * sets vs inequalities compare in both directions (``1<x<2`` = ``(1,2)`` either way
     round; math-verify accepted only the prediction being the set);
   * a percent also equals its number (``12.5\\%`` = ``12.5``; math-verify took ``7\\%`` for
     ``7`` but ``12.5\\%`` only for ``0.125``);
   * a value followed by words that are no unit is never equal to the bare value
     (math-verify drops ``\\text{ or more}`` as if it were a unit).

**Hard time limit.** Each ``verify`` call runs under ``timeout`` seconds (default 5), from
any thread and inside worker processes (no SIGALRM), with no batch runner needed: the
in-process work (extraction, normalization, fast path) is linear in the input or bounded,
and the slow path gets the time left in a helper process, which is killed (and a fresh one
started) on expiry; the verdict is ``timeout``. So ``9^9^9^9``, a 1 MB response or deeply
nested braces give a verdict quickly. A helper's start-up (importing sympy, ~2 s) is not
counted against an item; the first begins in the background on the first ``verify`` call of
a process. Threads verifying at once get their own helpers (up to :data:`MAX_HELPERS`,
started when all are busy), so one stuck item does not hold up the others. Each helper caps
its address space (4 GiB), so a memory blow-up becomes an ``error`` verdict rather than a
stuck machine.

**Asymmetry (gold vs prediction).** ``verify`` is not symmetric, on purpose:

* only the response goes through extraction; the gold is taken whole (or its last box);
* equations: a prediction ``lhs = … = v`` counts as its last value ``v`` when the gold is
  not an equation (a model's box often holds a derivation, ``x = 5+5+1 = 11``), while a
  gold equation counts as its value only when it is an assignment — a left side without
  numbers (gold ``k=1`` accepts ``1``; gold ``2x+4y-3=0`` does not accept ``0``, because an
  authored gold equation *is* the answer). So gold ``0`` accepts the prediction
  ``2x+4y-3=0`` but not the other way round.

* angles: degrees count as radians only in the prediction, against a gold holding ``\\pi``.

Rounding (6 decimal places when either side is a decimal literal), sets vs inequalities,
``\\pm`` (both values, either side), units, percents and the real-domain rule are symmetric.

Verdict: reward 1/0; reason ``ok``, ``wrong_answer``, ``no_answer``, ``timeout`` or
``error``; ``extracted`` is the normalized prediction span; ``details`` holds ``path``
(``fast``/``slow``), ``source`` (where the span came from) and ``gold`` (normalized).
"""
from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier, register
from reasonrl.verifiers.extract import extract_tag
from reasonrl.verifiers.math_normalize import (
    comparison_key,
    degrees_to_radians,
    fast_compare,
    normalize_answer,
    split_top_level,
    strip_math_delimiters,
    text_changes_value,
)

# ---------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------

LATEX = "latex"  # the span is one LaTeX answer: the slow path reads it as \boxed{span}
TEXT = "text"  # free text: math-verify's own extraction finds the answer in it

_TAIL_CHARS = 4_000  # the fallback hands math-verify at most this much of a response
_MAX_SPAN_CHARS = 5_000  # longer answer spans are not sent to the slow path (see verify)
_MAX_JOINED_BOXES = 10
_BOX_CONNECTOR_RE = re.compile(
    r"\s*(?:\$|\\\)|\\\])?\s*(?:,|;|\band\b|\bor\b|\\quad|\\qquad|\\text\{[^{}$]{0,40}\}|\\[,;!]|\s)*\s*(?:\$|\\\(|\\\[)?\s*",
    re.IGNORECASE,
)
_ANCHOR_RE = re.compile(r"(?:final answer|the answer|answer)\s*(?:is|:)\s*:?", re.IGNORECASE)
_FINAL_ANSWER_RE = re.compile(r"final answer\s*(?:is|:)", re.IGNORECASE)
_MATH_SPAN_RE = re.compile(
    r"(?<!\\)\$\$(?P<dd>.+?)(?<!\\)\$\$"
    r"|\\\[(?P<db>.+?)\\\]"
    r"|\\\((?P<ip>[^\n]+?)\\\)"
    r"|(?<![\\$])\$(?P<id>[^\n$]+?)(?<!\\)\$",
    re.DOTALL,
)
_LEADING_MATH_RE = re.compile(
    r"\s*(?:\*\*)?\s*(?:(?<!\\)\$\$(?P<dd>.+?)\$\$|\\\[(?P<db>.+?)\\\]|\\\((?P<ip>[^\n]+?)\\\)|\$(?P<id>[^\n$]+?)\$)",
    re.DOTALL,
)
_BARE_TOKEN_RE = re.compile(r"\s*(?:\*\*)?\s*(?P<tok>[^\s$]+?)\s*(?:\*\*)?\s*[.;]?\s*$")


@dataclass(frozen=True)
class Extracted:
    """An answer span, where it came from and how the slow path should read it."""

    span: str
    source: str  # tag / boxed / answer_is / math_span / text
    kind: str  # LATEX or TEXT


@dataclass(frozen=True)
class _Box:
    """One ``\\boxed{}``/``\\fbox{}`` with its closing brace found: ``text[start:end]``, content ``text[inner_start:inner_end]``."""

    start: int
    inner_start: int
    inner_end: int
    end: int

    def content(self, text: str) -> str:
        return text[self.inner_start : self.inner_end].strip()


_BOX_TOKEN_RE = re.compile(r"\\boxed|\\fbox|[{}]")
_SPACES_RE = re.compile(r" *")
_TOKEN_STOP_RE = re.compile(r"[\s$]")


def _scan_boxes(text: str) -> tuple[list[int], dict[int, _Box]]:
    """Every box command's start, and the boxes that close, by start: one forward pass.

    Braces are matched with one stack for the whole text (a box's ``{`` closes where its depth
    returns to zero, as a scan from that brace would find), so the cost is linear in the text
    however many boxes stay open. Contents are sliced only for the boxes that are used.
    """
    starts: list[int] = []
    boxes: dict[int, _Box] = {}
    stack: list[int] = []  # per open brace: the start of the box it opens, or -1
    opening: dict[int, int] = {}  # box start -> position of its "{"
    token_stop = -1  # the last whitespace or "$" found ahead: a brace-less box's content ends there
    # Braces before the first box cannot change how a box's own braces match: start there.
    first = min((i for i in (text.find("\\boxed"), text.find("\\fbox")) if i >= 0), default=len(text))
    for match in _BOX_TOKEN_RE.finditer(text, first):
        token, pos = match.group(0), match.start()
        if token == "{":
            owner = starts[-1] if starts and opening.get(starts[-1]) == pos else -1
            stack.append(owner)
        elif token == "}":
            if stack and (owner := stack.pop()) >= 0:
                boxes[owner] = _Box(owner, opening[owner] + 1, pos, pos + 1)
        else:
            starts.append(pos)
            after = _SPACES_RE.match(text, match.end()).end()
            if after >= len(text) or text[after].isspace() or text[after] == "$":
                continue
            if text[after] == "{":
                opening[pos] = after
                continue
            # The brace-less form "\\boxed 5": its content runs to the next whitespace or "$".
            if token_stop < after:
                stop = _TOKEN_STOP_RE.search(text, after)
                token_stop = stop.start() if stop else len(text)
            boxes[pos] = _Box(pos, after, token_stop, token_stop)
    return starts, boxes


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """The last ``\\boxed{}``/``\\fbox{}`` and the boxes chained to it by connectors: (start, end, content)."""
    starts, boxes = _scan_boxes(text)
    spans: list[tuple[int, int, str]] = []
    for start in reversed(starts):
        box = boxes.get(start)
        if box is None:  # never closed: skipped before the last box, ends a chain after it
            if spans:
                break
            continue
        if spans:
            gap_end = spans[-1][0]
            # Connectors are short; the length check also keeps the regex off long gaps. A box
            # that encloses the one after it is no neighbour in a list.
            if box.end > gap_end or gap_end - box.end > 200 or not _BOX_CONNECTOR_RE.fullmatch(text[box.end : gap_end]):
                break
        spans.append((box.start, box.end, box.content(text)))
        if len(spans) == _MAX_JOINED_BOXES:
            break
    spans.reverse()
    return spans


def _from_boxes(text: str) -> Extracted | None:
    spans = _boxed_spans(text)
    if not spans:
        return None
    contents = [c for _, _, c in spans if c]
    if not contents:
        return None
    return Extracted(", ".join(contents), "boxed", LATEX)


def _from_anchor(text: str) -> Extracted | None:
    tail = text[-_TAIL_CHARS:]
    last = None
    for last in _ANCHOR_RE.finditer(tail):
        pass
    if last is None:
        return None
    rest = tail[last.end() :]
    math = _LEADING_MATH_RE.match(rest)
    if math:
        return Extracted(next(v for v in math.groupdict().values() if v is not None).strip(), "answer_is", LATEX)
    line = rest.split("\n", 1)[0][:300]
    if not line.strip():
        return None
    bare = _BARE_TOKEN_RE.fullmatch(line)
    if bare:
        return Extracted(bare.group("tok"), "answer_is", LATEX)
    return Extracted(line.strip(), "answer_is", TEXT)


def _from_math_spans(text: str) -> Extracted | None:
    """The last math span, unless plain numbers follow it (then math-verify reads the tail)."""
    tail = text[-_TAIL_CHARS:]
    last = None
    for last in _MATH_SPAN_RE.finditer(tail):
        pass
    if last is None or re.search(r"[0-9]", tail[last.end() :]):
        return None
    span = next(v for v in last.groupdict().values() if v is not None).strip()
    return Extracted(span, "math_span", LATEX) if span else None


def _final_answer_after_box(text: str) -> Extracted | None:
    """A "final answer is $x$" statement written after the last box overrides the box."""
    tail = text[-_TAIL_CHARS:]
    last = None
    for last in _FINAL_ANSWER_RE.finditer(tail):
        pass
    if last is None or "\\boxed" in tail[last.start() :] or "\\fbox" in tail[last.start() :]:
        return None
    found = _from_anchor(tail[last.start() :])
    return found if found is not None and found.kind == LATEX else None


def extract_math_answer(response: str, strict: bool = False) -> Extracted | None:
    """The prediction span in the documented order of preference (see the module docstring)."""
    tagged = extract_tag(response)
    if tagged is not None:
        inner = _from_boxes(tagged) or _from_anchor(tagged) or _from_math_spans(tagged)
        if inner is not None:
            return Extracted(inner.span, "tag", inner.kind)
        return Extracted(tagged, "tag", LATEX) if tagged.strip() else None
    boxed = _from_boxes(response)
    if strict or boxed is not None:
        return boxed if strict else (_final_answer_after_box(response) or boxed)
    found = _from_anchor(response) or _from_math_spans(response)
    if found is not None:
        return found
    tail = response[-_TAIL_CHARS:].strip()
    if not tail:
        return None
    return Extracted(tail, "text", LATEX if _looks_like_bare_latex(tail) else TEXT)


_COMMAND_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname|begin|end)\s*\{[^{}]*\}|\\[a-zA-Z]+")
_PROSE_WORD_RE = re.compile(r"[a-zA-Z]{3,}")
_NUMBER_TEXT_RE = re.compile(r"[0-9\s.,+\-$€£%/]*")


def _looks_like_bare_latex(text: str) -> bool:
    """A short response that is just an answer in LaTeX (``8n^2 + 4n + 1``), not prose.

    Plain number text (``1 000``, ``1000,99``, ``$1,000.99``) is left to math-verify's own
    number reading, which knows thousands and decimal commas.
    """
    if len(text) > 500 or _NUMBER_TEXT_RE.fullmatch(text):
        return False
    return not _PROSE_WORD_RE.search(_COMMAND_RE.sub(" ", text))


def gold_span(answer: Any) -> Extracted:
    """The gold span from a Problem's ``answer``: LaTeX (with or without ``$``) or a solution with ``\\boxed``.

    Raises:
        ValueError: naming the ``answer`` field when it is not a non-empty string or number.
    """
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise ValueError(f"math: field 'answer' must be a LaTeX string, got {type(answer).__name__}")
    text = str(answer).strip()
    if not text:
        raise ValueError("math: field 'answer' is empty")
    if "\\boxed" in text or "\\fbox" in text:
        boxed = _from_boxes(text)
        if boxed is not None:
            return Extracted(boxed.span, "gold_boxed", LATEX)
    inner = strip_math_delimiters(text)
    unescaped = text.replace("\\$", "")  # "\$36" is a price, not a math delimiter
    if inner != text or not any(d in unescaped for d in ("$", "\\(", "\\[")):
        return Extracted(inner, "gold", LATEX)
    return Extracted(text, "gold", TEXT)  # "$1$ and $2$": math-verify joins the spans itself


# ---------------------------------------------------------------------------------------
# Slow path: math-verify with corrections (runs in the helper process)
# ---------------------------------------------------------------------------------------

_SAMPLE_POINTS = 24
_MIN_VALID_POINTS = 6


def _slow_input(span: str, kind: str) -> str:
    return f"\\boxed{{{span}}}" if kind == LATEX else span


def _balanced(text: str) -> bool:
    """Are the grouping braces balanced (escaped ``\\{``/``\\}`` set braces do not count)?"""
    depth = 0
    for ch in text.replace("\\{", "").replace("\\}", ""):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def _trusted(parsed: list, source: str) -> list:
    """Drop the sympy results of a parse that read only part of a balanced input.

    math-verify returns ``[expr, latex_it_read]``; when what it read has unbalanced braces
    although the input had none, it cut the input short (``1 - \\frac{1}{\\mathrm{e}}`` read
    as ``1 - \\frac{1}{``, parsed as ``1``) and its value is not the answer's.
    """
    strings = [p for p in parsed if isinstance(p, str)]
    if _balanced(source) and strings and not all(_balanced(s) for s in strings):
        return [s for s in strings if _balanced(s)]
    return parsed


def _plain_expr(x: Any) -> bool:
    from sympy import Expr, MatrixBase, UnevaluatedExpr
    from sympy.core.relational import Relational

    return (
        isinstance(x, Expr)
        and not isinstance(x, (Relational, MatrixBase))
        and not x.has(UnevaluatedExpr)  # math-verify's percent marker: 28% = 28 is its rule
    )


def _real_value(x: Any, precision: int = 30) -> float | None:
    try:
        value = complex(x.evalf(precision))
    except (TypeError, ValueError, ArithmeticError, AttributeError):
        return None
    if value != value or abs(value.real) == float("inf"):
        return None
    if abs(value.imag) > 1e-12 * (1.0 + abs(value.real)):
        return None
    return value.real


def _numerically_distinct(gold: Any, pred: Any, float_rounding: int) -> bool:
    """Two constants with clearly different values (catches a wrong "equal" from math-verify)."""
    if not (_plain_expr(gold) and _plain_expr(pred)) or gold.free_symbols or pred.free_symbols:
        return False
    g, p = _real_value(gold), _real_value(pred)
    if g is None or p is None:
        return False
    return abs(g - p) > 10.0 ** (-float_rounding) + 1e-9 * max(1.0, abs(g), abs(p))


def _equal_on_real_domain(gold: Any, pred: Any) -> bool:
    """Equal wherever both sides are real: ``\\sqrt{1/n}`` = ``1/\\sqrt{n}`` (math-verify says no).

    Checked at fixed pseudo-random points of both signs; at least ``_MIN_VALID_POINTS`` must
    be real for both, and all of those must agree to 1e-9 (relative).
    """
    import random

    from sympy.core.function import AppliedUndef

    if not (_plain_expr(gold) and _plain_expr(pred)):
        return False
    symbols = gold.free_symbols
    if not symbols or symbols != pred.free_symbols or len(symbols) > 4:
        return False
    if gold.atoms(AppliedUndef) or pred.atoms(AppliedUndef):
        return False
    rng = random.Random(1234)
    ordered_symbols = sorted(symbols, key=lambda s: s.name)
    valid = 0
    for _ in range(_SAMPLE_POINTS):
        point = {s: round(rng.choice((-1, 1)) * rng.uniform(0.2, 5.0), 6) for s in ordered_symbols}
        g = _real_value(gold.subs(point))
        p = _real_value(pred.subs(point))
        if g is None or p is None:
            continue
        if abs(g - p) > 1e-9 * max(1.0, abs(g), abs(p)):
            return False
        valid += 1
    return valid >= _MIN_VALID_POINTS


def slow_compare(
    gold: str, gold_kind: str, pred: str, pred_kind: str, float_rounding: int = 6
) -> dict[str, Any]:
    """The slow path in this process (no time limit: the helper process supplies it).

    Returns ``{"equal": bool, "pred_parsed": bool, "gold_parsed": bool, "note": str}``.
    Imports math-verify (and sympy) on first use.
    """
    import logging

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    # Its "timeout disabled" warning is expected: the helper process enforces the limit.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    if gold_kind == pred_kind == LATEX and comparison_key(gold) == comparison_key(pred):
        # The same LaTeX up to spaces (math-verify's fallback string compare is space-sensitive).
        return {"equal": True, "pred_parsed": True, "gold_parsed": True, "note": "same_latex"}
    config = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    gold_parsed = _trusted(parse(_slow_input(gold, gold_kind), config, parsing_timeout=None), gold)
    pred_parsed = _trusted(parse(_slow_input(pred, pred_kind), config, parsing_timeout=None), pred)
    result = {"equal": False, "pred_parsed": bool(pred_parsed), "gold_parsed": bool(gold_parsed), "note": ""}
    if not gold_parsed or not pred_parsed:
        return result
    equal = verify(
        gold_parsed, pred_parsed, float_rounding=float_rounding, allow_set_relation_comp=True, timeout_seconds=None
    )
    g0, p0 = gold_parsed[0], pred_parsed[0]
    if equal and _numerically_distinct(g0, p0, float_rounding):
        equal, result["note"] = False, "values_differ"
    if not equal and _equal_on_real_domain(g0, p0):
        equal, result["note"] = True, "equal_on_real_domain"
    if not equal and gold_kind == pred_kind == LATEX:
        bare = [_PERCENT_RE.fullmatch(side) for side in (gold, pred)]
        # math-verify takes 7% for 7 but 12.5% only for 0.125: a percent is also its number.
        if (bare[0] is None) != (bare[1] is None):
            g, p = (m.group("value") if m else side for m, side in zip(bare, (gold, pred)))
            if slow_compare(g, LATEX, p, LATEX, float_rounding)["equal"]:
                equal, result["note"] = True, "percent_as_number"
    if equal and any(kind == LATEX and text_changes_value(side) for side, kind in ((gold, gold_kind), (pred, pred_kind))):
        equal, result["note"] = False, "words_change_value"  # math-verify dropped "or more" as a unit
    result["equal"] = bool(equal)
    return result


_PERCENT_RE = re.compile(r"(?P<value>[^%]+?)\s*\\?%")


# ---------------------------------------------------------------------------------------
# The helper process that runs the slow path under a hard deadline
# ---------------------------------------------------------------------------------------

_HELPER_MEMORY_BYTES = 4 * 1024**3
_HELPER_STARTUP_TIMEOUT = 120.0


class SlowPathTimeout(Exception):
    """The slow path did not answer within the item's time limit (the helper was killed)."""


class SlowPathCrash(Exception):
    """The helper process died (segfault, out of memory) while working on an item."""


def _helper_main() -> None:  # pragma: no cover - runs in the helper process
    """Serve slow-path requests, one JSON line in, one JSON line out, until stdin closes."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_AS, (_HELPER_MEMORY_BYTES, _HELPER_MEMORY_BYTES))
    except (ValueError, OSError):
        pass
    parent = os.getppid()

    def watch_parent() -> None:
        # Exit when the parent dies mid-item (stdin EOF is only seen between items).
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True).start()
    slow_compare("1", LATEX, "1", LATEX)  # import math-verify and sympy before saying ready
    out = sys.stdout
    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            res = slow_compare(req["gold"], req["gold_kind"], req["pred"], req["pred_kind"], req["float_rounding"])
        except (MemoryError, RecursionError) as exc:
            res = {"error": type(exc).__name__}
        except Exception as exc:  # a verdict for the caller, never a dead helper
            res = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        out.write(json.dumps(res) + "\n")
        out.flush()


class _HelperProcess:
    """One persistent helper subprocess; used by one thread at a time (the pool hands it out)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.buffer = b""
        self.ready = False
        self.owner_pid = os.getpid()

    def start(self) -> None:
        """Start the helper if it is not running, without waiting for it (it imports sympy meanwhile)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.kill()
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from reasonrl.verifiers.math_flex import _helper_main; _helper_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self.buffer = b""
        self.ready = False

    def _wait_ready(self) -> None:
        try:
            line = self._read_line(time.monotonic() + _HELPER_STARTUP_TIMEOUT)
            ok = bool(json.loads(line).get("ready"))
        except (SlowPathTimeout, SlowPathCrash, ValueError):
            ok = False
        if not ok:
            self.kill()
            raise SlowPathCrash("the math-verify helper process failed to start")
        self.ready = True

    def _read_line(self, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()  # not select.select: it fails on descriptors >= 1024 (busy trainers)
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SlowPathTimeout()
            if not poller.poll(max(1, int(remaining * 1000))):
                raise SlowPathTimeout()
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise SlowPathCrash(f"helper exited with code {self.proc.poll()}")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request; wait at most ``timeout`` seconds (after the helper is up)."""
        self.start()
        if not self.ready:
            self._wait_ready()  # start-up time does not count against the item's limit
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
            line = self._read_line(time.monotonic() + timeout)
        except SlowPathTimeout:
            self.kill()
            self.start()  # its replacement warms up while the caller moves on
            raise
        except (SlowPathCrash, BrokenPipeError, OSError) as exc:
            self.kill()
            raise SlowPathCrash(str(exc) or "helper died") from None
        return json.loads(line)


# Helper processes per parent process, started only when every helper is busy: threads that
# verify at once (a trainer's reward threads) do not queue behind one item stuck until its
# time limit. Small, because each helper holds its own sympy (about 150 MB).
MAX_HELPERS = 4


class _HelperPool:
    """Up to :data:`MAX_HELPERS` helper processes of this process, handed to one thread at a time."""

    def __init__(self) -> None:
        self.owner_pid = os.getpid()
        self.cond = threading.Condition()
        self.idle: list[_HelperProcess] = []
        self.helpers: list[_HelperProcess] = []

    def acquire(self) -> _HelperProcess:
        """An idle helper (a ready one first), a new one while there are fewer than the maximum, else wait."""
        with self.cond:
            while True:
                if self.idle:
                    ready = [h for h in self.idle if h.ready]
                    helper = (ready or self.idle)[-1]
                    self.idle.remove(helper)
                    return helper
                if len(self.helpers) < MAX_HELPERS:
                    helper = _HelperProcess()
                    self.helpers.append(helper)
                    return helper
                self.cond.wait()

    def release(self, helper: _HelperProcess) -> None:
        with self.cond:
            self.idle.append(helper)
            self.cond.notify()

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        helper = self.acquire()
        try:
            return helper.call(request, timeout)
        finally:
            self.release(helper)

    def prestart(self) -> None:
        """Start the first helper in the background (the first slow item then waits less)."""
        with self.cond:
            if self.helpers:
                return
            helper = _HelperProcess()
            self.helpers.append(helper)
            helper.start()
            self.idle.append(helper)
            self.cond.notify()

    def kill_all(self) -> None:
        with self.cond:
            helpers = list(self.helpers)
        for helper in helpers:
            helper.kill()


_pool: _HelperPool | None = None
_pool_guard = threading.Lock()


def _get_pool() -> _HelperPool:
    global _pool
    with _pool_guard:
        if _pool is None or _pool.owner_pid != os.getpid():
            # A forked child must not share its parent's pipes: it starts its own helpers.
            _pool = _HelperPool()
        return _pool


_inherited: list[Any] = []


def _forget_helpers_after_fork() -> None:
    """In a forked child: drop the parent's helpers (never kill them) and close our copies of their pipes."""
    global _pool, _pool_guard
    inherited, _pool = _pool, None
    _pool_guard = threading.Lock()
    for helper in inherited.helpers if inherited is not None else ():
        if helper.proc is None:
            continue
        for stream in (helper.proc.stdin, helper.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        _inherited.append(helper.proc)  # keep the Popen object: it is the parent's to reap


def shutdown_helper() -> None:
    """Stop this process's helpers (they restart on the next slow-path item)."""
    pool = _pool
    if pool is not None and pool.owner_pid == os.getpid():
        pool.kill_all()


os.register_at_fork(after_in_child=_forget_helpers_after_fork)
atexit.register(shutdown_helper)


def prestart_helper() -> None:
    """Start this process's first helper in the background (the first slow item then waits less)."""
    _get_pool().prestart()


def slow_compare_with_deadline(
    gold: str, gold_kind: str, pred: str, pred_kind: str, float_rounding: int = 6, timeout: float = 5.0
) -> dict[str, Any]:
    """:func:`slow_compare` in the helper process under a hard limit of ``timeout`` seconds.

    Raises:
        SlowPathTimeout: no answer in time (the helper was killed; the next call respawns it).
        SlowPathCrash: the helper died (its error is in the message).
    """
    request = {"gold": gold, "gold_kind": gold_kind, "pred": pred, "pred_kind": pred_kind, "float_rounding": float_rounding}
    return _get_pool().call(request, timeout)


# ---------------------------------------------------------------------------------------
# The verifier
# ---------------------------------------------------------------------------------------


@register("math")
class MathVerifier(Verifier):
    """Flexible symbolic match of a LaTeX answer: fast path in front of math-verify.

    Args:
        timeout: hard limit in seconds for one item's slow path (default 5).
        float_rounding: decimal places for comparisons involving a decimal literal (default 6).
        strict: read the prediction only from ``<answer>`` or ``\\boxed{}`` (default False).
        fast_only: never call the slow path; undecided items are ``wrong_answer`` with
            ``details["undecided"] = True`` (for a quick, conservative pass).
        fast_path: use the fast path (default True); False sends every item to the slow
            path (the reference the fast path is checked against; benchmarks use it).

    >>> MathVerifier().verify("So $x = \\\\boxed{\\\\dfrac{1}{2}}$.", "\\\\frac12").correct
    True
    """

    # The batch runner's backstop limit: above ``timeout`` because a worker's first slow item
    # also waits for the helper process to start (a few seconds on a busy machine).
    default_timeout = 30.0

    def __init__(
        self,
        timeout: float = 5.0,
        float_rounding: int = 6,
        strict: bool = False,
        fast_only: bool = False,
        fast_path: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"math: option 'timeout' must be > 0 seconds, got {timeout}")
        self.timeout = float(timeout)
        self.float_rounding = int(float_rounding)
        self.strict = bool(strict)
        self.fast_only = bool(fast_only)
        self.fast_path = bool(fast_path)
        if self.fast_only and not self.fast_path:
            raise ValueError("math: options 'fast_only' and fast_path=False exclude each other")

    def verify(self, response: str, answer: Any) -> Verdict:
        started = time.monotonic()  # the item's time limit covers the whole call
        if not self.fast_only:
            prestart_helper()  # overlaps its ~2 s start-up with the fast items before the first slow one
        gold = gold_span(answer)
        gold_norm = normalize_answer(gold.span) if gold.kind == LATEX else gold.span
        details: dict[str, Any] = {"gold": gold_norm[:500]}
        found = extract_math_answer(response or "", strict=self.strict)
        if found is None:
            return Verdict(0.0, False, None, "no_answer", details)
        verdict = self._judge(gold, gold_norm, found, details, started)
        if verdict.reason == "wrong_answer" and found.source in ("boxed", "tag"):
            # Several boxes read as one set of answers, where the gold is a set (see the module docstring).
            several = _several_boxes(response or "", gold_norm if gold.kind == LATEX else None)
            if several is not None and several.span != found.span:
                second = self._judge(gold, gold_norm, several, {"gold": details["gold"]}, started)
                if second.correct or second.reason == "timeout":
                    return second
        return verdict

    def _judge(self, gold: Extracted, gold_norm: str, found: Extracted, details: dict[str, Any], started: float) -> Verdict:
        """The verdict on one extracted prediction: fast path, else the slow path in the time left."""
        pred_norm = found.span
        if found.kind == LATEX:
            radians = degrees_to_radians(found.span) if gold.kind == LATEX and _in_radians(gold_norm) else None
            pred_norm = normalize_answer(radians or found.span)
        details["source"] = found.source
        extracted = pred_norm[:500]
        if not pred_norm:
            return Verdict(0.0, False, None, "no_answer", details)

        if not self.fast_path:
            decided = None
        elif gold.kind == LATEX and found.kind == LATEX:
            decided = fast_compare(gold_norm, pred_norm, self.float_rounding)
        else:
            decided = _fast_text_compare(gold_norm, gold.kind, pred_norm, found.kind, self.float_rounding)
        if decided is not None:
            details["path"] = "fast"
            return _verdict(decided, extracted, details)
        if self.fast_only:
            details.update(path="fast", undecided=True)
            return _verdict(False, extracted, details)
        if len(pred_norm) > _MAX_SPAN_CHARS or len(gold_norm) > _MAX_SPAN_CHARS:
            details.update(path="fast", note=f"answer longer than {_MAX_SPAN_CHARS} characters")
            return _verdict(False, extracted, details)

        details["path"] = "slow"
        time_left = self.timeout - (time.monotonic() - started)
        try:
            if time_left <= 0:
                raise SlowPathTimeout()
            result = slow_compare_with_deadline(gold_norm, gold.kind, pred_norm, found.kind, self.float_rounding, time_left)
        except SlowPathTimeout:
            return Verdict.failure("timeout", extracted=extracted, **details, timeout_s=self.timeout)
        except SlowPathCrash as exc:
            return Verdict.failure("error", extracted=extracted, **details, error=str(exc)[:300])
        if "error" in result:
            return Verdict.failure("error", extracted=extracted, **details, error=result["error"])
        if result.get("note"):
            details["note"] = result["note"]
        if not result["pred_parsed"]:
            return Verdict(0.0, False, extracted, "no_answer", details)
        return _verdict(result["equal"], extracted, details)


def _several_boxes(response: str, gold_norm: str | None) -> Extracted | None:
    """Every boxed answer of the response as one list, when the gold is a list of several answers.

    A solution may box each answer in its own sentence (``$a=\\boxed{-1}$ and $a=\\boxed{2}$``).
    Read only when the gold has several items (``-1, 2`` or ``\\{-1, 2\\}``; a tuple or an
    interval is one answer) and the distinct boxed items are exactly as many: several boxes
    against a single gold stay a hedge, and a superset of the gold set never matches.
    """
    if gold_norm is None:
        return None
    wrapped = gold_norm.startswith("\\{") and gold_norm.endswith("\\}")
    gold_items = split_top_level(gold_norm[2:-2] if wrapped else gold_norm)
    if len(gold_items) < 2:
        return None
    tagged = extract_tag(response)
    text = response if tagged is None else tagged
    starts, boxes = _scan_boxes(text)
    items: dict[str, str] = {}
    enclosing_end = -1
    for start in starts:
        box = boxes.get(start)
        if box is None or start < enclosing_end:  # unclosed, or inside a box already read
            continue
        enclosing_end = box.end
        for item in split_top_level(normalize_answer(box.content(text))):
            if item:
                items.setdefault(comparison_key(item), item)
        if len(items) > len(gold_items):
            return None
    if len(items) != len(gold_items):
        return None
    joined = ", ".join(items.values())
    return Extracted(f"\\{{{joined}\\}}" if wrapped else joined, "boxes", LATEX)


def _in_radians(gold_norm: str) -> bool:
    """A gold angle in radians: it holds pi and no degree mark (normalized golds have none left)."""
    return "\\pi" in gold_norm


_PLAIN_NUMBER_RE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:\s*/\s*[0-9]+)?")


def _fast_text_compare(gold: str, gold_kind: str, pred: str, pred_kind: str, float_rounding: int) -> bool | None:
    """The fast path when a side is free text: only a text that is one plain number qualifies."""
    sides = []
    for text, kind in ((gold, gold_kind), (pred, pred_kind)):
        if kind == TEXT:
            text = text.strip()
            if not _PLAIN_NUMBER_RE.fullmatch(text):
                return None
            text = text.replace(" ", "")
        sides.append(text)
    return fast_compare(sides[0], sides[1], float_rounding)


def _verdict(correct: bool, extracted: str, details: dict[str, Any]) -> Verdict:
    return Verdict(
        reward=1.0 if correct else 0.0,
        correct=bool(correct),
        extracted=extracted,
        reason="ok" if correct else "wrong_answer",
        details=details,
    )
