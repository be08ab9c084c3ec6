"""mlx_primitives.hardware: this machine's CPU, and recorded Apple and NVIDIA device_info dicts."""

from __future__ import annotations

import os

import mlx.core as mx
import mlx_primitives.hardware as hardware
import pytest
from mlx_primitives.hardware import ChipFamily, ChipTier, device_info, get_chip_info

# What mx.device_info() returned on an M3 Pro (MLX 0.2x Metal build) and the shape of MLX's CUDA
# build's dict (mlx/backend/gpu/available.h: device_name, architecture, total_memory,
# compute_capability_major/minor, ...).
M3_PRO = {
    "architecture": "applegpu_g15s",
    "device_name": "Apple M3 Pro",
    "max_buffer_size": 19_327_352_832,
    "max_recommended_working_set_size": 28_991_029_248,
    "memory_size": 38_654_705_664,
    "resource_limit": 499_000,
}
H200 = {
    "device_name": "NVIDIA H200",
    "architecture": "sm_90",
    "total_memory": 150_110_011_392,
    "free_memory": 149_000_000_000,
    "compute_capability_major": 9,
    "compute_capability_minor": 0,
    "uuid": "GPU-00000000",
    "pci_bus_id": "0000:19:00.0",
}


def _as(monkeypatch: pytest.MonkeyPatch, kind: str, info: dict) -> None:
    monkeypatch.setattr(hardware, "_gpu_kind", lambda: kind)
    monkeypatch.setattr(hardware, "_has_gpu", lambda: kind != "cpu")
    monkeypatch.setattr(hardware, "_mlx_device_info", lambda: dict(info))


def test_this_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(mx.cpu))
    info = device_info()
    assert info.kind == "cpu" and info.cores == os.cpu_count()
    assert info.memory_bytes is not None and info.memory_bytes > 1 << 28
    assert info.device_key.startswith("cpu:") and info.chip is None and info.name


def test_apple_m3_pro(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, "metal", M3_PRO)
    info = device_info()
    assert (info.kind, info.name, info.architecture) == ("metal", "Apple M3 Pro", "applegpu_g15s")
    assert info.memory_bytes == 38_654_705_664 and info.recommended_working_set == 28_991_029_248
    assert info.max_threadgroup_memory == 32768 and info.max_buffer_size == 19_327_352_832
    assert info.chip.family is ChipFamily.M3 and info.chip.tier is ChipTier.PRO and info.cores == 18
    assert info.device_key == "metal:applegpu_g15s" and "Apple's specification" in info.notes[0]


@pytest.mark.parametrize(
    ("recorded", "family", "tier", "cores"),
    [
        ({"architecture": "applegpu_g13g"}, ChipFamily.M1, ChipTier.BASE, 8),
        ({"architecture": "applegpu_g13d"}, ChipFamily.M1, ChipTier.ULTRA, 64),
        ({"architecture": "applegpu_g14c"}, ChipFamily.M2, ChipTier.MAX, 38),
        ({"architecture": "applegpu_g16s"}, ChipFamily.M4, ChipTier.PRO, 20),
        ({"architecture": "applegpu_g16c", "device_name": "Apple M4 Max"}, ChipFamily.M4, ChipTier.MAX, 40),
        ({"architecture": "applegpu_g15x", "device_name": "Apple M3"}, ChipFamily.M3, ChipTier.BASE, 10),
        ({"architecture": "applegpu_g14p"}, ChipFamily.M2, ChipTier.UNKNOWN, None),  # an A-series tier
        ({"architecture": "applegpu_g99g"}, ChipFamily.UNKNOWN, ChipTier.UNKNOWN, None),
        ({}, ChipFamily.UNKNOWN, ChipTier.UNKNOWN, None),
    ],
)
def test_get_chip_info(recorded: dict, family: ChipFamily, tier: ChipTier, cores: int | None) -> None:
    chip = get_chip_info(recorded)
    assert (chip.family, chip.tier, chip.gpu_cores) == (family, tier, cores)


def test_chip_names() -> None:
    assert get_chip_info({"architecture": "applegpu_g15g"}).name == "M3"
    assert get_chip_info({"architecture": "applegpu_g13d"}).name == "M1 Ultra"
    assert get_chip_info({"architecture": "x"}).name == "unknown Apple GPU (x)"


def test_nvidia_h200(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, "cuda", H200)
    monkeypatch.setattr(
        hardware, "_nvidia_smi", lambda: pytest.fail("nvidia-smi asked although MLX said it all")
    )
    info = device_info()
    assert (info.kind, info.name, info.architecture, info.compute_capability) == (
        "cuda",
        "NVIDIA H200",
        "sm_90",
        (9, 0),
    )
    assert info.memory_bytes == 150_110_011_392 and info.cores == 132
    assert info.max_threadgroup_memory == 227 * 1024
    assert info.device_key == "cuda:sm_90:NVIDIA H200"
    assert "table of known boards" in info.notes[0]


def test_nvidia_falls_back_to_nvidia_smi(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(monkeypatch, "cuda", {"architecture": "sm_80"})
    monkeypatch.setattr(hardware, "_nvidia_smi", lambda: "NVIDIA A100-SXM4-80GB, 81920, 8.0")
    info = device_info()
    assert (info.name, info.compute_capability, info.cores) == ("NVIDIA A100-SXM4-80GB", (8, 0), 108)
    assert info.memory_bytes == 81920 << 20 and info.max_threadgroup_memory == 163 * 1024
    assert any("nvidia-smi" in note for note in info.notes)


def test_unknown_nvidia_board(monkeypatch: pytest.MonkeyPatch) -> None:
    _as(
        monkeypatch, "cuda", {"device_name": "NVIDIA Future GPU", "architecture": "sm_110", "total_memory": 1}
    )
    info = device_info()
    assert info.cores is None and info.compute_capability == (11, 0) and "unknown board" in info.notes[-1]
