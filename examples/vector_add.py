"""The first thing to run: a Triton kernel on MLX arrays, checked against MLX.

    python examples/vector_add.py

The kernel is Triton's tutorial vector add; only the imports differ from Triton.
"""

import mlx.core as mx

import mtriton as triton
import mtriton.language as tl


@triton.jit
def add_kernel(x_ptr, y_ptr, output_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(output_ptr + offsets, x + y, mask=mask)


def add(x: mx.array, y: mx.array) -> mx.array:
    output = triton.empty(x.shape, dtype=x.dtype)
    n_elements = x.size
    grid = lambda meta: (triton.cdiv(n_elements, meta["BLOCK_SIZE"]),)
    add_kernel[grid](x, y, output, n_elements, BLOCK_SIZE=1024)
    return output


def main() -> None:
    mx.random.seed(0)
    size = 98_432
    x = mx.random.uniform(shape=(size,))
    y = mx.random.uniform(shape=(size,))
    output = add(x, y)
    expected = x + y
    max_diff = mx.max(mx.abs(output - expected)).item()
    print(f"backend: {triton.current_backend_name()} (MLX device: {mx.default_device()})")
    print(f"vector add of {size} floats: max difference from MLX = {max_diff}")
    if max_diff != 0:
        raise SystemExit("mismatch")
    print("OK")


if __name__ == "__main__":
    main()
