"""Rank side of tests/test_distributed_comm.py: the ring shift and the cross-rank argument check."""

import json
import sys
import time
from pathlib import Path

import mlx.core as mx
from mlx_primitives.distributed import CollectiveTimeout
from mlx_primitives.distributed._comm import agree, resolve_group, ring_shift


def _os_threads() -> int:
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("Threads:")).split()[1])


out, case = Path(sys.argv[1]), sys.argv[2]
group = resolve_group(None)
rank, size = group.rank(), group.size()
result: dict = {}
if case == "shift":
    x = mx.arange(5, dtype=mx.float32) + 100 * rank
    once = ring_shift(x, group)
    around = x
    for _ in range(size):
        around = ring_shift(around, group)
    result = {"once": once.tolist(), "around": around.tolist()}
    # Repeated handshakes reuse one thread and stream: no OS thread is left behind per call
    # (counted from Linux's /proc; elsewhere not counted).
    agree("probe", group, x=(1,))
    if Path("/proc/self/status").exists():
        before = _os_threads()
        for _ in range(20):
            agree("probe", group, x=(1,))
        result["threads_added"] = _os_threads() - before
elif case == "disagree":
    try:
        agree("probe", group, x=(4, 3 + (rank == size - 1)))
    except ValueError as error:
        result = {"error": str(error)}
elif case == "absent":
    if rank != 0:
        time.sleep(4)  # present, but never joining, for longer than rank 0's deadline
    else:
        try:
            agree("probe", group, x=(4,))
        except CollectiveTimeout as error:
            result = {"error": str(error)}
(out / f"rank{rank}.json").write_text(json.dumps(result))
