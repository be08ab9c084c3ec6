"""The tuning database: the best `Config` per device and kernel, kept across processes and
machines, which `@autotune(..., use_database=True)` reads before it benchmarks.

An entry is found by two keys:

- the device key, `backend:...`: `cuda:sm_90:NVIDIA H200`, `metal:applegpu_g15s`,
  `cpu:interpreter` (the emulators are `cpu:metal-emu`, `cpu:cuda-emu`: timing an emulator says
  nothing about a GPU). A lookup tries the device, then its family (`cuda:sm_90`,
  `metal:applegpu_g15`: the same chip generation, any tier or board), so shipped defaults can
  be written once per family;
- the kernel key, `name:source hash:key values`: the kernel's own source text (not the
  compiler's: an mtriton upgrade keeps its entries, an edited kernel does not) and the values of
  the autotune `key` arguments with every argument's dtype.

Three files are read, the first hit wins: the user's (`MTRITON_TUNING_DB=path`, read and
written), the cache's (`<MTRITON_CACHE_DIR>/tuning/tuning_db.json`, written after each search
unless MTRITON_TUNING_DB is set or the disk cache is disabled) and the package's
(`tuning_defaults.json` next to this file, read only).

Writes are safe from several processes at once: under an exclusive lock on `<file>.lock` the
writer reads the file again, merges its entry in and renames a temporary file over it, so no
entry another process wrote in between is lost and a reader sees a whole file or the previous
one. A file that is not a database (damaged, hand-edited wrong) is named in a warning and
treated as empty; the next write rebuilds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx

from .. import options
from ..backends import current_backend_name
from ..errors import LaunchError

FORMAT = "mtriton-tuning-db"
VERSION = 1
DEFAULTS_PATH = Path(__file__).with_name("tuning_defaults.json")
DEVICE_KINDS = ("cuda", "metal", "cpu")


# --------------------------------------------------------------------------------- keys


def _device_info() -> dict[str, Any]:
    try:
        return dict(mx.device_info())
    except (AttributeError, RuntimeError, TypeError):
        return {}


def device_key(backend: str | None = None, info: dict[str, Any] | None = None) -> str:
    """The device key of `backend` (default: the current one) on this machine.

    Args:
        backend: An mtriton backend name.
        info: `mx.device_info()`'s dict, read when not given.

    Returns:
        `cuda:sm_<cc>:<device name>`, `metal:<architecture>` or `cpu:<backend>`.
    """
    backend = backend or current_backend_name()
    if backend not in ("cuda", "metal"):
        return f"cpu:{backend}"
    info = _device_info() if info is None else info
    if backend == "metal":
        return f"metal:{info.get('architecture') or 'unknown'}"
    major, minor = info.get("compute_capability_major"), info.get("compute_capability_minor")
    if major is not None:
        arch = f"sm_{int(major)}{int(minor or 0)}"
    else:
        arch = str(info.get("architecture") or "sm_unknown").rstrip("a")
    return f"cuda:{arch}:{info.get('device_name') or 'unknown'}"


def check_device_key(key: str) -> str:
    """`key` if it is a device key, else a LaunchError saying what one looks like."""
    kind, sep, rest = key.partition(":") if isinstance(key, str) else ("", "", "")
    if kind not in DEVICE_KINDS or not sep or not rest:
        raise LaunchError(
            f"[tuning_db] device key must be 'cuda:sm_XY[:name]', 'metal:<architecture>' or "
            f"'cpu:<backend>', got {key!r}"
        )
    return key


def family_keys(key: str) -> list[str]:
    """The keys a lookup for device `key` tries, most specific first."""
    kind, _, rest = check_device_key(key).partition(":")
    if kind == "cuda" and ":" in rest:
        return [key, f"cuda:{rest.split(':')[0]}"]
    if kind == "metal" and rest.startswith("applegpu_g") and rest[-1].isalpha():
        return [key, f"metal:{rest[:-1]}"]  # the tier letter (g, s, c, d) dropped
    return [key]


def source_hash(src: str) -> str:
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def kernel_key(name: str, src: str, key_values: tuple[Any, ...]) -> str:
    """`name:source hash:key values`: what tells one kernel's tuning problem from another."""
    return f"{name}:{source_hash(src)}:{key_values!r}"


