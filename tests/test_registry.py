"""Registries decide: one generic Registry for every algorithm kind, names validated by the config
against it, estimators that declare what they need, and user files selected as ``file.py:name``."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from reasonrl import algorithms
from reasonrl.algorithms import (
    ADVANTAGE_ESTIMATOR_REGISTRY,
    AdvantageConfig,
    AdvantageInputs,
    PolicyLossConfig,
    compute_advantages,
    compute_policy_loss,
    estimator_needs,
    get_advantage_estimator,
    is_token_level,
    register_advantage_estimator,
)
from reasonrl.config import ConfigError, TrainConfig, load_config
from reasonrl.registry import Registry, import_module_or_file

ALL_REGISTRIES = (
    algorithms.ADVANTAGE_ESTIMATOR_REGISTRY,
    algorithms.POLICY_LOSS_REGISTRY,
    algorithms.KL_ESTIMATOR_REGISTRY,
    algorithms.LOSS_AGGREGATION_REGISTRY,
    algorithms.KL_CONTROLLER_REGISTRY,
    algorithms.LR_SCHEDULE_REGISTRY,
)

# A user's file, as the docs tell users to write one: an estimator (a batch-mean baseline that
# needs no groups) and a policy loss, each registered with the ordinary decorator.
USER_ALGORITHMS = '''
import torch
from reasonrl.algorithms import register_advantage_estimator, register_policy_loss


@register_advantage_estimator("mean_baseline")
def my_est(inputs, config):
    """A_i = r_i - mean of the batch's rewards, on every response token."""
    rewards = inputs.rewards.double()
    scores = rewards - rewards.mean()
    advantages = scores[:, None] * inputs.response_mask.to(scores.dtype)
    return advantages, advantages.clone()


@register_policy_loss("plain_reinforce")
def my_loss(logprobs, old_logprobs, advantages, mask, config):
    return -advantages * logprobs, {}


def unregistered_est(inputs, config):
    advantages = torch.ones_like(inputs.response_mask, dtype=torch.float32)
    return advantages, advantages
