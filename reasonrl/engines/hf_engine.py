"""Rollouts with a Hugging Face causal LM (CPU or GPU), sharing the module with the trainer.

``HFEngine`` runs its own decode loop over the model's forward pass and ``DynamicCache``
instead of ``model.generate``, for three reasons:

* **Exact sampling settings.** ``generate`` merges the checkpoint's ``generation_config``
  (Qwen instruct models ship ``top_k=20, repetition_penalty=1.05``...); here only
  ``SamplingParams`` apply: temperature, top-p, max tokens, stop strings, seed.
* **Per-token log-probs without storing every step's logits** (``output_logits`` would hold
  steps × batch × vocab floats: gigabytes for a 150k vocabulary).
* **Less work per group.** Each distinct prompt is prefilled once and its KV cache is repeated
  ``n`` times (a GRPO group shares its prompt), and rows that finished are dropped from the
  batch as the decode goes on.

Log-probs are ``log_softmax(logits / temperature)`` of the sampled token (the unfiltered
distribution, before top-p), as vLLM reports them; at temperature 0 (greedy) the plain
``log_softmax(logits)``. Prompts are left-padded; the model sees the right ``position_ids``.

Randomness: with ``params.seed`` set, each prompt draws from a private ``torch.Generator``
seeded with ``params.prompt_seed(i)`` (one uniform per sample and step, turned into a token by
inverse-CDF sampling), so a call is repeatable, leaves the global RNG untouched, and a prompt's
samples do not depend on the other prompts of the call or on how a batch is chunked or split
over ranks. Without a seed, the global torch RNG is used.
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import torch

from reasonrl.engines.base import RolloutEngine, Sample, SamplingParams


class HFEngine(RolloutEngine):
    """Generate with a ``transformers`` causal LM.

    Args:
        model: a ``PreTrainedModel`` (causal LM). The engine uses it as is: when the trainer
            updates it in place, the next ``generate`` already sees the new weights.
        tokenizer: its tokenizer (needs a pad or eos token).
        max_batch_size: sequences decoded together at most (a memory bound; prompts × n are chunked).
        eos_token_ids: token ids that end a sample (default: the tokenizer's eos plus the model's
            ``generation_config.eos_token_id``).
        autocast_dtype: run the model's forward under ``torch.autocast`` with this dtype (bf16 on a
            GPU with fp32 master weights, as the trainer does); None: the weights' own dtype.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch_size: int = 256,
        eos_token_ids: Sequence[int] | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.autocast_dtype = autocast_dtype
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        if eos_token_ids is None:
            eos_token_ids = _eos_ids(model, tokenizer)
        if not eos_token_ids:
            raise ValueError("HFEngine: no eos token id (set tokenizer.eos_token or pass eos_token_ids)")
        self.eos_token_ids = sorted(set(int(i) for i in eos_token_ids))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_token_ids[0]
        self.pad_token_id = int(pad)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", dtype: Any = None, **kwargs: Any) -> "HFEngine":
        """Load a checkpoint directory into a new engine (model in eval mode)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32).to(device)
        model.eval()
        return cls(model, tokenizer, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sync_weights(self, model: Any) -> None:
        """Take ``model``'s weights. A no-op when the engine already wraps that very module."""
        if model is self.model:
            return
        self.model.load_state_dict(model.state_dict())

    # ------------------------------------------------------------------------------------------

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:
        """Sample ``params.n`` responses for each (already chat-templated) prompt.

        Returns:
            ``out[i][j]``: the j-th sample of prompt i, with token ids (EOS included when the
            sample ended on it), per-token log-probs and ``finish_reason`` ("stop" or "length").
        """
        if params.n < 1:
            raise ValueError(f"SamplingParams.n must be >= 1, got {params.n}")
        if params.max_tokens < 1:
            raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {params.max_tokens}")
        encoded = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        results: list[list[Sample]] = [[] for _ in prompts]
        prompts_per_chunk = max(1, self.max_batch_size // params.n)
        was_training = self.model.training
        self.model.eval()
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None else contextlib.nullcontext()
        )
        try:
            with autocast:
                for start in range(0, len(encoded), prompts_per_chunk):
                    chunk = encoded[start : start + prompts_per_chunk]
                    uniforms = self._prompt_uniforms(params, start, len(chunk))
                    samples = self._generate_chunk(chunk, params, uniforms)
                    for offset, group in enumerate(samples):
                        results[start + offset] = group
        finally:
            if was_training:
                self.model.train()
        return results

    def _prompt_uniforms(self, params: SamplingParams, first: int, count: int) -> torch.Tensor | None:
        """``(count * n, max_tokens)`` uniforms: row ``p * n + j`` is sample j of prompt ``first + p``,
        drawn from that prompt's own seeded stream (None without a seed, or greedy)."""
        if params.seed is None or params.temperature <= 0:
            return None
        rows = []
        for p in range(first, first + count):
            generator = torch.Generator(device=self.device)
            generator.manual_seed(params.prompt_seed(p) % 2**63)
            rows.append(torch.rand((params.n, params.max_tokens), generator=generator, device=self.device))
        return torch.cat(rows)

    @torch.no_grad()
    def _generate_chunk(
        self, prompt_ids: list[list[int]], params: SamplingParams, uniforms: torch.Tensor | None
    ) -> list[list[Sample]]:
        device = self.device
        n, num_prompts = params.n, len(prompt_ids)
        input_ids, attention, positions = self._left_padded(prompt_ids)

        from transformers import DynamicCache

        # Prefill each distinct prompt once, then repeat its cache for the n samples.
        cache = DynamicCache()
        out = self.model(
            input_ids=input_ids, attention_mask=attention, position_ids=positions, past_key_values=cache,
            use_cache=True, logits_to_keep=1,
        )
        cache = out.past_key_values
        logits = out.logits[:, -1, :]
        if n > 1:
            cache.batch_repeat_interleave(n)
            logits = logits.repeat_interleave(n, dim=0)
            attention = attention.repeat_interleave(n, dim=0)
            positions = positions.repeat_interleave(n, dim=0)
        total = num_prompts * n
        next_position = positions[:, -1:] + 1

        eos = torch.tensor(self.eos_token_ids, device=device)
        tokens = torch.full((total, params.max_tokens), self.pad_token_id, dtype=torch.long, device=device)
        logprobs = torch.zeros((total, params.max_tokens), dtype=torch.float32, device=device)
        lengths = torch.zeros(total, dtype=torch.long, device=device)
        ended_on_eos = torch.zeros(total, dtype=torch.bool, device=device)
        active = torch.arange(total, device=device)  # rows of the full batch still decoding, in cache order

        for step in range(params.max_tokens):
            chosen, chosen_logprob = _sample(
                logits, params.temperature, params.top_p, None if uniforms is None else uniforms[active, step]
            )
            tokens[active, step] = chosen
            logprobs[active, step] = chosen_logprob
            lengths[active] += 1
            done = torch.isin(chosen, eos)
            ended_on_eos[active[done]] = True
            if step == params.max_tokens - 1:
                break
            if params.stop:
                done |= self._hits_stop(tokens, active, step + 1, params.stop)
            if bool(done.all()):
                break
            if bool(done.any()):
                # Drop finished rows so later steps spend nothing on them.
                keep = (~done).nonzero(as_tuple=True)[0]
                active = active[keep]
                cache.batch_select_indices(keep)
                attention = attention[keep]
                next_position = next_position[keep]
                chosen = chosen[keep]
            attention = torch.cat([attention, torch.ones_like(chosen).unsqueeze(1)], dim=1)
            out = self.model(
                input_ids=chosen.unsqueeze(1), attention_mask=attention, position_ids=next_position,
                past_key_values=cache, use_cache=True,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1, :]
            next_position = next_position + 1

        return self._samples(tokens, logprobs, lengths, ended_on_eos, params, prompt_ids)

    def _left_padded(self, prompt_ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask, position_ids)`` of the prompts, left-padded, on the device."""
        width = max(len(p) for p in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        for row, ids in enumerate(prompt_ids):
            if ids:
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        return input_ids, attention, (attention.cumsum(-1) - 1).clamp(min=0)

    def _samples(
        self, tokens: torch.Tensor, logprobs: torch.Tensor, lengths: torch.Tensor, ended_on_eos: torch.Tensor,
        params: SamplingParams, prompt_ids: list[list[int]],
    ) -> list[list[Sample]]:
        """The decoded rows (row ``p * n + j`` = sample j of prompt p) as groups of samples."""
        tokens, logprobs, lengths, ended_on_eos = tokens.cpu(), logprobs.cpu(), lengths.cpu(), ended_on_eos.cpu()
        results: list[list[Sample]] = []
        for p, prompt in enumerate(prompt_ids):
            group = []
            for row in range(p * params.n, (p + 1) * params.n):
                size = int(lengths[row])
                group.append(self._make_sample(tokens[row, :size].tolist(), logprobs[row, :size].tolist(),
                                               bool(ended_on_eos[row]), params, prompt))
            results.append(group)
        return results

    def _hits_stop(self, tokens: torch.Tensor, active: torch.Tensor, length: int, stop: tuple[str, ...]) -> torch.Tensor:
        """Which active rows contain a stop string in their last few tokens (checked every step)."""
        longest = max(len(s) for s in stop)
        # A stop string of k characters spans at most k tokens (every token decodes to >= 1 character).
        window = tokens[active, max(0, length - longest - 1) : length].tolist()
        texts = self.tokenizer.batch_decode(window, skip_special_tokens=True)
        return torch.tensor([any(s in t for s in stop) for t in texts], dtype=torch.bool, device=active.device)

    def _make_sample(
        self, ids: list[int], lps: list[float], ended_on_eos: bool, params: SamplingParams, prompt_ids: list[int]
    ) -> Sample:
        finish = "stop" if ended_on_eos else "length"
        text_ids = ids[:-1] if ended_on_eos else ids
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
        if params.stop:
            cut = _first_stop(text, params.stop)
            if cut is not None:
                # Keep the tokens whose text ends before the stop string; drop the stop string's tokens.
                keep = _tokens_before(self.tokenizer, text_ids, cut)
                ids, lps, text, finish = ids[:keep], lps[:keep], text[:cut], "stop"
        return Sample(text=text, token_ids=list(ids), logprobs=list(lps), finish_reason=finish, prompt_token_ids=list(prompt_ids))


def _sample(
    logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row; return it and its log-prob under softmax(logits / T) (greedy: T = 1).

    Args:
        logits: ``(B, V)``.
        uniforms: ``(B,)`` in [0, 1): the row's draw, mapped to a token through the inverse of the
            (top-p filtered) CDF; None draws from the global RNG.
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
    if uniforms is None:
        chosen = torch.multinomial(probs, 1).squeeze(1)
    else:
        cdf = probs.cumsum(dim=-1)
        # The first token whose cumulative mass exceeds u * total: a zero-probability token never
        # exceeds its predecessor's cumulative mass, so it is never picked.
        total = cdf[:, -1:]
        target = torch.minimum(uniforms.to(cdf.dtype).unsqueeze(1) * total, total * (1 - 2**-23))  # stays < total
        chosen = torch.searchsorted(cdf, target, right=True).squeeze(1).clamp(max=probs.shape[-1] - 1)
    return chosen, log_probs.gather(1, chosen.unsqueeze(1)).squeeze(1)


def _first_stop(text: str, stop: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return min(hits) if hits else None


def _tokens_before(tokenizer: Any, ids: list[int], cut: int) -> int:
    """The largest k such that decode(ids[:k]) fits in the first ``cut`` characters."""
    keep = 0
    for k in range(1, len(ids) + 1):
        if len(tokenizer.decode(ids[:k], skip_special_tokens=True)) > cut:
            break
        keep = k
    return keep


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None)
    if isinstance(eos, int):
        ids.append(eos)
    elif isinstance(eos, (list, tuple)):
        ids.extend(int(i) for i in eos)
    return ids
