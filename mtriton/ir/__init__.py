"""The block-level IR: types, ops, text form (printer/parser) and verifier."""

from .core import (
    ALL_OPS,
    ATOMIC_KINDS,
    BINARY_OPS,
    CMP_PREDICATES,
    SIDE_EFFECT_OPS,
    UNARY_OPS,
    UNKNOWN_LOC,
    Block,
    Builder,
    Function,
    Loc,
    Op,
    Param,
    Value,
    walk,
)
from .equality import structurally_equal
from .parser import ParseError, parse_function
from .printer import print_function
from .types import BlockType, DType, PointerType
from .verifier import VerificationError, verify

__all__ = [
    "ALL_OPS", "ATOMIC_KINDS", "BINARY_OPS", "CMP_PREDICATES", "SIDE_EFFECT_OPS", "UNARY_OPS",
    "UNKNOWN_LOC", "Block", "BlockType", "Builder", "DType", "Function", "Loc", "Op", "Param",
    "ParseError", "PointerType", "Value", "VerificationError", "parse_function", "print_function",
    "structurally_equal", "verify", "walk",
]  # fmt: skip
