"""selective_gather and selective_scatter_add on every backend, against float64 NumPy references.

Sizes are odd (ragged row and index tails), indices repeat, and every buffer a kernel
writes from scratch starts as NaN, so an element no program writes shows.
"""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np
import pytest
from conftest import backend_unavailable_reason, poisoned, to_numpy, tolerance
from mlx_primitives import gather_scatter as gs

import mtriton

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]
INDEX_DTYPES = [mx.int32, mx.int64, mx.uint32]

CPU_BACKENDS = ("interpreter", "metal-emu", "cuda-emu")


@pytest.fixture(autouse=True)
def poison_fresh_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gs, "_new_output", poisoned)


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def index_array(values: np.ndarray, dtype: mx.Dtype = mx.int32) -> mx.array:
    return mx.array(values.astype(np.int64)).astype(dtype)


def scatter_reference(
    output: mx.array, values: mx.array, indices: mx.array, weights: mx.array | None
) -> np.ndarray:
    result = f64(output)
    contributions = f64(values)
    if weights is not None:
        contributions *= f64(weights).reshape(weights.shape + (1,) * (output.ndim - 1))
    np.add.at(result, to_numpy(indices).astype(np.int64), contributions)
    return result


def scatter_tolerance(dtype: mx.Dtype, indices: mx.array) -> dict[str, float]:
    """Sums of `c` unit-normal products carry float32 rounding error growing like sqrt(c)."""
    tol = tolerance(dtype)
    most = int(np.bincount(to_numpy(indices).reshape(-1).astype(np.int64)).max()) if indices.size else 1
    return {"rtol": tol["rtol"], "atol": tol["atol"] * math.sqrt(most)}


# ----------------------------------------------------------------------------- gather


@pytest.mark.parametrize(
    "table_shape, index_shape, dtype",
    [
        *(((97, 45), (131,), dtype) for dtype in FLOAT_DTYPES),  # ragged rows, more indices than rows
        ((5, 3, 15), (4, 9), mx.bfloat16),  # trailing axes form the row; 2-D indices
        ((61,), (3, 5), mx.float16),  # a 1-D table gathers scalars
        ((40, 300), (23,), mx.float32),  # rows wider than a block: the kernel loops over a masked tail
    ],
)
def test_gather_matches_numpy(
    backend: str,
    rng: np.random.Generator,
    dtype: mx.Dtype,
    table_shape: tuple[int, ...],
    index_shape: tuple[int, ...],
) -> None:
    x = rand(rng, table_shape, dtype)
    indices = index_array(rng.integers(0, table_shape[0], index_shape))
    out = gs.selective_gather(x, indices)
    assert out.shape == index_shape + table_shape[1:] and out.dtype == dtype
    # A gather copies: bit-exact.
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x)[to_numpy(indices)])


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_gather_index_dtypes_and_integer_table(
    backend: str, rng: np.random.Generator, index_dtype: mx.Dtype
) -> None:
    x = mx.array(rng.integers(-(2**31), 2**31 - 1, (70, 9), dtype=np.int64).astype(np.int32))
    rows = rng.integers(0, 70, 33)
    rows[:3] = [0, 69, 69]  # both ends of the table
    out = gs.selective_gather(x, index_array(rows, index_dtype))
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x)[rows])


def test_gather_empty(backend: str, rng: np.random.Generator) -> None:
    x = rand(rng, (10, 6))
    assert gs.selective_gather(x, mx.zeros((0,), mx.int32)).shape == (0, 6)
    assert gs.selective_gather(x, mx.zeros((3, 0), mx.int64)).shape == (3, 0, 6)
    assert gs.selective_gather(rand(rng, (10, 0)), index_array(np.arange(4))).shape == (4, 0)


