"""Text measurements the IFEval instructions are defined on: words, sentences, capital words, language.

The official IFEval code counts with NLTK (``\\w+`` words, the pretrained English Punkt sentence
model, NLTK's Treebank-style word tokenizer) and detects languages with ``langdetect``. NLTK's
pretrained data cannot be shipped or downloaded here, so this module re-implements what the
counts depend on (following NLTK 3.10):

* :func:`count_words` is exact (the official tokenizer is the plain regex ``\\w+``).
* :func:`count_sentences` follows the Punkt decision procedure (candidate end marks, the word
  before and the token after each one, abbreviation / ellipsis / initial / ordinal-number
  rules, boundary realignment) with a hand-written English abbreviation list and a small
  model of the learned "orthographic context" in place of the trained parameters. With the
  same tables given to NLTK's own ``PunktSentenceTokenizer`` the two agree exactly (checked in
  the tests on every IFEval prompt and GPT-4 response and on random text); against the trained
  English model they can differ after abbreviations our list lacks or has extra.
* :func:`count_capital_words` splits words where NLTK's ``word_tokenize`` splits them (brackets,
  quotes, most punctuation, contractions such as ``n't`` / ``'s`` / ``cannot``) and counts the
  tokens for which ``str.isupper()`` holds, as the official check does.
* :func:`detect_language` calls ``langdetect`` (the official detector) through a private,
  seeded detector factory, so verdicts are deterministic and the global ``langdetect`` state
  of the caller is left alone.

Every scan here runs in linear time on adversarial input (a 1 MB response).
"""
from __future__ import annotations

import bisect
import functools
import re
import string
from typing import Any, Iterator

# --------------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"\w+")


def count_words(text: str) -> int:
    """Number of ``\\w+`` runs (letters, digits, underscore; Unicode-aware), as IFEval counts words."""
    return sum(1 for _ in _WORD_RE.finditer(text))


# --------------------------------------------------------------------------------------------
# Sentences (Punkt-style)
# --------------------------------------------------------------------------------------------

# Characters that end a word token for Punkt and that, right after a sentence-end character,
# make it a candidate boundary (closing brackets, quotes, ``*``, ``:``, ``@``, ``?``, ``!``...).
_NON_WORD_CHARS = "[)\";}\\]*:@'({\\[?!\u2018\u2019\u201c\u201d\xab\xbb]"
# Runs that form one token of their own: dashes, dot runs, spaced dot runs (". . .").
_MULTI_CHAR_PUNCT = r"(?:-{2,}|\.{2,}|(?:\.\s){2,}\.)"
# Characters that cannot begin a word token.
_NOT_WORD_START = "[^(\"`{\\[:;&#*@)}\\]\\-,]"

_PUNKT_WORD_RE = re.compile(
    rf"""{_MULTI_CHAR_PUNCT}
    | (?={_NOT_WORD_START})\S+?
      (?=\s|$|{_NON_WORD_CHARS}|{_MULTI_CHAR_PUNCT}|,(?=$|\s|{_NON_WORD_CHARS}|{_MULTI_CHAR_PUNCT}))
    | \S""",
    re.VERBOSE,
)

# A sentence-end character that may end a sentence: followed by punctuation, or by whitespace
# and a next token (captured, so the next sentence can start there).
_CANDIDATE_RE = re.compile(rf"[.?!](?=(?P<after>{_NON_WORD_CHARS}|\s+(?P<next>\S+)))")

# Closing punctuation after a boundary that belongs to the sentence before it.
_REALIGN_RE = re.compile("[\"')\\]}\u2018\u2019\u201c\u201d\xab\xbb]+?(?:\\s+|(?=--)|$)", re.MULTILINE)

_NUMERIC_TOKEN_RE = re.compile(r"^-?[.,]?\d[\d,.-]*\.?$")
_INITIAL_RE = re.compile(r"[^\W\d]\.$")
_ELLIPSIS_RE = re.compile(r"\.\.+$")
_NUMBER_TYPE = "##number##"
_SENTENCE_END_TOKENS = frozenset(".?!")
_NEVER_SENTENCE_START = frozenset(";:,.!?")

