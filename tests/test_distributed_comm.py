"""The distributed layers' shared pieces on local ranks of MLX's ring backend."""

import json

import pytest

from tests.distributed.launch import launch, requires_launch

pytestmark = requires_launch


def _results(out, ranks):
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]


@pytest.mark.parametrize("ranks", [2, 3])
def test_ring_shift_moves_data_to_the_next_rank(tmp_path, ranks):
    results = _results(launch("comm_worker.py", ranks, tmp_path, "shift"), ranks)
    for rank, result in enumerate(results):
        previous = (rank - 1) % ranks
        assert result["once"] == [100.0 * previous + i for i in range(5)]
        assert result["around"] == [100.0 * rank + i for i in range(5)]
        assert result.get("threads_added", 0) == 0  # counted where Linux's /proc is


def test_ranks_that_disagree_on_shapes_get_an_error_naming_the_rank(tmp_path):
    results = _results(launch("comm_worker.py", 2, tmp_path, "disagree"), 2)
    assert "[probe] rank 1 called with (4, 4); rank 0 with (4, 3)" in results[0]["error"]
    assert "rank 0 called with (4, 3); rank 1 with (4, 4)" in results[1]["error"]


def test_a_rank_that_never_joins_times_out_with_its_rank_named(tmp_path):
    out = launch("comm_worker.py", 2, tmp_path, "absent", env={"MLX_PRIMITIVES_COLLECTIVE_TIMEOUT": "1"})
    error = json.loads((out / "rank0.json").read_text())["error"]
    assert error.startswith("[probe] rank 0 of 2: the argument check did not complete within 1 s")
