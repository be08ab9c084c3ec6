"""The flash-attention backward kernels against float64 references, on fresh random inputs.

The reference is one attention function written for an array module: run in NumPy float64 it
gives the finite differences, run in MLX float64 (on the CPU) `mx.vjp` differentiates it, so
the expected gradients come from autodiff, not from the formulas the kernels use. Every loss
is sum(out * d_out) + sum(lse * d_lse) with random cotangents for both outputs.

The broad matrix (causal x GQA x mask kind x window, block alignments, head dims, layouts,
fully masked rows, sinks, dropout, decode, chunked cross-attention) runs on the interpreter,
mostly with small asymmetric blocks so the query and key loops run several steps and skip
blocks; a few chosen cases run on every backend (the emulators compile each kernel in
seconds). Where the forward is not the point, the backward runs alone on the reference's
output and lse: every kernel specialization a module compiles also goes through nvcc at its
end, about a second each. Sequence lengths are odd (37, 50, ...): no block divides them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from attention_np import visible
from conftest import to_numpy
from mlx_primitives.attention import backward, chunked_cross_attention, flash_attention
from mlx_primitives.attention.spec import MASK_ADDITIVE, MASK_BOOL, MASK_NONE, AttentionSpec

import mtriton

# Errors of the kernels' gradients against float64, relative to the gradient's largest entry:
# float32 rounds sums of tens of products; half precision rounds P and dS to 8 or 11 bits
# before their dots.
GRAD_TOLERANCE = {mx.float32: 1e-5, mx.float16: 2e-3, mx.bfloat16: 1.5e-2}


@pytest.fixture
def interpreter() -> Any:
    mtriton.set_backend("interpreter")
    try:
        yield "interpreter"
    finally:
        mtriton.set_backend(None)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backward's blocks at 16 and 32, the dK/dV and dQ kernels tiled differently, so the
    loops over query and key blocks run several steps and skip those outside causal/window."""
    config = {"dkdv_m": 16, "dkdv_n": 32, "dq_m": 32, "dq_n": 16, "num_warps": 4}
    monkeypatch.setattr(backward, "backward_config", lambda lq, lk, head_dim: dict(config))


# --------------------------------------------------------------------------- the reference


