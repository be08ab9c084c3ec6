"""The emitted Metal and CUDA: golden files, code-quality properties and the dump CLI.

Golden files live in tests/golden/; `MTRITON_UPDATE_GOLDEN=1 pytest tests/test_codegen.py`
rewrites them on purpose, so codegen changes show up in review.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import NVCC_SM90A

from mtriton import cli, options
from mtriton.backends.cstyle.layout import mma_layout

GOLDEN = Path(__file__).parent / "golden"
TUTORIALS = str(Path(__file__).parent.parent / "examples" / "tutorial_kernels.py")

# (kernel, signature, constexprs): the tutorial kernels as the benchmarks launch them
KERNELS = {
    "add_kernel": ("*fp32,*fp32,*fp32,i32:16", ["BLOCK_SIZE=1024"]),
    "softmax_kernel": ("*fp32,*fp32,i32,i32,i32,i32", ["BLOCK_SIZE=1024"]),
    "cumsum_kernel": ("*fp32,*fp32,i32,i32", ["BLOCK_SIZE=1024"]),
    "matmul_kernel": (
        "*fp16,*fp16,*fp16,i32,i32,i32,i32,i32,i32,i32,i32,i32",
        ["BLOCK_SIZE_M=32", "BLOCK_SIZE_N=32", "BLOCK_SIZE_K=32", "GROUP_SIZE_M=8"],
    ),
    "histogram_kernel": ("*i32,*i32,i32,i32", ["BLOCK_SIZE=256"]),
}


def dump(command: str, kernel: str, *extra: str) -> str:
    signature, constexprs = KERNELS[kernel]
    argv = [command, f"{TUTORIALS}:{kernel}", "--signature", signature, *extra]
    for c in constexprs:
        argv += ["-c", c]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0
    return out.getvalue()


@pytest.mark.parametrize(
    "kernel, target",
    [
        ("add_kernel", "metal"),
        ("softmax_kernel", "metal"),
        ("matmul_kernel", "metal"),
        ("softmax_kernel", "cuda"),
    ],
)
def test_golden_source(kernel: str, target: str) -> None:
    text = dump(f"dump-{target}", kernel)
    path = GOLDEN / f"{kernel}.{'metal' if target == 'metal' else 'cu'}"
    if options.update_golden() or not path.exists():
        if not options.update_golden():
            pytest.fail(f"no golden file {path.name}; run with MTRITON_UPDATE_GOLDEN=1 to write it")
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} changed; rerun with MTRITON_UPDATE_GOLDEN=1 if intended"


def test_vector_add_uses_vector_accesses() -> None:
    metal = dump("dump-metal", "add_kernel")
    assert metal.count("packed_float4") >= 3  # two loads and a store
    assert "&&" not in metal  # n divisible by 16: the mask is constant over each chunk
    cuda = dump("dump-cuda", "add_kernel")
    assert cuda.count("mt_vec<float, 4>") >= 3
    # CUDA's vectors need aligned addresses: each base pointer is tested once, else scalar code
    assert "const bool p0_aligned16 = " in cuda and "if (p2_aligned16 && " in cuda
    # Without the divisibility of n by 16, the mask may change inside a chunk: a chunk with
    # every element in bounds is one access, a row's tail goes element by element.
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(
            ["dump-metal", f"{TUTORIALS}:add_kernel", "-s", "*fp32,*fp32,*fp32,i32", "-c", "BLOCK_SIZE=1024"]
        )
    assert out.getvalue().count("packed_float4") >= 3
    assert re.search(
        r"if \((\w+)\[i \+ 0\] && \1\[i \+ 1\] && \1\[i \+ 2\] && \1\[i \+ 3\]\)", out.getvalue()
    )


def test_softmax_reduces_with_simd_functions_and_reads_its_row_once() -> None:
    metal = dump("dump-metal", "softmax_kernel")
    assert "simd_max(" in metal and "simd_sum(" in metal
    loads = re.findall(r"= \w+\[i\] \? p1\[|\*\(\(device const packed_float4\*\)\(p1 ", metal)
    assert len(loads) == 1, "the input row must be loaded from device memory exactly once"


def test_cumsum_uses_the_simd_prefix_sum() -> None:
    assert "simd_prefix_exclusive_sum(" in dump("dump-metal", "cumsum_kernel")


def test_matmul_uses_simdgroup_matrices() -> None:
    metal = dump("dump-metal", "matmul_kernel")
    assert "simdgroup_multiply_accumulate(" in metal and "simdgroup_load(" in metal


def test_histogram_uses_metal_atomics() -> None:
    metal = dump("dump-metal", "histogram_kernel", "--full")
    assert "atomic_fetch_add_explicit" in metal and "mt_atomic_add(&p1[" in metal


def test_every_statement_names_its_kernel_line() -> None:
    body = dump("dump-metal", "softmax_kernel")
    statements = [line for line in body.splitlines() if line.rstrip().endswith(";") and "mt_smem" not in line]
    prologue = {"tid", "lane", "warp"}
    unlabeled = [
        s
        for s in statements
        if "// tutorial_kernels.py:" not in s and not any(f"int {p} =" in s for p in prologue)
    ]
    assert not unlabeled, unlabeled[:3]


def test_dump_ir_prints_the_ir() -> None:
    text = dump("dump-ir", "add_kernel")
    assert text.startswith("func @add_kernel(") and "load" in text and "store" in text


def test_full_metal_source_has_mlx_signature() -> None:
    full = dump("dump-metal", "add_kernel", "--full")
    assert "[[kernel]] void custom_kernel_mtriton_add_kernel_" in full
    assert "uint3 threadgroup_position_in_grid [[threadgroup_position_in_grid]]" in full


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_full_cuda_source_compiles_with_nvcc(tmp_path: Path) -> None:
    source = tmp_path / "add.cu"
    source.write_text(dump("dump-cuda", "add_kernel", "--full"))
    result = subprocess.run(
        ["nvcc", *NVCC_SM90A, "-c", str(source), "-o", str(tmp_path / "add.o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_cli_rejects_a_wrong_signature(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="lists 2 types but add_kernel has 4"):
        cli.main(["dump-ir", f"{TUTORIALS}:add_kernel", "-s", "*fp32,*fp32", "-c", "BLOCK_SIZE=16"])


TILE_COPY = """
import mtriton
import mtriton.language as tl


