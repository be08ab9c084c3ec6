"""Triton's runtime surface beyond `kernel[grid](...)`: `TRITON_INTERPRET`, `triton.testing`'s
`do_bench`, and `kernel.warmup(...)` with the code of each stage in `.asm`."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

import mtriton
import mtriton.language as tl
from examples.tutorial_kernels import add_kernel
from mtriton import backends, options
from mtriton.runtime.jit import recording_writes


def test_triton_interpret_selects_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "_selected", None)
    monkeypatch.delenv("MTRITON_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert mtriton.current_backend_name() == "interpreter"
    monkeypatch.setenv("MTRITON_BACKEND", "metal-emu")  # mtriton's own knob comes first
    assert mtriton.current_backend_name() == "metal-emu"
    monkeypatch.delenv("MTRITON_BACKEND")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert mtriton.current_backend_name() == backends.default_backend_name()


@pytest.mark.parametrize("through", ["environ's dict", "os.environ.get"])
def test_launch_env_follows_the_environment(monkeypatch: pytest.MonkeyPatch, through: str) -> None:
    """Each launch reads its knobs from os.environ's own dict where CPython has one; both paths
    see a knob set or removed mid-process, and name the same backend."""
    if through == "os.environ.get":
        monkeypatch.setattr(options, "_ENVIRON_DATA", None)
    monkeypatch.setattr(backends, "_selected", None)
    monkeypatch.setenv("MTRITON_BACKEND", " metal-emu ")
    monkeypatch.setenv("MTRITON_WGMMA", "1")
    monkeypatch.delenv("MTRITON_CUDA_ARCH", raising=False)
    env = options.launch_env()
    assert env[2] is None and env[3] in ("1", b"1")
    assert mtriton.current_backend_name() == "metal-emu"
    monkeypatch.delenv("MTRITON_BACKEND")
    monkeypatch.setenv("TRITON_INTERPRET", "yes")
    assert options.launch_env()[0] is None and mtriton.current_backend_name() == "interpreter"


def test_do_bench_evaluates_in_place_launches(backend: str, rng: np.random.Generator) -> None:
    n = 1000
    x = mx.array(rng.standard_normal(n).astype(np.float32))
    out = mtriton.empty((n,))
    calls = []

    def launch() -> None:  # returns nothing, as Triton benchmarks do: the write must still run
        calls.append(1)
        add_kernel[(mtriton.cdiv(n, 256),)](x, x, out, n, BLOCK_SIZE=256)

    ms = mtriton.testing.do_bench(launch, warmup=1, rep=5)
    assert isinstance(ms, float) and ms > 0
    np.testing.assert_allclose(np.array(out), 2 * np.array(x), rtol=1e-6)
    low, mid, high = mtriton.testing.do_bench(launch, warmup=1, rep=5, quantiles=[0.2, 0.5, 0.8])
    assert 0 < low <= mid <= high
    samples = mtriton.testing.do_bench(launch, warmup=1, rep=5, return_mode="all")
    assert isinstance(samples, list) and all(s > 0 for s in samples)
    assert mtriton.testing.do_bench_cudagraph(launch, rep=5, return_mode="min") > 0
    assert len(calls) > 4
    with recording_writes() as written:  # what do_bench evaluates after each such call
        launch()
    assert len(written) == 1 and written[0] is out


def test_do_bench_times_what_the_function_returns() -> None:
    x = mx.ones((256, 256))
    assert mtriton.testing.do_bench(lambda: x @ x, warmup=1, rep=3, return_mode="median") > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"return_mode": "avg"}, "return_mode must be one of"), ({"quantiles": [0.5, 2]}, "quantiles must lie")],
)
def test_do_bench_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mtriton.testing.do_bench(lambda: None, **kwargs)


def test_warmup_compiles_without_launching(backend: str) -> None:
    out = mtriton.empty((100,)) + float("nan")
    x = mx.ones(100)
    for compiled in (
        add_kernel.warmup(x, x, out, 100, BLOCK_SIZE=64, grid=(2,)),
        add_kernel[(2,)].warmup(x, x, out, 100, BLOCK_SIZE=64),
    ):
        assert compiled.name == "`add_kernel` specialized for (*f32, *f32, *f32, i32, BLOCK_SIZE=64)"
        assert list(compiled.asm) == ["ir", "metal", "cuda"]
        assert compiled.asm["ir"].startswith("func @add_kernel(")
        assert "[[kernel]]" in compiled.asm["metal"]
        assert "__global__" in compiled.asm["cuda"]
        with pytest.raises(KeyError, match="the stages are ir, metal, cuda"):
            compiled.asm["ptx"]
    assert np.isnan(np.array(out)).all()  # nothing ran
    # the launch afterwards finds the compiled kernel
    assert add_kernel[(2,)].warmup(x, x, out, 100, BLOCK_SIZE=64) is compiled


@mtriton.jit
def _fill_kernel(out_ptr, value, BLOCK: tl.constexpr):
    tl.store(out_ptr + tl.arange(0, BLOCK), value)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ((3.9,), "grid must be a tuple of up to 3 ints"),
        ((1, 2.0), "grid must be a tuple of up to 3 ints"),
        ((2**31,), "2147483648 programs along axis 0; at most 2147483647"),
        ((1, 65536), "65536 programs along axis 1; at most 65535"),
        ((1, 1, 70000), "along axis 2; at most 65535"),
    ],
)
def test_grids_triton_refuses(grid: tuple, message: str) -> None:
    with pytest.raises(mtriton.LaunchError, match=message):
        _fill_kernel[grid](mtriton.empty((4,), mx.int64), 1, BLOCK=4)


def test_integers_take_the_widest_type_they_need(backend: str) -> None:
    for value, dtype in ((7, mx.int32), (-(2**40), mx.int64), (2**63 + 5, mx.uint64)):
        out = mtriton.empty((4,), dtype)
        _fill_kernel[(1,)](out, value, BLOCK=4)
        assert [int(v) for v in np.array(out)] == [value] * 4
    with pytest.raises(
        OverflowError, match="argument value: 18446744073709551616 fits neither int64 nor uint64"
    ):
        _fill_kernel[(1,)](mtriton.empty((4,), mx.uint64), 2**64, BLOCK=4)
    with pytest.raises(mtriton.LaunchOverflowError):
        _fill_kernel[(1,)](mtriton.empty((4,), mx.int64), -(2**63) - 1, BLOCK=4)


@mtriton.jit
def _countdown(x, N: tl.constexpr):
    if N > 0:
        return _countdown(x, N - 1)
    return x


@mtriton.jit
def _recursive_kernel(out_ptr):
    tl.store(out_ptr, _countdown(tl.load(out_ptr), 3))


def test_recursion_is_a_clear_error() -> None:
    with pytest.raises(
        mtriton.UnsupportedError, match=r"recursive call \(_countdown -> _countdown\)"
    ) as info:
        _recursive_kernel[(1,)](mx.zeros(1))
    assert "test_triton_runtime.py:" in str(info.value)


def test_assigning_src_recompiles() -> None:
    @mtriton.jit
    def kernel(out_ptr):
        tl.store(out_ptr + tl.arange(0, 4), 1.0)

    out = mtriton.empty((4,))
    kernel[(1,)](out)
    assert np.array(out).tolist() == [1.0] * 4
    kernel.src = kernel.src.replace("1.0", "2.0")  # Triton's patch_kernel
    kernel[(1,)](out)
    assert np.array(out).tolist() == [2.0] * 4
    assert mtriton.TritonError is mtriton.MTritonError
