"""Cases of `python -m benchmarks.distributed`: the expert-parallel MoE and a tensor-parallel MLP.

* `moe_ep`: one training step (forward and backward) of `ExpertParallelMoELayer`, with
  Mixtral's proportions scaled down for the CPU (8 experts, top-2, hidden = 3.5 x dim), a fixed
  number of tokens per rank (weak scaling: 2 ranks process twice the tokens, each with half the
  experts). The work is the tokens of all ranks.
* `tp_mlp`: one training step of a column-parallel -> SiLU -> row-parallel MLP on the same
  tokens on every rank (strong scaling: 2 ranks split the same work). The work is its tokens.

Bytes are what each rank sends per step (forward and backward), from the collectives' sizes:
the MoE's `exchanged_bytes` twice; the MLP's two ring `all_sum`s of (tokens, dim), each
`2 (N - 1) / N` of its size.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_primitives.distributed import (
    AllToShardedLinear,
    ExpertParallelMoELayer,
    ShardedToAllLinear,
    exchanged_bytes,
)
from mlx_primitives.moe import SparseMoELayer

import mtriton

from .timing import time_ranks

# Mixtral: dim 4096, hidden 14336 (3.5 x), 8 experts, top-2; here scaled down for CPU ranks.
MOE = {"dim": 128, "hidden": 448, "experts": 8, "top_k": 2, "tokens": 64}
MOE_QUICK = {"dim": 32, "hidden": 64, "experts": 4, "top_k": 2, "tokens": 6}
MLP = {"dim": 512, "hidden": 2048, "tokens": 256}
MLP_QUICK = {"dim": 32, "hidden": 64, "tokens": 8}


def _training_step(model: nn.Module, x: mx.array, cotangent: mx.array):
    def loss(params, x):
        model.update(params)
        return (model(x) * cotangent).sum()

    grad = mx.value_and_grad(loss, argnums=(0, 1))
    return lambda: grad(model.trainable_parameters(), x)


def moe_ep(group: mx.distributed.Group, quick: bool) -> dict:
    size = MOE_QUICK if quick else MOE
    ranks = group.size()
    mx.random.seed(0)  # the same single-process layer on every rank, as from_moe expects
    single = SparseMoELayer(size["dim"], size["hidden"], size["experts"], size["top_k"])
    layer = ExpertParallelMoELayer.from_moe(single, group, check_shapes=False)
    mx.random.seed(1 + group.rank())
    x = mx.random.normal((size["tokens"], size["dim"]))
    cotangent = mx.random.normal(x.shape)
    seconds = time_ranks(group, _training_step(layer, x, cotangent), 1 if quick else 5)
    exchanged = 2 * exchanged_bytes(size["tokens"], size["dim"], 4, ranks) if ranks > 1 else 0
    return {
        "seconds": seconds, "work": size["tokens"] * ranks, "unit": "tokens/s", "bytes_exchanged": exchanged,
        "backend": mtriton.current_backend_name(), **size,
    }  # fmt: skip


def tp_mlp(group: mx.distributed.Group, quick: bool) -> dict:
    size = MLP_QUICK if quick else MLP
    ranks = group.size()
    mx.random.seed(0)
    up, down = nn.Linear(size["dim"], size["hidden"]), nn.Linear(size["hidden"], size["dim"])
    model = nn.Sequential(
        AllToShardedLinear.from_linear(up, group=group, check_shapes=False),
        nn.SiLU(),
        ShardedToAllLinear.from_linear(down, group=group, check_shapes=False),
    )
    x = mx.random.normal((size["tokens"], size["dim"]))
    cotangent = mx.random.normal(x.shape)
    seconds = time_ranks(group, _training_step(model, x, cotangent), 1 if quick else 5)
    all_sum = 2 * (ranks - 1) * size["tokens"] * size["dim"] * 4 // ranks
    return {
        "seconds": seconds,
        "work": size["tokens"],
        "unit": "tokens/s",
        "bytes_exchanged": 2 * all_sum,
        **size,
    }


CASES = {"moe_ep": moe_ep, "tp_mlp": tp_mlp}
