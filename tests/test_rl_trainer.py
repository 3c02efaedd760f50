"""The RL loop on a tiny model: every estimator runs, updates are exact where shortcuts are taken,
dynamic sampling refills, and GRPO really raises a reward."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonrl.config import TrainConfig, load_config
from reasonrl.engines.hf_engine import HFEngine
from reasonrl.models.tiny import TinyModelConfig, build_tiny_model
from reasonrl.tasks import get_task
from reasonrl.trainers.data import ProblemSource
from reasonrl.trainers.base import warn_on_dead_signal
from reasonrl.trainers.rewards import RewardOutput
from reasonrl.trainers.rl import RLTrainer
from reasonrl.types import Verdict

BASE = ["rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_tokens=4", "optim.lr=1e-3",
        "track_ref_kl=false", "progress=false"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(
        TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, bpe_merges=32, seed=0),
        tmp_path_factory.mktemp("tiny") / "m",
    )


@pytest.fixture(scope="module")
def source():
    return ProblemSource(get_task("arith"), seed=0, num_test=4, num_val=4)


def even_first_token(problems, responses, tokenizer):
    """A reward with variance on an untrained model: 1 when the response's first token id is even."""
    out = []
    for text in responses:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        good = bool(ids) and ids[0] % 2 == 0
        out.append(Verdict(reward=float(good), correct=good, reason="ok" if good else "wrong_answer"))
    return out


class VerdictRewarder:
    """A rewarder over a test's verdict function (reward = each verdict's reward)."""

    def __init__(self, verify):
        self.verify = verify

    def __call__(self, problems, responses):
        verdicts = self.verify(problems, responses)
        return RewardOutput(verdicts=verdicts, rewards=[v.reward for v in verdicts])


def make_trainer(tiny_dir, source, overrides=(), verify="even", ref=False):
    torch.manual_seed(0)
    config = load_config(TrainConfig, None, [*BASE, *overrides])
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    ref_model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval() if ref else None
    verify_fn = (lambda p, r: even_first_token(p, r, tokenizer)) if verify == "even" else verify
    return RLTrainer.from_models(config, model, tokenizer, HFEngine(model, tokenizer), source, VerdictRewarder(verify_fn),
                                 ref_model=ref_model, log=lambda m: None)


def params_of(trainer):
    return {k: v.detach().clone() for k, v in trainer.policy.model.state_dict().items()}


# Adam's first step moves every weight by about lr * sign(grad); summation-order noise in a tiny gradient
# can flip that by a little, so "equal" here means equal to 1% of the learning rate (1e-3).
SAME = 1e-5


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize(
    "overrides, ref",
    [
        ([], False),
        (["algorithm.estimator=dr_grpo", "algorithm.loss_agg_mode=seq-mean-token-sum-norm"], False),
        (["algorithm.estimator=rloo", "algorithm.loss_agg_mode=seq-mean-token-mean"], False),
        (["algorithm.estimator=reinforce++", "algorithm.kl_in=reward", "algorithm.kl_coef=0.05"], True),
        (["algorithm.estimator=reinforce++-baseline"], False),
        (["algorithm.estimator=remax"], False),
        (["algorithm.estimator=ppo", "optim.epochs=2", "optim.minibatch_size=8"], False),
        (["algorithm.kl_coef=0.1", "algorithm.clip_high=0.28", "algorithm.overlong_buffer=2"], True),
        (["algorithm.policy_loss=vanilla_pg", "algorithm.dual_clip_c=3"], False),
    ],
)
def test_every_algorithm_runs_a_step(tiny_dir, source, overrides, ref):
    trainer = make_trainer(tiny_dir, source, overrides, ref=ref)
    before = params_of(trainer)
    metrics = trainer.train_step()
    for key in ("reward", "accuracy", "zero_variance_share", "truncation_rate", "verifier_timeouts", "entropy",
                "response_length", "tokens_per_s", "time_generate", "time_verify", "time_train"):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["step"] == 1 and trainer.stream.position == 4
    if ref:
        assert "kl" in metrics
    if metrics["zero_variance_share"] < 1:
        assert max_diff(before, params_of(trainer)) > 0  # something was learned from
    if "algorithm.estimator=ppo" in overrides:
        assert "vf_loss" in metrics and trainer.value_head.linear.weight.abs().sum() > 0


def test_remax_uses_the_greedy_baseline(tiny_dir, source):
    calls = []

    def verify(problems, responses):
        calls.append(len(responses))
        return [Verdict(reward=1.0, correct=True) for _ in responses]

    trainer = make_trainer(tiny_dir, source, ["algorithm.estimator=remax"], verify=verify)
    trainer.train_step()
    assert calls == [16, 4]  # the sampled responses, then one greedy response per prompt
    # Every reward equals its greedy baseline: ReMax advantages are all zero.
    assert trainer.train_step()["advantage_abs_mean"] == 0.0


