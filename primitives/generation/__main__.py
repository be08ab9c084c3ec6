"""`python -m mlx_primitives.generation --model PATH --prompt TEXT`: stream a completion.

Loads an mlx-lm model from a local folder (`mlx_lm.load` on the path: nothing is downloaded),
runs the prompt through a `GenerationEngine` and prints the tokens as they come. A long prompt
runs in chunks, with a progress line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .engine import KINDS, GenerationEngine
from .sampling import SamplingParams


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_primitives.generation",
        description="Stream a completion from an mlx-lm model in a local folder, served by mlx_primitives' "
        "GenerationEngine.",
    )
    parser.add_argument(
        "--model", required=True, help="folder of an mlx-lm model (config.json, weights, tokenizer)"
    )
    parser.add_argument(
        "--prompt", required=True, action="append", help="prompt text; repeat for several prompts"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=100, help="tokens to generate per prompt (default 100)"
    )
    parser.add_argument("--temp", type=float, default=0.0, help="sampling temperature; 0 is greedy (default)")
    parser.add_argument(
        "--top-p", type=float, default=1.0, help="nucleus sampling threshold (default 1: off)"
    )
    parser.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (default 0: off)")
    parser.add_argument("--min-p", type=float, default=0.0, help="min-p threshold (default 0: off)")
    parser.add_argument("--seed", type=int, default=None, help="seed of each request's random stream")
    parser.add_argument("--cache", choices=KINDS, default="paged", help="KV cache kind (default paged)")
    parser.add_argument("--prefill-chunk", type=int, default=512, help="prompt tokens per step (default 512)")
    parser.add_argument("--stats", action="store_true", help="print the engine's metrics at the end")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from mlx_lm import load
    except ImportError:
        print("mlx-lm is needed to load a model: pip install 'mlx-primitives[lm]'", file=sys.stderr)
        return 2
    if not (Path(args.model) / "config.json").is_file():
        print(
            f"--model {args.model}: no config.json there (a local mlx-lm model folder is needed)",
            file=sys.stderr,
        )
        return 2
    model, tokenizer = load(args.model)
    params = SamplingParams(
        temperature=args.temp, top_p=args.top_p, top_k=args.top_k, min_p=args.min_p, seed=args.seed
    )
    engine = GenerationEngine(
        model, tokenizer, cache=args.cache, prefill_chunk=args.prefill_chunk,
        token_budget=max(args.prefill_chunk, 32),
    )  # fmt: skip
    for text in args.prompt:
        prompt = tokenizer.encode(text)
        request = engine.submit(prompt, max_tokens=args.max_tokens, params=params)
        shown = ""
        while not request.finished:
            engine.step()
            if not request.tokens and len(prompt) > args.prefill_chunk:
                print(
                    f"\rprompt: {request._scheduled.computed}/{len(prompt)} tokens",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            text_so_far = request.text
            print(text_so_far[len(shown) :], end="", flush=True)
            shown = text_so_far
        print()
    if args.stats:
        print(engine.stats(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
