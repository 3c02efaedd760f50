"""The ``ifeval`` / ``ifeval-loose`` verifiers: official IFEval semantics, strict and loose.

* conformance: per-instruction and prompt-level agreement with the official evaluator's verdicts
  on the GPT-4 responses (strict and loose), every disagreement listed and explained;
* near-misses: for every instruction type, a response that follows it and one that misses it by
  one step (one word too few, one lowercase letter, one bullet too many, ...);
* strict vs loose: responses only the loose variants rescue, and the variants themselves;
* the tokenizers: hand examples, and (with NLTK installed, as in the ``test`` extra) NLTK's own
  Punkt and Treebank algorithms as the oracle on the GPT-4 responses and on random text;
* bad answers raise errors naming the field / key and the valid choices;
* megabyte-sized hostile responses finish (linear-time scans) with the right verdicts.
"""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrl import verifiers
from reasonrl.verifiers.ifeval import (
    INSTRUCTION_IDS,
    InstructionArgumentError,
    check_instruction,
    follow_instructions,
    loose_variants,
    parse_answer,
)
from reasonrl.verifiers.ifeval import text as text_utils
from reasonrl.verifiers.ifeval.instructions import count_bullets, count_highlights, count_placeholders, find_titles

from conftest import conformance_path, read_jsonl

OFFICIAL_IDS = {
    "keywords:existence", "keywords:frequency", "keywords:forbidden_words", "keywords:letter_frequency",
    "language:response_language", "length_constraints:number_sentences", "length_constraints:number_paragraphs",
    "length_constraints:number_words", "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders", "detectable_content:postscript",
    "detectable_format:number_bullet_lists", "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections", "detectable_format:multiple_sections",
    "detectable_format:json_format", "detectable_format:title", "combination:two_responses",
    "combination:repeat_prompt", "startend:end_checker", "change_case:capital_word_frequency",
    "change_case:english_capital", "change_case:english_lowercase", "punctuation:no_comma", "startend:quotation",
}


def answer(instruction_id: str, **kwargs) -> dict:
    return {"instruction_id_list": [instruction_id], "kwargs": [kwargs]}


def strict(response: str, instruction_id: str, **kwargs) -> bool:
    return verifiers.get("ifeval").verify(response, answer(instruction_id, **kwargs)).correct


def loose(response: str, instruction_id: str, **kwargs) -> bool:
    return verifiers.get("ifeval-loose").verify(response, answer(instruction_id, **kwargs)).correct


def test_all_25_official_instruction_types_are_registered():
    assert set(INSTRUCTION_IDS) == OFFICIAL_IDS and len(INSTRUCTION_IDS) == 25
    assert {"ifeval", "ifeval-loose"} <= set(verifiers.names())


# --------------------------------------------------------------------------------------------
# Conformance with the official evaluator
# --------------------------------------------------------------------------------------------

# Official verdicts we knowingly do not reproduce, with the reason.
KNOWN_DISAGREEMENTS = {
    # The evaluator that produced these files replaced any "letter" outside a-z by a random
    # letter (an older LetterFrequencyChecker; the current official code counts the character
    # given). Strict and loose disagree with each other on both rows for that reason: the
    # response holds four "#" and ten "!", and the loose verdicts (drawn with other random
    # letters) say followed, as we do.
    ("strict", 1122, "keywords:letter_frequency"): "letter '#' replaced by a random letter in the official run",
    ("strict", 1129, "keywords:letter_frequency"): "letter '!' replaced by a random letter in the official run",
}


def _official_rows(mode: str) -> list[tuple[dict, dict]]:
    """(input row, official result) pairs, joined on the prompt text (540 of 541: key 2785's
    prompt differs between the input and response files, and the results leave it out)."""
    inputs = {row["prompt"]: row for row in read_jsonl(conformance_path("ifeval", "input_data.jsonl"))}
    results = read_jsonl(conformance_path("ifeval", f"gpt4_eval_results_{mode}.jsonl"))
    pairs = [(inputs[r["prompt"]], r) for r in results if r["prompt"] in inputs]
    assert len(pairs) == len(results) == 540
    return pairs


