"""Graph coloring: color a graph's nodes with k colors, no edge inside one color (generator ``graph_coloring``).

Stresses constraint satisfaction over a structure rather than arithmetic; many answers are
valid and the ``graph_coloring`` verifier accepts any proper coloring.

Difficulty knobs:

* ``nodes`` (3–40, default 6): number of nodes, named ``0 .. nodes-1``.
* ``edge_prob`` (0.05–1.0, default 0.5): probability of an edge between two nodes of
  *different* hidden colors (see below), so it sets the density.
* ``k`` (2–8, default 3): number of colors, named ``1 .. k``.

Colorable by construction: a hidden coloring is drawn first (every color used when
``nodes >= k``) and edges are only drawn between nodes of different hidden colors. At
least one edge is always present. ``answer`` = ``{"nodes": n, "edges": [[u, v], ...], "k": k}``
(edges with ``u < v``, sorted); ``metadata["worked_solution"]`` is the hidden coloring as
``<answer>0:1, 1:3, ...</answer>``, the format the prompt asks for.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from reasonrl.data_gen.base import ConfigError, Generator, register
from reasonrl.types import make_problem


@dataclass(frozen=True)
class GraphColoringConfig:
    """Difficulty knobs of ``graph_coloring`` (see the module docstring)."""

    nodes: int = 6
    edge_prob: float = 0.5
    k: int = 3

    def __post_init__(self) -> None:
        for key, low, high in (("nodes", 3, 40), ("k", 2, 8)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"{key} must be an integer in {low}..{high}, got {value!r}")
        if not isinstance(self.edge_prob, (int, float)) or isinstance(self.edge_prob, bool) or not 0.05 <= self.edge_prob <= 1:
            raise ConfigError(f"edge_prob must be a number in 0.05..1.0, got {self.edge_prob!r}")
        object.__setattr__(self, "edge_prob", float(self.edge_prob))


def _parse_pairs(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"(\d+):(\d+)", text)]


def format_coloring(colors: dict[int, int] | list[int]) -> str:
    """``0:1, 1:3, 2:2``: the answer format (node:color, colors numbered from 1)."""
    items = colors.items() if isinstance(colors, dict) else enumerate(colors)
    return ", ".join(f"{node}:{color}" for node, color in sorted(items))


@register("graph_coloring")
class GraphColoringGenerator(Generator):
    """A random graph with a planted proper k-coloring (see the module docstring)."""

    Config = GraphColoringConfig
    verifier = "graph_coloring"
    canonical_ids = True  # id = "graph_coloring-" + sha1(canonical())[:16]

    def generate(self, seed: int) -> dict[str, Any]:
        cfg = self.config
        rng = random.Random(seed)
        n, k = cfg.nodes, cfg.k
        while True:
            # Every color appears when there are enough nodes, so k colors are really needed by the hidden solution.
            hidden = [c % k + 1 for c in range(n)]
            rng.shuffle(hidden)
            edges = [
                [u, v] for u in range(n) for v in range(u + 1, n) if hidden[u] != hidden[v] and rng.random() < cfg.edge_prob
            ]
            if edges:
                break
        edge_text = ", ".join(f"{u}-{v}" for u, v in edges)
        prompt = (
            f"Color the nodes of a graph with colors 1 to {k} so that the two ends of every edge get different "
            f"colors. Nodes: 0 to {n - 1}. Edges: {edge_text}. Give every node's color inside <answer></answer> "
            "as node:color pairs separated by commas, e.g. <answer>0:1, 1:2, ...</answer>."
        )
        answer = {"nodes": n, "edges": edges, "k": k}
        row = make_problem(
            id="",
            task="graph_coloring",
            prompt=prompt,
            answer=answer,
            difficulty={"nodes": n, "edge_prob": cfg.edge_prob, "k": k},
            metadata={"worked_solution": f"<answer>{format_coloring(hidden)}</answer>"},
        )
        row["id"] = "graph_coloring-" + hashlib.sha1(self.canonical(row).encode()).hexdigest()[:16]
        return row

    def near_miss_responses(self, problem: dict[str, Any]) -> list[str]:
        """One edge inside one color, a node left out, a color outside 1..k, a node that does not exist."""
        answer = problem["answer"]
        n, k = answer["nodes"], answer["k"]
        colors = [int(c) for _, c in sorted(_parse_pairs(problem["metadata"]["worked_solution"]))]
        u, v = answer["edges"][0]
        same = list(colors)
        same[u] = same[v]
        out_of_range = list(colors)
        out_of_range[0] = k + 1
        tag = lambda text: f"<answer>{text}</answer>"  # noqa: E731
        return [
            tag(format_coloring(same)),
            tag(format_coloring(colors[:-1])),
            tag(format_coloring(out_of_range)),
            tag(format_coloring(colors) + f", {n}:1"),
        ]

    def canonical(self, problem: dict[str, Any]) -> str:
        """Node count, sorted edge list and k (node labels are kept: relabelled graphs count as different)."""
        a = problem["answer"]
        return json.dumps([a["nodes"], sorted(sorted(e) for e in a["edges"]), a["k"]])
