"""mtriton: a Triton-style kernel language and compiler for MLX.

Write kernels as for Triton (`import mtriton as triton`,
`import mtriton.language as tl`) and launch them on `mx.array`s with
`kernel[grid](...)`.
"""

from . import language, testing  # noqa: E402
from .backends import current_backend_name, current_target, set_backend  # noqa: E402
from .errors import (  # noqa: E402
    BackendUnavailable,
    CompilationError,
    KernelTypeError,
    LaunchError,
    LaunchOverflowError,
    LaunchTypeError,
    MTritonError,
    OutOfResources,
    TritonError,
    UnsupportedError,
)
from .memory import empty, empty_like, full, full_like, zeros, zeros_like  # noqa: E402
from .runtime.autotune import Config, autotune, heuristics  # noqa: E402
from .runtime.jit import JITFunction, jit  # noqa: E402
from .runtime.reinterpret import reinterpret  # noqa: E402
from .runtime.utils import cdiv, next_power_of_2  # noqa: E402
from .version import __version__

__all__ = [
    "BackendUnavailable", "CompilationError", "Config", "JITFunction", "KernelTypeError",
    "LaunchError", "LaunchOverflowError", "LaunchTypeError", "MTritonError", "TritonError", "OutOfResources", "UnsupportedError", "autotune", "cdiv",
    "current_backend_name", "current_target", "empty", "empty_like", "full", "full_like", "heuristics", "jit", "language", "next_power_of_2", "reinterpret", "set_backend", "testing", "zeros", "zeros_like",
]  # fmt: skip
