"""Errors a user can cause: the exception class, the file:line:col it points at, clean tracebacks."""

from __future__ import annotations

import traceback

import mlx.core as mx
import pytest
from conftest import marker_line

import mtriton as triton
import mtriton.language as tl
from mtriton import emulator
from mtriton.errors import CompilationError, KernelTypeError, LaunchError, UnsupportedError

THIS_FILE = __file__


@triton.jit
def pointer_plus_pointer(x_ptr, y_ptr):
    z = x_ptr + y_ptr  # ERR:ptrs
    tl.store(z, 1.0)


@triton.jit
def undefined_name(x_ptr):
    tl.store(x_ptr, not_defined_anywhere)  # ERR:undefined  # noqa: F821


@triton.jit
def uses_for_else(x_ptr, n):
    for i in range(n):  # ERR:for_else
        tl.store(x_ptr + i, 1.0)
    else:
        tl.store(x_ptr, 2.0)


@triton.jit
def bad_arange(x_ptr):
    offs = tl.arange(0, 100)  # ERR:arange
    tl.store(x_ptr + offs, 1.0)


@triton.jit
def bad_broadcast(x_ptr):
    a = tl.arange(0, 16)
    b = tl.arange(0, 32)
    tl.store(x_ptr + a, (a + b).to(tl.float32))  # ERR:broadcast


@triton.jit
def carried_shape_change(x_ptr, n):
    acc = tl.zeros([16], dtype=tl.float32)
    for i in range(n):  # ERR:carried
        acc = tl.zeros([32], dtype=tl.float32) + i
    tl.store(x_ptr + tl.arange(0, 32), acc)


@triton.jit
def block_condition(x_ptr):
    offs = tl.arange(0, 16)
    if offs > 3:  # ERR:blockcond
        tl.store(x_ptr + offs, 1.0)


@triton.jit
def block_pointer(x_ptr):
    p = tl.make_block_ptr(x_ptr, (16,), (1,), (0,), (16,), (0,))
    tl.store(p, tl.zeros((4,), tl.float32))  # ERR:blockptr


@triton.jit
def _helper_with_bug(x):
    return x + "text"  # ERR:callee


@triton.jit
def calls_buggy_helper(x_ptr):
    tl.store(x_ptr, _helper_with_bug(tl.load(x_ptr)))


@triton.jit
def static_assert_fails(x_ptr, BLOCK: tl.constexpr):
    tl.static_assert(BLOCK % 32 == 0, "BLOCK must be a multiple of 32")  # ERR:static
    tl.store(x_ptr, 1.0)


@triton.jit
def store_wrong_target(x_ptr):
    x_ptr[0] = 1.0  # ERR:subscript_store


CASES = [
    (pointer_plus_pointer, 2, KernelTypeError, "ptrs", "cannot add two pointers"),
    (undefined_name, 1, CompilationError, "undefined", "not_defined_anywhere"),
    (uses_for_else, 2, UnsupportedError, "for_else", "`for ... else`"),
    (bad_arange, 1, KernelTypeError, "arange", "power of two"),
    (bad_broadcast, 1, KernelTypeError, "broadcast", "cannot broadcast"),
    (carried_shape_change, 2, KernelTypeError, "carried", "acc"),
    (block_condition, 1, KernelTypeError, "blockcond", "scalar"),
    (block_pointer, 1, KernelTypeError, "blockptr", "block_shape"),
    (calls_buggy_helper, 1, CompilationError, "callee", "str"),
    (static_assert_fails, 1, CompilationError, "static", "BLOCK must be a multiple of 32"),
    (store_wrong_target, 1, UnsupportedError, "subscript_store", "tl.store"),
]


