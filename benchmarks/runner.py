"""`python -m benchmarks.runner`: times registered entries and reports them.

    python -m benchmarks.runner [--suite NAME ...] [--kernel NAME ...] [--backend NAME]
                                [--quick | --smoke] [--out DIR] [--list]

For every entry and size: the float64 NumPy reference (timed, and kept to
check the kernel), the mtriton launch (checked once, then timed), the MLX
built-in, and on CUDA machines with torch and triton the same kernel source
under real Triton plus PyTorch's op. The machine's copy bandwidth and matmul
rate are measured first, in the same way, to express kernels as a share of
them. Prints a table on stdout, writes JSON and PNG plots under `--out`;
exits with 1 when any check fails.
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
from .registry import BACKEND_TIERS, Benchmark, Size, Tier, select
from .results import Check, Result, compare
from .timing import TimingPlan, time_host, time_mlx

# GPUs need many launches per eval to hide the eval's fixed cost (see timing.py) and are
# fast enough for many repeats; CPU emulation runs one launch per eval (it evaluates
# eagerly anyway) and few repeats, to keep `--quick` near two minutes. `--smoke` excludes
# `--quick`, so it has one plan.
PLANS: dict[tuple[Tier, bool], TimingPlan] = {
    ("smoke", False): TimingPlan(warmup=0, iters=1, launches_per_eval=1, reference_iters=1),
    ("cpu", True): TimingPlan(warmup=1, iters=5, launches_per_eval=1, reference_iters=3),
    ("cpu", False): TimingPlan(warmup=1, iters=10, launches_per_eval=1, reference_iters=3),
    ("gpu", True): TimingPlan(warmup=2, iters=10, launches_per_eval=10, reference_iters=1),
    ("gpu", False): TimingPlan(warmup=3, iters=30, launches_per_eval=10, reference_iters=2),
}


def _error(err: Exception) -> Check:
    lines = str(err).strip().splitlines()
    return Check("ERROR", f"{type(err).__name__}: {lines[0] if lines else ''}")


def _attempt(result: Result, impl: str, action: Callable[[], None]) -> None:
    """Runs `action`; an exception becomes an ERROR check for `impl` so the other cases still run."""
    try:
        action()
    except Exception as err:  # one broken kernel or size must not end the run
        result.checks[impl] = _error(err)
        print(
            f"\n{result.suite}/{result.name} {result.label}: {impl} {result.checks[impl].detail}",
            file=sys.stderr,
        )


def measure(entry: Benchmark, size: Size, plan: TimingPlan) -> Result:
    """Checks and times every implementation of `entry` at `size`.

    Args:
        entry: The registered entry.
        size: Keyword arguments of its setup function.
        plan: How hard to time.

    Returns:
        The timings and checks; an implementation that raised has an ERROR
        check and no timing.
    """
    case = entry.setup(**size)
    result = Result(entry.suite, entry.name, case.label, size, entry.bound, case.bytes, case.flops)
    reference_time, expected = time_host(case.reference, iters=plan.reference_iters)
    result.times["numpy"] = reference_time
    mlx_plan = {"warmup": plan.warmup, "iters": plan.iters, "launches_per_eval": plan.launches_per_eval}

    def run_mtriton() -> None:
        result.checks["mtriton"] = compare(case.run_mtriton(), expected, case.rtol, case.atol)
        result.times["mtriton"] = time_mlx(case.run_mtriton, **mlx_plan)

    def run_builtin() -> None:
        result.times["builtin"] = time_mlx(case.builtin, **mlx_plan)

    def run_unfused() -> None:
        assert case.unfused is not None
        result.times["unfused"] = time_mlx(case.unfused, **mlx_plan)

    _attempt(result, "mtriton", run_mtriton)
    _attempt(result, "builtin", run_builtin)
    if case.unfused is not None:
        _attempt(result, "unfused", run_unfused)
    twin = external.triton_twin(case.kernels)
    if twin is None:
        return result
    tensors = external.to_torch(case.buffers)
    torch_plan = {
        "warmup": max(plan.warmup, 1),
        "iters": plan.iters,
        "launches_per_sync": plan.launches_per_eval,
    }

    def run_triton() -> None:
        result.checks["triton"] = compare(case.launch(twin, tensors), expected, case.rtol, case.atol)
        result.times["triton"] = external.time_torch(lambda: case.launch(twin, tensors), **torch_plan)

    def run_torch() -> None:
        torch_op = case.torch
        assert torch_op is not None
        result.times["torch"] = external.time_torch(lambda: torch_op(tensors), **torch_plan)

    _attempt(result, "triton", run_triton)
    if case.torch is not None:
        _attempt(result, "torch", run_torch)
    return result


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
    jobs = [(entry, size) for entry in entries for size in entry.sizes.select(tier, args.quick)]
    progress = report.Progress(len(jobs) + 1)
    progress.start("machine limits: copy bandwidth and matmul rate")
    limits = measure_limits(tier, plan)
    results = []
    for entry, size in jobs:
        progress.start(f"{entry.key} " + " ".join(f"{k}={v}" for k, v in size.items()))
        results.append(measure(entry, size, plan))
    progress.finish()

    info = machine_info(backend)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    device = f"{info['mlx_device']} ({info['mlx_device_info'].get('device_name', 'unknown device')})"
    print(
        report.format_table(
            results,
            limits,
            f"mtriton benchmarks: backend {backend}, MLX {mx.__version__} on {device}, {mode} run",
        )
    )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"results-{backend}-{time.strftime('%Y%m%d-%H%M%S')}"
    settings: dict[str, Any] = {
        "suites": args.suite, "kernels": args.kernel, "mode": mode, "tier": tier, "plan": asdict(plan),
        "mlx_cache_limit_bytes": mx.get_memory_limit(),
    }  # fmt: skip
    json_path = args.out / f"{stem}.json"
    report.write_json(json_path, info=info, settings=settings, limits=limits, results=results)
    print(f"\nresults: {json_path}")
    plots = report.write_plots(args.out, stem, results, limits, backend)
    print(plots if isinstance(plots, str) else "plots: " + ", ".join(str(p) for p in plots))
    if external.gpu_stack() is None:
        print("triton and torch columns skipped: torch, triton or a CUDA device is missing here")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
