"""Rewarders: the task verifier alone (as before), weighted sums of named components, verifier
options, user reward functions from a file, and what a policy could try to fake."""
from __future__ import annotations

import pytest
import yaml

from reasonrl.config import ConfigError, TrainConfig, from_dict, load_config, to_yaml
from reasonrl.envs.batch import verify_problems
from reasonrl.tasks import get_task
from reasonrl.trainers.rewards import (
    REWARDER_REGISTRY,
    RewardError,
    RewardOutput,
    VerifierRewarder,
    WeightedSum,
    build_rewarder,
)
from reasonrl.types import make_problem

# gsm8k problems whose gold answer is 18; the responses cover right/wrong × formatted/not.
GSM8K = get_task("gsm8k")
PROBLEMS = [make_problem(f"q{i}", "gsm8k", "Janet has 6 ducks, each lays 3 eggs. How many eggs?", "18") for i in range(5)]
RIGHT_FORMATTED = "<think>6 * 3 = 18</think><answer>18</answer>"
WRONG_FORMATTED = "<think>6 * 3 = 17</think><answer>17</answer>"
RIGHT_PLAIN = "6 * 3 = 18, so the answer is 18."
# A policy's trick: a formatted wrong answer with the right one after the tags, for a lenient
# extractor or a lenient format check to find.
HIDDEN_SECOND_ANSWER = "<think>6 * 3</think><answer>17</answer> 18"
EMPTY = ""
RESPONSES = [RIGHT_FORMATTED, WRONG_FORMATTED, RIGHT_PLAIN, HIDDEN_SECOND_ANSWER, EMPTY]


def config_with(*overrides: str) -> TrainConfig:
    # Verification in this process (verify_workers=0); the config's timeout still applies.
    return load_config(TrainConfig, None, ["task=gsm8k", *overrides])


def test_task_verifier_alone_gives_todays_verdict_rewards():
    config = config_with()
    rewarder = build_rewarder(config, GSM8K)
    assert isinstance(rewarder, VerifierRewarder)
    out = rewarder(PROBLEMS, RESPONSES)
    # What the trainer computed before rewarders: verify_problems with the run's workers and timeout.
    before = verify_problems(PROBLEMS, RESPONSES, workers=config.verify_workers, timeout=config.verify_timeout)
    assert out.rewards == [v.reward for v in before] == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert [v.correct for v in out.verdicts] == [v.correct for v in before]
    assert out.components == {"task": out.rewards}


def test_weighted_sum_of_task_and_format_is_exact():
    config = config_with("rewards=[{name: task}, {name: format, weight: 0.5}]")
    out = build_rewarder(config, GSM8K)(PROBLEMS, RESPONSES)
    assert out.components == {"task": [1.0, 0.0, 1.0, 0.0, 0.0], "format": [1.0, 1.0, 0.0, 0.0, 0.0]}
    assert out.rewards == [1.5, 0.5, 1.0, 0.0, 0.0]  # Σ w·r, exactly
    # Correctness stays the task verifier's: the format reward never makes an answer correct.
    assert [v.correct for v in out.verdicts] == [True, False, True, False, False]
    # A formatted wrong answer earns the format weight and nothing more, and with these weights
    # the best wrong response scores below the worst right one.
    best_wrong = max(r for r, v in zip(out.rewards, out.verdicts) if not v.correct)
    worst_right = min(r for r, v in zip(out.rewards, out.verdicts) if v.correct)
    assert best_wrong == 0.5 < worst_right == 1.0


def test_weights_can_rank_a_wrong_answer_first_only_when_the_user_says_so():
    # format weight 2 > task weight 1: now the user has chosen that a formatted wrong answer (2.0)
    # beats a plain right one (1.0). The arithmetic is exactly what the weights say.
    config = config_with("rewards=[{name: task, weight: 1}, {name: format, weight: 2}]")
    out = build_rewarder(config, GSM8K)(PROBLEMS, RESPONSES)
    assert out.rewards == [3.0, 2.0, 1.0, 0.0, 0.0]


