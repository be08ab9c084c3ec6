"""mlx_primitives.ane: every exported block saved, reloaded and run by the NumPy MIL interpreter
against the MLX forward; the checker on planted ANE-unfriendly programs; the optional dependency.

There is no Core ML runtime on Linux: the interpreter (ane/mil_interpreter.py) is the oracle,
and ANEModule's predict is tested to refuse clearly.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

ct = pytest.importorskip("coremltools", reason='the ane extra is not installed: pip install ".[ane]"')

import mlx_primitives.ane as ane  # noqa: E402
from mlx_lm.models import llama  # noqa: E402
from mlx_primitives import glu, norms  # noqa: E402
from mlx_primitives.ane.export import META_LAYOUT  # noqa: E402

mb = ct.converters.mil.Builder
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _llama_args() -> llama.ModelArgs:
    # GQA (6 query heads over 2 kv heads), head_dim 10, odd-ish widths.
    return llama.ModelArgs(
        model_type="llama",
        hidden_size=60,
        num_hidden_layers=1,
        intermediate_size=94,
        num_attention_heads=6,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        vocab_size=11,
        rope_theta=500.0,
    )


def _randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random weights everywhere (norm weights and biases too, which default to ones and zeros)."""
    rng = np.random.default_rng(seed)
    params = nn.utils.tree_flatten(module.parameters())
    module.update(
        nn.utils.tree_unflatten(
            [(k, mx.array(rng.normal(0, 0.3, v.shape).astype(np.float32)).astype(v.dtype)) for k, v in params]
        )
    )
    return module


def _blocks() -> dict[str, tuple[nn.Module, int]]:
    """name -> (module, input channels)."""
    mx.random.seed(0)
    ln = nn.LayerNorm(37)
    return {
        "linear": (nn.Linear(37, 19), 37),
        "linear_nobias": (nn.Linear(37, 19, bias=False), 37),
        "rmsnorm": (nn.RMSNorm(37), 37),
        "rmsnorm_mlxp": (norms.RMSNorm(37), 37),
        "layernorm": (ln, 37),
        "layernorm_noaffine": (nn.LayerNorm(37, affine=False), 37),
        "swiglu": (glu.SwiGLU(37, 53, bias=True), 37),
        "llama_mlp": (llama.MLP(_llama_args()), 60),
        "attention": (llama.Attention(_llama_args()), 60),
        "transformer_block": (llama.TransformerBlock(_llama_args()), 60),
    }


BLOCKS = _blocks()
for _i, (_module, _) in enumerate(BLOCKS.values()):
    _randomize(_module, _i)


def _mlx_forward(name: str, module: nn.Module, x: mx.array) -> np.ndarray:
    x = x.astype(mx.float32)  # the fp16 input's exact values, through the float32 module
    y = module(x, mask="causal") if name in ("attention", "transformer_block") else module(x)
    return np.array(y.astype(mx.float32))


def _to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    return x if layout == "BSC" else np.ascontiguousarray(x.transpose(0, 2, 1)[:, :, None, :])


def _from_layout(y: np.ndarray, layout: str) -> np.ndarray:
    return y if layout == "BSC" else y[:, :, 0, :].transpose(0, 2, 1)


def _assert_fp16_close(ours: np.ndarray, ref: np.ndarray) -> None:
    # fp16 rounding at every op: errors grow with the values' magnitude and the op count.
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(ours.astype(np.float32), ref, atol=4e-3 * scale, rtol=4e-3)


def _roundtrip(model: object, tmp_path: object, name: str) -> ane.milspec.Program:
    path = os.path.join(str(tmp_path), f"{name}.mlpackage")
    model.save(path)
    reloaded = ct.models.MLModel(path, skip_model_load=True)
    assert reloaded.get_spec().WhichOneof("Type") == "mlProgram"
    return ane.load_program(path)


# --------------------------------------------------------------------------- export + interpreter


@pytest.mark.parametrize(
    "seq_len,runs",
    [(7, (7,)), ((3, 9), (3, 9))],
    ids=["static", "enumerated"],
)
@pytest.mark.parametrize("layout", ane.LAYOUTS)
@pytest.mark.parametrize("name", list(BLOCKS))
def test_export_matches_mlx(
    name: str, layout: str, seq_len: object, runs: tuple[int, ...], tmp_path: object
) -> None:
    module, channels = BLOCKS[name]
    program = _roundtrip(ane.export(module, seq_len=seq_len, layout=layout), tmp_path, name)
    assert program.inputs["x"].dtype == "FLOAT16"
    assert ane.check(program) == []
    assert program.metadata[META_LAYOUT] == layout
    rng = np.random.default_rng(len(name))
    for s in runs:
        x = (rng.standard_normal((1, s, channels)) * 2).astype(np.float16)
        ref = _mlx_forward(name, module, mx.array(x))
        out = ane.run_program(program, {"x": _to_layout(x, layout)})["y"]
        assert out.dtype == np.float16
        _assert_fp16_close(_from_layout(out, layout), ref)


