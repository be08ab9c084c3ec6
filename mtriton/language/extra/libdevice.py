"""`tl.extra.libdevice`: the libdevice math functions that Metal and CUDA both have, so that
`from triton.language.extra import libdevice` code runs unchanged. Each is `tl.math`'s."""

from .. import math as _math
from ..math import *  # noqa: F403

__all__ = list(_math.__all__)
