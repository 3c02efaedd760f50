"""Checkpoint evaluation: pass@k, maj@k, best-of-N, per difficulty, with reports and plots.

>>> from reasonrl.eval import EvalConfig, eval_problems, evaluate_models
>>> task, problems = eval_problems("arith", num_problems=50)                         # doctest: +SKIP
>>> report = evaluate_models(["runs/tiny/checkpoints/step-400"], problems,
...                          EvalConfig(n=8, ks=(1, 4, 8)), "out/report.json")       # doctest: +SKIP
>>> report["pass@k"]                                                                 # doctest: +SKIP
{'1': 0.42, '4': 0.71, '8': 0.8}

Modules: :mod:`.estimators` (unbiased pass@k), :mod:`.report` (maj@k, best-of-N, report.json /
report.md / plots), :mod:`.loaders` (GSM8K, MATH-500, HumanEval, MBPP, IFEval, K&K from local
files), :mod:`.runner` (engines, sampling with seeds, the sample cache, best-of-N scorers).
Nothing heavy is imported until a model is evaluated.
"""
from reasonrl.eval.estimators import mean_pass_at_k, pass_at_k
from reasonrl.eval.loaders import benchmark_names, load_benchmark
from reasonrl.eval.report import (
    ProblemResult,
    best_of_n_correct,
    build_report,
    majority_correct,
    plot_reports,
    summarize,
    write_markdown,
)
from reasonrl.eval.runner import (
    CallableScorer,
    EvalConfig,
    EvalError,
    ProcessRewardScorer,
    RewardModelScorer,
    SampleScorer,
    eval_problems,
    evaluate_model,
    evaluate_models,
    make_scorer,
)

__all__ = [
    "pass_at_k", "mean_pass_at_k", "benchmark_names", "load_benchmark", "ProblemResult", "best_of_n_correct",
    "build_report", "majority_correct", "plot_reports", "summarize", "write_markdown", "CallableScorer", "EvalConfig",
    "EvalError", "ProcessRewardScorer", "RewardModelScorer", "SampleScorer", "eval_problems", "evaluate_model",
    "evaluate_models", "make_scorer",
]