@pytest.mark.conformance
@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_agrees_with_official_verdicts_on_gpt4_responses(mode):
    verifier = verifiers.get("ifeval" if mode == "strict" else "ifeval-loose")
    instructions = agreed = prompts = prompts_agreed = 0
    disagreements = []
    for row, official in _official_rows(mode):
        # The answer is the IFEval row as it is (with its "key" and "prompt").
        verdict = verifier.verify(official["response"], row)
        ours, theirs = verdict.details["followed"], official["follow_instruction_list"]
        assert len(ours) == len(theirs) == len(row["instruction_id_list"])
        for instruction_id, kwargs, a, b in zip(row["instruction_id_list"], row["kwargs"], ours, theirs):
            instructions += 1
            agreed += a == b
            if a != b:
                disagreements.append((mode, row["key"], instruction_id, kwargs, a, b))
        prompts += 1
        prompts_agreed += verdict.correct == official["follow_all_instructions"]
        assert verdict.reward == (1.0 if verdict.correct else 0.0)
    instruction_agreement, prompt_agreement = agreed / instructions, prompts_agreed / prompts
    print(f"\n{mode}: instruction-level {agreed}/{instructions} = {instruction_agreement:.4f}, "
          f"prompt-level {prompts_agreed}/{prompts} = {prompt_agreement:.4f}")
    for mode_, key, instruction_id, kwargs, a, b in disagreements:
        reason = KNOWN_DISAGREEMENTS.get((mode_, key, instruction_id), "UNEXPLAINED")
        print(f"  key {key} {instruction_id} {kwargs}: ours={a} official={b} ({reason})")
    assert instructions == 832
    assert instruction_agreement >= 0.995
    assert prompt_agreement >= 0.99
    unexplained = [d for d in disagreements if (d[0], d[1], d[2]) not in KNOWN_DISAGREEMENTS]
    assert not unexplained, unexplained


# --------------------------------------------------------------------------------------------
# Near-misses, one family at a time: (instruction, kwargs, follows, misses by one step)
# --------------------------------------------------------------------------------------------

NEAR_MISSES = [
    ("keywords:existence", {"keywords": ["apple", "pear"]}, "An Apple and a PEAR.", "An apple and a peach."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 3, "relation": "at least"},
     "Cat, cat and one more cat.", "Cat, cat and one more dog."),
    ("keywords:frequency", {"keyword": "cat", "frequency": 2, "relation": "less than"},
     "One cat and a dog.", "One cat and another CAT."),
    ("keywords:forbidden_words", {"forbidden_words": ["rock", "roll"]},
     "Rocky roads and rolling hills.", "Rocky roads and Rock music."),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 4, "let_relation": "at least"},
     "A banana.", "Banana."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "less than"},
     "A zebra.", "A zebra in a zoo."),
    ("language:response_language", {"language": "de"},
     "Das ist ein kurzer Text, der vollständig auf Deutsch geschrieben wurde, ohne andere Sprachen.",
     "This is a short text that is written entirely in English, without any other language."),
    ("change_case:english_capital", {}, "THIS WHOLE ANSWER IS WRITTEN IN CAPITAL LETTERS, AS ASKED.",
     "THIS WHOLE ANSWER IS WRITTEN IN CAPITAL LETTERs, AS ASKED."),
    ("change_case:english_lowercase", {}, "this whole answer is written in lowercase letters, as asked.",
     "this whole answer is written in lowercase letters, as asked by Bob."),
    ("change_case:capital_word_frequency", {"capital_frequency": 3, "capital_relation": "at least"},
     "THE BIG dog ran HOME.", "THE BIG dog ran home."),
    # "I" is a capital word, and NLTK splits "DON'T" into two capital tokens.
    ("change_case:capital_word_frequency", {"capital_frequency": 4, "capital_relation": "less than"},
     "Well, I DON'T know.", "Well, I DON'T KNOW."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"},
     "Dr. Smith arrived. He sat down! Was he tired?", "Dr. Smith arrived. He sat down, tired."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "First, e.g. this one. Then that one.", "First this one. Then that one. Finally another."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "One.\n***\nTwo.\n***\nThree.", "One.\n***\nTwo.\n***\nThree.\n***\nFour."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "***\nOne.\n***\nTwo.\n***\nThree.\n***", "One.\n***\n***\nTwo.\n***\nThree."),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"},
     "one two three four five", "one two three four"),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"},
     "one two three-four", "one two three four five"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "Intro.\n\n\"Then,\" she said.", "Intro.\n\nAnd then she said."),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "Intro.\n\nThen more.", "Intro.\n\nThen more.\n\nAn extra paragraph."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], see you at [address].", "Dear [name], see you at the address."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], see you at [address].", "Dear [name], see you at [add\nress]."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hi.\n\np.s. bye", "Hi.\n\nPS bye"),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\n\nP.P.S. bye", "Hi.\n\nP.S. bye"),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3},
     "Intro:\n* one\n* two\n- three\n**bold line**", "Intro:\n* one\n* two\n- three\n  - four"),
    ("detectable_format:constrained_response", {}, "I think so. My answer is yes.", "I think so. My answer is yes"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*First part* and *second part*.", "*First part* and second part."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "A **bold** and a *light* word.", "A **bold** and a * * word."),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nfoo\nSECTION 2\nbar", "SECTION 1\nfoo\nSection 2\nbar"),
    ("detectable_format:json_format", {}, '```json\n{"a": [1, 2]}\n```', '```json\n{"a": [1, 2],}\n```'),
    ("detectable_format:title", {}, "<<A Poem of Joy>>\nRoses are red.", "<<A Poem\nof Joy>>\nRoses are red."),
    ("detectable_format:title", {}, "<<A Poem of Joy>>", "<<  >> A poem of joy"),
    ("combination:two_responses", {}, "Answer one.\n******\nAnswer two.", "Answer one.\n******\nAnswer one."),
    ("combination:two_responses", {}, "Answer one.\n******\nAnswer two.", "One.\n******\n******\nTwo."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku about cats."},
     "write a haiku about cats. Soft paws in the sun...", "Sure! Write a haiku about cats. Soft paws..."),
    ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"},
     "Done. \"Is there anything else I can help with?\"  ", "Done. Is there anything else I can help with? Bye."),
    ("startend:quotation", {}, '  "A quoted answer."\n', '"A quoted answer.'),
    ("punctuation:no_comma", {}, "No commas at all here.", "No commas, except this one."),
]


