"""The runtime: specialization, compile caches, autotuning, heuristics and launch semantics.

Every test gets its own on-disk cache folder and fresh `JITFunction`s, so no
test sees another's compiled kernels or tuning results.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from conftest import count_compiles, poisoned

import mtriton
import mtriton.language as tl
from examples.tutorial_kernels import add_kernel
from mtriton import backends, cache, options
from mtriton.options import DEFAULT_LAUNCH
from mtriton.runtime.jit import JITFunction


@mtriton.jit
def scale_kernel(x_ptr, out_ptr, n, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * alpha, mask=mask)


@mtriton.jit
def even_scale_kernel(x_ptr, out_ptr, n, alpha, BLOCK: tl.constexpr, EVEN: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if EVEN:
        tl.store(out_ptr + offs, tl.load(x_ptr + offs) * alpha)
    else:
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * alpha, mask=mask)


@mtriton.jit
def repeat_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr, REPEAT: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    acc = x
    for _ in range(REPEAT):  # busy work: its cost grows with REPEAT, its result stays x
        acc = acc * 0.5 + x * 0.5
    tl.store(out_ptr + offs, acc, mask=mask)


@mtriton.jit
def sum_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    tl.atomic_add(out_ptr, tl.sum(x, axis=0))


@mtriton.jit
def axpy_inplace_kernel(y_ptr, x_ptr, n, alpha, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(y_ptr + offs, alpha * y + tl.load(x_ptr + offs, mask=mask), mask=mask)


@mtriton.jit
def adam_kernel(p_ptr, g_ptr, m_ptr, v_ptr, n, lr, beta1, beta2, eps, bias1, bias2, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask)
    m = beta1 * tl.load(m_ptr + offs, mask=mask) + (1 - beta1) * g
    v = beta2 * tl.load(v_ptr + offs, mask=mask) + (1 - beta2) * g * g
    p = tl.load(p_ptr + offs, mask=mask) - lr * (m / bias1) / (tl.sqrt(v / bias2) + eps)
    tl.store(p_ptr + offs, p, mask=mask)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)


@pytest.fixture(autouse=True)
def cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private, enabled on-disk cache for each test."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MTRITON_CACHE_DIR", str(path))
    monkeypatch.delenv("MTRITON_DISABLE_DISK_CACHE", raising=False)
    return path


def fresh(kernel: JITFunction, **kwargs: Any) -> JITFunction:
    """A new `JITFunction` of `kernel`'s source: empty in-memory cache."""
    return mtriton.jit(kernel.fn, **kwargs)


def rand(rng: np.random.Generator, n: int) -> mx.array:
    return mx.array(rng.standard_normal(n).astype(np.float32))


def f64(x: mx.array) -> np.ndarray:
    return np.array(x).astype(np.float64)


@pytest.fixture
def import_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], Any]]:
    """`import_source(name, source)` writes `tmp_path/name.py` and imports it.

    The modules are forgotten after the test, so the next test (or backend)
    imports its own file rather than this one.
    """
    monkeypatch.syspath_prepend(tmp_path)
    names: list[str] = []

    def load(name: str, source: str) -> Any:
        (tmp_path / f"{name}.py").write_text(source)
        names.append(name)
        return importlib.import_module(name)

    yield load
    for name in names:
        sys.modules.pop(name, None)


def blocks(n: int, block: str = "BLOCK") -> Callable[[dict[str, Any]], tuple[int]]:
    """A grid of `cdiv(n, meta[block])` programs."""
    return lambda meta: (mtriton.cdiv(n, meta[block]),)


def recording_grid(n: int, seen: list[int]) -> Callable[[dict[str, Any]], tuple[int]]:
    """A grid of `cdiv(n, BLOCK)` programs that records the BLOCK of every launch."""

    def grid(meta: dict[str, Any]) -> tuple[int]:
        seen.append(meta["BLOCK"])
        return (mtriton.cdiv(n, meta["BLOCK"]),)

    return grid


def fake_bench(seen: list[Any], ms: Callable[[Any], float] = float) -> Callable[[Callable[[], Any]], float]:
    """A `do_bench` that runs one launch and reports `ms(last value in seen)` as its time."""

    def bench(call: Callable[[], Any]) -> float:
        mx.eval(call())
        return ms(seen[-1])

    return bench


