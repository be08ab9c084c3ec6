"""How a block's elements are spread over the threads of a program.

One layout per element count: thread `t` owns `reps` chunks of `vec` elements
that are contiguous in the block's row-major (flat) order, chunk `k` starting at
flat index `(k * threads + t) * vec`. A reshape or `expand_dims` keeps the flat
order, so it keeps the layout and costs nothing; elementwise ops on equal shapes
line up slot by slot. A block smaller than the program's thread count is
replicated: thread `t` holds element `t % numel`, and only its owner
(`t < numel`) stores it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """The canonical layout of `numel` elements over `threads` threads.

    Attributes:
        numel: Elements in the block.
        threads: Threads in the program.
        max_vec: Longest contiguous chunk a thread owns: 4 where vector loads are used
            (Metal: 16 bytes for 32-bit types), 1 where neighbouring threads should own
            neighbouring elements so that scalar accesses coalesce (CUDA).
    """

    numel: int
    threads: int
    max_vec: int = 4

    @property
    def replicated(self) -> bool:
        return self.numel < self.threads

    @property
    def vec(self) -> int:
        if self.replicated:
            return 1
        return min(self.max_vec, self.numel // self.threads)

    @property
    def reps(self) -> int:
        if self.replicated:
            return 1
        return self.numel // (self.threads * self.vec)

    @property
    def slots(self) -> int:
        """Elements each thread holds."""
        return self.vec * self.reps

    def flat_index(self, slot: str, tid: str = "tid") -> str:
        """C expression: the flat index of slot `slot` of thread `tid`."""
        if self.replicated:
            return f"({tid} % {self.numel})" if self.numel > 1 else "0"
        vec, threads = self.vec, self.threads
        if self.reps == 1:
            return f"({tid} * {vec} + {slot})" if vec > 1 else f"{tid}"
        if vec == 1:
            return f"({slot} * {threads} + {tid})"
        return f"((({slot}) / {vec} * {threads} + {tid}) * {vec} + ({slot}) % {vec})"

    def owner(self, tid: str = "tid") -> str | None:
        """C condition true for the thread that owns its elements (None: every thread does)."""
        return f"({tid} < {self.numel})" if self.replicated else None


@dataclass(frozen=True)
class MmaLayout:
    """The tensor cores' accumulator layout for an (m, n) block (CUDA's mma m16n8).

    The program's warps form a `warps_m` x `warps_n` grid over the block; each warp owns an
    (m / warps_m) x (n / warps_n) region of 16x8 tiles, and within a tile lane `4g + t` holds
    rows g and g + 8 at columns 2t and 2t + 1 (the PTX ISA's accumulator fragment). Slot
    `4 * (mi * tiles_n + ni) + r` of a thread is element r of its warp's tile (mi, ni), so a
    `dot` accumulates straight into the slots and a loop-carried accumulator never leaves
    registers. Any other value with this many elements shares the layout (layouts are keyed
    by element count), which is a valid one: every element has exactly one owner.

    `interleaved` is the warpgroup unit's variant (wgmma, `warps_n` 1): a 64-row instruction
    tile gives warp w of its warpgroup rows 16w .. 16w + 15 with the same lane and register
    mapping per 8 columns, so the warps stack along m and the warp's 16-row tiles interleave
    with the others': tile mi of warp w starts at row 16 * (mi * warps + w).
    """

    numel: int
    threads: int
    m: int
    n: int
    warps_m: int
    warps_n: int
    interleaved: bool = False

    replicated = False
    vec = 2  # columns 2t and 2t + 1 of a tile row are neighbours

    @property
    def tiles_m(self) -> int:
        return self.m // (16 * self.warps_m)

    @property
    def tiles_n(self) -> int:
        return self.n // (8 * self.warps_n)

    @property
    def slots(self) -> int:
        return self.numel // self.threads

    def tile_row(self, warp: str, tile_m: str | int) -> str:
        """C expression: the first row of the warp's 16-row tile `tile_m` (a C expression, or
        a constant that is folded)."""
        if self.interleaved:
            if isinstance(tile_m, int):
                return f"{16 * self.warps_m * tile_m} + {warp} * 16"
            return f"(({tile_m}) * {self.warps_m} + {warp}) * 16"
        rows = f"{warp} / {self.warps_n}) * {self.m // self.warps_m}"
        return f"({rows} + {16 * tile_m}" if isinstance(tile_m, int) else f"({rows} + ({tile_m}) * 16"

    def row(self, slot_row: str, tid: str = "tid") -> str:
        """C expression: the block row of row `slot_row` (0 .. 2 * tiles_m - 1) of thread `tid`:
        rows g and g + 8 of each of its warp's 16-row tiles, in tile order."""
        lane, warp, r = f"(({tid}) % 32)", f"(({tid}) / 32)", f"({slot_row})"
        return f"{self.tile_row(warp, f'{r} / 2')} + ({lane} / 4) + 8 * ({r} % 2)"

    def row_slot(self, slot: str) -> str:
        """C expression: which of the thread's rows (`row`'s `slot_row`) slot `slot` lies in."""
        return f"(2 * (({slot}) / 4 / {self.tiles_n}) + (({slot}) % 4) / 2)"

    def flat_index(self, slot: str, tid: str = "tid") -> str:
        lane, warp, s = f"(({tid}) % 32)", f"(({tid}) / 32)", f"({slot})"
        tile = f"({s} / 4)"
        row = self.row(self.row_slot(slot), tid)
        col = (
            f"({warp} % {self.warps_n}) * {self.n // self.warps_n} + ({tile} % {self.tiles_n}) * 8"
            f" + 2 * ({lane} % 4) + ({s} % 2)"
        )
        return f"(({row}) * {self.n} + {col})"

    def owner(self, tid: str = "tid") -> str | None:
        return None


