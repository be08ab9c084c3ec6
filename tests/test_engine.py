"""GenerationEngine on tiny random mlx-lm models: the tokens of every request, batched and
continuously joined, equal mlx-lm's own greedy generation of that request alone; prefixes are
shared, preemption and cancellation lose nothing, bad input is refused without harm."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from lm_models import MODELS, VOCAB, skip_where_mlx_cannot_quantize, tiny_llama
from mlx_lm.generate import generate_step
from mlx_lm.models import cache as lm_cache
from mlx_lm.utils import save_model
from mlx_primitives import cache as kv
from mlx_primitives.generation import GenerationEngine, SamplingParams
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from benchmarks import serving


@pytest.fixture(params=list(MODELS), scope="module")
def model(request: pytest.FixtureRequest):
    mx.random.seed(sum(map(ord, request.param)))
    net = MODELS[request.param]()
    mx.eval(net.parameters())
    return net


def alone(model, prompt: list[int], n: int) -> list[int]:
    """mlx-lm's greedy tokens for `prompt` on its own cache."""
    steps = generate_step(mx.array(prompt), model, max_tokens=n)
    return [int(token) for (token, _), _ in zip(steps, range(n))]


def prompts(rng: np.random.Generator, lengths: list[int]) -> list[list[int]]:
    return [rng.integers(0, VOCAB, n).tolist() for n in lengths]


def engine_options(cache: str) -> dict:
    """ "paged-kernel" and "paged-copy" are the paged kind with each decode path."""
    if cache.startswith("paged-"):
        return {"cache": "paged", "paged_decode": cache.removeprefix("paged-")}
    return {"cache": cache, **({"group_size": 32} if cache == "quantized" else {})}  # head_dim 32


@pytest.mark.parametrize("cache", ["kv", "paged-copy", "paged-kernel", "quantized"])
def test_batched_tokens_equal_each_request_alone(model, rng: np.random.Generator, cache: str) -> None:
    skip_where_mlx_cannot_quantize(cache)
    batch = prompts(rng, [5, 37, 1, 20, 64])
    engine = GenerationEngine(model, max_batch=4, token_budget=48, prefill_chunk=16, **engine_options(cache))
    assert engine.paged_decode == (cache.removeprefix("paged-") if cache.startswith("paged") else None)
    got = engine.generate(batch, max_tokens=12)
    if cache == "quantized":
        # 8-bit keys and values change tokens against mlx-lm's float cache (how many depends on
        # the prompts: greedy decoding diverges for good once one token differs), but batching
        # must not: each request served alone on the same cache kind gives the same tokens.
        single = GenerationEngine(
            model, max_batch=1, token_budget=48, prefill_chunk=16, **engine_options(cache)
        )
        assert got == [single.generate([p], max_tokens=12)[0] for p in batch]
    else:
        assert got == [alone(model, p, 12) for p in batch]
    stats = engine.stats()
    assert stats.requests_finished == 5 and stats.generated_tokens == 60
    assert stats.blocks_used == 0  # every block came back


@pytest.mark.parametrize("keep", [0, 4])
def test_rotating_batches_with_each_requests_own_window(model, rng: np.random.Generator, keep: int) -> None:
    """cache="rotating" batches (BatchRotatingKVCache): prompts and generations past the window
    give each request the tokens of generate_step on its own rotating cache (mlx-lm's own
    RotatingKVCache for keep=0; with sinks, ours, which mlx-lm's batch cache cannot keep)."""
    batch = prompts(rng, [5, 37, 1, 20, 64])
    engine = GenerationEngine(
        model, max_batch=4, token_budget=48, prefill_chunk=16, cache="rotating", max_size=24, keep=keep
    )
    got = engine.generate(batch, max_tokens=12)

    def single() -> list:
        if keep == 0:
            return [lm_cache.RotatingKVCache(24) for _ in model.layers]
        return kv.make_cache(model, "rotating", max_size=24, keep=keep)

    expected = []
    for p in batch:
        steps = generate_step(mx.array(p), model, prompt_cache=single(), max_tokens=12)
        expected.append([int(token) for (token, _), _ in zip(steps, range(12))])
    assert got == expected and engine.stats().requests_finished == 5


def test_requests_join_and_leave_between_steps(model, rng: np.random.Generator) -> None:
    engine = GenerationEngine(model, cache="paged", paged_decode="kernel", max_batch=8, token_budget=64)
    first = engine.submit(prompts(rng, [9])[0], max_tokens=20)
    for _ in range(5):
        engine.step()
    second = engine.submit(prompts(rng, [30])[0], max_tokens=6)
    streamed = list(second)  # iterating runs the engine: `first` advances too
    assert streamed == alone(model, second.prompt, 6) and second.finish_reason == "length"
    assert 6 <= len(first.tokens) < 20 and not first.finished
    engine.run()
    assert first.tokens == alone(model, first.prompt, 20)


