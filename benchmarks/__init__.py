"""Benchmarks of mtriton kernels against MLX built-ins, float64 NumPy and, on CUDA, Triton and PyTorch.

Run `python -m benchmarks.runner --help`; see `benchmarks/README.md`.
"""

from .registry import Case, Sizes, benchmark
from .timing import Timing, TimingPlan, time_mlx

__all__ = ["Case", "Sizes", "Timing", "TimingPlan", "benchmark", "time_mlx"]
