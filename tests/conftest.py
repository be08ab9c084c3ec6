"""Shared fixtures: the `backend` fixture runs a test on every backend available here."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

# Plain-MLX references compute float32 matmuls in full precision: MLX's CUDA backend
# otherwise uses TF32 (this must be set before MLX is imported).
os.environ.setdefault("MLX_ENABLE_TF32", "0")

import mlx.core as mx  # noqa: E402
import numpy as np
import pytest

import mtriton
from mtriton import backends, emulator, targets
from mtriton.backends.cuda import full_cuda_source
from mtriton.options import LaunchOptions
from mtriton.runtime.jit import CompiledEntry

# Every backend the suite knows (mtriton/targets.py), in the order tests run on them: those that
# run on the CPU (the interpreter, then the emulators), then the GPUs. A backend that cannot run
# on this machine (no GPU, no C++ compiler) is skipped with the reason.
ALL_BACKENDS = tuple(
    t.name for t in sorted(targets.TARGETS, key=lambda t: (t.language != "interpreter", not t.emulated))
)
# Backends that run generated GPU source on the CPU, with the emulator's checks.
EMULATORS = tuple(t.name for t in targets.TARGETS if t.emulated)

# Tests must not share the user's on-disk cache: a per-run cache folder, removed afterwards.
_CACHE = tempfile.mkdtemp(prefix="mtriton-test-cache-")
os.environ.setdefault("MTRITON_CACHE_DIR", _CACHE)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)


def backend_unavailable_reason(name: str) -> str | None:
    """Why `name` cannot run here, or None when it can."""
    try:
        backends.get_backend(name)
    except mtriton.BackendUnavailable as err:
        return str(err)
    return None


def _selected_backends() -> tuple[str, ...]:
    # MTRITON_BACKEND narrows the suite to one backend (the GPU machine runs `cuda` alone).
    env = os.environ.get("MTRITON_BACKEND")
    return (env,) if env else ALL_BACKENDS


def _runnable_backends() -> tuple[str, ...]:
    runnable = tuple(b for b in _selected_backends() if backend_unavailable_reason(b) is None)
    if not runnable:
        raise pytest.UsageError(f"no backend can run here among {_selected_backends()}")
    return runnable


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name in _selected_backends():
        reason = backend_unavailable_reason(name)
        lines.append(f"mtriton backend {name}: " + ("runs" if reason is None else f"skipped ({reason})"))
    return lines


@pytest.fixture(params=_runnable_backends())
def backend(request: pytest.FixtureRequest) -> str:
    """Runs the test once per backend that can run on this machine (see the report header).

    On the emulators (metal-emu, cuda-emu) every kernel also runs with its threads in reverse
    and shuffled orders, so a missing barrier in the generated source fails the test
    (`emulator.DataRace`).
    """
    name = request.param
    mtriton.set_backend(name)
    checks = contextlib.nullcontext()
    if name in EMULATORS and request.node.get_closest_marker("order_dependent") is None:
        checks = emulator.checks(races=True)
    try:
        with checks:
            yield name
    finally:
        mtriton.set_backend(None)


@pytest.fixture
def rng() -> np.random.Generator:
    """Fresh random inputs every run; the seed is printed (shown on failure) and
    `MTRITON_SEED=<seed>` replays it."""
    seed = int(os.environ.get("MTRITON_SEED") or int.from_bytes(os.urandom(4), "little"))
    print(f"MTRITON_SEED={seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def cpu_stream() -> Iterator[None]:
    """MLX's default device set to the CPU for the test: peak memory is measured there, where
    MLX counts every buffer (also on a GPU machine)."""
    previous = mx.default_device()
    mx.set_default_device(mx.cpu)
    try:
        yield
    finally:
        mx.set_default_device(previous)


def poisoned(shape: tuple[int, ...] | int, dtype: mx.Dtype = mx.float32) -> mx.array:
    """An output array filled with NaN (integers: all bits set) so unwritten elements show."""
    if dtype == mx.float64:  # MLX computes float64 only on the CPU
        return mx.full(shape, float("nan"), dtype=dtype, stream=mx.cpu)
    if mx.issubdtype(dtype, mx.floating):
        return mx.full(shape, float("nan"), dtype=dtype)
    if dtype == mx.bool_:
        return mx.ones(shape, dtype=dtype)
    return mx.full(shape, -1, dtype=mx.int64).view(mx.uint64).astype(dtype)


def marker_line(path: str, tag: str) -> int:
    """The line of the file `path` that carries the comment `# ERR:<tag>` (error tests point there)."""
    with open(path) as f:
        for number, text in enumerate(f, 1):
            if re.search(rf"# ERR:{tag}(\s|$)", text):
                return number
    raise AssertionError(f"no marker {tag} in {path}")


def to_numpy(x: mx.array) -> np.ndarray:
    if x.dtype == mx.bfloat16:
        x = x.astype(mx.float32)
    return np.array(x)


def tolerance(dtype: mx.Dtype) -> dict[str, float]:
    """rtol/atol for comparing a kernel in `dtype` with a float64 reference."""
    return {
        mx.float16: {"rtol": 2e-3, "atol": 2e-3},
        mx.bfloat16: {"rtol": 1.6e-2, "atol": 1.6e-2},
        mx.float32: {"rtol": 1e-5, "atol": 1e-5},
        mx.float64: {"rtol": 1e-12, "atol": 1e-12},
    }.get(dtype, {"rtol": 0, "atol": 0})


def tf32_dots(backend: str) -> bool:
    """Whether float32 `tl.dot`s under the default input_precision ("tf32") round their inputs
    to TF32 on `backend`, as Triton's do on NVIDIA GPUs (the others compute them exactly)."""
    return backend in ("cuda", "cuda-emu")


