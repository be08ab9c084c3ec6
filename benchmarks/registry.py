"""The benchmark registry: `@benchmark` entries, their problem sizes and the cases they build.

An entry is a setup function decorated with `@benchmark(suite=..., name=...)`.
Called with one size's keyword arguments, it makes the inputs and returns a
`Case`: the mtriton launch, the MLX built-in doing the same job, a float64
NumPy reference, and the bytes and FLOPs of one call. Suites are files in
`benchmarks/suites/` that register entries when imported.

GPU-sized problems are checked by each case's `fast_reference` instead of the
full float64 one: a float32 result in plain MLX ops on MLX's device
(`DeviceReference`) where float32 is accurate enough for the tolerance, or
float64 NumPy on part of the output (`SampledReference`). On the H200 the
float64 host references took 30-70 s each at attention's L4096 and kept the
quick run from finishing in 200 s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import mlx.core as mx
import numpy as np

Size = dict[str, Any]
Bound = Literal["memory", "compute"]
Tier = Literal["smoke", "cpu", "gpu"]

# CPU emulations of a GPU run kernels orders of magnitude slower than a GPU, so they get
# small problems; real GPUs get the sizes the issues name.
BACKEND_TIERS: dict[str, Tier] = {
    "interpreter": "cpu",
    "metal-emu": "cpu",
    "cuda-emu": "cpu",
    "metal": "gpu",
    "cuda": "gpu",
}


@dataclass(frozen=True)
class Sizes:
    """The problem sizes of one entry, as keyword arguments of its setup function.

    Attributes:
        smoke: One tiny size with ragged tails, for the test suite's correctness pass.
        cpu: Sizes for backends emulated on the CPU (interpreter, metal-emu).
        gpu: Sizes for GPU backends (metal, cuda).

    The first size of `cpu` and of `gpu` is the one `--quick` runs.
    """

    smoke: Size
    cpu: tuple[Size, ...]
    gpu: tuple[Size, ...]

    def select(self, tier: Tier, quick: bool) -> tuple[Size, ...]:
        """The sizes to run for `tier`; only the first unless `quick` is False."""
        if tier == "smoke":
            return (self.smoke,)
        sizes = self.cpu if tier == "cpu" else self.gpu
        return sizes[:1] if quick else sizes


@dataclass(frozen=True)
class DeviceReference:
    """The expected output in float32, computed with plain MLX ops on MLX's default device (the
    GPU on a GPU machine) and compared there.

    Attributes:
        run: Returns the result as MLX arrays, with the structure of the launch's.
        why: Why float32 is accurate enough for the check's tolerance (in the JSON file).
    """

    run: Callable[[], Any]
    why: str


@dataclass(frozen=True)
class SampledReference:
    """The float64 NumPy result on part of the output: some rows, heads or elements.

    Attributes:
        select: The same part of a launch's output (MLX arrays or PyTorch tensors),
            with the structure of the launch's output.
        run: The float64 NumPy result on that part.
        what: Which part, e.g. "64 of 8192 rows (first, last, 62 at random)".
    """

    select: Callable[[Any], Any]
    run: Callable[[], np.ndarray | tuple[np.ndarray, ...]]
    what: str


@dataclass
class Case:
    """One problem size of one entry, with its inputs made.

    `launch(kernels, buffers)` runs the kernel taken from the `kernels` module
    on `buffers` and returns the output(s). The runner calls it with `kernels`
    and MLX `buffers` for mtriton, and, where real Triton runs, with the same
    source compiled by Triton and the buffers copied to PyTorch tensors. So
    `launch` must use only operations that both array types support.

    Attributes:
        label: The size as shown in the table, e.g. "4096x1024 f32".
        kernels: The module `launch` takes its kernels from.
        buffers: Every array argument of the launch, by name; outputs included.
        launch: Runs the kernel once; returns its output array or a tuple of them.
        builtin: The MLX built-in doing the same job.
        reference: The float64 NumPy result; same structure as `launch`'s.
        bytes: Bytes one call must read and write at least.
        flops: Floating-point (or integer, for integer kernels) operations of one call.
        rtol: Relative tolerance of the check against `reference`.
        atol: Absolute tolerance of the check against `reference`.
        torch: PyTorch doing the same job on the PyTorch copies of `buffers`;
            None where PyTorch has no equivalent.
        unfused: The same job composed of plain MLX ops (attention's softmax(q k^T) v with
            the score matrix in memory), where the built-in is a fused kernel; or None.
        fresh: The same mtriton launch with `mtriton.empty` outputs, beside an in-place
            variant whose outputs are existing arrays; or None.
        raw: The backend's bare launch of the same compiled kernel with its inputs built once
            (`kernel[grid].raw(...)`), for the dispatch entries; or None.
        fast_reference: How GPU-sized problems are checked (see the module docstring), or
            None where the full float64 reference is cheap at every size.
        before_batch: Untimed work before every timed repeat of every implementation (the
            busy phase of `dispatch_busy`), or None.
        launches_per_eval: Overrides the plan's launches per eval (`dispatch_busy`: 1, so that
            every timed launch is the first after the busy phase), or None.
        external: Whether the runner also runs the Triton twin and PyTorch where they exist
            (off where they would repeat another entry's numbers).
    """

    label: str
    kernels: ModuleType
    buffers: dict[str, mx.array]
    launch: Callable[[ModuleType, dict[str, Any]], Any]
    builtin: Callable[[], Any]
    reference: Callable[[], np.ndarray | tuple[np.ndarray, ...]]
    bytes: int
    flops: int
    rtol: float = 0.0
    atol: float = 0.0
    torch: Callable[[dict[str, Any]], Any] | None = None
    unfused: Callable[[], Any] | None = None
    fresh: Callable[[], Any] | None = None
    raw: Callable[[], Any] | None = None
    fast_reference: DeviceReference | SampledReference | None = None
    before_batch: Callable[[], None] | None = None
    launches_per_eval: int | None = None
    external: bool = True

    def run_mtriton(self) -> Any:
        """One mtriton launch on the MLX buffers."""
        return self.launch(self.kernels, self.buffers)


@dataclass(frozen=True)
class Benchmark:
    """A registered entry: a setup function and the sizes to call it with.

    Attributes:
        suite: The suite it belongs to ("tutorials", ...).
        name: Its name, unique within the suite.
        bound: Whether it is judged against copy bandwidth or the matmul rate.
        sizes: Its problem sizes per tier.
        builtin_name: How `--list` names the MLX built-in it is compared with.
        setup: Builds a `Case` from one size's keyword arguments.
    """

    suite: str
    name: str
    bound: Bound
    sizes: Sizes
    builtin_name: str
    setup: Callable[..., Case]

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.name}"


REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    *, suite: str, name: str, bound: Bound, sizes: Sizes, builtin: str
) -> Callable[[Callable[..., Case]], Callable[..., Case]]:
    """Registers a setup function as a benchmark entry.

    Args:
        suite: The suite it belongs to.
        name: Its name, unique within the suite.
        bound: "memory" (judged by copy bandwidth) or "compute" (by matmul rate).
        sizes: Its problem sizes per tier.
        builtin: The MLX built-in it is compared with, for display.

    Returns:
        A decorator that registers the function and returns it unchanged.
    """

    def register(setup: Callable[..., Case]) -> Callable[..., Case]:
        entry = Benchmark(suite, name, bound, sizes, builtin, setup)
        if entry.key in REGISTRY:
            raise ValueError(f"benchmark {entry.key} is registered twice")
        REGISTRY[entry.key] = entry
        return setup

    return register


def select(suites: list[str] | None = None, names: list[str] | None = None) -> list[Benchmark]:
    """Registered entries of `suites` (all when None) named in `names` (all when None).

    Raises:
        ValueError: A suite or name that matches no entry.
    """
    entries = list(REGISTRY.values())
    known_suites = {e.suite for e in entries}
    for suite in suites or ():
        if suite not in known_suites:
            raise ValueError(f"unknown suite {suite!r}; known: {', '.join(sorted(known_suites))}")
    if suites:
        entries = [e for e in entries if e.suite in suites]
    for name in names or ():
        if not any(e.name == name for e in entries):
            raise ValueError(f"no entry named {name!r} in {', '.join(sorted({e.suite for e in entries}))}")
    if names:
        entries = [e for e in entries if e.name in names]
    return entries