@mtriton.jit
def broadcast_scalar_kernel(value_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.zeros((BLOCK,), dtype=tl.float32) + tl.load(value_ptr), mask=offs < n)


def test_zero_dim_array_arguments_are_pointers(backend: str) -> None:
    """A 0-d mx.array passed for a pointer reads as a one-element buffer (MLX hands 0-d Metal
    inputs over as references, which the kernel's pointer parameter cannot take)."""
    out = poisoned(37)
    broadcast_scalar_kernel[(3,)](mx.array(2.5), out, 37, BLOCK=16)
    np.testing.assert_array_equal(np.array(out), np.full(37, 2.5, np.float32))


# ---------------------------------------------------------------------- specialization and caches


def test_int_arguments_specialize(backend: str, rng: np.random.Generator) -> None:
    kernel = fresh(scale_kernel)
    x = rand(rng, 100)
    # n == 1 and n % 16 == 0 each get their own kernel; other values share one.
    for n, entries in [(1, 1), (32, 2), (48, 2), (33, 3), (34, 3)]:
        out = poisoned(100)
        kernel[blocks(n)](x, out, n, 2.0, BLOCK=16)
        assert len(kernel.cache) == entries, n
        np.testing.assert_allclose(f64(out[:n]), 2 * f64(x[:n]), rtol=1e-6)
        assert np.isnan(np.array(out[n:])).all()
    n_specs = {(s.value, s.divisibility) for e in kernel.cache.values() for s in e.specs if s.name == "n"}
    assert n_specs == {(1, 1), (None, 16), (None, 1)}


@pytest.mark.parametrize("do_not_specialize", [["n"], [2]])
def test_do_not_specialize(backend: str, rng: np.random.Generator, do_not_specialize: list[Any]) -> None:
    kernel = fresh(scale_kernel, do_not_specialize=do_not_specialize)
    x = rand(rng, 64)
    for n in (1, 32, 33):
        out = poisoned(64)
        kernel[(4,)](x, out, n, 2.0, BLOCK=16)
        np.testing.assert_allclose(f64(out[:n]), 2 * f64(x[:n]), rtol=1e-6)
    assert len(kernel.cache) == 1


