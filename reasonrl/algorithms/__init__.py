"""RL algorithm math as pure, registered torch functions (formulas: ALGORITHMS.md).

One signature per kind, selected by name in the config:

- advantage estimators — :func:`compute_advantages` (``AdvantageInputs`` → ``(advantages, returns)``);
- policy losses — :func:`compute_policy_loss` (``ppo_clip`` with decoupled ε and dual clip, ``vanilla_pg``);
- KL estimators — :func:`kl_penalty` (``k1``, ``k2``, ``k3``);
- loss aggregation — :func:`aggregate_loss` (the four modes);
- critic — :func:`compute_gae`, :func:`value_loss`;
- DAPO batch shaping — :func:`group_accuracy_filter`, :func:`overlong_penalty`,
  :func:`zero_variance_group_share`, :func:`kept_group_indices`.
"""
from reasonrl.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    AdvantageConfig,
    AdvantageInputs,
    compute_advantages,
    get_advantage_estimator,
    register_advantage_estimator,
)
from reasonrl.algorithms.aggregation import LOSS_AGG_MODES, aggregate_loss, masked_mean, masked_whiten
from reasonrl.algorithms.kl import get_kl_estimator, kl_estimator_names, kl_penalty, register_kl_estimator
from reasonrl.algorithms.policy_loss import (
    PolicyLossConfig,
    compute_policy_loss,
    get_policy_loss,
    policy_loss_names,
    register_policy_loss,
)
from reasonrl.algorithms.sampling_filters import (
    group_accuracy_filter,
    kept_group_indices,
    overlong_penalty,
    zero_variance_group_share,
)
from reasonrl.algorithms.value import compute_gae, discounted_returns, value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AdvantageConfig",
    "AdvantageInputs",
    "LOSS_AGG_MODES",
    "PolicyLossConfig",
    "aggregate_loss",
    "compute_advantages",
    "compute_gae",
    "compute_policy_loss",
    "discounted_returns",
    "get_advantage_estimator",
    "get_kl_estimator",
    "get_policy_loss",
    "group_accuracy_filter",
    "kept_group_indices",
    "kl_estimator_names",
    "kl_penalty",
    "masked_mean",
    "masked_whiten",
    "overlong_penalty",
    "policy_loss_names",
    "register_advantage_estimator",
    "register_kl_estimator",
    "register_policy_loss",
    "value_loss",
    "zero_variance_group_share",
]
