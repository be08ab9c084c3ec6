"""Every user-facing error mtriton raises, rendered rustc-style.

A located error prints as:

    mtriton.errors.CompilationError: unsupported operand types for +: 'pointer<float32>' and ...
      --> kernels.py:42:13
       |
    42 |     y = x_ptr + x_ptr
       |             ^
       = in kernel `add_kernel` specialized for (*fp32, *fp32, i32), BLOCK=1024
"""

from __future__ import annotations

import linecache
import os


class MTritonError(Exception):
    """Base of every mtriton error."""


TritonError = MTritonError  # Triton's name for the base of its errors


class LaunchError(MTritonError, ValueError):
    """Bad arguments to `kernel[grid](...)`: wrong type, dtype, count or grid."""


class LaunchOverflowError(LaunchError, OverflowError):
    """A launch value that no kernel argument type holds (an integer past uint64)."""


class LaunchTypeError(LaunchError, TypeError):
    """A launch that Python itself would reject for a function: an unknown keyword, too many
    positional arguments, a missing or repeated argument (a TypeError, as in Triton)."""


class BackendUnavailable(MTritonError, RuntimeError):
    """The requested backend cannot run on this machine."""


class CompilationError(MTritonError):
    """An error in a kernel's source, pointing at the file, line and column.

    Attributes:
        message: What is wrong, without location.
        file: Absolute path of the kernel's source file.
        line: Absolute 1-based line number in `file`.
        col: 0-based column.
        kernel: The kernel's name and specialization, when known.
    """

    def __init__(self, message: str, file: str = "", line: int = 0, col: int = 0, kernel: str = "") -> None:
        self.message = message
        self.file = file
        self.line = line
        self.col = col
        self.kernel = kernel
        super().__init__(self._render())

    def with_kernel(self, kernel: str) -> CompilationError:
        """Returns a copy that names the kernel it was compiling."""
        err = type(self)(self.message, self.file, self.line, self.col, kernel)
        err.__cause__ = self.__cause__
        return err.with_traceback(self.__traceback__)

    def _render(self) -> str:
        if not self.file:
            return self.message
        where = f"{os.path.basename(self.file)}:{self.line}:{self.col + 1}"
        parts = [self.message, f"  --> {where}"]
        text = linecache.getline(self.file, self.line).rstrip("\n")
        if text:
            gutter = " " * len(str(self.line))
            parts += [f"{gutter} |", f"{self.line} | {text}", f"{gutter} | {' ' * self.col}^"]
        if self.kernel:
            parts.append(f"  = in kernel {self.kernel}")
        return "\n".join(parts)


class UnsupportedError(CompilationError, NotImplementedError):
    """A language feature or argument that mtriton does not (yet) support."""


class KernelTypeError(CompilationError, TypeError):
    """A type or shape mismatch in kernel code (also a Python TypeError)."""


class OutOfResources(CompilationError, RuntimeError):
    """A kernel needs more of a resource (threadgroup memory, buffers) than the target has.

    Raised while lowering, it points at the op that asked for the resource; at launch (too many
    buffers), it has no location.
    """


def located(err: CompilationError, file: str, line: int, col: int) -> CompilationError:
    """Returns `err` with a source location, keeping its class and cause."""
    new = type(err)(err.message, file, line, col, err.kernel)
    new.__cause__ = err.__cause__
    return new.with_traceback(err.__traceback__)
