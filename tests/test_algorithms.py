"""Algorithm math against the formulas (hand-computed cases) and against slow, obvious loop
implementations on random inputs (hypothesis), plus the edge cases: single-member groups,
zero-variance groups, all-masked rows, masks with holes."""
from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reasonrl.algorithms import (
    ADVANTAGE_ESTIMATORS,
    LOSS_AGG_MODES,
    AdaptiveKLController,
    AdvantageConfig,
    AdvantageInputs,
    PolicyLossConfig,
    aggregate_loss,
    compute_advantages,
    compute_gae,
    compute_policy_loss,
    get_advantage_estimator,
    group_accuracy_filter,
    kept_group_indices,
    kl_penalty,
    lr_at,
    make_kl_controller,
    overlong_penalty,
    register_advantage_estimator,
    value_loss,
    zero_variance_group_share,
)

SETTINGS = settings(max_examples=40, deadline=None)
EPS = 1e-6


# ----------------------------------------------------------------------------- random batches


def make_batch(seed: int, batch: int, length: int, num_groups: int, holes: bool = False, binary: bool = False):
    """A random batch in float64: rewards, mask (random lengths incl. 0, optional holes), groups, log-probs, values."""
    gen = torch.Generator().manual_seed(seed)
    if binary:
        rewards = torch.randint(0, 2, (batch,), generator=gen).double()
    else:
        # Few distinct values so that zero-variance groups really occur.
        rewards = torch.randint(0, 3, (batch,), generator=gen).double() * 0.5
    lengths = torch.randint(0, length + 1, (batch,), generator=gen)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).double()
    if holes:
        mask = mask * (torch.rand(batch, length, generator=gen) > 0.3).double()
    groups = torch.randint(0, num_groups, (batch,), generator=gen) * 7 + 3  # arbitrary, non-contiguous ids
    old_lp = -torch.rand(batch, length, generator=gen, dtype=torch.float64) * 3
    ref_lp = -torch.rand(batch, length, generator=gen, dtype=torch.float64) * 3
    values = torch.randn(batch, length, generator=gen, dtype=torch.float64)
    baseline = torch.randint(0, 2, (batch,), generator=gen).double()
    dense = torch.randn(batch, length, generator=gen, dtype=torch.float64) * 0.1
    return AdvantageInputs(rewards, mask, groups, old_lp, ref_lp, values, baseline, None), dense


batches = st.builds(
    lambda seed, b, t, g, holes: (seed, b, t, g, holes),
    st.integers(0, 10_000), st.integers(1, 10), st.integers(1, 7), st.integers(1, 4), st.booleans(),
)


# ----------------------------------------------------------------------------- slow references


def members(group_ids, i):
    return [j for j in range(len(group_ids)) if group_ids[j] == group_ids[i]]


def sample_std(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def slow_grpo(inp: AdvantageInputs, norm_by_std=True, std_scope="group"):
    r, g, mask = inp.rewards.tolist(), inp.group_ids.tolist(), inp.response_mask.tolist()
    out = []
    for i in range(len(r)):
        group = [r[j] for j in members(g, i)]
        if len(group) == 1:
            a = 0.0
        else:
            a = r[i] - sum(group) / len(group)
            if norm_by_std:
                std = sample_std(group) if std_scope == "group" else sample_std(r)
                a = a / (std + EPS)
        out.append([a * m for m in mask[i]])
    return torch.tensor(out, dtype=torch.float64)


def slow_rloo(inp: AdvantageInputs):
    r, g, mask = inp.rewards.tolist(), inp.group_ids.tolist(), inp.response_mask.tolist()
    out = []
    for i in range(len(r)):
        others = [r[j] for j in members(g, i) if j != i]
        a = r[i] - sum(others) / len(others) if others else 0.0
        out.append([a * m for m in mask[i]])
    return torch.tensor(out, dtype=torch.float64)


def slow_token_rewards(inp: AdvantageInputs, outcome, beta, estimator, dense):
    rows = []
    for i in range(len(outcome)):
        row = []
        mask = inp.response_mask[i].tolist()
        valid = [t for t, m in enumerate(mask) if m]
        for t in range(len(mask)):
            value = 0.0
            if mask[t]:
                delta = inp.old_logprobs[i, t].item() - inp.ref_logprobs[i, t].item()
                k = {"k1": delta, "k2": 0.5 * delta * delta, "k3": min(max(math.exp(-delta) + delta - 1, -10), 10)}[estimator]
                value -= beta * k
                if dense is not None:
                    value += dense[i, t].item()
                if t == valid[-1]:
                    value += outcome[i]
            row.append(value)
        rows.append(row)
    return rows


def slow_discounted(rows, mask, gamma):
    out = []
    for row, m in zip(rows, mask.tolist()):
        valid = [t for t, x in enumerate(m) if x]
        ret = [0.0] * len(row)
        for k, t in enumerate(valid):
            ret[t] = sum(gamma ** (n - k) * row[valid[n]] for n in range(k, len(valid)))
        out.append(ret)
    return out


def slow_whiten(rows, mask):
    flat = [v for row, m in zip(rows, mask.tolist()) for v, x in zip(row, m) if x]
    if not flat:
        return [[0.0] * len(r) for r in rows]
    mean = sum(flat) / len(flat)
    std = sample_std(flat)
    return [[(v - mean) / (std + EPS) if x else 0.0 for v, x in zip(row, m)] for row, m in zip(rows, mask.tolist())]


def slow_gae(rows, values, mask, gamma, lam):
    adv_out, ret_out = [], []
    for row, v, m in zip(rows, values.tolist(), mask.tolist()):
        valid = [t for t, x in enumerate(m) if x]
        adv = [0.0] * len(row)
        ret = [0.0] * len(row)
        for k, t in enumerate(valid):  # A_t = Σ_l (γλ)^l δ_{t+l}, straight from the definition
            total = 0.0
            for n in range(k, len(valid)):
                nxt = v[valid[n + 1]] if n + 1 < len(valid) else 0.0
                delta = row[valid[n]] + gamma * nxt - v[valid[n]]
                total += (gamma * lam) ** (n - k) * delta
            adv[t] = total
            ret[t] = total + v[t]
        adv_out.append(adv)
        ret_out.append(ret)
    return adv_out, ret_out


def assert_close(actual, expected, atol=1e-8):
    expected = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), expected, atol=atol, rtol=1e-7)


