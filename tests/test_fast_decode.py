"""FastHFEngine (static KV cache decode): the same samples as HFEngine where they must be the same.

Greedy decoding is a deterministic function of the weights, so the fast engine must return
HFEngine's very tokens, log-probs (to float rounding), finish reasons and stop-string cuts. Sampled
outputs use another random stream, so they are checked against a teacher-forced forward pass and
the sampler against the target distribution. The CUDA graph path needs a GPU and is exercised by
benchmarks/gpu_grpo_check.py.
"""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonrl.engines.base import SamplingParams
from reasonrl.engines.fast_decode import FastHFEngine, _sample_fast
from reasonrl.engines.hf_engine import HFEngine
from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

PROMPTS = [
    "Compute 1+2.",
    "Compute 907+15. Put the final answer in <answer></answer>.",
    "x",
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(
        TinyModelConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, bpe_merges=64, seed=0),
        tmp_path_factory.mktemp("tiny") / "m",
    )


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture()
def model(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    # A fresh init attends almost uniformly, which would hide attention mistakes (scale, mask,
    # rotary): perturb the weights so attention and next-token distributions are sharp.
    sharpen(model)
    return model


def sharpen(model, std=0.3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * std)


def chat(tokenizer, text):
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)


def prompts_for(tokenizer):
    return [chat(tokenizer, p) for p in PROMPTS]


def assert_same_samples(a, b, atol=1e-5):
    assert [len(g) for g in a] == [len(g) for g in b]
    for group_a, group_b in zip(a, b):
        for x, y in zip(group_a, group_b):
            assert x.token_ids == y.token_ids
            assert x.text == y.text and x.finish_reason == y.finish_reason
            assert x.prompt_token_ids == y.prompt_token_ids
            assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=atol)


def teacher_forced_logprobs(model, prompt_ids, token_ids, temperature):
    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logp = torch.log_softmax(logits / (temperature if temperature > 0 else 1.0), dim=-1)
    return logp.gather(1, torch.tensor(token_ids).unsqueeze(1)).squeeze(1)


def test_tiny_qwen2_takes_the_fast_path(model, tokenizer):
    engine = FastHFEngine(model, tokenizer)
    assert engine.fast_path and engine.unsupported_reason is None


@pytest.mark.parametrize("n", [1, 3])
def test_greedy_equals_hf_engine(model, tokenizer, n):
    prompts = prompts_for(tokenizer)
    params = SamplingParams(n=n, temperature=0.0, max_tokens=20)
    expected = HFEngine(model, tokenizer).generate(prompts, params)
    got = FastHFEngine(model, tokenizer).generate(prompts, params)
    assert_same_samples(expected, got)
    assert all(len(s.token_ids) >= 1 for g in got for s in g)


def test_full_static_length_attention_equals_hf_engine(model, tokenizer, monkeypatch):
    """What a CUDA graph replays: attention over the whole static cache, unwritten columns masked."""
    from reasonrl.engines import fast_decode

    monkeypatch.setattr(fast_decode._Stepper, "full_length", True)
    prompts = prompts_for(tokenizer)
    params = SamplingParams(n=2, temperature=0.0, max_tokens=12)
    expected = HFEngine(model, tokenizer).generate(prompts, params)
    assert_same_samples(expected, FastHFEngine(model, tokenizer, cache_bucket=64).generate(prompts, params))


def test_greedy_equal_for_any_cache_bucket_and_chunking(model, tokenizer):
    prompts = prompts_for(tokenizer)
    params = SamplingParams(n=2, temperature=0.0, max_tokens=9)
    expected = HFEngine(model, tokenizer).generate(prompts, params)
    for engine in (FastHFEngine(model, tokenizer, cache_bucket=1), FastHFEngine(model, tokenizer, max_batch_size=2)):
        assert_same_samples(expected, engine.generate(prompts, params))


