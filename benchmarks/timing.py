"""Timing helpers: many lazy launches per synchronisation, repeated, median per launch.

On a GPU one `mx.eval` plus synchronisation costs far more than a lazy
custom-kernel launch (FACTS.md: ~68 µs against ~12 µs on MLX CUDA), so timing
one launch per eval measures the synchronisation. Instead each sample times
`launches_per_eval` launches under a single eval and divides.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx


@dataclass(frozen=True)
class Timing:
    """Seconds per launch of one implementation at one size.

    Attributes:
        median_s: Median over the samples: what the table reports.
        min_s: Fastest sample.
        samples: Seconds per launch of each timed repeat.
    """

    median_s: float
    min_s: float
    samples: tuple[float, ...]


@dataclass(frozen=True)
class TimingPlan:
    """How hard to time one implementation.

    Attributes:
        warmup: Untimed repeats first (compilation, caches, allocator).
        iters: Timed repeats; the median of them is reported.
        launches_per_eval: Launches per timed repeat, evaluated together.
        reference_iters: Timed calls of the NumPy reference, which runs on the
            host and may take seconds at GPU sizes.
    """

    warmup: int
    iters: int
    launches_per_eval: int
    reference_iters: int


def time_batches(run_batch: Callable[[], None], *, warmup: int, iters: int, per_batch: int) -> Timing:
    """Times `run_batch` (which performs `per_batch` launches and waits for them).

    Args:
        run_batch: Launches `per_batch` times and returns once all are complete.
        warmup: Untimed calls first.
        iters: Timed calls.
        per_batch: Launches per call, to report seconds per launch.

    Returns:
        Seconds per launch: median, minimum and every sample.
    """
    for _ in range(warmup):
        run_batch()
    samples = []
    for _ in range(max(1, iters)):
        start = time.perf_counter()
        run_batch()
        samples.append((time.perf_counter() - start) / per_batch)
    return Timing(statistics.median(samples), min(samples), tuple(samples))


def time_mlx(fn: Callable[[], Any], *, warmup: int, iters: int, launches_per_eval: int) -> Timing:
    """Times an MLX function, `launches_per_eval` lazy calls per `mx.eval`.

    Args:
        fn: Builds the lazy computation once and returns its output(s)
            (an array, or any tree of arrays `mx.eval` accepts).
        warmup: Untimed repeats first.
        iters: Timed repeats.
        launches_per_eval: Calls of `fn` evaluated together in each repeat.

    Returns:
        Seconds per call: median, minimum and every sample.
    """

    def run_batch() -> None:
        mx.eval([fn() for _ in range(launches_per_eval)])
        mx.synchronize()

    return time_batches(run_batch, warmup=warmup, iters=iters, per_batch=launches_per_eval)


def time_host(fn: Callable[[], Any], *, iters: int) -> tuple[Timing, Any]:
    """Times a synchronous host function (the NumPy reference), without warm-up.

    The reference can take seconds at GPU sizes, so its first call is a timed
    sample and its result is handed back for the correctness check instead
    of being computed again.

    Args:
        fn: The function to time.
        iters: Timed calls.

    Returns:
        Seconds per call, and the result of the last call.
    """
    result: list[Any] = []

    def run_batch() -> None:
        result[:] = [fn()]

    timing = time_batches(run_batch, warmup=0, iters=iters, per_batch=1)
    return timing, result[0]
