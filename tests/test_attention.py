"""The attention family's forward pass against a float64 NumPy reference (tests/attention_np.py).

The broad matrix (causal x GQA x mask kind x window x dtype x head dim, odd lengths that are not
multiples of the blocks, Lq < Lk) runs on the interpreter; the emulators run a chosen slice of
it, since each kernel specialization compiles for seconds there. Gradients are in
test_attention_backward.py.
"""

from __future__ import annotations

import math
import re

import mlx.core as mx
import numpy as np
import pytest
from attention_np import attention64, f64
from conftest import EMULATORS
from mlx_primitives import attention
from mlx_primitives.attention import backward, forward
from test_codegen import GOLDEN
from test_random import randint4x_reference, uniform_reference

import mtriton
from mtriton import options

TOL = {mx.float32: 2e-5, mx.float16: 4e-3, mx.bfloat16: 3e-2}


def rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


def qkv(
    rng: np.random.Generator, batch: int, heads: int, kv_heads: int, lq: int, lk: int, d: int,
    dtype: mx.Dtype = mx.float32, layout: str = "BHSD",
) -> tuple[mx.array, mx.array, mx.array]:  # fmt: skip
    def shape(h: int, s: int) -> tuple[int, ...]:
        return (batch, h, s, d) if layout == "BHSD" else (batch, s, h, d)

    return (
        rand(rng, shape(heads, lq), dtype),
        rand(rng, shape(kv_heads, lk), dtype),
        rand(rng, shape(kv_heads, lk), dtype),
    )


def assert_close(out: mx.array, expected: np.ndarray, dtype: mx.Dtype) -> None:
    got = f64(out)
    assert not np.isnan(got).any(), "NaN in the output"
    np.testing.assert_allclose(got, expected, rtol=TOL[dtype], atol=TOL[dtype])


def make_mask(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> mx.array | None:
    if kind == "none":
        return None
    if kind == "bool":
        keep = rng.random(shape) > 0.3
        keep[..., 0] = True  # masked rows have their own test
        return mx.array(keep)
    return mx.array(rng.standard_normal(shape).astype(np.float32))


# --------------------------------------------------------------------------- forward, every option

# (batch, heads, kv_heads, Lq, Lk, head_dim)
SHAPES = [(2, 4, 4, 37, 37, 32), (1, 4, 2, 37, 50, 64), (1, 4, 1, 70, 70, 80), (2, 2, 1, 21, 33, 96)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive"])
def test_forward_matrix_interpreter(
    rng: np.random.Generator, shape: tuple[int, ...], causal: bool, mask_kind: str
) -> None:
    mtriton.set_backend("interpreter")
    try:
        batch, heads, kv_heads, lq, lk, d = shape
        q, k, v = qkv(rng, *shape)
        # mask broadcasts over batch for bool, over heads for additive
        mask = make_mask(rng, mask_kind, (1, heads, lq, lk) if mask_kind == "bool" else (batch, 1, lq, lk))
        out, lse = attention.flash_attention(q, k, v, causal=causal, mask=mask, return_lse=True)
        ref, ref_lse = attention64(q, k, v, causal=causal, mask=mask)
        assert_close(out, ref, mx.float32)
        np.testing.assert_allclose(f64(lse), ref_lse, rtol=1e-5, atol=1e-5)
    finally:
        mtriton.set_backend(None)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16], ids=str)
@pytest.mark.parametrize("window, causal", [(None, True), (9, True), (9, False)])
def test_forward_on_every_backend(
    backend: str, rng: np.random.Generator, dtype: mx.Dtype, window: int | None, causal: bool
) -> None:
    shape = (1, 4, 2, 37, 45, 64)
    q, k, v = qkv(rng, *shape, dtype=dtype)
    out = attention.flash_attention(q, k, v, causal=causal, window=window)
    assert out.dtype == dtype and out.shape == q.shape
    assert_close(out, attention64(q, k, v, causal=causal, window=window)[0], dtype)


@pytest.mark.parametrize("mask_kind", ["bool", "additive"])
def test_masks_and_sinks_on_every_backend(backend: str, rng: np.random.Generator, mask_kind: str) -> None:
    q, k, v = qkv(rng, 2, 2, 1, 19, 40, 32)
    mask = make_mask(rng, mask_kind, (19, 40))  # 2-D: broadcasts over batch and heads
    sinks = rand(rng, (2,))
    out = attention.flash_attention(q, k, v, causal=True, mask=mask, sinks=sinks)
    assert_close(out, attention64(q, k, v, causal=True, mask=mask, sinks=sinks)[0], mx.float32)