@pytest.mark.parametrize(
    "instruction_id, kwargs, follows, misses", NEAR_MISSES, ids=[f"{n[0]}-{i}" for i, n in enumerate(NEAR_MISSES)]
)
def test_near_miss(instruction_id, kwargs, follows, misses):
    assert strict(follows, instruction_id, **kwargs)
    assert not strict(misses, instruction_id, **kwargs)


def test_every_instruction_type_has_a_near_miss():
    assert {n[0] for n in NEAR_MISSES} == OFFICIAL_IDS


@pytest.mark.parametrize("instruction_id", sorted(OFFICIAL_IDS))
def test_blank_response_follows_nothing(instruction_id):
    kwargs = next(n[1] for n in NEAR_MISSES if n[0] == instruction_id)
    for blank in ("", "  \n\t "):
        assert not strict(blank, instruction_id, **kwargs)
        assert not loose(blank, instruction_id, **kwargs)


def test_verdict_lists_each_instruction_and_partial_reward():
    row = {
        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words", "startend:quotation"],
        "kwargs": [{}, {"relation": "at least", "num_words": 3}, {}],
    }
    verdict = verifiers.get("ifeval").verify("one two, three", row)
    assert verdict.details["followed"] == [False, True, False]
    assert verdict.details["instruction_id_list"] == row["instruction_id_list"]
    assert (verdict.correct, verdict.reward, verdict.reason) == (False, 0.0, "wrong_answer")
    partial = verifiers.get("ifeval", partial=True).verify("one two, three", row)
    assert not partial.correct and partial.reward == pytest.approx(1 / 3)
    full = verifiers.get("ifeval", partial=True).verify('"one two three"', row)
    assert (full.correct, full.reward, full.reason) == (True, 1.0, "ok")
    assert json.loads(json.dumps(full.to_dict()))["details"]["followed"] == [True, True, True]


# --------------------------------------------------------------------------------------------
# Strict vs loose
# --------------------------------------------------------------------------------------------


def test_loose_variants_are_ifevals_eight_in_order():
    response = "Sure!\n*Body* line\nthe end *"
    assert loose_variants(response) == [
        response,
        "Sure!\nBody line\nthe end ",
        "*Body* line\nthe end *",
        "Sure!\n*Body* line",
        "*Body* line",
        "Body line\nthe end ",
        "Sure!\nBody line",
        "Body line",
    ]


