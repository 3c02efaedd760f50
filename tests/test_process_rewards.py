"""Process-reward hooks: step segmentation, rewarders (callable, Monte-Carlo, model PRM), combinations."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrl.envs.process_rewards import (
    SEGMENTERS,
    CallableRewarder,
    MonteCarloRewarder,
    StepSegmenter,
    combine_rewards,
    discounted_returns,
    reduce_step_rewards,
    segment_steps,
)
from reasonrl.types import Verdict
from reasonrl.verifiers import Verifier
from reasonrl.verifiers.extract import extract_tag


def texts(text: str, method: str, **kw) -> list[str]:
    return [text[a:b] for a, b in segment_steps(text, method, **kw)]


# ---------------------------------------------------------------------------------------
# Segmentation


def test_blank_lines():
    text = "\n  First step.\nstill first\n\n\n  Second step.  \n \t\nThird"
    assert texts(text, "blank_lines") == ["First step.\nstill first", "Second step.", "Third"]


def test_lines():
    assert texts("a\n\n b \nc", "lines") == ["a", "b", "c"]


def test_step_markers_keep_markers_and_preamble():
    text = "Let me think.\nStep 1: add 2 and 2.\n**Step 2.** double it\n## Step 3) done: 8\nnot step 4: here"
    assert texts(text, "step_markers") == [
        "Let me think.",
        "Step 1: add 2 and 2.",
        "**Step 2.** double it",
        "## Step 3) done: 8\nnot step 4: here",  # a marker counts only at a line start
    ]
    assert texts("no markers at all", "step_markers") == ["no markers at all"]


def test_regex_and_delimiter():
    assert texts("a ;; b;;c", "regex", pattern=r"\s*;;\s*") == ["a", "b", "c"]
    text = "x = 1 <end_of_step> y = 2<end_of_step>\n<answer>3</answer>"
    assert texts(text, "delimiter") == ["x = 1", "y = 2", "<answer>3</answer>"]
    assert texts("p ки q ки", "delimiter", delimiter="ки") == ["p", "q"]


def test_segmentation_errors():
    with pytest.raises(ValueError, match="valid: blank_lines, lines, step_markers, regex, delimiter"):
        segment_steps("x", "sentences")
    with pytest.raises(ValueError, match="pattern"):
        segment_steps("x", "regex")
    with pytest.raises(ValueError, match="pattern"):
        StepSegmenter("regex")
    with pytest.raises(Exception):
        StepSegmenter("regex", pattern="(unclosed")
    assert StepSegmenter("lines").split("a\nb") == ["a", "b"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(list("ab \n\t;") + ["Step 1:", "<end_of_step>"]), max_size=40).map("".join),
    st.sampled_from(sorted(SEGMENTERS)),
)
def test_spans_are_ordered_trimmed_and_cover_all_content(text, method):
    """Spans increase, do not overlap, are non-empty and trimmed; outside them only separators remain."""
    spans = segment_steps(text, method, pattern=";")
    previous_end = 0
    for start, end in spans:
        assert previous_end <= start < end <= len(text)
        assert not text[start].isspace() and not text[end - 1].isspace()
        previous_end = end
    outside = "".join(text[a:b] for a, b in zip([0] + [e for _, e in spans], [s for s, _ in spans] + [len(text)]))
    leftover = outside.replace("<end_of_step>", "") if method == "delimiter" else outside
    leftover = leftover.replace(";", "") if method == "regex" else leftover
    assert leftover.strip() == "", f"content outside the steps: {leftover!r}"


# ---------------------------------------------------------------------------------------
# Combination functions


def test_reducers_by_hand():
    r = [0.5, 0.25, 1.0]
    assert reduce_step_rewards(r, "min") == 0.25
    assert reduce_step_rewards(r, "last") == 1.0
    assert reduce_step_rewards(r, "mean") == pytest.approx(1.75 / 3)
    assert reduce_step_rewards(r, "discounted_sum", gamma=0.5) == pytest.approx(0.5 + 0.125 + 0.25)
    assert reduce_step_rewards([], "min") == 0.0
    assert combine_rewards(1.0, r, "min", process_weight=0.5) == pytest.approx(0.625)
    assert combine_rewards(1.0, r, "min", process_weight=0.0) == 1.0
    assert combine_rewards(0.0, r, "last", process_weight=1.0) == 1.0
    with pytest.raises(ValueError, match="process_weight"):
        combine_rewards(1.0, r, process_weight=2.0)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-1, 1), max_size=8), st.floats(-1, 1), st.floats(0, 1))
def test_discounted_returns_match_the_formula(rewards, outcome, gamma):
    T = len(rewards)
    slow = [sum(gamma ** (s - t) * rewards[s] for s in range(t, T)) + gamma ** (T - t) * outcome for t in range(T)]
    assert discounted_returns(rewards, outcome, gamma) == pytest.approx(slow, abs=1e-9)
    if rewards:
        assert reduce_step_rewards(rewards, "discounted_sum", gamma) == pytest.approx(discounted_returns(rewards, 0.0, gamma)[0], abs=1e-9)


# ---------------------------------------------------------------------------------------
# Rewarders


def test_callable_rewarder_checks_its_output():
    rewarder = CallableRewarder(lambda prompt, steps: [len(s) for s in steps])
    assert rewarder.score("q", ["ab", "c"]) == [2.0, 1.0]
    with pytest.raises(ValueError, match="1 scores for 2 steps"):
        CallableRewarder(lambda p, s: [1.0]).score("q", ["a", "b"])
    with pytest.raises(ValueError, match="non-finite"):
        CallableRewarder(lambda p, s: [math.nan]).score("q", ["a"])
    with_problem = CallableRewarder(lambda p, s, problem: [float(problem["answer"])] * len(s), pass_problem=True)
    assert with_problem.score_batch(["q", "r"], [["a"], ["b", "c"]], [{"answer": "1"}, {"answer": "0"}]) == [[1.0], [0.0, 0.0]]


class TagVerifier(Verifier):
    def verify(self, response: str, answer) -> Verdict:
        got = extract_tag(response)
        ok = got == answer
        return Verdict(float(ok), ok, got, "ok" if ok else "wrong_answer")


def test_monte_carlo_rewarder_fractions():
    calls = []

    def generate(prompt, prefixes, k):
        calls.append((prompt, list(prefixes), k))
        out = []
        for prefix in prefixes:
            # After a "bad" step only 1 of 4 continuations recovers; otherwise 3 of 4 succeed.
            good = 1 if "bad" in prefix else 3
            out.append(["<answer>8</answer>"] * good + ["<answer>9</answer>"] * (k - good))
        return out

    rewarder = MonteCarloRewarder(generate, k=4, verifier=TagVerifier(), joiner="\n\n")
    steps = ["2+2=4", "bad: 4*2=9", "fix: 4*2=8", "<answer>8</answer>"]
    scores = rewarder.score([{"role": "user", "content": "q"}], steps, {"answer": "8"})
    assert scores == [0.75, 0.25, 0.25, 1.0]  # the last step is the response's own outcome
    assert len(calls) == 1 and calls[0][2] == 4
    assert calls[0][1] == ["2+2=4\n\n", "2+2=4\n\nbad: 4*2=9\n\n", "2+2=4\n\nbad: 4*2=9\n\nfix: 4*2=8\n\n"]
    assert rewarder.score("q", steps[:3], {"answer": "7"})[-1] == 0.0
    sampled_last = MonteCarloRewarder(generate, k=4, verifier=TagVerifier(), final_step_from_outcome=False)
    assert sampled_last.score("q", steps, {"answer": "8"}) == [0.75, 0.25, 0.25, 0.25]
    with pytest.raises(ValueError, match="Problem row"):
        rewarder.score("q", steps)
    with pytest.raises(ValueError, match="expected k=4"):
        MonteCarloRewarder(lambda p, prefixes, k: [["x"]] * len(prefixes), 4, TagVerifier()).score("q", steps, {"answer": "8"})
    assert rewarder.score("q", [], {"answer": "8"}) == []


# ---------------------------------------------------------------------------------------
# Model PRM scorer on a tiny random Qwen2 built here


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Random tiny Qwen2 checkpoints (token-classification with 1 and 2 labels, two causal LMs) with
    the project's byte-level tokenizer and chat template (one token per ASCII character)."""
    torch = pytest.importorskip("torch")
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForTokenClassification

    from reasonrl.models.tiny import build_tokenizer

    root = tmp_path_factory.mktemp("prm")
    tokenizer = build_tokenizer()

    def config(**kw):
        return Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id, **kw,
        )

    paths = {}
    for seed, (name, build) in enumerate({
        "cls1": lambda: Qwen2ForTokenClassification(config(num_labels=1)),
        "cls2": lambda: Qwen2ForTokenClassification(config(num_labels=2)),
        "lm": lambda: Qwen2ForCausalLM(config()),
        "ref": lambda: Qwen2ForCausalLM(config()),
    }.items()):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build()
        paths[name] = str(root / name)
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