# ----------------------------------------------------------------------------- estimators vs loops


@SETTINGS
@given(batches, st.booleans(), st.sampled_from(["group", "batch"]))
def test_grpo_matches_loop(spec, norm_by_std, scope):
    inp, _ = make_batch(*spec)
    adv, ret = compute_advantages(inp, AdvantageConfig("grpo", norm_by_std=norm_by_std, std_scope=scope))
    assert_close(adv, slow_grpo(inp, norm_by_std, scope))
    assert_close(ret, adv)
    dr, _ = compute_advantages(inp, AdvantageConfig("dr_grpo"))
    assert_close(dr, slow_grpo(inp, norm_by_std=False))


@SETTINGS
@given(batches)
def test_rloo_matches_loop(spec):
    inp, _ = make_batch(*spec)
    adv, _ = compute_advantages(inp, AdvantageConfig("rloo"))
    assert_close(adv, slow_rloo(inp))


@SETTINGS
@given(batches, st.sampled_from([0.0, 0.05]), st.sampled_from(["k1", "k2", "k3"]), st.sampled_from([1.0, 0.9]), st.booleans())
def test_reinforce_plus_plus_matches_loop(spec, beta, estimator, gamma, with_dense):
    inp, dense = make_batch(*spec)
    inp.token_rewards = dense if with_dense else None
    config = AdvantageConfig("reinforce_plus_plus", kl_coef_in_reward=beta, kl_estimator=estimator, gamma=gamma)
    adv, ret = compute_advantages(inp, config)
    rows = slow_token_rewards(inp, inp.rewards.tolist(), beta, estimator, inp.token_rewards)
    returns = slow_discounted(rows, inp.response_mask, gamma)
    assert_close(ret, returns)
    assert_close(adv, slow_whiten(returns, inp.response_mask), atol=1e-6)


@SETTINGS
@given(batches, st.sampled_from([0.0, 0.1]))
def test_reinforce_plus_plus_baseline_matches_loop(spec, beta):
    inp, _ = make_batch(*spec)
    adv, ret = compute_advantages(inp, AdvantageConfig("reinforce_plus_plus_baseline", kl_coef_in_reward=beta))
    g, r = inp.group_ids.tolist(), inp.rewards.tolist()
    outcome = [r[i] - statistics.mean(r[j] for j in members(g, i)) for i in range(len(r))]
    returns = slow_discounted(slow_token_rewards(inp, outcome, beta, "k1", None), inp.response_mask, 1.0)
    assert_close(ret, returns)
    assert_close(adv, slow_whiten(returns, inp.response_mask), atol=1e-6)


@SETTINGS
@given(batches, st.sampled_from([0.0, 0.1]))
def test_remax_matches_loop(spec, beta):
    inp, _ = make_batch(*spec)
    adv, ret = compute_advantages(inp, AdvantageConfig("remax", kl_coef_in_reward=beta))
    returns = slow_discounted(slow_token_rewards(inp, inp.rewards.tolist(), beta, "k1", None), inp.response_mask, 1.0)
    b = inp.baseline_rewards.tolist()
    expected = [[(v - b[i]) * m for v, m in zip(row, inp.response_mask[i].tolist())] for i, row in enumerate(returns)]
    assert_close(ret, returns)
    assert_close(adv, expected)


