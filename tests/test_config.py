"""Config loading: YAML + key=value overrides, nested keys, clear errors for unknown keys and bad values."""
from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest
import yaml

from reasonrl.config import (
    ConfigError,
    TrainConfig,
    config_hash,
    diff_configs,
    from_dict,
    load_config,
    to_dict,
    to_yaml,
    valid_keys,
)

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "reasonrl" / "configs" / "default.yaml"
EXAMPLES = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_and_frozen():
    config = TrainConfig()
    assert config.task == "arith" and config.algorithm.estimator == "grpo"
    with pytest.raises(FrozenInstanceError):
        config.seed = 3  # type: ignore[misc]


def test_embedded_default_yaml_loads():
    config = load_config(TrainConfig, DEFAULT_YAML)
    assert config.model == "tiny" and config.task == "arith"
    assert config.task_options == {"digits": 3, "operands": 2, "ops": "+"}


@pytest.mark.parametrize("name", ["gsm8k_qwen0.5b_vllm.yaml", "deepspeed_multigpu.yaml"])
def test_example_configs_load(name):
    path = EXAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    config = load_config(TrainConfig, path)
    assert config.model != "tiny"


def test_overrides_are_typed_and_nested(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("seed: 5\nalgorithm: {estimator: rloo, kl_coef: 0.01}\n")
    config = load_config(
        TrainConfig, path,
        ["seed=7", "optim.lr=1e-5", "algorithm.dynamic_sampling=true", "rollout.stop=</answer>,\\n\\n",
         "task_options.digits=4", "eval.samples=2"],
    )
    assert config.seed == 7  # the override wins over the file
    assert config.optim.lr == pytest.approx(1e-5) and isinstance(config.optim.lr, float)
    assert config.algorithm.estimator == "rloo" and config.algorithm.kl_coef == pytest.approx(0.01)
    assert config.algorithm.dynamic_sampling is True
    assert config.rollout.stop == ("</answer>", "\\n\\n")
    assert config.task_options == {"digits": 4}
    assert config.eval.samples == 2


def test_unknown_key_names_close_matches_and_valid_keys():
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, ["algorithm.estimater=rloo"])
    message = str(info.value)
    assert "algorithm.estimater" in message and "estimator" in message and "Valid keys here" in message
    with pytest.raises(ConfigError, match="Did you mean seed"):
        load_config(TrainConfig, None, ["sed=1"])


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("rollout:\n  group_sise: 4\n")
    with pytest.raises(ConfigError, match="rollout.group_sise.*group_size"):
        load_config(TrainConfig, path)


