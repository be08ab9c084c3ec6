"""Suite `serving`: GenerationEngine against mlx-lm's BatchGenerator on one model and machine.

    python -m benchmarks.serving [--size tiny|small|1b] [--batch 1 8 32] [--cache kv|paged] [--repeat 3] [--json FILE]

For each batch size both serve the same random prompts (greedy, the same max_tokens, no stop
tokens), `--repeat` times in turn, each keeping its best run; the engine takes up to 2,048
prompt tokens a step (mlx-lm's default `prefill_step_size`). The table shows generated tokens
per second (mtriton/mlx-lm as a ratio: above 1, the engine is faster), the mean time to first token, and KV bytes held per token. Then the
prefix case: a request whose 1,024-token prompt shares its first 1,008 tokens with an earlier
one, time to first token cold (no shared blocks) and warm (the paged pool holds the prefix).

The models are mlx-lm Llamas with random weights (`--size`): "tiny" for tests, "small" (8
layers, 512 wide) for the CPU, "1b" (16 layers, 2048 wide, 8 KV heads; Llama-3.2-1B's shape)
for a GPU. Both generators' tokens are compared; a mismatch is reported, not hidden.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import mlx.core as mx
import numpy as np
from mlx_lm.generate import BatchGenerator
from mlx_lm.models import llama
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


@dataclass(frozen=True)
class ServingResult:
    batch: int
    prompt_tokens: int
    max_tokens: int
    engine_tokens_per_s: float
    mlx_lm_tokens_per_s: float
    engine_ttft_s: float
    kv_bytes_per_token: float
    same_tokens: bool

    @property
    def ratio(self) -> float:
        return self.engine_tokens_per_s / self.mlx_lm_tokens_per_s


def make_model(size: str) -> llama.Model:
    args = llama.ModelArgs(model_type="llama", rms_norm_eps=1e-5, tie_word_embeddings=True, **SIZES[size])
    mx.random.seed(0)
    model = llama.Model(args)
    model.set_dtype(mx.float16 if mx.default_device() == mx.gpu else mx.float32)
    mx.eval(model.parameters())
    return model


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
    model: llama.Model, prompts: list[list[int]], max_tokens: int, cache: str, paged_decode: str = "auto"
) -> tuple[list[list[int]], GenerationEngine]:
    longest = max(len(p) for p in prompts) + max_tokens
    engine = GenerationEngine(
        model, cache=cache, max_batch=len(prompts), token_budget=max(PREFILL_TOKENS, len(prompts)),
        prefill_chunk=PREFILL_TOKENS, num_blocks=len(prompts) * (-(-longest // 16)) + 16,
        paged_decode=paged_decode,
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
    cache: str,
    repeat: int = 1,
    paged_decode: str = "auto",
) -> ServingResult:
    """Both generators on the same prompts, `repeat` times in turn; each one's best run (a
    shared CPU's noise only ever slows a run down)."""
    rng = np.random.default_rng(batch)
    vocab = model.args.vocab_size
    prompts = [rng.integers(0, vocab, prompt_tokens).tolist() for _ in range(batch)]
    run_engine(model, prompts[:1], 2, cache, paged_decode)  # warm-up: both compile their graphs once
    run_mlx_lm(model, prompts[:1], 2)
    their_seconds, stats = math.inf, None
    for _ in range(repeat):
        settle()
        theirs, seconds = run_mlx_lm(model, prompts, max_tokens)
        their_seconds = min(their_seconds, seconds)
        settle()
        ours, engine = run_engine(model, prompts, max_tokens, cache, paged_decode)
        if stats is None or engine.stats().tokens_per_second > stats.tokens_per_second:
            stats = engine.stats()
    layers, kv_heads, head_dim = (
        model.args.num_hidden_layers,
        model.args.num_key_value_heads,
        model.args.head_dim,
    )
    dtype_size = model.layers[0].self_attn.k_proj.weight.dtype.size
    return ServingResult(
        batch=batch,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        engine_tokens_per_s=stats.tokens_per_second,
        mlx_lm_tokens_per_s=batch * max_tokens / their_seconds,
        engine_ttft_s=stats.mean_time_to_first_token,
        kv_bytes_per_token=2
        * layers
        * kv_heads
        * (head_dim or model.args.hidden_size // model.args.num_attention_heads)
        * dtype_size,
        same_tokens=ours == theirs,
    )


def prefix_reuse(model: llama.Model, prompt_tokens: int = 1024) -> tuple[float, float]:
    """Time to first token of a prompt, cold and then with its first blocks in the pool."""
    rng = np.random.default_rng(7)
    prefix = rng.integers(0, model.args.vocab_size, prompt_tokens - 16).tolist()
    engine = GenerationEngine(model, cache="paged", token_budget=prompt_tokens, prefill_chunk=prompt_tokens)
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
        "--cache", choices=["kv", "paged", "quantized"], default="kv", help="the engine's cache kind"
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
          f"{mx.default_device()}, prompts of {args.prompt_tokens}, {args.max_tokens} new tokens, cache {args.cache}"
          + (f" (paged_decode {args.paged_decode})" if args.cache == "paged" else ""))  # fmt: skip
    print("| batch | engine tok/s | mlx-lm tok/s | engine/mlx-lm | engine TTFT | KV B/token | same tokens |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    results = []
    for batch in args.batch:
        r = throughput(
            model, batch, args.prompt_tokens, args.max_tokens, args.cache, args.repeat, args.paged_decode
        )
        results.append(r)
        print(
            f"| {batch} | {r.engine_tokens_per_s:.1f} | {r.mlx_lm_tokens_per_s:.1f} | {r.ratio:.2f} | "
            f"{r.engine_ttft_s * 1e3:.1f} ms | {r.kv_bytes_per_token:.0f} | {r.same_tokens} |"
        )
    cold, warm = prefix_reuse(model, args.prefix_tokens)
    print(f"prefix reuse ({args.prefix_tokens} tokens, {args.prefix_tokens - 16} shared): time to first token "
          f"{cold * 1e3:.1f} ms cold, {warm * 1e3:.1f} ms warm ({cold / warm:.1f}x)")  # fmt: skip
    if args.json:
        payload = {
            "throughput": [asdict(r) | {"ratio": r.ratio} for r in results],
            "prefix": {"cold_s": cold, "warm_s": warm},
        }
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
