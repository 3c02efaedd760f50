"""LaTeX answer normalization and the fast comparison path of the ``math`` verifier.

Pure string/number code (standard library only): importing this module is instant, and
nothing here can hang — every function is linear in its input (or bounded by a nesting
limit) and evaluates only small, bounded arithmetic.

Three pieces:

* :func:`normalize_answer` — meaning-preserving cleanup of one answer span. Its output is
  what BOTH the fast path and the slow path (math-verify) see, so a cleanup can never make
  the two paths disagree.
* :func:`comparison_key` — the normalized span with insignificant spaces removed; two spans
  with the same key are the same LaTeX and are equal.
* :func:`fast_compare` — ``True`` / ``False`` when the answers are identical or are
  expressions in a small grammar (numbers, fractions, mixed numbers, roots, pi, one-letter
  variables evaluated at fixed sample points, lists, intervals, ``\\pm``, matrices) whose
  values settle the question, ``None`` ("don't know, ask the slow path") otherwise. It
  mirrors math-verify's reading of each form (``2\\frac{1}{2}`` is 5/2, ``(3,1)`` is a
  tuple but ``(3,1]`` the empty set, a matrix is never a number), so it can only be
  faster, never different; ``tests/test_verifier_math.py`` checks it against the slow path
  on random expressions.

Tolerance (the same rule math-verify applies): when either side is written as a decimal
literal the values are compared after rounding to ``float_rounding`` (default 6) decimal
places; integers, fractions and exact expressions compare exactly. The fast path answers
``True`` only for identical keys or equal exact rationals (cell by cell for matrices), and
``False`` only when two values differ by more than ``10**-float_rounding`` (plus float
round-off) at some point where both are real — a gap no rounding can close. Everything in
between goes to the slow path.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

# ---------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------

_MATH_DELIMS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_FRAC_VARIANTS_RE = re.compile(r"\\(?:dfrac|tfrac|cfrac)(?![a-zA-Z])")
_LEFT_RIGHT_DOT_RE = re.compile(r"\\(?:left|right)\s*\.")
# \left( -> (, \right\} -> \}, but never \leftarrow / \rightarrow.
_LEFT_RIGHT_RE = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|big|Big)(?![a-zA-Z])\s*")
_DEGREES_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree(?![a-zA-Z])|\{\}\^\s*\{?\\circ\}?")
_DISPLAYSTYLE_RE = re.compile(r"\\(?:displaystyle|textstyle)(?![a-zA-Z])")
# Thousands separators written the LaTeX way: 1{,}000 and 1,\!000 (never a plain "1,000",
# which is ambiguous with a list of two numbers; math-verify reads that one itself).
_THOUSANDS_RE = re.compile(r"(?<=[0-9])(?:\{,\}|,\s?\\[!,]|\\,)\s?(?=[0-9]{3}(?![0-9]))")
# A LaTeX row break "\\\\" is matched first and kept, so "\\\\ 2" is not read as "\\" + "\\ ".
# A whole span that is one number with separators: "10,455", "1 000 000.5" (latex2sympy
# reads the comma form this way too; the space form it would read as a product).
_SEPARATED_NUMBER_RE = re.compile(r"-?[0-9]{1,3}(?:(?P<sep>[, ])[0-9]{3})(?:(?P=sep)[0-9]{3})*(?:\.[0-9]+)?")
_THIN_SPACES_RE = re.compile(r"\\\\|\\[!,;:](?![a-zA-Z])|\\ |~")
# A trailing unit or word after a value: "10 \text{ cm}^2", "5\mbox{ apples}", "3\text{ days}".
_TEXT_COMMAND = r"\\(?:text|textbf|textnormal|mbox|mathrm)\s*"
_UNIT_WORDS = r"[A-Za-z][A-Za-z .]*"
_SQUARED_OR_CUBED = r"(?:\s*\^\s*\{?[23]\}?)?"
_TRAILING_TEXT_RE = re.compile(
    rf"^(?P<value>.*?[0-9}}a-zA-Z)])\s*{_TEXT_COMMAND}\{{\s*(?P<unit>{_UNIT_WORDS})\}}{_SQUARED_OR_CUBED}\s*$", re.DOTALL
)
# A number and its unit in one text: "\text{10 inches}", "\mbox{5 dollars}".
_NUMBER_IN_TEXT_RE = re.compile(
    rf"{_TEXT_COMMAND}\{{\s*(?P<value>-?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+))\s*(?P<unit>{_UNIT_WORDS})?\}}{_SQUARED_OR_CUBED}"
)
# Words that make "a number and a unit" something else: a second answer ("10 or 12"), a
# bound ("10 or more"), a multiplier ("5 million") or a number in words ("10 and twelve").
_NOT_UNIT_WORDS = frozenset(
    """or and nor not no to than more less fewer least most plus minus times over under about approximately
    roughly nearly almost except but if unless between from percent half halves dozen dozens hundred hundreds
    thousand thousands million millions billion billions trillion trillions zero one two three four five six
    seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty
    thirty forty fifty sixty seventy eighty ninety""".split()
)
# A choice list in one text: "\text{A, D}", "\text{(B), (E)}" -> "A, D" (read as letters).
_CHOICE_LIST_RE = re.compile(rf"{_TEXT_COMMAND}\{{\s*(?P<letters>\(?[A-Z]\)?(?:\s*,\s*\(?[A-Z]\)?)+)\s*\}}")
# Single-letter \mathrm{e} is the constant e (math-verify's unit stripping eats it otherwise).
_MATHRM_LETTER_RE = re.compile(r"\\(?:mathrm|mathit|text)\s*\{\s*([a-zA-Z])\s*\}")
_WS_RE = re.compile(r"\s+")


def strip_math_delimiters(text: str) -> str:
    """``$x$`` / ``$$x$$`` / ``\\(x\\)`` / ``\\[x\\]`` -> ``x`` when ONE pair encloses the whole text."""
    text = text.strip()
    for left, right in _MATH_DELIMS:
        if text.startswith(left) and text.endswith(right) and len(text) >= len(left) + len(right):
            inner = text[len(left) : len(text) - len(right)]
            if left == "$" and "$" in inner.replace("\\$", ""):
                return text  # "$1$ and $2$": two spans, not one
            if left != "$" and (left in inner or right in inner):
                return text
            return inner.strip()
    return text


def normalize_answer(span: str) -> str:
    """Meaning-preserving cleanup of one LaTeX answer span (no delimiters needed).

    Removes: enclosing ``$``/``\\(``/``\\[``, ``\\left``/``\\right``, ``\\displaystyle``,
    degree marks (``^\\circ``, ``°``), thin spaces, ``\\$`` and a leading ``$``, thousands
    separators written ``{,}`` or ``,\\!``, a unit or word in ``\\text{}``/``\\mbox{}`` after a
    value or after a number inside the same text (``\\text{10 inches}``) unless a word
    changes the value (``or``, ``more``, ``million``, ...: :func:`text_changes_value`),
    trailing punctuation. Rewrites ``\\dfrac``/``\\tfrac``/``\\cfrac`` as ``\\frac``,
    single-token arguments of ``\\frac``/``\\sqrt`` with braces (``\\frac \\pi4``),
    ``\\mathrm{e}`` as ``e`` and a choice list ``\\text{A,D}`` as ``A, D``. Digits of other
    scripts (``１８``) are left alone: only ASCII digits are numbers, here and in the fast path.

    >>> normalize_answer("\\\\$1{,}000.50.")
    '1000.50'
    >>> normalize_answer("\\\\left( 3, \\\\dfrac{\\\\pi}{2} \\\\right)")
    '( 3, \\\\frac{\\\\pi}{2} )'
    """
    text = strip_math_delimiters(span)
    text = _DISPLAYSTYLE_RE.sub("", text)
    text = _FRAC_VARIANTS_RE.sub(r"\\frac", text)
    text = _brace_arguments(text)
    text = _LEFT_RIGHT_DOT_RE.sub("", text)
    text = _LEFT_RIGHT_RE.sub("", text)
    text = _DEGREES_RE.sub("", text)
    text = _THOUSANDS_RE.sub("", text)
    text = _THIN_SPACES_RE.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", text)
    text = text.replace("\\$", "")
    text = _MATHRM_LETTER_RE.sub(r"\1", text)
    text = _WS_RE.sub(" ", text).strip()
    if text.startswith("$") and "$" not in text[1:]:
        text = text[1:].strip()  # a currency sign: "$18.90"
    text = text.rstrip(" .,;")
    if _SEPARATED_NUMBER_RE.fullmatch(text):
        text = text.replace(",", "").replace(" ", "")
    match = _NUMBER_IN_TEXT_RE.fullmatch(text) or _TRAILING_TEXT_RE.match(text)
    if match and match.group("value").strip() and _is_unit(match.group("unit")):
        text = match.group("value").strip()
    choices = _CHOICE_LIST_RE.fullmatch(text)
    if choices:
        text = ", ".join(re.findall(r"[A-Z]", choices.group("letters")))
    return text.rstrip(" .,;")


def text_changes_value(normalized: str) -> bool:
    """A value followed by words that are no unit (``10\\text{ or more}``, ``5\\text{ million}``).

    :func:`normalize_answer` keeps such words; math-verify would drop them as a unit.
    """
    match = _NUMBER_IN_TEXT_RE.fullmatch(normalized) or _TRAILING_TEXT_RE.match(normalized)
    return bool(match and match.group("value").strip() and not _is_unit(match.group("unit")))


def _is_unit(words: str | None) -> bool:
    """Could ``words`` (after a number) be a unit or a plain noun, and not change the answer?"""
    return words is None or not any(word in _NOT_UNIT_WORDS for word in re.findall(r"[a-z]+", words.lower()))


def _brace_arguments(text: str) -> str:
    """``\\frac \\pi4`` -> ``\\frac{\\pi}{4}``, ``\\sqrt 3`` -> ``\\sqrt{3}``: arguments written as single tokens get braces.

    TeX reads one token per argument (a digit, a letter, a command), which math-verify does
    not when a space or a command comes first. One pass: the braces are matched once.
    """
    if "\\frac" not in text and "\\sqrt" not in text:
        return text
    closing = _matching_braces(text)
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), never overlapping
    for command in _BRACED_COMMAND_RE.finditer(text):
        pos = command.end()
        planned: list[tuple[int, int, str]] = []
        if command.group(1) == "sqrt":
            index = _ROOT_INDEX_RE.match(text, pos)
            pos = index.end() if index else pos
        for _ in range(2 if command.group(1) == "frac" else 1):
            start = pos
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == "{" and pos in closing:
                planned.append((start, pos, ""))
                pos = closing[pos] + 1
                continue
            token = _ARGUMENT_TOKEN_RE.match(text, pos)
            if token is None or token.group(0) in ("\\frac", "\\sqrt"):
                planned = []
                break
            planned.append((start, token.end(), "{" + token.group(0) + "}"))
            pos = token.end()
        edits.extend(edit for edit in planned if edit[2] or edit[1] > edit[0])
    if not edits:
        return text
    edits.sort()
    out, last = [], 0
    for start, end, replacement in edits:
        out.append(text[last:start])
        out.append(replacement)
        last = end
    out.append(text[last:])
    return "".join(out)


_BRACED_COMMAND_RE = re.compile(r"\\(frac|sqrt)(?![a-zA-Z])")
_ARGUMENT_TOKEN_RE = re.compile(r"\\[a-zA-Z]+|[0-9a-zA-Z]")
_ROOT_INDEX_RE = re.compile(r"\s*\[[^\[\]{}]{0,20}\]")


def _matching_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` -> position of its ``}`` (escaped ``\\{``/``\\}`` are not grouping braces)."""
    closing: dict[int, int] = {}
    stack: list[int] = []
    for match in re.finditer(r"\\[{}]|[{}]", text):
        if match.group(0) == "{":
            stack.append(match.start())
        elif match.group(0) == "}" and stack:
            closing[stack.pop()] = match.start()
    return closing


_ANGLE_IN_DEGREES_RE = re.compile(rf"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?:{_DEGREES_RE.pattern})")


def degrees_to_radians(span: str) -> str | None:
    """``90^\\circ`` -> ``\\frac{90\\pi}{180}``: every angle of ``span`` in radians.

    None when ``span`` has no degree mark, or one that does not follow a plain number.
    """
    converted = _ANGLE_IN_DEGREES_RE.sub(lambda m: f"\\frac{{{m.group('number')}\\pi}}{{180}}", span)
    if converted == span or _DEGREES_RE.search(converted):
        return None
    return converted


def split_top_level(text: str) -> list[str]:
    """``text`` split at its commas outside brackets and braces: ``"1, (2, 3)"`` -> ``["1", "(2, 3)"]``."""
    items, depth, start = [], 0, 0
    for match in _GROUPING_RE.finditer(text):
        token = match.group(0)
        if token == ",":
            if depth == 0:
                items.append(text[start : match.start()].strip())
                start = match.end()
        elif token in ("(", "[", "{", "\\{"):
            depth += 1
        else:
            depth -= 1
    items.append(text[start:].strip())
    return items


_GROUPING_RE = re.compile(r"\\[{}]|[()\[\]{},]")


def comparison_key(normalized: str) -> str:
    """The normalized span with insignificant whitespace removed.

    A space is kept (as one) only between two alphanumeric characters, where removing it
    could merge two tokens (``1 000``, ``\\pi r``). Equal keys mean the same LaTeX.
    """
    out: list[str] = []
    pending_space = False
    for ch in normalized:
        if ch.isspace():
            pending_space = True
            continue
        if pending_space and out and out[-1].isalnum() and ch.isalnum():
            out.append(" ")
        pending_space = False
        out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------------------------------
# A tiny evaluator for LaTeX expressions: numbers, \frac, \sqrt, \pi, one-letter variables,
# + - * / ^ and lists. Variables are evaluated at a few fixed sample points, so a value is
# a short vector; a constant has the same value at every point (and an exact one when it is
# rational).
# ---------------------------------------------------------------------------------------

_MAX_DEPTH = 40
_MAX_EXPONENT = 64
_MAX_EXACT_DIGITS = 200
# Above this many significant digits a decimal is not compared exactly: math-verify reads
# decimals as 15-digit floats, so a long literal's exact value is not what it compares.
_MAX_DECIMAL_DIGITS = 12
_POINTS = 3
# Letters math-verify does not read as plain variables: e (Euler), i/I (imaginary unit),
# E (its own constant). Upper case letters are read as their lower case (math-verify's rule).
_SPECIAL_LETTERS = frozenset("eEiI")

_TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<num>[0-9]+\.[0-9]+|[0-9]+|\.[0-9]+)"
    r"|(?P<cmd>\\(?:frac|sqrt|pi|cdot|times|div|infty|pm|cup|\{|\}))(?![a-zA-Z])"
    r"|(?P<var>[a-zA-Z])"
    r"|(?P<op>[-+*/^(){}\[\],])"
    r")"
)