@SETTINGS
@given(batches, st.sampled_from([1.0, 0.9]), st.sampled_from([0.95, 1.0, 0.0]), st.sampled_from([0.0, 0.1]))
def test_gae_matches_loop(spec, gamma, lam, beta):
    inp, _ = make_batch(*spec)
    rows = slow_token_rewards(inp, inp.rewards.tolist(), beta, "k1", None)
    expected_adv, expected_ret = slow_gae(rows, inp.values, inp.response_mask, gamma, lam)
    raw = AdvantageConfig("gae", gamma=gamma, lam=lam, kl_coef_in_reward=beta, whiten_gae_advantages=False)
    adv, ret = compute_advantages(inp, raw)
    assert_close(adv, expected_adv)
    assert_close(ret, expected_ret)
    whitened, ret2 = compute_advantages(inp, AdvantageConfig("gae", gamma=gamma, lam=lam, kl_coef_in_reward=beta))
    assert_close(whitened, slow_whiten(expected_adv, inp.response_mask), atol=1e-6)
    assert_close(ret2, expected_ret)


# ----------------------------------------------------------------------------- formulas by hand


def test_grpo_hand_computed():
    # One group of 4 with rewards 1,0,0,1: mean 0.5, sample std sqrt(1/3).
    mask = torch.ones(4, 2)
    inp = AdvantageInputs(torch.tensor([1.0, 0.0, 0.0, 1.0]), mask, torch.zeros(4, dtype=torch.long))
    adv, _ = compute_advantages(inp, AdvantageConfig("grpo"))
    expected = 0.5 / (math.sqrt(1 / 3) + EPS)
    assert adv[0, 0].item() == pytest.approx(expected)
    assert adv[1, 1].item() == pytest.approx(-expected)
    adv, _ = compute_advantages(inp, AdvantageConfig("grpo", norm_by_std=False))
    assert adv[:, 0].tolist() == [0.5, -0.5, -0.5, 0.5]


def test_rloo_hand_computed():
    inp = AdvantageInputs(torch.tensor([1.0, 0.0, 0.0]), torch.ones(3, 1), torch.zeros(3, dtype=torch.long))
    adv, _ = compute_advantages(inp, AdvantageConfig("rloo"))
    assert adv[:, 0].tolist() == pytest.approx([1.0, -0.5, -0.5])


def test_reinforce_plus_plus_outcome_is_broadcast_backwards_and_batch_normalised():
    # γ = 1 and no KL: every token of a response has return r; normalisation is over all tokens
    # of the batch (not per group): two groups with very different reward levels are compared.
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    inp = AdvantageInputs(torch.tensor([1.0, 3.0]), mask, torch.tensor([0, 1]))
    adv, ret = compute_advantages(inp, AdvantageConfig("reinforce_plus_plus"))
    assert ret.tolist() == [[1.0, 1.0, 0.0], [3.0, 3.0, 3.0]]
    tokens = torch.tensor([1.0, 1.0, 3.0, 3.0, 3.0])
    expected = (tokens - tokens.mean()) / (tokens.std() + EPS)
    assert adv[mask.bool()].tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    # Baseline variant: each response alone in its group → outcome − own mean = 0 everywhere.
    adv, ret = compute_advantages(inp, AdvantageConfig("reinforce_plus_plus_baseline"))
    assert torch.count_nonzero(adv) == 0 and torch.count_nonzero(ret) == 0


def test_remax_hand_computed():
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    inp = AdvantageInputs(torch.tensor([1.0]), mask, torch.tensor([0]), baseline_rewards=torch.tensor([0.25]))
    adv, ret = compute_advantages(inp, AdvantageConfig("remax"))
    assert ret.tolist() == [[1.0, 1.0, 1.0]]
    assert adv.tolist() == [[0.75, 0.75, 0.75]]


def test_gae_hand_computed():
    # Two tokens, reward 1 at the end, V = [0.5, 0.2], γ = 1, λ = 0.5:
    # δ1 = 1 + 0 − 0.2 = 0.8; δ0 = 0 + 0.2 − 0.5 = −0.3; A1 = 0.8; A0 = −0.3 + 0.5·0.8 = 0.1.
    adv, ret = compute_gae(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.2]]), torch.ones(1, 2), 1.0, 0.5)
    assert adv[0].tolist() == pytest.approx([0.1, 0.8])
    assert ret[0].tolist() == pytest.approx([0.6, 1.0])


# ----------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("estimator", ["grpo", "dr_grpo", "rloo"])
def test_single_member_and_zero_variance_groups_give_zero(estimator):
    mask = torch.ones(5, 3)
    # group 0: single member; group 1: zero variance (all 1); group 2: zero variance (all 0)
    inp = AdvantageInputs(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0]), mask, torch.tensor([0, 1, 1, 2, 2]))
    for scope in ("group", "batch"):
        adv, ret = compute_advantages(inp, AdvantageConfig(estimator, std_scope=scope))
        assert torch.isfinite(adv).all() and torch.isfinite(ret).all()
        assert torch.count_nonzero(adv) == 0


