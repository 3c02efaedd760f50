"""GRPO step throughput: reasonrl's ``RLTrainer`` against TRL's ``GRPOTrainer``, same model and settings.

Command (from the project root; TRL is a benchmark-only peer: ``pip install trl==1.16.0``)::

    python benchmarks/grpo_step.py [--size tiny|small] [--model DIR] [--prompts 8] [--group 8]
        [--max-tokens 64] [--steps 6] [--warmup 2] [--rounds 2] [--threads 1] [--engines hf,fast]
        [--set KEY=VALUE ...] [--skip-trl] [--output benchmarks/results/grpo_step.json]

Both sides get, per optimizer step:

* the same checkpoint directory (the project's tiny Qwen2 from :mod:`reasonrl.models.tiny`, random
  init, saved to a temp folder; each side loads it itself, float32 on the CPU);
* the same prompts: ``arith`` problems as chat messages, chat-templated by the same tokenizer;
  ``--prompts`` prompts × ``--group`` completions per step;
* exactly ``--max-tokens`` completion tokens per completion, no early stop. reasonrl: the engine's
  end-of-sequence ids are set to an id outside the vocabulary, so no sampled token ends a sample.
  TRL: ``generation_kwargs={"min_new_tokens": max_tokens}`` (transformers masks EOS until then).
  The children check the completion lengths and report them;
* the same reward, ``len(completion text) % 7`` (like TRL's anchor script: it varies within a
  group, so no group has zero variance and neither side can skip rows);
* GRPO (group mean/std advantages), PPO-clip 0.2, token-mean (= TRL's default ``dapo``) loss, no KL
  (beta 0: no reference model on either side), one optimizer step per generated batch (TRL:
  ``num_iterations=1``, ``steps_per_generation=1``; reasonrl: ``optim.epochs=1``, one minibatch),
  gradient clipping at 1.0, AdamW, temperature 1, top-p 1 (TRL: ``top_k=0``).

Timed: the wall-clock seconds of each whole optimizer step (generation, reward, log-probs, backward,
optimizer step, and each trainer's bookkeeping), measured for reasonrl around ``train_step()`` and
for TRL between consecutive ``on_step_end`` callbacks (the first interval starts at
``on_train_begin``). The first ``--warmup`` steps are dropped; the table shows the median of the
rest, and tokens/s = prompts × group × max_tokens / median step time. The process CPU seconds per
step (all threads) are reported too: the machine is shared, and CPU time moves much less with the
load than the wall clock.

Each side runs in its own child process, ``--rounds`` times, alternating (reasonrl, trl, reasonrl,
trl...); the table gives the median over rounds of the per-round medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"tiny": {}, "small": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "num_kv_heads": 4}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint directory (default: build the tiny Qwen2 of --size in a temp folder)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny",
                        help="model built when --model is not given: tiny (0.8M params, hidden 128, 4 layers) or "
                        "small (hidden 512, 8 layers, ~26M params)")
    parser.add_argument("--prompts", type=int, default=8, help="prompts per step")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt")
    parser.add_argument("--max-tokens", type=int, default=64, help="completion tokens (every completion has exactly this many)")
    parser.add_argument("--steps", type=int, default=6, help="timed optimizer steps per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps before them")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per side (1: robust on a shared 2-core machine)")
    parser.add_argument("--engines", default="hf,fast",
                        help="reasonrl rollout engines to time, comma-separated: hf (HFEngine, the trainer's default) "
                        "and/or fast (FastHFEngine, reasonrl/engines/fast_decode.py)")
    parser.add_argument("--engine", choices=("hf", "fast"), default="hf", help=argparse.SUPPRESS)  # worker's engine
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra reasonrl config override (repeatable), e.g. --set optim.share_prompt_forward=false")
    parser.add_argument("--skip-trl", action="store_true", help="run the reasonrl side only")
    parser.add_argument("--output", help="also write all numbers as JSON here")
    parser.add_argument("--worker", choices=("reasonrl", "trl"), help=argparse.SUPPRESS)
    parser.add_argument("--prompts-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def length_reward(text: str) -> float:
    """The shared reward: characters modulo 7 (varies within a group; cheap on both sides)."""
    return float(len(text) % 7)


def make_prompts(count: int) -> list[list[dict[str, str]]]:
    """``count`` arith problems' chat messages (seeds 0..count-1)."""
    from reasonrl import data_gen

    generator = data_gen.get("arith")
    return [generator.generate(seed)["prompt"] for seed in range(count)]


def _step_summary(times: list[float], cpu: list[float], warmup: int, tokens_per_step: int) -> dict:
    timed, timed_cpu = times[warmup:], cpu[warmup:]
    median = statistics.median(timed)
    return {
        "step_times_s": [round(t, 4) for t in times],
        "median_step_s": median,
        "tokens_per_s": tokens_per_step / median,
        "cpu_s_per_step": statistics.median(timed_cpu),
    }