@dataclass(frozen=True)
class RowsLayout:
    """A length-m vector laid out as the rows of an (m, n) accumulator layout (Triton's slice
    layout): each thread holds the rows its `MmaLayout` slots lie in (`2 * tiles_m` of them),
    so a row reduction of the accumulators ends in registers and broadcasting a row vector
    back over the columns (`m_i[:, None]`) reads registers, not threadgroup memory. The four
    lanes of a quad, and the `warps_n` warps side by side, hold the same rows; the first of
    them owns each (stores, atomics). Every value with m elements takes this layout in a
    kernel that reduces accumulator rows (`dot_plan`)."""

    mma: MmaLayout

    replicated = False  # not `Layout`'s replication (thread t holding element t % numel)
    vec = 1

    @property
    def numel(self) -> int:
        return self.mma.m

    @property
    def threads(self) -> int:
        return self.mma.threads

    @property
    def slots(self) -> int:
        return 2 * self.mma.tiles_m

    def flat_index(self, slot: str, tid: str = "tid") -> str:
        return f"({self.mma.row(slot, tid)})"

    def owner(self, tid: str = "tid") -> str | None:
        if self.mma.warps_n == 1:
            return f"((({tid}) % 4) == 0)"
        return f"((({tid}) % 4) == 0 && (({tid}) / 32) % {self.mma.warps_n} == 0)"


def mma_layout(m: int, n: int, threads: int, rows: bool = False) -> MmaLayout | None:
    """The accumulator layout for an (m, n) `dot`, warps as square a grid as the block allows
    (fewest fragment loads per step), or with `rows` all stacked along m when the block's
    rows fit (a row reduction then stays within each warp: attention's row max and sum);
    None when no warp grid tiles the block."""
    warps = threads // 32
    if rows and m % (16 * warps) == 0:
        return MmaLayout(m * n, threads, m, n, warps, 1)
    best = None
    for warps_m in (w for w in range(1, warps + 1) if warps % w == 0):
        warps_n = warps // warps_m
        if m % (16 * warps_m) or n % (8 * warps_n):
            continue
        cost = m // warps_m + n // warps_n  # rows of A plus columns of B a warp reads per step
        if best is None or cost < best[0]:
            best = (cost, MmaLayout(m * n, threads, m, n, warps_m, warps_n))
    return best[1] if best else None


def unravel(flat: str, shape: tuple[int, ...]) -> list[str]:
    """C expressions for the multi-index of flat index `flat` in `shape` (row-major)."""
    out = []
    stride = 1
    strides = []
    for dim in reversed(shape):
        strides.append(stride)
        stride *= dim
    strides.reverse()
    for dim, st in zip(shape, strides):
        if dim == 1:
            out.append("0")
        elif st == 1:
            out.append(f"(({flat}) % {dim})")
        else:
            out.append(f"((({flat}) / {st}) % {dim})")
    return out


def ravel(index: list[str], shape: tuple[int, ...]) -> str:
    """C expression for the flat index of multi-index `index` in `shape`."""
    terms = []
    stride = 1
    for dim, idx in zip(reversed(shape), reversed(index)):
        if dim != 1 and idx != "0":
            terms.append(idx if stride == 1 else f"({idx}) * {stride}")
        stride *= dim
    return " + ".join(reversed(terms)) if terms else "0"