def test_eos_ends_a_row_like_hf_engine(model, tokenizer):
    prompts = prompts_for(tokenizer)
    vocab = model.config.vocab_size
    free = HFEngine(model, tokenizer, eos_token_ids=[vocab]).generate(prompts, SamplingParams(temperature=0.0, max_tokens=12))
    # Make the 4th greedy token of the first prompt an end-of-sequence token: that row stops there.
    eos = free[0][0].token_ids[3]
    params = SamplingParams(n=1, temperature=0.0, max_tokens=12)
    expected = HFEngine(model, tokenizer, eos_token_ids=[eos]).generate(prompts, params)
    got = FastHFEngine(model, tokenizer, eos_token_ids=[eos]).generate(prompts, params)
    assert_same_samples(expected, got)
    first = got[0][0]
    assert first.finish_reason == "stop" and first.token_ids[-1] == eos and len(first.token_ids) <= 4
    # An unreachable EOS: every row runs to max_tokens.
    full = FastHFEngine(model, tokenizer, eos_token_ids=[vocab]).generate(prompts, params)
    assert all(len(s.token_ids) == 12 and s.finish_reason == "length" for g in full for s in g)


@pytest.mark.parametrize("check_every", [1, 5])
def test_stop_strings_cut_like_hf_engine(model, tokenizer, check_every):
    prompts = prompts_for(tokenizer)
    vocab = model.config.vocab_size
    free = HFEngine(model, tokenizer, eos_token_ids=[vocab]).generate(prompts, SamplingParams(temperature=0.0, max_tokens=16))
    text = free[1][0].text
    stop = text[4:6] if len(text.strip()) >= 6 and text[4:6].strip() else text[:2]
    assert stop, "the tiny model produced no text to build a stop string from"
    params = SamplingParams(n=2, temperature=0.0, max_tokens=16, stop=(stop,))
    expected = HFEngine(model, tokenizer, eos_token_ids=[vocab]).generate(prompts, params)
    got = FastHFEngine(model, tokenizer, eos_token_ids=[vocab], check_every=check_every).generate(prompts, params)
    assert_same_samples(expected, got)
    assert got[1][0].finish_reason == "stop" and stop not in got[1][0].text


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.7, 0.9)])
def test_sampled_logprobs_match_a_forward_pass(model, tokenizer, temperature, top_p):
    engine = FastHFEngine(model, tokenizer, eos_token_ids=[model.config.vocab_size])
    out = engine.generate(prompts_for(tokenizer)[:2], SamplingParams(n=3, temperature=temperature, top_p=top_p, max_tokens=10, seed=0))
    for group in out:
        assert len(group) == 3
        for sample in group:
            assert len(sample.token_ids) == 10 and len(sample.logprobs) == 10
            ref = teacher_forced_logprobs(model, sample.prompt_token_ids, sample.token_ids, temperature)
            assert torch.allclose(torch.tensor(sample.logprobs), ref, atol=1e-4)


def test_seeds_repeat_and_differ(model, tokenizer):
    engine = FastHFEngine(model, tokenizer)
    prompts = prompts_for(tokenizer)[:1]
    ids = lambda seed: [s.token_ids for s in engine.generate(prompts, SamplingParams(n=4, max_tokens=8, seed=seed))[0]]  # noqa: E731
    assert ids(1) == ids(1) and ids(1) != ids(2)
    assert len({tuple(x) for x in ids(1)}) > 1


def test_in_place_weight_updates_show_in_the_next_call(model, tokenizer):
    engine = FastHFEngine(model, tokenizer)
    prompts = prompts_for(tokenizer)
    params = SamplingParams(n=1, temperature=0.0, max_tokens=8)
    before = engine.generate(prompts, params)
    sharpen(model, std=0.5, seed=1)  # what an optimizer step does: change the parameters in place
    after = engine.generate(prompts, params)
    assert_same_samples(HFEngine(model, tokenizer).generate(prompts, params), after)
    assert [s.token_ids for g in before for s in g] != [s.token_ids for g in after for s in g]