PROMPT = [{"role": "user", "content": "What is 2+2*3?"}]
STEPS = ["2*3 = 6.", "2 + 6 = 8.", "The answer is 8."]


def _prefix_outputs(model, tokenizer, text: str):
    import torch

    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        return model(input_ids=ids).logits[0].float()


def test_classification_prm_scores_each_step_at_its_end(tiny_checkpoints):
    """Oracle: run the model on the text up to each step's end alone; its last output is that step's score."""
    import torch

    from reasonrl.envs.process_rewards import ModelPRMScorer

    for name, step_tag in (("cls1", None), ("cls2", " ки")):
        scorer = ModelPRMScorer(tiny_checkpoints[name], head="classification", step_tag=step_tag)
        scores = scorer.score(PROMPT, STEPS)
        text, _, _, score_spans = scorer.build_text(PROMPT, STEPS)
        expected = []
        for _, end in score_spans:
            last = _prefix_outputs(scorer.model, scorer.tokenizer, text[:end])[-1]
            expected.append(float(torch.sigmoid(last[0])) if last.shape[-1] == 1 else float(torch.softmax(last, -1)[1]))
        assert scores == pytest.approx(expected, abs=1e-5)
        assert all(0.0 <= s <= 1.0 for s in scores) and len(set(scores)) == len(scores)
        if step_tag:
            assert text.count(step_tag) == len(STEPS)


