"""Checks metal-emu's assumptions against real Metal; run it on an Apple Silicon Mac.

Each probe runs one kernel with ``mx.fast.metal_kernel`` (the GPU) and with
``metal_emu.metal_kernel`` (the CPU emulator) on the same inputs and prints
whether the outputs agree bit for bit, and if not, where they differ. The
probes cover what the emulator had to assume (docs/metal-emu.md, "To confirm
on a Mac"): attribute values in partial threadgroups, the simdgroup_matrix
lane layout, shuffles at the edges of (partial) SIMD-groups, reduction order,
and half / bfloat / fast-math numerics.

Usage (from the repository root, with mlx installed)::

    python scripts/confirm_on_mac.py

Report the printed table (and your chip and macOS version) with the results.
"""

from __future__ import annotations

import platform
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mtriton.backends import metal_emu  # noqa: E402

RNG = np.random.default_rng(7)


@dataclass
class Probe:
    """A kernel and a call, run on both sides.

    Attributes:
        name: What the probe checks.
        source: The kernel body.
        inputs: Input arrays (or scalars).
        outputs: (shape, dtype) of each output.
        grid: Threads per dimension.
        threadgroup: Threadgroup size.
        template: Template arguments.
        compile_options: MLX compile options (math mode).
        tolerance_ulp: Largest difference, in units of the last place, that
            still counts as agreement (0: bit for bit).
    """

    name: str
    source: str
    inputs: Sequence[Any]
    outputs: Sequence[tuple[tuple[int, ...], mx.Dtype]]
    grid: tuple[int, int, int]
    threadgroup: tuple[int, int, int]
    template: Sequence[tuple[str, Any]] | None = None
    compile_options: dict[str, str] | None = None
    tolerance_ulp: int = 0
    input_names: Sequence[str] = field(default_factory=list)

    def run(self, make: Callable[..., Any]) -> list[np.ndarray]:
        names = list(self.input_names) or [f"in{i}" for i in range(len(self.inputs))]
        kwargs: dict[str, Any] = {}
        if self.compile_options:
            kwargs["compile_options"] = self.compile_options
        kernel = make(
            name="probe_" + re.sub(r"\W", "_", self.name),
            input_names=names,
            output_names=[f"out{i}" for i in range(len(self.outputs))],
            source=self.source,
            **kwargs,
        )
        result = kernel(
            inputs=list(self.inputs),
            output_shapes=[s for s, _ in self.outputs],
            output_dtypes=[d for _, d in self.outputs],
            grid=self.grid,
            threadgroup=self.threadgroup,
            template=self.template,
            init_value=0,
        )
        mx.eval(result)
        return [np.array(r.view(mx.uint16) if r.dtype == mx.bfloat16 else r) for r in result]


