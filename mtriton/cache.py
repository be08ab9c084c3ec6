"""The on-disk cache: small files keyed by a hash, written atomically and checked when read.

Parallel workers may race to write the same entry; each writes a temporary file in the same
folder and renames it into place, so a reader sees either nothing or a whole file. Each file
starts with the SHA-256 of its contents: a file that a crash, a full disk or another program
damaged fails the check, is named in a warning, deleted and rebuilt, rather than served.
A folder that cannot be written (read-only, or not creatable) is said once in a warning; the
process then keeps what it compiles in memory only.

Keys come from `key_hash`; the compiler's own source is part of every key that depends on what
the compiler does (`compiler_fingerprint`), so a changed mtriton never reads what an older one
wrote.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path

from . import options

# the source files whose contents decide what the compiler emits (the shims and runtime included)
_COMPILER_SUFFIXES = (".py", ".lark", ".h", ".cpp")
_unwritable: set[Path] = set()  # folders a write failed in: the process keeps to memory there


def key_hash(*parts: object) -> str:
    """A stable hex digest of `parts` (their reprs)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()[:32]


@functools.cache
def compiler_fingerprint() -> str:
    """A digest of every source file of the `mtriton` package, computed once per process."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.suffix in _COMPILER_SUFFIXES and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()[:32]


def path_of(kind: str, key: str, suffix: str) -> Path:
    """Where the entry `key` of `kind` lives."""
    return options.cache_dir() / kind / f"{key}{suffix}"


def _checksum(body: bytes) -> bytes:
    return hashlib.sha256(body).hexdigest().encode()


def read_text(kind: str, key: str, suffix: str = ".txt") -> str | None:
    """The cached text for `key`, or None: not there, damaged (then deleted, with a warning), or
    the disk cache disabled."""
    if not options.disk_cache_enabled():
        return None
    path = path_of(kind, key, suffix)
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head, sep, body = raw.partition(b"\n")
    if sep and head == _checksum(body):
        try:
            return body.decode()
        except UnicodeDecodeError:
            pass
    discard(kind, key, suffix, "its checksum does not match its contents")
    return None


def discard(kind: str, key: str, suffix: str, why: str) -> None:
    """Deletes a damaged entry, saying which file and why; the caller rebuilds it."""
    path = path_of(kind, key, suffix)
    options.warn_once(f"mtriton cache file {path} is damaged ({why}): deleted, rebuilding it")
    try:
        path.unlink()
    except OSError:
        pass


def write_text(kind: str, key: str, text: str, suffix: str = ".txt") -> None:
    """Writes `text` for `key`. A folder that cannot be written is said once in a warning, and
    later writes are skipped: the cache is an optimization."""
    if not options.disk_cache_enabled() or options.cache_dir() in _unwritable:
        return
    path = path_of(kind, key, suffix)
    body = text.encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(_checksum(body) + b"\n" + body)
        os.replace(tmp, path)
    except OSError as err:
        _unwritable.add(options.cache_dir())
        options.warn_once(
            f"mtriton's disk cache at {options.cache_dir()} cannot be written ({err}); "
            "this process keeps compiled kernels in memory only"
        )
