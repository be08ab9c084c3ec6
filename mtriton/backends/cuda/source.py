"""The complete CUDA source MLX compiles for a kernel (`mtriton dump-cuda --full`)."""

from __future__ import annotations

from ... import ir
from ...emulator.signature import cuda_params
from ...ir import types as T
from ...options import LaunchOptions
from ..cstyle.kernel import generate
from ..gpu_launch import COPY
from .dialect import CUDA, WARPGROUP_ARCH, dialect_for


def full_cuda_source(fn: ir.Function, opts: LaunchOptions) -> str:
    """A complete translation unit as MLX builds it, for `nvcc -arch=sm_90 -c`.

    MLX's generated signature (`emulator.signature.cuda_params`) takes the inputs as
    `const T*` and the outputs as `T*`, in order; every written pointer argument is
    shown on the copy-on-write path (an input made writable), and the one output is
    the launcher's placeholder `mt_done`.

    Args:
        fn: The verified IR function.
        opts: Its launch options.

    Returns:
        The includes, the prelude, the kernel function with MLX's signature and the body.
    """
    source = generate(fn, dialect_for(WARPGROUP_ARCH), opts)  # an H100/H200's, MTRITON_WGMMA honoured
    names, types, prologue = [], [], []
    for k, param in enumerate(fn.params):
        elem = param.value.type.elem
        if isinstance(elem, T.PointerType):
            ctype = CUDA.ctype(elem.element)
            names.append(f"i{k}")
            prologue += [
                f"  {line}\n" for line in source.pointer_decls(CUDA, f"p{k}", elem.element, f"i{k}", COPY)
            ]
        else:
            ctype = CUDA.ctype(elem)
            names.append(f"a{k}")
        types.append(ctype)
    body = "".join(prologue) + source.body
    params = cuda_params(names, types, ["mt_done"], ["int"], body)
    signature = ", ".join(f"{p.ctype} {p.name}" for p in params)
    return "\n".join(
        [
            "#include <cuda_fp16.h>",
            "#include <cuda_bf16.h>",
            "#include <cstring>",
            source.header,
            f'extern "C" __global__ void {source.name}({signature}) {{',
            body + "}",
        ]
    )
