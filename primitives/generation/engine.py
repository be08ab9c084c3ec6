"""A continuous-batching generation engine for mlx-lm models.

Requests join and leave between model steps. Each step the `Scheduler` picks the work: every
request past its prompt decodes one token, all of them in one batched model call over a
left-padded `BatchKVCache`; requests in their prompt run it in chunks, one model call each on
their own cache, except that fresh whole prompts of one step run together as one left-padded
batch (paged: those with no prefix in the pool, then written into it). The prompt's last
token runs in a call of its own, so the vocabulary projection runs for one position. A
request whose prompt is done joins the decode batch (`merge`, then `extend`); one that
finishes, is cancelled or is preempted leaves it (`filter`).

With `cache="paged"` every request's prompt is written into one shared `BlockPool`: a request
whose prompt starts with the full blocks of an earlier prompt takes those blocks
(`match_prefix`) and runs the model only on the rest. Decode then runs one of two ways
(`paged_decode`):

- "kernel": every request keeps its block table; each step writes the new keys and values
  into their slots and the model's attention runs `paged_attention` over the pool through
  the tables (`PagedDecodeBatch`, with `paged_attention_dispatch` routing mlx-lm's
  `scaled_dot_product_attention` to it for the decode call only). Nothing is gathered.
- "copy": a request joining the decode batch is copied into a contiguous left-padded
  `BatchKVCache` (`PagedKVCache.merge`) and gives its blocks back; the batch attends with
  mlx-lm's own attention.

"auto" (the default) is "kernel" on a GPU and "copy" on the CPU, where mtriton kernels run on
an emulator or the interpreter and the fused MLX attention is far faster; `paged_decode` on
the engine says which one runs.

Steps are pipelined as in mlx-lm's `BatchGenerator`: a step's tokens are sampled on the device
and evaluated asynchronously, and the host reads the previous step's tokens meanwhile, so the
per-step host sync overlaps the next step's compute. Tokens are acted on when read (see
`step`); stop tokens, stop strings, cancellation and max_tokens are exact.

The model is any mlx-lm model: `model(tokens[None], cache=caches)` returns logits, and its
layers call their caches the mlx-lm way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from .. import cache as kv
from .sampling import GREEDY, SamplingParams, TokenRandom, sample_tokens
from .scheduler import Policy, ScheduledRequest, Scheduler

# Tokens the contiguous kinds budget for when no limit is given.
DEFAULT_KV_TOKENS = 1 << 14
KINDS = ("kv", "quantized", "rotating", "paged")
PAGED_DECODES = ("auto", "kernel", "copy")


@dataclass(eq=False)  # compared by identity: two requests may hold equal fields
class Request:
    """A submitted request: iterate over it for its tokens as they come (the iteration runs the
    engine's steps), or read `tokens` once `finished`.

    Attributes:
        id: The engine's id for it.
        prompt: Prompt token ids.
        params: Its sampling parameters.
        max_tokens: The most tokens it generates.
        tokens: Tokens generated so far (a stop token is not included).
        finished: Whether it is done; `finish_reason` says why: "length", "stop", "cancelled".
    """

    id: int
    prompt: list[int]
    params: SamplingParams
    max_tokens: int
    stop_tokens: frozenset[int]
    stop_strings: tuple[str, ...]
    callback: Callable[[Request, int], None] | None
    engine: GenerationEngine = field(repr=False)
    tokens: list[int] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    submitted: float = 0.0
    token_times: list[float] = field(default_factory=list)
    _unread: int = 0
    _drawn: int = 0  # tokens sampled, read or not
    _released: bool = False
    _random: TokenRandom | None = None
    _caches: list[Any] | None = None
    _scheduled: ScheduledRequest | None = None

    def __iter__(self) -> Iterator[int]:
        while True:
            if self._unread < len(self.tokens):
                self._unread += 1
                yield self.tokens[self._unread - 1]
            elif self.finished:
                return
            else:
                self.engine.step()

    def cancel(self) -> None:
        self.engine.cancel(self.id)

    @property
    def text(self) -> str:
        """The generated text (needs the engine's tokenizer)."""
        return self.engine.detokenize(self.tokens)

    @property
    def known(self) -> list[int]:
        return self.prompt + self.tokens


# Prompt chunks longer than this run their last token in a call of its own (`_last_logits`).
SPLIT_PREFILL = 64


@dataclass(frozen=True)
class EngineStats:
    """What `GenerationEngine.stats()` reports.

    Attributes:
        requests_finished: Requests done (any reason).
        prompt_tokens: Prompt tokens the model ran (prefix hits and recompute included).
        generated_tokens: Tokens drawn.
        steps: `step` calls that ran work.
        step_seconds: Time spent in `step`.
        wait_seconds: Time the host waited for the device's tokens (in `step`, or a `cancel`);
            the rest of `step_seconds` is the host building steps: when that is most of it, the
            host is the bottleneck, not the device.
        tokens_per_second: generated_tokens / step_seconds.
        mean_time_to_first_token: Seconds from submit to the first token, over finished requests.
        mean_inter_token_latency: Seconds between a request's tokens, over finished requests.
        preemptions: Requests preempted (and recomputed).
        cache_bytes: Bytes the KV storage holds (the pool, or the contiguous caches).
        blocks_used: Scheduler blocks held by running requests, of `blocks_total`.
        prefix_hit_rate: Share of full prompt blocks found in the paged pool (0 without one).
        kv_waste: Share of the pool slots that running requests' block tables hold and no
            token fills (the free slots of their last blocks; a block shared by a prefix
            counts once per table); 0 where no running request holds a table (the contiguous
            kinds, or paged decode by copies once prompts have joined the batch).
    """

    requests_finished: int
    prompt_tokens: int
    generated_tokens: int
    steps: int
    step_seconds: float
    wait_seconds: float
    tokens_per_second: float
    mean_time_to_first_token: float
    mean_inter_token_latency: float
    preemptions: int
    cache_bytes: int
    blocks_used: int
    blocks_total: int
    prefix_hit_rate: float
    kv_waste: float


class GenerationEngine:
    """Serves many requests at once on one mlx-lm model with continuous batching.

    Args:
        model: An mlx-lm model.
        tokenizer: An mlx-lm / Hugging Face tokenizer, for stop strings, `Request.text` and the
            default stop tokens (its EOS ids); None works on token ids alone.
        cache: "paged" (one shared block pool, prefix reuse), "kv", "quantized" or "rotating"
            (a sliding window of `max_size` positions with `keep` sinks per request).
        max_batch: Requests per step.
        token_budget: Tokens per step, decode and prompt chunks together.
        prefill_chunk: Most prompt tokens of one request per step.
        policy: "fcfs" or "priority" (larger `priority` first).
        block_size: Tokens per KV block (the paged pool's, and the scheduler's unit).
        num_blocks: KV blocks; default from `memory_limit`, else 16,384 tokens' worth.
        memory_limit: Bytes of KV storage (paged: the pool's size).
        paged_decode: How the paged kind decodes: "kernel" (`paged_attention` on the pool),
            "copy" (contiguous copies) or "auto" ("kernel" on a GPU, "copy" on the CPU).
        cache_options: More options for the cache kind (`bits`, `group_size`, `eviction`,
            `max_size`, `keep`).
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any = None,
        cache: str = "paged",
        *,
        max_batch: int = 32,
        token_budget: int = 512,
        prefill_chunk: int = 512,
        policy: Policy = "fcfs",
        block_size: int = 16,
        num_blocks: int | None = None,
        memory_limit: int | None = None,
        paged_decode: str = "auto",
        **cache_options: Any,
    ) -> None:
        if cache not in KINDS:
            raise ValueError(f"[GenerationEngine] cache is {cache!r}; expected one of {', '.join(KINDS)}")
        self.model, self.tokenizer, self.kind = model, tokenizer, cache
        layers, kv_heads, head_dim, dtype = kv.model_kv_shape(model)
        token_bytes = 2 * layers * kv_heads * head_dim * dtype.size
        if num_blocks is None:
            tokens = DEFAULT_KV_TOKENS if memory_limit is None else memory_limit // token_bytes
            num_blocks = max(1, tokens // block_size)
        if paged_decode not in PAGED_DECODES:
            raise ValueError(
                f"[GenerationEngine] paged_decode is {paged_decode!r}; expected one of {', '.join(PAGED_DECODES)}"
            )
        if paged_decode == "auto":
            paged_decode = "kernel" if mx.default_device() == mx.gpu else "copy"
        # how the paged kind decodes: None for the contiguous kinds
        self.paged_decode = paged_decode if cache == "paged" else None
        self.pool = None
        if cache == "paged":
            self.pool = kv.BlockPool(
                layers, kv_heads, head_dim, dtype, block_size=block_size, num_blocks=num_blocks,
                eviction=cache_options.pop("eviction", None),
            )  # fmt: skip
        self._cache_options = cache_options
        self.scheduler = Scheduler(num_blocks, block_size, token_budget, max_batch, prefill_chunk, policy)
        self.requests: dict[int, Request] = {}
        self._next_id = 0
        self._batch: list[Request] = []  # the decode batch's rows, in order
        self._batch_cache: list[Any] | None = None
        self._batch_last: mx.array | None = None  # the batch rows' last tokens, on the device
        self._attention_modules: list[Any] | None = None  # found at the first in-place paged decode
        self._pending: tuple[list[Request], mx.array] | None = None  # the last step's draws
        self._penalized = 0  # running requests with penalties (they need the host history)
        self._finished: list[Request] = []
        self._prompt_tokens = self._generated = 0
        self._steps = 0
        self._step_seconds = self._wait_seconds = 0.0
        # mlx-lm's TokenizerWrapper has a set of EOS ids; a Hugging Face tokenizer one id
        eos = getattr(tokenizer, "eos_token_ids", None)
        eos = getattr(tokenizer, "eos_token_id", None) if eos is None else eos
        self.default_stop = frozenset([eos] if isinstance(eos, int) else eos or ())

    # ------------------------------------------------------------------ requests

    def submit(
        self,
        prompt: Sequence[int],
        max_tokens: int = 256,
        params: SamplingParams | None = None,
        *,
        stop_tokens: Sequence[int] | None = None,
        stop_strings: Sequence[str] = (),
        priority: int = 0,
        callback: Callable[[Request, int], None] | None = None,
    ) -> Request:
        """Queues a request; it runs from the next `step`.

        Args:
            prompt: Token ids (at least one).
            max_tokens: The most tokens to generate.
            params: Sampling parameters (default greedy).
            stop_tokens: Token ids that end it (default the tokenizer's EOS ids).
            stop_strings: Strings that end it (needs a tokenizer); the text stops before them.
            priority: Larger runs first under the "priority" policy.
            callback: Called with (request, token) for each token.

        Returns:
            The request's handle.
        """
        prompt = [int(t) for t in prompt]
        params = params or GREEDY
        if not isinstance(params, SamplingParams):
            raise TypeError(
                f"[GenerationEngine.submit] params has type {type(params).__name__}; expected SamplingParams"
            )
        vocab = getattr(getattr(self.model, "args", None), "vocab_size", None)
        if vocab is not None and any(not 0 <= t < vocab for t in prompt):
            bad = next(t for t in prompt if not 0 <= t < vocab)
            raise ValueError(
                f"[GenerationEngine.submit] prompt holds token {bad}; the vocabulary has {vocab}"
            )
        if stop_strings and self.tokenizer is None:
            raise ValueError("[GenerationEngine.submit] stop_strings need a tokenizer")
        rid = self._next_id
        scheduled = self.scheduler.add(rid, len(prompt), max_tokens, priority)  # checks lengths
        self._next_id += 1
        request = Request(
            rid, prompt, params, max_tokens,
            frozenset(self.default_stop if stop_tokens is None else stop_tokens), tuple(stop_strings),
            callback, self, submitted=time.perf_counter(),
        )  # fmt: skip
        request._random = TokenRandom(params.seed) if params.seed is not None else None
        request._scheduled = scheduled
        self.requests[rid] = request
        self._penalized += params.penalized
        return request

    def cancel(self, request_id: int) -> None:
        """Ends a request now; its tokens so far stay in `tokens` (the tokens already drawn
        are read first, a host sync, so they count as they would have without pipelining)."""
        if request_id not in self.requests:
            raise KeyError(f"[GenerationEngine] unknown request id {request_id}")
        self._read()  # the tokens drawn so far count, as if read before the cancel
        if request_id in self.requests:
            self._finish(self.requests[request_id], "cancelled")

    def generate(
        self, prompts: Sequence[Sequence[int]], max_tokens: int = 256, sampler: SamplingParams | None = None
    ) -> list[list[int]]:
        """Generates for every prompt at once; returns the token lists in the prompts' order."""
        requests = [self.submit(p, max_tokens, sampler) for p in prompts]
        while not all(r.finished for r in requests):
            self.step()
        return [r.tokens for r in requests]

    def run(self) -> None:
        """Steps until every request is done."""
        while self.requests:
            self.step()

    # ------------------------------------------------------------------ one step

    def step(self) -> None:
        """Runs one scheduled model step (a no-op when nothing is queued).

        The step is pipelined as mlx-lm's `BatchGenerator` is: its tokens are sampled on the
        device and evaluated asynchronously, and the host then reads the previous step's tokens
        while the device computes. A token is acted on (appended, stop checks, callbacks, finish)
        only when read, so a request that stopped on step t's token drops the token step t + 1
        already drew for it. Requests whose tokens are all drawn (max_tokens) give back their
        batch row and blocks at once, and finish when their last token is read.
        """
        start = time.perf_counter()
        if self._penalized:
            self._read()  # penalties need every token of the history on the host
        plan = self.scheduler.schedule()
        if plan.preempted:
            self._read()  # a preempted request recomputes from its known tokens: read them all
        for victim in plan.preempted:
            if victim.id in self.requests:
                self._leave_batch(self.requests[victim.id])
                self._drop_caches(self.requests[victim.id])
        in_batch = {id(r) for r in self._batch}
        # a request the read above finished left the scheduler: its work is void
        work = [(self.requests[w.request.id], w) for w in plan.work if w.request.id in self.requests]
        decoding = [r for r, _ in work if id(r) in in_batch]
        assert len(decoding) == len(self._batch), "every row of the decode batch runs each step"
        drawn: list[Request] = []
        rows: list[mx.array] = []
        if self._batch:
            drawn += self._batch
            rows.append(self._decode())
        # whole prompts on fresh caches (paged: with no prefix in the pool) run as one
        # left-padded batch, even one alone: a paged prompt then runs on a contiguous cache and
        # goes to the pool in one write per layer, where the paged cache writes and gathers at
        # every layer of every call
        whole = [r for r, w in work if id(r) not in in_batch and self._fresh_whole_prompt(r, w)]
        together = {id(r) for r in whole}
        if together:
            group_caches, logits = self._prefill_together(whole)
            drawn += whole
            rows.append(logits)
        singles: list[Request] = []
        for request, w in work:
            if id(request) not in in_batch and id(request) not in together:
                logits = self._prefill(request, w.start + w.count)
                if w.samples:
                    drawn.append(request)
                    singles.append(request)
                    rows.append(logits[None])
        if drawn:
            tokens = self._draw(drawn, mx.concatenate(rows) if len(rows) > 1 else rows[0])
            position = {id(r): i for i, r in enumerate(drawn)}
            done = {id(r) for r in drawn if r._drawn >= r.max_tokens}
            # nothing more to compute for these: free their rows (one filter) and blocks now
            self._leave_batch(*(r for r in drawn if id(r) in done))
            for request in drawn:
                if id(request) in done:
                    self._release(request)
            if together:
                alive = [i for i, r in enumerate(whole) if id(r) not in done]
                if alive and self.paged_decode == "kernel":
                    self._batch += [whole[i] for i in alive]  # they decode from the pool
                elif alive:
                    if len(alive) < len(whole):
                        for cache in group_caches:
                            cache.filter(alive)
                    self._extend_batch([whole[i] for i in alive], group_caches)
                    for i in alive:
                        self._drop_caches(whole[i])  # paged: the batch holds copies now
            for request in singles:  # prompts done on their own caches join the decode batch
                if id(request) not in done:
                    self._join_batch(request)
            # the batch's next inputs are the tokens just drawn, still on the device
            self._batch_last = (
                tokens[mx.array([position[id(r)] for r in self._batch], dtype=mx.int32)]
                if self._batch
                else None
            )
            # a batch prefill's pool writes go with the step too: nothing this step reads them,
            # and left lazy they would land on the next step that does (another request's)
            written = [*self.pool.keys, *self.pool.values] if together and self.pool is not None else []
            mx.async_eval(tokens, *([self._batch_last] if self._batch else []), *written)
        self._read()  # the previous step's tokens (computed by now, or soon: the device is busy)
        if drawn:
            self._pending = (drawn, tokens)
            self._steps += 1
        self._step_seconds += time.perf_counter() - start

    def _decode(self) -> mx.array:
        """(batch, vocab) logits of the decode batch's next tokens."""
        if self.paged_decode != "kernel":
            return self.model(self._batch_last[:, None], cache=self._batch_cache)[:, -1, :]
        batch = kv.PagedDecodeBatch([r._caches[0].sequence for r in self._batch])
        if self._attention_modules is None:
            self._attention_modules = kv.attention_modules(self.model)
        with kv.paged_attention_dispatch(self.model, self._attention_modules):
            logits = self.model(self._batch_last[:, None], cache=batch.layers)[:, -1, :]
        batch.advance()
        return logits

    def _prefill(self, request: Request, end: int) -> mx.array | None:
        """Runs the model on the request's tokens from its cache's length to `end`; the logits
        of the last one."""
        if request._caches is None:
            request._caches = self._new_caches()
            if self.pool is not None:
                request._caches[0].sequence.match_prefix(request.known)
        begin = request._caches[0].offset
        if begin >= end:
            return None  # a prefix hit covered this chunk
        tokens = request.known[begin:end]
        if end < len(request.known):  # a chunk short of the last token: no logits needed
            self.model(mx.array(tokens)[None], cache=request._caches)
            logits = None
        else:
            logits = self._last_logits(mx.array(tokens)[None], request._caches)[0]
        self._prompt_tokens += len(tokens)
        if self.pool is not None:
            request._caches[0].sequence.append_tokens(tokens)
        return logits

    def _last_logits(self, tokens: mx.array, caches: list[Any]) -> mx.array:
        """(batch, vocab) logits of the last of (batch, n) `tokens`. A long chunk's other
        tokens run first in their own call whose logits are never evaluated, so the vocabulary
        projection runs for one position per row (as mlx-lm's prefill does), not for every
        prompt token; a chunk of at most SPLIT_PREFILL tokens runs in one call (on an H200 a
        1B model call costs ~3 ms of host work, the projection of 64 more rows microseconds)."""
        if tokens.shape[1] > SPLIT_PREFILL:
            self.model(tokens[:, :-1], cache=caches)
            tokens = tokens[:, -1:]
        return self.model(tokens, cache=caches)[:, -1, :]

    def _draw(self, requests: list[Request], logits: mx.array) -> mx.array:
        """Samples each request's next token; (requests,) uint32 tokens, not yet evaluated."""
        params = [r.params for r in requests]
        histories = [r.known for r in requests] if any(p.penalized for p in params) else None
        tokens = sample_tokens(logits, params, histories, [r._random for r in requests])
        for request in requests:
            self.scheduler.token_drawn(request._scheduled)
            request._drawn += 1
        return tokens

    def _read(self) -> None:
        """Reads the tokens the last step drew (a host sync) and acts on them."""
        if self._pending is None:
            return
        requests, tokens = self._pending
        self._pending = None
        start = time.perf_counter()
        tokens = tokens.tolist()
        now = time.perf_counter()
        self._wait_seconds += now - start
        for request, token in zip(requests, tokens):
            if request.finished:  # stopped or cancelled on an earlier token: this one is void
                continue
            self._generated += 1
            if token in request.stop_tokens:
                self._finish(request, "stop")
                continue
            request.tokens.append(token)
            request.token_times.append(now)
            if request.callback is not None:
                request.callback(request, token)
            if request.stop_strings and self._hits_stop_string(request):
                self._finish(request, "stop")
            elif len(request.tokens) >= request.max_tokens:
                self._finish(request, "length")

    # ------------------------------------------------------------------ batch and caches

    def _new_caches(self) -> list[Any]:
        if self.pool is not None:
            return kv.make_cache(self.model, "paged", pool=self.pool)
        return kv.make_cache(self.model, self.kind, **self._cache_options)

    def _fresh_whole_prompt(self, request: Request, work: Any) -> bool:
        """Whether the step runs the request's whole prompt from nothing (paged: none of its
        blocks is in the pool; a request with a prefix hit keeps the caches made here)."""
        if request._caches is not None or work.start != 0 or not work.samples:
            return False
        if self.pool is None:
            return True
        request._caches = self._new_caches()
        return request._caches[0].sequence.match_prefix(request.known) == 0

    def _prefill_together(self, requests: list[Request]) -> tuple[list[Any], mx.array]:
        """Runs whole prompts as one batch, left-padded to the longest; (batch caches, the
        (batch, vocab) logits of each prompt's last token)."""
        lengths = [len(r.known) for r in requests]
        pads = [max(lengths) - n for n in lengths]
        # paged: the batch runs on contiguous caches, then each prompt is written to the pool
        fresh = [
            self._new_caches() if self.pool is None else kv.make_cache(self.model, "kv") for _ in requests
        ]
        caches = [type(layer[0]).merge(list(layer)) for layer in zip(*fresh)]
        for cache in caches:
            cache.prepare(left_padding=pads)
        tokens = mx.array([[0] * pad + r.known for pad, r in zip(pads, requests)])
        self._prompt_tokens += sum(lengths)
        logits = self._last_logits(tokens, caches)
        if self.pool is not None:
            # every prompt's keys and values go to the pool in one write per layer: the rows'
            # unpadded positions of the (batch, kv_heads, positions, head_dim) states, in order
            sequences = [r._caches[0].sequence for r in requests]
            for sequence, length in zip(sequences, lengths):
                sequence.reserve(0, length)
            slots = mx.concatenate([s.slots(0, length) for s, length in zip(sequences, lengths)])
            width = max(lengths)
            rows = mx.array([row * width + p for row, pad in enumerate(pads) for p in range(pad, width)])
            for layer, cache in enumerate(caches):
                keys, values = cache.state[:2]
                batch, kv_heads, _, head_dim = keys.shape
                keys, values = (
                    x.transpose(0, 2, 1, 3).reshape(batch * width, kv_heads, head_dim)[rows]
                    for x in (keys, values)
                )
                self.pool.write(layer, keys, values, slots)
            for sequence, length, request in zip(sequences, lengths, requests):
                for cache in sequence.layers:
                    cache.offset = length
                sequence.append_tokens(request.known)  # registers its full blocks for later prefixes
        return caches, logits

    def _join_batch(self, request: Request) -> None:
        if self.paged_decode == "kernel":
            self._batch.append(request)  # it keeps its sequence: decode reads it in the pool
            return
        self._extend_batch([request], [type(c).merge([c]) for c in request._caches])
        self._drop_caches(request)  # the batch holds its keys and values now

    def _extend_batch(self, requests: list[Request], caches: list[Any]) -> None:
        if self._batch_cache is None:
            self._batch_cache = caches
        else:
            for batch, new in zip(self._batch_cache, caches):
                batch.extend(new)
        self._batch += requests

    def _leave_batch(self, *requests: Request) -> None:
        """Drops the requests' rows from the decode batch, all in one filter."""
        leaving = {id(r) for r in requests}
        keep = [i for i, r in enumerate(self._batch) if id(r) not in leaving]
        if len(keep) == len(self._batch):
            return
        self._batch = [self._batch[i] for i in keep]
        if not keep:
            self._batch_cache = self._batch_last = None
            return
        for batch in self._batch_cache or ():  # (the in-place paged batch has no batch cache)
            batch.filter(keep)
        if self._batch_last is not None:
            self._batch_last = self._batch_last[mx.array(keep, dtype=mx.int32)]

    def _drop_caches(self, request: Request) -> None:
        if request._caches is not None and self.pool is not None:
            request._caches[0].sequence.release()  # its full prompt blocks stay cached
        request._caches = None

    def _release(self, request: Request) -> None:
        """Gives back the request's batch row, caches and scheduler blocks (once)."""
        if request._released:
            return
        request._released = True
        self._leave_batch(request)
        self._drop_caches(request)
        self.scheduler.finish(request.id)
        if request.params.penalized:
            self._penalized -= 1

    def _finish(self, request: Request, reason: str) -> None:
        self._release(request)
        request.finished, request.finish_reason = True, reason
        del self.requests[request.id]
        self._finished.append(request)

    def detokenize(self, tokens: Sequence[int]) -> str:
        if self.tokenizer is None:
            raise ValueError("[GenerationEngine] text needs a tokenizer")
        return self.tokenizer.decode(list(tokens))

    def _hits_stop_string(self, request: Request) -> bool:
        """Whether the text now holds a stop string; if so, drops the tokens from the one whose
        text reaches into it.

        Incremental: the string can only have appeared at the end, within the longest stop
        string's length of characters, so only a tail window of tokens is decoded: one whose
        text past its first token holds at least that many characters (the first token's text
        may decode differently at the window's edge: a leading space, a split character). The
        window starts at `longest + 2` tokens and doubles while short, so a check costs the
        window, not the whole output."""
        tokens = request.tokens
        longest = max(len(stop) for stop in request.stop_strings)
        width = longest + 2
        while True:
            start = max(0, len(tokens) - width)
            if start == 0 or len(self.detokenize(tokens[start + 1 :])) >= longest:
                break
            width *= 2
        text = self.detokenize(tokens[start:])
        hits = [text.index(stop) for stop in request.stop_strings if stop in text]
        if not hits:
            return False
        cut = hits[0]  # the first stop string listed that occurs, as the full-text check did
        # keep the tokens whose text ends before the stop string
        while len(tokens) > start and len(self.detokenize(tokens[start:])) > cut:
            tokens.pop()
        return True

    # ------------------------------------------------------------------ metrics

    def _kv_waste(self) -> float:
        """`EngineStats.kv_waste`, read off the running requests' block tables."""
        if self.pool is None:
            return 0.0
        held = filled = 0
        for request in self.requests.values():
            if request._caches is not None:
                sequence = request._caches[0].sequence
                held += sum(b is not None for b in sequence.table) * self.pool.block_size
                filled += sequence.length
        return 1.0 - filled / held if held else 0.0

    def stats(self) -> EngineStats:
        done = [r for r in self._finished if r.token_times]
        ttft = [r.token_times[0] - r.submitted for r in done]
        gaps = [b - a for r in done for a, b in zip(r.token_times, r.token_times[1:])]
        cache_bytes = sum(c.nbytes for c in self._batch_cache or ())
        hit_rate = 0.0
        if self.pool is not None:
            cache_bytes += self.pool.nbytes
            hit_rate = self.pool.stats().prefix_hit_rate
        else:
            cache_bytes += sum(c.nbytes for r in self.requests.values() for c in r._caches or ())
        used = self.scheduler.num_blocks - self.scheduler.free_blocks
        return EngineStats(
            requests_finished=len(self._finished),
            prompt_tokens=self._prompt_tokens,
            generated_tokens=self._generated,
            steps=self._steps,
            step_seconds=self._step_seconds,
            wait_seconds=self._wait_seconds,
            tokens_per_second=self._generated / self._step_seconds if self._step_seconds else 0.0,
            mean_time_to_first_token=sum(ttft) / len(ttft) if ttft else 0.0,
            mean_inter_token_latency=sum(gaps) / len(gaps) if gaps else 0.0,
            preemptions=self.scheduler.preemptions,
            cache_bytes=cache_bytes,
            blocks_used=used,
            blocks_total=self.scheduler.num_blocks,
            prefix_hit_rate=hit_rate,
            kv_waste=self._kv_waste(),
        )
