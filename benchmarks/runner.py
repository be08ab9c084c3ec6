"""`python -m benchmarks.runner`: times registered entries and reports them.

    python -m benchmarks.runner [--suite NAME ...] [--kernel NAME ...] [--backend NAME]
                                [--quick | --smoke] [--reference auto|float64|fast|both]
                                [--out DIR] [--list]

For every entry and size: the reference (float64 NumPy, timed as the numpy
column; on GPU backends the entry's fast reference instead: float32 MLX on the
device, or float64 on a sample), the mtriton launch (checked once, then timed),
the MLX built-in, and on CUDA machines with torch and triton the same kernel
source under real Triton plus PyTorch's op. The copy entry (the machine's copy
bandwidth) and the matmul rate are measured first, in the same way, to express
kernels as a share of them. Prints each entry's elapsed time on stderr, a table
on stdout, writes JSON and PNG plots under `--out`; exits with 1 when any check
fails.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlx.core as mx

import mtriton
from mtriton.backends import get_backend
from mtriton.options import BACKENDS

from . import external, report, suites
from .machine import machine_info, measure_limits
from .registry import BACKEND_TIERS, Benchmark, Case, DeviceReference, SampledReference, Size, Tier, select
from .results import Check, Result, compare
from .suites.tutorials import COPY
from .timing import TimingPlan, time_host, time_mlx

# GPUs need many launches per eval to hide the eval's fixed cost (see timing.py) and are
# fast enough for many repeats; CPU emulation runs one launch per eval (it evaluates
# eagerly anyway) and few repeats, to keep `--quick` near two minutes. `--smoke` excludes
# `--quick`, so it has one plan. GPU plans carry a budget per implementation: without it a
# 115 ms launch (the attention backward) took 14 s of 10 launches x 12 repeats.
PLANS: dict[tuple[Tier, bool], TimingPlan] = {
    ("smoke", False): TimingPlan(warmup=0, iters=1, launches_per_eval=1, reference_iters=1),
    ("cpu", True): TimingPlan(warmup=1, iters=5, launches_per_eval=1, reference_iters=3),
    ("cpu", False): TimingPlan(warmup=1, iters=10, launches_per_eval=1, reference_iters=3),
    ("gpu", True): TimingPlan(warmup=2, iters=10, launches_per_eval=10, reference_iters=1, budget_s=0.5),
    ("gpu", False): TimingPlan(warmup=3, iters=30, launches_per_eval=10, reference_iters=2, budget_s=2.0),
}


REFERENCE_MODES = ("auto", "float64", "fast", "both")
# What a GPU run may take before the log flags it: the quick run shares one 10-minute device
# call with the test suite (scripts/gpu_check.sh), so it must finish within 4 minutes; one
# entry at one size is estimated at 1-9 s on the H200 (benchmarks/README.md).
GPU_QUICK_BUDGET_S = 240.0
GPU_ENTRY_BUDGET_S = 12.0


def _error(err: Exception) -> Check:
    lines = str(err).strip().splitlines()
    return Check("ERROR", f"{type(err).__name__}: {lines[0] if lines else ''}")


def _attempt(result: Result, impl: str, action: Callable[[], None]) -> None:
    """Runs `action`; an exception becomes an ERROR check for `impl` so the other cases still run.
    Its wall time goes to `result.elapsed_s[impl]`."""
    start = time.perf_counter()
    try:
        action()
    except Exception as err:  # one broken kernel or size must not end the run
        result.checks[impl] = _error(err)
        print(
            f"\n{result.suite}/{result.name} {result.label}: {impl} {result.checks[impl].detail}",
            file=sys.stderr,
        )
    result.elapsed_s[impl] = time.perf_counter() - start


def _identity(output: Any) -> Any:
    return output


def _describe(reference: DeviceReference | SampledReference) -> dict[str, str]:
    if isinstance(reference, DeviceReference):
        return {
            "method": "float32-device",
            "detail": f"float32 MLX ops on {mx.default_device()}, every element: {reference.why}",
        }
    return {"method": "float64-sample", "detail": f"float64 NumPy on {reference.what}"}


def _expected(case: Case, mode: str, plan: TimingPlan, result: Result) -> tuple[Any, Callable[[Any], Any]]:
    """The result the checks compare with, and what part of an output they compare.

    Mode "float64": the full float64 reference, timed as the `numpy` column. "fast": the
    entry's `fast_reference` where it has one (and no `numpy` column). "both": the float64
    one for the checks, and the fast one checked against it within a quarter of the tolerance
    (`checks["fast_reference"]`): how to validate the fast references at GPU sizes. Records
    the method in `result.reference`.
    """
    fast = case.fast_reference if mode != "float64" else None
    if fast is not None and mode == "fast":
        result.reference = _describe(fast)
        if isinstance(fast, DeviceReference):
            expected = fast.run()
            mx.eval(expected)
            return expected, _identity
        return fast.run(), fast.select
    result.times["numpy"], expected = time_host(case.reference, iters=plan.reference_iters)
    result.reference = {"method": "float64", "detail": "float64 NumPy on the host, every element"}
    if fast is not None:
        part = expected if isinstance(fast, DeviceReference) else fast.select(expected)
        result.checks["fast_reference"] = compare(fast.run(), part, case.rtol / 4, case.atol / 4)
        result.reference["fast"] = _describe(fast)["detail"]
    return expected, _identity


def measure(entry: Benchmark, size: Size, plan: TimingPlan, reference: str = "float64") -> Result:
    """Checks and times every implementation of `entry` at `size`.

    Args:
        entry: The registered entry.
        size: Keyword arguments of its setup function.
        plan: How hard to time.
        reference: "float64", "fast" or "both" (see `_expected`).

    Returns:
        The timings and checks; an implementation that raised has an ERROR
        check and no timing. `elapsed_s` holds each phase's wall time.
    """
    start = time.perf_counter()
    case = entry.setup(**size)
    result = Result(entry.suite, entry.name, case.label, size, entry.bound, case.bytes, case.flops)
    result.elapsed_s["setup"] = time.perf_counter() - start
    expected: list[Any] = []
    select: list[Callable[[Any], Any]] = []

    def run_reference() -> None:
        value, part = _expected(case, reference, plan, result)
        expected.append(value)
        select.append(part)

    _attempt(result, "reference", run_reference)

    def check(impl: str, output: Any) -> None:
        if expected:  # a reference that raised is its own ERROR; the timings still run
            result.checks[impl] = compare(select[0](output), expected[0], case.rtol, case.atol)

    mlx_plan = {
        "warmup": plan.warmup,
        "iters": plan.iters,
        "launches_per_eval": case.launches_per_eval or plan.launches_per_eval,
        "budget_s": plan.budget_s,
        "before_batch": case.before_batch,
    }

    def run_mtriton() -> None:
        check("mtriton", case.run_mtriton())
        result.times["mtriton"] = time_mlx(case.run_mtriton, **mlx_plan)

    def time_column(impl: str, fn: Callable[[], Any]) -> None:
        def run() -> None:
            result.times[impl] = time_mlx(fn, **mlx_plan)

        _attempt(result, impl, run)

    _attempt(result, "mtriton", run_mtriton)
    mlx_columns = {"builtin": case.builtin, "unfused": case.unfused, "fresh": case.fresh, "raw": case.raw}
    for impl, fn in mlx_columns.items():
        if fn is not None:
            time_column(impl, fn)
    twin = external.triton_twin(case.kernels) if case.external else None
    if twin is None:
        return result
    tensors: dict[str, Any] = {}
    _attempt(result, "torch_copies", lambda: tensors.update(external.to_torch(case.buffers)))
    if not tensors:
        return result
    torch_plan = {
        "warmup": max(plan.warmup, 1),
        "iters": plan.iters,
        "launches_per_sync": plan.launches_per_eval,
        "budget_s": plan.budget_s,
    }

    def run_triton() -> None:
        check("triton", case.launch(twin, tensors))
        result.times["triton"] = external.time_torch(lambda: case.launch(twin, tensors), **torch_plan)

    def run_torch() -> None:
        torch_op = case.torch
        assert torch_op is not None
        result.times["torch"] = external.time_torch(lambda: torch_op(tensors), **torch_plan)

    _attempt(result, "triton", run_triton)
    if case.torch is not None:
        _attempt(result, "torch", run_torch)
    return result


def _copy_limit(copy: Result) -> tuple[float, str]:
    """The copy bandwidth the %lim columns divide by: the copy entry's built-in (`x + 0`)."""
    rate = copy.rate("builtin")
    if rate is None:
        raise RuntimeError(
            f"{copy.suite}/{copy.name}: the built-in copy did not run ({copy.checks.get('builtin')}); "
            "the %lim columns divide by its bandwidth"
        )
    return (
        rate,
        f"x + 0, {copy.bytes / 2 / 2**20:.4g} MiB float32 ({copy.suite}/{copy.name}), bytes read + written",
    )


