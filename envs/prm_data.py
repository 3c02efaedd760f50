"""PRM800K step labels → reasonrl's step-label rows (the format PRMs are trained on).

**Step-label row** (one JSON object; a list of them is a step-label dataset)::

    {
      "id": "prm800k-3f2a9c1d0b-0",           # source, problem hash, row number within the problem
      "prompt": [{"role": "user", "content": "Three pencils and ..."}],   # chat messages, as in a Problem
      "steps": ["Let's call the price ...", "We have $3p+e=1.24$ ...", ...],
      "labels": [1, 1, ...],                   # one per step: 1 good, 0 neutral, -1 bad
      "answer": "29",                          # ground-truth final answer, or None when the source lacks it
      "metadata": {"source": "prm800k", ...}   # labeler, phase/generation, finish_reason, kind
    }

``len(steps) == len(labels)`` always; a label describes its step *given the steps before
it*. ``metadata["kind"]`` is ``"trajectory"`` for the path the labeler chose through the
problem and ``"alternative"`` for a rated candidate step that branched off it (the row then
ends with that candidate). :func:`binarize` turns labels into booleans and :func:`to_trl`
gives TRL's stepwise-supervision rows (``prompt``/``completions``/``labels``).

Sources :func:`load_prm800k` reads (the record format is detected per record):

* **raw PRM800K** (``openai/prm800k`` ``phase{1,2}_{train,test}.jsonl``): ``question`` +
  ``label.steps[*].completions[*].rating``, ``chosen_completion``, ``human_completion``. Also
  a file of pretty-printed JSON objects one after another, as the examples in the wild are.
* **stepwise-critic** (Birchlabs' ``prm800k-denorm`` form): one record per (problem, earlier
  steps, candidate next step, rating). The earlier steps' labels are found in the records
  that rated them; a final step's ``answer`` (which that form splits off) is put back as the
  ``\n\n# Answer\n\n<answer>`` the raw step text ends with.

Conversion rules (identical for both sources, so both give the same rows for the same data):

* A human-written step (the labeler's own, when no candidate was acceptable) has no rating in
  PRM800K; it gets ``human_label`` (default 1: labelers wrote correct steps).
* A model step with no rating ends the row there (``drop_unrated=True``, the default); rows
  left empty are dropped.
* A row that is a prefix (same prompt, steps and labels) of another row adds nothing and is
  dropped, as are exact duplicates (the same problem labelled twice).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

LABELS = (-1, 0, 1)


def iter_json_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Records of a JSONL file, a JSON array, or JSON objects written one after another (pretty-printed)."""
    text = Path(path).read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    pos, n = 0, len(text)
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            line = text.count("\n", 0, exc.pos) + 1
            raise ValueError(f"{path}: line {line}: invalid JSON ({exc.msg})") from None
        if isinstance(value, list):
            yield from value
        else:
            yield value


def _problem_id(problem: str) -> str:
    return hashlib.sha1(problem.encode("utf-8")).hexdigest()[:10]


def _label(rating: Any, human: bool, human_label: int) -> int | None:
    if human:
        return human_label
    if rating is None:
        return None
    rating = int(rating)
    if rating not in LABELS:
        raise ValueError(f"rating {rating!r} is not one of {LABELS}")
    return rating


def _until_unrated(steps: list[str], labels: list[int | None]) -> tuple[list[str], list[int]]:
    for i, label in enumerate(labels):
        if label is None:
            return steps[:i], labels[:i]  # type: ignore[return-value]
    return steps, labels  # type: ignore[return-value]


def _raw_record_rows(record: dict[str, Any], human_label: int, include_alternatives: bool) -> list[dict[str, Any]]:
    question, label = record.get("question") or {}, record.get("label") or {}
    problem = question.get("problem")
    if not isinstance(problem, str):
        raise ValueError("raw PRM800K record without question.problem")
    meta = {
        "source": "prm800k",
        "labeler": record.get("labeler"),
        "generation": record.get("generation"),
        "finish_reason": label.get("finish_reason"),
    }
    steps: list[str] = []
    labels: list[int | None] = []
    alternatives: list[tuple[list[str], list[int | None]]] = []
    chain_open = True
    for step in label.get("steps") or []:
        completions = step.get("completions") or []
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if chain_open and include_alternatives:
            for j, completion in enumerate(completions):
                if j != chosen:
                    alternatives.append((steps + [completion["text"]], labels + [_label(completion.get("rating"), False, human_label)]))
        if not chain_open:
            continue
        if chosen is not None:
            steps.append(completions[chosen]["text"])
            labels.append(_label(completions[chosen].get("rating"), False, human_label))
        elif human is not None:
            steps.append(human["text"])
            labels.append(_label(human.get("rating"), True, human_label))
        else:
            chain_open = False  # the labeler stopped here (no acceptable step)
    rows = [(steps, labels, "trajectory")] + [(s, l, "alternative") for s, l in alternatives]
    return [
        {"problem": problem, "steps": s, "labels": l, "answer": question.get("ground_truth_answer"), "metadata": {**meta, "kind": kind}}
        for s, l, kind in rows
    ]


