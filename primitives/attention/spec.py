"""What one attention call computes, shared by the forward, decode and backward kernels.

`AttentionSpec` is the part of a call that is not an array: scale, causality, the window, the
mask's kind, dropout. It is frozen and hashable, so it rides through `mx.custom_function` as a
keyword and the backward sees exactly what the forward did.

Conventions every kernel follows:
- Queries are aligned to the end of the keys, as in `mx.fast.scaled_dot_product_attention`:
  query i sits at key position `i + Lk - Lq` (prefill and decode against a cache).
- `causal`: query position p sees keys j <= p.
- `window` w: p sees keys with p - w < j (the last w positions, itself included: mlx-lm's
  `create_causal_mask(..., window_size=w)`); without `causal` the window is two-sided,
  |p - j| < w.
- A boolean mask keeps the True entries; an additive mask is added to the scaled scores.
- Sinks: one logit per query head that joins every row's softmax denominator and adds no value.
- Dropout drops each probability with chance p after the softmax and scales the survivors
  by 1 / (1 - p): element (b, h, i, j) is kept where
  `tl.rand(seed + ((b * H + h) << 32), i * Lk + j) > p` (an int64 seed, int32 offsets), so
  forward and backward see the same stream. Offsets wrap past 2**31 (Lq * Lk that large
  repeats the stream).
- A query that sees no key (fully masked, or a causal query before the first key) gets a zero
  row and a log-sum-exp of -inf.
"""

from __future__ import annotations

from dataclasses import dataclass

MASK_NONE, MASK_BOOL, MASK_ADDITIVE = 0, 1, 2


@dataclass(frozen=True)
class AttentionSpec:
    """The non-array part of an attention call (see the module docstring for each field)."""

    scale: float
    causal: bool = False
    window: int | None = None
    mask_kind: int = MASK_NONE
    has_sinks: bool = False
    dropout_p: float = 0.0
    seed: int = 0