'''


def write_user_algorithms(folder: Path) -> Path:
    """Write the user's algorithm file into ``folder``; returns its path.

    The end-to-end check of the rewired trainer can use it: a YAML with
    ``algorithm: {estimator: <path>:my_est, policy_loss: <path>:my_loss}`` (plus the tiny-model
    settings of tests/test_rl_trainer.py) must train, and its metrics must show the estimator ran
    (e.g. the advantages of a step equal r - mean(r) of that step).
    """
    path = folder / "my_algorithms.py"
    path.write_text(USER_ALGORITHMS)
    return path


@pytest.fixture
def clean_registries():
    """Names registered during a test (a user's file) are removed afterwards, so the next test
    can load its own copy of the file without a duplicate-name error."""
    before = [set(registry.names()) for registry in ALL_REGISTRIES]
    yield
    for registry, names in zip(ALL_REGISTRIES, before):
        for name in set(registry.names()) - names:
            registry.unregister(name)


# ----------------------------------------------------------------------------- the generic Registry


def test_registry_register_get_metadata_and_aliases():
    registry: Registry = Registry("widget", aliases={"w": "wide"}, defaults={"size": 1})

    @registry.register("wide", size=3)
    def wide():
        return "wide"

    registry.add("narrow", lambda: "narrow")
    assert registry.get("wide") is wide and registry.get("w") is wide
    assert registry.resolve("w") == "wide" and "w" in registry and "nothing" not in registry
    assert registry.metadata("wide")["size"] == 3 and registry.metadata("narrow")["size"] == 1  # the default
    with pytest.raises(TypeError):
        registry.metadata("wide")["size"] = 4  # type: ignore[index]  # read-only
    assert registry.names() == ["wide", "narrow"]
    live = registry.live_names()
    registry.add("tall", object())
    assert list(live) == ["wide", "narrow", "tall"]  # follows later registrations
    with pytest.raises(ValueError, match="widget 'wide' is already registered"):
        registry.add("wide", object())
    with pytest.raises(ValueError, match="already registered"):
        registry.add("w", object())  # an alias is taken too


def test_unknown_name_lists_the_registered_names_and_close_matches():
    registry: Registry = Registry("widget")
    for name in ("wide", "narrow"):
        registry.add(name, object())
    with pytest.raises(ConfigError) as info:
        registry.get("wdie")
    message = str(info.value)
    assert "unknown widget 'wdie'" in message and "did you mean wide" in message
    assert "valid choices: wide, narrow or path/to/file.py:name" in message
    assert isinstance(info.value, ValueError)  # callers that catch ValueError keep working


def test_old_public_names_follow_the_registries():
    assert list(algorithms.ADVANTAGE_ESTIMATORS) == ADVANTAGE_ESTIMATOR_REGISTRY.names()
    assert "reinforce_plus_plus" in algorithms.ADVANTAGE_ESTIMATORS
    assert algorithms.policy_loss_names() == ["ppo_clip", "vanilla_pg"]
    assert algorithms.kl_estimator_names() == ["k1", "k2", "k3", "kl", "low_var_kl", "mse"]
    assert tuple(algorithms.LOSS_AGG_MODES) == (
        "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"
    )
    # Aliases resolve through the registries, not only in the config.
    assert get_advantage_estimator("ppo") is get_advantage_estimator("gae")
    assert algorithms.get_kl_estimator("low_var_kl") is algorithms.get_kl_estimator("k3")


# ----------------------------------------------------------------------------- estimators declare needs


def test_estimators_declare_what_they_need():
    assert estimator_needs("gae") == {"critic"}
    assert estimator_needs("ppo") == {"critic"}  # alias
    assert estimator_needs("remax") == {"greedy_baseline"}
    for name in ("grpo", "dr_grpo", "rloo"):
        assert estimator_needs(name) == {"groups"}
    assert estimator_needs("reinforce_plus_plus") == frozenset()
    assert [name for name in ADVANTAGE_ESTIMATOR_REGISTRY.names() if is_token_level(name)] == [
        "reinforce_plus_plus", "reinforce_plus_plus_baseline", "remax", "gae"
    ]
    with pytest.raises(ValueError, match="unknown needs.*'value_model'.*critic, greedy_baseline, groups"):
        register_advantage_estimator("needs_typo", needs=("value_model",))
    assert "needs_typo" not in ADVANTAGE_ESTIMATOR_REGISTRY


def test_config_checks_ask_the_registry_not_a_list_of_names(clean_registries):
    """A user's estimator that declares ``groups`` gets the group-size check; one that declares
    ``token_level`` may take KL in the reward. Neither name appears anywhere in config.py."""

    @register_advantage_estimator("test_group_needing", needs=("groups",))
    def group_needing(inputs, config):  # pragma: no cover - never run
        raise AssertionError

    @register_advantage_estimator("test_token_level", token_level=True)
    def token_level(inputs, config):  # pragma: no cover - never run
        raise AssertionError

    with pytest.raises(ConfigError, match="algorithm.estimator=test_group_needing needs rollout.group_size >= 2"):
        load_config(TrainConfig, None, ["algorithm.estimator=test_group_needing", "rollout.group_size=1"])
    load_config(TrainConfig, None, ["algorithm.estimator=test_token_level", "rollout.group_size=1"])
    config = load_config(TrainConfig, None, ["algorithm.estimator=test_token_level", "algorithm.kl_in=reward",
                                             "algorithm.kl_coef=0.1"])
    assert config.estimator_name == "test_token_level"
    with pytest.raises(ConfigError, match=r"token-level estimator \(reinforce_plus_plus, .*test_token_level\)"):
        load_config(TrainConfig, None, ["algorithm.estimator=test_group_needing", "algorithm.kl_in=reward",
                                        "algorithm.kl_coef=0.1"])


# ----------------------------------------------------------------------------- user files


def test_user_file_estimator_and_loss_from_yaml(tmp_path, clean_registries):
    spec = write_user_algorithms(tmp_path)
    yaml_path = tmp_path / "config.yaml"
    yaml_path.write_text(f"algorithm:\n  estimator: {spec}:my_est\n  policy_loss: {spec}:my_loss\n")
    config = load_config(TrainConfig, yaml_path)
    assert config.algorithm.estimator == f"{spec}:my_est"  # the config keeps what the user wrote
    # The spec resolves to the name the file registered, which the registry can find anywhere.
    assert config.estimator_name == "mean_baseline"
    assert estimator_needs(config.estimator_name) == frozenset() and not is_token_level(config.estimator_name)
    estimator = get_advantage_estimator(config.estimator_name)
    assert estimator is get_advantage_estimator(config.algorithm.estimator)

    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    inputs = AdvantageInputs(rewards, mask, torch.tensor([0, 0, 1, 1]))
    advantages, _ = compute_advantages(inputs, AdvantageConfig(config.estimator_name))
    assert advantages.tolist() == [[0.5, 0.5], [-0.5, 0.0], [-0.5, -0.5], [0.0, 0.0]]

    logprobs = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss, metrics = compute_policy_loss(
        logprobs, logprobs.detach(), torch.tensor([[1.0, 1.0]]), torch.ones(1, 2),
        PolicyLossConfig(name=config.algorithm.policy_loss),
    )
    assert loss.item() == pytest.approx(1.5) and metrics["pg_loss"] == pytest.approx(1.5)  # -(A * logp), token mean


def test_user_file_imported_once_whatever_the_spelling(tmp_path, clean_registries, monkeypatch):
    spec = write_user_algorithms(tmp_path)
    monkeypatch.chdir(tmp_path)
    first = get_advantage_estimator(f"{spec}:my_est")
    # A relative path to the same file: the same module, so no second (duplicate) registration.
    assert get_advantage_estimator("my_algorithms.py:my_est") is first
    assert import_module_or_file("my_algorithms.py") is import_module_or_file(str(spec))


def test_user_file_object_defined_but_not_registered(tmp_path, clean_registries):
    spec = write_user_algorithms(tmp_path)
    name = f"{spec}:unregistered_est"
    config = load_config(TrainConfig, None, [f"algorithm.estimator={name}"])
    # Registered under the spec itself, with the default metadata (no needs, outcome-level).
    assert config.estimator_name == name
    assert estimator_needs(name) == frozenset() and not is_token_level(name)
    inputs = AdvantageInputs(torch.zeros(1), torch.tensor([[1.0, 0.0]]), torch.zeros(1, dtype=torch.long))
    assert compute_advantages(inputs, AdvantageConfig(config.estimator_name))[0].tolist() == [[1.0, 0.0]]


def test_bad_names_and_specs_fail_with_the_key_and_the_choices(tmp_path, clean_registries):
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, ["algorithm.estimator=grpoo"])
    message = str(info.value)
    assert message.startswith("algorithm.estimator: unknown advantage estimator 'grpoo'")
    assert "grpo, dr_grpo, rloo, reinforce_plus_plus" in message and "or path/to/file.py:name" in message
    for key, value, fragment in [
        ("algorithm.policy_loss", "ppo", "ppo_clip, vanilla_pg"),
        ("algorithm.kl_estimator", "k4", "k1, k2, k3 (aliases: kl, mse, low_var_kl)"),
        ("algorithm.loss_agg_mode", "mean", "token-mean, seq-mean-token-mean"),
        ("algorithm.kl_controller", "pid", "fixed, adaptive"),
        ("optim.lr_schedule", "cosin", "did you mean cosine"),
        ("sft.lr_schedule", "step", "constant, linear, cosine"),
    ]:
        with pytest.raises(ConfigError, match=f"^{key}: .*{value}.*{fragment}".replace("(", r"\(").replace(")", r"\)")):
            load_config(TrainConfig, None, [f"{key}={value}"])
    spec = write_user_algorithms(tmp_path)
    with pytest.raises(ConfigError, match="has no 'nope', neither an attribute nor a registered advantage estimator"):
        load_config(TrainConfig, None, [f"algorithm.estimator={spec}:nope"])
    with pytest.raises(ConfigError, match="algorithm.estimator: .*missing.py' does not exist"):
        load_config(TrainConfig, None, [f"algorithm.estimator={tmp_path / 'missing.py'}:my_est"])
    # A policy loss's spec cannot pick the estimator the same file registered (kinds are separate).
    with pytest.raises(ConfigError, match="algorithm.policy_loss: unknown policy loss"):
        load_config(TrainConfig, None, [f"algorithm.policy_loss={spec}:mean_baseline"])
