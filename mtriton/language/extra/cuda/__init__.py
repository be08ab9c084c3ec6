"""`tl.extra.cuda`: Triton's CUDA extras; `libdevice` is `tl.extra.libdevice`."""

from .. import libdevice

__all__ = ["libdevice"]
