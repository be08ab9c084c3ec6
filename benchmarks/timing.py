"""Timing helpers: many lazy launches per synchronisation, repeated, median per launch.

On a GPU one `mx.eval` plus synchronisation costs far more than a lazy
custom-kernel launch (FACTS.md: ~68 µs against ~12 µs on MLX CUDA), so timing
one launch per eval measures the synchronisation. Instead each sample times
`launches_per_eval` launches under a single eval and divides.

A plan may carry a time budget per implementation: the faster of two first
warm-up launches measures the launch, and a launch of `SINGLE_LAUNCH_S` or more is timed one
per eval (the eval's ~68 µs is then under 1% of it), with as many repeats as
the budget holds (at least `MIN_ITERS`). Without it the GPU quick run spent
14 s timing the attention backward alone (115 ms x 10 launches x 12 batches
on the H200).
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
        launches_per_sample: Launches each sample timed together (fewer than the plan's
            where a budget made a slow launch run one per eval).
    """

    median_s: float
    min_s: float
    samples: tuple[float, ...]
    launches_per_sample: int = 1


@dataclass(frozen=True)
class TimingPlan:
    """How hard to time one implementation.

    Attributes:
        warmup: Untimed repeats first (compilation, caches, allocator).
        iters: Timed repeats; the median of them is reported.
        launches_per_eval: Launches per timed repeat, evaluated together.
        reference_iters: Timed calls of the NumPy reference, which runs on the
            host and may take seconds at GPU sizes.
        budget_s: Seconds of timed batches per implementation, or None for
            exactly `iters` batches of `launches_per_eval` launches.
    """

    warmup: int
    iters: int
    launches_per_eval: int
    reference_iters: int
    budget_s: float | None = None


# A launch this long is timed one per eval: the eval's fixed cost is then under 1% of it.
SINGLE_LAUNCH_S = 10e-3
# The fewest timed repeats a budget may leave: a median needs a few samples.
MIN_ITERS = 3


def time_batches(
    run: Callable[[int], float],
    *,
    warmup: int,
    iters: int,
    launches: int,
    budget_s: float | None = None,
) -> Timing:
    """Times `run`, which performs the given number of launches, waits for them and returns
    the seconds that took.

    Args:
        run: Launches `n` times and returns the seconds from the first launch to completion.
        warmup: Untimed repeats first.
        iters: Timed repeats.
        launches: Launches per repeat, to report seconds per launch.
        budget_s: Seconds the timed repeats may take; the faster of two single
            warm-up launches (made even when `warmup` is 0, standing for one of the
            `warmup` repeats otherwise) sets launches per repeat and repeats (see the
            module docstring). None: exactly `iters` repeats.

    Returns:
        Seconds per launch: median, minimum and every sample.
    """
    if budget_s is not None:
        # Single launches, so that a slow one does not run `launches` times here; the faster of
        # two, as the first may compile (MLX's own kernels compile on first use too).
        per_launch = min(run(1), run(1))
        warmup -= 1
        if per_launch >= SINGLE_LAUNCH_S:
            launches = 1
        iters = max(MIN_ITERS, min(iters, int(budget_s / (per_launch * launches))))
    for _ in range(warmup):
        run(launches)
    samples = [run(launches) / launches for _ in range(max(1, iters))]
    return Timing(statistics.median(samples), min(samples), tuple(samples), launches)


def time_mlx(
    fn: Callable[[], Any],
    *,
    warmup: int,
    iters: int,
    launches_per_eval: int,
    budget_s: float | None = None,
    before_batch: Callable[[], None] | None = None,
) -> Timing:
    """Times an MLX function, `launches_per_eval` lazy calls per `mx.eval`.

    Args:
        fn: Builds the lazy computation once and returns its output(s)
            (an array, or any tree of arrays `mx.eval` accepts).
        warmup: Untimed repeats first.
        iters: Timed repeats.
        launches_per_eval: Calls of `fn` evaluated together in each repeat.
        budget_s: Seconds the timed repeats may take (see `time_batches`).
        before_batch: Untimed work before every repeat (warm-up ones too), finished
            before the clock starts: `dispatch_busy`'s busy phase.

    Returns:
        Seconds per call: median, minimum and every sample.
    """

    def run(launches: int) -> float:
        if before_batch is not None:
            before_batch()
            mx.synchronize()
        start = time.perf_counter()
        mx.eval([fn() for _ in range(launches)])
        mx.synchronize()
        return time.perf_counter() - start

    return time_batches(run, warmup=warmup, iters=iters, launches=launches_per_eval, budget_s=budget_s)


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

    def run(launches: int) -> float:
        start = time.perf_counter()
        result[:] = [fn()]
        return time.perf_counter() - start

    timing = time_batches(run, warmup=0, iters=iters, launches=1)
    return timing, result[0]


def time_ranks(group: mx.distributed.Group, step: Callable[[], Any], iters: int) -> float:
    """Median seconds of `step()` (which returns arrays to evaluate) on this rank of `group`,
    after one untimed warm-up step, every repeat starting together on all ranks (a small
    `all_sum` first). `python -m benchmarks.distributed` takes the slowest rank's."""
    mx.eval(step())
    samples = []
    for _ in range(iters):
        if group.size() > 1:
            mx.eval(mx.distributed.all_sum(mx.array(0.0), group=group))
        start = time.perf_counter()
        mx.eval(step())
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)