def test_constexpr_change_recompiles_and_memory_cache_hits(
    backend: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = count_compiles(monkeypatch, backend)
    kernel = fresh(scale_kernel)
    x = rand(rng, 100)
    for block, compiles in [(16, 1), (16, 1), (32, 2), (16, 2), (32, 2)]:
        out = poisoned(100)
        kernel[(mtriton.cdiv(100, block),)](x, out, 100, 3.0, BLOCK=block)
        assert len(compiled) == compiles, block
        np.testing.assert_allclose(f64(out), 3 * f64(x), rtol=1e-6)


def test_disk_ir_cache_is_reused_by_a_fresh_function(
    backend: str, rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    x = rand(rng, 50)
    fresh(scale_kernel)[(1,)](x, poisoned(50), 50, 2.0, BLOCK=64)
    assert list((cache_dir / "ir").glob("*.mlir"))

    def frontend_called(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the frontend ran although the IR is cached")

    monkeypatch.setattr(mtriton.runtime.jit, "build_ir", frontend_called)
    out = poisoned(50)
    fresh(scale_kernel)[(1,)](x, out, 50, 2.0, BLOCK=64)
    np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)
    # A specialization not on disk does reach the (patched) frontend.
    with pytest.raises(AssertionError, match="frontend ran"):
        fresh(scale_kernel)[(1,)](x, out, 50, 2.0, BLOCK=128)


HELPER_MODULE = """
import mtriton
import mtriton.language as tl

SCALE = tl.constexpr(3)


@mtriton.jit
def helper(x):
    return {helper}


@mtriton.jit
def kernel(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, helper(tl.load(x_ptr + offs)))


@mtriton.jit
def scaled(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs) * SCALE)
"""


def test_changed_helper_invalidates(
    backend: str, rng: np.random.Generator, tmp_path: Path, import_source: Callable[[str, str], Any]
) -> None:
    module = import_source("mtriton_helper_mod", HELPER_MODULE.format(helper="x + 1"))
    old_kernel = module.kernel
    x = rand(rng, 16)
    out = poisoned(16)
    old_kernel[(1,)](x, out, BLOCK=16)
    np.testing.assert_allclose(f64(out), f64(x) + 1, rtol=1e-6)

    # A different length, so that the import system and linecache see the file changed.
    (tmp_path / "mtriton_helper_mod.py").write_text(HELPER_MODULE.format(helper="x * 2.0 + 10.0"))
    module = importlib.reload(module)
    # The kernel's own source is unchanged and its old IR is on disk; the helper's source is in the key.
    for kernel in (module.kernel, old_kernel):
        out = poisoned(16)
        kernel[(1,)](x, out, BLOCK=16)
        np.testing.assert_allclose(f64(out), f64(x) * 2 + 10, rtol=1e-6)


def test_constexpr_globals_are_in_the_key(
    backend: str, rng: np.random.Generator, import_source: Callable[[str, str], Any]
) -> None:
    module = import_source("mtriton_global_mod", HELPER_MODULE.format(helper="x"))
    x = rand(rng, 16)
    keys = []
    for scale in (3, 5, 3):
        module.SCALE = tl.constexpr(scale)
        out = poisoned(16)
        module.scaled[(1,)](x, out, BLOCK=16)
        np.testing.assert_allclose(f64(out), scale * f64(x), rtol=1e-6)
        keys.append(module.scaled.cache_key())
    assert keys[0] == keys[2] != keys[1]


# ---------------------------------------------------------------------- autotune


def test_autotune_picks_the_fastest_by_timing(backend: str, rng: np.random.Generator) -> None:
    n = 300
    # Compiled backends run the busy loop thousands of times faster than the interpreter; on a
    # GPU the loop must outlast launch noise (REPEAT 6000 beat 100 once on a busy H100).
    scale = {"interpreter": 1, "metal-emu": 100, "cuda-emu": 100}.get(backend, 10000)
    configs = [mtriton.Config({"BLOCK": 64, "REPEAT": r * scale}) for r in (200, 1, 60)]
    tuned = mtriton.autotune(configs, key=["n"])(fresh(repeat_kernel))
    x, out = rand(rng, n), poisoned(n)
    tuned[blocks(n)](x, out, n)
    assert tuned.best_config is configs[1]
    assert set(tuned.configs_timings) == set(configs)
    np.testing.assert_allclose(f64(out), f64(x), rtol=1e-6)


def test_autotune_caches_in_memory_and_on_disk(
    backend: str, rng: np.random.Generator, cache_dir: Path
) -> None:
    n = 200
    configs = [mtriton.Config({"BLOCK": b}) for b in (16, 64, 256)]
    seen: list[int] = []
    bench = fake_bench(seen, {16: 3.0, 64: 1.0, 256: 2.0}.__getitem__)
    tuned = mtriton.autotune(configs, key=["n"], do_bench=bench)(fresh(scale_kernel))
    x, out = rand(rng, n), poisoned(n)
    tuned[recording_grid(n, seen)](x, out, n, 2.0)
    assert seen == [16, 64, 256, 64]  # one trial each, then the launch with the winner
    assert tuned.best_config is configs[1]
    assert list(tuned.cache.values()) == [configs[1]]
    np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)
    (record,) = (
        json.loads(cache.read_text("autotune", p.stem, ".json"))
        for p in (cache_dir / "autotune").glob("*.json")
    )
    assert record["config"] == str(configs[1])

    seen.clear()
    tuned[recording_grid(n, seen)](x, out, n, 2.0)
    assert seen == [64]

    def no_bench(call: Callable[[], list[mx.array]]) -> float:
        raise AssertionError("benchmarked again")

    again = mtriton.autotune(configs, key=["n"], do_bench=no_bench)(fresh(scale_kernel))
    out = poisoned(n)
    again[recording_grid(n, seen)](x, out, n, 3.0)
    assert again.best_config == configs[1]
    np.testing.assert_allclose(f64(out), 3 * f64(x), rtol=1e-6)
    with pytest.raises(AssertionError, match="benchmarked again"):
        again[recording_grid(n - 1, seen)](x, out, n - 1, 3.0)  # a new key


def test_autotune_reset_to_zero(backend: str, rng: np.random.Generator) -> None:
    n = 1000
    configs = [mtriton.Config({"BLOCK": b}) for b in (64, 128, 256)]
    tuned = mtriton.autotune(configs, key=["n"], reset_to_zero=["out_ptr"], warmup=1, rep=2)(
        fresh(sum_kernel)
    )
    x, out = rand(rng, n), mx.zeros(1)
    grid = blocks(n)
    tuned[grid](x, out, n)
    np.testing.assert_allclose(f64(out)[0], f64(x).sum(), rtol=1e-4, atol=1e-4)
    # As in Triton, a launch that reuses a tuning result does not reset: it accumulates.
    tuned[grid](x, out, n)
    np.testing.assert_allclose(f64(out)[0], 2 * f64(x).sum(), rtol=1e-4, atol=1e-4)


def test_autotune_restore_value(backend: str, rng: np.random.Generator) -> None:
    n = 1000
    configs = [mtriton.Config({"BLOCK": b}) for b in (64, 128, 256)]
    grid = blocks(n)
    x = rand(rng, n)
    total = mx.array([5.0])
    tuned_sum = mtriton.autotune(configs, key=["n"], restore_value=["out_ptr"], warmup=1, rep=2)(
        fresh(sum_kernel)
    )
    tuned_sum[grid](x, total, n)
    assert len(tuned_sum.configs_timings) == len(configs)  # every trial added to `total`
    np.testing.assert_allclose(f64(total)[0], 5 + f64(x).sum(), rtol=1e-4, atol=1e-4)

    y = rand(rng, n)
    y0 = f64(y)
    tuned_axpy = mtriton.autotune(configs, key=["n"], restore_value=["y_ptr"], warmup=1, rep=2)(
        fresh(axpy_inplace_kernel)
    )
    tuned_axpy[grid](y, x, n, 0.5)
    np.testing.assert_allclose(f64(y), 0.5 * y0 + f64(x), rtol=1e-5, atol=1e-6)


def test_autotune_early_config_prune(backend: str, rng: np.random.Generator) -> None:
    n = 40
    configs = [mtriton.Config({"BLOCK": b}) for b in (16, 32, 64, 128)]
    calls: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def prune(configs: list[mtriton.Config], named: dict[str, Any], **kwargs: Any) -> list[mtriton.Config]:
        calls.append((named, kwargs))
        return [c for c in configs if c.kwargs["BLOCK"] <= named["n"]]

    seen: list[int] = []
    prune_by = {"early_config_prune": prune}
    tuned = mtriton.autotune(configs, key=["n"], prune_configs_by=prune_by, do_bench=fake_bench(seen))(
        fresh(scale_kernel)
    )
    x, out = rand(rng, n), poisoned(n)
    tuned[recording_grid(n, seen)](x, out, n, alpha=2.0)
    assert seen == [16, 32, 16]
    ((named, kwargs),) = calls
    assert set(named) == {"x_ptr", "out_ptr", "n"} and kwargs == {"alpha": 2.0}
    np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)


