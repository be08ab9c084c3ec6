"""mlx_primitives.hardware: what the machine MLX runs on is, in one dataclass.

`device_info()` reads `mx.device_info()` for the default device: an Apple GPU (Metal), an
NVIDIA GPU (MLX's CUDA build) or the CPU. Where MLX does not report a figure (Apple's GPU core
count, NVIDIA's SM count, shared memory per block) it comes from a table of known chips and
`notes` says so; a figure nothing gives is None. `get_chip_info`, `ChipFamily` and `ChipTier`
name Apple silicon (M1 to M4, base/Pro/Max/Ultra) as the library this replaces did.
"""

from __future__ import annotations

import enum
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import mlx.core as mx

import mtriton
from mtriton.runtime import tuning_db


class ChipFamily(enum.Enum):
    """Apple silicon generations."""

    M1 = "M1"
    M2 = "M2"
    M3 = "M3"
    M4 = "M4"
    UNKNOWN = "unknown"


class ChipTier(enum.Enum):
    """Apple silicon tiers within a generation."""

    BASE = "base"
    PRO = "Pro"
    MAX = "Max"
    ULTRA = "Ultra"
    UNKNOWN = "unknown"


# Metal's GPU architecture names: applegpu_g<generation><tier letter>.
_GENERATIONS = {"13": ChipFamily.M1, "14": ChipFamily.M2, "15": ChipFamily.M3, "16": ChipFamily.M4}
_TIER_LETTERS = {"g": ChipTier.BASE, "s": ChipTier.PRO, "c": ChipTier.MAX, "d": ChipTier.ULTRA}
# Apple's specifications: the most GPU cores and memory bandwidth (GB/s) of each chip (binned
# parts have fewer cores, some less bandwidth).
_APPLE_SPECS: dict[tuple[ChipFamily, ChipTier], tuple[int, float]] = {
    (ChipFamily.M1, ChipTier.BASE): (8, 68.25), (ChipFamily.M1, ChipTier.PRO): (16, 200.0),
    (ChipFamily.M1, ChipTier.MAX): (32, 400.0), (ChipFamily.M1, ChipTier.ULTRA): (64, 800.0),
    (ChipFamily.M2, ChipTier.BASE): (10, 100.0), (ChipFamily.M2, ChipTier.PRO): (19, 200.0),
    (ChipFamily.M2, ChipTier.MAX): (38, 400.0), (ChipFamily.M2, ChipTier.ULTRA): (76, 800.0),
    (ChipFamily.M3, ChipTier.BASE): (10, 100.0), (ChipFamily.M3, ChipTier.PRO): (18, 150.0),
    (ChipFamily.M3, ChipTier.MAX): (40, 400.0), (ChipFamily.M3, ChipTier.ULTRA): (80, 819.0),
    (ChipFamily.M4, ChipTier.BASE): (10, 120.0), (ChipFamily.M4, ChipTier.PRO): (20, 273.0),
    (ChipFamily.M4, ChipTier.MAX): (40, 546.0),
}  # fmt: skip
APPLE_THREADGROUP_MEMORY = 32 * 1024  # every Apple GPU family MLX runs on

# Streaming multiprocessors of known boards (MLX reports none), longest name first matches.
_NVIDIA_SMS = {
    "H200": 132, "H100 PCIe": 114, "H100 NVL": 132, "H100": 132, "GH200": 132, "B200": 148,
    "A100": 108, "A10G": 80, "A10": 72, "L40S": 142, "L40": 142, "L4": 58,
    "RTX 4090": 128, "RTX 3090": 82, "V100": 80, "T4": 40,
}  # fmt: skip
# Shared memory one block may opt into, by compute capability (CUDA programming guide).
_NVIDIA_SHARED_PER_BLOCK = {
    70: 96 * 1024, 75: 64 * 1024, 80: 163 * 1024, 86: 99 * 1024, 87: 163 * 1024, 89: 99 * 1024,
    90: 227 * 1024, 100: 227 * 1024, 120: 99 * 1024,
}  # fmt: skip


