"""Checkpoint folders for ``reasonrl eval``: which folder to load, whether it can load, and loading it.

A checkpoint is either a whole model (``config.json`` and weights: ``model.safetensors``, a
sharded ``model.safetensors.index.json`` or ``pytorch_model*.bin``) or a LoRA adapter
(``adapter_config.json`` and ``adapter_model.safetensors``, as ``reasonrl train lora.r=...``
writes), whose ``base_model_name_or_path`` names the base checkpoint folder; the adapter is
loaded over the base with ``peft`` and merged into it. The tokenizer is read from the
checkpoint folder itself in both cases.

:func:`check_checkpoint` reads only the small files and the safetensors headers, so a broken
checkpoint (unreadable config, truncated weights, no weights, an impossible ``vocab_size``) is
one line naming the file before any model is built.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message names the file and what is wrong."""


ADAPTER_CONFIG = "adapter_config.json"
_MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# Beyond any real tokenizer by far (the largest are ~250k); a larger vocab_size in config.json
# would make transformers try to allocate an embedding of that many rows.
MAX_VOCAB_SIZE = 10_000_000
# Embedding tensors under the names the common architectures give them.
_EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight")


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` holds a whole model or a LoRA adapter (by its config file)."""
    return (path / "config.json").is_file() or (path / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | os.PathLike) -> Path | None:
    """The base checkpoint folder of a LoRA adapter checkpoint; None for a whole model.

    ``base_model_name_or_path`` is read as written (absolute, or relative to the working
    directory, as training wrote it) and else relative to the adapter's folder.
    """
    path = Path(path)
    config_file = path / ADAPTER_CONFIG
    if not config_file.is_file() or (path / "config.json").is_file() and _has_any(path, _MODEL_WEIGHTS):
        return None
    config = _json_object(config_file)
    base = config.get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise CheckpointError(f"{config_file}: field 'base_model_name_or_path' must name the base checkpoint folder, got {base!r}")
    for candidate in (Path(base), path / base):
        if candidate.is_dir():
            return candidate
    raise CheckpointError(
        f"{config_file}: base_model_name_or_path {base!r} is no folder here (the adapter loads over that base checkpoint)"
    )


def check_checkpoint(path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` naming the file when the checkpoint in ``path`` cannot load."""
    path = Path(path)
    base = adapter_base(path)
    if base is not None:
        if not _has_any(path, _ADAPTER_WEIGHTS):
            raise CheckpointError(f"{path}: a LoRA checkpoint ({ADAPTER_CONFIG}) without adapter weights "
                                  f"({' or '.join(_ADAPTER_WEIGHTS)})")
        _check_safetensors_files(path, "adapter_model*.safetensors")
        check_checkpoint(base)
        return
    config = _json_object(path / "config.json")
    if not _has_any(path, _MODEL_WEIGHTS) and not any(path.glob("pytorch_model-*.bin")):
        raise CheckpointError(f"{path}: no model weights (none of {', '.join(_MODEL_WEIGHTS)})")
    headers = _check_safetensors_files(path, "model*.safetensors")
    _check_vocab_size(path / "config.json", config, headers)


def load_causal_lm(path: str | os.PathLike, dtype: Any = None) -> Any:
    """The model of a checkpoint folder, an adapter merged into its base (see the module docstring)."""
    import torch
    from transformers import AutoModelForCausalLM

    base = adapter_base(path)
    model = AutoModelForCausalLM.from_pretrained(str(base or path), dtype=dtype or torch.float32)
    if base is not None:
        try:
            from peft import PeftModel
        except ImportError:
            raise CheckpointError(f"{path}: a LoRA checkpoint needs peft (pip install 'reasonrl[lora]')") from None
        # Merged, the adapter costs nothing per token at generation time.
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    return model.eval()


def _has_any(path: Path, names: tuple[str, ...]) -> bool:
    return any((path / name).is_file() for name in names)


def _json_object(file: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{file}: not UTF-8 text (a corrupt file?)") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{file}: expected a JSON object, got {type(loaded).__name__}")
    return loaded


def _check_safetensors_files(path: Path, pattern: str) -> dict[str, dict[str, Any]]:
    """Every matching safetensors file's header, each checked against the file's size."""
    return {file.name: _safetensors_header(file) for file in sorted(path.glob(pattern))}


def _safetensors_header(file: Path) -> dict[str, Any]:
    """The tensor table of a safetensors file; a file shorter than its header says is truncated.

    The format: 8 bytes (little-endian header length N), N bytes of JSON giving each tensor's
    dtype, shape and ``data_offsets`` into the data that follows.
    """
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > size - 8:
            raise CheckpointError(f"{file}: truncated or not a safetensors file ({size} bytes, no complete header)")
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"{file}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: not a safetensors file (its header is not a JSON object)")
    tensors = {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}
    end = max((int(v.get("data_offsets", (0, 0))[1]) for v in tensors.values()), default=0)
    if 8 + length + end > size:
        raise CheckpointError(f"{file}: truncated ({size} bytes; its header describes {8 + length + end})")
    return tensors


def _check_vocab_size(config_file: Path, config: dict[str, Any], headers: dict[str, dict[str, Any]]) -> None:
    vocab = config.get("vocab_size")
    if vocab is None:
        return
    if isinstance(vocab, bool) or not isinstance(vocab, int) or not 1 <= vocab <= MAX_VOCAB_SIZE:
        raise CheckpointError(f"{config_file}: vocab_size {vocab!r} is not a vocabulary size (1..{MAX_VOCAB_SIZE:,})")
    for file, tensors in headers.items():
        for name, tensor in tensors.items():
            shape = tensor.get("shape") or []
            if name.endswith(_EMBEDDING_SUFFIXES) and shape and shape[0] != vocab:
                raise CheckpointError(
                    f"{config_file}: vocab_size {vocab} does not match the weights ({file}: {name} has {shape[0]} rows)"
                )