def _job_label(entry: Benchmark, size: Size) -> str:
    return f"{entry.key} " + " ".join(f"{k}={v}" for k, v in size.items())


def _list(entries: list[Benchmark], tier: Tier, quick: bool) -> str:
    lines = []
    for entry in entries:
        sizes = "; ".join(
            " ".join(f"{k}={v}" for k, v in size.items()) for size in entry.sizes.select(tier, quick)
        )
        lines.append(
            f"{entry.key:<24} {entry.bound}-bound, against {entry.builtin_name}\n    {tier} sizes: {sizes}"
        )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--suite", nargs="+", action="extend", metavar="NAME", help="suites to run (default: all)"
    )
    parser.add_argument(
        "--kernel", nargs="+", action="extend", metavar="NAME", help="entries to run, by name (default: all)"
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        help="mtriton backend (default: metal or cuda when MLX has it, else interpreter)",
    )
    size_group = parser.add_mutually_exclusive_group()
    size_group.add_argument(
        "--quick", action="store_true", help="first size of each entry only, fewer repeats"
    )
    size_group.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repeat: a correctness pass, not a timing"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="folder for JSON and plots (default: bench-results)",
    )
    parser.add_argument(
        "--reference",
        choices=REFERENCE_MODES,
        default="auto",
        help="what the checks compare with: each entry's fast reference (float32 on the device, or "
        "float64 on a sample), the full float64 NumPy one, or both (float64, and the fast one "
        "checked against it); auto: fast on GPU backends, float64 elsewhere",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the selected entries and sizes, run nothing"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit status (1 when an mtriton check failed)."""
    parser = _parser()
    args = parser.parse_args(argv)
    suites.load_all()
    try:
        entries = select(args.suite, args.kernel)
    except ValueError as err:
        parser.error(str(err))
    backend = args.backend or mtriton.current_backend_name()
    tier: Tier = "smoke" if args.smoke else BACKEND_TIERS[backend]
    if args.list:
        print(_list(entries, tier, args.quick))
        return 0
    try:
        get_backend(backend)
    except mtriton.BackendUnavailable as err:
        print(f"benchmarks: {err}", file=sys.stderr)
        return 2
    mtriton.set_backend(backend)
    # MLX's CPU build caches only 32 MiB of freed buffers by default, so every larger output
    # is fresh memory and its page faults, not the kernel, dominate the time (64 MiB `x + 0`
    # measured 4.3 GB/s instead of 40 GB/s). Steady-state programs reuse their buffers.
    mx.set_cache_limit(mx.get_memory_limit())
    plan = PLANS[(tier, args.quick)]
    reference = args.reference if args.reference != "auto" else "fast" if tier == "gpu" else "float64"
    # The copy entry runs first, whatever is selected: its built-in is the copy bandwidth
    # that every memory-bound entry's %lim divides by.
    copy_size = COPY.sizes.select(tier, True)[0]
    jobs = [
        (e, size)
        for e in entries
        for size in e.sizes.select(tier, args.quick)
        if (e, size) != (COPY, copy_size)
    ]
    info = machine_info(backend)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"results-{backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    json_path = args.out / f"{stem}.json"
    settings: dict[str, Any] = {
        "suites": args.suite, "kernels": args.kernel, "mode": mode, "tier": tier, "plan": asdict(plan),
        "reference": reference, "mlx_cache_limit_bytes": mx.get_memory_limit(),
        "complete": False, "elapsed_s": 0.0,
    }  # fmt: skip
    progress = report.Progress(len(jobs) + 2)
    started = time.perf_counter()
    progress.start(f"{_job_label(COPY, copy_size)} (the copy bandwidth of the %lim columns)")
    results = [measure(COPY, copy_size, plan, reference)]
    progress.done_step(report.format_elapsed(results[0]))
    progress.start("machine limits: matmul rate")
    limit_start = time.perf_counter()
    limits = measure_limits(tier, plan, *_copy_limit(results[0]))
    progress.done_step(f"{time.perf_counter() - limit_start:.2f} s")
    for entry, size in jobs:
        progress.start(_job_label(entry, size))
        results.append(measure(entry, size, plan, reference))
        elapsed = report.format_elapsed(results[-1])
        over = tier == "gpu" and sum(results[-1].elapsed_s.values()) > GPU_ENTRY_BUDGET_S
        progress.done_step(
            elapsed + (f"  OVER the {GPU_ENTRY_BUDGET_S:g} s budget of one entry" if over else "")
        )
        # after every entry, so that a run stopped by a time limit leaves what it measured
        settings["elapsed_s"] = time.perf_counter() - started
        report.write_json(json_path, info=info, settings=settings, limits=limits, results=results)
    progress.finish()
    total_s = time.perf_counter() - started
    if tier == "gpu" and args.quick:
        verdict = "within" if total_s <= GPU_QUICK_BUDGET_S else "OVER"
        print(
            f"benchmarks: {total_s:.1f} s, {verdict} the quick GPU run's {GPU_QUICK_BUDGET_S:g} s budget",
            file=sys.stderr,
        )
    device = f"{info['mlx_device']} ({info['mlx_device_info'].get('device_name', 'unknown device')})"
    print(
        report.format_table(
            results,
            limits,
            f"mtriton benchmarks: backend {backend}, MLX {mx.__version__} on {device}, {mode} run",
        )
    )
    settings.update(complete=True, elapsed_s=total_s)
    report.write_json(json_path, info=info, settings=settings, limits=limits, results=results)
    print(f"\n{len(results)} runs in {total_s:.1f} s; results: {json_path}")
    plots = report.write_plots(args.out, stem, results, limits, backend)
    print(plots if isinstance(plots, str) else "plots: " + ", ".join(str(p) for p in plots))
    if external.gpu_stack() is None:
        print("triton and torch columns skipped: torch, triton or a CUDA device is missing here")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