def test_token_pair_prm_and_batching(tiny_checkpoints):
    import torch

    from reasonrl.envs.process_rewards import ModelPRMScorer

    scorer = ModelPRMScorer(tiny_checkpoints["lm"], head="token_pair", good_token="+", bad_token="-", batch_size=2)
    text, _, _, spans = scorer.build_text(PROMPT, STEPS)
    good, bad = (scorer.tokenizer.encode(t, add_special_tokens=False)[0] for t in "+-")
    expected = []
    for _, end in spans:
        logits = _prefix_outputs(scorer.model, scorer.tokenizer, text[:end])[-1]
        pair = torch.stack([logits[good], logits[bad]])
        expected.append(float(torch.softmax(pair, -1)[0]))
    assert scorer.score(PROMPT, STEPS) == pytest.approx(expected, abs=1e-5)
    # Batched (padded, several chunks) equals one by one.
    items = [(PROMPT, STEPS), ("short?", ["a"]), (PROMPT, STEPS[:2]), ("x", ["long step " * 5, "b"])]
    batched = scorer.score_batch([p for p, _ in items], [s for _, s in items])
    single = [scorer.score(p, s) for p, s in items]
    for b, s in zip(batched, single):
        assert b == pytest.approx(s, abs=1e-5)
    with pytest.raises(ValueError, match="exactly one"):
        ModelPRMScorer(tiny_checkpoints["lm"], head="token_pair", good_token="++")