@pytest.mark.parametrize("top_k", [2, 0.5])
def test_autotune_perf_model_top_k(backend: str, rng: np.random.Generator, top_k: float) -> None:
    n = 100
    configs = [mtriton.Config({"BLOCK": b}) for b in (16, 32, 64, 128)]
    # The model favours big blocks; only its two best are benchmarked.
    prune = {"perf_model": lambda BLOCK, **kwargs: -BLOCK, "top_k": top_k}
    seen: list[int] = []
    tuned = mtriton.autotune(configs, key=["n"], prune_configs_by=prune, do_bench=fake_bench(seen))(
        fresh(scale_kernel)
    )
    x, out = rand(rng, n), poisoned(n)
    tuned[recording_grid(n, seen)](x, out, n, 2.0)
    assert seen == [128, 64, 64]
    np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)


# ---------------------------------------------------------------------- heuristics


@pytest.mark.parametrize("n", [5, 100, 1000])
def test_heuristics_block_from_n(backend: str, rng: np.random.Generator, n: int) -> None:
    kernel = mtriton.heuristics({"BLOCK": lambda args: mtriton.next_power_of_2(args["n"])})(
        fresh(scale_kernel)
    )
    seen: list[int] = []
    x, out = rand(rng, n), poisoned(n)
    kernel[recording_grid(n, seen)](x, out, n, 2.0)
    assert seen == [mtriton.next_power_of_2(n)]
    np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)


