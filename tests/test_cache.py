"""The compile caches never serve a stale kernel: one test per dependency a kernel's result can
hang on, and fault injection into the on-disk cache (damaged files, a folder that cannot be
written)."""

from __future__ import annotations

import ctypes
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from conftest import poisoned

from mtriton import cache, emulator, options
from mtriton.emulator import compile
from mtriton.language import source

MODULE = """
import mtriton
import mtriton.language as tl
import {helpers} as helpers

SCALES = {scales}


@mtriton.jit
def through_attribute(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, helpers.op(tl.load(x_ptr + offs)))


@mtriton.jit
def through_constexpr(x_ptr, out_ptr, FN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, FN(tl.load(x_ptr + offs)))


@mtriton.jit
def through_tuple(x_ptr, out_ptr, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    tl.store(out_ptr + offs, tl.load(x_ptr + offs) * SCALES[1])
"""

HELPERS = """
import mtriton


@mtriton.jit
def op(x):
    return {body}
"""


@pytest.fixture(autouse=True)
def cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private, enabled on-disk cache for each test, and warnings said afresh."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MTRITON_CACHE_DIR", str(path))
    monkeypatch.delenv("MTRITON_DISABLE_DISK_CACHE", raising=False)
    monkeypatch.setattr(options, "_warned", set())
    return path


