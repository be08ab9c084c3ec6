"""The selective scan (Mamba) and MambaBlock against a float64 NumPy recurrence.

The checkpoint interval is cut to 8 steps so that short sequences cover one chunk, a chunk and
one step, and several chunks and a tail. dim 13 is not a multiple of the 8 channels a program
owns, and N 16 fills the state tiles while N 1 and 3 leave them mostly empty or masked.
Gradients are checked against `mx.grad` of the plain-MLX reference and, in float64, against
central differences of the NumPy recurrence along random directions. The kernels keep few
specializations (the emulators compile each one): one per (dtype, z, softplus, tile).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from conftest import to_numpy, tolerance
from mlx_primitives import ssm

CHUNK = 8
NAMES = ("x", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


@pytest.fixture(autouse=True)
def short_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssm, "_CHUNK", CHUNK)


def f64(x: mx.array) -> np.ndarray:
    return to_numpy(x).astype(np.float64)


def make_inputs(
    rng: np.random.Generator,
    batch: int,
    dim: int,
    seqlen: int,
    n_state: int,
    dtype: mx.Dtype = mx.float32,
    groups: int | None = None,
) -> dict[str, mx.array]:
    """Every argument of a full call; B and C are (batch, N, L), or grouped with `groups`."""

    def rand(shape: tuple[int, ...], scale: float = 1.0, dt: mx.Dtype = dtype) -> mx.array:
        return mx.array((rng.standard_normal(shape) * scale).astype(np.float32)).astype(dt)

    bc = (batch, n_state, seqlen) if groups is None else (batch, groups, n_state, seqlen)
    return {
        "x": rand((batch, dim, seqlen)),
        "delta": rand((batch, dim, seqlen), 0.5),
        "A": mx.array(-rng.uniform(0.2, 2.0, (dim, n_state)).astype(np.float32)),
        "B": rand(bc),
        "C": rand(bc),
        "D": rand((dim,), dt=mx.float32),
        "z": rand((batch, dim, seqlen)),
        "delta_bias": rand((dim,), 0.3, dt=mx.float32),
        "initial_state": rand((batch, dim, n_state), dt=mx.float32),
    }


def scan64(
    x: np.ndarray,
    delta: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    D: np.ndarray | None = None,
    z: np.ndarray | None = None,
    delta_bias: np.ndarray | None = None,
    delta_softplus: bool = True,
    initial_state: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The recurrence step by step in float64: (out, last state)."""
    batch, dim, seqlen = x.shape
    if B.ndim == 3:
        B, C = B[:, None], C[:, None]
    B, C = (np.repeat(v, dim // v.shape[1], axis=1) for v in (B, C))  # (batch, dim, N, L)
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    if delta_softplus:
        delta = np.logaddexp(0.0, delta)
    h = np.zeros((batch, dim, A.shape[1])) if initial_state is None else initial_state.copy()
    y = np.empty((batch, dim, seqlen))
    for t in range(seqlen):
        dt = delta[:, :, t, None]
        h = np.exp(dt * A) * h + dt * x[:, :, t, None] * B[..., t]
        y[:, :, t] = (h * C[..., t]).sum(-1)
    if D is not None:
        y = y + D[:, None] * x
    if z is not None:
        y = y * z / (1 + np.exp(-z))
    return y, h


def run(
    inputs: dict[str, mx.array], use: tuple[str, ...], softplus: bool = True
) -> tuple[mx.array, mx.array]:
    args = {k: inputs[k] for k in NAMES if k in use or k in ("x", "delta", "A", "B", "C")}
    return ssm.selective_scan(**args, delta_softplus=softplus, return_last_state=True)


def run64(inputs: dict[str, mx.array], use: tuple[str, ...], softplus: bool = True) -> tuple[np.ndarray, ...]:
    args = {k: f64(inputs[k]) for k in NAMES if k in use or k in ("x", "delta", "A", "B", "C")}
    return scan64(**args, delta_softplus=softplus)


ALL = ("D", "z", "delta_bias", "initial_state")


@pytest.mark.parametrize("seqlen", [1, 7, CHUNK + 1, 3 * CHUNK + 5])
def test_forward(backend: str, rng: np.random.Generator, seqlen: int) -> None:
    inputs = make_inputs(rng, 2, 13, seqlen, 16)
    out, last = run(inputs, ALL)
    ref_out, ref_last = run64(inputs, ALL)
    assert out.dtype == mx.float32 and last.dtype == mx.float32
    np.testing.assert_allclose(to_numpy(out), ref_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(last), ref_last, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_state", [1, 3])
def test_forward_plain(backend: str, rng: np.random.Generator, n_state: int) -> None:
    """No D, z, bias, initial state or softplus (delta kept positive instead)."""
    inputs = make_inputs(rng, 2, 5, 2 * CHUNK + 3, n_state)
    inputs["delta"] = mx.abs(inputs["delta"])
    out, last = run(inputs, (), softplus=False)
    ref_out, ref_last = run64(inputs, (), softplus=False)
    np.testing.assert_allclose(to_numpy(out), ref_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(last), ref_last, rtol=1e-4, atol=1e-4)


def test_grouped(backend: str, rng: np.random.Generator) -> None:
    """(batch, groups, N, L) B and C: channels 0-5 read group 0, 6-11 group 1."""
    inputs = make_inputs(rng, 2, 12, CHUNK + 3, 16, groups=2)
    out, last = run(inputs, ALL)
    ref_out, ref_last = run64(inputs, ALL)
    np.testing.assert_allclose(to_numpy(out), ref_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(to_numpy(last), ref_last, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [mx.float16, mx.bfloat16])
def test_forward_half(backend: str, rng: np.random.Generator, dtype: mx.Dtype) -> None:
    inputs = make_inputs(rng, 2, 13, CHUNK + 5, 16, dtype)
    out, last = run(inputs, ALL)
    ref_out, ref_last = run64(inputs, ALL)
    assert out.dtype == dtype
    tol = tolerance(dtype)
    scale = np.abs(ref_out).max()
    np.testing.assert_allclose(to_numpy(out), ref_out, rtol=tol["rtol"], atol=tol["atol"] * scale)
    np.testing.assert_allclose(to_numpy(last), ref_last, rtol=1e-4, atol=1e-4)


def test_split_sequence(backend: str, rng: np.random.Generator) -> None:
    """Two calls with the state carried give the output of one call over the whole sequence,
    however the cut falls against the checkpoint chunks: variable-length batching."""
    seqlen = 3 * CHUNK + 2
    inputs = make_inputs(rng, 2, 13, seqlen, 16)
    whole, whole_last = run(inputs, ALL)
    for cut in (1, CHUNK, CHUNK + 3):
        first = {k: (v[..., :cut] if v.ndim == 3 and k != "initial_state" else v) for k, v in inputs.items()}
        second = {k: (v[..., cut:] if v.ndim == 3 and k != "initial_state" else v) for k, v in inputs.items()}
        out1, state = run(first, ALL)
        second["initial_state"] = state
        out2, last = run(second, ALL)
        np.testing.assert_allclose(
            to_numpy(mx.concatenate([out1, out2], axis=-1)), to_numpy(whole), atol=2e-5
        )
        np.testing.assert_allclose(to_numpy(last), to_numpy(whole_last), atol=2e-5)


def _loss(fn, use: tuple[str, ...], softplus: bool, w_out: mx.array, w_last: mx.array):  # type: ignore[no-untyped-def]
    def loss(*args: mx.array) -> mx.array:
        kwargs = dict(zip(("x", "delta", "A", "B", "C", *use), args))
        out, last = fn(**kwargs, delta_softplus=softplus, return_last_state=True)
        return (out.astype(mx.float32) * w_out).sum() + (last * w_last).sum()

    return loss


@pytest.mark.parametrize(
    ("use", "softplus", "n_state", "groups"),
    [(ALL, True, 16, None), ((), False, 3, None), (ALL, True, 16, 2)],
    ids=["full", "plain", "grouped"],
)
def test_backward(
    backend: str,
    rng: np.random.Generator,
    use: tuple[str, ...],
    softplus: bool,
    n_state: int,
    groups: int | None,
) -> None:
    """Every gradient against mx.grad of the reference, and its directional derivative against
    float64 central differences of the NumPy recurrence."""
    inputs = make_inputs(rng, 2, 12, 2 * CHUNK + 5, n_state, groups=groups)
    if not softplus:
        inputs["delta"] = mx.abs(inputs["delta"])
    names = ("x", "delta", "A", "B", "C", *use)
    args = [inputs[k] for k in names]
    w_out = mx.array(rng.standard_normal(inputs["x"].shape).astype(np.float32))
    w_last = mx.array(rng.standard_normal((2, 12, n_state)).astype(np.float32))
    argnums = list(range(len(args)))
    grads = mx.grad(_loss(ssm.selective_scan, use, softplus, w_out, w_last), argnums=argnums)(*args)
    ref = mx.grad(_loss(ssm.selective_scan_reference, use, softplus, w_out, w_last), argnums=argnums)(*args)
    for name, g, r, a in zip(names, grads, ref, args):
        assert g.shape == a.shape and g.dtype == a.dtype, name
        scale = float(np.abs(to_numpy(r)).max())
        np.testing.assert_allclose(to_numpy(g), to_numpy(r), rtol=1e-4, atol=1e-4 * scale, err_msg=name)

    def loss64(values: list[np.ndarray]) -> float:
        out, last = scan64(**dict(zip(names, values)), delta_softplus=softplus)
        return float((out * f64(w_out)).sum() + (last * f64(w_last)).sum())

    base = [f64(a) for a in args]
    for _ in range(2):
        direction = [rng.standard_normal(a.shape) for a in base]
        eps = 1e-6
        plus = loss64([a + eps * d for a, d in zip(base, direction)])
        minus = loss64([a - eps * d for a, d in zip(base, direction)])
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(float((f64(g) * d).sum()) for g, d in zip(grads, direction))
        assert abs(analytic - numeric) <= 1e-4 * (abs(numeric) + 1.0), (analytic, numeric)


def test_backward_bfloat16(backend: str, rng: np.random.Generator) -> None:
    inputs = make_inputs(rng, 2, 12, CHUNK + 3, 16, mx.bfloat16)
    names = ("x", "delta", "A", "B", "C", *ALL)
    args = [inputs[k] for k in names]
    w_out = mx.array(rng.standard_normal(inputs["x"].shape).astype(np.float32))
    w_last = mx.array(rng.standard_normal((2, 12, 16)).astype(np.float32))
    argnums = list(range(len(args)))
    grads = mx.grad(_loss(ssm.selective_scan, ALL, True, w_out, w_last), argnums=argnums)(*args)
    # the reference on the same (rounded) inputs in float32
    args32 = [a.astype(mx.float32) for a in args]
    ref = mx.grad(_loss(ssm.selective_scan_reference, ALL, True, w_out, w_last), argnums=argnums)(*args32)
    for name, g, r, a in zip(names, grads, ref, args):
        assert g.dtype == a.dtype, name
        scale = float(np.abs(to_numpy(r)).max())
        np.testing.assert_allclose(to_numpy(g), to_numpy(r), rtol=3e-2, atol=3e-2 * scale, err_msg=name)


def test_mamba_block(backend: str, rng: np.random.Generator) -> None:
    """The block's gradients match the block on the reference scan, and a few Adam steps on a
    tiny regression (half the input) lower the loss."""
    mx.random.seed(int(rng.integers(1 << 30)))
    block = ssm.MambaBlock(d_model=8, d_state=4, d_conv=4, expand=2)
    x = mx.array(rng.standard_normal((2, CHUNK + 5, 8)).astype(np.float32))
    # A target the block can approach (random targets left some seeds' loss above 0.9x after 5 steps)
    target = 0.5 * x

    def loss(model: ssm.MambaBlock, reference: bool = False) -> mx.array:
        return ((model(x, reference=reference) - target) ** 2).mean()

    value, grads = nn.value_and_grad(block, loss)(block)
    ref_value, ref_grads = nn.value_and_grad(block, lambda m: loss(m, True))(block)
    np.testing.assert_allclose(float(value), float(ref_value), rtol=1e-5)
    flat, ref_flat = dict(_flatten(grads)), dict(_flatten(ref_grads))
    assert set(flat) == {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight",
                         "dt_proj.bias", "A_log", "D", "out_proj.weight"}  # fmt: skip
    for name, g in flat.items():
        scale = float(np.abs(to_numpy(ref_flat[name])).max())
        np.testing.assert_allclose(
            to_numpy(g), to_numpy(ref_flat[name]), atol=1e-4 * scale + 1e-7, err_msg=name
        )

    optimizer = optim.Adam(learning_rate=1e-2)
    step = nn.value_and_grad(block, loss)
    first = float(value)
    for _ in range(5):
        value, grads = step(block)
        optimizer.update(block, grads)
        mx.eval(block.parameters(), optimizer.state)
    assert float(loss(block)) < 0.9 * first


def _flatten(tree: dict, prefix: str = "") -> list[tuple[str, mx.array]]:
    items = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            items += _flatten(value, name + ".")
        else:
            items.append((name, value))
    return items


def test_errors(rng: np.random.Generator) -> None:
    inputs = make_inputs(rng, 2, 6, 5, 4)
    x, delta, A, B, C = (inputs[k] for k in ("x", "delta", "A", "B", "C"))
    scan = ssm.selective_scan
    with pytest.raises(ValueError, match=r"^\[selective_scan\] x has shape \(2, 6\); expected 3 axes"):
        scan(x[:, :, 0], delta, A, B, C)
    with pytest.raises(
        ValueError, match=r"^\[selective_scan\] delta has shape \(2, 6, 4\); expected \(2, 6, 5\)"
    ):
        scan(x, delta[..., :4], A, B, C)
    with pytest.raises(ValueError, match=r"^\[selective_scan\] A has shape \(5, 4\); expected \(6, N\)"):
        scan(x, delta, A[:5], B, C)
    with pytest.raises(
        ValueError, match=r"^\[selective_scan\] B has shape \(2, 3, 5\); expected \(2, 4, 5\)"
    ):
        scan(x, delta, A, B[:, :3], C)
    with pytest.raises(
        ValueError, match=r"^\[selective_scan\] C has shape \(2, 4, 4\); expected \(2, 4, 5\)"
    ):
        scan(x, delta, A, B, C[..., :4])
    with pytest.raises(
        ValueError, match=r"^\[selective_scan\] B has shape \(2, 4, 4, 5\); its groups must divide"
    ):
        scan(x, delta, A, mx.zeros((2, 4, 4, 5)), C)
    with pytest.raises(ValueError, match=r"^\[selective_scan\] D has shape \(5,\); expected \(6,\)"):
        scan(x, delta, A, B, C, D=inputs["D"][:5])
    with pytest.raises(
        ValueError, match=r"^\[selective_scan\] initial_state has shape \(2, 6, 3\); expected \(2, 6, 4\)"
    ):
        scan(x, delta, A, B, C, initial_state=inputs["initial_state"][..., :3])
    with pytest.raises(
        TypeError, match=r"^\[selective_scan\] x has dtype int32; supported: float32, float16"
    ):
        scan(x.astype(mx.int32), delta, A, B, C)
    with pytest.raises(
        TypeError, match=r"^\[selective_scan\] B has dtype float16; expected float32 to match x$"
    ):
        scan(x, delta, A, B.astype(mx.float16), C)
    with pytest.raises(TypeError, match=r"^\[selective_scan\] A has dtype int32; supported"):
        scan(x, delta, A.astype(mx.int32), B, C)
    with pytest.raises(TypeError, match=r"^\[selective_scan\] z has type list; expected an mx.array$"):
        scan(x, delta, A, B, C, z=[1.0])
