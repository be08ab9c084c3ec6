"""What differs between the C-like GPU languages: one small table per language.

The shared lowering (`lowering.py`) writes everything else; Metal and CUDA each
fill in a `Dialect` (`backends/metal.py`, `backends/cuda.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from ... import ir
from ...ir import types as T


@dataclass(frozen=True)
class Fragments:
    """Matrix-unit operands in registers (CUDA): accumulators live in the `MmaLayout`.

    Inputs are staged in threadgroup memory as rows padded by `pad` elements (no bank
    conflicts), then each warp loads the fragments of its tiles once per k-step and reuses
    them across the tiles that share them.

    Attributes:
        load_a: loads the A fragment `{r}` (4 registers) of a 16x16 tile; lane l passes the
            address `{p}` of row l % 16, column 8 * (l / 16).
        load_b2: loads the B fragments of two neighbouring 16x8 tiles into `{r}` (4
            registers) from a row-major [k][n] tile; lane l passes row l % 16, column
            8 * (l / 16).
        load_b: the same for one tile (2 registers; lanes 0-15 pass rows 0-15).
        load_bt: the B fragment `{r}` (2 registers) of one 8-column tile from its transpose,
            row-major [n][k] (ldmatrix without .trans; lanes 0-15 pass the addresses), as
            `load_a` (x4) does for two neighbouring tiles.
        mma: `{c}` (4 floats) += `{a}` x `{b}` with input type `{t}`.
        pad: elements added to each staged row.
        copy: an asynchronous copy of `{n}` bytes from global `{src}` to threadgroup `{dst}`
            reading `{bytes}` of them (the rest zero-filled): a load used only as a `dot`
            operand goes straight to threadgroup memory, through no registers.
        copy_wait: waits for this thread's asynchronous copies.
        copy_commit: closes the group of this thread's copies issued since the last one.
        copy_wait_group: waits until at most `{n}` of this thread's latest groups are pending
            (None, with copy_commit: no pipelining across loop iterations).
        load_a_tf32, load_b_tf32, mma_tf32: float32 inputs under `input_precision="tf32"`
            (None: such dots run exactly): the A fragment `{r}` of a 16x8 tile (lane l passes
            row l % 16, column 4 * (l / 16)), the B fragment `{r}` of an 8x8 tile at `{p}`
            with rows `{ld}` apart, and `{c}` += `{a}` x `{b}` (k = 8); `tf32_regs` rounds `{n}`
            registers `{r}` holding floats to TF32 in place.
    """

    load_a: str
    load_b2: str
    load_b: str
    load_bt: str
    mma: str
    pad: int
    copy: str
    copy_wait: str
    copy_commit: str | None = None
    copy_wait_group: str | None = None
    load_a_tf32: str | None = None
    load_b_tf32: str | None = None
    mma_tf32: str | None = None
    tf32_regs: str | None = None


@dataclass(frozen=True)
class Warpgroup:
    """A warpgroup matrix unit (CUDA's wgmma, sm_90a): four warps compute a 64 x n tile from
    operands that stay in threadgroup memory, staged in swizzled layouts (`SwizzledTile`) that
    64-bit descriptors describe; accumulators live in the interleaved `MmaLayout`.

    Attributes:
        ns: the n of the instructions there are (a dot's whole n is one instruction).
        helper: the `Dialect.helpers` entry that defines what follows.
        offset: C expression: the element offset of (`{row}`, `{col}`) in a tile of `{rows}`
            rows staged with a `{swizzle}`-byte swizzle, elements of `{item}` bytes.
        desc: C expression: the descriptor of the tile at `{p}` with leading and stride byte
            offsets `{lbo}`, `{sbo}` and a `{swizzle}`-byte swizzle.
        mma: `{c}` (n / 2 floats) += A B from descriptors `{a}`, `{b}`; `{trans_b}` 1 reads B
            MN-major; inputs of type `{t}`; `{n}` names the instruction.
        fence: orders earlier accesses to the accumulators before the next mma.
        commit, wait: close a group of mmas; wait until at most `{n}` groups are pending.
        fence_regs: keeps the compiler's accesses to `{n}` accumulators `{c}` on their side of
            a fence or wait.
        proxy_fence: makes this thread's writes to threadgroup memory visible to the mmas
            (before the barrier that publishes them).
        shared_array: `Dialect.shared_array` for kernels that use the unit: `mt_smem` moved up
            to the next `align` boundary of the dynamic shared memory, which is `align`
            bytes larger (the swizzles act on address bits; the launch does not promise
            more than 16-byte alignment, though the H200 gave 1024 in a plain CUDA program).
        align: the boundary, in bytes.
    """

    ns: tuple[int, ...]
    helper: str
    offset: str
    desc: str
    mma: str
    fence: str
    commit: str
    wait: str
    fence_regs: str
    proxy_fence: str
    shared_array: str
    align: int


@dataclass(frozen=True)
class MatrixUnit:
    """A warp/SIMD-group matrix multiply-accumulate on tiles staged in threadgroup memory.

    Attributes:
        m, n, k: The tile shape one instruction sequence computes (C[m,n] += A[m,k] B[k,n]).
        inputs: IR short names of the input dtypes it takes; inputs are staged as `stage`.
        stage: `{t}` -> the type A and B are staged as (`float`, or the input type itself).
        declare: declares `{n}` accumulator tiles called `{name}`.
        zero: sets accumulator `{c}` to zero.
        mma: `{c} += {a}[lda={lda}] @ {b}[ldb={ldb}]` from threadgroup pointers, with input type `{t}`.
        store: writes accumulator `{c}` to threadgroup floats at `{dst}` with leading dimension `{ld}`.
        fragments: the register-fragment path, where the language has one (else None).
        warpgroup: the warpgroup path for the dots it can run (else None: the GPU predates it).
    """

    m: int
    n: int
    k: int
    inputs: tuple[str, ...]
    stage: str
    declare: str
    zero: str
    mma: str
    store: str
    fragments: Fragments | None = None
    warpgroup: Warpgroup | None = None


@dataclass(frozen=True)
class Dialect:
    """One C-like GPU language.

    Attributes:
        name: `metal` or `cuda`.
        types: IR short type name -> the language's scalar type.
        global_ptr: how a pointer to global memory of `{t}` is spelled.
        shared_array: declares the scratch memory `mt_smem` of `{n16}` 16-byte words.
        dynamic_shared: the scratch is sized at launch (CUDA's `shared_memory=`), not declared.
        shared_ptr: a pointer into threadgroup/shared memory.
        barrier: a threadgroup-wide barrier statement.
        thread_index: the thread's index in its program (threadgroup/block).
        program_id: the three program (threadgroup/block) indices.
        num_programs: the three grid sizes in programs.
        shuffle_xor: `{v}` from lane `lane ^ {m}` of the SIMD group/warp.
        shuffle_up: `{v}` from lane `lane - {d}` (own value below `{d}`).
        simd_reduce: builtin SIMD-group reductions by combiner (`add`, `maximum`, ...).
        simd_prefix_exclusive_sum: SIMD exclusive prefix sum, if the language has one.
        math: IR unary/binary op -> function name, where it is not the op name plus `math_suffix`.
        math_suffix: what turns an op's name into its float32 function (CUDA's `expf`).
        fast_math: IR op -> function under math_mode "relaxed" and "fast", over `math` (CUDA:
            Triton's approximations of exp, exp2 and division); `default_math_mode` is the
            mode math_mode=None means (`LaunchOptions.math_mode`).
        helpers: C functions placed after the prelude of kernels that use them, by IR op name
            (math the language lacks, such as Metal's log1p), element type (`f8e5`: the float8
            conversions) or `rtz` (conversions toward zero to half and bfloat16).
        vector_type: a `{t}` vector of `{n}` elements for vector loads/stores, or None.
        aligned: where vector accesses need natural alignment (CUDA), a C condition true when
            pointer `{p}` is a multiple of `{n}` bytes: kernels test each base pointer once and
            take the scalar path when it is not aligned. None where they do not (Metal's packed
            vectors).
        atomic: renders an atomic read-modify-write: (kind, ctype, address expr, value expr) -> expr.
        atomic_cas: renders a compare-and-swap: (ctype, address, compare, value) -> expr.
        matrix: the matrix unit `tl.dot` uses where shapes and dtypes allow, else None (a loop
            over K per element).
        prelude: helper functions placed before the kernel (the header).
        pointer_decl: (ctype, local, source, path) -> the statement declaring the kernel's pointer
            `local` to argument `source`, which reaches the kernel by `path` (see gpu_launch).
        max_shared_bytes: threadgroup/shared memory a program may use.
        vector_bytes: the widest vector access (16 bytes: CUDA's ld/st.global.v4.b32, Metal's
            packed_float4); the canonical layout's chunks hold this many bytes of the
            narrowest type a kernel accesses with their element count (`Lowering.chunks`).
    """

    name: str
    types: dict[str, str]
    global_ptr: str
    shared_array: str
    dynamic_shared: bool
    shared_ptr: str
    barrier: str
    thread_index: str
    program_id: tuple[str, str, str]
    num_programs: tuple[str, str, str]
    shuffle_xor: str
    shuffle_up: str
    simd_reduce: dict[str, str]
    simd_prefix_exclusive_sum: str | None
    math: dict[str, str]
    vector_type: Callable[[str, int], str | None]
    atomic: Callable[[str, str, str, str], str]
    atomic_cas: Callable[[str, str, str, str], str]
    matrix: MatrixUnit | None
    prelude: str
    pointer_decl: Callable[[str, str, str, str], str]
    max_shared_bytes: int
    vector_bytes: int = 16
    aligned: str | None = None
    float_literal_suffix: str = "f"
    math_suffix: str = ""
    helpers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    fast_math: dict[str, str] = field(default_factory=dict)
    default_math_mode: str = "safe"

    def under(self, math_mode: str | None) -> Dialect:
        """This dialect with the math functions of `math_mode` (None: its default)."""
        if (math_mode or self.default_math_mode) == "safe" or not self.fast_math:
            return self
        return dataclasses.replace(self, math={**self.math, **self.fast_math}, fast_math={})

    def ctype(self, dtype: T.DType) -> str:
        return self.types[dtype.short]

    def math_function(self, op: str) -> str:
        """The float32 function computing the IR op `op`."""
        return self.math.get(op, op + self.math_suffix)

    def header(self, fn: ir.Function, lowered: frozenset[str] = frozenset()) -> str:
        """The prelude, and the helpers of the ops and element types `fn` uses and those its
        lowering asked for (`lowered`: the warpgroup unit's)."""
        used: set[str] = set(lowered)
        for op in ir.walk(fn.body):
            used.add(op.name)
            used.update(v.type.elem.short for v in (*op.operands, *op.results))
            if op.name == "cast" and op.attrs.get("rounding") == "rtz":
                used.add("rtz")
        return self.prelude + "".join(self.helpers[name] for name in sorted(used & self.helpers.keys()))
