"""The trainer foundation: the learner against a plain loop, role syncs, hooks and their state,
the trainer registry, expert iteration, LoRA and a separate critic on a tiny model."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonrl.config import ConfigError, TrainConfig, load_config
from reasonrl.engines.hf_engine import HFEngine
from reasonrl.models.tiny import TinyModelConfig, build_tiny_model
from reasonrl.tasks import get_task
from reasonrl.trainers.data import ProblemSource
from reasonrl.trainers.hooks import Hook, HookList, build_hooks
from reasonrl.trainers.learner import Learner
from reasonrl.trainers.rewards import RewardOutput
from reasonrl.trainers.roles import ModelRole, RoleError
from reasonrl.trainers.strategy import OptimizerSettings, ParamGroup, Strategy
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


class AcceptAll:
    """A rewarder that accepts every response (reward 1)."""

    def __call__(self, problems, responses):
        return RewardOutput(verdicts=[Verdict(reward=1.0, correct=True) for _ in responses], rewards=[1.0] * len(responses))


# -- the learner ----------------------------------------------------------------------------------


def test_learner_matches_a_plain_minibatch_loop():
    """Minibatches of 4 in micro-batches of 3 (accumulated), 2 epochs, clipping: the learner's weights
    equal a hand-written loop that takes each minibatch's mean loss in one piece."""
    torch.manual_seed(0)
    x, y = torch.randn(10, 5), torch.randn(10)
    row_tokens = torch.ones(10)

    def make():
        torch.manual_seed(1)
        return torch.nn.Linear(5, 1)

    model = make()
    settings = OptimizerSettings(grad_clip=0.5, minibatch_rows=4, micro_batch_rows=3)
    learner = Learner(Strategy(), model, [ParamGroup("policy", list(model.parameters()), 0.1)], settings,
                      {"policy": lambda step: 0.1}, seed=7)

    def loss_fn(rows, scale):
        loss = ((model(x[rows]).squeeze(-1) - y[rows]) ** 2).sum() / scale.tokens
        return loss, {"mse": float(loss.detach()) * scale.tokens / len(rows)}, float(len(rows))

    metrics = learner.update(3, row_tokens, loss_fn, epochs=2)

    slow = make()
    opt = torch.optim.AdamW(slow.parameters(), lr=0.1, betas=(0.9, 0.99), weight_decay=0.0)
    from reasonrl.trainers.data import derived_seed

    for epoch in range(2):
        order = torch.randperm(10, generator=torch.Generator().manual_seed(derived_seed(7, "minibatch", 3, epoch) % 2**63))
        for start in range(0, 10, 4):
            rows = order[start : start + 4]
            opt.zero_grad()
            ((slow(x[rows]).squeeze(-1) - y[rows]) ** 2).mean().backward()
            torch.nn.utils.clip_grad_norm_(slow.parameters(), 0.5)
            opt.step()
    for a, b in zip(model.parameters(), slow.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert metrics["lr"] == 0.1 and metrics["rows_trained_share"] == 1.0 and "grad_norm" in metrics


def test_learner_skips_the_step_when_no_row_carries_gradient():
    model = torch.nn.Linear(2, 1)
    before = [p.detach().clone() for p in model.parameters()]
    learner = Learner(Strategy(), model, [ParamGroup("policy", list(model.parameters()), 0.1)], OptimizerSettings(),
                      {"policy": lambda step: 0.1}, seed=0)
    metrics = learner.update(1, torch.ones(4), lambda rows, scale: (model(torch.ones(len(rows), 2)).sum(), {}, 1.0),
                             active_rows=lambda rows: rows[:0])
    assert "grad_norm" not in metrics and metrics["rows_trained_share"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert not learner.optimizer.optimizer.state  # Adam never stepped


# -- roles ----------------------------------------------------------------------------------------


def test_soft_and_hard_role_sync():
    torch.manual_seed(0)
    policy, ref = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    p0, r0 = policy.weight.detach().clone(), ref.weight.detach().clone()
    policy_role, ref_role = ModelRole("policy", policy, trainable=True), ModelRole("reference", ref)
    ref_role.sync_from(policy_role, alpha=0.25, step=3)
    torch.testing.assert_close(ref.weight, 0.25 * p0 + 0.75 * r0)
    assert ref_role.drifted and ref_role.checkpointed and ref_role.syncs == [{"step": 3, "from": "policy", "alpha": 0.25}]
    ref_role.sync_from(policy_role, alpha=1.0)
    assert torch.equal(ref.weight, p0)
    with pytest.raises(RoleError, match="alpha"):
        ref_role.sync_from(policy_role, alpha=0.0)


def test_optimizer_reset_starts_the_moments_afresh():
    model = torch.nn.Linear(3, 1)
    learner = Learner(Strategy(), model, [ParamGroup("policy", list(model.parameters()), 0.1)], OptimizerSettings(),
                      {"policy": lambda step: 0.1}, seed=0)
    learner.update(1, torch.ones(2), lambda rows, scale: (model(torch.ones(len(rows), 3)).sum(), {}, 1.0))
    state = learner.optimizer.optimizer.state[model.weight]
    assert state["exp_avg"].abs().sum() > 0
    learner.optimizer.reset_state("policy")
    assert state["exp_avg"].abs().sum() == 0 and state["exp_avg_sq"].abs().sum() == 0 and float(state["step"]) == 0


# -- hooks ----------------------------------------------------------------------------------------


HOOK_FILE = '''
from reasonrl.trainers.hooks import Hook


class RewardAverage(Hook):
    """Keeps an exponential average of the reward (state that must survive a resume)."""

    def __init__(self, decay=0.5):
        self.decay, self.average = decay, 0.0

    def after_step(self, trainer, step, metrics):
        self.average = self.decay * self.average + (1 - self.decay) * metrics.get("reward", 0.0)
        metrics["reward_average"] = self.average

    def state_dict(self):
        return {"average": self.average}

    def load_state_dict(self, state):
        self.average = state["average"]
'''


def test_hooks_from_names_and_files_with_state(tmp_path):
    (tmp_path / "my_hooks.py").write_text(HOOK_FILE)
    spec = f"{tmp_path / 'my_hooks.py'}:RewardAverage"
    hooks = build_hooks(["reference_sync", {"name": spec, "options": {"decay": 0.9}}])
    assert [h.name for h in hooks] == ["reference_sync", spec]
    metrics = {"reward": 1.0}
    hooks.hooks[1].after_step(None, 1, metrics)
    assert metrics["reward_average"] == pytest.approx(0.1)
    fresh = build_hooks(["reference_sync", {"name": spec, "options": {"decay": 0.9}}])
    fresh.load_state_dict(json.loads(json.dumps(hooks.state_dict())))  # checkpoints hold it as JSON
    assert fresh.hooks[1].average == pytest.approx(0.1)
    with pytest.raises(ConfigError, match="reference_sync"):
        build_hooks(["reference_snyc"])
    with pytest.raises(ValueError, match="bad options"):
        build_hooks([{"name": "reference_sync", "options": {"evry": 3}}])


def test_a_hook_that_needs_a_missing_role_names_the_key(tiny_dir):
    from reasonrl.trainers.run import RunError, build_roles

    config = load_config(TrainConfig, None, [*BASE, "hooks=[reference_sync]"])
    with pytest.raises(RunError, match=r"track_ref_kl=true"):
        build_roles([], build_hooks(config.hooks), tiny_dir, "cpu", config)


def test_reference_sync_hook_moves_the_reference(tiny_dir, source):
    from reasonrl.trainers.rl import RLTrainer

    config = load_config(TrainConfig, None, [*BASE, "track_ref_kl=true"])
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    ref = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    hooks = build_hooks([{"name": "reference_sync", "options": {"every": 2, "alpha": 1.0, "reset_optimizer": True}}])
    trainer = RLTrainer.from_models(config, model, tokenizer, HFEngine(model, tokenizer), source, EvenReward(tokenizer),
                                    ref_model=ref, hooks=hooks, log=lambda m: None)
    m1 = trainer.train_step()
    assert m1["reference_syncs"] == 0 and m1["kl"] == pytest.approx(0.0, abs=1e-6)  # the reference is still the initial policy
    m2 = trainer.train_step()
    assert m2["reference_syncs"] == 1
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))
    assert trainer.roles["reference"].checkpointed  # drifted from its checkpoint: saved from now on
    assert all(float(s["exp_avg"].abs().sum()) == 0 for s in trainer.learner.optimizer.optimizer.state.values())


