"""Triton's `triton.testing` timing helpers on MLX: `do_bench` and `do_bench_cudagraph`.

MLX evaluates lazily, so a timed call is forced to run: each call's result (the arrays `fn`
returns) and every array a kernel launch inside it wrote in place are evaluated, as Triton's
`do_bench` synchronizes the device.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx

from .runtime.autotune import time_calls
from .runtime.jit import recording_writes

RETURN_MODES = ("min", "max", "mean", "median", "all")


def do_bench(
    fn: Callable[[], Any],
    warmup: float = 25,
    rep: float = 100,
    grad_to_none: Any = None,
    quantiles: Sequence[float] | None = None,
    return_mode: str = "mean",
) -> float | list[float]:
    """Milliseconds per call of `fn`, with Triton's arguments.

    Args:
        fn: Runs the work once: kernel launches, MLX ops. Its return value (arrays, or nested
            lists/tuples of them) and the arrays its launches wrote are evaluated each call.
        warmup: Milliseconds of untimed calls first.
        rep: Milliseconds of timed calls.
        grad_to_none: Accepted for Triton compatibility; MLX arrays hold no gradients.
        quantiles: If given, return these quantiles (each in [0, 1]) of the per-call times.
        return_mode: One of "min", "max", "mean", "median" or "all" (every sample).

    Returns:
        The statistic `return_mode` asks for (a list for "all" or with `quantiles`).
    """
    if return_mode not in RETURN_MODES:
        raise ValueError(f"return_mode must be one of {', '.join(RETURN_MODES)}, got {return_mode!r}")
    if quantiles is not None and not all(0 <= q <= 1 for q in quantiles):
        raise ValueError(f"quantiles must lie in [0, 1], got {list(quantiles)}")

    def call() -> list[mx.array]:
        with recording_writes() as written:
            result = fn()
        return [*_arrays(result), *written]

    samples = time_calls(call, warmup, rep)
    if quantiles is not None:
        return [_quantile(sorted(samples), q) for q in quantiles]
    if return_mode == "all":
        return samples
    stat = {"min": min, "max": max, "mean": statistics.fmean, "median": statistics.median}[return_mode]
    return float(stat(samples))


def do_bench_cudagraph(
    fn: Callable[[], Any],
    rep: float = 20,
    grad_to_none: Any = None,
    quantiles: Sequence[float] | None = None,
    return_mode: str = "mean",
) -> float | list[float]:
    """`do_bench` under Triton's CUDA-graph name: MLX has no graphs to capture, so calls are
    timed as `do_bench` times them (several per evaluation)."""
    return do_bench(
        fn, warmup=rep / 4, rep=rep, grad_to_none=grad_to_none, quantiles=quantiles, return_mode=return_mode
    )


def _arrays(result: Any) -> list[mx.array]:
    if isinstance(result, mx.array):
        return [result]
    if isinstance(result, (list, tuple)):
        return [a for item in result for a in _arrays(item)]
    if isinstance(result, dict):
        return [a for item in result.values() for a in _arrays(item)]
    return []


def _quantile(ordered: list[float], q: float) -> float:
    """Linear interpolation between closest ranks, as `torch.quantile` computes Triton's."""
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)
