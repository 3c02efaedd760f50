"""Knights & Knaves logic: statement trees, a bitmask solver and a slow reference solver.

A statement is a logic tree in the Logic-RL form, with 0-based person indices::

    ["telling-truth", i]          person i is a knight
    ["lying", i]                  person i is a knave
    ["not", s]
    ["and", s1, s2, ...]          (two or more operands)
    ["or", s1, s2, ...]
    ["->", a, b]                  implication
    ["<=>", a, b]                 if and only if

Lists and tuples are both accepted; :func:`parse_statements` also reads Logic-RL's Python
tuple-literal strings (``"(('not', ('telling-truth', 2)), ...)"``).

The fast solver evaluates a statement on all ``2**n`` assignments at once: an assignment is
an ``n``-bit number (bit ``p`` set = person ``p`` is a knight), and the truth table of a
statement is a Python int with bit ``a`` set when the statement holds under assignment
``a``. ``and``/``or``/``not`` are then single big-int operations, so solving a 4-person
puzzle costs a handful of operations instead of 16 tree walks.
"""
from __future__ import annotations

import ast
import itertools
from functools import lru_cache
from typing import Any, Sequence

LEAVES = ("telling-truth", "lying")
OPERATORS = ("not", "and", "or", "->", "<=>")


class StatementError(ValueError):
    """A statement tree is malformed; the message says where."""


@lru_cache(maxsize=None)
def knight_masks(n: int) -> tuple[tuple[int, ...], int]:
    """Truth tables of "person p is a knight" for p in range(n), and the all-ones mask.

    ``masks[p]`` has bit ``a`` set iff bit ``p`` of ``a`` is set, for ``a`` in ``0 .. 2**n - 1``.
    """
    size = 1 << n
    full = (1 << size) - 1
    masks = []
    for p in range(n):
        # Runs of 2**p zeros then 2**p ones, repeated over the table.
        block = 1 << (p + 1)
        ones = ((1 << (1 << p)) - 1) << (1 << p)
        pattern = 0
        for start in range(0, size, block):
            pattern |= ones << start
        masks.append(pattern & full)
    return tuple(masks), full


def truth_mask(statement: Any, n: int) -> int:
    """The truth table of ``statement`` over all ``2**n`` assignments (see module docstring)."""
    masks, full = knight_masks(n)
    return _mask(statement, masks, full, n)


def _mask(node: Any, masks: Sequence[int], full: int, n: int) -> int:
    if not isinstance(node, (list, tuple)) or not node:
        raise StatementError(f"expected a non-empty list, got {node!r}")
    op = node[0]
    if op in LEAVES:
        if len(node) != 2 or not isinstance(node[1], int) or isinstance(node[1], bool) or not 0 <= node[1] < n:
            raise StatementError(f"{op!r} needs one person index in 0..{n - 1}, got {list(node[1:])!r}")
        return masks[node[1]] if op == "telling-truth" else full ^ masks[node[1]]
    args = node[1:]
    if op == "not":
        if len(args) != 1:
            raise StatementError(f"'not' takes one operand, got {len(args)}")
        return full ^ _mask(args[0], masks, full, n)
    if op in ("and", "or"):
        if len(args) < 2:
            raise StatementError(f"{op!r} takes two or more operands, got {len(args)}")
        values = [_mask(a, masks, full, n) for a in args]
        out = values[0]
        for v in values[1:]:
            out = out & v if op == "and" else out | v
        return out
    if op in ("->", "<=>"):
        if len(args) != 2:
            raise StatementError(f"{op!r} takes two operands, got {len(args)}")
        a, b = _mask(args[0], masks, full, n), _mask(args[1], masks, full, n)
        return ((full ^ a) | b) if op == "->" else (full ^ (a ^ b))
    raise StatementError(f"unknown operator {op!r}; valid: {', '.join(LEAVES + OPERATORS)}")


def consistent_mask(statements: Sequence[Any], n: int | None = None) -> int:
    """Bit ``a`` set iff assignment ``a`` is consistent: every knight's statement true, every knave's false."""
    n = len(statements) if n is None else n
    masks, full = knight_masks(n)
    bad = 0
    for p, statement in enumerate(statements):
        bad |= masks[p] ^ _mask(statement, masks, full, n)
    return full ^ bad


def assignment_to_bools(assignment: int, n: int) -> list[bool]:
    return [bool(assignment >> p & 1) for p in range(n)]


def bools_to_assignment(solution: Sequence[bool]) -> int:
    return sum(1 << p for p, knight in enumerate(solution) if knight)


def solve(statements: Sequence[Any], n: int | None = None) -> list[list[bool]]:
    """All consistent assignments (True = knight), in increasing assignment order."""
    n = len(statements) if n is None else n
    mask = consistent_mask(statements, n)
    out = []
    while mask:
        low = mask & -mask
        out.append(assignment_to_bools(low.bit_length() - 1, n))
        mask ^= low
    return out


def evaluate(node: Any, solution: Sequence[bool]) -> bool:
    """Truth value of one statement under one assignment, by walking the tree (the slow, obvious way)."""
    op = node[0]
    if op == "telling-truth":
        return bool(solution[node[1]])
    if op == "lying":
        return not solution[node[1]]
    if op == "not":
        return not evaluate(node[1], solution)
    if op == "and":
        return all(evaluate(a, solution) for a in node[1:])
    if op == "or":
        return any(evaluate(a, solution) for a in node[1:])
    if op == "->":
        return (not evaluate(node[1], solution)) or evaluate(node[2], solution)
    if op == "<=>":
        return evaluate(node[1], solution) == evaluate(node[2], solution)
    raise StatementError(f"unknown operator {op!r}")


def solve_bruteforce(statements: Sequence[Any]) -> list[list[bool]]:
    """Reference solver: try every assignment and walk every tree. Oracle for :func:`solve` in tests."""
    n = len(statements)
    found = []
    for bits in itertools.product([False, True], repeat=n):
        solution = list(reversed(bits))  # so that the order matches solve(): assignment 0, 1, 2, ...
        if all(evaluate(s, solution) == solution[p] for p, s in enumerate(statements)):
            found.append(solution)
    return sorted(found, key=bools_to_assignment)


def parse_statements(value: Any) -> list[Any]:
    """Statements from JSON lists, tuples, or a Logic-RL tuple-literal string; returned as nested lists."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)  # literals only: no code runs
        except (ValueError, SyntaxError) as exc:
            raise StatementError(f"cannot parse statements string: {exc}") from None
    if not isinstance(value, (list, tuple)):
        raise StatementError(f"statements must be a list, got {type(value).__name__}")
    return [_to_lists(s) for s in value]


def _to_lists(node: Any) -> Any:
    if isinstance(node, (list, tuple)):
        return [_to_lists(x) for x in node]
    return node


def depth_of(node: Any) -> int:
    """Nesting depth: 1 for a bare claim, 2 for an operator over claims, and so on."""
    if node[0] in LEAVES:
        return 1
    return 1 + max(depth_of(a) for a in node[1:])


def canonical_statement(node: Any) -> Any:
    """The tree with the operands of the commutative operators (and, or, <=>) in a fixed order."""
    if node[0] in LEAVES:
        return [node[0], node[1]]
    args = [canonical_statement(a) for a in node[1:]]
    if node[0] in ("and", "or", "<=>"):
        args.sort(key=repr)
    return [node[0], *args]
