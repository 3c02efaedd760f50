"""The ``kk`` verifier: Knights & Knaves answers ("Alice is a knight, Bob is a knave").

``answer`` is the task's answer field: ``{"names": [...], "solution": [bool, ...]}``
(True = knight), optionally with ``"roles": [good_word, bad_word]`` when the puzzle used
another role-word pair (``["saint", "sinner"]``); without ``roles`` the words are
knight/knave. A JSON string of that object is accepted too (rows read from Parquet).

Where the answer is read from: the last ``<answer>...</answer>`` when the response has
one, otherwise the whole response. The whole-text fallback is lenient on purpose (a
bare "Alice is a knight and Bob is a knave" scores), but a response that reasons aloud
without a tag usually names both roles for someone ("suppose Alice is a knave...") and is
then marked ``conflicting_roles``; prompts should ask for the tag.

What is read: every "<Name> is a/an <role>" and "<Name>: <role>" (case-insensitive; the
article may be left out), where role is one of the problem's two words; markdown emphasis
(``**Alice** is a *knight*``, backticks) is ignored. A hedge ("Alice: knight or knave",
"a knight/knave") claims nothing, nor does a negation ("Alice is not a knight": no claim, so
that person counts as missing). The response is **correct only when
every person is assigned and each person gets exactly one role, the right one**:

* a person with both roles → ``conflicting_roles`` (repeating the same claim is fine);
* a person never assigned → ``missing_person``;
* a capitalized name that is not one of the problem's people ("Zed is a knight")
  → ``unknown_name`` (pronouns such as "He" are ignored);
* no claim at all → ``no_answer``; otherwise a wrong role → ``wrong_answer``.

``partial=True`` sets ``reward`` to the fraction of people assigned exactly one, correct
role (``correct`` stays all-or-nothing). It is off by default because it is gameable:
calling everyone a knight already earns about half the reward, so a policy can farm it
without reasoning. Use it only for shaping, with a format or correctness gate.
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Sequence

from reasonrl.types import Verdict
from reasonrl.verifiers.base import Verifier, register
from reasonrl.verifiers.extract import extract_tag

# Role-word pairs: (truthful, lying). The first is the default.
ROLE_PAIRS: tuple[tuple[str, str], ...] = (
    ("knight", "knave"),
    ("saint", "sinner"),
    ("truth-teller", "liar"),
    ("angel", "devil"),
    ("hero", "villain"),
    ("sage", "fool"),
)

# Capitalized words that may stand before "is a knight" without naming anyone.
_NOT_NAMES = frozenset(
    "he she it they this that who which everyone everybody nobody someone somebody each one person "
    "so then therefore thus hence and or but if also finally answer".split()
)


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def render_solution(names: Sequence[str], solution: Sequence[bool], roles: Sequence[str] | None = None) -> str:
    """The canonical answer text: ``(1) Alice is a knight\\n(2) Bob is a knave``."""
    good, bad = tuple(roles) if roles else ROLE_PAIRS[0]
    return "\n".join(
        f"({i}) {name} is {_article(good if knight else bad)}" for i, (name, knight) in enumerate(zip(names, solution), 1)
    )


def read_answer(answer: Any) -> tuple[list[str], list[bool], tuple[str, str]]:
    """Validate a ``kk`` answer field; returns names, solution and the (good, bad) role words."""
    if isinstance(answer, str):
        try:
            answer = json.loads(answer)
        except json.JSONDecodeError:
            raise ValueError("kk answer must be an object {names, solution} (or its JSON text)") from None
    if not isinstance(answer, dict) or "names" not in answer or "solution" not in answer:
        raise ValueError("kk answer must be an object with fields 'names' and 'solution'")
    names, solution = list(answer["names"]), [bool(x) for x in answer["solution"]]
    if len(names) != len(solution) or not names:
        raise ValueError(f"kk answer: 'names' ({len(names)}) and 'solution' ({len(solution)}) must have equal, non-zero length")
    if len(set(names)) != len(names):
        raise ValueError("kk answer: 'names' must be distinct")
    roles = answer.get("roles") or ROLE_PAIRS[0]
    if len(roles) != 2 or roles[0] == roles[1]:
        raise ValueError(f"kk answer: 'roles' must be two different words, got {roles!r}")
    return names, solution, (str(roles[0]), str(roles[1]))


# Markdown emphasis and code marks around words ("**Alice** is a *knight*"): dropped before
# reading. An underscore inside a word stays ("Mary_Ann").
_EMPHASIS_RE = re.compile(r"[*`]+|(?<!\w)_+|_+(?!\w)")


@lru_cache(maxsize=4096)
def _claim_patterns(names: tuple[str, ...], good: str, bad: str) -> tuple[re.Pattern, re.Pattern]:
    known = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    roles = f"{re.escape(good)}|{re.escape(bad)}"
    # A role followed by "or"/"/" and another word hedges ("a knight or a knave"): no claim.
    role = rf"((?i:{roles}))(?![\w-])(?!\s*(?:/|(?i:or)\b))"
    # "<Name> is [a|an] <role>": a known name (any case) or any capitalized word, so that a
    # claim about someone not in the puzzle is seen. "<Name>: <role>" only for known names,
    # since "Answer: knight" names nobody.
    is_form = re.compile(rf"(?<![\w'-])((?i:{known})|[A-Z][\w'-]*)\s+(?i:is)\s+(?:(?i:an?)\s+)?{role}")
    colon_form = re.compile(rf"(?<![\w'-])((?i:{known}))\s*:\s*(?:(?i:an?)\s+)?{role}")
    return is_form, colon_form


def parse_claims(text: str, names: Sequence[str], roles: Sequence[str] = ROLE_PAIRS[0]) -> tuple[dict[str, set[bool]], list[str]]:
    """All "<Name> is a <role>" and "<Name>: <role>" claims in ``text``, markdown emphasis ignored.

    Returns ``({name: {True/False, ...}}, unknown_names)`` where True means the truthful role.
    Names are matched case-insensitively and reported in the problem's spelling.
    """
    good, bad = roles
    by_lower = {n.lower(): n for n in names}
    claims: dict[str, set[bool]] = {}
    unknown: list[str] = []
    plain = _EMPHASIS_RE.sub("", text)
    for pattern in _claim_patterns(tuple(names), good, bad):
        for match in pattern.finditer(plain):
            token, role = match.group(1), match.group(2).lower()
            name = by_lower.get(token.lower())
            if name is None:
                if token.lower() not in _NOT_NAMES:
                    unknown.append(token)
                continue
            claims.setdefault(name, set()).add(role == good.lower())
    return claims, unknown


@register("kk")
class KnightsKnavesVerifier(Verifier):
    """Knights & Knaves: every person assigned exactly one role, all right.

    Args:
        partial: reward = fraction of people right (``correct`` unchanged). Gameable; off by default.
    """

    answer_types = (str, dict)

    def __init__(self, partial: bool = False) -> None:
        self.partial = partial

    def verify(self, response: str, answer: Any) -> Verdict:
        names, solution, roles = read_answer(answer)
        response = response or ""
        tagged = extract_tag(response)
        text = tagged if tagged is not None else response
        claims, unknown = parse_claims(text, names, roles)
        extracted = text if tagged is not None else None
        if not claims and not unknown:
            return Verdict.failure("no_answer", extracted=extracted)
        right = [len(claims.get(n, ())) == 1 and solution[i] in claims[n] for i, n in enumerate(names)]
        assigned = {n: (roles[0] if True in v else roles[1]) for n, v in claims.items() if len(v) == 1}
        details = {
            "source": "tag" if tagged is not None else "text",
            "assigned": assigned,
            "num_right": sum(right),
            "num_people": len(names),
        }
        conflicting = [n for n in names if len(claims.get(n, ())) > 1]
        missing = [n for n in names if n not in claims]
        if unknown:
            reason, details["unknown_names"] = "unknown_name", sorted(set(unknown))
        elif conflicting:
            reason, details["conflicting"] = "conflicting_roles", conflicting
        elif missing:
            reason, details["missing"] = "missing_person", missing
        elif not all(right):
            reason = "wrong_answer"
        else:
            return Verdict(reward=1.0, correct=True, extracted=extracted, reason="ok", details=details)
        reward = sum(right) / len(names) if self.partial else 0.0
        return Verdict(reward=reward, correct=False, extracted=extracted, reason=reason, details=details)
