"""The on-disk cache: small files keyed by a hash, written atomically.

Parallel workers may race to write the same entry; each writes a temporary
file in the same folder and renames it into place, so a reader sees either
nothing or a whole file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from . import options


def key_hash(*parts: object) -> str:
    """A stable hex digest of `parts` (their reprs)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


def _path(kind: str, key: str, suffix: str) -> Path:
    return options.cache_dir() / kind / f"{key}{suffix}"


def read_text(kind: str, key: str, suffix: str = ".txt") -> str | None:
    """The cached text for `key`, or None (also when the disk cache is disabled)."""
    if not options.disk_cache_enabled():
        return None
    try:
        return _path(kind, key, suffix).read_text()
    except OSError:
        return None


def write_text(kind: str, key: str, text: str, suffix: str = ".txt") -> None:
    """Writes `text` for `key`; failures to write are ignored (the cache is an optimization)."""
    if not options.disk_cache_enabled():
        return
    path = _path(kind, key, suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        pass
