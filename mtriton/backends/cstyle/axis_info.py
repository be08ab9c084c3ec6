"""What is known about integer and pointer values along a block's last dimension.

Triton's AxisInfo, restricted to the last (fastest-varying) dimension, which is
the one a thread's contiguous chunk runs along. It decides where a load or
store can be one vector access: the offsets of a chunk are consecutive
(contiguity), its first offset is a multiple of the chunk (divisibility), and
the mask is the same for the whole chunk (constancy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ... import ir

LARGE = 1 << 30


@dataclass(frozen=True)
class AxisInfo:
    """Facts about runs of consecutive last-dimension elements.

    Attributes:
        contiguity: runs of this many elements increase by exactly 1.
        divisibility: the first element of each run is a multiple of this.
        constancy: runs of this many elements are equal.
    """

    contiguity: int = 1
    divisibility: int = 1
    constancy: int = 1

    def meet(self, other: AxisInfo) -> AxisInfo:
        return AxisInfo(
            math.gcd(self.contiguity, other.contiguity),
            math.gcd(self.divisibility, other.divisibility),
            math.gcd(self.constancy, other.constancy),
        )


UNKNOWN = AxisInfo()


def _pow2_divisor(value: int) -> int:
    if value == 0:
        return LARGE
    return min(LARGE, value & -value)


def _last(v: ir.Value) -> int:
    return v.type.shape[-1] if v.type.shape else 1


class AxisInfoAnalysis:
    """Computes an AxisInfo for every value of a function."""

    def __init__(self, fn: ir.Function) -> None:
        self.info: dict[int, AxisInfo] = {}
        self.consts: dict[int, int] = {}  # values whose elements all equal a known integer
        for param in fn.params:
            self.info[id(param.value)] = AxisInfo(1, param.divisibility, 1)
        self._block(fn.body)

    def __getitem__(self, v: ir.Value) -> AxisInfo:
        return self.info.get(id(v), UNKNOWN)

    def _set(self, v: ir.Value, info: AxisInfo) -> None:
        last = _last(v)
        self.info[id(v)] = AxisInfo(
            min(info.contiguity, last), min(info.divisibility, LARGE), min(info.constancy, last)
        )

    def _block(self, block: ir.Block) -> None:
        for op in block.ops:
            self._op(op)

    def _op(self, op: ir.Op) -> None:
        if op.name == "for":
            # The induction variable starts at lb and moves by step: it is a multiple of both
            # divisibilities (so `off + tl.arange(...)` masks stay constant over chunks).
            lb, _, step = (self[v] for v in op.operands[:3])
            iv = op.regions[0].args[0]
            self.info[id(iv)] = AxisInfo(1, math.gcd(lb.divisibility, step.divisibility), 1)
            self._loop(op, op.operands[3:], op.regions[0], 1)
            return
        if op.name in ("while", "if"):
            for region in op.regions:
                for arg in region.args:
                    self.info[id(arg)] = UNKNOWN
                self._block(region)
            return
        for region in op.regions:
            self._block(region)
        if len(op.results) != 1:
            return
        result = op.result
        rule = getattr(self, f"_rule_{op.name}", None)
        self._set(result, rule(op) if rule is not None else UNKNOWN)

    def _loop(self, op: ir.Op, inits: list[ir.Value], body: ir.Block, leading: int) -> None:
        # Fixpoint: an iter arg knows what both its initial value and every yield know.
        args = body.args[leading:]
        current = [self[v] for v in inits]
        for _ in range(3):
            for arg, info in zip(args, current):
                self._set(arg, info)
            self._block(body)
            yielded = body.terminator.operands if body.terminator else []
            new = [c.meet(self[y]) for c, y in zip(current, yielded)]
            if new == current:
                break
            current = new
        for result, info in zip(op.results, current):
            self._set(result, info)

    # ------------------------------------------------------------------ rules

    def _rule_constant(self, op: ir.Op) -> AxisInfo:
        value = op.attrs["value"]
        if isinstance(value, int) and not isinstance(value, bool):
            self.consts[id(op.result)] = value
        div = _pow2_divisor(value) if isinstance(value, int) and not isinstance(value, bool) else 1
        return AxisInfo(1, div, LARGE)

    def _rule_arange(self, op: ir.Op) -> AxisInfo:
        return AxisInfo(LARGE, _pow2_divisor(op.attrs["start"]), 1)

    def _rule_splat(self, op: ir.Op) -> AxisInfo:
        if id(op.operands[0]) in self.consts:
            self.consts[id(op.result)] = self.consts[id(op.operands[0])]
        return AxisInfo(1, self[op.operands[0]].divisibility, LARGE)

    def _rule_broadcast(self, op: ir.Op) -> AxisInfo:
        src = op.operands[0]
        if id(src) in self.consts:
            self.consts[id(op.result)] = self.consts[id(src)]
        if _last(src) == 1 and _last(op.result) > 1:
            return AxisInfo(1, self[src].divisibility, LARGE)
        return self[src]

    def _rule_expand_dims(self, op: ir.Op) -> AxisInfo:
        if op.attrs["axis"] == len(op.result.type.shape) - 1:
            # each element becomes a run of its own: a multiple only if every source element is
            src = self[op.operands[0]]
            return AxisInfo(1, src.divisibility if src.contiguity == 1 else 1, 1)
        return self[op.operands[0]]

    def _rule_reshape(self, op: ir.Op) -> AxisInfo:
        src = op.operands[0]
        if _last(src) == _last(op.result):
            return self[src]
        return AxisInfo(1, 1, 1)

    def _rule_assume(self, op: ir.Op) -> AxisInfo:
        info = self[op.operands[0]]
        return AxisInfo(
            max(info.contiguity, op.attrs.get("max_contiguous", 1)),
            max(info.divisibility, op.attrs.get("multiple_of", 1)),
            info.constancy,
        )

    def _rule_cast(self, op: ir.Op) -> AxisInfo:
        return self[op.operands[0]]

    def _rule_bitcast(self, op: ir.Op) -> AxisInfo:
        # A pointer cast counts the same addresses in elements of another size: offsets of a
        # narrower type are multiples of the ratio and no longer consecutive; those of a wider
        # one divide by it (and are consecutive nowhere that matters).
        src, dst = op.operands[0].type.elem, op.result.type.elem
        if not dst.is_ptr():
            return UNKNOWN
        info = self[op.operands[0]]
        a, b = src.element.itemsize, dst.element.itemsize
        if a == b:
            return info
        if a > b:
            return AxisInfo(1, info.divisibility * (a // b), info.constancy)
        ratio = b // a
        return AxisInfo(
            1, info.divisibility // ratio if info.divisibility % ratio == 0 else 1, info.constancy
        )

    def _rule_add(self, op: ir.Op) -> AxisInfo:
        a, b = (self[v] for v in op.operands)
        return AxisInfo(
            max(math.gcd(a.contiguity, b.constancy), math.gcd(a.constancy, b.contiguity)),
            math.gcd(a.divisibility, b.divisibility),
            math.gcd(a.constancy, b.constancy),
        )

    _rule_addptr = _rule_add

    def _rule_sub(self, op: ir.Op) -> AxisInfo:
        a, b = (self[v] for v in op.operands)
        return AxisInfo(
            math.gcd(a.contiguity, b.constancy),
            math.gcd(a.divisibility, b.divisibility),
            math.gcd(a.constancy, b.constancy),
        )

    def _rule_mul(self, op: ir.Op) -> AxisInfo:
        # The product has runs of one element, so each element must be a multiple: within a
        # run of consecutive integers only the first is (a run holds odd numbers), as Triton.
        x, y = op.operands
        if self.consts.get(id(y)) == 1 or self.consts.get(id(x)) == 1:  # `offs * stride`, stride 1
            return self[x] if self.consts.get(id(y)) == 1 else self[y]
        if self.consts.get(id(y)) == 0 or self.consts.get(id(x)) == 0:  # `0 * cols`: a broadcast
            return AxisInfo(1, LARGE, LARGE)
        a, b = self[x], self[y]
        div_a = a.divisibility if a.contiguity == 1 else 1
        div_b = b.divisibility if b.contiguity == 1 else 1
        return AxisInfo(1, min(LARGE, div_a * div_b), math.gcd(a.constancy, b.constancy))

    def _elementwise_constancy(self, op: ir.Op) -> AxisInfo:
        constancy = LARGE
        for v in op.operands:
            constancy = math.gcd(constancy, self[v].constancy)
        return AxisInfo(1, 1, constancy)

    def _rule_cmp(self, op: ir.Op) -> AxisInfo:
        a, b = (self[v] for v in op.operands)
        constancy = math.gcd(a.constancy, b.constancy)
        if op.attrs["pred"] in ("lt", "le", "gt", "ge"):
            # a run of consecutive integers compared with a run of one value changes its
            # result at most at a multiple of both divisibilities
            if a.contiguity > 1 and b.constancy > 1:
                constancy = max(
                    constancy, math.gcd(a.contiguity, b.constancy, math.gcd(a.divisibility, b.divisibility))
                )
            if b.contiguity > 1 and a.constancy > 1:
                constancy = max(
                    constancy, math.gcd(b.contiguity, a.constancy, math.gcd(a.divisibility, b.divisibility))
                )
        return AxisInfo(1, 1, constancy)

    _rule_and = _rule_or = _rule_xor = _rule_where = _rule_not = _elementwise_constancy
    _rule_maximum = _rule_minimum = _rule_div = _elementwise_constancy

    def _rule_floordiv(self, op: ir.Op) -> AxisInfo:
        # `cols // GROUP` by a constant d: the quotient of a run of consecutive integers
        # changes only at multiples of d, and the run starts at a multiple of its divisibility,
        # so it splits into aligned runs of gcd(divisibility, d) equal quotients. Like the mod
        # rule (and Triton's), this assumes non-negative offsets: division truncates to zero.
        x, y = op.operands
        a, d = self[x], self.consts.get(id(y))
        if d == 1:
            return a
        info = self._elementwise_constancy(op)
        if d is None or d <= 0 or not op.result.type.elem.is_int():
            return info
        if a.contiguity == 1:  # every element is a multiple of the divisibility
            return AxisInfo(1, a.divisibility // d if a.divisibility % d == 0 else 1, info.constancy)
        return AxisInfo(1, 1, max(info.constancy, math.gcd(a.contiguity, a.divisibility, d)))

    def _rule_mod(self, op: ir.Op) -> AxisInfo:
        # `(start + arange) % n` (offsets wrapped at a bound, as in Triton's matmul tutorial):
        # a run wraps only at multiples of n, so runs as long as n's divisibility survive.
        a, b = (self[v] for v in op.operands)
        constancy = math.gcd(a.constancy, b.constancy)
        if b.constancy < LARGE and b.constancy < _last(op.result) or not op.result.type.elem.is_int():
            return AxisInfo(1, 1, constancy)
        return AxisInfo(
            math.gcd(a.contiguity, b.divisibility), math.gcd(a.divisibility, b.divisibility), constancy
        )
