"""Every registered trainer on the embedded default task, at an equal budget of sampled tokens.

    python benchmarks/algorithms.py                      # every trainer, seeds 0 1 2
    python benchmarks/algorithms.py --trainers rl expert_iteration --seeds 0 1 2 3

Each (trainer, seed) is one ``reasonrl train`` run of the default config (tiny model, SFT warm-up
shared by every trainer of a seed through the warm-up cache, 3-digit addition) with held-out
pass@1 measured every ``--eval-every`` steps. ``rl`` (GRPO, the main job) runs first, exactly as
``reasonrl train seed=S`` runs it; its mean number of sampled response tokens becomes the budget
every other trainer stops at (``max_sampled_tokens``), so the comparison is at equal generation
cost. Finished runs are reused, so the command can be run again to finish an interrupted sweep.

Writes ``OUT/algorithms.md`` (the table) and ``OUT/algorithms.png`` (held-out pass@1 against
sampled tokens, one line per trainer: the mean over seeds, each seed faint) and prints the table.
Trainer-specific settings a user would set for the method go in ``TRAINER_OVERRIDES`` below,
stated in the table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Settings each trainer runs with beside the default config (the defaults of the method itself).
TRAINER_OVERRIDES: dict[str, list[str]] = {
    "rl": [],
    "expert_iteration": [],
}
STEP_CAP = 5000  # non-rl trainers stop at the token budget; this only bounds a runaway run


def run_one(trainer: str, seed: int, out: Path, extra: list[str], eval_every: int) -> dict:
    run_dir = out / f"{trainer}-seed{seed}"
    summary_file = run_dir / "summary.json"
    if not summary_file.exists():
        command = [sys.executable, "-m", "reasonrl", "train", f"trainer={trainer}", f"seed={seed}", f"output_dir={run_dir}",
                   f"eval.every={eval_every}", "progress=false", *TRAINER_OVERRIDES.get(trainer, []), *extra]
        print(f"== {trainer} seed {seed}: {' '.join(command[3:])}", flush=True)
        start = time.time()
        result = subprocess.run(command, env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True, capture_output=True)
        if result.returncode != 0:
            raise SystemExit(f"{trainer} seed {seed} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        print(f"   done in {(time.time() - start) / 60:.1f} min", flush=True)
    summary = json.loads(summary_file.read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    curve = [(0.0, summary["eval_before"]["pass@1"])]
    curve += [(m["sampled_tokens"], m["heldout_pass@1"]) for m in metrics if "heldout_pass@1" in m]
    if not metrics or "heldout_pass@1" not in metrics[-1]:
        curve.append((metrics[-1]["sampled_tokens"] if metrics else 0.0, summary["eval_after"]["pass@1"]))
    return {"summary": summary, "curve": curve, "steps": summary["steps"], "tokens": metrics[-1]["sampled_tokens"] if metrics else 0}


def table(results: dict[str, list[dict]], budget: float) -> str:
    lines = [
        f"Budget: {budget:,.0f} sampled response tokens per run (the mean of the rl runs).",
        "",
        "| trainer | seeds | pass@1 before | pass@1 after | gain (min .. max) | steps | sampled tokens | training minutes | settings |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for trainer, runs in results.items():
        before = [r["summary"]["eval_before"]["pass@1"] for r in runs]
        after = [r["summary"]["eval_after"]["pass@1"] for r in runs]
        gains = [a - b for a, b in zip(after, before)]
        # The training loop alone: the SFT warm-up is shared through the cache (the first trainer of a
        # seed pays for it) and the periodic evaluations are left out of rl_s.
        minutes = [r["summary"]["timings"]["rl_s"] / 60 for r in runs]
        settings = " ".join(TRAINER_OVERRIDES.get(trainer, [])) or "defaults"
        lines.append(
            f"| {trainer} | {len(runs)} | {statistics.mean(before):.3f} | {statistics.mean(after):.3f} | "
            f"{statistics.mean(gains):+.3f} ({min(gains):+.3f} .. {max(gains):+.3f}) | "
            f"{statistics.mean(r['steps'] for r in runs):.0f} | {statistics.mean(r['tokens'] for r in runs):,.0f} | "
            f"{statistics.mean(minutes):.1f} | {settings} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, (trainer, runs) in enumerate(results.items()):
        color = f"C{index}"
        for run in runs:
            xs, ys = zip(*run["curve"])
            ax.plot(xs, ys, color=color, alpha=0.25, linewidth=1)
        points = min(len(r["curve"]) for r in runs)
        xs = [statistics.mean(r["curve"][i][0] for r in runs) for i in range(points)]
        ys = [statistics.mean(r["curve"][i][1] for r in runs) for i in range(points)]
        ax.plot(xs, ys, color=color, linewidth=2.2, marker="o", markersize=3, label=f"{trainer} (mean of {len(runs)} seeds)")
    ax.set_xlabel("sampled response tokens")
    ax.set_ylabel("held-out pass@1")
    ax.set_title("Trainers on the embedded default task (3-digit addition, tiny model)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", nargs="*", default=None, help="default: every registered trainer")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-every", type=int, default=50, help="training steps between held-out evaluations")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/algorithms"))
    parser.add_argument("extra", nargs="*", help="key=value overrides for every run (e.g. steps=100 for a quick look)")
    args = parser.parse_args()
    from reasonrl.trainers.registry import trainer_names

    trainers = args.trainers or trainer_names()
    trainers = ["rl"] + [t for t in trainers if t != "rl"]  # rl first: it sets the token budget
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"rl": [run_one("rl", seed, args.out, args.extra, args.eval_every) for seed in args.seeds]}
    budget = statistics.mean(r["tokens"] for r in results["rl"])
    for trainer in trainers[1:]:
        extra = [f"max_sampled_tokens={int(budget)}", f"steps={STEP_CAP}", *args.extra]
        results[trainer] = [run_one(trainer, seed, args.out, extra, args.eval_every) for seed in args.seeds]
    text = table(results, budget)
    plot(results, args.out / "algorithms.png")
    (args.out / "algorithms.md").write_text(text + "\n")
    print(text)
    print(f"plot: {args.out / 'algorithms.png'}")


if __name__ == "__main__":
    main()
