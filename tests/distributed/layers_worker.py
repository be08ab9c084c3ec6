"""Rank side of tests/test_distributed_layers.py: every distributed layer against the single-process
layer with the same weights, forward and gradients, and the layers' errors.

Usage: `layers_worker.py OUT SEED CASE...`. Every rank seeds MLX's generator with SEED, so each
builds the same single-process layer and inputs and computes the reference itself. A case
writes `got/<case>/<name>` and `want/<case>/<name>` arrays (into `rank<r>.npz`), or error
messages (into `rank<r>.json`).
"""

import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.nn.layers.distributed import shard_linear as mlx_shard_linear
from mlx.utils import tree_flatten
from mlx_primitives.distributed import (
    AllToShardedLinear,
    ExpertParallelMoELayer,
    ShardedToAllLinear,
    shard_linear,
)
from mlx_primitives.distributed._comm import resolve_group
from mlx_primitives.moe import SparseMoELayer

TOKENS, DIM, HIDDEN, EXPERTS, TOP_K = 5, 24, 40, 8, 2
DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16}

out, seed, cases = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
group = resolve_group(None)
rank, size = group.rank(), group.size()
arrays: dict[str, np.ndarray] = {}
errors: dict[str, str] = {}


def keep(case: str, name: str, got: mx.array, want: mx.array) -> None:
    arrays[f"got/{case}/{name}"] = np.array(got.astype(mx.float32))
    arrays[f"want/{case}/{name}"] = np.array(want.astype(mx.float32))


def grads(model: nn.Module, loss, x: mx.array) -> tuple[dict, dict, mx.array]:
    """(parameter gradient tree, flattened, input gradient) of `loss(model(x))`."""

    def fn(params, x):
        model.update(params)
        return loss(model(x))

    g_params, g_x = mx.grad(fn, argnums=(0, 1))(model.trainable_parameters(), x)
    return g_params, dict(tree_flatten(g_params)), g_x


