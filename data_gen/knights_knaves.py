"""Knights & Knaves puzzles (generator ``kk``), as in Logic-RL, with exactly one solution.

Every inhabitant makes one statement; knights always tell the truth, knaves always lie.
The model has to find who is which. ``reasonrl gen --task kk --difficulty people=5``.

Difficulty knobs:

* ``people`` (2–12, default 4): number of inhabitants, each making one statement.
* ``depth`` (2–5, default 2): maximum nesting depth of a statement. 1 would be a bare
  claim ("Bob is a knave"); 2 allows one operator over claims ("Bob is a knave and Eve is a
  knight"); 3 an operator over those, and so on. Depth 1 alone is not offered: bare claims
  only relate roles ("same as Bob", "unlike Eve"), so swapping every role always gives a
  second solution and no puzzle is ever unique. Each node above the leaves is a bare claim,
  ``not``, ``and``, ``or``, ``->`` or ``<=>`` with equal probability (as in Logic-RL).
* ``width`` (2–6, default 2): the most operands an ``and``/``or`` takes.
* ``roles`` (default ``knight/knave``): the role-word pair; one of :data:`ROLE_PAIRS`
  or ``random`` (one pair drawn per puzzle).

How a puzzle is drawn (``generate(seed)``), and why it is fast:

1. draw the hidden solution uniformly (so knights and knaves are balanced);
2. for each person, draw a statement tree; keep it only if its truth value under the hidden
   solution matches the speaker's role (so the solution is always consistent);
3. keep the draft only if the hidden solution is the *only* consistent assignment;
   otherwise draw all statements again (a "uniqueness rejection", counted in
   ``generator.stats``).

Statement truth tables are bitmasks over all ``2**people`` assignments
(:mod:`reasonrl.data_gen.kk_solver`), so step 3 is a few big-int operations. Step 2 and 3
together sample exactly the base statement distribution conditioned on "unique solution",
re-weighted to a uniform solution. As in Logic-RL, a statement may be trivially true or false
("Bob is a knight or Bob is a knave"); operands of one node are distinct and ``not not`` is
never drawn.

The Problem row:

* ``answer`` = ``{"names": [...], "solution": [bool, ...], "roles": [good, bad]}``
  (True = knight / truth-teller). ``names``/``solution`` are the DESIGN fields; ``roles``
  tells the ``kk`` verifier which words to read (absent means knight/knave).
* ``metadata["statements"]``: one Logic-RL logic tree per person (0-based indices).
* ``metadata["worked_solution"]``: a short deduction (see :func:`worked_steps`: "X is a knave,
  so X's statement ... is false; hence Y is a knight", or "Suppose Y is a knave. Then ...: a
  contradiction"), ending in ``<answer>(1) NAME is ROLE ...</answer>``, the format the prompt
  asks for and :func:`reasonrl.verifiers.knights_knaves.render_solution` writes.
* ``id`` = ``kk-<hash of the canonical statement trees>``; names, phrasing and role words do
  not enter it, so :func:`reasonrl.data_gen.dataset.generate_dataset` deduplicates on the
  logic, not the text.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import marshal
import math
import random
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from reasonrl.data_gen import kk_solver
from reasonrl.data_gen.base import ConfigError, Generator, register
from reasonrl.verifiers.knights_knaves import ROLE_PAIRS, render_solution

MAX_PEOPLE = 12

# Name pools: single capitalized words (the verifier matches whole words), none equal to a role word.
NAME_POOLS = (
    (
        "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Isabel", "Jack", "Karen", "Liam",
        "Mia", "Noah", "Olivia", "Peter", "Quinn", "Rose", "Samuel", "Tara", "Victor", "Wendy", "Xavier", "Zoe",
    ),
    (
        "Aiko", "Bruno", "Chidi", "Dana", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kofi", "Lena",
        "Mateo", "Nadia", "Omar", "Priya", "Rafael", "Sofia", "Tomas", "Uma", "Vera", "Wei", "Yusuf", "Zara",
    ),
    (
        "Abigail", "Benjamin", "Charlotte", "Daniel", "Eleanor", "Felix", "Georgia", "Harrison", "Ivy", "Julian",
        "Katherine", "Leo", "Matilda", "Nathan", "Penelope", "Oscar", "Ruby", "Sebastian", "Theodore", "Violet",
        "William", "Amelia", "Lucas", "Hazel",
    ),
)

# Fields: {0} a_good, {1} a_bad, {2} Goods, {3} goods, {4} bads, {5} count, {6} the list of people.
INTROS = (
    "On an island, every inhabitant is either {0} or {1}. {2} always tell the truth and {4} always lie. "
    "You meet {5} inhabitants: {6}.",
    "Each of these {5} people is {0}, who always tells the truth, or {1}, who always lies: {6}.",
    "A village is home only to {3}, who never lie, and {4}, who never tell the truth. You talk to {5} villagers: {6}.",
)
# Fields: {0} speaker, {1} the statement.
DIRECT_SPEECH = ('{0} says, "{1}."', '{0} tells you: "{1}."', '"{1}," {0} claims.', '{0} states: "{1}."')
INDIRECT_SPEECH = ("{0} says that {1}.", "{0} claims that {1}.", "According to {0}, {1}.")
# Fields: {0} a_good, {1} a_bad. No worked example with real names: it would hint at an answer.
QUESTION = (
    "Who is {0} and who is {1}? Give your answer inside <answer></answer>, one line per person in the "
    'order above: <answer>(1) NAME is ROLE\n(2) NAME is ROLE\n...</answer> where ROLE is "{0}" or "{1}".'
)


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


@dataclass(frozen=True)
class KnightsKnavesConfig:
    """Difficulty knobs of ``kk`` (see the module docstring).

    Attributes:
        people: number of inhabitants (2–12).
        depth: maximum nesting depth of a statement (2–5).
        width: most operands of an and/or (2–6).
        roles: role-word pair, e.g. ``"saint/sinner"``, or ``"random"``.
    """

    people: int = 4
    depth: int = 2
    width: int = 2
    roles: str = "knight/knave"

    def __post_init__(self) -> None:
        for key, low, high in (("people", 2, MAX_PEOPLE), ("depth", 2, 5), ("width", 2, 6)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                # depth 1 (bare claims only) is excluded because it can never have a unique solution:
                # bare claims only say "same role as X" / "different role from X", so swapping every
                # knight and knave always gives a second solution.
                raise ConfigError(f"{key} must be an integer in {low}..{high}, got {value!r}")
        valid = [f"{g}/{b}" for g, b in ROLE_PAIRS] + ["random"]
        if self.roles not in valid:
            raise ConfigError(f"roles must be one of {', '.join(valid)}; got {self.roles!r}")


def _sample_statement(depth_left: int, n: int, width: int, rnd, leaf_masks, full: int) -> tuple[tuple, int]:
    """A random statement tree (nested tuples) and its truth table.

    Below the top, each node is a bare claim or one of not/and/or/->/<=> with equal
    probability; at ``depth_left == 1`` it is a bare claim. Operands of one node are distinct.
    """
    kind = 0 if depth_left <= 1 else int(rnd() * 6)
    if kind == 0:
        p = int(rnd() * n)
        if rnd() < 0.5:
            return ("telling-truth", p), leaf_masks[p]
        return ("lying", p), full ^ leaf_masks[p]
    if kind == 1:
        while True:  # "not not x" says nothing new: draw another operand
            child, mask = _sample_statement(depth_left - 1, n, width, rnd, leaf_masks, full)
            if child[0] != "not":
                return ("not", child), full ^ mask
    count = 2 + int(rnd() * (width - 1)) if kind in (2, 3) else 2
    children: list[tuple] = []
    masks: list[int] = []
    while len(children) < count:  # distinct operands: "A and A" or "A <=> A" is a degenerate claim
        child, mask = _sample_statement(depth_left - 1, n, width, rnd, leaf_masks, full)
        if child not in children:
            children.append(child)
            masks.append(mask)
    if kind == 2:
        out = masks[0]
        for m in masks[1:]:
            out &= m
        return ("and", *children), out
    if kind == 3:
        out = masks[0]
        for m in masks[1:]:
            out |= m
        return ("or", *children), out
    if kind == 4:
        return ("->", *children), (full ^ masks[0]) | masks[1]
    return ("<=>", *children), full ^ (masks[0] ^ masks[1])


class _Statement:
    """One statement tree with its truth table; its list form, canonical form and English are computed once.

    Table statements are reused across puzzles, so caching these pays off many times.
    """

    __slots__ = ("tree", "mask", "packed", "canon", "_templates")

    def __init__(self, tree: tuple, mask: int) -> None:
        self.tree, self.mask = tree, mask
        self.packed: bytes | None = None  # marshal of the nested-list form: a fresh copy per puzzle costs ~0.3 us
        self.canon: str | None = None  # canonical JSON (see kk_solver.canonical_statement)
        self._templates: dict[int, str] = {}

    def prepare(self) -> "_Statement":
        if self.packed is None:
            # marshal is an in-process cache only (never written out), so its version-specific format is fine.
            self.packed = marshal.dumps(kk_solver._to_lists(self.tree))
            self.canon = json.dumps(kk_solver.canonical_statement(self.tree), separators=(",", ":"))
        return self

    def spoken(self, speaker: int, n: int) -> str:
        """The template as ``speaker`` says it (self-references as "I"), first letter capitalized."""
        text = self._templates.get(-2 - speaker)
        if text is None:
            said = self.template(speaker, n)
            text = self._templates[-2 - speaker] = said[0].upper() + said[1:]
        return text

    def template(self, speaker: int, n: int) -> str:
        """English as a format string: ``{0}``..``{n-1}`` are the names, ``{n}``/``{n+1}`` "a knight"/"a knave"."""
        text = self._templates.get(speaker)
        if text is None:
            text = _TEMPLATE_RENDERERS[n].clause(self.tree, speaker)
            self._templates[speaker] = text
        return text


class _Renderer:
    """Turns statement trees into English for one puzzle (names, role words, speaker)."""

    def __init__(self, names: list[str], a_good: str, a_bad: str) -> None:
        self.names = names
        self.a_good, self.a_bad = a_good, a_bad

    def clause(self, node: tuple, speaker: int = -1) -> str:
        """English for a tree; ``speaker`` >= 0 renders that person as "I" (direct speech)."""
        op = node[0]
        if op == "telling-truth" or op == "lying":
            role = self.a_good if op == "telling-truth" else self.a_bad
            return f"I am {role}" if node[1] == speaker else f"{self.names[node[1]]} is {role}"
        if op == "not":
            child = node[1]
            if child[0] == "telling-truth" or child[0] == "lying":
                role = self.a_good if child[0] == "telling-truth" else self.a_bad
                return f"I am not {role}" if child[1] == speaker else f"{self.names[child[1]]} is not {role}"
            return f"it is not true that {self.nested(child, speaker)}"
        parts = [self.nested(child, speaker) for child in node[1:]]
        if op == "and":
            return " and ".join(parts) if len(parts) == 2 else ", ".join(parts[:-1]) + " and " + parts[-1]
        if op == "or":
            return " or ".join(parts) if len(parts) == 2 else ", ".join(parts[:-1]) + " or " + parts[-1]
        if op == "->":
            return f"if {parts[0]} then {parts[1]}"
        return f"{parts[0]} if and only if {parts[1]}"

    def nested(self, node: tuple, speaker: int) -> str:
        """A sub-clause; compound ones get parentheses so the English parses one way only."""
        text = self.clause(node, speaker)
        if node[0] in kk_solver.LEAVES or (node[0] == "not" and node[1][0] in kk_solver.LEAVES):
            return text
        return f"({text})"


# Renderers that write format templates ("{2} is {ag}") instead of final text, one per puzzle size.
_TEMPLATE_RENDERERS = {
    n: _Renderer([f"{{{p}}}" for p in range(n)], f"{{{n}}}", f"{{{n + 1}}}") for n in range(1, MAX_PEOPLE + 1)
}

# Build a full table of drawable statements only while it stays small (depth 2, modest width).
MAX_TABLE_SIZE = 50_000
MAX_SPLIT_SIZE = 1_000_000


class _StatementTable:
    """Every statement the recursive sampler can produce at ``depth == 2``, with its probability.

    Drawing from it (one bisect) gives the same distribution as :func:`_sample_statement`
    at a fraction of the cost; the test suite checks the two against each other.
    """

    def __init__(self, n: int, depth: int, width: int) -> None:
        leaf_masks, full = kk_solver.knight_masks(n)
        leaves = []
        for p in range(n):
            leaves.append((("telling-truth", p), leaf_masks[p]))
            leaves.append((("lying", p), full ^ leaf_masks[p]))
        # Mirrors _sample_statement at depth 2: each of the six node kinds has probability 1/6,
        # and/or pick 2..width operands uniformly, operands are distinct ordered leaves.
        sixth = 1.0 / 6.0
        entries: list[tuple[tuple, int, float]] = [(t, m, sixth / len(leaves)) for t, m in leaves]
        entries += [(("not", t), full ^ m, sixth / len(leaves)) for t, m in leaves]
        for op in ("and", "or"):
            for count in range(2, width + 1):
                combos = list(itertools.permutations(leaves, count))
                weight = sixth / (width - 1) / len(combos)
                for combo in combos:
                    mask = combo[0][1]
                    for _, m in combo[1:]:
                        mask = mask & m if op == "and" else mask | m
                    entries.append(((op, *(t for t, _ in combo)), mask, weight))
        pairs = list(itertools.permutations(leaves, 2))
        for (a, ma), (b, mb) in pairs:
            entries.append((("->", a, b), (full ^ ma) | mb, sixth / len(pairs)))
        for (a, ma), (b, mb) in pairs:
            entries.append((("<=>", a, b), full ^ (ma ^ mb), sixth / len(pairs)))
        self.statements = [_Statement(t, m).prepare() for t, m, _ in entries]
        self.weights = [w for _, _, w in entries]
        self.cumulative = list(itertools.accumulate(self.weights))
        self.total = self.cumulative[-1]
        # Per hidden solution, the statements true / false under it, so that a draw that must
        # match the speaker's role is one bisect instead of a rejection loop (same distribution).
        self.split_ok = (1 << n) * len(entries) <= MAX_SPLIT_SIZE
        self._split: dict[int, tuple] = {}

    def matching(self, target: int) -> tuple:
        """``((statements, cumulative, total) false under target, (...) true under target)``."""
        found = self._split.get(target)
        if found is None:
            parts = []
            for value in (0, 1):
                picked = [(s, w) for s, w in zip(self.statements, self.weights) if (s.mask >> target & 1) == value]
                cumulative = list(itertools.accumulate(w for _, w in picked))
                parts.append(([s for s, _ in picked], cumulative, cumulative[-1]))
            found = self._split[target] = tuple(parts)
        return found

    @staticmethod
    def size(n: int, depth: int, width: int) -> int:
        leaves = 2 * n
        perms = lambda k: math.perm(leaves, k)  # noqa: E731
        return 2 * leaves + 2 * sum(perms(k) for k in range(2, width + 1)) + 2 * perms(2)


@lru_cache(maxsize=64)
def _statement_table(n: int, depth: int, width: int) -> _StatementTable | None:
    if depth != 2 or _StatementTable.size(n, depth, width) > MAX_TABLE_SIZE:
        return None
    return _StatementTable(n, depth, width)


_THREAD_STATE = threading.local()


def _thread_random() -> random.Random:
    """One Random per thread, re-seeded for each puzzle (cheaper than a new object; still thread-safe)."""
    rng = getattr(_THREAD_STATE, "rng", None)
    if rng is None:
        rng = _THREAD_STATE.rng = random.Random()
    return rng


@lru_cache(maxsize=None)
def _intro(index: int, good: str, bad: str, n: int) -> str:
    """The intro with role words and count filled in; ``{0}`` is left for the list of people."""
    fields = (_article(good), _article(bad), good.capitalize() + "s", good + "s", bad + "s", n)
    text = INTROS[index].replace("{6}", "{{6}}").format(*fields)
    return text.replace("{6}", "{0}")


@lru_cache(maxsize=None)
def _question(good: str, bad: str) -> str:
    """The question with role words filled in."""
    return QUESTION.format(_article(good), _article(bad))


@register("kk")
class KnightsKnavesGenerator(Generator):
    """Knights & Knaves puzzles with a unique solution (see the module docstring)."""

    Config = KnightsKnavesConfig
    verifier = "kk"
    canonical_ids = True  # id = "<task>-" + sha1(canonical())[:16]

    # Safety valve: a knob setting whose drafts are (almost) never unique fails loudly instead of spinning.
    max_drafts = 200_000

    def __init__(self, config: Any = None, **difficulty: Any) -> None:
        super().__init__(config, **difficulty)
        # Counters for the benchmark's uniqueness-rejection rate (per process).
        self.stats = {"puzzles": 0, "drafts": 0, "rejected_not_unique": 0}

    def draw_statements(self, rng: random.Random) -> tuple[list[_Statement], int]:
        """Statements with exactly one consistent assignment, and that assignment (bit p = person p is a knight)."""
        cfg = self.config
        n, depth, width = cfg.people, cfg.depth, cfg.width
        leaf_masks, full = kk_solver.knight_masks(n)
        table = _statement_table(n, depth, width)
        split = table is not None and table.split_ok
        rnd = rng.random
        stats = self.stats
        for attempt in range(self.max_drafts):
            target = int(rnd() * (1 << n))
            chosen: list[_Statement] = []
            inconsistent = 0
            matching = (table._split.get(target) or table.matching(target)) if split else None
            for p in range(n):
                knight = target >> p & 1
                # A statement whose truth under the hidden solution matches the speaker's role.
                if matching is not None:
                    statements, cumulative, total = matching[knight]
                    statement = statements[bisect.bisect(cumulative, rnd() * total)]
                elif table is not None:
                    statements, cumulative, total = table.statements, table.cumulative, table.total
                    while True:
                        statement = statements[bisect.bisect(cumulative, rnd() * total)]
                        if (statement.mask >> target & 1) == knight:
                            break
                else:
                    while True:
                        tree, mask = _sample_statement(depth, n, width, rnd, leaf_masks, full)
                        if (mask >> target & 1) == knight:
                            statement = _Statement(tree, mask)
                            break
                chosen.append(statement)
                inconsistent |= leaf_masks[p] ^ statement.mask
            if full ^ inconsistent == 1 << target:
                stats["drafts"] += attempt + 1
                stats["rejected_not_unique"] += attempt
                stats["puzzles"] += 1
                return chosen, target
        stats["drafts"] += self.max_drafts
        stats["rejected_not_unique"] += self.max_drafts
        raise RuntimeError(f"kk: no unique puzzle in {self.max_drafts} drafts at {cfg}")

    def generate(self, seed: int) -> dict[str, Any]:
        cfg = self.config
        n = cfg.people
        rng = _thread_random()
        rng.seed(seed)
        rnd = rng.random
        chosen, target = self.draw_statements(rng)
        for statement in chosen:
            if statement.packed is None:
                statement.prepare()
        solution = [bool(target >> p & 1) for p in range(n)]
        if cfg.roles == "random":
            good, bad = ROLE_PAIRS[int(rnd() * len(ROLE_PAIRS))]
        else:
            good, bad = cfg.roles.split("/")
        a_good, a_bad = _article(good), _article(bad)
        pool = NAME_POOLS[int(rnd() * len(NAME_POOLS))]
        names: list[str] = []
        while len(names) < n:  # distinct names; faster than rng.sample for a handful
            name = pool[int(rnd() * len(pool))]
            if name not in names:
                names.append(name)
        fill = (*names, a_good, a_bad)  # the template fields: names, then the two role phrases

        clauses = []  # third person, for the worked solution
        speech = []
        for p, statement in enumerate(chosen):
            templates = statement._templates
            plain = (templates.get(-1) or statement.template(-1, n)).format(*fill)
            clauses.append(plain)
            if rnd() < 0.6:
                said = (templates.get(-2 - p) or statement.spoken(p, n)).format(*fill)
                speech.append(DIRECT_SPEECH[int(rnd() * len(DIRECT_SPEECH))].format(names[p], said))
            else:
                speech.append(INDIRECT_SPEECH[int(rnd() * len(INDIRECT_SPEECH))].format(names[p], plain))
        intro = _intro(int(rnd() * len(INTROS)), good, bad, n).format(", ".join(names[:-1]) + " and " + names[-1])
        question = _question(good, bad)

        answer_text = "\n".join([f"({p + 1}) {names[p]} is {a_good if solution[p] else a_bad}" for p in range(n)])
        steps = worked_steps([s.mask for s in chosen], target, n, names, clauses, a_good, a_bad)
        canonical = "[" + ",".join([s.canon for s in chosen]) + "]"
        # The row make_problem() would build, written out directly (this path runs ~20k times a second).
        return {
            "id": "kk-" + hashlib.sha1(canonical.encode()).hexdigest()[:16],
            "task": "kk",
            "prompt": [{"role": "user", "content": intro + " " + " ".join(speech) + " " + question}],
            "answer": {"names": names, "solution": solution, "roles": [good, bad]},
            "difficulty": {"people": n, "depth": cfg.depth, "width": cfg.width},
            "metadata": {
                "statements": [marshal.loads(s.packed) for s in chosen],
                "worked_solution": "\n".join(steps) + f"\n<answer>{answer_text}</answer>",
            },
        }

    def canonical(self, problem: dict[str, Any]) -> str:
        """The statement trees with commutative operands sorted: names, wording and role words do not count."""
        return canonical_text(problem["metadata"]["statements"])

    def near_miss_responses(self, problem: dict[str, Any]) -> list[str]:
        """Every single-person flip, a missing person, both roles for one person, and an unknown name added."""
        answer = problem["answer"]
        names, solution, roles = answer["names"], answer["solution"], answer.get("roles")
        tag = lambda text: f"<answer>{text}</answer>"  # noqa: E731
        misses = []
        for i in range(len(names)):
            flipped = list(solution)
            flipped[i] = not flipped[i]
            misses.append(tag(render_solution(names, flipped, roles)))
        right = render_solution(names, solution, roles)
        misses.append(tag(render_solution(names[:-1], solution[:-1], roles)))
        both = render_solution([names[0]], [not solution[0]], roles).replace("(1)", f"({len(names) + 1})")
        misses.append(tag(right + "\n" + both))
        stranger = next(n for pool in NAME_POOLS for n in pool if n not in names)
        misses.append(tag(right + "\n" + render_solution([stranger], [True], roles).replace("(1)", f"({len(names) + 1})")))
        return misses


def canonical_text(statements: list) -> str:
    """Canonical JSON of a puzzle's statements (commutative operands sorted)."""
    return "[" + ",".join(json.dumps(kk_solver.canonical_statement(s), separators=(",", ":")) for s in statements) + "]"