def test_task_verdicts_are_kept_when_task_is_not_a_component():
    config = config_with("rewards=[{name: format}]")
    rewarder = build_rewarder(config, GSM8K)
    out = rewarder(PROBLEMS, RESPONSES)
    assert out.rewards == [1.0, 1.0, 0.0, 0.0, 0.0] and out.components == {"format": out.rewards}
    assert [v.correct for v in out.verdicts] == [True, False, True, False, False]


def test_component_options_reach_their_verifier():
    # Logic-RL's lenient format check ignores text outside the tags: the hidden answer then
    # passes the format rule (but still not the task).
    config = config_with("rewards=[{name: task}, {name: format, weight: 0.5, options: {allow_text_outside: true}}]")
    out = build_rewarder(config, GSM8K)(PROBLEMS, RESPONSES)
    assert out.components["format"] == [1.0, 1.0, 0.0, 1.0, 0.0]
    assert out.rewards == [1.5, 0.5, 1.0, 0.5, 0.0]


def test_verifier_options_reach_the_task_verifier():
    kk = get_task("kk")
    generator = kk.make_generator()
    problems = [generator.generate(seed) for seed in range(3)]
    plain = [generator.oracle_response(p) for p in problems]  # right, with no think/answer format
    answer_part = [text[text.index("<answer>"):] for text in plain]
    formatted = [f"<think>I checked every statement.</think>{answer}" for answer in answer_part]
    responses = plain + formatted
    rows = problems + problems
    assert build_rewarder(config_with("task=kk"), kk)(rows, responses).rewards == [1.0] * 6
    # format=logic-rl (verifiers/format_reward.py): +1 format, +2 right answer; a broken format
    # scores -1 and its answer counts as unparsed (-2).
    out = build_rewarder(config_with("task=kk", "verifier_options.format=logic-rl"), kk)(rows, responses)
    assert out.rewards == [-3.0] * 3 + [3.0] * 3
    assert [v.correct for v in out.verdicts] == [False] * 3 + [True] * 3


def test_bad_verifier_options_fail_before_any_rollout():
    with pytest.raises(ConfigError, match="verifier_options .*strictly.*gsm8k"):
        build_rewarder(config_with("verifier_options.strictly=true"), GSM8K)
    with pytest.raises(ConfigError, match="reward component 'format'.*not accepted"):
        build_rewarder(config_with("rewards=[{name: format, options: {strict: true}}]"), GSM8K)


# ----------------------------------------------------------------------------- the config


