"""``reasonrl eval``: evaluate checkpoints: pass@k, maj@k, best-of-N, per difficulty, with a report and plots.

    reasonrl eval --model runs/arith-tiny-seed0     # newest checkpoint, on the run's held-out test split
    reasonrl eval --model runs/tiny/checkpoints/step-400 --task arith --n 16 --k 1,4,16
    reasonrl eval --model ckpt-a --model ckpt-b --task kk --level people=3 --level people=5 --n 8
    reasonrl eval --model DIR --benchmark gsm8k --data gsm8k/test.jsonl --n 4 --num-problems 200
    reasonrl eval --model DIR --task math --data my_math.jsonl --scorer prm:my-prm --prm-reduce min

Problems: with --model inside a training run directory and no --task/--data/--benchmark, the
run's own held-out test split (rebuilt from its config.yaml: the problems its before/after
pass@1 used, never seen in SFT or RL; --difficulty or --level switch to the held-out stream
below at those knobs). Otherwise a generator task (arith, kk, ...) evaluates on --num-problems problems per
difficulty level drawn from a held-out seed stream (--problem-seed; a stream that
`reasonrl gen --seed S` and generate_dataset never use; --exclude TRAIN.jsonl also rules out
any chance repeat of a training puzzle). Dataset tasks read --data FILE (Problem rows) or a --benchmark loader
(gsm8k, math500, humaneval, mbpp, ifeval, kk) reading --data (a JSONL/JSON/Parquet file or a
datasets save_to_disk folder), --hf-dataset (the local datasets cache, offline) or
$REASONRL_DATA_DIR (a folder with gsm8k/test.jsonl, math/math500_test.jsonl,
humaneval/HumanEval.jsonl, mbpp/sanitized-mbpp.jsonl, ifeval/input_data.jsonl,
kk/kk_test_3to7ppl.jsonl).

Outputs (next to --output): report.json, report.md, plots/pass_at_k.png,
plots/accuracy_per_difficulty.png and samples/ (the sample cache: re-running resumes an
interrupted evaluation, and a larger --n reuses what was drawn). With several --model's,
report.json is the first model's report plus "models" and "comparison"; each model's full
report is in <label>/report.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n\n", 1)[1]
    parser.add_argument("--model", action="append", required=True, metavar="DIR",
                        help="Hugging Face checkpoint directory; repeat for a side-by-side comparison")
    parser.add_argument("--task", help="task name (see `reasonrl tasks`) or module.path:attr; implied by --benchmark, "
                        "or, when --model is in a training run directory, that run's task and held-out test split")
    parser.add_argument("--data", help="problems file (.jsonl/.json/.parquet of Problem rows, or the --benchmark's file)")
    parser.add_argument("--benchmark", help="benchmark loader: gsm8k, math500, humaneval, mbpp, ifeval, kk")
    parser.add_argument("--hf-dataset", metavar="NAME", help="with --benchmark: read NAME from the local datasets cache "
                        "(offline), e.g. openai/gsm8k")
    parser.add_argument("--hf-config", help="with --hf-dataset: the dataset config (e.g. main)")
    parser.add_argument("--split", default="test", help="with --hf-dataset or a save_to_disk folder: the split (default test)")
    parser.add_argument("--n", type=int, default=16, help="samples per problem (default 16; 1 at temperature 0)")
    parser.add_argument("--k", default="1,4,16", help="comma-separated k for pass@k / maj@k / best-of-N (only k <= n reported)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature, 0 = greedy (default 1.0)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    parser.add_argument("--max-tokens", type=int, default=512, help="longest response in tokens (default 512)")
    parser.add_argument("--num-problems", type=int, default=None,
                        help="problems per difficulty level for generator tasks (default 100); first N rows of a dataset")
    parser.add_argument("--difficulty", nargs="+", action="append", default=[], metavar="KEY=VALUE",
                        help="generator difficulty knobs, e.g. people=4 (repeatable)")
    parser.add_argument("--level", action="append", default=[], metavar="KNOBS",
                        help='a difficulty level on top of --difficulty, e.g. --level "people=3" --level "people=5;depth=3"; '
                        "each level gets --num-problems problems and its own row in the per-difficulty breakdown")
    parser.add_argument("--problem-seed", type=int, default=0, help="seed of the held-out problem stream (default 0)")
    parser.add_argument("--exclude", metavar="FILE", help="training problems (.jsonl/.parquet) no generated problem may repeat")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--engine", choices=("auto", "hf", "vllm"), default="auto",
                        help="rollout engine: auto = vLLM when importable, else HF generate")
    parser.add_argument("--batch-size", type=int, default=32, help="problems per engine call (default 32)")
    parser.add_argument("--dtype", default=None, help="model dtype for the engine (float32, bfloat16, ...; default the engine's)")
    parser.add_argument("--workers", type=int, default=None, help="verifier processes (default: CPU count; 0: in process)")
    parser.add_argument("--verify-timeout", type=float, default=None, help="per-sample verification limit in seconds")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="verifier option (as in `reasonrl verify`), e.g. strict=true")
    parser.add_argument("--scorer", metavar="rm:DIR|prm:DIR",
                        help="best-of-N scorer: an outcome reward model (rm:DIR) or a process reward model (prm:DIR)")
    parser.add_argument("--prm-reduce", choices=("min", "last", "mean"), default="min",
                        help="how a PRM's step scores become one score (default min)")
    parser.add_argument("--prm-head", choices=("classification", "token_pair", "implicit"), default="classification",
                        help="PRM head (see reasonrl.envs.process_rewards.ModelPRMScorer)")
    parser.add_argument("--prm-steps", default="blank_lines",
                        help="step segmentation for the PRM: blank_lines, lines, step_markers, delimiter")
    parser.add_argument("--output", default=None,
                        help="report.json path (default reasonrl-eval/<task>/report.json); report.md and plots/ go beside it")
    parser.add_argument("--cache-dir", default=None, help="sample cache folder (default: samples/ beside --output)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: on when stderr is a terminal)")
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import a module or .py file first (one that registers your task); repeatable")


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"--k {text!r}: expected comma-separated integers such as 1,4,16") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k {text!r}: every k must be >= 1")
    return ks


def parse_level(spec: str) -> dict[str, str]:
    """``"people=5;depth=3"`` (``;`` or spaces between knobs) -> ``{"people": "5", "depth": "3"}``."""
    from reasonrl.commands.gen import parse_difficulty

    return parse_difficulty([spec.replace(";", " ").split()])


def run(args: argparse.Namespace) -> int:
    from reasonrl.commands.gen import parse_difficulty
    from reasonrl.commands.train import hf_progress_bars
    from reasonrl.commands.verify import parse_options
    from reasonrl.data_gen import ConfigError
    from reasonrl.eval import runner

    try:
        for module in args.imports:
            from reasonrl.tasks import _import_task_module

            _import_task_module(module)
        config = runner.EvalConfig(
            n=args.n, ks=parse_ks(args.k), temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
            seed=args.seed, engine=args.engine, batch_size=args.batch_size, workers=args.workers,
            verify_timeout=args.verify_timeout, verifier_options=parse_options(args.option),
            engine_options={"dtype": args.dtype} if args.dtype else {},
        )
        for index, model in enumerate(args.model):
            resolved = runner.check_model_dir(model)
            if resolved != Path(model):
                print(f"--model {model}: a run directory; evaluating its newest checkpoint {resolved}", file=sys.stderr)
                args.model[index] = str(resolved)
        runner.resolve_engine_kind(args.engine)
        difficulty = parse_difficulty(args.difficulty)
        run_config = None
        if args.task is None and args.benchmark is None and args.data is None:
            run_config = runner.training_run_config(args.model[0])
            if run_config is None:
                raise ValueError("give --task (or --benchmark / --data); the model is not inside a training run "
                                 "directory whose config.yaml would say")
        if run_config is not None and not difficulty and not args.level:
            # The run's own held-out test split: exactly the problems its before/after pass@1 used.
            task = run_config["task"]
            problems = runner.training_heldout_problems(run_config, args.num_problems)
            source = {"training_run_test_split": str(Path(args.model[0]).parent.parent), "seed": run_config.get("seed", 0)}
            print(f"task {task}: the training run's held-out test split ({len(problems)} problems, never used in "
                  "SFT or RL), from its config.yaml", file=sys.stderr)
        else:
            if run_config is not None:  # the run's task at its knobs, updated by --difficulty
                args.task = run_config["task"]
                difficulty = {**{k: str(v) for k, v in (run_config.get("task_options") or {}).items()}, **difficulty}
            task, problems = runner.eval_problems(
                args.task, data=args.data, benchmark=args.benchmark, num_problems=args.num_problems,
                problem_seed=args.problem_seed, difficulty=difficulty,
                levels=[parse_level(level) for level in args.level] or None, exclude=args.exclude,
                hf_dataset=args.hf_dataset, hf_config=args.hf_config, split=args.split,
            )
            source = {"benchmark": args.benchmark, "data": args.data, "hf_dataset": args.hf_dataset} if (
                args.benchmark or args.data) else {"generator": task, "problem_seed": args.problem_seed,
                                                   "difficulty": difficulty, "levels": [parse_level(v) for v in args.level]}
        scorer = None
        if args.scorer:
            scorer = runner.make_scorer(args.scorer, reduce=args.prm_reduce, prm_head=args.prm_head, step_method=args.prm_steps)
    except (runner.EvalError, ConfigError, KeyError, ValueError, FileNotFoundError, ImportError) as exc:
        print(f"reasonrl eval: {_message(exc)}", file=sys.stderr)
        return 2

    output = Path(args.output) if args.output else Path("reasonrl-eval") / _safe(task) / "report.json"
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    print(f"evaluating {len(args.model)} model(s) on {len(problems)} {task} problems, n={config.samples_per_problem}, "
          f"engine {runner.resolve_engine_kind(args.engine)}", file=sys.stderr)
    dropped = [k for k in config.ks if k > config.samples_per_problem]
    if dropped:
        print(f"note: k = {', '.join(map(str, dropped))} > n = {config.samples_per_problem} is not reported (needs n >= k samples)",
              file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        try:
            with hf_progress_bars(progress):
                combined = runner.evaluate_models(
                    args.model, problems, config, output, cache_dir=args.cache_dir, scorer=scorer, progress=progress,
                    plots=not args.no_plots, meta={"problems_source": source},
                )
        except (runner.EvalError, ValueError) as exc:
            print(f"reasonrl eval: {_message(exc)}", file=sys.stderr)
            return 2

    reports = {label: json.loads((output.parent / runner._safe_name(label) / "report.json").read_text())
               for label in combined["models"]} if "models" in combined else {combined["model"]: combined}
    print(runner.summary_table(reports))
    stats = ", ".join(f"{label}: {rep['run']['generated']} generated, {rep['run']['reused']} reused"
                      for label, rep in reports.items())
    print(f"samples: {stats}")
    written = [output, output.parent / "report.md"] + ([] if args.no_plots else
                                                       [output.parent / "plots" / "pass_at_k.png",
                                                        output.parent / "plots" / "accuracy_per_difficulty.png"])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