@pytest.fixture
def write_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """`write_modules(tag, body, scales)` writes a helper module and a kernel module (names ending
    in `tag`) and imports them afresh, as a new process would after the files were edited."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(
        tag: str, body: str = "x + 1.0", scales: str = "(2.0, 3.0)", kernels: str = "cache_kernels"
    ) -> Any:
        helpers = f"cache_helpers_{tag}"
        (tmp_path / f"{helpers}.py").write_text(HELPERS.format(body=body))
        (tmp_path / f"{kernels}.py").write_text(MODULE.format(helpers=helpers, scales=scales))
        for name in (helpers, kernels):
            sys.modules.pop(name, None)
            names.append(name)
        importlib.invalidate_caches()
        return importlib.import_module(kernels)

    yield write
    for name in names:
        sys.modules.pop(name, None)


def run(kernel: Any, x: mx.array, **kwargs: Any) -> np.ndarray:
    out = poisoned(x.size)
    kernel[(1,)](x, out, BLOCK=x.size, **kwargs)
    return np.array(out)


def test_helper_reached_through_a_module_attribute(write_modules: Callable[..., Any]) -> None:
    x = mx.arange(16, dtype=mx.float32)
    module = write_modules("a", body="x + 1.0")
    np.testing.assert_array_equal(run(module.through_attribute, x), np.array(x) + 1)
    # the same kernel object, the helper module's function rebound: the in-memory cache
    module.helpers.op = write_modules("b", body="x * 3.0", kernels="cache_other").helpers.op
    np.testing.assert_array_equal(run(module.through_attribute, x), np.array(x) * 3)
    # a new process whose helper file changed: the disk cache
    module = write_modules("a", body="x - 5.0")
    np.testing.assert_array_equal(run(module.through_attribute, x), np.array(x) - 5)


def test_helper_passed_as_a_constexpr(write_modules: Callable[..., Any]) -> None:
    x = mx.arange(16, dtype=mx.float32)
    module = write_modules("a", body="x + 1.0")
    np.testing.assert_array_equal(run(module.through_constexpr, x, FN=module.helpers.op), np.array(x) + 1)
    module = write_modules("a", body="x * 7.0")  # same names, new source, IR of the old one on disk
    np.testing.assert_array_equal(run(module.through_constexpr, x, FN=module.helpers.op), np.array(x) * 7)


def test_tuple_globals(write_modules: Callable[..., Any]) -> None:
    x = mx.arange(16, dtype=mx.float32)
    module = write_modules("a", scales="(2.0, 3.0)")
    np.testing.assert_array_equal(run(module.through_tuple, x), np.array(x) * 3)
    module.SCALES = (2.0, 4.0)
    np.testing.assert_array_equal(run(module.through_tuple, x), np.array(x) * 4)
    module = write_modules("a", scales="(2.0, 5.0)")
    np.testing.assert_array_equal(run(module.through_tuple, x), np.array(x) * 5)


def test_source_lines_come_from_the_current_file(write_modules: Callable[..., Any], tmp_path: Path) -> None:
    def store_line(module: Any) -> int:
        spec = [module.through_tuple.specialize(n, v, "interpreter") for n, v in
                (("x_ptr", mx.zeros(4)), ("out_ptr", mx.zeros(4)), ("BLOCK", 4))]  # fmt: skip
        fn = module.through_tuple.compile_ir(spec, "interpreter")
        (store,) = [op for op in fn.body.ops if op.name == "store"]
        return store.loc.line

    module = write_modules("a")
    before = store_line(module)
    module = write_modules("a")
    path = tmp_path / "cache_kernels.py"
    path.write_text("\n\n\n" + path.read_text())  # the kernel moves 3 lines down, unchanged
    sys.modules.pop("cache_kernels")
    module = importlib.import_module("cache_kernels")
    assert store_line(module) == before + 3


def test_the_compiler_is_in_the_key(
    monkeypatch: pytest.MonkeyPatch, write_modules: Callable[..., Any]
) -> None:
    kernel = write_modules("a").through_tuple
    key = kernel.cache_key()
    monkeypatch.setattr(source, "compiler_fingerprint", lambda: "another compiler")
    kernel._deps = None  # as in a new process
    assert kernel.cache_key() != key
    assert len(cache.compiler_fingerprint()) == 32


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # truncated
        lambda raw: raw[:-3] + b"???",  # bytes flipped
        lambda raw: b"",  # empty
        lambda raw: raw.split(b"\n", 1)[1],  # no checksum line: an older mtriton's file
        lambda raw: raw.replace(b"3.0", b"4.0"),  # still parses, computes something else
    ],
    ids=["truncated", "flipped", "empty", "unchecked", "edited"],
)
def test_damaged_ir_files_are_deleted_and_rebuilt(
    damage: Callable[[bytes], bytes], write_modules: Callable[..., Any], cache_dir: Path
) -> None:
    x = mx.arange(16, dtype=mx.float32)
    run(write_modules("a").through_tuple, x)
    (path,) = (cache_dir / "ir").glob("*.mlir")
    damaged = damage(path.read_bytes())
    assert damaged != path.read_bytes()
    path.write_bytes(damaged)
    with pytest.warns(UserWarning, match=f"cache file {path} is damaged"):
        out = run(write_modules("a").through_tuple, x)
    np.testing.assert_array_equal(out, np.array(x) * 3)
    assert cache.read_text("ir", path.stem, ".mlir") is not None  # rebuilt, whole


def test_ir_that_does_not_parse_is_rebuilt(write_modules: Callable[..., Any], cache_dir: Path) -> None:
    x = mx.arange(16, dtype=mx.float32)
    run(write_modules("a").through_tuple, x)
    (path,) = (cache_dir / "ir").glob("*.mlir")
    cache.write_text("ir", path.stem, "func @broken(", ".mlir")  # a valid checksum over bad IR
    with pytest.warns(UserWarning, match="does not parse"):
        np.testing.assert_array_equal(run(write_modules("a").through_tuple, x), np.array(x) * 3)


def test_a_cache_folder_that_cannot_be_written(
    monkeypatch: pytest.MonkeyPatch, write_modules: Callable[..., Any], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("MTRITON_CACHE_DIR", str(blocker / "cache"))
    x = mx.arange(16, dtype=mx.float32)
    module = write_modules("a")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(run(module.through_tuple, x), np.array(x) * 3)
        np.testing.assert_array_equal(run(module.through_attribute, x), np.array(x) + 1)
    # (on a GPU the poisoned outputs also bring the written-never-read copy warning)
    said = [str(w.message) for w in caught if "never read" not in str(w.message)]
    assert len(said) == 1 and "cannot be written" in said[0] and "in memory only" in said[0], said


def test_disabled_disk_cache_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, write_modules: Callable[..., Any], cache_dir: Path
) -> None:
    monkeypatch.setenv("MTRITON_DISABLE_DISK_CACHE", "1")
    run(write_modules("a").through_tuple, mx.arange(16, dtype=mx.float32))
    assert not cache_dir.exists()


@pytest.mark.skipif(not emulator.is_available(), reason="the emulators need Linux and a C++ compiler")
@pytest.mark.parametrize(
    "damage", [lambda raw: raw[: len(raw) // 3], lambda raw: raw[:-1] + b"0"], ids=["truncated", "flipped"]
)
def test_damaged_emulator_libraries_are_rebuilt(damage: Callable[[bytes], bytes]) -> None:
    source = 'extern "C" __attribute__((visibility("default"))) int mt_cache_probe() { return 42; }\n'
    path = compile.build_kernel(source, "probe")
    path.write_bytes(damage(path.read_bytes()))
    with pytest.warns(UserWarning, match=f"cached library {path} is damaged"):
        assert compile.build_kernel(source, "probe") == path
    assert ctypes.CDLL(str(path)).mt_cache_probe() == 42  # the checksum trailer does not disturb loading
