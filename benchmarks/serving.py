"""Suite `serving`: GenerationEngine against mlx-lm's BatchGenerator on one model and machine.

    python -m benchmarks.serving [--size tiny|small|1b] [--batch 1 8 32]
        [--cache kv paged quantized rotating] [--window 128] [--repeat 3] [--json FILE]

For each batch size both serve the same random prompts (greedy, the same max_tokens, no stop
tokens), `--repeat` times in turn (mlx-lm, then the engine with each `--cache` kind), each
keeping its best run; the engine takes up to 2,048 prompt tokens a step (mlx-lm's default
`prefill_step_size`). The table shows generated tokens per second (mtriton/mlx-lm as a ratio:
above 1, the engine is faster), the mean time to first token, milliseconds per step (the
engine's split into the host building the step and waiting for the device), and KV bytes held
per token. Then the paged pool's waste (`EngineStats.kv_waste`: slots the block tables hold
that no token fills), averaged over the decode steps of the largest batch and of 8 prompts of
the prefix case's length, with kernel decode. Then the prefix case: a request whose
1,024-token prompt shares its first 1,008 tokens with an earlier one, time to first token
cold (no shared blocks) and warm (the paged pool holds the prefix), after one untimed pair
with another prefix (the first run of a shape compiles kernels).

The models are mlx-lm Llamas with random weights (`--size`): "tiny" for tests, "small" (8
layers, 512 wide) for the CPU, "1b" (16 layers, 2048 wide, 8 KV heads; Llama-3.2-1B's shape)
for a GPU, in float16 there. Both generators' tokens are compared; where they differ, the
first differing request is run alone through mlx-lm's `generate_step` (which of the two it
matches), and its first differing token is weighed by the same weights in float32
(`generate_step` alone on the context both agree on): a near tie is half precision's
rounding, not a wrong generator. The rotating kind
(`--window` positions, 4 sinks) is timed against BatchGenerator's full caches (it has no
rotating batch for these models) and its tokens checked against mlx-lm's `generate_step` on
each prompt alone with `RotatingKVCache(window, keep=4)`.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_map
from mlx_lm.generate import BatchGenerator, generate_step
from mlx_lm.models import llama
from mlx_lm.models.cache import RotatingKVCache, make_prompt_cache
from mlx_primitives.generation import GenerationEngine

SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=2, intermediate_size=128, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512),
    "small": dict(hidden_size=512, num_hidden_layers=8, intermediate_size=1536, num_attention_heads=8,
                  num_key_value_heads=4, vocab_size=32000),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, intermediate_size=8192, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
}  # fmt: skip


# Prompt tokens per engine step: mlx-lm's BatchGenerator default prefill_step_size.
PREFILL_TOKENS = 2048
# Positions the rotating kind keeps, 4 of them sinks (mlx-lm's RotatingKVCache default there).
WINDOW = 128


@dataclass(frozen=True)
class ServingResult:
    batch: int
    cache: str
    prompt_tokens: int
    max_tokens: int
    engine_tokens_per_s: float
    mlx_lm_tokens_per_s: float
    engine_ttft_s: float
    engine_host_ms_per_step: float
    engine_wait_ms_per_step: float
    mlx_lm_ms_per_step: float
    kv_bytes_per_token: float
    same_tokens: bool
    difference: str  # where the tokens differ and what float32 says of it; "" when the same

    @property
    def ratio(self) -> float:
        return self.engine_tokens_per_s / self.mlx_lm_tokens_per_s


def make_model(size: str, dtype: mx.Dtype | None = None) -> llama.Model:
    """The random-weight Llama of `size`: float16 on a GPU, float32 on the CPU (or `dtype`)."""
    args = llama.ModelArgs(model_type="llama", rms_norm_eps=1e-5, tie_word_embeddings=True, **SIZES[size])
    mx.random.seed(0)
    model = llama.Model(args)
    if dtype is None:
        dtype = mx.float16 if mx.default_device() == mx.gpu else mx.float32
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    return model


def float32_copy(model: llama.Model) -> llama.Model:
    """`model` with every weight in float32 (the same values, exactly)."""
    copy = llama.Model(model.args)
    copy.update(tree_map(lambda w: w.astype(mx.float32), model.parameters()))
    mx.eval(copy.parameters())
    return copy


def _mlx_lm_caches(model: llama.Model, window: int | None) -> list[Any]:
    """mlx-lm's full caches, or given `window`, `RotatingKVCache(window, keep=4)` per layer."""
    if window is None:
        return make_prompt_cache(model)
    return [RotatingKVCache(max_size=window, keep=4) for _ in model.layers]


