"""Sample responses with a rollout engine and verify them: the shared core of every evaluation.

>>> verdicts = sample_and_verify(engine, problems, "arith", SamplingParams(n=4), tokenizer=tok)  # doctest: +SKIP
>>> pass_at_1 = sum(sum(v.correct for v in row) / len(row) for row in verdicts) / len(verdicts)  # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Sequence

from reasonrl.types import Verdict


def render_prompt(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """Chat-template a Problem's prompt with the generation prompt (plain text without a template)."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    return "\n".join(m["content"] for m in messages) + "\n"


def sample_and_verify(
    engine: Any,
    problems: Sequence[dict[str, Any]],
    verifier_or_task: Any,
    params: Any,
    *,
    tokenizer: Any = None,
    workers: int | None = 0,
    timeout: float | None = None,
    return_samples: bool = False,
) -> list[list[Verdict]] | tuple[list[list[Verdict]], list[list[Any]]]:
    """Generate ``params.n`` responses per problem and verify each one.

    Args:
        engine: a :class:`~reasonrl.engines.base.RolloutEngine`.
        problems: Problem rows.
        verifier_or_task: a :class:`~reasonrl.verifiers.base.Verifier`, a task name / Task (its
            verifier is used), or None to verify each problem with its own ``problem["task"]``.
        params: :class:`~reasonrl.engines.base.SamplingParams`.
        tokenizer: renders the prompts (default: ``engine.tokenizer``).
        workers / timeout: passed to the batched verification.
        return_samples: also return the engine's samples.

    Returns:
        ``verdicts[i][j]`` for sample j of problem i (and ``samples[i][j]`` when asked).
    """
    tokenizer = tokenizer if tokenizer is not None else getattr(engine, "tokenizer", None)
    prompts = [render_prompt(tokenizer, p["prompt"]) for p in problems]
    groups = engine.generate(prompts, params)
    flat_problems = [p for p, g in zip(problems, groups) for _ in g]
    flat_texts = [s.text for g in groups for s in g]
    verdicts = _verify(verifier_or_task, flat_problems, flat_texts, workers, timeout)
    out: list[list[Verdict]] = []
    i = 0
    for group in groups:
        out.append(verdicts[i : i + len(group)])
        i += len(group)
    return (out, groups) if return_samples else out


def _verify(verifier_or_task: Any, problems: list[dict], texts: list[str], workers: int | None, timeout: float | None):
    if not problems:
        return []
    if verifier_or_task is None:
        from reasonrl.envs.batch import verify_problems

        return verify_problems(problems, texts, workers=workers, timeout=timeout)
    verifier = verifier_or_task
    if isinstance(verifier_or_task, str):
        from reasonrl.tasks import get_task

        verifier = get_task(verifier_or_task).make_verifier()
    elif hasattr(verifier_or_task, "make_verifier"):
        verifier = verifier_or_task.make_verifier()
    return verifier.verify_batch(texts, [p["answer"] for p in problems], workers=workers, timeout=timeout)
