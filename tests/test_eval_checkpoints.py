"""``reasonrl eval --model``: a broken checkpoint is one line naming the file (exit 2); a LoRA
adapter checkpoint is evaluated over its base."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from reasonrl.cli import main
from reasonrl.eval import runner
from reasonrl.eval.checkpoints import CheckpointError, check_checkpoint, load_causal_lm


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

    return Path(build_tiny_model(TinyModelConfig(hidden_size=32, num_layers=2, bpe_merges=0),
                                 tmp_path_factory.mktemp("tiny") / "model"))


def _broken(checkpoint: Path, tmp_path: Path, how) -> Path:
    copy = tmp_path / "broken"
    shutil.copytree(checkpoint, copy)
    how(copy)
    return copy


def _set_config(path: Path, **fields) -> None:
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **fields}))


def _truncate(path: Path) -> None:
    weights = path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])


BROKEN = {
    "corrupt config.json": (lambda p: (p / "config.json").write_text('{"model_type": "llama", '),
                            r"config\.json: not valid JSON \(line 1"),
    "config.json not an object": (lambda p: (p / "config.json").write_text("[1, 2]"), r"config\.json: expected a JSON object"),
    "truncated weights": (_truncate, r"model\.safetensors: truncated \(\d+ bytes; its header describes \d+\)"),
    "weights cut inside the header": (lambda p: (p / "model.safetensors").write_bytes(b"\x10\x00"),
                                      r"model\.safetensors: truncated or not a safetensors file"),
    "no weights": (lambda p: (p / "model.safetensors").unlink(), r"no model weights \(none of model\.safetensors"),
    "absurd vocab_size": (lambda p: _set_config(p, vocab_size=10**12),
                          r"config\.json: vocab_size 1000000000000 is not a vocabulary size"),
    "vocab_size unlike the weights": (lambda p: _set_config(p, vocab_size=json.loads((p / "config.json").read_text())["vocab_size"] + 7),
                                      r"config\.json: vocab_size \d+ does not match the weights \(model\.safetensors: .*embed_tokens\.weight has \d+ rows\)"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_checkpoint_is_one_line_naming_the_file(tiny_checkpoint, tmp_path, capsys, case):
    how, message = BROKEN[case]
    broken = _broken(tiny_checkpoint, tmp_path, how)
    code = main(["eval", "--model", str(broken), "--task", "arith", "--num-problems", "1", "--n", "1", "--k", "1",
                 "--output", str(tmp_path / "out" / "report.json"), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reasonrl eval: --model"), err
    assert "Traceback" not in err
    import re

    assert re.search(message, lines[0]), lines[0]
    assert str(broken) in lines[0]
    assert not (tmp_path / "out").exists()


def test_an_intact_checkpoint_passes_the_check(tiny_checkpoint):
    check_checkpoint(tiny_checkpoint)
    assert runner.check_model_dir(tiny_checkpoint) == tiny_checkpoint


def test_a_loading_error_the_check_cannot_see_is_one_line(tiny_checkpoint, tmp_path):
    broken = _broken(tiny_checkpoint, tmp_path, lambda p: _set_config(p, model_type="no-such-architecture"))
    with pytest.raises(runner.EvalError, match=r"the checkpoint does not load \(") as caught:
        runner.build_engine(broken, "hf", runner.EvalConfig(n=1, ks=(1,)))
    assert str(broken) in str(caught.value) and "\n" not in str(caught.value)


# --- LoRA -----------------------------------------------------------------------------------

MICRO = ["tiny.hidden_size=32", "tiny.num_layers=2", "tiny.bpe_merges=32", "sft.max_steps=5", "sft.batch_size=8",
         "sft.target_accuracy=0", "rollout.prompts_per_step=4", "rollout.group_size=4", "rollout.max_tokens=6",
         "eval.problems=4", "eval.samples=2", "sft.eval_problems=4", "steps=2", "save_every=1", "progress=false",
         "optim.lr=1e-2", "lora.r=4", "algorithm.kl_coef=0.05"]

# A reward with variance on a barely trained model, so that the adapter moves away from zero.
EVEN_LENGTH = """
def even_length(problems, responses):
    return [float(len(r) % 2 == 0) for r in responses]
"""


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    from reasonrl.config import TrainConfig, load_config
    from reasonrl.trainers.run import main as train

    root = tmp_path_factory.mktemp("lora")
    (root / "even.py").write_text(EVEN_LENGTH)
    mp = pytest.MonkeyPatch()
    mp.setenv("REASONRL_CACHE", str(root / "cache"))
    try:
        config = load_config(TrainConfig, None, [*MICRO, f"output_dir={root / 'run'}",
                                                 f"rewards=[{{name: {root / 'even.py'}:even_length}}]"])
        train(config, log=lambda m: None)
    finally:
        mp.undo()
    return root / "run"


def test_a_run_directory_resolves_to_its_newest_adapter_checkpoint(lora_run):
    newest = lora_run / "checkpoints" / "step-2"
    assert (newest / "adapter_config.json").exists() and not (newest / "model.safetensors").exists()
    assert runner.check_model_dir(lora_run) == newest


def test_eval_runs_a_lora_checkpoint_over_its_base(lora_run, tmp_path, capsys):
    out = tmp_path / "ev" / "report.json"
    assert main(["eval", "--model", str(lora_run), "--n", "2", "--k", "1", "--max-tokens", "8", "--output", str(out),
                 "--no-plots"]) == 0
    err = capsys.readouterr().err
    assert "evaluating its newest checkpoint" in err and "step-2" in err
    report = json.loads(out.read_text())
    assert report["model_path"] == str(lora_run / "checkpoints" / "step-2") and report["run"]["generated"] == 8
    assert 0.0 <= report["pass@k"]["1"] <= 1.0


def test_the_evaluated_model_is_the_base_with_the_adapter(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    checkpoint = lora_run / "checkpoints" / "step-2"
    base_dir = Path(json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"])
    ids = torch.arange(3, 40).unsqueeze(0)
    with torch.no_grad():
        merged = load_causal_lm(checkpoint)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
        base_logits = base(ids).logits
        unmerged = PeftModel.from_pretrained(base, str(checkpoint)).eval()(ids).logits
    assert not torch.allclose(merged, base_logits, atol=1e-5)  # the adapter changes what the model says
    torch.testing.assert_close(merged, unmerged, atol=1e-4, rtol=1e-4)  # and merging it changes nothing


def test_an_adapter_whose_base_is_gone_is_one_line(lora_run, tmp_path):
    copy = tmp_path / "adapter"
    shutil.copytree(lora_run / "checkpoints" / "step-2", copy)
    config = json.loads((copy / "adapter_config.json").read_text())
    (copy / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(runner.EvalError, match=r"adapter_config\.json: base_model_name_or_path .*gone.* is no folder here"):
        runner.check_model_dir(copy)
    (copy / "adapter_model.safetensors").unlink()
    (copy / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="without adapter weights"):
        check_checkpoint(copy)
