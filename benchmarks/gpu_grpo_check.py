"""GPU check: reasonrl's GRPO step against TRL's ``GRPOTrainer`` on one card, in one call.

Run on the device machine from the repository root (prepared to run once; see
benchmarks/results/grpo_step.md for the exact command, the carried wheels and the results)::

    python benchmarks/gpu_grpo_check.py --trl-anchor .device/trl_grpo_anchor.py --budget-s 420

and on a CPU, as an end-to-end test of the script itself (2 layers, small width, 16 tokens)::

    python benchmarks/gpu_grpo_check.py --tiny [--trl-anchor PATH]

What runs, in this order (each part is skipped when the time budget cannot cover it; the table
is printed in any case):

1. a random-init Qwen2 of the TRL anchor's shape (vocab 151,936, hidden 896, 24 layers, 14 heads,
   2 KV heads, tied embeddings: ~494M parameters) in bf16, with a word-level tokenizer over
   ``t0 .. t151935``; prompts of 64 random tokens (the anchor's workload);
2. a greedy cross-check of the two engines (``FastHFEngine``, CUDA-graphed, against ``HFEngine``)
   on that model: how many of the greedy samples agree token for token (bf16: near-ties may flip
   late tokens), and the largest log-prob difference on the agreeing samples;
3. reasonrl GRPO steps with ``FastHFEngine`` (static KV cache + CUDA graph decode);
4. the TRL anchor (``--trl-anchor PATH``, run as a subprocess; it needs trl and datasets
   importable, e.g. from carried wheels) — its RESULT line is parsed;
5. reasonrl GRPO steps with ``HFEngine`` (the default engine).

reasonrl's steps: 8 prompts × 8 completions × exactly 256 tokens (the engine's end-of-sequence id
lies outside the vocabulary), GRPO with no KL (no reference model), one optimizer step per
batch, bf16 weights and AdamW (as TRL with a bf16 checkpoint), gradient accumulation over
micro-batches of ``--micro-batch`` sequences (one optimizer step), reward ``len(text) % 7``
(the anchor's reward). Median over the timed steps after ``--warmup`` untimed ones; tokens/s =
completions × 256 / median step; peak memory = ``torch.cuda.max_memory_allocated`` since the run
started (model, optimizer state and activations), like the anchor.

Output: progress lines (flushed), a final table ``system | s/step | tokens/s | peak GiB | ratio``
(ratio = tokens/s over TRL's from this call), ``RESULT {json}``, and ``$OUT/gpu_grpo_check.json``
when ``$OUT`` is set (the anchor's own ``anchor.json`` is copied there too).

The script imports reasonrl from the repository even when it is not pip-installed (the device
machine gets only the working tree): top-level ``verifiers/``, ``envs/``, ``data_gen/``, ``eval/``
are mapped to ``reasonrl.*`` as pyproject.toml does. It needs torch and transformers only
(not datasets, multiprocess, trl: those are the anchor's).
"""
from __future__ import annotations

import argparse
import gc
import importlib.abc
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
T_START = time.time()

# Recorded anchor on an H100 (ENVIRONMENT.md), shown only when the anchor did not run in this call.
RECORDED_ANCHOR = {"card": "NVIDIA H100 80GB HBM3", "trl_median_step_s": 8.3, "trl_tokens_per_s": 1970, "peak_mem_GiB": 9.5}


def log(message: str) -> None:
    print(f"[{time.time() - T_START:7.1f}s] {message}", flush=True)


# ----------------------------------------------------------------------------------------------
# reasonrl from a bare checkout
# ----------------------------------------------------------------------------------------------

PACKAGE_DIRS = {"reasonrl.verifiers": "verifiers", "reasonrl.envs": "envs", "reasonrl.data_gen": "data_gen", "reasonrl.eval": "eval"}