# Words (lower-cased, without the final period) after which a period does not end a sentence
# unless the next word is a typical sentence starter. Written for English prose of the kind
# chat models produce; Punkt's trained list is larger. Abbreviations that are also everyday
# words ("no", "ill", "mass", "sun", "art", "min") are left out: after them a period far more
# often ends a sentence.
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr prof rev hon gen col lt sgt capt cmdr adm gov sen rep pres st jr sr
    inc ltd co corp bros assn dept univ
    e.g i.e vs cf viz al approx misc etc
    u.s u.k u.n u.s.a d.c l.a n.y a.m p.m ph.d b.a m.a b.s m.s m.d
    jan feb apr jun jul aug sep sept oct nov dec mon tue tues thu thurs fri
    nos vol vols pp fig figs eds
    mt ft ave blvd rd hwy sq lb lbs oz qt
    calif colo conn fla okla penn tenn tex ariz
    """.split()
)

# Common English words: seen in lower case in running text (Punkt's "occurs lower-case" flag).
# A capitalised one after an initial means a new sentence, not a name.
_COMMON_WORDS = frozenset(
    """
    a about above after again against all also although always am an and another any are
    around as at back be because been before being below between both but by can could did
    do does doing down during each either even every few first for from further had has have
    having he her here hers herself him himself his how however i if in instead into is it its
    itself just last later let like many may maybe me might more most much must my myself
    never next no nor not now of off often on once one only or other others our ours out over
    own perhaps please rather really same second she should since so some still such than
    that the their theirs them themselves then there therefore these they third this those
    though through thus to today too under unless until up upon us very was we well were what
    whatever when where whether which while who whom whose why will with within without would
    yes yet you your yours yourself additionally finally furthermore meanwhile moreover
    overall nevertheless nonetheless otherwise similarly consequently instead here's it's
    """.split()
)

# Capitalised words that Punkt treats as starting a new sentence even after an abbreviation or
# an ellipsis (frequent sentence starters that are otherwise written in lower case).
_SENTENCE_STARTERS = frozenset(
    """
    the this that these those it its he she they we there here but and or so however
    in on at for if when while as after before a an his her their our my your what how why
    where who which each some many most all also finally first then now today yes no
    additionally furthermore moreover meanwhile overall instead
    """.split()
)


class _Token:
    """One Punkt word token with the annotations the boundary decision uses."""

    __slots__ = ("text", "type", "period_final", "sentbreak", "abbr", "ellipsis")

    def __init__(self, text: str) -> None:
        self.text = text
        self.type = _NUMBER_TYPE if _NUMERIC_TOKEN_RE.match(text) else text.lower()
        self.period_final = text.endswith(".")
        self.sentbreak = False
        self.abbr = False
        self.ellipsis = False

    @property
    def type_no_period(self) -> str:
        if len(self.type) > 1 and self.type.endswith("."):
            return self.type[:-1]
        return self.type

    @property
    def type_no_sentperiod(self) -> str:
        return self.type_no_period if self.sentbreak else self.type

    @property
    def first_upper(self) -> bool:
        return self.text[0].isupper()

    @property
    def first_lower(self) -> bool:
        return self.text[0].islower()


def _punkt_words(text: str) -> Iterator[_Token]:
    """Punkt word tokens of ``text``, line by line, produced lazily."""
    for line in text.split("\n"):
        if line.strip():
            for m in _PUNKT_WORD_RE.finditer(line):
                yield _Token(m.group())


def _type_annotation(token: _Token) -> None:
    """Decisions from the token alone: end marks break, known abbreviations do not, dot runs are ellipses."""
    text = token.text
    if text in _SENTENCE_END_TOKENS:
        token.sentbreak = True
    elif _ELLIPSIS_RE.match(text):
        token.ellipsis = True
    elif token.period_final and not text.endswith(".."):
        stem = text[:-1].lower()
        if stem in _ABBREVIATIONS or stem.split("-")[-1] in _ABBREVIATIONS:
            token.abbr = True
        else:
            token.sentbreak = True


def _starts_sentence(token: _Token) -> bool | None:
    """Orthographic evidence that ``token`` begins a sentence: True, False, or None (unknown)."""
    if token.text in _NEVER_SENTENCE_START:
        return False
    if token.first_upper and token.type_no_sentperiod in _SENTENCE_STARTERS:
        return True
    if token.first_lower:
        # Lower-case words are, in practice, always seen capitalised somewhere or never seen
        # starting a sentence in lower case: no sentence starts here.
        return False
    return None


def _context_annotation(token: _Token, following: _Token) -> None:
    """Revise the decision for a period-final token from the token that follows it."""
    if not token.period_final:
        return
    is_initial = bool(_INITIAL_RE.match(token.text))
    if (token.abbr or token.ellipsis) and not is_initial:
        if _starts_sentence(following):
            token.sentbreak = True
            return
    if is_initial or token.type_no_period == _NUMBER_TYPE:
        starts = _starts_sentence(following)
        if starts is False:
            token.sentbreak = False
            token.abbr = True
        elif (
            starts is None
            and is_initial
            and following.first_upper
            and following.type_no_sentperiod not in _COMMON_WORDS
        ):
            # "J. Bach": an initial before a word never written in lower case is part of a name.
            token.sentbreak = False
            token.abbr = True


def _contains_sentence_break(context: str) -> bool:
    """True when some token of ``context`` other than its last ends a sentence.

    Tokens are produced and annotated lazily, so a megabyte of "!!!!" is decided at the first pair.
    """
    previous = None
    for token in _punkt_words(context):
        _type_annotation(token)
        if previous is not None:
            _context_annotation(previous, token)
            if previous.sentbreak:
                return True
        previous = token
    return False


_ASCII_WHITESPACE_RE = re.compile("[%s]" % re.escape(string.whitespace))


def _candidate_contexts(text: str) -> Iterator[tuple[re.Match, str]]:
    """Yield ``(match, context)`` for each candidate boundary, where ``context`` is the word before,
    the end mark, and what follows it. Candidates inside one run of end marks ("!!!") collapse
    into the last one.

    The word before a candidate starts after the last ASCII whitespace since the previous
    candidate. Punkt does not tell "no whitespace" from "whitespace right at the previous
    candidate" (both give offset 0) and then reaches back to the previous word's start; that
    quirk is kept.
    """
    whitespace = [m.start() for m in _ASCII_WHITESPACE_RE.finditer(text)]
    prev_match = None
    prev_start = prev_stop = 0
    for match in _CANDIDATE_RE.finditer(text):
        start = match.start()
        index = bisect.bisect_left(whitespace, start) - 1
        last_space = whitespace[index] if index >= 0 else -1
        if last_space > prev_stop:
            word_start = last_space + 1
        else:
            word_start = prev_start
        if prev_match is not None and prev_stop <= word_start:
            yield prev_match, text[prev_start:prev_stop] + prev_match.group() + prev_match.group("after")
        prev_match, prev_start, prev_stop = match, word_start, start
    if prev_match is not None:
        yield prev_match, text[prev_start:prev_stop] + prev_match.group() + prev_match.group("after")


_MEMO_CONTEXT_LIMIT = 200
_MEMO_SIZE_LIMIT = 100_000


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` character spans of the sentences of ``text``, Punkt-style."""
    return list(_sentence_spans(text))