def test_export_batch_and_bfloat16_weights(tmp_path: object) -> None:
    module = llama.TransformerBlock(_llama_args())
    _randomize(module, 42)
    module.set_dtype(mx.bfloat16)
    program = _roundtrip(ane.export(module, seq_len=5, batch=2), tmp_path, "bf16")
    x = np.random.default_rng(1).standard_normal((2, 5, 60)).astype(np.float16)
    module.set_dtype(mx.float32)  # bf16 values are exact in fp16 and fp32: the same weights
    ref = np.array(module(mx.array(x), mask="causal"))
    out = ane.run_program(program, {"x": _to_layout(x, "BC1S")})["y"]
    _assert_fp16_close(_from_layout(out, "BC1S"), ref)


def test_norm_is_fp16_safe_on_large_inputs(tmp_path: object) -> None:
    # |x| ~ 3000: x * x overflows fp16 (65504), the scaled formulation does not.
    module = nn.RMSNorm(37)
    program = _roundtrip(ane.export(module, seq_len=4), tmp_path, "big")
    x = (np.random.default_rng(2).standard_normal((1, 4, 37)) * 3000).astype(np.float16)
    out = ane.run_program(program, {"x": _to_layout(x, "BC1S")})["y"]
    assert np.all(np.isfinite(out))
    _assert_fp16_close(_from_layout(out, "BC1S"), _mlx_forward("rmsnorm", module, mx.array(x)))


def test_float32_export_runs_and_is_flagged(tmp_path: object) -> None:
    module, channels = BLOCKS["swiglu"]
    program = _roundtrip(ane.export(module, seq_len=6, compute_precision="float32"), tmp_path, "fp32")
    x = np.random.default_rng(3).standard_normal((1, 6, channels)).astype(np.float32)
    out = ane.run_program(program, {"x": _to_layout(x, "BC1S")})["y"]
    np.testing.assert_allclose(
        _from_layout(out, "BC1S"), _mlx_forward("swiglu", module, mx.array(x)), atol=1e-4
    )
    with pytest.warns(ane.ANECompatibilityWarning, match=r"\[float32-compute\] conv 'mlp_gate_proj'"):
        findings = ane.check(program)
    assert {f.rule for f in findings} == {"float32-compute"}


def test_interpreter_vocabulary_is_what_the_exporter_emits() -> None:
    # Between them these exports emit every op: the block with enumerated shapes (runtime slicing),
    # BSC (the edge transposes), LayerNorm (sub) and a float32 program (its output identity).
    exports = [
        (BLOCKS["transformer_block"][0], {"seq_len": (2, 4), "layout": "BSC"}),
        (BLOCKS["layernorm"][0], {"seq_len": 4}),
        (BLOCKS["linear"][0], {"seq_len": 4, "compute_precision": "float32"}),
    ]
    emitted = {op.type for module, kw in exports for op in ane.load_program(ane.export(module, **kw)).ops}
    assert emitted - {"const"} == ane.mil_interpreter.EXECUTES


# --------------------------------------------------------------------------- export errors


def test_export_rejects_bad_arguments() -> None:
    linear = BLOCKS["linear"][0]
    with pytest.raises(TypeError, match=r"\[export\] module must be .* got Conv1d"):
        ane.export(nn.Conv1d(3, 4, 1), seq_len=4)
    with pytest.raises(ValueError, match=r"\[export\] layout must be one of \('BC1S', 'BSC'\), got 'BSHD'"):
        ane.export(linear, seq_len=4, layout="BSHD")
    with pytest.raises(ValueError, match=r"\[export\] seq_len must be a positive int"):
        ane.export(linear, seq_len=0)
    with pytest.raises(ValueError, match=r"\[export\] compute_precision must be one of"):
        ane.export(linear, seq_len=4, compute_precision="bfloat16")
    with pytest.raises(ValueError, match=r"\[export\] deployment_target must be iOS16/macOS13 or later"):
        ane.export(linear, seq_len=4, deployment_target="iOS15")
    big = nn.Linear(3, 2)
    big.weight = mx.full((2, 3), 1e6).astype(mx.bfloat16)
    with pytest.raises(
        ValueError, match=r"\[export\] linear.weight has bfloat16 values beyond float16's range"
    ):
        ane.export(big, seq_len=4)


def test_export_rejects_unsupported_rope() -> None:
    args = _llama_args()
    args.rope_traditional = True
    with pytest.raises(ValueError, match=r"\[export\] rope must rotate halves .* got traditional=True"):
        ane.export(llama.Attention(args), seq_len=4)


def test_export_deployment_target() -> None:
    model = ane.export(BLOCKS["linear"][0], seq_len=4, deployment_target=ct.target.iOS17)
    assert model.get_spec().specificationVersion == ct.target.iOS17.value


# --------------------------------------------------------------------------- checker


def _convert(program: object, precision: object = None) -> object:
    return ct.convert(
        program,
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS16,
        compute_precision=precision or ct.precision.FLOAT16,
        skip_model_load=True,
    )


def _rules(model: object) -> dict[str, ane.Finding]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ane.ANECompatibilityWarning)
        return {f.rule: f for f in ane.check(model, raise_on_error=False)}


