"""float8 (`tl.float8e4nv`: e4m3fn, `tl.float8e5`: e5m2) stored in uint8 arrays: every conversion
against NumPy references written here from the formats' definitions, on every backend; and the
rules of what float8 takes part in (Triton's promotion, refusals), `mtriton.reinterpret`, and
`fp_downcast_rounding`."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from conftest import marker_line, poisoned, to_numpy

import mtriton
import mtriton.language as tl
from mtriton import float8
from mtriton.errors import KernelTypeError, LaunchTypeError, UnsupportedError

# --------------------------------------------------------------------------- references
# name -> (exponent bits, mantissa bits, bias, IEEE-like specials): e4m3fn has no infinities and
# only S.1111.111 is NaN; e5m2 has S.11111.00 infinities and S.11111.xx NaNs.
FORMATS = {"float8e4nv": (4, 3, 7, False), "float8e5": (5, 2, 15, True)}
FLOAT8 = [tl.float8e4nv, tl.float8e5]


def reference_decode(name: str) -> np.ndarray:
    """The value of each of the 256 codes, as float64, one by one from the definition."""
    exp_bits, man_bits, bias, ieee = FORMATS[name]
    values = []
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exponent = (code >> man_bits) & ((1 << exp_bits) - 1)
        mantissa = code & ((1 << man_bits) - 1)
        top = exponent == (1 << exp_bits) - 1
        if ieee and top:
            values.append(sign * math.inf if mantissa == 0 else math.nan)
        elif not ieee and top and mantissa == (1 << man_bits) - 1:
            values.append(math.nan)
        elif exponent == 0:
            values.append(sign * math.ldexp(mantissa / (1 << man_bits), 1 - bias))
        else:
            values.append(sign * math.ldexp(1 + mantissa / (1 << man_bits), exponent - bias))
    return np.array(values)


def reference_encode(x: np.ndarray, name: str, rtz: bool = False) -> np.ndarray:
    """The code of each value by search over every finite code: the nearest (ties to the even
    code) or, toward zero, the largest magnitude not above it; past the largest magnitude and
    infinities the largest finite code (rtz keeps infinities where the format has them)."""
    table = reference_decode(name)
    finite = np.flatnonzero(np.isfinite(table) & (table >= 0) & ~(np.arange(256) == 0x80))
    magnitudes = table[finite]
    a = np.abs(np.asarray(x, dtype=np.float64))
    below = np.searchsorted(magnitudes, a, side="right") - 1  # largest magnitude <= a
    below = np.clip(below, 0, len(magnitudes) - 1)
    above = np.clip(below + 1, 0, len(magnitudes) - 1)
    low, high = magnitudes[below], magnitudes[above]
    if rtz:
        pick = below
    else:
        with np.errstate(invalid="ignore"):  # infinities
            nearer_high = (high - a) < (a - low)
            tie = (high - a) == (a - low)
        pick = np.where(nearer_high | (tie & (finite[above] % 2 == 0) & (above != below)), above, below)
    codes = finite[pick]
    if rtz and FORMATS[name][3]:
        codes = np.where(np.isinf(a), 0x7C, codes)
    codes = np.where(np.signbit(x), codes | 0x80, codes)
    return np.where(np.isnan(x), -1, codes)  # -1: any NaN code


def assert_codes(got: np.ndarray, expected: np.ndarray, name: str, inputs: np.ndarray) -> None:
    nan = expected == -1
    table = reference_decode(name)
    assert np.isnan(table[got[nan]]).all(), "NaN must give a NaN code"
    bad = np.flatnonzero((got != expected) & ~nan)
    assert bad.size == 0, (
        f"{bad.size} wrong codes, first: {inputs[bad[0]]!r} -> {got[bad[0]]:#04x}, expected {expected[bad[0]]:#04x}"
    )


def edge_values(name: str) -> np.ndarray:
    """Ties between neighbouring codes (subnormal and normal), the largest value, the overflow
    threshold and past it, infinities, NaN, signed zeros, and values too small for a code."""
    table = reference_decode(name)
    positive = np.sort(table[np.isfinite(table) & (table > 0)])
    steps = np.concatenate([[0.0], positive])
    ties = (steps[1:] + steps[:-1]) / 2
    nudged = np.concatenate([ties * (1 + 2.0**-20), ties * (1 - 2.0**-20)])
    top = positive[-1]
    ulp = positive[-1] - positive[-2]
    extra = [top, top + ulp / 2, top + ulp / 2 * (1 + 2.0**-20), top * 2, 1e30, np.inf, np.nan, 0.0]
    extra += [positive[0] / 2, positive[0] / 4, 1e-30, 2.0**-130]  # 2**-130: a float32 subnormal
    values = np.concatenate([positive, ties, nudged, extra])
    return np.concatenate([values, -values]).astype(np.float32)


def random_values(rng: np.random.Generator, n: int) -> np.ndarray:
    """Magnitudes log-uniform from far below the smallest subnormals to past the largest value."""
    magnitude = np.exp2(rng.uniform(-22, 18, n))
    return (magnitude * rng.choice([-1.0, 1.0], n)).astype(np.float32)


def _mx_of(values: np.ndarray, dtype: mx.Dtype) -> mx.array:
    return mx.array(values.astype(np.float32)).astype(dtype)


# --------------------------------------------------------------------------- from float8


@mtriton.jit
def _decode(codes_ptr, words_ptr, out_ptr, out2_ptr, N, FMT: tl.constexpr, BLOCK: tl.constexpr):
    # codes read through a pointer cast (and, below, a reinterpreted argument), converted
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(codes_ptr.to(tl.pointer_type(FMT)) + offs, mask=mask)
    tl.store(out_ptr + offs, x.to(out_ptr.dtype.element_ty), mask=mask)
    y = tl.load(words_ptr + offs, mask=mask)  # words_ptr points at FMT: mtriton.reinterpret
    tl.store(out2_ptr + offs, y.to(out2_ptr.dtype.element_ty), mask=mask)


@pytest.mark.parametrize("fmt", FLOAT8, ids=str)
@pytest.mark.parametrize("dst", [mx.float32, mx.float16, mx.bfloat16], ids=str)
def test_every_code_converts_exactly(backend: str, fmt: tl.dtype, dst: mx.Dtype) -> None:
    n = 256 + 45  # every code, then a ragged tail of them again, masked at the end
    codes = np.concatenate([np.arange(256), np.arange(45)]).astype(np.uint8)
    out, out2 = poisoned(n + 3, dst), poisoned(n + 3, dst)
    grid = (mtriton.cdiv(n, 128),)
    _decode[grid](
        mx.array(codes), mtriton.reinterpret(mx.array(codes), fmt), out, out2, n, FMT=fmt, BLOCK=128
    )
    expected = reference_decode(fmt.name)[codes]
    for result in (out, out2):
        got = to_numpy(result).astype(np.float64)
        np.testing.assert_array_equal(got[:n], expected)  # NaN where the code is one
        assert (np.signbit(got[:n]) == np.signbit(expected))[~np.isnan(expected)].all()  # -0.0
        assert np.isnan(got[n:]).all()  # untouched


# --------------------------------------------------------------------------- to float8


@mtriton.jit
def _encode(x_ptr, out_ptr, N, FMT: tl.constexpr, ROUNDING: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask)
    codes = x.to(FMT, fp_downcast_rounding=ROUNDING)
    tl.store(out_ptr.to(tl.pointer_type(FMT)) + offs, codes, mask=mask)


@pytest.mark.parametrize("fmt", FLOAT8, ids=str)
@pytest.mark.parametrize("src", [mx.float32, mx.float16, mx.bfloat16], ids=str)
@pytest.mark.parametrize("rounding", ["rtne", "rtz"])
def test_conversions_to_float8_round_and_saturate(
    backend: str, rng: np.random.Generator, fmt: tl.dtype, src: mx.Dtype, rounding: str
) -> None:
    values = np.concatenate([edge_values(fmt.name), random_values(rng, 3001)])
    x = _mx_of(values, src)
    exact = to_numpy(x).astype(np.float64)  # the inputs as the source type holds them
    out = poisoned(values.size + 5, mx.uint8)
    grid = (mtriton.cdiv(values.size, 256),)
    _encode[grid](x, out, values.size, FMT=fmt, ROUNDING=rounding, BLOCK=256)
    got = np.array(out)
    assert_codes(got[: values.size], reference_encode(exact, fmt.name, rounding == "rtz"), fmt.name, exact)
    assert (got[values.size :] == 0xFF).all()  # untouched


def test_saturation_follows_triton_on_sm90() -> None:
    # cvt.rn.satfinite: finite overflow and infinities saturate, NaN stays NaN (both formats)
    e4 = reference_encode(np.array([448.0, 464.0, 465.0, 1e9, np.inf, -np.inf]), "float8e4nv")
    assert list(e4) == [0x7E, 0x7E, 0x7E, 0x7E, 0x7E, 0xFE]
    e5 = reference_encode(np.array([57344.0, 61440.0, 61441.0, np.inf, -np.inf]), "float8e5")
    assert list(e5) == [0x7B, 0x7B, 0x7B, 0x7B, 0xFB]
    assert list(reference_encode(np.array([np.inf, 1e9]), "float8e5", rtz=True)) == [0x7C, 0x7B]
    # and the compiler's own conversion (`mtriton.float8`, which the interpreter runs) agrees
    for fmt in FLOAT8:
        for rtz in (False, True):
            values = edge_values(fmt.name)
            got = float8.encode(values, fmt, "rtz" if rtz else "rtne").astype(np.int64)
            assert_codes(got, reference_encode(values, fmt.name, rtz), fmt.name, values)
        np.testing.assert_array_equal(float8.decode_table(fmt), reference_decode(fmt.name).astype(np.float32))


# --------------------------------------------------------------------------- float8 in kernels


@mtriton.jit
def _mixed(a_ptr, b_ptr, x_ptr, sum_ptr, prod_ptr, bsum_ptr, recode_ptr, bits_ptr, N, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    a = tl.load(a_ptr + offs, mask=mask, other=2.0)  # float8e5 (reinterpreted)
    b = tl.load(b_ptr.to(tl.pointer_type(tl.float8e4nv)) + offs, mask=mask, other=-0.5)
    x = tl.load(x_ptr + offs, mask=mask)  # float32
    tl.static_assert((a + x).dtype == tl.float32)
    tl.store(sum_ptr + offs, a + x, mask=offs < N + 2)  # past N: `other`s
    prod = a * b  # two float8 types compute in float16
    tl.static_assert(prod.dtype == tl.float16)
    tl.store(prod_ptr + offs, prod, mask=mask)
    bsum = b + x.to(tl.bfloat16)  # float8 with bfloat16: float32, as in Triton
    tl.static_assert(bsum.dtype == tl.float32)
    tl.store(bsum_ptr + offs, bsum, mask=mask)
    # e5 -> e4nv (one rounding), a float8 constant, `where` in float8, bitcasts to int8
    recoded = tl.where(x > 0, a.to(tl.float8e4nv), tl.full((BLOCK,), 1.5, tl.float8e4nv))
    tl.store(recode_ptr.to(tl.pointer_type(tl.float8e4nv)) + offs, recoded, mask=mask)
    tl.store(bits_ptr + offs, b.to(tl.int8, bitcast=True), mask=mask)


def test_float8_values_in_kernels(backend: str, rng: np.random.Generator) -> None:
    n = 77
    block = 128
    a_codes = rng.integers(0, 256, n).astype(np.uint8)
    a_codes[(a_codes & 0x7C) == 0x7C] = 0x3C  # finite values only (1.0)
    b_codes = rng.integers(0, 256, n).astype(np.uint8)
    b_codes[(b_codes & 0x7F) == 0x7F] = 0x38
    x = rng.standard_normal(n).astype(np.float32)
    a, b = reference_decode("float8e5")[a_codes], reference_decode("float8e4nv")[b_codes]
    sums, prods, bsums = poisoned(n + 2), poisoned(n, mx.float16), poisoned(n)
    recode, bits = poisoned(n, mx.uint8), poisoned(n, mx.int8)
    _mixed[(1,)](
        mtriton.reinterpret(mx.array(a_codes), tl.float8e5), mx.array(b_codes), mx.array(x),
        sums, prods, bsums, recode, bits, n, BLOCK=block,
    )  # fmt: skip
    np.testing.assert_array_equal(to_numpy(sums)[:n], (a + x).astype(np.float32))
    np.testing.assert_array_equal(to_numpy(sums)[n:], [2.0, 2.0])  # `other` plus a masked load's 0
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(to_numpy(prods), (a * b).astype(np.float16))
    bf16_x = to_numpy(mx.array(x).astype(mx.bfloat16)).astype(np.float64)
    np.testing.assert_array_equal(to_numpy(bsums), (b + bf16_x).astype(np.float32))
    expected = np.where(x > 0, reference_encode(a, "float8e4nv"), 0x3C)  # 1.5 in e4m3 is 0x3C
    np.testing.assert_array_equal(np.array(recode), expected.astype(np.uint8))
    np.testing.assert_array_equal(np.array(bits), b_codes.view(np.int8))


@mtriton.jit
def _fp8_dot(a_ptr, b_ptr, c_ptr, M, N, K, BLOCK: tl.constexpr):
    rows, cols = tl.arange(0, BLOCK), tl.arange(0, BLOCK)
    a_mask = (rows[:, None] < M) & (cols[None, :] < K)
    b_mask = (rows[:, None] < K) & (cols[None, :] < N)
    a = tl.load(a_ptr + rows[:, None] * K + cols[None, :], mask=a_mask, other=0.0)
    b = tl.load(b_ptr + rows[:, None] * N + cols[None, :], mask=b_mask, other=0.0)
    acc = tl.dot(a, b)  # float8 operands run as float16: exact products, float32 sums
    tl.store(c_ptr + rows[:, None] * N + cols[None, :], acc, mask=(rows[:, None] < M) & (cols[None, :] < N))


@pytest.mark.parametrize("fmt", FLOAT8, ids=str)
def test_dot_of_float8(backend: str, rng: np.random.Generator, fmt: tl.dtype) -> None:
    m, n, k = 29, 21, 30
    a_vals = (rng.standard_normal((m, k)) * 3).astype(np.float32)
    b_vals = (rng.standard_normal((k, n)) * 3).astype(np.float32)
    a_codes = reference_encode(a_vals, fmt.name).astype(np.uint8)
    b_codes = reference_encode(b_vals, fmt.name).astype(np.uint8)
    c = poisoned((m, n))
    _fp8_dot[(1,)](
        mtriton.reinterpret(mx.array(a_codes), fmt),
        mtriton.reinterpret(mx.array(b_codes), fmt),
        c,
        m,
        n,
        k,
        BLOCK=32,
    )
    table = reference_decode(fmt.name)
    expected = table[a_codes] @ table[b_codes]
    np.testing.assert_allclose(to_numpy(c), expected, rtol=1e-5, atol=1e-3)


@mtriton.jit
def _rtz_narrow(x_ptr, half_ptr, bf16_ptr, N, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    x = tl.load(x_ptr + offs, mask=mask)
    tl.store(half_ptr + offs, x.to(tl.float16, fp_downcast_rounding="rtz"), mask=mask)
    tl.store(bf16_ptr + offs, tl.cast(x, tl.bfloat16, fp_downcast_rounding="rtz"), mask=mask)


def _toward_zero_reference(x: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """Of the nearest value and its neighbour toward zero, the one not above |x| in magnitude."""
    out = []
    for value, r in zip(x.astype(np.float64), nearest):
        if np.isnan(value) or abs(float(r)) <= abs(value):
            out.append(r)
        else:
            out.append(np.nextafter(r, r.dtype.type(0)))
    return np.array(out, dtype=nearest.dtype)


def test_toward_zero_to_half_and_bfloat16(backend: str, rng: np.random.Generator) -> None:
    x = np.concatenate(
        [random_values(rng, 300) * 8, np.array([1e6, -1e6, np.inf, np.nan, 0.0, -0.0, 2.0**-26])]
    )
    x = x.astype(np.float32)
    n = x.size
    half, bf16 = poisoned(n, mx.float16), poisoned(n, mx.bfloat16)
    _rtz_narrow[(1,)](mx.array(x), half, bf16, n, BLOCK=512)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(np.array(half), _toward_zero_reference(x, x.astype(np.float16)))
    # bfloat16 toward zero keeps the top 16 bits of the float32 (NaN aside)
    truncated = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    np.testing.assert_array_equal(to_numpy(bf16), np.where(np.isnan(x), np.nan, truncated))


# --------------------------------------------------------------------------- what float8 refuses


@mtriton.jit
def _fp8_arith(x_ptr, out_ptr, WHAT: tl.constexpr):
    offs = tl.arange(0, 16)
    x = tl.load(x_ptr.to(tl.pointer_type(tl.float8e5)) + offs)
    if WHAT == "add":
        y = x + x  # ERR:add
    elif WHAT == "scalar":
        y = x * 2.0  # ERR:scalar
    elif WHAT == "int":
        y = x + offs  # ERR:int
    elif WHAT == "to_int":
        y = x.to(tl.int32)  # ERR:to_int
    elif WHAT == "sum":
        y = tl.sum(x, axis=0)  # ERR:sum
    elif WHAT == "exp":
        y = tl.exp(x)  # ERR:exp
    elif WHAT == "compare":
        y = x < x  # ERR:compare
    elif WHAT == "rounding_up":
        y = x.to(tl.float32, fp_downcast_rounding="rtz")  # ERR:rounding_up
    elif WHAT == "rounding_name":
        y = offs.to(tl.float32).to(tl.float16, fp_downcast_rounding="up")  # ERR:rounding_name
    else:
        y = tl.float8e4b15  # ERR:e4b15
    tl.store(out_ptr + offs, y.to(tl.float32))


@pytest.mark.parametrize(
    "what, error, message",
    [
        (
            "add",
            UnsupportedError,
            "`add` on float8e5 values is not supported: Triton computes it in float8e5",
        ),
        ("scalar", UnsupportedError, "`mul` on float8e5 values is not supported"),
        ("int", KernelTypeError, "Triton mixes float8 only with floating-point types"),
        ("to_int", KernelTypeError, "Triton converts float8 only to and from floating-point types"),
        ("sum", UnsupportedError, "a reduction on float8e5 values is not supported"),
        ("exp", UnsupportedError, "`exp` on float8e5 values is not supported"),
        ("compare", UnsupportedError, "comparison `lt` on float8e5 values is not supported"),
        ("rounding_up", KernelTypeError, "fp_downcast_rounding is only for conversions to a narrower"),
        ("rounding_name", KernelTypeError, "fp_downcast_rounding must be one of"),
        ("e4b15", UnsupportedError, "tl.float8e4b15 is not supported"),
    ],
)
def test_float8_refusals_point_at_the_line(backend: str, what: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message) as info:
        _fp8_arith[(1,)](mx.zeros((16,), dtype=mx.uint8), poisoned(16), WHAT=what)
    assert f"test_float8.py:{marker_line(__file__, what)}" in str(info.value)


def test_reinterpret_checks_its_arguments() -> None:
    with pytest.raises(LaunchTypeError, match=r"\[reinterpret\] array: expected an mx.array, got ndarray"):
        mtriton.reinterpret(np.zeros(4, np.uint8), tl.float8e5)
    with pytest.raises(LaunchTypeError, match=r"\[reinterpret\] dtype: expected a tl dtype"):
        mtriton.reinterpret(mx.zeros((4,), dtype=mx.uint8), mx.float16)
    x = mx.zeros((4,), dtype=mx.uint8)
    assert mtriton.reinterpret(x, tl.uint8) is x  # its own type: the array itself
    twice = mtriton.reinterpret(mtriton.reinterpret(x, tl.float8e5), tl.float8e4nv)
    assert twice.base is x and twice.dtype == tl.float8e4nv


@mtriton.jit
def _words(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    # both arguments reinterpreted as uint32: bytes in, words out
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + 1, mask=mask)


def test_reinterpreted_arguments_of_other_sizes(backend: str, rng: np.random.Generator) -> None:
    words = 93
    x = rng.integers(0, 256, 4 * words + 3, dtype=np.uint8)  # a partial word at the end
    out = mtriton.empty((4 * words,), mx.uint8)  # a fresh output, read back as bytes
    grid = (mtriton.cdiv(words, 64),)
    _words[grid](
        mtriton.reinterpret(mx.array(x), tl.uint32), mtriton.reinterpret(out, tl.uint32), words, BLOCK=64
    )
    expected = x[: 4 * words].view(np.uint32) + np.uint32(1)
    np.testing.assert_array_equal(np.array(out).view(np.uint32), expected)


@mtriton.jit
def _wide(x_ptr, out_ptr, back_ptr, N, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    mask = offs < N
    wide = tl.load(x_ptr + offs, mask=mask).to(tl.float64)  # float8e5 -> float64: exact
    tl.store(out_ptr + offs, wide, mask=mask)
    tl.store(back_ptr + offs, (wide * 1.25).to(tl.float8e5), mask=mask)  # one rounding from float64


def test_float8_and_float64_on_the_interpreter(rng: np.random.Generator) -> None:
    mtriton.set_backend("interpreter")
    try:
        codes = np.arange(256, dtype=np.uint8)
        out = poisoned(256, mx.float64)
        back = mx.zeros((256,), dtype=mx.uint8)
        _wide[(1,)](
            mtriton.reinterpret(mx.array(codes), tl.float8e5),
            out,
            mtriton.reinterpret(back, tl.float8e5),
            256,
            BLOCK=256,
        )
        values = reference_decode("float8e5")
        np.testing.assert_array_equal(np.array(out), values)
        assert_codes(
            np.array(back).astype(np.int64), reference_encode(values * 1.25, "float8e5"), "float8e5", values
        )
    finally:
        mtriton.set_backend(None)


@mtriton.jit
def _accumulate(x_ptr, out_ptr, N, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    total = tl.load(out_ptr + offs, mask=mask).to(tl.float32) + tl.load(x_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, total.to(out_ptr.dtype.element_ty), mask=mask)


def test_autotune_restores_reinterpreted_arrays(backend: str, rng: np.random.Generator) -> None:
    n = 301
    configs = [mtriton.Config({"BLOCK": b}) for b in (64, 128)]
    tuned = mtriton.autotune(configs, key=["N", "out_ptr"], restore_value=["out_ptr"], warmup=1, rep=2)(
        _accumulate
    )
    x = rng.standard_normal(n).astype(np.float32)
    start = reference_encode(rng.standard_normal(n) * 4, "float8e4nv").astype(np.uint8)
    out = mx.array(start)
    tuned[lambda meta: (mtriton.cdiv(n, meta["BLOCK"]),)](
        mx.array(x), mtriton.reinterpret(out, tl.float8e4nv), n
    )
    assert len(tuned.configs_timings) == len(configs)  # every trial ran, from the same start
    once = reference_decode("float8e4nv")[start].astype(np.float32) + x
    np.testing.assert_array_equal(
        np.array(out), reference_encode(once.astype(np.float64), "float8e4nv").astype(np.uint8)
    )