@pytest.mark.parametrize("estimator", [e for e in ADVANTAGE_ESTIMATORS])
def test_all_masked_rows_are_zero_and_finite(estimator):
    inp, _ = make_batch(seed=3, batch=6, length=4, num_groups=2)
    inp.response_mask[2] = 0
    adv, ret = compute_advantages(inp, AdvantageConfig(estimator))
    assert torch.isfinite(adv).all() and torch.isfinite(ret).all()
    assert torch.count_nonzero(adv[2]) == 0 and torch.count_nonzero(ret[2]) == 0
    # An entirely masked batch still gives zeros, not NaN.
    inp.response_mask.zero_()
    adv, ret = compute_advantages(inp, AdvantageConfig(estimator))
    assert torch.count_nonzero(adv) == 0 and torch.count_nonzero(ret) == 0


def test_all_masked_rows_do_not_shift_batch_statistics():
    inp, _ = make_batch(seed=5, batch=6, length=4, num_groups=3)
    inp.response_mask[:, 0] = 1
    base, _ = compute_advantages(inp, AdvantageConfig("reinforce_plus_plus"))
    extra = AdvantageInputs(
        torch.cat([inp.rewards, torch.tensor([100.0], dtype=torch.float64)]),
        torch.cat([inp.response_mask, torch.zeros(1, 4, dtype=torch.float64)]),
        torch.cat([inp.group_ids, torch.tensor([999])]),
    )
    with_empty, _ = compute_advantages(extra, AdvantageConfig("reinforce_plus_plus"))
    assert_close(with_empty[:6], base)


