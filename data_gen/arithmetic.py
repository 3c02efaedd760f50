"""Arithmetic expressions to evaluate (generator ``arith``).

A deliberately small task: ``Compute 123+456. Put the final answer in <answer></answer>.``
It is the easiest family, meant for the embedded tiny character-level model, so the
prompt is short and ASCII-only.

Difficulty knobs (``--difficulty k=v``):

* ``digits`` (1–18, default 3): each operand is drawn uniformly from ``0 .. 10**digits - 1``.
* ``operands`` (2–10, default 2): how many numbers the expression has.
* ``ops`` (non-empty subset of ``+ - *``, default ``+``): the operators drawn from; on the
  CLI ``ops=+,-,*``. Ordinary precedence applies (``*`` before ``+``/``-``, then left to right).

``answer`` is the integer value as a string (``"579"``; negative results keep their sign).

Two solution texts are stored, the trainer picks one:

* ``metadata["worked_solution"]``: the answer tag alone, ``<answer>579</answer>``
  (the shortest possible SFT target for a tiny model);
* ``metadata["worked_solution_steps"]``: one line per operation, in evaluation order,
  then the tag, e.g. ``3*4=12\\n12+5=17\\n<answer>17</answer>``.

The id is ``arith-<hash of the expression>``: the expression is the canonical form, so two
rows with the same id are the same problem.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from reasonrl.data_gen.base import ConfigError, Generator, register
from reasonrl.types import make_problem

ALLOWED_OPS = ("+", "-", "*")


@dataclass(frozen=True)
class ArithmeticConfig:
    """Difficulty knobs of ``arith``.

    Attributes:
        digits: operands have up to this many decimal digits (1–18).
        operands: number of operands in the expression (2–10).
        ops: operators to draw from, a non-empty subset of ``("+", "-", "*")``.
    """

    digits: int = 3
    operands: int = 2
    ops: tuple = ("+",)

    def __post_init__(self) -> None:
        # Accept "+-*", "+,-" or ("+-",) as well as ("+", "-"): split strings into single characters.
        raw = (self.ops,) if isinstance(self.ops, str) else tuple(self.ops)
        object.__setattr__(self, "ops", tuple(c for item in raw for c in str(item) if c not in ", "))
        if not isinstance(self.digits, int) or isinstance(self.digits, bool) or not 1 <= self.digits <= 18:
            raise ConfigError(f"digits must be an integer in 1..18, got {self.digits!r}")
        if not isinstance(self.operands, int) or isinstance(self.operands, bool) or not 2 <= self.operands <= 10:
            raise ConfigError(f"operands must be an integer in 2..10, got {self.operands!r}")
        if not self.ops:
            raise ConfigError(f"ops must be a non-empty subset of {', '.join(ALLOWED_OPS)}")
        bad = [op for op in self.ops if op not in ALLOWED_OPS]
        if bad:
            raise ConfigError(f"ops: unknown operator(s) {', '.join(map(repr, bad))}; valid: {', '.join(ALLOWED_OPS)}")
        # A canonical, duplicate-free order so that ops=("*","+") and ("+","*","+") are the same config.
        object.__setattr__(self, "ops", tuple(op for op in ALLOWED_OPS if op in self.ops))


def evaluate_with_steps(numbers: list[int], ops: list[str]) -> tuple[int, list[str]]:
    """Value of ``n0 op0 n1 op1 ...`` with ``*`` before ``+``/``-``, and the steps as ``a*b=c`` lines.

    Products are folded first (left to right), then sums and differences (left to right),
    which is the order a person writes the working in.
    """
    steps: list[str] = []
    # Pass 1: fold runs of multiplications into single terms.
    terms = [numbers[0]]
    signs: list[str] = []
    for op, n in zip(ops, numbers[1:]):
        if op == "*":
            product = terms[-1] * n
            steps.append(f"{terms[-1]}*{n}={product}")
            terms[-1] = product
        else:
            signs.append(op)
            terms.append(n)
    # Pass 2: additions and subtractions, left to right.
    value = terms[0]
    for sign, term in zip(signs, terms[1:]):
        new = value + term if sign == "+" else value - term
        steps.append(f"{value}{sign}{term}={new}")
        value = new
    return value, steps


@register("arith")
class ArithmeticGenerator(Generator):
    """Random integer expressions such as ``47*3-120``; the answer is their value."""

    Config = ArithmeticConfig
    verifier = "arith"
    canonical_ids = True  # id = "<task>-" + sha1(canonical())[:16]

    def generate(self, seed: int) -> dict[str, Any]:
        cfg = self.config
        rng = random.Random(seed)
        high = 10**cfg.digits - 1
        numbers = [rng.randint(0, high) for _ in range(cfg.operands)]
        ops = [rng.choice(cfg.ops) for _ in range(cfg.operands - 1)]
        expression = str(numbers[0]) + "".join(op + str(n) for op, n in zip(ops, numbers[1:]))
        value, steps = evaluate_with_steps(numbers, ops)
        answer = str(value)
        tag = f"<answer>{answer}</answer>"
        return make_problem(
            id="arith-" + hashlib.sha1(expression.encode()).hexdigest()[:16],
            task="arith",
            prompt=f"Compute {expression}. Put the final answer in <answer></answer>.",
            answer=answer,
            difficulty={"digits": cfg.digits, "operands": cfg.operands, "ops": list(cfg.ops)},
            metadata={
                "expression": expression,
                "worked_solution": tag,
                "worked_solution_steps": "\n".join(steps + [tag]),
            },
        )

    def canonical(self, problem: dict[str, Any]) -> str:
        """The expression itself: the same expression is the same problem."""
        return problem["metadata"]["expression"]

    def near_miss_responses(self, problem: dict[str, Any]) -> list[str]:
        """Almost-right responses that must score 0: off by one either way, the sign flipped, no tag."""
        value = int(problem["answer"])
        misses = [f"<answer>{value + 1}</answer>", f"<answer>{value - 1}</answer>", str(value)]
        if value:
            misses.append(f"<answer>{-value}</answer>")
        return misses
