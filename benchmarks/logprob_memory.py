"""Peak memory of the trainer's log-prob pass (forward + backward), chunked against one-shot.

Command (project root)::

    python benchmarks/logprob_memory.py [--rows 16] [--response 256] [--prompt 64] [--vocab 151936]
        [--hidden 64] [--dtype bfloat16] [--device cpu|cuda] [--output benchmarks/results/logprob_memory.json]

What it measures: :func:`reasonrl.trainers.rl.response_logprobs` with entropy, then a backward pass
of a token-weighted sum of the log-probs, for one micro-batch of ``--rows`` sequences of
``--prompt`` + ``--response`` tokens, on a random-init Qwen2 with a Qwen-sized vocabulary (the
shape of the GPU check in BENCHMARKS.md: 16 x 257 positions x 151,936 logits). Two variants, each
in a fresh child process:

* ``chunked``: the trainer as it is (fp32 conversion a few rows at a time, recomputed in backward);
* ``one-shot``: the chunk budget raised so that the whole micro-batch is converted at once (the
  trainer before the change).

Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the child's peak resident set
(``ru_maxrss``) minus its resident set after building the model and the inputs. The hidden size is
kept small on purpose: the logits, not the model, are what the chunking is about.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def child(args: argparse.Namespace, variant: str) -> dict:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reasonrl.trainers import rl

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    config = Qwen2Config(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=args.prompt + args.response + 8,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).to(device=args.device, dtype=dtype).train()
    total = args.prompt + args.response
    ids = torch.randint(0, args.vocab, (args.rows, total), device=args.device)
    mask = torch.ones_like(ids)
    weights = torch.randn(args.rows, args.response, device=args.device)
    if variant == "one-shot":
        rl.LOGPROB_CHUNK_ELEMENTS = 1 << 62
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    logprobs, entropy, _ = rl.response_logprobs(model, ids, mask, args.response, temperature=1.0, with_entropy=True)
    (logprobs * weights).sum().backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {
        "variant": variant, "peak_gib": peak / 2**30, "seconds": time.perf_counter() - start,
        "logprob_sum": float(logprobs.float().sum()), "grad_norm": float(model.model.embed_tokens.weight.grad.float().norm()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--response", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="benchmarks/results/logprob_memory.json")
    parser.add_argument("--child", choices=["chunked", "one-shot"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args, args.child)))
        return
    results = []
    for variant in ("chunked", "one-shot"):
        command = [sys.executable, __file__, "--child", variant] + [
            f"--{k}={v}" for k, v in vars(args).items() if k not in ("child", "output")
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    shape = f"{args.rows} x {args.prompt + args.response} tokens, vocab {args.vocab}, {args.dtype} on {args.device}"
    print(f"log-prob pass (forward + backward), {shape}")
    print(f"{'variant':10}{'peak GiB':>10}{'seconds':>10}")
    for r in results:
        print(f"{r['variant']:10}{r['peak_gib']:>10.2f}{r['seconds']:>10.1f}")
    same = abs(results[0]["logprob_sum"] - results[1]["logprob_sum"]) <= 1e-3 * abs(results[1]["logprob_sum"])
    print(f"same log-probs: {same}; peak ratio one-shot / chunked: {results[1]['peak_gib'] / results[0]['peak_gib']:.2f}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({"shape": shape, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