def test_checker_dynamic_shape() -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 8, 1, ct.converters.mil.mil.get_new_symbol()))])
    def program(x):
        return mb.mul(x=x, y=2.0, name="doubled")

    finding = _rules(_convert(program))["dynamic-shape"]
    assert finding.severity == "error" and finding.op == "x" and "EnumeratedShapes" in finding.message
    with pytest.raises(ane.ANECompatibilityError, match=r"\[dynamic-shape\] input 'x'"):
        ane.check(_convert(program))


def _scatter_program() -> object:
    # A fresh program per conversion: ct.convert rewrites the program it is given in place.
    @mb.program(
        input_specs=[
            mb.TensorSpec(shape=(4, 3)),
            mb.TensorSpec(shape=(2,), dtype=ct.converters.mil.mil.types.int32),
        ]
    )
    def program(x, idx):
        return mb.scatter(data=x, indices=idx, updates=np.ones((2, 3), np.float32), name="scattered")

    return program


def test_checker_scatter_is_unsupported_and_the_interpreter_refuses_it() -> None:
    finding = _rules(_convert(_scatter_program()))["unsupported-op"]
    assert finding.op_type == "scatter" and finding.op.startswith("scattered") and finding.severity == "error"
    # In float32 there is no input cast before it: the interpreter reaches the scatter and stops.
    model = _convert(_scatter_program(), ct.precision.FLOAT32)
    with pytest.raises(ane.UnsupportedMILOp, match=r"op 'scattered' of type 'scatter' is not implemented"):
        ane.run_program(model, {"x": np.zeros((4, 3)), "idx": np.array([0, 1], np.int32)})


def test_checker_dynamic_gather() -> None:
    table = np.random.default_rng(0).standard_normal((11, 8)).astype(np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=(5,), dtype=ct.converters.mil.mil.types.int32)])
    def program(ids):
        return mb.gather(x=table, indices=ids, axis=0, name="embed")

    finding = _rules(_convert(program))["dynamic-gather"]
    assert finding.op.startswith("embed") and "indices" in finding.message


def test_checker_dim_limit() -> None:
    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 1, 16385))])
    def program(x):
        return mb.add(x=x, y=1.0, name="wide")

    rules = {(f.rule, f.op) for f in ane.check(_convert(program), raise_on_error=False)}
    assert ("dim-limit", "x") in rules and ("dim-limit", "wide") in rules


@pytest.mark.parametrize("fill", [-np.inf, np.finfo(np.float32).min], ids=["-inf", "float32-lowest"])
def test_checker_inf_mask(fill: float) -> None:
    mask = np.triu(np.full((6, 6), fill, np.float32), k=1)

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 2, 6, 6))])
    def program(scores):
        return mb.softmax(x=mb.add(x=scores, y=mask, name="masked"), axis=-1)

    findings = [f for f in ane.check(_convert(program), raise_on_error=False) if f.rule == "inf-mask"]
    assert findings and "-1e4" in findings[0].message


def test_checker_passes_the_exported_mask_value() -> None:
    assert ane.MASK_VALUE == -1e4
    assert ane.check(ane.export(BLOCKS["attention"][0], seq_len=(4, 8))) == []


# --------------------------------------------------------------------------- runtime and the optional extra


def test_ane_module_refuses_to_predict_on_linux(tmp_path: object) -> None:
    if sys.platform == "darwin":
        pytest.skip("the Core ML runtime exists on macOS")
    module, channels = BLOCKS["swiglu"]
    path = os.path.join(str(tmp_path), "m.mlpackage")
    ane.export(module, seq_len=4).save(path)
    for model in (path, ct.models.MLModel(path, skip_model_load=True)):
        wrapped = ane.ANEModule(model)
        assert wrapped.layout == "BC1S" and wrapped.block == "swiglu"
        with pytest.raises(
            ane.CoreMLRuntimeUnavailable, match=r"\[ANEModule.predict\] Core ML runs models on macOS"
        ):
            wrapped(mx.zeros((1, 4, channels)))
        with pytest.raises(ane.CoreMLRuntimeUnavailable, match=r"\[ANEModule.predict\]"):
            wrapped.compute_plan()
    with pytest.raises(ValueError, match="compute_units must name a coremltools.ComputeUnit"):
        ane.ANEModule(path, compute_units="NE_ONLY")


def test_import_without_coremltools() -> None:
    script = (
        "import sys; sys.modules['coremltools'] = None\n"
        "import mlx.nn as nn, mlx_primitives.ane as ane\n"
        "try:\n"
        "    ane.export(nn.Linear(4, 4), seq_len=2)\n"
        "except ImportError as err:\n"
        "    print('IMPORTERROR', err)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "IMPORTERROR [export] needs coremltools, which is not installed" in done.stdout
    assert 'pip install ".[ane]"' in done.stdout


def test_example_runs(tmp_path: object) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    path = os.path.join(str(tmp_path), "block.mlpackage")
    done = subprocess.run(
        [sys.executable, "examples/ane_export.py", path],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("OK") and os.path.isdir(path)
