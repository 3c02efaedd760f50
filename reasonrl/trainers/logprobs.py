"""Response log-probs (and entropies, values) from the trainer's side of a rollout.

Every trainer scores responses the same way: ``[left-padded prompt | right-padded response]``
inputs, logits at the positions that predict response tokens, log-softmax in fp32 at the rollout
temperature. The fp32 copy is made a few rows at a time (and recomputed in the backward pass)
because it is the largest tensor of a step.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.utils.checkpoint


class ValueHead(torch.nn.Module):
    """PPO critic: a linear head on the policy's last hidden state, one value per token."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)



def response_logprobs(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_length: int,
    temperature: float = 1.0,
    with_entropy: bool = False,
    value_head: ValueHead | None = None,
    share_prompts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Log-probs of the response tokens under ``model`` (at the rollout temperature).

    Args:
        input_ids / attention_mask: ``(B, P + T)``, responses occupying the last T columns.
        response_length: T.
        temperature: logits are divided by it, as the engine did when sampling.
        with_entropy: also return the per-token entropy (no gradient).
        value_head: also return per-token values ``(B, T)`` (the value before each response token).
        share_prompts: run each distinct prompt through the model once and let its responses attend
            to that one (differentiable) KV cache. A GRPO group of n responses shares its prompt, so
            this saves (n-1)/n of the prompt compute in the forward *and* backward pass; the result
            and its gradient are the same as the plain pass (the cache is index-selected, so autograd
            sums the n copies' gradients).

    Returns:
        ``(logprobs (B, T), entropy (B, T) or None, values (B, T) or None)``.
    """
    T = response_length
    if share_prompts and T > 1:
        logits, hidden = _shared_prompt_forward(model, input_ids, attention_mask, T, value_head is not None)
    else:
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            logits_to_keep=T + 1,  # only the positions that predict response tokens
            output_hidden_states=value_head is not None,
            use_cache=False,
        )
        logits = out.logits[:, :-1, :]
        hidden = out.hidden_states[-1][:, -T - 1 : -1, :] if value_head is not None else None
    logprobs, entropy = _chunked_logprobs(logits, input_ids[:, -T:], temperature, with_entropy)
    values = value_head(hidden) if value_head is not None else None
    return logprobs, entropy, values


def _chunked_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float, with_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, T, V)`` logits -> ``(B, T)`` log-probs at ``targets`` (and entropies), a few rows at a time.

    The fp32 copy of (rows, T, vocab) logits is the largest tensor of the step (2.5 GiB for a
    micro-batch of 16 x 257 positions of a 152k vocabulary). Work through it a few rows at a time and,
    when it needs a gradient, recompute each chunk's fp32 copy in the backward pass (checkpointing)
    instead of keeping all of them alive: only the model's own logits stay in memory.
    """
    T = targets.shape[1]
    rows = max(1, LOGPROB_CHUNK_ELEMENTS // max(T * logits.shape[-1], 1))
    logprob_parts, entropy_parts = [], []
    for start in range(0, logits.shape[0], rows):
        chunk, chunk_targets = logits[start : start + rows], targets[start : start + rows]
        if chunk.requires_grad and logits.shape[0] > rows:
            logprob_parts.append(
                torch.utils.checkpoint.checkpoint(_token_logprobs, chunk, chunk_targets, temperature, use_reentrant=False)
            )
        else:
            logprob_parts.append(_token_logprobs(chunk, chunk_targets, temperature))
        if with_entropy:
            with torch.no_grad():
                entropy_parts.append(_token_entropy(chunk, temperature))
    return torch.cat(logprob_parts), (torch.cat(entropy_parts) if with_entropy else None)


# Logits elements converted to fp32 at once in response_logprobs (64M floats = 256 MiB).
LOGPROB_CHUNK_ELEMENTS = 1 << 26


def _token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log softmax(logits / temperature)`` at ``targets``, in fp32: ``(rows, T, V) -> (rows, T)``."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def _token_entropy(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)`` per position, in fp32 (no gradient)."""
    logits = logits.detach().float()
    if temperature != 1.0:
        logits = logits / temperature
    log_norm = torch.logsumexp(logits, dim=-1)
    return log_norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def _shared_prompt_forward(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, T: int, want_hidden: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits ``(B, T, V)`` predicting the T response tokens (and the matching last hidden states),
    computing every distinct prompt once."""
    from transformers import DynamicCache

    P = input_ids.shape[1] - T
    prompts, prompt_mask = input_ids[:, :P], attention_mask[:, :P]
    unique, inverse = torch.unique(prompts, dim=0, return_inverse=True)
    first_row = torch.full((unique.shape[0],), -1, dtype=torch.long, device=input_ids.device)
    first_row.scatter_reduce_(0, inverse, torch.arange(len(inverse), device=input_ids.device), reduce="amax", include_self=True)
    unique_mask = prompt_mask[first_row]
    prompt_out = model(
        input_ids=unique, attention_mask=unique_mask, position_ids=(unique_mask.cumsum(-1) - 1).clamp(min=0),
        past_key_values=DynamicCache(), use_cache=True, logits_to_keep=1, output_hidden_states=want_hidden,
    )
    cache = prompt_out.past_key_values
    cache.batch_select_indices(inverse)  # row i attends to its prompt's keys/values (differentiable gather)
    # Feed response tokens 0..T-2; their outputs predict tokens 1..T-1 (token 0 comes from the prompt's last position).
    response_in = input_ids[:, P : P + T - 1]
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, P : P + T - 1]
    response_out = model(
        input_ids=response_in, attention_mask=attention_mask[:, : P + T - 1], position_ids=positions,
        past_key_values=cache, use_cache=True, output_hidden_states=want_hidden,
    )
    logits = torch.cat([prompt_out.logits[:, -1:, :][inverse], response_out.logits], dim=1)
    hidden = None
    if want_hidden:
        hidden = torch.cat([prompt_out.hidden_states[-1][:, -1:, :][inverse], response_out.hidden_states[-1]], dim=1)
    return logits, hidden


def response_values(critic: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_length: int) -> torch.Tensor:
    """Per-token values ``(B, T)`` from a separate critic model (:class:`~reasonrl.trainers.roles.CriticModel`):
    the value before each response token, read at the same positions as :func:`response_logprobs`'s."""
    T = response_length
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    values = critic(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions)
    return values[:, -T - 1 : -1]
