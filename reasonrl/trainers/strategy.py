"""One process or several ranks: every multi-rank branch of a trainer lives here.

A :class:`Strategy` knows where this process sits (rank, world size) and does the collective
pieces: each rank's share of a list of items, gathering objects and tensors, running a piece of
the job on rank 0 only. :meth:`Strategy.optimizer` builds the object that owns the gradient
arithmetic of a :class:`~reasonrl.trainers.learner.Learner`:

* :class:`TorchOptimizer` — one process: a plain ``torch.optim.AdamW``; the learner sums the
  micro-batch gradients itself and clips and steps at the end of each minibatch.
* :class:`DeepSpeedOptimizer` — several ranks: a DeepSpeed ZeRO engine. Each rank trains on its
  share of every minibatch; DeepSpeed averages the gradients over the ranks and divides every
  backward by its accumulation count, so the normalisers are scaled to match and a short share
  is padded with zero-loss passes. The step then equals the one-process step on the whole minibatch.

A trainer's loop reads the same for one process and for eight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from reasonrl.distributed import DistributedContext, micro_batch_normalizer


@dataclass(frozen=True)
class OptimizerSettings:
    """AdamW and update-shape settings of one learner."""

    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    minibatch_rows: int = 0  # rows per optimizer step over all ranks (0 = the whole batch)
    micro_batch_rows: int = 0  # rows per forward/backward (0 = the minibatch share)
    batch_rows: int = 0  # rows of a full batch (fixes DeepSpeed's accumulation count)
    zero_stage: int = 2
    offload_optimizer: bool = False


@dataclass
class ParamGroup:
    """The trainable parameters of one model role, with its own learning rate and weight decay."""

    role: str
    params: list[torch.nn.Parameter]
    lr: float
    weight_decay: float = 0.0


class Strategy:
    """One process (the base class) — see :class:`DistributedStrategy` for several ranks."""

    world_size = 1
    rank = 0
    is_main = True
    context: DistributedContext | None = None

    def rank_slice(self, count: int) -> tuple[int, int]:
        """``[first, last)`` of this rank's contiguous share of ``count`` items (the last ranks'
        shares may be shorter or empty)."""
        return 0, count

    def gather_objects(self, mine: Any) -> list[Any]:
        """Every rank's ``mine``, in rank order."""
        return [mine]

    def all_gather_rows(self, mine: torch.Tensor) -> torch.Tensor:
        """Rows of every rank (equal shapes), concatenated in rank order."""
        return mine

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on rank 0 and hand its result (or its error) to every rank."""
        return fn()

    def optimizer(self, module: torch.nn.Module, groups: Sequence[ParamGroup], settings: OptimizerSettings) -> "TorchOptimizer":
        return TorchOptimizer(module, groups, settings)

    def finish(self) -> None:
        """Leave the process group (a no-op in one process)."""


class DistributedStrategy(Strategy):
    """Several ranks in one ``torch.distributed`` process group (DeepSpeed's)."""

    def __init__(self, context: DistributedContext) -> None:
        self.context = context
        self.world_size = context.world_size
        self.rank = context.rank
        self.is_main = context.is_main

    def rank_slice(self, count: int) -> tuple[int, int]:
        share = -(-count // self.world_size)
        first = min(self.rank * share, count)
        return first, min(first + share, count)

    def gather_objects(self, mine: Any) -> list[Any]:
        import torch.distributed as dist

        shares: list[Any] = [None] * self.world_size
        dist.all_gather_object(shares, mine)
        return shares

    def all_gather_rows(self, mine: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine.contiguous())
        return torch.cat(parts)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except Exception as error:  # handed to every rank, raised everywhere
                box[0] = ("error", error)
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def optimizer(self, module: torch.nn.Module, groups: Sequence[ParamGroup], settings: OptimizerSettings) -> "DeepSpeedOptimizer":
        return DeepSpeedOptimizer(module, groups, settings, self.world_size)

    def finish(self) -> None:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


def start_strategy(world_size: int, device: str) -> Strategy:
    """The strategy of this launch: one process, or DeepSpeed's process group over ``world_size`` ranks."""
    if world_size <= 1:
        return Strategy()
    from reasonrl.distributed import init_distributed

    return DistributedStrategy(init_distributed("nccl" if device.startswith("cuda") else "gloo"))


class TorchOptimizer:
    """One process: AdamW, one param group per role; gradients summed over micro-batches."""

    distributed = False

    def __init__(self, module: torch.nn.Module, groups: Sequence[ParamGroup], settings: OptimizerSettings) -> None:
        self.forward_module = module
        self.settings = settings
        self.roles = [g.role for g in groups]
        self.optimizer = torch.optim.AdamW(
            [{"params": g.params, "lr": g.lr, "weight_decay": g.weight_decay} for g in groups], betas=settings.betas
        )

    def micro_rows(self, minibatch_rows: int) -> int:
        return self.settings.micro_batch_rows or minibatch_rows

    def share(self, rows: torch.Tensor, strategy: Strategy) -> torch.Tensor:
        return rows

    def normalizer(self, count: float) -> float:
        return count

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def finish_minibatch(self, micro_batches_run: int, pad: Callable[[], torch.Tensor]) -> float | None:
        """Clip and step; None (and no step: Adam's state stays untouched) when nothing ran."""
        if micro_batches_run == 0:
            return None
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.settings.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.settings.grad_clip)
        else:
            grad_norm = torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        self.optimizer.step()
        return float(grad_norm)

    def set_lrs(self, lrs: dict[str, float]) -> None:
        for role, group in zip(self.roles, self.optimizer.param_groups):
            group["lr"] = lrs[role]

    def reset_state(self, role: str) -> None:
        """Start ``role``'s Adam moments afresh (a reference reset asks for it). The state is zeroed
        in place, step counts too, which is what a new optimizer would start from; under ZeRO the
        inner optimizer holds this rank's flat partition of the group, zeroed the same way."""
        inner = getattr(self.optimizer, "optimizer", self.optimizer)
        for p in inner.param_groups[self.roles.index(role)]["params"]:
            for value in inner.state.get(p, {}).values():
                if isinstance(value, torch.Tensor):
                    value.zero_()

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state)


