"""The 25 IFEval instruction checks and their registry.

Each check is a pure function ``check(response, **params) -> bool`` registered under its
IFEval instruction id (``"keywords:existence"``, ``"length_constraints:number_words"``, ...)
together with the parameters it reads from IFEval's ``kwargs``. The semantics are those of
the official implementation (google-research ``instruction_following_eval``), including its
quirks: keyword existence is a case-insensitive substring test, forbidden words are matched on
word boundaries, a bullet is any line starting with ``*`` or ``-``, a postscript marker may
appear anywhere, a JSON answer may sit in a ```` ```json ```` fence, and so on; each
docstring states the rule.

Deliberate differences from the official code, all for inputs the IFEval data never holds:

* Missing, ``None``, negative or malformed parameters raise :class:`InstructionArgumentError`
  (the official code silently draws a random value, which makes a verifier non-deterministic).
  ``None`` values and keys an instruction does not take are ignored, so rows of the Hugging
  Face copy of IFEval (which lists every key, mostly ``None``) work unchanged.
* Keywords, forbidden words and custom postscript markers are matched literally (the official
  code compiles them as regular expressions; for plain words, as in all IFEval rows, the two
  agree, and a literal match cannot blow up on a hostile pattern).
* Patterns that backtrack quadratically in the official code (bullets, placeholders, titles,
  postscripts) are computed with equivalent linear scans.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from reasonrl.verifiers.ifeval import text as text_utils

RELATIONS = ("less than", "at least")
CONSTRAINED_RESPONSE_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


class InstructionArgumentError(ValueError):
    """An instruction id is unknown or its kwargs are missing / malformed; the message names which."""


@dataclass(frozen=True)
class InstructionSpec:
    """One registered instruction: its id, its check and the kwargs the check takes.

    ``params`` maps each kwarg name to its kind: ``"int"`` (a non-negative integer),
    ``"str"``, ``"relation"`` (one of :data:`RELATIONS`), ``"words"`` (a non-empty list of
    strings) or ``"char"`` (a single character).
    """

    id: str
    check: Callable[..., bool]
    params: dict[str, str]
    summary: str


INSTRUCTIONS: dict[str, InstructionSpec] = {}


def _instruction(instruction_id: str, **params: str) -> Callable[[Callable[..., bool]], Callable[..., bool]]:
    def decorator(check: Callable[..., bool]) -> Callable[..., bool]:
        summary = (check.__doc__ or "").strip().split("\n")[0]
        INSTRUCTIONS[instruction_id] = InstructionSpec(instruction_id, check, dict(params), summary)
        return check

    return decorator


def _compare(count: int, relation: str, threshold: int) -> bool:
    return count < threshold if relation == "less than" else count >= threshold


# --------------------------------------------------------------------------------------------
# keywords
# --------------------------------------------------------------------------------------------


@_instruction("keywords:existence", keywords="words")
def keywords_present(response: str, keywords: list[str]) -> bool:
    """Every keyword occurs, ignoring case, anywhere (a substring: "cat" is found in "category")."""
    return all(re.search(re.escape(k), response, flags=re.IGNORECASE) for k in keywords)


@_instruction("keywords:frequency", keyword="str", frequency="int", relation="relation")
def keyword_frequency(response: str, keyword: str, frequency: int, relation: str) -> bool:
    """The keyword occurs (case-insensitive, non-overlapping substrings) less than / at least N times."""
    count = len(re.findall(re.escape(keyword.strip()), response, flags=re.IGNORECASE))
    return _compare(count, relation, frequency)


@_instruction("keywords:forbidden_words", forbidden_words="words")
def forbidden_words_absent(response: str, forbidden_words: list[str]) -> bool:
    """None of the words occurs as a whole word (``\\bword\\b``), ignoring case."""
    return not any(
        re.search(r"\b" + re.escape(w) + r"\b", response, flags=re.IGNORECASE) for w in forbidden_words
    )


@_instruction("keywords:letter_frequency", letter="char", let_frequency="int", let_relation="relation")
def letter_frequency(response: str, letter: str, let_frequency: int, let_relation: str) -> bool:
    """The letter occurs (case-insensitive) less than / at least N times."""
    return _compare(response.lower().count(letter.lower()), let_relation, let_frequency)


# --------------------------------------------------------------------------------------------
# language and letter case
# --------------------------------------------------------------------------------------------


@_instruction("language:response_language", language="str")
def response_language(response: str, language: str) -> bool:
    """langdetect assigns the response the given ISO 639-1 code (undetectable text counts as followed)."""
    detected = text_utils.detect_language(response)
    return detected is None or detected == language


@_instruction("change_case:english_capital")
def english_capital(response: str) -> bool:
    """All cased characters are capitals (``str.isupper``) and the text is detected as English."""
    if not response.isupper():
        return False
    detected = text_utils.detect_language(response)
    return detected is None or detected == "en"


@_instruction("change_case:english_lowercase")
def english_lowercase(response: str) -> bool:
    """All cased characters are lower case (``str.islower``) and the text is detected as English."""
    if not response.islower():
        return False
    detected = text_utils.detect_language(response)
    return detected is None or detected == "en"


@_instruction("change_case:capital_word_frequency", capital_frequency="int", capital_relation="relation")
def capital_word_frequency(response: str, capital_frequency: int, capital_relation: str) -> bool:
    """Words in all capitals (NLTK-style tokens; "I" and "A" count) occur less than / at least N times."""
    return _compare(text_utils.count_capital_words(response), capital_relation, capital_frequency)


# --------------------------------------------------------------------------------------------
# length constraints
# --------------------------------------------------------------------------------------------


@_instruction("length_constraints:number_sentences", num_sentences="int", relation="relation")
def number_sentences(response: str, num_sentences: int, relation: str) -> bool:
    """The Punkt-style sentence count is less than / at least N."""
    return _compare(text_utils.count_sentences(response), relation, num_sentences)


@_instruction("length_constraints:number_words", num_words="int", relation="relation")
def number_words(response: str, num_words: int, relation: str) -> bool:
    """The number of ``\\w+`` words is less than / at least N."""
    return _compare(text_utils.count_words(response), relation, num_words)


_MARKDOWN_DIVIDER_RE = re.compile(r"\s?\*\*\*\s?")


@_instruction("length_constraints:number_paragraphs", num_paragraphs="int")
def number_paragraphs(response: str, num_paragraphs: int) -> bool:
    """Exactly N paragraphs separated by the markdown divider ``***``; an empty paragraph
    between two dividers fails, an empty one at either end is not counted."""
    parts = _MARKDOWN_DIVIDER_RE.split(response)
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index in (0, len(parts) - 1):
                count -= 1
            else:
                return False
    return count == num_paragraphs


_FIRST_WORD_STOP = frozenset(".,?!'\"")


@_instruction(
    "length_constraints:nth_paragraph_first_word", num_paragraphs="int", nth_paragraph="int", first_word="str"
)
def nth_paragraph_first_word(response: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> bool:
    """Exactly N non-empty paragraphs separated by blank lines (``\\n\\n``), and paragraph n
    (1-based, counted among all ``\\n\\n`` pieces) starts with the word, ignoring case and quotes."""
    pieces = response.split("\n\n")
    count = sum(1 for piece in pieces if piece.strip())
    if nth_paragraph > count:
        return False
    paragraph = pieces[nth_paragraph - 1].strip()
    if not paragraph:
        return False
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    stop = next((i for i, ch in enumerate(word) if ch in _FIRST_WORD_STOP), len(word))
    return count == num_paragraphs and word[:stop].lower() == first_word.lower()


# --------------------------------------------------------------------------------------------
# detectable content
# --------------------------------------------------------------------------------------------


def count_placeholders(response: str) -> int:
    """Number of ``[...]`` placeholders, matched like ``re.findall(r"\\[.*?\\]")``: within one line,
    each ``[`` pairs with the nearest following ``]``, scanning on from there."""
    count = 0
    for line in response.split("\n"):
        start = line.find("[")
        while start >= 0:
            end = line.find("]", start + 1)
            if end < 0:
                break
            count += 1
            start = line.find("[", end + 1)
    return count


@_instruction("detectable_content:number_placeholders", num_placeholders="int")
def number_placeholders(response: str, num_placeholders: int) -> bool:
    """At least N square-bracket placeholders such as ``[address]`` (brackets on one line)."""
    return count_placeholders(response) >= num_placeholders


_PPS_RE = re.compile(r"p\.\s?p\.\s?s")
_PS_RE = re.compile(r"p\.\s?s\.")


@_instruction("detectable_content:postscript", postscript_marker="str")
def postscript(response: str, postscript_marker: str) -> bool:
    """The marker occurs anywhere, ignoring case; ``P.P.S`` also matches "p. p. s", ``P.S.`` also "p. s."."""
    marker = postscript_marker.strip()
    lowered = response.lower()
    if marker == "P.P.S":
        return _PPS_RE.search(lowered) is not None
    if marker == "P.S.":
        return _PS_RE.search(lowered) is not None
    return marker.lower() in lowered


# --------------------------------------------------------------------------------------------
# detectable format
# --------------------------------------------------------------------------------------------

_NON_SPACE_RE = re.compile(r"\S")


def _count_line_prefixed(response: str, is_bullet_at: Callable[[int], bool], body_from: int) -> int:
    """Count matches of ``^\\s*<bullet>.*$`` (MULTILINE) as ``re.findall`` would, in linear time.

    ``\\s*`` may run over blank lines, so each try lands on the first non-space character after
    a line start; when that is not a bullet, every line start before it fails the same way.
    ``body_from`` is the bullet's width (the ``.*`` runs from there to the end of its line).
    """
    count = 0
    pos = 0
    size = len(response)
    while pos <= size:
        if pos > 0 and response[pos - 1] != "\n":
            newline = response.find("\n", pos)
            if newline < 0:
                break
            pos = newline + 1
        found = _NON_SPACE_RE.search(response, pos)
        if found is None:
            break
        q = found.start()
        if is_bullet_at(q):
            count += 1
            end = response.find("\n", q + body_from)
            pos = size if end < 0 else end
            if end < 0:
                break
        else:
            pos = q + 1
    return count


def count_bullets(response: str) -> int:
    """Number of markdown bullet lines: a line whose first non-space is ``*`` not followed by
    another ``*``, or ``-`` (so a ``---`` rule counts too, as in the official check)."""
    size = len(response)
    stars = _count_line_prefixed(
        response, lambda q: response[q] == "*" and q + 1 < size and response[q + 1] != "*", 2
    )
    dashes = _count_line_prefixed(response, lambda q: response[q] == "-", 1)
    return stars + dashes


@_instruction("detectable_format:number_bullet_lists", num_bullets="int")
def number_bullet_lists(response: str, num_bullets: int) -> bool:
    """Exactly N bullet lines (``* item`` or ``- item``)."""
    return count_bullets(response) == num_bullets


@_instruction("detectable_format:constrained_response")
def constrained_response(response: str) -> bool:
    """Contains one of "My answer is yes.", "My answer is no.", "My answer is maybe."."""
    stripped = response.strip()
    return any(option in stripped for option in CONSTRAINED_RESPONSE_OPTIONS)


_HIGHLIGHT_RE = re.compile(r"\*[^\n*]*\*")
_DOUBLE_HIGHLIGHT_RE = re.compile(r"\*\*[^\n*]*\*\*")


def count_highlights(response: str) -> int:
    """Number of non-blank ``*highlighted*`` spans on one line, plus non-blank ``**bold**`` spans,
    as in the current official check (``**bold**`` counts once: the single-asterisk pattern
    only sees the two empty ``**`` there)."""
    single = sum(1 for m in _HIGHLIGHT_RE.finditer(response) if m.group().strip("*").strip())
    double = sum(1 for m in _DOUBLE_HIGHLIGHT_RE.finditer(response) if m.group()[2:-2].strip())
    return single + double


@_instruction("detectable_format:number_highlighted_sections", num_highlights="int")
def number_highlighted_sections(response: str, num_highlights: int) -> bool:
    """At least N highlighted sections ``*like this*`` (see :func:`count_highlights`)."""
    return count_highlights(response) >= num_highlights


@_instruction("detectable_format:multiple_sections", section_spliter="str", num_sections="int")
def multiple_sections(response: str, section_spliter: str, num_sections: int) -> bool:
    """At least N section headers "<spliter> <number>" (e.g. "SECTION 1"), case-sensitive."""
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.findall(pattern, response)) >= num_sections


_JSON_FENCE_PREFIXES = ("```json", "```Json", "```JSON", "```")


@_instruction("detectable_format:json_format")
def json_format(response: str) -> bool:
    """The whole response parses as JSON, optionally inside one markdown code fence."""
    value = response.strip()
    for prefix in _JSON_FENCE_PREFIXES:  # applied one after another, like chained removeprefix
        value = value.removeprefix(prefix)
    value = value.removesuffix("```").strip()
    try:
        json.loads(value)
    except (ValueError, RecursionError):
        # RecursionError: JSON nested thousands deep; the official check would crash instead.
        return False
    return True


def find_titles(response: str) -> list[str]:
    """The ``<<...>>`` spans, matched like ``re.findall(r"<<[^\\n]+>>")`` in linear time: per line,
    from the first ``<<`` to the last ``>>`` that leaves at least one character between them."""
    titles = []
    for line in response.split("\n"):
        start = line.find("<<")
        if start < 0:
            continue
        end = line.rfind(">>")
        if end >= start + 3:
            titles.append(line[start : end + 2])
    return titles


@_instruction("detectable_format:title")
def title(response: str) -> bool:
    """Contains a title in double angular brackets, ``<<title>>``, with some non-blank text."""
    return any(t.lstrip("<").rstrip(">").strip() for t in find_titles(response))


# --------------------------------------------------------------------------------------------
# combination, start/end, punctuation
# --------------------------------------------------------------------------------------------


@_instruction("combination:two_responses")
def two_responses(response: str) -> bool:
    """Exactly two different non-empty responses separated by ``******`` (no empty one between)."""
    parts = response.split("******")
    kept = []
    for index, part in enumerate(parts):
        if part.strip():
            kept.append(part)
        elif index not in (0, len(parts) - 1):
            return False
    return len(kept) == 2 and kept[0].strip() != kept[1].strip()


@_instruction("combination:repeat_prompt", prompt_to_repeat="str")
def repeat_prompt(response: str, prompt_to_repeat: str) -> bool:
    """The response starts with the request, repeated word for word (ignoring case and outer spaces)."""
    return response.strip().lower().startswith(prompt_to_repeat.strip().lower())


@_instruction("startend:end_checker", end_phrase="str")
def end_checker(response: str, end_phrase: str) -> bool:
    """The response ends with the phrase, ignoring case, outer spaces and outer double quotes."""
    return response.strip().strip('"').lower().endswith(end_phrase.strip().lower())


@_instruction("startend:quotation")
def quotation(response: str) -> bool:
    """The stripped response starts and ends with a double quote (and is longer than one character)."""
    stripped = response.strip()
    return len(stripped) > 1 and stripped[0] == '"' and stripped[-1] == '"'


@_instruction("punctuation:no_comma")
def no_comma(response: str) -> bool:
    """No ASCII comma anywhere."""
    return "," not in response


# --------------------------------------------------------------------------------------------
# kwargs resolution
# --------------------------------------------------------------------------------------------


def _as_int(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise InstructionArgumentError(f"{where} must be an integer, got {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value.strip())
    else:
        raise InstructionArgumentError(f"{where} must be an integer, got {value!r}")
    if number < 0:
        raise InstructionArgumentError(f"{where} must be >= 0, got {number}")
    return number


def _coerce(kind: str, value: Any, where: str) -> Any:
    if kind == "int":
        return _as_int(value, where)
    if kind == "relation":
        if value not in RELATIONS:
            raise InstructionArgumentError(f"{where} must be one of {list(RELATIONS)}, got {value!r}")
        return value
    if kind == "words":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(w, str) and w for w in value):
            raise InstructionArgumentError(f"{where} must be a non-empty list of non-empty strings, got {value!r}")
        return list(value)
    if kind == "char":
        if not isinstance(value, str) or len(value.strip()) != 1:
            raise InstructionArgumentError(f"{where} must be a single character, got {value!r}")
        return value.strip()
    if not isinstance(value, str) or not value.strip():
        raise InstructionArgumentError(f"{where} must be a non-empty string, got {value!r}")
    return value


def resolve_kwargs(
    instruction_id: str, kwargs: Mapping[str, Any] | None, prompt: str | None = None, where: str = ""
) -> dict[str, Any]:
    """Validated keyword arguments for one instruction's check.

    ``None`` values and keys the instruction does not take are dropped (IFEval rows from the
    Hugging Face hub carry every key, mostly ``None``). ``combination:repeat_prompt`` falls
    back to ``prompt`` when its ``prompt_to_repeat`` is absent. Raises
    :class:`InstructionArgumentError` naming the instruction, the key and the valid choices.
    """
    label = f"{where}instruction {instruction_id!r}"
    spec = INSTRUCTIONS.get(instruction_id)
    if spec is None:
        raise InstructionArgumentError(
            f"{where}unknown instruction id {instruction_id!r}; valid ids: {', '.join(sorted(INSTRUCTIONS))}"
        )
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise InstructionArgumentError(f"{label}: kwargs must be an object, got {type(kwargs).__name__}")
    given = {k: v for k, v in kwargs.items() if v is not None and k in spec.params}
    if instruction_id == "combination:repeat_prompt" and "prompt_to_repeat" not in given and prompt:
        given["prompt_to_repeat"] = prompt
    resolved = {}
    for name, kind in spec.params.items():
        if name not in given:
            raise InstructionArgumentError(
                f"{label}: missing kwarg {name!r} (takes {', '.join(repr(p) for p in spec.params)})"
            )
        resolved[name] = _coerce(kind, given[name], f"{label}: kwarg {name!r}")
    if instruction_id == "length_constraints:nth_paragraph_first_word":
        if not 1 <= resolved["nth_paragraph"] <= resolved["num_paragraphs"]:
            raise InstructionArgumentError(
                f"{label}: kwarg 'nth_paragraph' must be between 1 and num_paragraphs "
                f"({resolved['num_paragraphs']}), got {resolved['nth_paragraph']}"
            )
    return resolved


def check_instruction(
    instruction_id: str, response: str, kwargs: Mapping[str, Any] | None = None, prompt: str | None = None
) -> bool:
    """Strict verdict for one instruction on one response (False for a blank response, as in IFEval)."""
    params = resolve_kwargs(instruction_id, kwargs, prompt)
    return bool(response.strip()) and INSTRUCTIONS[instruction_id].check(response, **params)