# ----------------------------------------------------------------------------------------------
# reasonrl side
# ----------------------------------------------------------------------------------------------


class _FixedPrompts:
    """A problem source over a fixed list of prompts (what ``RLTrainer`` reads: ``stream("rl").take(n)``)."""

    class _Stream:
        def __init__(self, problems: list[dict]) -> None:
            self.problems = problems
            self.position = 0

        def take(self, count: int) -> list[dict]:
            out = [self.problems[(self.position + i) % len(self.problems)] for i in range(count)]
            self.position += count
            return out

    def __init__(self, problems: list[dict]) -> None:
        self._stream = self._Stream(problems)

    def stream(self, name: str) -> "_FixedPrompts._Stream":
        return self._stream


def run_reasonrl(args: argparse.Namespace, prompts: list[list[dict[str, str]]]) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from reasonrl.config import TrainConfig, load_config
    from reasonrl.trainers.rl import RLTrainer
    from reasonrl.types import Verdict

    torch.set_num_threads(args.threads)
    total_steps = args.warmup + args.steps
    config = load_config(TrainConfig, None, [
        f"model={args.model}", "device=cpu", "dtype=float32", f"threads={args.threads}", "track_ref_kl=false",
        f"steps={total_steps}", "progress=false", "seed=0",
        f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}",
        f"rollout.max_tokens={args.max_tokens}", "rollout.temperature=1.0", "rollout.top_p=1.0",
        "algorithm.estimator=grpo", "algorithm.kl_coef=0", "algorithm.loss_agg_mode=token-mean",
        "algorithm.clip_low=0.2", "algorithm.clip_high=0.2",
        f"optim.lr={args.lr}", "optim.grad_clip=1.0", "optim.epochs=1", "optim.minibatch_size=0",
        *args.set,
    ])
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    # An end-of-sequence id outside the vocabulary: no sampled token ends a sample, so every
    # completion has exactly max_tokens tokens (TRL gets min_new_tokens for the same effect).
    no_eos = [model.config.vocab_size]
    if args.engine == "fast":
        from reasonrl.engines.fast_decode import FastHFEngine

        engine = FastHFEngine(model, tokenizer, eos_token_ids=no_eos)
    else:
        from reasonrl.engines.hf_engine import HFEngine

        engine = HFEngine(model, tokenizer, eos_token_ids=no_eos)

    def verify(problems: list[dict], responses: list[str]) -> list[Verdict]:
        return [Verdict(reward=length_reward(r), correct=False) for r in responses]

    problems = [{"prompt": p, "task": "arith", "answer": ""} for p in prompts]
    trainer = RLTrainer(config, model, tokenizer, engine, _FixedPrompts(problems), verify_fn=verify, log=lambda s: None)
    times, cpu, lengths, splits = [], [], [], []
    for _ in range(total_steps):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        metrics = trainer.train_step()
        times.append(time.perf_counter() - wall0)
        cpu.append(time.process_time() - cpu0)
        lengths.append(metrics["response_length"])
        splits.append({k: metrics[k] for k in ("time_generate", "time_verify", "time_train")})
    result = _step_summary(times, cpu, args.warmup, args.prompts * args.group * args.max_tokens)
    timed_splits = splits[args.warmup:]
    result.update(
        side="reasonrl", engine=args.engine, overrides=args.set, mean_completion_tokens=statistics.mean(lengths),
        share_prompt_forward=getattr(config.optim, "share_prompt_forward", None),
        median_split_s={k: statistics.median(s[k] for s in timed_splits) for k in timed_splits[0]},
    )
    return result


# ----------------------------------------------------------------------------------------------
# TRL side
# ----------------------------------------------------------------------------------------------


def run_trl(args: argparse.Namespace, prompts: list[list[dict[str, str]]]) -> dict:
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    total_steps = args.warmup + args.steps
    lengths: list[float] = []

    def reward(completions, completion_ids=None, **kwargs):
        if completion_ids is not None:
            lengths.append(statistics.mean(len(c) for c in completion_ids))
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        return [length_reward(t) for t in texts]

    marks: list[tuple[float, float]] = []

    class StepClock(transformers.TrainerCallback):
        def on_train_begin(self, *a, **k):
            marks.append((time.perf_counter(), time.process_time()))

        def on_step_end(self, *a, **k):
            marks.append((time.perf_counter(), time.process_time()))

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    # Enough rows for every step; TRL repeats each prompt `group` times within a batch.
    rows = [prompts[i % len(prompts)] for i in range(args.prompts * total_steps)]
    dataset = Dataset.from_dict({"prompt": rows})
    out_dir = tempfile.mkdtemp(prefix="trl-grpo-bench-")
    config = trl.GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=args.prompts * args.group, num_generations=args.group,
        max_completion_length=args.max_tokens, generation_kwargs={"min_new_tokens": args.max_tokens},
        temperature=1.0, top_p=1.0, top_k=0, beta=0.0, num_iterations=1, epsilon=0.2, loss_type="dapo",
        learning_rate=args.lr, max_grad_norm=1.0, max_steps=total_steps, logging_steps=1, report_to=[],
        save_strategy="no", seed=0, bf16=False, use_cpu=True, dataloader_num_workers=0,
        model_init_kwargs={"dtype": torch.float32},
    )
    trainer = trl.GRPOTrainer(model=args.model, reward_funcs=reward, args=config, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[StepClock()])
    trainer.train()
    times = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpu = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    result = _step_summary(times, cpu, args.warmup, args.prompts * args.group * args.max_tokens)
    result.update(side="trl", trl_version=trl.__version__, mean_completion_tokens=statistics.mean(lengths) if lengths else None,
                  model_dtype=str(trainer.model.dtype))
    return result


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def run_child(side: str, args: argparse.Namespace, prompts_file: str) -> dict:
    worker, _, engine = side.partition(":")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--model", args.model,
               "--prompts-file", prompts_file, "--prompts", str(args.prompts), "--group", str(args.group),
               "--max-tokens", str(args.max_tokens), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads), "--engine", engine or "hf", "--lr", str(args.lr),
               *[f"--set={item}" for item in args.set]]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{side} child failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])


