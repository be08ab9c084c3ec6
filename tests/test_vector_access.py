"""Vector accesses of 16 bytes in every dtype: a layout's chunks hold 16 bytes of the narrowest
type the kernel accesses with that element count (8 halves, 16 int8), a wider type in the same
layout accesses a chunk as several vectors, and views at any element offset take the element
path (CUDA tests base pointers once). Every case runs on every backend, odd sizes, masked tails
and unaligned views included, with poisoned outputs."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, to_numpy

import mtriton
import mtriton.language as tl


@mtriton.jit
def _copy(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask), mask=mask)


@mtriton.jit
def _widen_and_narrow(x_ptr, wide_ptr, narrow_ptr, N, BLOCK: tl.constexpr):
    # one element count, three types: the layout's chunk is 16 bytes of the narrowest
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask, other=0).to(tl.float32)
    tl.store(wide_ptr + offs, x * 2.0, mask=mask)
    tl.store(narrow_ptr + offs, (x + 1.0).to(narrow_ptr.dtype.element_ty), mask=mask)


@mtriton.jit
def _grouped_scale(x_ptr, s_ptr, y_ptr, GROUP: tl.constexpr):
    cols = tl.arange(0, 2048)
    tl.store(y_ptr + cols, tl.load(x_ptr + cols) * tl.load(s_ptr + cols // GROUP))


DTYPES = [mx.int8, mx.uint8, mx.float16, mx.bfloat16, mx.int16, mx.float32, mx.int32, mx.int64]


def _random(rng: np.random.Generator, n: int, dtype: mx.Dtype) -> mx.array:
    if mx.issubdtype(dtype, mx.floating):
        return mx.array(rng.standard_normal(n).astype(np.float32)).astype(dtype)
    info = np.iinfo(np.dtype(str(dtype).split(".")[-1]))
    return mx.array(rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), n)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("start", [0, 1], ids=["aligned", "view-at-1"])
def test_copies_in_every_dtype(backend: str, rng: np.random.Generator, dtype: mx.Dtype, start: int) -> None:
    n, block = 3001, 2048  # 16 int8 per thread of 4 warps; the second program's tail is masked
    x = _random(rng, n + 1, dtype)
    out = poisoned(n + 1 + 64, dtype)
    x_view, out_view = x[start : start + n], out[start:]
    _copy[(mtriton.cdiv(n, block),)](x_view, out_view, n, BLOCK=block)
    got = to_numpy(out_view)  # the kernel wrote the view (Triton's in-place semantics)
    np.testing.assert_array_equal(got[:n], to_numpy(x_view))
    np.testing.assert_array_equal(got[n:], to_numpy(poisoned(got.size - n, dtype)))  # nothing past N


@pytest.mark.parametrize("narrow", [mx.float16, mx.bfloat16, mx.int8], ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("start", [0, 1], ids=["aligned", "view-at-1"])
def test_types_of_several_widths_share_a_layout(
    backend: str, rng: np.random.Generator, narrow: mx.Dtype, start: int
) -> None:
    n, block = 1037, 1024
    x = _random(rng, n + 1, narrow)
    wide, narrow_out = poisoned(n + 1, mx.float32), poisoned(n + 1, narrow)
    grid = (mtriton.cdiv(n, block),)
    wide, narrow_out = wide[start:], narrow_out[start:]
    _widen_and_narrow[grid](x[start : start + n], wide, narrow_out, n, BLOCK=block)
    x64 = to_numpy(x)[start : start + n].astype(np.float64)
    np.testing.assert_array_equal(to_numpy(wide)[:n], x64 * 2)
    want = (mx.array(x64.astype(np.float32)) + 1.0).astype(narrow)
    np.testing.assert_array_equal(to_numpy(narrow_out)[:n], to_numpy(want))


def _cuda_and_metal(kernel: mtriton.JITFunction, *args: object, **consts: object) -> dict[str, str]:
    return kernel.warmup(*args, grid=(1,), **consts).asm


@pytest.mark.parametrize(
    ("dtype", "cuda", "metal"),
    [
        (mx.int8, "mt_vec<signed char, 16>", "packed_char4"),
        (mx.float16, "mt_vec<__half, 8>", "packed_half4"),
        (mx.float32, "mt_vec<float, 4>", "packed_float4"),
        (mx.int64, "mt_vec<long long, 2>", None),
    ],
    ids=["int8", "float16", "float32", "int64"],
)
def test_accesses_are_16_bytes(dtype: mx.Dtype, cuda: str, metal: str | None) -> None:
    x, out = mx.zeros((4096,), dtype=dtype), mx.zeros((4096,), dtype=dtype)
    asm = _copy.warmup(x, out, 4096, BLOCK=4096, grid=(1,)).asm  # 32 per thread
    assert cuda in asm["cuda"]
    assert "_aligned16 = " in asm["cuda"]  # the base pointers' test, once per kernel
    if metal is not None:  # Metal's longest vectors have four elements
        assert metal in asm["metal"]


def test_a_wider_type_accesses_a_chunk_as_several_vectors() -> None:
    x = mx.zeros((2048,), dtype=mx.float16)
    wide, narrow = mx.zeros((2048,), dtype=mx.float32), mx.zeros((2048,), dtype=mx.float16)
    cuda = _widen_and_narrow.warmup(x, wide, narrow, 2048, BLOCK=2048, grid=(1,)).asm["cuda"]
    # 16 elements per thread in chunks of 8: halves in one vector, floats in two
    assert cuda.count("mt_vec<__half, 8>") == 4  # the load and the store: a type and a cast each
    assert "for (int i = 0; i < 16; i += 4)" in cuda and "mt_vec<float, 4>" in cuda


@pytest.mark.parametrize("group", [2, 3, 4, 16])
def test_scales_shared_by_runs_of_a_chunk(backend: str, rng: np.random.Generator, group: int) -> None:
    # half chunks of 8: a scale shared by runs of 2 or 4 is one load per run, copied
    x = _random(rng, 2048, mx.float16)
    scales = _random(rng, 2048 // group + 1, mx.float16)
    out = poisoned(2048, mx.float16)
    _grouped_scale[(1,)](x, scales, out, GROUP=group)
    want = x * scales[mx.arange(2048) // group]
    np.testing.assert_array_equal(to_numpy(out), to_numpy(want))