def test_rewards_from_yaml_and_from_the_command_line(tmp_path):
    expected = ({"name": "task", "weight": 1.0, "options": {}}, {"name": "format", "weight": 0.5, "options": {}})
    cli = load_config(TrainConfig, None, ["rewards=[{name: task}, {name: format, weight: 0.5}]"])
    assert cli.rewards == expected
    path = tmp_path / "c.yaml"
    path.write_text("rewards:\n  - name: task\n  - {name: format, weight: 0.5}\nverifier_options: {format: logic-rl}\n")
    from_yaml = load_config(TrainConfig, path)
    assert from_yaml.rewards == expected and from_yaml.verifier_options == {"format": "logic-rl"}
    # Shorthands: names alone (weight 1), and one mapping.
    assert load_config(TrainConfig, None, ["rewards=task,format"]).rewards == (
        {"name": "task", "weight": 1.0, "options": {}}, {"name": "format", "weight": 1.0, "options": {}}
    )
    assert load_config(TrainConfig, None, ["rewards={name: format, weight: 2}"]).rewards == (
        {"name": "format", "weight": 2.0, "options": {}},
    )
    # The saved config.yaml spells the defaults out and loads back to the same config.
    assert from_dict(TrainConfig, yaml.safe_load(to_yaml(cli))) == cli


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("[{name: formt}]", r"rewards\[0\]\.name: unknown reward component 'formt' \(did you mean format\?\); "
                            r"valid names: task .*verifiers .*format.*gsm8k.* or path/to/file.py:name"),
        ("[{name: task}, {name: format, weight: high}]", r"rewards\[1\]\.weight: a weight must be a finite number, got 'high'"),
        ("[{name: format, weight: true}]", r"rewards\[0\]\.weight: a weight must be a finite number"),
        ("[{name: format, weight: .nan}]", r"rewards\[0\]\.weight: a weight must be a finite number"),
        ("[{name: format, wieght: 2}]", r"rewards\[0\]: unknown key\(s\) wieght; valid keys: name, weight, options"),
        ("[{weight: 2}]", r"rewards\[0\]\.name: expected a component name"),
        ("[{name: task, options: {strict: true}}]", r"rewards\[0\]\.options: the task verifier's options go in verifier_options"),
        ("[{name: format}, {name: format, weight: 2}]", r"rewards: component\(s\) format appear more than once"),
        ("[3]", r"rewards\[0\]: expected a mapping"),
    ],
)
def test_bad_reward_components_name_the_entry(value, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_config(TrainConfig, None, [f"rewards={value}"])


# ----------------------------------------------------------------------------- user reward functions

USER_REWARDS = '''
import math
from reasonrl.trainers.rewards import RewardOutput, register_rewarder


def brevity(problems, responses, per_char=0.01):
    return [-per_char * len(r) for r in responses]


def broken(problems, responses, value="nan"):
    return [float(value)] + [0.0] * (len(responses) - 1)


def wrong_length(problems, responses):
    return [0.0]


@register_rewarder("test_says_18")
class Says18:
    """A registered rewarder class, built with the config, the task and the component's options."""

    def __init__(self, config, task, bonus=1.0):
        self.bonus = bonus

    def __call__(self, problems, responses):
        rewards = [self.bonus if "18" in r else 0.0 for r in responses]
        return RewardOutput(verdicts=[], rewards=rewards, components={})
'''


@pytest.fixture
def user_rewards(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(USER_REWARDS)
    before = set(REWARDER_REGISTRY.names())
    yield path
    for name in set(REWARDER_REGISTRY.names()) - before:
        REWARDER_REGISTRY.unregister(name)


def test_user_reward_function_and_rewarder_from_a_file(user_rewards):
    config = config_with(
        f"rewards=[{{name: task}}, {{name: '{user_rewards}:brevity', weight: 0.5, options: {{per_char: 0.25}}}},"
        f" {{name: '{user_rewards}:Says18', weight: 2, options: {{bonus: 0.75}}}}]"
    )
    out = build_rewarder(config, GSM8K)(PROBLEMS, RESPONSES)
    brevity = [-0.25 * len(r) for r in RESPONSES]
    says = [0.75 if "18" in r else 0.0 for r in RESPONSES]
    assert out.components == {"task": [1.0, 0.0, 1.0, 0.0, 0.0], "brevity": brevity, "Says18": says}
    assert out.rewards == [t + 0.5 * b + 2 * s for t, b, s in zip(out.components["task"], brevity, says)]
    assert REWARDER_REGISTRY.resolve(f"{user_rewards}:Says18") == "test_says_18"  # found under its registered name


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_user_rewards_stop_the_run(user_rewards, value):
    config = config_with(f"rewards=[{{name: task}}, {{name: '{user_rewards}:broken', options: {{value: '{value}'}}}}]")
    rewarder = build_rewarder(config, GSM8K)
    with pytest.raises(RewardError, match=f"reward component 'broken' returned {value} for response 0; a reward must be a finite number"):
        rewarder(PROBLEMS, RESPONSES)


def test_a_reward_function_must_answer_every_response(user_rewards):
    rewarder = build_rewarder(config_with(f"rewards=[{{name: '{user_rewards}:wrong_length'}}]"), GSM8K)
    with pytest.raises(RewardError, match="'wrong_length' returned 1 rewards for 5 responses"):
        rewarder(PROBLEMS, RESPONSES)


def test_weighted_sum_runs_the_task_verifier_once():
    calls = []

    class CountingTask:
        def __call__(self, problems, responses):
            calls.append(len(responses))
            return RewardOutput(verdicts=[], rewards=[1.0] * len(responses), components={})

    primary = CountingTask()
    out = WeightedSum([("task", 1.0, primary), ("again", 0.25, lambda p, r: RewardOutput([], [2.0] * len(r)))], primary)(
        PROBLEMS, RESPONSES
    )
    assert calls == [5] and out.rewards == [1.5] * 5
