"""Generation: a continuous-batching engine, its scheduler and batched token samplers.

`sampling` holds the samplers (mlx-lm's filters and penalties with per-request parameters and
seeds, on a whole batch at once); `scheduler` decides, step by step, which requests prefill or
decode within a token budget and the KV blocks free, and which to preempt.
"""

from .engine import EngineStats, GenerationEngine, Request
from .sampling import GREEDY, SamplingParams, TokenRandom, make_sampler, sample_tokens
from .scheduler import ScheduledRequest, Scheduler, StepPlan, Work

__all__ = [
    "EngineStats", "GenerationEngine", "GREEDY", "Request", "SamplingParams", "ScheduledRequest", "Scheduler", "StepPlan", "TokenRandom", "Work",
    "make_sampler", "sample_tokens",
]  # fmt: skip
