"""The benchmark runner: every registered entry runs and checks on the CPU backends (not a timing
test), with the float64 references and with the fast ones the GPU tier uses; the fast references
agree with the float64 ones; timing budgets; `scripts/gpu_check.sh` packs one archive."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from conftest import EMULATORS, backend_unavailable_reason

import mtriton
from benchmarks import registry, runner, timing
from benchmarks.results import compare
from benchmarks.suites import _inputs, _references, load_all, tutorials

REPO = Path(__file__).parent.parent
load_all()  # registers every entry before any test swaps the registry
# Entries whose float64 reference is cheap at GPU sizes too (np.bincount of 2^26 values).
FLOAT64_ON_EVERY_TIER = {"tutorials/histogram"}
IN_PLACE = ("vector_add_inplace", "softmax_inplace", "layer_norm_inplace", "cumsum_inplace")


@pytest.fixture(autouse=True)
def restore_backend() -> None:
    # The runner selects its backend globally; later tests must see the default again.
    yield
    mtriton.set_backend(None)


def _run(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, dict[str, Any]]:
    status = runner.main(["--smoke", "--out", str(tmp_path), *args])
    table = capsys.readouterr().out
    (json_path,) = tmp_path.glob("results-*.json")
    return status, table, json.loads(json_path.read_text())


def _fast_method(key: str) -> str:
    entry = registry.REGISTRY[key]
    reference = entry.setup(**entry.sizes.smoke).fast_reference
    if reference is None:
        return "float64"
    return "float32-device" if isinstance(reference, registry.DeviceReference) else "float64-sample"


@pytest.mark.parametrize("reference", ["float64", "fast", "both"])
def test_every_entry_runs_checks_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], reference: str
) -> None:
    status, table, document = _run(tmp_path, capsys, "--backend", "interpreter", "--reference", reference)
    assert status == 0, table
    assert document["machine"]["backend"] == "interpreter"
    assert document["machine"]["mlx"] == mx.__version__
    assert document["settings"]["reference"] == reference
    assert document["settings"]["complete"] is True
    assert document["limits"]["copy_bytes_per_s"] > 0 and document["limits"]["matmul_flops_per_s"] > 0
    results = {f"{r['suite']}/{r['name']}": r for r in document["results"]}
    assert set(results) == set(registry.REGISTRY)
    assert document["results"][0]["name"] == "copy"  # measured first: the limit of the others
    assert document["limits"]["copy_bytes_per_s"] == pytest.approx(
        results["tutorials/copy"]["rate"]["builtin"]
    )
    for key, result in results.items():
        assert result["checks"]["mtriton"]["status"] == "ok", result
        assert "mtriton" in result["times"], result
        # an MLX built-in may fail on a backend (mx.quantized_matmul with N = 45 on CUDA): reported
        assert "builtin" in result["times"] or result["checks"]["builtin"]["status"] == "ERROR", result
        method = _fast_method(key) if reference == "fast" else "float64"
        assert result["reference"]["method"] == method, key
        assert ("numpy" in result["times"]) == (method == "float64"), key  # timed only when computed
        has_fast = _fast_method(key) != "float64"
        # with both, each fast reference is checked against the float64 one
        assert ("fast_reference" in result["checks"]) == (reference == "both" and has_fast), key
        assert {"setup", "reference", "mtriton"} <= set(result["elapsed_s"]), key
    for name in IN_PLACE:
        result = results[f"tutorials/{name}"]
        assert "in-place" in result["label"] and result["ratio_mtriton_to"]["fresh"] > 0, result
    for name in ("dispatch", "dispatch_busy"):
        assert "raw" in results[f"tutorials/{name}"]["excess_s_mtriton_over"]
    for key in registry.REGISTRY:
        assert key in table
    assert "plots skipped" in table or len(list(tmp_path.glob("*.png"))) == 2


@pytest.mark.parametrize("backend", EMULATORS)
def test_new_tutorial_entries_run_on_the_emulators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], backend: str
) -> None:
    """The copy kernel, the in-place launches and the dispatch entries on generated source (the
    tutorial kernels themselves are tested on every backend in tests/test_tutorials.py)."""
    if (reason := backend_unavailable_reason(backend)) is not None:
        pytest.skip(reason)
    names = ("copy", *IN_PLACE, "dispatch", "dispatch_busy")
    status, table, document = _run(
        tmp_path, capsys, "--backend", backend, "--kernel", *names, "--reference", "fast"
    )
    assert status == 0, table
    assert {r["name"] for r in document["results"]} == set(names)


@pytest.mark.parametrize("key", sorted(registry.REGISTRY))
def test_fast_reference_agrees_with_float64(key: str) -> None:
    """The fast reference is within a quarter of the check's tolerance of the float64 one (exact
    where the tolerance is 0), so a kernel it passes is within the tolerance of the truth."""
    entry = registry.REGISTRY[key]
    case = entry.setup(**entry.sizes.smoke)
    fast = case.fast_reference
    if fast is None:  # a new GPU-sized entry must not slip back to float64 on the host
        assert key in FLOAT64_ON_EVERY_TIER, f"{key} has no fast_reference"
        return
    full = case.reference()
    if isinstance(fast, registry.SampledReference):
        fast_value, full = fast.run(), fast.select(full)
    else:
        fast_value = fast.run()
    check = compare(fast_value, full, case.rtol / 4, case.atol / 4)
    assert check.status == "ok", check


@pytest.mark.parametrize(("causal", "window"), [(False, None), (True, None), (True, 5)])
def test_float32_attention_in_chunks_of_heads_matches_float64(
    monkeypatch: pytest.MonkeyPatch, causal: bool, window: int | None
) -> None:
    monkeypatch.setattr(_references, "SCORE_ELEMENTS", 2 * 19 * 23)  # two heads at a time, of six
    inputs = _inputs.Inputs()
    q, k, v = inputs.normal((2, 6, 19, 16)), inputs.normal((2, 3, 23, 16)), inputs.normal((2, 3, 23, 16))
    got = _references.attention32(q, k, v, causal, window)
    np.testing.assert_allclose(np.array(got), _references.attention64(q, k, v, causal, window), atol=2e-6)


def test_sampled_reference_catches_a_wrong_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scatter = registry.REGISTRY["gather_scatter/scatter_add"]
    monkeypatch.setattr(registry, "REGISTRY", {})

    @registry.benchmark(suite="broken", name="row_off", bound="memory", sizes=scatter.sizes, builtin="-")
    def row_off(**size: Any) -> registry.Case:
        case = scatter.setup(**size)
        launch = case.launch
        case.launch = lambda kernels, buf: (
            launch(kernels, buf) + (mx.arange(size["rows"]) == size["rows"] - 1)[:, None]
        )
        return case

    status, table, document = _run(
        tmp_path, capsys, "--suite", "broken", "--backend", "interpreter", "--reference", "fast"
    )
    assert status == 1
    (broken,) = [r for r in document["results"] if r["name"] == "row_off"]
    assert broken["reference"]["method"] == "float64-sample"
    # every element of the last row, which every sample holds
    assert broken["checks"]["mtriton"]["detail"].startswith(f"{scatter.sizes.smoke['dim']} of "), broken


@pytest.mark.parametrize("name", ["scatter_add", "scatter_add_det"])
@pytest.mark.parametrize("distinct", [None, 7])
def test_sampled_scatter_reference_is_the_float64_one_on_its_rows(name: str, distinct: int | None) -> None:
    case = registry.REGISTRY[f"gather_scatter/{name}"].setup(rows=3000, dim=8, count=5000, distinct=distinct)
    sample = case.fast_reference
    assert isinstance(sample, registry.SampledReference)
    part = sample.run()
    assert 64 < part.shape[0] < 3000  # a part of the rows
    np.testing.assert_allclose(part, sample.select(case.reference()), rtol=1e-12, atol=1e-12)
    assert compare(sample.select(case.run_mtriton()), part, case.rtol, case.atol).status == "ok"


def test_wrong_output_shows_fail_and_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "REGISTRY", {})

    @registry.benchmark(
        suite="broken",
        name="off_by_one",
        bound="memory",
        sizes=registry.Sizes({"n": 100}, (), ()),
        builtin="x + y",
    )
    def off_by_one(n: int) -> registry.Case:
        case = tutorials.vector_add(n)
        reference, fast = case.reference, case.fast_reference
        case.reference = lambda: reference() + 1
        case.fast_reference = registry.DeviceReference(lambda: fast.run() + 1, fast.why)
        return case

    for reference in ("float64", "fast"):
        status = runner.main(
            [
                "--smoke",
                "--suite",
                "broken",
                "--backend",
                "interpreter",
                "--out",
                str(tmp_path),
                "--reference",
                reference,
            ]
        )
        table = capsys.readouterr().out
        assert status == 1
        assert "FAIL: 100 of 100 off" in table


def test_both_fails_a_fast_reference_that_strays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "REGISTRY", {})

    @registry.benchmark(
        suite="broken",
        name="fast_off",
        bound="memory",
        sizes=registry.Sizes({"n": 100}, (), ()),
        builtin="x + y",
    )
    def fast_off(n: int) -> registry.Case:
        case = tutorials.vector_add(n)
        fast = case.fast_reference
        # within the kernel's tolerance, but not within a quarter of it
        case.fast_reference = registry.DeviceReference(lambda: fast.run() + 2 * case.atol / 3, fast.why)
        return case

    status, table, document = _run(
        tmp_path, capsys, "--suite", "broken", "--backend", "interpreter", "--reference", "both"
    )
    assert status == 1
    (result,) = [r for r in document["results"] if r["name"] == "fast_off"]
    assert result["checks"]["mtriton"]["status"] == "ok"
    assert result["checks"]["fast_reference"]["status"] == "FAIL"
    assert "fast_reference FAIL: " in table


def test_a_stopped_run_leaves_what_it_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    measured = runner.measure

    def measure_then_stop(entry: registry.Benchmark, *args: Any) -> Any:
        if entry.name == "softmax":  # as a time limit would stop the run
            raise KeyboardInterrupt
        return measured(entry, *args)

    monkeypatch.setattr(runner, "measure", measure_then_stop)
    with pytest.raises(KeyboardInterrupt):
        runner.main(["--smoke", "--backend", "interpreter", "--suite", "tutorials", "--out", str(tmp_path)])
    (json_path,) = tmp_path.glob("results-*.json")
    document = json.loads(json_path.read_text())
    assert document["settings"]["complete"] is False
    names = [r["name"] for r in document["results"]]
    assert names[0] == "copy" and "vector_add" in names and "softmax" not in names


def test_compare_counts_mismatches_and_nan() -> None:
    for reference in (np.array([1.0, 2.0, 3.0]), mx.array([1.0, 2.0, 3.0])):  # on the host and on the device
        assert compare(mx.array([1.0, 2.0, 3.0]), reference, 1e-6, 1e-6).status == "ok"
        assert compare(mx.array([1.0, 2.5, 3.0]), reference, 1e-6, 1e-6).detail.startswith("1 of 3 off")
        assert compare(mx.array([1.0, float("nan"), 3.0]), reference, 1e-6, 1e-6).status == "FAIL"
        assert compare(mx.array([1.0, 2.0]), reference, 1e-6, 1e-6).detail.startswith("shape")


def test_budget_times_slow_launches_one_per_eval_and_fewer_times() -> None:
    def fake(per_launch: float) -> tuple[timing.Timing, list[int]]:
        calls: list[int] = []

        def run(launches: int) -> float:
            calls.append(launches)
            return per_launch * launches

        return timing.time_batches(run, warmup=2, iters=10, launches=10, budget_s=0.5), calls

    slow, calls = fake(0.1)  # 100 ms a launch: one per eval, as many repeats as 0.5 s holds
    assert calls[:2] == [1, 1] and slow.launches_per_sample == 1
    assert len(slow.samples) == 5 and len(calls) == 2 + 1 + 5  # two probes, one more warm-up, timed
    fast, calls = fake(1e-4)  # the plan as it is
    assert fast.launches_per_sample == 10 and len(fast.samples) == 10
    floor, _ = fake(1.0)  # never fewer than MIN_ITERS samples
    assert len(floor.samples) == timing.MIN_ITERS
    first = [2.0]  # a first launch that compiles does not make a fast kernel count as slow

    def compiles_first(launches: int) -> float:
        return first.pop() if first else 1e-4 * launches

    timed = timing.time_batches(compiles_first, warmup=2, iters=10, launches=10, budget_s=0.5)
    assert timed.launches_per_sample == 10 and len(timed.samples) == 10


def test_inputs_are_seeded_and_sampled_rows_include_the_ends() -> None:
    a, b = _inputs.Inputs(), _inputs.Inputs()
    assert mx.array_equal(a.normal((5, 3), "float16"), b.normal((5, 3), "float16"))
    assert not mx.array_equal(a.normal((5, 3)), a.normal((5, 3)))  # each call takes a new key
    rows = _inputs.spread_indices(1000, 10)
    assert rows[0] == 0 and rows[-1] == 999 and len(set(rows)) == 10


def test_list_names_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--list", "--backend", "interpreter"]) == 0
    listing = capsys.readouterr().out
    for key in registry.REGISTRY:
        assert key in listing


def test_gpu_check_packs_one_archive(tmp_path: Path) -> None:
    """`gpu_check.sh` with RUN_TESTS=0 BENCH=0 runs only its packing step on what STAGE holds."""
    stage, out = tmp_path / "stage", tmp_path / "out"
    stage.mkdir()
    for name in ("tests.log", "bench.log", "results-cuda-1.json", "results-cuda-1-limits.png"):
        (stage / name).write_text(name)
    env = {**os.environ, "STAGE": str(stage), "OUT": str(out), "RUN_TESTS": "0", "BENCH": "0"}
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (archive,) = out.iterdir()  # one file comes back from the GPU machine
    assert archive.name.startswith("gpu-check-") and archive.name.endswith(".tar.gz")
    with tarfile.open(archive) as tar:
        members = {
            Path(m.name).name: tar.extractfile(m).read().decode() for m in tar.getmembers() if m.isfile()
        }
    assert set(members) == {
        "tests.log",
        "bench.log",
        "results-cuda-1.json",
        "results-cuda-1-limits.png",
        "machine.txt",
    }
    assert members["bench.log"] == "bench.log" and "mlx" in members["machine.txt"]