@pytest.mark.parametrize("d", [32, 64, 80, 96, 128, 256])
def test_head_dims(rng: np.random.Generator, d: int) -> None:
    mtriton.set_backend("interpreter")
    try:
        q, k, v = qkv(rng, 1, 2, 1, 33, 41, d, dtype=mx.float16)
        out = attention.flash_attention(q, k, v, causal=True)
        assert_close(out, attention64(q, k, v, causal=True)[0], mx.float16)
    finally:
        mtriton.set_backend(None)


@pytest.mark.parametrize("d", [128, 256])
def test_large_head_dims_on_the_emulators(rng: np.random.Generator, d: int) -> None:
    for name in EMULATORS:
        mtriton.set_backend(name)
        try:
            q, k, v = qkv(rng, 1, 1, 1, 20, 35, d, dtype=mx.bfloat16)
            assert_close(attention.flash_attention(q, k, v), attention64(q, k, v)[0], mx.bfloat16)
        finally:
            mtriton.set_backend(None)


def test_bshd_layout(backend: str, rng: np.random.Generator) -> None:
    q, k, v = qkv(rng, 2, 4, 2, 23, 30, 32, layout="BSHD")
    out = attention.flash_attention(q, k, v, causal=True, layout="BSHD")
    assert out.shape == q.shape
    assert_close(out, attention64(q, k, v, causal=True, layout="BSHD")[0], mx.float32)


def test_fully_masked_rows_are_zero(backend: str, rng: np.random.Generator) -> None:
    # bool mask rows all False, and causal queries before the first key (Lq > Lk)
    q, k, v = qkv(rng, 1, 2, 2, 24, 20, 32)
    keep = rng.random((24, 20)) > 0.5
    keep[3] = False
    out, lse = attention.flash_attention(q, k, v, causal=True, mask=mx.array(keep), return_lse=True)
    got, got_lse = f64(out), f64(lse)
    assert not np.isnan(got).any()
    assert (got[:, :, :4] == 0).all()  # rows 0-3 see no key: 0-2 precede it, 3 is masked
    assert np.isneginf(got_lse[:, :, :4]).all()
    ref, ref_lse = attention64(q, k, v, causal=True, mask=mx.array(keep))
    assert_close(out, ref, mx.float32)
    np.testing.assert_allclose(got_lse[:, :, 4:], ref_lse[:, :, 4:], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- decode


@pytest.mark.parametrize("lq", [1, 3, 8])
def test_decode_split_kv(backend: str, rng: np.random.Generator, lq: int) -> None:
    # GQA 4/1 at Lq = 1: one program serves the group; Lk past the split threshold, ragged
    q, k, v = qkv(rng, 2, 4, 1, lq, 301, 64)
    sinks = rand(rng, (4,))
    assert lq <= forward.DECODE_MAX_QUERIES
    out, lse = attention.flash_attention(q, k, v, causal=True, sinks=sinks, return_lse=True)
    ref, ref_lse = attention64(q, k, v, causal=True, sinks=sinks)
    assert_close(out, ref, mx.float32)
    np.testing.assert_allclose(f64(lse), ref_lse, rtol=1e-5, atol=1e-5)


def test_decode_path_choice(rng: np.random.Generator) -> None:
    spec = attention.AttentionSpec(scale=1.0)
    q, k, _ = qkv(rng, 1, 8, 2, 1, 512, 32)
    assert forward.takes_decode_path(q, k, spec, "BHSD")
    assert not forward.takes_decode_path(q, k, attention.AttentionSpec(scale=1.0, dropout_p=0.1), "BHSD")
    q, k, _ = qkv(rng, 1, 8, 2, 9, 512, 32)
    assert not forward.takes_decode_path(q, k, spec, "BHSD")


def test_decode_with_window_and_mask(rng: np.random.Generator) -> None:
    mtriton.set_backend("interpreter")
    try:
        q, k, v = qkv(rng, 1, 4, 2, 4, 700, 80)
        mask = make_mask(rng, "additive", (1, 4, 4, 700))
        out = attention.flash_attention(q, k, v, causal=True, window=100, mask=mask)
        assert_close(out, attention64(q, k, v, causal=True, window=100, mask=mask)[0], mx.float32)
    finally:
        mtriton.set_backend(None)


# --------------------------------------------------------------------------- the SDPA drop-in


@pytest.mark.parametrize("mask", [None, "causal", "bool", "additive"])
def test_sdpa_matches_mlx(rng: np.random.Generator, mask: str | None) -> None:
    mtriton.set_backend("interpreter")
    try:
        q, k, v = qkv(rng, 2, 8, 2, 13, 29, 64)
        m = mask if mask in (None, "causal") else make_mask(rng, mask, (2, 1, 13, 29))
        sinks = rand(rng, (8,))
        for s in (None, sinks):
            ours = attention.scaled_dot_product_attention(q, k, v, scale=0.2, mask=m, sinks=s)
            theirs = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.2, mask=m, sinks=s)
            np.testing.assert_allclose(f64(ours), f64(theirs), rtol=2e-5, atol=2e-5)
    finally:
        mtriton.set_backend(None)


