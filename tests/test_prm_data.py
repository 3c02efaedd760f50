"""PRM800K → step-label rows: on hand-made records and on the conformance data (raw and stepwise-critic forms)."""
from __future__ import annotations

import json

import pytest

from reasonrl.envs.prm_data import binarize, iter_json_records, load_prm800k, to_trl, validate_step_label_row

from conftest import conformance_path, read_jsonl


def _completion(text, rating):
    return {"text": text, "rating": rating, "flagged": False}


RAW = {
    "labeler": "L1",
    "generation": 3,
    "question": {"problem": "What is 2+3*4?", "ground_truth_answer": "14"},
    "label": {
        "finish_reason": "solution",
        "steps": [
            {"completions": [_completion("3*4 = 12.", 1)], "human_completion": None, "chosen_completion": 0},
            {
                "completions": [_completion("2+12 = 15.", -1), _completion("So 12+2.", 0)],
                "human_completion": {"text": "2 + 12 = 14.", "rating": None, "source": "human", "flagged": False},
                "chosen_completion": None,
            },
            {"completions": [_completion("# Answer\n\n14", 1), _completion("Maybe 15?", None)], "human_completion": None, "chosen_completion": 0},
        ],
    },
}


def test_raw_record_to_rows():
    rows = load_prm800k([RAW])
    by_last = {row["steps"][-1]: row for row in rows}
    trajectory = by_last["# Answer\n\n14"]
    assert trajectory["steps"] == ["3*4 = 12.", "2 + 12 = 14.", "# Answer\n\n14"]
    assert trajectory["labels"] == [1, 1, 1]  # the human step gets human_label=1
    assert trajectory["prompt"] == [{"role": "user", "content": "What is 2+3*4?"}]
    assert trajectory["answer"] == "14" and trajectory["metadata"]["kind"] == "trajectory"
    assert trajectory["metadata"]["labeler"] == "L1" and trajectory["metadata"]["finish_reason"] == "solution"
    assert by_last["2+12 = 15."]["labels"] == [1, -1] and by_last["So 12+2."]["labels"] == [1, 0]
    assert "Maybe 15?" not in by_last  # unrated: cut before it, leaving a prefix of the trajectory
    assert len(rows) == 3 and len({row["id"] for row in rows}) == 3
    for row in rows:
        validate_step_label_row(row)
        assert json.loads(json.dumps(row)) == row


def test_options():
    assert len(load_prm800k([RAW], include_alternatives=False)) == 1
    assert load_prm800k([RAW], human_label=0, include_alternatives=False)[0]["labels"] == [1, 0, 1]
    kept = load_prm800k([RAW], drop_unrated=False)
    assert any(row["steps"][-1] == "Maybe 15?" and row["labels"] == [1, 1, None] for row in kept)
    with pytest.raises(ValueError, match="human_label"):
        load_prm800k([RAW], human_label=2)
    with pytest.raises(ValueError, match="record 0: neither raw PRM800K"):
        load_prm800k([{"problem": "x"}])


def test_stopped_chain_keeps_its_alternatives():
    """A step with no chosen and no human completion ends the trajectory; its candidates still become rows."""
    record = json.loads(json.dumps(RAW))
    record["label"]["steps"][1]["human_completion"] = None
    rows = load_prm800k([record])
    assert sorted(row["labels"] for row in rows) == [[1, -1], [1, 0]]  # [1] alone is a prefix of both


def test_binarize_and_trl():
    assert binarize([1, 0, -1, None]) == [True, True, False, None]
    assert binarize([0], neutral_is_good=False) == [False]
    row = load_prm800k([RAW], include_alternatives=False)[0]
    assert to_trl(row) == {"prompt": "What is 2+3*4?", "completions": row["steps"], "labels": [True, True, True]}


def test_validate_step_label_row():
    with pytest.raises(ValueError, match="row 3: field 'labels' must be a list with one label per step"):
        validate_step_label_row({"id": "x", "prompt": [], "steps": ["a"], "labels": []}, where="row 3")
    with pytest.raises(ValueError, match="outside"):
        validate_step_label_row({"id": "x", "prompt": [], "steps": ["a"], "labels": [2]})