def test_bad_enum_lists_choices():
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, ["algorithm.estimator=ppo2"])
    assert "valid choices" in str(info.value) and "rloo" in str(info.value) and "remax" in str(info.value)
    with pytest.raises(ConfigError, match="engine.*hf, hf_fast, vllm"):
        load_config(TrainConfig, None, ["engine=tgi"])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("seed=one", "seed: expected an integer"),
        ("optim.lr=fast", "optim.lr: expected a number"),
        ("algorithm.dynamic_sampling=maybe", "expected true/false"),
        ("steps=0", "steps must be > 0"),
        ("rollout.top_p=1.5", "top_p"),
        ("novalue", "key=value"),
        ("algorithm=grpo", "is a section"),
        ("seed.x=1", "not a section"),
    ],
)
def test_bad_values(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(TrainConfig, None, [override])


def test_group_size_one_rejected_for_group_estimators():
    with pytest.raises(ConfigError, match="group_size >= 2"):
        load_config(TrainConfig, None, ["rollout.group_size=1"])
    config = load_config(TrainConfig, None, ["rollout.group_size=1", "algorithm.estimator=reinforce++"])
    assert config.estimator_name == "reinforce_plus_plus"


def test_kl_in_reward_needs_token_level_estimator():
    with pytest.raises(ConfigError, match="token-level"):
        load_config(TrainConfig, None, ["algorithm.kl_in=reward", "algorithm.kl_coef=0.1"])
    config = load_config(TrainConfig, None, ["algorithm.kl_in=reward", "algorithm.kl_coef=0.1", "algorithm.estimator=ppo"])
    assert config.estimator_name == "gae"


def test_yaml_round_trip_and_hash():
    config = load_config(TrainConfig, None, ["seed=3", "rollout.stop=</answer>", "algorithm.estimator=rloo"])
    again = from_dict(TrainConfig, yaml.safe_load(to_yaml(config)))
    assert again == config
    assert config_hash(again) == config_hash(config)
    assert diff_configs(config, TrainConfig()) == ["algorithm.estimator", "rollout.stop", "seed"]


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(TrainConfig, "/nonexistent/x.yaml")


def test_valid_keys_are_dotted():
    keys = valid_keys(TrainConfig)
    assert "algorithm.clip_high" in keys and "sft.target_accuracy" in keys and "seed" in keys
    assert to_dict(TrainConfig())["algorithm"]["estimator"] == "grpo"


def test_default_output_dir_is_deterministic():
    # Rerunning the same command must find the same directory (that is how resume works).
    assert TrainConfig(seed=2).resolved_output_dir() == Path("runs/arith-tiny-seed2")
    assert TrainConfig(model="/m/Qwen2.5-0.5B/", task="gsm8k").resolved_output_dir() == Path("runs/gsm8k-Qwen2.5-0.5B-seed0")


def test_world_size_checks_name_the_keys():
    config = load_config(TrainConfig, None, ["rollout.prompts_per_step=6", "optim.minibatch_size=12"])
    config.check_world_size(1)
    config.check_world_size(2)
    with pytest.raises(ConfigError, match="prompts_per_step=6 must be a multiple of the 4 ranks"):
        config.check_world_size(4)
    with pytest.raises(ConfigError, match="minibatch_size=12"):
        load_config(TrainConfig, None, ["rollout.prompts_per_step=8", "optim.minibatch_size=12"]).check_world_size(8)
    load_config(TrainConfig, None, ["algorithm.estimator=ppo"]).check_world_size(2)  # the value head is sharded too
    load_config(TrainConfig, None, ["algorithm.dynamic_sampling=true"]).check_world_size(2)
    with pytest.raises(ConfigError, match="engine=vllm with deepspeed.zero_stage=3"):
        load_config(TrainConfig, None, ["engine=vllm", "deepspeed.zero_stage=3"]).check_world_size(2)
    with pytest.raises(ConfigError, match="zero_stage must be one of 0, 1, 2, 3"):
        load_config(TrainConfig, None, ["deepspeed.zero_stage=4"])


def test_schedule_and_kl_controller_keys():
    defaults = TrainConfig()
    assert (defaults.optim.lr_schedule, defaults.optim.min_lr_ratio, defaults.sft.lr_schedule) == ("constant", 0.0, "constant")
    assert (defaults.algorithm.kl_controller, defaults.algorithm.kl_target, defaults.algorithm.kl_horizon) == ("fixed", 6.0, 10000)
    config = load_config(TrainConfig, None, [
        "optim.lr_schedule=cosine", "optim.min_lr_ratio=0.1", "sft.lr_schedule=linear", "sft.min_lr_ratio=0.5",
        "algorithm.kl_controller=adaptive", "algorithm.kl_coef=0.05", "algorithm.kl_target=3", "algorithm.kl_horizon=5000",
    ])
    assert (config.optim.lr_schedule, config.optim.min_lr_ratio) == ("cosine", 0.1)
    assert (config.sft.lr_schedule, config.sft.min_lr_ratio) == ("linear", 0.5)
    assert (config.algorithm.kl_controller, config.algorithm.kl_target, config.algorithm.kl_horizon) == ("adaptive", 3.0, 5000)
    keys = valid_keys(TrainConfig)
    for key in ("optim.lr_schedule", "optim.min_lr_ratio", "sft.lr_schedule", "sft.min_lr_ratio", "algorithm.kl_controller",
                "algorithm.kl_target", "algorithm.kl_horizon", "verifier_options", "rewards"):
        assert key in keys


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["algorithm.kl_controller=adaptive"], "kl_controller=adaptive needs algorithm.kl_coef > 0"),
        (["algorithm.kl_target=0"], "kl_target and kl_horizon must be > 0"),
        (["optim.min_lr_ratio=1.5"], "optim.min_lr_ratio must be in [0, 1]"),
        (["sft.min_lr_ratio=-0.1"], "sft.min_lr_ratio must be in [0, 1]"),
        (["optim.lr_schedule=exponential"], "optim.lr_schedule: unknown learning-rate schedule 'exponential'"),
    ],
)
def test_schedule_and_kl_controller_errors(overrides, fragment):
    with pytest.raises(ConfigError) as info:
        load_config(TrainConfig, None, overrides)
    assert fragment in str(info.value)
