"""The emulators' checks on mtriton kernels and hand-written bodies, on metal-emu and cuda-emu:

* accesses before a buffer's start are reported like those past its end (parameter, element,
  line), in the run that lays buffers' starts against their guards;
* grids of more threadgroups than 2^32 index them in 64 bits; grids MLX refuses are refused;
* a race names the statement (file:line) behind each of its two accesses;
* `unwritten=True` reports the elements of an input written in place that no thread wrote.
"""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from conftest import EMULATORS

import mtriton
import mtriton.language as tl
from mtriton import emulator
from mtriton.emulator import abi
from mtriton.errors import LaunchError

pytestmark = [
    pytest.mark.skipif(not emulator.is_available(), reason="the emulators need Linux and a C++ compiler"),
    # the GPU machine's run (MTRITON_BACKEND=cuda) tests the GPU alone; there the CUDA driver
    # already holds the address range the race checker's shadow memory needs
    pytest.mark.skipif(
        os.environ.get("MTRITON_BACKEND", "metal-emu") not in EMULATORS,
        reason="MTRITON_BACKEND selects a backend other than the emulators",
    ),
]

HERE = Path(__file__).name
BLOCK = 32


def line_of(kernel: mtriton.JITFunction, text: str) -> str:
    """`test_emulator_checks.py:N` of the line of `kernel`'s source that contains `text`."""
    lines, start = inspect.getsourcelines(kernel.fn)
    matches = [start + k for k, line in enumerate(lines) if text in line]
    assert len(matches) == 1, (text, matches)
    return f"{HERE}:{matches[0]}"


@pytest.fixture(params=["metal-emu", "cuda-emu"])
def emu(request: pytest.FixtureRequest) -> Iterator[str]:
    mtriton.set_backend(request.param)
    try:
        yield request.param
    finally:
        mtriton.set_backend(None)


def rand(rng: np.random.Generator, n: int, dtype: mx.Dtype = mx.float32) -> mx.array:
    return mx.array(rng.standard_normal(n).astype(np.float32)).astype(dtype)


# ------------------------------------------------------------------ before the start


@mtriton.jit
def load_shifted(x_ptr, y_ptr, n, SHIFT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs - SHIFT, mask=offs < n)  # the first SHIFT offsets are below 0
    tl.store(y_ptr + offs, x, mask=offs < n)


@mtriton.jit
def store_shifted(x_ptr, y_ptr, n, SHIFT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(y_ptr + offs - SHIFT, x, mask=offs < n)


@pytest.mark.parametrize("shift", [1, 5, 100_000])
@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.int8])
def test_a_read_before_the_start_names_the_parameter_and_element(
    emu: str, rng: np.random.Generator, shift: int, dtype: mx.Dtype
) -> None:
    # Threads run in order in the run that catches it: the first bad offset is -shift. 100000
    # elements before the start is still inside the buffer's own guard region.
    n = 37
    x, y = rand(rng, n, dtype), mtriton.empty((n,), dtype)
    with pytest.raises(emulator.OutOfBounds) as info:
        load_shifted[(2,)](x, y, n, SHIFT=shift, BLOCK=BLOCK)
    err = info.value
    assert (err.buffer, err.element, err.access) == ("x_ptr", -shift, "read")
    assert err.location == line_of(load_shifted, "x = tl.load(x_ptr + offs - SHIFT")
    itemsize = np.dtype(
        np.float16 if dtype == mx.float16 else np.int8 if dtype == mx.int8 else np.float32
    ).itemsize
    assert f"{shift * itemsize} bytes before the start of input 'x_ptr' (element -{shift} of {n}" in str(err)


@pytest.mark.parametrize("races", [False, True])
def test_a_write_before_the_start_names_the_parameter_and_element(
    emu: str, rng: np.random.Generator, races: bool
) -> None:
    # With the race check on, the run that catches it is the one with threads in reverse.
    n = 45
    x, y = rand(rng, n), mtriton.empty((n,), mx.float32)
    with emulator.checks(races=races), pytest.raises(emulator.OutOfBounds) as info:
        store_shifted[(2,)](x, y, n, SHIFT=3, BLOCK=BLOCK)
    err = info.value
    assert (err.buffer, err.element, err.access) == ("y_ptr", -1 if races else -3, "write")
    assert err.location == line_of(store_shifted, "tl.store(y_ptr + offs - SHIFT")


