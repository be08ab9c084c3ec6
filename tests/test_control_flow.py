"""`break`, `continue` and early `return` in runtime control flow, on every backend, against
the same loops in Python."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from conftest import marker_line, poisoned, to_numpy

import mtriton
import mtriton.language as tl


@mtriton.jit
def _loops_kernel(x_ptr, out_ptr, n, limit):
    # one program per row of x (n columns): first index over limit, sum of the non-negative
    # values until the first over limit, and per row a nested loop whose inner break stays inner
    row = tl.program_id(0)
    first = -1
    for i in range(0, n):
        if tl.load(x_ptr + row * n + i) > limit:
            first = i
            break
    total = 0.0
    i = 0
    while i < n:
        v = tl.load(x_ptr + row * n + i)
        i += 1
        if v < 0:
            continue
        if v > limit:
            break
        total += v
    pairs = 0
    for a in range(0, n):
        for b in range(0, n):
            if b >= a:
                break
            pairs += 1
    tl.store(out_ptr + row * 3, first.to(tl.float32))
    tl.store(out_ptr + row * 3 + 1, total)
    tl.store(out_ptr + row * 3 + 2, pairs.to(tl.float32))


def _loops_reference(x: np.ndarray, limit: float) -> np.ndarray:
    out = []
    for row in x:
        first = next((i for i, v in enumerate(row) if v > limit), -1)
        total = 0.0
        for v in row:
            if v < 0:
                continue
            if v > limit:
                break
            total += v
        n = len(row)
        out.append([first, total, n * (n - 1) // 2])
    return np.array(out, dtype=np.float64)


def test_break_and_continue(backend: str, rng: np.random.Generator) -> None:
    rows, n = 5, 13
    x = np.round(rng.standard_normal((rows, n)) * 4).astype(np.float32)
    x[0] = np.abs(x[0])  # a row that never goes over the limit
    x[0][x[0] > 2] = 2
    out = poisoned((rows, 3))
    _loops_kernel[(rows,)](mx.array(x), out, n, 2.0)
    np.testing.assert_allclose(to_numpy(out), _loops_reference(x, 2.0), rtol=1e-6)


@mtriton.jit
def _clamped_copy(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    _maybe_store(x_ptr, out_ptr, offs, n)  # the helper's early return leaves the helper only
    if tl.program_id(0) * BLOCK >= n:
        return
    tl.store(out_ptr + n + offs, tl.load(x_ptr + offs, mask=offs < n) + 1.0, mask=offs < n)


@mtriton.jit
def _maybe_store(x_ptr, out_ptr, offs, n):
    if tl.min(offs, 0) >= n:
        return
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)


@mtriton.jit
def _search_kernel(x_ptr, out_ptr, n, target):
    # an early return from inside a loop: the store after the loop must not run
    for i in range(0, n):
        if tl.load(x_ptr + i) == target:
            tl.store(out_ptr, i)
            return
    tl.store(out_ptr, -1)


def test_early_return(backend: str, rng: np.random.Generator) -> None:
    n = 50
    x = rng.standard_normal(n).astype(np.float32)
    out = poisoned(2 * n + 16)
    _clamped_copy[(mtriton.cdiv(n, 16) + 2,)](mx.array(x), out, n, BLOCK=16)  # two programs past n
    got = to_numpy(out)
    np.testing.assert_array_equal(got[:n], x)
    np.testing.assert_allclose(got[n : 2 * n], x + 1, rtol=1e-6)
    found = poisoned(1, mx.int32)
    _search_kernel[(1,)](mx.array(x), found, n, float(x[17]))
    assert int(to_numpy(found)[0]) == int(np.argmax(x == x[17]))
    _search_kernel[(1,)](mx.array(x), found, n, 1000.0)
    assert int(to_numpy(found)[0]) == -1


@mtriton.jit
def _bad_kernel(x_ptr, CASE: tl.constexpr):
    if CASE == 0:
        for _ in tl.static_range(3):
            break
    else:
        if tl.load(x_ptr) > 0:
            return 1.0


@pytest.mark.parametrize(
    ("case", "message"),
    [(0, "`break` outside a runtime loop"), (1, "`return` with a value inside a runtime if/for/while")],
)
def test_control_flow_errors(case: int, message: str) -> None:
    with pytest.raises(mtriton.UnsupportedError, match=message) as info:
        _bad_kernel[(1,)](mx.zeros(1), CASE=case)
    assert "test_control_flow.py:" in str(info.value)


@mtriton.jit
def _countdown_kernel(out_ptr, n, step):
    j = 0
    for i in range(n - 1, -1, -1):  # a constant negative step
        tl.store(out_ptr + j, i)
        j += 1
    for i in range(n, 0, step):  # a runtime step, of either sign
        tl.store(out_ptr + j, i)
        j += 1
    for i in range(2**33, 2**33 + 3):  # bounds past int32: an int64 induction variable
        tl.store(out_ptr + j, (i - 2**33).to(tl.int32))
        j += 1


@pytest.mark.parametrize("step", [-3, 2])
def test_loops_count_down_and_past_int32(backend: str, step: int) -> None:
    n = 7
    expected = [*range(n - 1, -1, -1), *range(n, 0, step), 0, 1, 2]
    out = poisoned(len(expected) + 2, mx.int32)
    _countdown_kernel[(1,)](out, n, step)
    assert to_numpy(out)[: len(expected)].tolist() == expected


@mtriton.jit
def _endless(x_ptr):
    i = 0
    while tl.load(x_ptr) >= 0:  # ERR:endless
        i += 1
    tl.store(x_ptr, i.to(tl.float32))


def test_the_interpreter_stops_an_endless_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTRITON_INTERPRETER_LOOP_LIMIT", "50")
    mtriton.set_backend("interpreter")
    try:
        with pytest.raises(
            mtriton.MTritonError, match="`while` loop ran 50 iterations without ending"
        ) as info:
            _endless[(1,)](mx.zeros(1))
    finally:
        mtriton.set_backend(None)
    assert f"test_control_flow.py:{marker_line(__file__, 'endless')}" in str(info.value)