class EvenReward:
    """Reward 1 when the response's first token id is even: variance on an untrained model."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, problems, responses):
        verdicts = []
        for text in responses:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            good = bool(ids) and ids[0] % 2 == 0
            verdicts.append(Verdict(reward=float(good), correct=good))
        return RewardOutput(verdicts=verdicts, rewards=[v.reward for v in verdicts])


def test_adaptive_kl_coefficient_moves_after_each_step(tiny_dir, source):
    from reasonrl.trainers.rl import RLTrainer

    config = load_config(TrainConfig, None, [*BASE, "algorithm.kl_coef=0.1", "algorithm.kl_controller=adaptive",
                                             "algorithm.kl_target=0.5", "algorithm.kl_horizon=16", "optim.lr=1e-2"])
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    trainer = RLTrainer.from_models(config, model, tokenizer, HFEngine(model, tokenizer), source, EvenReward(tokenizer),
                                    ref_model=AutoModelForCausalLM.from_pretrained(tiny_dir).eval(), log=lambda m: None)
    first = trainer.train_step()
    assert first["kl_coef"] == pytest.approx(0.1) and first["kl_per_response"] == pytest.approx(0.0, abs=1e-5)
    # KL 0 is far below the target: e = clip(-1, -0.2, 0.2) = -0.2, n = 16 responses, horizon 16.
    assert trainer.kl_controller.value == pytest.approx(0.1 * (1 - 0.2 * 16 / 16))
    assert trainer.train_step()["kl_coef"] == pytest.approx(0.08)
    assert trainer.loss_config.kl_coef == pytest.approx(0.08)


# -- the trainer registry and expert iteration ----------------------------------------------------


def test_trainer_registry_lists_and_rejects(capsys):
    from reasonrl.cli import main
    from reasonrl.trainers.registry import get_trainer, trainer_names

    assert {"rl", "expert_iteration"} <= set(trainer_names())
    with pytest.raises(ConfigError, match=r"unknown trainer 'grop'.*valid choices: rl, expert_iteration"):
        get_trainer("grop")
    assert main(["train", "--list-trainers"]) == 0
    out = capsys.readouterr().out
    assert "rl" in out and "expert_iteration" in out and "rejection-sampling" in out


def test_expert_iteration_keeps_distinct_verified_samples_up_to_m():
    from reasonrl.engines.base import Sample
    from reasonrl.trainers.batch import RolloutBatch
    from reasonrl.trainers.expert_iteration import verified_rows

    texts = ["a", "a ", "b", "c", "d", "x", "y", "y"]
    correct = [True, True, True, False, True, True, True, True]
    batch = RolloutBatch(
        problems=[{}] * 8, group_ids=torch.tensor([0, 0, 0, 0, 0, 1, 1, 1]),
        samples=[Sample(text=t, token_ids=[1], logprobs=[0.0], finish_reason="stop") for t in texts],
        verdicts=[Verdict(reward=float(c), correct=c) for c in correct],
    )
    # group 0: "a" kept, "a " is the same text, "b" kept, "c" wrong, "d" over the cap of 2.
    assert verified_rows(batch, 2).tolist() == [0, 2, 5, 6]
    assert verified_rows(batch, 3).tolist() == [0, 2, 4, 5, 6]


def test_expert_iteration_step_raises_the_likelihood_of_kept_samples(tiny_dir, source):
    from reasonrl.trainers.expert_iteration import ExpertIterationTrainer
    from reasonrl.trainers.logprobs import response_logprobs

    config = load_config(TrainConfig, None, [*BASE, "trainer=expert_iteration", "optim.lr=1e-2", "expert_iteration.max_per_prompt=2"])
    torch.manual_seed(0)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(tiny_dir), AutoTokenizer.from_pretrained(tiny_dir)
    captured = {}

    class Capture(Hook):
        def after_update(self, trainer, batch, metrics):
            captured["kept"] = batch

    trainer = ExpertIterationTrainer.from_models(config, model, tokenizer, HFEngine(model, tokenizer), source, AcceptAll(),
                                                 hooks=HookList([Capture()]), log=lambda m: None)
    metrics = trainer.train_step()
    kept = captured["kept"]
    assert 0 < metrics["kept_per_prompt"] <= 2 and len(kept) == round(metrics["kept_per_prompt"] * 4)
    assert len({s.text.strip() for s in kept.samples}) == len(kept)  # distinct texts only
    assert metrics["sampled_tokens"] == trainer.sampled_tokens > 0
    # The SFT step raised the log-likelihood of exactly the samples it kept.
    after, _, _ = response_logprobs(model, kept.input_ids, kept.attention_mask, kept.response_length)
    before, _, _ = response_logprobs(AutoModelForCausalLM.from_pretrained(tiny_dir), kept.input_ids, kept.attention_mask,
                                     kept.response_length)
    mask = kept.response_mask
    assert float((after * mask).sum()) > float((before * mask).sum()) + 0.1


# -- LoRA and a separate critic through the whole job ---------------------------------------------

MICRO = ["tiny.hidden_size=32", "tiny.num_layers=2", "tiny.bpe_merges=32", "sft.max_steps=5", "sft.batch_size=8",
         "sft.target_accuracy=0", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_tokens=6",
         "eval.problems=4", "eval.samples=2", "sft.eval_problems=4", "steps=2", "save_every=1", "progress=false",
         "optim.lr=1e-2"]


# A reward with variance on a barely trained model, so that every step has a policy gradient.
EVEN_LENGTH = """
def even_length(problems, responses):
    return [float(len(r) % 2 == 0) for r in responses]
