"""Showing results: a progress bar on stderr, a fixed-width table, a JSON file and two plots."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .machine import Limits
from .results import DEVICE_IMPLEMENTATIONS, IMPLEMENTATIONS, Result

SHORT_NAMES = {
    "mtriton": "mt",
    "builtin": "mx",
    "unfused": "unf",
    "fresh": "fresh",
    "raw": "raw",
    "numpy": "np",
    "triton": "tri",
    "torch": "torch",
}
# How the `ref` column names each reference method (results.Result.reference).
REFERENCE_NAMES = {"float64": "f64", "float32-device": "f32 dev", "float64-sample": "f64 part"}


class Progress:
    """A one-line progress bar on stderr; one line per step where stderr is not a terminal."""

    WIDTH = 24

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()

    def start(self, label: str) -> None:
        """Shows that the step called `label` is running."""
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"[{bar}] {self.done + 1}/{self.total} {label}"
        if self.interactive:
            self.stream.write("\r" + line.ljust(100)[:100])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.done += 1

    def done_step(self, detail: str) -> None:
        """Shows how the step just started ended (its elapsed time), on its own line."""
        if self.interactive:
            self.stream.write("\n")
        self.stream.write(f"    {detail}\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.interactive:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def format_elapsed(result: Result) -> str:
    """One entry's wall time, its phases and mtriton's outcome, for the log as the run goes,
    e.g. `4.12 s: setup 0.20, reference 0.35, mtriton 2.10, builtin 0.51; mtriton 255.5 µs, ok`."""
    phases = ", ".join(f"{name} {seconds:.2f}" for name, seconds in result.elapsed_s.items())
    check = result.checks.get("mtriton")
    outcome = f"; mtriton {_time(result, 'mtriton')}, {check.status if check else 'unchecked'}"
    return f"{sum(result.elapsed_s.values()):.2f} s: {phases}{outcome}"


def format_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def format_rate(rate: float, bound: str) -> str:
    """Bytes/s or FLOP/s with the SI prefix that keeps the number short."""
    unit = "B/s" if bound == "memory" else "FLOP/s"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if rate >= scale:
            return f"{rate / scale:.3g} {prefix}{unit}"
    return f"{rate / 1e3:.3g} k{unit}"


def _ratio(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _excess(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e6:+.1f} µs"


def _time(result: Result, impl: str) -> str:
    return format_time(result.times[impl].median_s) if impl in result.times else "-"


def _check(result: Result) -> str:
    parts = []
    for impl, check in result.checks.items():
        detail = check.detail if len(check.detail) <= 70 else check.detail[:67] + "..."
        text = f"{check.status}: {detail}" if detail else check.status
        parts.append(text if impl == "mtriton" else f"{impl} {text}")
    return "; ".join(parts)


@dataclass(frozen=True)
class Column:
    header: str
    cell: Callable[[Result], str]
    left: bool = False


def _columns(results: list[Result], limits: Limits) -> list[Column]:
    present = [impl for impl in IMPLEMENTATIONS if any(impl in r.times for r in results)]
    columns = [
        Column("entry", lambda r: f"{r.suite}/{r.name}", left=True),
        Column("size", lambda r: r.label, left=True),
    ]
    columns += [Column(impl, lambda r, impl=impl: _time(r, impl)) for impl in present]
    columns += [
        Column(f"mt/{SHORT_NAMES[other]}", lambda r, other=other: _ratio(r.ratio("mtriton", other)))
        for other in present
        if other != "mtriton"
    ]
    if "raw" in present:
        columns.append(Column("mt-raw", lambda r: _excess(r.excess_s("mtriton", "raw"))))
    columns.append(
        Column("mt rate", lambda r: format_rate(r.rate("mtriton"), r.bound) if "mtriton" in r.times else "-")
    )
    columns += [
        Column(f"{SHORT_NAMES[impl]} %lim", lambda r, impl=impl: _percent(r.fraction_of_limit(impl, limits)))
        for impl in present
        if impl in DEVICE_IMPLEMENTATIONS
    ]
    columns.append(
        Column("ref", lambda r: REFERENCE_NAMES.get(r.reference.get("method", ""), "-"), left=True)
    )
    columns.append(Column("check", _check, left=True))
    return columns


def format_table(results: list[Result], limits: Limits, title: str) -> str:
    """The results as a fixed-width table, headed by the machine's limits and a legend.

    Args:
        results: One row each.
        limits: The limits the %lim columns divide by.
        title: The first line (backend, device, mode).

    Returns:
        The table, lines joined by newlines.
    """
    columns = _columns(results, limits)
    cells = [[column.cell(r) for column in columns] for r in results]
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        padded = [v.ljust(w) if c.left else v.rjust(w) for v, w, c in zip(values, widths, columns)]
        return "  ".join(padded).rstrip()

    header = line([c.header for c in columns])
    return "\n".join(
        [
            title,
            f"limits on {limits.device}: copy {format_rate(limits.copy_bytes_per_s, 'memory')} ({limits.copy_method}); "
            f"matmul {format_rate(limits.matmul_flops_per_s, 'compute')} ({limits.matmul_method})",
            "times: median per call. mt/X: mtriton time / X time (above 1: mtriton slower). "
            "%lim: share of copy bandwidth (memory-bound) or matmul rate (compute-bound). "
            "mt-raw: mtriton time minus the raw launch's. ref: f64 = float64 NumPy, every element; "
            "f32 dev = float32 MLX on the device; f64 part = float64 on a sample (JSON: which).",
            "",
            header,
            "-" * len(header),
            *(line(row) for row in cells),
        ]
    )


def write_json(
    path: Path, *, info: dict[str, Any], settings: dict[str, Any], limits: Limits, results: list[Result]
) -> None:
    """Writes machine info, run settings, limits and every result to `path`."""
    document = {
        "machine": info,
        "settings": settings,
        "limits": limits.to_json(),
        "results": [r.to_json(limits) for r in results],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def write_plots(
    folder: Path, stem: str, results: list[Result], limits: Limits, backend: str
) -> list[Path] | str:
    """Bar charts of % of machine limit and of time ratios against the built-in.

    Args:
        folder: Where the PNG files go.
        stem: Start of their names, `<stem>-limits.png` and `<stem>-ratios.png`.
        results: The rows to plot; rows without mtriton timings are left out.
        limits: The limits the first chart divides by.
        backend: Named in the titles.

    Returns:
        The written files, or why none were written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed; must precede pyplot
        import matplotlib.pyplot as plt
    except ImportError:
        return "plots skipped: matplotlib is not installed (pip install matplotlib)"
    rows = [r for r in results if "mtriton" in r.times]
    if not rows:
        return "plots skipped: no mtriton timings"
    labels = [f"{r.name} {r.label}" for r in rows]
    height = 0.8
    figure_height = 1.5 + 0.45 * len(rows)

    def bars(ax: Any, series: dict[str, list[float | None]]) -> None:
        step = height / len(series)
        for i, (name, values) in enumerate(series.items()):
            drawn = [(y - height / 2 + (i + 0.5) * step, v) for y, v in enumerate(values) if v is not None]
            ax.barh([y for y, _ in drawn], [v for _, v in drawn], height=step, label=name)
        ax.set_yticks(range(len(rows)), labels)
        ax.invert_yaxis()
        ax.legend(loc="lower right")

    written = []
    impls = [impl for impl in DEVICE_IMPLEMENTATIONS if any(impl in r.times for r in rows)]
    fig, ax = plt.subplots(figsize=(10, figure_height), layout="constrained")
    bars(ax, {impl: [_scaled(r.fraction_of_limit(impl, limits), 100) for r in rows] for impl in impls})
    ax.set_xlabel("% of copy bandwidth (memory-bound) or matmul rate (compute-bound)")
    ax.set_title(f"{backend}: share of the machine's limits")
    written.append(folder / f"{stem}-limits.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    others = [
        impl for impl in ("builtin", "fresh", "raw", "triton", "torch") if any(impl in r.times for r in rows)
    ]
    fig, ax = plt.subplots(figsize=(10, figure_height), layout="constrained")
    bars(ax, {f"mtriton / {other}": [r.ratio("mtriton", other) for r in rows] for other in others})
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("mtriton time / other time (log scale; right of 1: mtriton slower)")
    ax.set_title(f"{backend}: mtriton against the others")
    written.append(folder / f"{stem}-ratios.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)
    return written