@pytest.mark.parametrize("instruction_id, kwargs, response", [
    # A chatty first line before the JSON / the repeated request / the quoted answer.
    ("detectable_format:json_format", {}, 'Here is the JSON:\n{"a": 1}'),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a haiku."}, "Sure!\nWrite a haiku. Soft paws."),
    ("startend:quotation", {}, 'Here you go:\n"All quoted."'),
    # A sign-off after the required ending.
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Body.\nAny other questions?\n(Generated.)"),
    # Markdown bold around the text.
    ("startend:quotation", {}, '**"All quoted."**'),
    ("change_case:english_capital", {}, "Title: a summary\nTHIS IS THE WHOLE BODY OF THE ANSWER IN CAPITALS."),
    # Removing "*" changes the word and bullet counts.
    ("detectable_format:number_bullet_lists", {"num_bullets": 1}, "* one\n* two"),
])
def test_only_loose_mode_forgives(instruction_id, kwargs, response):
    assert not strict(response, instruction_id, **kwargs)
    assert loose(response, instruction_id, **kwargs)


def test_loose_mode_does_not_forgive_the_middle():
    response = "Line one\nLine, two\nLine three"
    assert not strict(response, "punctuation:no_comma")
    assert not loose(response, "punctuation:no_comma")
    assert loose("Hi, there\nno commas here", "punctuation:no_comma")


def test_loose_option_on_the_strict_name_and_details_mode():
    row = answer("startend:quotation")
    assert verifiers.get("ifeval", loose=True).verify('**"q"**', row).correct
    assert verifiers.get("ifeval-loose").verify('**"q"**', row).details["mode"] == "loose"
    assert verifiers.get("ifeval").verify('**"q"**', row).details["mode"] == "strict"
    assert follow_instructions('**"q"**', ["startend:quotation"], [{}], loose=True) == [True]


# --------------------------------------------------------------------------------------------
# The answer: IFEval rows as they come, and clear errors for bad ones
# --------------------------------------------------------------------------------------------


def test_hugging_face_rows_with_none_values_and_extra_keys_work():
    every_key = {"num_words": None, "relation": None, "keywords": None, "language": None, "first_word": None}
    row = {
        "key": 7,
        "prompt": "Write two words.",
        "instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
        "kwargs": [{**every_key, "num_words": 2, "relation": "at least"}, dict(every_key)],
    }
    assert verifiers.get("ifeval").verify("two words", row).details["followed"] == [True, True]
    assert verifiers.get("ifeval").verify("two words", json.dumps(row)).correct  # the row as JSON text


def test_repeat_prompt_falls_back_to_the_answers_prompt():
    row = {"instruction_id_list": ["combination:repeat_prompt"], "kwargs": [{}], "prompt": "Say hi."}
    assert verifiers.get("ifeval").verify("Say hi. Hi!", row).correct
    assert not verifiers.get("ifeval").verify("Hi! Say hi.", row).correct
    no_prompt = {"instruction_id_list": ["combination:repeat_prompt"], "kwargs": [{}]}
    with pytest.raises(InstructionArgumentError, match="prompt_to_repeat"):
        verifiers.get("ifeval").verify("Say hi.", no_prompt)
    assert check_instruction("combination:repeat_prompt", "Say hi. Hi!", {}, prompt="Say hi.")


@pytest.mark.parametrize("bad, message", [
    ("not json", "field 'answer'"),
    ([1, 2], "field 'answer'"),
    ({"kwargs": [{}]}, "instruction_id_list"),
    ({"instruction_id_list": [], "kwargs": []}, "instruction_id_list"),
    ({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}, {}]}, "one object per instruction"),
    ({"instruction_id_list": ["punctuation:nocomma"], "kwargs": [{}]}, "valid ids: .*punctuation:no_comma"),
    (answer("length_constraints:number_words", relation="at least"), r"missing kwarg 'num_words'.*'relation'"),
    (answer("length_constraints:number_words", num_words=3, relation="at most"), r"\['less than', 'at least'\]"),
    (answer("length_constraints:number_words", num_words="three", relation="at least"), "must be an integer"),
    (answer("length_constraints:number_words", num_words=-1, relation="at least"), ">= 0"),
    (answer("keywords:letter_frequency", letter="ab", let_frequency=1, let_relation="at least"), "single character"),
    (answer("keywords:existence", keywords=[]), "non-empty list"),
    (answer("length_constraints:nth_paragraph_first_word", num_paragraphs=2, nth_paragraph=3, first_word="a"),
     "between 1 and num_paragraphs"),
])
def test_bad_answers_raise_clear_errors(bad, message):
    with pytest.raises(InstructionArgumentError, match=message) as info:
        verifiers.get("ifeval").verify("some response", bad)
    assert isinstance(info.value, ValueError)


