"""Scaling of the distributed layers over local ranks: `python -m benchmarks.distributed`.

    python -m benchmarks.distributed [--ranks 1,2] [--quick] [--cases moe_ep,tp_mlp] [--device cpu]
        [--json PATH]

For each rank count this runs its own rank side (`--rank-side`) on that many local processes,
under `mlx.launch --backend ring` (one plain process for 1 rank: a group of size 1), and prints
one row per case and rank count: the time per step (the slowest rank's), the throughput (the
case's work over all ranks per second), the scaling efficiency against 1 rank
(`throughput_n / (n * throughput_1)`: 1.0 is linear) and the bytes each rank exchanged per step.

Cases come from the modules `benchmarks/distributed_*.py`, each exposing
`CASES: dict[str, Callable[[mx.distributed.Group, bool], dict]]`: called with the group and
`quick` on every rank, a case returns at least `{"seconds", "work", "unit", "bytes_exchanged"}`
(seconds per step on this rank, the work of one step over all ranks, its unit, bytes this rank
sent per step). On this CPU machine the ranks share its cores, so the numbers are a report of
the exchange's cost, not of a cluster's scaling.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx

ROOT = Path(__file__).resolve().parents[1]
Case = Callable[[mx.distributed.Group, bool], dict]


def load_cases() -> dict[str, Case]:
    """Every `CASES` entry of `benchmarks/distributed_*.py`, by case name."""
    cases: dict[str, Case] = {}
    for path in sorted((ROOT / "benchmarks").glob("distributed_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        for name, fn in module.CASES.items():
            if name in cases:
                raise ValueError(
                    f"[benchmarks.distributed] case {name!r} is defined twice (again in {path.name})"
                )
            cases[name] = fn
    return cases


def rank_side(out: Path, names: list[str], quick: bool, device: str) -> None:
    """Runs the cases on this rank and writes `rank<r>.json`."""
    if device:
        mx.set_default_device(getattr(mx, device))
    group = mx.distributed.init()
    cases = load_cases()
    results = {}
    for name in names:
        result = cases[name](group, quick)
        missing = {"seconds", "work", "unit", "bytes_exchanged"} - set(result)
        if missing:
            raise ValueError(f"[benchmarks.distributed] case {name!r} returned no {sorted(missing)}")
        results[name] = result
    (out / f"rank{group.rank()}.json").write_text(json.dumps(results))


def free_port_base(count: int) -> int:
    """A port p such that p .. p + count - 1 were free a moment ago (the ring listens on them;
    tests/distributed/launch.py takes its ports here too)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        try:
            for port in range(base, base + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("[benchmarks.distributed] no run of free local ports found")


def run_ranks(ranks: int, names: list[str], quick: bool, device: str, timeout: float) -> list[dict]:
    """Every rank's results of the cases on `ranks` local ranks."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        side = [
            sys.executable,
            "-m",
            "benchmarks.distributed",
            "--rank-side",
            str(out),
            "--cases",
            ",".join(names),
        ]
        side += ["--quick"] if quick else []
        side += ["--device", device] if device else []
        if ranks == 1:
            command = side
        else:
            launcher = shutil.which("mlx.launch")
            if launcher is None:
                raise SystemExit("[benchmarks.distributed] mlx.launch is not installed: only --ranks 1 runs")
            port = str(free_port_base(ranks))
            command = [launcher, "-n", str(ranks), "--backend", "ring", "--starting-port", port, *side]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
        files = [out / f"rank{r}.json" for r in range(ranks)]
        # mlx.launch exits 0 when a rank fails; a rank that failed wrote no file.
        if done.returncode != 0 or not all(f.exists() for f in files):
            raise SystemExit(f"[benchmarks.distributed] {ranks} ranks failed:\n{done.stdout}\n{done.stderr}")
        return [json.loads(f.read_text()) for f in files]


def table(rows: list[dict]) -> str:
    width = max([4, *(len(row["case"]) for row in rows)])
    header = f"{'case':<{width}} {'ranks':>5} {'ms/step':>10} {'throughput':>22} {'efficiency':>10} {'bytes/step/rank':>16}"
    lines = [header, "-" * len(header)]
    for row in rows:
        throughput = f"{row['throughput']:.4g} {row['unit']}"
        lines.append(
            f"{row['case']:<{width}} {row['ranks']:>5} {1e3 * row['seconds']:>10.3f} {throughput:>22} "
            f"{row['efficiency']:>10.2f} {row['bytes_exchanged']:>16,}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.distributed", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one timed step (a smoke run)")
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument(
        "--device", choices=("cpu", "gpu"), help="MLX's device on every rank (default: MLX's)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per rank count")
    parser.add_argument("--rank-side", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    known = load_cases()
    names = [name for name in args.cases.split(",") if name] or list(known)
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {sorted(known)}")
    if args.rank_side is not None:
        rank_side(args.rank_side, names, args.quick, args.device or "")
        return 0
    counts = sorted({int(r) for r in args.ranks.split(",")})
    if not counts or counts[0] < 1:
        parser.error(f"--ranks must be positive integers; got {args.ranks!r}")
    rows, base = [], {}
    for ranks in counts:
        results = run_ranks(ranks, names, args.quick, args.device or "", args.timeout)
        for name in names:
            per_rank = [result[name] for result in results]
            seconds = max(r["seconds"] for r in per_rank)  # a step ends when its slowest rank does
            throughput = per_rank[0]["work"] / seconds
            base.setdefault(name, (ranks, throughput))
            first_ranks, first_throughput = base[name]
            rows.append({
                "case": name, "ranks": ranks, "seconds": seconds, "work": per_rank[0]["work"],
                "unit": per_rank[0]["unit"], "throughput": throughput,
                "efficiency": throughput * first_ranks / (ranks * first_throughput),
                "bytes_exchanged": max(r["bytes_exchanged"] for r in per_rank),
                "details": {k: v for k, v in per_rank[0].items() if k not in {"seconds", "work", "unit", "bytes_exchanged"}},
            })  # fmt: skip
    # Local ranks share this machine's cores (and any other load on it): say how many there were.
    machine = {"cpu_count": os.cpu_count(), "load_average": os.getloadavg()[0]}
    print(table(rows))
    print(f"{machine['cpu_count']} CPU cores, load average {machine['load_average']:.1f} at the end")
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "machine": machine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
