"""Random numbers (`tl.randint`, `tl.rand`, `tl.randn`, `tl.philox`) and the integer and block
functions they need (`tl.umulhi`, `tl.cat`, `tl.interleave`), on every backend, against
Random123's published Philox test vectors and a Python reference of Triton's algorithm."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, to_numpy

import mtriton
import mtriton.language as tl

# Random123's known-answer vectors (kat_vectors): counter, key -> output, ten rounds
KAT_4X32 = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]  # fmt: skip
KAT_4X64 = [
    ((0, 0, 0, 0), (0, 0), (0x16554D9ECA36314C, 0xDB20FE9D672D0FDC, 0xD7E772CEE186176B, 0x7E68B68AEC7BA23B)),
    ((0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0, 0x082EFA98EC4E6C89),
     (0x452821E638D01377, 0xBE5466CF34E90C6C),
     (0xA528F45403E61D95, 0x38C72DBD566E9788, 0xA5A1610E72FD18B5, 0x57BD43B5E52B7FE6)),
]  # fmt: skip


def philox_reference(counters: tuple[int, ...], key: tuple[int, int], bits: int, rounds: int = 10) -> tuple:
    """Philox4x32/4x64 in Python integers."""
    mask = (1 << bits) - 1
    m0, m1, w0, w1 = {
        32: (0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85),
        64: (0xD2E7470EE14C6C93, 0xCA5A826395121157, 0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B),
    }[bits]
    c0, c1, c2, c3 = counters
    k0, k1 = key
    for _ in range(rounds):
        p0, p1 = m0 * c0, m1 * c2
        c0, c1, c2, c3 = (p1 >> bits) ^ c1 ^ k0, p1 & mask, (p0 >> bits) ^ c3 ^ k1, p0 & mask
        k0, k1 = (k0 + w0) & mask, (k1 + w1) & mask
    return c0, c1, c2, c3


def randint4x_reference(seed: int, offsets: np.ndarray) -> np.ndarray:
    """Triton's randint4x for 32-bit offsets: the offset is the first counter, the seed's halves the key."""
    seed &= (1 << 64) - 1
    key = (seed & 0xFFFFFFFF, seed >> 32)
    out = [philox_reference((int(o) & 0xFFFFFFFF, 0, 0, 0), key, 32) for o in offsets]
    return np.array(out, dtype=np.uint64).T.astype(np.uint32)


def uniform_reference(bits: np.ndarray) -> np.ndarray:
    x = bits.view(np.int32)
    x = np.where(x < 0, -x - 1, x)
    return x.astype(np.float32) * np.float32(4.6566127342e-10)


@mtriton.jit
def _philox_kernel(c_ptr, k_ptr, out_ptr, N_ROUNDS: tl.constexpr):
    i = tl.arange(0, 4)
    c0, c1 = tl.load(c_ptr + i * 4), tl.load(c_ptr + i * 4 + 1)
    c2, c3 = tl.load(c_ptr + i * 4 + 2), tl.load(c_ptr + i * 4 + 3)
    k0, k1 = tl.load(k_ptr + i * 2), tl.load(k_ptr + i * 2 + 1)
    r0, r1, r2, r3 = tl.philox_impl(c0, c1, c2, c3, k0, k1, N_ROUNDS)
    tl.store(out_ptr + i * 4, r0)
    tl.store(out_ptr + i * 4 + 1, r1)
    tl.store(out_ptr + i * 4 + 2, r2)
    tl.store(out_ptr + i * 4 + 3, r3)


@pytest.mark.parametrize("bits", [32, 64])
def test_philox_matches_random123s_test_vectors(backend: str, bits: int) -> None:
    cases = KAT_4X32 if bits == 32 else KAT_4X64
    cases = (cases * 4)[:4]  # one case per lane of a 4-element block
    dtype, np_dtype = (mx.uint32, np.uint32) if bits == 32 else (mx.uint64, np.uint64)
    counters = mx.array(np.array([c for c, _, _ in cases], dtype=np_dtype).reshape(-1))
    keys = mx.array(np.array([k for _, k, _ in cases], dtype=np_dtype).reshape(-1))
    out = poisoned(16, dtype)
    _philox_kernel[(1,)](counters, keys, out, N_ROUNDS=10)
    expected = np.array([e for _, _, e in cases], dtype=np_dtype).reshape(-1)
    np.testing.assert_array_equal(to_numpy(out), expected)


@mtriton.jit
def _random_kernel(seed, out_int_ptr, out_uniform_ptr, out_normal_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_int_ptr + offs, tl.randint(seed, offs), mask=mask)
    tl.store(out_uniform_ptr + offs, tl.rand(seed, offs), mask=mask)
    tl.store(out_normal_ptr + offs, tl.randn(seed, offs), mask=mask)


def test_randint_rand_randn_follow_triton(backend: str, rng: np.random.Generator) -> None:
    n = int(rng.integers(100, 300))
    seed = int(rng.integers(0, 2**40))  # past 32 bits: both key halves matter
    ints, uniform, normal = poisoned(n, mx.uint32), poisoned(n), poisoned(n)
    _random_kernel[(mtriton.cdiv(n, 64),)](seed, ints, uniform, normal, n, BLOCK=64)
    i1, i2, _, _ = randint4x_reference(seed, np.arange(n))
    np.testing.assert_array_equal(to_numpy(ints), i1)
    np.testing.assert_array_equal(to_numpy(uniform), uniform_reference(i1))
    u1 = np.maximum(1e-7, uniform_reference(i1).astype(np.float64))
    u2 = uniform_reference(i2).astype(np.float64)
    expected = np.sqrt(-2 * np.log(u1)) * np.cos(6.283185307179586 * u2)
    np.testing.assert_allclose(to_numpy(normal), expected, rtol=1e-4, atol=1e-5)
    assert 0 <= to_numpy(uniform).min() and to_numpy(uniform).max() < 1


@mtriton.jit
def _four_kernel(seed, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    a, b, c, d = tl.randint4x(seed, offs)
    u, v, w, x = tl.rand4x(seed, offs)
    tl.store(out_ptr + offs, (a ^ b ^ c ^ d).to(tl.float32, bitcast=True) * 0 + u + v + w + x)


def test_four_at_a_time(backend: str) -> None:
    out = poisoned(32)
    _four_kernel[(1,)](7, out, BLOCK=32)
    ints = randint4x_reference(7, np.arange(32))
    expected = sum(uniform_reference(i) for i in ints)
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-6)


@mtriton.jit
def _umulhi_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(
        out_ptr + offs,
        tl.umulhi(tl.load(x_ptr + offs, mask=mask), tl.load(y_ptr + offs, mask=mask)),
        mask=mask,
    )


@pytest.mark.parametrize("dtype", [mx.int32, mx.uint32, mx.int64, mx.uint64], ids=str)
def test_umulhi(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    bits = 32 if dtype in (mx.int32, mx.uint32) else 64
    n = 37
    np_dtype = {mx.int32: np.int32, mx.uint32: np.uint32, mx.int64: np.int64, mx.uint64: np.uint64}[dtype]
    raw = rng.integers(0, 2**bits, size=(2, n), dtype=np.uint64 if bits == 64 else np.int64)
    x, y = (r.astype(np.uint64 if bits == 64 else np.uint32).view(np_dtype) if bits == 32 else r.view(np_dtype)
            for r in raw)  # fmt: skip
    out = poisoned(n, dtype)
    _umulhi_kernel[(1,)](mx.array(x), mx.array(y), out, n, BLOCK=64)
    mask = (1 << bits) - 1
    expected = [((int(a) & mask) * (int(b) & mask)) >> bits for a, b in zip(x, y)]
    got = [int(v) & mask for v in to_numpy(out)]
    assert got == expected


@mtriton.jit
def _blocks_kernel(a_ptr, b_ptr, cat_ptr, interleave_ptr, view_ptr, N: tl.constexpr, M: tl.constexpr):
    rows = tl.arange(0, N)[:, None] * M + tl.arange(0, M)[None, :]
    a, b = tl.load(a_ptr + rows), tl.load(b_ptr + rows)
    tl.store(
        cat_ptr + tl.arange(0, 2 * N)[:, None] * M + tl.arange(0, M)[None, :], tl.cat(a, b, can_reorder=True)
    )
    tl.store(
        interleave_ptr + tl.arange(0, N)[:, None] * 2 * M + tl.arange(0, 2 * M)[None, :], tl.interleave(a, b)
    )
    tl.store(view_ptr + tl.arange(0, N * M), a.cast(tl.int32).view(N * M))


def test_cat_interleave_and_tensor_methods(backend: str, rng: np.random.Generator) -> None:
    n, m = 4, 8
    a, b = (rng.standard_normal((n, m)).astype(np.float32) for _ in range(2))
    cat, interleave, view = poisoned((2 * n, m)), poisoned((n, 2 * m)), poisoned(n * m, mx.int32)
    _blocks_kernel[(1,)](mx.array(a), mx.array(b), cat, interleave, view, N=n, M=m)
    np.testing.assert_array_equal(to_numpy(cat), np.concatenate([a, b]))
    np.testing.assert_array_equal(to_numpy(interleave), np.stack([a, b], axis=-1).reshape(n, 2 * m))
    np.testing.assert_array_equal(to_numpy(view), a.astype(np.int32).reshape(-1))


@mtriton.jit
def _bad_umulhi(x_ptr):
    x = tl.load(x_ptr + tl.arange(0, 4))
    tl.store(x_ptr + tl.arange(0, 4), tl.umulhi(x, x))


def test_umulhi_refuses_floats() -> None:
    with pytest.raises(
        mtriton.KernelTypeError, match="tl.umulhi needs 32- or 64-bit integers, got float32 and float32"
    ):
        _bad_umulhi[(1,)](mx.zeros(4))