class DeepSpeedOptimizer(TorchOptimizer):
    """Several ranks: a DeepSpeed ZeRO engine owns the optimizer, and the training forward goes
    through the engine (under ZeRO-3 a forward through the bare module gives wrong gradients).

    Each rank updates on its share of every minibatch (``minibatch / world_size`` rows, in
    micro-batches of ``micro_batch_rows``): that is ``grad_accum_steps`` backward passes per
    optimizer step, the same count on every rank. Gradient clipping is DeepSpeed's (global norm
    over all ranks).
    """

    distributed = True

    def __init__(self, module: torch.nn.Module, groups: Sequence[ParamGroup], settings: OptimizerSettings, world_size: int) -> None:
        from reasonrl.distributed import deepspeed_config, wrap_with_deepspeed

        self.settings = settings
        self.roles = [g.role for g in groups]
        self.world_size = world_size
        rows_per_rank = (settings.minibatch_rows or settings.batch_rows) // world_size
        self.micro = min(settings.micro_batch_rows or rows_per_rank, rows_per_rank)  # fixed: the accumulation count depends on it
        self.grad_accum_steps = -(-rows_per_rank // self.micro)
        ds_config = deepspeed_config(
            settings.zero_stage, micro_batch_size=self.micro, grad_accum_steps=self.grad_accum_steps,
            world_size=world_size, lr=groups[0].lr, betas=settings.betas, weight_decay=groups[0].weight_decay,
            grad_clip=settings.grad_clip if settings.grad_clip > 0 else None, offload_optimizer=settings.offload_optimizer,
        )
        param_groups = [{"params": g.params, "lr": g.lr, "weight_decay": g.weight_decay} for g in groups]
        # fp32 master weights; bf16 comes from the same torch.autocast as in one process.
        self.engine = wrap_with_deepspeed(module, ds_config, param_groups=param_groups)
        self.forward_module = self.engine
        self.optimizer = self.engine.optimizer

    def micro_rows(self, minibatch_rows: int) -> int:
        return self.micro

    def share(self, rows: torch.Tensor, strategy: Strategy) -> torch.Tensor:
        first, last = strategy.rank_slice(len(rows))
        return rows[first:last]

    def normalizer(self, count: float) -> float:
        return micro_batch_normalizer(count, self.world_size, self.grad_accum_steps)

    def zero_grad(self) -> None:
        """DeepSpeed clears the gradients itself at each accumulation boundary."""

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)
        # DeepSpeed counts micro-batches in step(): called after every backward, it updates the
        # weights at the accumulation boundary (the minibatch's last one).
        self.engine.step()

    def finish_minibatch(self, micro_batches_run: int, pad: Callable[[], torch.Tensor]) -> float | None:
        # A short share (a dynamic-sampling batch that does not split evenly) still runs
        # grad_accum_steps backward passes, the extra ones with zero loss, so that every rank
        # joins every gradient reduction and the step falls on the boundary.
        for _ in range(self.grad_accum_steps - micro_batches_run):
            self.backward(pad() * 0.0)
        return float(self.engine.get_global_grad_norm() or 0.0)

    def state_dict(self) -> dict[str, Any]:
        raise RuntimeError("a DeepSpeed optimizer is saved with the engine's own checkpoint (save_deepspeed_checkpoint)")
