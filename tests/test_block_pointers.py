"""Block pointers (`tl.make_block_ptr`, `tl.advance`, loads and stores with `boundary_check` and
`padding_option`), in the forms Triton's tutorials write them, on every backend."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, tf32_dots, to_numpy

import mtriton
import mtriton.language as tl


@mtriton.jit
def _window_copy(
    x_ptr, out_ptr, M, N, stride_m, stride_n, NAN: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
):
    # each program copies one window, reading past the edges as padding, writing only inside
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    src = tl.make_block_ptr(
        x_ptr, (M, N), (stride_m, stride_n), (pid_m * BLOCK_M, pid_n * BLOCK_N), (BLOCK_M, BLOCK_N), (1, 0)
    )
    dst = tl.make_block_ptr(
        out_ptr, (M + 8, N + 8), (N + 8, 1), (pid_m * BLOCK_M, pid_n * BLOCK_N), (BLOCK_M, BLOCK_N), (1, 0)
    )
    if NAN:
        block = tl.load(src, boundary_check=(0, 1), padding_option="nan")
    else:
        block = tl.load(src, boundary_check=(0, 1), padding_option="zero")
    tl.store(dst, block + 1.0, boundary_check=(0, 1))


@pytest.mark.parametrize("nan", [False, True])
def test_window_loads_pad_and_stores_clip(backend: str, rng: np.random.Generator, nan: bool) -> None:
    m, n = 37, 21  # not multiples of the window
    x = rng.standard_normal((m, n)).astype(np.float32)
    out = poisoned((m + 8, n + 8))
    grid = (mtriton.cdiv(m + 8, 16), mtriton.cdiv(n + 8, 16))
    _window_copy[grid](mx.array(x), out, m, n, n, 1, NAN=nan, BLOCK_M=16, BLOCK_N=16)
    got = to_numpy(out)
    padding = np.nan if nan else 0.0
    expected = np.full((m + 8, n + 8), padding + 1.0, dtype=np.float32)
    expected[:m, :n] = x + 1
    np.testing.assert_allclose(got, expected, rtol=1e-6)  # NaN == NaN here


@mtriton.jit
def _block_ptr_matmul(
    a_ptr, b_ptr, c_ptr, M, N, K,
    stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    a_block = tl.make_block_ptr(
        base=a_ptr, shape=(M, K), strides=(stride_am, stride_ak), offsets=(pid_m * BLOCK_M, 0),
        block_shape=(BLOCK_M, BLOCK_K), order=(1, 0),
    )  # fmt: skip
    b_block = tl.make_block_ptr(
        base=b_ptr, shape=(K, N), strides=(stride_bk, stride_bn), offsets=(0, pid_n * BLOCK_N),
        block_shape=(BLOCK_K, BLOCK_N), order=(1, 0),
    )  # fmt: skip
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for _ in range(0, K, BLOCK_K):
        a = tl.load(a_block, boundary_check=(0, 1))
        b = tl.load(b_block, boundary_check=(0, 1))
        acc += tl.dot(a, b)
        a_block = tl.advance(a_block, (0, BLOCK_K))
        b_block = tl.advance(b_block, (BLOCK_K, 0))
    c_block = tl.make_block_ptr(
        base=c_ptr, shape=(M, N), strides=(stride_cm, stride_cn), offsets=(pid_m * BLOCK_M, pid_n * BLOCK_N),
        block_shape=(BLOCK_M, BLOCK_N), order=(1, 0),
    )  # fmt: skip
    tl.store(c_block, acc.to(c_ptr.dtype.element_ty), boundary_check=(0, 1))


@pytest.mark.parametrize("dtype", [mx.float16, mx.float32], ids=str)
def test_matmul_with_advancing_block_pointers(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype
) -> None:
    m, n, k = 45, 38, 70  # ragged in every dimension
    a = mx.array(rng.standard_normal((m, k)).astype(np.float32)).astype(dtype)
    b = mx.array(rng.standard_normal((k, n)).astype(np.float32)).astype(dtype)
    c = poisoned((m, n), dtype)
    grid = (mtriton.cdiv(m, 32), mtriton.cdiv(n, 32))
    _block_ptr_matmul[grid](a, b, c, m, n, k, k, 1, n, 1, n, 1, BLOCK_M=32, BLOCK_N=32, BLOCK_K=16)
    a64, b64 = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    tol = 1e-2 if dtype == mx.float16 or tf32_dots(backend) else 1e-4
    np.testing.assert_allclose(to_numpy(c).astype(np.float64), a64 @ b64, rtol=tol, atol=tol * np.sqrt(k))


@mtriton.jit
def _cube_copy(
    x_ptr, out_ptr, D0, D1, D2, D3, B0: tl.constexpr, B1: tl.constexpr, B2: tl.constexpr, B3: tl.constexpr
):
    pid = tl.program_id(0)
    strides = (D1 * D2 * D3, D2 * D3, D3, 1)
    src = tl.make_block_ptr(
        x_ptr, (D0, D1, D2, D3), strides, (pid * B0, 0, 0, 0), (B0, B1, B2, B3), (3, 2, 1, 0)
    )
    dst = tl.make_block_ptr(
        out_ptr, (D0, D1, D2, D3), strides, (pid * B0, 0, 0, 0), (B0, B1, B2, B3), (3, 2, 1, 0)
    )
    tl.store(dst, tl.load(src, boundary_check=(0, 1, 2, 3)) * 2.0, boundary_check=(0, 1, 2, 3))


def test_four_dimensional_windows(backend: str, rng: np.random.Generator) -> None:
    shape = (5, 3, 6, 7)
    x = rng.standard_normal(shape).astype(np.float32)
    out = poisoned(shape)
    _cube_copy[(mtriton.cdiv(5, 2),)](mx.array(x), out, *shape, B0=2, B1=4, B2=8, B3=8)
    np.testing.assert_array_equal(to_numpy(out), 2 * x)


@mtriton.jit
def _bad(x_ptr, CASE: tl.constexpr):
    p = tl.make_block_ptr(x_ptr, (8,), (1,), (0,), (8,), (0,))
    if CASE == 0:
        tl.load(p, mask=tl.arange(0, 8) < 4)
    elif CASE == 1:
        tl.load(x_ptr + tl.arange(0, 8), boundary_check=(0,))
    elif CASE == 2:
        tl.load(tl.make_block_ptr(x_ptr, (8,), (1,), (0,), (6,), (0,)))
    elif CASE == 3:
        tl.store(p, tl.zeros((4,), tl.float32))
    else:
        for _ in range(3):
            p = tl.arange(0, 8)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (0, "takes boundary_check and padding_option, not mask/other"),
        (1, "boundary_check and padding_option need a block pointer"),
        (2, r"block_shape must be powers of two, got \(6,\)"),
        (3, r"block_shape \(8,\) got a value of shape \(4,\)"),
        (4, "`p` is a block pointer of block_shape .8,. here and a value there"),
    ],
)
def test_block_pointer_errors_point_at_the_line(case: int, message: str) -> None:
    with pytest.raises(mtriton.KernelTypeError, match=message) as info:
        _bad[(1,)](mx.zeros(8), CASE=case)
    assert "test_block_pointers.py:" in str(info.value)