@lru_cache(maxsize=None)
def _knave_masks(n: int) -> tuple[int, ...]:
    """Truth tables of "person p is a knave"."""
    leaf, full = kk_solver.knight_masks(n)
    return tuple(full ^ m for m in leaf)


@lru_cache(maxsize=None)
def _common_bits(n: int) -> list[tuple[int, int]]:
    """For every set of assignments (a truth-table mask), the people who are knights in all of
    them and the people who are knights in any of them, as bitsets. Only for n <= 4 (65,536 sets)."""
    table: list[tuple[int, int]] = [((1 << n) - 1, 0)]
    for subset in range(1, 1 << (1 << n)):
        low = subset & -subset
        assignment = low.bit_length() - 1
        rest_all, rest_any = table[subset ^ low]
        table.append((rest_all & assignment, rest_any | assignment))
    return table


def worked_steps(
    statement_masks: list[int], target: int, n: int, names: list[str], clauses: list[str], a_good: str, a_bad: str
) -> list[str]:
    """A short deduction of the unique solution, one line per step.

    Two kinds of line, both read off truth tables so every sentence is true:

    * a **direct** step: given the roles settled so far, one statement can only fit its
      speaker if some people have particular roles ("Bob is a knave, so Bob's statement
      "..." is false; hence Eve is a knight");
    * a **case** step when no direct step exists: assume the wrong role for someone, follow
      direct steps until a statement cannot fit its speaker, and conclude the other role.
      When no chain of direct steps reaches a contradiction the line says so plainly
      ("no choice for the others makes every statement fit its speaker").

    A "region" below is a truth-table mask: the assignments still possible given what has
    been settled (always the conjunction of the settled people's roles).
    """
    leaf, full = kk_solver.knight_masks(n)
    not_leaf = _knave_masks(n)
    fits = [full ^ leaf[q] ^ statement_masks[q] for q in range(n)]  # q's statement matches q's role
    role = (a_bad, a_good)
    quotes = [f'{names[q]}\'s statement "{clauses[q]}"' for q in range(n)]
    common = _common_bits(n) if n <= 4 else None

    def direct(region: int, fixed: list[int], settled: list[int], undecided: list[int]):
        """A statement that, within ``region``, settles undecided people: (text, [(person, knight?)]) or None."""
        # Statements of people with a settled role read most naturally, so try them first.
        for q in (settled + undecided) if settled else undecided:
            narrowed = region & fits[q]
            if narrowed == region or not narrowed:
                continue
            forced = []
            if common is not None:  # small puzzles: who is fixed within `narrowed`, by table lookup
                knights, anyone = common[narrowed]
                for r in undecided:
                    if knights >> r & 1:
                        forced.append((r, 1))
                    elif not anyone >> r & 1:
                        forced.append((r, 0))
            else:
                for r in undecided:
                    if not narrowed & not_leaf[r]:
                        forced.append((r, 1))
                    elif not narrowed & leaf[r]:
                        forced.append((r, 0))
            if forced:
                who = " and ".join([f"{names[r]} is {role[k]}" for r, k in forced])
                kq = fixed[q]
                if kq >= 0:
                    return f"{names[q]} is {role[kq]}, so {quotes[q]} is {'true' if kq else 'false'}; hence {who}", forced
                return f"{quotes[q]} fits {names[q]} only if {who}", forced
        return None

    def contradiction(region: int, fixed: list[int]) -> str | None:
        for q in range(n):
            if region & fits[q]:
                continue
            kq = fixed[q]
            if kq >= 0:
                return f"{quotes[q]} would be {'false' if kq else 'true'}, but {names[q]} is {role[kq]}"
            return f"{quotes[q]} would be false if {names[q]} were {role[1]} and true if {names[q]} were {role[0]}"
        return None

    def settle(region: int, fixed: list[int], settled: list[int], undecided: list[int], people) -> int:
        for r, k in people:
            fixed[r] = k
            settled.append(r)
            undecided.remove(r)
            region &= leaf[r] if k else not_leaf[r]
        return region

    known = full
    fixed = [-1] * n
    settled: list[int] = []
    undecided = list(range(n))
    lines: list[str] = []
    while undecided:
        step = direct(known, fixed, settled, undecided)
        if step is not None:
            text, forced = step
            lines.append(text[0].upper() + text[1:] + ".")
            known = settle(known, fixed, settled, undecided, forced)
            continue
        # Case split: assume the wrong role for someone and run into a contradiction.
        line = None
        for p in undecided:
            knight = target >> p & 1
            trial, trial_settled, trial_undecided = list(fixed), list(settled), list(undecided)
            region = settle(known, trial, trial_settled, trial_undecided, [(p, 1 - knight)])
            chain: list[str] = []
            while True:
                reason = contradiction(region, trial)
                if reason is not None:
                    break
                step = direct(region, trial, trial_settled, trial_undecided)
                if step is None:
                    break
                chain.append(step[0])
                region = settle(region, trial, trial_settled, trial_undecided, step[1])
            if reason is not None:
                then = "; then ".join(chain + [reason])
                line = (
                    f"Suppose {names[p]} is {role[1 - knight]}. Then {then}: a contradiction. "
                    f"So {names[p]} is {role[knight]}."
                )
                break
        if line is None:
            p = undecided[0]
            knight = target >> p & 1
            line = (
                f"Suppose {names[p]} is {role[1 - knight]}: then no choice for the others makes every statement fit its "
                f"speaker. So {names[p]} is {role[knight]}."
            )
        lines.append(line)
        known = settle(known, fixed, settled, undecided, [(p, knight)])
    return lines