def test_heuristics_see_earlier_results(backend: str, rng: np.random.Generator) -> None:
    rules = {
        "BLOCK": lambda args: min(64, mtriton.next_power_of_2(args["n"])),
        "EVEN": lambda args: args["n"] % args["BLOCK"] == 0,
    }
    kernel = mtriton.heuristics(rules)(fresh(even_scale_kernel))
    for n in (128, 100):
        x, out = rand(rng, n), poisoned(n)
        kernel[blocks(n)](x, out, n, 2.0)
        np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)
    evens = [
        spec.value for e in kernel.jit_function.cache.values() for spec in e.specs if spec.name == "EVEN"
    ]
    assert sorted(evens) == [False, True]


def test_autotune_over_heuristics(backend: str, rng: np.random.Generator) -> None:
    n = 96
    evens: list[bool] = []

    def even(args: dict[str, Any]) -> bool:
        evens.append(args["n"] % args["BLOCK"] == 0)
        return evens[-1]

    configs = [mtriton.Config({"BLOCK": 32}), mtriton.Config({"BLOCK": 64})]
    kernel = mtriton.autotune(configs, key=["n"], warmup=1, rep=2)(
        mtriton.heuristics({"EVEN": even})(fresh(even_scale_kernel))
    )
    x, out = rand(rng, n), poisoned(n)
    kernel[blocks(n)](x, out, n, 2.0)
    # The heuristic saw each config's BLOCK: 96 is a multiple of 32, not of 64.
    assert {True, False} <= set(evens)
    np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)


def test_heuristics_over_autotune(backend: str, rng: np.random.Generator) -> None:
    n = 100
    rules = {"BLOCK": lambda args: 32, "EVEN": lambda args: args["n"] % args["BLOCK"] == 0}
    configs = [mtriton.Config({}, num_warps=2), mtriton.Config({}, num_warps=8)]
    seen: list[int] = []

    def grid(meta: dict[str, Any]) -> tuple[int]:
        seen.append(meta["num_warps"])
        return (mtriton.cdiv(n, meta["BLOCK"]),)

    tuned = mtriton.autotune(configs, key=["n"], do_bench=fake_bench(seen))(fresh(even_scale_kernel))
    kernel = mtriton.heuristics(rules)(tuned)
    x, out = rand(rng, n), poisoned(n)
    kernel[grid](x, out, n, 2.0)
    assert seen == [2, 8, 2]
    np.testing.assert_allclose(f64(out), 2 * f64(x), rtol=1e-6)


# ---------------------------------------------------------------------- launch errors


