"""Runs a compiled kernel over its grid and applies the optional checks.

Buffers live in guarded mappings from the runtime: inputs are copied in once
per layout, outputs are mapped afresh for every run and copied out into new
``mx.array``s. The first run lays every buffer's end against a guard, the
later ones its start, so that accesses past the end and before the start both
fault; with no check that asks for a second run, ``guard_start`` makes one.
The checks that need extra runs are:

* ``unwritten``: outputs are poisoned with 0xFF bytes in one run and 0x5A in
  another; an element equal to the poison in both runs was never written.
  Inputs the kernel writes in place keep their contents (the kernel reads
  them): the second run is the kernel's traced build, which records every
  byte a thread writes into them.
* ``races``: the threads of every threadgroup run forward, in reverse, and in
  a shuffled order with the threadgroups themselves in reverse; any
  difference in the outputs means threads read memory that other threads
  (of their threadgroup, or of other threadgroups) write without a barrier
  between. A difference is traced to the first threadgroup that shows it by
  bisection, at a few more runs, and a run of the traced build over that
  threadgroup (or all of them) finds the two accesses and their statements.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import numpy as np

from . import abi
from .errors import DataRace, EmulatorError, RaceAccess, UnwrittenOutput
from .report import Buffer, Context, describe_race, race_accesses, raise_error
from .signature import KernelSource
from .translate import Translation

THREADGROUP_MEMORY_LIMIT = 32 * 1024
MAX_THREADS_PER_THREADGROUP = 1024
# MLX takes `grid` and `threadgroup` as three C ints; larger values are a TypeError there.
MAX_LAUNCH_DIM = 2**31 - 1

_POISON_A = 0xFF  # NaN for floats, -1 for signed integers
_POISON_B = 0x5A
_THREADGROUP_POISON = 0xFF
_ORDER_FORWARD, _ORDER_REVERSE, _ORDER_SHUFFLED = 0, 1, 2
_ORDER_NAMES = {_ORDER_REVERSE: "in reverse", _ORDER_SHUFFLED: "in a shuffled order"}
_SEED = 0x6D74726E

_NUMPY_DTYPES: dict[mx.Dtype, type] = {
    mx.float32: np.float32,
    mx.float16: np.float16,
    mx.bfloat16: np.uint16,  # bit pattern; numpy has no bfloat16
    mx.float64: np.float64,
    mx.complex64: np.complex64,
    mx.bool_: np.bool_,
    mx.int8: np.int8,
    mx.int16: np.int16,
    mx.int32: np.int32,
    mx.int64: np.int64,
    mx.uint8: np.uint8,
    mx.uint16: np.uint16,
    mx.uint32: np.uint32,
    mx.uint64: np.uint64,
}


@dataclass
class Checks:
    """Which checks run, and the limits of a run.

    Attributes:
        unwritten: Detect output elements no thread writes (one extra run;
            for outputs only when ``init_value`` is None; for inputs the
            kernel writes in place, with the kernel's traced build).
        races: Detect outputs that depend on the order threads run in
            (two extra runs).
        guard_start: When no other check makes a second run, make one with
            every buffer's start against its guard, so that accesses just
            before a buffer fault as those just past its end do.
        timeout_s: CPU seconds a run may take before it counts as hung.
        stack_kib: Stack per GPU thread, in KiB.
    """

    unwritten: bool = False
    races: bool = False
    guard_start: bool = True
    timeout_s: float = 60.0
    stack_kib: int = 256


# The checks in force for every call, Metal's and CUDA's alike.
_checks = Checks()


def get_checks() -> Checks:
    """Returns a copy of the checks in force."""
    return dataclasses.replace(_checks)


def set_checks(**changes: Any) -> Checks:
    """Turns checks on or off for every later call.

    Args:
        **changes: Fields of ``Checks`` to change (``unwritten``, ``races``,
            ``timeout_s``, ``stack_kib``).

    Returns:
        The checks in force before the change.
    """
    global _checks
    previous = _checks
    _checks = dataclasses.replace(_checks, **changes)
    return previous


@contextlib.contextmanager
def checks(**changes: Any) -> Iterator[Checks]:
    """Context manager form of ``set_checks``; restores the checks on exit.

    Args:
        **changes: Fields of ``Checks`` to change.

    Yields:
        The checks in force inside the block.
    """
    previous = set_checks(**changes)
    try:
        yield get_checks()
    finally:
        set_checks(**dataclasses.asdict(previous))


def launch_dims(
    api: str, grid: Sequence[int], threadgroup: Sequence[int]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """`grid` and `threadgroup` as ints, refused as MLX refuses them.

    Raises:
        TypeError: If either is not three ints within a C int (MLX's type: a
            larger grid would wrap where it is 32-bit).
    """
    out = []
    for what, dims in (("grid", grid), ("threadgroup", threadgroup)):
        values = tuple(int(d) for d in dims)
        if len(values) != 3 or any(abs(d) > MAX_LAUNCH_DIM for d in values):
            raise TypeError(
                f"[{api}] {what} must be three ints of at most {MAX_LAUNCH_DIM} (MLX takes C ints), got {values}"
            )
        out.append(values)
    return out[0], out[1]


def _host_array(x: mx.array) -> np.ndarray:
    if x.dtype == mx.bfloat16:
        x = x.view(mx.uint16)
    return np.asarray(x)


def _row_strides(shape: Sequence[int]) -> list[int]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return strides[::-1]


class _Memory:
    """Guarded buffers of one call; freed together."""

    def __init__(self, runtime: abi.Runtime) -> None:
        self.runtime = runtime
        self.buffers: list[Buffer] = []  # by tag: the runtime reports faults by index here
        self._owned: list[int] = []

    def _map_raw(
        self, name: str, role: str, nbytes: int, lead: int, itemsize: int, layout: int, align: int = 0
    ) -> Buffer:
        ptr = self.runtime.alloc(nbytes, max(itemsize, align), len(self.buffers), layout)
        self._owned.append(ptr)
        buf = Buffer(name, role, ptr, nbytes, itemsize, lead)
        self.buffers.append(buf)
        return buf

    def map(self, name: str, role: str, data: np.ndarray, layout: int) -> Buffer:
        """Copies a small contiguous array (shape, strides, ndim) in."""
        buf = self._map_raw(name, role, data.nbytes, 0, data.itemsize, layout)
        ctypes.memmove(buf.ptr, data.ctypes.data, data.nbytes)
        return buf

    def map_array(self, name: str, host: np.ndarray, layout: int, align: int = 0) -> Buffer:
        """Copies an input in; element 0 may sit inside the span (negative strides). Its start is
        a multiple of `align` bytes if that is more than its element's size."""
        itemsize = host.itemsize
        if host.size == 0:
            return self._map_raw(name, "input", 0, 0, itemsize, layout)
        lo = sum(min(0, (n - 1) * s) for n, s in zip(host.shape, host.strides, strict=True))
        hi = sum(max(0, (n - 1) * s) for n, s in zip(host.shape, host.strides, strict=True))
        nbytes = hi - lo + itemsize
        base = host.ctypes.data + lo
        buf = self._map_raw(name, "input", nbytes, -lo, itemsize, layout, align)
        ctypes.memmove(buf.ptr, base, nbytes)
        return buf

    def map_output(
        self, name: str, nbytes: int, itemsize: int, fill: bytes, layout: int, align: int = 0
    ) -> Buffer:
        """Maps an output filled with a byte (poison) or an element (init_value)."""
        buf = self._map_raw(name, "output", nbytes, 0, itemsize, layout, align)
        if nbytes:
            if len(fill) == 1:
                ctypes.memset(buf.ptr, fill[0], nbytes)
            else:
                pattern = np.frombuffer(fill, dtype=np.uint8)
                view = np.frombuffer((ctypes.c_char * nbytes).from_address(buf.ptr), np.uint8)
                view.reshape(-1, len(fill))[:] = pattern
        return buf

    def release(self, buffers: Sequence[Buffer]) -> None:
        for buf in buffers:
            self.runtime.free(buf.ptr)
            self._owned.remove(buf.ptr)

    def __enter__(self) -> _Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        for ptr in self._owned:
            self.runtime.free(ptr)
        self._owned.clear()


@dataclass
class _Output:
    name: str
    shape: tuple[int, ...]
    dtype: mx.Dtype
    np_dtype: np.dtype
    snapshot_of: int | None = None  # a writable input's contents after the run
    extent: int | None = None  # elements the unwritten check looks at (None: all)
    placeholder: bool = False  # written by no thread by design: never checked

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.np_dtype.itemsize


def _read(buf: Buffer, out: _Output) -> np.ndarray:
    raw = (ctypes.c_char * buf.nbytes).from_address(buf.ptr) if buf.nbytes else b""
    return np.frombuffer(raw, dtype=out.np_dtype).reshape(out.shape)


def _ranges(indices: np.ndarray, limit: int = 8) -> str:
    """`indices` (ascending) as runs: ``3, 7 to 9, 12``, the first `limit` of them."""
    breaks = np.flatnonzero(np.diff(indices) != 1)
    starts = np.concatenate([indices[:1], indices[breaks + 1]])
    ends = np.concatenate([indices[breaks], indices[-1:]])
    runs = [
        str(a) if a == b else f"{a} to {b}" for a, b in zip(starts[:limit].tolist(), ends[:limit].tolist())
    ]
    return ", ".join(runs) + (", ..." if len(starts) > limit else "")


@dataclass
class _Inputs:
    """The input side of the runs in one layout."""

    args: ctypes.Array[ctypes.c_void_p]  # the kernel's argument array (outputs filled per run)
    arrays: dict[int, tuple[Buffer, np.ndarray]]  # per input index: its buffer and host copy
    small: list[Buffer]  # the shape, strides and ndim buffers

    def buffers(self) -> list[Buffer]:
        return [buf for buf, _ in self.arrays.values()] + self.small


class _RaceFound(Exception):
    """A traced run stopped at two conflicting accesses."""

    def __init__(self, race: abi.Race) -> None:
        super().__init__()
        self.race = race


def _bytes_of(values: np.ndarray) -> np.ndarray:
    """Element-wise byte rows, so that NaNs compare equal to themselves."""
    return values.view(np.uint8).reshape(values.size, values.itemsize)


def _fill_for(out: _Output, init_value: float | None, poison: int) -> bytes:
    if init_value is None:
        return bytes([poison])
    if out.dtype == mx.bfloat16:
        value = np.asarray(mx.array(init_value, mx.bfloat16).view(mx.uint16))
    else:
        value = np.asarray(mx.array(init_value, out.dtype))
    return value.astype(out.np_dtype).tobytes()


def output_specs(
    names: Sequence[str], shapes: Sequence[Sequence[int]], dtypes: Sequence[mx.Dtype]
) -> list[tuple[str, tuple[int, ...], mx.Dtype]]:
    """(name, shape, dtype) of each output, as `Call.run` takes them."""
    return [(n, tuple(int(d) for d in s), t) for n, s, t in zip(names, shapes, dtypes, strict=True)]


class Call:
    """One call of a kernel: its buffers, its runs and its checks."""

    def __init__(
        self,
        builds: abi.KernelBuilds,
        source: KernelSource,
        translation: Translation,
        name: str,
        checks: Checks,
        threadgroup_memory_limit: int = THREADGROUP_MEMORY_LIMIT,
    ) -> None:
        self.threadgroup_memory_limit = threadgroup_memory_limit
        self.builds = builds
        self.source = source
        self.translation = translation
        self.name = name
        self.checks = checks

    def run(
        self,
        inputs: Sequence[mx.array],
        outputs: Sequence[tuple[str, tuple[int, ...], mx.Dtype]],
        grid: Sequence[int],
        threadgroup: Sequence[int],
        init_value: float | None,
        ensure_row_contiguous: bool,
        atomic_outputs: bool,
        writable_inputs: Sequence[int] = (),
        order_dependent_inputs: Sequence[int] = (),
        buffer_alignment: Mapping[str, int] | None = None,
        writable_sizes: Sequence[int] = (),
        placeholder_outputs: Sequence[int] = (),
    ) -> list[mx.array]:
        """Runs the grid (several times if checks ask) and returns the outputs.

        Args:
            inputs: The input arrays, in parameter order.
            outputs: (name, shape, dtype) of each output.
            grid: Threads per dimension (each below 2^32).
            threadgroup: Threadgroup size per dimension.
            init_value: Value outputs start with; None leaves them poisoned.
            ensure_row_contiguous: Copy non-row-contiguous inputs first.
            atomic_outputs: Whether outputs are atomics (their float sums
                depend on order, so the race check skips them).
            writable_inputs: Indices of inputs the kernel writes to. Each run
                starts from their original contents; after it they are
                snapshotted and checked like outputs.
            order_dependent_inputs: Writable inputs the race check skips
                (updated with atomics, so their contents may depend on order).
            buffer_alignment: Bytes the start of a named input's or output's buffer is a
                multiple of (see `MetalKernel.__call__`).
            writable_sizes: Per writable input, how many of its leading
                elements the unwritten check expects written (the rest is
                padding); all of them where not given.
            placeholder_outputs: Outputs no thread writes by design, which
                the unwritten and race checks leave out.

        Returns:
            Fresh arrays holding the outputs of the first (forward) run,
            followed by the writable inputs' final contents. An empty grid
            runs nothing: outputs are zeros (or `init_value`).
        """
        if min(grid) <= 0 or min(threadgroup) <= 0:
            return [
                mx.zeros(shape, dtype) if init_value is None else mx.full(shape, init_value, dtype)
                for _, shape, dtype in outputs
            ] + [inputs[k] for k in writable_inputs]
        if max(grid) >= 2**32 or max(threadgroup) >= 2**32:
            raise ValueError(
                f"[metal-emu] grid {tuple(grid)} or threadgroup {tuple(threadgroup)} does not fit 32 bits"
            )
        placeholders = set(placeholder_outputs)
        self.outs = [
            _Output(name, tuple(shape), dtype, np.dtype(_NUMPY_DTYPES[dtype]), placeholder=k in placeholders)
            for k, (name, shape, dtype) in enumerate(outputs)
        ]
        self.writable = list(writable_inputs)
        self.order_dependent = set(order_dependent_inputs)
        self.alignment = dict(buffer_alignment or {})
        sizes = list(writable_sizes) or [None] * len(self.writable)
        input_names = {p.index: p.name for p in self.source.params if p.kind == "input"}
        self.outs += [
            _Output(
                input_names[k],
                tuple(inputs[k].shape),
                inputs[k].dtype,
                np.dtype(_NUMPY_DTYPES[inputs[k].dtype]),
                snapshot_of=k,
                extent=size,
            )
            for k, size in zip(self.writable, sizes, strict=True)
        ]
        self.grid = tuple(grid)
        self.threadgroup = tuple(threadgroup)
        self.group_size = tuple(min(t, g) for t, g in zip(threadgroup, grid, strict=True))
        self.init_value = init_value
        self.atomic_outputs = atomic_outputs
        self.inputs = inputs
        self.ensure_row_contiguous = ensure_row_contiguous
        self.write_maps: dict[int, np.ndarray] = {}
        with _Memory(abi.runtime()) as memory:
            self.memory = memory
            self.layouts: dict[int, _Inputs] = {}
            first = self._launch(_POISON_A)
            self.base = [_read(b, o) for b, o in zip(first, self.outs, strict=True)]
            self.written = [np.full(o.shape, not o.placeholder) for o in self.outs]
            poisoned = init_value is None
            check_writes = self.checks.unwritten and bool(self.writable)
            if (poisoned and self.checks.unwritten) or check_writes or self.checks.races:
                # later runs lay buffers out the other way: an access before a start faults
                order = _ORDER_REVERSE if self.checks.races else _ORDER_FORWARD
                second = self._launch(
                    _POISON_B if poisoned else _POISON_A,
                    order,
                    layout=abi.LAYOUT_START,
                    trace=abi.TRACE_WRITES if check_writes else 0,
                )
                self.written = self._find_unwritten(second, poisoned, check_writes)
                if self.checks.races:
                    self._check_order(second, _ORDER_REVERSE, groups_reversed=False)
                    memory.release(second)
                    third = self._launch(_POISON_A, _ORDER_SHUFFLED, group_order=1, layout=abi.LAYOUT_START)
                    self._check_order(third, _ORDER_SHUFFLED, groups_reversed=True)
            elif self.checks.guard_start:
                memory.release(self._launch(_POISON_A, layout=abi.LAYOUT_START))
            return [self._to_mlx(b, o) for b, o in zip(self.base, self.outs, strict=True)]

    def _context(self) -> Context:
        return Context(
            self.name,
            self.source.host_name,
            self.source.text.split("\n"),
            self.translation.locations,
            self.translation.threadgroup_names,
            self.memory.buffers,
            self.group_size,
            self.checks.timeout_s,
            self.translation.language,
        )

    def _inputs(self, layout: int) -> _Inputs:
        """The inputs of runs in `layout`, mapped on first use; the other layout's go (every
        run after the first uses the second layout)."""
        if layout not in self.layouts:
            for old in self.layouts.values():
                self.memory.release(old.buffers())
            self.layouts = {layout: self._map_inputs(layout)}
        return self.layouts[layout]

    def _map_inputs(self, layout: int) -> _Inputs:
        params = self.source.params
        args = (ctypes.c_void_p * max(1, len(params)))()
        mapped: dict[int, np.ndarray] = {}
        buffers: dict[int, tuple[Buffer, np.ndarray]] = {}
        small: list[Buffer] = []
        for k, param in enumerate(params):
            if param.kind == "input":
                host = _host_array(self.inputs[param.index])
                if self.ensure_row_contiguous or param.index in self.writable:
                    host = np.ascontiguousarray(host)
                buf = self.memory.map_array(param.name, host, layout, self.alignment.get(param.name, 0))
                mapped[param.index] = host
                buffers[param.index] = (buf, host)
                args[k] = buf.ptr + buf.lead
            elif param.kind in ("shape", "strides", "ndim"):
                host = mapped[param.index]
                if param.kind == "shape":
                    data = np.asarray(host.shape, np.int32)
                elif param.kind == "strides":
                    strides = (
                        _row_strides(host.shape)
                        if host.flags.c_contiguous
                        else [s // host.itemsize for s in host.strides]
                    )
                    data = np.asarray(strides, np.int64)
                else:
                    data = np.asarray([host.ndim], np.int32)
                buf = self.memory.map(param.name, param.kind, data, layout)
                small.append(buf)
                args[k] = buf.ptr
        return _Inputs(args, buffers, small)

    def _launch(
        self,
        poison: int,
        order: int = _ORDER_FORWARD,
        order_groups: tuple[int, int] = (0, abi.ALL_GROUPS),
        group_order: int = 0,
        layout: int = abi.LAYOUT_END,
        trace: int = 0,
        trace_group: int = abi.ALL_GROUPS,
    ) -> list[Buffer]:
        mapped = self._inputs(layout)
        args = mapped.args
        for k in self.writable:  # every run starts from the original contents
            buf, host = mapped.arrays[k]
            ctypes.memmove(buf.ptr + buf.lead, host.ctypes.data, host.nbytes)
        real = [o for o in self.outs if o.snapshot_of is None]
        buffers = [
            self.memory.map_output(
                o.name,
                o.nbytes,
                o.np_dtype.itemsize,
                _fill_for(o, self.init_value, poison),
                layout,
                self.alignment.get(o.name, 0),
            )
            for o in real
        ]
        out_params = [k for k, p in enumerate(self.source.params) if p.kind == "output"]
        for k, buf in zip(out_params, buffers, strict=True):
            args[k] = buf.ptr
        kernel = self.builds.traced() if trace else self.builds.plain
        race = abi.Race()
        launch = abi.Launch(
            kernel=ctypes.pointer(kernel.kernel),
            args=ctypes.cast(args, ctypes.POINTER(ctypes.c_void_p)),
            grid=(ctypes.c_uint32 * 3)(*self.grid),
            group_size=(ctypes.c_uint32 * 3)(*self.threadgroup),
            order=order,
            order_from=order_groups[0],
            order_to=order_groups[1],
            group_order=group_order,
            direct=not self.translation.cooperative,
            seed=_SEED,
            tg_limit=self.threadgroup_memory_limit,
            stack_size=self.checks.stack_kib * 1024,
            cpu_seconds=self.checks.timeout_s,
            tg_poison=_THREADGROUP_POISON,
            layout=layout,
            trace=trace,
            trace_group=trace_group,
            race=ctypes.pointer(race),
        )
        runtime = self.memory.runtime
        watched = []
        try:
            if trace & abi.TRACE_WRITES:
                for k in self.writable:
                    buf, _ = mapped.arrays[k]
                    self.write_maps[k] = np.zeros(buf.nbytes, np.uint8)
                    runtime.watch(buf.ptr, self.write_maps[k], races=False)
                    watched.append(buf.ptr)
            if trace & abi.TRACE_RACES:
                for buf in [b for b, _ in mapped.arrays.values()] + buffers:
                    runtime.watch(buf.ptr, None, races=True)
                    watched.append(buf.ptr)
            err = runtime.run(launch)
        finally:
            for ptr in watched:
                runtime.unwatch(ptr)
        if err.kind == abi.ERR_RACE:
            self.memory.release(buffers)
            raise _RaceFound(race)
        if err.kind != abi.ERR_OK:
            raise_error(err, self._context())
        for o in self.outs[len(real) :]:
            buf, _ = mapped.arrays[o.snapshot_of]
            snap = self.memory.map_output(o.name, o.nbytes, o.np_dtype.itemsize, b"\0", layout)
            ctypes.memmove(snap.ptr, buf.ptr + buf.lead, o.nbytes)
            buffers.append(snap)
        return buffers

    def _find_unwritten(
        self, second: Sequence[Buffer], poisoned: bool, check_writes: bool
    ) -> list[np.ndarray]:
        """Per output, which elements some thread wrote; raises if the unwritten check is on
        and one has elements no thread wrote."""
        masks = []
        for values, buf, out in zip(self.base, second, self.outs, strict=True):
            if out.placeholder:
                masks.append(np.zeros(out.shape, bool))
                continue
            if out.snapshot_of is not None:
                if not check_writes:
                    masks.append(np.ones(out.shape, bool))
                    continue
                bytes_written = self.write_maps[out.snapshot_of][: out.nbytes]
                written = bytes_written.reshape(-1, out.np_dtype.itemsize).any(axis=1)
                unwritten = ~written
                unwritten[out.extent :] = False  # padding past the caller's array
                self._raise_unwritten(out, unwritten, "input", ", which the kernel writes in place", "")
                masks.append(np.ones(out.shape, bool))  # unwritten elements keep equal contents
                continue
            if not poisoned:
                masks.append(np.ones(out.shape, bool))
                continue
            a = _bytes_of(values)
            b = _bytes_of(_read(buf, out))
            unwritten = (a == _POISON_A).all(axis=1) & (b == _POISON_B).all(axis=1)
            if self.checks.unwritten:
                self._raise_unwritten(
                    out,
                    unwritten,
                    "output",
                    "",
                    " MLX leaves outputs uninitialised unless init_value is given.",
                )
            masks.append(~unwritten.reshape(out.shape))
        return masks

    def _raise_unwritten(self, out: _Output, unwritten: np.ndarray, role: str, what: str, why: str) -> None:
        if not unwritten.any():
            return
        elements = np.flatnonzero(unwritten)
        first = int(elements[0])
        index = tuple(int(i) for i in np.unravel_index(first, out.shape))
        total = unwritten.size if out.extent is None else min(out.extent, unwritten.size)
        raise UnwrittenOutput(
            f"[metal-emu] kernel {self.name}: no thread wrote {elements.size} of the {total} elements "
            f"of {role} '{out.name}'{what}: elements {_ranges(elements)}; the first is element {first} "
            f"(index {index}).{why}",
            output=out.name,
            elements=elements.tolist(),
            kernel=self.source.host_name,
        )

    def _first_difference(self, other: Sequence[Buffer]) -> tuple[int, int] | None:
        for k, (values, buf, mask, out) in enumerate(
            zip(self.base, other, self.written, self.outs, strict=True)
        ):
            if self.atomic_outputs and out.dtype in (mx.float16, mx.bfloat16, mx.float32):
                continue
            if out.snapshot_of in self.order_dependent:
                continue
            differs = (_bytes_of(values) != _bytes_of(_read(buf, out))).any(axis=1)
            differs &= mask.reshape(-1)
            if differs.any():
                return k, int(np.flatnonzero(differs)[0])
        return None

    def _differs(self, order: int, order_groups: tuple[int, int] = (0, abi.ALL_GROUPS)) -> bool:
        run = self._launch(_POISON_A, order, order_groups, layout=abi.LAYOUT_START)
        found = self._first_difference(run)
        self.memory.release(run)
        return found is not None

    def _check_order(self, other: list[Buffer], order: int, groups_reversed: bool) -> None:
        found = self._first_difference(other)
        if found is None:
            return
        k, element = found
        out = self.outs[k]
        theirs = _read(other[k], out).reshape(-1)[element].item()
        ours = self.base[k].reshape(-1)[element].item()
        how = _ORDER_NAMES[order] + (", threadgroups in reverse" if groups_reversed else "")
        role = "output" if out.snapshot_of is None else "input"
        head = (
            f"[metal-emu] kernel {self.name}: {role} '{out.name}' element {element} is "
            f"{ours!r} when threads run in order and {theirs!r} when they run {how}."
        )
        group: tuple[int, int, int] | None = None
        if groups_reversed and not self._differs(order):
            why = (
                " It depends on the order threadgroups run in: threads read device memory that other "
                "threadgroups write (no order between threadgroups is promised)."
            )
            traced = abi.ALL_GROUPS
        else:
            traced, group = self._bisect_group(order)
            why = (
                " Threads read memory other threads of their threadgroup write without a "
                f"threadgroup_barrier between. The first threadgroup that shows it: {group}."
            )
        accesses, detail = self._trace_race(traced)
        raise DataRace(
            f"{head}{why}\n{detail}\n  in {self.source.host_name}",
            kernel=self.source.host_name,
            threadgroup=group,
            accesses=accesses,
        )

    def _trace_race(self, group: int) -> tuple[list[RaceAccess], str]:
        """Reruns the traced build over threadgroup `group` (or all) to find two accesses no
        barrier orders; returns them and their description."""
        try:
            self.memory.release(
                self._launch(_POISON_A, trace=abi.TRACE_RACES, trace_group=group, layout=abi.LAYOUT_START)
            )
        except _RaceFound as found:
            accesses = race_accesses(found.race, self._context())
            return accesses, describe_race(accesses, self._context())
        except EmulatorError as err:
            return [], f"  (its accesses could not be traced: {str(err).splitlines()[0]})"
        return [], (
            "  (a traced rerun found no two unordered accesses to one byte: the order may act through "
            "atomics, or the trace missed them: it keeps the last write and read of each byte and "
            "stops after 2^20 accesses)"
        )

    def _bisect_group(self, order: int) -> tuple[int, tuple[int, int, int]]:
        """Finds the first threadgroup whose thread order changes the outputs: its linear index
        and position."""
        counts = tuple(-(-g // s) for g, s in zip(self.grid, self.group_size, strict=True))
        lo, hi = 0, math.prod(counts)  # reordering groups [0, hi) differs
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._differs(order, (0, mid)):
                hi = mid
            else:
                lo = mid
        return hi - 1, self.memory.runtime.group_position(hi - 1, counts)

    @staticmethod
    def _to_mlx(values: np.ndarray, out: _Output) -> mx.array:
        result = mx.array(values)
        return result.view(mx.bfloat16) if out.dtype == mx.bfloat16 else result