class _CheckoutFinder(importlib.abc.MetaPathFinder):
    """Finds ``reasonrl.verifiers`` etc. in the checkout's top-level folders (pyproject's package-dir)."""

    def find_spec(self, name, path, target=None):
        for package, folder in PACKAGE_DIRS.items():
            if name == package or name.startswith(package + "."):
                rest = name[len(package):].lstrip(".").split(".") if name != package else []
                base = ROOT / folder / Path(*rest) if rest else ROOT / folder
                if (base / "__init__.py").exists():
                    return importlib.util.spec_from_file_location(
                        name, base / "__init__.py", submodule_search_locations=[str(base)]
                    )
                if base.with_suffix(".py").exists():
                    return importlib.util.spec_from_file_location(name, base.with_suffix(".py"))
        return None


def bootstrap_reasonrl() -> str:
    """Make ``import reasonrl`` work; returns where it came from."""
    try:
        import reasonrl.data_gen  # noqa: F401  (installed, or an editable install)

        import reasonrl

        return f"installed ({Path(reasonrl.__file__).parent})"
    except ImportError:
        pass
    for name in [m for m in sys.modules if m == "reasonrl" or m.startswith("reasonrl.")]:
        del sys.modules[name]
    sys.path.insert(0, str(ROOT))
    sys.meta_path.insert(0, _CheckoutFinder())
    import reasonrl.data_gen  # noqa: F401

    return f"checkout ({ROOT}, top-level folders mapped)"


# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trl-anchor", help="path of trl_grpo_anchor.py (run as a subprocess); omit to skip TRL")
    parser.add_argument("--budget-s", type=float, default=420.0, help="hard time budget of the whole script (seconds)")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer, small-width model and 16 tokens (CPU test)")
    parser.add_argument("--engines", default="fast,hf", help="reasonrl engines to time, in order: fast, hf")
    parser.add_argument("--steps", type=int, default=3, help="timed GRPO steps per engine")
    parser.add_argument("--warmup", type=int, default=1, help="untimed GRPO steps first (CUDA graph capture, allocator)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, help="completion tokens (default 256; --tiny: 16)")
    parser.add_argument("--prompt-len", type=int, help="prompt tokens (default 64; --tiny: 16)")
    parser.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward in the update")
    parser.add_argument("--lr", type=float, default=1e-6)
    parser.add_argument("--skip-check", action="store_true", help="skip the greedy cross-check of the engines")
    args = parser.parse_args(argv)
    args.max_tokens = args.max_tokens or (16 if args.tiny else 256)
    args.prompt_len = args.prompt_len or (16 if args.tiny else 64)
    args.engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in args.engines if e not in ("fast", "hf")]
    if bad:
        parser.error(f"--engines: unknown {bad}; valid: fast, hf")
    return args


class Budget:
    def __init__(self, seconds: float) -> None:
        self.deadline = T_START + seconds

    def left(self) -> float:
        return self.deadline - time.time()


def model_shape(tiny: bool) -> dict:
    if tiny:
        return dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2)
    return dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2)