@dataclass(frozen=True)
class ChipInfo:
    """One Apple silicon chip.

    Attributes:
        family: M1 to M4 (UNKNOWN for others, such as A-series).
        tier: Base, Pro, Max or Ultra.
        architecture: Metal's name, e.g. "applegpu_g15s".
        gpu_cores: The most GPU cores of this chip (Apple's figure; MLX does not report the
            count of a binned part).
        memory_bandwidth_gbs: The most memory bandwidth of this chip, in GB/s.
    """

    family: ChipFamily
    tier: ChipTier
    architecture: str
    gpu_cores: int | None
    memory_bandwidth_gbs: float | None

    @property
    def name(self) -> str:
        if self.family is ChipFamily.UNKNOWN:
            return f"unknown Apple GPU ({self.architecture})"
        return self.family.value if self.tier is ChipTier.BASE else f"{self.family.value} {self.tier.value}"


def get_chip_info(info: Mapping[str, Any] | None = None) -> ChipInfo:
    """The Apple chip from `mx.device_info()` (or the `info` dict given): its device name
    ("Apple M3 Pro") where MLX gives one, else its architecture (applegpu_g15s).

    Args:
        info: A recorded `mx.device_info()` dict; read from MLX when None.

    Returns:
        A `ChipInfo`; family and tier UNKNOWN where neither names an M chip.
    """
    info = _mlx_device_info() if info is None else info
    architecture = str(info.get("architecture", ""))
    family, tier = ChipFamily.UNKNOWN, ChipTier.UNKNOWN
    named = re.search(r"\bM([1-9])(?:\s+(Pro|Max|Ultra))?\b", str(info.get("device_name", "")))
    coded = re.fullmatch(r"applegpu_g(\d+)([a-z])", architecture)
    if named and f"M{named.group(1)}" in ChipFamily._value2member_map_:
        family = ChipFamily(f"M{named.group(1)}")
        tier = ChipTier(named.group(2)) if named.group(2) else ChipTier.BASE
    elif coded:
        family = _GENERATIONS.get(coded.group(1), ChipFamily.UNKNOWN)
        tier = (
            _TIER_LETTERS.get(coded.group(2), ChipTier.UNKNOWN) if family is not ChipFamily.UNKNOWN else tier
        )
    cores, bandwidth = _APPLE_SPECS.get((family, tier), (None, None))
    return ChipInfo(family, tier, architecture, cores, bandwidth)


@dataclass(frozen=True)
class DeviceInfo:
    """The device MLX computes on.

    Attributes:
        kind: "metal", "cuda" or "cpu".
        name: e.g. "Apple M3 Pro", "NVIDIA H200", the CPU's name.
        architecture: Metal's GPU architecture, "sm_90", or the CPU's machine type.
        memory_bytes: Device memory (unified memory on Apple silicon; RAM for the CPU).
        cores: Apple GPU cores, NVIDIA streaming multiprocessors or CPU cores.
        compute_capability: (major, minor) on NVIDIA GPUs.
        max_threadgroup_memory: Bytes of threadgroup (shared) memory one threadgroup/block
            may use.
        recommended_working_set: Metal's recommended working set size, in bytes.
        max_buffer_size: Metal's largest buffer, in bytes.
        chip: The Apple chip, on Metal.
        device_key: The tuning database's key for kernels run on this device.
        notes: Where a figure came from other than MLX.
    """

    kind: str
    name: str
    architecture: str
    memory_bytes: int | None
    cores: int | None
    compute_capability: tuple[int, int] | None = None
    max_threadgroup_memory: int | None = None
    recommended_working_set: int | None = None
    max_buffer_size: int | None = None
    chip: ChipInfo | None = None
    device_key: str = ""
    notes: tuple[str, ...] = ()


def _mlx_device_info() -> dict[str, Any]:
    try:
        return dict(mx.device_info())
    except (AttributeError, RuntimeError, TypeError):
        return {}


def _gpu_kind() -> str:
    """What MLX's default device is: metal, cuda or cpu."""
    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if mx.metal.is_available():
        return "metal"
    return "cuda" if getattr(mx, "cuda", None) is not None and mx.cuda.is_available() else "cpu"