@mtriton.jit
def tile_copy(x_ptr, y_ptr, STRIDE: tl.constexpr):
    offs = tl.arange(0, 16)[:, None] * STRIDE + tl.arange(0, 64)[None, :]
    tl.store(y_ptr + offs, tl.load(x_ptr + offs))
"""


@pytest.mark.parametrize("stride, vector", [(64, True), (68, True), (67, False), (66, False)])
def test_cuda_vectors_need_every_row_start_aligned(tmp_path: Path, stride: int, vector: bool) -> None:
    # Row r starts at element r * STRIDE: a 16-byte vector fits only when STRIDE is a multiple of 4.
    path = tmp_path / "tile.py"
    path.write_text(TILE_COPY)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["dump-cuda", f"{path}:tile_copy", "-s", "*fp32,*fp32", "-c", f"STRIDE={stride}"])
    assert ("mt_vec<float, 4>" in out.getvalue()) == vector


@pytest.mark.parametrize("m, n, warps", [(128, 128, 8), (64, 64, 4), (32, 16, 1), (128, 64, 4), (16, 256, 2)])
def test_mma_layout_gives_every_element_one_owner(m: int, n: int, warps: int) -> None:
    layout = mma_layout(m, n, warps * 32)
    index = layout.flat_index("s", "t").replace("/", "//")  # non-negative: C's / is floor division
    owners = [eval(index, {"s": s, "t": t}) for t in range(warps * 32) for s in range(layout.slots)]
    assert sorted(owners) == list(range(m * n))
    # lane 4g + t holds rows g and g + 8, columns 2t and 2t + 1 of its warp's first tile (PTX ISA)
    assert [eval(index, {"s": s, "t": 4 * 3 + 1}) for s in range(4)] == [
        3 * n + 2,
        3 * n + 3,
        11 * n + 2,
        11 * n + 3,
    ]


def test_cuda_matmul_accumulates_in_register_fragments() -> None:
    cuda = dump("dump-cuda", "matmul_kernel", "--num-warps", "4")
    assert "mt_ldmatrix_x4(" in cuda and "mt_ldmatrix_x4_trans(" in cuda and "mt_mma_regs(" in cuda
    assert "mt_mma_store(" not in cuda  # the accumulator never goes through shared memory
    # with unit strides specialized (i32:1), the tiles' loads go to shared memory by cp.async
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(
            ["dump-cuda", f"{TUTORIALS}:matmul_kernel", "-s", "*fp16,*fp16,*fp16," + ",".join(["i32:16"] * 3 + ["i32:16", "i32:1"] * 3),
             "-c", "BLOCK_SIZE_M=64", "-c", "BLOCK_SIZE_N=64", "-c", "BLOCK_SIZE_K=32", "-c", "GROUP_SIZE_M=8"]
        )  # fmt: skip
    # num_stages 3 (the default): the prologue copies two iterations ahead, each iteration one
    # more, 16 bytes (8 halves) a copy
    cuda = out.getvalue()
    assert cuda.count("mt_cp_async<16>(") == 4 and cuda.count("mt_cp_async_commit();") == 2
    assert "mt_cp_async_wait_group<1>();" in cuda and "mt_cp_async_wait();" not in cuda


@pytest.mark.parametrize("precision, tf32", [("tf32", True), ("ieee", False)])
def test_cuda_float32_dots_use_tf32_tensor_cores_under_tf32(
    tmp_path: Path, precision: str, tf32: bool
) -> None:
    path = tmp_path / "dot.py"
    path.write_text(DOT32.format(precision=precision))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.main(["dump-cuda", f"{path}:dot32", "-s", "*fp32,*fp32,*fp32"])
    cuda = out.getvalue()
    assert ("mt_mma_tf32(" in cuda and "mt_load_a_tf32(" in cuda and "mt_load_b_tf32(" in cuda) == tf32
    # on the tensor cores the float32 tiles reach shared memory by cp.async
    assert ("mt_cp_async<" in cuda) == tf32


DOT32 = """
import mtriton
import mtriton.language as tl


