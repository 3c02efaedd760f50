"""Process-reward hooks: split a response into steps, score each step, combine with the outcome.

Three parts, each usable alone:

1. **Step segmentation** (:func:`segment_steps`, :class:`StepSegmenter`) returns character
   spans ``(start, end)`` of the steps of a response, so ``response[start:end]`` is step text.
   Methods (registered in :data:`SEGMENTERS`):

   * ``"blank_lines"`` — steps are separated by one or more blank lines (the default);
   * ``"lines"`` — every non-blank line is a step (PRM800K's format);
   * ``"step_markers"`` — a step starts at each ``Step k:`` marker (also ``**Step k.**``,
     ``## Step k)``); text before the first marker, if any, is a step of its own;
   * ``"regex"`` — steps are separated by matches of ``pattern``;
   * ``"delimiter"`` — steps end at ``delimiter``, by default ``<end_of_step>``, the marker the
     MCTS rollouts (rStar) put after each step.

   Spans never include the separator and are trimmed of surrounding whitespace; empty steps
   are dropped. Spans are increasing and do not overlap.

2. **Rewarders**: a :class:`ProcessRewarder` maps ``(prompt, steps)`` to one score per step.
   Built in: :class:`CallableRewarder` (wrap any function), :class:`MonteCarloRewarder` (the
   fraction of ``k`` continuations from each step prefix that end correct, as in
   Math-Shepherd / rStar rollouts) and :class:`ModelPRMScorer` (a Hugging Face checkpoint:
   a token-classification PRM, a ``+``/``-`` token PRM, or the implicit PRM of PRIME).

3. **Combination** of outcome and process reward (:func:`combine_rewards`): the step scores
   are reduced to one process score by ``min`` (a chain is as good as its weakest step),
   ``last`` (the last step's score), ``mean`` or ``discounted_sum`` (``sum_t gamma**t p_t``),
   then mixed: ``reward = (1 - process_weight) * outcome + process_weight * process_score``.
   :func:`discounted_returns` gives the per-step returns a step-level trainer uses
   (``G_t = sum_{s>=t} gamma**(s-t) p_s + gamma**(T-t) * outcome``).

Nothing here imports torch until a :class:`ModelPRMScorer` is built.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

# ---------------------------------------------------------------------------------------
# Step segmentation

Span = tuple[int, int]

_STEP_MARKER = re.compile(r"(?im)^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*)?step[ \t]*\d+[ \t]*(?:\*\*)?[ \t]*[:.)]")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")
_NEWLINE = re.compile(r"\n")
DEFAULT_STEP_DELIMITER = "<end_of_step>"


def _trim(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _split_on(text: str, separator: re.Pattern[str]) -> list[Span]:
    spans, cursor = [], 0
    for match in separator.finditer(text):
        if match.end() == match.start():
            continue  # an empty match separates nothing
        span = _trim(text, cursor, match.start())
        if span:
            spans.append(span)
        cursor = match.end()
    span = _trim(text, cursor, len(text))
    if span:
        spans.append(span)
    return spans


def _segment_blank_lines(text: str, **_: Any) -> list[Span]:
    return _split_on(text, _BLANK_LINES)


def _segment_lines(text: str, **_: Any) -> list[Span]:
    return _split_on(text, _NEWLINE)


def _segment_step_markers(text: str, **_: Any) -> list[Span]:
    starts = [m.start() for m in _STEP_MARKER.finditer(text)]
    if not starts:
        span = _trim(text, 0, len(text))
        return [span] if span else []
    bounds = ([0] if starts[0] > 0 else []) + starts + [len(text)]
    spans = [_trim(text, a, b) for a, b in zip(bounds, bounds[1:])]
    return [s for s in spans if s]


def _segment_regex(text: str, pattern: str | re.Pattern[str] | None = None, **_: Any) -> list[Span]:
    if pattern is None:
        raise ValueError("segmentation method 'regex' needs pattern= (a regex matching the separators between steps)")
    return _split_on(text, re.compile(pattern) if isinstance(pattern, str) else pattern)


def _segment_delimiter(text: str, delimiter: str = DEFAULT_STEP_DELIMITER, **_: Any) -> list[Span]:
    if not delimiter:
        raise ValueError("segmentation method 'delimiter' needs a non-empty delimiter")
    return _split_on(text, re.compile(re.escape(delimiter)))


SEGMENTERS: dict[str, Callable[..., list[Span]]] = {
    "blank_lines": _segment_blank_lines,
    "lines": _segment_lines,
    "step_markers": _segment_step_markers,
    "regex": _segment_regex,
    "delimiter": _segment_delimiter,
}


def segment_steps(
    text: str,
    method: str = "blank_lines",
    *,
    pattern: str | re.Pattern[str] | None = None,
    delimiter: str = DEFAULT_STEP_DELIMITER,
) -> list[Span]:
    """Character spans ``(start, end)`` of the steps of ``text`` (see the module docstring for methods).

    >>> text = "Step 1: 2+2=4.\\nStep 2: 4*3=12."
    >>> [text[a:b] for a, b in segment_steps(text, "step_markers")]
    ['Step 1: 2+2=4.', 'Step 2: 4*3=12.']
    """
    if method not in SEGMENTERS:
        raise ValueError(f"unknown step segmentation method {method!r}; valid: {', '.join(SEGMENTERS)}")
    return SEGMENTERS[method](text, pattern=pattern, delimiter=delimiter)


@dataclass(frozen=True)
class StepSegmenter:
    """A segmentation setting (what an env or a trainer config carries).

    Attributes:
        method: one of :data:`SEGMENTERS`.
        pattern: separator regex for ``method="regex"``.
        delimiter: step delimiter for ``method="delimiter"``.
    """

    method: str = "blank_lines"
    pattern: str | None = None
    delimiter: str = DEFAULT_STEP_DELIMITER

    def __post_init__(self) -> None:
        if self.method not in SEGMENTERS:
            raise ValueError(f"unknown step segmentation method {self.method!r}; valid: {', '.join(SEGMENTERS)}")
        if self.method == "regex":
            if not self.pattern:
                raise ValueError("StepSegmenter(method='regex') needs pattern=")
            re.compile(self.pattern)  # fail now, not on the first response

    def spans(self, text: str) -> list[Span]:
        return segment_steps(text, self.method, pattern=self.pattern, delimiter=self.delimiter)

    def split(self, text: str) -> list[str]:
        return [text[a:b] for a, b in self.spans(text)]


# ---------------------------------------------------------------------------------------
# Rewarders

Prompt = Any  # a list of chat messages, or a plain string


class ProcessRewarder:
    """Interface: one score per step.

    ``score(prompt, steps, problem=None) -> list[float]`` with ``len(result) == len(steps)``.
    ``prompt`` is the Problem's chat messages (or a string); ``problem`` is the whole Problem
    row, for rewarders that need the answer (Monte-Carlo). :meth:`score_batch` scores many
    responses at once; the default loops over :meth:`score`.
    """

    def score(self, prompt: Prompt, steps: Sequence[str], problem: dict[str, Any] | None = None) -> list[float]:
        raise NotImplementedError  # pragma: no cover - interface

    def __deepcopy__(self, memo: dict) -> "ProcessRewarder":
        # gymnasium.make deep-copies env kwargs; a rewarder (a model, a rollout engine) is a shared
        # scoring service, not per-env state, so every env gets the same object.
        return self

    def score_batch(
        self,
        prompts: Sequence[Prompt],
        steps: Sequence[Sequence[str]],
        problems: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[list[float]]:
        problems = [None] * len(prompts) if problems is None else problems
        if not len(prompts) == len(steps) == len(problems):
            raise ValueError(f"score_batch: {len(prompts)} prompts, {len(steps)} step lists, {len(problems)} problems")
        return [self.score(p, s, q) for p, s, q in zip(prompts, steps, problems)]


def _checked_scores(scores: Any, steps: Sequence[str], who: str) -> list[float]:
    scores = [float(s) for s in scores]
    if len(scores) != len(steps):
        raise ValueError(f"{who} returned {len(scores)} scores for {len(steps)} steps")
    bad = [s for s in scores if not math.isfinite(s)]
    if bad:
        raise ValueError(f"{who} returned non-finite scores: {bad}")
    return scores


class CallableRewarder(ProcessRewarder):
    """Wrap ``fn(prompt, steps) -> scores`` (or ``fn(prompt, steps, problem)`` with ``pass_problem=True``)."""

    def __init__(self, fn: Callable[..., Sequence[float]], pass_problem: bool = False) -> None:
        if not callable(fn):
            raise TypeError(f"CallableRewarder needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self.pass_problem = pass_problem

    def score(self, prompt: Prompt, steps: Sequence[str], problem: dict[str, Any] | None = None) -> list[float]:
        raw = self.fn(prompt, list(steps), problem) if self.pass_problem else self.fn(prompt, list(steps))
        return _checked_scores(raw, steps, f"CallableRewarder({getattr(self.fn, '__name__', self.fn)!r})")


GenerateFn = Callable[[Prompt, list[str], int], list[list[str]]]


class MonteCarloRewarder(ProcessRewarder):
    """Score step ``i`` by the fraction of ``k`` continuations from the prefix through step ``i`` that end correct.

    Args:
        generate_fn: ``generate_fn(prompt, prefixes, k) -> continuations`` where ``prefixes`` is a
            list of response prefixes and the result holds ``k`` continuation strings per prefix.
            A continuation is appended verbatim to its prefix to form the full response that is
            verified. One call per scored response (all its prefixes), so an engine can batch.
        k: continuations per prefix.
        verifier: a :class:`reasonrl.verifiers.Verifier` or a registered verifier name; it
            checks ``prefix + continuation`` against ``problem["answer"]``.
        joiner: placed between steps when rebuilding a prefix, and after it (so the
            continuation starts a new step). Match the segmentation: ``"\\n\\n"`` for blank lines.
        final_step_from_outcome: score the last step by verifying the complete response itself
            (1 or 0) instead of sampling; continuing a finished answer adds nothing.

    Returns scores in ``[0, 1]``. Needs ``problem`` (for the answer).
    """

    def __init__(
        self,
        generate_fn: GenerateFn,
        k: int,
        verifier: Any,
        joiner: str = "\n\n",
        final_step_from_outcome: bool = True,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if isinstance(verifier, str):
            from reasonrl import verifiers

            verifier = verifiers.get(verifier)
        self.generate_fn = generate_fn
        self.k = int(k)
        self.verifier = verifier
        self.joiner = joiner
        self.final_step_from_outcome = final_step_from_outcome

    def prefixes(self, steps: Sequence[str]) -> list[str]:
        """The response prefix ending after each step (with the joiner appended)."""
        return [self.joiner.join(steps[: i + 1]) + self.joiner for i in range(len(steps))]

    def score(self, prompt: Prompt, steps: Sequence[str], problem: dict[str, Any] | None = None) -> list[float]:
        if problem is None or "answer" not in problem:
            raise ValueError("MonteCarloRewarder needs the Problem row (problem=...) to verify continuations against its answer")
        if not steps:
            return []
        answer = problem["answer"]
        sampled = list(range(len(steps) - 1 if self.final_step_from_outcome else len(steps)))
        scores = [0.0] * len(steps)
        if sampled:
            prefixes = self.prefixes(steps)
            wanted = [prefixes[i] for i in sampled]
            continuations = self.generate_fn(prompt, wanted, self.k)
            if len(continuations) != len(wanted):
                raise ValueError(f"generate_fn returned {len(continuations)} lists for {len(wanted)} prefixes")
            for i, prefix, conts in zip(sampled, wanted, continuations):
                if len(conts) != self.k:
                    raise ValueError(f"generate_fn returned {len(conts)} continuations for a prefix, expected k={self.k}")
                correct = sum(bool(self.verifier.verify(prefix + c, answer).correct) for c in conts)
                scores[i] = correct / self.k
        if self.final_step_from_outcome:
            full = self.joiner.join(steps)
            scores[-1] = 1.0 if self.verifier.verify(full, answer).correct else 0.0
        return scores


def _prompt_text(tokenizer: Any, prompt: Prompt) -> str:
    """The prompt as the model saw it: its chat template when it has one, else contents joined by lines."""
    if isinstance(prompt, str):
        return prompt
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)
    return "".join(f"{m['content']}\n" for m in prompt)


class ModelPRMScorer(ProcessRewarder):
    """A process reward model loaded from a Hugging Face checkpoint directory (or hub id).

    The response is rebuilt as ``separator.join(step + step_tag for step in steps)`` after the
    prompt text (chat template if the tokenizer has one). Each step is scored at its *score
    token*: the last token of its ``step_tag`` when a tag is set (Math-Shepherd's ``ки``,
    Qwen-PRM's ``<extra_0>``), else the last token of the step's text.

    Heads (``head=``):

    * ``"classification"`` — ``AutoModelForTokenClassification``. One label: ``sigmoid`` (or
      ``activation="tanh"`` for rStar-style values in ``[-1, 1]``, ``"none"`` for the raw logit);
      two labels: the softmax probability of label 1 ("good").
    * ``"token_pair"`` — ``AutoModelForCausalLM``; the score is
      ``p(good_token) / (p(good_token) + p(bad_token))`` from the logits at the score token.
    * ``"implicit"`` — PRIME's implicit PRM: a causal LM and a reference model
      (``reference_checkpoint``); token reward ``beta * (log pi(y_t) - log pi_ref(y_t))``,
      summed over the tokens of each step (a token belongs to the step its first character is
      in; separator tokens go to the step before).

    A fast tokenizer is needed (offsets map characters to tokens). torch and transformers are
    imported only here. Scores are floats, one per step.

    Args:
        checkpoint: a directory or hub id.
        head: ``classification`` | ``token_pair`` | ``implicit``.
        step_tag: text appended to every step (``None``: none).
        separator: text between steps.
        good_token / bad_token: for ``token_pair``.
        reference_checkpoint / beta: for ``implicit``.
        activation: for one-label ``classification``: ``sigmoid`` | ``tanh`` | ``none``.
        device / dtype: where and in what precision to run (``dtype`` a torch dtype or its name).
        batch_size: responses per forward pass in :meth:`score_batch`.
    """

    HEADS = ("classification", "token_pair", "implicit")

    def __init__(
        self,
        checkpoint: str,
        head: str = "classification",
        *,
        step_tag: str | None = None,
        separator: str = "\n\n",
        good_token: str = "+",
        bad_token: str = "-",
        reference_checkpoint: str | None = None,
        beta: float = 0.05,
        activation: str = "sigmoid",
        device: str = "cpu",
        dtype: Any = None,
        batch_size: int = 8,
    ) -> None:
        if head not in self.HEADS:
            raise ValueError(f"unknown PRM head {head!r}; valid: {', '.join(self.HEADS)}")
        if activation not in ("sigmoid", "tanh", "none"):
            raise ValueError(f"unknown activation {activation!r}; valid: sigmoid, tanh, none")
        if head == "implicit" and reference_checkpoint is None:
            raise ValueError("head='implicit' needs reference_checkpoint= (the reference policy of PRIME's implicit PRM)")
        import torch
        from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.head = head
        self.step_tag = step_tag
        self.separator = separator
        self.beta = float(beta)
        self.activation = activation
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.tokenizer = AutoTokenizer.from_pretrained(checkpoint)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"{checkpoint}: ModelPRMScorer needs a fast tokenizer (character offsets map steps to tokens)")
        model_cls = AutoModelForTokenClassification if head == "classification" else AutoModelForCausalLM
        kwargs = {"dtype": dtype} if dtype is not None else {}
        self.model = model_cls.from_pretrained(checkpoint, **kwargs).to(self.device).eval()
        self.reference = None
        if head == "implicit":
            self.reference = AutoModelForCausalLM.from_pretrained(reference_checkpoint, **kwargs).to(self.device).eval()
        if head == "classification" and self.model.config.num_labels not in (1, 2):
            raise ValueError(f"{checkpoint}: a classification PRM needs 1 or 2 labels, it has {self.model.config.num_labels}")
        if head == "token_pair":
            self.good_id = self._single_token_id(good_token)
            self.bad_id = self._single_token_id(bad_token)

    def _single_token_id(self, token: str) -> int:
        ids = self.tokenizer.encode(token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"token_pair PRM: {token!r} is {len(ids)} tokens for this tokenizer; it must be exactly one")
        return ids[0]

    def build_text(self, prompt: Prompt, steps: Sequence[str]) -> tuple[str, int, list[Span], list[Span]]:
        """``(text, response_start, step_spans, score_spans)``: the model input and where each step and its score text lie."""
        text = _prompt_text(self.tokenizer, prompt)
        response_start = len(text)
        step_spans, score_spans = [], []
        for i, step in enumerate(steps):
            if i:
                text += self.separator
            start = len(text)
            text += step
            step_spans.append((start, len(text)))
            if self.step_tag:
                tag_start = len(text)
                text += self.step_tag
                score_spans.append((tag_start, len(text)))
            else:
                score_spans.append((start, len(text)))
        return text, response_start, step_spans, score_spans

    def score(self, prompt: Prompt, steps: Sequence[str], problem: dict[str, Any] | None = None) -> list[float]:
        return self.score_batch([prompt], [steps])[0]

    def score_batch(
        self,
        prompts: Sequence[Prompt],
        steps: Sequence[Sequence[str]],
        problems: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[list[float]]:
        if len(prompts) != len(steps):
            raise ValueError(f"score_batch: {len(prompts)} prompts but {len(steps)} step lists")
        results: list[list[float]] = []
        for lo in range(0, len(prompts), self.batch_size):
            results.extend(self._score_chunk(prompts[lo : lo + self.batch_size], steps[lo : lo + self.batch_size]))
        return results

    def _score_chunk(self, prompts: Sequence[Prompt], steps: Sequence[Sequence[str]]) -> list[list[float]]:
        import torch

        built = [self.build_text(p, s) for p, s in zip(prompts, steps)]
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else 0
        encodings = [
            self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True) for text, *_ in built
        ]
        width = max(len(e["input_ids"]) for e in encodings)
        # Right padding: with causal attention, real positions never see the pads.
        input_ids = torch.full((len(built), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(built), width), dtype=torch.long)
        for row, enc in enumerate(encodings):
            n = len(enc["input_ids"])
            input_ids[row, :n] = torch.tensor(enc["input_ids"])
            attention[row, :n] = 1
        input_ids, attention = input_ids.to(self.device), attention.to(self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=attention).logits.float()  # (B, T, L or V)
            ref_logits = None
            if self.reference is not None:
                ref_logits = self.reference(input_ids=input_ids, attention_mask=attention).logits.float()  # (B, T, V)
        out = []
        for row, ((text, response_start, step_spans, score_spans), enc) in enumerate(zip(built, encodings)):
            offsets = enc["offset_mapping"]
            if self.head == "implicit":
                out.append(self._implicit_scores(logits[row], ref_logits[row], enc["input_ids"], offsets, step_spans))
                continue
            scores = []
            for _, end in score_spans:
                pos = _token_at(offsets, end - 1)
                if self.head == "classification":
                    scores.append(self._classification_score(logits[row, pos]))
                else:
                    pair = torch.log_softmax(logits[row, pos], dim=-1)[[self.good_id, self.bad_id]]
                    scores.append(float(torch.softmax(pair, dim=-1)[0]))
            out.append(scores)
        return out

    def _classification_score(self, logit: Any) -> float:
        import torch

        if logit.shape[-1] == 2:
            return float(torch.softmax(logit, dim=-1)[1])
        value = logit[0]
        if self.activation == "sigmoid":
            return float(torch.sigmoid(value))
        if self.activation == "tanh":
            return float(torch.tanh(value))
        return float(value)

    def _implicit_scores(self, logits: Any, ref_logits: Any, ids: list[int], offsets: list[Span], step_spans: list[Span]) -> list[float]:
        import torch

        # Token t is predicted by the logits at t-1: log pi(y_t | y_<t).
        targets = torch.tensor(ids[1:], device=logits.device)
        n = len(ids)
        logp = torch.log_softmax(logits[: n - 1], dim=-1).gather(-1, targets[:, None])[:, 0]
        ref_logp = torch.log_softmax(ref_logits[: n - 1], dim=-1).gather(-1, targets[:, None])[:, 0]
        token_rewards = self.beta * (logp - ref_logp)  # (n-1,), for tokens 1..n-1
        scores = [0.0] * len(step_spans)
        starts = [a for a, _ in step_spans]
        for t in range(1, n):
            a, b = offsets[t]
            if b <= a or not starts or a < starts[0]:
                continue  # prompt tokens and zero-width special tokens carry no step reward
            step = max(i for i, s in enumerate(starts) if s <= a)
            scores[step] += float(token_rewards[t - 1])
        return scores


def _token_at(offsets: Sequence[Span], char: int) -> int:
    """Index of the last token covering character ``char`` (the token ending a step)."""
    for pos in range(len(offsets) - 1, -1, -1):
        a, b = offsets[pos]
        if a <= char < b:
            return pos
    raise ValueError(f"no token covers character {char}; the tokenizer dropped it")


# ---------------------------------------------------------------------------------------
# Combining outcome and process rewards


def _reduce_min(rewards: Sequence[float], gamma: float) -> float:
    return min(rewards)


def _reduce_last(rewards: Sequence[float], gamma: float) -> float:
    return rewards[-1]


def _reduce_mean(rewards: Sequence[float], gamma: float) -> float:
    return sum(rewards) / len(rewards)


def _reduce_discounted_sum(rewards: Sequence[float], gamma: float) -> float:
    return sum(gamma**t * r for t, r in enumerate(rewards))


STEP_REDUCERS: dict[str, Callable[[Sequence[float], float], float]] = {
    "min": _reduce_min,
    "last": _reduce_last,
    "mean": _reduce_mean,
    "discounted_sum": _reduce_discounted_sum,
}


def reduce_step_rewards(step_rewards: Sequence[float], how: str = "min", gamma: float = 1.0) -> float:
    """One process score from per-step scores: ``min`` | ``last`` | ``mean`` | ``discounted_sum``.

    ``discounted_sum`` is ``sum_t gamma**t * r_t`` (t from 0). A response with no steps scores 0.
    """
    if how not in STEP_REDUCERS:
        raise ValueError(f"unknown step-reward reduction {how!r}; valid: {', '.join(STEP_REDUCERS)}")
    if not step_rewards:
        return 0.0
    return float(STEP_REDUCERS[how](list(step_rewards), gamma))


def combine_rewards(
    outcome: float,
    step_rewards: Sequence[float],
    how: str = "min",
    process_weight: float = 0.5,
    gamma: float = 1.0,
) -> float:
    """``(1 - process_weight) * outcome + process_weight * reduce_step_rewards(step_rewards, how, gamma)``.

    ``process_weight=0`` is the outcome alone; ``1`` is the process score alone.
    """
    if not 0.0 <= process_weight <= 1.0:
        raise ValueError(f"process_weight must be in [0, 1], got {process_weight}")
    if process_weight == 0.0:
        return float(outcome)
    return (1.0 - process_weight) * float(outcome) + process_weight * reduce_step_rewards(step_rewards, how, gamma)


def discounted_returns(step_rewards: Sequence[float], outcome: float = 0.0, gamma: float = 1.0) -> list[float]:
    """Per-step returns ``G_t = sum_{s>=t} gamma**(s-t) * r_s + gamma**(T-t) * outcome`` (``T`` = number of steps).

    The outcome reward arrives after the last step. Shape: ``(T,)``.
    """
    returns = [0.0] * len(step_rewards)
    running = float(outcome)
    for t in range(len(step_rewards) - 1, -1, -1):
        running = float(step_rewards[t]) + gamma * running
        returns[t] = running
    return returns
