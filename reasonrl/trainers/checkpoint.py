"""Checkpoints for exact resume: Hugging Face weights plus optimizer, RNG and data-order state.

``OUTPUT_DIR/checkpoints/step-N/`` holds

* the model in Hugging Face format (``config.json``, ``model.safetensors``) and the tokenizer, so
  any checkpoint loads with ``AutoModelForCausalLM.from_pretrained`` (and in vLLM / ``reasonrl eval``);
* ``optimizer.pt`` — the optimizer's state dict (Adam moments and step counts);
* ``rng.pt`` — Python ``random``, NumPy and torch (CPU and CUDA) generator states;
* ``trainer_state.json`` — the step, the data streams' positions and anything else the trainer
  needs (JSON);
* ``extra.pt`` — optional extra modules (e.g. the PPO value head).

A checkpoint is written into ``step-N.tmp`` and renamed when complete, so a run killed while
saving never leaves a half checkpoint that a resume would pick up.

A run over several ranks (DeepSpeed ZeRO) writes the same files, except that the optimizer state
is DeepSpeed's own, one shard per rank, in ``deepspeed/`` (with its copy of the module weights):
see :func:`save_deepspeed_checkpoint`. The HF weights stay whole (gathered under ZeRO-3), so the
checkpoint still loads anywhere. Multi-node runs need ``OUTPUT_DIR`` on a filesystem every node sees.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch

_STEP_DIR = re.compile(r"^step-(\d+)$")
DEEPSPEED_TAG = "deepspeed"  # the folder of DeepSpeed's own files inside a checkpoint


def rng_state() -> dict[str, Any]:
    """Every global RNG state a training step may touch."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy ships with torch
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep: int = 0,
) -> Path:
    """Write ``run_dir/checkpoints/step-<step>/`` atomically; keep the newest ``keep`` (0 = all).

    Returns:
        The checkpoint directory.
    """
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    tmp = root / f"step-{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    unwrapped = getattr(model, "module", model)  # DeepSpeed / DDP wrappers
    unwrapped.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    if extra:
        torch.save(extra, tmp / "extra.pt")
    _finish(run_dir, tmp, final, step, trainer_state, keep)
    return final


def _finish(run_dir: str | os.PathLike, tmp: Path, final: Path, step: int, trainer_state: dict[str, Any], keep: int) -> None:
    """RNG and trainer state into ``tmp``, then rename it to ``final`` and drop old checkpoints."""
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def save_deepspeed_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    engine: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    is_main: bool,
    keep: int = 0,
) -> Path:
    """:func:`save_checkpoint` for a DeepSpeed engine; every rank calls it (it runs collectives).

    Rank 0 prepares ``step-N.tmp``; every rank writes its ZeRO shard into ``deepspeed/``; the
    whole weights are gathered and rank 0 writes them in HF format with the tokenizer, RNG and
    trainer state, then renames the directory.
    """
    import torch.distributed as dist

    from reasonrl.distributed import gathered_state_dict

    root = Path(run_dir) / "checkpoints"
    final, tmp = root / f"step-{step}", root / f"step-{step}.tmp"
    if is_main:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    dist.barrier()
    engine.save_checkpoint(str(tmp), tag=DEEPSPEED_TAG, save_latest=False)
    weights = gathered_state_dict(engine)
    if is_main:
        # The engine may wrap the policy with other trained modules (RLTrainer's PolicyAndValue):
        # the HF checkpoint holds the policy alone; the others live in DeepSpeed's files.
        policy = getattr(engine.module, "policy", engine.module)
        if policy is not engine.module:
            weights = {k[len("policy."):]: v for k, v in weights.items() if k.startswith("policy.")}
        if getattr(policy.config, "tie_word_embeddings", False):
            weights.pop("lm_head.weight", None)  # the gathered copies no longer share storage: keep one, as HF does
        policy.save_pretrained(tmp, state_dict=weights, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        _finish(run_dir, tmp, final, step, trainer_state, keep)
    dist.barrier()
    return final



def restore_deepspeed_checkpoint(checkpoint: str | os.PathLike, engine: Any, restore_rng: bool = True) -> dict[str, Any]:
    """Load a :func:`save_deepspeed_checkpoint` into ``engine`` (weights and ZeRO optimizer shards,
    on every rank); returns the trainer state."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / DEEPSPEED_TAG).is_dir():
        raise FileNotFoundError(
            f"{checkpoint} holds no DeepSpeed state: it was written by a run in one process; resume it in one process"
        )
    path, _ = engine.load_checkpoint(str(checkpoint), tag=DEEPSPEED_TAG, load_optimizer_states=True,
                                     load_lr_scheduler_states=False)
    if path is None:
        raise RuntimeError(f"DeepSpeed could not load {checkpoint / DEEPSPEED_TAG}")
    if restore_rng and (checkpoint / "rng.pt").exists():
        set_rng_state(torch.load(checkpoint / "rng.pt", weights_only=False))
    return load_trainer_state(checkpoint)


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / "trainer_state.json").exists():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint, or None."""
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def load_trainer_state(checkpoint: str | os.PathLike) -> dict[str, Any]:
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())


def restore_checkpoint(
    checkpoint: str | os.PathLike, model: Any, optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load weights into ``model`` (in place), the optimizer state and (optionally) the RNG states.

    Returns:
        ``(trainer_state, extra)``.
    """
    from safetensors.torch import load_file

    checkpoint = Path(checkpoint)
    unwrapped = getattr(model, "module", model)
    weights = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        weights.update(load_file(str(shard)))
    if not weights:
        raise FileNotFoundError(f"{checkpoint}: no *.safetensors weights")
    missing, unexpected = unwrapped.load_state_dict(weights, strict=False)
    # Tied embeddings are saved once; anything else missing means the checkpoint does not match the model.
    tied = {"lm_head.weight"} if getattr(unwrapped.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"{checkpoint}: weights do not match the model (missing {missing}, unexpected {unexpected})")
    if optimizer is not None and not (checkpoint / "optimizer.pt").exists() and (checkpoint / DEEPSPEED_TAG).is_dir():
        raise FileNotFoundError(
            f"{checkpoint} was written by a run over several ranks (DeepSpeed); resume it with the same launch command"
        )
    if optimizer is not None and (checkpoint / "optimizer.pt").exists():
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=False))
    if restore_rng and (checkpoint / "rng.pt").exists():
        set_rng_state(torch.load(checkpoint / "rng.pt", weights_only=False))
    extra = torch.load(checkpoint / "extra.pt", weights_only=False) if (checkpoint / "extra.pt").exists() else {}
    return load_trainer_state(checkpoint), extra