def test_sdpa_in_an_mlx_lm_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny random Llama (mlx-lm, built locally) gives the same logits with our SDPA, for a
    prefill and two decode steps against its KV cache."""
    llama = pytest.importorskip("mlx_lm.models.llama")
    from mlx_lm.models.cache import make_prompt_cache

    mtriton.set_backend("interpreter")
    try:
        args = llama.ModelArgs(
            model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=96,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=97,
        )  # fmt: skip
        mx.random.seed(0)
        model = llama.Model(args)
        tokens = mx.array([[5, 17, 3, 88, 42, 9, 60, 1, 2, 70, 33]])

        def run() -> list[np.ndarray]:
            cache = make_prompt_cache(model)
            logits = [model(tokens, cache=cache)]
            for t in (7, 11):
                logits.append(model(mx.array([[t]]), cache=cache))
            return [f64(x) for x in logits]

        expected = run()
        calls = []

        def ours(queries, keys, values, cache, scale, mask, sinks=None):  # type: ignore[no-untyped-def]
            calls.append(mask if isinstance(mask, str) else type(mask).__name__)
            return attention.scaled_dot_product_attention(
                queries, keys, values, scale=scale, mask=mask, sinks=sinks
            )

        monkeypatch.setattr(llama, "scaled_dot_product_attention", ours)
        for got, want in zip(run(), expected):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        assert len(calls) == 3 * args.num_hidden_layers
    finally:
        mtriton.set_backend(None)


# --------------------------------------------------------------------------- sliding window, chunked


@pytest.mark.parametrize("window", [1, 16, 33])
def test_sliding_window_matches_mlx_lm_masks(rng: np.random.Generator, window: int) -> None:
    """The window convention is mlx-lm's: create_causal_mask(N, offset, window_size)."""
    base = pytest.importorskip("mlx_lm.models.base")
    mtriton.set_backend("interpreter")
    try:
        for lq, offset in ((50, 0), (7, 60)):  # a prefill, and a chunk against a cache
            q, k, v = qkv(rng, 1, 2, 1, lq, lq + offset, 32)
            mask = base.create_causal_mask(lq, offset, window_size=window)
            theirs = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.25, mask=mask)
            ours = attention.sliding_window_attention(q, k, v, window, scale=0.25)
            np.testing.assert_allclose(f64(ours), f64(theirs), rtol=2e-5, atol=2e-5)
    finally:
        mtriton.set_backend(None)


def test_sliding_window_on_every_backend(backend: str, rng: np.random.Generator) -> None:
    q, k, v = qkv(rng, 1, 2, 2, 70, 70, 32, dtype=mx.float16, layout="BSHD")
    out = attention.SlidingWindowAttention(2, 32, window_size=20)(q, k, v)
    assert_close(out, attention64(q, k, v, causal=True, window=20, layout="BSHD")[0], mx.float16)


def test_sliding_window_skips_blocks(backend: str, rng: np.random.Generator) -> None:
    """O(n * w) work: keys in blocks before the window are never read. 64 queries at the end of
    1024 keys with w = 64 see keys 897 and up; keys below 832 (a multiple of every block size)
    are NaN, which any visit would spread into the output (0 * NaN in the second product)."""
    q, k, v = qkv(rng, 1, 1, 1, 64, 1024, 32)
    ref = attention64(q, k, v, causal=True, window=64)[0]
    poison = mx.array((np.arange(1024) < 832)[None, None, :, None])
    k, v = (mx.where(poison, float("nan"), x) for x in (k, v))
    assert_close(attention.sliding_window_attention(q, k, v, 64), ref, mx.float32)


@pytest.mark.parametrize("mask_kind", ["none", "bool"])
def test_chunked_cross_attention_equals_full(backend: str, rng: np.random.Generator, mask_kind: str) -> None:
    q, k, v = qkv(rng, 1, 2, 1, 9, 150, 32)
    mask = make_mask(rng, mask_kind, (1, 1, 9, 150))
    out = attention.chunked_cross_attention(q, k, v, chunk_size=64, mask=mask)
    assert_close(out, attention64(q, k, v, mask=mask)[0], mx.float32)