@pytest.mark.parametrize("kernel, n_ptrs, exc, tag, text", CASES, ids=[c[3] for c in CASES])
def test_compile_errors_point_at_the_line(
    backend: str, kernel: object, n_ptrs: int, exc: type, tag: str, text: str
) -> None:
    args = [mx.zeros((64,)) for _ in range(n_ptrs)]
    if kernel in (uses_for_else, carried_shape_change):
        args = args[:1] + [3]
    kwargs = {"BLOCK": 48} if kernel is static_assert_fails else {}
    with pytest.raises(exc) as info:
        kernel[(1,)](*args, **kwargs)
    err = info.value
    assert err.file == THIS_FILE
    assert err.line == marker_line(THIS_FILE, tag), str(err)
    assert text in str(err)
    rendered = str(err)
    assert f"test_errors.py:{err.line}:" in rendered
    assert "^" in rendered  # the caret under the offending column
    assert kernel.__name__ in rendered  # names the kernel and its specialization


def test_column_points_at_the_operator(backend: str) -> None:
    with pytest.raises(KernelTypeError) as info:
        pointer_plus_pointer[(1,)](mx.zeros((4,)), mx.zeros((4,)))
    line = open(THIS_FILE).read().splitlines()[info.value.line - 1]
    assert line[info.value.col :].startswith("x_ptr + y_ptr")


def test_no_internal_frames_in_traceback(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MTRITON_DEBUG", raising=False)
    with pytest.raises(CompilationError) as info:
        bad_arange[(1,)](mx.zeros((128,)))
    frames = traceback.extract_tb(info.value.__traceback__)
    internal = [f for f in frames if "/mtriton/" in f.filename and "/runtime/jit.py" not in f.filename]
    assert not internal, internal
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_debug_shows_internal_frames(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTRITON_DEBUG", "1")
    with pytest.raises(CompilationError) as info:
        bad_arange[(1,)](mx.zeros((128,)))
    frames = traceback.extract_tb(info.value.__traceback__)
    assert any("/mtriton/frontend/" in f.filename or "/mtriton/language/" in f.filename for f in frames)


@triton.jit
def simple(x_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(x_ptr + offs, 1.0, mask=offs < n)


def test_launch_errors_name_the_argument(backend: str) -> None:
    x = mx.zeros((16,))
    with pytest.raises(LaunchError, match="BLOCK"):
        simple[(1,)](x, 16)
    with pytest.raises(LaunchError, match="argument n: expected"):
        simple[(1,)](x, [16], BLOCK=16)
    with pytest.raises(LaunchError, match="grid"):
        simple[(1, 2, 3, 4)](x, 16, BLOCK=16)
    with pytest.raises(LaunchError, match="grid"):
        simple[(-1,)](x, 16, BLOCK=16)
    with pytest.raises(LaunchError, match="launched as"):
        simple(x, 16, BLOCK=16)


def test_float64_only_on_the_interpreter() -> None:
    x = mx.zeros((4,), dtype=mx.float64, stream=mx.cpu)
    with pytest.raises(LaunchError, match="float64 runs only on the interpreter"):
        simple.specialize("x_ptr", x, "metal")
    assert simple.specialize("x_ptr", x, "interpreter").kind == "ptr"


def test_jit_without_source_says_why() -> None:
    namespace: dict[str, object] = {"triton": triton}
    with pytest.raises(CompilationError, match="@jit needs the source code of k"):
        exec("@triton.jit\ndef k(x):\n    pass\n", namespace)


@triton.jit
def reads_past_the_end(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs + 64))


@pytest.mark.skipif(not emulator.is_available(), reason="the emulators need Linux and a C++ compiler")
@pytest.mark.parametrize("name", ["metal-emu", "cuda-emu"])
def test_emulator_faults_name_the_kernel_parameter(name: str) -> None:
    triton.set_backend(name)
    try:
        with pytest.raises(emulator.OutOfBounds, match="past the end of input 'x_ptr'"):
            reads_past_the_end[(1,)](mx.zeros(16), triton.empty((16,)), BLOCK=16)
    finally:
        triton.set_backend(None)