def test_past_the_end_is_still_caught_in_the_first_run(emu: str, rng: np.random.Generator) -> None:
    n = 37
    x, y = rand(rng, n), mtriton.empty((n,), mx.float32)
    with emulator.checks(guard_start=False), pytest.raises(emulator.OutOfBounds) as info:
        load_shifted[(2,)](x, y, n - 2, SHIFT=-3, BLOCK=BLOCK)  # offsets up to n - 3 + 3 = n
    assert (info.value.buffer, info.value.element) == ("x_ptr", n)


def test_in_bounds_kernels_pass_both_layouts(emu: str, rng: np.random.Generator) -> None:
    for n, dtype in itertools.product((1, 7, 37, 1025), (mx.float32, mx.float16, mx.bfloat16)):
        x = rand(rng, n, dtype)
        y = mtriton.empty((n,), dtype)
        load_shifted[(mtriton.cdiv(n, BLOCK),)](x, y, n, SHIFT=0, BLOCK=BLOCK)
        np.testing.assert_array_equal(np.array(y.astype(mx.float32)), np.array(x.astype(mx.float32)))


_BEFORE_START = {
    "metal-emu": (
        emulator.metal_kernel,
        """
        threadgroup float s[32];
        int t = thread_position_in_threadgroup.x;
        s[t] = a[t];
        threadgroup_barrier(mem_flags::mem_threadgroup);
        out[t] = s[t - 1];
        """,
    ),
    "cuda-emu": (
        emulator.cuda_kernel,
        """
        __shared__ float s[32];
        int t = threadIdx.x;
        s[t] = a[t];
        __syncthreads();
        out[t] = s[t - 1];
        """,
    ),
}


@pytest.mark.parametrize("name", ["metal-emu", "cuda-emu"])
def test_hand_written_threadgroup_and_device_reads_before_the_start(
    name: str, rng: np.random.Generator
) -> None:
    factory, body = _BEFORE_START[name]
    a = rand(rng, 32)
    call = dict(inputs=[a], output_shapes=[(32,)], output_dtypes=[mx.float32], grid=(32, 1, 1),
                threadgroup=(32, 1, 1))  # fmt: skip
    with pytest.raises(
        emulator.ThreadgroupMemoryError, match=r"before the start of threadgroup array 's'.*offset -4\)"
    ):
        factory("tg_before", ["a"], ["out"], body)(**call)
    device_only = body.replace("out[t] = s[t - 1]", "out[t] = a[t - 1]")
    with pytest.raises(
        emulator.OutOfBounds, match=r"4 bytes before the start of input 'a' \(element -1 of 32"
    ):
        factory("dev_before", ["a"], ["out"], device_only)(**call)


# ------------------------------------------------------------------ grids past 2^32


