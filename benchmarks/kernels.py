"""Kernels the benchmarks need beyond the tutorials': a device-to-device copy.

Written as a Triton user writes them; only the two import lines differ from Triton's, so on
CUDA machines the runner also launches this source under real Triton (`external.py`).
"""

import mtriton as triton
import mtriton.language as tl


@triton.jit
def copy_kernel(x_ptr, y_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    offsets = tl.program_id(axis=0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    tl.store(y_ptr + offsets, tl.load(x_ptr + offsets, mask=mask), mask=mask)