def _greedy(logprobs: mx.array) -> mx.array:
    return mx.argmax(logprobs, axis=-1)


def alone(model: llama.Model, prompt: list[int], max_tokens: int, window: int | None = None) -> list[int]:
    """mlx-lm's greedy tokens for one prompt on its own (`generate_step`), with its full caches
    or, given `window`, rotating ones."""
    steps = generate_step(mx.array(prompt), model, max_tokens=max_tokens, prompt_cache=_mlx_lm_caches(model, window),
                          sampler=_greedy)  # fmt: skip
    return [int(token) for token, _ in steps]


def explain_difference(
    model: llama.Model,
    prompts: list[list[int]],
    ours: list[list[int]],
    theirs: list[list[int]],
    window: int | None = None,
) -> str:
    """Where the engine's tokens first differ from `theirs` (BatchGenerator's; with `window`,
    mlx-lm's `generate_step` on each prompt alone with rotating caches), which of the two
    matches `generate_step` on that prompt alone, and which pick the float32 weights prefer
    there (`generate_step` alone in float32 on the context both agree on); "" when they agree.
    A float32 log-probability gap far below half precision's rounding of the logits (~1e-2
    at these magnitudes) is a near tie that either rounding may flip."""
    rows = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    if not rows:
        return ""
    row = rows[0]
    a, b = ours[row], theirs[row]
    at = next((t for t, (x, y) in enumerate(zip(a, b)) if x != y), None)
    where = f"{len(rows)}/{len(ours)} rows differ; row {row}" + (
        "" if at is None else f" first at token {at}"
    )
    other = "BatchGenerator"
    if window is None:
        single = alone(model, prompts[row], len(a))
        matches = [n for n, t in (("the engine", a), (other, b)) if t == single]
        where += f"; alone in mlx-lm's generate_step it matches {' and '.join(matches) or 'neither'}"
    else:
        other = f"generate_step alone with RotatingKVCache({window}, keep=4)"
        where += f" from mlx-lm's {other}"
    if at is None:
        return where
    reference = model if model.layers[0].self_attn.q_proj.weight.dtype == mx.float32 else float32_copy(model)
    context = mx.array(prompts[row] + a[:at])
    _, logprobs = next(generate_step(context, reference, max_tokens=1, sampler=_greedy,
                                     prompt_cache=_mlx_lm_caches(reference, window)))  # fmt: skip
    best = int(mx.argmax(logprobs).item())
    ours_lp, theirs_lp = logprobs[a[at]].item(), logprobs[b[at]].item()
    prefers = {a[at]: "the engine's", b[at]: f"{other}'s"}.get(best, f"neither (token {best})")
    return (
        f"{where}; there the engine drew {a[at]} (float32 log-prob {ours_lp:.4f}), the other "
        f"{b[at]} ({theirs_lp:.4f}), gap {abs(ours_lp - theirs_lp):.2g}; float32 prefers {prefers}"
    )


def run_mlx_lm(
    model: llama.Model, prompts: list[list[int]], max_tokens: int
) -> tuple[list[list[int]], float]:
    """Tokens and seconds of BatchGenerator serving every prompt."""
    generator = BatchGenerator(model, max_tokens=max_tokens, completion_batch_size=len(prompts))
    start = time.perf_counter()
    uids = generator.insert(prompts, [max_tokens] * len(prompts))
    out: dict[int, list[int]] = {uid: [] for uid in uids}
    while responses := generator.next_generated():
        for r in responses:
            out[r.uid].append(int(r.token))
    seconds = time.perf_counter() - start
    generator.close()
    return [out[uid] for uid in uids], seconds


