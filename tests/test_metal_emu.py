"""Tests of metal-emu, the CPU emulator of ``mx.fast.metal_kernel``.

Kernels here are hand-written Metal bodies: this is the emulator's own test.
Numbers are checked against float64 NumPy on random inputs of odd sizes; the
generated source is checked against MLX's own generator.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest

from mtriton import emulator

RNG = np.random.default_rng(20261125)


@pytest.fixture(autouse=True)
def _all_checks() -> Iterator[None]:
    with emulator.checks(unwritten=True, races=True):
        yield


def _normal(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _run(
    kernel: emulator.MetalKernel,
    inputs: Sequence[Any],
    outputs: Sequence[tuple[tuple[int, ...], mx.Dtype]],
    grid: tuple[int, int, int],
    threadgroup: tuple[int, int, int],
    **kwargs: Any,
) -> list[np.ndarray]:
    result = kernel(
        inputs=list(inputs),
        output_shapes=[shape for shape, _ in outputs],
        output_dtypes=[dtype for _, dtype in outputs],
        grid=grid,
        threadgroup=threadgroup,
        **kwargs,
    )
    return [np.array(r.astype(mx.float32) if r.dtype == mx.bfloat16 else r) for r in result]


# ---------------------------------------------------------------------------
# The generated source equals MLX's
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _stdout_fd() -> Iterator[list[str]]:
    """Captures what C++ code writes to file descriptor 1."""
    captured: list[str] = []
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+") as sink:
        os.dup2(sink.fileno(), 1)
        try:
            yield captured
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            sink.seek(0)
            captured.append(sink.read())


def _mlx_source(tmp_path: Path, kernel_args: dict[str, Any], call: dict[str, Any]) -> str:
    """Runs MLX's own generator (export tracing works without Metal)."""
    kernel = mx.fast.metal_kernel(**kernel_args)
    arrays = [x for x in call["inputs"] if isinstance(x, mx.array)]

    def fn(*args: mx.array) -> list[mx.array]:
        it = iter(args)
        inputs = [next(it) if isinstance(x, mx.array) else x for x in call["inputs"]]
        return kernel(**{**call, "inputs": inputs}, verbose=True)

    with _stdout_fd() as out:
        mx.export_function(str(tmp_path / "kernel.mlxfn"), fn, *arrays)
    text = out[0]
    return text[text.index("```\n") + 4 : text.rindex("\n```")]