def test_errors_name_the_instruction_index():
    bad = {"instruction_id_list": ["punctuation:no_comma", "keywords:existence"], "kwargs": [{}, {}]}
    with pytest.raises(InstructionArgumentError, match=r"'kwargs'\[1\].*keywords:existence.*'keywords'"):
        parse_answer(bad)


def test_non_string_response_is_a_type_error():
    with pytest.raises(TypeError, match="response"):
        verifiers.get("ifeval").verify(None, answer("punctuation:no_comma"))


# --------------------------------------------------------------------------------------------
# Official quirks kept on purpose
# --------------------------------------------------------------------------------------------


def test_official_quirks():
    # Keyword existence is a substring test; forbidden words use word boundaries.
    assert strict("A category.", "keywords:existence", keywords=["cat"])
    assert strict("A category.", "keywords:forbidden_words", forbidden_words=["cat"])
    # A markdown rule "---" counts as a bullet; "**bold**" at a line start does not.
    assert count_bullets("---\n**Bold**\n* a\n  - b") == 3
    # "**bold**" counts once (the double-asterisk pattern; the single one sees two empty "**"),
    # and a blank "* *" does not count.
    assert count_highlights("**bold**") == 1 and count_highlights("*a* * * *b*") == 2
    # A postscript marker may appear anywhere, not only at a line start.
    assert strict("Text (p.s. inline)", "detectable_content:postscript", postscript_marker="P.S.")
    # Section headers need a number; the splitter is case-sensitive.
    assert strict("Day 1 x Day 2 y", "detectable_format:multiple_sections", section_spliter="Day", num_sections=2)
    assert not strict("Day one x Day two", "detectable_format:multiple_sections", section_spliter="Day", num_sections=1)
    # JSON: all three fence spellings, chained like removeprefix, and Python's json accepts NaN.
    for fence in ("```json", "```Json", "```JSON", "```"):
        assert strict(f"{fence}\n[1, NaN]\n```", "detectable_format:json_format")
    # Undetectable language counts as followed (langdetect finds no features in digits).
    assert strict("12345 67890", "language:response_language", language="fr")
    # A capitalised text with no letters at all is not "upper".
    assert not strict("12345!", "change_case:english_capital")


def test_literal_keywords_cannot_blow_up():
    # The official code compiles keywords as regexes; we match them literally.
    assert strict("a (b+)* c", "keywords:existence", keywords=["(b+)*"])
    assert not strict("abbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb!", "keywords:existence", keywords=["(b+)+$"])


# --------------------------------------------------------------------------------------------
# Linear scans against the official (backtracking) patterns, on random short text
# --------------------------------------------------------------------------------------------

_SCAN_TEXT = st.text(alphabet=list("[]<>*-pPsS. \n\t\r\x0b\u00a0\u2028x"), max_size=40)


@settings(max_examples=400, deadline=None)
@given(_SCAN_TEXT)
def test_linear_scans_equal_the_official_regexes(text):
    import re

    assert count_placeholders(text) == len(re.findall(r"\[.*?\]", text))
    assert find_titles(text) == re.findall(r"<<[^\n]+>>", text)
    official_bullets = len(re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)) + len(
        re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    )
    assert count_bullets(text) == official_bullets
    lowered = text.lower()
    assert strict(text, "detectable_content:postscript", postscript_marker="P.P.S") == bool(
        text.strip() and re.findall(r"\s*p\.\s?p\.\s?s.*$", lowered, flags=re.MULTILINE)
    )
    assert strict(text, "detectable_content:postscript", postscript_marker="P.S.") == bool(
        text.strip() and re.findall(r"\s*p\.\s?s\..*$", lowered, flags=re.MULTILINE)
    )


