"""mlx_primitives.cache with stock mlx-lm models: tokens and logits against mlx-lm's own caches,
the paged pool's sharing, copy-on-write, limits and eviction, save/load and batching.

The models are tiny random Llama and Qwen3 (GQA) networks built here from mlx-lm's classes.
"""

from __future__ import annotations

import sys

import mlx.core as mx
import numpy as np
import pytest
from lm_models import MODELS, VOCAB, skip_where_mlx_cannot_quantize, tiny_llama
from mlx_lm.generate import BatchGenerator, generate_step
from mlx_lm.models import cache as lm_cache
from mlx_primitives import cache as C


@pytest.fixture(params=list(MODELS), scope="module")
def model(request: pytest.FixtureRequest):
    mx.random.seed(sum(map(ord, request.param)))
    net = MODELS[request.param]()
    mx.eval(net.parameters())
    return net


@pytest.fixture
def prompt(rng: np.random.Generator) -> list[int]:
    return rng.integers(0, VOCAB, 37).tolist()


def _greedy(model, prompt: list[int], cache: list, n: int = 24) -> list[int]:
    steps = generate_step(mx.array(prompt), model, prompt_cache=cache, max_tokens=n)
    return [int(token) for (token, _), _ in zip(steps, range(n))]


def _logits(model, cache: list, tokens: list[int]) -> np.ndarray:
    return np.array(model(mx.array([tokens]), cache=cache)[0].astype(mx.float32))


def _pool(model, **options) -> C.BlockPool:
    layers, kv_heads, head_dim, dtype = C.model_kv_shape(model)
    return C.BlockPool(layers, kv_heads, head_dim, dtype, **options)


# --------------------------------------------------------------------------- against mlx-lm


@pytest.mark.parametrize(
    "kind, options", [("kv", {}), ("rotating", {"max_size": 128}), ("paged", {"num_blocks": 8})]
)
def test_greedy_tokens_match_mlx_lm(model, prompt: list[int], kind: str, options: dict) -> None:
    expected = _greedy(model, prompt, [lm_cache.KVCache() for _ in model.layers])
    assert _greedy(model, prompt, C.make_cache(model, kind, **options)) == expected


def test_rotating_matches_mlx_lm_past_the_window(model, prompt: list[int]) -> None:
    """Decoding past max_size, the window and the sinks are mlx-lm's: same logits and tokens.
    (A prompt longer than the window differs on purpose: see RotatingKVCache.)"""
    ours = C.make_cache(model, "rotating", max_size=24, keep=4)
    theirs = [lm_cache.RotatingKVCache(24, keep=4) for _ in model.layers]
    np.testing.assert_allclose(
        _logits(model, ours, prompt[:20]), _logits(model, theirs, prompt[:20]), atol=1e-5
    )
    for token in prompt[20:]:  # decode: 17 steps, through the window's edge
        np.testing.assert_allclose(_logits(model, ours, [token]), _logits(model, theirs, [token]), atol=1e-5)
    assert ours[0].keys.shape[2] == 23 and ours[0].offset == 37
    # a prompt inside the window, then decoding far past it
    ours, theirs = (
        C.make_cache(model, "rotating", max_size=24, keep=4),
        [lm_cache.RotatingKVCache(24, keep=4) for _ in model.layers],
    )
    assert _greedy(model, prompt[:20], ours, 30) == _greedy(model, prompt[:20], theirs, 30)


def test_paged_logits_match_contiguous(model, prompt: list[int]) -> None:
    """Prefill in uneven chunks (crossing block edges), then decode: float32 within 1e-5."""
    paged, plain = C.make_cache(model, "paged", num_blocks=6), C.make_cache(model, "kv")
    for chunk in (prompt[:5], prompt[5:30], prompt[30:], [3], [7], [11]):
        np.testing.assert_allclose(
            _logits(model, paged, chunk), _logits(model, plain, chunk), rtol=1e-5, atol=1e-5
        )
    assert paged[0].offset == plain[0].offset == 40
    assert len(paged[0].block_table()) == 3 and paged[0].context_len == 40