def build_model_dir(args: argparse.Namespace, device: str, dtype) -> tuple[str, list[str]]:
    """A random-init Qwen2 and a word-level tokenizer (``t0`` ... ``t{V-1}``) saved to a temp dir; prompts."""
    import random

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    shape = model_shape(args.tiny)
    vocab_size = shape["vocab_size"]
    vocab = {"<pad>": 0, "<eos>": 1, **{f"t{i}": i for i in range(2, vocab_size)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<pad>")
    config = Qwen2Config(**shape, max_position_embeddings=2048, tie_word_embeddings=True)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(dtype)
    path = tempfile.mkdtemp(prefix="gpu-grpo-check-")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    params = sum(p.numel() for p in model.parameters())
    del model
    rng = random.Random(0)
    prompts = [" ".join(f"t{rng.randrange(2, vocab_size)}" for _ in range(args.prompt_len)) for _ in range(args.prompts)]
    log(f"model: random-init Qwen2 {params / 1e6:.1f}M params, {dtype}, saved to {path}")
    return path, prompts


def load(path: str, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    # Not AutoTokenizer: for a qwen2 config it would build Qwen2's BPE class around this word-level vocabulary.
    tokenizer = PreTrainedTokenizerFast.from_pretrained(path)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    torch.manual_seed(0)
    return model, tokenizer


def make_engine(kind: str, model, tokenizer):
    vocab = model.config.vocab_size
    if kind == "fast":
        from reasonrl.engines.fast_decode import FastHFEngine

        return FastHFEngine(model, tokenizer, eos_token_ids=[vocab])
    from reasonrl.engines.hf_engine import HFEngine

    return HFEngine(model, tokenizer, eos_token_ids=[vocab])


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def release() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------------------
# Parts
# ----------------------------------------------------------------------------------------------


def greedy_check(path: str, prompts: list[str], device: str, dtype, tokens: int) -> dict:
    """FastHFEngine vs HFEngine greedy samples on the same weights."""
    from reasonrl.engines.base import SamplingParams

    model, tokenizer = load(path, device, dtype)
    params = SamplingParams(n=1, temperature=0.0, max_tokens=tokens)
    reference = make_engine("hf", model, tokenizer).generate(prompts, params)
    fast_engine = make_engine("fast", model, tokenizer)
    got = fast_engine.generate(prompts, params)
    again = fast_engine.generate(prompts, params)  # a replay of the captured graph
    same = sum(a[0].token_ids == b[0].token_ids for a, b in zip(reference, got))
    prefix = []
    for a, b in zip(reference, got):
        common = 0
        while common < min(len(a[0].token_ids), len(b[0].token_ids)) and a[0].token_ids[common] == b[0].token_ids[common]:
            common += 1
        prefix.append(common)
    diffs = [abs(x - y) for a, b in zip(reference, got) for x, y in zip(a[0].logprobs[: min(prefix)], b[0].logprobs)]
    # Flip-independent: each engine's reported log-probs against a teacher-forced forward pass of
    # its own tokens (bf16 numerics make near-tied greedy choices differ between engines).
    forced = {name: teacher_forced_gap(model, samples) for name, samples in (("hf", reference), ("fast", got))}
    result = {
        "samples": len(prompts), "identical_samples": same, "tokens": tokens,
        "min_common_prefix": min(prefix), "mean_common_prefix": statistics.mean(prefix),
        "max_logprob_diff_on_common_prefix": max(diffs) if diffs else None,
        "replay_identical": all(a[0].token_ids == b[0].token_ids for a, b in zip(got, again)),
        "teacher_forced_max_abs_diff": {k: v[0] for k, v in forced.items()},
        "teacher_forced_mean_abs_diff": {k: v[1] for k, v in forced.items()},
        "fast_path": getattr(fast_engine, "fast_path", None), "graph_captures": getattr(fast_engine, "graph_captures", 0),
        "graph_error": getattr(fast_engine, "graph_error", None),
    }
    del model, fast_engine
    release()
    return result


def teacher_forced_gap(model, groups) -> tuple[float, float]:
    """(max, mean) |engine log-prob - log-prob from one forward pass over prompt + tokens|."""
    import torch

    worst, total, count = 0.0, 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for group in groups:
            sample = group[0]
            ids = torch.tensor([sample.prompt_token_ids + sample.token_ids], device=device)
            logits = model(ids).logits[0, len(sample.prompt_token_ids) - 1 : -1].float()
            forced = torch.log_softmax(logits, dim=-1).gather(1, ids[0, len(sample.prompt_token_ids):].unsqueeze(1)).squeeze(1)
            gap = (forced.cpu() - torch.tensor(sample.logprobs)).abs()
            worst, total, count = max(worst, float(gap.max())), total + float(gap.sum()), count + gap.numel()
    return float(f"{worst:.3g}"), float(f"{total / max(count, 1):.3g}")


def run_reasonrl(kind: str, path: str, prompts: list[str], args: argparse.Namespace, device: str, dtype,
                 budget: Budget, reserve: float) -> dict:
    """Timed GRPO steps of RLTrainer with the given engine; stops early when the budget runs out."""
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from grpo_step import _FixedPrompts, length_reward

    from reasonrl.config import TrainConfig, load_config
    from reasonrl.trainers.rl import RLTrainer
    from reasonrl.types import Verdict

    model, tokenizer = load(path, device, dtype)
    total = args.warmup + args.steps
    overrides = [
        f"model={path}", f"device={device}", f"dtype={'bfloat16' if device == 'cuda' else 'float32'}",
        "track_ref_kl=false", f"steps={total}", "progress=false", "seed=0",
        f"rollout.prompts_per_step={args.prompts}", f"rollout.group_size={args.group}", f"rollout.max_tokens={args.max_tokens}",
        "rollout.temperature=1.0", "rollout.top_p=1.0", f"rollout.max_batch_size={max(256, args.prompts * args.group)}",
        "algorithm.estimator=grpo", "algorithm.kl_coef=0", "algorithm.loss_agg_mode=token-mean",
        f"optim.lr={args.lr}", "optim.grad_clip=1.0", "optim.epochs=1", "optim.minibatch_size=0",
        f"optim.micro_batch_size={args.micro_batch}",
    ]
    config = load_config(TrainConfig, None, overrides)
    engine = make_engine(kind, model, tokenizer)

    def verify(problems, responses):
        return [Verdict(reward=length_reward(r), correct=False) for r in responses]

    problems = [{"prompt": [{"role": "user", "content": p}], "task": "len", "answer": ""} for p in prompts]
    # No chat template on this tokenizer: the trainer renders "content\n", the same 64 tokens.
    trainer = RLTrainer(config, model, tokenizer, engine, _FixedPrompts(problems), verify_fn=verify, log=lambda s: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, splits, lengths = [], [], []
    for step in range(total):
        estimate = max(times) if times else 0.0
        if times and budget.left() - reserve < 1.2 * estimate:
            log(f"reasonrl[{kind}]: budget: stopping after {step} steps")
            break
        sync()
        start = time.perf_counter()
        metrics = trainer.train_step()
        sync()
        times.append(time.perf_counter() - start)
        splits.append({k: metrics[k] for k in ("time_generate", "time_verify", "time_train")})
        lengths.append(metrics["response_length"])
        log(f"reasonrl[{kind}] step {step + 1}/{total}: {times[-1]:.2f}s (generate {metrics['time_generate']:.2f}, "
            f"train {metrics['time_train']:.2f}), completion tokens {metrics['response_length']:.0f}, "
            f"logprob_gap {metrics.get('logprob_gap', float('nan')):.4f}")
    timed = times[args.warmup:] or times[-1:]
    timed_splits = splits[args.warmup:] or splits[-1:]
    median = statistics.median(timed)
    result = {
        "system": f"reasonrl RLTrainer + {'FastHFEngine (static KV cache, CUDA graph)' if kind == 'fast' else 'HFEngine'}",
        "engine": kind, "step_times_s": [round(t, 3) for t in times], "timed_steps": len(times[args.warmup:]),
        "median_step_s": round(median, 3),
        "tokens_per_s": round(args.prompts * args.group * args.max_tokens / median),
        "median_generate_s": round(statistics.median(s["time_generate"] for s in timed_splits), 3),
        "median_train_s": round(statistics.median(s["time_train"] for s in timed_splits), 3),
        "mean_completion_tokens": statistics.mean(lengths),
        "peak_mem_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else 0.0,
        "graph_captures": getattr(engine, "graph_captures", 0), "graph_error": getattr(engine, "graph_error", None),
    }
    del trainer, engine, model
    release()
    return result


def run_anchor(anchor: str, budget: Budget, reserve: float) -> dict:
    """Run the TRL anchor script; stream its output; kill it at the budget."""
    out_dir = tempfile.mkdtemp(prefix="trl-anchor-out-")
    env = dict(os.environ, OUT=out_dir, PYTHONUNBUFFERED="1")
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "" or not _cuda():
        env["OMP_NUM_THREADS"] = "1"  # CPU test run: one thread, as this process
    limit = budget.left() - reserve
    if limit < 30:
        return {"error": f"skipped: {limit:.0f}s left in the budget"}
    log(f"TRL anchor: {anchor} (limit {limit:.0f}s)")
    process = subprocess.Popen([sys.executable, anchor], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    timer = threading.Timer(limit, process.kill)
    timer.start()
    result_line = None
    tail: list[str] = []
    try:
        for line in process.stdout:
            line = line.rstrip()
            if line.startswith("RESULT "):
                result_line = line[len("RESULT "):]
            if "it/s]" in line or "s/it]" in line:
                continue  # progress bars
            tail = (tail + [line])[-30:]
            print(f"    trl| {line[:300]}", flush=True)
        process.wait()
    finally:
        timer.cancel()
    if result_line is None:
        reason = "killed at the time budget" if process.returncode in (-9, 137) else f"exit {process.returncode}"
        return {"error": f"no RESULT line ({reason})", "tail": tail[-10:]}
    result = json.loads(result_line)
    out = os.environ.get("OUT")
    if out and os.path.exists(os.path.join(out_dir, "anchor.json")):
        shutil.copy(os.path.join(out_dir, "anchor.json"), os.path.join(out, "anchor.json"))
    return result


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget_s)
    import torch
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)  # the CPU run is a test of the script; extra threads only spin on a shared machine
    card = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device {card}, budget {args.budget_s:.0f}s")
    log(f"reasonrl: {bootstrap_reasonrl()}")
    report: dict = {"card": card, "settings": {k: v for k, v in vars(args).items()}, "results": {}, "errors": {}}
    # Rough costs used to keep time for later parts (H100 guesses; the tiny CPU run is quick anyway).
    reserve_for = {"trl": 20 if args.tiny else 150}

    path, prompts = build_model_dir(args, device, dtype)
    if not args.skip_check and budget.left() > 60:
        try:
            report["greedy_check"] = greedy_check(path, prompts, device, dtype, 32 if not args.tiny else 8)
            log(f"greedy check (FastHFEngine vs HFEngine): {report['greedy_check']}")
        except Exception as error:  # noqa: BLE001  (report and go on: the table matters most)
            report["errors"]["greedy_check"] = f"{type(error).__name__}: {error}"
            log(f"greedy check failed: {traceback.format_exc()}")

    order = [e for e in args.engines if e == "fast"] + (["trl"] if args.trl_anchor else []) + [e for e in args.engines if e == "hf"]
    for position, part in enumerate(order):
        # Priorities: FastHFEngine, then the TRL anchor (the baseline of the ratio), then HFEngine:
        # a part keeps time only for the higher-priority parts after it.
        later = reserve_for["trl"] if part == "fast" and "trl" in order[position + 1 :] else 0
        try:
            if part == "trl":
                result = run_anchor(args.trl_anchor, budget, reserve=later)
                if "error" in result:
                    report["errors"]["trl"] = result
                else:
                    report["results"]["trl"] = result
            else:
                if budget.left() - later < (15 if args.tiny else 40):
                    report["errors"][part] = "skipped: not enough time left in the budget"
                    log(f"reasonrl[{part}]: skipped (budget)")
                    continue
                report["results"][part] = run_reasonrl(part, path, prompts, args, device, dtype, budget, reserve=later)
                log(f"reasonrl[{part}]: {report['results'][part]}")
        except Exception as error:  # noqa: BLE001
            message = f"{type(error).__name__}: {error}"
            if "out of memory" in str(error).lower() and part != "trl":
                message += f" (try a smaller --micro-batch than {args.micro_batch})"
            report["errors"][part] = message
            log(f"{part} failed: {traceback.format_exc()}")
            release()

    print_table(report, args)
    trl = report["results"].get("trl")
    if trl and "fast" in report["results"] and trl.get("completion_len") == args.max_tokens \
            and trl.get("completions_per_step") == args.prompts * args.group:
        report["ratio_fast_vs_trl"] = round(report["results"]["fast"]["tokens_per_s"] / trl["trl_tokens_per_s"], 2)
    report["elapsed_s"] = round(time.time() - T_START, 1)
    out = os.environ.get("OUT")
    if out:
        os.makedirs(out, exist_ok=True)
        Path(out, "gpu_grpo_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print("RESULT " + json.dumps(report, default=str), flush=True)
    shutil.rmtree(path, ignore_errors=True)
    return 0


def print_table(report: dict, args: argparse.Namespace) -> None:
    results = report["results"]
    trl = results.get("trl")
    # A ratio only when TRL ran the same workload (the anchor's CPU mode uses other shapes).
    comparable = bool(trl) and trl.get("completions_per_step") == args.prompts * args.group \
        and trl.get("completion_len") == args.max_tokens
    trl_tps = trl["trl_tokens_per_s"] if comparable else None
    print("", flush=True)
    print(f"GRPO step on {report['card']}: {args.prompts} prompts x {args.group} completions x {args.max_tokens} tokens, "
          f"prompt {args.prompt_len} tokens, bf16 on GPU, no KL, HF-style generation (no vLLM)")
    print("| system | s/step | tokens/s | peak GiB | ratio |")
    print("|---|---|---|---|---|")
    for key in ("fast", "hf"):
        if key in results:
            r = results[key]
            ratio = f"{r['tokens_per_s'] / trl_tps:.2f}x" if trl_tps else ("n/a (TRL ran other shapes)" if trl else "-")
            print(f"| {r['system']} | {r['median_step_s']:.2f} | {r['tokens_per_s']} | {r['peak_mem_GiB']} | {ratio} |")
        elif key in args.engines:
            print(f"| reasonrl ({key}) | - | - | - | {report['errors'].get(key, 'not run')} |")
    if trl:
        print(f"| TRL {'GRPOTrainer'} (anchor: {trl.get('completions_per_step')} x {trl.get('completion_len')} tokens) | "
              f"{trl['trl_median_step_s']:.2f} | {trl['trl_tokens_per_s']} | {trl.get('peak_mem_GiB')} | "
              f"{'1.00x' if comparable else '-'} |")
    elif args.trl_anchor:
        print(f"| TRL GRPOTrainer | - | - | - | {str(report['errors'].get('trl', 'not run'))[:120]} |")
    for key in ("fast", "hf"):
        if key in results:
            r = results[key]
            print(f"reasonrl[{key}]: generate {r['median_generate_s']}s + train {r['median_train_s']}s per step; "
                  f"{r['timed_steps']} timed steps {r['step_times_s']}; completion tokens {r['mean_completion_tokens']}")
    if trl:
        print(f"TRL: HF generate alone {trl.get('hf_generate_only_s')}s of {trl['trl_median_step_s']}s per step")
    elif not args.tiny and "fast" in results:
        rec = RECORDED_ANCHOR
        print(f"TRL did not run here; recorded anchor ({rec['card']}, ENVIRONMENT.md): {rec['trl_median_step_s']} s/step, "
              f"{rec['trl_tokens_per_s']} tokens/s, {rec['peak_mem_GiB']} GiB -> FastHFEngine "
              f"{results['fast']['tokens_per_s'] / rec['trl_tokens_per_s']:.2f}x (different calls: indicative only)")
    if "greedy_check" in report:
        g = report["greedy_check"]
        print(f"greedy check: {g['identical_samples']}/{g['samples']} samples identical over {g['tokens']} tokens "
              f"(mean common prefix {g['mean_common_prefix']}), max log-prob diff on common prefix "
              f"{g['max_logprob_diff_on_common_prefix']}, graph replay identical {g['replay_identical']}, "
              f"graphs captured {g['graph_captures']}{', capture error ' + g['graph_error'] if g.get('graph_error') else ''}; "
              f"log-probs vs teacher-forced forward, max|mean abs diff: HFEngine {g['teacher_forced_max_abs_diff']['hf']}|"
              f"{g['teacher_forced_mean_abs_diff']['hf']}, FastHFEngine {g['teacher_forced_max_abs_diff']['fast']}|"
              f"{g['teacher_forced_mean_abs_diff']['fast']}")
    if report["errors"]:
        print(f"errors: {json.dumps(report['errors'], default=str)[:1500]}")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