def _ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in representable values (floats of the same width)."""
    ints = {2: np.int16, 4: np.int32, 8: np.int64}[a.itemsize]
    ia, ib = a.view(ints).astype(np.int64), b.view(ints).astype(np.int64)
    # Map sign-magnitude to a monotone integer line.
    sign = np.int64(1) << (8 * a.itemsize - 1)
    ia = np.where(ia < 0, -(ia + sign), ia)
    ib = np.where(ib < 0, -(ib + sign), ib)
    return np.abs(ia - ib)


def _compare(probe: Probe, gpu: list[np.ndarray], emu: list[np.ndarray]) -> str:
    notes = []
    for k, (g, e) in enumerate(zip(gpu, emu, strict=True)):
        same = g.view(np.uint8) == e.view(np.uint8)
        if same.all():
            continue
        if g.dtype.kind == "f" or probe.outputs[k][1] == mx.bfloat16:
            dist = _ulp_distance(g.reshape(-1), e.reshape(-1))
            if dist.max() <= probe.tolerance_ulp:
                notes.append(f"out{k}: within {dist.max()} ulp")
                continue
            notes.append(f"out{k}: {int((dist > 0).sum())} differ, max {int(dist.max())} ulp")
        else:
            notes.append(f"out{k}: {int((g != e).sum())} of {g.size} differ")
        first = int(np.flatnonzero((g != e).reshape(-1))[0])
        notes.append(f"first at {first}: gpu {g.reshape(-1)[first]!r} emu {e.reshape(-1)[first]!r}")
    if all("within" in n for n in notes):
        return "agree" + (f" ({'; '.join(notes)})" if notes else "")
    return "DIFFER: " + "; ".join(notes)


def _normal(*shape: int, dtype: Any = np.float32) -> mx.array:
    return mx.array(RNG.standard_normal(shape).astype(dtype))


def probes() -> list[Probe]:
    """The kernels that check the emulator's assumptions."""
    u32 = mx.uint32
    attributes = [
        "threads_per_threadgroup.x",
        "threads_per_threadgroup.y",
        "dispatch_threads_per_threadgroup.x",
        "thread_index_in_threadgroup",
        "simdgroup_index_in_threadgroup",
        "thread_index_in_simdgroup",
        "simdgroups_per_threadgroup",
        "dispatch_simdgroups_per_threadgroup",
        "threads_per_simdgroup",
        "threadgroups_per_grid.x",
        "quadgroups_per_threadgroup",
    ]
    attr_body = "uint o = thread_position_in_grid.y * 37 + thread_position_in_grid.x;\n" + "".join(
        f"out{k}[o] = {a};\n" for k, a in enumerate(attributes)
    )
    lanes = "uint i = thread_position_in_grid.x; float v = in0[i];\n"
    layout = """
        uint lane = thread_index_in_simdgroup;
        simdgroup_matrix<float, 8, 8> m, t;
        simdgroup_load(m, in0, 16, ulong2(8, 0));
        simdgroup_load(t, in0, 16, ulong2(8, 0), true);
        simdgroup_float8x8 d = simdgroup_float8x8(2.0f);
        simdgroup_float8x8 f = make_filled_simdgroup_matrix<float, 8, 8>(3.0f);
        out0[lane * 2] = m.thread_elements()[0];
        out0[lane * 2 + 1] = m.thread_elements()[1];
        out1[lane * 2] = t.thread_elements()[0];
        out1[lane * 2 + 1] = t.thread_elements()[1];
        out2[lane * 2] = d.thread_elements()[0] + f.thread_elements()[1];
        out2[lane * 2 + 1] = d.thread_elements()[1];
        simdgroup_store(m, out3, 8, ulong2(0, 0), true);
    """
    mma = """
        simdgroup_matrix<T, 8, 8> a, b, c;
        simdgroup_load(a, in0, 8);
        simdgroup_load(b, in1, 8);
        simdgroup_load(c, in2, 8);
        simdgroup_multiply_accumulate(c, a, b, c);
        simdgroup_store(c, out0, 8);
    """
    cancel = np.tile(np.array([1e8, 1, -1e8, 1], np.float32), 8) * RNG.uniform(0.5, 1.5, 32).astype(
        np.float32
    )
    math_body = (
        "uint i = thread_position_in_grid.x; float x = in0[i];\n"
        "out0[i] = metal::exp(x); out1[i] = metal::log(metal::abs(x)); out2[i] = metal::tanh(x);\n"
        "out3[i] = metal::sin(x * 10); out4[i] = metal::rsqrt(metal::abs(x)); "
        "out5[i] = metal::pow(metal::abs(x), 1.7f);\n"
    )
    math_outputs = [((1001,), mx.float32)] * 6
    wide = _normal(1001) * 4
    return [
        Probe(
            "partial threadgroup attributes",
            attr_body,
            [],
            [((11, 37), u32)] * len(attributes),
            (37, 11, 1),
            (16, 4, 1),
        ),
        Probe(
            "simdgroup_matrix layout and transpose",
            layout,
            [mx.arange(128, dtype=mx.float32)],
            [((64,), mx.float32)] * 3 + [((64,), mx.float32)],
            (32, 1, 1),
            (32, 1, 1),
        ),
        Probe(
            "mma float",
            mma,
            [_normal(8, 8), _normal(8, 8), _normal(8, 8)],
            [((8, 8), mx.float32)],
            (32, 1, 1),
            (32, 1, 1),
            template=[("T", mx.float32)],
        ),
        Probe(
            "mma half",
            mma,
            [_normal(8, 8, dtype=np.float16) for _ in range(3)],
            [((8, 8), mx.float16)],
            (32, 1, 1),
            (32, 1, 1),
            template=[("T", mx.float16)],
        ),
        Probe(
            "shuffles at the edges of partial SIMD-groups",
            lanes + "out0[i] = simd_shuffle_down(v, 3); out1[i] = simd_shuffle_up(v, 3);\n"
            "out2[i] = simd_shuffle_xor(v, 5); out3[i] = simd_shuffle(v, (thread_index_in_simdgroup + 7) % 32);\n"
            "out4[i] = simd_shuffle_rotate_down(v, 2); out5[i] = simd_prefix_exclusive_sum(v);\n"
            "out6[i] = simd_sum(v); out7[i] = simd_broadcast_first(v);",
            [_normal(80)],
            [((80,), mx.float32)] * 8,
            (80, 1, 1),
            (40, 1, 1),
        ),
        Probe(
            "SIMD functions in divergent code",
            lanes + "out0[i] = 0; if (thread_index_in_simdgroup < 20) { out0[i] = simd_sum(v); }\n"
            "else { out0[i] = simd_max(v); }",
            [_normal(64)],
            [((64,), mx.float32)],
            (64, 1, 1),
            (64, 1, 1),
        ),
        Probe(
            "simd_sum order (cancellation)",
            lanes + "out0[i] = simd_sum(v);",
            [mx.array(cancel)],
            [((32,), mx.float32)],
            (32, 1, 1),
            (32, 1, 1),
        ),
        Probe(
            "half arithmetic and unsuffixed literals",
            "uint i = thread_position_in_grid.x; half x = in0[i], y = in1[i];\n"
            "out0[i] = x * y + x; out1[i] = metal::exp(x); out2[i] = in2[i] * 0.1;\n"
            "out3[i] = half(in2[i]) / 3.0h; out4[i] = metal::min(in2[i] / 0.0f * 0.0f, 1.0f);",
            [_normal(513, dtype=np.float16), _normal(513, dtype=np.float16), _normal(513)],
            [
                ((513,), mx.float16),
                ((513,), mx.float16),
                ((513,), mx.float32),
                ((513,), mx.float16),
                ((513,), mx.float32),
            ],
            (513, 1, 1),
            (64, 1, 1),
        ),
        Probe(
            "bfloat arithmetic",
            "uint i = thread_position_in_grid.x; bfloat16_t x = in0[i], y = in1[i];\n"
            "out0[i] = x * y + x; out1[i] = bfloat16_t(float(x) / 3.0f);",
            [_normal(257).astype(mx.bfloat16), _normal(257).astype(mx.bfloat16)],
            [((257,), mx.bfloat16)] * 2,
            (257, 1, 1),
            (64, 1, 1),
        ),
        Probe(
            "math, safe mode",
            math_body,
            [wide],
            math_outputs,
            (1001, 1, 1),
            (256, 1, 1),
            compile_options={"math_mode": "safe"},
            tolerance_ulp=4,
        ),
        Probe(
            "math, fast mode",
            math_body,
            [wide],
            math_outputs,
            (1001, 1, 1),
            (256, 1, 1),
            compile_options={"math_mode": "fast"},
            tolerance_ulp=4,
        ),
    ]


def main() -> int:
    """Runs every probe on both sides and prints the table."""
    if not mx.metal.is_available():
        print("Metal is not available here: run this on an Apple Silicon Mac.")
        return 1
    print(f"{platform.platform()} | {platform.machine()} | mlx {mx.__version__}")
    failures = 0
    for probe in probes():
        try:
            gpu = probe.run(mx.fast.metal_kernel)
            emu = probe.run(metal_emu.metal_kernel)
            verdict = _compare(probe, gpu, emu)
        except Exception as exc:  # a probe that fails to run is itself a finding
            verdict = f"ERROR: {type(exc).__name__}: {exc}"
        failures += not verdict.startswith("agree")
        print(f"{probe.name:<46} {verdict}")
    print(f"{failures} of {len(probes())} probes disagree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
