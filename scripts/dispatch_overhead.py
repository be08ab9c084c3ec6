"""What `kernel[grid](...)` costs in Python per cached launch, on any machine.

The GPU backend's kernel factory (`mx.fast.cuda_kernel`) is replaced by a stub whose kernels
return their outputs at once, so the time left is mtriton's own: argument binding, the cache
lookup, the launch's inputs and the write-back. Prints microseconds per launch of the
tutorial vector add (the `dispatch` benchmark's launch: a fresh `mtriton.empty` output each
time) and of the stub's own call, and with `--profile` the cProfile table of the launch.

    PYTHONPATH=$PWD python3 scripts/dispatch_overhead.py [--profile] [--busy]

`--busy` first fills the process the way a test suite does (thousands of live MLX arrays and
Python objects, many cached specializations) to show what the garbage collector adds.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import sys
import time
import timeit
from pathlib import Path

import mlx.core as mx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtriton  # noqa: E402
from examples.tutorial_kernels import add_kernel  # noqa: E402
from mtriton.backends import get_backend  # noqa: E402
from mtriton.backends.cuda.backend import CudaEmuBackend  # noqa: E402


class _StubKernel:
    """Returns outputs of the requested shapes without running anything."""

    def __init__(self) -> None:
        self.outputs = {}

    def __call__(self, *, inputs, output_shapes, output_dtypes, grid, threadgroup, **_):
        key = (tuple(output_shapes), tuple(output_dtypes))
        outs = self.outputs.get(key)
        if outs is None:
            outs = self.outputs[key] = [mx.zeros(s, d) for s, d in zip(output_shapes, output_dtypes)]
        return outs


def _stub_factory(**_):
    return _StubKernel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--busy", action="store_true")
    parser.add_argument("--n", type=int, default=4096)
    args = parser.parse_args()
    # cuda-emu compiles the same launcher as cuda; its factory becomes the stub
    CudaEmuBackend.factory = lambda self: _stub_factory
    mtriton.set_backend("cuda-emu")
    get_backend("cuda-emu")
    n = args.n
    x, y = mx.ones((n,)), mx.ones((n,))
    grid = (mtriton.cdiv(n, 1024),)
    launcher = add_kernel[grid]

    def launch() -> None:
        launcher(x, y, mtriton.empty((n,), x.dtype), n, BLOCK_SIZE=1024)

    raw = add_kernel[grid].raw(x, y, mtriton.empty((n,), x.dtype), n, BLOCK_SIZE=1024)
    keep = []
    if args.busy:
        keep = [mx.ones((8,)) + k for k in range(20000)] + [{"k": k} for k in range(200000)]
    launch()

    def per_launch(fn, number: int = 10000) -> float:
        # CPU time of this process: other processes on a shared machine move wall time a lot
        return min(timeit.repeat(fn, number=number, repeat=9, timer=time.process_time)) / number * 1e6

    gc.collect()
    t_launch, t_raw = per_launch(launch), per_launch(raw)
    print(f"kernel[grid](...) {t_launch:.2f} us, raw stub {t_raw:.2f} us, overhead {t_launch - t_raw:.2f} us")
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20000):
            launch()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    del keep


if __name__ == "__main__":
    main()