def rows(n: int):
    """This rank's slice of n rows (or features) split evenly."""
    return slice(rank * n // size, (rank + 1) * n // size)


def tensor_parallel(case: str, dtype: mx.Dtype) -> None:
    """Column linear -> silu -> row linear (an MLP) against two nn.Linear."""
    first, second = nn.Linear(DIM, HIDDEN), nn.Linear(HIDDEN, DIM)
    first.set_dtype(dtype), second.set_dtype(dtype)
    x = mx.random.normal((TOKENS, DIM)).astype(dtype)
    cotangent = mx.random.normal((TOKENS, DIM)).astype(dtype)
    single = nn.Sequential(first, nn.SiLU(), second)
    sharded = nn.Sequential(
        AllToShardedLinear.from_linear(first), nn.SiLU(), ShardedToAllLinear.from_linear(second)
    )

    def loss(y):
        return (y * cotangent).astype(mx.float32).sum()

    keep(case, "column", sharded.layers[0](x), first(x)[:, rows(HIDDEN)])
    # Interchangeable with MLX's own sharded layers, fused segments (a QKV weight) included.
    keep(
        case,
        "mlx_mlp",
        sharded(x),
        nn.Sequential(
            mlx_shard_linear(first, "all-to-sharded"), nn.SiLU(), mlx_shard_linear(second, "sharded-to-all")
        )(x),
    )
    fused = nn.Linear(DIM, 3 * HIDDEN)
    fused.set_dtype(dtype)
    keep(
        case,
        "mlx_fused",
        shard_linear(fused, "all-to-sharded", segments=3)(x),
        mlx_shard_linear(fused, "all-to-sharded", segments=3)(x),
    )
    keep(case, "out", sharded(x), single(x))
    _, want, want_x = grads(single, loss, x)
    _, got, got_x = grads(sharded, loss, x)
    keep(case, "dx", got_x, want_x)
    keep(case, "d_column_weight", got["layers.0.weight"], want["layers.0.weight"][rows(HIDDEN)])
    keep(case, "d_column_bias", got["layers.0.bias"], want["layers.0.bias"][rows(HIDDEN)])
    keep(case, "d_row_weight", got["layers.2.weight"], want["layers.2.weight"][:, rows(HIDDEN)])
    keep(case, "d_row_bias", got["layers.2.bias"], want["layers.2.bias"])


def quantized_tensor_parallel(case: str) -> None:
    """The MLP of two nn.QuantizedLinear (4 bits, groups of 32): frozen, so the input's gradient."""
    first = nn.QuantizedLinear.from_linear(nn.Linear(64, 128), group_size=32, bits=4)
    second = nn.QuantizedLinear.from_linear(nn.Linear(128, 64), group_size=32, bits=4)
    x = mx.random.normal((TOKENS, 64))
    cotangent = mx.random.normal((TOKENS, 64))
    single = nn.Sequential(first, nn.SiLU(), second)
    sharded = nn.Sequential(
        AllToShardedLinear.from_linear(first), nn.SiLU(), ShardedToAllLinear.from_linear(second)
    )
    keep(case, "out", sharded(x), single(x))
    keep(
        case,
        "dx",
        mx.grad(lambda x: (sharded(x) * cotangent).sum())(x),
        mx.grad(lambda x: (single(x) * cotangent).sum())(x),
    )


def expert_parallel(case: str, dtype: mx.Dtype, capacity_factor: float | None) -> None:
    """Each rank's tokens through its experts against SparseMoELayer on every rank's tokens."""
    single = SparseMoELayer(DIM, HIDDEN, EXPERTS, TOP_K, capacity_factor=capacity_factor)
    single.set_dtype(dtype)
    everyone = mx.random.normal((size * TOKENS, DIM)).astype(dtype)
    cotangent = mx.random.normal((size * TOKENS, DIM)).astype(dtype)
    sharded = ExpertParallelMoELayer.from_moe(single)
    mine = rows(size * TOKENS)
    x = everyone[mine]

    def loss_of(cot):
        return lambda y: (y * cot).astype(mx.float32).sum()

    got_out, got_logits, got_indices = sharded(x, return_router=True)
    want_out, want_logits, want_indices = single(everyone, return_router=True)
    keep(case, "out", got_out, want_out[mine])
    keep(case, "logits", got_logits, want_logits[mine])
    keep(case, "indices", got_indices, want_indices[mine])
    _, want, want_x = grads(single, loss_of(cotangent), everyone)
    tree, got, got_x = grads(sharded, loss_of(cotangent[mine]), x)
    keep(case, "dx", got_x, want_x[mine])
    experts = slice(sharded.first_expert, sharded.first_expert + EXPERTS // size)
    for name in ("gate_proj", "up_proj", "down_proj"):
        key = f"experts.{name}.weight"
        keep(case, f"d_{name}", got[key], want[key][experts])
    # The router's gradient is this rank's share: the ranks' shares add up to the whole.
    keep(case, "d_router", sharded.reduce_router_gradients(tree)["router"]["weight"], want["router.weight"])


def error(name: str, call) -> None:
    try:
        call()
    except (ValueError, TypeError) as caught:
        errors[name] = str(caught)
    else:
        errors[name] = "no error"


def errors_case() -> None:
    error("experts", lambda: ExpertParallelMoELayer(DIM, HIDDEN, size + 1, 1))
    error("column", lambda: AllToShardedLinear.from_linear(nn.Linear(DIM, size * 3 + 1)))
    error("row", lambda: ShardedToAllLinear(size * 5 + 1, DIM))
    layer = ExpertParallelMoELayer(DIM, HIDDEN, EXPERTS, TOP_K)
    tokens = TOKENS + (rank == size - 1)  # the last rank passes one token more
    error("disagree", lambda: mx.eval(layer(mx.zeros((tokens, DIM)))))
    linear = ShardedToAllLinear(HIDDEN, DIM)
    error("disagree_linear", lambda: mx.eval(linear(mx.zeros((tokens, HIDDEN // size)))))


for case in cases:
    mx.random.seed(seed)
    kind, _, rest = case.partition(":")
    if kind == "tp":
        tensor_parallel(case, DTYPES[rest])
    elif kind == "tpq":
        quantized_tensor_parallel(case)
    elif kind == "ep":
        dtype, _, capacity = rest.partition(":")
        expert_parallel(case, DTYPES[dtype], float(capacity) if capacity else None)
    elif kind == "errors":
        errors_case()
    else:
        raise SystemExit(f"unknown case {case!r}")
np.savez(out / f"rank{rank}.npz", **arrays)
(out / f"rank{rank}.json").write_text(json.dumps(errors))
