"""`tl.extra`: Triton's backend-specific extras. `libdevice` (also as `cuda.libdevice`) holds the
math functions every mtriton target has, under libdevice's names."""

from . import cuda, libdevice

__all__ = ["cuda", "libdevice"]