# ----------------------------------------------------------------------------- scatter-add


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_scatter_add_matches_numpy(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, deterministic: bool, weighted: bool
) -> None:
    output = rand(rng, (53, 3, 15), dtype)
    indices = index_array(rng.integers(0, 53, (7, 13)))  # 91 indices into 53 rows: duplicates
    values = rand(rng, (7, 13, 3, 15), dtype)
    weights = rand(rng, (7, 13), dtype) if weighted else None
    before = to_numpy(output).copy()
    result = gs.selective_scatter_add(output, values, indices, weights, deterministic)
    assert result.shape == output.shape and result.dtype == dtype
    np.testing.assert_allclose(
        f64(result), scatter_reference(output, values, indices, weights), **scatter_tolerance(dtype, indices)
    )
    np.testing.assert_array_equal(to_numpy(output), before)  # the caller's array is untouched


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_scatter_add_wide_rows(
    backend: str, rng: np.random.Generator, deterministic: bool, index_dtype: mx.Dtype
) -> None:
    output = rand(rng, (19, 300))  # two column blocks, the second ragged
    indices = index_array(rng.integers(0, 19, 40), index_dtype)
    values = rand(rng, (40, 300))
    result = gs.selective_scatter_add(output, values, indices, deterministic=deterministic)
    np.testing.assert_allclose(
        f64(result),
        scatter_reference(output, values, indices, None),
        **scatter_tolerance(mx.float32, indices),
    )


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_scatter_add_heavy_duplication(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    # 1000 contributions, most to rows 3 and 17: runs many chunks long in the sorted order,
    # which the deterministic mode sums from per-chunk partial sums.
    rows = np.where(rng.random(1000) < 0.6, 3, rng.integers(0, 29, 1000))
    rows[rng.random(1000) < 0.2] = 17
    output, values = rand(rng, (29, 45), dtype), rand(rng, (1000, 45), dtype)
    indices, weights = index_array(rows), rand(rng, (1000,), dtype)
    expected = scatter_reference(output, values, indices, weights)
    tol = scatter_tolerance(dtype, indices)
    atomic = gs.selective_scatter_add(output, values, indices, weights)
    ordered = gs.selective_scatter_add(output, values, indices, weights, deterministic=True)
    np.testing.assert_allclose(f64(atomic), expected, **tol)
    np.testing.assert_allclose(f64(ordered), expected, **tol)
    np.testing.assert_allclose(f64(ordered), f64(atomic), **tol)


def test_deterministic_mode_repeats_bit_for_bit(backend: str, rng: np.random.Generator) -> None:
    indices = index_array(rng.integers(0, 5, 777))  # ~155 contributions per row
    output, values, weights = rand(rng, (5, 45)), rand(rng, (777, 45)), rand(rng, (777,))
    runs = [gs.selective_scatter_add(output, values, indices, weights, deterministic=True) for _ in range(3)]
    for run in runs[1:]:
        np.testing.assert_array_equal(to_numpy(run), to_numpy(runs[0]))
    atomic = gs.selective_scatter_add(output, values, indices, weights)
    np.testing.assert_allclose(to_numpy(runs[0]), to_numpy(atomic), **scatter_tolerance(mx.float32, indices))


def test_deterministic_mode_same_bits_on_interpreter_and_emulators(rng: np.random.Generator) -> None:
    # The summation order is the algorithm's, not the threads': very different executions of
    # the same kernels agree to the bit. (GPUs may contract a multiply-add into an FMA.)
    for name in CPU_BACKENDS:
        if reason := backend_unavailable_reason(name):
            pytest.skip(reason)
    indices = index_array(rng.integers(0, 7, 500))
    output, values, weights = rand(rng, (7, 45)), rand(rng, (500, 45)), rand(rng, (500,))
    results = []
    for name in CPU_BACKENDS:
        mtriton.set_backend(name)
        try:
            results.append(to_numpy(gs.selective_scatter_add(output, values, indices, weights, True)))
        finally:
            mtriton.set_backend(None)
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])


