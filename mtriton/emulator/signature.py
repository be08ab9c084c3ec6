"""MLX's source generation for ``mx.fast.metal_kernel`` and ``mx.fast.cuda_kernel``, reproduced.

MLX turns a kernel body into a complete Metal function: a signature built from
the inputs, outputs and the thread attributes the body mentions, and, with
template arguments, an explicit instantiation carrying the ``host_name`` the
library is looked up by. The rules below follow MLX 0.32
(``mlx/backend/common/metal_kernel.cpp``) and are checked against MLX's own
output in the tests; MLX prints that output on any machine when a kernel is
called with ``verbose=True`` under ``mx.export_function``. MLX's CUDA backend
builds a plainer signature (``cuda_params``): inputs as ``const T*``, then
outputs as ``T*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx

# Inputs with fewer elements than this are passed in the constant address space.
MAX_CONSTANT_ARRAY_SIZE = 8

# The attributes MLX adds when the body mentions their name, in MLX's order,
# with the Metal type MLX declares them with.
METAL_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("dispatch_quadgroups_per_threadgroup", "uint"),
    ("dispatch_simdgroups_per_threadgroup", "uint"),
    ("dispatch_threads_per_threadgroup", "uint3"),
    ("grid_origin", "uint3"),
    ("grid_size", "uint3"),
    ("quadgroup_index_in_threadgroup", "uint"),
    ("quadgroups_per_threadgroup", "uint"),
    ("simdgroup_index_in_threadgroup", "uint"),
    ("simdgroups_per_threadgroup", "uint"),
    ("thread_execution_width", "uint"),
    ("thread_index_in_quadgroup", "uint"),
    ("thread_index_in_simdgroup", "uint"),
    ("thread_index_in_threadgroup", "uint"),
    ("thread_position_in_grid", "uint3"),
    ("thread_position_in_threadgroup", "uint3"),
    ("threadgroup_position_in_grid", "uint3"),
    ("threadgroups_per_grid", "uint3"),
    ("threads_per_grid", "uint3"),
    ("threads_per_simdgroup", "uint"),
    ("threads_per_threadgroup", "uint3"),
)

# The C names MLX writes for its dtypes in generated source.
_TYPE_STRINGS: dict[mx.Dtype, str] = {
    mx.float32: "float",
    mx.float16: "float16_t",
    mx.bfloat16: "bfloat16_t",
    mx.float64: "double",
    mx.complex64: "complex64_t",
    mx.bool_: "bool",
    mx.int8: "int8_t",
    mx.int16: "int16_t",
    mx.int32: "int32_t",
    mx.int64: "int64_t",
    mx.uint8: "uint8_t",
    mx.uint16: "uint16_t",
    mx.uint32: "uint32_t",
    mx.uint64: "uint64_t",
}
# MLX's CUDA backend spells the half types with CUDA's names and passes no float64 or complex64.
_CUDA_TYPE_STRINGS: dict[mx.Dtype, str] = {
    **{dtype: name for dtype, name in _TYPE_STRINGS.items() if dtype not in (mx.float64, mx.complex64)},
    mx.float16: "__half",
    mx.bfloat16: "__nv_bfloat16",
}

TemplateValue = mx.Dtype | int | bool


# per kernel language: MLX's type names, and the error MLX gives for a dtype it cannot pass
_TYPE_NAMES = {
    "metal": (_TYPE_STRINGS, "Unsupported compilation type {}"),
    "cuda": (_CUDA_TYPE_STRINGS, "[cuda_kernel] unsupported dtype {}"),
}


def type_string(dtype: mx.Dtype, language: str = "metal") -> str:
    """Returns the type MLX writes for ``dtype`` in a kernel of ``language``.

    Args:
        dtype: An MLX dtype.
        language: "metal" or "cuda".

    Returns:
        The type name, e.g. ``"float16_t"`` (Metal) or ``"__half"`` (CUDA) for ``mx.float16``.

    Raises:
        ValueError: If MLX cannot pass this dtype to such a kernel.
    """
    names, error = _TYPE_NAMES[language]
    try:
        return names[dtype]
    except KeyError:
        raise ValueError(error.format(dtype)) from None


@dataclass(frozen=True)
class Param:
    """One parameter of the generated kernel function.

    Attributes:
        kind: ``"input"``, ``"shape"``, ``"strides"``, ``"ndim"``, ``"output"``
            or ``"attribute"``.
        name: The parameter's name in the Metal source.
        ctype: The C++ type the emulator's entry point casts the argument to.
        by_reference: Whether Metal receives it as ``T&`` rather than ``T*``.
        index: Position among the input arrays or outputs it belongs to.
    """

    kind: str
    name: str
    ctype: str
    by_reference: bool = False
    index: int = -1


@dataclass(frozen=True)
class KernelSource:
    """The complete Metal source MLX generates for one call.

    Attributes:
        text: Header, signature, body and template instantiation.
        host_name: The function name MLX looks the kernel up by.
        function: The C++ expression naming the instantiated function.
        params: The function's parameters, in order.
        body_line: 1-based line of ``text`` on which the body starts.
        header_lines: Number of lines the header occupies.
    """

    text: str
    host_name: str
    function: str
    params: tuple[Param, ...]
    body_line: int
    header_lines: int


@dataclass(frozen=True)
class InputSpec:
    """What the generated source needs to know about one input."""

    dtype: mx.Dtype
    ndim: int
    size: int


def input_spec(x: mx.array) -> InputSpec:
    """Summarises an input array for source generation.

    Args:
        x: The input array.

    Returns:
        Its dtype, rank and number of elements.
    """
    return InputSpec(x.dtype, x.ndim, x.size)


def shape_usage(source: str, input_names: Sequence[str]) -> list[tuple[bool, bool, bool]]:
    """Which of ``name_shape``, ``name_strides``, ``name_ndim`` each input gets.

    MLX looks for the names as plain substrings of the body (not the header).

    Args:
        source: The kernel body.
        input_names: The input parameter names.

    Returns:
        One (shape, strides, ndim) triple of flags per input.
    """
    return [(f"{n}_shape" in source, f"{n}_strides" in source, f"{n}_ndim" in source) for n in input_names]


def used_attributes(source: str) -> list[tuple[str, str]]:
    """The thread attributes MLX declares for a body, as (name, Metal type).

    Args:
        source: The kernel body.

    Returns:
        The attributes whose name occurs in the body, in MLX's order.
    """
    return [(name, mtype) for name, mtype in METAL_ATTRIBUTES if name in source]


def _template_text(template: Sequence[tuple[str, TemplateValue]]) -> str:
    parts = []
    for _, value in template:
        if isinstance(value, bool):
            parts.append("1" if value else "0")
        elif isinstance(value, int):
            parts.append(str(value))
        else:
            parts.append(type_string(value))
    return "<" + ", ".join(parts) + ">"


def _template_hash(template_def: str) -> str:
    # MLX's make_template_hash: '<' and '>' become '_', ", " becomes '_', and
    # the final character is dropped.
    return template_def.replace("<", "_").replace(">", "_").replace(", ", "_")[:-1]


def _template_kind(value: TemplateValue) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, mx.Dtype):
        return "typename"
    raise ValueError("[metal_kernel] Invalid template argument. Must be `mlx.core.Dtype`, `int` or `bool`.")


def generate(
    name: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    source: str,
    header: str,
    inputs: Sequence[InputSpec],
    output_dtypes: Sequence[mx.Dtype],
    template: Sequence[tuple[str, TemplateValue]] | None,
    atomic_outputs: bool,
) -> KernelSource:
    """Builds the full Metal source MLX generates for one call.

    Args:
        name: The kernel's name as given to ``metal_kernel``.
        input_names: Input parameter names.
        output_names: Output parameter names.
        source: The kernel body.
        header: Source placed before the function.
        inputs: Dtype, rank and size of each input.
        output_dtypes: Dtype of each output.
        template: Template arguments, as (name, value) pairs.
        atomic_outputs: Whether outputs are declared ``device atomic<T>*``.

    Returns:
        The generated source and what the emulator needs to call it.
    """
    template = list(template or [])
    kinds = [_template_kind(value) for _, value in template]
    host_name = "custom_kernel_" + name
    template_def = ""
    if template:
        template_def = _template_text(template)
        host_name += "_" + _template_hash(template_def)
    for spec in inputs:
        host_name += "_" + type_string(spec.dtype)
        if spec.ndim == 0:
            host_name += "s"
        elif spec.size < MAX_CONSTANT_ARRAY_SIZE:
            host_name += "c"
    for dtype in output_dtypes:
        host_name += "_" + type_string(dtype)

    params: list[Param] = []
    lines: list[str] = []
    index = 0
    for i, (pname, spec) in enumerate(zip(input_names, inputs, strict=True)):
        dtype = type_string(spec.dtype)
        location = "constant" if spec.size < MAX_CONSTANT_ARRAY_SIZE else "device"
        ref = "&" if spec.ndim == 0 else "*"
        lines.append(f"  const {location} {dtype}{ref} {pname} [[buffer({index})]],\n")
        params.append(Param("input", pname, f"const {dtype}*", spec.ndim == 0, i))
        index += 1
        if spec.ndim == 0:
            continue
        has_shape, has_strides, has_ndim = shape_usage(source, [pname])[0]
        if has_shape:
            lines.append(f"  const constant int* {pname}_shape [[buffer({index})]],\n")
            params.append(Param("shape", f"{pname}_shape", "const int*", False, i))
            index += 1
        if has_strides:
            lines.append(f"  const constant int64_t* {pname}_strides [[buffer({index})]],\n")
            params.append(Param("strides", f"{pname}_strides", "const int64_t*", False, i))
            index += 1
        if has_ndim:
            lines.append(f"  const constant int& {pname}_ndim [[buffer({index})]],\n")
            params.append(Param("ndim", f"{pname}_ndim", "const int*", True, i))
            index += 1

    attributes = used_attributes(source)
    last_output = len(inputs) + len(output_names) - 1
    for i, (pname, dtype) in enumerate(zip(output_names, output_dtypes, strict=True)):
        tname = type_string(dtype)
        ptype = f"atomic<{tname}>" if atomic_outputs else tname
        line = f"  device {ptype}* {pname} [[buffer({index})]]"
        # MLX compares the running buffer index (which also counts shape,
        # strides and ndim buffers) with inputs + outputs - 1, so a kernel
        # with such buffers, several outputs and no attributes gets its
        # signature closed early. Reproduced as is: Metal rejects it too.
        line += ",\n" if index < last_output or attributes else ") {\n"
        lines.append(line)
        params.append(Param("output", pname, f"{ptype}*", False, i))
        index += 1
    for k, (attr, mtype) in enumerate(attributes):
        end = ",\n" if k < len(attributes) - 1 else ") {\n"
        lines.append(f"  {mtype} {attr} [[{attr}]]{end}")
        params.append(Param("attribute", attr, mtype))

    prefix = header
    if template:
        prefix += (
            "template <"
            + ", ".join(f"{kind} {tname}" for kind, (tname, _) in zip(kinds, template, strict=True))
            + ">\n"
        )
    prefix += f"[[kernel]] void {host_name}(\n" + "".join(lines)
    text = prefix + source + "\n}\n"
    function = host_name + template_def
    if template:
        text += f'\ntemplate [[host_name("{host_name}")]] [[kernel]] decltype({function}) {function};\n'
    return KernelSource(
        text=text,
        host_name=host_name,
        function=function,
        params=tuple(params),
        body_line=prefix.count("\n") + 1,
        header_lines=header.count("\n"),
    )


def cuda_params(
    input_names: Sequence[str],
    input_types: Sequence[str],
    output_names: Sequence[str],
    output_types: Sequence[str],
    source: str,
) -> tuple[Param, ...]:
    """The parameters of the function MLX's CUDA backend generates for a kernel.

    Each input is ``const T*``, followed by ``name_shape`` (``const int32_t*``)
    and ``name_strides`` (``const int64_t*``) when the body mentions those
    names; then each output is ``T*``, in order.

    Args:
        input_names: Input parameter names.
        input_types: The C element type of each input.
        output_names: Output parameter names.
        output_types: The C element type of each output.
        source: The kernel body.

    Returns:
        The parameters, in order; ``f"{p.ctype} {p.name}"`` declares one.
    """
    params: list[Param] = []
    for k, (name, ctype) in enumerate(zip(input_names, input_types, strict=True)):
        params.append(Param("input", name, f"const {ctype}*", index=k))
        if f"{name}_shape" in source:
            params.append(Param("shape", f"{name}_shape", "const int32_t*", index=k))
        if f"{name}_strides" in source:
            params.append(Param("strides", f"{name}_strides", "const int64_t*", index=k))
    for k, (name, ctype) in enumerate(zip(output_names, output_types, strict=True)):
        params.append(Param("output", name, f"{ctype}*", index=k))
    return tuple(params)
