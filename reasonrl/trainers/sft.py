"""Supervised fine-tuning on generated worked solutions (the warm-up before RL, and ``reasonrl sft``).

Each example is a Problem's chat-templated prompt followed by its worked solution
(``metadata[config.solution_field]``) and the end-of-turn token; the loss is the mean next-token
cross-entropy over the solution tokens only (the prompt is context, not a target).

The warm-up aims at a *non-trivial but imperfect* policy: with ``target_accuracy`` > 0, every
``eval_every`` steps the model samples one response per validation problem (disjoint from the
train and test problems) and training stops once the accuracy reaches the target. A tiny model
starting near 0% gives RL nothing to work with (every group is all-wrong); one at 100% leaves
nothing to learn.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from reasonrl.config import SFTConfig
from reasonrl.trainers.data import ProblemStream, derived_seed, render_prompt


@dataclass
class SFTResult:
    """What a warm-up did: steps taken, the last validation accuracy, and every validation check."""

    steps: int
    val_accuracy: float | None
    stopped_early: bool
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    out_of_time: bool = False  # stopped by a time budget (max_minutes), not by steps or target

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tokenize_example(
    tokenizer: Any, problem: dict[str, Any], solution_field: str, max_length: int, eos_token_id: int
) -> tuple[list[int], list[int]] | None:
    """``(prompt_ids, response_ids)`` of one SFT example, or None when it exceeds ``max_length``.

    Raises:
        KeyError: the problem has no ``metadata[solution_field]`` (the message names the field).
    """
    solution = (problem.get("metadata") or {}).get(solution_field)
    if not isinstance(solution, str) or not solution:
        raise KeyError(
            f"problem {problem.get('id')!r} has no metadata[{solution_field!r}] (a worked solution to train on); "
            f"its metadata keys: {', '.join(sorted(problem.get('metadata') or {})) or 'none'}"
        )
    prompt_ids = tokenizer(render_prompt(tokenizer, problem["prompt"]), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(solution, add_special_tokens=False)["input_ids"] + [eos_token_id]
    if len(prompt_ids) + len(response_ids) > max_length:
        return None
    return prompt_ids, response_ids


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``/``attention_mask`` and ``labels`` (-100 on prompt and padding), all ``(B, L)``."""
    width = max(len(p) + len(r) for p, r in examples)
    input_ids = torch.full((len(examples), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for row, (prompt, response) in enumerate(examples):
        ids = prompt + response
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, len(prompt) : len(ids)] = torch.tensor(response)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def sft_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean cross-entropy of the response tokens (the labels that are not -100)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch["labels"][:, 1:].reshape(-1), ignore_index=-100
    )


def validation_accuracy(
    engine: Any, tokenizer: Any, problems: Sequence[dict[str, Any]], temperature: float, max_tokens: int, seed: int
) -> float:
    """Share of problems whose single sampled response verifies (one sample each)."""
    from reasonrl.engines.base import SamplingParams
    from reasonrl.envs.batch import verify_problems

    prompts = [render_prompt(tokenizer, p["prompt"]) for p in problems]
    params = SamplingParams(n=1, temperature=temperature, max_tokens=max_tokens, seed=seed)
    samples = engine.generate(prompts, params)
    verdicts = verify_problems(list(problems), [group[0].text for group in samples], workers=0)
    return sum(v.correct for v in verdicts) / max(len(verdicts), 1)