def test_config_and_input_errors_name_the_choices():
    with pytest.raises(ValueError, match="valid choices: .*grpo.*rloo"):
        AdvantageConfig("grpoo")
    with pytest.raises(ValueError, match="std_scope"):
        AdvantageConfig(std_scope="token")
    with pytest.raises(ValueError, match="k1"):
        AdvantageConfig(kl_estimator="k4")
    inp, _ = make_batch(seed=1, batch=4, length=3, num_groups=2)
    with pytest.raises(ValueError, match="kl_coef"):
        compute_advantages(inp, AdvantageConfig("grpo", kl_coef_in_reward=0.1))
    inp.baseline_rewards = None
    with pytest.raises(ValueError, match="baseline_rewards"):
        compute_advantages(inp, AdvantageConfig("remax"))
    inp.values = None
    with pytest.raises(ValueError, match="values"):
        compute_advantages(inp, AdvantageConfig("gae"))
    bad = AdvantageInputs(torch.zeros(3), torch.ones(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="group_ids"):
        compute_advantages(bad, AdvantageConfig())


def test_registry_accepts_a_new_estimator():
    name = "test_constant_one"
    if name not in ADVANTAGE_ESTIMATORS:
        @register_advantage_estimator(name)
        def constant(inputs, config):
            adv = torch.ones_like(inputs.response_mask, dtype=torch.float32)
            return adv, adv

    assert get_advantage_estimator(name)
    inp = AdvantageInputs(torch.zeros(2), torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([0, 0]))
    adv, _ = compute_advantages(inp, AdvantageConfig(name))
    assert adv.tolist() == [[1.0, 0.0], [1.0, 1.0]]  # masked by compute_advantages
    with pytest.raises(ValueError, match="already registered"):
        register_advantage_estimator("grpo")(lambda i, c: None)


# ----------------------------------------------------------------------------- KL


@SETTINGS
@given(st.lists(st.floats(-30, 30), min_size=1, max_size=12), st.lists(st.floats(-30, 30), min_size=12, max_size=12))
def test_kl_estimators_match_formulas(lp, ref):
    lp_t = torch.tensor(lp, dtype=torch.float64)[None]
    ref_t = torch.tensor(ref[: len(lp)], dtype=torch.float64)[None]
    for i, (a, b) in enumerate(zip(lp, ref)):
        d = a - b
        assert kl_penalty(lp_t, ref_t, "k1")[0, i].item() == pytest.approx(d)
        assert kl_penalty(lp_t, ref_t, "k2")[0, i].item() == pytest.approx(0.5 * d * d)
        k3 = min(max(math.exp(-d) + d - 1 if -d < 700 else math.inf, -10.0), 10.0)
        assert kl_penalty(lp_t, ref_t, "k3")[0, i].item() == pytest.approx(k3, abs=1e-9)
        assert kl_penalty(lp_t, ref_t, "low_var_kl")[0, i].item() == pytest.approx(k3, abs=1e-9)


def test_kl_k3_is_nonnegative_and_clamped():
    delta = torch.linspace(-50, 50, 201)
    k3 = kl_penalty(delta, torch.zeros_like(delta), "k3")
    assert (k3 >= 0).all() and k3.max().item() == 10.0 and torch.isfinite(k3).all()
    with pytest.raises(ValueError, match="valid choices"):
        kl_penalty(delta, delta, "k5")


# ----------------------------------------------------------------------------- aggregation


def slow_aggregate(loss, mask, mode, max_len=None):
    rows = [[(v, m) for v, m in zip(lr, mr)] for lr, mr in zip(loss.tolist(), mask.tolist())]
    if mode == "token-mean":
        tokens = [v for row in rows for v, m in row if m]
        return sum(tokens) / len(tokens) if tokens else 0.0
    if mode == "seq-mean-token-sum-norm":
        return sum(v for row in rows for v, m in row if m) / (len(rows) * (max_len or mask.shape[1]))
    per_seq = []
    for row in rows:
        tokens = [v for v, m in row if m]
        if tokens:
            per_seq.append(sum(tokens) / len(tokens) if mode == "seq-mean-token-mean" else sum(tokens))
    return sum(per_seq) / len(per_seq) if per_seq else 0.0


@SETTINGS
@given(batches, st.sampled_from(LOSS_AGG_MODES))
def test_aggregation_matches_loop(spec, mode):
    inp, dense = make_batch(*spec)
    assert aggregate_loss(dense, inp.response_mask, mode).item() == pytest.approx(slow_aggregate(dense, inp.response_mask, mode), abs=1e-12)
    assert aggregate_loss(dense, inp.response_mask, "seq-mean-token-sum-norm", max_response_length=11).item() == pytest.approx(
        slow_aggregate(dense, inp.response_mask, "seq-mean-token-sum-norm", 11), abs=1e-12
    )


def test_aggregation_hand_computed_and_length_bias():
    loss = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(8 / 5)
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx((1 + 4) / 2)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx((4 + 4) / 2)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(8 / (2 * 4))
    with pytest.raises(ValueError, match="token-mean"):
        aggregate_loss(loss, mask, "mean")


def test_microbatch_normalisers_reproduce_the_full_batch_gradient():
    inp, dense = make_batch(seed=11, batch=8, length=5, num_groups=2)
    for mode in LOSS_AGG_MODES:
        x = dense.clone().requires_grad_(True)
        aggregate_loss(x, inp.response_mask, mode).backward()
        full = x.grad.clone()
        x.grad = None
        mask = inp.response_mask
        tokens = mask.sum().item()
        seqs = (mask.sum(1) > 0).sum().item() if mode != "seq-mean-token-sum-norm" else mask.shape[0]
        total = sum(
            aggregate_loss(x[i : i + 3], mask[i : i + 3], mode, max_response_length=5, num_tokens=tokens, num_sequences=seqs)
            for i in range(0, 8, 3)
        )
        total.backward()
        assert_close(x.grad, full, atol=1e-12)


# ----------------------------------------------------------------------------- policy loss


def slow_ppo_token(lp, old, adv, eps_low, eps_high, dual_c):
    log_ratio = max(min(lp - old, 20.0), -20.0)
    ratio = math.exp(log_ratio)
    loss = max(-adv * ratio, -adv * min(max(ratio, 1 - eps_low), 1 + eps_high))
    if dual_c is not None and adv < 0:
        loss = min(loss, -adv * dual_c)
    return loss


@SETTINGS
@given(
    batches,
    st.sampled_from([(0.2, 0.2), (0.2, 0.28), (0.1, 0.4)]),
    st.sampled_from([None, 3.0]),
    st.sampled_from(LOSS_AGG_MODES),
    st.sampled_from([0.0, 0.01]),
    st.sampled_from(["k1", "k2", "k3"]),
)
def test_ppo_clip_matches_loop(spec, eps, dual_c, mode, beta, kl_estimator):
    inp, dense = make_batch(*spec)
    gen = torch.Generator().manual_seed(spec[0])
    logprobs = (inp.old_logprobs + torch.randn(inp.old_logprobs.shape, generator=gen, dtype=torch.float64) * 0.5).requires_grad_(True)
    adv = dense * 20
    config = PolicyLossConfig(clip_low=eps[0], clip_high=eps[1], dual_clip_c=dual_c, loss_agg_mode=mode, kl_coef=beta, kl_estimator=kl_estimator)
    loss, metrics = compute_policy_loss(logprobs, inp.old_logprobs, adv, inp.response_mask, config, ref_logprobs=inp.ref_logprobs)
    token_losses = torch.tensor(
        [[slow_ppo_token(a, b, c, eps[0], eps[1], dual_c) for a, b, c in zip(r1, r2, r3)]
         for r1, r2, r3 in zip(logprobs.tolist(), inp.old_logprobs.tolist(), adv.tolist())],
        dtype=torch.float64,
    )
    kl = kl_penalty(logprobs.detach(), inp.ref_logprobs, kl_estimator)
    expected = slow_aggregate(token_losses, inp.response_mask, mode) + beta * slow_aggregate(kl, inp.response_mask, mode)
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    assert 0.0 <= metrics["clipfrac"] <= 1.0 and "kl" in metrics
    loss.backward()
    assert torch.isfinite(logprobs.grad).all()
    assert torch.count_nonzero(logprobs.grad * (1 - inp.response_mask)) == 0  # no gradient off the mask


def test_ppo_clip_gradient_vanishes_outside_the_trust_region():
    old = torch.zeros(1, 4)
    # ratios e^{0.5} (A>0, above 1+ε_high), e^{-0.5} (A<0, below 1−ε_low), e^{0.1} and e^{-0.1} (inside)
    lp = torch.tensor([[0.5, -0.5, 0.1, -0.1]], requires_grad=True)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    loss, metrics = compute_policy_loss(lp, old, adv, torch.ones(1, 4), PolicyLossConfig(clip_low=0.2, clip_high=0.28, loss_agg_mode="token-mean"))
    loss.backward()
    grad = lp.grad[0]
    assert grad[0] == 0 and grad[1] == 0
    assert grad[2].item() == pytest.approx(-math.exp(0.1) / 4)
    assert grad[3].item() == pytest.approx(math.exp(-0.1) / 4)
    assert metrics["clipfrac"] == pytest.approx(0.5)
    assert metrics["clipfrac_high"] == pytest.approx(0.25) and metrics["clipfrac_low"] == pytest.approx(0.25)


def test_clip_higher_is_decoupled():
    old = torch.zeros(1, 1)
    lp = torch.tensor([[math.log(1.3)]])
    adv = torch.ones(1, 1)
    symmetric, _ = compute_policy_loss(lp, old, adv, torch.ones(1, 1), PolicyLossConfig(clip_low=0.2, clip_high=0.2))
    higher, _ = compute_policy_loss(lp, old, adv, torch.ones(1, 1), PolicyLossConfig(clip_low=0.2, clip_high=0.4))
    assert symmetric.item() == pytest.approx(-1.2)
    assert higher.item() == pytest.approx(-1.3)


def test_dual_clip_bounds_negative_advantage_loss():
    old = torch.zeros(1, 1)
    lp = torch.tensor([[math.log(10.0)]])
    adv = -torch.ones(1, 1)
    plain, _ = compute_policy_loss(lp, old, adv, torch.ones(1, 1), PolicyLossConfig())
    dual, metrics = compute_policy_loss(lp, old, adv, torch.ones(1, 1), PolicyLossConfig(dual_clip_c=3.0))
    assert plain.item() == pytest.approx(10.0)
    assert dual.item() == pytest.approx(3.0)
    assert metrics["dual_clipfrac"] == 1.0


def test_log_ratio_clamp_keeps_the_loss_finite():
    lp = torch.tensor([[0.0]], requires_grad=True)
    loss, _ = compute_policy_loss(lp, torch.tensor([[-500.0]]), torch.tensor([[-1.0]]), torch.ones(1, 1), PolicyLossConfig(name="vanilla_pg"))
    assert loss.item() == pytest.approx(math.exp(20.0))
    loss.backward()
    assert torch.isfinite(lp.grad).all()


def test_vanilla_pg_gradient_is_reinforce_on_policy():
    lp = torch.tensor([[-0.7, -1.2]], requires_grad=True)
    adv = torch.tensor([[2.0, 2.0]])
    loss, _ = compute_policy_loss(lp, lp.detach(), adv, torch.ones(1, 2), PolicyLossConfig(name="vanilla_pg"))
    loss.backward()
    assert lp.grad[0].tolist() == pytest.approx([-1.0, -1.0])  # −A / (number of tokens)


def test_policy_loss_errors():
    with pytest.raises(ValueError, match="ppo_clip"):
        PolicyLossConfig(name="ppo")
    with pytest.raises(ValueError, match="seq-mean-token-mean"):
        PolicyLossConfig(loss_agg_mode="mean")
    with pytest.raises(ValueError, match="dual_clip_c"):
        PolicyLossConfig(dual_clip_c=0.5)
    with pytest.raises(ValueError, match="ref_logprobs"):
        compute_policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), PolicyLossConfig(kl_coef=0.1))