def test_kv_waste_is_the_unfilled_slots_of_the_block_tables(model, rng: np.random.Generator) -> None:
    """`EngineStats.kv_waste` while requests decode from the pool: the free slots of each
    table's last block over the slots the tables hold; 0 once nothing runs."""
    engine = GenerationEngine(model, cache="paged", paged_decode="kernel", block_size=16, token_budget=256)
    lengths = [9, 16, 40]
    for p in prompts(rng, lengths):
        engine.submit(p, max_tokens=8)
    for step in range(1, 5):
        engine.step()
        filled = [n + step - 1 for n in lengths]  # step 1 writes the prompts, each later one a token
        held = [16 * -(-n // 16) for n in filled]
        assert engine.stats().kv_waste == pytest.approx(1 - sum(filled) / sum(held)), step
    engine.run()
    assert engine.stats().kv_waste == 0.0


def test_a_shared_prefix_reuses_blocks_and_keeps_tokens(model, rng: np.random.Generator) -> None:
    prefix = prompts(rng, [64])[0]
    engine = GenerationEngine(model, cache="paged", block_size=16, token_budget=128, prefill_chunk=128)
    first = engine.submit(prefix + [1, 2, 3], max_tokens=5)
    engine.run()
    ran = engine.stats().prompt_tokens
    second = engine.submit(prefix + [4, 5], max_tokens=5)
    engine.run()
    assert engine.stats().prompt_tokens - ran == 2  # the 4 full prefix blocks came from the pool
    assert engine.stats().prefix_hit_rate > 0
    assert first.tokens == alone(model, first.prompt, 5) and second.tokens == alone(model, second.prompt, 5)


@pytest.mark.parametrize("decode", ["copy", "kernel"])
def test_paged_prompts_prefill_together_and_leave_their_prefixes(
    model, rng: np.random.Generator, decode: str
) -> None:
    """Fresh prompts of the paged kind run as one batch, then sit in the pool: a later prompt
    that shares one's first blocks runs only its own tail."""
    batch = prompts(rng, [40, 7, 33])
    engine = GenerationEngine(model, cache="paged", paged_decode=decode, token_budget=256, prefill_chunk=256)
    assert engine.generate(batch, max_tokens=6) == [alone(model, p, 6) for p in batch]
    ran = engine.stats().prompt_tokens
    later = engine.submit(batch[0][:32] + [1, 2, 3], max_tokens=6)
    engine.run()
    assert engine.stats().prompt_tokens - ran == 3  # two blocks of 16 came from the pool
    assert later.tokens == alone(model, later.prompt, 6) and engine.stats().blocks_used == 0


@pytest.mark.parametrize("cache", ["kv", "paged-kernel"])
def test_preemption_recomputes_and_loses_no_token(model, rng: np.random.Generator, cache: str) -> None:
    # kv: 12 blocks of 4 tokens for four requests that need up to 7 each; paged (the kernel's
    # blocks are >= 16 tokens): 7 blocks of 16 for four that need 2 or 3: some are preempted
    size, blocks, lengths = (4, 12, [10, 11, 9, 12]) if cache == "kv" else (16, 7, [20, 11, 25, 18])
    batch = prompts(rng, lengths)
    engine = GenerationEngine(
        model, max_batch=4, token_budget=32, block_size=size, num_blocks=blocks, **engine_options(cache)
    )
    got = engine.generate(batch, max_tokens=14)
    assert engine.stats().preemptions > 0
    assert got == [alone(model, p, 14) for p in batch]


def test_priority_policy_and_callbacks(model, rng: np.random.Generator) -> None:
    engine = GenerationEngine(model, cache="kv", max_batch=1, token_budget=64, policy="priority")
    seen: list[tuple[int, int]] = []
    low = engine.submit(prompts(rng, [6])[0], max_tokens=3, callback=lambda r, t: seen.append((r.id, t)))
    high = engine.submit(
        prompts(rng, [6])[0], max_tokens=3, priority=5, callback=lambda r, t: seen.append((r.id, t))
    )
    engine.run()
    assert [rid for rid, _ in seen] == [high.id] * 3 + [low.id] * 3
    assert [t for rid, t in seen if rid == low.id] == low.tokens


def test_stop_tokens_cancellation_and_seeded_sampling(model, rng: np.random.Generator) -> None:
    prompt = prompts(rng, [8])[0]
    expected = alone(model, prompt, 10)
    engine = GenerationEngine(model, cache="kv")
    stopped = engine.submit(prompt, max_tokens=10, stop_tokens=[expected[3]])
    cancelled = engine.submit(prompt, max_tokens=10)
    seeded = [
        engine.submit(prompt, max_tokens=10, params=SamplingParams(temperature=1.0, seed=5)) for _ in range(2)
    ]
    engine.step()
    cancelled.cancel()
    engine.run()
    assert stopped.tokens == expected[: expected.index(expected[3])] and stopped.finish_reason == "stop"
    assert cancelled.finish_reason == "cancelled" and len(cancelled.tokens) == 1
    assert seeded[0].tokens == seeded[1].tokens  # the same seed, the same draws, whatever the batch


@pytest.mark.parametrize("cache", ["kv", "paged-kernel"])
def test_pipelined_steps_act_on_no_token_past_a_finish(model, rng: np.random.Generator, cache: str) -> None:
    """Steps sample on the device and read the previous step's tokens: a request that stops,
    is cancelled (from its callback) or runs out of tokens emits nothing the next step drew."""
    batch = prompts(rng, [7, 19, 3, 12])
    expected = [alone(model, p, 9) for p in batch]
    engine = GenerationEngine(model, max_batch=4, token_budget=64, **engine_options(cache))
    seen: dict[int, list[int]] = {}

    def record(request, token: int) -> None:
        seen.setdefault(request.id, []).append(token)
        if request is cancelling and len(request.tokens) == 2:
            request.cancel()

    stop_at = expected[0][2]
    stopped = engine.submit(batch[0], 9, stop_tokens=[stop_at], callback=record)
    one = engine.submit(batch[1], 1, callback=record)
    cancelling = engine.submit(batch[2], 9, callback=record)
    full = engine.submit(batch[3], 9, callback=record)
    engine.run()
    assert stopped.tokens == expected[0][: expected[0].index(stop_at)] and stopped.finish_reason == "stop"
    assert one.tokens == expected[1][:1] and one.finish_reason == "length"
    assert cancelling.tokens == expected[2][:2] and cancelling.finish_reason == "cancelled"
    assert full.tokens == expected[3] and full.finish_reason == "length"
    for request in (stopped, one, cancelling, full):
        assert seen.get(request.id, []) == request.tokens
    stats = engine.stats()
    assert stats.blocks_used == 0
    assert stats.generated_tokens == len(stopped.tokens) + 1 + 2 + 1 + 9  # the stop token counts


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Token i is the word "w{i}"; text is the words joined by spaces."""
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    words.pre_tokenizer, words.decoder = pre_tokenizers.Whitespace(), decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=words, unk_token="w0", eos_token="w100")


def stopped_by_full_text(tokenizer, tokens: list[int], stops: list[str]) -> list[int]:
    """The old check: decode everything after each token; cut before the first stop string."""
    for n in range(1, len(tokens) + 1):
        text = tokenizer.decode(tokens[:n])
        for stop in stops:
            if stop in text:
                kept = tokens[:n]
                while kept and len(tokenizer.decode(kept)) > text.index(stop):
                    kept.pop()
                return kept
    return tokens


def test_stop_strings_are_checked_on_a_tail_window(model, rng: np.random.Generator) -> None:
    """Stop strings end a request exactly where decoding its whole text after every token
    would, while each check decodes only a window of tokens as long as the longest string."""
    tokenizer = word_tokenizer()
    lengths: list[int] = []
    decode = tokenizer.decode

    def counting(tokens, *args, **kwargs):  # noqa: ANN001, ANN202
        lengths.append(len(tokens))
        return decode(tokens, *args, **kwargs)

    tokenizer.decode = counting
    prompt = prompts(rng, [6])[0]
    expected = alone(model, prompt, 40)
    text = decode(expected)
    stops = [
        [decode(expected[30:32])],  # two whole words late in the output
        [text[len(decode(expected[:20])) - 2 :][:5], "never there"],  # across a word boundary
        ["never there"],
    ]
    engine = GenerationEngine(model, tokenizer, cache="kv")
    requests = [engine.submit(prompt, 40, stop_tokens=[], stop_strings=s) for s in stops]
    engine.run()
    assert max(lengths) <= 2 * (len("never there") + 2) + 1  # a window, never the whole output
    tokenizer.decode = decode
    for request, stop in zip(requests, stops):
        assert request.tokens == stopped_by_full_text(tokenizer, expected, stop)
        assert request.finish_reason == ("length" if stop == ["never there"] else "stop")
    assert len(requests[0].tokens) < 32 and len(requests[2].tokens) == 40


def test_bad_input_is_refused_and_leaves_the_others_alone(model, rng: np.random.Generator) -> None:
    engine = GenerationEngine(model, cache="paged", block_size=16, num_blocks=4)
    good = engine.submit(prompts(rng, [10])[0], max_tokens=4)
    with pytest.raises(ValueError, match="the prompt is empty"):
        engine.submit([], max_tokens=4)
    with pytest.raises(ValueError, match=r"prompt \(70\) \+ max_tokens \(4\) tokens exceed the cache's 64"):
        engine.submit(prompts(rng, [70])[0], max_tokens=4)
    with pytest.raises(ValueError, match=f"prompt holds token {VOCAB}; the vocabulary has {VOCAB}"):
        engine.submit([1, VOCAB], max_tokens=4)
    with pytest.raises(KeyError, match="unknown request id 99"):
        engine.cancel(99)
    with pytest.raises(ValueError, match=r"\[SamplingParams\] top_p must be"):
        engine.submit([1, 2], params=SamplingParams(top_p=2.0))
    with pytest.raises(ValueError, match="cache is 'dense'; expected one of kv, quantized, rotating, paged"):
        GenerationEngine(model, cache="dense")
    with pytest.raises(ValueError, match="paged_decode is 'gather'; expected one of auto, kernel, copy"):
        GenerationEngine(model, paged_decode="gather")
    engine.run()
    assert good.tokens == alone(model, good.prompt, 4)


def test_the_command_streams_what_mlx_lm_generates(tmp_path: Path) -> None:
    """`python -m mlx_primitives.generation` on a tiny Llama saved with a word-level tokenizer."""
    mx.random.seed(3)
    net = tiny_llama()
    mx.eval(net.parameters())
    save_model(tmp_path, net)
    config = {k: v for k, v in dataclasses.asdict(net.args).items() if v is not None}
    (tmp_path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    word_tokenizer().save_pretrained(tmp_path)
    prompt = "w5 w6 w7 w8 w9"
    result = subprocess.run(
        [sys.executable, "-m", "mlx_primitives.generation", "--model", str(tmp_path), "--prompt", prompt,
         "--max-tokens", "8", "--cache", "kv"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = alone(net, [5, 6, 7, 8, 9], 8)
    if 100 in expected:
        expected = expected[: expected.index(100)]
    assert result.stdout.split() == [f"w{t}" for t in expected]
    missing = subprocess.run(
        [sys.executable, "-m", "mlx_primitives.generation", "--model", str(tmp_path / "nope"), "--prompt", "w1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert missing.returncode == 2 and "no config.json" in missing.stderr


def test_the_serving_benchmark_runs_and_both_generators_agree(capsys: pytest.CaptureFixture[str]) -> None:
    assert serving.main(["--size", "tiny", "--batch", "1", "3", "--prompt-tokens", "9", "--max-tokens", "4",
                         "--prefix-tokens", "64", "--cache", "kv", "paged", "rotating", "--window", "8",
                         "--repeat", "1"]) == 0  # fmt: skip
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 1 |", "| 3 |"))]
    assert len(rows) == 6 and all(row.endswith("| True |") for row in rows), rows


def test_the_serving_benchmark_explains_a_difference() -> None:
    model = serving.make_model("tiny")
    prompt = [3, 1, 4, 1, 5, 9, 2, 6]
    ours = serving.alone(model, prompt, 5)
    theirs = [ours[:2] + [(ours[2] + 1) % 512] + ours[3:]]
    text = serving.explain_difference(model, [prompt], [ours], theirs)
    assert text.startswith(
        "1/1 rows differ; row 0 first at token 2; alone in mlx-lm's generate_step it matches the engine"
    )
    assert text.endswith("float32 prefers the engine's"), text
    assert serving.explain_difference(model, [prompt], [ours], [ours]) == ""
    rotating = serving.alone(model, prompt, 12, window=6)  # past the window: 8 + 12 > 6
    other = rotating[:9] + [(rotating[9] + 1) % 512] + rotating[10:]
    text = serving.explain_difference(model, [prompt], [rotating], [other], window=6)
    assert "first at token 9 from mlx-lm's generate_step alone with RotatingKVCache(6, keep=4)" in text
    assert text.endswith("float32 prefers the engine's"), text
