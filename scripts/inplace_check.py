"""In-place launches on a GPU: stale reads under each ordering, correctness, and their cost.

Run on the lent H200 with MLX's CUDA build (well under 90 s):

    PYTHONPATH=$PWD python3 scripts/inplace_check.py [--backend cuda] [--busy]

and on a CPU machine as a smoke test of the script itself (tiny sizes, no stress part):

    PYTHONPATH=$PWD python3 scripts/inplace_check.py --backend cuda-emu --small

Three parts, one table each:

1. orderings (GPU only): a slow kernel stamps every element of a copy-on-write argument, and
   many readers of the result run in the same eval. The result is ordered after the kernel by
   `_after` (the launcher's: one pass), by `mx.depends` (no graph node) or not at all. Stale
   elements (the old value) counted over many rounds; `_after` must show none.
2. checks: the launcher's semantics on this device, each PASS or FAIL: unwritten elements of
   mx.zeros / mx.full / evaluated / view arguments, other holders of the old value, repeated
   launches without eval, an array reset with `a[...] = 0` (MLX CUDA gives it strides that a
   launch would copy again), a transposed output, atomics into zeros, `private_copy` keeping
   every bit of each dtype, and whether it donated an unheld buffer (allocator peak).
3. cost: the tutorial add / softmax / layer norm / cumsum with outputs from `mtriton.empty`
   (fresh), `mtriton.zeros` (fresh, filled by MLX's `init_value`), `mx.zeros` (copy-on-write as
   launched now) and `mx.zeros` with the previous private copy (`x + 0`, another pass), in ms,
   TB/s and x fresh; and the dispatch cost per launch of
   `kernel[grid](...)` against `kernel[grid].raw` (quiet, and with `--busy` after filling the
   process with objects as a test suite leaves it).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mtriton  # noqa: E402
import mtriton.language as tl  # noqa: E402
from examples import tutorial_kernels as tk  # noqa: E402
from mtriton.backends import gpu_launch  # noqa: E402
from mtriton.testing import do_bench  # noqa: E402


@mtriton.jit
def stamp_kernel(out_ptr, one_ptr, n, value, ITERS: tl.constexpr, BLOCK: tl.constexpr):
    """out[:n] = value, after ITERS dependent multiply-adds per element (a slow kernel widens
    the window in which an unordered reader sees the old contents)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    one = tl.load(one_ptr)
    acc = tl.zeros((BLOCK,), tl.float32)
    for _ in range(ITERS):
        acc = acc * one + 1.0
    tl.store(out_ptr + offs, value + (acc - ITERS), mask=offs < n)


@mtriton.jit
def add_one_kernel(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=mask) + 1, mask=mask)


@mtriton.jit
def fill_head_kernel(out_ptr, value, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.full((BLOCK,), value, tl.float32), mask=offs < n)


@mtriton.jit
def scale_rows_kernel(x_ptr, y_ptr, stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=cols < n_cols)
        tl.store(y_ptr + row * stride + cols, 2 * x, mask=cols < n_cols)


# ----------------------------------------------------------------------------- 1. orderings


def orderings(n: int, rounds: int, readers: int, iters: int) -> None:
    """Stale elements per ordering of a copy-on-write result after its kernel."""
    block = 256
    grid = (mtriton.cdiv(n, block),)
    one = mx.array([1.0])
    old = mx.full((n,), -1.0)
    mx.eval(one, old)
    entry = stamp_kernel[grid].warmup(old, one, n, 0.0, ITERS=iters, BLOCK=block)
    launcher = entry.kernel
    candidates: dict[str, Callable[[mx.array, mx.array], mx.array]] = {
        "_after (launcher)": gpu_launch._after,
        "mx.depends": lambda copy, out: mx.depends([copy], [out])[0],
        # Metal barriers follow buffers read after a write: a tiny op reading the kernel's output
        # may put a barrier between the kernel and every later reader there (not on CUDA)
        "depends + tiny op": lambda copy, out: mx.depends([copy], [out.reshape(-1)[:1] * 0])[0],
        "none": lambda copy, out: copy,
    }
    print(f"\n1. orderings: {rounds} rounds x {readers} readers of {n} float32, kernel {iters} FMAs/element")
    print(f"{'ordering':20s} {'stale elements':>16s} {'rounds with any':>16s}")
    for name, order in candidates.items():
        stale = bad_rounds = 0
        for r in range(rounds):
            value = float(r + 1)
            x = mx.full((n,), -1.0)
            mx.eval(x)
            kernel, launch, _, inputs, copies, _ = launcher._launch([x, one, n, value], (grid[0], 1, 1))
            del x  # the launch's copy may take its buffer (donation), as in a user's launch
            outs = kernel(**launch)
            result = order(inputs[copies[0]], outs[0])[:n]
            reads = [result * 1 for _ in range(readers)] + [result.sum(keepdims=True)]
            mx.eval(reads)
            count = sum(int((np.array(a) != value).sum()) for a in reads[:-1])
            count += int(abs(reads[-1].item() - value * n) > 0.5)
            stale += count
            bad_rounds += count > 0
        print(f"{name:20s} {stale:16d} {bad_rounds:16d}")