def attention(xp: Any, q: Any, k: Any, v: Any, sinks: Any, *, scale: float, causal: bool = False,
              window: int | None = None, mask: np.ndarray | None = None, keep: np.ndarray | None = None,
              dropout_p: float = 0.0) -> tuple[Any, Any]:  # fmt: skip
    """(out, lse) of attention in BHSD, for `xp` numpy or mlx.core (float64, on the CPU)."""
    lift = np.asarray if xp is np else mx.array
    batch, heads, lq, _ = q.shape
    kv_heads, lk = k.shape[1], k.shape[2]
    k, v = (xp.repeat(x, heads // kv_heads, axis=1) for x in (k, v))
    scores = (q @ xp.swapaxes(k, -1, -2)) * scale
    seen = np.broadcast_to(visible(lq, lk, causal, window), (batch, heads, lq, lk))
    if mask is not None and mask.dtype == bool:
        seen = seen & mask
    elif mask is not None:
        scores = scores + lift(mask)
    scores = xp.where(lift(seen), scores, -math.inf)
    if sinks is not None:
        sink_col = xp.broadcast_to(xp.reshape(sinks, (1, heads, 1, 1)), (batch, heads, lq, 1))
        scores = xp.concatenate([scores, sink_col], axis=-1)
    top = xp.max(scores, axis=-1, keepdims=True)
    top = xp.where(top == -math.inf, 0.0, top)
    if xp is mx:
        top = mx.stop_gradient(top)
    e = xp.exp(scores - top)
    denom = xp.sum(e, axis=-1, keepdims=True)
    safe = xp.where(denom == 0, 1.0, denom)
    p = (e / safe)[..., :lk]
    lse = xp.where(denom == 0, -math.inf, xp.log(safe) + top)[..., 0]
    if keep is not None:
        p = xp.where(lift(keep), p / (1.0 - dropout_p), 0.0)
    return p @ v, lse


def reference_grads(q: np.ndarray, k: np.ndarray, v: np.ndarray, sinks: np.ndarray | None,
                    d_out: np.ndarray, d_lse: np.ndarray, **kw: Any) -> tuple[list[np.ndarray], ...]:  # fmt: skip
    """([out, lse], [dq, dk, dv(, d_sinks)]) of `attention` by MLX autodiff in float64."""
    with mx.stream(mx.cpu):
        primals = [mx.array(x) for x in (q, k, v)] + ([] if sinks is None else [mx.array(sinks)])

        def fn(*args: mx.array) -> tuple[mx.array, mx.array]:
            return attention(mx, *args[:3], args[3] if sinks is not None else None, **kw)

        outs, grads = mx.vjp(fn, primals, [mx.array(d_out), mx.array(d_lse)])
        return [np.array(x) for x in outs], [np.array(g) for g in grads]


# --------------------------------------------------------------------------- inputs and checks


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def make_mask(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """A boolean mask (keep ~70%) or an additive one (~10% -inf); with 4 queries or more, query
    `empty_row(Lq)` is fully masked."""
    if kind == "none":
        return None
    if kind == "bool":
        mask = rng.random(shape) > 0.3
        fill = False
    else:
        mask = rng.standard_normal(shape)
        mask[rng.random(shape) < 0.1] = -math.inf
        fill = -math.inf
    if shape[2] >= 4:
        mask[..., empty_row(shape[2]), :] = fill
    return mask


def empty_row(lq: int) -> int:
    return lq // 2 + 1


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return x if layout == "BHSD" else np.ascontiguousarray(x.transpose(0, 2, 1, 3))


def kernel_grads(q: mx.array, k: mx.array, v: mx.array, sinks: mx.array | None, d_out: mx.array,
                 d_lse: mx.array | None, *, layout: str = "BHSD", mask: np.ndarray | None = None,
                 **kw: Any) -> tuple[list[mx.array], list[mx.array]]:  # fmt: skip
    """`mx.vjp` of `flash_attention` (with its lse when `d_lse` is given)."""
    primals = [q, k, v] + ([] if sinks is None else [sinks])
    mx_mask = None
    if mask is not None:
        mx_mask = mx.array(mask) if mask.dtype == bool else mx.array(mask.astype(np.float32))

    def fn(*args: mx.array) -> Any:
        return flash_attention(*args[:3], sinks=args[3] if sinks is not None else None, mask=mx_mask,
                               layout=layout, return_lse=d_lse is not None, **kw)  # fmt: skip

    cotangents = [d_out] if d_lse is None else [d_out, d_lse]
    outs, grads = mx.vjp(fn, primals, cotangents)
    mx.eval(outs, grads)
    return outs, grads


def assert_grads_close(grads: list[mx.array], expected: list[np.ndarray], dtype: mx.Dtype,
                       like: list[mx.array], layout: str = "BHSD") -> None:  # fmt: skip
    for name, got, want, primal in zip(("dq", "dk", "dv", "d_sinks"), grads, expected, like):
        assert got.dtype == primal.dtype and got.shape == primal.shape, name
        got = f64(got)
        if got.ndim == 4:
            got = to_layout(got, layout)  # BSHD <-> BHSD is its own inverse
        assert np.isfinite(got).all(), f"{name} has non-finite entries"
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, rtol=0, atol=GRAD_TOLERANCE[dtype] * scale, err_msg=name)


def check_case(rng: np.random.Generator, *, dtype: mx.Dtype = mx.float32, batch: int = 2, heads: int = 4,
               kv_heads: int = 4, lq: int = 37, lk: int = 50, head_dim: int = 32, causal: bool = False,
               window: int | None = None, mask_kind: str = "none", mask_shape: str = "b1",
               layout: str = "BHSD", sinks: bool = False, with_lse: bool = True,
               dropout_p: float = 0.0, direct: bool = False) -> list[mx.array]:  # fmt: skip
    """Runs one configuration through the kernels and the reference; returns the kernels' grads.

    Through `mx.vjp` of `flash_attention`, or with `direct` through `attention_backward` alone,
    given the reference's output and lse (no forward kernel: each forward specialization
    costs the module's nvcc check a second)."""
    q_np = f64(rand(rng, (batch, heads, lq, head_dim), dtype))
    k_np = f64(rand(rng, (batch, kv_heads, lk, head_dim), dtype))
    v_np = f64(rand(rng, (batch, kv_heads, lk, head_dim), dtype))
    d_out_np = f64(rand(rng, (batch, heads, lq, head_dim), dtype))
    d_lse_np = rng.standard_normal((batch, heads, lq)) if with_lse else np.zeros((batch, heads, lq))
    sinks_np = rng.standard_normal(heads) if sinks else None
    mask_dims = {"b1": (batch, 1, lq, lk), "1h": (1, heads, lq, lk), "full": (batch, heads, lq, lk)}
    mask = make_mask(rng, mask_kind, mask_dims[mask_shape])
    if mask is not None and mask.dtype != bool:
        mask = mask.astype(np.float32).astype(np.float64)
    scale = 1.0 / math.sqrt(head_dim)
    seed = int(rng.integers(0, 2**31 - 1))
    keep = dropout_keep(batch, heads, lq, lk, dropout_p, seed) if dropout_p else None

    def arr(x: np.ndarray) -> mx.array:
        return mx.array(to_layout(x, layout).astype(np.float32)).astype(dtype)

    q, k, v, d_out = (arr(x) for x in (q_np, k_np, v_np, d_out_np))
    sinks_mx = None if sinks_np is None else mx.array(sinks_np.astype(np.float32))
    if sinks_np is not None:
        sinks_np = sinks_np.astype(np.float32).astype(np.float64)
    d_lse = mx.array(d_lse_np.astype(np.float32)) if with_lse else None
    d_lse_np = d_lse_np.astype(np.float32).astype(np.float64)
    spec = dict(causal=causal, window=window)
    (out_ref, lse_ref), expected = reference_grads(
        q_np, k_np, v_np, sinks_np, d_out_np, d_lse_np, scale=scale, mask=mask, keep=keep,
        dropout_p=dropout_p, **spec,
    )  # fmt: skip
    if direct:
        mask_kinds = {"none": MASK_NONE, "bool": MASK_BOOL, "additive": MASK_ADDITIVE}
        attention_spec = AttentionSpec(scale, causal, window, mask_kinds[mask_kind], sinks, dropout_p, seed)
        mx_mask = None if mask is None else mx.array(mask if mask.dtype == bool else mask.astype(np.float32))
        lse = mx.array(lse_ref.astype(np.float32).reshape(batch * heads, lq))
        *grads, d_sinks = backward.attention_backward(
            q, k, v, mx_mask, sinks_mx, arr(out_ref), lse, d_out, d_lse, attention_spec, layout
        )
        grads += [] if d_sinks is None else [d_sinks]
    else:
        outs, grads = kernel_grads(q, k, v, sinks_mx, d_out, d_lse, layout=layout, mask=mask, scale=scale,
                                   dropout_p=dropout_p, seed=seed, **spec)  # fmt: skip
        # the forward the gradients belong to (loosely: the forward has its own tests)
        np.testing.assert_allclose(to_layout(f64(outs[0]), layout), out_ref, atol=20 * GRAD_TOLERANCE[dtype])
    like = [q, k, v] + ([] if sinks_mx is None else [sinks_mx])
    assert_grads_close(grads, expected, dtype, like, layout)
    return grads


# --------------------------------------------------------------------------- the dropout stream


def dropout_keep(batch: int, heads: int, lq: int, lk: int, dropout_p: float, seed: int) -> np.ndarray:
    """(B, H, Lq, Lk): which probabilities the forward kernel keeps, read from its output.

    With q = k = 0 every probability is 1 / Lk; values that are one-hot in 16 keys at a time
    copy 16 columns of the dropped probabilities into the output: non-zero where kept. The
    stream depends on (seed, b, h, i, j, H, Lk) only, not on the values or the head dim."""
    q = mx.zeros((batch, heads, lq, 16))
    k = mx.zeros((batch, heads, lk, 16))
    columns = []
    for start in range(0, lk, 16):
        onehot = (np.arange(lk)[:, None] == start + np.arange(16)[None, :]).astype(np.float32)
        v = mx.broadcast_to(mx.array(onehot), (batch, heads, lk, 16))
        out = flash_attention(q, k, v, dropout_p=dropout_p, seed=seed)
        columns.append(np.array(out)[..., : min(16, lk - start)])
    probs = np.concatenate(columns, axis=-1)
    kept = probs > 0
    np.testing.assert_allclose(probs[kept], 1.0 / (lk * (1.0 - dropout_p)), rtol=1e-5)
    return kept


# --------------------------------------------------------------------------- every backend


EVERY_BACKEND_CASES = {
    # causal GQA with a boolean mask (fully masked rows), float32 exact, lse cotangent
    "f32-causal-gqa-bool": dict(dtype=mx.float32, batch=1, kv_heads=2, causal=True, mask_kind="bool"),
    # half precision, head dim 80 (padded to 128), two-sided window, additive mask with -inf,
    # MQA, BSHD, sinks, no lse cotangent
    "f16-d80-window-additive-bshd-sinks": dict(
        dtype=mx.float16,
        batch=1,
        kv_heads=1,
        lq=20,
        lk=45,
        head_dim=80,
        window=9,
        mask_kind="additive",
        mask_shape="1h",
        layout="BSHD",
        sinks=True,
        with_lse=False,
    ),
    # bfloat16 causal sliding window with dropout
    "bf16-causal-window-dropout": dict(
        dtype=mx.bfloat16, batch=1, heads=2, kv_heads=2, lq=33, lk=40, causal=True, window=13, dropout_p=0.25
    ),
}


@pytest.mark.parametrize("case", EVERY_BACKEND_CASES)
def test_gradients_on_every_backend(backend: str, rng: np.random.Generator, case: str) -> None:
    check_case(rng, **EVERY_BACKEND_CASES[case])


def test_head_dim_256_on_every_backend(backend: str, rng: np.random.Generator) -> None:
    # Metal tiles 16x16 here (256 x 32 float32 staged per dot)
    check_case(rng, batch=1, heads=2, kv_heads=1, lq=19, lk=23, head_dim=256, causal=True)


def test_gqa_sums_are_deterministic(backend: str, rng: np.random.Generator) -> None:
    # dK and dV of a kv head sum its group's query heads in one program, in a fixed order
    # (the kernels of the "f32-causal-gqa-bool" case, compiled once)
    q, d_out = rand(rng, (1, 4, 37, 32)), rand(rng, (1, 4, 37, 32))
    k, v = rand(rng, (1, 2, 50, 32)), rand(rng, (1, 2, 50, 32))
    mask = make_mask(rng, "bool", (1, 1, 37, 50))
    d_lse = rand(rng, (1, 4, 37))
    runs = [kernel_grads(q, k, v, None, d_out, d_lse, mask=mask, causal=True)[1] for _ in range(2)]
    for first, second in zip(*runs):
        np.testing.assert_array_equal(np.array(first), np.array(second))


# --------------------------------------------------------------------------- the interpreter's matrix


@pytest.mark.parametrize("window", [None, 9])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
@pytest.mark.parametrize("causal", [False, True])
def test_masks_windows_gqa(
    interpreter: str, small_blocks: None, rng: np.random.Generator, causal: bool, kv_heads: int,
    mask_kind: str, window: int | None,
) -> None:  # fmt: skip
    check_case(rng, kv_heads=kv_heads, causal=causal, mask_kind=mask_kind, window=window, direct=True)


@pytest.mark.parametrize(("causal", "windowed"), [(True, False), (True, True), (False, True)])
def test_block_skipping_at_every_alignment(
    interpreter: str, small_blocks: None, rng: np.random.Generator, causal: bool, windowed: bool
) -> None:
    # The loops skip query (dK/dV) and key (dQ) blocks outside the causal/window ranges; an
    # off-by-one in a bound drops one block at one alignment only. Over r = 0..15, the offset
    # Lk - Lq = r and the window 3 + 2r give every residue mod 16 of Lk - Lq, window - (Lk - Lq)
    # and window + (Lk - Lq): the block edges of 16 and 32 meet each bound at each alignment,
    # with enough queries and keys that no bound is clamped to Lq or Lk first.
    for r in range(16):
        window = 3 + 2 * r if windowed else None
        check_case(rng, batch=1, heads=2, kv_heads=1, lq=100, lk=100 + r, causal=causal, window=window,
                   direct=True)  # fmt: skip


@pytest.mark.parametrize("head_dim", [32, 64, 80, 96, 128, 256])
def test_head_dims(interpreter: str, small_blocks: None, rng: np.random.Generator, head_dim: int) -> None:
    # half precision at padded and wide head dims runs in the every-backend and layout cases
    check_case(rng, kv_heads=2, head_dim=head_dim, causal=True, mask_kind="bool", direct=True)


@pytest.mark.parametrize(("causal", "window", "dtype"), [(False, None, mx.float32), (True, 11, mx.bfloat16)])
def test_bshd_layout(interpreter: str, small_blocks: None, rng: np.random.Generator, causal: bool,
                     window: int | None, dtype: mx.Dtype) -> None:  # fmt: skip
    check_case(rng, dtype=dtype, kv_heads=2, causal=causal, layout="BSHD", window=window, mask_kind="bool")


def test_default_blocks_several_steps(interpreter: str, rng: np.random.Generator) -> None:
    # 64-wide blocks over 150 keys and 130 queries: three key and three query blocks per row
    check_case(rng, batch=1, kv_heads=2, lq=130, lk=150, causal=True, window=70, mask_kind="additive")


@pytest.mark.filterwarnings("ignore:num_warps has no effect")  # CUDA's 8 warps, on the interpreter
def test_cuda_tiles_on_the_interpreter(
    interpreter: str, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    # CUDA's dK/dV tiles (32 queries x 64 keys) and dQ tiles (64 x 32) differ in shape; over
    # several blocks of each (the emulators run them on one block or two)
    monkeypatch.setattr(mtriton, "current_target", lambda: "cuda")
    check_case(rng, batch=1, kv_heads=2, lq=100, lk=150, causal=True, window=40, mask_kind="bool")
    check_case(rng, batch=1, kv_heads=1, lq=60, lk=70, head_dim=256, window=20)


@pytest.mark.parametrize("causal", [False, True])
def test_sinks(interpreter: str, small_blocks: None, rng: np.random.Generator, causal: bool) -> None:
    # the boolean mask's fully masked rows see only the sink: their lse is finite
    grads = check_case(rng, kv_heads=2, causal=causal, sinks=True, mask_kind="bool", direct=True)
    assert np.abs(np.array(grads[3])).min() > 0


@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_fully_masked_rows_get_zero_gradients(
    interpreter: str, small_blocks: None, rng: np.random.Generator, mask_kind: str
) -> None:
    # causal with more queries than keys: the first 13 queries come before every key; the mask
    # empties one more row. Their lse is -inf: nothing flows through them.
    grads = check_case(rng, kv_heads=2, lq=50, lk=37, causal=True, mask_kind=mask_kind, direct=True)
    dq = np.array(grads[0])
    np.testing.assert_array_equal(dq[:, :, :13], 0.0)
    np.testing.assert_array_equal(dq[:, :, empty_row(50)], 0.0)


def test_fully_masked_everything(interpreter: str, small_blocks: None, rng: np.random.Generator) -> None:
    q, k, v = rand(rng, (2, 4, 17, 32)), rand(rng, (2, 2, 20, 32)), rand(rng, (2, 2, 20, 32))
    mask = mx.zeros((2, 1, 17, 20), dtype=mx.bool_)
    # the lse of these rows is the constant -inf: even a NaN cotangent of it moves nothing
    # (chunked cross-attention's merge gives one: exp(lse - new_lse) at -inf - -inf)
    d_out, d_lse = rand(rng, (2, 4, 17, 32)), mx.full((2, 4, 17), math.nan)
    (out, lse), grads = mx.vjp(
        lambda q, k, v: flash_attention(q, k, v, mask=mask, return_lse=True), [q, k, v], [d_out, d_lse]
    )
    assert (np.array(lse) == -math.inf).all() and (np.array(out) == 0).all()
    for grad in grads:
        np.testing.assert_array_equal(np.array(grad), 0.0)


@pytest.mark.parametrize("dropout_p", [0.1, 0.5])
@pytest.mark.parametrize("kv_heads", [2, 1])
def test_dropout(interpreter: str, small_blocks: None, rng: np.random.Generator, kv_heads: int,
                 dropout_p: float) -> None:  # fmt: skip
    check_case(rng, kv_heads=kv_heads, causal=True, mask_kind="bool", dropout_p=dropout_p)


def test_dropout_mask_depends_on_seed_batch_and_head(interpreter: str) -> None:
    keep = dropout_keep(2, 3, 19, 40, 0.5, seed=1234)
    assert abs(keep.mean() - 0.5) < 0.05
    flat = keep.reshape(6, -1)
    assert all((flat[i] != flat[j]).any() for i in range(6) for j in range(i))
    assert (dropout_keep(2, 3, 19, 40, 0.5, seed=1235) != keep).any()


def test_decode_path(interpreter: str, rng: np.random.Generator) -> None:
    # one query against 300 keys: the forward takes the split-KV decode path; its lse serves
    check_case(rng, kv_heads=1, lq=1, lk=300, causal=True, window=100, mask_kind="additive",
               mask_shape="full", sinks=True)  # fmt: skip


def test_finite_differences(interpreter: str, rng: np.random.Generator) -> None:
    """Every gradient entry against central differences of the NumPy float64 reference, and
    directional differences of the kernel's own float32 forward."""
    batch, heads, kv_heads, lq, lk, head_dim, window = 1, 2, 1, 5, 9, 8, 6
    spec = dict(scale=0.4, causal=True, window=window)
    q, k, v = (
        f64(rand(rng, s)) for s in [(batch, heads, lq, head_dim)] + [(batch, kv_heads, lk, head_dim)] * 2
    )
    sinks = f64(rand(rng, (heads,)))
    mask = f64(rand(rng, (batch, 1, lq, lk)))
    d_out, d_lse = f64(rand(rng, q.shape)), f64(rand(rng, (batch, heads, lq)))
    primals = [q, k, v, sinks]

    def loss(args: list[np.ndarray]) -> float:
        out, lse = attention(np, *args, mask=mask, **spec)
        return float((out * d_out).sum() + (lse * d_lse).sum())

    step = 1e-6
    numeric = []
    for x in primals:
        grad = np.zeros_like(x)
        for index in np.ndindex(x.shape):
            saved = x[index]
            x[index] = saved + step
            up = loss(primals)
            x[index] = saved - step
            grad[index] = (up - loss(primals)) / (2 * step)
            x[index] = saved
        numeric.append(grad)

    arrays = [mx.array(x.astype(np.float32)) for x in primals]
    mx_mask = mx.array(mask.astype(np.float32))
    cotangents = [mx.array(d_out.astype(np.float32)), mx.array(d_lse.astype(np.float32))]

    def fn(q: mx.array, k: mx.array, v: mx.array, s: mx.array) -> Any:
        return flash_attention(q, k, v, mask=mx_mask, sinks=s, return_lse=True, **spec)

    _, grads = mx.vjp(fn, arrays, cotangents)
    for name, got, want in zip(("dq", "dk", "dv", "d_sinks"), grads, numeric):
        np.testing.assert_allclose(f64(got), want, rtol=1e-4, atol=1e-5, err_msg=name)

    def kernel_loss(args: list[mx.array]) -> float:
        out, lse = fn(*args)
        return float((out * cotangents[0]).sum() + (lse * cotangents[1]).sum())

    eps = 1e-2
    for i, (x, grad) in enumerate(zip(arrays, grads)):
        direction = rand(rng, x.shape)
        up = [a + eps * direction if j == i else a for j, a in enumerate(arrays)]
        down = [a - eps * direction if j == i else a for j, a in enumerate(arrays)]
        slope = (kernel_loss(up) - kernel_loss(down)) / (2 * eps)
        assert slope == pytest.approx(float((grad * direction).sum()), rel=2e-3, abs=2e-3)


# --------------------------------------------------------------------------- through the lse


def test_lse_cotangent_alone(interpreter: str, small_blocks: None, rng: np.random.Generator) -> None:
    # a loss of the lse only: dS = P * d_lse, delta = -d_lse, no output cotangent
    q, k, v = rand(rng, (2, 4, 37, 32)), rand(rng, (2, 2, 50, 32)), rand(rng, (2, 2, 50, 32))
    d_lse = rand(rng, (2, 4, 37))
    _, grads = mx.vjp(lambda q, k, v: flash_attention(q, k, v, causal=True, return_lse=True)[1],
                      [q, k, v], [d_lse])  # fmt: skip
    _, expected = reference_grads(f64(q), f64(k), f64(v), None, np.zeros(q.shape), f64(d_lse),
                                  scale=1 / math.sqrt(32), causal=True)  # fmt: skip
    assert_grads_close(grads, expected, mx.float32, [q, k, v])
    np.testing.assert_array_equal(np.array(grads[2]), 0.0)  # v does not enter the lse


@pytest.mark.parametrize(("mask_kind", "layout"), [("none", "BHSD"), ("bool", "BSHD")])
def test_chunked_cross_attention_gradients(
    interpreter: str, small_blocks: None, rng: np.random.Generator, mask_kind: str, layout: str
) -> None:
    # the chunks' outputs merge through their lse: their gradients must equal full attention's,
    # with no NaN from rows that see no key in some chunk or in all of them
    batch, heads, kv_heads, lq, lk, head_dim = 2, 4, 2, 23, 70, 32
    shapes = [(batch, heads, lq, head_dim)] + [(batch, kv_heads, lk, head_dim)] * 2
    q_np, k_np, v_np = (f64(rand(rng, s)) for s in shapes)
    d_out_np = f64(rand(rng, shapes[0]))
    mask = make_mask(rng, mask_kind, (batch, 1, lq, lk))
    if mask is not None:
        mask[..., 7, :30] = False  # query 7 sees nothing in the first chunk
    q, k, v, d_out = (mx.array(to_layout(x, layout).astype(np.float32)) for x in (q_np, k_np, v_np, d_out_np))
    mx_mask = None if mask is None else mx.array(mask)
    fn: Callable[..., mx.array] = lambda q, k, v: chunked_cross_attention(  # noqa: E731
        q, k, v, chunk_size=30, mask=mx_mask, layout=layout
    )
    out, grads = mx.vjp(fn, [q, k, v], [d_out])
    (out_ref, _), expected = reference_grads(q_np, k_np, v_np, None, d_out_np, np.zeros((batch, heads, lq)),
                                             scale=1 / math.sqrt(head_dim), mask=mask)  # fmt: skip
    np.testing.assert_allclose(to_layout(f64(out[0]), layout), out_ref, atol=1e-5)
    assert_grads_close(grads, expected, mx.float32, [q, k, v], layout)
