"""mlx_primitives.training: gradient checkpointing on MLX's own mechanism (`mx.checkpoint`).

A checkpointed function keeps only its inputs and outputs for the backward pass and runs its
forward again there to rebuild the intermediates: memory of one segment's activations at a
time, for one more forward pass. Gradients are those of the plain path (the same operations
run, in the same order).

- `checkpoint(fn)`: a function, or a module (its trainable parameters become inputs of the
  checkpoint, as in `mlx.nn.utils.checkpoint`, so their gradients flow).
- `checkpoint_sequential(layers, segments, x)`: a stack of layers in `segments` checkpointed
  runs, as `torch.utils.checkpoint.checkpoint_sequential`.
- `checkpointable`: decorates a module's `__call__` so that `Module(..., checkpoint=True)`
  runs it checkpointed (the attention modules use it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import mlx.core as mx
import mlx.nn as nn

F = TypeVar("F", bound=Callable[..., Any])


def checkpoint(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with gradient checkpointing: its intermediates are recomputed in the backward pass.

    Args:
        fn: A function of arrays (closed-over arrays get no gradient: pass them as arguments),
            an `nn.Module`, or a module's bound method; a module's trainable parameters are
            inputs of the checkpoint, so `nn.value_and_grad` differentiates them.

    Returns:
        A function called like `fn`.
    """
    if isinstance(fn, nn.Module):
        return nn.utils.checkpoint(fn)
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, nn.Module):
        return nn.utils.checkpoint(owner, fn)
    if not callable(fn):
        raise TypeError(
            f"[checkpoint] fn must be callable (a function or an nn.Module), got {type(fn).__name__}"
        )
    return mx.checkpoint(fn)


def _segment(layers: Sequence[Callable[[mx.array], mx.array]]) -> Callable[[mx.array], mx.array]:
    """The layers run one after another under one checkpoint, their parameters as inputs."""
    modules = [layer for layer in layers if isinstance(layer, nn.Module)]

    def run(params: list[dict[str, Any]], x: mx.array) -> mx.array:
        for module, p in zip(modules, params):
            module.update(p)
        for layer in layers:
            x = layer(x)
        return x

    checkpointed = mx.checkpoint(run)
    return lambda x: checkpointed([m.trainable_parameters() for m in modules], x)


def checkpoint_sequential(
    layers: Sequence[Callable[[mx.array], mx.array]] | nn.Sequential, segments: int, x: mx.array
) -> mx.array:
    """Runs `layers` on `x` in `segments` contiguous runs, all but the last checkpointed.

    Only each segment's input is kept for the backward pass. The last segment runs plainly,
    as in PyTorch: the backward pass starts there and would rebuild its intermediates at once,
    so checkpointing it would cost a forward pass and save no peak memory.

    Args:
        layers: Callables of one array (modules or functions), or an `nn.Sequential`.
        segments: How many runs, from 1 to `len(layers)`; the first runs take the extra layer
            where they do not divide evenly.
        x: The input of the first layer.

    Returns:
        The output of the last layer.
    """
    if isinstance(layers, nn.Sequential):
        layers = layers.layers
    if not isinstance(layers, Sequence) or isinstance(layers, (str, bytes)) or not layers:
        raise TypeError(
            f"[checkpoint_sequential] layers must be a non-empty sequence of callables, got {layers!r}"
        )
    not_callable = [i for i, layer in enumerate(layers) if not callable(layer)]
    if not_callable:
        raise TypeError(f"[checkpoint_sequential] layers must be callables; layers[{not_callable[0]}] is not")
    if isinstance(segments, bool) or not isinstance(segments, int) or not 1 <= segments <= len(layers):
        raise ValueError(
            f"[checkpoint_sequential] segments must be an int from 1 to len(layers) = {len(layers)}, got {segments!r}"
        )
    if not isinstance(x, mx.array):
        raise TypeError(f"[checkpoint_sequential] x must be an mx.array, got {type(x).__name__}")
    size, extra = divmod(len(layers), segments)
    start = 0
    for index in range(segments):
        stop = start + size + (index < extra)
        chunk = list(layers[start:stop])
        if index == segments - 1:
            for layer in chunk:
                x = layer(x)
        else:
            x = _segment(chunk)(x)
        start = stop
    return x


def checkpointable(call: F) -> F:
    """Decorates an `nn.Module`'s `__call__` (or another method): with `self.checkpoint` true,
    it runs under `checkpoint`, its trainable parameters and arguments kept, its intermediates
    recomputed in the backward pass. Randomness (dropout seeds) must be drawn outside it, so
    that the rerun draws the same.

    Adding checkpointing to a module is this decorator and a `checkpoint: bool = False`
    argument stored as `self.checkpoint`.
    """

    @functools.wraps(call)
    def wrapper(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if not getattr(self, "checkpoint", False):
            return call(self, *args, **kwargs)
        return nn.utils.checkpoint(self, functools.partial(call, self))(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
