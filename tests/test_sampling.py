"""The batched samplers against mlx-lm's own, row by row, and their random streams."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
from mlx_primitives.generation import SamplingParams, TokenRandom, sample_tokens
from mlx_primitives.generation.sampling import filter_logprobs, make_sampler, process_logits

sample_utils = pytest.importorskip("mlx_lm.sample_utils")

VOCAB = 97


def _logprobs(rng: np.random.Generator, rows: int) -> mx.array:
    logits = mx.array(rng.standard_normal((rows, VOCAB)).astype(np.float32) * 3)
    return logits - mx.logsumexp(logits, axis=-1, keepdims=True)


def _mlx_lm_filters(row: mx.array, p: SamplingParams) -> mx.array:
    """mlx-lm's sampler chain (make_sampler) for one row, without the final draw."""
    if 0 < p.top_p < 1:
        row = sample_utils.apply_top_p(row, p.top_p)
    if p.min_p:
        row = sample_utils.apply_min_p(row, p.min_p, p.min_tokens_to_keep)
    if p.top_k:
        row = sample_utils.apply_top_k(row, p.top_k)
    return row


MIXED = [
    SamplingParams(temperature=0.7, top_p=0.9),
    SamplingParams(temperature=1.0, min_p=0.05, min_tokens_to_keep=3),
    SamplingParams(temperature=1.3, top_k=5),
    SamplingParams(temperature=0.8, top_p=0.5, min_p=0.1, top_k=7),
    SamplingParams(),
    SamplingParams(temperature=1.0, top_p=0.999),
    SamplingParams(temperature=1.0, min_p=0.9, min_tokens_to_keep=4, top_k=2),
]


def test_filters_match_mlx_lm_row_by_row(rng: np.random.Generator) -> None:
    logprobs = _logprobs(rng, len(MIXED))
    got = np.array(filter_logprobs(logprobs, MIXED))
    for r, p in enumerate(MIXED):
        np.testing.assert_array_equal(
            got[r], np.array(_mlx_lm_filters(logprobs[r : r + 1], p))[0], err_msg=str(p)
        )


def test_processors_match_mlx_lm_row_by_row(rng: np.random.Generator) -> None:
    params = [
        SamplingParams(repetition_penalty=1.3, penalty_context=6),
        SamplingParams(presence_penalty=0.5, frequency_penalty=0.25),
        SamplingParams(logit_bias={3: 2.0, 90: -5.0}, frequency_penalty=1.0, penalty_context=4),
        SamplingParams(),
    ]
    histories = [rng.integers(0, VOCAB, n).tolist() for n in (15, 30, 9, 12)]
    histories[1] += [7, 7, 7]  # a repeated token: frequency counts it three times
    logits = mx.array(rng.standard_normal((len(params), VOCAB)).astype(np.float32) * 3)
    got = np.array(process_logits(logits, params, histories))
    for r, (p, h) in enumerate(zip(params, histories)):
        processors = sample_utils.make_logits_processors(
            logit_bias=p.logit_bias or None,
            repetition_penalty=p.repetition_penalty if p.repetition_penalty != 1 else None,
            repetition_context_size=p.penalty_context,
            presence_penalty=p.presence_penalty,
            presence_context_size=p.penalty_context,
            frequency_penalty=p.frequency_penalty,
            frequency_context_size=p.penalty_context,
        )
        expected = logits[r : r + 1]
        for processor in processors:
            expected = processor(mx.array(h), expected)
        np.testing.assert_allclose(got[r], np.array(expected)[0], rtol=1e-6, atol=1e-6, err_msg=str(p))


def test_draws_follow_the_filtered_distribution() -> None:
    # 4,000 seeded draws of a 6-token distribution through top_k=4 and temperature 0.5: the
    # counts match softmax(filtered / T) within 5 standard deviations, removed tokens never come
    probs = np.array([0.3, 0.25, 0.2, 0.15, 0.06, 0.04])
    logprobs = mx.array(np.log(probs).astype(np.float32))[None]
    params = SamplingParams(temperature=0.5, top_k=4, seed=1)
    random = TokenRandom(1)
    draws = np.array([sample_tokens(logprobs, [params], randoms=[random]).item() for _ in range(4000)])
    kept = np.exp(np.log(probs[:4]) / 0.5)
    expected = np.concatenate([kept / kept.sum(), [0, 0]])
    counts = np.bincount(draws, minlength=6)
    assert counts[4:].sum() == 0
    assert np.all(np.abs(counts - 4000 * expected) <= 5 * np.sqrt(4000 * expected * (1 - expected)) + 1), (
        counts
    )


def test_a_seeded_request_draws_the_same_tokens_in_any_batch(rng: np.random.Generator) -> None:
    logprobs = _logprobs(rng, 3)
    seeded = SamplingParams(temperature=1.0, seed=7)
    random = TokenRandom(7)
    alone = [sample_tokens(logprobs[:1], [seeded], randoms=[random]).item() for _ in range(20)]
    random = TokenRandom(7)
    others = [TokenRandom(8), None]
    batched = [
        sample_tokens(
            logprobs, [seeded, SamplingParams(temperature=1.0, seed=8), MIXED[0]], randoms=[random, *others]
        )[0].item()
        for _ in range(20)
    ]
    assert alone == batched
    assert len(set(alone)) > 1  # it did sample


def test_greedy_rows_take_the_argmax(rng: np.random.Generator) -> None:
    logprobs = _logprobs(rng, 4)
    params = [
        SamplingParams(),
        SamplingParams(temperature=1.0, seed=3),
        SamplingParams(top_k=3),
        SamplingParams(),
    ]
    tokens = np.array(sample_tokens(logprobs, params, randoms=[None, TokenRandom(3), None, None]))
    argmax = np.argmax(np.array(logprobs), axis=-1)
    np.testing.assert_array_equal(tokens[[0, 2, 3]], argmax[[0, 2, 3]])


def test_make_sampler_plugs_into_mlx_lm(rng: np.random.Generator) -> None:
    logprobs = _logprobs(rng, 1)
    ours = make_sampler(SamplingParams(temperature=0.9, top_k=1))
    assert ours(logprobs).item() == int(np.argmax(np.array(logprobs)))  # top_k=1: no choice left
    with pytest.raises(ValueError, match="need the token history"):
        make_sampler(SamplingParams(repetition_penalty=1.2))


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"temperature": -1.0}, "temperature must be a float >= 0, got -1.0"),
        ({"top_p": 0.0}, r"top_p must be a float in \(0, 1\], got 0.0"),
        ({"min_p": 1.5}, r"min_p must be a float in \[0, 1\], got 1.5"),
        ({"top_k": -2}, "top_k must be an int >= 0, got -2"),
        ({"repetition_penalty": 0.0}, "repetition_penalty must be a float > 0"),
        ({"logit_bias": {-1: 1.0}}, "logit_bias keys must be token ids >= 0, got -1"),
        ({"seed": -3}, "seed must be None or an int >= 0"),
    ],
)
def test_bad_parameters_are_named(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=r"\[SamplingParams\] " + message):
        SamplingParams(**bad)


def test_bias_beyond_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match=f"logit_bias names token 500; the vocabulary has {VOCAB}"):
        process_logits(mx.zeros((1, VOCAB)), [SamplingParams(logit_bias={500: 1.0})], [[]])
    with pytest.raises(ValueError, match="logits has 2 rows but 1 params"):
        process_logits(mx.zeros((2, VOCAB)), [SamplingParams()], [[]])
