"""Knights & Knaves generation throughput: reasonrl ``kk`` vs reasoning-gym ``knights_knaves``.

    python benchmarks/generate_kk.py            # 4 and 8 people, side by side, one run
    python benchmarks/generate_kk.py --quick    # fewer puzzles (a smoke run)

Both libraries build puzzles through their user-facing dataset API, with the same knobs
(people, depth 2, width 2) and every puzzle kept in memory:

* reasoning-gym: ``list(reasoning_gym.create_dataset("knights_knaves", size=N, n_people=P))``
  (puzzles are made on access);
* reasonrl: ``generate_dataset("kk", N, difficulty={"people": P})`` (deduplicated, with
  a worked solution per puzzle), in one process and, separately, with 2 worker processes.

Rounds alternate between the two so that load from other processes on a shared machine
hits both alike; each rate is the best of the rounds. Rates are given in CPU time of this
process (steadier on a busy machine) and in wall time. After timing, every reasonrl puzzle
is re-solved by brute force (every assignment, every statement tree walked) to confirm
exactly one solution, and the uniqueness-rejection rate (drafts thrown away because more
than one assignment fit) is reported.

reasoning-gym is a peer for this benchmark only: ``pip install reasoning-gym``.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time

from reasonrl import data_gen
from reasonrl.data_gen import kk_solver
from reasonrl.data_gen.dataset import generate_dataset


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def bench(people: int, n_ours: int, n_rg: int, rounds: int, seed: int) -> dict:
    import reasoning_gym

    best = {"rg_cpu": 0.0, "rg_wall": 0.0, "ours_cpu": 0.0, "ours_wall": 0.0, "ours2_wall": 0.0}
    difficulty = {"people": people, "depth": 2, "width": 2}
    # Warm up both (imports, reasonrl's statement tables) outside the timed region.
    list(reasoning_gym.create_dataset("knights_knaves", size=5, seed=seed, n_people=people))
    generate_dataset("kk", 5, seed=seed, difficulty=difficulty)
    rows = []
    generator = None
    for r in range(rounds):
        dataset = reasoning_gym.create_dataset(
            "knights_knaves", size=n_rg, seed=seed + r, n_people=people, depth_constraint=2, width_constraint=2
        )
        _, wall, cpu = _timed(lambda: list(dataset))
        best["rg_cpu"] = max(best["rg_cpu"], n_rg / cpu)
        best["rg_wall"] = max(best["rg_wall"], n_rg / wall)

        generator = data_gen.get("kk", **difficulty)
        rows, wall, cpu = _timed(lambda: generate_dataset(generator, n_ours, seed=seed + r))
        best["ours_cpu"] = max(best["ours_cpu"], n_ours / cpu)
        best["ours_wall"] = max(best["ours_wall"], n_ours / wall)

        _, wall, _ = _timed(lambda: generate_dataset("kk", n_ours, seed=seed + r, difficulty=difficulty, workers=2))
        best["ours2_wall"] = max(best["ours2_wall"], n_ours / wall)

    # Check, untimed: each puzzle of the last round has exactly one solution, the stored one.
    checked = rows[: min(len(rows), 2000)]
    for row in checked:
        found = kk_solver.solve_bruteforce(row["metadata"]["statements"])
        assert found == [row["answer"]["solution"]], row["id"]
    stats = generator.stats
    best["rejection_rate"] = stats["rejected_not_unique"] / stats["drafts"]
    best["unique_checked"] = len(checked)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--n", type=int, default=None, help="reasonrl puzzles per round (default 20000 at <= 5 people, else 5000)")
    parser.add_argument("--n-rg", type=int, default=None,
                        help="reasoning-gym puzzles per round (default 1500 at <= 5 people, else 150: it is ~20x slower at 8)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.n_rg, args.rounds = args.n or 2000, args.n_rg or 100, 1
    try:
        import reasoning_gym  # noqa: F401
    except ImportError:
        print("reasoning-gym is not installed: pip install reasoning-gym", file=sys.stderr)
        return 2

    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"best of {args.rounds} rounds; rates are puzzles per second\n")
    header = (
        "| people | reasoning-gym /s (CPU) | reasonrl /s (CPU) | ratio (CPU) | reasoning-gym /s (wall) "
        "| reasonrl /s (wall) | ratio (wall) | reasonrl 2 workers /s (wall) | uniqueness rejections |"
    )
    print(header)
    print("|---:" * (header.count("|") - 1) + "|")
    for people in args.people:
        n_ours = args.n or (20000 if people <= 5 else 5000)
        n_rg = args.n_rg or (1500 if people <= 5 else 150)
        r = bench(people, n_ours, n_rg, args.rounds, args.seed)
        print(
            f"| {people} | {r['rg_cpu']:,.0f} | {r['ours_cpu']:,.0f} | {r['ours_cpu'] / r['rg_cpu']:.1f}x "
            f"| {r['rg_wall']:,.0f} | {r['ours_wall']:,.0f} | {r['ours_wall'] / r['rg_wall']:.1f}x "
            f"| {r['ours2_wall']:,.0f} | {r['rejection_rate']:.1%} of drafts |",
            flush=True,
        )
    print("\nEvery checked reasonrl puzzle (up to 2000 per row) has exactly one solution (brute-force re-solve).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
