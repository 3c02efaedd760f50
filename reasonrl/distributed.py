"""Multi-process training support: process-group setup, DeepSpeed ZeRO configs and wrapping.

Launch with the standard launchers; every rank runs the same script:

    torchrun --nproc_per_node 2 -m reasonrl.cli train ...          # one node, 2 processes
    torchrun --nnodes 2 --node_rank R --master_addr H --nproc_per_node 8 ...
    deepspeed --num_gpus 8 ...                                   # DeepSpeed's launcher works too

The launcher sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them (and sets single-process defaults when absent, so the same
code runs unlaunched). Backend: NCCL on GPUs, gloo on CPU (DeepSpeed runs on CPU with gloo; this
is how the 2-rank path is tested on a CPU-only machine).

:class:`reasonrl.trainers.rl.RLTrainer` does this when ``WORLD_SIZE`` > 1 (``reasonrl train``
under ``torchrun``). How a trainer uses this module::

    ctx = init_distributed()                         # before building the model
    ds_config = deepspeed_config(stage=2, micro_batch_size=mb, grad_accum_steps=ga,
                                 world_size=ctx.world_size, lr=lr, grad_clip=1.0, bf16=on_gpu)
    engine = wrap_with_deepspeed(model, ds_config)   # engine.module is the HF model; forward via engine(...)
    my_rows = shard_for_rank(global_batch_rows, ctx)  # after advantages: they need the whole batch
    for micro in micro_batches(my_rows):
        loss, metrics = compute_policy_loss(..., num_tokens=micro_batch_normalizer(
            global_token_count, ctx.world_size, ga))
        engine.backward(loss)
        engine.step()                                 # after EVERY backward: DeepSpeed counts micro-batches
                                                      # here and updates on every ga-th call
    state = gathered_state_dict(engine)               # full weights (ZeRO-3 too) for vLLM sync / saving

**Matching the single-process loss.** DeepSpeed averages gradients over ranks and divides each
micro-batch loss by ``grad_accum_steps``. So that W ranks × GA micro-batches give exactly the
gradient of the single-process "sum of token losses / N tokens of the global batch", each
micro-batch divides its token-loss sum by ``N / (W·GA)`` (:func:`micro_batch_normalizer`),
not by its own token count (a per-shard mean would weigh tokens of short shards more).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, TypeVar

import torch

ZERO_STAGES = (0, 1, 2, 3)
T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits. ``world_size == 1`` when not launched by a distributed launcher."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    backend: str = "gloo"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files, logs metrics and shows the progress bar."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from error


def init_distributed(backend: str | None = None, *, use_deepspeed: bool = True) -> DistributedContext:
    """Initialise the default process group from the launcher's environment (idempotent).

    Args:
        backend: ``nccl`` or ``gloo``; default NCCL when CUDA is available, else gloo.
        use_deepspeed: initialise through ``deepspeed.init_distributed`` (DeepSpeed then knows
            the group); False uses ``torch.distributed`` directly.

    Returns:
        The :class:`DistributedContext`. Without a launcher, a world of one is set up (DeepSpeed
        needs a process group even then) on ``MASTER_PORT`` (default 29500).
    """
    import torch.distributed as dist

    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"unknown backend {backend!r}; valid choices: nccl, gloo")
    rank = _env_int("RANK", 0)
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", rank)
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} must lie in [0, WORLD_SIZE={world_size})")
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("LOCAL_RANK", str(local_rank))
    os.environ.setdefault("WORLD_SIZE", str(world_size))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        if use_deepspeed:
            import deepspeed

            deepspeed.init_distributed(dist_backend=backend, verbose=False)
        else:
            dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=dist.get_rank(), local_rank=local_rank, world_size=dist.get_world_size(), backend=backend)


def deepspeed_config(
    stage: int,
    *,
    micro_batch_size: int,
    grad_accum_steps: int = 1,
    world_size: int = 1,
    lr: float = 1e-6,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
    bf16: bool = False,
    offload_optimizer: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A DeepSpeed config dict for ZeRO ``stage`` with an AdamW optimizer.

    The optimizer runs as ``torch.optim.AdamW`` (``"torch_adam": true``): DeepSpeed's fused
    Adam needs a JIT-built extension that is unavailable on CPU and failed to build on an H100
    (ENVIRONMENT.md), and the torch one matches a plain single-process AdamW bit for bit in
    maths. ``train_batch_size`` = micro × accumulation × world size (DeepSpeed checks it).

    Args:
        stage: ZeRO stage 0–3 (2: shard optimizer state and gradients; 3: parameters too).
        micro_batch_size: sequences per rank per forward/backward.
        grad_accum_steps: micro-batches per optimizer step on each rank.
        world_size: number of ranks.
        lr, betas, eps, weight_decay: AdamW settings.
        grad_clip: max global gradient norm, or None for no clipping (written as 0.0:
            DeepSpeed's own default is to clip at 1.0).
        bf16: train in bfloat16 (GPUs; keep False on CPU).
        offload_optimizer: keep the optimizer state on the CPU (stage ≥ 1).
        extra: keys merged last (e.g. ``{"zero_optimization": {...}}`` replaces that section).
    """
    if stage not in ZERO_STAGES:
        raise ValueError(f"ZeRO stage must be one of {ZERO_STAGES}, got {stage!r}")
    for name, value in (("micro_batch_size", micro_batch_size), ("grad_accum_steps", grad_accum_steps), ("world_size", world_size)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if offload_optimizer and stage == 0:
        raise ValueError("offload_optimizer needs ZeRO stage >= 1")
    zero: dict[str, Any] = {"stage": stage}
    if stage >= 2:
        zero.update(overlap_comm=False, contiguous_gradients=True)
    if stage == 3:
        # Saving and weight sync need whole 16-bit weights gathered on rank 0.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch_size),
        "gradient_accumulation_steps": int(grad_accum_steps),
        "train_batch_size": int(micro_batch_size) * int(grad_accum_steps) * int(world_size),
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": lr, "betas": list(betas), "eps": eps, "weight_decay": weight_decay, "torch_adam": True},
        },
        "zero_optimization": zero,
        "bf16": {"enabled": bool(bf16)},
        "steps_per_print": 10**9,  # the trainer logs; keep DeepSpeed quiet
        "wall_clock_breakdown": False,
    }
    # Always explicit: DeepSpeed 0.19 clips at 1.0 when the key is absent.
    config["gradient_clipping"] = 0.0 if grad_clip is None else float(grad_clip)
    if extra:
        config.update(dict(extra))
    return config