def test_chunked_cross_attention_module(rng: np.random.Generator) -> None:
    mtriton.set_backend("interpreter")
    try:
        q, k, v = qkv(rng, 2, 3, 3, 17, 333, 64, layout="BSHD")
        out = attention.ChunkedCrossAttention(3, 64, chunk_size=100)(q, k, v)
        assert_close(out, attention64(q, k, v, layout="BSHD")[0], mx.float32)
    finally:
        mtriton.set_backend(None)


# --------------------------------------------------------------------------- dropout


def keep_mask(dropout_p: float, seed: int, heads: int = 2, n: int = 64) -> np.ndarray:
    """The kernel's keep mask, read back exactly: with q = 0 every probability is 1/n, and with
    v = I the output row is keep / ((1 - p) n)."""
    q = k = mx.zeros((1, heads, n, n))
    v = mx.broadcast_to(mx.eye(n), (1, heads, n, n))
    out = f64(attention.flash_attention(q, k, v, dropout_p=dropout_p, seed=seed)) * (1 - dropout_p) * n
    assert np.allclose(out, np.round(out), atol=1e-4)
    return np.round(out).astype(bool)


def test_dropout_is_triton_philox(backend: str) -> None:
    """The keep mask is rand(seed + (b*H+h) << 32, i * Lk + j) > p, bit for bit."""
    seed, p, n = 1234, 0.25, 64
    keep = keep_mask(p, seed, n=n)
    offsets = np.arange(n * n)
    for h in range(2):
        bits = randint4x_reference(seed + (h << 32), offsets)[0]
        expected = (uniform_reference(bits) > p).reshape(n, n)
        np.testing.assert_array_equal(keep[0, h], expected)


def test_dropout_rate_and_seeds() -> None:
    mtriton.set_backend("interpreter")
    try:
        for p in (0.1, 0.5, 0.8):
            keep = keep_mask(p, seed=7, heads=4)
            n = keep.size
            assert abs(keep.mean() - (1 - p)) < 4 * math.sqrt(p * (1 - p) / n)
        np.testing.assert_array_equal(keep_mask(0.3, seed=1), keep_mask(0.3, seed=1))
        assert (keep_mask(0.3, seed=1) != keep_mask(0.3, seed=2)).mean() > 0.2
    finally:
        mtriton.set_backend(None)


def test_dropout_output(backend: str, rng: np.random.Generator) -> None:
    q, k, v = qkv(rng, 1, 2, 2, 64, 64, 64)
    keep = keep_mask(0.2, seed=99)
    out = attention.flash_attention(q, k, v, causal=True, dropout_p=0.2, seed=99)
    assert_close(out, attention64(q, k, v, causal=True, keep=keep, dropout_p=0.2)[0], mx.float32)


def test_flash_attention_module_quick_start() -> None:
    mtriton.set_backend("interpreter")
    try:
        q = k = v = mx.random.normal((2, 40, 12, 64))
        layer = attention.FlashAttention(num_heads=12, head_dim=64, causal=True, dropout_p=0.5)
        layer.eval()  # dropout only in training mode
        out = layer(q, k, v)
        assert out.shape == (2, 40, 12, 64)
        assert_close(out, attention64(q, k, v, causal=True, layout="BSHD")[0], mx.float32)
        layer.train()
        assert not np.allclose(f64(layer(q, k, v)), f64(out))
    finally:
        mtriton.set_backend(None)


# --------------------------------------------------------------------------- memory and code


def test_peak_memory_grows_linearly() -> None:
    """Peak memory on the CPU at Lq = Lk = 2k, 4k, 8k: doubling L doubles it (a stored score
    matrix would quadruple it: 256 MB at 8k for one head)."""
    mtriton.set_backend("interpreter")
    try:
        with mx.stream(mx.cpu):  # on a GPU machine too (there MLX's GPU allocator gave 3.3x)
            peaks = _peaks((2048, 4096, 8192))
        assert peaks[1] / peaks[0] < 2.6 and peaks[2] / peaks[1] < 2.6, peaks
        assert peaks[2] < 64 * 8192 * 64 * 4, peaks  # far below the 256 MB score matrix
    finally:
        mtriton.set_backend(None)


def _peaks(lengths: tuple[int, ...]) -> list[int]:
    """Peak memory of a causal flash_attention call above what its inputs hold, per length."""
    peaks = []
    for n in lengths:
        q, k, v = (mx.random.normal((1, 1, n, 64)) for _ in range(3))
        mx.eval(q, k, v)
        mx.reset_peak_memory()
        base = mx.get_active_memory()
        mx.eval(attention.flash_attention(q, k, v, causal=True))
        peaks.append(mx.get_peak_memory() - base)
    return peaks


