"""The lowering shared by the C-like GPU languages (Metal, CUDA).

`lowering.py` is the driver (`Lowering`); `rules/` holds the rules, one module per op
family, in the table of `registry.py`. Around them: `dot_plan.py` (tensor-core planning,
made once per kernel), `software_pipeline.py` (prefetching dot operands across loop
iterations), `render.py` (C expressions for literals and elementwise ops), `entity.py`
(how a value lives in C), `layout.py` (how a block's elements are spread over threads),
`axis_info.py` (contiguity and divisibility, for vector accesses), `shared_memory.py`
(array sizes in threadgroup memory) and `dialect.py` (what differs between languages).
"""