def _has_gpu() -> bool:
    return mx.metal.is_available() or (getattr(mx, "cuda", None) is not None and mx.cuda.is_available())


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _metal_info(info: Mapping[str, Any]) -> DeviceInfo:
    chip = get_chip_info(info)
    return DeviceInfo(
        kind="metal",
        name=str(info.get("device_name") or f"Apple {chip.name}"),
        architecture=chip.architecture,
        memory_bytes=_int(info.get("memory_size")),
        cores=chip.gpu_cores,
        max_threadgroup_memory=APPLE_THREADGROUP_MEMORY,
        recommended_working_set=_int(info.get("max_recommended_working_set_size")),
        max_buffer_size=_int(info.get("max_buffer_size")),
        chip=chip,
        device_key=tuning_db.device_key("metal", dict(info)),
        notes=("cores: the chip's most GPU cores (Apple's specification); MLX does not report the count",),
    )


def _nvidia_smi() -> str | None:
    """`nvidia-smi`'s name, memory (MiB) and compute capability of GPU 0, or None."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.splitlines()[0] if result.stdout.strip() else None


def _cuda_info(info: Mapping[str, Any]) -> DeviceInfo:
    info = dict(info)
    notes = []
    if not info.get("device_name") or not (info.get("total_memory") or info.get("memory_size")):
        line = _nvidia_smi()
        if line:
            name, memory_mib, capability = (part.strip() for part in line.split(","))
            major, _, minor = capability.partition(".")
            smi = {
                "device_name": name,
                "total_memory": int(float(memory_mib)) << 20,
                "compute_capability_major": int(major),
                "compute_capability_minor": int(minor or 0),
            }
            info.update({key: value for key, value in smi.items() if not info.get(key)})
            notes.append("name, memory and compute capability from nvidia-smi: mx.device_info() lacks them")
    major, minor = _int(info.get("compute_capability_major")), _int(info.get("compute_capability_minor"))
    if major is None:
        digits = str(info.get("architecture", "")).lower().removeprefix("sm_").rstrip("a")
        if digits.isdigit():
            major, minor = int(digits) // 10, int(digits) % 10
    capability = (major, minor or 0) if major is not None else None
    name = str(info.get("device_name") or "unknown NVIDIA GPU")
    sms = next(
        (count for board, count in sorted(_NVIDIA_SMS.items(), key=lambda kv: -len(kv[0])) if board in name),
        None,
    )
    notes.append(
        "cores: streaming multiprocessors from a table of known boards (MLX does not report them)"
        if sms is not None
        else "cores: unknown board, MLX does not report its streaming multiprocessors"
    )
    shared = _NVIDIA_SHARED_PER_BLOCK.get(10 * capability[0] + capability[1]) if capability else None
    return DeviceInfo(
        kind="cuda",
        name=name,
        architecture=f"sm_{capability[0]}{capability[1]}"
        if capability
        else str(info.get("architecture", "")),
        memory_bytes=_int(info.get("total_memory") or info.get("memory_size")),
        cores=sms,
        compute_capability=capability,
        max_threadgroup_memory=shared,
        device_key=tuning_db.device_key("cuda", info),
        notes=tuple(notes),
    )


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_info(info: Mapping[str, Any]) -> DeviceInfo:
    backend = mtriton.current_backend_name()
    return DeviceInfo(
        kind="cpu",
        name=str(info.get("device_name") or platform.processor() or platform.machine()),
        architecture=str(info.get("architecture") or platform.machine()),
        memory_bytes=_physical_memory(),
        cores=os.cpu_count(),
        device_key=tuning_db.device_key(backend if backend not in ("metal", "cuda") else "interpreter"),
    )


def device_info() -> DeviceInfo:
    """The default MLX device: an Apple GPU, an NVIDIA GPU or the CPU.

    Returns:
        A `DeviceInfo`; figures MLX does not give come from tables of known chips (see
        `notes`), or are None.
    """
    kind = _gpu_kind()
    # mx.device_info() describes the GPU where there is one, also with the CPU as default device
    info = _mlx_device_info() if kind != "cpu" or not _has_gpu() else {}
    return {"metal": _metal_info, "cuda": _cuda_info, "cpu": _cpu_info}[kind](info)
