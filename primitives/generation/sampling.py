"""Token samplers for a batch of requests, each with its own parameters and random stream.

A step of batched generation holds one row of logits per request. `sample_tokens` applies each
row's logits processors (logit bias, then repetition, presence and frequency penalties over the
request's last `penalty_context` tokens), turns the row into log-probabilities, filters them
(top-p, then min-p, then top-k) and samples at the row's temperature (0: greedy). The order and
formulas are mlx-lm's (`mlx_lm.sample_utils.make_sampler` and `make_logits_processors`), so a
request sampled here draws from the distribution mlx-lm's sampler would give it; the filters
run on the whole batch at once with per-row parameters, in plain MLX ops.

A request with a seed owns a `TokenRandom`: its draws depend only on its seed and how many
tokens it has drawn, never on which other requests share the batch. Requests without a seed use
MLX's global random state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import mlx.core as mx


@dataclass(frozen=True)
class SamplingParams:
    """How one request picks its next token (the defaults: greedy, nothing filtered).

    Attributes:
        temperature: Divides the log-probabilities before sampling; 0 takes the most likely token.
        top_k: Keep the k most likely tokens; 0 keeps all.
        top_p: Keep the smallest set of most likely tokens whose probability reaches top_p;
            1 keeps all.
        min_p: Keep the tokens at least min_p times as likely as the most likely one; 0 keeps all.
        min_tokens_to_keep: Tokens min-p never removes.
        repetition_penalty: Divides positive (multiplies negative) logits of tokens among the
            last `penalty_context` ones; 1 changes nothing.
        presence_penalty: Subtracted once from the logit of each such token.
        frequency_penalty: Subtracted from such a token's logit once per occurrence.
        penalty_context: How many of the request's latest tokens (prompt included) the
            penalties look at.
        logit_bias: Token id -> value added to its logit.
        seed: Seeds the request's own random stream; None draws from MLX's global state.
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    min_tokens_to_keep: int = 1
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    penalty_context: int = 20
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("temperature", self.temperature >= 0, "a float >= 0"),
            ("top_k", isinstance(self.top_k, int) and self.top_k >= 0, "an int >= 0"),
            ("top_p", 0 < self.top_p <= 1, "a float in (0, 1]"),
            ("min_p", 0 <= self.min_p <= 1, "a float in [0, 1]"),
            (
                "min_tokens_to_keep",
                isinstance(self.min_tokens_to_keep, int) and self.min_tokens_to_keep >= 1,
                "an int >= 1",
            ),
            ("repetition_penalty", self.repetition_penalty > 0, "a float > 0"),
            (
                "penalty_context",
                isinstance(self.penalty_context, int) and self.penalty_context >= 1,
                "an int >= 1",
            ),
            (
                "seed",
                self.seed is None or (isinstance(self.seed, int) and self.seed >= 0),
                "None or an int >= 0",
            ),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"[SamplingParams] {name} must be {expected}, got {getattr(self, name)!r}")
        for token in self.logit_bias:
            if not isinstance(token, int) or token < 0:
                raise ValueError(f"[SamplingParams] logit_bias keys must be token ids >= 0, got {token!r}")
        object.__setattr__(self, "logit_bias", dict(self.logit_bias))

    @property
    def penalized(self) -> bool:
        """Whether the request's history changes its logits."""
        return self.repetition_penalty != 1 or self.presence_penalty != 0 or self.frequency_penalty != 0


GREEDY = SamplingParams()


class TokenRandom:
    """A request's own random stream: one key per drawn token, split from its seed's key."""

    def __init__(self, seed: int) -> None:
        self._key = mx.random.key(seed)

    def next_key(self) -> mx.array:
        self._key, key = mx.random.split(self._key)
        return key


def process_logits(
    logits: mx.array, params: Sequence[SamplingParams], histories: Sequence[Sequence[int]]
) -> mx.array:
    """Each row's logit bias and penalties (mlx-lm's logits processors, in their order).

    Args:
        logits: (batch, vocab) logits.
        params: One `SamplingParams` per row.
        histories: One token list per row (prompt and generated tokens so far).

    Returns:
        The processed (batch, vocab) logits.
    """
    rows, vocab = logits.shape
    _check_rows("process_logits", logits, params, histories)
    bias = [(r, t, b) for r, p in enumerate(params) for t, b in p.logit_bias.items()]
    if bias:
        if max(t for _, t, _ in bias) >= vocab:
            bad = next(t for _, t, _ in bias if t >= vocab)
            raise ValueError(f"[process_logits] logit_bias names token {bad}; the vocabulary has {vocab}")
        r, t, b = (mx.array(list(c)) for c in zip(*bias))
        logits = logits.at[r, t].add(b.astype(logits.dtype))
    if not any(p.penalized for p in params):
        return logits
    recent = [
        (r, t)
        for r, (p, h) in enumerate(zip(params, histories))
        if p.penalized
        for t in h[-p.penalty_context :]
    ]
    if not recent:
        return logits
    r, t = (mx.array(list(c)) for c in zip(*recent))
    counts = mx.zeros((rows, vocab), mx.float32).at[r, t].add(1.0)
    seen = counts > 0
    column = lambda values: mx.array(values, mx.float32)[:, None]  # noqa: E731
    repetition = column([p.repetition_penalty for p in params])
    out = logits.astype(mx.float32)
    out = mx.where(seen, mx.where(out < 0, out * repetition, out / repetition), out)
    out = out - column([p.presence_penalty for p in params]) * seen
    out = out - column([p.frequency_penalty for p in params]) * counts
    return out.astype(logits.dtype)


