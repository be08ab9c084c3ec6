"""associative_scan on every backend, against sequential float64 recurrences.

The references run the recurrence step by step in float64 (`np.ufunc.accumulate` and a loop
for `ssm`), so the block-parallel order of the kernels is checked against the plain definition.
Every buffer a kernel writes from scratch starts as NaN (all ones for integers). Long rows
reach the multi-block path with the default block on every backend at 65537 elements; the
operator and dtype sweeps shrink the block (`MAX_BLOCK_N`) so that short rows run it too, in
several blocks with a ragged tail, and the longest row (> 2**20) runs on the interpreter only.
Gradients are checked against central finite differences of the float64 recurrence.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned, to_numpy, tolerance
from mlx_primitives import scan

import mtriton
import mtriton.language as tl

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]
INT_DTYPES = [mx.int32, mx.int64, mx.uint32, mx.int8, mx.uint64]
# The integer dtypes the emulators run too (each dtype is compiled C++ of its own there).
EMULATED_INT_DTYPES = [mx.int32, mx.int64, mx.uint32]
OPERATORS = ["add", "mul", "max", "min", "logaddexp", "ssm"]
# A block this short makes a row of SMALL_BLOCK * 3 + 5 elements three blocks and a tail.
SMALL_BLOCK = 16


@pytest.fixture(autouse=True)
def poison_fresh_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "_new_output", poisoned)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan, "MAX_BLOCK_N", SMALL_BLOCK)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def inputs(
    rng: np.random.Generator, operator: str, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32
) -> tuple[mx.array, mx.array | None]:
    """x (and A for ssm) with values that keep each operator's scan well scaled."""
    if operator == "mul":  # |x| near 1 with random signs: products neither vanish nor explode
        values = np.exp(rng.normal(0, 0.01, shape)) * rng.choice([-1.0, 1.0], shape)
    else:
        values = rng.standard_normal(shape)
    x = mx.array(values.astype(np.float32)).astype(dtype)
    a = mx.array(rng.uniform(0.5, 1.0, shape).astype(np.float32)).astype(dtype) if operator == "ssm" else None
    return x, a


def sequential(
    operator: str, x: np.ndarray, axis: int, reverse: bool, inclusive: bool, a: np.ndarray | None = None
) -> np.ndarray:
    """The scan as a step-by-step recurrence along `axis` in x's dtype (float64 for floats)."""
    x = np.moveaxis(x, axis, -1)
    a = None if a is None else np.moveaxis(a, axis, -1)
    if reverse:
        x = x[..., ::-1]
        a = None if a is None else a[..., ::-1]
    if operator == "ssm":
        out = np.empty_like(x)
        h = np.zeros(x.shape[:-1], x.dtype)
        for t in range(x.shape[-1]):
            h = a[..., t] * h + x[..., t]
            out[..., t] = h
    else:
        ufunc = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
        out = ufunc.get(operator, np.logaddexp).accumulate(x, axis=-1, dtype=x.dtype)
    if not inclusive:
        identity = {"add": 0, "ssm": 0, "mul": 1, "logaddexp": -np.inf}
        if operator in ("max", "min"):
            info = np.finfo(x.dtype) if x.dtype.kind == "f" else np.iinfo(x.dtype)
            identity[operator] = (
                (-np.inf if operator == "max" else np.inf)
                if x.dtype.kind == "f"
                else (info.min if operator == "max" else info.max)
            )
        shifted = np.full_like(out, identity[operator])
        shifted[..., 1:] = out[..., :-1]
        out = shifted
    if reverse:
        out = out[..., ::-1]
    return np.moveaxis(out, -1, axis)


def expected(
    operator: str, x: mx.array, a: mx.array | None, axis: int, reverse: bool, inclusive: bool
) -> np.ndarray:
    return sequential(operator, f64(x), axis, reverse, inclusive, None if a is None else f64(a))


