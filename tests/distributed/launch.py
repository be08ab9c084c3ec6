"""Runs a worker script on several local ranks with `mlx.launch` (ring backend) and collects results.

Each rank of a worker writes `rank<r>.npz` (or `.json`) into the folder it gets as its first
argument; `launch` returns that folder once every rank has exited with status 0, and fails
the test with the ranks' output otherwise (mlx.launch itself exits 0 when a rank fails). Launches pick free ports, so pytest-xdist workers
can launch at the same time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.distributed import free_port_base

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = shutil.which("mlx.launch")

requires_launch = pytest.mark.skipif(LAUNCHER is None, reason="mlx.launch is not installed")


def launch(
    script: str, ranks: int, out: Path, *args: str, timeout: float = 180, env: dict | None = None
) -> Path:
    """Runs `tests/distributed/<script>` on `ranks` local ranks; returns `out` with their files."""
    out.mkdir(parents=True, exist_ok=True)
    command = [
        LAUNCHER,
        "-n",
        str(ranks),
        "--backend",
        "ring",
        "--starting-port",
        str(free_port_base(ranks)),
        sys.executable,
        str(ROOT / "tests" / "distributed" / script),
        str(out),
        *args,
    ]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    environment.update(env or {})
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    except subprocess.TimeoutExpired as expired:
        pytest.fail(f"{script} on {ranks} ranks ran past {timeout} s:\n{expired.stdout}\n{expired.stderr}")
    # mlx.launch exits 0 even when a rank fails; it prints a warning per rank that exited non-zero.
    if done.returncode != 0 or "exited with code" in done.stdout + done.stderr:
        pytest.fail(f"{script} on {ranks} ranks failed:\n{done.stdout}\n{done.stderr}")
    return out