# ----------------------------------------------------------------------------- 2. checks


def _check(name: str, ok: bool, detail: str = "") -> bool:
    print(f"{'PASS' if ok else 'FAIL'}  {name}{'  ' + detail if detail and not ok else ''}")
    return ok


def checks(gpu: bool) -> bool:
    print("\n2. checks")
    rng = np.random.default_rng(0)
    results = []
    n, head = 20011, 7701
    base = rng.standard_normal(n + 6).astype(np.float32)
    makers = {
        "zeros": lambda: mx.zeros((n,)),
        "full": lambda: mx.full((n,), -2.5),
        "evaluated": lambda: mx.array(base[:n]),
        "view": lambda: mx.array(base)[3 : n + 3],
    }
    for make, new in makers.items():
        out = new()
        expect = np.array(out).copy()
        expect[:head] = 7.0
        fill_head_kernel[(mtriton.cdiv(head, 256),)](out, 7.0, head, BLOCK=256)
        results.append(
            _check(f"unwritten elements keep their values ({make})", np.array_equal(np.array(out), expect))
        )

    host = rng.standard_normal(n).astype(np.float32)
    x = mx.array(host)
    mx.eval(x)
    doubled, lazy_view, held_view = x * 2, x[10:20], x[5:9]
    mx.eval(held_view)
    add_one_kernel[(mtriton.cdiv(n, 256),)](x, n, BLOCK=256)
    mx.eval(x, doubled, lazy_view, held_view)
    ok = (
        np.array_equal(np.array(x), host + 1)
        and np.array_equal(np.array(doubled), host * 2)
        and np.array_equal(np.array(lazy_view), host[10:20])
        and np.array_equal(np.array(held_view), host[5:9])
    )
    results.append(_check("other holders keep the old value (lazy op, lazy view, evaluated view)", ok))

    x = mx.zeros((n,))
    snaps = []
    for _ in range(8):
        add_one_kernel[(mtriton.cdiv(n, 256),)](x, n, BLOCK=256)
        snaps.append(x * 1)
    mx.eval(x, *snaps)
    ok = all(np.array_equal(np.array(s), np.full(n, k + 1, np.float32)) for k, s in enumerate(snaps))
    results.append(_check("8 launches without eval, a reader after each", ok))

    a = mx.array(host)
    mx.eval(a)
    a[...] = 0
    fill_head_kernel[(mtriton.cdiv(n, 256),)](a, 3.0, n, BLOCK=256)
    results.append(
        _check("an array reset with a[...] = 0, then written", np.array_equal(np.array(a), np.full(n, 3.0)))
    )

    rows, cols = 129, 257
    xs = mx.array(rng.standard_normal((rows, cols)).astype(np.float32))
    y = mx.zeros((cols, rows)).T
    scale_rows_kernel[(rows,)](xs, y, cols, cols, BLOCK=128)
    results.append(_check("a transposed output", np.allclose(np.array(y), 2 * np.array(xs))))

    idx = rng.integers(0, 33, n).astype(np.int32)
    hist = mx.zeros((33,), dtype=mx.int32)
    tk.histogram_kernel[(mtriton.cdiv(n, 256),)](mx.array(idx), hist, n, 33, BLOCK_SIZE=256)
    results.append(
        _check("atomics into mx.zeros", np.array_equal(np.array(hist), np.bincount(idx, minlength=33)))
    )
    hist = mtriton.zeros((33,), dtype=mx.int32)
    tk.histogram_kernel[(mtriton.cdiv(n, 256),)](mx.array(idx), hist, n, 33, BLOCK_SIZE=256)
    ok = np.array_equal(np.array(hist), np.bincount(idx, minlength=33))
    results.append(_check("atomics into mtriton.zeros (init_value)", ok))
    out = mtriton.full((n,), -0.0)
    fill_head_kernel[(mtriton.cdiv(head, 256),)](out, 7.0, head, BLOCK=256)
    expect = np.full(n, -0.0, np.float32)
    expect[:head] = 7.0
    ok = np.array_equal(np.array(out).view(np.uint32), expect.view(np.uint32))
    results.append(_check("mtriton.full(-0.0) keeps its unwritten elements bit for bit", ok))

    values = np.array([-0.0, np.nan, -np.inf, 3.5, -1, 0, 2**20, 7, 1, 0, 5] * 3, dtype=np.float64)
    # each dtype's first private_copy JIT-compiles MLX's slice_update kernels (once per process,
    # then from MLX's PTX cache on disk): the time is shown
    dtypes = [mx.float16, mx.bfloat16, mx.int8, mx.uint8, mx.int32, mx.int64, mx.bool_]
    for dtype in dtypes if gpu else []:
        if dtype == mx.bool_:
            original = mx.array(values != 0)
        elif mx.issubdtype(dtype, mx.floating):
            original = mx.array(values).astype(dtype)
        else:
            original = mx.array(np.nan_to_num(values, posinf=9, neginf=-9).astype(np.int64)).astype(dtype)
        mx.eval(original)
        start = time.perf_counter()
        copy = gpu_launch.private_copy(original)
        mx.eval(copy)
        first_ms = (time.perf_counter() - start) * 1e3
        if dtype == mx.bool_:
            same = np.array_equal(np.array(copy), np.array(original))
        else:
            same = np.array_equal(np.array(copy.view(mx.uint8)), np.array(original.view(mx.uint8)))
        results.append(_check(f"private_copy keeps every bit ({dtype}; first call {first_ms:.0f} ms)", same))

    size = 1 << 24
    x = mx.arange(size, dtype=mx.float32)
    mx.eval(x)
    mx.synchronize()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    copy = gpu_launch.private_copy(x)
    del x
    mx.eval(copy)
    mx.synchronize()
    grew = mx.get_peak_memory() - before
    ok = copy[0].item() == 0 and copy[-1].item() == size - 1 and copy[12345].item() == 12345
    results.append(_check("a donated private_copy keeps its values", ok))
    print(
        f"info  private_copy of an unheld {4 * size >> 20} MB array: peak grew {grew >> 20} MB (0: donated)"
    )
    return all(results)


