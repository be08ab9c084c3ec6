"""Launching generated kernels through MLX's custom-kernel API with Triton's memory semantics.

MLX gives a custom kernel fresh output buffers and read-only inputs, while a
Triton kernel updates the arrays it is given. Each written pointer argument
therefore takes one of two paths:

* fresh: the caller's array came from `mtriton.empty` and was never used, so
  its old contents do not matter; it becomes a kernel output. Costs nothing.
* copy-on-write: the kernel writes into a private copy of the array passed as
  an input (its pointer is made writable in the kernel), and the result is that
  copy, made to depend on the kernel with `mx.depends`. Costs one copy.

Read-only pointer arguments and scalars are plain inputs.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

from .. import ir
from ..errors import LaunchError, OutOfResources
from ..ir import types as T
from ..runtime.jit import IR_TO_MX
from .cstyle.dialect import Dialect
from .cstyle.lowering import Lowering

MAX_BUFFERS = 31  # Metal's limit of buffer arguments per kernel

# id -> weak reference of arrays made by `mtriton.empty` and not yet written.
_fresh: dict[int, weakref.ref] = {}


def mark_fresh(array: mx.array) -> mx.array:
    """Records that `array`'s contents are unspecified (made by `mtriton.empty`)."""
    key = id(array)
    _fresh[key] = weakref.ref(array, lambda _, key=key: _fresh.pop(key, None))
    return array


def _take_fresh(array: Any) -> bool:
    ref = _fresh.pop(id(array), None)
    return ref is not None and ref() is array


def private_copy(array: mx.array) -> mx.array:
    """A new buffer with `array`'s contents that nothing else refers to."""
    if array.dtype == mx.bool_:
        return mx.logical_or(array, mx.array(False))
    return mx.add(array, mx.zeros((), dtype=array.dtype))


@dataclass(frozen=True)
class Source:
    """A generated kernel: the body MLX receives and what the launch needs to know."""

    name: str
    body: str
    header: str
    written: frozenset[str]
    shared_bytes: int


def generate(fn: ir.Function, dialect: Dialect, num_warps: int) -> Source:
    """Lowers `fn` to `dialect`; pointer argument k is `p{k}`, scalar argument k is `a{k}`."""
    names = {}
    for k, param in enumerate(fn.params):
        names[param.name] = f"p{k}" if isinstance(param.value.type.elem, T.PointerType) else f"a{k}"
    lowering = Lowering(fn, dialect, num_warps, names)
    body = lowering.run()
    written = frozenset(lowering.written)
    digest = hashlib.sha256((dialect.prelude + body).encode()).hexdigest()[:16]
    return Source(f"mtriton_{fn.name}_{digest}", body, dialect.prelude, written, lowering.shared_bytes)


class CustomKernelLauncher:
    """Calls MLX's `metal_kernel`/`cuda_kernel` factory (or the emulator's) for one IR function."""

    def __init__(
        self,
        fn: ir.Function,
        dialect: Dialect,
        num_warps: int,
        factory: Callable[..., Any],
        pointer_decl: Callable[[str, str, bool], str],
    ) -> None:
        self.fn = fn
        self.dialect = dialect
        self.threads = num_warps * 32
        self.source = generate(fn, dialect, num_warps)
        self.factory = factory
        self.pointer_decl = pointer_decl
        self.kernels: dict[tuple[bool, ...], Any] = {}
        if len(fn.params) + 1 > MAX_BUFFERS and dialect.name == "metal":
            raise OutOfResources(
                f"kernel {fn.name} has {len(fn.params)} arguments; Metal allows {MAX_BUFFERS} buffers per kernel"
            )

    def _kernel(self, fresh: tuple[bool, ...]) -> Any:
        kernel = self.kernels.get(fresh)
        if kernel is not None:
            return kernel
        inputs, outputs, prologue = [], [], []
        for k, (param, is_fresh) in enumerate(zip(self.fn.params, fresh)):
            elem = param.value.type.elem
            if not isinstance(elem, T.PointerType):
                inputs.append(f"a{k}")
                continue
            ctype = self.dialect.ctype(elem.element)
            if is_fresh:
                outputs.append(f"o{k}")
                prologue.append(self.pointer_decl(ctype, f"p{k}", f"o{k}", False))
            else:
                inputs.append(f"i{k}")
                prologue.append(self.pointer_decl(ctype, f"p{k}", f"i{k}", True))
        if not outputs:
            outputs.append("mt_done")
        body = "".join(f"  {line}\n" for line in prologue) + self.source.body
        kernel = self.factory(
            name=self.source.name + "_" + "".join("f" if f else "c" for f in fresh),
            input_names=inputs,
            output_names=outputs,
            source=body,
            header=self.source.header,
        )
        self.kernels[fresh] = kernel
        return kernel

    def __call__(self, args: Sequence[Any], grid: tuple[int, int, int]) -> list[mx.array | None]:
        fresh, inputs, copies = [], [], {}
        out_shapes, out_dtypes = [], []
        for k, (param, arg) in enumerate(zip(self.fn.params, args)):
            elem = param.value.type.elem
            if not isinstance(elem, T.PointerType):
                fresh.append(False)
                inputs.append(mx.array(arg, dtype=IR_TO_MX[elem]))
                continue
            if not isinstance(arg, mx.array):
                raise LaunchError(f"argument {param.name}: expected an mx.array, got {type(arg).__name__}")
            written = param.name in self.source.written
            is_fresh = written and _take_fresh(arg)
            fresh.append(is_fresh)
            if is_fresh:
                out_shapes.append(arg.shape)
                out_dtypes.append(arg.dtype)
            elif written:
                copies[k] = private_copy(arg)
                inputs.append(copies[k])
            else:
                inputs.append(arg)
        if not out_shapes:
            out_shapes, out_dtypes = [(1,)], [mx.int32]
        kernel = self._kernel(tuple(fresh))
        launch = {
            "inputs": inputs,
            "output_shapes": out_shapes,
            "output_dtypes": out_dtypes,
            "grid": (grid[0] * self.threads, grid[1], grid[2]),
            "threadgroup": (self.threads, 1, 1),
        }
        emulated = getattr(kernel, "returns_writable_inputs", False)
        if emulated:  # the emulator hands back what the kernel wrote into its inputs
            positions = [next(i for i, x in enumerate(inputs) if x is copies[k]) for k in copies]
            launch["writable_inputs"] = positions
        outs = kernel(**launch)
        results: list[mx.array | None] = [None] * len(args)
        out_iter = iter(outs)
        for k, is_fresh in enumerate(fresh):
            if is_fresh:
                results[k] = next(out_iter)
        if copies:
            if emulated:
                written = outs[len(outs) - len(copies) :]
            else:  # on a GPU the kernel wrote the copies' own buffers
                written = mx.depends(list(copies.values()), [outs[0]])
            for k, array in zip(copies, written):
                results[k] = array
        return results
