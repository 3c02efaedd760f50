"""Model roles: the policy, its reference, a critic, reward/cost models, a process reward model.

A :class:`ModelRole` is one model with a job in a trainer: where it was loaded from, whether it
trains (then it gets its own learning rate and schedule in its learner's optimizer), and how it
is checkpointed. Roles can be synchronised from one another — hard (``ref ← policy``) or soft
(``ref ← α·policy + (1−α)·ref``, TR-DPO) — and a role that has drifted from where it was loaded
is written into every checkpoint and restored on resume, the reference included.

LoRA (through ``peft``): with ``lora.r`` > 0 the policy is a LoRA adapter over a frozen base;
its reference is then the same base with the adapter disabled (:class:`AdapterDisabled`), so no
second copy of the weights is kept, and checkpoints hold the adapter (plus the merged-free base
path) rather than whole weights.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from reasonrl.trainers.logprobs import ValueHead

ROLE_FILE = "model.safetensors"


class RoleError(RuntimeError):
    """A role cannot be built or synchronised as asked (the message names the config key)."""


@dataclass
class ModelRole:
    """One model with a job.

    Attributes:
        name: ``policy``, ``reference``, ``critic``, ``reward``, ``cost``, ``prm`` ...
        model: the module (a ``transformers`` causal LM, a :class:`CriticModel`, ...).
        source: the checkpoint it was loaded from (a resumed run reloads it from there unless the
            role has drifted and was checkpointed).
        trainable: updated by a learner (it then has ``lr`` and ``schedule``).
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        schedule: ``step -> learning rate``.
        drifted: changed since it was loaded without being trained (a sync): checkpointed then.
    """

    name: str
    model: torch.nn.Module
    source: str = ""
    trainable: bool = False
    lr: float = 0.0
    weight_decay: float = 0.0
    schedule: Callable[[int], float] | None = None
    drifted: bool = False
    syncs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def checkpointed(self) -> bool:
        """Whether a checkpoint must hold this role's weights (trained, or synced since loading)."""
        return self.trainable or self.drifted

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    @torch.no_grad()
    def sync_from(self, source: "ModelRole", alpha: float = 1.0, step: int = 0) -> None:
        """``self ← α·source + (1−α)·self`` parameter by parameter (α = 1: a hard copy).

        Under ZeRO-3 the source's parameters are partitioned: they are gathered for the copy
        (a collective: every rank calls this).
        """
        if not 0.0 < alpha <= 1.0:
            raise RoleError(f"sync alpha must be in (0, 1], got {alpha}")
        if isinstance(self.model, AdapterDisabled):
            raise RoleError(
                "the reference of a LoRA policy is its base with the adapter disabled; syncing it from the "
                "policy would need a second copy of the model: set lora.r=0 for reference resets/syncs"
            )
        mine = dict(self.model.named_parameters())
        with _gathered(source.model) as theirs:
            for name, param in theirs:
                target = mine.get(name)
                if target is None:
                    raise RoleError(f"cannot sync role {self.name} from {source.name}: no parameter {name}")
                target.mul_(1.0 - alpha).add_(param.detach().to(target.device, target.dtype), alpha=alpha)
        self.drifted = True
        self.syncs.append({"step": step, "from": source.name, "alpha": alpha})

    def save(self, folder: Path) -> None:
        """This role's weights into ``folder/<name>/`` (safetensors of its whole state dict)."""
        from safetensors.torch import save_file

        target = folder / self.name
        target.mkdir(parents=True, exist_ok=True)
        with _gathered(self.model):
            state = {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}
        save_file(_untie(state), str(target / ROLE_FILE))

    def read(self, folder: Path) -> dict[str, torch.Tensor]:
        """The weights :meth:`save` wrote into ``folder``, checked against this role's model (not applied)."""
        from safetensors.torch import load_file

        path = folder / self.name / ROLE_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path}: the checkpoint holds no weights for the {self.name} role")
        weights = load_file(str(path))
        expected = set(self.model.state_dict())
        missing = {k for k in expected - set(weights) if not k.endswith("lm_head.weight")}
        if missing or set(weights) - expected:
            raise RuntimeError(f"{path}: weights do not match the {self.name} role (missing {sorted(missing)}, "
                               f"unexpected {sorted(set(weights) - expected)})")
        return weights

    def apply(self, weights: dict[str, torch.Tensor]) -> None:
        """Load weights from :meth:`read` (a role restored this way has drifted unless it trains)."""
        self.model.load_state_dict(weights, strict=False)
        self.drifted = not self.trainable


def _untie(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage (tied embeddings): keep one copy each."""
    seen: dict[int, str] = {}
    out = {}
    for key, tensor in state.items():
        ptr = tensor.data_ptr()
        if ptr in seen and tensor.numel() and seen[ptr] != key:
            continue
        seen[ptr] = key
        out[key] = tensor
    return out


@contextlib.contextmanager
def _gathered(model: torch.nn.Module) -> Iterator[Any]:
    """``model.named_parameters()`` with ZeRO-3 partitions gathered (a no-op otherwise)."""
    params = list(model.named_parameters())
    if any(hasattr(p, "ds_id") for _, p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in params], modifier_rank=None):
            yield params
    else:
        yield params


class CriticModel(torch.nn.Module):
    """A separate PPO critic: a transformer body (loaded from an HF checkpoint) and a value head.

    ``forward`` returns one value per position ``(B, L)``; :func:`~reasonrl.trainers.logprobs.response_values`
    reads the positions before each response token.
    """

    def __init__(self, body: torch.nn.Module, hidden_size: int) -> None:
        super().__init__()
        self.body = body
        self.value_head = ValueHead(hidden_size)

    @classmethod
    def from_pretrained(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> "CriticModel":
        from transformers import AutoModel

        body = AutoModel.from_pretrained(str(path), dtype=dtype)
        return cls(body, body.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        out = self.body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return self.value_head(out.last_hidden_state)


class PolicyWithCritic(torch.nn.Module):
    """What one learner steps when the policy trains together with a value head or a critic model:
    DeepSpeed shards, all-reduces and steps them as one module. Its forward is the policy's."""

    def __init__(self, policy: torch.nn.Module, critic: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.policy = policy
        self.critic = critic

    def forward(self, *args: Any, value_only: bool = False, **kwargs: Any) -> Any:
        # The critic model's forward goes through here too (value_only=True): under ZeRO-3 every
        # training forward must pass through the DeepSpeed engine that wraps this module.
        if value_only:
            return self.critic(**kwargs)
        return self.policy(*args, **kwargs)


class AdapterDisabled(torch.nn.Module):
    """The reference of a LoRA policy: the policy's own base weights with its adapter switched off
    for the forward pass (no second copy of the model in memory)."""

    def __init__(self, peft_model: Any) -> None:
        super().__init__()
        self._peft = [peft_model]  # a list: not registered as a submodule (its parameters are the policy's)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self._peft[0].disable_adapter():
            return self._peft[0](*args, **kwargs)

    def eval(self) -> "AdapterDisabled":
        return self


def apply_lora(model: Any, r: int, alpha: float, dropout: float, target_modules: str) -> Any:
    """Wrap a causal LM in a LoRA adapter (the base frozen); ``target_modules``: ``all-linear`` or
    comma-separated module names (``q_proj,v_proj``)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise RoleError("lora.r > 0 needs the peft package: pip install peft") from None
    targets: Any = "all-linear" if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",") if t.strip()]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


def is_lora(model: Any) -> bool:
    return hasattr(model, "peft_config")
