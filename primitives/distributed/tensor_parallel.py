"""Tensor-parallel linears: a weight split across the ranks of a group, as mlx-lm shards its models.

`AllToShardedLinear` (Megatron's column-parallel linear) holds rows `[r * out / N, (r + 1) * out / N)`
of the weight (and bias): every rank takes the same input and returns its slice of the output
features. `ShardedToAllLinear` (row-parallel) holds a slice of the input features: every rank
takes its slice of the input and the partial products are `all_sum`med into the full output,
the same on every rank. A column layer followed by a row layer (an MLP, attention's projections)
exchanges one `all_sum` of the output forward and one of the input gradient backward.

The names, the weight layout, `from_linear(linear, segments=, group=)` and `shard_linear` are
MLX's (`mlx.nn.layers.distributed`), so they drop into a model sharded the mlx-lm way (a
`shard()` method calling `shard_linear`) and shard its weights identically; they add a cross-rank shape check before the first collective (a rank
with other shapes gets a `ValueError` naming it rather than a hang), the library's error messages,
and `nn.QuantizedLinear` sources (MLX's `mx.quantize` format, kept quantized and frozen).

Gradients (MLX's conventions, measured with MLX 0.32: `all_sum`'s VJP passes the cotangent
through unchanged, `all_gather`'s takes this rank's slice): every rank is taken to compute the
same loss from the replicated output, so a weight shard's gradient is the matching slice of the
single-process gradient and needs no reduction. The column layer's input gradient is the sum of
every rank's partial (`all_sum` in the backward pass, MLX's `sum_gradients`); the row layer's is
this rank's slice of the input gradient.

A group of size 1 runs plain `nn.Linear` math and no collective.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mlx.core as mx
import mlx.nn as nn
from mlx.nn.layers.distributed import sum_gradients

from .._common import FLOAT_DTYPES, check_array
from ._comm import agree, check_divides, resolve_group

__all__ = ["AllToShardedLinear", "ShardedToAllLinear", "shard_linear"]

Segments = int | Sequence[int] | Sequence[float]


def _split_points(n: int, segments: Segments) -> list[int]:
    """Where a weight axis of `n` splits into its fused segments (MLX's `_split`)."""
    if isinstance(segments, int):
        return [n * i // segments for i in range(1, segments)]
    return [int(s * n) if isinstance(s, float) else int(s) for s in segments]


def _shard(fn: str, array: mx.array, axis: int, segments: Segments, group: mx.distributed.Group) -> mx.array:
    """This rank's slice along `axis` of every segment (a fused QKV weight splits per segment)."""
    size, rank = group.size(), group.rank()
    parts = mx.split(array, _split_points(array.shape[axis], segments), axis=axis)
    mine = []
    for part in parts:
        if part.shape[axis] % size:
            raise ValueError(
                f"[{fn}] a segment of the sharded axis has {part.shape[axis]} features; the world "
                f"size {size} must divide it"
            )
        mine.append(mx.split(part, size, axis=axis)[rank])
    return mx.contiguous(mx.concatenate(mine, axis=axis))


class _ShardedLinear(nn.Module):
    """What both shardings share: the weight (float or `mx.quantize`d), the matmul, the checks."""

    _fn = "_ShardedLinear"

    def __init__(
        self,
        input_dims: int,
        output_dims: int,
        bias: bool,
        group: mx.distributed.Group | None,
        check_shapes: bool,
        sharded: tuple[str, int],
    ) -> None:
        super().__init__()
        self.group = resolve_group(group)
        check_divides(self._fn, *sharded, self.group)
        self.input_dims, self.output_dims, self.check_shapes = input_dims, output_dims, check_shapes
        # Set by `from_linear` for an `nn.QuantizedLinear` source (MLX's names and meanings).
        self.quantized, self.group_size, self.bits, self.mode = False, 0, 0, "affine"

    def _extra_repr(self) -> str:
        return (
            f"input_dims={self.input_dims}, output_dims={self.output_dims}, bias={'bias' in self}, "
            f"ranks={self.group.size()}"
        )

    def _check(self, x: mx.array, local_in: int) -> None:
        check_array(self._fn, "x", x, FLOAT_DTYPES)
        if x.ndim == 0 or x.shape[-1] != local_in:
            raise ValueError(
                f"[{self._fn}] x has shape {tuple(x.shape)}; expected (..., {local_in}), this rank's "
                f"input features"
            )
        if self.check_shapes:
            agree(self._fn, self.group, x=tuple(x.shape))

    def _matmul(self, x: mx.array) -> mx.array:
        if not self.quantized:
            return x @ self["weight"].T
        return mx.quantized_matmul(
            x, self["weight"], self["scales"], self.get("biases"), transpose=True,
            group_size=self.group_size, bits=self.bits, mode=self.mode,
        )  # fmt: skip

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear | nn.QuantizedLinear,
        *,
        segments: Segments = 1,
        group: mx.distributed.Group | None = None,
        check_shapes: bool = True,
    ) -> _ShardedLinear:
        """This rank's shard of `linear` (`nn.Linear` or `nn.QuantizedLinear`), as MLX's `from_linear`.

        Args:
            linear: The single-process layer; every rank must pass the same one.
            segments: Fused segments of the sharded axis (3 for a fused QKV weight), or the
                split points as ints or fractions, as MLX's `shard_linear`.
            group: The group to shard across; the global group when None.
            check_shapes: Check on every call that all ranks pass the same input shape (one
                small `all_gather` and a host sync); turn off inside `mx.compile`.

        Raises:
            TypeError: `linear` is neither `nn.Linear` nor `nn.QuantizedLinear`.
            ValueError: The world size does not divide the sharded features (or a segment).
        """
        if not isinstance(linear, (nn.Linear, nn.QuantizedLinear)):
            raise TypeError(
                f"[{cls._fn}.from_linear] linear has type {type(linear).__name__}; expected nn.Linear "
                "or nn.QuantizedLinear"
            )
        group = resolve_group(group)
        quantized = isinstance(linear, nn.QuantizedLinear)
        output_dims = linear.weight.shape[0]
        input_dims = linear.weight.shape[1] * 32 // linear.bits if quantized else linear.weight.shape[1]
        layer = cls(input_dims, output_dims, "bias" in linear, group, check_shapes)
        if quantized and cls is ShardedToAllLinear:
            # Each rank's slice of the input must be whole quantization groups.
            local = input_dims // group.size()
            if local % linear.group_size:
                raise ValueError(
                    f"[{cls._fn}.from_linear] input_dims / world size is {local}; the quantization "
                    f"group size {linear.group_size} must divide it"
                )
        for name, value in linear.parameters().items():
            setattr(layer, name, layer._shard_parameter(name, value, segments, group))
        if quantized:
            layer.quantized, layer.group_size, layer.bits = True, linear.group_size, linear.bits
            layer.mode = getattr(linear, "mode", "affine")
            layer.freeze()
        return layer


class AllToShardedLinear(_ShardedLinear):
    """A linear whose output features are split across the group (column-parallel).

    Every rank passes the same `x` of shape (..., input_dims) and gets its slice of the
    `output_dims` features, (..., output_dims / N). The input's gradient is summed over the ranks
    in the backward pass, so it is the single-process gradient on every rank.

    Args:
        input_dims: Input features.
        output_dims: Output features of the whole layer; the world size must divide them.
        bias: Whether the layer adds a bias (sharded like the output).
        group: The group to shard across; the global group when None.
        check_shapes: Check on every call that all ranks pass the same input shape.
    """

    _fn = "AllToShardedLinear"

    def __init__(
        self,
        input_dims: int,
        output_dims: int,
        bias: bool = True,
        group: mx.distributed.Group | None = None,
        check_shapes: bool = True,
    ) -> None:
        super().__init__(input_dims, output_dims, bias, group, check_shapes, ("output_dims", output_dims))
        scale = math.sqrt(1.0 / input_dims)
        local = output_dims // self.group.size()
        self.weight = mx.random.uniform(-scale, scale, (local, input_dims))
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (local,))

    def _shard_parameter(
        self, name: str, value: mx.array, segments: Segments, group: mx.distributed.Group
    ) -> mx.array:
        # Weight, scales and biases all have the output features on axis 0; the bias too.
        return _shard(f"{self._fn}.from_linear", value, 0, segments, group)

    def __call__(self, x: mx.array) -> mx.array:
        self._check(x, self.input_dims)
        y = self._matmul(sum_gradients(self.group)(x))
        return y + self["bias"] if "bias" in self else y


