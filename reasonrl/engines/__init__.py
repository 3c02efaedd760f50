"""Rollout engines: Hugging Face ``generate`` and vLLM behind one interface."""
from reasonrl.engines.base import RolloutEngine, Sample, SamplingParams

__all__ = ["RolloutEngine", "Sample", "SamplingParams"]
