"""SFT warm-up: example construction, loss masking, learning, early stop, the ``reasonrl sft`` command."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from reasonrl.config import SFTConfig
from reasonrl.models.tiny import TinyModelConfig, build_tiny_model
from reasonrl.tasks import get_task
from reasonrl.trainers.data import ProblemSource
from reasonrl.trainers.sft import collate, sft_loss, tokenize_example, train_sft

SMALL = dict(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, bpe_merges=64)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(TinyModelConfig(**SMALL, seed=0), tmp_path_factory.mktemp("tiny") / "m")


def load(path):
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_example_is_prompt_then_solution_then_eos(tiny_dir):
    _, tok = load(tiny_dir)
    problem = get_task("arith").make_generator().generate(0)
    prompt_ids, response_ids = tokenize_example(tok, problem, "worked_solution", 512, tok.eos_token_id)
    assert tok.decode(response_ids) == problem["metadata"]["worked_solution"] + "<|im_end|>"
    assert tok.decode(prompt_ids).endswith("<|im_start|>assistant\n")
    assert tokenize_example(tok, problem, "worked_solution", 10, tok.eos_token_id) is None  # too long: skipped
    with pytest.raises(KeyError, match="no metadata\\['missing'\\]"):
        tokenize_example(tok, problem, "missing", 512, tok.eos_token_id)


def test_collate_masks_prompt_and_padding():
    batch = collate([([1, 2, 3], [4, 5]), ([6], [7])], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 7, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[-100, -100, -100, 4, 5], [-100, 7, -100, -100, -100]]


def test_loss_counts_only_response_tokens(tiny_dir):
    model, _ = load(tiny_dir)
    batch = collate([([1, 2, 3], [4, 5])], pad_token_id=0)
    logits = model(input_ids=batch["input_ids"]).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    expected = -(logp[2, 4] + logp[3, 5]) / 2  # positions 2 and 3 predict tokens 4 and 5
    assert sft_loss(model, batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_sft_learns_and_stops_at_target(tiny_dir):
    torch.manual_seed(0)
    model, tok = load(tiny_dir)
    # 1-digit addition with the answer tag only: a 32-wide model picks the format up within ~60 steps.
    source = ProblemSource(get_task("arith"), seed=0, task_options={"digits": 1}, num_test=8, num_val=16)
    config = SFTConfig(max_steps=60, batch_size=16, lr=3e-3, warmup_steps=10, target_accuracy=0.0)
    stream = source.stream("sft")
    examples = [tokenize_example(tok, p, "worked_solution", 512, tok.eos_token_id) for p in source.heldout("val")]
    held = collate(examples, tok.pad_token_id)
    with torch.no_grad():
        before = sft_loss(model, held).item()
    result = train_sft(model, tok, stream, config, seed=0, progress=False, log=lambda m: None)
    with torch.no_grad():
        after = sft_loss(model, held).item()
    assert result.steps == 60 and not result.stopped_early and stream.position >= 60 * 16
    assert after < before * 0.5, (before, after)
    # Early stop: training ends at the first validation check that reaches the target.
    result = train_sft(model, tok, source.stream("sft2"), replace(config, max_steps=60, target_accuracy=1e-4, eval_every=10),
                       seed=0, val_problems=source.heldout("val"), max_tokens=8, progress=False, log=lambda m: None)
    assert result.stopped_early and result.val_accuracy > 0
    assert result.steps == result.history[-1]["step"] and result.steps % 10 == 0 and result.steps < 60
    assert all(h["val_accuracy"] < 1e-4 for h in result.history[:-1])