def test_concatenated_json_objects(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps(RAW, indent=4) + "\n" + json.dumps(RAW, indent=2))
    assert len(list(iter_json_records(path))) == 2
    assert load_prm800k(path) == load_prm800k([RAW])  # the same record twice: duplicates dropped
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}\n{"b": ')
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        list(iter_json_records(bad))


# ---------------------------------------------------------------------------------------
# Conformance data


@pytest.mark.conformance
def test_raw_and_critic_forms_agree_on_the_same_problem():
    """The raw phase-1 test example and the stepwise-critic rows of the same problem give the same rows."""
    raw_rows = load_prm800k(conformance_path("prm", "raw_example_prm800k-phase1-test-example.json"))
    problem = raw_rows[0]["prompt"][0]["content"]
    critic = [r for r in read_jsonl(conformance_path("prm", "prm800k_phase1_test.stepwise-critic.jsonl")) if r["instruction"] == problem]
    critic_rows = load_prm800k(critic)
    key = lambda row: (tuple(row["steps"]), tuple(row["labels"]), row["metadata"]["kind"])  # noqa: E731
    assert sorted(map(key, raw_rows)) == sorted(map(key, critic_rows))
    assert len(raw_rows) == 10  # 1 trajectory + 5 rejected second steps + 4 other last steps
    trajectory = [row for row in raw_rows if row["metadata"]["kind"] == "trajectory"]
    assert len(trajectory) == 1 and len(trajectory[0]["steps"]) == 6 and trajectory[0]["answer"] == "29"
    assert trajectory[0]["steps"][1] == "We have $3p+e=1.24$ and $5p+e=1.82$."  # the labeler's own step
    assert trajectory[0]["steps"][-1].endswith("# Answer\n\n29")


@pytest.mark.conformance
def test_whole_critic_file():
    records = read_jsonl(conformance_path("prm", "prm800k_phase1_test.stepwise-critic.jsonl"))
    rows = load_prm800k(records)
    # 101 problems; 3 have only unrated first steps (labelling never started), so give no rows.
    rated_first = {r["instruction"] for r in records if not r["responses"] and (r["rating"] is not None or r["is_human_response"])}
    assert len({r["instruction"] for r in records}) == 101 and len(rated_first) == 98
    assert {row["prompt"][0]["content"] for row in rows} == rated_first
    keys = set()
    for row in rows:
        validate_step_label_row(row)
        assert None not in row["labels"]
        keys.add((row["prompt"][0]["content"], tuple(row["steps"]), tuple(row["labels"])))
    assert len(keys) == len(rows)  # no duplicates
    prefixes = {(p, s[:k], l[:k]) for p, s, l in keys for k in range(1, len(s))}
    assert not keys & prefixes  # no row is a prefix of another
    # Every rated candidate in the file ends some row's prefix with its rating (the final-answer
    # block put back), unless it or an earlier step of its chain is unrated (those rows are cut).
    labelled = {(row["prompt"][0]["content"], tuple(row["steps"][: i + 1]), row["labels"][i]) for row in rows for i in range(len(row["steps"]))}
    unrated = {(r["instruction"], tuple(r["responses"]), r["next_response"]) for r in records if r["rating"] is None and not r["is_human_response"]}
    checked = 0
    for r in records:
        chain = [(r["instruction"], tuple(r["responses"][:i]), step) for i, step in enumerate(r["responses"])]
        if (r["instruction"], tuple(r["responses"]), r["next_response"]) in unrated or any(c in unrated for c in chain):
            continue
        last = r["next_response"] + (f"\n\n# Answer\n\n{r['answer']}" if r["answer"] is not None else "")
        label = 1 if r["is_human_response"] else r["rating"]
        assert (r["instruction"], tuple(r["responses"]) + (last,), label) in labelled, r["next_response"][:60]
        checked += 1
    assert checked > 5000


@pytest.mark.conformance
def test_phase2_and_train_examples():
    phase2 = load_prm800k(conformance_path("prm", "raw_example_prm800k-phase2-test-example.json"))
    assert phase2 and all(row["answer"] == "28800" for row in phase2)
    assert phase2[0]["steps"][0] == "I notice that there are three groups of people: Democrats, Republicans, and Independent."
    assert phase2[0]["labels"][:2] == [1, 0]
    train_path = conformance_path("prm", "raw_example_prm800k-phase1-train-example.json")
    assert len(list(iter_json_records(train_path))) == 3  # pretty-printed objects one after another
    train = load_prm800k(train_path)
    assert {row["metadata"]["finish_reason"] for row in train} == {"solution", "give_up"}