# --------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, sentences", [
    ("One. Two. Three.", 3),
    ("Dr. Smith went to Washington. He sat.", 2),
    ("We saw it, e.g. the red one. Then left.", 2),
    ("Wait... What happened?", 2),
    ("Wait... and then nothing.", 1),
    ("Fruit, nuts, etc. The rest is water.", 2),  # abbreviation, then a typical sentence starter
    ("Ask Dr. Smith about it.", 1),  # abbreviation, then a name
    ("He said \"Hi.\" Then he left.", 2),
    ("(Sentence one.) Sentence two.", 2),
    ("Items:\n1. Apples\n2. Pears", 3),
    ("J. K. Rowling wrote books.", 1),
    ("No end mark here\nand a second line", 1),
    ("Wow!!! Really?! Yes.", 3),
    ("Version 3.14 is out. Get it.", 2),
    ("", 0),
    ("   ", 0),
])
def test_sentence_counts(text, sentences):
    assert text_utils.count_sentences(text) == sentences
    assert len(text_utils.split_sentences(text)) == sentences


@pytest.mark.parametrize("text, capitals", [
    ("I'm here.", 1),  # "I" + "'m"
    ("NASA's rocket.", 1),  # "NASA" + "'s"
    ("DON'T STOP.", 3),  # "DO" + "N'T" + "STOP"
    ("CANNOT", 2),  # "CAN" + "NOT"
    ("A&B, (AI) and AI-driven", 3),  # "A", "B", "AI"; a hyphenated word stays one token
    ("U.S. and UK.", 2),
    ("AI—THE FUTURE", 3),  # em dash separates
    ("lowercase only", 0),
    ("Mixed Case Words", 0),
])
def test_capital_word_counts(text, capitals):
    assert text_utils.count_capital_words(text) == capitals


def test_word_count_is_the_official_regex():
    assert text_utils.count_words("Hello, world! It's 2024-01-01 — naïve_test.") == 8


def _nltk_oracles():
    nltk = pytest.importorskip("nltk")
    if tuple(int(p) for p in nltk.__version__.split(".")[:2]) < (3, 10):
        pytest.skip("the oracle tests follow NLTK >= 3.10 (curly quotes as Punkt punctuation)")
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import _ORTHO_BEG_UC, _ORTHO_MID_LC, _ORTHO_MID_UC, PunktParameters, PunktSentenceTokenizer

    # Punkt with parameters that encode exactly the tables our splitter uses in place of the
    # trained English model: the same abbreviations; the sentence starters as words seen in
    # lower case and never capitalised mid-sentence; other common words as seen both ways.
    params = PunktParameters()
    params.abbrev_types = set(text_utils._ABBREVIATIONS)
    for word in text_utils._COMMON_WORDS:
        params.ortho_context[word] = _ORTHO_MID_LC | _ORTHO_MID_UC
    for word in text_utils._SENTENCE_STARTERS:
        params.ortho_context[word] = _ORTHO_MID_LC | _ORTHO_BEG_UC
    punkt = PunktSentenceTokenizer(params)
    words = NLTKWordTokenizer()

    def nltk_capitals(text: str) -> int:  # what nltk.word_tokenize + isupper gives with that Punkt
        return sum(1 for sentence in punkt.tokenize(text) for token in words.tokenize(sentence) if token.isupper())

    return punkt, nltk_capitals


@pytest.mark.conformance
def test_tokenizers_match_nltk_on_gpt4_responses_and_prompts():
    punkt, nltk_capitals = _nltk_oracles()
    texts = [r["response"] for r in read_jsonl(conformance_path("ifeval", "gpt4_eval_results_strict.jsonl"))]
    texts += [r["prompt"] for r in read_jsonl(conformance_path("ifeval", "input_data.jsonl"))]
    sentence_mismatch = [t[:80] for t in texts if text_utils.count_sentences(t) != len(punkt.tokenize(t))]
    capital_mismatch = [t[:80] for t in texts if text_utils.count_capital_words(t) != nltk_capitals(t)]
    assert not sentence_mismatch and not capital_mismatch, (sentence_mismatch[:3], capital_mismatch[:3])


