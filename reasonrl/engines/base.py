"""One interface for rollout engines (Hugging Face ``generate`` and vLLM).

Prompts go in as already-templated strings (the caller applies the chat template); each
prompt gets ``n`` samples. Every sample carries its token ids and the per-token log-probs
of the sampled tokens under the engine's current weights (at temperature 1 scaling, i.e. the
log-softmax of logits / temperature, as vLLM reports them), so trainers can measure the
rollout-vs-trainer log-prob gap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by every engine.

    temperature 0 means greedy. ``stop`` strings end a sample (the stop string is not kept in
    ``text``; its tokens are not kept either). ``seed`` makes a call repeatable: prompt ``i`` of
    the call draws from its own stream, seeded with ``seed + first_prompt_index + i``, so its
    samples do not depend on which other prompts share the call. A batch split over several
    calls (or ranks) with ``first_prompt_index`` set to each part's offset samples exactly what
    one call with the whole batch would.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 64
    stop: tuple[str, ...] = ()
    seed: int | None = None
    first_prompt_index: int = 0  # index of this call's first prompt in the whole batch (see above)

    def prompt_seed(self, index: int) -> int | None:
        """Seed of the stream prompt ``index`` of the call samples from (None: unseeded)."""
        return None if self.seed is None else int(self.seed) + self.first_prompt_index + index


@dataclass
class Sample:
    """One generated response."""

    text: str
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (hit max_tokens)
    prompt_token_ids: list[int] = field(default_factory=list)


class RolloutEngine:
    """Interface. ``generate`` returns, for each prompt, a list of ``params.n`` samples."""

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Sample]]:  # pragma: no cover
        raise NotImplementedError

    def sync_weights(self, model: Any) -> None:  # pragma: no cover
        """Load the training model's current weights into the engine (a no-op when they share the module)."""
        raise NotImplementedError