def test_group_positions_past_2_to_the_32() -> None:
    # The launch loop and race bisection index threadgroups in 64 bits (x fastest).
    groups = (65537, 65537, 5)
    runtime = abi.runtime()
    for linear in (2**32 - 1, 2**32, 2**32 + 65537 * 3 + 11, 65537**2 * 4 + 9):
        want = (linear % groups[0], linear // groups[0] % groups[1], linear // (groups[0] * groups[1]))
        assert runtime.group_position(linear, groups) == want
    # the race bisection's threadgroup window, and the traced threadgroup, are 64-bit fields
    launch = abi.Launch(order_from=2**32 + 1, order_to=2**40, trace_group=2**33)
    assert (launch.order_from, launch.order_to, launch.trace_group) == (2**32 + 1, 2**40, 2**33)


@mtriton.jit
def stamp(out_ptr):
    pid0, pid1 = tl.program_id(0), tl.program_id(1)
    tl.store(out_ptr + pid1 * tl.num_programs(0) + pid0, pid1 * 1_000_000 + pid0)


def test_a_wide_grid_runs_every_program(emu: str) -> None:
    # The largest grid that runs in about a second here: 196611 programs of 32 threads.
    gx, gy = 65537, 3
    out = mtriton.empty((gx * gy,), mx.int32)
    with emulator.checks(unwritten=True):
        stamp[(gx, gy)](out, num_warps=1)
    pid1, pid0 = np.divmod(np.arange(gx * gy), gx)
    np.testing.assert_array_equal(np.array(out), pid1 * 1_000_000 + pid0)


def test_grids_mlx_refuses_are_refused(emu: str) -> None:
    # MLX takes grid dimensions as C ints (a larger one is a TypeError there: measured with
    # mx.fast.metal_kernel under mx.export_function); ctypes would wrap them.
    body = "out[0] = a[0];"
    for factory in (emulator.metal_kernel, emulator.cuda_kernel):
        kernel = factory("big", ["a"], ["out"], body)
        with pytest.raises(
            TypeError, match=r"grid must be three ints of at most 2147483647.*\(2147483648, 1, 1\)"
        ):
            kernel(inputs=[mx.zeros(1)], output_shapes=[(1,)], output_dtypes=[mx.float32],
                   grid=(2**31, 1, 1), threadgroup=(32, 1, 1))  # fmt: skip
    with pytest.raises(
        LaunchError, match=r"4194307 programs along axis 0, 4294970368 threads at num_warps=32"
    ):
        stamp[(2**22 + 3, 1)](mtriton.empty((1,), mx.int32), num_warps=32)


# ------------------------------------------------------------------ races with lines


@mtriton.jit
def shift_through_memory(x_ptr, y_ptr, z_ptr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    tl.store(y_ptr + offs, tl.load(x_ptr + offs))
    prev = tl.load(y_ptr + offs - BLOCK, mask=pid > 0, other=0.0)  # the previous program's
    tl.store(z_ptr + offs, prev)


@mtriton.jit
def colliding_stores(x_ptr, y_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(y_ptr + offs % 16, tl.load(x_ptr + offs))  # 4 threads store each element


def test_a_race_between_programs_names_both_statements(emu: str, rng: np.random.Generator) -> None:
    x = rand(rng, 3 * BLOCK)
    y, z = mtriton.empty((3 * BLOCK,), mx.float32), mtriton.empty((3 * BLOCK,), mx.float32)
    with (
        emulator.checks(races=True),
        pytest.raises(emulator.DataRace, match="order threadgroups run in") as info,
    ):
        shift_through_memory[(3,)](x, y, z, BLOCK=BLOCK)
    write, read = info.value.accesses
    assert (write.kind, write.memory, write.threadgroup) == ("write", "output 'y_ptr'", (0, 0, 0))
    assert (read.kind, read.memory, read.threadgroup) == ("read", "output 'y_ptr'", (1, 0, 0))
    assert write.element == read.element
    assert write.location == line_of(shift_through_memory, "tl.store(y_ptr + offs, tl.load(x_ptr")
    assert read.location == line_of(shift_through_memory, "prev = tl.load(y_ptr")
    assert info.value.location == write.location
    message = str(info.value)
    assert f"--> {write.location}" in message and f"--> {read.location}" in message


def test_a_race_inside_a_program_names_both_statements(emu: str, rng: np.random.Generator) -> None:
    x = rand(rng, 64)
    y = mtriton.empty((16,), mx.float32)
    with emulator.checks(races=True), pytest.raises(emulator.DataRace, match="threadgroup_barrier") as info:
        colliding_stores[(1,)](x, y, BLOCK=64)
    first, second = info.value.accesses
    assert (first.kind, second.kind) == ("write", "write")
    assert first.memory == second.memory == "output 'y_ptr'" and first.element == second.element
    assert first.thread != second.thread and first.threadgroup == second.threadgroup == (0, 0, 0)
    assert first.location == second.location == line_of(colliding_stores, "tl.store(y_ptr + offs % 16")


_TILE_RACE = {
    "metal-emu": (
        emulator.metal_kernel,
        """
        threadgroup float s[64];  // tile.py:10
        uint t = thread_position_in_threadgroup.x;  // tile.py:11
        s[t] = a[thread_position_in_grid.x];  // tile.py:12
        float v = s[(t + 32) % 64];  // tile.py:13
        out[thread_position_in_grid.x] = v;  // tile.py:14
        """,
    ),
    "cuda-emu": (
        lambda *a: emulator.cuda_kernel(*a, shared_memory=256),
        """
        extern __shared__ float s[];  // tile.py:10
        unsigned t = threadIdx.x;  // tile.py:11
        s[t] = a[blockIdx.x * 64 + t];  // tile.py:12
        float v = s[(t + 32) % 64];  // tile.py:13
        out[blockIdx.x * 64 + t] = v;  // tile.py:14
        """,
    ),
}


@pytest.mark.parametrize("name", ["metal-emu", "cuda-emu"])
def test_a_missing_barrier_names_the_write_and_the_read(name: str, rng: np.random.Generator) -> None:
    factory, body = _TILE_RACE[name]
    call = dict(inputs=[rand(rng, 192)], output_shapes=[(192,)], output_dtypes=[mx.float32], grid=(192, 1, 1),
                threadgroup=(64, 1, 1))  # fmt: skip
    with emulator.checks(races=True), pytest.raises(emulator.DataRace) as info:
        factory("tile_race", ["a"], ["out"], body)(**call)
    read, write = info.value.accesses  # thread 0 reads s[32] before thread 32 writes it
    assert (read.kind, read.thread, read.location) == ("read", (0, 0, 0), "tile.py:13")
    assert (write.kind, write.thread, write.location) == ("write", (32, 0, 0), "tile.py:12")
    assert read.memory == write.memory == "threadgroup array 's'" and read.element == write.element == 128
    assert info.value.threadgroup == (0, 0, 0) and info.value.location == "tile.py:13"
    assert "bytes 128 to 131" in str(info.value)
    fixed = body.replace("float v", "threadgroup_barrier(mem_flags::mem_threadgroup); float v")
    if name == "cuda-emu":
        fixed = body.replace("float v", "__syncthreads(); float v")
    with emulator.checks(races=True):
        (out,) = factory("tile_fixed", ["a"], ["out"], fixed)(**call)
    a = np.array(call["inputs"][0]).reshape(3, 64)  # type: ignore[index]
    np.testing.assert_array_equal(np.array(out).reshape(3, 64), np.roll(a, -32, axis=1))


@mtriton.jit
def count(c_ptr, BLOCK: tl.constexpr):
    tl.atomic_add(c_ptr + tl.arange(0, BLOCK) * 0, 1)


def test_atomics_on_one_address_do_not_race(emu: str) -> None:
    c = mx.zeros((1,), mx.int32)
    with emulator.checks(races=True):
        count[(4,)](c, BLOCK=BLOCK)
    assert int(np.array(c)[0]) == 4 * BLOCK


# ------------------------------------------------------------------ unwritten, in place


@mtriton.jit
def scale_in_place(x_ptr, n, LEFT: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(x_ptr + offs, x * 2, mask=offs < n - LEFT)


@mtriton.jit
def scale_both(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(x_ptr + offs, x * 2, mask=(offs < n) & (offs % 7 != 3))
    tl.store(y_ptr + offs, x + 1, mask=offs < n)


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16, mx.bfloat16, mx.int32])
@pytest.mark.parametrize("n", [5, 37, 300])
def test_in_place_outputs_pass_the_unwritten_check(
    emu: str, rng: np.random.Generator, dtype: mx.Dtype, n: int
) -> None:
    # The kernel writes only into its input (MLX still needs an output: a placeholder no thread
    # writes, which the check leaves out); inputs of fewer than 8 elements are padded copies.
    x = mx.array(rng.integers(-50, 50, n).astype(np.float32)).astype(dtype)
    want = np.array(x.astype(mx.float32)).astype(np.float64) * 2
    with emulator.checks(unwritten=True, races=True):
        scale_in_place[(mtriton.cdiv(n, BLOCK),)](x, n, LEFT=0, BLOCK=BLOCK)
    np.testing.assert_array_equal(np.array(x.astype(mx.float32)).astype(np.float64), want)


@pytest.mark.parametrize("n, left", [(37, 3), (5, 1), (300, 45)])
def test_unwritten_elements_of_an_in_place_output_are_named(
    emu: str, rng: np.random.Generator, n: int, left: int
) -> None:
    x = rand(rng, n)
    with emulator.checks(unwritten=True), pytest.raises(emulator.UnwrittenOutput) as info:
        scale_in_place[(mtriton.cdiv(n, BLOCK),)](x, n, LEFT=left, BLOCK=BLOCK)
    err = info.value
    assert err.output == "x_ptr" and err.elements == tuple(range(n - left, n))  # not the padding
    assert (
        f"no thread wrote {left} of the {n} elements of input 'x_ptr', which the kernel writes in place"
        in str(err)
    )


def test_unwritten_holes_of_an_in_place_output_next_to_a_fresh_one(
    emu: str, rng: np.random.Generator
) -> None:
    n = 50
    x, y = rand(rng, n), mtriton.empty((n,), mx.float32)
    with emulator.checks(unwritten=True, races=True), pytest.raises(emulator.UnwrittenOutput) as info:
        scale_both[(2,)](x, y, n, BLOCK=BLOCK)
    holes = tuple(k for k in range(n) if k % 7 == 3)
    assert info.value.output == "x_ptr" and info.value.elements == holes
    assert "elements 3, 10, 17, 24, 31, 38, 45;" in str(info.value)