def test_deterministic_mode_wide_keys(backend: str, rng: np.random.Generator) -> None:
    # (rows + 1) * count passes 2**31: the sort keys row * count + k are int64.
    rows, count = (1 << 17) + 3, 16400
    output, values = rand(rng, (rows,)), rand(rng, (count,))
    indices = index_array(rng.integers(0, rows, count))
    result = gs.selective_scatter_add(output, values, indices, deterministic=True)
    np.testing.assert_allclose(
        f64(result),
        scatter_reference(output, values, indices, None),
        **scatter_tolerance(mx.float32, indices),
    )


@pytest.mark.parametrize("deterministic", [False, True])
def test_scatter_add_empty(backend: str, rng: np.random.Generator, deterministic: bool) -> None:
    output = rand(rng, (8, 5))
    for index_shape in [(0,), (2, 0)]:
        result = gs.selective_scatter_add(
            output, mx.zeros((*index_shape, 5)), mx.zeros(index_shape, mx.int32), deterministic=deterministic
        )
        np.testing.assert_array_equal(to_numpy(result), to_numpy(output))


# ----------------------------------------------------------------------------- index range


def test_out_of_range_index_raises_when_checked(backend: str, rng: np.random.Generator) -> None:
    x = rand(rng, (10, 45))
    with pytest.raises(IndexError, match=r"\[selective_gather\] indices\[1, 0\] = 10 is out of range"):
        gs.selective_gather(x, index_array(np.array([[1, 2], [10, 3]])))
    with pytest.raises(IndexError, match=r"\[selective_scatter_add\] indices\[2\] = -1 is out of range"):
        gs.selective_scatter_add(x, mx.ones((3, 45)), index_array(np.array([0, 9, -1])))


@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_out_of_range_index_is_ignored_when_unchecked(
    backend: str, rng: np.random.Generator, index_dtype: mx.Dtype
) -> None:
    # Never out of bounds: a gathered row is zeros and a contribution is dropped.
    x = rand(rng, (10, 45))
    wild = {mx.int32: [-1, 10, 2**31 - 1], mx.int64: [-(2**40), 10, 2**40], mx.uint32: [10, 2**31, 2**32 - 1]}
    rows = np.array([3, *wild[index_dtype], 3, 0])
    indices = index_array(rows, index_dtype)
    gathered = to_numpy(gs.selective_gather(x, indices, checked=False))
    valid = (rows >= 0) & (rows < 10)
    np.testing.assert_array_equal(gathered[valid], to_numpy(x)[rows[valid]])
    np.testing.assert_array_equal(gathered[~valid], 0)
    values = rand(rng, (len(rows), 45))
    expected = f64(x)
    np.add.at(expected, rows[valid], f64(values)[valid])
    for deterministic in (False, True):
        result = gs.selective_scatter_add(x, values, indices, None, deterministic, checked=False)
        np.testing.assert_allclose(f64(result), expected, **tolerance(mx.float32))


# ----------------------------------------------------------------------------- gradients