# ----------------------------------------------------------------------------- 3. cost


def _old_private_copy(array: mx.array) -> mx.array:
    """The private copy before donation: a pass over the array."""
    flat = array.reshape(-1)
    if flat.size < gpu_launch.SMALL_INPUT:
        return mx.concatenate([flat, mx.zeros((gpu_launch.SMALL_INPUT - flat.size,), dtype=array.dtype)])
    return mx.contiguous(mx.add(flat, mx.zeros((), dtype=array.dtype)))


def _tutorials(small: bool) -> dict[str, tuple[Callable[[Callable[..., mx.array]], Any], int]]:
    """Per kernel: a launch taking the output allocator, and the bytes it moves."""
    rng = np.random.default_rng(1)
    n = 1 << (14 if small else 26)
    rows, cols = (64, 1024) if small else (8192, 8192)
    crow, ccol = (64, 512) if small else (8192, 4096)
    warps = 4 if small else 8
    x1, y1 = (mx.array(rng.standard_normal(n).astype(np.float32)) for _ in range(2))
    x2 = mx.array(rng.standard_normal((rows, cols)).astype(np.float32))
    w, b = (mx.array(rng.standard_normal(cols).astype(np.float32)) for _ in range(2))
    x3 = mx.array(rng.standard_normal((crow, ccol)).astype(np.float32))
    mx.eval(x1, y1, x2, w, b, x3)

    def add(alloc: Callable[..., mx.array]) -> Any:
        out = alloc(x1.shape, x1.dtype)
        tk.add_kernel[(mtriton.cdiv(n, 1024),)](x1, y1, out, n, BLOCK_SIZE=1024)
        return out

    def softmax(alloc: Callable[..., mx.array]) -> Any:
        out = alloc(x2.shape, x2.dtype)
        tk.softmax_kernel[(rows,)](out, x2, cols, cols, rows, cols, BLOCK_SIZE=cols, num_warps=warps)
        return out

    def layer_norm(alloc: Callable[..., mx.array]) -> Any:
        y, mean, rstd = alloc(x2.shape, x2.dtype), alloc((rows,), mx.float32), alloc((rows,), mx.float32)
        tk.layer_norm_fwd_kernel[(rows,)](
            x2, y, w, b, mean, rstd, cols, cols, 1e-5, BLOCK_SIZE=min(cols, 8192), num_warps=warps
        )
        return y, mean, rstd

    def cumsum(alloc: Callable[..., mx.array]) -> Any:
        out = alloc(x3.shape, x3.dtype)
        tk.cumsum_kernel[(crow,)](x3, out, ccol, ccol, BLOCK_SIZE=ccol, num_warps=warps)
        return out

    return {
        "add": (add, 3 * x1.nbytes),
        "softmax": (softmax, 2 * x2.nbytes),
        "layer_norm": (layer_norm, 2 * x2.nbytes),
        "cumsum": (cumsum, 2 * x3.nbytes),
    }