def test_skipping_zero_advantage_rows_is_exact(tiny_dir, source):
    results = []
    for skip in (True, False):
        trainer = make_trainer(tiny_dir, source)
        trainer.skip_zero_advantage_rows = skip
        metrics = trainer.train_step()
        results.append(params_of(trainer))
        assert (metrics["rows_trained_share"] < 1) == (skip and metrics["zero_variance_share"] > 0)
    assert max_diff(*results) < SAME


def test_gradient_accumulation_matches_one_big_batch(tiny_dir, source):
    results = []
    for micro in (0, 3):
        trainer = make_trainer(tiny_dir, source, [f"optim.micro_batch_size={micro}"])
        trainer.train_step()
        results.append(params_of(trainer))
    assert max_diff(*results) < SAME


def test_single_update_shortcut_matches_recomputed_old_logprobs(tiny_dir, source):
    results = []
    for shortcut in (True, False):
        trainer = make_trainer(tiny_dir, source)
        trainer.single_update = shortcut
        metrics = trainer.train_step()
        results.append(params_of(trainer))
        assert metrics["logprob_gap"] < 1e-4  # the HF engine shares the module: same numbers
    assert max_diff(*results) < SAME


def test_dynamic_sampling_drops_flat_groups_and_refills(tiny_dir, source):
    seen = []

    def verify(problems, responses):
        # Alternate: the first two prompts of every round have all-correct groups, the others mixed.
        out = []
        for i, _ in enumerate(responses):
            prompt_index = i // 4
            good = True if prompt_index < 2 else (i % 2 == 0)
            out.append(Verdict(reward=float(good), correct=good))
        seen.append(len(responses))
        return out

    trainer = make_trainer(tiny_dir, source, ["algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=3"],
                           verify=verify)
    metrics = trainer.train_step()
    assert seen == [16, 16]  # round 1 kept 2 groups, round 2 filled the other 2
    assert metrics["sampling_rounds"] == 2 and metrics["groups_trained"] == 4
    assert metrics["zero_variance_share"] == pytest.approx(0.5)
    assert metrics["accuracy"] == pytest.approx(0.5)  # only the mixed groups were kept
    assert trainer.stream.position == 8


def test_grpo_raises_the_reward(tiny_dir, source):
    trainer = make_trainer(tiny_dir, source, ["rollout.prompts_per_step=8", "rollout.group_size=8",
                                              "rollout.max_tokens=1", "optim.lr=1e-2"])
    rewards = [trainer.train_step()["reward"] for _ in range(15)]
    assert sum(rewards[-3:]) / 3 > rewards[0] + 0.25, rewards


def test_dead_signal_warnings():
    flat = {"zero_variance_share": 1.0, "truncation_rate": 0.0, "accuracy": 0.0, "max_tokens": 16}
    assert "zero reward variance" in warn_on_dead_signal(flat, [flat] * 5)
    cut = {"zero_variance_share": 0.0, "truncation_rate": 0.9, "accuracy": 0.3, "max_tokens": 16}
    assert "rollout.max_tokens=16" in warn_on_dead_signal(cut, [cut] * 5)
    healthy = {"zero_variance_share": 0.3, "truncation_rate": 0.0, "accuracy": 0.4}
    assert warn_on_dead_signal(healthy, [healthy] * 5) is None


def test_shared_prompt_forward_matches_the_plain_pass(tiny_dir):
    from reasonrl.trainers.logprobs import response_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_dir).train()
    torch.manual_seed(0)
    G, n, P, T = 3, 4, 7, 5
    prompts = torch.randint(0, 200, (G, P))
    prompt_mask = torch.ones(G, P, dtype=torch.long)
    prompt_mask[0, :2] = 0  # a left-padded (shorter) prompt
    order = torch.tensor([2, 0, 1, 0, 2, 1, 0, 1, 2, 0, 1, 2])  # groups interleaved, not contiguous
    ids = torch.cat([prompts[order], torch.randint(0, 200, (G * n, T))], dim=1)
    mask = torch.cat([prompt_mask[order], torch.ones(G * n, T, dtype=torch.long)], dim=1)
    mask[3, -2:] = 0  # a shorter response
    results = []
    for share in (False, True):
        model.zero_grad()
        logprobs, entropy, _ = response_logprobs(model, ids, mask, T, temperature=0.8, with_entropy=True, share_prompts=share)
        (logprobs * mask[:, -T:]).sum().backward()
        results.append((logprobs.detach(), entropy, {k: p.grad.clone() for k, p in model.named_parameters()}))
    (lp_a, ent_a, grad_a), (lp_b, ent_b, grad_b) = results
    valid = mask[:, -T:].bool()
    assert torch.allclose(lp_a[valid], lp_b[valid], atol=1e-5)
    assert torch.allclose(ent_a[valid], ent_b[valid], atol=1e-5)
    assert all(torch.allclose(grad_a[k], grad_b[k], atol=1e-5, rtol=1e-4) for k in grad_a)


