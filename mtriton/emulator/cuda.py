"""cuda-emu: runs ``mx.fast.cuda_kernel`` kernels on the CPU with metal-emu's runtime.

``cuda_kernel`` takes the arguments of ``mx.fast.cuda_kernel`` and returns a callable
with the same keyword arguments. A call writes the kernel function MLX's CUDA
backend would compile (inputs ``const T*``, outputs ``T*``, in order; a Python
scalar is a one-element input), compiles it as C++ against ``shim/cuda_shim.h``
and runs it as metal-emu runs Metal: a block is a threadgroup of fibers, a warp a
32-lane SIMD-group, and the same checks apply (``emulator.set_checks``). As on
MLX, ``grid`` counts threads and every block is a whole ``threadgroup``: the last
one may run threads past the grid. ``extern __shared__`` arrays get the call's
``shared_memory`` bytes. See docs/metal-emu.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx

from . import abi
from .runner import MAX_THREADS_PER_THREADGROUP, Call, get_checks, launch_dims, output_specs
from .signature import KernelSource, cuda_params, type_string
from .translate import Translation, entry_point, insert_locations

# An H100 block may use up to 227 KiB of shared memory (with the opt-in MLX makes).
SHARED_MEMORY_LIMIT = 227 * 1024

_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?P<type>[A-Za-z_][\w:<>, ]*?)\s+(?P<name>[A-Za-z_]\w*)\s*\[\s*\]\s*;"
)
_ARRAY = r"[A-Za-z_]\w*\s*(?:\[[^\];]+\]\s*)+"
_STATIC_SHARED = re.compile(
    rf"(?<![\w.])__shared__\s+(?P<type>[A-Za-z_][\w:<>, ]*?)\s+(?P<decls>{_ARRAY}(?:,\s*{_ARRAY})*);"
)
_NAME_DIMS = re.compile(r"\s*([A-Za-z_]\w*)\s*(.*?)\s*$", re.S)
# What makes a thread wait for others; a kernel without any runs without fibers.
_SYNC_NAMES = ("__syncthreads", "__syncwarp", "__shfl", "mt_ldmatrix", "mt_mma")
# A dereference of a pointer not aligned to its type (CUDA's vector types are aligned to their
# size) executes a trap, which the runtime reports as a misaligned access, as a GPU faults.
_ALIGNMENT_CHECKS = ("-fsanitize=alignment", "-fsanitize-undefined-trap-on-error")
# Loaded kernels by source and dynamic shared memory size.
_loaded: dict[tuple[str, int], tuple[abi.KernelBuilds, Translation]] = {}


def _source(
    name: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    body: str,
    header: str,
    inputs: Sequence[mx.array],
    output_dtypes: Sequence[mx.Dtype],
) -> KernelSource:
    params = cuda_params(
        input_names,
        [type_string(x.dtype, "cuda") for x in inputs],
        output_names,
        [type_string(dtype, "cuda") for dtype in output_dtypes],
        body,
    )
    function = f"custom_kernel_{name}"
    signature = ",\n    ".join(f"{p.ctype} {p.name}" for p in params)
    head = f"{header}\n__global__ void {function}(\n    {signature}) {{\n"
    text = f"{head}{body}\n}}\n"
    return KernelSource(text, function, function, params, head.count("\n") + 1, header.count("\n") + 1)


def _translate(source: KernelSource, body: str, shared_memory: int) -> Translation:
    names: list[str] = []

    def extern(m: re.Match[str]) -> str:
        names.append(m.group("name"))
        t, n = m.group("type"), m.group("name")
        return f'{t}* {n} = __emu::dynamic_shared<{t}>({len(names) - 1}, {shared_memory}, "{n}");'

    def static(m: re.Match[str]) -> str:
        out = []
        for declarator in m.group("decls").split(","):
            name, dims = _NAME_DIMS.match(declarator).groups()  # type: ignore[union-attr]
            names.append(name)
            out.append(
                f'auto& {name} = __emu::threadgroup_var<{m.group("type")}{dims}>({len(names) - 1}, "{name}");'
            )
        return " ".join(out)

    text = _STATIC_SHARED.sub(static, _EXTERN_SHARED.sub(extern, source.text))
    last = source.text.count("\n") - 1
    text, locations = insert_locations(text, source.body_line, last)
    prologue = "  __emu::start_thread();\n"
    cpp = f'#include "cuda_shim.h"\n#line 1 "{source.host_name}.cu"\n{text}\n{entry_point(source, prologue)}'
    cooperative = any(name in body for name in _SYNC_NAMES)
    return Translation(cpp, tuple(locations), tuple(names), cooperative, "CUDA")


class CudaKernel:
    """A kernel built from a CUDA body, as ``mx.fast.cuda_kernel`` builds one; call it like MLX's.

    Args:
        name: Name for the kernel.
        input_names: The parameter names of the inputs (``const T*``).
        output_names: The parameter names of the outputs (``T*``).
        source: The body of the kernel function.
        header: Source placed before the function.
        ensure_row_contiguous: Copy non-row-contiguous inputs before the call.
        shared_memory: Bytes of dynamic shared memory (``extern __shared__``).
    """

    # mtriton's launcher reads back what the kernel wrote into inputs (see metal.MetalKernel)
    returns_writable_inputs = True

    def __init__(
        self,
        name: str,
        input_names: Sequence[str],
        output_names: Sequence[str],
        source: str,
        header: str = "",
        ensure_row_contiguous: bool = True,
        shared_memory: int = 0,
    ) -> None:
        if not output_names:
            raise ValueError("[cuda_kernel] Must specify at least one output.")
        if not 0 <= shared_memory <= SHARED_MEMORY_LIMIT:
            raise ValueError(
                f"[cuda_kernel] shared_memory must be in [0, {SHARED_MEMORY_LIMIT}], got {shared_memory}"
            )
        self.name = name
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.source = source
        self.header = header
        self.ensure_row_contiguous = ensure_row_contiguous
        self.shared_memory = shared_memory

    def __call__(
        self,
        *,
        inputs: Sequence[Any],
        output_shapes: Sequence[Sequence[int]],
        output_dtypes: Sequence[mx.Dtype],
        grid: tuple[int, int, int],
        threadgroup: tuple[int, int, int],
        init_value: float | None = None,
        verbose: bool = False,
        stream: Any = None,
        writable_inputs: Sequence[int] = (),
        order_dependent_inputs: Sequence[int] = (),
        buffer_alignment: Mapping[str, int] | None = None,
        writable_sizes: Sequence[int] = (),
        placeholder_outputs: Sequence[int] = (),
    ) -> list[mx.array]:
        """Runs the kernel; the arguments are ``metal.MetalKernel.__call__``'s (no templates)."""
        del stream
        if len(inputs) != len(self.input_names) or len(output_shapes) != len(self.output_names):
            raise ValueError(
                f"[cuda_kernel] expected {len(self.input_names)} inputs and {len(self.output_names)} outputs, "
                f"got {len(inputs)} and {len(output_shapes)}"
            )
        arrays = [x if isinstance(x, mx.array) else mx.array(x) for x in inputs]
        source = _source(
            self.name, self.input_names, self.output_names, self.source, self.header, arrays, output_dtypes
        )
        if verbose:
            print(f"Generated source code for `{self.name}`:\n```\n{source.text}\n```")
        grid, threadgroup = launch_dims("cuda_kernel", grid, threadgroup)
        if threadgroup[0] * threadgroup[1] * threadgroup[2] > MAX_THREADS_PER_THREADGROUP:
            raise ValueError(
                f"[cuda_kernel] a block has at most {MAX_THREADS_PER_THREADGROUP} threads, got {threadgroup}"
            )
        # MLX launches ceil(grid / threadgroup) whole blocks
        grid = tuple(-(-g // t) * t if t > 0 else g for g, t in zip(grid, threadgroup, strict=True))
        key = (source.text, self.shared_memory)
        loaded = _loaded.get(key)
        if loaded is None:
            translation = _translate(source, self.source, self.shared_memory)
            loaded = _loaded[key] = (
                abi.KernelBuilds(translation.cpp, source.host_name, _ALIGNMENT_CHECKS),
                translation,
            )
        outputs = output_specs(self.output_names, output_shapes, output_dtypes)
        call = Call(loaded[0], source, loaded[1], self.name, get_checks(), SHARED_MEMORY_LIMIT)
        return call.run(
            arrays,
            outputs,
            grid,
            threadgroup,
            init_value,
            self.ensure_row_contiguous,
            False,
            writable_inputs,
            order_dependent_inputs,
            buffer_alignment,
            writable_sizes,
            placeholder_outputs,
        )


# MLX's factory takes the same arguments as the kernel object here.
cuda_kernel = CudaKernel