def _launch_cases() -> list[tuple[str, Callable[[mx.array, mx.array], Any], str]]:
    tuned = lambda **kwargs: mtriton.autotune(
        [mtriton.Config({"BLOCK": 16}), mtriton.Config({"BLOCK": 32})], **kwargs
    )
    return [
        ("missing argument", lambda x, out: scale_kernel[(1,)](x, out, 10, BLOCK=16), "alpha"),
        ("too many arguments", lambda x, out: scale_kernel[(1,)](x, out, 10, 2.0, 16, 7), "too many"),
        ("numpy array", lambda x, out: scale_kernel[(1,)](np.array(x), out, 10, 2.0, BLOCK=16), "x_ptr"),
        ("list", lambda x, out: scale_kernel[(1,)](x, [0.0] * 10, 10, 2.0, BLOCK=16), "out_ptr"),
        ("complex dtype", lambda x, out: scale_kernel[(1,)](x.astype(mx.complex64), out, 10, 2.0, BLOCK=16), "x_ptr"),
        ("grid of strings", lambda x, out: scale_kernel["ab"](x, out, 10, 2.0, BLOCK=16), "grid"),
        ("grid of 4 dims", lambda x, out: scale_kernel[(1, 1, 1, 1)](x, out, 10, 2.0, BLOCK=16), "grid"),
        ("negative grid", lambda x, out: scale_kernel[(-1,)](x, out, 10, 2.0, BLOCK=16), "grid"),
        ("grid returns None", lambda x, out: scale_kernel[lambda meta: None](x, out, 10, 2.0, BLOCK=16), "grid"),
        ("kernel called", lambda x, out: scale_kernel(x, out, 10, 2.0, BLOCK=16), r"scale_kernel\[grid\]"),
        ("autotune key missing", lambda x, out: tuned(key=["n"])(scale_kernel)[(1,)](x, out), "key n"),
        ("autotune key unknown", lambda x, out: tuned(key=["m"])(scale_kernel), "m not among"),
        ("autotuned BLOCK passed", lambda x, out: tuned(key=["n"])(scale_kernel)[(1,)](x, out, 10, 2.0, BLOCK=8), "BLOCK"),
        ("autotuned called", lambda x, out: tuned(key=["n"])(scale_kernel)(x, out, 10, 2.0), r"\[grid\]"),
        ("autotune over a function", lambda x, out: tuned(key=["n"])(lambda x: x), "must decorate"),
        ("heuristics over autotuned BLOCK", lambda x, out: mtriton.heuristics({"BLOCK": lambda a: 16})(
            tuned(key=["n"])(scale_kernel))[(1,)](x, out, 10, 2.0), "BLOCK"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", _launch_cases(), ids=lambda case: case[0])
def test_launch_errors(backend: str, case: tuple[str, Callable[[mx.array, mx.array], Any], str]) -> None:
    _, launch, names = case
    with pytest.raises(mtriton.LaunchError, match=names):
        launch(mx.zeros(10), mx.zeros(10))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"num_warps": 3}, "num_warps must be a power of two from 1 to 32, got 3"),
        ({"num_warps": 64}, "num_warps must be a power of two from 1 to 32, got 64"),
        ({"num_warps": 4.0}, "num_warps must be a power of two"),
        ({"num_stages": 0}, "num_stages must be an int >= 1, got 0"),
        (
            {"math_mode": "quick"},
            "math_mode must be one of safe, relaxed, fast (or None: the backend's default), got 'quick'",
        ),
        ({"num_ctas": 2}, "num_ctas must be 1"),
        ({"num_warps": [4]}, "num_warps must be a power of two"),
    ],
)
def test_bad_launch_options_name_the_option(backend: str, options: dict[str, Any], message: str) -> None:
    fresh(scale_kernel)[(1,)](mx.zeros(10), mtriton.empty((10,)), 10, 2.0, BLOCK=16, num_warps=4)  # 4 is fine
    with pytest.raises(mtriton.LaunchError, match=re.escape(message)):
        fresh(scale_kernel)[(1,)](mx.zeros(10), mtriton.empty((10,)), 10, 2.0, BLOCK=16, **options)


def test_unknown_keywords_are_type_errors() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'num_wraps'"):
        scale_kernel[(1,)](mx.zeros(10), mx.zeros(10), 10, 2.0, BLOCK=16, num_wraps=4)
    with pytest.raises(TypeError, match="jit\\(\\) got an unexpected keyword argument 'inline'"):
        mtriton.jit(inline=True)


def test_options_without_effect_warn_once(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options, "_warned", set())
    honoured = backends.get_backend(backend).options
    kernel = fresh(scale_kernel)
    launch = lambda **opts: kernel[(1,)](mx.zeros(10), mtriton.empty((10,)), 10, 2.0, BLOCK=16, **opts)  # noqa: E731
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        launch(maxnreg=128, num_stages=2)
        launch(maxnreg=64, num_stages=2)  # a new specialization: still one warning per option
        launch()  # defaults never warn
    said = sorted(str(w.message).split(" has no effect")[0] for w in caught)
    assert said == sorted(["maxnreg", *([] if "num_stages" in honoured else ["num_stages"])])
    assert all(w.filename == __file__ for w in caught), [w.filename for w in caught]
    assert all(f"the {backend} backend" in str(w.message) for w in caught)


def test_triton_jit_keywords_are_accepted_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(options, "_warned", set())
    with pytest.warns(UserWarning, match=re.escape("@jit(noinline=...) has no effect")):
        kernel = mtriton.jit(noinline=True, debug=False)(scale_kernel.fn)
    assert isinstance(kernel, JITFunction)


