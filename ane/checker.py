"""A static checker of what keeps an ML Program off the Apple Neural Engine.

It reads the program as saved (`milspec.load_program`: after coremltools' passes) and reports
each finding with the op (or input) it concerns. Rules, with their severity:

| rule | severity | what |
| --- | --- | --- |
| `dynamic-shape` | error | an input with a shape range or an unknown dimension: the ANE compiles static shapes only; use a static shape or `EnumeratedShapes` |
| `unsupported-op` | error | scatter ops (`scatter`, `scatter_nd`, `scatter_along_axis`): not on the ANE |
| `dynamic-gather` | error | a gather whose indices are computed at run time (not a constant): not on the ANE |
| `dim-limit` | error | a tensor dimension over 16384 (`MAX_DIM`), beyond what the ANE compiler accepts |
| `inf-mask` | error | a float constant of -inf, or below float16's range (it becomes -inf in fp16): a fully masked softmax row turns to NaN; use a large negative fp16 value (`export.MASK_VALUE`, -1e4) |
| `float32-compute` | warning | an op computing in float32: Core ML places it on the CPU or GPU; export with `compute_precision="float16"` |

`check` raises `ANECompatibilityError` listing every error (unless `raise_on_error=False`) and
emits each warning as an `ANECompatibilityWarning`; it returns all findings.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .milspec import Op, Program, load_program

ERROR, WARNING = "error", "warning"
MAX_DIM = 16384
FP16_LOWEST = -65504.0
SCATTER_OPS = frozenset({"scatter", "scatter_nd", "scatter_along_axis"})
GATHER_OPS = frozenset({"gather", "gather_nd", "gather_along_axis"})
# Ops whose fp32 outputs are not compute: constants, copies and the casts at the program's edges.
_NOT_COMPUTE = frozenset({"const", "cast", "shape", "identity"})
_FLOAT_TYPES = frozenset({"FLOAT16", "FLOAT32", "FLOAT64"})


@dataclass(frozen=True)
class Finding:
    """One reason a program may not run (fully) on the Neural Engine."""

    severity: str
    rule: str
    op: str
    op_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: [{self.rule}] {self.op_type} {self.op!r}: {self.message}"


class ANECompatibilityError(ValueError):
    """The program holds what the Neural Engine cannot run; `findings` lists every error."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        lines = "\n".join(f"  {f}" for f in findings)
        super().__init__(f"[check] the program cannot run on the Neural Engine:\n{lines}")


class ANECompatibilityWarning(UserWarning):
    """Part of the program will run off the Neural Engine."""


def _check_inputs(program: Program) -> list[Finding]:
    findings = []
    for model_input in program.model_inputs:
        declared = program.inputs[model_input.name].shape
        flexible = [i for i, (lo, hi) in enumerate(model_input.ranges) if lo != hi]
        if flexible or (None in declared and not model_input.enumerated):
            axes = flexible or [i for i, d in enumerate(declared) if d is None]
            findings.append(
                Finding(
                    ERROR,
                    "dynamic-shape",
                    model_input.name,
                    "input",
                    f"dimensions {axes} are dynamic (shape ranges {list(model_input.ranges)}); the ANE compiles "
                    "static shapes only: export a static shape or EnumeratedShapes",
                )
            )
        for shape in (model_input.shape, *model_input.enumerated):
            if any(d > MAX_DIM for d in shape):
                findings.append(
                    Finding(
                        ERROR,
                        "dim-limit",
                        model_input.name,
                        "input",
                        f"shape {shape} has a dimension over {MAX_DIM}",
                    )
                )
                break
    return findings


def _constants(op: Op) -> list[np.ndarray]:
    values = [op.attributes["val"]] if op.type == "const" and "val" in op.attributes else []
    values += [arg.value for args in op.inputs.values() for arg in args if arg.name is None]
    return [v for v in values if isinstance(v, np.ndarray) and v.dtype.kind == "f"]


def _check_op(op: Op, const_names: set[str]) -> list[Finding]:
    findings = []

    def add(severity: str, rule: str, message: str) -> None:
        findings.append(Finding(severity, rule, op.name, op.type, message))

    if op.type in SCATTER_OPS:
        add(ERROR, "unsupported-op", "scatter ops do not run on the Neural Engine")
    if op.type in GATHER_OPS:
        indices = op.inputs.get("indices", ())
        if any(arg.name is not None and arg.name not in const_names for arg in indices):
            add(
                ERROR,
                "dynamic-gather",
                "its indices are computed at run time; the Neural Engine gathers constants only",
            )
    for _, ttype in op.outputs:
        if any(d is not None and d > MAX_DIM for d in ttype.shape):
            add(ERROR, "dim-limit", f"output shape {ttype.shape} has a dimension over {MAX_DIM}")
            break
    for value in _constants(op):
        if value.size and float(np.min(value)) < FP16_LOWEST:
            lowest = float(np.min(value))
            add(
                ERROR,
                "inf-mask",
                f"a constant holds {lowest:g} (-inf in fp16): a fully masked softmax row becomes NaN; "
                "use a large negative fp16 value such as -1e4",
            )
            break
    if op.type not in _NOT_COMPUTE and any(t.dtype == "FLOAT32" for _, t in op.outputs):
        add(
            WARNING,
            "float32-compute",
            "computes in float32, which runs on the CPU or GPU; export with float16",
        )
    return findings


def check(model: Any, *, raise_on_error: bool = True, warn: bool = True) -> list[Finding]:
    """Checks an ML Program for what keeps it off the Neural Engine (rules in the module docstring).

    Args:
        model: A `.mlpackage` path, a `coremltools.models.MLModel` or a `milspec.Program`.
        raise_on_error: Raise `ANECompatibilityError` when any finding is an error.
        warn: Emit each warning finding as an `ANECompatibilityWarning`.

    Returns:
        Every finding, errors first, in program order.
    """
    program = model if isinstance(model, Program) else load_program(model)
    findings = _check_inputs(program)
    const_names = {op.outputs[0][0] for op in program.ops if op.type == "const"}
    for op in program.ops:
        findings += _check_op(op, const_names)
    findings.sort(key=lambda f: f.severity != ERROR)
    errors = [f for f in findings if f.severity == ERROR]
    if warn:
        for finding in findings:
            if finding.severity == WARNING:
                warnings.warn(str(finding), ANECompatibilityWarning, stacklevel=2)
    if errors and raise_on_error:
        raise ANECompatibilityError(errors)
    return findings
