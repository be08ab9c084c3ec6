"""The tuning database (mtriton/runtime/tuning_db.py) and `@autotune(use_database=True)`."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path

import mlx.core as mx
import mlx_primitives.rotary as rotary
import numpy as np
import pytest
from conftest import poisoned, to_numpy

import mtriton
import mtriton.language as tl
from mtriton.runtime import tuning_db

CUDA_INFO = {
    "device_name": "NVIDIA H200",
    "architecture": "sm_90",
    "compute_capability_major": 9,
    "compute_capability_minor": 0,
    "total_memory": 150_000_000_000,
}
METAL_INFO = {"architecture": "applegpu_g15s", "memory_size": 38_654_705_664}


@mtriton.jit
def _scale_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) * 3.0, mask=mask)


CONFIGS = [mtriton.Config({"BLOCK": 32}, num_warps=1), mtriton.Config({"BLOCK": 64}, num_warps=2)]


class CountingBench:
    """A do_bench that times nothing and says the first config is fastest, counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, call) -> float:
        self.calls += 1
        mx.eval(call())
        return float(self.calls)


def _tuned(bench: CountingBench) -> mtriton.runtime.autotune.Autotuner:
    return mtriton.autotune(CONFIGS, key=["n"], do_bench=bench, use_database=True)(_scale_kernel)


def _launch(kernel, n: int) -> mx.array:
    x = mx.arange(n, dtype=mx.float32)
    out = poisoned(n)
    kernel[lambda meta: (mtriton.cdiv(n, meta["BLOCK"]),)](x, out, n)
    np.testing.assert_array_equal(to_numpy(out), 3.0 * np.arange(n, dtype=np.float32))
    return out