def test_chunked_logprobs_match_one_pass_with_gradients(tiny_dir, monkeypatch):
    """response_logprobs converts logits to fp32 a few rows at a time (recomputed in backward);
    the log-probs, entropies and gradients equal the one-shot formula's."""
    from reasonrl.trainers import logprobs as rl

    model = AutoModelForCausalLM.from_pretrained(tiny_dir).train()
    torch.manual_seed(1)
    B, P, T = 6, 4, 5
    ids = torch.randint(0, 200, (B, P + T))
    mask = torch.ones(B, P + T, dtype=torch.long)
    mask[2, -2:] = 0
    weights = torch.randn(B, T)

    def run():
        model.zero_grad()
        logprobs, entropy, _ = rl.response_logprobs(model, ids, mask, T, temperature=0.7, with_entropy=True)
        (logprobs * weights).sum().backward()
        return logprobs.detach(), entropy, {k: p.grad.clone() for k, p in model.named_parameters()}

    vocab = model.config.vocab_size
    monkeypatch.setattr(rl, "LOGPROB_CHUNK_ELEMENTS", 2 * T * vocab)  # 2 rows per chunk: 3 chunks
    chunked = run()
    # The formula written out on the whole batch at once.
    model.zero_grad()
    out = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    logits = out.logits[:, P - 1 : -1, :].float() / 0.7
    reference = torch.log_softmax(logits, -1).gather(-1, ids[:, -T:].unsqueeze(-1)).squeeze(-1)
    entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1)
    (reference * weights).sum().backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    assert torch.allclose(chunked[0], reference.detach(), atol=1e-5)
    assert torch.allclose(chunked[1], entropy.detach(), atol=1e-5)
    assert all(torch.allclose(chunked[2][k], grads[k], atol=1e-5, rtol=1e-4) for k in grads)


def test_step_with_no_signal_at_all_is_skipped_cleanly(tiny_dir, source):
    flat = lambda problems, responses: [Verdict(reward=0.0, correct=False) for _ in responses]  # noqa: E731
    trainer = make_trainer(tiny_dir, source, ["algorithm.dynamic_sampling=true", "algorithm.max_sampling_rounds=2"],
                           verify=flat)
    before = params_of(trainer)
    metrics = trainer.train_step()
    assert metrics["groups_trained"] == 0 and metrics["sampling_rounds"] == 2 and metrics["zero_variance_share"] == 1.0
    assert max_diff(before, params_of(trainer)) == 0.0
    assert trainer.stream.position == 8


# -- where the problems come from -------------------------------------------------------------


def test_heldout_splits_never_reach_training(source):
    keys = {split: {source.key(p) for p in source.heldout(split)} for split in ("test", "val")}
    assert len(keys["test"]) == 4 and len(keys["val"]) == 4 and not keys["test"] & keys["val"]
    tiny = ProblemSource(get_task("arith"), seed=0, task_options={"digits": 1}, num_test=40, num_val=20)
    held = {tiny.key(p) for split in ("test", "val") for p in tiny.heldout(split)}
    trained = {tiny.key(p) for p in tiny.stream("rl").take(300)}  # 1-digit sums: only 100 distinct problems
    assert not held & trained and len(trained) == 100 - 60


def test_streams_are_reproducible_and_resumable(source):
    a = [p["id"] for p in source.stream("rl").take(10)]
    assert a == [p["id"] for p in source.stream("rl").take(10)]
    assert a[5:] == [p["id"] for p in source.stream("rl", position=5).take(5)]
    assert a != [p["id"] for p in source.stream("sft").take(10)]
    other_seed = ProblemSource(get_task("arith"), seed=1, num_test=4, num_val=4)
    assert a != [p["id"] for p in other_seed.stream("rl").take(10)]


def test_dataset_rows_are_split_and_cycled(tmp_path):
    from reasonrl.types import make_problem

    rows = [make_problem(f"r{i}", "arith", f"Compute {i}+1.", str(i + 1)) for i in range(30)]
    rows.append(make_problem("dup", "arith", "Compute 0+1.", "1"))  # same prompt as r0
    src = ProblemSource(get_task("arith"), seed=0, dataset=rows, num_test=5, num_val=5)
    test_keys = {src.key(p) for p in src.heldout("test")}
    served = src.stream("rl").take(60)  # more than one epoch
    assert not test_keys & {src.key(p) for p in served}
    assert len({p["id"] for p in served}) == len(src.rows) <= 21


@pytest.mark.conformance
def test_public_gsm8k_layout_is_converted(conformance):
    path = conformance("gsm8k", "test.jsonl")
    src = ProblemSource(get_task("gsm8k"), seed=0, dataset=str(path), num_test=10, num_val=5)
    problem = src.stream("rl").take(1)[0]
    assert problem["task"] == "gsm8k" and problem["answer"].lstrip("-").replace(".", "").isdigit()
    assert "<answer></answer>" in problem["prompt"][-1]["content"]
