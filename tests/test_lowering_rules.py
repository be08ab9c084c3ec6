"""The C-like lowering's planning, rule table and errors (`mtriton/backends/cstyle/`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import marker_line

import mtriton
import mtriton.language as tl
from mtriton import cli, ir
from mtriton.backends.cstyle import registry
from mtriton.backends.cstyle.rules import RULES, UNSUPPORTED
from mtriton.backends.dump import source_dump
from mtriton.errors import OutOfResources, UnsupportedError
from mtriton.interpreter import machine
from mtriton.options import DEFAULT_LAUNCH, LaunchOptions


def build(kernel: Any, signature: str, target: str, **constexprs: Any) -> ir.Function:
    """The IR of `kernel` specialized for `signature` (one type per runtime parameter)."""
    return kernel.compile_ir(cli.build_specs(kernel, signature, constexprs), target)


def cuda_body(fn: ir.Function, num_stages: int = 3) -> str:
    return source_dump("cuda", fn, LaunchOptions(num_stages=num_stages))


def assert_points_at(err: Exception, tag: str, code: str) -> None:
    """`err` renders rustc-style at the line marked `tag`, the caret under `code`."""
    line = marker_line(__file__, tag)
    with open(__file__) as f:
        text = f.read().splitlines()[line - 1]
    col = text.index(code)
    rendered = str(err).splitlines()
    assert rendered[1:] == [
        f"  --> test_lowering_rules.py:{line}:{col + 1}",
        f"{' ' * len(str(line))} |",
        f"{line} | {text}",
        f"{' ' * len(str(line))} | {' ' * col}^",
    ]


@mtriton.jit
def _matmul(a_ptr, b_ptr, c_ptr, K, BLOCK: tl.constexpr):
    rows = tl.arange(0, BLOCK)
    k = tl.arange(0, 32)
    a_ptrs = a_ptr + rows[:, None] * K + k[None, :]
    b_ptrs = b_ptr + k[:, None] * BLOCK + rows[None, :]
    acc = tl.zeros((BLOCK, BLOCK), dtype=tl.float32)
    for _ in range(0, K, 32):
        acc = tl.dot(tl.load(a_ptrs), tl.load(b_ptrs), acc)
        a_ptrs += 32
        b_ptrs += 32 * BLOCK
    tl.store(c_ptr + rows[:, None] * BLOCK + rows[None, :], acc)


@pytest.mark.parametrize(
    "kernel_stages, loop_stages, waits",
    [
        (3, None, "mt_cp_async_wait_group<1>();"),  # the kernel's count: two iterations ahead
        (1, None, "mt_cp_async_wait();"),  # no pipeline: each dot waits for its own copies
        (1, 3, "mt_cp_async_wait_group<1>();"),  # tl.range(..., num_stages=3) in an unpipelined kernel
        (3, 1, "mt_cp_async_wait();"),  # num_stages=1 on the loop turns its pipeline off
        (3, 4, "mt_cp_async_wait_group<2>();"),  # three iterations ahead
    ],
)
def test_a_loop_num_stages_overrides_the_kernels(
    kernel_stages: int, loop_stages: int | None, waits: str
) -> None:
    fn = build(_matmul, "*fp16,*fp16,*fp32,i32:16", "cuda", BLOCK=64)
    if loop_stages is not None:
        loop = next(op for op in ir.walk(fn.body) if op.name == "for")
        loop.attrs["num_stages"] = loop_stages
    cuda = cuda_body(fn, kernel_stages)
    assert waits in cuda
    # a pipeline commits one group of copies in its prologue and one per iteration
    assert cuda.count("mt_cp_async_commit();") == (0 if "wait();" in waits else 2)


def test_every_ir_op_has_a_lowering_rule_or_a_reason() -> None:
    registry.check_complete(RULES, UNSUPPORTED)
    assert RULES.keys() | UNSUPPORTED.keys() == ir.ALL_OPS


def test_a_missing_lowering_rule_is_reported_by_name() -> None:
    rules = {name: rule for name, rule in RULES.items() if name not in ("exp", "scan")}
    with pytest.raises(AssertionError, match="no lowering rule for `exp`, `scan`"):
        registry.check_complete(rules, UNSUPPORTED)
    # listing the op as unsupported, with a reason, is the other way to pass
    registry.check_complete(rules, {"exp": "no reason", "scan": "no reason"})
    with pytest.raises(AssertionError, match="`exp` both lowered and listed in UNSUPPORTED"):
        registry.check_complete(RULES, {"exp": "no reason"})
    with pytest.raises(AssertionError, match="lowering rules for `gather`, which are not IR ops"):
        registry.check_complete({**RULES, "gather": RULES["load"]}, UNSUPPORTED)


def test_the_rules_import_without_the_driver() -> None:
    # the rules see `Lowering` only as a type: importing them does not import lowering.py
    code = (
        "import sys, mtriton.backends.cstyle.rules; "
        "assert 'mtriton.backends.cstyle.lowering' not in sys.modules"
    )
    root = str(Path(mtriton.__file__).parents[1])  # this checkout, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_a_missing_interpreter_rule_is_reported_by_name() -> None:
    machine.check_complete(machine.EXECUTORS)  # as `mtriton.interpreter` does on import
    executors = {name: rule for name, rule in machine.EXECUTORS.items() if name != "dot"}
    with pytest.raises(AssertionError, match="no interpreter rule for `dot`"):
        machine.check_complete(executors)
    with pytest.raises(AssertionError, match="interpreter rules for `yield`"):
        machine.check_complete({**machine.EXECUTORS, "yield": machine.EXECUTORS["dot"]})


@mtriton.jit
def _column_sums(x_ptr, y_ptr):
    rows = tl.arange(0, 128)
    x = tl.load(x_ptr + rows[:, None] * 128 + rows[None, :])
    tl.store(y_ptr + rows, tl.sum(x, axis=0))  # ERR:smem


@mtriton.jit
def _half_histogram(x_ptr, bins_ptr):
    offs = tl.arange(0, 128)
    tl.atomic_add(bins_ptr + offs % 4, tl.load(x_ptr + offs))  # ERR:atomic


@mtriton.jit
def _with_barrier(x_ptr):
    tl.store(x_ptr, 1.0)
    tl.debug_barrier()  # ERR:barrier


def test_running_out_of_threadgroup_memory_points_at_the_op() -> None:
    # the column sums stage the whole 64 KB block; Metal has 32 KB
    fn = build(_column_sums, "*fp32,*fp32", "metal")
    with pytest.raises(OutOfResources) as info:
        source_dump("metal", fn, DEFAULT_LAUNCH)
    assert str(info.value).startswith("kernel needs 65536 bytes of threadgroup memory; metal allows 32768")
    assert_points_at(info.value, "smem", "tl.sum")
    assert "__syncthreads();" in cuda_body(build(_column_sums, "*fp32,*fp32", "cuda"))  # CUDA has 200 KB


def test_an_unsupported_atomic_points_at_the_op() -> None:
    fn = build(_half_histogram, "*fp16,*fp16", "cuda")
    with pytest.raises(UnsupportedError, match="^atomic_add on float16 is not supported by cuda") as info:
        cuda_body(fn)
    assert_points_at(info.value, "atomic", "tl.atomic_add")


def test_an_op_listed_as_unsupported_is_refused_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(RULES, "debug_barrier")
    monkeypatch.setitem(UNSUPPORTED, "debug_barrier", "barriers are for the interpreter only")
    fn = build(_with_barrier, "*fp32", "cuda")
    with pytest.raises(UnsupportedError) as info:
        cuda_body(fn)
    message = "the cuda backend cannot lower `debug_barrier`: barriers are for the interpreter only"
    assert str(info.value).splitlines()[0] == message
    assert_points_at(info.value, "barrier", "tl.debug_barrier")