@functools.lru_cache(maxsize=4)
def _sentence_spans(text: str) -> tuple[tuple[int, int], ...]:
    # Cached: the sentence and capital-word checks of one response both need the spans.
    slices: list[tuple[int, int]] = []
    last_break = 0
    # The decision depends on the context string alone; repetitive text repeats contexts.
    decided: dict[str, bool] = {}
    for match, context in _candidate_contexts(text):
        is_break = decided.get(context)
        if is_break is None:
            is_break = _contains_sentence_break(context)
            if len(context) <= _MEMO_CONTEXT_LIMIT and len(decided) < _MEMO_SIZE_LIMIT:
                decided[context] = is_break
        if is_break:
            slices.append((last_break, match.end()))
            last_break = match.start("next") if match.group("next") else match.end()
    slices.append((last_break, len(text.rstrip())))

    # Closing quotes/brackets right after a boundary belong to the sentence they close.
    spans: list[tuple[int, int]] = []
    shift = 0
    for i, (start, stop) in enumerate(slices):
        start += shift
        if i + 1 == len(slices):
            if text[start:stop]:
                spans.append((start, stop))
            break
        next_start, next_stop = slices[i + 1]
        m = _REALIGN_RE.match(text, next_start, next_stop) if next_start < next_stop else None
        if m:
            spans.append((start, next_start + len(m.group().rstrip())))
            shift = m.end() - next_start
        else:
            shift = 0
            if text[start:stop]:
                spans.append((start, stop))
    return tuple(spans)


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see :func:`sentence_spans`)."""
    return [text[a:b] for a, b in sentence_spans(text)]


def count_sentences(text: str) -> int:
    """Number of sentences as the English Punkt model would count them (see module docstring)."""
    return len(_sentence_spans(text))


# --------------------------------------------------------------------------------------------
# Capital words (NLTK word_tokenize splitting, then str.isupper)
# --------------------------------------------------------------------------------------------

# NLTK's word_tokenize splits the text into Punkt sentences and applies Treebank-style rewrite
# rules to each one, every rule inserting spaces where tokens separate. Of those rules only the
# final-period one changes which tokens are all-capitals depending on where a sentence ends
# (the sentence-opening-quote one only renames a quote that is split off anyway). So the final
# period is split off sentence by sentence and the remaining rules run once over the joined
# text, in NLTK's order (later rules see the spaces earlier ones inserted). Rules that only pad
# single characters use str.replace: a regex substitution per character is ~10x slower on a
# megabyte of punctuation.
_CASE_RULES_BEFORE_PADDING = [
    (re.compile("([\u00ab\u201c\u2018\u201e]|`+)"), r" \1 "),  # opening curly quotes, backticks
    (re.compile(r'([ (\[{<])("|\'{2})'), r"\1 `` "),  # a double quote after a space / opening bracket
    (re.compile(r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)"), r"\1 "),  # opening single quote
    (re.compile(r"([:,])([^\d])"), r" \1 \2"),  # comma / colon, except inside a number
    (re.compile(r"([:,])$"), r" \1 "),
    (re.compile(r"\.{2,}"), r" \g<0> "),
    ";@#$%&\u2012\u2013\u2014\u2015?!",  # each padded with spaces
    (re.compile(r"([^'])' "), r"\1 ' "),  # a closing single quote
    "*[](){}<>",
    (re.compile(r"--"), r" -- "),
]
_CASE_RULES_AFTER_PADDING = [
    "\u00bb\u201d\u2019",
    (re.compile(r"''"), " '' "),
    (re.compile(r'"'), " '' "),
    (re.compile(r"\s+"), " "),
    (re.compile(r"([^' ])('[sS]|'[mM]|'[dD]|') "), r"\1 \2 "),  # 's 'm 'd, or a bare closing quote
    (re.compile(r"([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) "), r"\1 \2 "),
    # Words Treebank splits in two (can|not, gon|na, ...). They cannot overlap, so one pass; the
    # 't|is rule needs the space a split before it may have inserted, so it comes after.
    (
        re.compile(
            r"(?i)\b(?:(can)(not)|(d)('ye)|(gim)(me)|(gon)(na)|(got)(ta)|(lem)(me)|(more)('n))\b"
            r"|\b(wan)(na)(?=\s)"
        ),
        lambda m: " " + " ".join(g for g in m.groups() if g is not None) + " ",
    ),
    (re.compile(r"(?i) ('t)(is|was)\b"), r" \1 \2 "),
]


def _apply_case_rules(text: str, rules: list) -> str:
    """Apply rewrite rules in order: ``(pattern, replacement)`` pairs, or a string of characters
    each to be padded with spaces."""
    for rule in rules:
        if isinstance(rule, str):
            for ch in rule:
                text = text.replace(ch, f" {ch} ")
        else:
            pattern, replacement = rule
            text = pattern.sub(replacement, text)
    return text


def case_tokens(text: str) -> list[str]:
    """Word tokens as NLTK's ``word_tokenize`` splits them, as far as letter case is concerned
    (quotes are not rewritten to ``` `` ``` / ``''``; a sentence-opening ``"`` stays as is)."""
    sentences = []
    for start, stop in _sentence_spans(text):
        sentence = text[start:stop].rstrip()
        # Split off the final period (and separate any closing quotes/brackets after it), unless
        # it ends a run of periods: NLTK's sentence-final-period rule.
        core = sentence.rstrip(_CLOSERS_AFTER_FINAL_PERIOD)
        if len(core) >= 2 and core[-1] == "." and core[-2] != ".":
            sentence = f"{core[:-1]} . {sentence[len(core):]} "
        sentences.append(sentence)
    joined = _apply_case_rules(" ".join(sentences), _CASE_RULES_BEFORE_PADDING)
    return _apply_case_rules(f" {joined} ", _CASE_RULES_AFTER_PADDING).split()


_CLOSERS_AFTER_FINAL_PERIOD = "])}>\"'\u00bb\u201d\u2019 "


def count_capital_words(text: str) -> int:
    """Number of word tokens written entirely in capitals (``str.isupper``: "I", "NASA", "DON'T" -> "DO", "N'T")."""
    return sum(1 for token in case_tokens(text) if token.isupper())


# --------------------------------------------------------------------------------------------
# Language
# --------------------------------------------------------------------------------------------

# langdetect reads at most 10,000 characters after removing URLs and e-mail addresses; cutting
# the input well beyond that keeps its regexes' cost bounded on huge responses without
# changing the result unless URLs/addresses fill most of the first 100,000 characters.
_LANGDETECT_INPUT_LIMIT = 100_000


@functools.lru_cache(maxsize=1)
def _language_detector_factory() -> Any:
    try:
        from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
    except ImportError as exc:  # pragma: no cover - langdetect is a declared dependency
        raise ImportError(
            "the ifeval language checks need langdetect (the detector IFEval itself uses): pip install langdetect"
        ) from exc
    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    # A private factory with a fixed seed: langdetect samples n-grams at random, and the module-level
    # factory would make verdicts vary between runs (and share state with the caller's own use).
    factory.set_seed(0)
    return factory


@functools.lru_cache(maxsize=32)
def detect_language(text: str) -> str | None:
    """ISO 639-1 code langdetect assigns to ``text`` (``"zh-cn"``/``"zh-tw"`` for Chinese), or None
    when it finds no features (IFEval counts that case as "instruction followed")."""
    from langdetect.lang_detect_exception import LangDetectException

    detector = _language_detector_factory().create()
    detector.append(text[:_LANGDETECT_INPUT_LIMIT])
    try:
        return detector.detect()
    except LangDetectException:
        return None
