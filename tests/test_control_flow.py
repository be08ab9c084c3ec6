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


@mtriton.jit
def _static_search_kernel(x_ptr, out_ptr, target):
    # an early return inside an unrolled loop: the copies after it must not store
    for i in tl.static_range(8):
        tl.store(out_ptr + i, i)
        if tl.load(x_ptr + i) == target:
            return


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
    stored = poisoned(8, mx.int32)
    _static_search_kernel[(1,)](mx.array(x), stored, float(x[3]))
    unwritten = int(to_numpy(poisoned(1, mx.int32))[0])
    assert to_numpy(stored).tolist() == [0, 1, 2, 3] + [unwritten] * 4


# ----------------------------------------------------------------------------- valued returns


@mtriton.jit
def _pick(x, n):
    if n > 0:  # n is a runtime value
        return x * 2
    return x + 1


@mtriton.jit
def _signed_pick(x, s):
    # returns in both branches of nested runtime ifs, one of them a call that returns early itself
    if s < 0:
        return -_pick(x, -s)
    elif s == 0:
        return x * 0.0
    return _pick(x, s)


@mtriton.jit
def _first_at_least(ptr, n, target):
    # a return inside a runtime `for`
    for i in range(0, n):
        if tl.load(ptr + i) >= target:
            return i
    return -1


@mtriton.jit
def _last_over(ptr, n, limit):
    # a tuple returned inside a runtime `while`, with a value accumulated before
    i = n - 1
    total = 0.0
    while i >= 0:
        v = tl.load(ptr + i)
        if v > limit:
            return i, total
        total += v
        i -= 1
    return -1, total


@mtriton.jit
def _first_over_static(ptr, limit, N: tl.constexpr):
    # a return inside an unrolled loop: the copies after it run only while it was not taken
    for i in tl.static_range(N):
        if tl.load(ptr + i) > limit:
            return i * 10
    return -10


@mtriton.jit
def _clamped_index(ptr, n, target):
    # an early return before a loop that returns too: both give the function's one result
    if n <= 0:
        return -2
    for i in range(0, n):
        if tl.load(ptr + i) == target:
            return i
    if n > 100:
        return 100
    return -1


@mtriton.jit
def _first_pair_over(ptr, n, limit):
    # a return from the inner of two runtime loops
    for i in range(0, n):
        for j in range(i + 1, n):
            if tl.load(ptr + i) + tl.load(ptr + j) > limit:
                return i * 100 + j
    return -1


@mtriton.jit
def _doubled_until(x, n, limit):
    # a block returned from inside a runtime loop that carries it
    y = x
    for i in range(0, n):
        y = y * 2.0
        if tl.max(y, 0) > limit:
            return y - i
    return y


@mtriton.jit
def _returns_kernel(x_ptr, sel_ptr, out_ptr, idx_ptr, sum_ptr, n, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    s = tl.load(sel_ptr + row)  # differs per program
    offs = tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + row * n + offs, mask=mask, other=0.0)
    tl.store(out_ptr + row * n + offs, _signed_pick(x, s), mask=mask)
    tl.store(out_ptr + (row + tl.num_programs(0)) * n + offs, _doubled_until(x, s + 3, 20.0), mask=mask)
    row_ptr = x_ptr + row * n
    target = s.to(tl.float32)
    last, total = _last_over(row_ptr, n, target)
    tl.store(idx_ptr + row * 6, _first_at_least(row_ptr, n, target))
    tl.store(idx_ptr + row * 6 + 1, last)
    tl.store(idx_ptr + row * 6 + 2, _first_over_static(row_ptr, target, 8))
    tl.store(idx_ptr + row * 6 + 3, _clamped_index(row_ptr, n - 4 * (row % 2), tl.load(row_ptr + s + 3)))
    found = 0
    for k in range(0, 3):  # calls that return early, inlined into a runtime loop
        found += _first_at_least(row_ptr, n, target + k)
    tl.store(idx_ptr + row * 6 + 4, found)
    tl.store(idx_ptr + row * 6 + 5, _first_pair_over(row_ptr, n, target + 6))
    tl.store(sum_ptr + row, total)


def _pick_reference(v: np.ndarray, m: int) -> np.ndarray:
    return v * 2 if m > 0 else v + 1


def _first_at_least_reference(row: np.ndarray, target: float) -> int:
    return next((i for i, v in enumerate(row) if v >= target), -1)