def config_record(config: Any) -> dict[str, Any]:
    """A `Config` as JSON: its meta-parameters and its launch options."""
    return json.loads(json.dumps({"kwargs": config.kwargs, **config._launch_items()}))


# --------------------------------------------------------------------------------- files


def _empty() -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "devices": {}}


class TuningDatabase:
    """One database file: device key -> kernel key -> entry (`{"config": ..., ...}`).

    Args:
        path: The JSON file; it need not exist yet.
        writable: Whether `record` may write it (the package's defaults are not).
    """

    def __init__(self, path: str | os.PathLike[str], writable: bool = True) -> None:
        self.path = Path(path)
        self.writable = writable

    def __repr__(self) -> str:
        return f"TuningDatabase({str(self.path)!r}{'' if self.writable else ', read-only'})"

    def load(self) -> dict[str, Any]:
        """The whole database; empty (with a warning) where the file is not one."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return _empty()
        except OSError as err:
            options.warn_once(f"mtriton tuning database {self.path} cannot be read ({err}): ignored")
            return _empty()
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise ValueError(f"not format {FORMAT!r} version {VERSION}")
            if not isinstance(data.get("devices"), dict) or not all(
                isinstance(v, dict) for v in data["devices"].values()
            ):
                raise ValueError("'devices' is not a dict of dicts")
            return data
        except (ValueError, AttributeError) as err:
            options.warn_once(
                f"mtriton tuning database {self.path} is damaged ({err}): ignored, the next write rebuilds it"
            )
            return _empty()

    def lookup(self, device: str, kernel: str) -> tuple[str, dict[str, Any]] | None:
        """(device key that matched, entry) for `kernel` on `device` or its family, or None."""
        devices = self.load()["devices"]
        for key in family_keys(device):
            entry = devices.get(key, {}).get(kernel)
            if isinstance(entry, dict) and isinstance(entry.get("config"), dict):
                return key, entry
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def record(self, device: str, kernel: str, entry: dict[str, Any]) -> None:
        """Adds or replaces one entry, merged into what the file holds now."""
        check_device_key(device)
        if not self.writable:
            raise LaunchError(f"[tuning_db] {self.path} is read-only")
        with self._locked():
            data = self.load()
            data["devices"].setdefault(device, {})[kernel] = entry
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-tuning-")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(data, f, indent=1, sort_keys=True)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


def databases() -> list[TuningDatabase]:
    """The databases a lookup reads, in order; the first writable one is where results go."""
    found = []
    user = options.tuning_db_path()
    if user is not None:
        found.append(TuningDatabase(user))
    if options.disk_cache_enabled():
        found.append(TuningDatabase(options.cache_dir() / "tuning" / "tuning_db.json", user is None))
    found.append(TuningDatabase(DEFAULTS_PATH, writable=False))
    return found


def lookup(device: str, kernel: str) -> tuple[TuningDatabase, str, dict[str, Any]] | None:
    """(database, matched device key, entry) of the first database that has `kernel`."""
    check_device_key(device)
    for db in databases():
        hit = db.lookup(device, kernel)
        if hit is not None:
            return (db, *hit)
    return None


def record(device: str, kernel: str, entry: dict[str, Any]) -> TuningDatabase | None:
    """Writes `entry` to the first writable database; returns it (None: none is writable)."""
    for db in databases():
        if db.writable:
            try:
                db.record(device, kernel, entry)
            except OSError as err:
                options.warn_once(f"mtriton tuning database {db.path} cannot be written ({err})")
                return None
            return db
    return None