def test_implicit_prm_sums_log_ratios_per_step(tiny_checkpoints):
    import torch

    from reasonrl.envs.process_rewards import ModelPRMScorer

    scorer = ModelPRMScorer(tiny_checkpoints["lm"], head="implicit", reference_checkpoint=tiny_checkpoints["ref"], beta=0.1)
    scores = scorer.score(PROMPT, STEPS)
    text, response_start, step_spans, _ = scorer.build_text(PROMPT, STEPS)
    # Oracle: the response is ASCII, one token per character, so token t is text[t]; its reward is
    # beta * (log p - log p_ref) of text[t] after text[:t], summed into the step that holds character t.
    ids = scorer.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    first = len(scorer.tokenizer(text[:response_start], add_special_tokens=False)["input_ids"])
    with torch.inference_mode():
        logp = torch.log_softmax(scorer.model(input_ids=ids).logits[0].float(), -1)
        ref = torch.log_softmax(scorer.reference(input_ids=ids).logits[0].float(), -1)
    expected = [0.0] * len(STEPS)
    for k, t in enumerate(range(response_start, len(text))):
        pos = first + k  # token index of character t
        target = int(ids[0, pos])
        step = max(i for i, (a, _) in enumerate(step_spans) if a <= t)
        expected[step] += 0.1 * float(logp[pos - 1, target] - ref[pos - 1, target])
    assert ids.shape[1] == first + len(text) - response_start
    assert scores == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ValueError, match="reference_checkpoint"):
        ModelPRMScorer(tiny_checkpoints["lm"], head="implicit")


def test_prm_scorer_option_errors(tiny_checkpoints):
    from reasonrl.envs.process_rewards import ModelPRMScorer

    with pytest.raises(ValueError, match="valid: classification, token_pair, implicit"):
        ModelPRMScorer(tiny_checkpoints["cls1"], head="value")
    with pytest.raises(ValueError, match="1 or 2 labels"):
        import transformers

        cfg_dir = tiny_checkpoints["cls1"] + "-3"
        model = transformers.AutoModelForTokenClassification.from_pretrained(tiny_checkpoints["cls1"], num_labels=3, ignore_mismatched_sizes=True)
        model.save_pretrained(cfg_dir)
        transformers.AutoTokenizer.from_pretrained(tiny_checkpoints["cls1"]).save_pretrained(cfg_dir)
        ModelPRMScorer(cfg_dir)
    tanh = ModelPRMScorer(tiny_checkpoints["cls1"], activation="tanh")
    assert all(-1.0 <= s <= 1.0 for s in tanh.score(PROMPT, STEPS))


def test_prm_scorer_in_an_env(tiny_checkpoints):
    """A model PRM attached to an env puts one score per step beside the verdict."""
    import reasonrl
    from reasonrl import tasks
    from reasonrl.envs import TaskEnv
    from reasonrl.envs.process_rewards import ModelPRMScorer

    rows = [reasonrl.make_problem("p0", "test_prm_env", PROMPT, "8")]
    reasonrl.register_task("test_prm_env", rows, TagVerifier, overwrite=True)
    try:
        scorer = ModelPRMScorer(tiny_checkpoints["cls1"])
        env = TaskEnv("test_prm_env", process_rewarder=scorer, process_weight=1.0, process_reduce="mean")
        env.reset(seed=0)
        response = "2*3 = 6.\n\n2 + 6 = 8.\n\n<answer>8</answer>"
        _, reward, _, _, info = env.step(response)
        steps = [response[a:b] for a, b in info["steps"]]
        assert info["step_rewards"] == pytest.approx(scorer.score(PROMPT, steps), abs=1e-6)
        assert reward == pytest.approx(sum(info["step_rewards"]) / 3) and info["verdict"].correct
    finally:
        tasks.unregister_task("test_prm_env")