def check_scan(
    operator: str,
    x: mx.array,
    a: mx.array | None = None,
    axis: int = -1,
    reverse: bool = False,
    inclusive: bool = True,
) -> None:
    out = scan.associative_scan(x, operator, axis=axis, reverse=reverse, inclusive=inclusive, A=a)
    assert out.shape == x.shape and out.dtype == x.dtype
    n = x.shape[axis]
    tol = tolerance(x.dtype)
    # float32 rounding of a running sum of unit normals grows like sqrt(n) times its size.
    growth = math.sqrt(n) if operator == "add" else 1.0
    rtol = tol["rtol"] * (math.sqrt(n) if operator == "mul" else 1.0)
    np.testing.assert_allclose(
        f64(out), expected(operator, x, a, axis, reverse, inclusive), rtol=rtol, atol=tol["atol"] * growth
    )


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("n", [1, 2, 31, 32, 33, 1023, 1025, 65537])
def test_lengths(backend: str, rng: np.random.Generator, n: int) -> None:
    """One block up to 4096 elements, then the reduce-then-scan path (65537: 17 blocks)."""
    if n > 4096 and backend != "interpreter":
        pytest.skip(
            "17 blocks of 4096 emulated threads: the emulators take the multi-block path on small blocks"
        )
    x, _ = inputs(rng, "add", (2, n))
    check_scan("add", x)
    if n in (33, 65537):  # a non-commutative combine across blocks, scanned backwards
        x, a = inputs(rng, "ssm", (1, n))
        check_scan("ssm", x, a, reverse=True)


def test_longest_row(backend: str, rng: np.random.Generator) -> None:
    """2**20 + 3 elements: 257 blocks whose totals are scanned in a second level."""
    if backend != "interpreter":
        pytest.skip("a row of 2**20 elements is checked on the interpreter only (emulators: too slow)")
    n = 2**20 + 3
    x, _ = inputs(rng, "add", (n,))
    check_scan("add", x)
    check_scan("max", x, reverse=True, inclusive=False)


