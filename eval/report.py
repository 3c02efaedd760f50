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
    """One problem's samples, in sample order.

    Attributes:
        id: the problem id.
        difficulty: its difficulty knobs (the per-difficulty breakdown groups on them).
        correct: one verdict ``correct`` per sample.
        answers: the verifier's extracted answer per sample (None: nothing extracted); maj@k votes on them.
        scores: reward-model / PRM score per sample, for best-of-N (None: not scored).
        extra: more per-problem fields copied into the report's ``problems`` entry.
    """

    id: str
    difficulty: dict[str, Any]
    correct: list[bool]
    answers: list[str | None]
    scores: list[float] | None = None
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


def _difficulty_key(difficulty: dict[str, Any], knobs: Sequence[str] | None = None) -> str:
    knobs = sorted(difficulty) if knobs is None else knobs
    return ",".join(f"{k}={difficulty.get(k)}" for k in knobs) or "all"


def difficulty_levels(results: Sequence[ProblemResult]) -> dict[str, list[ProblemResult]]:
    """Group problems by difficulty, labelled by the knobs that vary (``people=3``), not the ones all share.

    With nothing varying, one group labelled by all knobs (or ``all`` when there are none).
    """
    keys = sorted({k for r in results for k in r.difficulty})
    varying = [k for k in keys if len({json.dumps(r.difficulty.get(k), sort_keys=True, default=str) for r in results}) > 1]
    groups: dict[str, list[ProblemResult]] = defaultdict(list)
    for r in results:
        groups[_difficulty_key(r.difficulty, varying or None)].append(r)
    return dict(groups)


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
    """The report.json object for one model.

    Keys: everything in ``meta`` (the runner puts model, task, n, sampling settings there), then
    ``num_problems``; ``pass@k`` and ``maj@k`` (``{"1": 0.42, "4": 0.71}``: k as a string, only
    k <= n); ``mean_accuracy`` (share of correct samples); ``best-of-n`` (same shape) when every
    problem has scores; ``per_difficulty`` (``{"people=3": {the same summary}}``, grouped by the
    difficulty knobs that vary); and ``problems``: one entry per problem with ``id``, ``n``,
    ``correct`` (count), ``difficulty``, ``answers`` (extracted, per sample), ``scores`` when
    scored, and the result's ``extra`` fields.
    """
    report = dict(meta or {})
    report.update(summarize(results, ks))
    by_level = difficulty_levels(results)
    report["per_difficulty"] = {level: summarize(by_level[level], ks) for level in sorted(by_level, key=_level_order)}
    report["problems"] = [
        {"id": r.id, "n": len(r.correct), "correct": int(sum(r.correct)), "difficulty": r.difficulty,
         "answers": r.answers, **({"scores": r.scores} if r.scores is not None else {}), **r.extra}
        for r in results
    ]
    return report


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def write_markdown(reports: dict[str, dict[str, Any]], path: str | Path, plots: Sequence[str | Path] = ()) -> None:
    """report.md: the settings, one table row per model (pass@k, maj@k, best-of-N, mean accuracy,
    truncated share), pass@1 per difficulty level, and links to the plots."""
    ks = sorted({int(k) for rep in reports.values() for k in rep.get("pass@k", {})})
    has_bon = any("best-of-n" in rep for rep in reports.values())
    first = next(iter(reports.values()), {})
    lines = ["# Evaluation report", ""]
    sampling = first.get("sampling", {})
    if first.get("task") is not None:
        lines.append(
            f"Task `{first.get('task', '?')}`, {first.get('num_problems', 0)} problems, n = {first.get('n', '?')} samples "
            f"per problem, temperature {sampling.get('temperature', '?')}, top-p {sampling.get('top_p', '?')}, "
            f"max {sampling.get('max_tokens', '?')} tokens, seed {sampling.get('seed', '?')}, engine {sampling.get('engine', '?')}."
        )
        lines.append("")
    columns = [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks] + ([f"best-of-{k}" for k in ks] if has_bon else [])
    columns += ["mean acc", "truncated"]
    lines += ["| model | problems | " + " | ".join(columns) + " |", "|" + "---|" * (2 + len(columns))]
    for model, rep in reports.items():
        cells = [_fmt(rep["pass@k"].get(str(k))) for k in ks] + [_fmt(rep["maj@k"].get(str(k))) for k in ks]
        if has_bon:
            cells += [_fmt(rep.get("best-of-n", {}).get(str(k))) for k in ks]
        cells += [_fmt(rep.get("mean_accuracy")), _fmt(rep.get("truncated_rate"))]
        lines.append(f"| {model} | {rep.get('num_problems', 0)} | " + " | ".join(cells) + " |")
    levels = sorted({lvl for rep in reports.values() for lvl in rep.get("per_difficulty", {})}, key=_level_order)
    if len(levels) > 1:
        lines += ["", "## pass@1 per difficulty", "", "| model | " + " | ".join(levels) + " |",
                  "|" + "---|" * (1 + len(levels))]
        for model, rep in reports.items():
            per = rep.get("per_difficulty", {})
            cells = [_fmt(per[lvl]["pass@k"].get("1")) if lvl in per else "-" for lvl in levels]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
    if plots:
        lines += [""] + [f"![{Path(p).stem}]({Path(p).as_posix()})" for p in plots]
    lines += ["", "Every number can be recomputed from `report.json`'s `problems` (`n`, `correct`, `answers`, `scores`).", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def _level_order(level: str) -> tuple:
    """Sort ``people=3`` before ``people=10``: numeric parts compare as numbers."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", level))


def plot_reports(reports: dict[str, dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """pass@k against k (one line per checkpoint) and pass@1 per difficulty level (grouped bars).

    Returns the written files: ``pass_at_k.png`` and ``accuracy_per_difficulty.png`` in ``out_dir``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(6, 4))
    all_ks: set[int] = set()
    for j, (model, rep) in enumerate(reports.items()):
        ks = sorted(int(k) for k in rep["pass@k"])
        all_ks.update(ks)
        color = f"C{j % 10}"  # a model's pass@k (solid) and maj@k (dashed) share its colour
        ax.plot(ks, [rep["pass@k"][str(k)] for k in ks], marker="o", color=color, label=f"{model} pass@k")
        if rep.get("maj@k"):
            ax.plot(ks, [rep["maj@k"][str(k)] for k in ks], marker="x", linestyle="--", color=color, alpha=0.7,
                    label=f"{model} maj@k")
    if len(all_ks) > 1:
        ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(all_ks))
    ax.set_xticklabels([str(k) for k in sorted(all_ks)])
    ax.set_xlabel("k (samples)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("pass@k and maj@k by checkpoint")
    fig.tight_layout()
    path = out_dir / "pass_at_k.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)

    levels = sorted({lvl for rep in reports.values() for lvl in rep.get("per_difficulty", {})}, key=_level_order)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(levels)), 4))
    width = 0.8 / max(len(reports), 1)
    for j, (model, rep) in enumerate(reports.items()):
        per = rep.get("per_difficulty", {})
        vals = [per[lvl]["pass@k"].get("1", 0.0) if lvl in per else 0.0 for lvl in levels]
        ax.bar([i + j * width for i in range(len(levels))], vals, width=width, label=model)
    ax.set_xticks([i + width * (len(reports) - 1) / 2 for i in range(len(levels))])
    ax.set_xticklabels(levels, rotation=20, ha="right")
    ax.set_ylabel("pass@1")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize="small")
    ax.set_title("accuracy per difficulty")
    fig.tight_layout()
    path = out_dir / "accuracy_per_difficulty.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written


def write_json(obj: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