"""


def even_length_reward(tmp_path):
    (tmp_path / "even.py").write_text(EVEN_LENGTH)
    return f"rewards=[{{name: {tmp_path / 'even.py'}:even_length}}]"


def test_lora_policy_trains_the_adapter_and_keeps_the_base(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from reasonrl.trainers.run import main

    monkeypatch.setenv("REASONRL_CACHE", str(tmp_path / "cache"))
    config = load_config(TrainConfig, None, [*MICRO, f"output_dir={tmp_path / 'run'}", "lora.r=4", "algorithm.kl_coef=0.05",
                                             even_length_reward(tmp_path)])
    summary = main(config, log=lambda m: None)
    final = tmp_path / "run" / "checkpoints" / "step-2"
    assert (final / "adapter_model.safetensors").exists() and not (final / "model.safetensors").exists()
    adapter = load_file(str(final / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at 0: it trained
    assert not (final / "roles" / "reference").exists()  # the reference is the base itself, not a copy
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-6) and metrics[1]["kl"] > 1e-5  # adapter off = the base = the reference
    assert summary["eval_after"] is not None


def test_separate_critic_model_is_trained_and_checkpointed(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from reasonrl.trainers.run import main

    monkeypatch.setenv("REASONRL_CACHE", str(tmp_path / "cache"))
    config = load_config(TrainConfig, None, [*MICRO, f"output_dir={tmp_path / 'run'}", "algorithm.estimator=ppo",
                                             "critic.model=policy", "critic.lr=5e-3", even_length_reward(tmp_path)])
    main(config, log=lambda m: None)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "vf_loss" in metrics[0] and metrics[0]["lr_critic"] == 5e-3 and metrics[0]["lr"] == 1e-2
    one = load_file(str(tmp_path / "run" / "checkpoints" / "step-1" / "roles" / "critic" / "model.safetensors"))
    two = load_file(str(tmp_path / "run" / "checkpoints" / "step-2" / "roles" / "critic" / "model.safetensors"))
    assert any(not torch.equal(one[k], two[k]) for k in one)  # the critic trained between the checkpoints
    assert "value_head.linear.weight" in two and "body.embed_tokens.weight" in two


def test_critic_model_must_exist(tmp_path):
    from reasonrl.trainers.run import RunError, main

    config = load_config(TrainConfig, None, [*MICRO, f"output_dir={tmp_path / 'run'}", "algorithm.estimator=ppo",
                                             f"critic.model={tmp_path / 'nowhere'}"])
    with pytest.raises(RunError, match="model path not found"):
        main(config, log=lambda m: None)


def test_lora_with_the_vllm_engine_is_refused_naming_the_keys():
    with pytest.raises(ConfigError, match=r"lora.r > 0 needs engine=hf or engine=hf_fast"):
        load_config(TrainConfig, None, ["lora.r=8", "engine=vllm"])
