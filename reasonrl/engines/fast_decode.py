"""A faster decode loop for Hugging Face decoder-only models: static KV cache, optional CUDA graphs.

:class:`FastHFEngine` is a drop-in :class:`~reasonrl.engines.hf_engine.HFEngine` (same arguments,
same :class:`~reasonrl.engines.base.Sample` output, same weight sharing with the trainer) whose
token-by-token decode does not go through the model's ``forward``:

* **Prefill** is the model's own forward pass (each distinct prompt once, as in ``HFEngine``); its
  keys and values are copied into a preallocated **static KV cache** ``(B, kv_heads, L, head_dim)``
  per layer, repeated for the ``n`` samples of each prompt.
* **Each decode step** runs the model's own submodules (embedding, RMSNorm, q/k/v/o projections,
  rotary embedding, MLP, final norm, LM head) in a short loop written here: it writes the new key
  and value in place at the step's cache column and attends over the whole static cache with a
  boolean mask (padding and not-yet-written columns masked out). No per-step mask building, no
  cache concatenation, fixed shapes.
* **On CUDA** the decode step is captured once per (batch, cache length) as a CUDA graph and
  replayed, so a step costs one graph launch instead of hundreds of kernel launches from Python
  (decode of a ~0.5B model at batch 64 is launch-bound: that is where HF ``generate``'s time goes).
  The graph reads the parameters in place, so optimizer steps show up in the next rollout; a
  parameter whose storage moved (``model.to(...)``, a reload) is detected and the graph recaptured.
* Rows that finished keep their (fixed) slot until every row is done; finished rows, EOS and stop
  strings are checked on the host every ``check_every`` steps (every step on CPU), which spares a
  device synchronisation per token. Tokens past a row's end are discarded, so the samples are the
  ones ``HFEngine`` would return.

Equality with ``HFEngine``: the math is the same function of the same weights, so greedy outputs
are the same tokens and log-probs agree to float rounding (attention sums over a longer, masked
cache). Sampled outputs follow the same distribution (softmax(logits / T), top-p as ``HFEngine``)
but draw their random numbers differently -- exact categorical sampling without
``torch.multinomial`` (slow on CPU, a synchronisation on GPU): an exponential race on GPU, an
inverse-CDF draw on CPU (see :func:`_sample_fast`) -- so a seed gives different (equally valid)
samples than ``HFEngine`` with the same seed; a seed still makes a call repeatable.

Supported: Qwen2, Qwen3, Llama and Mistral-style models (pre-norm decoder layers with
``self_attn.{q,k,v,o}_proj``, rotary ``model.rotary_emb``, no sliding-window layers). Any other
model falls back to ``HFEngine``'s loop (:attr:`FastHFEngine.fast_path` says which one runs).
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from reasonrl.engines.base import Sample, SamplingParams
from reasonrl.engines.hf_engine import HFEngine

SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")


class FastHFEngine(HFEngine):
    """``HFEngine`` with a static-KV-cache decode loop (CUDA-graphed on GPU).

    Args:
        model, tokenizer, max_batch_size, eos_token_ids: as :class:`HFEngine`.
        cuda_graph: capture the decode step as a CUDA graph (default: on when the model is on CUDA).
        check_every: decode steps between host-side checks for finished rows and stop strings
            (default: 1 on CPU, 8 on CUDA).
        cache_bucket: the static cache length is rounded up to a multiple of this, so calls with
            slightly different prompt widths reuse one captured graph.
        max_graphs: captured graphs kept (each holds its own static KV cache).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch_size: int = 256,
        eos_token_ids: Sequence[int] | None = None,
        cuda_graph: bool | None = None,
        check_every: int | None = None,
        cache_bucket: int = 64,
        max_graphs: int = 2,
    ) -> None:
        super().__init__(model, tokenizer, max_batch_size=max_batch_size, eos_token_ids=eos_token_ids)
        self.cuda_graph = cuda_graph
        self.check_every = check_every
        self.cache_bucket = max(1, int(cache_bucket))
        self.max_graphs = max(1, int(max_graphs))
        self._steppers: "OrderedDict[tuple, _Stepper]" = OrderedDict()
        self.unsupported_reason = _unsupported_reason(model)
        self.graph_captures = 0  # how many CUDA graphs were captured (for tests and logs)
        self.graph_error: str | None = None  # why the last capture failed (decode then runs eagerly)

    @property
    def fast_path(self) -> bool:
        """True when the static-cache decode runs (else ``HFEngine``'s loop)."""
        return self.unsupported_reason is None

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        """Sample ``params.n`` responses per prompt; same contract as :meth:`HFEngine.generate`."""
        if not self.fast_path:
            return super().generate(prompts, params)
        if params.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {params.n}")
        if params.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {params.max_tokens}")
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(int(params.seed))
        results: list[list[Sample]] = [[] for _ in prompts]
        prompts_per_chunk = max(1, self.max_batch_size // params.n)
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(encoded), prompts_per_chunk):
                chunk = encoded[start : start + prompts_per_chunk]
                for offset, group in enumerate(self._fast_chunk(chunk, params, generator)):
                    results[start + offset] = group
        finally:
            if was_training:
                self.model.train()
        return results

    def sync_weights(self, model: Any) -> None:
        super().sync_weights(model)  # load_state_dict copies in place: captured graphs stay valid

    # ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _fast_chunk(
        self, prompt_ids: list[list[int]], params: SamplingParams, generator: torch.Generator | None
    ) -> list[list[Sample]]:
        from transformers import DynamicCache

        device = self.device
        n, num_prompts = params.n, len(prompt_ids)
        total = num_prompts * n
        input_ids, attention, positions = self._left_padded(prompt_ids)
        width = input_ids.shape[1]

        # Prefill with the model's own forward pass, each distinct prompt once.
        out = self.model(
            input_ids=input_ids, attention_mask=attention, position_ids=positions, past_key_values=DynamicCache(),
            use_cache=True, logits_to_keep=1,
        )
        logits = out.logits[:, -1, :].float().repeat_interleave(n, dim=0)

        needed = width + params.max_tokens  # the last sampled token is never fed back: one spare column
        length = -(-needed // self.cache_bucket) * self.cache_bucket
        stepper = self._stepper(total, length)
        stepper.load_prefill(_cache_tensors(out.past_key_values), attention.bool(), n)
        del out
        next_position = positions[:, -1].repeat_interleave(n) + 1

        check_every = self.check_every or (8 if device.type == "cuda" else 1)
        eos = torch.tensor(self.eos_token_ids, device=device)
        tokens = torch.full((total, params.max_tokens), self.pad_token_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((total, params.max_tokens), dtype=torch.float32, device=device)
        lengths = torch.zeros(total, dtype=torch.long, device=device)
        finished = torch.zeros(total, dtype=torch.bool, device=device)
        ended_on_eos = torch.zeros(total, dtype=torch.bool, device=device)

        for step in range(params.max_tokens):
            chosen, chosen_logprob = _sample_fast(logits, params.temperature, params.top_p, generator)
            alive = ~finished
            tokens[:, step] = chosen
            logprobs[:, step] = chosen_logprob
            lengths += alive.long()
            hit_eos = alive & torch.isin(chosen, eos)
            ended_on_eos |= hit_eos
            finished |= hit_eos
            if step == params.max_tokens - 1:
                break
            if (step + 1) % check_every == 0:
                if params.stop:
                    finished |= self._stop_rows(tokens, lengths, finished, params.stop)
                if bool(finished.all()):
                    break
            logits = stepper.step(chosen, next_position, width + step)
            next_position = next_position + 1

        return self._samples(tokens, logprobs, lengths, ended_on_eos, params, prompt_ids)

    def _stop_rows(self, tokens: torch.Tensor, lengths: torch.Tensor, finished: torch.Tensor, stop: tuple[str, ...]) -> torch.Tensor:
        """Rows (not yet finished) whose text so far contains a stop string.

        Tokens after the stop string are cut off by ``_make_sample`` (as in ``HFEngine``), so
        checking every few steps returns the same samples as checking every step.
        """
        alive = (~finished).nonzero(as_tuple=True)[0].tolist()
        hits = torch.zeros_like(finished)
        if not alive:
            return hits
        rows = tokens[alive].tolist()
        sizes = lengths[alive].tolist()
        texts = self.tokenizer.batch_decode([r[:s] for r, s in zip(rows, sizes)], skip_special_tokens=True)
        for row, text in zip(alive, texts):
            if any(s in text for s in stop):
                hits[row] = True
        return hits

    def _stepper(self, batch: int, length: int) -> "_Stepper":
        """The decode stepper for this shape (captured graph reused when parameters did not move)."""
        use_graph = self.cuda_graph if self.cuda_graph is not None else self.device.type == "cuda"
        use_graph = bool(use_graph) and self.device.type == "cuda"
        key = (batch, length, use_graph)
        stepper = self._steppers.get(key)
        if stepper is not None and stepper.param_ptrs != _param_ptrs(self.model):
            del self._steppers[key]
            stepper = None
        if stepper is None:
            while len(self._steppers) >= self.max_graphs:
                self._steppers.popitem(last=False)
            stepper = _Stepper(self.model, batch, length, use_graph)
            self.graph_captures += int(stepper.graph is not None)
            if use_graph and stepper.graph is None:
                self.graph_error = stepper.capture_error
            self._steppers[key] = stepper
        self._steppers.move_to_end(key)
        return stepper


# ----------------------------------------------------------------------------------------------
# The decode step
# ----------------------------------------------------------------------------------------------


@dataclass
class _Layout:
    """The submodules a decode step calls, and the attention sizes."""

    embed: Any
    layers: list
    norm: Any
    rotary: Any
    lm_head: Any
    num_heads: int
    num_kv_heads: int
    head_dim: int


def _unsupported_reason(model: Any) -> str | None:
    """Why the static-cache decode cannot run this model (None when it can)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb") or not hasattr(model, "lm_head"):
        return "the model has no model.layers / model.rotary_emb / lm_head"
    if any(t != "full_attention" for t in (getattr(config, "layer_types", None) or ())):
        return "sliding-window attention layers are not supported"
    if model_type == "mistral" and getattr(config, "sliding_window", None):
        return "sliding-window attention is not supported"
    rope_type = getattr(inner.rotary_emb, "rope_type", "default")
    rope_types = rope_type.values() if isinstance(rope_type, dict) else [rope_type]
    if any("dynamic" in str(t) or t == "longrope" for t in rope_types):
        # These recompute frequencies from max(position_ids) on the host each step (no CUDA graph).
        return f"rope_type {rope_type!r} is not supported"
    for layer in inner.layers:
        attn = getattr(layer, "self_attn", None)
        if attn is None or not all(hasattr(attn, k) for k in ("q_proj", "k_proj", "v_proj", "o_proj", "scaling")):
            return "a decoder layer without self_attn.{q,k,v,o}_proj"
    return None


def _layout(model: Any) -> _Layout:
    config = model.config
    heads = config.num_attention_heads
    return _Layout(
        embed=model.model.embed_tokens,
        layers=list(model.model.layers),
        norm=model.model.norm,
        rotary=model.model.rotary_emb,
        lm_head=model.lm_head,
        num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
    )


def _param_ptrs(model: Any) -> tuple[int, ...]:
    return tuple(p.data_ptr() for p in model.parameters())


def _cache_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer of a ``DynamicCache``, each ``(B, kv_heads, P, head_dim)``."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))  # older transformers


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class _Stepper:
    """Static KV cache + one decode step for a fixed (batch, cache length); optionally a CUDA graph.

    ``step(tokens (B,), positions (B,), column)`` feeds one token per row at cache column
    ``column`` and returns the next-token logits ``(B, V)`` (float32).
    """

    full_length = False  # eager steps attend over the whole static cache, as a graph does (tests set it)

    def __init__(self, model: Any, batch: int, length: int, use_graph: bool) -> None:
        self.model = model
        self.layout = _layout(model)
        self.batch, self.length = batch, length
        lay = self.layout
        param = next(model.parameters())
        device = param.device
        dtype = lay.layers[0].self_attn.k_proj.weight.dtype
        shape = (batch, lay.num_kv_heads, length, lay.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in lay.layers]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in lay.layers]
        self.mask = torch.zeros((batch, length), dtype=torch.bool, device=device)
        # Static inputs (graph-safe: overwritten in place).
        self.in_tokens = torch.zeros(batch, dtype=torch.long, device=device)
        self.in_positions = torch.zeros(batch, dtype=torch.long, device=device)
        self.in_column = torch.zeros(1, dtype=torch.long, device=device)
        self.param_ptrs = _param_ptrs(model)
        self.graph = None
        self.out_logits: torch.Tensor | None = None
        self.capture_error: str | None = None
        if use_graph:
            try:
                self._capture()
            except Exception as error:  # noqa: BLE001  (an op that cannot be captured: decode eagerly)
                self.graph, self.out_logits = None, None
                self.capture_error = f"{type(error).__name__}: {error}"
                warnings.warn(f"FastHFEngine: CUDA graph capture failed, decoding without it ({self.capture_error})")

    def load_prefill(self, kv: list[tuple[torch.Tensor, torch.Tensor]], prompt_mask: torch.Tensor, n: int) -> None:
        """Copy the prefill's keys/values (repeated n times per prompt) into columns [0, P)."""
        width = prompt_mask.shape[1]
        self.mask.zero_()
        self.mask[:, :width] = prompt_mask.repeat_interleave(n, dim=0)
        for (k, v), k_static, v_static in zip(kv, self.keys, self.values):
            k_static[:, :, :width].copy_(k.repeat_interleave(n, dim=0))
            v_static[:, :, :width].copy_(v.repeat_interleave(n, dim=0))
            # Columns past the prompt are masked until written; zero them so no stale NaN/inf leaks in.
            k_static[:, :, width:].zero_()
            v_static[:, :, width:].zero_()

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, column: int) -> torch.Tensor:
        self.in_tokens.copy_(tokens)
        self.in_positions.copy_(positions)
        self.in_column.fill_(column)
        if self.graph is not None:
            self.graph.replay()
            return self.out_logits.clone()
        # Eager: attend over the written columns only (a graph must use the full static length).
        return self._forward(upto=None if self.full_length else column + 1)

    def _forward(self, upto: int | None = None) -> torch.Tensor:
        lay = self.layout
        batch = self.batch
        column = self.in_column
        upto = upto or self.length
        # The new token attends to itself: open its column before attention.
        self.mask.index_fill_(1, column, True)
        hidden = lay.embed(self.in_tokens.unsqueeze(1))  # (B, 1, H)
        cos, sin = lay.rotary(hidden, self.in_positions.unsqueeze(1))  # (B, 1, head_dim)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        attn_mask = self.mask[:, None, None, :upto]  # (B, 1, 1, L)
        groups = lay.num_heads // lay.num_kv_heads
        for layer, k_cache, v_cache in zip(lay.layers, self.keys, self.values):
            attn = layer.self_attn
            residual = hidden
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(batch, 1, -1, lay.head_dim)
            k = attn.k_proj(x).view(batch, 1, -1, lay.head_dim)
            v = attn.v_proj(x).view(batch, 1, -1, lay.head_dim)
            if hasattr(attn, "q_norm"):  # Qwen3: per-head RMSNorm on queries and keys
                q, k = attn.q_norm(q), attn.k_norm(k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, 1, d)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            k_cache.index_copy_(2, column, k)
            v_cache.index_copy_(2, column, v)
            # Grouped-query attention for one new token: the `groups` query heads that share a
            # key/value head become `groups` query rows against it (head h = kv * groups + g, the
            # order of transformers' repeat_kv), so the cache is never copied per head.
            q = q.reshape(batch, lay.num_kv_heads, groups, lay.head_dim)
            out = torch.nn.functional.scaled_dot_product_attention(
                q, k_cache[:, :, :upto], v_cache[:, :, :upto], attn_mask=attn_mask, scale=attn.scaling
            )
            out = out.reshape(batch, 1, -1)  # (B, kv_heads, groups, d) -> (B, 1, heads * d)
            hidden = residual + attn.o_proj(out)
            residual = hidden
            hidden = residual + layer.mlp(layer.post_attention_layernorm(hidden))
        hidden = lay.norm(hidden)
        return lay.lm_head(hidden[:, -1, :]).float()

    def _capture(self) -> None:
        """Warm up on a side stream, then capture ``_forward`` (CUDA only)."""
        # Warm-up writes land in column length-1 of a zeroed cache; load_prefill resets everything.
        self.in_column.fill_(self.length - 1)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out_logits = self._forward()


def _sample_fast(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None, method: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One token per row and its log-prob under softmax(logits / T) (greedy: argmax, T = 1).

    Two exact ways to draw from the (top-p filtered) distribution ``p``, neither of them
    ``torch.multinomial`` (slow on CPU, a device synchronisation on GPU):

    * ``"race"`` (default on GPU): ``argmax(p_i / E_i)`` with ``E_i ~ Exp(1)`` i.i.d.; token i wins
      with probability ``p_i`` (the smallest of independent ``Exp(p_i)`` variables).
    * ``"inverse_cdf"`` (default on CPU, ~7x cheaper there): one uniform ``u`` per row, the first
      token whose float64 cumulative probability exceeds ``u * total``. Zero-probability tokens
      (outside the nucleus) can never be picked.

    Args:
        logits: ``(B, V)``.
        method: ``"auto"``, ``"race"`` or ``"inverse_cdf"``.
    Returns:
        ``(tokens (B,), logprobs (B,))``.
    """
    logits = logits.float()
    if temperature <= 0:
        chosen = logits.argmax(dim=-1)
        return chosen, torch.log_softmax(logits, dim=-1).gather(1, chosen.unsqueeze(1)).squeeze(1)
    log_probs = torch.log_softmax(logits / temperature, dim=-1)
    probs = log_probs.exp()
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token is always kept).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter(1, order, sorted_probs)
    if method == "auto":
        method = "race" if logits.device.type == "cuda" else "inverse_cdf"
    if method == "inverse_cdf":
        cdf = probs.double().cumsum(dim=-1)
        u = torch.rand((probs.shape[0], 1), generator=generator, dtype=torch.float64, device=probs.device) * cdf[:, -1:]
        chosen = torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=probs.shape[1] - 1)
    elif method == "race":
        # clamp: an Exp(1) draw of exactly 0 would turn a filtered-out token's 0/0 into NaN (the argmax).
        race = torch.empty_like(probs).exponential_(1.0, generator=generator).clamp_(min=1e-30)
        chosen = (probs / race).argmax(dim=-1)
    else:
        raise ValueError(f"unknown sampling method {method!r}; valid: auto, race, inverse_cdf")
    return chosen, log_probs.gather(1, chosen.unsqueeze(1)).squeeze(1)