def run_engine(
    model: llama.Model,
    prompts: list[list[int]],
    max_tokens: int,
    cache: str,
    paged_decode: str = "auto",
    window: int = WINDOW,
) -> tuple[list[list[int]], GenerationEngine]:
    longest = max(len(p) for p in prompts) + max_tokens
    # the rotating kind keeps what mlx-lm's max_kv_size caches keep: `window` positions, 4 sinks
    options = dict(max_size=window, keep=4) if cache == "rotating" else {}
    engine = GenerationEngine(
        model, cache=cache, max_batch=len(prompts), token_budget=max(PREFILL_TOKENS, len(prompts)),
        prefill_chunk=PREFILL_TOKENS, num_blocks=len(prompts) * (-(-longest // 16)) + 16,
        paged_decode=paged_decode, **options,
    )  # fmt: skip
    return engine.generate(prompts, max_tokens=max_tokens), engine


def settle() -> None:
    """Collects the last run's garbage and empties MLX's buffer cache before the next run: a
    closed BatchGenerator leaves reference cycles holding arrays, which slowed the run after it
    (tiny, batch 1: 250 against 440 tokens/s)."""
    gc.collect()
    mx.clear_cache()


def throughput(
    model: llama.Model,
    batch: int,
    prompt_tokens: int,
    max_tokens: int,
    caches: Sequence[str],
    repeat: int = 1,
    paged_decode: str = "auto",
    window: int = WINDOW,
) -> list[ServingResult]:
    """mlx-lm and the engine with each cache kind on the same prompts, `repeat` times in turn;
    each one's best run (a shared machine's noise only ever slows a run down).

    The rotating kind's speed is compared with BatchGenerator's on its full caches (for these
    models BatchGenerator has no rotating batch: its `max_kv_size` goes to
    `make_prompt_cache`, which a model with a `make_cache` method, Llama's, ignores) and its
    tokens with mlx-lm's `generate_step` on each prompt alone with rotating caches."""
    rng = np.random.default_rng(batch)
    vocab = model.args.vocab_size
    prompts = [rng.integers(0, vocab, prompt_tokens).tolist() for _ in range(batch)]
    run_mlx_lm(model, prompts[:1], 2)  # warm-up: both compile their graphs once
    for cache in caches:
        run_engine(model, prompts[:1], 2, cache, paged_decode, window)
    their_seconds, theirs = math.inf, []
    best: dict[str, tuple[Any, list[list[int]]]] = {}
    for _ in range(repeat):
        settle()
        tokens, seconds = run_mlx_lm(model, prompts, max_tokens)
        if seconds < their_seconds:
            their_seconds, theirs = seconds, tokens
        for cache in caches:
            settle()
            ours, engine = run_engine(model, prompts, max_tokens, cache, paged_decode, window)
            stats = engine.stats()
            if cache not in best or stats.tokens_per_second > best[cache][0].tokens_per_second:
                best[cache] = (stats, ours)
    layers, kv_heads = model.args.num_hidden_layers, model.args.num_key_value_heads
    head_dim = model.args.head_dim or model.args.hidden_size // model.args.num_attention_heads
    dtype_size = model.layers[0].self_attn.k_proj.weight.dtype.size
    results = []
    for cache, (stats, ours) in best.items():
        steps = max(stats.steps, 1)
        reference = [alone(model, p, max_tokens, window) for p in prompts] if cache == "rotating" else theirs
        results.append(ServingResult(
            batch=batch, cache=cache, prompt_tokens=prompt_tokens, max_tokens=max_tokens,
            engine_tokens_per_s=stats.tokens_per_second,
            mlx_lm_tokens_per_s=batch * max_tokens / their_seconds,
            engine_ttft_s=stats.mean_time_to_first_token,
            engine_host_ms_per_step=(stats.step_seconds - stats.wait_seconds) / steps * 1e3,
            engine_wait_ms_per_step=stats.wait_seconds / steps * 1e3,
            # mlx-lm steps once per generated token of the batch, its prompt steps aside
            mlx_lm_ms_per_step=their_seconds / max_tokens * 1e3,
            kv_bytes_per_token=2 * layers * kv_heads * head_dim * dtype_size,
            same_tokens=ours == reference,
            difference=explain_difference(
                model, prompts, ours, reference, window if cache == "rotating" else None
            ),
        ))  # fmt: skip
    return results


def paged_waste(model: llama.Model, batch: int, prompt_tokens: int, max_tokens: int) -> tuple[float, float]:
    """Mean and largest `EngineStats.kv_waste` over the decode steps of `batch` requests on the
    paged kind with kernel decode (the requests keep their block tables: the pool is the
    only copy of their keys and values), prompts of `prompt_tokens` + 0..15 so that their last
    blocks fill unevenly."""
    rng = np.random.default_rng(11)
    engine = GenerationEngine(model, cache="paged", paged_decode="kernel", max_batch=batch,
                              token_budget=max(PREFILL_TOKENS, batch), prefill_chunk=PREFILL_TOKENS)  # fmt: skip
    for extra in range(batch):
        engine.submit(rng.integers(0, model.args.vocab_size, prompt_tokens + extra % 16).tolist(), max_tokens)
    samples = []
    while engine.requests:
        engine.step()
        if engine.requests:
            samples.append(engine.stats().kv_waste)
    return sum(samples) / len(samples), max(samples)


def prefix_reuse(model: llama.Model, prompt_tokens: int = 1024) -> tuple[float, float]:
    """Time to first token of a prompt, cold and then with its first blocks in the pool. One
    untimed pair with another prefix runs first: its shapes' kernels compile there."""
    rng = np.random.default_rng(7)
    engine = GenerationEngine(model, cache="paged", token_budget=prompt_tokens, prefill_chunk=prompt_tokens)
    for _ in range(2):  # the second pair is timed
        prefix = rng.integers(0, model.args.vocab_size, prompt_tokens - 16).tolist()
        cold = engine.submit(prefix + rng.integers(0, 100, 16).tolist(), max_tokens=1)
        engine.run()
        warm = engine.submit(prefix + rng.integers(0, 100, 16).tolist(), max_tokens=1)
        engine.run()
    return cold.token_times[0] - cold.submitted, warm.token_times[0] - warm.submitted


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=list(SIZES), default="small", help="model shape (default small)")
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[1, 8, 32], help="batch sizes (default 1 8 32)"
    )
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prompt length (default 128)")
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="tokens generated per request (default 64)"
    )
    parser.add_argument("--prefix-tokens", type=int, default=1024, help="prompt length of the prefix case")
    parser.add_argument(
        "--cache", nargs="+", choices=["kv", "paged", "quantized", "rotating"], default=["kv"],
        help="the engine's cache kinds, each a row against the same mlx-lm run (default kv)",
    )  # fmt: skip
    parser.add_argument(
        "--window", type=int, default=WINDOW, help=f"positions the rotating kind keeps (default {WINDOW})"
    )
    parser.add_argument(
        "--paged-decode",
        choices=["auto", "kernel", "copy"],
        default="auto",
        help="the paged kind's decode path",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per generator, best kept (default 3)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    model = make_model(args.size)
    print(f"serving: Llama {args.size} ({model.args.num_hidden_layers} layers, {model.args.hidden_size} wide), "
          f"{mx.default_device()}, prompts of {args.prompt_tokens}, {args.max_tokens} new tokens"
          + (f", paged_decode {args.paged_decode}" if "paged" in args.cache else ""))  # fmt: skip
    print("| batch | cache | engine tok/s | mlx-lm tok/s | engine/mlx-lm | engine TTFT | engine ms/step "
          "(host + wait) | mlx-lm ms/step | KV B/token | same tokens |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for batch in args.batch:
        for r in throughput(
            model,
            batch,
            args.prompt_tokens,
            args.max_tokens,
            args.cache,
            args.repeat,
            args.paged_decode,
            args.window,
        ):
            results.append(r)
            print(
                f"| {batch} | {r.cache} | {r.engine_tokens_per_s:.1f} | {r.mlx_lm_tokens_per_s:.1f} | "
                f"{r.ratio:.2f} | {r.engine_ttft_s * 1e3:.1f} ms | {r.engine_host_ms_per_step:.2f} + "
                f"{r.engine_wait_ms_per_step:.2f} | {r.mlx_lm_ms_per_step:.2f} | {r.kv_bytes_per_token:.0f} | "
                f"{r.same_tokens} |"
            )
    for r in results:
        if r.difference:
            print(f"batch {r.batch}, {r.cache}: {r.difference}")
    waste = {}
    for batch, prompt in ((max(args.batch), args.prompt_tokens), (8, args.prefix_tokens)):
        waste[prompt] = (batch, *paged_waste(model, batch, prompt, args.max_tokens))
        print(f"paged KV waste (kernel decode, batch {batch}, prompts of {prompt}-{prompt + min(15, batch - 1)} "
              f"tokens): mean {waste[prompt][1]:.1%}, largest {waste[prompt][2]:.1%} of the slots the "
              "block tables hold")  # fmt: skip
    cold, warm = prefix_reuse(model, args.prefix_tokens)
    print(f"prefix reuse ({args.prefix_tokens} tokens, {args.prefix_tokens - 16} shared): time to first token "
          f"{cold * 1e3:.1f} ms cold, {warm * 1e3:.1f} ms warm ({cold / warm:.1f}x)")  # fmt: skip
    if args.json:
        payload = {
            "throughput": [asdict(r) | {"ratio": r.ratio} for r in results],
            "prefix": {"cold_s": cold, "warm_s": warm},
            "paged_waste": [
                {"batch": batch, "prompt_tokens": prompt, "mean": mean, "largest": largest}
                for prompt, (batch, mean, largest) in waste.items()
            ],
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