def _returns_reference(x: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, n = x.shape
    out = np.empty((2, rows, n))
    idx = np.empty((rows, 6), np.int64)
    sums = np.empty(rows)
    for r, (row, s) in enumerate(zip(x, sel)):
        out[0, r] = -_pick_reference(row, -s) if s < 0 else row * 0.0 if s == 0 else _pick_reference(row, s)
        y = row.copy()
        for i in range(s + 3):
            y = y * 2
            if y.max() > 20:
                y = y - i
                break
        out[1, r] = y
        idx[r, 0] = _first_at_least_reference(row, s)
        total, last = 0.0, -1
        for i in range(n - 1, -1, -1):
            if row[i] > s:
                last = i
                break
            total += row[i]
        idx[r, 1], sums[r] = last, total
        idx[r, 2] = next((i * 10 for i in range(8) if row[i] > s), -10)
        m, target = n - 4 * (r % 2), row[s + 3]
        idx[r, 3] = -2 if m <= 0 else next((i for i in range(m) if row[i] == target), 100 if m > 100 else -1)
        idx[r, 4] = sum(_first_at_least_reference(row, s + k) for k in range(3))
        pairs = ((i, j) for i in range(n) for j in range(i + 1, n) if row[i] + row[j] > s + 6)
        idx[r, 5] = next((i * 100 + j for i, j in pairs), -1)
    return out, idx, sums


@pytest.mark.parametrize("dtype", [mx.float32, mx.float16])
def test_valued_returns(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    rows, n = 9, 13
    x = np.round(rng.standard_normal((rows, n)) * 3)  # integers: exact in float16 through the doublings
    sel = np.array([-2, -1, 0, 1, 2, 0, 3, -3, 1], np.int32)
    out, idx, sums = poisoned((2, rows, n), dtype), poisoned((rows, 6), mx.int32), poisoned(rows, dtype)
    _returns_kernel[(rows,)](mx.array(x).astype(dtype), mx.array(sel), out, idx, sums, n, BLOCK=16)
    ref_out, ref_idx, ref_sums = _returns_reference(x, sel)
    np.testing.assert_allclose(to_numpy(out), ref_out, rtol=1e-6)
    np.testing.assert_array_equal(to_numpy(idx), ref_idx)
    np.testing.assert_allclose(to_numpy(sums), ref_sums, rtol=1e-6)


# ----------------------------------------------------------------------------- static_range exits


@mtriton.jit
def _static_exits_kernel(x_ptr, out_ptr, limit, STOP: tl.constexpr):
    row = tl.program_id(0)
    base = x_ptr + row * 8
    total = 0.0  # a runtime break: the sum until the first value over the limit
    for i in tl.static_range(8):
        v = tl.load(base + i)
        if v > limit:
            break
        total += v
    positive = 0.0  # a runtime continue: the sum of the non-negative values
    for i in tl.static_range(8):
        v = tl.load(base + i)
        if v < 0:
            continue
        positive += v
    part = 0.0  # constexpr break and continue: the even columns below STOP
    for i in tl.static_range(8):
        if i == STOP:
            break
        if i % 2 == 1:
            continue
        part += tl.load(base + i)
    count = 0  # an unrolled loop in a runtime one: its break leaves the inner loop only
    for j in range(0, 3):
        for i in tl.static_range(8):
            if i > j + row:
                break
            count += 1
    tl.store(out_ptr + row * 4, total)
    tl.store(out_ptr + row * 4 + 1, positive)
    tl.store(out_ptr + row * 4 + 2, part)
    tl.store(out_ptr + row * 4 + 3, count.to(tl.float32))


def _static_exits_reference(x: np.ndarray, limit: float, stop: int) -> np.ndarray:
    out = []
    for r, row in enumerate(x):
        total = 0.0
        for v in row:
            if v > limit:
                break
            total += v
        count = sum(min(8, j + r + 1) for j in range(3))
        out.append([total, row[row >= 0].sum(), row[:stop:2].sum(), count])
    return np.array(out)


@pytest.mark.parametrize("stop", [3, 8])
def test_static_range_break_and_continue(backend: str, rng: np.random.Generator, stop: int) -> None:
    rows = 6
    x = np.round(rng.standard_normal((rows, 8)) * 4).astype(np.float32)
    out = poisoned((rows, 4))
    _static_exits_kernel[(rows,)](mx.array(x), out, 2.0, STOP=stop)
    np.testing.assert_allclose(
        to_numpy(out), _static_exits_reference(x.astype(np.float64), 2.0, stop), rtol=1e-6
    )


@mtriton.jit
def _constexpr_break_kernel(x_ptr, STOP: tl.constexpr):
    for i in tl.static_range(16):
        if i == STOP:
            break
        tl.store(x_ptr + i, 1.0)


def test_a_constexpr_break_stops_unrolling() -> None:
    entry = _constexpr_break_kernel.warmup(mx.zeros(16), STOP=5, grid=(1,))
    assert entry.asm["ir"].count(" store ") == 5


# ----------------------------------------------------------------------------- errors


@mtriton.jit
def _mismatched(x, n):
    if n > 0:
        return x * 2
    return 1  # ERR:mismatched


@mtriton.jit
def _valueless_then_valued(x, n):
    if n > 0:
        return
    return x  # ERR:valueless


@mtriton.jit
def _falls_off(x, n):
    if n > 0:  # ERR:falls_off
        return x


@mtriton.jit
def _returns_pointer(p, n):
    if n > 0:
        return p + 1  # ERR:pointer
    return p


@mtriton.jit
def _bad_kernel(x_ptr, CASE: tl.constexpr):
    offs = tl.arange(0, 16)
    n = tl.load(x_ptr)
    if CASE == 0:
        tl.store(x_ptr + offs, _mismatched(tl.load(x_ptr + offs), n))
    elif CASE == 1:
        tl.store(x_ptr + offs, _valueless_then_valued(tl.load(x_ptr + offs), n))
    elif CASE == 2:
        tl.store(x_ptr + offs, _falls_off(tl.load(x_ptr + offs), n))
    else:
        tl.store(_returns_pointer(x_ptr, n), 1.0)


_ERRORS = [
    (mtriton.KernelTypeError, r"`_mismatched` returns i32 here but <16xf32> at line \d+", "mismatched"),
    (mtriton.KernelTypeError, r"returns <16xf32> here but nothing at line \d+", "valueless"),
    (mtriton.KernelTypeError, r"`_falls_off` returns a value at line \d+ but may reach its end", "falls_off"),
    (mtriton.UnsupportedError, r"returning a pointer \(\*f32\) from inside runtime control flow", "pointer"),
]


@pytest.mark.parametrize("case", range(len(_ERRORS)))
def test_control_flow_errors(case: int) -> None:
    error, message, tag = _ERRORS[case]
    with pytest.raises(error, match=message) as info:
        _bad_kernel[(1,)](mx.zeros(16), CASE=case)
    assert f"test_control_flow.py:{marker_line(__file__, tag)}" in str(info.value)


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
