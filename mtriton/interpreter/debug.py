"""Rules for `device_print` and `device_assert`.

Printing follows the GPU backends' format, one line per active program, operand
and element: `pid (x, y, z) idx (i, j) <prefix><value>`, programs in launch
order and elements in row-major order.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx
import numpy as np

from mtriton import float8
from mtriton.ir import Op, Value

from .machine import Frame, InterpreterError, Ptr, Runtime, elem_of, executes

_UINT_OF_WIDTH = {8: mx.uint8, 16: mx.uint16, 32: mx.uint32, 64: mx.uint64}


def _host(
    frame: Frame, value: Runtime, ir_value: Value, hexadecimal: bool
) -> tuple[np.ndarray, Callable[[object], str]]:
    """The value as a NumPy array (batch-leading) and a formatter for its elements."""
    if isinstance(value, Ptr):
        name = frame.memory.names[value.param]
        return np.array(value.offsets), lambda v: f"{name}+{v}"
    elem = elem_of(ir_value)
    if hexadecimal:
        width = max(8, elem.bits)
        bits = value.astype(mx.uint8) if elem.is_bool() else mx.view(value, _UINT_OF_WIDTH[width])
        return np.array(bits), lambda v: f"0x{int(v):x}"
    if elem.is_fp8():  # their bits: print the values
        return float8.decode_table(elem)[np.array(value)], str
    if value.dtype == mx.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly.
        value = value.astype(mx.float32)
    return np.array(value), str


def _pid(frame: Frame, program: int) -> str:
    return "(" + ", ".join(str(np.array(p)[program]) for p in frame.launch.program_ids) + ")"


def _active_programs(frame: Frame) -> np.ndarray:
    if frame.active is None:
        return np.arange(frame.batch[0])
    return np.flatnonzero(np.array(frame.active))


@executes("device_print")
def _device_print(frame: Frame, op: Op, args: list[Runtime]) -> None:
    prefix = op.attrs.get("prefix", "")
    hexadecimal = bool(op.attrs.get("hex", False))
    hosts = [_host(frame, v, iv, hexadecimal) for v, iv in zip(args, op.operands)]
    for program in _active_programs(frame):
        pid = _pid(frame, program)
        for k, (array, fmt) in enumerate(hosts):
            operand = f"(operand {k}) " if len(hosts) > 1 else ""
            block = array[program]
            for idx in np.ndindex(block.shape):
                where = ", ".join(map(str, idx))
                print(f"pid {pid} idx ({where}) {prefix}{operand}{fmt(block[idx])}")


@executes("device_assert")
def _device_assert(frame: Frame, op: Op, args: list[Runtime]) -> None:
    cond = args[0]
    failing = mx.logical_not(cond)
    lanes = frame.lanes(None, op.operands[0].type.shape)
    if lanes is not None:
        failing = mx.logical_and(failing, lanes)
    if not mx.any(failing).item():
        return
    program, *idx = np.argwhere(np.array(failing))[0]
    raise InterpreterError(
        f"device assertion failed: {op.attrs.get('msg', '')} "
        f"(pid {_pid(frame, program)} idx ({', '.join(map(str, idx))})) at {op.loc}"
    )