def round_tf32(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to TF32 (10 mantissa bits, ties away from zero: `cvt.rna`), as float64."""
    bits = np.asarray(x, np.float32).view(np.uint32)
    finite = (bits & 0x7F800000) != 0x7F800000
    rounded = np.where(finite, (bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000), bits)
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


# nvcc's target for the CUDA source: sm_90a alone, as NVRTC compiles it inside MLX on a Hopper
# GPU (wgmma); `-arch=sm_90a` would also embed compute_90 PTX, which cannot hold wgmma.
NVCC_SM90A = ("-gencode", "arch=compute_90a,code=sm_90a")


@pytest.fixture(scope="module", autouse=True)
def cuda_compiles_every_kernel(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Compile-checks, with nvcc, the CUDA of every kernel a test module compiles.

    Each kernel specialization the module's tests build is lowered to CUDA too; at the end of the
    module all of them go through one nvcc for sm_90a (wgmma). Kernels the CUDA backend rejects with
    a clear error (an UnsupportedError: say, float64) are not compile errors. Skipped without nvcc.
    """
    if shutil.which("nvcc") is None or os.environ.get("MTRITON_BACKEND") == "cuda":
        yield  # on a CUDA machine the cuda backend compiles every kernel for real
        return
    compiled = []
    original = CompiledEntry.__init__

    def recording(self: CompiledEntry, kernel, fn, specs, options, name):  # type: ignore[no-untyped-def]
        original(self, kernel, fn, specs, options, name)
        compiled.append((fn, options))

    CompiledEntry.__init__ = recording  # type: ignore[method-assign]
    try:
        yield
    finally:
        CompiledEntry.__init__ = original  # type: ignore[method-assign]
    sources: dict[str, str] = {}
    for fn, opts in compiled:
        try:
            text = full_cuda_source(fn, opts)
        except mtriton.MTritonError:
            continue
        sources.setdefault(text, f"k{len(sources)}")
    if not sources:
        return
    # one translation unit: each kernel in its own namespace (the helpers repeat)
    includes = {line for text in sources for line in text.splitlines() if line.startswith("#include")}
    unit = "\n".join(f"namespace {ns} {{\n{text}\n}}" for text, ns in sources.items())
    unit = "\n".join(sorted(includes)) + "\n" + unit.replace("#include", "// #include")
    folder = tmp_path_factory.mktemp("cuda")
    (folder / "all.cu").write_text(unit)
    result = subprocess.run(
        ["nvcc", *NVCC_SM90A, "-c", str(folder / "all.cu"), "-o", str(folder / "all.o")],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(
            f"nvcc rejected the CUDA of {len(sources)} kernels (in {folder / 'all.cu'}):\n{result.stderr[:4000]}"
        )


def count_compiles(monkeypatch: pytest.MonkeyPatch, backend: str) -> list[str]:
    """Records the name of every function the backend compiles from now on."""
    compiled: list[str] = []
    target = backends.get_backend(backend)
    original = target.compile

    def compile(fn: Any, opts: LaunchOptions) -> Any:
        compiled.append(fn.name)
        return original(fn, opts)

    monkeypatch.setattr(target, "compile", compile)
    return compiled
