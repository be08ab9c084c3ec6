"""What the distributed layers share: the group, argument checks across ranks, the ring exchange.

Everything here runs on MLX's own collectives (`mx.distributed`: the ring backend over TCP,
MPI, NCCL with MLX's CUDA build); there is no transport of our own.

A collective in MLX blocks inside `mx.eval` until every rank has joined it, so a rank that
skips a call, or calls it with other shapes, hangs the others for ever. The layers therefore
begin with a handshake: `agree` gathers every rank's shapes (and any other integers) in one
small `all_gather`, evaluated under a deadline (`MLX_PRIMITIVES_COLLECTIVE_TIMEOUT` seconds,
default 60). A peer that never answers raises `CollectiveTimeout` naming this rank; a peer that
answers with other shapes raises `ValueError` naming that rank and both shapes. The data
collectives that follow run lazily in the caller's graph, as MLX's own sharded layers do.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Sequence

import mlx.core as mx

TIMEOUT_ENV = "MLX_PRIMITIVES_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the deadline: some rank never joined it."""


def resolve_group(group: mx.distributed.Group | None) -> mx.distributed.Group:
    """`group`, or the global group (`mx.distributed.init()`: size 1 when not launched)."""
    return group if group is not None else mx.distributed.init()


def timeout_s() -> float:
    """The handshake deadline in seconds, from `MLX_PRIMITIVES_COLLECTIVE_TIMEOUT`."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}; expected a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}; expected a positive number of seconds")
    return value


class _Pending(threading.Event):
    """One gather handed to the handshake thread: set when it has a result or an error."""

    def __init__(self, group: mx.distributed.Group, row: Sequence[int]) -> None:
        super().__init__()
        self.group, self.row = group, list(row)
        self.result: list[list[int]] | None = None
        self.error: BaseException | None = None


_requests: queue.Queue[_Pending] = queue.Queue()
_handshake_thread: threading.Thread | None = None
_start_lock = threading.Lock()


def _serve_handshakes() -> None:
    """Runs the handshakes' gathers, one at a time, on a stream of its own for the process's life.

    MLX's streams belong to the thread that made them, and each CPU stream keeps a thread of
    its own: one new thread and stream per call left one thread behind per handshake (100
    calls, 100 more threads), so one thread and one stream serve every call.
    """
    with mx.stream(mx.new_stream(mx.cpu)):
        while True:
            pending = _requests.get()
            try:
                mine = mx.array([pending.row], dtype=mx.int64)
                pending.result = mx.distributed.all_gather(mine, group=pending.group).tolist()
            except BaseException as error:  # re-raised on the caller's thread
                pending.error = error
            pending.set()


def gather_with_deadline(
    fn: str, group: mx.distributed.Group, row: Sequence[int], what: str
) -> list[list[int]]:
    """Every rank's `row` (equal lengths), gathered under the deadline; `CollectiveTimeout` past it.

    The gather runs on a daemon thread so that this thread can give up on it: MLX offers no way
    to cancel a collective, and a rank that raises lets `mlx.launch` stop the others. A gather
    that never completes holds that thread, so later handshakes time out too, as they should:
    the ranks are out of step for good.
    """
    global _handshake_thread
    deadline = timeout_s()
    with _start_lock:
        if _handshake_thread is None:
            _handshake_thread = threading.Thread(
                target=_serve_handshakes, name="collective-handshakes", daemon=True
            )
            _handshake_thread.start()
    pending = _Pending(group, row)
    _requests.put(pending)
    if not pending.wait(deadline):
        raise CollectiveTimeout(
            f"[{fn}] rank {group.rank()} of {group.size()}: {what} did not complete within "
            f"{deadline:g} s; another rank did not join it (did every rank call {fn} with the same "
            f"arguments?). {TIMEOUT_ENV} sets the deadline."
        )
    if pending.error is not None:
        # The ring backend fails a collective once a peer's socket closes: say which rank saw it.
        raise RuntimeError(
            f"[{fn}] rank {group.rank()} of {group.size()}: {what} failed: {pending.error}"
        ) from pending.error
    assert pending.result is not None
    return pending.result


def agree(fn: str, group: mx.distributed.Group, **values: Sequence[int]) -> None:
    """Every rank must pass the same integers for each name (shapes, sizes, flags).

    Raises `ValueError` naming the first rank that disagrees with this one, and
    `CollectiveTimeout` when some rank never arrives.
    """
    if group.size() == 1:
        return
    names = list(values)
    lengths = [len(values[name]) for name in names]
    flat = [len(names), *lengths, *(int(v) for name in names for v in values[name])]
    # Ranks with different argument counts still exchange equal-length vectors: pad to a bound.
    width = 64
    if len(flat) > width:
        raise ValueError(f"[{fn}] internal: {len(flat)} integers to agree on; at most {width}")
    rows = gather_with_deadline(fn, group, flat + [-1] * (width - len(flat)), "the argument check")
    me = group.rank()
    for rank, row in enumerate(rows):
        if row != rows[me]:
            raise ValueError(
                f"[{fn}] rank {rank} called with {_describe(row)}; rank {me} with "
                f"{_describe(rows[me])}: every rank must pass arrays of the same shapes"
            )


def _describe(row: list[int]) -> str:
    """The names-free rendering of one rank's agreed integers: `(4, 8), (2,)`."""
    count = row[0]
    lengths = row[1 : 1 + count]
    parts, at = [], 1 + count
    for length in lengths:
        parts.append(str(tuple(row[at : at + length])))
        at += length
    return ", ".join(parts)


def check_divides(fn: str, name: str, value: int, group: mx.distributed.Group) -> None:
    """The world size must divide `value` (heads, experts, sequence length...)."""
    size = group.size()
    if value % size:
        raise ValueError(f"[{fn}] {name} is {value}; the world size {size} must divide it")


def ring_neighbours(group: mx.distributed.Group) -> tuple[int, int]:
    """(next, previous) rank on the ring: data moves from rank r to rank r + 1."""
    rank, size = group.rank(), group.size()
    return (rank + 1) % size, (rank - 1) % size


def ring_shift(x: mx.array, group: mx.distributed.Group, after: mx.array | None = None) -> mx.array:
    """Sends `x` to the next rank and returns what the previous rank sent (same shape and dtype),
    once the exchange that returned `after` (if given) is done.

    Only neighbours talk, which is what MLX's ring backend supports for `send`/`recv`. Two orders
    matter. Between ranks: when every rank sends before it receives, blocks past the sockets'
    buffers deadlock the ring backend (16 MB blocks did on 2 ranks, 4 MB did not), every rank
    stuck in its send; so even ranks send first and odd ranks receive first, which leaves no
    cycle of waiting senders for any world size. Within a rank: the ring matches the messages
    between two ranks by their order alone, and MLX evaluates independent parts of a graph in no
    fixed order, so two exchanges in flight could swap; pass the previous exchange's result as
    `after` to chain them into the same order on every rank.
    """
    if after is not None:
        x = mx.depends([x], [after])[0]
    nxt, prev = ring_neighbours(group)
    if group.rank() % 2 == 0:
        sent = mx.distributed.send(x, nxt, group=group)
        return mx.depends([mx.distributed.recv_like(x, prev, group=group)], [sent])[0]
    received = mx.distributed.recv_like(x, prev, group=group)
    sent = mx.distributed.send(mx.depends([x], [received])[0], nxt, group=group)
    return mx.depends([received], [sent])[0]
