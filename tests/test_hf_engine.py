"""HFEngine: n samples per prompt, exact per-token log-probs, seeds, stop strings, EOS, left padding."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonrl.engines.base import SamplingParams
from reasonrl.engines.hf_engine import HFEngine, _sample
from reasonrl.models.tiny import TinyModelConfig, build_tiny_model


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = build_tiny_model(
        TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, bpe_merges=64, seed=0),
        tmp_path_factory.mktemp("tiny") / "m",
    )
    return HFEngine.from_pretrained(path)


def chat(engine, text):
    return engine.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def teacher_forced_logprobs(model, prompt_ids, token_ids, temperature):
    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), dim=-1)
    return logp.gather(1, torch.tensor(token_ids).unsqueeze(1)).squeeze(1)


def test_shapes_and_logprobs_match_a_forward_pass(engine):
    prompts = [chat(engine, "Compute 1+2."), chat(engine, "Compute 123+456. Put the final answer in <answer></answer>.")]
    out = engine.generate(prompts, SamplingParams(n=3, temperature=0.7, max_tokens=12, seed=0))
    assert [len(group) for group in out] == [3, 3]
    for group in out:
        for sample in group:
            assert 1 <= len(sample.token_ids) <= 12 and len(sample.logprobs) == len(sample.token_ids)
            ref = teacher_forced_logprobs(engine.model, sample.prompt_token_ids, sample.token_ids, 0.7)
            assert torch.allclose(torch.tensor(sample.logprobs), ref, atol=1e-4)


def test_prompt_ids_are_the_unpadded_prompt(engine):
    short, long = chat(engine, "a"), chat(engine, "a much longer prompt than the first one")
    out = engine.generate([short, long], SamplingParams(n=1, max_tokens=3, seed=0))
    assert out[0][0].prompt_token_ids == engine.tokenizer(short, add_special_tokens=False)["input_ids"]
    assert out[1][0].prompt_token_ids == engine.tokenizer(long, add_special_tokens=False)["input_ids"]


def test_greedy_matches_hf_generate_and_is_batch_invariant(engine):
    prompts = [chat(engine, "x"), chat(engine, "Compute 907+15. Put the final answer in <answer></answer>.")]
    batched = engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=10))
    for prompt, group in zip(prompts, batched):
        alone = engine.generate([prompt], SamplingParams(n=1, temperature=0.0, max_tokens=10))[0][0]
        assert group[0].token_ids == alone.token_ids  # left padding does not change the result
        ids = torch.tensor([alone.prompt_token_ids])
        with torch.no_grad():
            ref = engine.model.generate(
                ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10,
                eos_token_id=engine.eos_token_ids, pad_token_id=engine.pad_token_id,
            )[0, ids.shape[1] :].tolist()
        assert alone.token_ids == ref[: len(alone.token_ids)]


def test_seeds_repeat_and_differ(engine):
    prompts = [chat(engine, "hello")]
    a = engine.generate(prompts, SamplingParams(n=4, max_tokens=8, seed=1))
    b = engine.generate(prompts, SamplingParams(n=4, max_tokens=8, seed=1))
    c = engine.generate(prompts, SamplingParams(n=4, max_tokens=8, seed=2))
    ids = lambda out: [s.token_ids for s in out[0]]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert len({tuple(x) for x in ids(a)}) > 1  # the n samples of one prompt differ


def test_seeded_call_leaves_global_rng_alone(engine):
    torch.manual_seed(0)
    expected = torch.rand(2)
    torch.manual_seed(0)
    engine.generate([chat(engine, "q")], SamplingParams(n=2, max_tokens=4, seed=5))
    assert torch.equal(torch.rand(2), expected)


def test_max_tokens_and_eos(engine):
    out = engine.generate([chat(engine, "q")], SamplingParams(n=2, max_tokens=5, seed=0))
    for s in out[0]:
        assert s.finish_reason in ("stop", "length")
        if s.finish_reason == "length":
            assert len(s.token_ids) == 5
    # An untrained model rarely emits EOS: make its logit dominate with a hook on the output layer.
    eos = engine.eos_token_ids[0]

    def favour_eos(module, inputs, output):
        output = output.clone()
        output[..., eos] += 100.0
        return output

    handle = engine.model.lm_head.register_forward_hook(favour_eos)
    try:
        out = engine.generate([chat(engine, "q")], SamplingParams(n=2, max_tokens=5, seed=0))
    finally:
        handle.remove()
    for s in out[0]:
        assert s.finish_reason == "stop" and s.token_ids == [eos] and s.text == ""
        assert len(s.logprobs) == 1


def test_stop_strings_cut_text_and_tokens(engine):
    # Greedy continuation of a fixed prompt; pick a stop string from inside it.
    base = engine.generate([chat(engine, "stop test")], SamplingParams(n=1, temperature=0.0, max_tokens=12))[0][0]
    if len(base.text) < 4:
        pytest.skip("greedy text too short to cut")
    stop = base.text[2:4]
    cut = engine.generate([chat(engine, "stop test")], SamplingParams(n=1, temperature=0.0, max_tokens=12, stop=(stop,)))[0][0]
    assert cut.finish_reason == "stop"
    assert cut.text == base.text[: base.text.find(stop)]
    assert engine.tokenizer.decode(cut.token_ids) == cut.text or base.text.startswith(engine.tokenizer.decode(cut.token_ids))
    assert cut.token_ids == base.token_ids[: len(cut.token_ids)] and len(cut.logprobs) == len(cut.token_ids)


@pytest.mark.parametrize("draw", ["uniforms", "global"])
def test_top_p_sampler(draw):
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]] * 2000)
    gen = torch.Generator().manual_seed(0)
    uniforms = (lambda: torch.rand(2000, generator=gen)) if draw == "uniforms" else (lambda: None)
    tokens, logprobs = _sample(logits, 1.0, 0.6, uniforms())
    probs = torch.softmax(logits[0], -1)  # [0.696, 0.256, 0.035, 0.013]: top-p 0.6 keeps token 0 only
    assert set(tokens.tolist()) == {0}
    assert torch.allclose(logprobs, torch.log(probs[0]).expand(2000))  # unfiltered log-prob, like vLLM
    tokens, _ = _sample(logits, 1.0, 0.9, uniforms())  # keeps tokens 0 and 1, renormalised
    share = (tokens == 0).float().mean().item()
    assert set(tokens.tolist()) == {0, 1} and abs(share - probs[0] / (probs[0] + probs[1])) < 0.04
    tokens, _ = _sample(logits, 1.0, 1.0, uniforms())  # the full distribution
    counts = torch.bincount(tokens, minlength=4).float() / 2000
    assert torch.allclose(counts, probs, atol=0.03)
    greedy, _ = _sample(logits[:1], 0.0, 1.0, None)
    assert greedy.tolist() == [0]


def test_inverse_cdf_draw_edges():
    logits = torch.tensor([[0.0, 0.0, -float("inf"), 0.0, -float("inf")]] * 4)
    # u = 0 picks the first token with mass; u just below 1 the last one, never a zero-mass token.
    tokens, _ = _sample(logits, 1.0, 1.0, torch.tensor([0.0, 0.34, 0.67, 1 - 2**-24]))
    assert tokens.tolist() == [0, 1, 3, 3]


def test_seeded_samples_do_not_depend_on_batch_split(engine):
    """A prompt's samples depend on (seed, its index), not on its neighbours: a batch split in two
    calls with first_prompt_index set samples what the whole batch does (how ranks split a step)."""
    prompts = [chat(engine, q) for q in ("a", "a longer question", "b", "what is 2+2")]
    params = SamplingParams(n=3, max_tokens=8, seed=11)
    whole = engine.generate(prompts, params)
    head = engine.generate(prompts[:2], params)
    tail = engine.generate(prompts[2:], replace(params, first_prompt_index=2))
    for got, want in zip(head + tail, whole):
        assert [s.token_ids for s in got] == [s.token_ids for s in want]
        for a, b in zip(got, want):
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-5)
    assert [s.token_ids for s in tail[0]] != [s.token_ids for s in engine.generate(prompts[2:], params)[0]]


def test_sync_weights_from_another_model(engine, tmp_path):
    other = AutoModelForCausalLM.from_pretrained(
        build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, bpe_merges=64, seed=9), tmp_path / "o")
    )
    prompt = [chat(engine, "sync")]
    before = engine.generate(prompt, SamplingParams(n=1, temperature=0.0, max_tokens=6))[0][0]
    saved = {k: v.clone() for k, v in engine.model.state_dict().items()}
    try:
        engine.sync_weights(other)
        after = engine.generate(prompt, SamplingParams(n=1, temperature=0.0, max_tokens=6))[0][0]
        fresh = HFEngine(other, engine.tokenizer).generate(prompt, SamplingParams(n=1, temperature=0.0, max_tokens=6))[0][0]
        assert after.token_ids == fresh.token_ids and after.logprobs == pytest.approx(fresh.logprobs, abs=1e-5)
        assert after.logprobs != pytest.approx(before.logprobs, abs=1e-3)
    finally:
        engine.model.load_state_dict(saved)


def test_bad_params(engine):
    with pytest.raises(ValueError, match="n must be"):
        engine.generate(["x"], SamplingParams(n=0))
    with pytest.raises(ValueError, match="max_tokens"):
        engine.generate(["x"], SamplingParams(max_tokens=0))


def test_tokenizer_has_no_template_still_works(engine):
    tok = AutoTokenizer.from_pretrained(engine.tokenizer.name_or_path)
    assert HFEngine(engine.model, tok).generate(["plain text"], SamplingParams(max_tokens=2, seed=0))[0][0].token_ids
