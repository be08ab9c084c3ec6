"""PyTorch and real Triton on CUDA, for side-by-side numbers where they are installed.

The mtriton kernel sources differ from Triton's only in two import lines, so
the Triton twin of a kernel module is the same source with those lines
swapped, written to a file (Triton reads kernel source through `inspect`) and
imported. Everything here returns None, or is never called, on machines
without torch, triton and a CUDA device.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import inspect
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import mlx.core as mx
import numpy as np

from .timing import Timing, time_batches

MTRITON_IMPORTS = ("import mtriton as triton\n", "import mtriton.language as tl\n")
TRITON_IMPORTS = ("import triton\n", "import triton.language as tl\n")


@functools.cache
def gpu_stack() -> dict[str, str] | None:
    """Versions of torch and triton and the CUDA device name, or None where either is missing."""
    try:
        import torch
        import triton
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return {
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda_device": torch.cuda.get_device_name(),
    }


@functools.cache
def triton_twin(module: ModuleType) -> ModuleType | None:
    """`module`'s source compiled by real Triton, or None where that cannot run here.

    Args:
        module: A module of mtriton kernels that imports mtriton with exactly
            the two lines in `MTRITON_IMPORTS`.

    Returns:
        The Triton module, or None when torch/triton/CUDA are absent or the
        source does not import mtriton the expected way.
    """
    if gpu_stack() is None:
        return None
    source_file = inspect.getsourcefile(module)
    if source_file is None:
        return None
    source = Path(source_file).read_text()
    if not all(line in source for line in MTRITON_IMPORTS):
        return None
    for ours, theirs in zip(MTRITON_IMPORTS, TRITON_IMPORTS):
        source = source.replace(ours, theirs)
    # Triton re-reads a kernel's source file when it compiles, so the file lives until exit.
    folder = Path(tempfile.mkdtemp(prefix="mtriton-triton-twin-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    name = module.__name__.rsplit(".", 1)[-1] + "_triton"
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    twin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(twin)
    return twin


def to_torch(buffers: dict[str, mx.array]) -> dict[str, Any]:
    """CUDA tensor copies of MLX arrays, by name."""
    import torch

    tensors = {}
    for name, array in buffers.items():
        if array.dtype == mx.bfloat16:  # NumPy has no bfloat16: go through float32
            tensors[name] = torch.from_numpy(np.array(array.astype(mx.float32))).to("cuda", torch.bfloat16)
        else:
            tensors[name] = torch.from_numpy(np.array(array)).to("cuda")
    return tensors


def time_torch(
    fn: Callable[[], Any], *, warmup: int, iters: int, launches_per_sync: int, budget_s: float | None = None
) -> Timing:
    """Times CUDA work queued by `fn`, `launches_per_sync` calls per synchronisation.

    Args:
        fn: Queues one launch (a Triton kernel or a PyTorch op).
        warmup: Untimed repeats first (Triton compiles on the first call).
        iters: Timed repeats.
        launches_per_sync: Calls per repeat before `torch.cuda.synchronize`.
        budget_s: Seconds the timed repeats may take (see `timing.time_batches`).

    Returns:
        Seconds per call: median, minimum and every sample.
    """
    import torch

    def run(launches: int) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(launches):
            fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start

    return time_batches(run, warmup=warmup, iters=iters, launches=launches_per_sync, budget_s=budget_s)
