"""Ring attention against float64 references: on 2 and 4 local ring ranks, and in-process (size 1).

One `mlx.launch` per rank count runs every case (tests/distributed/ring_worker.py): each rank
cuts its shard of a whole sequence the test wrote, runs `ring_attention` with its log-sum-exp
and differentiates sum(out * d_out) + sum(lse * d_lse). The test compares every rank's shard of
the output and lse with a float64 NumPy attention of the whole sequence, and of dq, dk, dv
with MLX autodiff of the same attention in float64, and the gathered output with the whole.
Shards (and zigzag chunks) have odd lengths (13, 7, 5 positions) so no kernel block divides
them; the cases cover causal and not, contiguous and zigzag shards, GQA/MQA, both layouts, and
float32, float16, bfloat16. The workers run the interpreter backend; the in-process tests run
the size-1 path (`flash_attention`) on every backend. The errors: ranks that disagree on shapes
(every rank names the other), a sequence the world size does not divide, unequal shards.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from attention_np import attention64
from conftest import to_numpy, tolerance
from mlx_primitives.attention import flash_attention
from mlx_primitives.distributed.ring_attention import (
    RingAttention,
    gather_sequence,
    ring_attention,
    ring_attention_reference,
    shard_sequence,
)
from test_attention_backward import GRAD_TOLERANCE, reference_grads

from benchmarks.distributed_ring import CASES as BENCHMARKS
from tests.distributed.launch import launch, requires_launch

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}

# batch, heads, kv heads, positions per rank, head dim
CASES = {
    2: [
        dict(name="gqa", causal=False, layout="BHSD", dtype="float32", shape=(1, 4, 2, 13, 16)),
        dict(
            name="causal_bshd",
            causal=True,
            layout="BSHD",
            dtype="float32",
            shape=(2, 2, 2, 13, 16),
            module=True,
        ),
        dict(name="causal_mqa_f16", causal=True, layout="BHSD", dtype="float16", shape=(1, 4, 1, 13, 16)),
        dict(name="bf16", causal=False, layout="BSHD", dtype="bfloat16", shape=(1, 2, 1, 8, 32)),
        dict(
            name="zigzag",
            causal=True,
            layout="BSHD",
            dtype="float32",
            shape=(1, 4, 2, 14, 16),
            sharding="zigzag",
        ),
    ],
    4: [
        dict(name="causal_gqa", causal=True, layout="BHSD", dtype="float32", shape=(1, 4, 2, 13, 16)),
        dict(name="causal_bf16", causal=True, layout="BSHD", dtype="bfloat16", shape=(1, 2, 1, 7, 16)),
        dict(name="f16", causal=False, layout="BHSD", dtype="float16", shape=(1, 2, 2, 7, 16)),
        dict(
            name="zigzag",
            causal=True,
            layout="BHSD",
            dtype="float32",
            shape=(1, 2, 1, 10, 16),
            sharding="zigzag",
            module=True,
        ),  # fmt: skip
    ],
}


def _bhsd(x: np.ndarray, layout: str) -> np.ndarray:
    return x if layout == "BHSD" else x.transpose(0, 2, 1, 3)


def _inputs(rng: np.random.Generator, case: dict, ranks: int) -> dict[str, np.ndarray]:
    """The whole sequence's q, k, v (in the case's layout) and cotangents, float32 values
    rounded to the case's dtype."""
    batch, heads, kv_heads, shard, head_dim = case["shape"]
    seq = shard * ranks
    dtype = DTYPES[case["dtype"]]

    def rand(h: int) -> np.ndarray:
        shape = (batch, h, seq, head_dim) if case["layout"] == "BHSD" else (batch, seq, h, head_dim)
        return to_numpy(mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)).astype(
            np.float32
        )

    return {
        "q": rand(heads),
        "k": rand(kv_heads),
        "v": rand(kv_heads),
        "d_out": rand(heads),
        "d_lse": rng.standard_normal((batch, heads, seq)).astype(np.float32),
    }


def _shard(x: np.ndarray, rank: int, ranks: int, axis: int, sharding: str) -> np.ndarray:
    """Rank `rank`'s shard along `axis`: contiguous, or zigzag chunks r and 2W - 1 - r of 2W."""
    if sharding == "contiguous":
        return np.split(x, ranks, axis=axis)[rank]
    chunks = np.split(x, 2 * ranks, axis=axis)
    return np.concatenate([chunks[rank], chunks[2 * ranks - 1 - rank]], axis=axis)


