"""In-place launches: what a kernel writes into its arguments, and what everyone else still sees.

MLX arrays are values. A launch that writes an argument rebinds the caller's array to the new
contents (`a[...] = new`); every other holder of the old value (a lazy op built before the
launch, a view, another name for an evaluated buffer) keeps seeing the old one, and elements
the kernel does not write keep their values. On the GPU backends (and the emulators, which
share their launcher: `mtriton/backends/gpu_launch.py`) a written argument is a fresh output
(`mtriton.empty`) or a copy-on-write whose copy MLX may donate (`private_copy`).
"""

from __future__ import annotations

import warnings
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from conftest import EMULATORS, count_compiles, poisoned

import mtriton
import mtriton.language as tl
from mtriton import emulator
from mtriton.backends import gpu_launch
from mtriton.backends.gpu_launch import params_read, private_copy


@mtriton.jit
def fill_head_kernel(out_ptr, value, n, BLOCK: tl.constexpr):
    """Stores `value` into out[:n] and never reads `out`."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.full((BLOCK,), value, tl.float32), mask=offs < n)


@mtriton.jit
def add_one_kernel(x_ptr, n, BLOCK: tl.constexpr):
    """x[:n] += 1: reads what it writes."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(x_ptr + offs, tl.load(x_ptr + offs, mask=mask) + 1, mask=mask)


