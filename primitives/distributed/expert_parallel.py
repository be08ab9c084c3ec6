"""Expert parallelism: a `SparseMoELayer` whose experts are split across the ranks of a group.

Each of the N ranks holds `E / N` consecutive experts (rank r: experts `[r * E/N, (r + 1) * E/N)`)
and a copy of the router, and passes its own `T` tokens (data parallel: every rank its own batch,
the same shape on every rank). One forward pass:

1. `all_gather` the tokens: every rank sees all `N * T` of them, in rank order.
2. Route them all (the router is replicated, so every rank computes the same choices, and the
   capacity limit drops exactly the slots the single-process layer drops on the concatenated
   tokens); keep the slots of this rank's experts (a dispatch whose expert ids start at this
   rank's first expert, so the local experts' rows come first in the sorted order and every
   other row is dropped), and run them through the local `SwitchGLU` with the grouped kernels.
3. Scatter-add the weighted expert outputs into an (N * T, dim) partial result, zero where
   another rank's experts answer, and reduce-scatter it: `all_sum` and keep this rank's rows.

That is the all-to-all of expert parallelism built from the collectives MLX's ring backend has
(it has no `sum_scatter`, and its `send`/`recv` reach only neighbours). Bytes each rank sends
(and receives) per forward pass, with `b` bytes per element: `(N - 1) * T * dim * b` for the
gather and about `2 * (N - 1) * T * dim * b` for the ring `all_sum`; the backward pass moves
the same again (its two collectives are each other's VJPs). A token-exact all-to-all would move
about `k * T * dim * b * (N - 1) / N` each way, less than this once `N > k`; it needs ragged
sizes, which MLX's collectives do not take, and padding them to a capacity drops tokens.

Gradients, with the loss taken as the sum of every rank's loss on its own tokens (what
data-parallel training averages): the input gradient is this rank's tokens' gradient; each local
expert's gradient is that expert's complete single-process gradient, on the rank that owns it
(no reduction: do not average it across ranks); the router's gradient is this rank's share, and
the sum over ranks (`ExpertParallelMoELayer.reduce_router_gradients`) is the single-process
gradient. Averaging the whole gradient tree across ranks, as data-parallel training does, would
mix different experts' gradients.

A group of size 1 makes no collective and computes what `SparseMoELayer` computes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn

from .._common import FLOAT_DTYPES, check_array
from ..gather_scatter import selective_gather, selective_scatter_add
from ..moe import SparseMoELayer, SwitchGLU, build_expert_dispatch, topk_router
from ..moe.routing import ExpertDispatch, _check_scoring, _check_top_k
from ._comm import agree, check_divides, resolve_group

__all__ = ["ExpertParallelMoELayer", "exchanged_bytes"]


@lru_cache
def _gather_tokens(group: mx.distributed.Group) -> Callable[[mx.array], mx.array]:
    """(T, d) per rank -> (N * T, d), every rank's rows in rank order; VJP: sum, keep own rows.

    MLX's own `all_gather` VJP keeps this rank's rows of the cotangent, right when every rank
    computes the same loss; here each rank's cotangent holds its experts' share, so they add.
    """

    @mx.custom_function
    def gather(x: mx.array) -> mx.array:
        return mx.distributed.all_gather(x, group=group)

    @gather.vjp
    def gather_vjp(x: mx.array, cotangent: mx.array, output: mx.array) -> mx.array:
        rows, rank = x.shape[0], group.rank()
        return mx.distributed.all_sum(cotangent, group=group)[rank * rows : (rank + 1) * rows]

    return gather


@lru_cache
def _sum_scatter_tokens(group: mx.distributed.Group) -> Callable[[mx.array], mx.array]:
    """(N * T, d) partials per rank -> (T, d): the sum over ranks of this rank's rows; VJP: gather.

    `all_sum` and a slice, since MLX's ring backend has no `sum_scatter`.
    """

    @mx.custom_function
    def sum_scatter(x: mx.array) -> mx.array:
        rows, rank = x.shape[0] // group.size(), group.rank()
        return mx.distributed.all_sum(x, group=group)[rank * rows : (rank + 1) * rows]

    @sum_scatter.vjp
    def sum_scatter_vjp(x: mx.array, cotangent: mx.array, output: mx.array) -> mx.array:
        return mx.distributed.all_gather(cotangent, group=group)

    return sum_scatter


def _local_dispatch(
    indices: mx.array, num_experts: int, first: int, local: int, capacity_factor: float | None
) -> ExpertDispatch:
    """The dispatch of the slots of experts `[first, first + local)`, numbered from 0.

    Rotating the expert ids by `first` puts this rank's experts first in the sorted order and
    keeps every expert's slots (and so its capacity drops) as the full dispatch has them; the
    other experts' rows then count as dropped: gathered as zeros, scattered nowhere.
    """
    rotated = (indices.astype(mx.int32) - first) % num_experts
    full = build_expert_dispatch(rotated, num_experts, capacity_factor, checked=False)
    mine = full.expert_of_row < local
    tokens = full.num_tokens
    return replace(
        full,
        num_experts=local,
        token_of_row=mx.where(mine, full.token_of_row, tokens),
        expert_of_row=mx.where(mine, full.expert_of_row, local),
        expert_counts=full.expert_counts[:local],
        group_sizes=full.group_sizes[:local],
        expert_offsets=full.expert_offsets[: local + 1],
        dropped=full.dropped | (rotated >= local),
    )


def exchanged_bytes(tokens: int, dim: int, itemsize: int, ranks: int) -> int:
    """Bytes each rank sends in one forward pass of `ExpertParallelMoELayer` (see the module doc).

    Args:
        tokens: Tokens per rank.
        dim: Model width.
        itemsize: Bytes per element of the activations.
        ranks: World size.
    """
    gather = (ranks - 1) * tokens * dim * itemsize
    ring_all_sum = 2 * (ranks - 1) * tokens * dim * itemsize
    return gather + ring_all_sum


class ExpertParallelMoELayer(nn.Module):
    """`SparseMoELayer` with its experts split across a group (expert parallelism).

    The same arguments and weight names as `SparseMoELayer` (`router`, `experts.gate_proj` ...),
    except that `experts` holds this rank's `num_experts / N` experts. `from_moe` shards an
    existing layer, so every rank holds the slice of the same weights.

    Args:
        dim: Model width.
        hidden_dim: Expert hidden width.
        num_experts: E, all ranks together; the world size must divide it.
        top_k: Experts per token.
        capacity_factor: Expert capacity relative to an even split of all ranks' slots, or None.
        activation: "swiglu" or "geglu".
        scoring: "softmax" or "sigmoid".
        normalize: Renormalize the top-k weights to sum to one.
        group: The group to shard across; the global group when None.
        check_shapes: Check on every call that all ranks pass the same input shape (one small
            `all_gather` and a host sync); turn off inside `mx.compile`.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        num_experts: int,
        top_k: int,
        capacity_factor: float | None = None,
        activation: str = "swiglu",
        scoring: str = "softmax",
        normalize: bool = True,
        group: mx.distributed.Group | None = None,
        check_shapes: bool = True,
    ) -> None:
        super().__init__()
        fn = "ExpertParallelMoELayer"
        self.group = resolve_group(group)
        check_divides(fn, "num_experts", num_experts, self.group)
        _check_top_k(fn, top_k, num_experts)
        _check_scoring(fn, scoring)
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.experts = SwitchGLU(dim, hidden_dim, num_experts // self.group.size(), activation=activation)
        self.top_k, self.num_experts, self.capacity_factor = top_k, num_experts, capacity_factor
        self.scoring, self.normalize, self.check_shapes = scoring, normalize, check_shapes

    @property
    def first_expert(self) -> int:
        """The global index of this rank's first expert."""
        return self.group.rank() * self.experts.num_experts

    @classmethod
    def from_moe(
        cls, layer: SparseMoELayer, group: mx.distributed.Group | None = None, check_shapes: bool = True
    ) -> ExpertParallelMoELayer:
        """This rank's shard of a single-process `SparseMoELayer`: its router and its experts.

        Args:
            layer: The layer to shard; every rank must pass the same weights.
            group: The group to shard across; the global group when None.
            check_shapes: As the constructor's.

        Raises:
            TypeError: `layer` is not a `SparseMoELayer`.
            ValueError: The world size does not divide the number of experts.
        """
        if not isinstance(layer, SparseMoELayer):
            raise TypeError(
                f"[ExpertParallelMoELayer.from_moe] layer has type {type(layer).__name__}; expected "
                "SparseMoELayer"
            )
        dim, num_experts = layer.router.weight.shape[1], layer.num_experts
        hidden = layer.experts.gate_proj.weight.shape[1]
        sharded = cls(
            dim, hidden, num_experts, layer.top_k, layer.capacity_factor, "swiglu", layer.scoring,
            layer.normalize, group, check_shapes,
        )  # fmt: skip
        # The source's activation, whichever it is (SwitchGLU keeps the function, not its name).
        sharded.experts.activation = layer.experts.activation
        first, local = sharded.first_expert, sharded.experts.num_experts
        sharded.router.weight = layer.router.weight
        for name in ("gate_proj", "up_proj", "down_proj"):
            source, target = layer.experts[name], sharded.experts[name]
            for param in ("weight", "bias"):
                if param in source:
                    target[param] = mx.contiguous(source[param][first : first + local])
        return sharded

    def reduce_router_gradients(self, grads: dict) -> dict:
        """`grads` (this layer's gradient tree) with the router's summed over the ranks.

        The router's gradient on each rank is its tokens' share; the experts' are already whole
        on their owner. Averaging the whole tree across ranks, as data-parallel training does with
        replicated weights (`nn.average_gradients`), would mix different experts' gradients:
        reduce the router's with this and leave the experts' alone.

        Args:
            grads: A tree shaped like `self.trainable_parameters()`, with a "router" entry.

        Returns:
            The same tree, the router's gradients `all_sum`med (unchanged on a group of size 1).
        """
        if self.group.size() == 1:
            return grads
        router = {name: mx.distributed.all_sum(g, group=self.group) for name, g in grads["router"].items()}
        return {**grads, "router": router}

    def __call__(self, x: mx.array, return_router: bool = False) -> mx.array | tuple[mx.array, ...]:
        """The MoE output for this rank's tokens `x` of shape (..., dim).

        With `return_router`, also the router logits (tokens, E) and the chosen experts
        (tokens, k) of this rank's tokens.
        """
        fn = "ExpertParallelMoELayer"
        check_array(fn, "x", x, FLOAT_DTYPES)
        d = self.router.weight.shape[1]
        if x.ndim == 0 or x.shape[-1] != d:
            raise ValueError(f"[{fn}] x has shape {tuple(x.shape)}; expected (..., {d})")
        if self.check_shapes:
            agree(fn, self.group, x=tuple(x.shape))
        size, rank = self.group.size(), self.group.rank()
        tokens = x.reshape(-1, d)
        count = tokens.shape[0]
        if count == 0:  # the same on every rank (agreed); MLX's gathers have no VJP on empty arrays
            logits = self.router(tokens)
            indices = mx.zeros((0, self.top_k), mx.int32)
            empty = mx.zeros(x.shape, x.dtype)
            return (empty, logits, indices) if return_router else empty
        everyone = _gather_tokens(self.group)(tokens) if size > 1 else tokens
        logits = self.router(everyone)
        weights, indices = topk_router(logits, self.top_k, self.scoring, self.normalize)
        mine = slice(rank * count, (rank + 1) * count)
        dispatch = _local_dispatch(
            mx.stop_gradient(indices), self.num_experts, self.first_expert, self.experts.num_experts,
            self.capacity_factor,
        )  # fmt: skip
        rows = selective_gather(everyone, dispatch.token_of_row, checked=False, deterministic=True)
        out = self.experts.forward_sorted(rows, dispatch)
        partial = selective_scatter_add(
            mx.zeros(everyone.shape, x.dtype), out, dispatch.token_of_row, dispatch.combine_weights(weights),
            deterministic=True, checked=False,
        )  # fmt: skip
        combined = _sum_scatter_tokens(self.group)(partial) if size > 1 else partial
        combined = combined.reshape(x.shape)
        return (combined, logits[mine], indices[mine]) if return_router else combined