def test_int64_offsets(
    backend: str, rng: np.random.Generator, small_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The int64 offsets of arrays past 2**30 elements, on a small array (the threshold lowered)."""
    monkeypatch.setattr(scan, "WIDE_ELEMENTS", 1)
    x, a = inputs(rng, "ssm", (3, SMALL_BLOCK * 3 + 5, 2))
    check_scan("ssm", x, a, axis=1, reverse=True)
    check_scan("add", x[:, :, 0], inclusive=False)


@pytest.mark.parametrize("operator", OPERATORS)
@pytest.mark.parametrize("reverse, inclusive", [(False, True), (False, False), (True, True), (True, False)])
def test_operators(
    backend: str, rng: np.random.Generator, small_blocks: None, operator: str, reverse: bool, inclusive: bool
) -> None:
    """Three rows of 3 blocks and a tail (their totals: rows of one short block)."""
    if backend != "interpreter" and reverse == inclusive:
        pytest.skip("the emulators check reverse and exclusive as (False, True) and (True, False)")
    x, a = inputs(rng, operator, (3, SMALL_BLOCK * 3 + 5))
    check_scan(operator, x, a, reverse=reverse, inclusive=inclusive)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("operator", ["add", "ssm"])
def test_every_axis(
    backend: str, rng: np.random.Generator, small_blocks: None, axis: int, operator: str
) -> None:
    """Scans along strided axes in place (3 blocks and a tail on the middle axis)."""
    x, a = inputs(rng, operator, (5, SMALL_BLOCK * 3 + 2, 6))
    check_scan(operator, x, a, axis=axis, reverse=axis == 1, inclusive=axis != 2)


def test_strided_axis_makes_no_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel reads the input array itself, whatever the axis: no transpose before it."""
    mtriton.set_backend("interpreter")
    try:
        seen: list[mx.array] = []
        original = scan._scan

        def recording(xs, *args):  # type: ignore[no-untyped-def]
            seen.extend(xs)
            return original(xs, *args)

        monkeypatch.setattr(scan, "_scan", recording)
        x = mx.arange(60, dtype=mx.float32).reshape(3, 4, 5)
        out = scan.associative_scan(x, "max", axis=0)
        assert seen[0] is x
        np.testing.assert_array_equal(to_numpy(out), np.maximum.accumulate(to_numpy(x), axis=0))
    finally:
        mtriton.set_backend(None)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_half_precision(backend: str, rng: np.random.Generator, small_blocks: None, dtype: mx.Dtype) -> None:
    """Half-precision inputs accumulate in float32 (block totals too) and round once
    (test_operators covers float32): sums and the ssm over 3 blocks and a tail, the rest in one."""
    for operator in OPERATORS:
        n = SMALL_BLOCK * 3 + 5 if operator in ("add", "ssm") else SMALL_BLOCK - 3
        x, a = inputs(rng, operator, (3, n), dtype)
        check_scan(operator, x, a, reverse=operator == "ssm")


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_integer_scans_are_exact(
    backend: str, rng: np.random.Generator, small_blocks: None, dtype: mx.Dtype
) -> None:
    """Integer sums and products wrap in their own type, exactly as NumPy's; max/min of the
    extremes (the exclusive identities are the type's min and max). Sums run over 3 blocks
    and a tail, the rest in one block."""
    if backend != "interpreter" and dtype not in EMULATED_INT_DTYPES:
        pytest.skip("8-bit and 64-bit unsigned scans run on the interpreter only (compile time)")
    np_dtype = np.dtype(str(dtype).removeprefix("mlx.core."))
    info = np.iinfo(np_dtype)
    long, short = SMALL_BLOCK * 3 + 5, SMALL_BLOCK - 3
    big = rng.integers(info.min, info.max, (3, long), dtype=np_dtype, endpoint=True)
    small = rng.integers(-3 if info.min < 0 else 0, 4, (3, short)).astype(np_dtype)
    cases = (("add", big, False, True), ("mul", small, True, False), ("max", big[:, :short], True, False))
    for operator, values, reverse, inclusive in (*cases, ("min", big[:, :short], False, False)):
        out = scan.associative_scan(mx.array(values), operator, reverse=reverse, inclusive=inclusive)
        assert out.dtype == dtype
        with np.errstate(over="ignore"):
            want = sequential(operator, values, -1, reverse, inclusive)
        np.testing.assert_array_equal(np.array(out), want)


def test_empty_and_scalar_rows(backend: str) -> None:
    assert scan.associative_scan(mx.zeros((3, 0)), "add").shape == (3, 0)
    assert scan.associative_scan(mx.zeros((0, 5)), "mul", axis=1).shape == (0, 5)
    out = scan.associative_scan(mx.array([[2.0], [3.0]]), "logaddexp", inclusive=False)
    np.testing.assert_array_equal(to_numpy(out), [[-np.inf], [-np.inf]])


# ----------------------------------------------------------------------------- user combine functions


@mtriton.jit
def _affine(a1, b1, a2, b2):
    return a1 * a2, a2 * b1 + b2


@mtriton.jit
def _max_abs(a, b):
    return tl.where(tl.abs(a) >= tl.abs(b), a, b)


@pytest.mark.parametrize("reverse", [False, True])
def test_user_combine_pairs(
    backend: str, rng: np.random.Generator, small_blocks: None, reverse: bool
) -> None:
    """A non-commutative combine of pairs, as tl.associative_scan takes it: both outputs come
    back, over blocks (3 and a tail) and along a strided axis."""
    x, a = inputs(rng, "ssm", (SMALL_BLOCK * 3 + 5, 4))
    prod_a, h = scan.associative_scan((a, x), _affine, axis=0, reverse=reverse)
    np.testing.assert_allclose(f64(h), expected("ssm", x, a, 0, reverse, True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        f64(prod_a), sequential("mul", f64(a), 0, reverse, True), rtol=1e-5, atol=1e-30
    )
    _, h = scan.associative_scan(
        (a, x), _affine, axis=0, reverse=reverse, inclusive=False, identity=(1.0, 0.0)
    )
    np.testing.assert_allclose(f64(h), expected("ssm", x, a, 0, reverse, False), rtol=1e-5, atol=1e-5)


def test_user_combine_single(backend: str, rng: np.random.Generator, small_blocks: None) -> None:
    x = mx.array(rng.integers(-1000, 1000, (3, SMALL_BLOCK * 3 + 5)).astype(np.int32))
    out = scan.associative_scan(x, _max_abs)
    values = to_numpy(x)
    want = values.copy()
    for t in range(1, values.shape[1]):
        prev = want[:, t - 1]
        want[:, t] = np.where(np.abs(prev) >= np.abs(values[:, t]), prev, values[:, t])
    np.testing.assert_array_equal(to_numpy(out), want)
    shifted = scan.associative_scan(x, _max_abs, inclusive=False, identity=0)
    np.testing.assert_array_equal(to_numpy(shifted)[:, 1:], want[:, :-1])
    np.testing.assert_array_equal(to_numpy(shifted)[:, 0], 0)


@mtriton.jit
def _running_argmax(value1, index1, value2, index2):
    later = value2 > value1  # ties keep the earlier index
    return tl.where(later, value2, value1), tl.where(later, index2, index1)


def test_user_combine_of_mixed_dtypes(backend: str, rng: np.random.Generator, small_blocks: None) -> None:
    """A running argmax over (float16 values, int32 indices): each array keeps its own dtype
    (the indices never pass through float32), over 3 blocks and a tail with ties."""
    n = SMALL_BLOCK * 3 + 5
    values = mx.array(rng.integers(-20, 20, (3, n)).astype(np.float16))
    indices = mx.broadcast_to(mx.arange(n, dtype=mx.int32), (3, n))
    best, where = scan.associative_scan((values, indices), _running_argmax)
    assert best.dtype == mx.float16 and where.dtype == mx.int32
    v = to_numpy(values)
    want = np.zeros((3, n), np.int64)
    for t in range(1, n):
        prev = want[:, t - 1]
        want[:, t] = np.where(v[:, t] > v[np.arange(3), prev], t, prev)
    np.testing.assert_array_equal(to_numpy(where), want)
    np.testing.assert_array_equal(to_numpy(best), np.maximum.accumulate(v, axis=1))


def test_user_combine_identity_rules() -> None:
    x = mx.zeros((4, 9))
    with pytest.raises(ValueError, match=r"\[associative_scan\] identity is missing; an exclusive scan"):
        scan.associative_scan(x, _max_abs, inclusive=False)
    with pytest.raises(ValueError, match=r"\[associative_scan\] identity has 1 values; expected 2"):
        scan.associative_scan((x, x), _affine, inclusive=False, identity=1.0)
    with pytest.raises(ValueError, match=r"\[associative_scan\] identity is given for an inclusive scan"):
        scan.associative_scan(x, _max_abs, identity=0.0)
    with pytest.raises(ValueError, match=r"\[associative_scan\] identity is given; built-in operator 'add'"):
        scan.associative_scan(x, "add", identity=0.0)


# ----------------------------------------------------------------------------- gradients


def finite_differences(
    fn, arrays: list[np.ndarray], cotangent: np.ndarray, h: float = 1e-6
) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """d sum(cotangent * fn(*arrays)) / d each array, by central differences in float64."""
    grads = []
    for i, array in enumerate(arrays):
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            args_up = [a.copy() for a in arrays]
            args_down = [a.copy() for a in arrays]
            args_up[i][index] += h
            args_down[i][index] -= h
            up, down = fn(*args_up), fn(*args_down)
            change = np.where(up == down, 0.0, up - down)  # an exclusive logaddexp's -inf stays put
            grad[index] = np.sum(cotangent * change) / (2 * h)
        grads.append(grad)
    return grads


@pytest.mark.parametrize("operator", ["add", "mul", "logaddexp", "ssm"])
@pytest.mark.parametrize("reverse, inclusive", [(False, True), (True, False)])
def test_gradients(
    backend: str, rng: np.random.Generator, small_blocks: None, operator: str, reverse: bool, inclusive: bool
) -> None:
    """VJPs over 3 blocks and a tail, along a strided axis; mul's x holds zeros (one of them
    twice in a row), where a gradient by division fails."""
    shape = (SMALL_BLOCK * 3 + 5, 2)
    x, a = inputs(rng, operator, shape)
    if operator == "mul":
        x = mx.array(
            np.where(np.isin(np.arange(shape[0]), [3, 20, 21])[:, None], 0.0, to_numpy(x)).astype(np.float32)
        )
    g = mx.array(rng.standard_normal(shape).astype(np.float32))

    def loss(*arrays: mx.array) -> mx.array:
        xs, extra = arrays[0], arrays[1] if len(arrays) > 1 else None
        return mx.sum(
            g * scan.associative_scan(xs, operator, axis=0, reverse=reverse, inclusive=inclusive, A=extra)
        )

    primals = [x] if a is None else [x, a]
    got = mx.grad(loss, argnums=list(range(len(primals))))(*primals)
    got = got if isinstance(got, (tuple, list)) else [got]

    def reference(*arrays: np.ndarray) -> np.ndarray:
        return sequential(operator, arrays[0], 0, reverse, inclusive, arrays[1] if len(arrays) > 1 else None)

    want = finite_differences(reference, [f64(p) for p in primals], f64(g))
    for grad, ref in zip(got, want):
        assert grad.dtype == mx.float32
        np.testing.assert_allclose(f64(grad), ref, rtol=1e-4, atol=1e-4)


def test_gradients_half_precision(backend: str, rng: np.random.Generator) -> None:
    """The ssm's VJP in bfloat16 against mx.grad of the plain-MLX reference in float32."""
    x, a = inputs(rng, "ssm", (3, 40), mx.bfloat16)
    g = mx.array(rng.standard_normal((3, 40)).astype(np.float32))

    def loss(fn, xs, decay):  # type: ignore[no-untyped-def]
        return mx.sum(g * fn(xs, "ssm", A=decay).astype(mx.float32))

    got = mx.grad(lambda xs, d: loss(scan.associative_scan, xs, d), argnums=[0, 1])(x, a)
    want = mx.grad(lambda xs, d: loss(scan.associative_scan_reference, xs, d), argnums=[0, 1])(
        x.astype(mx.float32), a.astype(mx.float32)
    )
    for grad, ref in zip(got, want):
        assert grad.dtype == mx.bfloat16
        np.testing.assert_allclose(f64(grad), f64(ref), rtol=3e-2, atol=3e-2)


# ----------------------------------------------------------------------------- reference, fallback, errors


@pytest.mark.parametrize("operator", OPERATORS)
def test_reference_matches_recurrence(rng: np.random.Generator, operator: str) -> None:
    x, a = inputs(rng, operator, (3, 37, 4))
    for reverse, inclusive in ((False, True), (True, False)):
        out = scan.associative_scan_reference(x, operator, axis=1, reverse=reverse, inclusive=inclusive, A=a)
        np.testing.assert_allclose(
            f64(out), expected(operator, x, a, 1, reverse, inclusive), rtol=1e-5, atol=1e-4
        )


def test_min_seq_env_sends_short_rows_to_mlx(
    backend: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows shorter than MLX_PRIMITIVES_MIN_SEQ_FOR_METAL run MLX's built-in scans; ssm never."""
    launched: list[int] = []
    original = scan._scan

    def recording(xs, *args):  # type: ignore[no-untyped-def]
        launched.append(len(xs))
        return original(xs, *args)

    monkeypatch.setattr(scan, "_scan", recording)
    monkeypatch.setenv(scan.MIN_SEQ_ENV, "64")
    x, a = inputs(rng, "ssm", (3, 40))
    for operator, builtin in scan.BUILTIN_SCANS.items():
        out = scan.associative_scan(x, operator, reverse=True, inclusive=False)
        np.testing.assert_array_equal(
            to_numpy(out), to_numpy(builtin(x, axis=-1, reverse=True, inclusive=False))
        )
    mx.eval(scan.associative_scan(x, "ssm", A=a))
    assert launched == [2]  # the ssm's scan of pairs, and no other
    mx.eval(scan.associative_scan(mx.zeros((3, 64)), "add"))  # not shorter: our kernel
    assert launched == [2, 1]
    monkeypatch.setenv(scan.MIN_SEQ_ENV, "short")
    with pytest.raises(ValueError, match=r"MLX_PRIMITIVES_MIN_SEQ_FOR_METAL is 'short'; expected an integer"):
        scan.associative_scan(x, "add")


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (
            {"operator": "sum"},
            ValueError,
            r"operator is 'sum'; expected one of add, mul, max, min, logaddexp, ssm",
        ),
        ({"operator": len}, TypeError, r"operator has type builtin_function_or_method"),
        ({"axis": 2}, ValueError, r"axis is 2; expected an axis of x's 2 axes, in \[-2, 1\]"),
        ({"axis": -3}, ValueError, r"axis is -3"),
        ({"axis": 1.0}, TypeError, r"axis has type float; expected an int"),
        ({"operator": "ssm"}, ValueError, r"A is missing; operator 'ssm' needs A of x's shape \(4, 6\)"),
        (
            {"operator": "ssm", "A": mx.ones((4, 5))},
            ValueError,
            r"A has shape \(4, 5\); expected \(4, 6\) to match x",
        ),
        (
            {"operator": "ssm", "A": mx.ones((4, 6), mx.float16)},
            TypeError,
            r"A has dtype float16; expected float32",
        ),
        (
            {"operator": "add", "A": mx.ones((4, 6))},
            ValueError,
            r"A is given for operator 'add'; only 'ssm' takes A",
        ),
    ],
)
def test_errors_name_the_argument(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=r"\[associative_scan\] " + message):
        scan.associative_scan(mx.zeros((4, 6)), **kwargs)


def test_dtype_errors() -> None:
    with pytest.raises(TypeError, match=r"\[associative_scan\] x has dtype bool; supported: float32"):
        scan.associative_scan(mx.zeros((3,), mx.bool_))
    with pytest.raises(
        TypeError, match=r"\[associative_scan\] x has dtype int32; 'logaddexp' supports float32"
    ):
        scan.associative_scan(mx.zeros((3,), mx.int32), "logaddexp")
    with pytest.raises(
        TypeError, match=r"\[associative_scan\] x is a list; operator 'add' scans one mx.array"
    ):
        scan.associative_scan([mx.zeros((3,))])
    with pytest.raises(ValueError, match=r"\[associative_scan\] x\[1\] has shape \(3,\); expected \(4,\)"):
        scan.associative_scan((mx.zeros((4,)), mx.zeros((3,))), _affine)
    with pytest.raises(ValueError, match=r"\[associative_scan\] x is a scalar"):
        scan.associative_scan(mx.array(1.0))