def test_config_takes_its_defaults_from_launch_options() -> None:
    config = mtriton.Config({"BLOCK": 64})
    assert (config.num_warps, config.num_stages) == (DEFAULT_LAUNCH.num_warps, DEFAULT_LAUNCH.num_stages)
    assert config.all_kwargs() == {"BLOCK": 64, "num_warps": 4, "num_stages": 3}
    assert str(mtriton.Config({"BLOCK": 64}, num_warps=8, maxnreg=128)) == (
        "BLOCK: 64, num_warps: 8, num_stages: 3, maxnreg: 128"
    )
    with pytest.raises(mtriton.LaunchError, match="num_warps"):
        mtriton.Config({}, num_warps=5)


# ---------------------------------------------------------------------- launch semantics


def test_functional_form_leaves_inputs_unchanged(backend: str, rng: np.random.Generator) -> None:
    n = 300
    x, y, out = rand(rng, n), rand(rng, n), poisoned(n)
    x0, y0 = f64(x), f64(y)
    (new,) = add_kernel[blocks(n, "BLOCK_SIZE")].functional(x, y, out, n, BLOCK_SIZE=64)
    np.testing.assert_allclose(f64(new), x0 + y0, rtol=1e-6)
    assert np.isnan(np.array(out)).all()
    np.testing.assert_array_equal(f64(x), x0)
    np.testing.assert_array_equal(f64(y), y0)

    # Read-modify-write of one argument: the new contents come back, the argument keeps its own.
    (new_y,) = axpy_inplace_kernel[(mtriton.cdiv(n, 64),)].functional(y, x, n, 2.0, BLOCK=64)
    np.testing.assert_allclose(f64(new_y), 2 * y0 + x0, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(f64(y), y0)


def test_raw_launch_reruns_the_compiled_kernel(backend: str, rng: np.random.Generator) -> None:
    n = 300
    x, y, out = rand(rng, n), rand(rng, n), mtriton.empty((n,))
    raw = add_kernel[blocks(n, "BLOCK_SIZE")].raw(x, y, out, n, BLOCK_SIZE=64)
    for _ in range(2):  # an mtriton.empty output is the kernel's only output on GPU backends
        (written,) = [o for o in raw() if o is not None]
        np.testing.assert_allclose(f64(written), f64(x) + f64(y), rtol=1e-6)


def test_functional_form_of_an_autotuned_kernel(backend: str, rng: np.random.Generator) -> None:
    n = 500
    configs = [mtriton.Config({"BLOCK": b}) for b in (64, 128)]
    tuned = mtriton.autotune(configs, key=["n"], reset_to_zero=["out_ptr"], warmup=1, rep=2)(
        fresh(sum_kernel)
    )
    x, total = rand(rng, n), mx.array([5.0])
    (new,) = tuned[blocks(n)].functional(x, total, n)
    # Functional trials write nothing, so nothing is reset: the result starts from 5.
    np.testing.assert_allclose(f64(new)[0], 5 + f64(x).sum(), rtol=1e-4, atol=1e-4)
    assert f64(total)[0] == 5


def test_in_place_writes_are_seen_by_the_caller(backend: str, rng: np.random.Generator) -> None:
    size, n = 100, 60
    x = rand(rng, size)
    out = rand(rng, size)
    before = f64(out)
    alias = out
    scale_kernel[(mtriton.cdiv(n, 16),)](x, out, n, 2.0, BLOCK=16)
    np.testing.assert_allclose(f64(alias[:n]), 2 * f64(x[:n]), rtol=1e-6)
    np.testing.assert_array_equal(f64(alias[n:]), before[n:])  # no program writes these

    y = rand(rng, size)
    x0, y0 = f64(x), f64(y)
    add_kernel[(mtriton.cdiv(size, 32),)](x, y, x, size, BLOCK_SIZE=32)  # x aliases the output
    np.testing.assert_allclose(f64(x), x0 + y0, rtol=1e-6)


def test_adam_update_in_place(backend: str, rng: np.random.Generator) -> None:
    n, lr, beta1, beta2, eps = 1000, 1e-2, 0.9, 0.999, 1e-8
    p, m, v = rand(rng, n), mx.zeros(n), mx.zeros(n)
    ref_p, ref_m, ref_v = f64(p), np.zeros(n), np.zeros(n)
    for step in range(1, 4):
        g = rand(rng, n)
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        adam_kernel[(mtriton.cdiv(n, 128),)](p, g, m, v, n, lr, beta1, beta2, eps, bias1, bias2, BLOCK=128)
        ref_m = beta1 * ref_m + (1 - beta1) * f64(g)
        ref_v = beta2 * ref_v + (1 - beta2) * f64(g) ** 2
        ref_p = ref_p - lr * (ref_m / bias1) / (np.sqrt(ref_v / bias2) + eps)
    np.testing.assert_allclose(f64(m), ref_m, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f64(v), ref_v, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f64(p), ref_p, rtol=1e-5, atol=1e-5)


def test_launches_compose_with_lazy_graphs(backend: str, rng: np.random.Generator) -> None:
    n = 257
    base = rand(rng, n)
    mx.eval(base)
    x = base * 2 + 1  # not evaluated: the launch takes a graph
    scaled, total = poisoned(n), poisoned(n)
    scale_kernel[(mtriton.cdiv(n, 64),)](x, scaled, n, 3.0, BLOCK=64)
    shifted = scaled - 1
    add_kernel[(mtriton.cdiv(n, 64),)](shifted, x, total, n, BLOCK_SIZE=64)
    mx.eval(total)
    expected = 3 * (2 * f64(base) + 1) - 1 + (2 * f64(base) + 1)
    np.testing.assert_allclose(f64(total), expected, rtol=1e-5, atol=1e-5)


def test_launch_inside_mx_compile(backend: str, rng: np.random.Generator) -> None:
    n = 100

    def double(x: mx.array) -> mx.array:
        out = mx.zeros_like(x)
        scale_kernel[(mtriton.cdiv(n, 64),)](x, out, n, 2.0, BLOCK=64)
        return out

    x = rand(rng, n)
    if backend in ("interpreter", "metal-emu", "cuda-emu"):
        # Both CPU backends evaluate while they run (the interpreter its bounds checks and trip
        # counts, the emulator its input copies), which compile forbids. Metal and CUDA
        # launches are graph nodes and compile.
        with pytest.raises(ValueError, match="Attempting to eval an array during function transformations"):
            mx.compile(double)(x)
        return
    np.testing.assert_allclose(f64(mx.compile(double)(x)), 2 * f64(x), rtol=1e-6)


def test_custom_function_with_a_kernel_vjp(backend: str, rng: np.random.Generator) -> None:
    n = 130
    grid = (mtriton.cdiv(n, 64),)
    vjp_calls: list[int] = []

    @mx.custom_function
    def triple(x: mx.array) -> mx.array:
        out = mx.zeros_like(x)
        scale_kernel[grid](x, out, n, 3.0, BLOCK=64)
        return out

    @triple.vjp
    def triple_vjp(primals: tuple[mx.array], cotangent: mx.array, output: mx.array) -> tuple[mx.array]:
        vjp_calls.append(1)
        grad = mx.zeros_like(cotangent)
        scale_kernel[grid](cotangent, grad, n, 3.0, BLOCK=64)
        return (grad,)

    x, w = rand(rng, n), rand(rng, n)
    loss, grad = mx.value_and_grad(lambda x: (triple(x) * w).sum())(x)
    mx.eval(loss, grad)
    assert vjp_calls == [1]
    np.testing.assert_allclose(float(loss), (3 * f64(x) * f64(w)).sum(), rtol=1e-4)
    np.testing.assert_allclose(f64(grad), 3 * f64(w), rtol=1e-6)


@mtriton.jit
def reciprocal_kernel(out_ptr, s):
    tl.store(out_ptr + tl.arange(0, 8), tl.full((8,), 1.0, tl.float32) / s)


def test_scalar_arguments_keep_their_sign_of_zero(backend: str) -> None:
    # GPU launches reuse the input array of an equal scalar: 0.0 == -0.0 must not share one
    for s, expected in ((0.0, np.inf), (-0.0, -np.inf), (0.0, np.inf), (2.0, 0.5)):
        out = mtriton.empty((8,))
        reciprocal_kernel[(1,)](out, s)
        np.testing.assert_array_equal(np.array(out), np.full(8, expected, np.float32))