def filter_logprobs(logprobs: mx.array, params: Sequence[SamplingParams]) -> mx.array:
    """Each row's top-p, min-p and top-k filters, in that order: removed tokens become -inf.

    Ties at a top-k or min-tokens-to-keep boundary keep every tied token (mlx-lm's
    `argpartition` keeps an arbitrary one of them).
    """
    if len(params) != logprobs.shape[0]:
        raise ValueError(f"[filter_logprobs] {len(params)} params for {logprobs.shape[0]} rows")
    vocab = logprobs.shape[-1]
    column = lambda values, dtype=mx.float32: mx.array(values, dtype)[:, None]  # noqa: E731
    if any(p.top_p < 1 for p in params):
        logprobs = mx.where(
            column([p.top_p < 1 for p in params], mx.bool_), _top_p(logprobs, params), logprobs
        )
    if any(p.min_p > 0 for p in params):
        top = mx.max(logprobs, axis=-1, keepdims=True)
        floor = top + column([math.log(p.min_p) if p.min_p > 0 else -math.inf for p in params])
        keep = _kth_largest(logprobs, [min(p.min_tokens_to_keep, vocab) for p in params])
        logprobs = mx.where((logprobs < floor) & (logprobs < keep), -math.inf, logprobs)
    if any(0 < p.top_k < vocab for p in params):
        kth = _kth_largest(logprobs, [p.top_k if 0 < p.top_k < vocab else vocab for p in params])
        logprobs = mx.where(logprobs < kth, -math.inf, logprobs)
    return logprobs


def sample_tokens(
    logits: mx.array,
    params: Sequence[SamplingParams],
    histories: Sequence[Sequence[int]] | None = None,
    randoms: Sequence[TokenRandom | None] | None = None,
) -> mx.array:
    """The next token of every row: processors, log-probabilities, filters, then sampling.

    Args:
        logits: (batch, vocab) logits of the last position of each request.
        params: One `SamplingParams` per row.
        histories: One token list per row, for the penalties (None: no history).
        randoms: One `TokenRandom` (or None: MLX's global state) per row.

    Returns:
        (batch,) uint32 token ids.
    """
    rows = logits.shape[0]
    histories = histories if histories is not None else [()] * rows
    randoms = randoms if randoms is not None else [None] * rows
    if len(randoms) != rows:
        raise ValueError(f"[sample_tokens] {len(randoms)} randoms for {rows} rows")
    logits = process_logits(logits, params, histories).astype(mx.float32)
    logprobs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    greedy = mx.argmax(logprobs, axis=-1).astype(mx.uint32)
    if all(p.temperature == 0 for p in params):
        return greedy
    scaled = (
        filter_logprobs(logprobs, params)
        * mx.array([1 / p.temperature if p.temperature else 1.0 for p in params])[:, None]
    )
    vocab = logits.shape[-1]
    # Gumbel-max: argmax(x + g) is a categorical draw; each row's noise from its own stream
    noise = mx.stack([mx.random.gumbel((vocab,), key=r.next_key() if r else None) for r in randoms])
    drawn = mx.argmax(scaled + noise, axis=-1).astype(mx.uint32)
    return mx.where(mx.array([p.temperature == 0 for p in params]), greedy, drawn)


def make_sampler(params: SamplingParams) -> Callable[[mx.array], mx.array]:
    """An mlx-lm style sampler (log-probabilities in, tokens out) for one set of parameters,
    for `mlx_lm.generate_step(..., sampler=...)`. Penalties and logit bias need the history:
    use `sample_tokens`, or mlx-lm's own logits processors, for those."""
    if params.penalized or params.logit_bias:
        raise ValueError("[make_sampler] penalties and logit_bias need the token history: use sample_tokens")
    random = TokenRandom(params.seed) if params.seed is not None else None

    def sampler(logprobs: mx.array) -> mx.array:
        rows = logprobs.shape[0] if logprobs.ndim == 2 else 1
        flat = logprobs.reshape(rows, -1)
        return sample_tokens(flat, [params] * rows, randoms=[random] * rows).reshape(logprobs.shape[:-1])

    return sampler


# --------------------------------------------------------------------------- helpers


def _check_rows(
    fn: str, logits: mx.array, params: Sequence[SamplingParams], histories: Sequence[Sequence[int]]
) -> None:
    if logits.ndim != 2:
        raise ValueError(f"[{fn}] logits has shape {tuple(logits.shape)}; expected (batch, vocab)")
    if not len(params) == len(histories) == logits.shape[0]:
        raise ValueError(
            f"[{fn}] logits has {logits.shape[0]} rows but {len(params)} params and {len(histories)} histories"
        )


def _kth_largest(x: mx.array, ks: Sequence[int]) -> mx.array:
    """(batch, 1): row r's ks[r]-th largest value."""
    descending = -mx.sort(-x, axis=-1)
    return mx.take_along_axis(descending, mx.array(ks, mx.int32)[:, None] - 1, axis=-1)


def _top_p(logprobs: mx.array, params: Sequence[SamplingParams]) -> mx.array:
    """mlx-lm's nucleus filter with a per-row top_p: drop the least likely tokens whose mass
    above them already reaches top_p of the total."""
    ascending = mx.sort(logprobs, axis=-1)
    probs = mx.exp(ascending.astype(mx.float32))
    mass_above = mx.cumsum(probs, axis=-1, reverse=True, inclusive=False)
    total = mass_above[:, :1] + probs[:, :1]
    top_p = mx.array([p.top_p for p in params], mx.float32)[:, None]
    dropped = (mass_above >= top_p * total).sum(axis=-1, keepdims=True)
    threshold = mx.take_along_axis(ascending, dropped, axis=-1)
    return mx.where(logprobs < threshold, -math.inf, logprobs)