# ----------------------------------------------------------------------------- value loss


@SETTINGS
@given(batches, st.sampled_from([None, 0.2]), st.sampled_from(LOSS_AGG_MODES))
def test_value_loss_matches_loop(spec, clip, mode):
    inp, dense = make_batch(*spec)
    values = inp.values + dense * 5
    returns = inp.values + dense * 3 + 0.1
    loss, metrics = value_loss(values, inp.values, returns, inp.response_mask, clip, mode)
    per_token = []
    for v_row, o_row, r_row in zip(values.tolist(), inp.values.tolist(), returns.tolist()):
        row = []
        for v, o, r in zip(v_row, o_row, r_row):
            a = (v - r) ** 2
            if clip is not None:
                vc = o + max(min(v - o, clip), -clip)
                a = max(a, (vc - r) ** 2)
            row.append(0.5 * a)
        per_token.append(row)
    expected = slow_aggregate(torch.tensor(per_token, dtype=torch.float64), inp.response_mask, mode)
    assert loss.item() == pytest.approx(expected, abs=1e-10)
    assert 0.0 <= metrics["vf_clipfrac"] <= 1.0


# ----------------------------------------------------------------------------- DAPO filters


@SETTINGS
@given(batches)
def test_group_filters_match_loop(spec):
    inp, _ = make_batch(*spec, binary=True)
    g, r = inp.group_ids.tolist(), inp.rewards.tolist()
    keep = group_accuracy_filter(inp.group_ids, inp.rewards.bool())
    for i in range(len(r)):
        accuracy = statistics.mean(r[j] for j in members(g, i))
        assert bool(keep[i]) == (0.0 < accuracy < 1.0)
    groups = sorted(set(g))
    zero_var = [gid for gid in groups if len({r[j] for j in range(len(r)) if g[j] == gid}) == 1]
    assert zero_variance_group_share(inp.group_ids, inp.rewards) == pytest.approx(len(zero_var) / len(groups))


