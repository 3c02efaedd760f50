"""Countdown: reach a target number with the given numbers (generator ``countdown``).

``Using the numbers 3, 7, 25, 50, make 97. ...``. Stresses search and arithmetic; many
answers are valid, and the ``countdown`` verifier checks any of them exactly (value and the
multiset of numbers used).

Difficulty knobs:

* ``numbers`` (2–6, default 4): how many numbers are given.
* ``max_value`` (2–1000, default 25): the numbers are drawn from ``1 .. max_value``.
* ``max_target`` (10–100000, default 1000): targets lie in ``1 .. max_target``.
* ``ops`` (non-empty subset of ``+ - * /``, default all four): operators the hidden
  solution uses; the prompt lists them and the verifier accepts only those.
* ``use_all`` (default True): every number must be used exactly once (as in TinyZero's
  Countdown). With ``use_all=false`` each number may be used at most once.

Solvable by construction: a random expression tree over the drawn numbers is built first
(divisions must come out whole, so the working stays in integers) and its value becomes
the target. ``answer`` = ``{"numbers": [...], "target": int, "ops": [...], "use_all": bool}``;
``metadata["solution_expression"]`` is the hidden solution and ``metadata["worked_solution"]``
its steps ending in ``<answer>EXPR</answer>``.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from reasonrl.data_gen.base import ConfigError, Generator, register
from reasonrl.types import make_problem

ALLOWED_OPS = ("+", "-", "*", "/")


@dataclass(frozen=True)
class CountdownConfig:
    """Difficulty knobs of ``countdown`` (see the module docstring)."""

    numbers: int = 4
    max_value: int = 25
    max_target: int = 1000
    ops: tuple = ALLOWED_OPS
    use_all: bool = True

    def __post_init__(self) -> None:
        raw = (self.ops,) if isinstance(self.ops, str) else tuple(self.ops)
        ops = tuple(c for item in raw for c in str(item) if c not in ", ")
        bad = [op for op in ops if op not in ALLOWED_OPS]
        if bad or not ops:
            raise ConfigError(f"ops must be a non-empty subset of {', '.join(ALLOWED_OPS)}; got {self.ops!r}")
        object.__setattr__(self, "ops", tuple(op for op in ALLOWED_OPS if op in ops))
        for key, low, high in (("numbers", 2, 6), ("max_value", 2, 1000), ("max_target", 10, 100_000)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"{key} must be an integer in {low}..{high}, got {value!r}")
        if not isinstance(self.use_all, bool):
            raise ConfigError(f"use_all must be true or false, got {self.use_all!r}")


def _combine(a: tuple[int, str], b: tuple[int, str], op: str) -> tuple[int, str] | None:
    """Apply ``op``; None when the result leaves positive whole numbers (x/0, 7/2, 3-5)."""
    (x, ex), (y, ey) = a, b
    if op == "+":
        value = x + y
    elif op == "-":
        value = x - y
    elif op == "*":
        value = x * y
    else:
        if y == 0 or x % y:
            return None
        value = x // y
    if value <= 0:
        return None
    return value, f"({ex}{op}{ey})"


@register("countdown")
class CountdownGenerator(Generator):
    """Numbers and a target reachable from them (see the module docstring)."""

    Config = CountdownConfig
    verifier = "countdown"
    canonical_ids = True  # id = "countdown-" + sha1(canonical())[:16]

    def generate(self, seed: int) -> dict[str, Any]:
        cfg = self.config
        rng = random.Random(seed)
        for _ in range(10_000):
            numbers = [rng.randint(1, cfg.max_value) for _ in range(cfg.numbers)]
            # Which numbers the hidden solution uses: all of them, or (use_all=False) a random subset of >= 2.
            used = list(range(cfg.numbers)) if cfg.use_all else rng.sample(range(cfg.numbers), rng.randint(2, cfg.numbers))
            pool = [(numbers[i], str(numbers[i])) for i in used]
            steps = []
            while len(pool) > 1:  # combine two random items until one expression is left
                i, j = rng.sample(range(len(pool)), 2)
                op = rng.choice(cfg.ops)
                combined = _combine(pool[i], pool[j], op)
                if combined is None:
                    break
                steps.append(f"{pool[i][0]}{op}{pool[j][0]}={combined[0]}")
                pool = [item for k, item in enumerate(pool) if k not in (i, j)] + [combined]
            if len(pool) != 1 or not 1 <= pool[0][0] <= cfg.max_target:
                continue
            target, expression = pool[0][0], pool[0][1]
            if expression.startswith("(") and expression.endswith(")") and _balanced(expression[1:-1]):
                expression = expression[1:-1]
            break
        else:  # pragma: no cover - knobs validated so that this is reachable only with absurd settings
            raise RuntimeError(f"countdown: no solvable instance found at {cfg}")
        rule = "each number exactly once" if cfg.use_all else "each number at most once"
        prompt = (
            f"Using the numbers {', '.join(map(str, numbers))}, make {target}. Use {rule}, with {' '.join(cfg.ops)} "
            "and parentheses. Put only the expression in <answer></answer>."
        )
        answer = {"numbers": numbers, "target": target, "ops": list(cfg.ops), "use_all": cfg.use_all}
        row = make_problem(
            id="",
            task="countdown",
            prompt=prompt,
            answer=answer,
            difficulty={k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
            metadata={
                "solution_expression": expression,
                "worked_solution": "\n".join(steps + [f"<answer>{expression}</answer>"]),
            },
        )
        row["id"] = "countdown-" + hashlib.sha1(self.canonical(row).encode()).hexdigest()[:16]
        return row

    def near_miss_responses(self, problem: dict[str, Any]) -> list[str]:
        """Responses that reach the target with the wrong numbers, or use the right numbers for a wrong value."""
        answer, expression = problem["answer"], problem["metadata"]["solution_expression"]
        numbers, target = answer["numbers"], answer["target"]
        misses = [f"<answer>({expression})+1</answer>", f"<answer>({expression})-1</answer>"]
        # The right value, with a given number used more often than it is given.
        used = Counter(int(x) for x in re.findall(r"\d+", expression))
        if used[numbers[0]] + 2 > Counter(numbers)[numbers[0]]:
            misses.append(f"<answer>({expression})*{numbers[0]}/{numbers[0]}</answer>")
        # The right value built from a number that was not given (reasoning-gym's puzzle24 once accepted this).
        stranger = next(v for v in range(2, 10**6) if v not in numbers)
        misses.append(f"<answer>({expression})*{stranger}/{stranger}</answer>")
        if answer.get("use_all", True):
            misses.append(f"<answer>{target}</answer>")  # the target alone leaves the numbers unused
        return misses

    def canonical(self, problem: dict[str, Any]) -> str:
        """The multiset of numbers, the target and the rules: the order the numbers are listed in does not count."""
        a = problem["answer"]
        return json.dumps([sorted(a["numbers"]), a["target"], sorted(a["ops"]), a["use_all"]])


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return False
    return depth == 0