def test_quantized_error_matches_mlx_lm(model, prompt: list[int]) -> None:
    """4-bit keys and values: the logits' error against the float cache is mlx-lm's own."""
    skip_where_mlx_cannot_quantize("quantized")
    full = _logits(model, C.make_cache(model, "kv"), prompt)
    ours_cache = C.make_cache(model, "quantized", group_size=32, bits=4)
    theirs_cache = [lm_cache.QuantizedKVCache(group_size=32, bits=4) for _ in model.layers]
    ours, theirs = _logits(model, ours_cache, prompt), _logits(model, theirs_cache, prompt)
    ours_err, theirs_err = np.abs(ours - full).max(), np.abs(theirs - full).max()
    assert ours_err <= theirs_err * 1.01 + 1e-6
    np.testing.assert_allclose(_logits(model, ours_cache, [5]), _logits(model, theirs_cache, [5]), atol=1e-5)
    plain = C.make_cache(model, "kv")
    _logits(model, plain, prompt)
    assert ours_cache[0].nbytes < plain[0].nbytes / 4
    # generate_step(kv_bits=...) turns our KVCache into our QuantizedKVCache, as mlx-lm's own
    ours = _greedy_kv_bits(model, prompt, C.make_cache(model, "kv"))
    assert ours == _greedy_kv_bits(model, prompt, [lm_cache.KVCache() for _ in model.layers])


def _greedy_kv_bits(model, prompt: list[int], cache: list, n: int = 12) -> list[int]:
    steps = generate_step(
        mx.array(prompt),
        model,
        prompt_cache=cache,
        max_tokens=n,
        kv_bits=4,
        kv_group_size=32,
        quantized_kv_start=0,
    )
    tokens = [int(token) for (token, _), _ in zip(steps, range(n))]
    assert isinstance(cache[0], (C.QuantizedKVCache, lm_cache.QuantizedKVCache))
    return tokens


# --------------------------------------------------------------------------- the block pool


def test_prefix_sharing_shares_blocks(model, prompt: list[int], rng: np.random.Generator) -> None:
    pool = _pool(model, num_blocks=12)
    first = pool.new_sequence()
    _logits(model, first, prompt)
    first[0].sequence.append_tokens(prompt)
    used_alone = pool.stats().blocks_used  # 3 blocks: 37 tokens
    other = prompt[:32] + rng.integers(0, VOCAB, 9).tolist()  # same two full blocks, then different
    second = pool.new_sequence()
    covered = second[0].sequence.match_prefix(other)
    assert covered == 32
    shared = first[0].sequence.table[:2]
    assert second[0].sequence.table == shared and all(pool.refs[b] == 2 for b in shared)
    got = _logits(model, second, other[covered:])
    expected = _logits(model, C.make_cache(model, "kv"), other)[covered:]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    stats = pool.stats()
    assert stats.blocks_used == used_alone + 1  # the second sequence took one block of its own
    assert stats.prefix_lookups == 2 and stats.prefix_hits == 2 and stats.prefix_hit_rate == 1.0
    assert stats.bytes_used == stats.blocks_used * pool.block_bytes <= stats.bytes_total == pool.nbytes
    # released, the shared blocks stay cached for the next request with that prefix
    first[0].sequence.release()
    second[0].sequence.release()
    assert pool.stats().blocks_used == 0 and pool.stats().blocks_cached == 2
    third = pool.new_sequence()
    assert third[0].sequence.match_prefix(prompt) == 32 and third[0].sequence.table == shared


