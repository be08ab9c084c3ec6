"""The tensor-parallel linears and the expert-parallel MoE layer, on local ranks of MLX's ring
backend (2 and 4) and in-process on a group of size 1.

Every rank builds the single-process layer from the same seed (fresh each run) and compares its
shard's outputs and gradients with it (tests/distributed/layers_worker.py); the ranks run every
case in one launch per rank count, since a launch costs seconds. Sizes are small and odd: 5
tokens per rank, dim 24, hidden 40, 8 experts, top-2, with and without a capacity limit. Kernels
run on the default backend (the interpreter on this CPU): the layers add no kernel of their own,
and tests/test_moe.py runs the grouped GEMM, dispatch and gathers on every backend.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from conftest import to_numpy, tolerance
from mlx.utils import tree_flatten
from mlx_primitives import moe
from mlx_primitives.distributed import (
    AllToShardedLinear,
    ExpertParallelMoELayer,
    ShardedToAllLinear,
    shard_linear,
)

from tests.distributed.launch import ROOT, launch, requires_launch

CASES = {
    2: ["tp:float32", "tp:bfloat16", "tpq", "ep:float32", "ep:float32:0.75", "ep:bfloat16"],
    # Four ranks share this machine's two cores: the cases that differ from two ranks' most.
    4: ["tp:bfloat16", "tpq", "ep:float32:0.75"],
}


def _close(got: np.ndarray, want: np.ndarray, dtype: mx.Dtype, name: str) -> None:
    # bfloat16 runs compare two bfloat16 computations whose sums run in other orders.
    tol = tolerance(dtype)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=tol["rtol"], atol=tol["atol"] * scale, err_msg=name)


def _check_rank(path, cases: list[str]) -> None:
    data = np.load(path)
    names = [key[4:] for key in data.files if key.startswith("got/")]
    assert {name.split("/")[0] for name in names} == set(cases)
    for name in names:
        dtype = mx.bfloat16 if "bfloat16" in name else mx.float32
        _close(data[f"got/{name}"], data[f"want/{name}"], dtype, f"{path.name} {name}")


@requires_launch
@pytest.mark.parametrize("ranks", [2, 4])
def test_sharded_layers_match_the_single_process_layers(tmp_path, rng, ranks):
    seed = str(int(rng.integers(2**31)))
    extra = ["errors"] if ranks == 2 else []
    out = launch("layers_worker.py", ranks, tmp_path, seed, *CASES[ranks], *extra, timeout=240)
    for rank in range(ranks):
        _check_rank(out / f"rank{rank}.npz", CASES[ranks])
    if ranks == 2:
        errors = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
        assert (
            errors[0]["experts"]
            == "[ExpertParallelMoELayer] num_experts is 3; the world size 2 must divide it"
        )
        assert errors[0]["column"] == "[AllToShardedLinear] output_dims is 7; the world size 2 must divide it"
        assert errors[0]["row"] == "[ShardedToAllLinear] input_dims is 11; the world size 2 must divide it"
        assert errors[0]["disagree"] == (
            "[ExpertParallelMoELayer] rank 1 called with (6, 24); rank 0 with (5, 24): every rank must "
            "pass arrays of the same shapes"
        )
        assert errors[1]["disagree"].startswith("[ExpertParallelMoELayer] rank 0 called with (5, 24); rank 1")
        assert errors[0]["disagree_linear"].startswith("[ShardedToAllLinear] rank 1 called with (6, 20)")


# --------------------------------------------------------------------------- a group of size 1


def _rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(shape).astype(np.float32)).astype(dtype)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_size_one_linears_are_nn_linear(rng, dtype):
    linear = nn.Linear(24, 40)
    linear.set_dtype(dtype)
    x = _rand(rng, (7, 24), dtype)
    want = to_numpy(linear(x)).astype(np.float64)
    for layer in (shard_linear(linear, "all-to-sharded"), ShardedToAllLinear.from_linear(linear)):
        assert layer.group.size() == 1
        np.testing.assert_allclose(to_numpy(layer(x)), want, **tolerance(dtype))
        g_layer = mx.grad(lambda x, layer=layer: (layer(x) ** 2).sum())(x)
        g_linear = mx.grad(lambda x: (linear(x) ** 2).sum())(x)
        np.testing.assert_allclose(to_numpy(g_layer), to_numpy(g_linear), **tolerance(dtype))


def test_size_one_quantized_linear_stays_quantized_and_frozen(rng):
    quantized = nn.QuantizedLinear.from_linear(nn.Linear(64, 32), group_size=32, bits=4)
    x = _rand(rng, (5, 64))
    for layer in (AllToShardedLinear.from_linear(quantized), ShardedToAllLinear.from_linear(quantized)):
        assert layer.trainable_parameters() == {}
        np.testing.assert_array_equal(to_numpy(layer(x)), to_numpy(quantized(x)))


def test_size_one_moe_is_the_single_process_layer(rng):
    # The default backend only: the layer adds no kernel, and test_moe runs these on every backend.
    single = moe.SparseMoELayer(24, 40, 5, 2, capacity_factor=1.0)
    sharded = ExpertParallelMoELayer.from_moe(single)
    x = _rand(rng, (3, 7, 24))
    cotangent = _rand(rng, (3, 7, 24))

    def loss_grads(model):
        def fn(params, x):
            model.update(params)
            return (model(x) * cotangent).sum()

        return mx.grad(fn, argnums=(0, 1))(model.trainable_parameters(), x)

    np.testing.assert_allclose(to_numpy(sharded(x)), to_numpy(single(x)), **tolerance(mx.float32))
    (want, want_x), (got, got_x) = loss_grads(single), loss_grads(sharded)
    np.testing.assert_allclose(to_numpy(got_x), to_numpy(want_x), **tolerance(mx.float32))
    want = dict(tree_flatten(want))
    for name, value in tree_flatten(got):
        np.testing.assert_allclose(
            to_numpy(value), to_numpy(want[name]), **tolerance(mx.float32), err_msg=name
        )


def test_size_one_moe_of_no_tokens_is_empty():
    layer = ExpertParallelMoELayer(24, 40, 4, 2)
    out, logits, indices = layer(mx.zeros((0, 24)), return_router=True)
    assert out.shape == (0, 24) and logits.shape == (0, 4) and indices.shape == (0, 2)


def test_bad_arguments_name_what_was_expected():
    with pytest.raises(TypeError, match=r"\[ExpertParallelMoELayer.from_moe\] layer has type Linear"):
        ExpertParallelMoELayer.from_moe(nn.Linear(4, 4))
    with pytest.raises(TypeError, match=r"\[AllToShardedLinear.from_linear\] linear has type Conv1d"):
        AllToShardedLinear.from_linear(nn.Conv1d(4, 4, 3))
    with pytest.raises(ValueError, match=r"\[shard_linear\] sharding must be 'all-to-sharded'"):
        shard_linear(nn.Linear(4, 4), "columns")
    with pytest.raises(
        ValueError, match=r"\[ShardedToAllLinear\] x has shape \(3, 5\); expected \(\.\.\., 4\)"
    ):
        ShardedToAllLinear(4, 4)(mx.zeros((3, 5)))
    with pytest.raises(
        ValueError, match=r"\[ExpertParallelMoELayer\] top_k must be an int in \[1, num_experts = 4\]"
    ):
        ExpertParallelMoELayer(8, 16, 4, 5)


# --------------------------------------------------------------------------- the benchmark


@requires_launch
def test_the_distributed_benchmark_runs_on_one_and_two_ranks(tmp_path):
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.distributed",
        "--ranks",
        "1,2",
        "--quick",
        "--json",
        str(report),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(report.read_text())["rows"]
    moe_rows = {(row["case"], row["ranks"]) for row in rows if row["case"].startswith("moe")}
    assert {ranks for _, ranks in moe_rows} == {1, 2}
    for row in rows:
        assert row["seconds"] > 0 and row["throughput"] > 0
        assert (row["bytes_exchanged"] == 0) == (row["ranks"] == 1)
