"""RL algorithm math as pure, registered torch functions (formulas: ALGORITHMS.md).

One signature per kind, each kind a :class:`reasonrl.registry.Registry`, selected by name in the
config (or ``path/to/file.py:name`` for a user's own):

- advantage estimators — :func:`compute_advantages` (``AdvantageInputs`` → ``(advantages, returns)``);
  each declares what it needs (:func:`estimator_needs`, :func:`is_token_level`);
- policy losses — :func:`compute_policy_loss` (``ppo_clip`` with decoupled ε and dual clip, ``vanilla_pg``);
- KL estimators — :func:`kl_penalty` (``k1``, ``k2``, ``k3``);
- loss aggregation — :func:`aggregate_loss` (the four modes);
- KL coefficient controllers — :func:`make_kl_controller` (``fixed``, ``adaptive``);
- learning-rate schedules — :func:`lr_at` (``constant``, ``linear``, ``cosine``, with warm-up);
- critic — :func:`compute_gae`, :func:`value_loss`;
- DAPO batch shaping — :func:`group_accuracy_filter`, :func:`overlong_penalty`,
  :func:`zero_variance_group_share`, :func:`kept_group_indices`.
"""
from reasonrl.algorithms.advantages import (
    ADVANTAGE_ESTIMATOR_REGISTRY,
    ADVANTAGE_ESTIMATORS,
    ESTIMATOR_NEEDS,
    AdvantageConfig,
    AdvantageInputs,
    compute_advantages,
    estimator_needs,
    get_advantage_estimator,
    is_token_level,
    register_advantage_estimator,
)
from reasonrl.algorithms.aggregation import (
    LOSS_AGG_MODES,
    LOSS_AGGREGATION_REGISTRY,
    aggregate_loss,
    masked_mean,
    masked_whiten,
    register_loss_aggregation,
)
from reasonrl.algorithms.kl import (
    KL_ESTIMATOR_REGISTRY,
    get_kl_estimator,
    kl_estimator_names,
    kl_penalty,
    register_kl_estimator,
)
from reasonrl.algorithms.kl_control import (
    KL_CONTROLLER_REGISTRY,
    AdaptiveKLController,
    FixedKLController,
    KLController,
    make_kl_controller,
    register_kl_controller,
)
from reasonrl.algorithms.policy_loss import (
    POLICY_LOSS_REGISTRY,
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
from reasonrl.algorithms.schedules import LR_SCHEDULE_REGISTRY, lr_at, register_lr_schedule
from reasonrl.algorithms.value import compute_gae, discounted_returns, value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "ADVANTAGE_ESTIMATOR_REGISTRY",
    "AdaptiveKLController",
    "AdvantageConfig",
    "AdvantageInputs",
    "ESTIMATOR_NEEDS",
    "FixedKLController",
    "KLController",
    "KL_CONTROLLER_REGISTRY",
    "KL_ESTIMATOR_REGISTRY",
    "LOSS_AGGREGATION_REGISTRY",
    "LOSS_AGG_MODES",
    "LR_SCHEDULE_REGISTRY",
    "POLICY_LOSS_REGISTRY",
    "PolicyLossConfig",
    "aggregate_loss",
    "compute_advantages",
    "compute_gae",
    "compute_policy_loss",
    "discounted_returns",
    "estimator_needs",
    "get_advantage_estimator",
    "get_kl_estimator",
    "get_policy_loss",
    "group_accuracy_filter",
    "is_token_level",
    "kept_group_indices",
    "kl_estimator_names",
    "kl_penalty",
    "lr_at",
    "make_kl_controller",
    "masked_mean",
    "masked_whiten",
    "overlong_penalty",
    "policy_loss_names",
    "register_advantage_estimator",
    "register_kl_controller",
    "register_kl_estimator",
    "register_loss_aggregation",
    "register_lr_schedule",
    "register_policy_loss",
    "value_loss",
    "zero_variance_group_share",
]