def test_copy_on_write_keeps_other_sequences(model, prompt: list[int]) -> None:
    """A fork shares every block; each side's writes copy the partial block first."""
    pool = _pool(model, num_blocks=10)
    a = pool.new_sequence()
    _logits(model, a, prompt[:20])  # one full block and a partial one
    b = a[0].sequence.fork()
    assert b[0].sequence.table == a[0].sequence.table and all(pool.refs[x] == 2 for x in a[0].sequence.table)
    tail_a, tail_b = prompt[20:27], prompt[27:37]
    got_b = _logits(model, b, tail_b)
    got_a = _logits(model, a, tail_a)
    assert a[0].sequence.table[0] == b[0].sequence.table[0] and pool.refs[a[0].sequence.table[0]] == 2
    assert a[0].sequence.table[1] != b[0].sequence.table[1]
    for tokens, got in ((prompt[:20] + tail_a, got_a), (prompt[:20] + tail_b, got_b)):
        np.testing.assert_allclose(
            got, _logits(model, C.make_cache(model, "kv"), tokens)[20:], rtol=1e-5, atol=1e-5
        )
    # and a's pool contents for b's blocks are b's: one more decode step of each still agrees
    for cache, tokens in ((a, prompt[:20] + tail_a), (b, prompt[:20] + tail_b)):
        plain = C.make_cache(model, "kv")
        _logits(model, plain, tokens)
        np.testing.assert_allclose(
            _logits(model, cache, [9]), _logits(model, plain, [9]), rtol=1e-5, atol=1e-5
        )


