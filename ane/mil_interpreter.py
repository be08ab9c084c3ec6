"""A NumPy interpreter of the MIL ops the exporter emits: the test oracle where Core ML cannot run.

coremltools' Linux wheel has no Core ML runtime (`MLModel.predict` needs macOS), and its own
test helpers skip numerics off macOS. This interpreter executes the saved program instead: the
`main` function read back from the spec (`milspec.load_program`), op by op, in order.

Semantics:
- each op computes in float32 (fp16 inputs are widened), then rounds its outputs to the dtype the
  program declares for them: an fp16 program is rounded to fp16 after every op, as the ANE does;
- every output's shape is checked against the declared one (known dimensions), so a handler that
  disagrees with coremltools' type inference fails loudly;
- an op without a handler raises `UnsupportedMILOp` naming it: nothing is skipped. The handler
  table is exactly the exporter's vocabulary (`EXECUTES`), checked complete at import.

Only what the exporter emits is implemented, and only in the form it emits it (a conv is 1x1,
unit stride, no padding, one group): anything else is refused, not approximated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .milspec import NUMPY_DTYPES, Op, Program, load_program

# Inputs that hold a list of values (all others hold one).
_VARIADIC = frozenset({"values"})

Handler = Callable[[dict[str, Any], str], Any]
_HANDLERS: dict[str, Handler] = {}


class UnsupportedMILOp(NotImplementedError):
    """The program holds an op, or an op form, that the NumPy MIL interpreter does not execute."""


def executes(*op_types: str) -> Callable[[Handler], Handler]:
    """Registers a handler for MIL op types; a type registered twice is a bug."""

    def register(fn: Handler) -> Handler:
        for op_type in op_types:
            if op_type in _HANDLERS:
                raise RuntimeError(f"MIL op {op_type!r} has two handlers")
            _HANDLERS[op_type] = fn
        return fn

    return register


def _f32(x: Any) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) if x.dtype in (np.float16, np.float32, np.float64) else x


def _refuse(op_type: str, what: str) -> UnsupportedMILOp:
    return UnsupportedMILOp(
        f"[mil_interpreter] {op_type}: {what} is not supported by the NumPy MIL interpreter"
    )


def _axes(a: dict[str, Any], rank: int) -> tuple[int, ...] | None:
    axes = a.get("axes")
    return None if axes is None else tuple(int(v) % rank for v in np.atleast_1d(axes))


# --------------------------------------------------------------------------- elementwise


@executes("add", "sub", "mul", "real_div", "maximum")
def _binary(a: dict[str, Any], op_type: str) -> np.ndarray:
    x, y = _f32(a["x"]), _f32(a["y"])
    fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.divide, "maximum": np.maximum}
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return fn[op_type](x, y)


@executes("abs", "silu", "rsqrt")
def _unary(a: dict[str, Any], op_type: str) -> np.ndarray:
    x = _f32(a["x"])
    if op_type == "abs":
        return np.abs(x)
    if op_type == "silu":
        return x / (1.0 + np.exp(-x))
    with np.errstate(divide="ignore"):
        return 1.0 / np.sqrt(x + np.float32(a.get("epsilon", 1e-12)))


# --------------------------------------------------------------------------- reductions and softmax


@executes("reduce_max", "reduce_mean")
def _reduce(a: dict[str, Any], op_type: str) -> np.ndarray:
    x = _f32(a["x"])
    fn = np.max if op_type == "reduce_max" else np.mean
    return fn(x, axis=_axes(a, x.ndim), keepdims=bool(a.get("keep_dims", False)))


@executes("softmax")
def _softmax(a: dict[str, Any], op_type: str) -> np.ndarray:
    x = _f32(a["x"])
    axis = int(a.get("axis", -1))
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


# --------------------------------------------------------------------------- linear algebra


@executes("conv")
def _conv(a: dict[str, Any], op_type: str) -> np.ndarray:
    x, w = _f32(a["x"]), _f32(a["weight"])
    # The converter turns the BSC layout's expand_dims + conv + squeeze into a 1-D conv.
    if w.ndim not in (3, 4) or any(k != 1 for k in w.shape[2:]) or x.ndim != w.ndim:
        raise _refuse(op_type, f"a kernel of shape {w.shape} (only 1x1 convolutions are)")
    for key, unit in (("strides", 1), ("dilations", 1)):
        if np.any(np.asarray(a.get(key, unit)) != unit):
            raise _refuse(op_type, f"{key}={np.asarray(a[key]).tolist()}")
    if int(a.get("groups", 1)) != 1 or np.any(np.asarray(a.get("pad", 0)) != 0):
        raise _refuse(op_type, "groups or padding")
    y = np.einsum("oi,bi...->bo...", w.reshape(w.shape[:2]), x)
    if "bias" in a:
        y = y + _f32(a["bias"]).reshape((1, -1) + (1,) * (x.ndim - 2))
    return y


@executes("matmul")
def _matmul(a: dict[str, Any], op_type: str) -> np.ndarray:
    x, y = _f32(a["x"]), _f32(a["y"])
    if bool(a.get("transpose_x", False)):
        x = np.swapaxes(x, -1, -2)
    if bool(a.get("transpose_y", False)):
        y = np.swapaxes(y, -1, -2)
    return np.matmul(x, y)


# --------------------------------------------------------------------------- shapes


@executes("reshape")
def _reshape(a: dict[str, Any], op_type: str) -> np.ndarray:
    shape = [int(s) for s in np.atleast_1d(a["shape"])]
    if 0 in shape:
        raise _refuse(op_type, "a 0 in the target shape")
    return np.reshape(a["x"], shape)


@executes("transpose")
def _transpose(a: dict[str, Any], op_type: str) -> np.ndarray:
    return np.transpose(a["x"], [int(p) for p in a["perm"]])


@executes("expand_dims")
def _expand_dims(a: dict[str, Any], op_type: str) -> np.ndarray:
    x = np.asarray(a["x"])
    rank = x.ndim + len(np.atleast_1d(a["axes"]))
    return np.expand_dims(x, tuple(int(v) % rank for v in np.atleast_1d(a["axes"])))


@executes("squeeze")
def _squeeze(a: dict[str, Any], op_type: str) -> np.ndarray:
    x = np.asarray(a["x"])
    return np.squeeze(x, axis=_axes(a, x.ndim))


@executes("tile")
def _tile(a: dict[str, Any], op_type: str) -> np.ndarray:
    return np.tile(a["x"], [int(r) for r in a["reps"]])


@executes("concat")
def _concat(a: dict[str, Any], op_type: str) -> np.ndarray:
    if bool(a.get("interleave", False)):
        raise _refuse(op_type, "interleave=True")
    values = [np.asarray(v) for v in a["values"]]
    return np.concatenate(values, axis=int(a["axis"]))


@executes("identity")
def _identity(a: dict[str, Any], op_type: str) -> np.ndarray:
    return np.asarray(a["x"])


@executes("shape")
def _shape(a: dict[str, Any], op_type: str) -> np.ndarray:
    return np.array(np.shape(a["x"]), dtype=np.int32)


@executes("slice_by_index")
def _slice_by_index(a: dict[str, Any], op_type: str) -> np.ndarray:
    x = np.asarray(a["x"])
    rank = x.ndim
    begin, end = np.atleast_1d(a["begin"]), np.atleast_1d(a["end"])
    stride = np.atleast_1d(a.get("stride", np.ones(rank, np.int32)))
    begin_mask = np.atleast_1d(a.get("begin_mask", np.zeros(rank, bool)))
    end_mask = np.atleast_1d(a.get("end_mask", np.zeros(rank, bool)))
    squeeze_mask = np.atleast_1d(a.get("squeeze_mask", np.zeros(rank, bool)))
    index = []
    for axis in range(rank):
        if squeeze_mask[axis]:
            index.append(int(begin[axis]))
            continue
        start = None if begin_mask[axis] else int(begin[axis])
        stop = None if end_mask[axis] else int(end[axis])
        index.append(slice(start, stop, int(stride[axis])))
    return x[tuple(index)]


@executes("slice_by_size")
def _slice_by_size(a: dict[str, Any], op_type: str) -> np.ndarray:
    x = np.asarray(a["x"])
    begin, size = np.atleast_1d(a["begin"]), np.atleast_1d(a["size"])
    index = tuple(
        slice(int(b), None if int(s) == -1 else int(b) + int(s)) for b, s in zip(begin, size, strict=True)
    )
    return x[index]


# The exporter's vocabulary (`const` is read from the spec, not executed).
EXECUTES = frozenset(
    {"add", "sub", "mul", "real_div", "maximum", "abs", "silu", "rsqrt", "reduce_max", "reduce_mean"}
    | {"softmax", "conv", "matmul", "reshape", "transpose", "expand_dims", "squeeze", "tile", "concat"}
    | {"shape", "slice_by_index", "slice_by_size", "identity"}
)
assert set(_HANDLERS) == EXECUTES, f"handler table out of date: {set(_HANDLERS) ^ EXECUTES}"


# --------------------------------------------------------------------------- driver


def _check_input(program: Program, name: str, value: np.ndarray) -> np.ndarray:
    declared = program.inputs[name]
    model_input = next((m for m in program.model_inputs if m.name == name), None)
    allowed = model_input.enumerated if model_input and model_input.enumerated else None
    fits = value.ndim == len(declared.shape) and all(
        d is None or d == s for d, s in zip(declared.shape, value.shape, strict=True)
    )
    if not fits or (allowed is not None and tuple(value.shape) not in allowed):
        expected = allowed if allowed is not None else declared.shape
        raise ValueError(f"[run_program] input {name} must have shape {expected}, got {value.shape}")
    return value.astype(NUMPY_DTYPES[declared.dtype])


def _round(op: Op, value: Any) -> tuple[np.ndarray, ...]:
    values = value if isinstance(value, tuple) else (value,)
    if len(values) != len(op.outputs):
        raise RuntimeError(
            f"[run_program] {op.type} {op.name}: {len(values)} outputs, {len(op.outputs)} declared"
        )
    rounded = []
    for v, (name, ttype) in zip(values, op.outputs, strict=True):
        with np.errstate(over="ignore"):
            v = np.asarray(v).astype(NUMPY_DTYPES[ttype.dtype])
        if v.ndim != len(ttype.shape) or any(d is not None and d != s for d, s in zip(ttype.shape, v.shape)):
            raise RuntimeError(
                f"[run_program] {op.type} {name}: computed shape {v.shape}, declared {ttype.shape}"
            )
        rounded.append(v)
    return tuple(rounded)


def run_program(program: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs an ML Program's `main` function on NumPy inputs.

    Args:
        program: A `milspec.Program`, an `MLModel` or a `.mlpackage` path.
        inputs: One array per program input, by name; cast to the declared input dtype.

    Returns:
        The program's outputs by name, in their declared dtypes.

    Raises:
        UnsupportedMILOp: for an op (or an op form) the interpreter does not implement.
    """
    if not isinstance(program, Program):
        program = load_program(program)
    if set(inputs) != set(program.inputs):
        raise ValueError(f"[run_program] inputs must be {sorted(program.inputs)}, got {sorted(inputs)}")
    env = {name: _check_input(program, name, np.asarray(v)) for name, v in inputs.items()}
    for op in program.ops:
        if op.type == "const":
            env[op.outputs[0][0]] = np.asarray(op.attributes["val"]) if "val" in op.attributes else None
            continue
        handler = _HANDLERS.get(op.type)
        if handler is None:
            raise UnsupportedMILOp(
                f"[run_program] op {op.name!r} of type {op.type!r} is not implemented by the NumPy MIL "
                f"interpreter (it runs: {', '.join(sorted(EXECUTES))})"
            )
        args: dict[str, Any] = {}
        for key, arguments in op.inputs.items():
            resolved = tuple(env[arg.name] if arg.name is not None else arg.value for arg in arguments)
            args[key] = resolved if key in _VARIADIC else resolved[0]
        for (name, _), value in zip(op.outputs, _round(op, handler(args, op.type)), strict=True):
            env[name] = value
    return {name: env[name] for name in program.outputs}
