"""The benchmark runner: every registered entry runs and checks on the interpreter (not a timing test)."""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mtriton
from benchmarks import registry, runner
from benchmarks.results import compare
from benchmarks.suites import tutorials  # registers its entries before any test swaps the registry


@pytest.fixture(autouse=True)
def restore_backend() -> None:
    # The runner selects its backend globally; later tests must see the default again.
    yield
    mtriton.set_backend(None)


def test_every_entry_runs_checks_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = runner.main(["--smoke", "--backend", "interpreter", "--out", str(tmp_path)])
    table = capsys.readouterr().out
    assert status == 0, table
    (json_path,) = tmp_path.glob("results-interpreter-*.json")
    document = json.loads(json_path.read_text())
    assert document["machine"]["backend"] == "interpreter"
    assert document["machine"]["mlx"] == mx.__version__
    assert document["limits"]["copy_bytes_per_s"] > 0 and document["limits"]["matmul_flops_per_s"] > 0
    assert {f"{r['suite']}/{r['name']}" for r in document["results"]} == set(registry.REGISTRY)
    for result in document["results"]:
        assert result["checks"]["mtriton"]["status"] == "ok", result
        assert {"mtriton", "numpy"} <= set(result["times"]), result
        # an MLX built-in may fail on a backend (mx.quantized_matmul with N = 45 on CUDA): reported
        assert "builtin" in result["times"] or result["checks"]["builtin"]["status"] == "ERROR", result
    for key in registry.REGISTRY:
        assert key in table
    assert "plots skipped" in table or len(list(tmp_path.glob("*.png"))) == 2


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
        reference = case.reference
        case.reference = lambda: reference() + 1
        return case

    status = runner.main(["--smoke", "--suite", "broken", "--backend", "interpreter", "--out", str(tmp_path)])
    table = capsys.readouterr().out
    assert status == 1
    assert "FAIL: 100 of 100 off" in table


def test_compare_counts_mismatches_and_nan() -> None:
    reference = np.array([1.0, 2.0, 3.0])
    assert compare(mx.array([1.0, 2.0, 3.0]), reference, 1e-6, 1e-6).status == "ok"
    assert compare(mx.array([1.0, 2.5, 3.0]), reference, 1e-6, 1e-6).detail.startswith("1 of 3 off")
    assert compare(mx.array([1.0, float("nan"), 3.0]), reference, 1e-6, 1e-6).status == "FAIL"
    assert compare(mx.array([1.0, 2.0]), reference, 1e-6, 1e-6).detail.startswith("shape")


def test_list_names_every_entry(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--list", "--backend", "interpreter"]) == 0
    listing = capsys.readouterr().out
    for key in registry.REGISTRY:
        assert key in listing
