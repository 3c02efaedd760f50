"""Checkpoints for exact resume: Hugging Face weights plus optimizer, RNG and data-order state.

``OUTPUT_DIR/checkpoints/step-N/`` holds

* the model in Hugging Face format (``config.json``, ``model.safetensors``) and the tokenizer, so
  any checkpoint loads with ``AutoModelForCausalLM.from_pretrained`` (and in vLLM / ``reasonrl eval``);
* ``optimizer.pt`` — the optimizer's state dict (Adam moments and step counts);
* ``rng.pt`` — Python ``random``, NumPy and torch (CPU and CUDA) generator states;
* ``trainer_state.json`` — the step, the data streams' positions and anything else the trainer
  needs (JSON);
* ``extra.pt`` — optional extra modules (e.g. the PPO value head);
* ``roles/<name>/model.safetensors`` — every other model role that trained or drifted (a
  critic model, a reference synced from the policy), see :mod:`reasonrl.trainers.roles`.

A LoRA policy's checkpoint holds its adapter (``adapter_model.safetensors``, ``adapter_config.json``
naming the base), which ``peft`` and ``reasonrl eval`` load over the base.

A checkpoint is written into ``step-N.tmp``, every file fsync'd, and renamed when complete, so a
run killed while saving (or a machine losing power) never leaves a half checkpoint that a resume
would pick up. A resume reads a checkpoint whole before it changes anything, and a checkpoint that
does not load (a truncated file) is skipped for the one before it (:func:`restore_trainer`).

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


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded (missing, truncated or mismatched files)."""


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer | None,
    trainer_state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep: int = 0,
    roles: list[Any] = (),
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
    for role in roles:
        role.save(tmp / "roles")
    _finish(run_dir, tmp, final, step, trainer_state, keep)
    return final


