"""Times the interpreter on a row softmax (4096 x 1024 float32) against `mx.softmax`.

The kernel is built directly as IR, one program per row, as Triton's tutorial
softmax would compile. Prints the best of several runs of each and the ratio
(the interpreter's target: within 10x of `mx.softmax`).

    python -m benchmarks.interp_softmax [--rows 4096] [--cols 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import mlx.core as mx
import numpy as np

from mtriton import ir
from mtriton.interpreter import execute
from mtriton.ir import types as T


def softmax_ir(block: int) -> ir.Function:
    """`out[row] = softmax(x[row])`, rows of `n_cols` elements `stride` apart, in blocks of `block`."""
    b = ir.Builder()
    b.loc = ir.Loc(__file__, 1)
    params = [
        ir.Param("x_ptr", ir.Value(T.BlockType(T.PointerType(T.float32)))),
        ir.Param("out_ptr", ir.Value(T.BlockType(T.PointerType(T.float32)))),
        ir.Param("stride", ir.Value(T.BlockType(T.int32))),
        ir.Param("n_cols", ir.Value(T.BlockType(T.int32))),
    ]
    b.block.args = [p.value for p in params]
    x_ptr, out_ptr, stride, n_cols = b.block.args
    i32, f32 = T.BlockType(T.int32, (block,)), T.BlockType(T.float32, (block,))
    ptrs = T.BlockType(T.PointerType(T.float32), (block,))

    def combine(name: str) -> ir.Block:
        region = b.new_block([T.BlockType(T.float32)] * 2)
        with b.insert_into(region):
            b.create("yield", [b.build(name, region.args, T.BlockType(T.float32))], [])
        return region

    def row_reduce(name: str, x: ir.Value) -> ir.Value:
        total = b.create("reduce", [x], [T.BlockType(T.float32)], {"axis": 0}, [combine(name)]).result
        return b.build("splat", [total], f32)

    cols = b.build("arange", [], i32, start=0, end=block)
    mask = b.build("cmp", [cols, b.build("splat", [n_cols], i32)], i32.with_elem(T.int1), pred="lt")
    row = b.build(
        "mul", [b.build("program_id", [], T.BlockType(T.int32), axis=0), stride], T.BlockType(T.int32)
    )
    offsets = b.build("add", [b.build("splat", [row], i32), cols], i32)
    x_ptrs = b.build("addptr", [b.build("splat", [x_ptr], ptrs), offsets], ptrs)
    minus_inf = b.build("constant", [], f32, value=float("-inf"))
    x = b.build("load", [x_ptrs, mask, minus_inf], f32)
    e = b.build("exp", [b.build("sub", [x, row_reduce("maximum", x)], f32)], f32)
    y = b.build("div", [e, row_reduce("add", e)], f32)
    out_ptrs = b.build("addptr", [b.build("splat", [out_ptr], ptrs), offsets], ptrs)
    b.create("store", [out_ptrs, y, mask], [])
    return ir.Function("softmax_kernel", params, b.block)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Best wall time of `fn` in seconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    block = 1 << (args.cols - 1).bit_length()
    fn = softmax_ir(block)
    x = mx.random.normal((args.rows, args.cols))
    out = mx.zeros_like(x)
    mx.eval(x, out)

    def interpreted() -> mx.array:
        result = execute(fn, [x, out, args.cols, args.cols], (args.rows, 1, 1))[1]
        mx.eval(result)
        return result

    reference = mx.softmax(x, axis=-1)
    error = float(mx.max(mx.abs(interpreted() - reference)))
    t_interp = best_of(args.repeats, interpreted)
    t_mlx = best_of(args.repeats, lambda: mx.eval(mx.softmax(x, axis=-1)))
    print(f"softmax {args.rows}x{args.cols} f32 on {mx.default_device()}")
    print(f"  interpreter: {t_interp * 1e3:8.1f} ms   (max abs error vs mx.softmax {error:.2e})")
    print(f"  mx.softmax:  {t_mlx * 1e3:8.1f} ms")
    print(f"  ratio:       {t_interp / t_mlx:8.2f}x   (target: within 10x)")
    assert np.isfinite(error)


if __name__ == "__main__":
    main()
