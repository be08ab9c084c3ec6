"""Pointer casts (`p.to(tl.pointer_type(T))`, `tl.cast`, `tl.pi32_t`): the same bytes read and
written as another element type, offsets counting its elements, on every backend."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlx.core as mx
import numpy as np
import pytest
from conftest import EMULATORS, backend_unavailable_reason, marker_line, poisoned, to_numpy

import mtriton
import mtriton.language as tl
from mtriton import emulator
from mtriton.dtypes import MX_TO_IR
from mtriton.interpreter import InterpreterError


@mtriton.jit
def _read_as(x_ptr, out_ptr, N, DTYPE: tl.constexpr, BLOCK: tl.constexpr):
    # the argument read as DTYPE elements: N of them, masked, the rest `other`
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    values = tl.load(x_ptr.to(tl.pointer_type(DTYPE)) + offs, mask=mask, other=7)
    tl.store(out_ptr + offs, values, mask=offs < N + 3)  # three `other`s past the end


def _random_bits(rng: np.random.Generator, nbytes: int) -> np.ndarray:
    return rng.integers(0, 256, nbytes, dtype=np.uint8)


def _mx(dtype: np.dtype) -> mx.Dtype:
    return mx.array(np.zeros(1, dtype)).dtype


# (argument dtype, the pointee it is read as): the same size, narrower, wider
CASES = [
    (np.float32, np.uint32),
    (np.int32, np.float32),
    (np.float16, np.int16),
    (np.int32, np.uint8),
    (np.float32, np.uint16),
    (np.int64, np.int8),
    (np.uint8, np.uint32),
    (np.uint16, np.uint32),
    (np.int8, np.int64),
]


@pytest.mark.parametrize(
    "src, dst", CASES, ids=[f"{np.dtype(s).name}-as-{np.dtype(d).name}" for s, d in CASES]
)
def test_loads_reinterpret_the_bytes(backend: str, rng: np.random.Generator, src: type, dst: type) -> None:
    src, dst = np.dtype(src), np.dtype(dst)
    count = 37  # whole dst elements read, odd; a wider dst leaves a partial one at the end
    nbytes = -(-count * dst.itemsize // src.itemsize) * src.itemsize
    if src.itemsize < dst.itemsize:
        nbytes += src.itemsize
    x = _random_bits(rng, nbytes).view(src)
    if src.kind == "f":  # no NaNs in the argument: MLX may canonicalize them when it copies
        x = np.where(np.isfinite(x), x, 1).astype(src)
    out = poisoned(count + 8, _mx(dst))
    block = 16
    grid = (mtriton.cdiv(count + 3, block),)
    _read_as[grid](mx.array(x), out, count, DTYPE=MX_TO_IR[_mx(dst)], BLOCK=block)
    got = np.array(out)
    expected = x.view(np.uint8)[: count * dst.itemsize].view(dst)
    np.testing.assert_array_equal(got[:count].view(np.uint8), expected.view(np.uint8))
    np.testing.assert_array_equal(got[count : count + 3], np.full(3, 7, dst))
    np.testing.assert_array_equal(np.array(poisoned(5, out.dtype)), got[count + 3 :])  # untouched


@mtriton.jit
def _write_bits(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    # float32 values' bits, stored through a uint32 view of a float32 output and a byte view
    # of an int32 one (four byte stores per value, the last value's cut by the mask)
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    bits = tl.load(x_ptr.to(tl.pointer_type(tl.uint32)) + offs, mask=mask)
    tl.store(out_ptr.to(tl.pi32_t) + offs, (bits ^ 0x80000000).to(tl.int32, bitcast=True), mask=mask)
    bytes_out = tl.cast(out_ptr, tl.pointer_type(tl.uint8)) + 4 * N
    for k in tl.static_range(4):
        byte = ((bits >> (8 * k)) & 0xFF).to(tl.uint8)
        tl.store(bytes_out + 4 * offs + k, byte, mask=4 * offs + k < 4 * N - 1)


def test_stores_through_cast_pointers(backend: str, rng: np.random.Generator) -> None:
    n = 29
    x = rng.standard_normal(n).astype(np.float32)
    out = poisoned(2 * n)
    _write_bits[(1,)](mx.array(x), out, n, BLOCK=32)
    got = np.array(out)
    np.testing.assert_array_equal(got[:n], -x)  # the sign bit flipped, through integer bits
    written = got[n:].view(np.uint8)
    np.testing.assert_array_equal(written[: 4 * n - 1], x.view(np.uint8)[: 4 * n - 1])
    assert written[4 * n - 1] == np.array(poisoned(1)).view(np.uint8)[3]  # masked off: unwritten


@mtriton.jit
def _block_of_pointers_cast(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    # a cast of a block of pointers (each int32 element's address), then byte offsets
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    as_bytes = (x_ptr + offs).to(tl.pointer_type(tl.uint8))
    low = tl.load(as_bytes, mask=mask, other=0)
    high = tl.load(as_bytes + 3, mask=mask, other=0)
    tl.store(out_ptr + 2 * offs, low, mask=mask)
    tl.store(out_ptr + 2 * offs + 1, high, mask=mask)
    # and back: the pointers at each element's first byte are int32 pointers again
    back = as_bytes.to(tl.pointer_type(tl.int32))
    tl.store(back, tl.load(back, mask=mask) + 1, mask=mask)


def test_casts_of_pointer_blocks(backend: str, rng: np.random.Generator) -> None:
    n = 45
    x = rng.integers(-(2**31), 2**31, n, dtype=np.int64).astype(np.int32)
    x_mx = mx.array(x)
    out = poisoned(2 * n, mx.uint8)
    _block_of_pointers_cast[(1,)](x_mx, out, n, BLOCK=64)
    pairs = np.array(out).reshape(n, 2)
    np.testing.assert_array_equal(pairs[:, 0], x.view(np.uint8).reshape(n, 4)[:, 0])
    np.testing.assert_array_equal(pairs[:, 1], x.view(np.uint8).reshape(n, 4)[:, 3])
    np.testing.assert_array_equal(np.array(x_mx), x + np.int32(1))


@mtriton.jit
def _bit_counts(x_ptr, counts_ptr, N, BLOCK: tl.constexpr):
    # atomics through a cast pointer: each float32's exponent field counted in a uint32 histogram
    # kept in a float32 buffer
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    bits = tl.load(x_ptr.to(tl.pointer_type(tl.uint32)) + offs, mask=mask)
    exponent = ((bits >> 23) & 0xFF).to(tl.int32) - 120
    tl.atomic_add(counts_ptr.to(tl.pointer_type(tl.uint32)) + exponent, 1, mask=mask)


def test_atomics_through_cast_pointers(backend: str, rng: np.random.Generator) -> None:
    n = 301
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    x = np.where(np.abs(x) < 2.0**-7, 1.0, np.where(np.abs(x) >= 256, 255.0, x)).astype(np.float32)
    counts = mx.zeros((16,), dtype=mx.float32)
    _bit_counts[(mtriton.cdiv(n, 64),)](mx.array(x), counts, n, BLOCK=64)
    exponent = (x.view(np.uint32) >> 23) & 0xFF
    expected = np.bincount(exponent.astype(np.int64) - 120, minlength=16).astype(np.uint32)
    np.testing.assert_array_equal(np.array(counts).view(np.uint32), expected)


@mtriton.jit
def _matmul_of_bits(a_ptr, b_ptr, c_ptr, M, N, K, BLOCK: tl.constexpr, BLOCK_K: tl.constexpr):
    # float16 tiles from uint16 arrays, a loop over K: the dots stage loads through cast pointers
    # (on CUDA copied ahead into shared memory by the software pipeline), and the block pointer
    # is made on a cast base
    rows, cols, ks = tl.arange(0, BLOCK), tl.arange(0, BLOCK), tl.arange(0, BLOCK_K)
    a = a_ptr.to(tl.pointer_type(tl.float16))
    b_block = tl.make_block_ptr(
        base=b_ptr.to(tl.pointer_type(tl.float16)), shape=(K, N), strides=(N, 1), offsets=(0, 0),
        block_shape=(BLOCK_K, BLOCK), order=(1, 0),
    )  # fmt: skip
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for k in range(0, K, BLOCK_K):
        a_mask = (rows[:, None] < M) & (k + ks[None, :] < K)
        a_tile = tl.load(a + rows[:, None] * K + k + ks[None, :], mask=a_mask, other=0.0)
        b_tile = tl.load(b_block, boundary_check=(0, 1), padding_option="zero")
        acc += tl.dot(a_tile, b_tile)
        b_block = tl.advance(b_block, (BLOCK_K, 0))
    tl.store(c_ptr + rows[:, None] * N + cols[None, :], acc, mask=(rows[:, None] < M) & (cols[None, :] < N))


@pytest.mark.parametrize("k", [45, 64])
def test_dot_operands_through_cast_pointers(backend: str, rng: np.random.Generator, k: int) -> None:
    m, n = 27, 32
    a = rng.standard_normal((m, k)).astype(np.float16)
    b = rng.standard_normal((k, n)).astype(np.float16)
    c = poisoned((m, n))
    args = (mx.array(a.view(np.uint16)), mx.array(b.view(np.uint16)), c, m, n, k)
    _matmul_of_bits[(1,)](*args, BLOCK=32, BLOCK_K=16)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(to_numpy(c), expected, rtol=1e-3, atol=1e-3)
    cuda = _matmul_of_bits.warmup(*args, BLOCK=32, BLOCK_K=16, grid=(1,)).asm["cuda"]
    # the pipeline's stages are copied from the views: A with asynchronous vector copies where
    # its rows are aligned (K = 64), else element by element
    assert "mt_cp_async_wait_group<" in cuda and "p0_f16[" in cuda and "p1_f16[" in cuda
    if k % 8 == 0:
        assert re.search(r"mt_cp_async<\d+>\(dst, p0_f16 \+ ", cuda)


@mtriton.jit
def _vector_copy_as_u32(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    # bytes copied as uint32 words: contiguous, aligned chunks become vector accesses
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    words = tl.load(x_ptr.to(tl.pointer_type(tl.uint32)) + offs, mask=mask)
    tl.store(out_ptr.to(tl.pointer_type(tl.uint32)) + offs, words, mask=mask)


@pytest.mark.parametrize("start", [0, 4, 8], ids=lambda s: f"view-at-byte-{s}")
def test_vector_accesses_through_cast_pointers(backend: str, rng: np.random.Generator, start: int) -> None:
    # the byte arrays are views at an offset: CUDA's vector accesses test the views' alignment
    words = 301
    x = _random_bits(rng, 4 * words + 16)
    out = mx.zeros((4 * words + 16,), dtype=mx.uint8)
    x_view, out_view = mx.array(x)[start:], out[start:]
    _vector_copy_as_u32[(mtriton.cdiv(words, 256),)](x_view, out_view, words, BLOCK=256)
    np.testing.assert_array_equal(np.array(out_view)[: 4 * words], x[start : start + 4 * words])


def test_accesses_through_cast_pointers_are_vector_accesses() -> None:
    x, out = mx.zeros((64,), dtype=mx.uint8), mx.zeros((64,), dtype=mx.uint8)
    asm = _vector_copy_as_u32.warmup(x, out, 16, BLOCK=512, grid=(1,)).asm  # four per thread
    # the launch declares each view next to its argument, and CUDA tests the view's alignment
    assert "unsigned int* p0_u32 = (unsigned int*)(i0);" in asm["cuda"]
    assert asm["cuda"].count("mt_vec<unsigned int, 4>") >= 2
    assert "const bool p0_u32_aligned16 = " in asm["cuda"]
    assert "device uint* p1_u32 = (device uint*)(i1);" in asm["metal"]
    assert asm["metal"].count("packed_uint4") >= 2


@mtriton.jit
def _misaligned(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    words = (x_ptr + 1).to(tl.pointer_type(tl.uint32))
    tl.store(out_ptr + offs, tl.load(words + offs))  # ERR:misaligned


@pytest.mark.parametrize("backend_name", ["interpreter", *EMULATORS])
def test_misaligned_accesses_through_widened_pointers_fault(backend_name: str) -> None:
    # a byte pointer cast to uint32 between two words: the interpreter says so; the GPU code
    # turns the offset into one far below the argument, so the access faults as a GPU's does
    # (not run on a GPU, where the fault would end the process's GPU context)
    reason = backend_unavailable_reason(backend_name)
    if reason is not None:
        pytest.skip(reason)
    if backend_name != "interpreter" and not os.environ.get("MTRITON_TEST_IN_SUBPROCESS"):
        # The emulators see the access fault only where the address 4 GiB below the buffer is
        # unmapped: true in a fresh process, not always in one that has run a thousand tests
        # (the whole suite made it a silent read), so this case runs in its own process.
        test_id = f"{__file__}::test_misaligned_accesses_through_widened_pointers_fault[{backend_name}]"
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", test_id],
            env={**os.environ, "MTRITON_TEST_IN_SUBPROCESS": "1"},
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        return
    mtriton.set_backend(backend_name)
    try:
        _check_misaligned_access_faults(backend_name)
    finally:
        mtriton.set_backend(None)


def _check_misaligned_access_faults(backend: str) -> None:
    x, out = mx.zeros((64,), dtype=mx.uint8), poisoned(8, mx.uint32)
    if backend == "interpreter":
        with pytest.raises(
            InterpreterError, match="misaligned access through pointer argument 'x_ptr'"
        ) as info:
            _misaligned[(1,)](x, out, BLOCK=8)
        assert f"test_pointer_casts.py:{marker_line(__file__, 'misaligned')}" in str(info.value)
    else:
        with pytest.raises(emulator.OutOfBounds, match="in no buffer") as info:
            _misaligned[(1,)](x, out, BLOCK=8)
        assert info.value.location == f"test_pointer_casts.py:{marker_line(__file__, 'misaligned')}"


@mtriton.jit
def _past_the_end(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr.to(tl.pointer_type(tl.uint32)) + offs))


def test_bounds_count_whole_elements_of_the_new_type() -> None:
    # 30 bytes hold 7 whole uint32: reading 8 is out of bounds, though the 8th starts inside
    mtriton.set_backend("interpreter")
    try:
        message = r"index 7 out of bounds for pointer argument 'x_ptr' of 7 uint32 elements \(30 bytes\)"
        with pytest.raises(InterpreterError, match=message):
            _past_the_end[(1,)](mx.zeros((30,), dtype=mx.uint8), poisoned(8, mx.uint32), BLOCK=8)
    finally:
        mtriton.set_backend(None)


@mtriton.jit
def _int_to_pointer(x_ptr, address, BLOCK: tl.constexpr):
    ptr = address.to(tl.pointer_type(tl.float32))  # ERR:int-to-pointer
    tl.store(ptr + tl.arange(0, BLOCK), tl.load(x_ptr + tl.arange(0, BLOCK)))


def test_integers_do_not_become_pointers(backend: str) -> None:
    with pytest.raises(mtriton.UnsupportedError, match="MLX exposes no array addresses to Python") as info:
        _int_to_pointer[(1,)](mx.zeros(16), 2**40, BLOCK=16)
    message = str(info.value)
    assert "pass each array as a kernel argument instead" in message
    assert f"test_pointer_casts.py:{marker_line(__file__, 'int-to-pointer')}" in message
