"""`tl.math` and `tl.extra.libdevice`: every function against float64 NumPy on each backend."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, to_numpy, tolerance

import mtriton
import mtriton.language as tl
from mtriton.language.extra import libdevice

# function -> (NumPy reference, input range)
UNARY = {
    "log10": (np.log10, (0.01, 100)),
    "log1p": (np.log1p, (-0.9, 10)),
    "expm1": (np.expm1, (-5, 5)),
    "cbrt": (np.cbrt, (-50, 50)),
    "tan": (np.tan, (-1.2, 1.2)),
    "asin": (np.arcsin, (-0.99, 0.99)),
    "acos": (np.arccos, (-0.99, 0.99)),
    "atan": (np.arctan, (-20, 20)),
    "sinh": (np.sinh, (-5, 5)),
    "cosh": (np.cosh, (-5, 5)),
    "asinh": (np.arcsinh, (-20, 20)),
    "acosh": (np.arccosh, (1.01, 20)),
    "atanh": (np.arctanh, (-0.95, 0.95)),
    "trunc": (np.trunc, (-10, 10)),
    "rint": (np.rint, (-10, 10)),
    "round": (lambda x: np.sign(x) * np.floor(np.abs(x) + 0.5), (-10, 10)),
}


@mtriton.jit
def _unary_kernel(x_ptr, out_ptr, n, FN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, FN(tl.load(x_ptr + offs, mask=mask, other=1.0)), mask=mask)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(UNARY))
def test_unary_math(backend: str, rng: np.random.Generator, name: str, dtype: mx.Dtype) -> None:
    reference, (low, high) = UNARY[name]
    n = 300
    values = rng.uniform(low, high, n)
    if name in ("trunc", "rint", "round"):  # halves and near-halves, where the roundings differ
        values[:40] = np.round(values[:40]) + rng.choice([0.5, -0.5, 0.499, 0.501], 40)
    x = mx.array(values.astype(np.float32)).astype(dtype)
    out = poisoned(n, dtype)
    _unary_kernel[(mtriton.cdiv(n, 128),)](x, out, n, FN=getattr(tl.math, name), BLOCK=128)
    expected = reference(to_numpy(x).astype(np.float64))
    expected = to_numpy(mx.array(expected.astype(np.float32)).astype(dtype)).astype(np.float64)
    tol = tolerance(dtype)
    exact = name in ("trunc", "rint", "round")
    np.testing.assert_allclose(
        to_numpy(out).astype(np.float64),
        expected,
        rtol=0 if exact else tol["rtol"] * 4,
        atol=0 if exact else tol["atol"],
    )


@mtriton.jit
def _binary_kernel(x_ptr, y_ptr, pow_ptr, atan2_ptr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    x, y = tl.load(x_ptr + i), tl.load(y_ptr + i)
    tl.store(pow_ptr + i, libdevice.pow(x, y))
    tl.store(atan2_ptr + i, tl.math.atan2(y, x))


def test_pow_atan2_and_libdevice_names(backend: str, rng: np.random.Generator) -> None:
    x = rng.uniform(0.1, 4, 64).astype(np.float32)
    y = rng.uniform(-3, 3, 64).astype(np.float32)
    out_pow, out_atan2 = poisoned(64), poisoned(64)
    _binary_kernel[(1,)](mx.array(x), mx.array(y), out_pow, out_atan2, BLOCK=64)
    np.testing.assert_allclose(to_numpy(out_pow), np.power(x.astype(np.float64), y), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(out_atan2), np.arctan2(y.astype(np.float64), x), rtol=1e-5, atol=1e-6)
    assert set(libdevice.__all__) == set(tl.math.__all__)
    assert tl.extra.cuda.libdevice is libdevice


@mtriton.jit
def _f64_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    tl.store(out_ptr + offs * 4, tl.exp(x))
    tl.store(out_ptr + offs * 4 + 1, tl.sin(x))
    tl.store(out_ptr + offs * 4 + 2, tl.cos(x))
    tl.store(out_ptr + offs * 4 + 3, tl.erf(x))


def test_float64_math_is_float64_accurate_on_the_interpreter(rng: np.random.Generator) -> None:
    # MLX's own float64 exp/sin/cos/erf are float32-accurate; the interpreter must not be
    # MLX computes float64 on the CPU only, also on a GPU machine
    x = rng.uniform(-3, 3, 64)
    mtriton.set_backend("interpreter")
    try:
        with mx.stream(mx.cpu):
            out = mx.zeros((64 * 4,), dtype=mx.float64)
            _f64_kernel[(1,)](mx.array(x, dtype=mx.float64), out, BLOCK=64)
            mx.eval(out)
    finally:
        mtriton.set_backend(None)
    expected = np.stack([np.exp(x), np.sin(x), np.cos(x), [math.erf(v) for v in x]], axis=1).reshape(-1)
    np.testing.assert_allclose(np.array(out), expected, rtol=1e-14, atol=1e-15)


@mtriton.jit
def _exp_and_div_kernel(x_ptr, y_ptr, exp_ptr, exp2_ptr, div_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    y = tl.load(y_ptr + offs, mask=mask, other=1.0)
    tl.store(exp_ptr + offs, tl.exp(x), mask=mask)
    tl.store(exp2_ptr + offs, tl.exp2(x * 1.5), mask=mask)
    tl.store(div_ptr + offs, x / y, mask=mask)


def _ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the float32 spacing at `exact` (float64), 0 where both agree."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(got == exact, 0.0, np.abs(got.astype(np.float64) - exact) / spacing)


@pytest.mark.parametrize("math_mode", [None, "safe"], ids=["default", "safe"])
def test_exp_exp2_and_division_accuracy(
    backend: str, rng: np.random.Generator, math_mode: str | None
) -> None:
    # CUDA's default is Triton's lowering: ex2.approx (of x * log2 e for exp) and div.full, whose
    # errors CUDA documents as 2 + 1.173 |x| ulp (__expf) and 2 ulp; every backend must meet
    # those bounds (MLX's own float32 exp on the CPU is 14 ulp off at x = -50), and "safe"
    # divides correctly rounded everywhere.
    n = 4099
    x = rng.uniform(-80, 80, n).astype(np.float32)
    x[:6] = [0.0, -0.0, 1e-40, -1e-40, 85.0, -85.0]  # zeros, subnormals, near the range's ends
    y = (rng.standard_normal(n) * np.exp2(rng.uniform(-60, 60, n))).astype(np.float32)
    outs = [poisoned(n) for _ in range(3)]
    opts = {} if math_mode is None else {"math_mode": math_mode}
    _exp_and_div_kernel[(mtriton.cdiv(n, 512),)](mx.array(x), mx.array(y), *outs, n, BLOCK=512, **opts)
    got_exp, got_exp2, got_div = (to_numpy(o) for o in outs)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    assert np.all(_ulps(got_exp, np.exp(x64)) <= 2 + np.floor(1.173 * np.abs(x64)))
    exp2_arg = (x * np.float32(1.5)).astype(np.float64)  # the kernel's float32 product
    assert np.all(_ulps(got_exp2, np.exp2(exp2_arg)) <= 2)
    if math_mode is None:
        assert np.all(_ulps(got_div, x64 / y64) <= 2)
    else:
        np.testing.assert_array_equal(got_div, x / y)


@mtriton.jit
def _div_rn_kernel(x_ptr, y_ptr, rn_ptr, ieee_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    y = tl.load(y_ptr + offs, mask=mask, other=1.0)
    tl.store(rn_ptr + offs, tl.div_rn(x, y), mask=mask)
    tl.store(ieee_ptr + offs, tl.fdiv(x, y, ieee_rounding=True), mask=mask)


def test_div_rn_is_correctly_rounded_under_the_default_math(backend: str, rng: np.random.Generator) -> None:
    # tl.div_rn keeps IEEE division where the backend's default `/` is CUDA's 2-ulp div.full:
    # quantization matches MLX's codes bit for bit only through it
    n = 2051
    x = rng.uniform(-4, 4, n).astype(np.float32)
    y = (rng.standard_normal(n) * np.exp2(rng.uniform(-30, 30, n))).astype(np.float32)
    rn, ieee = poisoned(n), poisoned(n)
    _div_rn_kernel[(mtriton.cdiv(n, 256),)](mx.array(x), mx.array(y), rn, ieee, n, BLOCK=256)
    np.testing.assert_array_equal(to_numpy(rn), x / y)
    np.testing.assert_array_equal(to_numpy(ieee), x / y)
    body = _div_rn_kernel.warmup(*[mx.zeros((n,))] * 4, n, BLOCK=256, grid=(1,)).asm["cuda"]
    assert "mt_div_full(" not in body.split("__global__")[-1]


@pytest.mark.parametrize(
    ("math_mode", "exp"), [(None, "mt_exp_approx("), ("relaxed", "mt_exp_approx("), ("safe", "expf(")]
)
def test_cuda_math_mode_chooses_the_functions(math_mode: str | None, exp: str) -> None:
    x = mx.zeros((512,))
    opts = {} if math_mode is None else {"math_mode": math_mode}
    asm = _exp_and_div_kernel.warmup(x, x, x, x, x, 512, BLOCK=512, grid=(1,), **opts).asm
    body = asm["cuda"].split("__global__")[-1]  # the prelude defines every function
    assert exp in body
    assert ("mt_ex2_approx(" in body) == (math_mode != "safe")
    assert ("mt_div_full(" in body) == (math_mode != "safe")
    assert "mt_exp_approx(" not in asm["metal"]  # Metal's math is MLX's math mode