@mtriton.jit
def dot32(a_ptr, b_ptr, c_ptr):
    r = tl.arange(0, 64)
    a = tl.load(a_ptr + r[:, None] * 64 + r[None, :])
    b = tl.load(b_ptr + r[:, None] * 64 + r[None, :])
    c = tl.dot(a, b, input_precision="{precision}")
    tl.store(c_ptr + r[:, None] * 64 + r[None, :], c)
"""


def test_cumsum_scans_in_registers() -> None:
    # one row per program: chunk totals combine across threads, nothing staged element by element
    for target in ("dump-metal", "dump-cuda"):
        source = dump(target, "cumsum_kernel")
        assert "const int p = tid;" in source and "for (int q =" not in source


GROUPED_SCALE = """
import mtriton
import mtriton.language as tl


@mtriton.jit
def grouped_scale(x_ptr, s_ptr, y_ptr, GROUP: tl.constexpr):
    cols = tl.arange(0, 512)
    tl.store(y_ptr + cols, tl.load(x_ptr + cols) * tl.load(s_ptr + cols // GROUP))
"""


@pytest.mark.parametrize(
    "group, once_per_chunk", [(4, True), (128, True), (1024, True), (2, True), (3, False)]
)
def test_loads_of_one_address_per_chunk_are_issued_once(
    tmp_path: Path, group: int, once_per_chunk: bool
) -> None:
    # cols // GROUP repeats each value GROUP times (runs aligned): a 4-element chunk whose
    # elements share one scale loads it once, and each pair of it once for GROUP 2; GROUP 3
    # changes it at no power-of-two boundary.
    path = tmp_path / "grouped.py"
    path.write_text(GROUPED_SCALE)
    for target in ("dump-metal", "dump-cuda"):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cli.main([target, f"{path}:grouped_scale", "-s", "*fp32,*fp32,*fp32", "-c", f"GROUP={group}"])
        assert bool(re.search(r"(\w+)\[i \+ 1\] = \1\[i\];", out.getvalue())) == once_per_chunk