def _finish(run_dir: str | os.PathLike, tmp: Path, final: Path, step: int, trainer_state: dict[str, Any], keep: int) -> None:
    """RNG and trainer state into ``tmp``, everything flushed to disk, then rename it to ``final``
    and drop old checkpoints."""
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "trainer_state.json").write_text(json.dumps({"step": step, **trainer_state}, indent=2) + "\n")
    # Without the fsyncs a power loss after the rename can leave a complete-looking checkpoint
    # whose files are empty or truncated: the rename reaches the disk before the data.
    for path in sorted(tmp.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(final.parent)
    if keep > 0:
        for old in list_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_deepspeed_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    engine: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    is_main: bool,
    keep: int = 0,
    roles: list[Any] = (),
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
    # Roles outside the engine (a synced reference); a role trained inside it lives in DeepSpeed's files.
    untrained = [role for role in roles if not role.trainable]
    for role in untrained:
        if is_main:
            role.save(tmp / "roles")
    if is_main:
        # The engine may wrap the policy with other trained modules (roles.PolicyWithCritic):
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
    checkpoint: str | os.PathLike, model: Any, optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True,
    roles: list[Any] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load weights into ``model`` (in place), the optimizer state, other ``roles`` and (optionally)
    the RNG states. Every file is read and checked before anything changes, so a checkpoint that
    does not load leaves the model and optimizer as they were.

    Returns:
        ``(trainer_state, extra)``.

    Raises:
        CheckpointError: a file is missing, truncated or does not match the model.
        CheckpointLaunchMismatch: written by a run over several ranks (resume with that launch).
    """
    checkpoint = Path(checkpoint)
    if optimizer is not None and not (checkpoint / "optimizer.pt").exists() and (checkpoint / DEEPSPEED_TAG).is_dir():
        raise CheckpointLaunchMismatch(
            f"{checkpoint} was written by a run over several ranks (DeepSpeed); resume it with the same launch command"
        )
    try:
        state = load_trainer_state(checkpoint)
        weights = _read_weights(checkpoint, model)
        optimizer_state = _torch_load(checkpoint / "optimizer.pt") if optimizer is not None and (checkpoint / "optimizer.pt").exists() else None
        rng = _torch_load(checkpoint / "rng.pt") if restore_rng and (checkpoint / "rng.pt").exists() else None
        extra = _torch_load(checkpoint / "extra.pt") if (checkpoint / "extra.pt").exists() else {}
        role_weights = {role.name: role.read(checkpoint / "roles") for role in roles if (checkpoint / "roles" / role.name).is_dir()}
    except CheckpointError:
        raise
    except Exception as error:  # truncated safetensors / pickles, unreadable JSON: all mean "does not load"
        raise CheckpointError(f"{type(error).__name__}: {error}") from error
    weights()  # loads into the model
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    for role in roles:
        if role.name in role_weights:
            role.apply(role_weights[role.name])
    if rng is not None:
        set_rng_state(rng)
    return state, extra


class CheckpointLaunchMismatch(RuntimeError):
    """A checkpoint written by one process resumed over several ranks, or the other way round."""


def _torch_load(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=False)


def _read_weights(checkpoint: Path, model: Any) -> Any:
    """Read and check the policy's weights (whole HF weights, or a LoRA adapter); returns the
    function that loads them into ``model``."""
    from safetensors.torch import load_file

    unwrapped = getattr(model, "module", model)
    if hasattr(unwrapped, "peft_config"):
        from peft import set_peft_model_state_dict

        adapter = checkpoint / "adapter_model.safetensors"
        if not adapter.exists():
            raise CheckpointError(f"{checkpoint}: no adapter_model.safetensors for the LoRA policy")
        adapter_weights = load_file(str(adapter))
        return lambda: set_peft_model_state_dict(unwrapped, adapter_weights)
    weights = {}
    for shard in sorted(checkpoint.glob("*.safetensors")):
        weights.update(load_file(str(shard)))
    if not weights:
        raise CheckpointError(f"{checkpoint}: no *.safetensors weights")
    # Tied embeddings are saved once; anything else missing means the checkpoint does not match the model.
    expected = set(unwrapped.state_dict())
    tied = {"lm_head.weight"} if getattr(unwrapped.config, "tie_word_embeddings", False) else set()
    missing, unexpected = expected - set(weights) - tied, set(weights) - expected
    if missing or unexpected:
        raise CheckpointError(f"{checkpoint}: weights do not match the model (missing {sorted(missing)}, unexpected {sorted(unexpected)})")
    return lambda: unwrapped.load_state_dict(weights, strict=False)


def restore_trainer(checkpoint: str | os.PathLike, trainer: Any) -> dict[str, Any]:
    """Restore a trainer's roles, optimizer and RNG from ``checkpoint``; returns the trainer state
    (the caller hands it to ``trainer.load_state``). Raises :class:`CheckpointError` when it does not load."""
    checkpoint = Path(checkpoint)
    others = [role for name, role in trainer.roles.items() if name != "policy"]
    if trainer.learner.distributed:
        if not (checkpoint / DEEPSPEED_TAG).is_dir():
            raise CheckpointLaunchMismatch(
                f"{checkpoint} holds no DeepSpeed state: it was written by a run in one process; resume it in one process"
            )
        try:
            _read_weights(checkpoint, trainer.policy.model)  # readable before DeepSpeed loads its own files
            untrained = [role for role in others if not role.trainable]
            role_weights = {r.name: r.read(checkpoint / "roles") for r in untrained if (checkpoint / "roles" / r.name).is_dir()}
            state = restore_deepspeed_checkpoint(checkpoint, trainer.learner.optimizer.engine)
        except (CheckpointError, CheckpointLaunchMismatch):
            raise
        except Exception as error:
            raise CheckpointError(f"{type(error).__name__}: {error}") from error
        for role in untrained:
            if role.name in role_weights:
                role.apply(role_weights[role.name])
        return state
    state, extra = restore_checkpoint(checkpoint, trainer.policy.model, trainer.learner.optimizer.optimizer, roles=others)
    if hasattr(trainer, "load_extra_state"):
        trainer.load_extra_state(extra)
    return state
