"""Throughput of the ``math`` verifier against math-verify's plain loop, on the same inputs.

Inputs: the 500 MATH-500 problems, twice — each gold ``answer`` against its own gold
``solution`` (should verify) and against the solution of the next problem whose answer
differs (should not): 1,000 (gold, response) pairs, responses being full solution texts.

Rows of the table (one run, same machine, all warmed up before timing):

* ``math-verify loop``: ``verify(parse(gold), parse(response))`` per pair in one process, the
  gold wrapped in ``$...$`` (math-verify's documented use; without it many bare golds do
  not parse at all).
* ``reasonrl math, 1 process``: ``MathVerifier().verify`` per pair (its slow path runs in the
  helper process, one item at a time).
* ``reasonrl math, batch N workers``: ``VerifierPool(MathVerifier(), workers=N).map``, when
  :mod:`reasonrl.verifiers.batch` is available.
* ``reasonrl slow path only``: ``MathVerifier(fast_path=False)``, the reference the fast path
  must agree with.

Also printed: verdict agreement of the fast+slow verifier with its slow path alone (must be
every pair) and with the plain math-verify loop.

Run: ``python benchmarks/verify_math.py [--workers 2] [--conformance DIR]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_pairs(conformance_dir: Path) -> list[tuple[str, str, bool]]:
    """(gold answer, response text, should_be_correct) for every benchmark pair."""
    from reasonrl.verifiers.math_normalize import comparison_key, normalize_answer

    path = conformance_dir / "math" / "math500_test.jsonl"
    if not path.exists():
        raise SystemExit(f"MATH-500 not found at {path} (pass --conformance DIR or set REASONRL_CONFORMANCE_DIR)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    pairs = [(row["answer"], row["solution"], True) for row in rows]
    for i, row in enumerate(rows):
        key = comparison_key(normalize_answer(row["answer"]))
        k = 1
        while comparison_key(normalize_answer(rows[(i + k) % len(rows)]["answer"])) == key:
            k += 1
        pairs.append((row["answer"], rows[(i + k) % len(rows)]["solution"], False))
    return pairs


def run_math_verify(pairs) -> tuple[float, list[bool]]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    verify(parse("$1$"), parse("$1$"))  # imports and first-call set-up outside the timing
    start = time.perf_counter()
    verdicts = [bool(verify(parse(f"${gold}$"), parse(response))) for gold, response, _ in pairs]
    return time.perf_counter() - start, verdicts


def run_ours(pairs, **options) -> tuple[float, list[bool], dict[str, int]]:
    from reasonrl.verifiers.math_flex import MathVerifier

    verifier = MathVerifier(**options)
    verifier.verify("\\boxed{(x+1)^2}", "x^2+2x+1")  # start the helper process outside the timing
    start = time.perf_counter()
    verdicts = [verifier.verify(response, gold) for gold, response, _ in pairs]
    elapsed = time.perf_counter() - start
    paths: dict[str, int] = {}
    for v in verdicts:
        paths[v.details.get("path", "-")] = paths.get(v.details.get("path", "-"), 0) + 1
    return elapsed, [v.correct for v in verdicts], paths


def run_ours_batch(pairs, workers: int) -> tuple[float, list[bool]] | None:
    try:
        from reasonrl.verifiers.batch import VerifierPool
    except ImportError:
        return None
    from reasonrl.verifiers.math_flex import MathVerifier

    with VerifierPool(MathVerifier(), workers=workers) as pool:
        # Warm-up: starts the workers and their helper processes (slow-path items for each).
        warm = ["\\boxed{(x+1)^2}"] * (8 * workers)
        pool.map(warm, ["x^2+2x+1"] * len(warm))
        start = time.perf_counter()
        verdicts = pool.map([r for _, r, _ in pairs], [g for g, _, _ in pairs])
        elapsed = time.perf_counter() - start
    return elapsed, [v.correct for v in verdicts]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes for the batch row (0: skip it)")
    parser.add_argument(
        "--conformance",
        type=Path,
        default=Path(os.environ.get("REASONRL_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance")),
    )
    args = parser.parse_args()

    pairs = load_pairs(args.conformance)
    n = len(pairs)
    expected = [e for _, _, e in pairs]

    mv_time, mv_verdicts = run_math_verify(pairs)
    ours_time, ours_verdicts, paths = run_ours(pairs)
    slow_time, slow_verdicts, _ = run_ours(pairs, fast_path=False)
    batch = run_ours_batch(pairs, args.workers) if args.workers > 0 else None

    def row(name: str, seconds: float, verdicts: list[bool]) -> str:
        gold_ok = sum(v for v, e in zip(verdicts, expected) if e)
        wrong_ok = sum(v for v, e in zip(verdicts, expected) if not e)
        return f"| {name:<36} | {n:>5} | {seconds:>7.2f} | {n / seconds:>8.0f} | {mv_time / seconds:>6.1f}x | {gold_ok:>4}/500 | {wrong_ok:>4}/500 |"

    print(f"\nMATH-500: {n} pairs (500 gold solutions + 500 solutions of another problem); machine: {os.cpu_count()} CPUs\n")
    print("| method                               | pairs | seconds |  pairs/s |  ratio | gold ok  | wrong ok |")
    print("|--------------------------------------|-------|---------|----------|--------|----------|----------|")
    print(row("math-verify verify(parse, parse) loop", mv_time, mv_verdicts))
    print(row("reasonrl math, 1 process", ours_time, ours_verdicts))
    if batch is not None:
        print(row(f"reasonrl math, batch {args.workers} workers", batch[0], batch[1]))
    print(row("reasonrl slow path only, 1 process", slow_time, slow_verdicts))
    print(f"\nfast path decided {paths.get('fast', 0)}/{n} pairs; slow path {paths.get('slow', 0)}")
    agree_slow = sum(a == b for a, b in zip(ours_verdicts, slow_verdicts))
    agree_mv = sum(a == b for a, b in zip(ours_verdicts, mv_verdicts))
    print(f"verdict agreement with our slow path alone: {agree_slow}/{n}")
    print(f"verdict agreement with the plain math-verify loop: {agree_mv}/{n}")
    if batch is not None:
        print(f"batch verdicts equal single-process verdicts: {sum(a == b for a, b in zip(batch[1], ours_verdicts))}/{n}")
    differ = [(g[:40], r[-60:].replace("\n", " "), o, m) for (g, r, _), o, m in zip(pairs, ours_verdicts, mv_verdicts) if o != m]
    for gold, tail, ours, mv in differ[:10]:
        print(f"  differs from math-verify: gold={gold!r} ours={ours} math-verify={mv} response=...{tail!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