@pytest.fixture
def user_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only the user database and (empty) package defaults: the autotuner's own disk cache
    would otherwise answer before a database is asked."""
    path = tmp_path / "user_db.json"
    monkeypatch.setenv("MTRITON_TUNING_DB", str(path))
    monkeypatch.setenv("MTRITON_DISABLE_DISK_CACHE", "1")
    defaults = tmp_path / "defaults.json"
    monkeypatch.setattr(tuning_db, "DEFAULTS_PATH", defaults)
    return path


def test_device_keys_from_recorded_device_info() -> None:
    assert tuning_db.device_key("cuda", CUDA_INFO) == "cuda:sm_90:NVIDIA H200"
    assert tuning_db.device_key("cuda", {"architecture": "sm_80", "device_name": "A100"}) == "cuda:sm_80:A100"
    assert tuning_db.device_key("metal", METAL_INFO) == "metal:applegpu_g15s"
    assert tuning_db.device_key("interpreter") == "cpu:interpreter"
    assert tuning_db.device_key("metal-emu") == "cpu:metal-emu"
    assert tuning_db.family_keys("cuda:sm_90:NVIDIA H200") == ["cuda:sm_90:NVIDIA H200", "cuda:sm_90"]
    assert tuning_db.family_keys("metal:applegpu_g15s") == ["metal:applegpu_g15s", "metal:applegpu_g15"]
    assert tuning_db.family_keys("cpu:interpreter") == ["cpu:interpreter"]


@pytest.mark.parametrize("bad", ["h200", "tpu:v5", "cuda:", 7])
def test_unknown_device_key_raises(bad, tmp_path: Path) -> None:
    with pytest.raises(mtriton.LaunchError, match=r"\[tuning_db\] device key must be"):
        tuning_db.lookup(bad, "k")
    with pytest.raises(mtriton.LaunchError, match=r"\[tuning_db\] device key must be"):
        tuning_db.TuningDatabase(tmp_path / "db.json").record(bad, "k", {"config": {}})


def test_search_is_recorded_then_skipped(backend: str, user_db: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MTRITON_PRINT_AUTOTUNING", "1")
    cold = CountingBench()
    _launch(_tuned(cold), 100)
    assert cold.calls == 2
    assert "finished after" in capsys.readouterr().out
    data = json.loads(user_db.read_text())
    (entries,) = data["devices"].values()
    assert list(data["devices"]) == [tuning_db.device_key(backend)]
    ((kernel, entry),) = entries.items()
    assert kernel.startswith("_scale_kernel:") and entry["config"] == {
        "kwargs": {"BLOCK": 32},
        "num_warps": 1,
        "num_stages": 3,
    }
    assert entry["timing_ms"] == 1.0  # what the bench said of the winner

    monkeypatch.delenv("MTRITON_PRINT_AUTOTUNING")
    monkeypatch.setenv("TRITON_PRINT_AUTOTUNING", "1")  # Triton's name works too
    warm = CountingBench()
    tuner = _tuned(warm)  # a new autotuner: nothing in memory
    _launch(tuner, 100)
    assert warm.calls == 0 and tuner.best_config == CONFIGS[0]
    assert "database hit" in capsys.readouterr().out


def test_database_entry_decides_the_config(user_db: Path) -> None:
    """The entry names the config the benchmark would not pick: a database never read fails."""
    # the autotune key: n, then every array argument's dtype
    kernel = tuning_db.kernel_key(
        "_scale_kernel", _scale_kernel.src, (100, "mlx.core.float32", "mlx.core.float32")
    )
    tuning_db.TuningDatabase(user_db).record(
        "cpu:interpreter", kernel, {"config": tuning_db.config_record(CONFIGS[1])}
    )
    mtriton.set_backend("interpreter")
    try:
        bench = CountingBench()
        tuner = _tuned(bench)
        _launch(tuner, 100)
        assert bench.calls == 0 and tuner.best_config == CONFIGS[1]
        _launch(tuner, 101)  # another key: searched
        assert bench.calls == 2 and tuner.best_config == CONFIGS[0]
    finally:
        mtriton.set_backend(None)


def test_shipped_defaults_by_family(user_db: Path, tmp_path: Path, monkeypatch) -> None:
    kernel = tuning_db.kernel_key("_scale_kernel", "src", (1,))
    defaults = tmp_path / "defaults.json"
    defaults.write_text(json.dumps({
        "format": "mtriton-tuning-db", "version": 1,
        "devices": {"cuda:sm_90": {kernel: {"config": {"kwargs": {"BLOCK": 64}}}}},
    }))  # fmt: skip
    db, matched, entry = tuning_db.lookup("cuda:sm_90:NVIDIA H200", kernel)
    assert (db.path, db.writable, matched) == (defaults, False, "cuda:sm_90")
    assert tuning_db.lookup("cuda:sm_80:A100", kernel) is None
    # what gets written goes to the user's file, never the package's
    assert tuning_db.record("cuda:sm_90:NVIDIA H200", kernel, entry).path == user_db


def test_package_defaults_are_a_database() -> None:
    data = tuning_db.TuningDatabase(tuning_db.DEFAULTS_PATH, writable=False).load()
    assert data["format"] == "mtriton-tuning-db" and data["devices"]
    for device, entries in data["devices"].items():
        tuning_db.check_device_key(device)
        assert all("config" in e for e in entries.values())


@pytest.mark.parametrize(
    "garbage",
    ["{not json", '{"format": "other"}', '{"format": "mtriton-tuning-db", "version": 1, "devices": []}'],
)
def test_corrupt_database_is_rebuilt_with_a_warning(user_db: Path, garbage: str) -> None:
    user_db.write_text(garbage)
    mtriton.set_backend("interpreter")
    try:
        bench = CountingBench()
        with pytest.warns(UserWarning, match="is damaged"):
            _launch(_tuned(bench), 77)
    finally:
        mtriton.set_backend(None)
    assert bench.calls == 2
    devices = json.loads(user_db.read_text())["devices"]
    assert list(devices) == ["cpu:interpreter"] and len(devices["cpu:interpreter"]) == 1


def _write_many(path: str, worker: int) -> None:
    db = tuning_db.TuningDatabase(path)
    for i in range(15):
        db.record("cpu:interpreter", f"k{worker}:{i}", {"config": {"kwargs": {"BLOCK": i}}})


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.json"
    # fork where there is one: a spawned child would import this file, and conftest with it
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    workers = [ctx.Process(target=_write_many, args=(str(path), w)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
        assert p.exitcode == 0
    entries = json.loads(path.read_text())["devices"]["cpu:interpreter"]
    assert sorted(entries) == sorted(f"k{w}:{i}" for w in range(4) for i in range(15))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_rope_reads_shipped_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """rope autotunes through the database on a GPU: an H200 finds the shipped sm_90 entry."""
    monkeypatch.setenv("MTRITON_TUNING_DB", str(tmp_path / "user.json"))
    monkeypatch.setattr(tuning_db, "device_key", lambda backend=None, info=None: "cuda:sm_90:NVIDIA H200")
    monkeypatch.setattr(rotary, "_rope_launcher", lambda: rotary._rope_tuned)
    monkeypatch.setattr(rotary._rope_tuned, "cache", {})

    def no_search(call):
        raise AssertionError("searched although the shipped defaults have this shape")

    monkeypatch.setattr(rotary._rope_tuned, "do_bench", no_search)
    assert rotary._rope_tuned.use_database
    mtriton.set_backend("interpreter")
    try:
        x = mx.random.normal((1, 8, 40, 64)).astype(mx.float16)
        out = rotary.rope(x, 64, traditional=False, base=10000.0, scale=1.0, offset=3)
        ref = rotary.rope_reference(x, 64, traditional=False, base=10000.0, scale=1.0, offset=3)
        np.testing.assert_allclose(to_numpy(out), to_numpy(ref), rtol=2e-3, atol=2e-3)
    finally:
        mtriton.set_backend(None)
    assert rotary._rope_tuned.best_config.num_warps == 4