def side_name(side: str, runs: dict, args: argparse.Namespace) -> str:
    if side == "trl":
        return f"TRL {runs[side][0].get('trl_version', '')} GRPOTrainer"
    engine = side.partition(":")[2]
    label = "HFEngine" if engine == "hf" else "FastHFEngine"
    return f"reasonrl RLTrainer + {label}" + (f" ({' '.join(args.set)})" if args.set else "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        prompts = json.loads(Path(args.prompts_file).read_text())
        result = run_reasonrl(args, prompts) if args.worker == "reasonrl" else run_trl(args, prompts)
        print(json.dumps(result))
        return 0
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ("hf", "fast")]
    if unknown or not engines:
        print(f"--engines: unknown {unknown}; valid: hf, fast", file=sys.stderr)
        return 2
    if args.model is None:
        from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

        args.model = build_tiny_model(TinyModelConfig(**SIZES[args.size]), tempfile.mkdtemp(prefix=f"grpo-bench-{args.size}-"))
    sides = [f"reasonrl:{e}" for e in engines]
    if not args.skip_trl:
        probe = subprocess.run([sys.executable, "-c", "import trl, datasets"], capture_output=True, text=True)
        if probe.returncode != 0:
            print("trl is not importable (pip install trl==1.16.0): running reasonrl only", file=sys.stderr)
        else:
            sides.append("trl")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(make_prompts(args.prompts), f)
        prompts_file = f.name
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for round_index in range(args.rounds):
        for side in sides:
            result = run_child(side, args, prompts_file)
            runs[side].append(result)
            print(f"round {round_index + 1} {side}: median step {result['median_step_s']:.3f}s, "
                  f"{result['tokens_per_s']:.0f} tokens/s, {result['cpu_s_per_step']:.2f} CPU s/step, "
                  f"completion tokens {result['mean_completion_tokens']}, steps {result['step_times_s']}",
                  file=sys.stderr, flush=True)
    os.unlink(prompts_file)

    def median(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    tokens = args.prompts * args.group * args.max_tokens
    print(f"GRPO step: {args.prompts} prompts x {args.group} completions x {args.max_tokens} tokens "
          f"({tokens} completion tokens/step), {args.threads} thread(s), model {args.model}, "
          f"{args.steps} timed steps after {args.warmup} warm-up, {args.rounds} rounds (medians)")
    print("| system | s/step | tokens/s | CPU s/step | completion tokens | tokens/s vs TRL |")
    print("|---|---|---|---|---|---|")
    for side in sides:
        ratio = f"{median(side, 'tokens_per_s') / median('trl', 'tokens_per_s'):.2f}x" if "trl" in runs else "-"
        print(f"| {side_name(side, runs, args)} | {median(side, 'median_step_s'):.3f} | {median(side, 'tokens_per_s'):.0f} | "
              f"{median(side, 'cpu_s_per_step'):.2f} | {median(side, 'mean_completion_tokens'):.1f} | {ratio} |")
    for side in sides:
        if side != "trl":
            split = {k: statistics.median(r["median_split_s"][k] for r in runs[side]) for k in runs[side][0]["median_split_s"]}
            print(f"{side} split (median s): " + ", ".join(f"{k[5:]} {v:.3f}" for k, v in split.items())
                  + f"; share_prompt_forward={runs[side][0].get('share_prompt_forward')}")
    if "trl" in runs:
        for side in sides[:-1]:
            print(f"{side}: TRL / reasonrl CPU seconds per step "
                  f"{median('trl', 'cpu_s_per_step') / median(side, 'cpu_s_per_step'):.2f}x")
    if args.output:
        Path(args.output).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items()
                                                              if k not in ("worker", "prompts_file", "engine")},
                                                 "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
