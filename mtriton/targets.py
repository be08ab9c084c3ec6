"""Every backend mtriton has, in one table.

`options.BACKENDS`, the backend registry (`mtriton.backends`), the source dump
(`mtriton dump-metal` / `dump-cuda`) and the test suite's backend fixture all
read this table, so adding a backend is a folder under `mtriton/backends/` and
one row here. It imports nothing, so reading it loads no backend: each row's
module is imported when its backend is first used.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One backend.

    Attributes:
        name: What `mtriton.set_backend` and `MTRITON_BACKEND` take.
        module: The module that defines the backend's class.
        backend: The class's name in `module`; called with no arguments, it makes the backend.
        language: What it runs kernels as: "metal", "cuda" or "interpreter" (`mtriton.current_target()`).
            The backends of a GPU language (not emulated) are those whose source
            `mtriton dump-<language>` prints; their classes name their `dialect` and
            `full_source(fn, opts)`.
        emulated: Whether it runs a GPU language's source on the CPU (`mtriton.emulator`).
    """

    name: str
    module: str
    backend: str
    language: str
    emulated: bool


TARGETS = (
    Target("metal", "mtriton.backends.metal", "MetalBackend", "metal", emulated=False),
    Target("cuda", "mtriton.backends.cuda", "CudaBackend", "cuda", emulated=False),
    Target(
        "interpreter", "mtriton.backends.interpreter", "InterpreterBackend", "interpreter", emulated=False
    ),
    Target("metal-emu", "mtriton.backends.metal", "MetalEmuBackend", "metal", emulated=True),
    Target("cuda-emu", "mtriton.backends.cuda", "CudaEmuBackend", "cuda", emulated=True),
)

BY_NAME = {target.name: target for target in TARGETS}