@pytest.mark.parametrize(
    "kernel, products",
    [("_attention_fwd_kernel", 2), ("_attention_bwd_dkdv_kernel", 4), ("_attention_bwd_dq_kernel", 2)],
)
def test_metal_uses_simdgroup_matrices_for_every_product(kernel: str, products: int) -> None:
    """The emitted Metal of the forward and backward kernels runs every tl.dot on simdgroup
    matrices (golden files: MTRITON_UPDATE_GOLDEN=1 rewrites them)."""
    jit = getattr(forward if kernel.startswith("_attention_fwd") else backward, kernel)
    mtriton.set_backend("metal-emu")
    try:
        jit.cache.clear()
        q = k = v = mx.zeros((1, 2, 64, 64), dtype=mx.float16)
        mx.eval(mx.vjp(lambda a, b, c: attention.flash_attention(a, b, c, causal=True), [q, k, v], [q])[1])
        (entry,) = jit.cache.values()
        text = entry.asm["metal"]
    finally:
        mtriton.set_backend(None)
    assert len(re.findall(r"simdgroup_multiply_accumulate", text)) >= products
    path = GOLDEN / f"{kernel.lstrip('_')}.metal"
    if options.update_golden():
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed; rerun with MTRITON_UPDATE_GOLDEN=1 if intended"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"q": (1, 2, 8, 512)}, ValueError, r"\[flash_attention\] q has head_dim 512; supported: 1 to 256"),
        (
            {"k": (1, 3, 8, 32), "v": (1, 3, 8, 32)},
            ValueError,
            r"k has 3 heads; expected a divisor of q's 2 heads",
        ),
        ({"k": (2, 2, 8, 32), "v": (2, 2, 8, 32)}, ValueError, r"k has batch 2; expected 1 to match q"),
        ({"q": (2, 8, 32)}, ValueError, r"q has shape \(2, 8, 32\); expected 4 axes"),
        (
            {"v": (1, 2, 9, 32)},
            ValueError,
            r"v has shape \(1, 2, 9, 32\); expected \(1, 2, 8, 32\) to match k",
        ),
        ({"dtype": mx.int32}, TypeError, r"q has dtype int32; supported: float32, float16, bfloat16"),
        ({"k_dtype": mx.float16}, TypeError, r"k has dtype float16; expected float32 to match q"),
        (
            {"mask": mx.zeros((3, 8))},
            ValueError,
            r"mask has shape \(3, 8\); expected a shape that broadcasts",
        ),
        ({"mask": mx.zeros((8, 8), dtype=mx.int32)}, TypeError, r"mask has dtype int32; expected bool"),
        ({"layout": "BHDS"}, ValueError, r"layout is 'BHDS'; expected one of BHSD, BSHD"),
        ({"window": 0}, ValueError, r"window is 0; expected a positive int"),
        ({"dropout_p": 1.0}, ValueError, r"dropout_p is 1.0; expected 0 <= dropout_p < 1"),
        ({"sinks": mx.zeros((3,))}, ValueError, r"sinks has shape \(3,\); expected \(2,\)"),
    ],
)
def test_errors(change: dict, error: type, message: str) -> None:
    dtype = change.pop("dtype", mx.float32)
    k_dtype = change.pop("k_dtype", dtype)
    q = mx.zeros(change.pop("q", (1, 2, 8, 32)), dtype=dtype)
    k = mx.zeros(change.pop("k", (1, 2, 8, 32)), dtype=k_dtype)
    v = mx.zeros(change.pop("v", (1, 2, 8, 32)), dtype=k_dtype)
    with pytest.raises(error, match=message):
        attention.flash_attention(q, k, v, **change)


def test_sdpa_and_module_errors() -> None:
    q = mx.zeros((1, 2, 8, 32))
    with pytest.raises(ValueError, match=r"\[scaled_dot_product_attention\] mask is 'causl'"):
        attention.scaled_dot_product_attention(q, q, q, scale=1.0, mask="causl")
    with pytest.raises(
        ValueError, match=r"\[FlashAttention\] q has shape \(1, 2, 8, 32\); expected 4 heads of 32"
    ):
        attention.FlashAttention(4, 32)(q, q, q)
    with pytest.raises(ValueError, match=r"\[sliding_window_attention\] window_size is 0"):
        attention.sliding_window_attention(q, q, q, 0)
    with pytest.raises(ValueError, match=r"\[chunked_cross_attention\] chunk_size is -1"):
        attention.chunked_cross_attention(q, q, q, chunk_size=-1)
