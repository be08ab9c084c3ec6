"""Continuous-batching scheduler: which requests run in the next model step, and on how many tokens.

Each step the scheduler spends a token budget. Running requests that have finished their
prompt decode one token each, every step; requests still in their prompt continue it in chunks (chunked
prefill: a long prompt never holds up the decoders for a whole step); waiting requests are
admitted, in policy order, while the batch has room, the budget has tokens and the KV pool has
free blocks for their first chunk. When a running request needs a block and none is free, the
scheduler preempts by recompute: the youngest (FCFS) or lowest-priority (then youngest) running
request gives back all its blocks and waits again at the front, its prompt now its prompt plus
what it generated, so it resumes with the same tokens it would have had. The request served
first is never the one preempted while another runs, and every request fits the pool alone
(`add` refuses one that cannot), so every request finishes.

The scheduler only counts blocks: the engine owns the pool and the model. After each step the
engine tells it which requests drew a token (`token_drawn`) and which finished (`finish`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["fcfs", "priority"]
POLICIES = ("fcfs", "priority")


@dataclass
class ScheduledRequest:
    """The scheduler's view of one request.

    Attributes:
        id: The engine's request id.
        prompt_len: Prompt tokens.
        max_tokens: The most tokens it may generate.
        priority: Larger runs first under the "priority" policy.
        arrival: Order of `add` calls (FCFS order, and the tie-break under "priority").
        generated: Tokens drawn so far.
        computed: Tokens (prompt, then generated) whose keys and values are in the cache.
        blocks: KV blocks it holds.
        preemptions: How often it was preempted.
    """

    id: int
    prompt_len: int
    max_tokens: int
    priority: int = 0
    arrival: int = 0
    generated: int = 0
    computed: int = 0
    blocks: int = 0
    preemptions: int = 0

    @property
    def known(self) -> int:
        """Tokens whose ids are known: the prompt and what was generated."""
        return self.prompt_len + self.generated

    @property
    def prefilling(self) -> bool:
        """Whether more than the last known token still has to go through the model."""
        return self.known - self.computed > 1


@dataclass(frozen=True)
class Work:
    """One request's part of a step: the model runs tokens [start, start + count) of it.

    Attributes:
        request: The request.
        start: Position of its first token in this step.
        count: Tokens in this step.
        samples: Whether the step reaches its last known token, so its output draws a token.
    """

    request: ScheduledRequest
    start: int
    count: int
    samples: bool


@dataclass
class StepPlan:
    """What one model step runs: `work` in batch order, and who was preempted to make room."""

    work: list[Work] = field(default_factory=list)
    preempted: list[ScheduledRequest] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(w.count for w in self.work)


class Scheduler:
    """Plans continuous-batching steps within a token budget and a KV block pool.

    Args:
        num_blocks: KV blocks in the pool.
        block_size: Tokens per block.
        token_budget: Tokens per step, decode and prefill together.
        max_batch: Requests per step.
        prefill_chunk: Most prompt tokens of one request per step (None: the budget).
        policy: "fcfs" (arrival order) or "priority" (larger `priority` first, then arrival).
    """

    def __init__(
        self,
        num_blocks: int,
        block_size: int = 16,
        token_budget: int = 512,
        max_batch: int = 32,
        prefill_chunk: int | None = None,
        policy: Policy = "fcfs",
    ) -> None:
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size), ("max_batch", max_batch)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"[Scheduler] {name} must be an int >= 1, got {value!r}")
        if not isinstance(token_budget, int) or token_budget < max_batch:
            raise ValueError(
                f"[Scheduler] token_budget must be an int >= max_batch ({max_batch}) so every running "
                f"request can decode each step, got {token_budget!r}"
            )
        if prefill_chunk is not None and (not isinstance(prefill_chunk, int) or prefill_chunk < 1):
            raise ValueError(f"[Scheduler] prefill_chunk must be None or an int >= 1, got {prefill_chunk!r}")
        if policy not in POLICIES:
            raise ValueError(f"[Scheduler] policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.token_budget, self.max_batch = token_budget, max_batch
        self.prefill_chunk = prefill_chunk or token_budget
        self.policy = policy
        self.waiting: list[ScheduledRequest] = []
        self.running: list[ScheduledRequest] = []
        self.free_blocks = num_blocks
        self.preemptions = 0
        self._arrivals = itertools.count()

    # ------------------------------------------------------------------ requests

    def add(self, id: int, prompt_len: int, max_tokens: int, priority: int = 0) -> ScheduledRequest:
        """Queues a request; refuses one the pool could not hold even alone."""
        if prompt_len < 1:
            raise ValueError(f"[Scheduler] request {id}: the prompt is empty")
        if max_tokens < 1:
            raise ValueError(f"[Scheduler] request {id}: max_tokens must be >= 1, got {max_tokens}")
        capacity = self.num_blocks * self.block_size
        if prompt_len + max_tokens > capacity:
            raise ValueError(
                f"[Scheduler] request {id}: prompt ({prompt_len}) + max_tokens ({max_tokens}) tokens exceed "
                f"the cache's {capacity} ({self.num_blocks} blocks of {self.block_size})"
            )
        if any(r.id == id for r in itertools.chain(self.waiting, self.running)):
            raise ValueError(f"[Scheduler] request {id} is already scheduled")
        request = ScheduledRequest(id, prompt_len, max_tokens, priority, next(self._arrivals))
        self.waiting.append(request)
        self.waiting.sort(key=self._order)
        return request

    def token_drawn(self, request: ScheduledRequest) -> None:
        """The engine drew a token for `request` in the last step."""
        request.generated += 1

    def finish(self, id: int) -> ScheduledRequest:
        """Removes a request (finished, stopped or cancelled) and frees its blocks."""
        for queue in (self.running, self.waiting):
            for request in queue:
                if request.id == id:
                    queue.remove(request)
                    self._release(request)
                    return request
        raise KeyError(f"[Scheduler] unknown request id {id}")

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    # ------------------------------------------------------------------ planning

    def schedule(self) -> StepPlan:
        """Plans the next step and reserves its blocks; the engine must run every `Work` of it."""
        plan = StepPlan()
        budget = self.token_budget
        self.running.sort(key=self._order)
        # decoders first: the engine decodes its whole batch in one call, so each one runs
        # every step (token_budget >= max_batch leaves a token for each)
        decoders = [r for r in self.running if not r.prefilling]
        for request in decoders + [r for r in self.running if r.prefilling]:
            if request not in self.running:  # preempted for an earlier request this step
                continue
            count = min(request.known - request.computed, self.prefill_chunk, budget)
            if count == 0:
                continue
            if not self._reserve(request, count, plan):
                continue
            budget -= count
            plan.work.append(self._work(request, count))
        while self.waiting and len(self.running) < self.max_batch and budget > 0:
            request = self.waiting[0]
            count = min(request.known - request.computed, self.prefill_chunk, budget)
            if self._blocks_for(request.computed + count) - request.blocks > self.free_blocks:
                break  # admission by free blocks: it waits, and so do those behind it
            self.waiting.pop(0)
            self.running.append(request)
            self._reserve(request, count, plan)
            budget -= count
            plan.work.append(self._work(request, count))
        return plan

    # ------------------------------------------------------------------ helpers

    def _order(self, request: ScheduledRequest) -> tuple[int, int]:
        return (-request.priority if self.policy == "priority" else 0, request.arrival)

    def _blocks_for(self, tokens: int) -> int:
        return math.ceil(tokens / self.block_size)

    def _work(self, request: ScheduledRequest, count: int) -> Work:
        start = request.computed
        request.computed += count
        return Work(request, start, count, samples=request.computed == request.known)

    def _reserve(self, request: ScheduledRequest, count: int, plan: StepPlan) -> bool:
        """Takes the blocks `request` needs for `count` more tokens, preempting later requests
        when the pool is short; False when `request` itself was the one to go."""
        needed = self._blocks_for(request.computed + count) - request.blocks
        while needed > self.free_blocks:
            victim = self._victim()
            self._preempt(victim, plan)
            if victim is request:
                return False
        self.free_blocks -= needed
        request.blocks += needed
        return True

    def _victim(self) -> ScheduledRequest:
        return max(self.running, key=self._order)

    def _preempt(self, request: ScheduledRequest, plan: StepPlan) -> None:
        self.running.remove(request)
        plan.work = [w for w in plan.work if w.request is not request]
        self._release(request)
        request.preemptions += 1
        self.preemptions += 1
        plan.preempted.append(request)
        self.waiting.insert(0, request)
        self.waiting.sort(key=self._order)

    def _release(self, request: ScheduledRequest) -> None:
        self.free_blocks += request.blocks
        request.blocks = 0
        request.computed = 0  # recompute: its known tokens go through the model again