_PIECES = [
    ".", "!", "?", '"', "'", "(", ")", "[", "]", "*", ":", ";", ",", "-", "--", "...", " ", " ", " ", "\n", "\n\n",
    "\t", "The", "the", "Dr", "e.g", "A", "J", "x", "NASA", "Bach", "I", "n't", "'s", "DON", "cannot", "12", "3.5",
    "1,000", "\u201c", "\u201d", "\u2019", "\u2018", "\u2014", "\u2013", "\u00ab", "\u00bb", "&", "@", "#", "`", "etc",
    "U.S", "However", "gonna", "'tis", "WANNA", "''", "<", ">", "{", "}", "'S", "N'T", "5:30", "x.y",
]


def test_tokenizers_match_nltk_on_random_text():
    punkt, nltk_capitals = _nltk_oracles()
    rng = random.Random(1234)
    for _ in range(3000):
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 30)))
        assert text_utils.count_sentences(text) == len(punkt.tokenize(text)), repr(text)
        assert text_utils.count_capital_words(text) == nltk_capitals(text), repr(text)


# --------------------------------------------------------------------------------------------
# Hostile inputs: a megabyte response gives a verdict (every scan is linear)
# --------------------------------------------------------------------------------------------

MB = 1_000_000


def test_megabyte_inputs_that_backtrack_in_the_official_patterns():
    # Each of these is quadratic for the official regexes (minutes to hours on 1 MB).
    assert count_placeholders("[" * MB) == 0
    assert count_placeholders("[" * MB + "]") == 1
    assert find_titles("<<" * (MB // 2)) == []
    assert strict("<<" * (MB // 2) + "x>>", "detectable_format:title")  # one title, "<<<<...x>>"
    assert count_bullets("\n" * MB) == 0 and count_bullets(" " * MB) == 0
    assert count_bullets("\n" * MB + "* item") == 1
    assert strict(" " * MB + "P.P.S done", "detectable_content:postscript", postscript_marker="P.P.S")
    assert count_highlights("*" + "a" * MB) == 0
    assert not strict("[" * MB, "detectable_format:json_format")  # nested too deep: not valid for us
    assert text_utils.count_sentences("!" * MB) == 3  # Punkt: "!", the run, "!"
    assert text_utils.count_sentences(". " * (MB // 2)) == MB // 2


def test_megabyte_response_with_every_instruction_strict():
    first_kwargs = {}
    for instruction_id, kwargs, _, _ in NEAR_MISSES:
        first_kwargs.setdefault(instruction_id, kwargs)
    row = {"instruction_id_list": list(first_kwargs), "kwargs": list(first_kwargs.values())}
    response = ("Dr. Smith said: \"I DON'T know!\" *Bold* [x] <<t>> - item, e.g. 3.5... " * (MB // 70))[:MB]
    followed = verifiers.get("ifeval").verify(response, row).details["followed"]
    expected = {
        "keywords:existence": False, "keywords:frequency": False, "keywords:forbidden_words": True,
        "keywords:letter_frequency": True, "language:response_language": False, "change_case:english_capital": False,
        "change_case:english_lowercase": False, "change_case:capital_word_frequency": True,
        "length_constraints:number_sentences": True, "length_constraints:number_paragraphs": False,
        "length_constraints:number_words": True, "length_constraints:nth_paragraph_first_word": False,
        "detectable_content:number_placeholders": True, "detectable_content:postscript": False,
        "detectable_format:number_bullet_lists": False, "detectable_format:constrained_response": False,
        "detectable_format:number_highlighted_sections": True, "detectable_format:multiple_sections": False,
        "detectable_format:json_format": False, "detectable_format:title": True, "combination:two_responses": False,
        "combination:repeat_prompt": False, "startend:end_checker": False, "startend:quotation": False,
        "punctuation:no_comma": False,
    }
    assert dict(zip(row["instruction_id_list"], followed)) == expected


def test_megabyte_response_loose():
    response = "Intro line\n" + "word " * (MB // 5) + "\nlast line, with a comma"
    verdict = verifiers.get("ifeval-loose").verify(response, {
        "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_sentences",
                                "change_case:capital_word_frequency"],
        "kwargs": [{}, {"num_sentences": 2, "relation": "less than"},
                   {"capital_frequency": 1, "capital_relation": "less than"}],
    })
    assert verdict.details["followed"] == [True, True, True]


def test_import_is_light():
    code = (
        "import sys, time; t = time.time(); import reasonrl.verifiers.ifeval; "
        "print('torch' in sys.modules, 'langdetect' in sys.modules, 'nltk' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]
