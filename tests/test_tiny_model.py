"""The tiny Qwen2 model and its byte-level BPE tokenizer: an ordinary HF checkpoint, deterministic."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from reasonrl.models.tiny import (
    CHAT_TEMPLATE,
    EOS_TOKEN,
    TinyModelConfig,
    build_tiny_model,
    byte_symbols,
    learn_bpe_merges,
)

SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, bpe_merges=64)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(TinyModelConfig(**SMALL, seed=0), tmp_path_factory.mktemp("tiny") / "m")


def test_loads_with_auto_classes(tiny_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert model.config.model_type == "qwen2"
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == EOS_TOKEN and model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert tokenizer.pad_token_id is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    ids = tokenizer("Compute 1+2.", return_tensors="pt")["input_ids"]
    assert model(ids).logits.shape == (1, ids.shape[1], len(tokenizer))


def test_tokenizer_round_trips_any_text(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    for text in ["Compute 123+456. Put the final answer in <answer></answer>.", "a  b\n\n\tc", "naïve — ünïcode ✓", ""]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_digits_are_single_tokens(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    ids = tokenizer("1234567890", add_special_tokens=False)["input_ids"]
    assert len(ids) == 10  # arithmetic stays one digit per token: merges never join digits


def test_bpe_compresses_task_boilerplate(tiny_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    no_merges = AutoTokenizer.from_pretrained(build_tiny_model(TinyModelConfig(**{**SMALL, "bpe_merges": 0}), tmp_path / "b"))
    text = " Put the final answer in <answer></answer>."
    assert len(no_merges(text, add_special_tokens=False)["input_ids"]) == len(text.encode())
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) < len(text) / 2


def test_chat_template_and_special_tokens(tiny_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.convert_tokens_to_ids("<|im_start|>")) == 2
    assert ids.count(tokenizer.eos_token_id) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "user\nhi\nassistant\n"


def test_tokenizer_json_alone_agrees(tiny_dir):
    # Loaders that read tokenizer.json directly (older transformers, vLLM fallbacks) tokenize the same way.
    auto = AutoTokenizer.from_pretrained(tiny_dir)
    raw = PreTrainedTokenizerFast(tokenizer_file=f"{tiny_dir}/tokenizer.json")
    text = "<|im_start|>user\nCompute 907+15.<|im_end|>\n"
    assert raw(text)["input_ids"] == auto(text, add_special_tokens=False)["input_ids"]


def test_deterministic_under_seed(tmp_path):
    a = build_tiny_model(TinyModelConfig(**SMALL, seed=3), tmp_path / "a")
    b = build_tiny_model(TinyModelConfig(**SMALL, seed=3), tmp_path / "b")
    c = build_tiny_model(TinyModelConfig(**SMALL, seed=4), tmp_path / "c")
    sa, sb, sc = (AutoModelForCausalLM.from_pretrained(p).state_dict() for p in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert json.loads((tmp_path / "a" / "tokenizer.json").read_text()) == json.loads((tmp_path / "b" / "tokenizer.json").read_text())


def test_building_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(TinyModelConfig(**SMALL), tmp_path / "m")
    assert torch.equal(torch.rand(3), expected)


def test_cache_reuses_a_build(tmp_path, monkeypatch):
    monkeypatch.setenv("REASONRL_CACHE", str(tmp_path))
    first = build_tiny_model(TinyModelConfig(**SMALL))
    stamp = (tmp_path / first.split("/")[-1] / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(TinyModelConfig(**SMALL)) == first
    assert (tmp_path / first.split("/")[-1] / "model.safetensors").stat().st_mtime_ns == stamp
    assert build_tiny_model(TinyModelConfig(**{**SMALL, "seed": 1})) != first


@pytest.mark.parametrize(
    "bad, fragment",
    [({"hidden_size": 30}, "divisible by num_heads"), ({"num_kv_heads": 3}, "divisible by num_kv_heads"),
     ({"num_layers": 0}, "num_layers must be positive"), ({"bpe_merges": -1}, "bpe_merges")],
)
def test_config_validation(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        TinyModelConfig(**{**SMALL, **bad})


def test_byte_symbols_are_a_bijection():
    symbols = byte_symbols()
    assert len(symbols) == len(set(symbols)) == 256
    assert symbols[ord("a")] == "a" and symbols[ord(" ")] == "Ġ" and symbols[ord("\n")] == "Ċ"


def slow_bpe(words, num_merges):
    """The textbook loop, written independently: recount every pair each round, merge the max."""
    corpus = [list(w) for w, c in words.items() for _ in range(c)]
    merges = []
    for _ in range(num_merges):
        counts = {}
        for w in corpus:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        top = max(counts.values())
        if top < 2:
            break
        best = sorted(p for p, c in counts.items() if c == top)[0]
        merges.append(best)
        new = []
        for w in corpus:
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new.append(out)
        corpus = new
    return merges


def test_bpe_matches_slow_reference():
    import random

    rng = random.Random(0)
    for _ in range(20):
        words = {}
        for _ in range(rng.randint(1, 12)):
            word = tuple(rng.choice("abcd") for _ in range(rng.randint(1, 7)))
            words[word] = words.get(word, 0) + rng.randint(1, 4)
        assert learn_bpe_merges(words, 10) == slow_bpe(words, 10)
    # Overlapping pairs: "aaa" holds two ("a","a") pairs but merges left to right once.
    assert learn_bpe_merges({("a", "a", "a"): 2}, 2) == [("a", "a"), ("aa", "a")]
