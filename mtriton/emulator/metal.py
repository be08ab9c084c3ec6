"""The Metal emulator: runs ``mx.fast.metal_kernel`` kernels on the CPU.

``metal_kernel`` takes the arguments of ``mx.fast.metal_kernel`` and returns a
callable with the same keyword arguments. A call generates the Metal source
MLX would (``full_source``), compiles it as C++ against a shim of the Metal
standard library, and runs the grid with each threadgroup's threads as
fibers, so barriers and SIMD-group functions behave as on the GPU. Errors a
GPU would hide (out-of-bounds accesses, divergent barriers, races, unwritten
outputs) raise ``EmulatorError`` subclasses that name the thread and the
source line. See docs/metal-emu.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mlx.core as mx

from . import abi, signature
from .runner import MAX_THREADS_PER_THREADGROUP, Call, get_checks, launch_dims, output_specs
from .translate import Translation, translate

# Loaded kernels by full Metal source: the source determines the binary.
_loaded: dict[str, tuple[abi.KernelBuilds, Translation]] = {}


def _as_array(value: Any) -> mx.array:
    # MLX converts Python scalars as mx.array does: float32, int32, bool.
    return value if isinstance(value, mx.array) else mx.array(value)


def full_source(
    name: str,
    input_names: Sequence[str],
    output_names: Sequence[str],
    source: str,
    *,
    inputs: Sequence[Any],
    output_dtypes: Sequence[mx.Dtype],
    header: str = "",
    template: Sequence[tuple[str, signature.TemplateValue]] | None = None,
    atomic_outputs: bool = False,
) -> str:
    """Returns the complete Metal source MLX generates for a call.

    Args:
        name: The kernel name given to ``metal_kernel``.
        input_names: Input parameter names.
        output_names: Output parameter names.
        source: The kernel body.
        inputs: The call's inputs (arrays or Python scalars).
        output_dtypes: The call's output dtypes.
        header: Source placed before the function.
        template: Template arguments as (name, dtype/int/bool) pairs.
        atomic_outputs: Whether outputs are declared atomic.

    Returns:
        Header, signature, body and template instantiation, exactly as MLX
        prints them with ``verbose=True``.
    """
    specs = [signature.input_spec(_as_array(x)) for x in inputs]
    return signature.generate(
        name,
        input_names,
        output_names,
        source,
        header,
        specs,
        output_dtypes,
        template,
        atomic_outputs,
    ).text


class MetalKernel:
    """A kernel from a Metal body, as ``mx.fast.metal_kernel`` builds it; call it like MLX's.

    Args:
        name: Name for the kernel.
        input_names: The parameter names of the inputs.
        output_names: The parameter names of the outputs.
        source: The body of the kernel function.
        header: Source placed before the function (helpers, includes).
        ensure_row_contiguous: Copy non-row-contiguous inputs before the call.
        atomic_outputs: Declare outputs as ``device atomic<T>*``.
        compile_options: MLX's compile options (``math_mode``); accepted, and
            without effect on the emulator's arithmetic.
    """

    def __init__(
        self,
        name: str,
        input_names: Sequence[str],
        output_names: Sequence[str],
        source: str,
        header: str = "",
        ensure_row_contiguous: bool = True,
        atomic_outputs: bool = False,
        compile_options: dict[str, str] | None = None,
    ) -> None:
        if not output_names:
            raise ValueError("[metal_kernel] Must specify at least one output.")
        self.name = name
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.source = source
        self.header = header
        self.ensure_row_contiguous = ensure_row_contiguous
        self.atomic_outputs = atomic_outputs
        # Math modes only change Metal's code generation; the emulator always
        # computes with the C library's functions.
        self.compile_options = dict(compile_options or {})

    def full_source(
        self,
        *,
        inputs: Sequence[Any],
        output_dtypes: Sequence[mx.Dtype],
        template: Sequence[tuple[str, signature.TemplateValue]] | None = None,
    ) -> str:
        """Returns the Metal source MLX generates for a call with these arguments.

        Args:
            inputs: The call's inputs.
            output_dtypes: The call's output dtypes.
            template: Template arguments.

        Returns:
            The complete source.
        """
        return full_source(
            self.name,
            self.input_names,
            self.output_names,
            self.source,
            inputs=inputs,
            output_dtypes=output_dtypes,
            header=self.header,
            template=template,
            atomic_outputs=self.atomic_outputs,
        )

    # mtriton's launcher passes `writable_inputs` to read back what the kernel wrote
    # into inputs; MLX's kernels have no such argument.
    returns_writable_inputs = True

    def __call__(
        self,
        *,
        inputs: Sequence[Any],
        output_shapes: Sequence[Sequence[int]],
        output_dtypes: Sequence[mx.Dtype],
        grid: tuple[int, int, int],
        threadgroup: tuple[int, int, int],
        template: Sequence[tuple[str, signature.TemplateValue]] | None = None,
        init_value: float | None = None,
        verbose: bool = False,
        stream: Any = None,
        writable_inputs: Sequence[int] = (),
        order_dependent_inputs: Sequence[int] = (),
        buffer_alignment: Mapping[str, int] | None = None,
        writable_sizes: Sequence[int] = (),
        placeholder_outputs: Sequence[int] = (),
    ) -> list[mx.array]:
        """Runs the kernel.

        Args:
            inputs: Arrays (or Python scalars) for the input parameters.
            output_shapes: Shape of each output.
            output_dtypes: Dtype of each output.
            grid: Threads to launch per dimension (``dispatchThreads``).
            threadgroup: Threadgroup size per dimension.
            template: Template arguments as (name, dtype/int/bool) pairs.
            init_value: Value every output element starts with; None leaves
                outputs uninitialised, as MLX does.
            verbose: Print the generated source, as MLX does.
            stream: Accepted for compatibility; the emulator runs on the CPU.
            writable_inputs: Indices of inputs the kernel writes through a
                pointer it made writable (mtriton's copy-on-write launch);
                their final contents follow the outputs in the result. Not
                an MLX argument: on a GPU such writes land in the input's
                own buffer.
            order_dependent_inputs: Writable inputs updated with atomics,
                whose final contents may depend on thread order (float
                sums): the race check leaves them out.
            buffer_alignment: Per input or output name, the bytes its buffer's
                start is a multiple of. Not an MLX argument: MLX allocates
                buffers aligned, while the emulator aligns each only to its
                element, to end it exactly at a guard page. A kernel that
                reads a uint8 array as uint32 (mtriton's pointer casts)
                needs 4; reads up to 3 bytes past the end of such an array
                then go unnoticed, as on a GPU.
            writable_sizes: Per writable input, the number of its leading
                elements the unwritten check expects written (the rest
                pads it); all where not given.
            placeholder_outputs: Outputs no thread writes by design (mtriton's
                ``mt_done``), which the unwritten and race checks leave out.

        Returns:
            The outputs, as new arrays, then the writable inputs' contents.

        Raises:
            ValueError: For arguments MLX rejects.
            TypeError: For a grid or threadgroup MLX's binding rejects (more
                than 2^31 - 1 along a dimension).
            EmulatorError: If the kernel fails to compile or misbehaves.
        """
        del stream
        for what, got in (
            ("inputs", inputs),
            ("output_shapes", output_shapes),
            ("output_dtypes", output_dtypes),
        ):
            expected = len(self.input_names) if what == "inputs" else len(self.output_names)
            if len(got) != expected:
                raise ValueError(
                    f"[metal_kernel] Expected `{what}` to have size {expected} but got size {len(got)}."
                )
        arrays = [_as_array(x) for x in inputs]
        source = signature.generate(
            self.name,
            self.input_names,
            self.output_names,
            self.source,
            self.header,
            [signature.input_spec(x) for x in arrays],
            output_dtypes,
            template,
            self.atomic_outputs,
        )
        if verbose:
            print(f"Generated source code for `{self.name}`:\n```\n{source.text}\n```")
        grid, threadgroup = launch_dims("metal_kernel", grid, threadgroup)
        threads = threadgroup[0] * threadgroup[1] * threadgroup[2]
        if threads > MAX_THREADS_PER_THREADGROUP:
            raise ValueError(
                f"Thread group size ({threads}) is greater than  the maximum allowed threads "
                f"per threadgroup ({MAX_THREADS_PER_THREADGROUP})."
            )
        loaded = _loaded.get(source.text)
        if loaded is None:
            translation = translate(source)
            loaded = (abi.KernelBuilds(translation.cpp, source.host_name), translation)
            _loaded[source.text] = loaded
        outputs = output_specs(self.output_names, output_shapes, output_dtypes)
        call = Call(loaded[0], source, loaded[1], self.name, get_checks())
        return call.run(
            arrays,
            outputs,
            grid,
            threadgroup,
            init_value,
            self.ensure_row_contiguous,
            self.atomic_outputs,
            writable_inputs,
            order_dependent_inputs,
            buffer_alignment,
            writable_sizes,
            placeholder_outputs,
        )


# MLX's `mx.fast.metal_kernel(...)` is a factory of kernel objects; here the class is the factory.
metal_kernel = MetalKernel