class _Unsupported(Exception):
    """The span is outside the fast grammar: the fast path abstains."""


def _sample_value(letter: str, point: int) -> float:
    """A fixed, irregular value for ``letter`` at sample point ``point`` (both signs)."""
    code = ord(letter) - 96
    value = 0.61 + ((code * 0.7548776662 + point * 0.5698402910) % 1.0) * 2.4
    return -value if (code + point) % 2 else value


@dataclass(frozen=True)
class Scalar:
    """A value at each sample point (``approx``; NaN where undefined or not real).

    ``exact``: the rational value of a variable-free rational expression, else None.
    ``has_vars``: depends on a variable. ``has_decimal``: a decimal literal appears;
    ``decimal_literal``: the whole side is one decimal literal such as ``0.5`` (math-verify
    then compares after rounding).
    """

    approx: tuple[float, ...]
    exact: Fraction | None
    has_vars: bool = False
    has_decimal: bool = False
    decimal_literal: bool = False


@dataclass(frozen=True)
class Sequence:
    """A comma list, tuple, interval or set of values; ``brackets`` like ``"()"`` or ``""``."""

    items: tuple[Scalar, ...]
    brackets: str


def _tokenize(text: str) -> list[list[str]]:
    tokens: list[list[str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise _Unsupported(text[pos : pos + 10])
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "var":
            if value in _SPECIAL_LETTERS:
                raise _Unsupported(value)
            value = value.lower()
        tokens.append([kind, value])
        pos = m.end()
    return tokens


def _const(value: Fraction | float, exact: Fraction | None) -> Scalar:
    return _make((float(value),) * _POINTS, exact, False)


def _make(approx: tuple[float, ...], exact: Fraction | None, has_vars: bool, has_decimal: bool = False) -> Scalar:
    if exact is not None and (
        len(str(exact.numerator)) > _MAX_EXACT_DIGITS or len(str(exact.denominator)) > _MAX_EXACT_DIGITS
    ):
        raise _Unsupported("too large")
    if any(abs(x) > 1e150 for x in approx if x == x):
        raise _Unsupported("too large")
    if not has_vars and not all(math.isfinite(x) for x in approx):
        raise _Unsupported("undefined constant")
    return Scalar(tuple(approx), exact, has_vars, has_decimal)


def _combine(a: Scalar, b: Scalar, op) -> tuple[tuple[float, ...], bool, bool]:
    values = []
    for x, y in zip(a.approx, b.approx):
        try:
            values.append(op(x, y))
        except (ZeroDivisionError, OverflowError, ValueError):
            values.append(math.nan)
    return tuple(values), a.has_vars or b.has_vars, a.has_decimal or b.has_decimal


class _Parser:
    def __init__(self, tokens: list[list[str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    def peek(self) -> list[str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, value: str | None = None) -> list[str]:
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value):
            raise _Unsupported(f"expected {value}")
        self.pos += 1
        return tok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Unsupported("too deep")

    def expr(self) -> Scalar:
        self.enter()
        value = self.term()
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.take()
            rhs = self.term()
            value = _add(value, rhs) if tok[1] == "+" else _add(value, _neg(rhs))
        self.depth -= 1
        return value

    def term(self) -> Scalar:
        value = self.product()
        while (tok := self.peek()) is not None and tok[1] in ("*", "\\cdot", "\\times", "/", "\\div"):
            self.take()
            rhs = self.product()
            value = _div(value, rhs) if tok[1] in ("/", "\\div") else _mul(value, rhs)
        return value

    def product(self) -> Scalar:
        """Implicit products, binding tighter than * and / (``2/3\\pi`` is 2/(3 pi) to math-verify).

        math-verify reads number-number juxtaposition as a mixed number or a sum
        (``2\\frac{1}{2}`` = 5/2, ``2(3)`` = 5) and anything with a variable as a product
        (``2(x+1)``). Mixed numbers ``n\\frac{p}{q}`` are evaluated; other number-number
        juxtapositions make the fast path abstain.
        """
        start = self.pos
        value = self.unary()
        while (tok := self.peek()) is not None:
            if tok[1] in ("\\sqrt", "\\pi") or tok[0] == "var":
                value = _mul(value, self.unary())
            elif tok[1] == "\\frac" and self._is_mixed_number(start):
                value = _add(value, self.atom())
            elif tok[1] in ("\\frac", "(", "{"):
                rhs = self.unary()
                if not (value.has_vars or rhs.has_vars):
                    raise _Unsupported("number-number juxtaposition")
                value = _mul(value, rhs)
            elif tok[0] == "num":
                raise _Unsupported("juxtaposition")
            else:
                break
        return value

    def _is_mixed_number(self, start: int) -> bool:
        """An integer literal (just read, unsigned) followed by ``\\frac{int}{int}``."""
        if self.pos - start != 1 or not self.tokens[start][1].isdigit():
            return False
        nxt = self.tokens[self.pos + 1 : self.pos + 7]
        shape = [t[1] if t[0] != "num" else ("#" if t[1].isdigit() else "?") for t in nxt]
        return shape == ["{", "#", "}", "{", "#", "}"]

    def unary(self) -> Scalar:
        tok = self.peek()
        if tok is not None and tok[1] in ("+", "-"):
            self.take()
            self.enter()
            inner = self.unary()
            self.depth -= 1
            return inner if tok[1] == "+" else _neg(inner)
        return self.power()

    def power(self) -> Scalar:
        base = self.atom()
        if (tok := self.peek()) is not None and tok[1] == "^":
            self.take()
            nxt = self.peek()
            if nxt is None:
                raise _Unsupported("dangling ^")
            if nxt[1] == "{":
                exponent = self.group()
            elif nxt[0] == "num" and nxt[1].isdigit():
                self.take()
                # LaTeX binds one digit: 2^10 is 2^1 then 0; leave that to the slow path.
                if len(nxt[1]) != 1:
                    raise _Unsupported("multi-digit bare exponent")
                exponent = _const(Fraction(nxt[1]), Fraction(nxt[1]))
            else:
                raise _Unsupported("exponent")
            if (after := self.peek()) is not None and after[1] == "^":
                raise _Unsupported("tower")  # 9^9^9: never evaluate
            return _pow(base, exponent)
        return base

    def group(self) -> Scalar:
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def atom(self) -> Scalar:
        tok = self.peek()
        if tok is None:
            raise _Unsupported("empty")
        kind, text = tok
        if kind == "num":
            self.take()
            digits = text.replace(".", "").lstrip("0")
            has_decimal = "." in text
            if has_decimal and len(digits) > _MAX_DECIMAL_DIGITS:
                raise _Unsupported("long decimal")
            exact = Fraction(text)
            return _make((float(exact),) * _POINTS, exact, False, has_decimal)
        if kind == "var":
            self.take()
            return _make(tuple(_sample_value(text, k) for k in range(_POINTS)), None, True)
        if text == "\\pi":
            self.take()
            return _const(math.pi, None)
        if text == "\\frac":
            self.take()
            num = self._frac_arg()
            den = self._frac_arg()
            return _div(num, den)
        if text == "\\sqrt":
            self.take()
            index = None
            if (nxt := self.peek()) is not None and nxt[1] == "[":
                self.take("[")
                index = self.expr()
                self.take("]")
            radicand = self._frac_arg()
            return _root(radicand, index)
        if text == "(":
            self.take()
            value = self.expr()
            self.take(")")
            return value
        if text == "{":
            return self.group()
        raise _Unsupported(text)

    def _frac_arg(self) -> Scalar:
        """``{expr}``, a single digit or a single letter (``\\frac12``, ``\\frac43``, ``\\sqrt3``)."""
        tok = self.peek()
        if tok is not None and tok[1] == "{":
            return self.group()
        if tok is not None and tok[0] == "num" and tok[1].isdigit():
            digit = tok[1][0]
            if len(tok[1]) == 1:
                self.take()
            else:
                tok[1] = tok[1][1:]  # \frac43: the first digit is the numerator, the rest stays
            return _const(Fraction(digit), Fraction(digit))
        if tok is not None and tok[0] == "var":
            return self.atom()
        raise _Unsupported("argument")


def _neg(a: Scalar) -> Scalar:
    return _make(tuple(-x for x in a.approx), -a.exact if a.exact is not None else None, a.has_vars, a.has_decimal)


def _add(a: Scalar, b: Scalar) -> Scalar:
    exact = a.exact + b.exact if a.exact is not None and b.exact is not None else None
    approx, has_vars, has_decimal = _combine(a, b, lambda x, y: x + y)
    return _make(approx, exact, has_vars, has_decimal)


def _mul(a: Scalar, b: Scalar) -> Scalar:
    exact = a.exact * b.exact if a.exact is not None and b.exact is not None else None
    approx, has_vars, has_decimal = _combine(a, b, lambda x, y: x * y)
    return _make(approx, exact, has_vars, has_decimal)


def _div(a: Scalar, b: Scalar) -> Scalar:
    if b.exact == 0 or (not b.has_vars and b.approx[0] == 0):
        raise _Unsupported("division by zero")
    exact = a.exact / b.exact if a.exact is not None and b.exact is not None else None
    approx, has_vars, has_decimal = _combine(a, b, lambda x, y: x / y if abs(y) > 1e-12 else math.nan)
    return _make(approx, exact, has_vars, has_decimal)


def _pow(base: Scalar, exponent: Scalar) -> Scalar:
    if exponent.has_vars:
        raise _Unsupported("variable exponent")
    has_decimal = base.has_decimal or exponent.has_decimal
    if exponent.exact is not None and exponent.exact.denominator == 1:
        n = exponent.exact.numerator
        if abs(n) > _MAX_EXPONENT:
            raise _Unsupported("large exponent")
        if base.exact is not None:
            if base.exact == 0 and n < 0:
                raise _Unsupported("0 to a negative power")
            exact = base.exact**n
            return _make((float(exact),) * _POINTS, exact, False, has_decimal)
        approx, _, _ = _combine(base, exponent, lambda x, y: x**n if (x != 0 or n >= 0) else math.nan)
        return _make(approx, None, base.has_vars, has_decimal)
    e = exponent.approx[0]
    if abs(e) > _MAX_EXPONENT:
        raise _Unsupported("large exponent")
    approx, _, _ = _combine(base, exponent, lambda x, y: x**e if x > 0 else math.nan)
    return _make(approx, None, base.has_vars, has_decimal)


def _root(radicand: Scalar, index: Scalar | None) -> Scalar:
    n = 2
    if index is not None:
        if index.exact is None or index.exact.denominator != 1 or not 2 <= index.exact.numerator <= _MAX_EXPONENT:
            raise _Unsupported("root index")
        n = index.exact.numerator
    if not radicand.has_vars and radicand.approx[0] < 0:
        raise _Unsupported("root of a negative")  # complex (or odd-root conventions): slow path
    # A negative radicand at a sample point is "not real there" (NaN), never an odd root.
    approx = tuple(x ** (1.0 / n) if x >= 0 else math.nan for x in radicand.approx)
    exact = None
    if radicand.exact is not None:
        num = _int_root(radicand.exact.numerator, n)
        den = _int_root(radicand.exact.denominator, n)
        if num is not None and den is not None:
            exact = Fraction(num, den)
            approx = (float(exact),) * _POINTS
    return _make(approx, exact, radicand.has_vars, radicand.has_decimal)


def _int_root(value: int, n: int) -> int | None:
    if value < 0 or value >= 2**1000:
        return None
    guess = round(value ** (1.0 / n))
    for cand in (guess - 1, guess, guess + 1):
        if cand >= 0 and cand**n == value:
            return cand
    return None


def _split_top_level(tokens: list[list[str]]) -> list[list[list[str]]]:
    parts: list[list[list[str]]] = [[]]
    depth = 0
    for tok in tokens:
        if tok[1] in ("(", "[", "{", "\\{"):
            depth += 1
        elif tok[1] in (")", "]", "}", "\\}"):
            depth -= 1
        if tok[1] == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(tok)
    return parts


def _eval_tokens(tokens: list[list[str]]) -> Scalar:
    parser = _Parser(tokens)
    value = parser.expr()
    if parser.pos != len(tokens):
        raise _Unsupported("trailing tokens")
    return value


@dataclass(frozen=True)
class Matrix:
    """A ``pmatrix``/``bmatrix`` of values, row by row."""

    rows: tuple[tuple[Scalar, ...], ...]


@dataclass(frozen=True)
class Union:
    """A union of intervals: ``(0,9) \\cup (9,36)``."""

    parts: tuple[Sequence, ...]


Value = Scalar | Sequence | Matrix | Union

_MATRIX_RE = re.compile(r"\\begin\{(pmatrix|bmatrix|Bmatrix|matrix)\}(.*)\\end\{\1\}", re.DOTALL)
_INFINITY = float("inf")


def _eval_matrix(body: str) -> Matrix:
    rows = [row for row in re.split(r"\\\\", body)]
    if rows and not rows[-1].strip():
        rows.pop()
    cells = [[_eval_tokens(_tokenize(cell)) for cell in row.split("&")] for row in rows]
    if not cells or any(len(row) != len(cells[0]) for row in cells):
        raise _Unsupported("ragged matrix")
    return Matrix(tuple(tuple(row) for row in cells))


def _outer_brackets(tokens: list[list[str]]) -> str:
    """``"()"``-style when one bracket pair encloses the whole token list with a top-level comma."""
    first, last = tokens[0][1], tokens[-1][1]
    if first not in ("(", "[", "\\{") or last not in (")", "]", "\\}") or len(_split_top_level(tokens[1:-1])) < 2:
        return ""
    depth = 0
    for i, tok in enumerate(tokens):
        if tok[1] in ("(", "[", "{", "\\{"):
            depth += 1
        elif tok[1] in (")", "]", "}", "\\}"):
            depth -= 1
        if depth == 0 and i != len(tokens) - 1:
            return ""  # "(1,2)+(3,4)": the first pair closes early
    return first + last


def _eval_item(part: list[list[str]]) -> list[Scalar]:
    """One comma-separated item: a value, ``\\pm`` (two values) or ``\\infty`` (an interval end)."""
    texts = [t[1] for t in part]
    if texts in (["\\infty"], ["+", "\\infty"]):
        return [Scalar((_INFINITY,) * _POINTS, None)]
    if texts == ["-", "\\infty"]:
        return [Scalar((-_INFINITY,) * _POINTS, None)]
    depth = 0
    pm_at = []
    for i, tok in enumerate(part):
        if tok[1] in ("(", "[", "{", "\\{"):
            depth += 1
        elif tok[1] in (")", "]", "}", "\\}"):
            depth -= 1
        elif tok[1] == "\\pm" and depth == 0:
            pm_at.append(i)
    if not pm_at:
        return [_eval_tokens(part)]
    if len(pm_at) > 1:
        raise _Unsupported("several \\pm")
    left = _eval_tokens(part[: pm_at[0]]) if pm_at[0] else _const(Fraction(0), Fraction(0))
    right = _eval_tokens(part[pm_at[0] + 1 :])
    return [_add(left, right), _add(left, _neg(right))]


def _eval_list(tokens: list[list[str]]) -> Scalar | Sequence:
    brackets = _outer_brackets(tokens)
    body = tokens[1:-1] if brackets else tokens
    parts = _split_top_level(body)
    if any(not part for part in parts):
        raise _Unsupported("empty item")
    items = [item for part in parts for item in _eval_item(part)]
    if len(parts) == 1 and len(items) == 1 and not brackets:
        value = items[0]
        if not math.isfinite(value.approx[0]) and not value.has_vars:
            raise _Unsupported("bare infinity")
        is_literal = len(tokens) == 1 or (len(tokens) == 2 and tokens[0][1] == "-")
        if value.has_decimal and is_literal:
            value = Scalar(value.approx, value.exact, False, True, True)
        return value
    return Sequence(tuple(items), brackets or ("\\pm" if len(items) > len(parts) else ""))


def evaluate_expression(normalized: str) -> Value | None:
    """The value of a LaTeX span in the fast grammar, or None when it is outside it.

    Understands integers, decimals, ``\\frac`` (also ``\\frac12``), mixed numbers
    (``1\\frac{4}{5}``), ``\\sqrt`` and ``\\sqrt[n]``, ``\\pi``, one-letter variables (not
    e/i), ``+ - * / \\cdot \\times \\div ^``, parentheses and braces; top-level comma lists
    with optional ``()``, ``[]``, ``\\{\\}`` or mixed interval brackets, ``\\pm``, ``\\infty``
    as an interval end, unions of intervals, and ``pmatrix``/``bmatrix``. Anything else
    (text, percent, equations, subscripts, functions, complex numbers) returns None.
    """
    if len(normalized) > 500 or not normalized:
        return None
    try:
        matrix = _MATRIX_RE.fullmatch(normalized.strip())
        if matrix:
            return _eval_matrix(matrix.group(2))
        tokens = _tokenize(normalized)
        if not tokens:
            return None
        cups = [i for i, t in enumerate(tokens) if t[1] == "\\cup"]
        if cups:
            bounds = [-1, *cups, len(tokens)]
            pieces = [_eval_list(tokens[a + 1 : b]) for a, b in zip(bounds, bounds[1:])]
            if not all(isinstance(p, Sequence) and len(p.brackets) == 2 and len(p.items) == 2 for p in pieces):
                return None
            return Union(tuple(pieces))  # type: ignore[arg-type]
        return _eval_list(tokens)
    except (_Unsupported, ZeroDivisionError, OverflowError, ValueError, RecursionError, IndexError):
        return None


def _scalars_of(value: Value) -> tuple[Scalar, ...]:
    if isinstance(value, Scalar):
        return (value,)
    if isinstance(value, Sequence):
        return value.items
    if isinstance(value, Matrix):
        return tuple(cell for row in value.rows for cell in row)
    return tuple(item for part in value.parts for item in part.items)


def evaluate_constant(normalized: str) -> Value | None:
    """Like :func:`evaluate_expression` but None when a variable appears."""
    value = evaluate_expression(normalized)
    if value is None or any(item.has_vars for item in _scalars_of(value)):
        return None
    return value


# ---------------------------------------------------------------------------------------
# The fast decision
# ---------------------------------------------------------------------------------------


def _margin(a: float, b: float, float_rounding: int) -> float:
    """The largest difference math-verify could still call equal (decimal rounding), plus round-off."""
    return 10.0 ** (-float_rounding) + 1e-9 * max(1.0, abs(a), abs(b))


def _differ_somewhere(a: Scalar, b: Scalar, float_rounding: int) -> bool:
    """True when at some sample point both values are real and further apart than the margin."""
    return any(
        x == x and y == y and abs(x - y) > _margin(x, y, float_rounding) for x, y in zip(a.approx, b.approx)
    )


def _scalars_equal(a: Scalar, b: Scalar, float_rounding: int) -> bool | None:
    if a.exact is not None and b.exact is not None:
        if not a.has_decimal and not b.has_decimal:
            return a.exact == b.exact
        if a.exact == b.exact and (
            (a.decimal_literal or not a.has_decimal) and (b.decimal_literal or not b.has_decimal)
        ):
            return True
    if _differ_somewhere(a, b, float_rounding):
        return False
    return None


def _has_partner(x: Scalar, others: tuple[Scalar, ...], float_rounding: int) -> bool:
    """Could ``x`` equal some element of ``others``? (False only when it certainly cannot.)"""
    return any(_scalars_equal(x, y, float_rounding) is not False for y in others)


# A word answer: \text{east}, \text{(C)} (one letter only in a choice, and never e/E/i/I,
# which math-verify may read as constants).
_WORD_ANSWER_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{\s*(?:\(?[A-Za-z][A-Za-z ]*[A-Za-z]\)?|\(?[A-Za-z]\)?)\s*\}")
_SINGLE_LETTER_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{\s*\(?([A-Za-z])\)?\s*\}")
# a + bi written out: "6 - 5i", "1+274i", "2i", "-i".
_COMPLEX_RE = re.compile(
    r"(?:(?P<re>-?[0-9]+(?:\.[0-9]+)?)\s*(?P<sign>[-+])\s*|(?P<lead>-))?(?P<im>[0-9]+(?:\.[0-9]+)?)?\s*i"
)
# A number with a base subscript, "52_8", "4210_{5}": math-verify drops the subscript.
_SUBSCRIPT_BASE_RE = re.compile(r"(?P<digits>[0-9]+)\s*_\s*(?:\{\s*[0-9]+\s*\}|[0-9])")
_EQUATION_RE = re.compile(r"[^=<>]+=[^=<>]+")
_EXPONENT_RE = re.compile(r"\^\s*(?:\{[^{}]*\}|[0-9])")


def _word_versus(word: str, other: str, value: Value) -> bool | None:
    """A word or choice-letter answer (``\\text{east}``, ``\\text{(C)}``) against an evaluable span.

    math-verify reads the word as one symbol and compares it with the other side's text
    (or with a product of single letters spelling it), so it can never equal a number, a
    list, or an expression with a coefficient, a sum or a root. A lone ``e``/``E`` may be
    read as Euler's number and a lone ``i``/``I`` as the imaginary unit, so those are only
    ruled out against numbers they cannot be.
    """
    if not _WORD_ANSWER_RE.fullmatch(word):
        return None
    constant = not any(item.has_vars for item in _scalars_of(value))
    letter = _SINGLE_LETTER_RE.fullmatch(word)
    if letter and letter.group(1) in _SPECIAL_LETTERS:
        if not constant:
            return None
        if letter.group(1) in "eE" and isinstance(value, Scalar):
            euler = Scalar((math.e,) * _POINTS, None)
            return False if _differ_somewhere(euler, value, 6) else None
        return False
    if constant or not isinstance(value, Scalar):
        return False
    stripped = _EXPONENT_RE.sub("", other)
    if re.search(r"[0-9+\-]|\\frac|\\sqrt|\\pi", stripped):
        return False
    return None


def _compare_matrix(g: Value, p: Value, float_rounding: int) -> bool | None:
    if isinstance(g, Matrix) and isinstance(p, Matrix):
        if len(g.rows) != len(p.rows) or len(g.rows[0]) != len(p.rows[0]):
            return False
        verdicts = [_scalars_equal(a, b, float_rounding) for ra, rb in zip(g.rows, p.rows) for a, b in zip(ra, rb)]
        if False in verdicts:
            return False
        return True if all(v is True for v in verdicts) else None
    matrix, other = (g, p) if isinstance(g, Matrix) else (p, g)
    assert isinstance(matrix, Matrix)
    if (len(matrix.rows), len(matrix.rows[0])) == (1, 1):
        return None
    if isinstance(other, Scalar) or (isinstance(other, Sequence) and len(other.items) >= 2):
        # A matrix is never a number or an expression to math-verify (their difference does
        # not even exist), and a list of n >= 2 items compares with the one-element set {M}.
        return False
    return None


def _complex_parts(text: str) -> tuple[Fraction, Fraction] | None:
    m = _COMPLEX_RE.fullmatch(text.strip())
    if not m:
        return None
    real = Fraction(m.group("re")) if m.group("re") else Fraction(0)
    imag = Fraction(m.group("im")) if m.group("im") else Fraction(1)
    if m.group("sign") == "-" or m.group("lead"):
        imag = -imag
    return real, imag


def _special_versus(g_text: str, g: Value | None, p_text: str, p: Value | None, float_rounding: int) -> bool | None:
    """Forms outside the evaluator: word answers, complex literals, base subscripts."""
    if g is not None:
        return _word_versus(p_text, g_text, g) if _WORD_ANSWER_RE.fullmatch(p_text) else _special_one(p_text, g, float_rounding)
    if p is not None:
        return _word_versus(g_text, p_text, p) if _WORD_ANSWER_RE.fullmatch(g_text) else _special_one(g_text, p, float_rounding)
    gc, pc = _complex_parts(g_text), _complex_parts(p_text)
    if gc is not None and pc is not None:
        return False if gc != pc else None
    gs, ps = _SUBSCRIPT_BASE_RE.fullmatch(g_text.strip()), _SUBSCRIPT_BASE_RE.fullmatch(p_text.strip())
    if gs and ps:
        return False if int(gs.group("digits")) != int(ps.group("digits")) else None
    if (gc is not None and gc[1] != 0 and ps) or (pc is not None and pc[1] != 0 and gs):
        return False  # a + bi (b != 0) against a plain number
    return None


def _special_one(text: str, value: Value, float_rounding: int) -> bool | None:
    """``text`` is outside the evaluator, ``value`` is the other side's value."""
    constant = not any(item.has_vars for item in _scalars_of(value))
    parts = _complex_parts(text)
    if parts is not None:
        return False if parts[1] != 0 and constant and isinstance(value, Scalar) else None
    base = _SUBSCRIPT_BASE_RE.fullmatch(text.strip())
    if base and isinstance(value, Scalar):
        # Compared as the digits without the base (math-verify's reading); never claimed equal.
        digits = float(int(base.group("digits")))
        as_scalar = Scalar((digits,) * _POINTS, None)
        return False if _differ_somewhere(as_scalar, value, float_rounding) else None
    return None


def _well_ordered(value: Value) -> bool:
    """False for a bracketed pair that may be an empty interval (``(3, 1]``, ``[2, 2)``,
    ``(x, 5)``) and for mixed brackets around other than two items (``(1, 2, 3]``).

    math-verify reads ``(a, b)`` and ``[a, b]`` as an interval when ``a < b`` and as a tuple
    otherwise, but ``(a, b]`` and ``[a, b)`` with ``a >= b`` as the empty set, and two empty
    sets are equal whatever their ends: no value comparison can settle those. With a
    variable end the reading is unknown.
    """
    pairs = value.parts if isinstance(value, Union) else (value,) if isinstance(value, Sequence) else ()
    for pair in pairs:
        if pair.brackets in ("[)", "(]") and len(pair.items) != 2:
            return False  # "(1,2,3]" is no interval: math-verify parses it partly or not at all
        if pair.brackets in ("()", "[]", "[)", "(]") and len(pair.items) == 2:
            low, high = pair.items
            if low.has_vars or high.has_vars:
                return False
            if (isinstance(value, Union) or pair.brackets in ("[)", "(]")) and not low.approx[0] < high.approx[0]:
                return False
    return True


def _compare_values(g: Value, p: Value, float_rounding: int) -> bool | None:
    if not (_well_ordered(g) and _well_ordered(p)):
        return None
    if isinstance(g, Matrix) or isinstance(p, Matrix):
        return _compare_matrix(g, p, float_rounding)
    if isinstance(g, Union) or isinstance(p, Union):
        other = p if isinstance(g, Union) else g
        if isinstance(other, Scalar) and not other.has_vars:
            return False  # a union of intervals is never a number
        return None
    if isinstance(g, Scalar) and isinstance(p, Scalar):
        return _scalars_equal(g, p, float_rounding)
    g_items, p_items = _scalars_of(g), _scalars_of(p)
    if all(_has_partner(x, p_items, float_rounding) for x in g_items) and all(
        _has_partner(y, g_items, float_rounding) for y in p_items
    ):
        return None
    return False


def _compare_equations(gold: str, pred: str, float_rounding: int) -> bool | None:
    """math-verify's equation rules, for single-'=' spans.

    A prediction ``lhs = v`` counts as ``v`` when the gold is not an equation; a gold
    assignment (a left side without numbers: ``y = v``, ``f(x) = v``) counts as ``v``
    against a prediction that is not an equation; any other gold equation
    (``5x-7y+11z+4=0``) never equals a plain number.
    """
    g_eq, p_eq = _EQUATION_RE.fullmatch(gold), _EQUATION_RE.fullmatch(pred)
    if g_eq and p_eq:
        return None
    if p_eq:
        return _compare_texts(gold, pred.rsplit("=", 1)[1].strip(), float_rounding, allow_equations=False)
    if not g_eq:
        return None  # chains "a = b = c" and other relations: the slow path
    lhs, rhs = (side.strip() for side in gold.split("="))
    if not re.search(r"[0-9]", lhs):
        # math-verify's "assignment": a left side made of symbols only (x, f(x), |AB|, NO/BO).
        return _compare_texts(rhs, pred, float_rounding, allow_equations=False)
    value = evaluate_constant(pred)
    return False if isinstance(value, Scalar) else None


def _compare_texts(gold: str, pred: str, float_rounding: int, allow_equations: bool = True) -> bool | None:
    if comparison_key(gold) == comparison_key(pred):
        return True
    if "%" in gold or "%" in pred:
        return None  # math-verify's percent rules (28% = 28 = 0.28) stay with the slow path
    if "=" in gold or "=" in pred:
        return _compare_equations(gold, pred, float_rounding) if allow_equations else None
    g = evaluate_expression(gold)
    p = evaluate_expression(pred)
    if g is None or p is None:
        return _special_versus(gold, g, pred, p, float_rounding)
    return _compare_values(g, p, float_rounding)


def fast_compare(gold: str, pred: str, float_rounding: int = 6) -> bool | None:
    """Decide gold == pred cheaply, or return None to defer to the slow path.

    Both arguments are outputs of :func:`normalize_answer`. ``True``: identical keys, equal
    exact constants, or matrices of those. ``False``: values that cannot match under any
    reading math-verify applies (ordered tuple, interval, unordered set): some element has
    no partner within the rounding margin at some sample point; matrices of different
    shapes or a differing cell; a matrix or a union of intervals against a number; a word
    answer (``\\text{east}``) against a number or an arithmetic expression; a complex
    number against a real one. Equations follow math-verify's rules
    (:func:`_compare_equations`).
    """
    if not gold or not pred:
        return None
    return _compare_texts(gold, pred, float_rounding)