class ShardedToAllLinear(_ShardedLinear):
    """A linear whose input features are split across the group (row-parallel).

    Each rank passes its slice of the features, `x` of shape (..., input_dims / N), and every
    rank gets the whole output (..., output_dims): the partial products are `all_sum`med (one
    collective of the output's size), then the bias, held whole on every rank, is added.

    Args:
        input_dims: Input features of the whole layer; the world size must divide them.
        output_dims: Output features.
        bias: Whether the layer adds a bias (replicated).
        group: The group to shard across; the global group when None.
        check_shapes: Check on every call that all ranks pass the same input shape.
    """

    _fn = "ShardedToAllLinear"

    def __init__(
        self,
        input_dims: int,
        output_dims: int,
        bias: bool = True,
        group: mx.distributed.Group | None = None,
        check_shapes: bool = True,
    ) -> None:
        super().__init__(input_dims, output_dims, bias, group, check_shapes, ("input_dims", input_dims))
        scale = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(-scale, scale, (output_dims, input_dims // self.group.size()))
        if bias:
            self.bias = mx.random.uniform(-scale, scale, (output_dims,))

    def _shard_parameter(
        self, name: str, value: mx.array, segments: Segments, group: mx.distributed.Group
    ) -> mx.array:
        if name == "bias":
            return value
        # The quantized weight packs input features along its last axis, as scales and biases do.
        return _shard(f"{self._fn}.from_linear", value, -1, segments, group)

    def __call__(self, x: mx.array) -> mx.array:
        self._check(x, self.input_dims // self.group.size())
        y = self._matmul(x)
        if self.group.size() > 1:
            y = mx.distributed.all_sum(y, group=self.group)
        return y + self["bias"] if "bias" in self else y


def shard_linear(
    linear: nn.Linear | nn.QuantizedLinear,
    sharding: str,
    *,
    segments: Segments = 1,
    group: mx.distributed.Group | None = None,
) -> AllToShardedLinear | ShardedToAllLinear:
    """A sharded copy of `linear`, as MLX's `nn.layers.distributed.shard_linear`.

    Args:
        linear: `nn.Linear` or `nn.QuantizedLinear`.
        sharding: "all-to-sharded" (output features split) or "sharded-to-all" (input features).
        segments: Fused segments of the sharded axis.
        group: The group to shard across; the global group when None.

    Returns:
        An `AllToShardedLinear` or a `ShardedToAllLinear`.
    """
    kinds = {"all-to-sharded": AllToShardedLinear, "sharded-to-all": ShardedToAllLinear}
    if sharding not in kinds:
        raise ValueError(
            f"[shard_linear] sharding must be 'all-to-sharded' or 'sharded-to-all'; got {sharding!r}"
        )
    return kinds[sharding].from_linear(linear, segments=segments, group=group)