def test_group_accuracy_filter_hand_case_and_refill_order():
    groups = torch.tensor([5, 5, 9, 9, 2, 2, 7])
    correct = torch.tensor([1, 0, 1, 1, 0, 1, 1])
    keep = group_accuracy_filter(groups, correct)
    assert keep.tolist() == [True, True, False, False, True, True, False]
    assert kept_group_indices(groups, keep).tolist() == [0, 1, 4, 5]
    assert kept_group_indices(groups, keep, max_groups=1).tolist() == [0, 1]
    assert zero_variance_group_share(groups, correct.float()) == pytest.approx(2 / 4)


def test_overlong_penalty_piecewise():
    lengths = torch.tensor([0, 12, 16, 18, 20, 25])
    # L_max 20, buffer 4: zero up to 16, then −(len−16)/4, held at −1 from 20 on; factor 0.5.
    assert overlong_penalty(lengths, 20, 4, 0.5).tolist() == pytest.approx([0, 0, 0, -0.25, -0.5, -0.5])
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(lengths, 20, 0)
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(lengths, 20, 21)


@SETTINGS
@given(st.lists(st.integers(0, 64), min_size=1, max_size=20), st.integers(1, 32), st.floats(0, 2))
def test_overlong_penalty_matches_formula(lengths, buffer, factor):
    max_len = 32
    got = overlong_penalty(torch.tensor(lengths), max_len, buffer, factor).tolist()
    for length, value in zip(lengths, got):
        expected = min(-(length - (max_len - buffer)) / buffer, 0.0) if length <= max_len else -1.0
        assert value == pytest.approx(expected * factor, abs=1e-6)


# ----------------------------------------------------------------------------- learning-rate schedules


def test_constant_schedule_is_the_trainers_former_lr_bit_for_bit():
    # The RL trainer's _lr before schedules: lr * min(1, step / warmup_steps), steps from 1.
    for lr in (2e-4, 1e-5, 3e-3, 0.1):
        for warmup in (0, 1, 3, 7, 50):
            for step in range(1, 120):
                former = lr * min(1.0, step / warmup) if warmup else lr
                assert lr_at(step, 100, lr, "constant", warmup) == former


def slow_decay(step, total, lr, schedule, warmup, min_ratio):
    """The schedule from its definition, one case at a time."""
    if warmup and step < warmup:
        return lr * step / warmup
    if total <= warmup:
        fraction = 1.0
    else:
        fraction = min((step - warmup) / (total - warmup), 1.0)
    if schedule == "linear":
        return lr * (1.0 - fraction) + lr * min_ratio * fraction
    floor = lr * min_ratio
    return floor + (lr - floor) * (1.0 + math.cos(math.pi * fraction)) / 2.0


@SETTINGS
@given(st.sampled_from(["linear", "cosine"]), st.integers(1, 60), st.integers(0, 20), st.floats(0.0, 1.0),
       st.floats(1e-6, 1.0))