def wrap_with_deepspeed(
    model: torch.nn.Module, config: Mapping[str, Any], optimizer: Any = None, param_groups: list[dict[str, Any]] | None = None
) -> Any:
    """Wrap ``model`` in a DeepSpeed engine.

    Args:
        model: the (HF) module; reach it again as ``engine.module``.
        config: from :func:`deepspeed_config`.
        optimizer: optional client optimizer (an instance, or a callable taking the parameters);
            it replaces the config's ``optimizer`` section (DeepSpeed then needs
            ``zero_allow_untested_optimizer``, set here).
        param_groups: optional torch-style parameter groups (each with its own ``lr``); default
            every trainable parameter of ``model`` in one group.

    Returns:
        The ``DeepSpeedEngine``: ``engine(**batch)``, ``engine.backward(loss)``, ``engine.step()``
        (steps the optimizer at accumulation boundaries), ``engine.optimizer``.

    Run the training forward through the engine, ``engine(input_ids=...)``, not through
    ``engine.module``: under ZeRO-3 a forward through the bare module gave wrong gradients in
    the 2-rank test (every update off), through the engine it matches one process exactly.
    """
    import deepspeed

    config = dict(config)
    if optimizer is not None:
        config.pop("optimizer", None)
        config["zero_allow_untested_optimizer"] = True
    parameters = param_groups if param_groups is not None else [p for p in model.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=parameters, optimizer=optimizer, config=config)
    return engine


def micro_batch_normalizer(global_count: float, world_size: int = 1, grad_accum_steps: int = 1) -> float:
    """The ``num_tokens`` (or ``num_sequences``) each micro-batch's loss divides by under DeepSpeed.

    DeepSpeed averages gradients over ``world_size`` ranks and scales each micro-batch loss by
    1/``grad_accum_steps``; dividing each micro-batch's sum by ``global_count / (W·GA)`` makes
    the step's gradient that of ``sum / global_count`` over the whole global batch.
    (A plain single-process loop that sums micro-batch gradients itself uses ``global_count``.)
    """
    if world_size < 1 or grad_accum_steps < 1:
        raise ValueError(f"world_size and grad_accum_steps must be >= 1, got {world_size}, {grad_accum_steps}")
    return max(float(global_count), 1.0) / (world_size * grad_accum_steps)


def shard_for_rank(items: Sequence[T], context: DistributedContext) -> list[T]:
    """This rank's contiguous share of a global batch (whole groups stay together when the
    batch is ordered by group and the group count divides evenly).

    Raises when the batch does not divide evenly: ranks with different sample counts would
    run different numbers of micro-batches and deadlock in the gradient all-reduce.
    """
    if len(items) % context.world_size:
        raise ValueError(f"global batch of {len(items)} does not divide over {context.world_size} ranks")
    share = len(items) // context.world_size
    return list(items[context.rank * share : (context.rank + 1) * share])


def gathered_state_dict(engine_or_model: Any) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights as a CPU state dict, on every rank.

    Under ZeRO-3 parameters are partitioned; they are gathered with
    ``deepspeed.zero.GatheredParameters`` (a collective: call it on all ranks). Under stages 0–2
    every rank already holds the whole parameters.
    """
    module = engine_or_model.module if hasattr(engine_or_model, "module") else engine_or_model
    partitioned = any(hasattr(p, "ds_id") for p in module.parameters())
    if not partitioned:
        return {name: tensor.detach().to("cpu").clone() for name, tensor in module.state_dict().items()}
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        return {name: tensor.detach().to("cpu").clone() for name, tensor in module.state_dict().items()}


def all_reduce_mean(values: Mapping[str, float], context: DistributedContext) -> dict[str, float]:
    """Average scalar metrics over ranks (a no-op in a world of one)."""
    if context.world_size == 1 or not values:
        return dict(values)
    import torch.distributed as dist

    keys = sorted(values)
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    tensor /= context.world_size
    return dict(zip(keys, tensor.tolist()))
