"""The continuous-batching scheduler, run against a simulated engine: budgets and the block pool
hold every step, preemption follows the policy, and every request finishes with all its tokens."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mlx_primitives.generation.scheduler import Scheduler, StepPlan


def check_accounting(s: Scheduler) -> None:
    held = sum(r.blocks for r in itertools.chain(s.running, s.waiting))
    assert held + s.free_blocks == s.num_blocks
    for r in s.running:
        assert r.blocks == math.ceil(r.computed / s.block_size), r
    for r in s.waiting:
        assert r.blocks == 0 and r.computed == 0, r


def run_step(s: Scheduler, tokens: dict[int, list[int]], lengths: dict[int, int]) -> StepPlan:
    """One engine step: runs the plan, 'draws' the token each request would have had alone
    (its position), finishes requests at their max_tokens."""
    decoders = {r.id for r in s.running if not r.prefilling}
    plan = s.schedule()
    check_accounting(s)
    # every decoder runs each step (the engine decodes its batch in one call) or is preempted
    assert decoders <= {w.request.id for w in plan.work if w.count == 1} | {r.id for r in plan.preempted}
    assert plan.tokens <= s.token_budget and len(plan.work) <= s.max_batch
    assert len({w.request.id for w in plan.work}) == len(plan.work)
    for w in plan.work:
        r = w.request
        assert w.count <= s.prefill_chunk or w.count == 1
        assert w.start + w.count == r.computed <= r.known
        if w.samples:
            tokens[r.id].append(r.known)  # the token at that position, deterministic
            s.token_drawn(r)
            if r.generated == lengths[r.id]:
                s.finish(r.id)
    check_accounting(s)
    return plan


requests_strategy = st.lists(
    st.tuples(st.integers(1, 90), st.integers(1, 40), st.integers(0, 3), st.integers(0, 6)),
    min_size=1,
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(
    requests=requests_strategy,
    num_blocks=st.integers(9, 40),
    block_size=st.sampled_from([4, 16]),
    budget=st.integers(8, 64),
    chunk=st.one_of(st.none(), st.integers(1, 32)),
    policy=st.sampled_from(["fcfs", "priority"]),
)
def test_every_request_finishes_with_its_own_tokens(
    requests: list[tuple[int, int, int, int]],
    num_blocks: int,
    block_size: int,
    budget: int,
    chunk: int | None,
    policy: str,
) -> None:
    s = Scheduler(
        num_blocks, block_size, token_budget=budget, max_batch=8, prefill_chunk=chunk, policy=policy
    )
    capacity = num_blocks * block_size
    tokens: dict[int, list[int]] = {}
    lengths: dict[int, int] = {}
    prompts: dict[int, int] = {}
    pending = sorted(enumerate(requests), key=lambda item: item[1][3])  # by arrival step
    step = 0
    while pending or not s.idle:
        while pending and pending[0][1][3] <= step:
            rid, (prompt, max_tokens, priority, _) = pending.pop(0)
            max_tokens = min(max_tokens, capacity - prompt) if prompt < capacity else 0
            if max_tokens < 1:
                with pytest.raises(ValueError, match=f"request {rid}: prompt"):
                    s.add(rid, prompt, max(1, max_tokens), priority)
                continue
            s.add(rid, prompt, max_tokens, priority)
            tokens[rid], lengths[rid], prompts[rid] = [], max_tokens, prompt
        run_step(s, tokens, lengths)
        step += 1
        assert step < 20_000, "no progress"
    for rid, drawn in tokens.items():
        # the tokens it would have had alone: one per position after the prompt, none twice
        assert drawn == list(range(prompts[rid], prompts[rid] + lengths[rid])), rid


def test_decoders_keep_running_while_a_long_prompt_prefills_in_chunks() -> None:
    s = Scheduler(num_blocks=64, block_size=16, token_budget=40, max_batch=4, prefill_chunk=32)
    short = s.add(0, prompt_len=5, max_tokens=50)
    plan = s.schedule()
    assert [(w.request.id, w.count, w.samples) for w in plan.work] == [(0, 5, True)]
    s.token_drawn(short)
    long = s.add(1, prompt_len=300, max_tokens=4)
    for _ in range(10):  # 300 prompt tokens in chunks of 32
        plan = s.schedule()
        assert [(w.request.id, w.count) for w in plan.work][0] == (0, 1)  # the decoder decodes
        assert plan.work[1].request is long and plan.work[1].count <= 32
        s.token_drawn(short)
        if plan.work[1].samples:
            s.token_drawn(long)
    assert long.computed == 300 and long.generated == 1


@pytest.mark.parametrize(
    ("policy", "priorities", "first_victim"),
    [("fcfs", [0, 0, 0], 2), ("priority", [0, 5, 1], 0), ("priority", [3, 3, 3], 2)],
)
def test_preemption_takes_the_youngest_or_lowest_priority(
    policy: str, priorities: list[int], first_victim: int
) -> None:
    # three requests of 8 tokens fill 6 blocks of 4; their first decoded tokens need a 7th
    s = Scheduler(num_blocks=6, block_size=4, token_budget=32, max_batch=4, policy=policy)
    requests = [s.add(i, 8, 10, priority) for i, priority in enumerate(priorities)]
    plan = s.schedule()
    assert len(plan.work) == 3 and s.free_blocks == 0
    for r in requests:
        s.token_drawn(r)
    plan = s.schedule()
    assert [r.id for r in plan.preempted] == [first_victim]
    victim = requests[first_victim]
    assert victim.blocks == 0 and victim.computed == 0 and victim.generated == 1 and victim in s.waiting
    assert s.preemptions == 1


def test_priority_admits_the_most_important_first() -> None:
    s = Scheduler(num_blocks=4, block_size=16, token_budget=64, max_batch=1, policy="priority")
    s.add(0, 10, 5, priority=0)
    s.add(1, 10, 5, priority=9)
    assert [w.request.id for w in s.schedule().work] == [1]


def test_admission_waits_for_free_blocks() -> None:
    s = Scheduler(num_blocks=4, block_size=16, token_budget=256, max_batch=8)
    s.add(0, 48, 10)
    s.add(1, 32, 10)
    plan = s.schedule()
    assert [w.request.id for w in plan.work] == [0] and s.free_blocks == 1  # 1 needs 2 blocks
    s.finish(0)
    assert [w.request.id for w in s.schedule().work] == [1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_blocks": 0}, "num_blocks must be an int >= 1, got 0"),
        (
            {"num_blocks": 4, "token_budget": 8, "max_batch": 16},
            r"token_budget must be an int >= max_batch \(16\)",
        ),
        ({"num_blocks": 4, "prefill_chunk": 0}, "prefill_chunk must be None or an int >= 1, got 0"),
        ({"num_blocks": 4, "policy": "lifo"}, "policy must be one of fcfs, priority, got 'lifo'"),
    ],
)
def test_bad_configuration_is_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=r"\[Scheduler\] " + message):
        Scheduler(**kwargs)


def test_bad_requests_are_named_and_leave_the_others_alone() -> None:
    s = Scheduler(num_blocks=2, block_size=16)
    s.add(0, 10, 5)
    with pytest.raises(ValueError, match="request 1: the prompt is empty"):
        s.add(1, 0, 5)
    with pytest.raises(
        ValueError, match=r"request 2: prompt \(30\) \+ max_tokens \(5\) tokens exceed the cache's 32"
    ):
        s.add(2, 30, 5)
    with pytest.raises(ValueError, match="request 0 is already scheduled"):
        s.add(0, 3, 3)
    with pytest.raises(KeyError, match="unknown request id 7"):
        s.finish(7)
    assert [w.request.id for w in s.schedule().work] == [0]