def _critic_rows(records: Sequence[dict[str, Any]], human_label: int) -> list[dict[str, Any]]:
    ratings: dict[tuple[str, tuple[str, ...], str], int | None] = {}
    for r in records:
        ratings.setdefault(
            (r["instruction"], tuple(r["responses"]), r["next_response"]),
            _label(r.get("rating"), bool(r.get("is_human_response")), human_label),
        )
    rows = []
    for r in records:
        prefix = list(r["responses"])
        labels = [ratings.get((r["instruction"], tuple(prefix[:i]), step)) for i, step in enumerate(prefix)]
        labels.append(ratings[(r["instruction"], tuple(prefix), r["next_response"])])
        last = r["next_response"]
        if r.get("answer") is not None:
            # The critic form moved a final step's "# Answer" block into `answer`; put it back
            # so the step reads as the labeler rated it (and as the raw form has it).
            last = f"{last}\n\n# Answer\n\n{r['answer']}"
        rows.append(
            {
                "problem": r["instruction"],
                "steps": prefix + [last],
                "labels": labels,
                "answer": None,  # the critic form keeps only the model's answer of a final step, not the ground truth
                "metadata": {
                    "source": "prm800k",
                    "kind": "trajectory" if r.get("is_preferred_response") else "alternative",
                },
            }
        )
    return rows


def load_prm800k(
    source: str | os.PathLike | Iterable[dict[str, Any]],
    *,
    human_label: int = 1,
    include_alternatives: bool = True,
    drop_unrated: bool = True,
) -> list[dict[str, Any]]:
    """Step-label rows (see the module docstring) from PRM800K records.

    Args:
        source: a file (JSONL, JSON array, or concatenated JSON objects) or an iterable of
            records (a list, a ``datasets.Dataset``), raw PRM800K or stepwise-critic form.
        human_label: the label given to human-written steps (unrated in PRM800K).
        include_alternatives: also emit rows ending in each rated, non-chosen candidate step.
        drop_unrated: end a row before its first unrated model step (else keep ``None`` labels).

    Returns:
        Rows in source order (first appearance of each problem), prefixes and duplicates removed.
    """
    if human_label not in LABELS:
        raise ValueError(f"human_label must be one of {LABELS}, got {human_label!r}")
    records = list(iter_json_records(source)) if isinstance(source, (str, os.PathLike)) else [dict(r) for r in source]
    raw, critic = [], []
    for i, record in enumerate(records):
        if "question" in record and "label" in record:
            raw.extend(_raw_record_rows(record, human_label, include_alternatives))
        elif {"instruction", "responses", "next_response"} <= set(record):
            critic.append(record)
        else:
            raise ValueError(
                f"record {i}: neither raw PRM800K (question, label) nor stepwise-critic (instruction, responses, next_response); "
                f"keys: {', '.join(sorted(record))}"
            )
    candidates = raw + _critic_rows(critic, human_label)
    if not include_alternatives:
        candidates = [c for c in candidates if c["metadata"]["kind"] == "trajectory"]
    if drop_unrated:
        for c in candidates:
            c["steps"], c["labels"] = _until_unrated(c["steps"], c["labels"])
    candidates = [c for c in candidates if c["steps"]]
    return _finalize(candidates)


def _finalize(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(c: dict[str, Any], k: int | None = None) -> tuple:
        k = len(c["steps"]) if k is None else k
        return (c["problem"], tuple(c["steps"][:k]), tuple(c["labels"][:k]))

    strict_prefixes = {key(c, k) for c in candidates for k in range(1, len(c["steps"]))}
    seen: set[tuple] = set()
    counters: dict[str, int] = {}
    rows = []
    for c in candidates:
        full = key(c)
        if full in strict_prefixes or full in seen:
            continue
        seen.add(full)
        pid = _problem_id(c["problem"])
        number = counters.get(pid, 0)
        counters[pid] = number + 1
        rows.append(
            {
                "id": f"prm800k-{pid}-{number}",
                "prompt": [{"role": "user", "content": c["problem"]}],
                "steps": list(c["steps"]),
                "labels": list(c["labels"]),
                "answer": c["answer"],
                "metadata": c["metadata"],
            }
        )
    return rows


def validate_step_label_row(row: Any, where: str = "") -> dict[str, Any]:
    """Check one step-label row; raise ValueError naming ``where`` and the field."""
    prefix = f"{where}: " if where else ""
    if not isinstance(row, dict):
        raise ValueError(f"{prefix}a step-label row must be an object")
    for key in ("id", "prompt", "steps", "labels"):
        if key not in row:
            raise ValueError(f"{prefix}missing field {key!r}")
    if not isinstance(row["steps"], list) or not all(isinstance(s, str) for s in row["steps"]):
        raise ValueError(f"{prefix}field 'steps' must be a list of strings")
    if not isinstance(row["labels"], list) or len(row["labels"]) != len(row["steps"]):
        raise ValueError(f"{prefix}field 'labels' must be a list with one label per step")
    if any(label is not None and label not in LABELS for label in row["labels"]):
        raise ValueError(f"{prefix}field 'labels' holds a value outside {LABELS}")
    return row


def binarize(labels: Sequence[int | None], neutral_is_good: bool = True) -> list[bool | None]:
    """1 → True, -1 → False, 0 → ``neutral_is_good`` (PRM800K's neutral steps are not errors), None stays None."""
    return [None if x is None else (x > 0 or (x == 0 and neutral_is_good)) for x in labels]


def to_trl(row: dict[str, Any], neutral_is_good: bool = True) -> dict[str, Any]:
    """TRL stepwise-supervision form: ``{"prompt": str, "completions": [step, ...], "labels": [bool, ...]}``."""
    prompt = "\n".join(m["content"] for m in row["prompt"])
    return {"prompt": prompt, "completions": list(row["steps"]), "labels": binarize(row["labels"], neutral_is_good)}
