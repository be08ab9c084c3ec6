"""Launching generated kernels through MLX's custom-kernel API with Triton's memory semantics.

MLX gives a custom kernel fresh output buffers and read-only inputs, while a
Triton kernel updates the arrays it is given. Each written pointer argument
therefore takes one of two paths:

* fresh: the caller's array came from `mtriton.empty`/`empty_like` and no kernel
  wrote it yet, so its old contents do not matter; it becomes a kernel output. Costs
  nothing. One from `mtriton.zeros`/`full` (and `_like`) likewise, with MLX filling the
  launch's outputs with its value first (`init_value`, one per launch: a write pass).
* copy-on-write: the kernel writes through an input that holds the array's
  contents (its pointer is made writable in the kernel), and the result is that
  input as read after the kernel (see `_after`). The input is the caller's own
  buffer where MLX can donate it (no other array, view or pending op holds it:
  `private_copy`), else a copy; `_after` is one more pass over the array.

Why one pass after the kernel is the least that is correct: MLX orders GPU work by
the buffers each op declares. On CUDA (MLX 0.32, `cu::CommandEncoder`) an op in a
CUDA graph depends on the last op that declared each of its buffers as an output;
a custom kernel declares its inputs as inputs only, so a later reader of the
written input would depend on the op that made it, not on the kernel, and can run
concurrently with the kernel (the stale reads `mx.depends` gave: it adds no graph
node). The result must come from an op that reads one of the kernel's outputs, and
that op cannot write into the input's buffer in place (donation needs no other
holder, and the kernel's launch holds its inputs until the graph is committed), so
it makes a new buffer: a full pass. Metal inserts barriers the same way, by buffers.

A written argument that the kernel never reads takes the copy only so that the
elements it does not write keep their values: such a launch warns once (per kernel
and argument) that `mtriton.empty_like` avoids it. Proving instead that the stores
cover every element (a store masked by `offs < n` over a grid that covers n) would
need the grid, the scalars and every loop's bounds and pointer updates at each
launch (the tutorials' softmax stores in a loop over rows spaced by a stride, layer
norm in a loop over columns, matmul through pid remapping); one wrong proof leaves
garbage where old values belonged, silently. The warning asks the user instead, as
Triton's `torch.empty` habit does.

Read-only pointer arguments and scalars are plain inputs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import mlx.core as mx
import numpy as np

from .. import ir
from ..dtypes import IR_TO_MX, storage_dtype
from ..emulator import DataRace, EmulatorError
from ..errors import LaunchError, OutOfResources
from ..ir import types as T
from ..memory import NOT_FRESH, take_fresh
from ..options import LaunchOptions, warn_once
from .cstyle.dialect import Dialect
from .cstyle.kernel import generate

MAX_BUFFERS = 31  # Metal's limit of buffer arguments per kernel
# MLX takes a custom kernel's grid (threads per dimension) as C ints: more is a TypeError there.
MAX_GRID_THREADS = 2**31 - 1

# How each argument reaches the kernel (one letter each in the kernel's name).
SCALAR, INPUT, SMALL, FRESH, COPY = "scalar", "input", "small", "fresh", "copy"
# MLX passes inputs of fewer elements in the constant address space, which cannot be written.
SMALL_INPUT = 8


def private_copy(array: mx.array) -> mx.array:
    """A flat, row-contiguous buffer of at least SMALL_INPUT elements holding `array`'s contents,
    that no other array shares.

    `x.at[0:1].multiply(1)` is MLX's `SliceUpdate` (product): its output takes `x`'s buffer
    where MLX can donate it (nothing else holds `x` or a view of it when it runs), and then
    multiplies one element by one, which keeps every value (-0.0 and NaN included); otherwise it
    copies. Where the caller's array is its only holder (an `mx.zeros` made for the launch,
    which MLX still fills, or an evaluated array the launch rebinds), the copy costs no pass
    (measured on MLX's CPU build: no new memory, 0.1 ms for 128 MB where a copy took 98 ms). Flattened first: a kernel input that
    is not row-contiguous would be copied again by MLX's launch, and the kernel's writes would
    land in that temporary.
    """
    flat = array.reshape(-1)
    if flat.size < SMALL_INPUT:
        return mx.concatenate([flat, mx.zeros((SMALL_INPUT - flat.size,), dtype=array.dtype)])
    return flat.at[0:1].multiply(True if array.dtype == mx.bool_ else 1)


@functools.lru_cache(maxsize=4096)
def _scalar(kind: type, key: int | str | bool, dtype: mx.Dtype) -> mx.array:
    """The input array of a scalar argument, reused across launches (MLX arrays are immutable)
    instead of a new array, allocated and uploaded, per launch (on the H100 this saved ~1.5 us
    of mtriton's ~24 us dispatch). `kind` keeps 1, 1.0 and True apart; a float is keyed by its
    `float.hex()`, which keeps 0.0 and -0.0 apart (they compare equal)."""
    if kind is int and key >= 2**63:  # MLX converts Python ints through int64
        return mx.array(np.array(key, dtype=np.uint64))
    return mx.array(float.fromhex(key) if kind is float else key, dtype=dtype)


# Ops that read memory through their first operand.
_READS = frozenset(("load", "atomic_rmw", "atomic_cas"))


def params_read(fn: ir.Function) -> frozenset[str]:
    """The pointer parameters whose memory the kernel may read (loads and atomics).

    A value derived from a parameter (by any op, through loops' and branches' carried values)
    counts as a pointer into it; that over-approximates, which only costs a missed warning.
    """
    origins: dict[int, frozenset[str]] = {}
    for p in fn.params:
        if isinstance(p.value.type.elem, T.PointerType):
            origins[id(p.value)] = frozenset((p.name,))
    read: set[str] = set()
    changed = True
    while changed:  # carried values feed back into their regions: iterate to a fixed point
        changed = False
        for op in ir.walk(fn.body):
            found = frozenset().union(*(origins.get(id(v), frozenset()) for v in op.operands))
            for region in op.regions:
                if region.terminator is not None:
                    for v in region.terminator.operands:
                        found |= origins.get(id(v), frozenset())
            if op.name in _READS and op.operands:
                read |= origins.get(id(op.operands[0]), frozenset())
            if not found:
                continue
            for v in [*op.results, *(a for region in op.regions for a in region.args)]:
                if not found <= origins.get(id(v), frozenset()):
                    origins[id(v)] = origins.get(id(v), frozenset()) | found
                    changed = True
    return frozenset(read)


def _same_fill(init: float | None, fill: float | None) -> bool:
    """Whether an output with `fill` (None: any contents) can share a launch's `init_value`:
    MLX has one per launch. Bitwise: 0.0 and -0.0 differ."""
    return fill is None or init is None or init.hex() == fill.hex()


def _warn_copied(kernel: str, name: str) -> None:
    warn_once(
        f"kernel {kernel}: argument {name} is written, never read, and not from mtriton.empty: each "
        "launch copies it so that the elements the kernel does not write keep their values (with "
        "mx.zeros outputs the tutorial kernels took 2.7x as long on an H200). If the kernel writes "
        "every element, allocate it with mtriton.empty_like(x) or mtriton.empty(shape, dtype)"
    )


def _unpad(copy: mx.array, original: mx.array) -> mx.array:
    return copy[: original.size].reshape(original.shape)


class CustomKernelLauncher:
    """Calls MLX's `metal_kernel`/`cuda_kernel` factory (or the emulator's) for one IR function."""

    def __init__(
        self,
        fn: ir.Function,
        dialect: Dialect,
        opts: LaunchOptions,
        factory: Callable[..., Any],
    ) -> None:
        self.fn = fn
        self.dialect = dialect
        self.threads = opts.num_warps * 32
        self.source = generate(fn, dialect, opts)
        self.factory = factory
        # by the arguments' paths: (the kernel, whether it is the emulator's)
        self.kernels: dict[tuple[str, ...], tuple[Any, bool]] = {}
        read = params_read(fn)
        # per parameter: (name, dtype of a scalar or None for a pointer, whether it is written,
        # whether the kernel may read it)
        self.params = [
            (p.name, None if isinstance(p.value.type.elem, T.PointerType) else IR_TO_MX[p.value.type.elem],
             p.name in self.source.written, p.name in read)
            for p in fn.params
        ]  # fmt: skip
        if len(fn.params) + 1 > MAX_BUFFERS and dialect.name == "metal":
            raise OutOfResources(
                f"kernel {fn.name} has {len(fn.params)} arguments; Metal allows {MAX_BUFFERS} buffers per kernel"
            )

    def full_source(self) -> str:
        """The complete source MLX generates, with every written argument copy-on-write."""
        paths, inputs = [], []
        for param in self.fn.params:
            elem = param.value.type.elem
            if isinstance(elem, T.PointerType):
                written = param.name in self.source.written
                paths.append(COPY if written else INPUT)
                inputs.append(mx.zeros((SMALL_INPUT,), storage_dtype(elem.element)))
            else:
                paths.append(SCALAR)
                inputs.append(mx.array(0, IR_TO_MX[elem]))
        return self._kernel(tuple(paths))[0].full_source(inputs=inputs, output_dtypes=[mx.int32])

    def _kernel(self, paths: tuple[str, ...]) -> tuple[Any, bool]:
        """The kernel for these paths and whether it is the emulator's (which hands back what
        the kernel wrote into its inputs)."""
        found = self.kernels.get(paths)
        if found is not None:
            return found
        inputs, outputs, prologue = [], [], []
        for k, (param, path) in enumerate(zip(self.fn.params, paths)):
            elem = param.value.type.elem
            if path == SCALAR:
                inputs.append(f"a{k}")
                continue
            if path == FRESH:
                outputs.append(f"o{k}")
            else:
                inputs.append(f"i{k}")
            source = inputs[-1] if path != FRESH else outputs[-1]
            prologue += self.source.pointer_decls(self.dialect, f"p{k}", elem.element, source, path)
        if not outputs:
            outputs.append("mt_done")
        body = "".join(f"  {line}\n" for line in prologue) + self.source.body
        extra = {"shared_memory": self.source.shared_bytes} if self.dialect.dynamic_shared else {}
        kernel = self.factory(
            name=self.source.name + "_" + "".join(p[0] for p in paths),
            input_names=inputs,
            output_names=outputs,
            source=body,
            header=self.source.header,
            **extra,
        )
        found = self.kernels[paths] = (kernel, getattr(kernel, "returns_writable_inputs", False))
        return found

    def prepare(self, args: Sequence[Any], grid: tuple[int, int, int]) -> Callable[[], Any]:
        """MLX's custom-kernel call for these arguments with its inputs built once (see
        `KernelLauncher.raw`): it returns the kernel's outputs and writes back nothing."""
        kernel, launch, *_ = self._launch(args, grid)
        return lambda: kernel(**launch)

    def rebinder(
        self, args: Sequence[Any], grid: tuple[int, int, int]
    ) -> Callable[[Sequence[Any]], list[mx.array | None]]:
        """This call (`__call__(args, grid)`) as a function of new arguments of the same kind:
        the same scalars, and arrays of the same shapes and dtypes whose written ones are all
        fresh outputs (`mtriton.empty`), so that only the read arrays change. It builds MLX's
        call once and then swaps those arrays in, skipping the per-argument work of each
        launch. Any other launch (a copied or `full` output, the emulator's) is `__call__`."""
        kernel, launch, paths, _, copies, emulated = self._launch(args, grid)
        if copies or emulated or "init_value" in launch:
            return lambda new: self(new, grid)
        # where each read array goes among MLX's inputs (scalars and read arrays, in order)
        position = {k: i for i, k in enumerate(k for k, path in enumerate(paths) if path is not FRESH)}
        reads = [
            (k, position[k], args[k].ndim == 0) for k, path in enumerate(paths) if path in (INPUT, SMALL)
        ]
        fresh = [k for k, path in enumerate(paths) if path is FRESH]
        template = launch["inputs"]

        def relaunch(new: Sequence[Any]) -> list[mx.array | None]:
            inputs = list(template)
            for k, i, scalar_shaped in reads:
                inputs[i] = new[k].reshape(1) if scalar_shaped else new[k]
            outs = kernel(**{**launch, "inputs": inputs})
            results: list[mx.array | None] = [None] * len(new)
            for k, out in zip(fresh, outs):  # the fresh outputs come first, in parameter order
                results[k] = out
            return results

        return relaunch

    def __call__(self, args: Sequence[Any], grid: tuple[int, int, int]) -> list[mx.array | None]:
        kernel, launch, paths, inputs, copies, emulated = self._launch(args, grid)
        try:
            outs = kernel(**launch)
        except EmulatorError as err:
            raise self._relabelled(err) from None
        results: list[mx.array | None] = [None] * len(args)
        for k, out in zip((k for k, path in enumerate(paths) if path is FRESH), outs):
            results[k] = out  # the fresh outputs come first, in parameter order
        if copies:
            if emulated:
                written = outs[len(outs) - len(copies) :]
            else:
                written = [_after(inputs[i], outs[0]) for i in copies.values()]
            for k, array in zip(copies, written):
                results[k] = _unpad(array, args[k])
        return results

    def _relabelled(self, err: EmulatorError) -> EmulatorError:
        """`err` naming the kernel's parameters (`'x_ptr'`) where it named MLX's buffers (`'i0'`),
        in its message and in the fields that name a buffer."""
        names = {
            buffer: name for k, (name, *_) in enumerate(self.params) for buffer in (f"i{k}", f"a{k}", f"o{k}")
        }

        def relabel(text: str) -> str:
            for buffer, name in names.items():
                text = text.replace(f"'{buffer}'", f"'{name}'")
            return text

        err.args = (relabel(str(err)),)
        for field in ("buffer", "output"):
            value = getattr(err, field, None)
            if value in names:
                setattr(err, field, names[value])
        if isinstance(err, DataRace):
            err.accesses = tuple(dataclasses.replace(a, memory=relabel(a.memory)) for a in err.accesses)
        return err

    def _launch(
        self, args: Sequence[Any], grid: tuple[int, int, int]
    ) -> tuple[Any, dict[str, Any], list[str], list[mx.array], dict[int, int], bool]:
        """The kernel for these arguments' paths and its call's keyword arguments, with the
        paths, inputs, copied arguments (argument index -> input index) and whether it is
        the emulator's."""
        paths, inputs, copies = [], [], {}
        out_shapes, out_dtypes = [], []
        init = None  # the fill of `mtriton.zeros`/`full` outputs
        for (name, scalar_dtype, written, read), arg in zip(self.params, args):
            if scalar_dtype is not None:
                paths.append(SCALAR)
                kind = type(arg)
                if kind is int or kind is bool:
                    inputs.append(_scalar(kind, arg, scalar_dtype))
                elif kind is float:
                    inputs.append(_scalar(kind, arg.hex(), scalar_dtype))
                else:
                    inputs.append(mx.array(arg, dtype=scalar_dtype))
                continue
            if type(arg) is not mx.array and not isinstance(arg, mx.array):
                raise LaunchError(f"argument {name}: expected an mx.array, got {type(arg).__name__}")
            if not written:
                paths.append(INPUT if arg.size >= SMALL_INPUT else SMALL)
                # MLX passes a 0-d input as a reference (`const constant T&`), as it does scalars:
                # as (1,) it comes as the pointer the kernel's source declares.
                inputs.append(arg.reshape(1) if arg.ndim == 0 else arg)
            elif (fill := take_fresh(arg)) is not NOT_FRESH and _same_fill(init, fill):
                if fill is not None:  # MLX fills every output of the launch with it
                    init = fill
                paths.append(FRESH)
                out_shapes.append(arg.shape)
                out_dtypes.append(arg.dtype)
            else:  # (an `mtriton.full` array whose value differs from the launch's fill: its contents)
                if not read:
                    _warn_copied(self.fn.name, name)
                paths.append(COPY)
                copies[len(paths) - 1] = len(inputs)
                inputs.append(private_copy(arg))
        placeholder = not out_shapes
        if placeholder:  # MLX needs an output: `mt_done`, which no thread writes
            out_shapes, out_dtypes = [(1,)], [mx.int32]
        if grid[0] * self.threads > MAX_GRID_THREADS:
            raise LaunchError(
                f"kernel {self.fn.name}: grid has {grid[0]} programs along axis 0, {grid[0] * self.threads} "
                f"threads at num_warps={self.threads // 32}; MLX launches at most {MAX_GRID_THREADS} threads "
                "along a grid axis (use axes 1 and 2 for more programs)"
            )
        kernel, emulated = self._kernel(tuple(paths))
        launch = {
            "inputs": inputs,
            "output_shapes": out_shapes,
            "output_dtypes": out_dtypes,
            "grid": (grid[0] * self.threads, grid[1], grid[2]),
            "threadgroup": (self.threads, 1, 1),
        }
        if init is not None:
            launch["init_value"] = init
        if emulated:  # the emulator hands back what the kernel wrote into its inputs
            launch["writable_inputs"] = list(copies.values())
            atomic = [i for k, i in copies.items() if self.fn.params[k].name in self.source.atomic]
            launch["order_dependent_inputs"] = atomic
            launch["buffer_alignment"] = self._view_alignment(paths, args)
            # the unwritten check looks at the caller's elements, not the padding of a private copy
            launch["writable_sizes"] = [args[k].size for k in copies]
            launch["placeholder_outputs"] = [0] if placeholder else []
        return kernel, launch, paths, inputs, copies, emulated

    def _view_alignment(self, paths: Sequence[str], args: Sequence[Any]) -> dict[str, int]:
        """Per MLX buffer name, the alignment its start needs where the kernel reads it as a wider
        type than its own (a pointer cast, `mtriton.reinterpret`): MLX's allocations have it, the
        emulator's not by default."""
        widest: dict[str, int] = {}
        for k, param in enumerate(self.fn.params):
            if isinstance(param.value.type.elem, T.PointerType):
                widest[f"p{k}"] = param.value.type.elem.element.itemsize
        for _, root, dtype in self.source.views:
            widest[root] = max(widest.get(root, 1), dtype.itemsize)
        alignment = {}
        for k, (path, arg) in enumerate(zip(paths, args)):
            size = widest.get(f"p{k}", 1)
            if path != SCALAR and size > arg.itemsize:
                alignment[f"o{k}" if path == FRESH else f"i{k}"] = size
        return alignment


def _after(copy: mx.array, kernel_output: mx.array) -> mx.array:
    """`copy` (which the kernel wrote through) as read after the kernel has run.

    MLX orders GPU work by the arrays each op reads and writes; the kernel's writes into its
    input are invisible to that, and `mx.depends` adds no GPU node, so a later reader of the
    copy could run before the kernel (seen on CUDA: stale reads). Subtracting an exact zero
    made from one byte of the kernel's output is a real node ordered after the kernel; it
    costs one pass over the array (measured on an H100: ~26 us for 1M floats, where a `where`
    with a broadcast condition took 0.8 ms). `x - 0` keeps every value, -0.0 and NaN included.
    """
    zero = kernel_output.reshape(-1)[:1].view(mx.uint8)[0] * 0
    if copy.dtype == mx.bool_:
        return mx.logical_or(copy, zero != 0)
    return mx.subtract(copy, zero.astype(copy.dtype))