def test_training_mode_is_restored(model, tokenizer):
    model.train()
    FastHFEngine(model, tokenizer).generate(prompts_for(tokenizer)[:1], SamplingParams(max_tokens=3, seed=0))
    assert model.training


def test_bad_params_are_rejected(model, tokenizer):
    engine = FastHFEngine(model, tokenizer)
    with pytest.raises(ValueError, match="n must be"):
        engine.generate(["a"], SamplingParams(n=0))
    with pytest.raises(ValueError, match="max_tokens"):
        engine.generate(["a"], SamplingParams(max_tokens=0))


def _other_architecture(kind: str, vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    sizes = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=256)
    if kind == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**sizes, head_dim=8)).eval()
    else:
        model = LlamaForCausalLM(LlamaConfig(**sizes)).eval()
    sharpen(model)
    return model


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_other_supported_architectures_match_hf_engine(tokenizer, kind):
    model = _other_architecture(kind, len(tokenizer))
    engine = FastHFEngine(model, tokenizer, eos_token_ids=[len(tokenizer)])
    assert engine.fast_path
    prompts = prompts_for(tokenizer)
    params = SamplingParams(n=2, temperature=0.0, max_tokens=10)
    assert_same_samples(HFEngine(model, tokenizer, eos_token_ids=[len(tokenizer)]).generate(prompts, params),
                        engine.generate(prompts, params))


def test_unsupported_models_fall_back_to_hf_engine(tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=256)).eval()
    engine = FastHFEngine(model, tokenizer)
    assert not engine.fast_path and "gpt2" in engine.unsupported_reason
    params = SamplingParams(n=2, temperature=0.8, max_tokens=6, seed=3)
    prompts = prompts_for(tokenizer)[:2]
    assert_same_samples(HFEngine(model, tokenizer).generate(prompts, params), engine.generate(prompts, params))


@pytest.mark.parametrize("method", ["race", "inverse_cdf"])
def test_sampler_follows_the_distribution_and_top_p(method):
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(40000, 4).contiguous()
    generator = torch.Generator().manual_seed(0)
    chosen, logprob = _sample_fast(logits, 1.0, 1.0, generator, method)
    freq = torch.bincount(chosen, minlength=4).float() / len(chosen)
    assert torch.allclose(freq, probs, atol=0.01)
    assert torch.allclose(logprob, probs.log()[chosen], atol=1e-6)
    # top_p = 0.7: the nucleus is {0, 1} (0.5 < 0.7 <= 0.8); renormalised 5/8, 3/8.
    chosen, logprob = _sample_fast(logits, 1.0, 0.7, generator, method)
    freq = torch.bincount(chosen, minlength=4).float() / len(chosen)
    assert freq[2] == 0 and freq[3] == 0 and abs(float(freq[0]) - 0.625) < 0.01
    assert torch.allclose(logprob, probs.log()[chosen], atol=1e-6)  # log-probs of the unfiltered distribution
    # Temperature 2 flattens the distribution: p^(1/2), renormalised.
    chosen, _ = _sample_fast(logits, 2.0, 1.0, generator, method)
    flat = probs.sqrt() / probs.sqrt().sum()
    assert torch.allclose(torch.bincount(chosen, minlength=4).float() / len(chosen), flat, atol=0.01)
    # A zero-probability first token is never picked.
    zero_first = torch.tensor([float("-inf"), 0.0, 0.0]).expand(5000, 3).contiguous()
    assert int((_sample_fast(zero_first, 1.0, 1.0, generator, method)[0] == 0).sum()) == 0
    # Greedy: argmax and log-softmax at temperature 1.
    chosen, logprob = _sample_fast(logits[:2], 0.0, 1.0, None, method)
    assert chosen.tolist() == [0, 0] and torch.allclose(logprob, probs.log()[[0, 0]], atol=1e-6)


def test_unknown_sampling_method_is_rejected():
    with pytest.raises(ValueError, match="valid: auto, race, inverse_cdf"):
        _sample_fast(torch.zeros(1, 3), 1.0, 1.0, None, "gumbel")
