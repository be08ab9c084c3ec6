"""Reads a saved ML Program back from its protobuf spec: the model the checker and the interpreter see.

Both work on what Core ML itself will load (the `mlProgram` message of the `.mlpackage`'s spec,
with its weights in `weights/weight.bin`), not on coremltools' in-memory Program: what the
converter's passes changed (fused ops, inserted fp16 casts, folded constants) is what they judge.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._deps import require_coremltools

# MIL data types by the name `MIL_pb2.DataType` gives them.
NUMPY_DTYPES = {
    "FLOAT16": np.float16,
    "FLOAT32": np.float32,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "BOOL": np.bool_,
}
_BLOB_READERS = {"FLOAT16": "read_fp16_data", "FLOAT32": "read_float_data", "INT32": "read_int32_data"}


@dataclass(frozen=True)
class TensorType:
    """A value's declared type: its MIL data type name and shape (None for an unknown dimension)."""

    dtype: str
    shape: tuple[int | None, ...]


@dataclass(frozen=True)
class Argument:
    """One argument of an op input: the name of a value, or an inline constant."""

    name: str | None = None
    value: Any = None


@dataclass(frozen=True)
class Op:
    """One MIL operation as saved: type, named inputs, typed outputs and attributes (const's `val`)."""

    type: str
    inputs: dict[str, tuple[Argument, ...]]
    outputs: tuple[tuple[str, TensorType], ...]
    attributes: dict[str, Any]

    @property
    def name(self) -> str:
        return self.outputs[0][0] if self.outputs else f"<{self.type}>"


@dataclass(frozen=True)
class ModelInput:
    """A model input as Core ML declares it: its default shape and how it may vary."""

    name: str
    shape: tuple[int, ...]
    enumerated: tuple[tuple[int, ...], ...] = ()
    ranges: tuple[tuple[int, int], ...] = ()  # (lower, upper) per dimension; upper -1 is unbounded


@dataclass(frozen=True)
class Program:
    """The `main` function of a saved ML Program."""

    inputs: dict[str, TensorType]
    ops: tuple[Op, ...]
    outputs: tuple[str, ...]
    model_inputs: tuple[ModelInput, ...]
    opset: str
    metadata: dict[str, str] = field(default_factory=dict)


def _tensor_type(ct: Any, value_type: Any) -> TensorType:
    t = value_type.tensorType
    dtype = ct.proto.MIL_pb2.DataType.Name(t.dataType)
    dims = tuple(d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in t.dimensions)
    return TensorType(dtype, dims)


def _immediate(ttype: TensorType, tensor: Any) -> Any:
    kind = tensor.WhichOneof("value")
    if kind == "strings":
        values = list(tensor.strings.values)
        return values[0] if ttype.shape == () else values
    if kind == "bytes":
        data = np.frombuffer(tensor.bytes.values, dtype=NUMPY_DTYPES[ttype.dtype])
    else:
        data = np.array(list(getattr(tensor, kind).values), dtype=NUMPY_DTYPES[ttype.dtype])
    return data.reshape(ttype.shape)


def _value(ct: Any, value: Any, model_dir: str) -> Any:
    ttype = _tensor_type(ct, value.type)
    kind = value.WhichOneof("value")
    if kind == "immediateValue":
        return _immediate(ttype, value.immediateValue.tensor)
    if kind == "blobFileValue":
        reader_name = _BLOB_READERS.get(ttype.dtype)
        if reader_name is None:
            raise ValueError(f"[load_program] weights of type {ttype.dtype} are not supported")
        path = os.path.join(model_dir, value.blobFileValue.fileName.replace("@model_path/", ""))
        storage = importlib.import_module("coremltools.libmilstoragepython")
        data = np.asarray(getattr(storage._BlobStorageReader(path), reader_name)(value.blobFileValue.offset))
        # The fp16 reader hands back the raw 16-bit words.
        data = data.view(np.float16) if ttype.dtype == "FLOAT16" else data.astype(NUMPY_DTYPES[ttype.dtype])
        return data.reshape(ttype.shape)
    raise ValueError(f"[load_program] values stored as {kind} are not supported")


def _model_inputs(spec: Any) -> tuple[ModelInput, ...]:
    inputs = []
    for feature in spec.description.input:
        array = feature.type.multiArrayType
        flexibility = array.WhichOneof("ShapeFlexibility")
        enumerated = ranges = ()
        if flexibility == "enumeratedShapes":
            enumerated = tuple(tuple(s.shape) for s in array.enumeratedShapes.shapes)
        elif flexibility == "shapeRange":
            ranges = tuple((r.lowerBound, r.upperBound) for r in array.shapeRange.sizeRanges)
        inputs.append(ModelInput(feature.name, tuple(array.shape), enumerated, ranges))
    return tuple(inputs)


def load_program(model: Any) -> Program:
    """Reads the `main` function of an ML Program.

    Args:
        model: A `.mlpackage` path or a `coremltools.models.MLModel` (saved or just converted).

    Returns:
        The program's ops in order, with constants read from the spec and the weight file.
    """
    ct = require_coremltools("load_program")
    if isinstance(model, (str, os.PathLike)):
        model = ct.models.MLModel(os.fspath(model), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"[load_program] model must be an ML Program, got a {spec.WhichOneof('Type')} model")
    model_dir = os.path.dirname(model.weights_dir)
    fn = spec.mlProgram.functions["main"]
    block = fn.block_specializations[fn.opset]
    inputs = {v.name: _tensor_type(ct, v.type) for v in fn.inputs}
    ops = []
    for op in block.operations:
        args = {
            key: tuple(
                Argument(name=a.name)
                if a.WhichOneof("binding") == "name"
                else Argument(value=_value(ct, a.value, model_dir))
                for a in binding.arguments
            )
            for key, binding in op.inputs.items()
        }
        outputs = tuple((o.name, _tensor_type(ct, o.type)) for o in op.outputs)
        attributes = {key: _value(ct, v, model_dir) for key, v in op.attributes.items() if key != "name"}
        ops.append(Op(op.type, args, outputs, attributes))
    metadata = dict(spec.description.metadata.userDefined)
    return Program(inputs, tuple(ops), tuple(block.outputs), _model_inputs(spec), fn.opset, metadata)
