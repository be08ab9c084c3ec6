"""Element types and block types of the IR.

`tl.float32` and friends are the `DType` objects defined here: the language,
the IR and the backends share one set of types.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    """A scalar element type.

    Attributes:
        name: Triton's spelling (`int32`, `float16`, ...).
        short: The IR's spelling (`i32`, `f16`, ...), also used in signatures.
        kind: `"int"`, `"uint"`, `"float"` or `"bool"`.
        bits: Width in bits.
    """

    name: str
    short: str
    kind: str
    bits: int

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    @property
    def itemsize(self) -> int:
        return max(1, self.bits // 8)

    def is_floating(self) -> bool:
        return self.kind == "float"

    def is_int(self) -> bool:
        return self.kind in ("int", "uint", "bool")

    def is_bool(self) -> bool:
        return self.kind == "bool"

    def is_signed(self) -> bool:
        return self.kind == "int"

    def is_ptr(self) -> bool:
        return False

    # Triton spells these as methods on its dtype; kernels call them.
    def is_fp16(self) -> bool:
        return self.short == "f16"

    def is_bf16(self) -> bool:
        return self.short == "bf16"

    def is_fp32(self) -> bool:
        return self.short == "f32"

    def is_fp64(self) -> bool:
        return self.short == "f64"

    def is_fp8(self) -> bool:
        """float8e4nv or float8e5: storage and conversions only (`mtriton/float8.py`)."""
        return self.short in ("f8e4nv", "f8e5")

    def is_fp8e4nv(self) -> bool:
        return self.short == "f8e4nv"

    def is_fp8e5(self) -> bool:
        return self.short == "f8e5"

    def to(self, *_args: object) -> DType:  # pragma: no cover - Triton parity
        return self


@dataclass(frozen=True)
class PointerType:
    """A pointer to global memory holding elements of `element`."""

    element: DType

    @property
    def name(self) -> str:
        return f"ptr<{self.element.short}>"

    @property
    def short(self) -> str:
        return f"*{self.element.short}"

    @property
    def element_ty(self) -> DType:
        """Triton's name for the pointee type (`x_ptr.dtype.element_ty`)."""
        return self.element

    def __repr__(self) -> str:
        return f"pointer<{self.element.name}>"

    __str__ = __repr__

    kind = "ptr"
    bits = 64
    itemsize = 8

    def is_floating(self) -> bool:
        return False

    def is_int(self) -> bool:
        return False

    def is_bool(self) -> bool:
        return False

    def is_signed(self) -> bool:
        return False

    def is_fp8(self) -> bool:
        return False

    def is_ptr(self) -> bool:
        return True


ElemType = DType | PointerType

int1 = DType("int1", "i1", "bool", 1)
int8 = DType("int8", "i8", "int", 8)
int16 = DType("int16", "i16", "int", 16)
int32 = DType("int32", "i32", "int", 32)
int64 = DType("int64", "i64", "int", 64)
uint8 = DType("uint8", "u8", "uint", 8)
uint16 = DType("uint16", "u16", "uint", 16)
uint32 = DType("uint32", "u32", "uint", 32)
uint64 = DType("uint64", "u64", "uint", 64)
float16 = DType("float16", "f16", "float", 16)
bfloat16 = DType("bfloat16", "bf16", "float", 16)
float32 = DType("float32", "f32", "float", 32)
float64 = DType("float64", "f64", "float", 64)
# Triton's float8 types (e4m3fn and e5m2); `mtriton/float8.py` defines their formats.
float8e4nv = DType("float8e4nv", "f8e4nv", "float", 8)
float8e5 = DType("float8e5", "f8e5", "float", 8)

ALL_DTYPES: tuple[DType, ...] = (
    int1, int8, int16, int32, int64, uint8, uint16, uint32, uint64,
    float8e4nv, float8e5, float16, bfloat16, float32, float64,
)  # fmt: skip
BY_SHORT: dict[str, DType] = {d.short: d for d in ALL_DTYPES}
BY_NAME: dict[str, DType] = {d.name: d for d in ALL_DTYPES}
# Signature spellings Triton accepts besides the short names.
BY_SHORT.update({"fp16": float16, "fp32": float32, "fp64": float64, "bool": int1})
BY_SHORT.update({"fp8e4nv": float8e4nv, "fp8e5": float8e5})


def parse_elem(text: str) -> ElemType:
    """Reads `f32`, `fp32`, `*f32` or `ptr<f32>` as an element type."""
    text = text.strip()
    if text.startswith("*"):
        return PointerType(parse_elem(text[1:]))  # type: ignore[arg-type]
    if text.startswith("ptr<") and text.endswith(">"):
        return PointerType(parse_elem(text[4:-1]))  # type: ignore[arg-type]
    if text in BY_SHORT:
        return BY_SHORT[text]
    if text in BY_NAME:
        return BY_NAME[text]
    raise ValueError(f"unknown type {text!r}; expected one of {sorted(BY_SHORT)} or *T")


@dataclass(frozen=True)
class BlockType:
    """The type of an IR value: a block of `shape` elements; `shape == ()` is a scalar."""

    elem: ElemType
    shape: tuple[int, ...] = ()

    @property
    def is_scalar(self) -> bool:
        return not self.shape

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def with_shape(self, shape: tuple[int, ...]) -> BlockType:
        return BlockType(self.elem, tuple(shape))

    def with_elem(self, elem: ElemType) -> BlockType:
        return BlockType(elem, self.shape)

    def __str__(self) -> str:
        if not self.shape:
            return self.elem.short
        return f"<{'x'.join(map(str, self.shape))}x{self.elem.short}>"
