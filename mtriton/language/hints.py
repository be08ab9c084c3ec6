"""The builtins that steer compilation rather than compute: hints to the compiler
(`multiple_of`, `max_contiguous`), compile-time checks and prints (`static_assert`,
`static_print`), run-time debugging (`device_print`, `device_assert`, `debug_barrier`) and the
loop iterators (`static_range`, unrolled; `range`, a runtime loop), with `cdiv`.
"""

from __future__ import annotations

from typing import Any

from .. import options
from ..errors import CompilationError, KernelTypeError
from . import semantic
from .core import tensor


def multiple_of(input: Any, values: Any) -> tensor:
    """Promises that `input` is a multiple of `values` (a hint for vectorization)."""
    values = semantic.unwrap(values)
    first = values[0] if isinstance(values, (tuple, list)) else values
    return semantic.assume(input, multiple_of=int(semantic.unwrap(first)))


def max_contiguous(input: Any, values: Any) -> tensor:
    """Promises that runs of `values` consecutive elements of `input` are contiguous."""
    values = semantic.unwrap(values)
    first = values[0] if isinstance(values, (tuple, list)) else values
    return semantic.assume(input, max_contiguous=int(semantic.unwrap(first)))


def max_constancy(input: Any, values: Any) -> tensor:
    return semantic.to_tensor(input)


def static_assert(cond: Any, msg: str = "") -> None:
    """Fails compilation when the constexpr `cond` is false."""
    cond = semantic.unwrap(cond)
    if isinstance(cond, tensor):
        raise KernelTypeError(
            "tl.static_assert needs a constexpr condition; use tl.device_assert for runtime values"
        )
    if not cond:
        raise CompilationError(f"static_assert failed: {semantic.unwrap(msg)}")


def static_print(
    *values: Any, sep: str = " ", end: str = "\n", file: Any = None, flush: bool = False
) -> None:
    """Prints at compile time."""
    print(*(semantic.unwrap(v) for v in values), sep=sep, end=end, file=file, flush=flush)


def device_print(prefix: str, *args: Any, hex: bool = False) -> None:
    """Prints values from every program at run time (the interpreter prints; GPU targets ignore)."""
    semantic.device_print(str(semantic.unwrap(prefix)), args, bool(semantic.unwrap(hex)))


def device_assert(cond: Any, msg: str = "", mask: Any = None) -> None:
    """Raises at run time where `cond` is false (checked by the interpreter)."""
    cond = semantic.unwrap(cond)
    if not isinstance(cond, tensor):
        static_assert(cond, msg)
        return
    semantic.device_assert(cond, str(semantic.unwrap(msg)))


def debug_barrier() -> None:
    """Synchronizes the threads of a program."""
    semantic.debug_barrier()


class static_range:
    """A loop the compiler unrolls: `for i in tl.static_range(4):`."""

    def __init__(self, arg1: Any, arg2: Any = None, step: Any = None) -> None:
        args = [semantic.unwrap(a) for a in (arg1, arg2, step)]
        if args[1] is None:
            args[0], args[1] = 0, args[0]
        self.start, self.end, self.step = args[0], args[1], args[2] if args[2] is not None else 1
        for name in ("start", "end", "step"):
            if not isinstance(getattr(self, name), int):
                raise KernelTypeError(
                    f"tl.static_range needs constexpr integer bounds, got {name}={getattr(self, name)!r}"
                )


class range:
    """A runtime loop: `for i in tl.range(lo, hi, step, num_stages=...)`."""

    def __init__(
        self,
        arg1: Any,
        arg2: Any = None,
        step: Any = None,
        num_stages: Any = None,
        loop_unroll_factor: Any = None,
        flatten: Any = None,
        warp_specialize: Any = None,
        disallow_acc_multi_buffer: Any = None,
    ) -> None:
        if arg2 is None:
            arg1, arg2 = 0, arg1
        self.start, self.end = arg1, arg2
        self.step = step if step is not None else 1
        self.num_stages = semantic.unwrap(num_stages)
        hints = {"loop_unroll_factor": loop_unroll_factor, "flatten": flatten,
                 "warp_specialize": warp_specialize, "disallow_acc_multi_buffer": disallow_acc_multi_buffer}  # fmt: skip
        for name, value in hints.items():
            if semantic.unwrap(value) not in (None, False):
                options.warn_once(f"tl.range({name}=...) is a hint mtriton does not act on")


def cdiv(x: Any, div: Any) -> Any:
    """Ceiling division."""
    return (x + div - 1) // div