def _grads(fn, *args: mx.array, argnums: tuple[int, ...]) -> tuple[mx.array, ...]:
    grads = mx.grad(fn, argnums=argnums)(*args)
    return grads if len(argnums) > 1 else (grads,)


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
@pytest.mark.parametrize("deterministic", [False, True])
def test_gather_gradient(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, deterministic: bool
) -> None:
    x = rand(rng, (31, 3, 15), dtype)
    indices = index_array(rng.integers(0, 31, (4, 17)))
    cotangent = rand(rng, (4, 17, 3, 15), dtype)
    (grad,) = _grads(
        lambda x: (gs.selective_gather(x, indices, deterministic=deterministic) * cotangent).sum(),
        x,
        argnums=(0,),
    )
    # mx.grad of the plain-MLX reference, in float32 so that it is exact for every dtype.
    (expected,) = _grads(
        lambda x: (gs.selective_gather_reference(x, indices) * cotangent.astype(mx.float32)).sum(),
        x.astype(mx.float32),
        argnums=(0,),
    )
    assert grad.dtype == dtype
    np.testing.assert_allclose(f64(grad), f64(expected), **scatter_tolerance(dtype, indices))


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_scatter_add_gradient(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, deterministic: bool, weighted: bool
) -> None:
    output, values = rand(rng, (23, 3, 15), dtype), rand(rng, (37, 3, 15), dtype)
    indices = index_array(rng.integers(0, 23, 37))
    weights = rand(rng, (37,), dtype)
    cotangent = rand(rng, (23, 3, 15), dtype)
    argnums = (0, 1, 2) if weighted else (0, 1)

    def loss(scatter, cotangent: mx.array):
        def f(output: mx.array, values: mx.array, weights: mx.array | None = None) -> mx.array:
            return (scatter(output, values, indices, weights) * cotangent).sum()

        return f

    def ours(output: mx.array, values: mx.array, indices: mx.array, weights: mx.array | None) -> mx.array:
        return gs.selective_scatter_add(output, values, indices, weights, deterministic)

    inputs = (output, values, weights) if weighted else (output, values)
    grads = _grads(loss(ours, cotangent), *inputs, argnums=argnums)
    expected = _grads(
        loss(gs.selective_scatter_add_reference, cotangent.astype(mx.float32)),
        *(a.astype(mx.float32) for a in inputs),
        argnums=argnums,
    )
    tol = tolerance(dtype)
    for name, grad, want, primal in zip(("output", "values", "weights"), grads, expected, inputs):
        assert grad.dtype == primal.dtype, name
        # The weights' gradient is a dot product over the 45 elements of a row.
        np.testing.assert_allclose(f64(grad), f64(want), rtol=tol["rtol"], atol=tol["atol"] * 5, err_msg=name)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda x, i: gs.selective_gather(x, i.astype(mx.float32)),
            TypeError,
            "[selective_gather] indices has dtype float32; supported: int32, int64, uint32",
        ),
        (
            lambda x, i: gs.selective_gather(x, i.astype(mx.int16)),
            TypeError,
            "[selective_gather] indices has dtype int16; supported: int32, int64, uint32",
        ),
        (
            lambda x, i: gs.selective_gather(np.zeros((4, 3)), i),
            TypeError,
            "[selective_gather] x has type ndarray; expected an mx.array",
        ),
        (
            lambda x, i: gs.selective_gather(mx.array(1.0), i),
            ValueError,
            "[selective_gather] x has shape (); expected at least one axis (the rows to gather)",
        ),
        (
            lambda x, i: gs.selective_scatter_add(x.astype(mx.int32), mx.zeros((3, 6)), i),
            TypeError,
            "[selective_scatter_add] output has dtype int32; supported: float32, float16, bfloat16",
        ),
        (
            lambda x, i: gs.selective_scatter_add(x, mx.zeros((3, 5)), i),
            ValueError,
            "[selective_scatter_add] values has shape (3, 5); expected (3, 6) to match "
            "indices.shape + output.shape[1:]",
        ),
        (
            lambda x, i: gs.selective_scatter_add(x, mx.zeros((3, 6)), i, mx.ones((3, 1))),
            ValueError,
            "[selective_scatter_add] weights has shape (3, 1); expected (3,) to match indices.shape",
        ),
        (
            lambda x, i: gs.selective_scatter_add(x, mx.zeros((3, 6)), i, mx.ones((3,), mx.int32)),
            TypeError,
            "[selective_scatter_add] weights has dtype int32; supported: float32, float16, bfloat16",
        ),
    ],
)
def test_errors_name_the_function_and_argument(call, error: type[Exception], message: str) -> None:
    x, indices = mx.zeros((4, 6)), mx.array([0, 1, 3])
    with pytest.raises(error) as info:
        call(x, indices)
    assert message in str(info.value)
