"""Turn sampled verdicts into an evaluation report: pass@k, maj@k, best-of-N, per difficulty.

Input is one :class:`ProblemResult` per problem (its samples' verdicts, and optionally a score
per sample from a reward model or PRM). Everything in the report can be recomputed from its
``problems`` list: each entry has ``id``, ``n`` (samples drawn) and ``correct`` (how many verified).

maj@k uses the FIRST k samples of each problem (samples are drawn with fixed seeds, so this is
repeatable); answers are compared by their normalized extracted string; a tie between answers
with equal votes goes to the answer that appeared first. best-of-N picks the sample with the
highest score, ties to the earliest sample.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from reasonrl.eval.estimators import pass_at_k


@dataclass
class ProblemResult:
    id: str
    difficulty: dict[str, Any]
    correct: list[bool]                      # one per sample, in sample order
    answers: list[str | None]                # normalized extracted answers, in sample order
    scores: list[float] | None = None        # reward-model / PRM score per sample (best-of-N)
    extra: dict[str, Any] = field(default_factory=dict)


def _normalize_answer(answer: str | None) -> str | None:
    if answer is None:
        return None
    return " ".join(str(answer).split()).lower() or None


def majority_correct(correct: Sequence[bool], answers: Sequence[str | None], k: int) -> bool:
    """Is the majority answer among the first ``k`` samples correct? Ties: earliest answer wins.

    Samples with no extracted answer do not vote; if none voted, the result is False.
    """
    votes: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    verdict_of: dict[str, bool] = {}
    for i in range(min(k, len(correct))):
        ans = _normalize_answer(answers[i])
        if ans is None:
            continue
        votes[ans] += 1
        first_seen.setdefault(ans, i)
        verdict_of.setdefault(ans, bool(correct[i]))
    if not votes:
        return False
    best = max(votes, key=lambda a: (votes[a], -first_seen[a]))
    return verdict_of[best]


def best_of_n_correct(correct: Sequence[bool], scores: Sequence[float], n: int | None = None) -> bool:
    """Correctness of the highest-scored sample among the first ``n`` (ties: earliest sample)."""
    n = len(correct) if n is None else min(n, len(correct))
    if n == 0:
        return False
    best = max(range(n), key=lambda i: (scores[i], -i))
    return bool(correct[best])


def _difficulty_key(difficulty: dict[str, Any]) -> str:
    return ",".join(f"{k}={difficulty[k]}" for k in sorted(difficulty)) or "all"


def summarize(results: Sequence[ProblemResult], ks: Sequence[int]) -> dict[str, Any]:
    """pass@k and maj@k (k ≤ n only; keys are strings) and best-of-N over a list of problems."""
    if not results:
        return {"pass@k": {}, "maj@k": {}, "num_problems": 0}
    n_min = min(len(r.correct) for r in results)
    valid_ks = [k for k in sorted(set(ks)) if 1 <= k <= n_min]
    out: dict[str, Any] = {
        "num_problems": len(results),
        "pass@k": {str(k): sum(pass_at_k(len(r.correct), sum(r.correct), k) for r in results) / len(results) for k in valid_ks},
        "maj@k": {str(k): sum(majority_correct(r.correct, r.answers, k) for r in results) / len(results) for k in valid_ks},
        "mean_accuracy": sum(sum(r.correct) / max(len(r.correct), 1) for r in results) / len(results),
    }
    if all(r.scores is not None for r in results):
        out["best-of-n"] = {
            str(k): sum(best_of_n_correct(r.correct, r.scores, k) for r in results) / len(results) for k in valid_ks
        }
    return out


def build_report(results: Sequence[ProblemResult], ks: Sequence[int], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full report.json object for one model."""
    report = dict(meta or {})
    report.update(summarize(results, ks))
    by_level: dict[str, list[ProblemResult]] = defaultdict(list)
    for r in results:
        by_level[_difficulty_key(r.difficulty)].append(r)
    report["per_difficulty"] = {level: summarize(rs, ks) for level, rs in sorted(by_level.items())}
    report["problems"] = [
        {"id": r.id, "n": len(r.correct), "correct": int(sum(r.correct)), "difficulty": r.difficulty,
         "answers": r.answers, **({"scores": r.scores} if r.scores is not None else {}), **r.extra}
        for r in results
    ]
    return report


def write_markdown(reports: dict[str, dict[str, Any]], path: str | Path) -> None:
    """report.md: one table row per model (pass@k and maj@k), then per-difficulty pass@1."""
    ks = sorted({int(k) for rep in reports.values() for k in rep.get("pass@k", {})})
    lines = ["# Evaluation report", ""]
    header = "| model | problems | " + " | ".join(f"pass@{k}" for k in ks) + " | " + " | ".join(f"maj@{k}" for k in ks) + " |"
    lines += [header, "|" + "---|" * (2 + 2 * len(ks))]
    for model, rep in reports.items():
        cells = [f"{rep['pass@k'].get(str(k), float('nan')):.3f}" for k in ks]
        cells += [f"{rep['maj@k'].get(str(k), float('nan')):.3f}" for k in ks]
        lines.append(f"| {model} | {rep.get('num_problems', 0)} | " + " | ".join(cells) + " |")
    levels = sorted({lvl for rep in reports.values() for lvl in rep.get("per_difficulty", {})})
    if len(levels) > 1:
        lines += ["", "## pass@1 per difficulty", "", "| model | " + " | ".join(levels) + " |",
                  "|" + "---|" * (1 + len(levels))]
        for model, rep in reports.items():
            per = rep.get("per_difficulty", {})
            cells = [f"{per[l]['pass@k'].get('1', float('nan')):.3f}" if l in per else "-" for l in levels]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot_reports(reports: dict[str, dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """pass@k against k (one line per checkpoint) and pass@1 per difficulty level (grouped bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, rep in reports.items():
        ks = sorted(int(k) for k in rep["pass@k"])
        ax.plot(ks, [rep["pass@k"][str(k)] for k in ks], marker="o", label=Path(model).name or model)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("pass@k")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("pass@k by checkpoint")
    fig.tight_layout()
    path = out_dir / "pass_at_k.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    levels = sorted({lvl for rep in reports.values() for lvl in rep.get("per_difficulty", {})})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(levels)), 4))
    width = 0.8 / max(len(reports), 1)
    for j, (model, rep) in enumerate(reports.items()):
        per = rep.get("per_difficulty", {})
        vals = [per[l]["pass@k"].get("1", 0.0) if l in per else 0.0 for l in levels]
        ax.bar([i + j * width for i in range(len(levels))], vals, width=width, label=Path(model).name or model)
    ax.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(levels))])
    ax.set_xticklabels(levels, rotation=20, ha="right")
    ax.set_ylabel("pass@1")
    ax.set_ylim(0, 1.02)
    ax.legend()
    ax.set_title("accuracy per difficulty")
    fig.tight_layout()
    path = out_dir / "accuracy_per_difficulty.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written


def write_json(obj: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