def cost(small: bool) -> None:
    modes: dict[str, Callable[..., mx.array]] = {
        "fresh": lambda shape, dtype: mtriton.empty(shape, dtype),
        "mtriton.zeros": lambda shape, dtype: mtriton.zeros(shape, dtype),
        "mx.zeros": lambda shape, dtype: mx.zeros(shape, dtype=dtype),
        "mx.zeros, old copy": lambda shape, dtype: mx.zeros(shape, dtype=dtype),
    }
    print("\n3. cost (do_bench median; TB/s counts the kernel's own bytes)")
    print(f"{'kernel':12s} {'output':20s} {'ms':>9s} {'TB/s':>7s} {'x fresh':>8s}")
    current = gpu_launch.private_copy
    for kernel, (launch, nbytes) in _tutorials(small).items():
        fresh_ms = None
        for mode, alloc in modes.items():
            gpu_launch.private_copy = _old_private_copy if mode.endswith("old copy") else current
            try:
                ms = do_bench(
                    lambda launch=launch, alloc=alloc: launch(alloc), warmup=10, rep=60, return_mode="median"
                )
            finally:
                gpu_launch.private_copy = current
            fresh_ms = fresh_ms or ms
            print(f"{kernel:12s} {mode:20s} {ms:9.4f} {nbytes / ms / 1e9:7.2f} {ms / fresh_ms:8.2f}")


def dispatch(busy: bool) -> None:
    n = 4096
    x, y = mx.ones((n,)), mx.ones((n,))
    mx.eval(x, y)
    grid = (mtriton.cdiv(n, 1024),)
    raw = tk.add_kernel[grid].raw(x, y, mtriton.empty((n,)), n, BLOCK_SIZE=1024)

    def launches(count: int = 200) -> list[mx.array]:
        outs = []
        for _ in range(count):
            out = mtriton.empty((n,))
            tk.add_kernel[grid](x, y, out, n, BLOCK_SIZE=1024)
            outs.append(out)
        return outs

    def raws(count: int = 200) -> list[Any]:
        return [raw()[0] for _ in range(count)]

    def per_launch(fn: Callable[[], list[Any]]) -> float:
        best = float("inf")
        for _ in range(7):
            start = time.perf_counter()
            mx.eval(fn())
            mx.synchronize()
            best = min(best, time.perf_counter() - start)
        return best / 200 * 1e6

    keep: list[Any] = []
    label = "quiet"
    if busy:
        keep = [mx.ones((8,)) + k for k in range(20000)] + [{"k": k} for k in range(500000)]
        label = "busy (20k arrays, 500k objects alive)"
    launches(), raws()  # compile, warm
    t_launch, t_raw = per_launch(launches), per_launch(raws)
    print(
        f"\ndispatch, {label}: kernel[grid](...) {t_launch:.1f} us, raw {t_raw:.1f} us, over raw {t_launch - t_raw:.1f} us"
    )
    del keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny sizes (a smoke test on a CPU backend)")
    parser.add_argument("--busy", action="store_true", help="also time dispatch in a process full of objects")
    args = parser.parse_args()
    mtriton.set_backend(args.backend)
    warnings.simplefilter("ignore")  # the copy-on-write warning: these launches take it on purpose
    gpu = args.backend in ("cuda", "metal")
    start = time.perf_counter()
    print(f"mlx {mx.__version__}, backend {args.backend}, device {mx.default_device()}")
    if gpu:
        orderings(n=1 << 22, rounds=12, readers=16, iters=64)
        print(f"({time.perf_counter() - start:.0f} s)")
    ok = checks(gpu)
    print(f"({time.perf_counter() - start:.0f} s)")
    cost(args.small)
    print(f"({time.perf_counter() - start:.0f} s)")
    dispatch(busy=False)
    if args.busy:
        dispatch(busy=True)
    print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'}; {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