def _close_to_max(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    """|got - want| within tol of want's largest entry (gradients: sums of many products)."""
    scale = max(1.0, float(np.abs(want).max()))
    error = float(np.abs(got - want).max()) / scale
    assert error <= tol, f"{what}: error {error:.3g} of the largest entry; tolerance {tol:g}"


def _run(tmp_path: Path, rng: np.random.Generator, ranks: int) -> None:
    cases = CASES[ranks]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    data = {name: _inputs(rng, case, ranks) for name, case in ((c["name"], c) for c in cases)}
    np.savez(
        inputs / "inputs.npz", **{f"{n}.{key}": x for n, arrays in data.items() for key, x in arrays.items()}
    )
    (inputs / "cases.json").write_text(json.dumps(cases))
    out = launch("ring_worker.py", ranks, tmp_path / "out", str(inputs))
    results = [np.load(out / f"rank{r}.npz") for r in range(ranks)]
    errors = [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]

    for case in cases:
        name, layout, dtype, causal = case["name"], case["layout"], DTYPES[case["dtype"]], case["causal"]
        sharding = case.get("sharding", "contiguous")
        x = data[name]
        q, k, v, d_out = (_bhsd(x[key], layout).astype(np.float64) for key in ("q", "k", "v", "d_out"))
        scale = 1.0 / math.sqrt(q.shape[-1])
        want_out, want_lse = attention64(q, k, v, causal=causal)
        _, grads = reference_grads(
            q, k, v, None, d_out, x["d_lse"].astype(np.float64), scale=scale, causal=causal
        )
        seq_axis = 2 if layout == "BHSD" else 1
        tol = {key: 2 * value for key, value in tolerance(dtype).items()}
        for rank, got in enumerate(results):
            where = f"{name} rank {rank} of {ranks}"
            assert str(got[f"{name}.out.dtype"]) == str(dtype)
            shard = {key: _shard(value, rank, ranks, seq_axis, sharding) for key, value in
                     (("out", _bhsd(want_out, layout)), ("dq", _bhsd(grads[0], layout)),
                      ("dk", _bhsd(grads[1], layout)), ("dv", _bhsd(grads[2], layout)))}  # fmt: skip
            np.testing.assert_allclose(got[f"{name}.out"], shard["out"], **tol, err_msg=f"{where}: out")
            np.testing.assert_allclose(
                got[f"{name}.lse"],
                _shard(want_lse, rank, ranks, 2, sharding),
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"{where}: lse",
            )
            for key in ("dq", "dk", "dv"):
                _close_to_max(got[f"{name}.{key}"], shard[key], 2 * GRAD_TOLERANCE[dtype], f"{where}: {key}")
            np.testing.assert_allclose(got[f"{name}.gathered"], _bhsd(want_out, layout), **tol, err_msg=where)
            if case.get("module"):
                np.testing.assert_array_equal(got[f"{name}.module_out"], got[f"{name}.out"])

    for rank, error in enumerate(errors):
        assert error["big_shift"] == [float((rank - 1) % ranks)] * 2
        last = ranks - 1
        mine = 6 if rank == last else 5
        theirs_rank, theirs = (0, 5) if rank == last else (last, 6)
        assert error["disagree"] == (
            f"[ring_attention] rank {theirs_rank} called with (1, 2, {theirs}, 16), (1, 2, {theirs}, 16), "
            f"(0, 0, 0, 0, 0); rank {rank} with (1, 2, {mine}, 16), (1, 2, {mine}, 16), (0, 0, 0, 0, 0): "
            "every rank must pass arrays of the same shapes"
        )
        assert error["indivisible"] == (
            f"[shard_sequence] the sequence length is {4 * ranks + 1}; contiguous sharding over {ranks} ranks "
            f"needs {ranks} to divide it"
        )
        assert (
            error["lengths"]
            == f"[ring_attention] k has {mine} positions and q 4; expected equal shards of one sequence"
        )


@requires_launch
@pytest.mark.parametrize("ranks", [2, 4])
def test_ring_attention_on_local_ranks(tmp_path: Path, rng: np.random.Generator, ranks: int) -> None:
    _run(tmp_path, rng, ranks)


# --------------------------------------------------------------------------- a group of size 1


def _rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_size_one_group_is_flash_attention(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    q, k, v = (
        _rand(rng, (1, 4, 13, 16), dtype),
        _rand(rng, (1, 2, 13, 16), dtype),
        _rand(rng, (1, 2, 13, 16), dtype),
    )
    out, lse = ring_attention(q, k, v, causal=True, return_lse=True)
    want_out, want_lse = attention64(q, k, v, causal=True)
    np.testing.assert_allclose(to_numpy(out), want_out, **tolerance(dtype))
    np.testing.assert_allclose(np.array(lse), want_lse, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(to_numpy(out), to_numpy(flash_attention(q, k, v, causal=True)))


def test_size_one_group_gradients(rng: np.random.Generator) -> None:
    q, k, v = _rand(rng, (2, 13, 2, 16)), _rand(rng, (2, 13, 1, 16)), _rand(rng, (2, 13, 1, 16))
    d_out = _rand(rng, q.shape)

    def loss(fn):  # noqa: ANN001, ANN202
        return lambda q, k, v: (fn(q, k, v, causal=True, layout="BSHD") * d_out).sum()

    got = mx.grad(loss(ring_attention), argnums=(0, 1, 2))(q, k, v)
    want = mx.grad(loss(ring_attention_reference), argnums=(0, 1, 2))(q, k, v)
    for name, g, w in zip(("dq", "dk", "dv"), got, want):
        _close_to_max(np.array(g), np.array(w), 1e-5, name)


def test_size_one_module_and_sharding_helpers(rng: np.random.Generator) -> None:
    x = _rand(rng, (1, 7, 2, 16))
    np.testing.assert_array_equal(np.array(shard_sequence(x, layout="BSHD")), np.array(x))
    assert gather_sequence(x, layout="BSHD") is x
    module = RingAttention(num_heads=2, head_dim=16, causal=True)
    np.testing.assert_array_equal(
        np.array(module(x, x, x)), np.array(flash_attention(x, x, x, causal=True, layout="BSHD"))
    )


def test_errors() -> None:
    x = mx.zeros((1, 2, 8, 16))
    with pytest.raises(TypeError, match=r"^\[ring_attention\] q has dtype int32; supported: float32"):
        ring_attention(x.astype(mx.int32), x, x)
    with pytest.raises(ValueError, match=r"^\[ring_attention\] layout is 'SBHD'; expected one of BHSD, BSHD"):
        ring_attention(x, x, x, layout="SBHD")
    with pytest.raises(
        ValueError, match=r"^\[ring_attention\] k has 8 positions and q 4; expected equal shards"
    ):
        ring_attention(x[:, :, :4], x, x)
    with pytest.raises(ValueError, match=r"^\[shard_sequence\] layout is 'SBHD'"):
        shard_sequence(x, layout="SBHD")
    with pytest.raises(
        ValueError,
        match=r"^\[shard_sequence\] the sequence length is 7; zigzag sharding over 1 ranks needs 2",
    ):
        shard_sequence(x[:, :, :7], sharding="zigzag")
    with pytest.raises(
        ValueError, match=r"^\[ring_attention\] q's shard has 7 positions; zigzag shards hold two equal"
    ):
        ring_attention(x[:, :, :7], x[:, :, :7], x[:, :, :7], sharding="zigzag")
    with pytest.raises(
        ValueError, match=r"^\[gather_sequence\] sharding is 'striped'; expected one of contiguous, zigzag"
    ):
        gather_sequence(x, sharding="striped")
    with pytest.raises(
        ValueError, match=r"^\[RingAttention\] q has shape \(1, 2, 8, 16\); expected 4 heads of 16"
    ):
        RingAttention(num_heads=4, head_dim=16, layout="BHSD")(x, x, x)


def test_benchmark_cases_run_on_one_rank() -> None:
    group = mx.distributed.init()
    for name, case in BENCHMARKS.items():
        result = case(group, True)
        assert result["seconds"] > 0 and result["work"] > 0 and result["bytes_exchanged"] == 0, name
