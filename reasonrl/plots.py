"""Training curves of a run: reward, accuracy, KL, entropy, response length, pass@1 before/after.

:func:`plot_run` writes one PNG per curve into ``RUN_DIR/plots/`` (matplotlib, Agg backend, no
display needed). Noisy per-step curves are drawn faintly with a moving average on top.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

CURVES = (
    # file name, metric key, title, y label
    ("reward", "reward", "Reward", "mean reward per step"),
    ("accuracy", "accuracy", "Accuracy of sampled responses", "share correct"),
    ("kl", "kl", "KL to the reference policy", "KL (per token)"),
    ("entropy", "entropy", "Policy entropy", "nats per token"),
    ("response_length", "response_length", "Response length", "tokens"),
    ("zero_variance_share", "zero_variance_share", "Groups with zero reward variance", "share of groups"),
)


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (same length as ``values``)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot_run(
    run_dir: str | Path,
    metrics: Sequence[dict[str, float]] | None = None,
    eval_before: dict[str, Any] | None = None,
    eval_after: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``plots/*.png`` for a run; returns the files written (curves with no data are skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    metrics = list(metrics) if metrics is not None else read_metrics(run_dir)
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    window = max(1, len(metrics) // 20)
    for name, key, title, ylabel in CURVES:
        points = [(m["step"], m[key]) for m in metrics if key in m]
        if not points:
            continue
        steps, values = zip(*points)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=1, label="per step")
        if window > 1:
            ax.plot(steps, moving_average(list(values), window), color="tab:blue", linewidth=2,
                    label=f"moving average ({window} steps)")
            ax.legend(loc="best", fontsize=8)
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    if eval_before is not None or eval_after is not None:
        labels, values = [], []
        for label, result in (("before RL", eval_before), ("after RL", eval_after)):
            if result is not None:
                labels.append(label)
                values.append(result["pass@1"])
        fig, ax = plt.subplots(figsize=(4, 3.6))
        bars = ax.bar(labels, values, color=["tab:gray", "tab:green"][: len(values)])
        for bar, value in zip(bars, values):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.2f}", ha="center", va="bottom")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("pass@1 on held-out problems")
        ax.set_title("pass@1 before / after RL")
        fig.tight_layout()
        path = out_dir / "pass_at_1.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