def test_memory_limit_holds(model, prompt: list[int]) -> None:
    layers, kv_heads, head_dim, dtype = C.model_kv_shape(model)
    block_bytes = 2 * layers * 16 * kv_heads * head_dim * dtype.size
    pool = _pool(model, memory_limit=3 * block_bytes + block_bytes // 2)
    assert pool.num_blocks == 3 and pool.nbytes <= pool.memory_limit
    seq = pool.new_sequence()
    _logits(model, seq, (prompt + prompt)[:48])  # three full blocks: the pool is full
    with pytest.raises(C.PoolExhausted, match=r"all 3 blocks \(memory_limit \d+ bytes\) are held"):
        _logits(model, seq, [1])  # would need a fourth block
    with pytest.raises(ValueError, match=r"memory_limit is 10 bytes; one block"):
        _pool(model, memory_limit=10)


@pytest.mark.parametrize("policy, victim", [(C.LRU(), 1), (C.FIFO(), 0)])
def test_eviction_policy_picks_the_victim(model, prompt: list[int], policy, victim: int) -> None:
    """Two cached prefixes, the first registered one used again later: LRU drops the other,
    FIFO the first."""
    pool = _pool(model, num_blocks=3, eviction=policy)
    ids = []
    for p in (prompt[:17], prompt[17:34]):  # each: one full block, registered, and a partial one
        seq = pool.new_sequence()
        _logits(model, seq, p)
        seq[0].sequence.append_tokens(p)
        ids.append(seq[0].sequence.table[0])
        seq[0].sequence.release()
    again = pool.new_sequence()
    assert again[0].sequence.match_prefix(prompt[:17]) == 16
    again[0].sequence.release()  # block ids[0] is now the most recently used
    fresh = pool.new_sequence()
    _logits(model, fresh, prompt[:20])  # needs two blocks: one free, one evicted
    assert pool.block_hash[ids[victim]] is None and pool.block_hash[ids[1 - victim]] is not None


def test_sliding_window_releases_old_blocks(model, prompt: list[int]) -> None:
    pool = _pool(model, num_blocks=4, eviction=C.SinksWindow(window=20, sinks=4))
    seq = pool.new_sequence()
    tokens = _greedy(model, prompt, seq, 40)  # 77 positions in a pool of 64 slots
    assert len(tokens) == 40 and pool.stats().blocks_used <= 4
    table = seq[0].sequence.table
    assert table[0] is not None and table[1] is None  # the sink block stays, old ones go
    kept = seq[0].block_table()
    assert kept[0] == table[0] and len(kept) == sum(b is not None for b in table)
    assert 20 + 4 <= seq[0].context_len < seq[0].offset == 77
    assert not seq[0].is_trimmable()


# --------------------------------------------------------------------------- protocol


@pytest.mark.parametrize(
    "kind, options",
    [
        ("kv", {}),
        ("quantized", {"group_size": 32, "bits": 8}),
        ("rotating", {"max_size": 64}),
        ("paged", {"num_blocks": 5}),
    ],
)
def test_save_load_round_trip(model, prompt: list[int], tmp_path, kind: str, options: dict) -> None:
    skip_where_mlx_cannot_quantize(kind)
    cache = C.make_cache(model, kind, **options)
    _logits(model, cache, prompt)
    path = str(tmp_path / "cache.safetensors")
    C.save_prompt_cache(path, cache, {"kind": kind})
    loaded, meta = C.load_prompt_cache(path, return_metadata=True)
    assert meta == {"kind": kind} and [type(c) for c in loaded] == [type(c) for c in cache]
    assert all(c.offset == len(prompt) for c in loaded)
    np.testing.assert_allclose(
        _logits(model, loaded, [4, 8]), _logits(model, cache, [4, 8]), rtol=1e-5, atol=1e-5
    )
    if kind == "paged":  # one layer on its own gets a private pool with room to grow
        alone = C.PagedKVCache.from_state(cache[0].state)
        assert alone.offset == cache[0].offset and alone.pool.num_layers == 1
        np.testing.assert_array_equal(np.array(alone.state[0]), np.array(cache[0].state[0]))
    if kind == "kv":  # mlx-lm's own loader reads it as its KVCache
        theirs = lm_cache.load_prompt_cache(path)
        assert theirs[0].offset == len(prompt)


@pytest.mark.parametrize(
    "kind, options", [("kv", {}), ("paged", {"num_blocks": 5}), ("quantized", {"group_size": 32})]
)
def test_trim_and_mask(model, prompt: list[int], kind: str, options: dict) -> None:
    skip_where_mlx_cannot_quantize(kind)
    cache = C.make_cache(model, kind, **options)
    _logits(model, cache, prompt)
    assert cache[0].is_trimmable() and lm_cache.trim_prompt_cache(cache, 10) == 10
    assert cache[0].offset == 27 and not cache[0].empty()
    plain = C.make_cache(model, "kv")
    _logits(model, plain, prompt[:27])
    atol = 0.1 if kind == "quantized" else 1e-5  # 8-bit keys and values
    np.testing.assert_allclose(_logits(model, cache, [1, 2]), _logits(model, plain, [1, 2]), atol=atol)
    assert cache[0].make_mask(1) is None and cache[0].make_mask(3) == "causal"
    assert C.make_cache(model, "kv")[0].empty() and C.make_cache(model, "kv")[0].nbytes == 0


@pytest.mark.parametrize(
    "kind, options", [("kv", {}), ("quantized", {"group_size": 32, "bits": 8}), ("paged", {"num_blocks": 3})]
)
def test_merge_filter_extend_extract(model, rng: np.random.Generator, kind: str, options: dict) -> None:
    """Sequences of different lengths batched left-padded: each row's logits are its own."""
    skip_where_mlx_cannot_quantize(kind)
    prompts = [rng.integers(0, VOCAB, n).tolist() for n in (7, 12, 3)]
    singles = [C.make_cache(model, kind, **options) for _ in prompts]
    for cache, p in zip(singles, prompts):
        _logits(model, cache, p)
    batch = [layer[0].merge([s[i] for s in singles]) for i, layer in enumerate(zip(*singles))]
    step = [[5], [6], [7]]
    logits = np.array(model(mx.array(step), cache=batch)[:, -1])
    refs = []
    for p, t in zip(prompts, step):
        plain = C.make_cache(model, "kv")
        _logits(model, plain, p)
        refs.append(_logits(model, plain, t)[-1])
    atol = 1e-5 if kind != "quantized" else 5e-2
    np.testing.assert_allclose(logits, np.stack(refs), atol=atol)
    # filter keeps rows in the given order and sheds the padding they all share
    for layer in batch:
        layer.filter([1, 0])
    assert batch[0].left_padding.tolist() == [0, 5] and batch[0].size() == 13
    # extend with a batch of the third sequence, then extract each row back
    extra = [layer.merge([layer]) for layer in singles[2]]
    for layer, other in zip(batch, extra):
        layer.extend(other)
    assert batch[0].offset.tolist() == [13, 8, 3]
    for row, n in enumerate((13, 8, 3)):
        single = [layer.extract(row) for layer in batch]
        assert single[0].offset == n
    plain_rows = [layer.extract(0) for layer in batch]
    assert all(c.offset == 13 for c in plain_rows)


def test_bad_input() -> None:
    model = tiny_llama()
    with pytest.raises(ValueError, match=r"\[make_cache\] kind is 'ring'; expected one of kv, rotating"):
        C.make_cache(model, "ring")
    with pytest.raises(TypeError, match=r"\[make_cache\] unexpected options for kind 'paged': bits"):
        C.make_cache(model, "paged", num_blocks=4, bits=4)
    with pytest.raises(ValueError, match=r"\[BlockPool\] give exactly one of num_blocks and memory_limit"):
        C.make_cache(model, "paged")
    with pytest.raises(
        ValueError, match=r"\[RotatingKVCache\] keep is 8; expected 0 <= keep < max_size \(8\)"
    ):
        C.RotatingKVCache(8, keep=8)
    cache = C.make_cache(model, "paged", num_blocks=4, dtype=mx.float16)
    with pytest.raises(
        TypeError, match=r"\[PagedKVCache\] keys have dtype float32; expected the pool's float16"
    ):
        cache[0].update_and_fetch(mx.zeros((1, 2, 3, 32)), mx.zeros((1, 2, 3, 32)))
    with pytest.raises(
        ValueError, match=r"\[PagedKVCache\] keys have shape \(2, 2, 3, 32\); expected \(1, 2, 3, 32\)"
    ):
        cache[0].update_and_fetch(mx.zeros((2, 2, 3, 32), mx.float16), mx.zeros((2, 2, 3, 32), mx.float16))
    cache[0].update_and_fetch(mx.zeros((1, 2, 3, 32), mx.float16), mx.zeros((1, 2, 3, 32), mx.float16))
    with pytest.raises(ValueError, match=r"match_prefix\] the sequence is not empty"):
        cache[0].sequence.match_prefix([1] * 40)


@pytest.mark.parametrize(
    "kind, options", [("kv", {}), ("quantized", {"group_size": 32, "bits": 8}), ("paged", {"num_blocks": 4})]
)
def test_mlx_lm_batch_generator(model, rng: np.random.Generator, kind: str, options: dict) -> None:
    """mlx-lm's BatchGenerator merges our prompt caches, steps, filters and extracts them: each
    sequence's greedy tokens are those of mlx-lm's single-sequence cache of the same kind."""
    skip_where_mlx_cannot_quantize(kind)
    prompts = [rng.integers(0, VOCAB, n).tolist() for n in (9, 14, 5)]
    caches = []
    for p in prompts:
        cache = C.make_cache(model, kind, **options)
        model(mx.array([p[:-1]]), cache=cache)
        caches.append(cache)
    gen = BatchGenerator(model, stop_tokens=[[VOCAB]])  # a token never sampled: runs to max_tokens
    uids = gen.insert([p[-1:] for p in prompts], [8, 5, 8], caches=caches)
    out: dict[int, list[int]] = {uid: [] for uid in uids}
    while responses := gen.next_generated():
        for r in responses:
            out[r.uid].append(r.token)
    gen.close()

    def theirs() -> list:
        if kind == "quantized":
            return [lm_cache.QuantizedKVCache(group_size=32, bits=8) for _ in model.layers]
        return [lm_cache.KVCache() for _ in model.layers]

    expected = [_greedy(model, p, theirs(), n) for p, n in zip(prompts, (8, 5, 8))]
    assert [out[uid] for uid in uids] == expected


def test_paged_decode_batch_attends_in_place_like_mlx_lm(model, rng: np.random.Generator) -> None:
    """Decode steps of three sequences through `paged_attention` on the pool (across block
    boundaries, one of them sharing a prefix) give mlx-lm's logits within 1e-5 (float32)."""
    from mlx_lm.models import base

    pool = _pool(model, block_size=16, num_blocks=24)
    shared = rng.integers(0, VOCAB, 32).tolist()
    prompts = [rng.integers(0, VOCAB, 15).tolist(), shared + [3], shared + rng.integers(0, VOCAB, 9).tolist()]
    sequences, references = [], []
    for prompt in prompts:
        layers = C.make_cache(model, "paged", pool=pool)
        covered = layers[0].sequence.match_prefix(prompt)
        model(mx.array([prompt[covered:]]), cache=layers)
        layers[0].sequence.append_tokens(prompt[covered:])
        sequences.append(layers[0].sequence)
        reference = lm_cache.make_prompt_cache(model)
        model(mx.array([prompt]), cache=reference)
        references.append(reference)
    assert sequences[2].table[:2] == sequences[1].table[:2]  # the prefix blocks are shared
    module = type(model.layers[0].self_attn).__module__
    found = C.attention_modules(model)
    assert found == [sys.modules[module]]  # the model file whose attention calls sdpa
    for step in range(3):
        tokens = rng.integers(0, VOCAB, len(prompts)).tolist()
        batch = C.PagedDecodeBatch(sequences)
        with C.paged_attention_dispatch(model, found if step % 2 else None):  # found once, or here
            got = model(mx.array(tokens)[:, None], cache=batch.layers)[:, -1]
            # inside the block every other cache still takes mlx-lm's own attention
            inside = _logits(model, lm_cache.make_prompt_cache(model), prompts[0])
        batch.advance()
        expected = [np.array(model(mx.array([[t]]), cache=r)[0, -1]) for t, r in zip(tokens, references)]
        np.testing.assert_allclose(np.array(got), np.stack(expected), atol=1e-5, rtol=0)
        assert [s.length for s in sequences] == [len(p) + step + 1 for p in prompts]
    outside = _logits(model, lm_cache.make_prompt_cache(model), prompts[0])
    np.testing.assert_array_equal(inside, outside)
    assert sys.modules[module].scaled_dot_product_attention is base.scaled_dot_product_attention
    with pytest.raises(RuntimeError, match=r"layers \[0, 1\] did not attend through `attend`"):
        batch = C.PagedDecodeBatch(sequences)
        model(mx.array(tokens)[:, None], cache=batch.layers)  # no dispatch: the model's own sdpa
        batch.advance()
    layer = C.PagedDecodeBatch(sequences).layers[0]
    shape = (3, pool.kv_heads, 1, pool.head_dim)
    with pytest.raises(ValueError, match=r"keys have shape \(2, \d, 1, 32\); expected \(3, "):
        layer.update_and_fetch(mx.zeros((2, *shape[1:])), mx.zeros(shape))
    with pytest.raises(TypeError, match="keys have dtype float16; expected the pool's float32"):
        layer.update_and_fetch(mx.zeros(shape, mx.float16), mx.zeros(shape))
    with pytest.raises(RuntimeError, match="attend before update_and_fetch"):
        layer.attend(mx.zeros((3, 4, 1, pool.head_dim)), 1.0)
    with pytest.raises(ValueError, match="sequences must share one pool"):
        C.PagedDecodeBatch([sequences[0], C.make_cache(model, "paged", num_blocks=4)[0].sequence])
    with pytest.raises(ZeroDivisionError), C.paged_attention_dispatch(model):
        1 / 0  # noqa: B018
    assert sys.modules[module].scaled_dot_product_attention is base.scaled_dot_product_attention


def test_pool_writes_in_place_proportional_to_the_new_tokens(rng: np.random.Generator) -> None:
    """`BlockPool.write` scatters into the pool's own buffer (MLX donates it on the CPU): no
    copy of a 32 MB pool per write, and the written slots read back exactly. On MLX's CUDA build
    these first writes allocate a pool's worth (H200, MLX 0.32.4: 33.6 MB for the 33.5 MB pool;
    warm writes there took the same 0.06-0.10 ms into 2 MB and 268 MB pools), so there only the
    values are checked."""
    pool = C.BlockPool(1, 4, 64, mx.float32, block_size=16, num_blocks=2048)  # 2 x 32 MB
    mx.eval(pool.keys, pool.values)
    keys = mx.array(rng.standard_normal((5, 4, 64)), dtype=mx.float32)
    slots = mx.array([3, 17, 2047 * 16, 500, 9], dtype=mx.int32)
    mx.eval(keys)
    mx.synchronize()
    before = mx.get_active_memory()
    mx.reset_peak_memory()
    for _ in range(3):
        pool.write(0, keys, -keys, slots)
        mx.eval(pool.keys, pool.values)
    grown = mx.get_peak_memory() - before
    if mx.default_device() == mx.cpu or not mx.cuda.is_available():
        assert grown < pool.keys[0].nbytes // 4, f"a write allocated {grown} bytes: the pool was copied"
    flat = np.array(pool.keys[0]).reshape(-1, 4, 64)
    np.testing.assert_array_equal(flat[np.array(slots)], np.array(keys))
    np.testing.assert_array_equal(
        np.array(pool.values[0]).reshape(-1, 4, 64)[np.array(slots)], -np.array(keys)
    )
    assert not flat[np.setdiff1d(np.arange(2048 * 16), np.array(slots))].any()


# --------------------------------------------------------------------------- batched rotating caches


@pytest.mark.parametrize("keep", [0, 3])
def test_rotating_batch_logits_are_each_rows_own(model, rng: np.random.Generator, keep: int) -> None:
    """Rotating caches of different lengths (two past the window) merged into one batch: a
    3-token chunk, then decode steps through the window's edge. Each row's logits are those of
    its own single-sequence RotatingKVCache; filter, extend and extract keep every row's."""
    prompts = [rng.integers(0, VOCAB, n).tolist() for n in (5, 20, 13, 31)]
    singles = [C.make_cache(model, "rotating", max_size=16, keep=keep) for _ in prompts]
    for cache, p in zip(singles, prompts):
        _logits(model, cache, p)
    batch = [layer[0].merge(list(layer)) for layer in zip(*singles)]
    assert isinstance(batch[0], C.BatchRotatingKVCache) and batch[0].size() == 15

    def step(rows: list[int], width: int) -> None:
        tokens = rng.integers(0, VOCAB, (len(rows), width)).tolist()
        logits = np.array(model(mx.array(tokens), cache=batch).astype(mx.float32))
        for out, row, t in zip(logits, rows, tokens):
            np.testing.assert_allclose(out, _logits(model, singles[row], t), atol=1e-5)

    rows = [0, 1, 2, 3]
    step(rows, 3)
    for _ in range(10):  # row 0 crosses the window: 8 + 10 > 15
        step(rows, 1)
    # decoding writes in place: each row a ring of max_size slots
    assert batch[0].offset.tolist() == [18, 33, 26, 44] and batch[0].size() == 16
    # filter to rows 2 and 0 (in that order), extend with a batch of row 1 alone, decode on
    for layer in batch:
        layer.filter([2, 0])
    extra = [layer.merge([layer]) for layer in singles[1]]
    for layer, other in zip(batch, extra):
        layer.extend(other)
    rows = [2, 0, 1]
    assert batch[0].offset.tolist() == [26, 18, 33]
    for _ in range(3):
        step(rows, 1)
    step(rows, 2)
    # extract each row back: a RotatingKVCache that decodes as its own single cache does
    for i, row in enumerate(rows):
        alone = [layer.extract(i) for layer in batch]
        assert type(alone[0]) is C.RotatingKVCache and alone[0].offset == singles[row][0].offset
        # the same keys in the same slots; a GPU's batched and one-row projections may differ
        # in the last bit (seen on the H200: 5e-7)
        np.testing.assert_allclose(np.array(alone[0].keys), np.array(singles[row][0].keys), rtol=0, atol=1e-5)
        np.testing.assert_allclose(_logits(model, alone, [9]), _logits(model, singles[row], [9]), atol=1e-5)


def test_rotating_batch_protocol(model, rng: np.random.Generator, tmp_path) -> None:
    """Left padding on an empty batch (as GenerationEngine prefills), save/load, trim,
    nbytes, and the mismatches merge and extend refuse."""
    prompts = [rng.integers(0, VOCAB, n).tolist() for n in (4, 11)]
    batch = [C.BatchRotatingKVCache.merge([C.RotatingKVCache(8, 2) for _ in prompts]) for _ in model.layers]
    assert batch[0].empty() and batch[0].nbytes == 0
    for layer in batch:
        layer.prepare(left_padding=[7, 0])
    logits = np.array(model(mx.array([[0] * 7 + prompts[0], prompts[1]]), cache=batch)[:, -1])
    singles = [C.make_cache(model, "rotating", max_size=8, keep=2) for _ in prompts]
    refs = [_logits(model, s, p)[-1] for s, p in zip(singles, prompts)]
    np.testing.assert_allclose(logits, np.stack(refs), atol=1e-5)
    assert batch[0].offset.tolist() == [4, 11] and batch[0].left_padding.tolist() == [3, 0]
    assert batch[0].keys.shape[2] == 7 and batch[0].nbytes == 2 * batch[0].keys.nbytes
    assert not batch[0].is_trimmable()
    C.save_prompt_cache(str(tmp_path / "batch.safetensors"), batch)
    loaded = C.load_prompt_cache(str(tmp_path / "batch.safetensors"))
    assert type(loaded[0]) is C.BatchRotatingKVCache and loaded[0].offset.tolist() == [4, 11]
    np.testing.assert_allclose(
        np.array(model(mx.array([[5], [6]]), cache=loaded)),
        np.array(model(mx.array([[5], [6]]), cache=batch)),
    )
    short = [C.BatchRotatingKVCache.merge([C.make_cache(model, "rotating", max_size=8)[0]]) for _ in range(2)]
    for layer in short:
        layer.update_and_fetch(mx.ones((1, 2, 5, 32)), mx.ones((1, 2, 5, 32)))
    assert short[0].is_trimmable() and lm_cache.trim_prompt_cache(short, 2) == 2 and short[0].size() == 3
    with pytest.raises(ValueError, match=r"\[RotatingKVCache.merge\] caches must be RotatingKVCaches of one"):
        C.RotatingKVCache.merge([C.RotatingKVCache(8), C.RotatingKVCache(16)])
    with pytest.raises(ValueError, match=r"got \['RotatingKVCache', 'KVCache'\]"):
        C.RotatingKVCache.merge([C.RotatingKVCache(8), C.KVCache()])
    with pytest.raises(
        ValueError, match=r"\[BatchRotatingKVCache.extend\] other must be a BatchRotatingKVCache"
    ):
        batch[0].extend(C.BatchRotatingKVCache.merge([C.RotatingKVCache(8, 1)]))
    with pytest.raises(
        ValueError, match=r"\[BatchRotatingKVCache\] keys have batch 3; expected the cache's 2"
    ):
        batch[0].update_and_fetch(mx.zeros((3, 2, 1, 32)), mx.zeros((3, 2, 1, 32)))


def test_mlx_lm_batch_generator_rotating(model, rng: np.random.Generator) -> None:
    """mlx-lm's BatchGenerator on our rotating caches (two prefilled, two empty; prompts and
    generations past the window; prefill in 8-token steps, right-padded): each sequence gets the
    greedy tokens of mlx-lm's single-sequence RotatingKVCache, as mlx-lm's own
    BatchRotatingKVCache gives them."""
    prompts = [rng.integers(0, VOCAB, n).tolist() for n in (9, 30, 5, 21)]
    counts, prefilled = [20, 6, 25, 12], [0, 10, 0, 20]

    def generate(make) -> list[list[int]]:
        caches = []
        for p, n in zip(prompts, prefilled):
            cache = make()
            if n:
                model(mx.array([p[:n]]), cache=cache)
            caches.append(cache)
        gen = BatchGenerator(model, stop_tokens=[[VOCAB]], prefill_step_size=8)
        uids = gen.insert([p[n:] for p, n in zip(prompts, prefilled)], counts, caches=caches)
        out: dict[int, list[int]] = {uid: [] for uid in uids}
        while responses := gen.next_generated():
            for r in responses:
                out[r.uid].append(r.token)
        gen.close()
        return [out[uid] for uid in uids]

    def theirs() -> list:
        return [lm_cache.RotatingKVCache(16) for _ in model.layers]

    expected = [_greedy(model, p, theirs(), n) for p, n in zip(prompts, counts)]
    assert generate(theirs) == expected  # mlx-lm's BatchRotatingKVCache (no sinks: keep=0)
    assert generate(lambda: C.make_cache(model, "rotating", max_size=16, keep=0)) == expected