_SOURCE_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "scalars_and_attributes": (
        dict(
            name="scal",
            input_names=["a", "alpha", "k", "flag"],
            output_names=["out"],
            source=(
                "uint i = thread_position_in_grid.x + threadgroup_position_in_grid.y;\n"
                "out[i] = a[i] * alpha + k + thread_index_in_simdgroup\n"
                "  + simdgroup_index_in_threadgroup + threads_per_simdgroup;"
            ),
        ),
        dict(
            inputs=[mx.zeros((9,)), 2.5, 3, True],
            output_shapes=[(9,)],
            output_dtypes=[mx.float32],
            grid=(9, 1, 1),
            threadgroup=(32, 1, 1),
        ),
    ),
    "shapes_strides_small_arrays": (
        dict(
            name="shp",
            input_names=["x", "w"],
            output_names=["y"],
            source=(
                "uint3 p = thread_position_in_threadgroup;\n"
                "y[0] = x[elem_to_loc(p.x, x_shape, x_strides, x_ndim)] + w_shape[0]\n"
                "  + threads_per_threadgroup.x + grid_size.x + threads_per_grid.y;"
            ),
            header="// a helper header\ninline float twice(float v) { return 2 * v; }\n",
            ensure_row_contiguous=False,
        ),
        dict(
            inputs=[mx.zeros((3, 5), mx.float16), mx.zeros((4,), mx.int32)],
            output_shapes=[(1,)],
            output_dtypes=[mx.float16],
            grid=(4, 1, 1),
            threadgroup=(4, 1, 1),
        ),
    ),
    "templates": (
        dict(
            name="tmpl",
            input_names=["a"],
            output_names=["out"],
            source="uint i = thread_index_in_threadgroup; out[i] = B ? T(a[i]) * N : T(0);",
        ),
        dict(
            inputs=[mx.zeros((16,), mx.bfloat16)],
            output_shapes=[(16,)],
            output_dtypes=[mx.float16],
            grid=(16, 1, 1),
            threadgroup=(16, 1, 1),
            template=[("T", mx.float16), ("N", 7), ("B", False)],
        ),
    ),
    "atomic_outputs": (
        dict(
            name="hist",
            input_names=["idx"],
            output_names=["h", "total"],
            source=(
                "uint i = thread_position_in_grid.x;\n"
                "atomic_fetch_add_explicit(&h[idx[i]], 1, memory_order_relaxed);\n"
                "atomic_fetch_add_explicit(&total[0], 1.0f, memory_order_relaxed);\n"
                "(void)quadgroup_index_in_threadgroup; (void)dispatch_simdgroups_per_threadgroup;"
            ),
            atomic_outputs=True,
        ),
        dict(
            inputs=[mx.zeros((100,), mx.uint32)],
            output_shapes=[(10,), (1,)],
            output_dtypes=[mx.int32, mx.float32],
            grid=(100, 1, 1),
            threadgroup=(64, 1, 1),
            init_value=0,
        ),
    ),
    "closed_early_by_mlx": (
        # Shape buffers, two outputs and no attributes: MLX closes the
        # signature after the first output (the emulator must agree).
        dict(name="quirk", input_names=["a"], output_names=["o", "p"], source="o[0] = a_shape[0];"),
        dict(
            inputs=[mx.zeros((10,))],
            output_shapes=[(1,), (1,)],
            output_dtypes=[mx.float32, mx.uint8],
            grid=(1, 1, 1),
            threadgroup=(1, 1, 1),
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(_SOURCE_CASES))
def test_full_source_equals_mlx(case: str, tmp_path: Path) -> None:
    kernel_args, call = _SOURCE_CASES[case]
    expected = _mlx_source(tmp_path, kernel_args, call)
    kernel = emulator.metal_kernel(**kernel_args)
    ours = kernel.full_source(
        inputs=call["inputs"], output_dtypes=call["output_dtypes"], template=call.get("template")
    )
    assert ours == expected


# ---------------------------------------------------------------------------
# Numerics
# ---------------------------------------------------------------------------


def test_vector_add_partial_threadgroup() -> None:
    n = 1001
    kernel = emulator.metal_kernel(
        name="vadd",
        input_names=["a", "b"],
        output_names=["out", "tpt", "dtpt", "sgs"],
        source="""
            uint i = thread_position_in_grid.x;
            out[i] = a[i] + b[i];
            tpt[i] = threads_per_threadgroup.x;
            dtpt[i] = dispatch_threads_per_threadgroup.x;
            sgs[i] = simdgroups_per_threadgroup;
        """,
    )
    a, b = _normal(n), _normal(n)
    out, tpt, dtpt, sgs = _run(
        kernel,
        [mx.array(a), mx.array(b)],
        [((n,), mx.float32)] + [((n,), mx.uint32)] * 3,
        grid=(n, 1, 1),
        threadgroup=(256, 1, 1),
    )
    np.testing.assert_array_equal(out, (a.astype(np.float64) + b).astype(np.float32))
    # Assumed (to confirm on a Mac): the last, partial threadgroup reports
    # its own size; dispatch_threads_per_threadgroup the requested one.
    last = n - 3 * 256
    assert (tpt[:768] == 256).all() and (tpt[768:] == last).all()
    assert (dtpt == 256).all()
    assert (sgs[:768] == 8).all() and (sgs[768:] == -(-last // 32)).all()


def test_partial_threadgroups_in_two_dimensions() -> None:
    width, height = 37, 11
    kernel = emulator.metal_kernel(
        name="grid2d",
        input_names=[],
        output_names=["size", "lid", "group"],
        source="""
            uint2 p = thread_position_in_grid.xy;
            uint o = p.y * 37 + p.x;
            size[o] = threads_per_threadgroup.x * 100 + threads_per_threadgroup.y;
            lid[o] = thread_index_in_threadgroup;
            group[o] = threadgroup_position_in_grid.x * 100 + threadgroup_position_in_grid.y;
        """,
    )
    size, lid, group = _run(
        kernel, [], [((height, width), mx.uint32)] * 3, grid=(width, height, 1), threadgroup=(16, 4, 1)
    )
    ys, xs = np.mgrid[0:height, 0:width]
    sx = np.minimum(16, width - xs // 16 * 16)
    sy = np.minimum(4, height - ys // 4 * 4)
    np.testing.assert_array_equal(size, sx * 100 + sy)
    np.testing.assert_array_equal(lid, (ys % 4) * sx + xs % 16)
    np.testing.assert_array_equal(group, (xs // 16) * 100 + ys // 4)


def test_threadgroup_reduction_with_barriers() -> None:
    n, block = 5003, 128
    groups = -(-n // block)
    kernel = emulator.metal_kernel(
        name="block_sum",
        input_names=["a", "n"],
        output_names=["out"],
        source="""
            threadgroup float partial[128];
            uint t = thread_position_in_threadgroup.x;
            uint i = thread_position_in_grid.x;
            partial[t] = i < uint(n) ? a[i] : 0.0f;
            threadgroup_barrier(mem_flags::mem_threadgroup);
            for (uint s = 64; s > 0; s /= 2) {
                if (t < s) partial[t] += partial[t + s];
                threadgroup_barrier(mem_flags::mem_threadgroup);
            }
            if (t == 0) out[threadgroup_position_in_grid.x] = partial[0];
        """,
    )
    a = _normal(n)
    (out,) = _run(kernel, [mx.array(a), n], [((groups,), mx.float32)], (groups * block, 1, 1), (block, 1, 1))
    padded = np.zeros(groups * block)
    padded[:n] = a
    np.testing.assert_allclose(out, padded.reshape(groups, block).sum(1), rtol=1e-5, atol=1e-5)


def test_simd_functions() -> None:
    n = 200  # the last SIMD-group of the second threadgroup has 8 lanes
    kernel = emulator.metal_kernel(
        name="simd",
        input_names=["a"],
        output_names=["s", "ex", "down", "mx_", "xr", "bc", "anyneg"],
        source="""
            uint i = thread_position_in_grid.x;
            float v = a[i];
            s[i] = simd_sum(v);
            ex[i] = simd_prefix_exclusive_sum(v);
            down[i] = simd_shuffle_down(v, 3);
            mx_[i] = simd_max(v);
            xr[i] = simd_shuffle_xor(v, 1);
            bc[i] = simd_broadcast(v, 2);
            anyneg[i] = simd_any(v < -2.0f) ? 1 : 0;
        """,
    )
    a = _normal(n)
    outs = _run(
        kernel,
        [mx.array(a)],
        [((n,), mx.float32)] * 6 + [((n,), mx.int32)],
        grid=(n, 1, 1),
        threadgroup=(96, 1, 1),
    )
    s, ex, down, mx_, xr, bc, anyneg = outs
    a64 = a.astype(np.float64)
    for start in range(0, n, 32):
        # SIMD-groups are 32 consecutive threads of a threadgroup (96 threads:
        # three SIMD-groups), the last one cut short by the grid.
        width = min(32, n - start)
        lanes = a64[start : start + width]
        sl = slice(start, start + width)
        np.testing.assert_allclose(s[sl], lanes.sum(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ex[sl], np.concatenate([[0], np.cumsum(lanes)[:-1]]), atol=1e-5)
        # Lanes whose source lane lies past the SIMD-group keep their value.
        expected_down = np.where(np.arange(width) + 3 < width, np.roll(lanes, -3), lanes)
        np.testing.assert_array_equal(down[sl], expected_down.astype(np.float32))
        np.testing.assert_array_equal(mx_[sl], lanes.max().astype(np.float32))
        xor_src = np.arange(width) ^ 1
        expected_xor = np.where(xor_src < width, lanes[np.minimum(xor_src, width - 1)], lanes)
        np.testing.assert_array_equal(xr[sl], expected_xor.astype(np.float32))
        np.testing.assert_array_equal(bc[sl], np.float32(lanes[2]))
        np.testing.assert_array_equal(anyneg[sl], int((lanes < -2).any()))


def test_atomic_histogram_with_duplicate_bins() -> None:
    n, bins = 3001, 17
    kernel = emulator.metal_kernel(
        name="histogram",
        input_names=["idx", "w", "n"],
        output_names=["counts", "weights"],
        source="""
            uint i = thread_position_in_grid.x;
            if (i < uint(n)) {
                atomic_fetch_add_explicit(&counts[idx[i]], 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&weights[idx[i]], w[i], memory_order_relaxed);
            }
        """,
        atomic_outputs=True,
    )
    idx = RNG.integers(0, bins, n).astype(np.uint32)
    w = _normal(n)
    counts, weights = _run(
        kernel,
        [mx.array(idx), mx.array(w), n],
        [((bins,), mx.int32), ((bins,), mx.float32)],
        grid=(n + 23, 1, 1),
        threadgroup=(128, 1, 1),
        init_value=0,
    )
    np.testing.assert_array_equal(counts, np.bincount(idx, minlength=bins))
    expected = np.bincount(idx, weights=w.astype(np.float64), minlength=bins)
    np.testing.assert_allclose(weights, expected, rtol=1e-4, atol=1e-4)


_MMA_SOURCE = """
    // Two SIMD-groups; each computes an 8x8 tile of D = A @ B + C with
    // A: 16 x 24, B: 24 x 8, the K loop stepping through 8-wide tiles.
    uint sg = simdgroup_index_in_threadgroup;
    uint lane = thread_index_in_simdgroup;
    simdgroup_matrix<T, 8, 8> acc;
    simdgroup_load(acc, c, 8, ulong2(0, sg * 8));
    for (uint k = 0; k < 24; k += 8) {
        simdgroup_matrix<T, 8, 8> x, y;
        simdgroup_load(x, a, 24, ulong2(k, sg * 8));
        simdgroup_load(y, bt, 24, ulong2(k, 0), true);
        simdgroup_multiply_accumulate(acc, x, y, acc);
    }
    simdgroup_store(acc, d, 8, ulong2(0, sg * 8));
    simdgroup_matrix<T, 8, 8> ident = simdgroup_matrix<T, 8, 8>(T(1));
    simdgroup_matrix<T, 8, 8> probe;
    simdgroup_load(probe, a, 24);
    simdgroup_multiply(probe, probe, ident);
    auto e = probe.thread_elements();
    layout[sg * 64 + lane * 2] = e[0];
    layout[sg * 64 + lane * 2 + 1] = e[1];
"""


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_simdgroup_matrix_multiply_accumulate(dtype: mx.Dtype) -> None:
    kernel = emulator.metal_kernel(
        name="mma", input_names=["a", "bt", "c"], output_names=["d", "layout"], source=_MMA_SOURCE
    )
    a, b, c = _normal(16, 24), _normal(24, 8), _normal(16, 8)
    np_dtype = np.float32 if dtype == mx.float32 else np.float16
    a, b, c = (x.astype(np_dtype) for x in (a, b, c))
    d, layout = _run(
        kernel,
        [mx.array(a), mx.array(np.ascontiguousarray(b.T)), mx.array(c)],
        [((16, 8), dtype), ((128,), dtype)],
        grid=(64, 1, 1),
        threadgroup=(64, 1, 1),
        template=[("T", dtype)],
    )
    expected = a.astype(np.float64) @ b.astype(np.float64) + c
    tol = 1e-5 if dtype == mx.float32 else 2e-2
    np.testing.assert_allclose(d, expected, rtol=tol, atol=tol * 10)
    # MLX's BaseMMAFrag::get_coord: lane -> row, first of two columns.
    lanes = np.arange(32)
    rows = (lanes // 4 & 4) + (lanes // 2) % 4
    cols = (lanes // 4 & 2) * 2 + (lanes % 2) * 2
    expected_layout = np.stack([a[rows, cols], a[rows, cols + 1]], axis=1).reshape(-1)
    np.testing.assert_array_equal(layout[:64], expected_layout)


def test_templates() -> None:
    kernel = emulator.metal_kernel(
        name="scale",
        input_names=["a"],
        output_names=["out"],
        source="""
            uint i = thread_position_in_grid.x;
            T v = T(a[i]) * T(N);
            out[i] = NEGATE ? -v : v;
        """,
    )
    n = 77
    a = _normal(n)
    for dtype, factor, negate in ((mx.float32, 3, True), (mx.float16, 5, False)):
        (out,) = _run(
            kernel,
            [mx.array(a)],
            [((n,), dtype)],
            grid=(n, 1, 1),
            threadgroup=(32, 1, 1),
            template=[("T", dtype), ("N", factor), ("NEGATE", negate)],
        )
        # One rounding of the exact product, as in float64 then cast.
        low = np.float32 if dtype == mx.float32 else np.float16
        ref = (a.astype(low).astype(np.float64) * factor * (-1 if negate else 1)).astype(low)
        np.testing.assert_array_equal(out, ref)


def test_half_and_bfloat_inputs_and_outputs() -> None:
    n = 301
    kernel = emulator.metal_kernel(
        name="lowp",
        input_names=["x", "y", "z"],
        output_names=["oh", "ob", "of"],
        source="""
            uint i = thread_position_in_grid.x;
            half h = x[i] * y[i] + x[i];
            oh[i] = h;
            ob[i] = bfloat16_t(float(z[i]) * 2.0f) + z[i];
            of[i] = float(z[i]) + float(h);
        """,
    )
    x, y = _normal(n).astype(np.float16), _normal(n).astype(np.float16)
    z = mx.array(_normal(n)).astype(mx.bfloat16)
    oh, ob, of = _run(
        kernel,
        [mx.array(x), mx.array(y), z],
        [((n,), mx.float16), ((n,), mx.bfloat16), ((n,), mx.float32)],
        grid=(n, 1, 1),
        threadgroup=(64, 1, 1),
    )
    # half arithmetic rounds after every operation, as NumPy's float16 does.
    np.testing.assert_array_equal(oh, x * y + x)
    z32 = np.array(z.astype(mx.float32))
    ref_b = np.array((mx.array(z32.astype(np.float64) * 3).astype(mx.bfloat16)).astype(mx.float32))
    np.testing.assert_array_equal(ob, ref_b)
    np.testing.assert_allclose(of, z32.astype(np.float64) + (x * y + x), rtol=1e-6)


def test_ensure_row_contiguous_with_transposed_input() -> None:
    x = _normal(7, 13)
    xt = mx.array(x).T  # a view with strides (1, 13)
    copy = "uint i = thread_position_in_grid.x; out[i] = a[i];"
    strided = "uint i = thread_position_in_grid.x; out[i] = a[elem_to_loc(i, a_shape, a_strides, a_ndim)];"
    outputs = [((13, 7), mx.float32)]
    grid, group = (91, 1, 1), (32, 1, 1)
    k = emulator.metal_kernel("copy_rc", ["a"], ["out"], copy)
    np.testing.assert_array_equal(_run(k, [xt], outputs, grid, group)[0], x.T)
    k = emulator.metal_kernel("copy_raw", ["a"], ["out"], copy, ensure_row_contiguous=False)
    np.testing.assert_array_equal(_run(k, [xt], outputs, grid, group)[0].reshape(-1), x.reshape(-1))
    k = emulator.metal_kernel("copy_strided", ["a"], ["out"], strided, ensure_row_contiguous=False)
    np.testing.assert_array_equal(_run(k, [xt], outputs, grid, group)[0], x.T)


def test_scalar_inputs_and_math() -> None:
    n = 55
    kernel = emulator.metal_kernel(
        name="axpy",
        input_names=["a", "alpha", "k"],
        output_names=["out"],
        source="""
            uint i = thread_position_in_grid.x;
            float4 v = float4(a[i], 1.0, 2.0, 3.0);
            out[i] = metal::exp(alpha * v.x) + k + dot(v.yzw, float3(1.0f)) + metal::precise::sqrt(4.0f);
        """,
    )
    a = _normal(n)
    (out,) = _run(kernel, [mx.array(a), 0.5, 7], [((n,), mx.float32)], (n, 1, 1), (32, 1, 1))
    np.testing.assert_allclose(out, np.exp(0.5 * a.astype(np.float64)) + 7 + 6 + 2, rtol=1e-6)


def test_statement_rewrites_keep_the_source_valid() -> None:
    # Location records go only where a statement may start: not inside
    # initialiser lists, between if and else, before do-while's while, or
    # after a braceless if; comments and strings are left alone.
    kernel = emulator.metal_kernel(
        name="shapes_of_code",
        input_names=["a"],
        output_names=["out"],
        source="""
            uint i = thread_position_in_grid.x;  // kernels.py:1
            float acc = 0.0;  // kernels.py:2
            float w[3] = {  // kernels.py:3
                1.0, 2.0,
                3.0};
            for (uint k = 0;  // kernels.py:6
                 k < 3;
                 ++k) {  // kernels.py:8
                acc += w[k] * a[i];  // kernels.py:9
            }
            if (acc > 0)  // kernels.py:11
                acc = -acc;  // kernels.py:12
            else
                acc = acc * 2;  // kernels.py:14
            if (i % 3 == 0) {  // kernels.py:15
                acc += 1;
            } else if (i % 3 == 1) {  // kernels.py:17
                acc += 2;
            }
            else {
                acc += 3;
            }
            uint j = 0;
            do {  // kernels.py:24
                j++;
            }
            while (j < 2);  // kernels.py:27
            switch (i % 2) {  // kernels.py:28
                case 0:  // kernels.py:29
                    acc += 0.5h;  // kernels.py:30
                    break;
                default:
                    acc -= .25;
            }
            auto twice = [&](float x) {  // kernels.py:35
                return x * 2;  // kernels.py:36
            };  // kernels.py:37
            struct P { float a; float b; };  // kernels.py:38
            P p = P{acc,
                    1.5e0};
            acc = twice(p.a) + p.b + (i > 1000 ? 1.0
                                               : 2.0);
            #define BUMP(x) \\
                x += 1
            for (int q = 0; q < 2; ++q) acc += q;  /* a block
            comment */ BUMP(acc);
            half2 hv = half2(1.0h, 2.0h);
            float2 fv = float2(hv.yx);
            out[i] = acc + j + fv.x - fv.y;  // "a string // kernels.py:99"
        """,
    )
    a = _normal(7)
    (out,) = _run(kernel, [mx.array(a)], [((7,), mx.float32)], (7, 1, 1), (8, 1, 1))
    expected = []
    for i, v in enumerate(a.astype(np.float64)):
        acc = 6 * v
        acc = -acc if acc > 0 else acc * 2
        acc += (1, 2, 3)[i % 3] + (0.5 if i % 2 == 0 else -0.25)
        expected.append(acc * 2 + 1.5 + 2 + 1 + 1 + 2 + 1)
    # float32 sums of terms up to ~50 against float64: a few of their ulps (4e-6) apart, which a
    # result near 0 would fail by rtol alone (it did for 1 input in 9)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=3e-5)


def test_math_functions_against_numpy() -> None:
    n = 257
    names = ["exp", "log", "tanh", "rsqrt", "pow", "fract", "sign", "clamp", "exp_half", "fmin_nan"]
    kernel = emulator.metal_kernel(
        name="math",
        input_names=["a"],
        output_names=names,
        source="""
            uint i = thread_position_in_grid.x;
            float x = a[i];
            exp[i] = metal::exp(x);
            log[i] = metal::log(metal::abs(x));
            tanh[i] = metal::tanh(x);
            rsqrt[i] = metal::rsqrt(metal::abs(x));
            pow[i] = metal::pow(metal::abs(x), 1.7f);
            fract[i] = metal::fract(x);
            sign[i] = metal::sign(x);
            clamp[i] = metal::clamp(x, -0.5f, 0.5f);
            exp_half[i] = metal::exp(half(x));
            fmin_nan[i] = metal::min(x / 0.0f * 0.0f, x);  // NaN operand: the other one
        """,
    )
    a = _normal(n) * 3
    outs = dict(
        zip(
            names,
            _run(
                kernel,
                [mx.array(a)],
                [((n,), mx.float32)] * 8 + [((n,), mx.float16), ((n,), mx.float32)],
                (n, 1, 1),
                (64, 1, 1),
            ),
            strict=True,
        )
    )
    x = a.astype(np.float64)
    expected = {
        "exp": np.exp(x),
        "log": np.log(np.abs(x)),
        "tanh": np.tanh(x),
        "rsqrt": 1 / np.sqrt(np.abs(x)),
        "pow": np.abs(x) ** 1.7,
        "fract": x - np.floor(x),
        "sign": np.sign(x),
        "clamp": np.clip(x, -0.5, 0.5),
        "fmin_nan": x,
    }
    for name, ref in expected.items():
        np.testing.assert_allclose(outs[name], ref, rtol=2e-6, atol=1e-7, err_msg=name)
    np.testing.assert_allclose(outs["exp_half"], np.exp(x.astype(np.float16).astype(np.float64)), rtol=1e-3)


# Calls every family of the shim's Metal library at least once (templates
# compile only when used) and checks the threadgroup atomics' result.
_LIBRARY_TOUR = """
    uint i = thread_position_in_grid.x;
    uint lane = thread_index_in_simdgroup;
    float x = a[i];
    half h = half(x);
    bfloat16_t b = bfloat16_t(x);
    float4 v4 = float4(x, 1, 2, 3);
    half4 h4 = half4(v4);
    int2 i2 = int2(int(i), 3);
    uint3 u3 = uint3(i2.x, i2.y, 7u);
    bool4 m = v4 > 1.5f;
    float acc = simd_sum(v4).y + float(simd_sum(h)) + float(simd_max(b)) + simd_min(x);
    acc += float(simd_sum(h4).w) + simd_product(1.0f) + float(simd_xor(u3).z & 1u);
    acc += float(simd_or(uint(i)) & 1u) + float(simd_and(int(i)) | 0);
    acc += simd_prefix_inclusive_sum(x) + simd_prefix_exclusive_product(1.0f);
    acc += simd_shuffle(v4, lane ^ 1).x + float(simd_shuffle_up(h, 1)) + float(simd_shuffle_down(b, 1));
    acc += float(simd_shuffle(uint64_t(i), 0)) + float(simd_shuffle(i2, 2).y) + simd_shuffle(m.x, 3);
    acc += simd_shuffle_rotate_up(x, 1) + simd_broadcast_first(x) + float(simd_broadcast(int(i), 5));
    acc += simd_all(x < 100.0f) + simd_any(x > 100.0f) + simd_is_first();
    acc += float(static_cast<uint64_t>(simd_ballot(x > 0.0f)) & 1);
    acc += float(popcount(i) + clz(i + 1) + ctz(i + 1) + mulhi(i, 7u) + absdiff(int(i), 3));
    acc += metal::fast::exp(x) + metal::precise::log(abs(x) + 1) + exp2(x) + log2(abs(x) + 1);
    acc += float(exp(h)) + float(exp(b)) + float(tanh(h)) + sin(x) + cos(x) + tan(x * 0.1f);
    acc += asin(0.5f) + acos(0.5f) + atan(x) + atan2(x, 2.0f) + sinh(0.1f) + cosh(0.1f);
    acc += asinh(x) + acosh(2.0f) + atanh(0.5f) + log10(abs(x) + 1) + exp10(0.0f);
    acc += floor(x) + ceil(x) + round(x) + rint(x) + trunc(x) + fabs(x) + saturate(x);
    acc += powr(2.0f, x) + fmod(x, 0.3f) + fmax(x, 0.0f) + copysign(1.0f, x) + step(0.0f, x);
    acc += fma(x, 2.0f, 1.0f) + mix(0.0f, 1.0f, 0.25f) + smoothstep(0.0f, 1.0f, 0.5f);
    acc += float(min(h, half(1))) + float(max(b, bfloat16_t(0.0f))) + float(clamp(i2, int2(0), int2(5)).x);
    acc += float(abs(-3)) + float(min(2u, 3u)) + select(0.0f, 1.0f, x > 0) + select(v4, float4(0), m).w;
    acc += all(m) + any(m) + dot(v4, v4) + length(v4.xyz) + distance(v4.xy, float2(0));
    acc += normalize(v4).x + cross(v4.xyz, float3(1, 0, 0)).y + isnan(x) + isinf(x) + isfinite(x);
    acc += signbit(x) + float(isnan(v4).x) + as_type<float>(as_type<uint>(x));
    acc += float(as_type<ushort>(h) & 1) + float(bfloat16_to_uint16(b) & 1);
    acc += float(numeric_limits<half>::max()) > 0 ? 1 : 0;
    acc += float(numeric_limits<int>::max() > 0) + float(Limits<float>::finite_max > 0);
    acc += float(ceildiv(i + 1, 4u)) + ldexp(1.0f, 3) + rsqrt(4.0f) + sqrt(abs(x));
    float c;
    float s = sincos(x, c);
    acc += s * s + c * c + M_PI_F + (INFINITY > 0) + (FLT_MAX > 0) + float(HALF_MAX > 0);
    v4 += 1;
    v4 *= float4(2);
    h4 = h4 * h4 + half(1);
    i2 <<= 1;
    u3 = ~u3 ^ u3;
    acc += -v4.x + float(h4.y) + float(i2.x % 3) + float(u3.x & 1);
    complex64_t z = complex64_t(1.0f, 2.0f) * complex64_t(x, 0.0f);
    acc += z.real + z.imag;
    simdgroup_barrier(mem_flags::mem_none);
    threadgroup atomic_int count;
    threadgroup uint scratch[2][3];
    if (thread_index_in_threadgroup == 0) {
        atomic_store_explicit(&count, 0, memory_order_relaxed);
        scratch[1][2] = 5;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup | mem_flags::mem_device);
    atomic_fetch_add_explicit(&count, 1, memory_order_relaxed);
    atomic_fetch_max_explicit(&count, 0, memory_order_relaxed);
    threadgroup_barrier(mem_flags::mem_threadgroup);
    int seen = atomic_load_explicit(&count, memory_order_relaxed);
    int expected = seen;
    bool swapped = atomic_compare_exchange_weak_explicit(
        &count, &expected, seen, memory_order_relaxed, memory_order_relaxed);
    ok[i] = seen == int(threads_per_threadgroup.x) && swapped && scratch[1][2] == 5;
    out[i] = acc;
"""


def test_metal_library_tour() -> None:
    kernel = emulator.metal_kernel("tour", ["a"], ["out", "ok"], _LIBRARY_TOUR)
    out, ok = _run(
        kernel, [mx.array(_normal(77))], [((77,), mx.float32), ((77,), mx.bool_)], (77, 1, 1), (40, 1, 1)
    )
    assert np.isfinite(out).all() and ok.all()


def test_disk_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTRITON_CACHE_DIR", str(tmp_path))
    kernel = emulator.metal_kernel(
        "cached", ["a"], ["out"], "uint i = thread_position_in_grid.x; out[i] = a[i] + 41.0f;"
    )
    (out,) = _run(kernel, [mx.array(np.ones(3, np.float32))], [((3,), mx.float32)], (3, 1, 1), (4, 1, 1))
    assert (out == 42).all()
    # Only finished libraries remain (the runtime's too, if this process
    # built it here); temporary build folders are gone.
    libraries = [p.name for p in (tmp_path / "metal-emu").iterdir()]
    kinds = sorted(name.split("-")[0] for name in libraries)
    assert kinds in (["kernel"], ["kernel", "runtime"]), libraries
    assert all(name.endswith(".so") for name in libraries)


def test_disk_cache_shares_the_root_of_mtriton_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MTRITON_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel = emulator.metal_kernel(
        "xdg", ["a"], ["out"], "uint i = thread_position_in_grid.x; out[i] = a[i];"
    )
    _run(kernel, [mx.array(np.ones(3, np.float32))], [((3,), mx.float32)], (3, 1, 1), (4, 1, 1))
    assert list((tmp_path / "mtriton" / "metal-emu").glob("kernel-*.so"))


def test_disabled_disk_cache_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("MTRITON_DISABLE_DISK_CACHE", "1")
    kernel = emulator.metal_kernel(
        "uncached", ["a"], ["out"], "uint i = thread_position_in_grid.x; out[i] = 2 * a[i];"
    )
    (out,) = _run(kernel, [mx.array(np.ones(3, np.float32))], [((3,), mx.float32)], (3, 1, 1), (4, 1, 1))
    assert (out == 2).all()
    assert not (tmp_path / "metal-emu").exists()


def test_former_import_path() -> None:
    from mtriton.backends import metal_emu
    from mtriton.backends.metal_emu.cuda import cuda_kernel

    assert metal_emu.metal_kernel is emulator.metal_kernel and cuda_kernel is emulator.cuda_kernel
    assert metal_emu.DataRace is emulator.DataRace and metal_emu.checks is emulator.checks


# ---------------------------------------------------------------------------
# Planted bugs
# ---------------------------------------------------------------------------


def _call(kernel: emulator.MetalKernel, n: int, group: int, **kwargs: Any) -> None:
    kernel(
        inputs=[mx.array(_normal(n))],
        output_shapes=[(n,)],
        output_dtypes=[mx.float32],
        grid=(n, 1, 1),
        threadgroup=(group, 1, 1),
        **kwargs,
    )


@dataclass(frozen=True)
class _Bug:
    """A kernel with a planted bug, and what the emulator must say about it."""

    source: str
    error: type[emulator.EmulatorError]
    match: str  # searched in the message
    location: str | None  # the kernels.py line blamed
    thread: tuple[int, int, int] | None  # thread_position_in_threadgroup blamed
    threadgroup: tuple[int, int, int] | None = None
    n: int = 99
    group: int = 32


_BUGS = {
    "divergent_barrier": _Bug(
        """
        uint t = thread_position_in_threadgroup.x;  // kernels.py:10
        if (t < 40) {  // kernels.py:11
            threadgroup_barrier(mem_flags::mem_threadgroup);  // kernels.py:12
        }  // kernels.py:13
        out[thread_position_in_grid.x] = a[t];  // kernels.py:14
        """,
        emulator.BarrierDivergence,
        r"(?s)returned.*kernels\.py:14",
        "kernels.py:12",
        (0, 0, 0),
        (0, 0, 0),
        n=101,
        group=64,
    ),
    "barriers_at_different_sites": _Bug(
        """
        uint t = thread_position_in_threadgroup.x;  // kernels.py:20
        if (t % 2 == 0) {  // kernels.py:21
            threadgroup_barrier(mem_flags::mem_threadgroup);  // kernels.py:22
        } else {
            threadgroup_barrier(mem_flags::mem_device);  // kernels.py:24
        }
        out[thread_position_in_grid.x] = a[t];  // kernels.py:26
        """,
        emulator.BarrierDivergence,
        r"(?s)different barriers.*kernels\.py:24",
        "kernels.py:22",
        (0, 0, 0),
        n=64,
    ),
    "out_of_bounds_write": _Bug(
        "uint i = thread_position_in_grid.x;  // kernels.py:30\nout[i + 1] = a[i];  // kernels.py:31",
        emulator.OutOfBounds,
        r"write: 0 bytes past the end of output 'out' \(element 99 of 99",
        "kernels.py:31",
        (2, 0, 0),
        (3, 0, 0),
    ),
    "out_of_bounds_read": _Bug(
        "uint i = thread_position_in_grid.x;  // kernels.py:35\nout[i] = a[i] + a[i + 2];  // kernels.py:36",
        emulator.OutOfBounds,
        "read: 0 bytes past the end of input 'a'",
        "kernels.py:36",
        (43, 0, 0),
        n=45,
        group=64,
    ),
    "too_much_threadgroup_memory": _Bug(
        """
        threadgroup float small[256];
        threadgroup float large[8000];  // kernels.py:50
        uint t = thread_position_in_threadgroup.x;
        small[t] = large[t] = a[t];
        out[t] = small[t];
        """,
        emulator.ThreadgroupMemoryError,
        "'large', over the 32768",
        "kernels.py:50",
        (0, 0, 0),
    ),
    "threadgroup_array_out_of_bounds": _Bug(
        """
        threadgroup float buf[32];
        uint t = thread_position_in_threadgroup.x;  // kernels.py:60
        buf[t + 1] = a[t];  // kernels.py:61
        threadgroup_barrier(mem_flags::mem_threadgroup);
        out[t] = buf[t];
        """,
        emulator.ThreadgroupMemoryError,
        "write past the end of threadgroup array 'buf'",
        "kernels.py:61",
        (31, 0, 0),
        n=32,
    ),
    "integer_division_by_zero": _Bug(
        "uint i = thread_position_in_grid.x;  // kernels.py:90\n"
        "out[i] = 7 / int(a[i] * 0.0f);  // kernels.py:91",
        emulator.KernelFault,
        "division by zero",
        "kernels.py:91",
        (0, 0, 0),
    ),
    "stack_overflow": _Bug(
        """
        uint i = thread_position_in_grid.x;
        float big[100000];
        for (uint k = 0; k < 100000; ++k) big[k] = a[i] + k;
        out[i] = big[i * 7919 % 100000];
        """,
        emulator.KernelFault,
        "overflowed its stack",
        None,
        (0, 0, 0),
        n=4,
        group=4,
    ),
}


@pytest.mark.parametrize("bug", sorted(_BUGS))
def test_planted_bug(bug: str) -> None:
    case = _BUGS[bug]
    kernel = emulator.metal_kernel(bug, ["a"], ["out"], case.source)
    with pytest.raises(case.error, match=case.match) as info:
        _call(kernel, case.n, case.group)
    err = info.value
    assert err.kernel.startswith(f"custom_kernel_{bug}")
    assert err.thread == case.thread
    if case.location:
        assert err.location == case.location
        assert f"--> {case.location}" in str(err)
    if case.threadgroup:
        assert err.threadgroup == case.threadgroup


def test_threadgroup_race() -> None:
    kernel = emulator.metal_kernel(
        "race",
        ["a"],
        ["out"],
        """
        threadgroup float buf[64];
        uint t = thread_position_in_threadgroup.x;
        buf[t] = a[thread_position_in_grid.x];
        out[thread_position_in_grid.x] = buf[(t + 1) % 64];  // no barrier before
        """,
    )
    with pytest.raises(emulator.DataRace) as info:
        _call(kernel, 64 * 5, 64)
    assert info.value.threadgroup == (0, 0, 0)
    assert "'out'" in str(info.value)


def test_a_simdgroup_runs_ahead_until_a_barrier() -> None:
    # simd_sum makes SIMD-group 0 wait for its own lanes only; it then reads SIMD-group 1's
    # element, which nothing orders before the read without a threadgroup barrier.
    body = """
        threadgroup float buf[64];
        uint t = thread_position_in_threadgroup.x;
        buf[t] = a[thread_position_in_grid.x];
        float s = simd_sum(a[thread_position_in_grid.x]);
        out[thread_position_in_grid.x] = buf[(t + 32) % 64] + s;
        """
    with pytest.raises(emulator.DataRace):
        _call(emulator.metal_kernel("ahead", ["a"], ["out"], body), 64, 64)
    fixed = body.replace(
        "        out[", "        threadgroup_barrier(mem_flags::mem_threadgroup);\n        out["
    )
    _call(emulator.metal_kernel("ahead_fixed", ["a"], ["out"], fixed), 64, 64)


def test_race_between_threadgroups() -> None:
    kernel = emulator.metal_kernel(
        "cross",
        ["a"],
        ["out", "prev"],
        """
        uint i = thread_position_in_grid.x;
        out[i] = a[i];
        prev[i] = i >= 32 ? out[i - 32] : 0.0f;  // written by the previous threadgroup
        """,
    )
    with pytest.raises(emulator.DataRace, match="order threadgroups run in"):
        kernel(
            inputs=[mx.array(_normal(96))],
            output_shapes=[(96,), (96,)],
            output_dtypes=[mx.float32, mx.float32],
            grid=(96, 1, 1),
            threadgroup=(32, 1, 1),
        )


def test_unwritten_output() -> None:
    kernel = emulator.metal_kernel(
        "holes",
        ["a"],
        ["out"],
        "uint i = thread_position_in_grid.x; if (i % 2 == 0) out[i] = a[i];",
    )
    with pytest.raises(emulator.UnwrittenOutput, match=r"'out'.*element 1 \(index \(1,\)\)"):
        _call(kernel, 31, 32)
    _call(kernel, 31, 32, init_value=0.0)  # initialised outputs are not checked


def test_spin_deadlock_and_timeout() -> None:
    spin = emulator.metal_kernel(
        "spin",
        ["a"],
        ["flag"],
        """
        while (atomic_load_explicit(&flag[0], memory_order_relaxed) == 0) {  // kernels.py:70
        }
        """,
        atomic_outputs=True,
    )
    with pytest.raises(emulator.Deadlock, match="spin") as info:
        spin(
            inputs=[mx.zeros((1,))],
            output_shapes=[(1,)],
            output_dtypes=[mx.int32],
            grid=(8, 1, 1),
            threadgroup=(8, 1, 1),
            init_value=0,
        )
    assert info.value.location == "kernels.py:70"
    endless = emulator.metal_kernel(
        "endless",
        ["a"],
        ["out"],
        "uint i = thread_position_in_grid.x; out[i] = 0;\n"
        "while (a[i] == a[i]) { out[i] += 1.0f; }  // kernels.py:80",
    )
    with emulator.checks(timeout_s=0.2), pytest.raises(emulator.Deadlock, match="CPU time"):
        _call(endless, 4, 4)


def test_compile_error_names_the_metal_line() -> None:
    kernel = emulator.metal_kernel(
        "typo", ["a"], ["out"], "uint i = thread_position_in_grid.x;\nout[i] = a[i] +* 2;"
    )
    with pytest.raises(emulator.CompileError, match=r"custom_kernel_typo_float_float\.metal:\d+"):
        _call(kernel, 9, 16)