def train_sft(
    model: Any,
    tokenizer: Any,
    stream: ProblemStream,
    config: SFTConfig,
    *,
    seed: int = 0,
    val_problems: Sequence[dict[str, Any]] = (),
    max_tokens: int = 64,
    engine: Any = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    deadline: float | None = None,
) -> SFTResult:
    """Fine-tune ``model`` in place on worked solutions drawn from ``stream``.

    Args:
        model: a causal LM (trained in place, on its current device).
        tokenizer: its tokenizer (with a chat template, or plain-text prompts).
        stream: training problems (a :class:`ProblemStream`; its position advances).
        config: :class:`SFTConfig`.
        seed: seeds dropout-free sampling of validation checks and the torch RNG during training.
        val_problems: validation problems for the ``target_accuracy`` early stop.
        max_tokens: response length limit for validation sampling.
        engine: a rollout engine over ``model`` (default: an :class:`HFEngine` sharing it).
        progress: show a tqdm bar.
        deadline: a ``time.time()`` after which training stops at the next step (a time budget).

    Returns:
        :class:`SFTResult`.
    """
    from reasonrl.engines.hf_engine import HFEngine

    device = next(model.parameters()).device
    engine = engine or HFEngine(model, tokenizer)
    eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else engine.eos_token_ids[0]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.99))
    check = bool(config.target_accuracy > 0 and val_problems)
    history: list[dict[str, float]] = []
    start, bar = time.time(), _progress_bar(config.max_steps, progress, "sft")
    accuracy: float | None = None
    stopped_early = out_of_time = False
    step = 0
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(seed, "sft-torch") % 2**31)
        for step in range(1, config.max_steps + 1):
            batch = {k: v.to(device) for k, v in _next_batch(tokenizer, stream, config, eos_id, pad_id).items()}
            loss = _sft_step(model, optimizer, batch, config, step)
            if check and step % config.eval_every == 0:
                accuracy = validation_accuracy(
                    engine, tokenizer, val_problems, config.eval_temperature, max_tokens, derived_seed(seed, "sft-val", step)
                )
                model.train()
                history.append({"step": step, "loss": loss.item(), "val_accuracy": accuracy, "seconds": time.time() - start})
                stopped_early = accuracy >= config.target_accuracy
            if bar is not None:  # after the check, so the bar's last word is the accuracy the summary reports
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", val_acc="-" if accuracy is None else f"{accuracy:.2f}")
            if stopped_early:
                break
            if deadline is not None and time.time() > deadline:
                out_of_time = True
                break
    if bar is not None:
        bar.close()
    model.eval()
    result = SFTResult(steps=step, val_accuracy=accuracy, stopped_early=stopped_early, seconds=time.time() - start,
                       history=history, out_of_time=out_of_time)
    log(_result_line(result))
    return result


def _result_line(result: SFTResult) -> str:
    message = f"sft: {result.steps} steps in {result.seconds:.0f}s"
    if result.val_accuracy is not None:
        message += f", validation accuracy {result.val_accuracy:.2f}" + (
            " (target reached)" if result.stopped_early else " (target not reached)")
    if result.out_of_time:
        message += " -- stopped by the time budget"
    return message


def _next_batch(tokenizer: Any, stream: ProblemStream, config: SFTConfig, eos_id: int, pad_id: int) -> dict[str, torch.Tensor]:
    """``config.batch_size`` tokenized examples from the stream (too-long ones skipped), collated."""
    examples = []
    while len(examples) < config.batch_size:
        example = tokenize_example(tokenizer, stream.take(1)[0], config.solution_field, config.max_length, eos_id)
        if example is not None:
            examples.append(example)
    return collate(examples, pad_id)


def _sft_step(model: Any, optimizer: torch.optim.Optimizer, batch: dict[str, torch.Tensor], config: SFTConfig, step: int) -> torch.Tensor:
    """One optimizer step at ``sft.lr_schedule``'s learning rate; returns the loss."""
    from reasonrl.algorithms.schedules import lr_at

    for group in optimizer.param_groups:
        group["lr"] = lr_at(step, config.max_steps, config.lr, config.lr_schedule, config.warmup_steps, config.min_lr_ratio)
    loss = sft_loss(model, batch)
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"SFT loss became {loss.item()} at step {step}; lower sft.lr")
    loss.backward()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def save_sft_result(result: SFTResult, path: str | Path) -> None:
    Path(path).write_text(json.dumps(result.to_dict(), indent=2) + "\n")


def load_sft_result(path: str | Path) -> SFTResult:
    return SFTResult(**json.loads(Path(path).read_text()))


def _progress_bar(total: int, enabled: bool, desc: str):
    from reasonrl.progress import progress_bar

    return progress_bar(total, desc, enabled, leave=False)