def test_decay_schedules_match_their_definition(schedule, total, warmup, min_ratio, lr):
    values = [lr_at(step, total, lr, schedule, warmup, min_ratio) for step in range(1, total + 1)]
    for step, value in enumerate(values, start=1):
        assert value == pytest.approx(slow_decay(step, total, lr, schedule, warmup, min_ratio), rel=1e-12, abs=1e-15)
    after_warmup = values[warmup - 1:] if warmup else values
    assert all(b <= a * (1 + 1e-12) for a, b in zip(after_warmup, after_warmup[1:]))  # never rises after the warm-up
    if total > warmup:
        assert values[-1] == pytest.approx(lr * min_ratio, rel=1e-12, abs=1e-15)  # the floor, at the last step
        assert lr_at(total + 5, total, lr, schedule, warmup, min_ratio) == values[-1]  # past the end: held


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_decay_schedules_match_torch_schedulers(schedule):
    """torch's own LinearLR / CosineAnnealingLR (no warm-up) as an independent oracle: step
    ``warmup + k`` of ours is torch's scheduler after k steps."""
    lr, warmup, total, floor_ratio = 0.1, 5, 45, 0.2
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    if schedule == "linear":
        scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, floor_ratio, total_iters=total - warmup)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup, eta_min=lr * floor_ratio)
    for k in range(total - warmup + 1):
        ours = lr_at(warmup + k, total, lr, schedule, warmup, floor_ratio)
        assert ours == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
        optimizer.step()
        scheduler.step()


def test_schedule_hand_values_and_errors():
    # Warm-up over 10 steps, then cosine from 1.0 to 0.1 over steps 10..110.
    assert lr_at(5, 110, 1.0, "cosine", 10, 0.1) == 0.5
    assert lr_at(10, 110, 1.0, "cosine", 10, 0.1) == 1.0
    assert lr_at(60, 110, 1.0, "cosine", 10, 0.1) == pytest.approx(0.55)  # half-way: (1 + 0.1) / 2
    assert lr_at(60, 110, 1.0, "linear", 10, 0.1) == pytest.approx(0.55)
    assert lr_at(35, 110, 1.0, "linear", 10, 0.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="valid choices: constant, linear, cosine"):
        lr_at(1, 10, 1.0, "cosin")
    with pytest.raises(ValueError, match="min_lr_ratio"):
        lr_at(1, 10, 1.0, "linear", 0, 1.5)
    with pytest.raises(ValueError, match="total_steps"):
        lr_at(1, 0, 1.0)


# ----------------------------------------------------------------------------- KL controllers


def slow_adaptive_beta(beta, target, horizon, steps):
    """Ziegler et al.'s update written out, one step at a time."""
    for kl, n in steps:
        error = (kl - target) / target
        if error > 0.2:
            error = 0.2
        if error < -0.2:
            error = -0.2
        beta = beta * (1 + error * n / horizon)
    return beta


def test_adaptive_kl_controller_hand_computed():
    controller = make_kl_controller("adaptive", 0.1, target=6.0, horizon=10_000)
    assert controller.update(9.0, 256) == pytest.approx(0.1 * (1 + 0.2 * 256 / 10_000))  # error clipped at +0.2
    beta = controller.value
    assert controller.update(5.0, 256) == pytest.approx(beta * (1 - (1 / 6) * 256 / 10_000))  # inside the clip
    beta = controller.value
    assert controller.update(6.0, 256) == beta  # on target: unchanged
    assert controller.update(0.0, 512) == pytest.approx(beta * (1 - 0.2 * 512 / 10_000))  # clipped at -0.2


@SETTINGS
@given(st.floats(1e-4, 1.0), st.floats(0.5, 20.0), st.integers(100, 20_000),
       st.lists(st.tuples(st.floats(0.0, 40.0), st.integers(0, 512)), max_size=30))
def test_adaptive_kl_controller_matches_loop(beta, target, horizon, steps):
    controller = AdaptiveKLController(beta, target, horizon)
    for kl, n in steps:
        controller.update(kl, n)
    assert controller.value == pytest.approx(slow_adaptive_beta(beta, target, horizon, steps), rel=1e-12)
    # Each step moves β by at most ±0.2·n/horizon of itself.
    assert controller.value > 0


def test_kl_controllers_resume_from_their_state():
    first = make_kl_controller("adaptive", 0.05, target=4.0, horizon=1000)
    for kl in (8.0, 7.0, 2.0):
        first.update(kl, 64)
    resumed = make_kl_controller("adaptive", 0.05, target=4.0, horizon=1000)
    resumed.load_state_dict(first.state_dict())
    assert resumed.value == first.value
    assert resumed.update(5.0, 64) == first.update(5.0, 64)
    fixed = make_kl_controller("fixed", 0.02)
    assert fixed.update(100.0, 1000) == 0.02 and fixed.state_dict() == {"value": 0.02}


def test_kl_controller_errors():
    with pytest.raises(ValueError, match="valid choices: fixed, adaptive"):
        make_kl_controller("pid", 0.1)
    with pytest.raises(ValueError, match="initial kl_coef > 0"):
        make_kl_controller("adaptive", 0.0)
    with pytest.raises(ValueError, match="kl_horizon"):
        make_kl_controller("adaptive", 0.1, horizon=0)
    with pytest.raises(ValueError, match="KL is nan"):
        make_kl_controller("adaptive", 0.1).update(float("nan"), 8)
    with pytest.raises(ValueError, match="raise kl_horizon above 20000"):
        make_kl_controller("adaptive", 0.1, horizon=10).update(0.0, 100_000)