@mtriton.jit
def scale_rows_kernel(x_ptr, y_ptr, stride, n_cols, BLOCK: tl.constexpr):
    """y[row, :n_cols] = 2 * x[row, :n_cols], through a pointer advanced in a loop."""
    row = tl.program_id(0)
    x_ptr += row * stride
    y_ptr += row * stride
    for off in range(0, n_cols, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        tl.store(y_ptr + cols, 2 * tl.load(x_ptr + cols, mask=cols < n_cols), mask=cols < n_cols)


@mtriton.jit
def count_kernel(idx_ptr, hist_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.atomic_add(hist_ptr + tl.load(idx_ptr + offs, mask=offs < n, other=0), 1, mask=offs < n)


def _quiet_launch(launch: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        launch()


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("make", ["zeros", "full", "zeros_like", "evaluated", "view"])
def test_unwritten_elements_keep_their_values(backend: str, make: str, rng: np.random.Generator) -> None:
    n, head = 203, 77  # odd sizes: the kernel writes a masked head, the tail must survive
    base = rng.standard_normal(n + 6).astype(np.float32)
    old = {
        "zeros": lambda: mx.zeros((n,)),
        "full": lambda: mx.full((n,), -2.5),
        "zeros_like": lambda: mx.zeros_like(mx.array(base[:n])),
        "evaluated": lambda: mx.array(base[:n]),
        "view": lambda: mx.array(base)[3 : n + 3],
    }[make]()
    expect = np.array(old).copy()
    out = old
    _quiet_launch(lambda: fill_head_kernel[(mtriton.cdiv(head, 32),)](out, 7.0, head, BLOCK=32))
    expect[:head] = 7.0
    np.testing.assert_array_equal(np.array(out), expect)


def test_other_holders_keep_the_old_value(backend: str, rng: np.random.Generator) -> None:
    """A lazy op built before the launch, a lazy view and an evaluated view read the old value;
    evaluated after the launch, in the same eval as its result."""
    n = 150
    host = rng.standard_normal(n).astype(np.float32)
    x = mx.array(host)
    mx.eval(x)
    doubled = x * 2  # lazy, built before the launch
    lazy_view = x[10:20]
    held_view = x[5:9]
    mx.eval(held_view)
    alias = x  # the same Python object: it sees the new value, as in Triton
    add_one_kernel[(mtriton.cdiv(n, 64),)](x, n, BLOCK=64)
    mx.eval(x, doubled, lazy_view, held_view)
    np.testing.assert_array_equal(np.array(x), host + 1)
    np.testing.assert_array_equal(np.array(alias), host + 1)
    np.testing.assert_array_equal(np.array(doubled), host * 2)
    np.testing.assert_array_equal(np.array(lazy_view), host[10:20])
    np.testing.assert_array_equal(np.array(held_view), host[5:9])


def test_repeated_launches_without_eval_accumulate(backend: str) -> None:
    n = 333
    x = mx.zeros((n,))
    snapshots = []
    for _ in range(5):
        add_one_kernel[(mtriton.cdiv(n, 128),)](x, n, BLOCK=128)
        snapshots.append(x * 1)  # readers between launches see each step
    mx.eval(x, *snapshots)
    np.testing.assert_array_equal(np.array(x), np.full(n, 5, np.float32))
    for k, snap in enumerate(snapshots, 1):
        np.testing.assert_array_equal(np.array(snap), np.full(n, k, np.float32))


def test_a_2d_view_written_in_place(backend: str, rng: np.random.Generator) -> None:
    """A transposed (column-major) output: the kernel sees row-major memory of its values."""
    rows, cols = 13, 37
    x = mx.array(rng.standard_normal((rows, cols)).astype(np.float32))
    y = mx.zeros((cols, rows)).T
    _quiet_launch(lambda: scale_rows_kernel[(rows,)](x, y, cols, cols, BLOCK=16))
    np.testing.assert_allclose(np.array(y), 2 * np.array(x), rtol=1e-6)


def test_atomics_into_zeros(backend: str, rng: np.random.Generator) -> None:
    n, bins = 1000, 17
    idx = rng.integers(0, bins, n).astype(np.int32)
    hist = mx.zeros((bins,), dtype=mx.int32)
    count_kernel[(mtriton.cdiv(n, 128),)](mx.array(idx), hist, n, BLOCK=128)
    np.testing.assert_array_equal(np.array(hist), np.bincount(idx, minlength=bins))


@pytest.mark.parametrize(
    "dtype", [mx.float32, mx.float16, mx.bfloat16, mx.int32, mx.uint8, mx.int64, mx.bool_]
)
def test_private_copy_keeps_every_bit(dtype: mx.Dtype) -> None:
    values = np.array([-0.0, np.nan, -np.inf, 3.5, -1, 0, 2**20, 7, 1, 0, 5], dtype=np.float64)
    if dtype == mx.bool_:
        original = mx.array(values != 0)
    elif mx.issubdtype(dtype, mx.floating):
        original = mx.array(values).astype(dtype)
    else:
        original = mx.array(np.nan_to_num(values, posinf=9, neginf=-9).astype(np.int64)).astype(dtype)
    copy = private_copy(original)
    assert copy.shape == (original.size,) and copy.dtype == dtype
    bits = (lambda a: np.array(a)) if dtype == mx.bool_ else (lambda a: np.array(a.view(mx.uint8)))
    np.testing.assert_array_equal(bits(copy), bits(original))


def test_private_copy_donates_only_what_nothing_else_holds() -> None:
    """Measured through MLX's allocator: an array no one else holds lends its buffer (no new
    memory) on MLX's CPU build; one that is still held is copied and keeps its value. On MLX's
    CUDA build (H200, MLX 0.32.4) the first case is not asserted: one run copied (the peak rose
    by the array's 4n bytes, 2026-12-02), a later one donated (2026-12-03)."""
    n = 1 << 22
    x = mx.arange(n, dtype=mx.float32)
    mx.eval(x)
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    copy = private_copy(x)
    del x
    mx.eval(copy)
    donated = mx.get_peak_memory() - before < n  # well under the array's 4n bytes
    if mx.default_device() == mx.cpu or not mx.cuda.is_available():
        assert donated
    del copy
    held = mx.arange(n, dtype=mx.float32)
    mx.eval(held)
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    copy = private_copy(held)
    mx.eval(copy)
    assert mx.get_peak_memory() - before >= 4 * n
    assert held[-1].item() == n - 1 and copy[-1].item() == n - 1


# ----------------------------------------------------------------------------- warning


def _gpu_launcher(backend: str) -> bool:
    return backend != "interpreter"


@mtriton.jit
def warn_probe_kernel(out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, offs.to(tl.float32), mask=offs < n)


def test_written_never_read_argument_warns_once_at_the_launch(backend: str) -> None:
    from mtriton import options

    options._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = mtriton.empty_like(mx.zeros((40,)))
        warn_probe_kernel[(1,)](out, 40, BLOCK=64)  # fresh: no warning
        for _ in range(3):
            out = mx.zeros((40,))
            warn_probe_kernel[(1,)](out, 40, BLOCK=64)  # WARN-LINE
        x = mx.zeros((40,))
        add_one_kernel[(1,)](x, 40, BLOCK=64)  # reads what it writes: the copy is needed
    np.testing.assert_array_equal(np.array(out), np.arange(40, dtype=np.float32))
    ours = [w for w in caught if "mtriton.empty_like" in str(w.message)]
    if not _gpu_launcher(backend):
        assert ours == []
        return
    assert len(ours) == 1, [str(w.message) for w in ours]
    message = str(ours[0].message)
    assert "warn_probe_kernel" in message and "out_ptr" in message
    assert ours[0].filename == __file__
    with open(__file__) as f:
        assert "# WARN-LINE" in f.readlines()[ours[0].lineno - 1]


def test_empty_like() -> None:
    like = mx.ones((3, 5), dtype=mx.float16)
    out = mtriton.empty_like(like)
    assert out.shape == (3, 5) and out.dtype == mx.float16
    assert mtriton.empty_like(like, mx.int32).dtype == mx.int32
    with pytest.raises(TypeError, match="empty_like: expected an mx.array, got list"):
        mtriton.empty_like([1, 2])


@pytest.mark.parametrize("backend_name", EMULATORS)
def test_empty_like_output_is_fresh(backend_name: str) -> None:
    """The emulators report unwritten elements of a fresh output: the kernel's masked tail."""
    mtriton.set_backend(backend_name)
    try:
        out = mtriton.empty_like(mx.zeros((40,)))
        with emulator.checks(unwritten=True), pytest.raises(emulator.UnwrittenOutput):
            warn_probe_kernel[(1,)](out, 30, BLOCK=64)
            mx.eval(out)
        out = mtriton.empty_like(mx.zeros((40,)))
        with emulator.checks(unwritten=True):
            warn_probe_kernel[(1,)](out, 40, BLOCK=64)
        np.testing.assert_array_equal(np.array(out), np.arange(40, dtype=np.float32))
    finally:
        mtriton.set_backend(None)


def _no_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(array: mx.array) -> mx.array:
        raise AssertionError("a copy-on-write where a fresh output was expected")

    monkeypatch.setattr(gpu_launch, "private_copy", refuse)


def test_zeros_like_takes_the_fill_path(
    backend: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Atomics into `mtriton.zeros_like`: a fresh output that MLX fills first, no copy."""
    n, bins = 1000, 17
    idx = rng.integers(0, bins, n).astype(np.int32)
    _no_copies(monkeypatch)
    hist = mtriton.zeros_like(mx.zeros((bins,), dtype=mx.int32))
    reader = hist + 0  # a lazy reader of the zeros built before the launch
    count_kernel[(mtriton.cdiv(n, 128),)](mx.array(idx), hist, n, BLOCK=128)
    np.testing.assert_array_equal(np.array(hist), np.bincount(idx, minlength=bins))
    np.testing.assert_array_equal(np.array(reader), np.zeros(bins, np.int32))


@pytest.mark.parametrize("value", [-2.5, 0.0, -0.0, float("-inf"), 3])
def test_full_keeps_unwritten_elements(backend: str, value: float, monkeypatch: pytest.MonkeyPatch) -> None:
    n, head = 203, 77
    _no_copies(monkeypatch)
    out = mtriton.full((n,), value)
    fill_head_kernel[(mtriton.cdiv(head, 32),)](out, 7.0, head, BLOCK=32)
    expect = np.full(n, value, np.float32)
    expect[:head] = 7.0
    np.testing.assert_array_equal(np.array(out).view(np.uint32), expect.view(np.uint32))  # -0.0 too


@mtriton.jit
def two_outputs_kernel(a_ptr, b_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(a_ptr + offs, tl.full((BLOCK,), 1.0, tl.float32), mask=offs < n)
    tl.store(b_ptr + offs, tl.full((BLOCK,), 2.0, tl.float32), mask=offs < n)


@pytest.mark.parametrize("fills", [(0.0, 5.0), (0.0, -0.0), (None, 4.0), (4.0, 4.0)])
def test_one_fill_per_launch(backend: str, fills: tuple[Any, Any]) -> None:
    """MLX fills every output of a launch with one value: an output with another fill takes the
    copy, an `empty` output gets the fill (its contents are unspecified anyway)."""
    n, head = 50, 20
    a, b = (mtriton.empty((n,)) if f is None else mtriton.full((n,), f) for f in fills)
    _quiet_launch(lambda: two_outputs_kernel[(1,)](a, b, head, BLOCK=64))
    for array, fill, value in zip((a, b), fills, (1.0, 2.0)):
        got = np.array(array)
        assert (got[:head] == value).all()
        if fill is not None:
            np.testing.assert_array_equal(
                got[head:].view(np.uint32), np.full(n - head, fill, np.float32).view(np.uint32)
            )


def test_inexact_fills_are_plain_arrays() -> None:
    """A value MLX's float32 `init_value` cannot give exactly makes an unmarked `mx.full`."""
    from mtriton import memory

    for value, dtype in [
        (0.1, mx.float32),
        (2**25 + 1, mx.int32),
        (float("nan"), mx.float32),
        (2, mx.bool_),
    ]:
        array = mtriton.full((4,), value, dtype)
        assert memory.take_fresh(array) is memory.NOT_FRESH, (value, dtype)
    for value, dtype in [
        (0, mx.int64),
        (1, mx.bool_),
        (-3, mx.int8),
        (0.5, mx.float16),
        (float("inf"), mx.bfloat16),
    ]:
        assert memory.take_fresh(mtriton.full((4,), value, dtype)) == float(value), (value, dtype)
    with pytest.raises(TypeError, match="full_like: expected an mx.array, got int"):
        mtriton.full_like(3, 0)


def test_params_read() -> None:
    def ir_of(kernel: Any, *args: Any, **kwargs: Any) -> Any:
        return kernel[(1,)].warmup(*args, **kwargs).fn

    x = mx.zeros((64,))
    assert params_read(ir_of(fill_head_kernel, x, 1.0, 64, BLOCK=32)) == frozenset()
    assert params_read(ir_of(add_one_kernel, x, 64, BLOCK=32)) == {"x_ptr"}
    assert params_read(ir_of(scale_rows_kernel, x, x, 8, 8, BLOCK=8)) == {"x_ptr"}
    idx = mx.zeros((64,), dtype=mx.int32)
    assert params_read(ir_of(count_kernel, idx, idx, 64, BLOCK=32)) == {"idx_ptr", "hist_ptr"}


# ----------------------------------------------------------------------------- dispatch


def test_cached_launches_do_not_recompile(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword order, options given or not and new arrays of the same dtypes hit the cache;
    a new dtype, alignment class or option value compiles once more."""
    compiled = count_compiles(monkeypatch, backend)
    kernel = mtriton.jit(fill_head_kernel.fn)
    for n, kwargs, compiles in [
        (40, {"BLOCK": 64}, 1),
        (41, {"BLOCK": 64}, 1),
        (40, {"BLOCK": 64, "num_warps": 4}, 1),
        (48, {"BLOCK": 64}, 2),  # divisible by 16
        (40, {"num_warps": 2, "BLOCK": 64}, 3),
        (40, {"BLOCK": 64, "num_warps": 2}, 3),
    ]:
        out = mtriton.empty((64,))
        kernel[(1,)](out, 1.5, n, **kwargs)
        assert len(compiled) == compiles, (n, kwargs)
        np.testing.assert_array_equal(np.array(out[:n]), np.full(n, 1.5, np.float32))
    out = mtriton.empty((64,))
    kernel[(1,)](BLOCK=64, n=40, value=2.5, out_ptr=out)  # every argument by keyword, out of order
    assert len(compiled) == 3
    np.testing.assert_array_equal(np.array(out[:40]), np.full(40, 2.5, np.float32))
    p = poisoned(64, mx.float16)
    _quiet_launch(lambda: kernel[(1,)](p, 1.5, 40, BLOCK=64))  # a new dtype: a new kernel
    assert len(compiled) == 4


def test_bind_errors_name_the_argument() -> None:
    x = mx.zeros((8,))
    with pytest.raises(mtriton.LaunchTypeError, match="multiple values for argument 'n'"):
        fill_head_kernel[(1,)](x, 1.0, 8, n=8, BLOCK=8)
    with pytest.raises(mtriton.LaunchTypeError, match="unexpected keyword argument 'bogus'"):
        fill_head_kernel[(1,)](x, 1.0, 8, BLOCK=8, bogus=1)
    with pytest.raises(mtriton.LaunchTypeError, match="missing a required argument: 'n'"):
        fill_head_kernel[(1,)](x, 1.0, BLOCK=8)


@mtriton.jit
def scaled_sum_kernel(x_ptr, y_ptr, out_ptr, n, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, alpha * x + tl.load(y_ptr + offs, mask=mask), mask=mask)


class _RecordingKernel:
    """A stand-in for the kernel `mx.fast.cuda_kernel` makes: records each call's inputs and
    returns `alpha * x + y` computed by MLX, so a launch's arrays can be followed."""

    calls: list[dict[str, Any]] = []

    def __init__(self, **source: Any) -> None:
        self.source = source

    def __call__(self, **launch: Any) -> list[mx.array]:
        _RecordingKernel.calls.append(launch)
        x, y, n, alpha = launch["inputs"]
        return [(alpha * x + y).reshape(launch["output_shapes"][0])]


def test_a_rebound_launch_swaps_only_its_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    """`CustomKernelLauncher.rebinder`: MLX's call is built once; later calls put the new read
    arrays in their input slots, keep the scalars, and return the fresh output where a launch
    would. (The GPU launcher with a recording stand-in for `mx.fast.cuda_kernel`: the real one
    runs in the CUDA suite through paged decode.)"""
    from mtriton.backends.cuda import backend as cuda_backend

    monkeypatch.setenv("MTRITON_CUDA_ARCH", "90")
    monkeypatch.setattr(cuda_backend.CudaBackend, "factory", lambda self: _RecordingKernel)
    monkeypatch.setattr(cuda_backend.CudaBackend, "is_available", lambda self: True)
    mtriton.set_backend("cuda")
    try:
        x, y, n = mx.arange(100, dtype=mx.float32), mx.ones((100,)), 100
        entry, runtime, grid = scaled_sum_kernel.lookup(
            [x, y, mtriton.empty((100,)), n, 2.0], {"BLOCK": 64}, (2,)
        )
        relaunch = entry.kernel.rebinder(runtime, grid)
        built = []
        monkeypatch.setattr(type(entry.kernel), "_launch", lambda *a: built.append(a))  # not again
        _RecordingKernel.calls.clear()
        for scale in (1, 3):
            x2, y2 = x * scale, y * -scale
            results = relaunch([x2, y2, mtriton.empty((100,)), n, 2.0])
            assert results[:2] == [None, None] and results[3:] == [None, None]
            np.testing.assert_array_equal(np.array(results[2]), 2.0 * np.array(x2) + np.array(y2))
            inputs = _RecordingKernel.calls[-1]["inputs"]
            assert inputs[0] is x2 and inputs[1] is y2
        first, last = (call["inputs"][2:] for call in _RecordingKernel.calls)
        assert all(a is b for a, b in zip(first, last)) and not built  # the scalars built once
    finally:
        mtriton.set_backend(None)


def test_a_rebound_launch_on_the_emulators_is_a_plain_launch(backend: str, rng: np.random.Generator) -> None:
    """The emulators (and copied or filled outputs) rebind through the ordinary launch: the
    same results. The interpreter has no rebinder (its callers launch as usual)."""
    x = mx.array(rng.standard_normal(100).astype(np.float32))
    y = mx.array(rng.standard_normal(100).astype(np.float32))
    entry, runtime, grid = scaled_sum_kernel.lookup(
        [x, y, mtriton.empty((100,)), 100, 0.5], {"BLOCK": 64}, (2,)
    )
    if not _gpu_launcher(backend):
        assert not hasattr(entry.kernel, "rebinder")
        return
    relaunch = entry.kernel.rebinder(runtime, grid)
    out = relaunch([y, x, mtriton.empty((100,)), 100, 0.5])[2]
    np.testing.assert_allclose(np.array(out), 0.5 * np.array(y) + np.array(x), rtol=1e-6)
