"""The layers people write, differentiated by every route and checked against an
independent automatic differentiation (JAX), at float64 precision.

Finite differences, the cross-route property's reference, agree to about 1e-6: a term
missing from a derivative that is a millionth of it would pass them. Here each layer is
written twice, once in the notation and once in jax.numpy by hand, and every route's
gradient (tests/routes.gradient_routes: evaluate, simplify, inline, the loops, compile,
printed and parsed back, the compiled gradient) and the compiled and evaluated Hessian
must equal jax.grad's and jax.hessian's to 1e-9. The layers are the textbook set: a
sigmoid layer, an MLP with softmax cross-entropy, a relu MLP with an L1 penalty, softmax
written as a ratio, one attention head and a causal one, layer norm, batch norm, an LSTM
cell, an RBF network, a Gaussian log-likelihood (logdet, inverse), a strided 1-D and a
"same"-padded 2-D convolution, max pooling, cosine similarity, the logistic loss, a Huber
loss by Iverson brackets, a margin by max and min, low-rank factorisation, and one SGD
step inside the loss (MAML), whose gradient holds a Hessian term; compiled on float32
arrays, each stays float32 and within 1e-5 of float64 JAX. And the Jacobians of
layers with many outputs (a sigmoid layer, softmax, layer norm, a strided convolution, a
matrix inverse, outer and Kronecker products, a bilinear layer, a diagonal, attention),
by every route, against jax.jacfwd. And generated programs (the cross-route generator):
JAX's autodiff of the compiled forward pass against the symbolic gradient and Hessian.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import Phase, given

import indexcalc as ic
from routes import gradient_routes, wrt_name
from strategies import FAR_SHIFT, route_cases, sample

jax = pytest.importorskip("jax", reason="jax is not installed (pip install \"indexcalc[jax]\")")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

RTOL, ATOL = 1e-9, 1e-11


@dataclass(frozen=True)
class Layer:
    """A layer in the notation, the same in jax.numpy (a function of the arrays by name,
    returning the last line's scalar), the arrays' shapes, and what to differentiate by
    (one first derivative per name; the Hessian by the first)."""

    text: str
    by_hand: object
    shapes: dict
    wrt: tuple[str, ...]
    positive: tuple[str, ...] = ()  # arrays drawn in (0.5, 1.5): logs and square roots of them
    labels: dict = field(default_factory=dict)  # name → classes: one-hot rows


def softmax_ce(s, y):
    return jax.nn.logsumexp(s, axis=-1) - jnp.sum(s * y, axis=-1)


LAYERS = {
    "sigmoid layer, squared error": Layer(
        "yhat_i = σ(w_ij x_j + b_i)\nloss = (yhat_j - y_j)(yhat_j - y_j)",
        lambda a: jnp.sum((jax.nn.sigmoid(a["w"] @ a["x"] + a["b"]) - a["y"]) ** 2),
        {"w": (3, 4), "x": (4,), "b": (3,), "y": (3,)}, ("w", "b", "x")),
    "MLP, softmax cross-entropy": Layer(
        "h_nk = tanh(W1_kj x_nj + b1_k)\ns_nc = W2_ck h_nk + b2_c\nL = mean_n(logsumexp_c(s_nc) - s_nc y_nc)",
        lambda a: jnp.mean(softmax_ce(jnp.tanh(a["x"] @ a["W1"].T + a["b1"]) @ a["W2"].T + a["b2"], a["y"])),
        {"W1": (4, 3), "x": (5, 3), "b1": (4,), "W2": (3, 4), "b2": (3,), "y": (5, 3)}, ("W1", "b2", "W2"),
        labels={"y": 3}),
    "softmax as a ratio": Layer(
        "p_nk = exp(x_nk) / sum_c(exp(x_nc))\nL = r_nk p_nk",
        lambda a: jnp.sum(a["r"] * jax.nn.softmax(a["x"], axis=1)),
        {"x": (3, 4), "r": (3, 4)}, ("x",)),
    "attention head": Layer(
        "q_se = x_sd Wq_de\nk_ue = x_ud Wk_de\nv_ue = x_ud Wv_de\n"
        "a_su = exp(q_se k_ue) / sum_t(exp(q_se k_te))\no_se = a_su v_ue\nL = r_se o_se",
        lambda a: jnp.sum(a["r"] * (jax.nn.softmax((a["x"] @ a["Wq"]) @ (a["x"] @ a["Wk"]).T, axis=1)
                                    @ (a["x"] @ a["Wv"]))),
        {"x": (4, 3), "Wq": (3, 2), "Wk": (3, 2), "Wv": (3, 2), "r": (4, 2)}, ("Wq", "Wk", "x")),
    "causal attention scores": Layer(
        "a_ij = [j <= i] exp(s_ij) / sum_k([k <= i] exp(s_ik))\nL = r_ij a_ij",
        lambda a: jnp.sum(a["r"] * jax.nn.softmax(jnp.where(jnp.tri(4, dtype=bool), a["s"], -jnp.inf), axis=1)),
        {"s": (4, 4), "r": (4, 4)}, ("s",)),
    "layer norm": Layer(
        "mu_n = mean_d(x_nd)\nc_nd = x_nd - mu_n\nv_n = mean_d(c_nd c_nd)\n"
        "y_nd = g_d c_nd / sqrt(v_n + 0.1) + b_d\nL = r_nd y_nd",
        lambda a: jnp.sum(a["r"] * (a["g"] * (a["x"] - a["x"].mean(1, keepdims=True))
                                    / jnp.sqrt(a["x"].var(1, keepdims=True) + 0.1) + a["b"])),
        {"x": (3, 4), "g": (4,), "b": (4,), "r": (3, 4)}, ("x", "g")),
    "batch norm": Layer(
        "h_nk = W_kj x_nj\nmu_k = mean_n(h_nk)\nv_k = mean_n((h_nk - mu_k)^2)\n"
        "z_nk = (h_nk - mu_k) / sqrt(v_k + 0.01)\nL = mean_n(sum_k(r_nk tanh(z_nk)))",
        lambda a: jnp.mean(jnp.sum(a["r"] * jnp.tanh(jax.nn.standardize(a["x"] @ a["W"].T, axis=0, epsilon=0.01)),
                                   axis=1)),
        {"W": (3, 2), "x": (5, 2), "r": (5, 3)}, ("W", "x")),
    "RBF network": Layer(
        "phi_nk = exp(-beta sum_j((x_nj - c_kj)^2))\nout_n = a_k phi_nk\nL = mean_n((out_n - y_n)^2)",
        lambda a: jnp.mean((jnp.exp(-a["beta"] * jnp.sum((a["x"][:, None, :] - a["c"][None]) ** 2, -1)) @ a["a"]
                            - a["y"]) ** 2),
        {"x": (5, 2), "c": (3, 2), "a": (3,), "y": (5,), "beta": ()}, ("c", "a", "beta"), positive=("beta",)),
    "Gaussian log-likelihood": Layer(
        "S_kl = A_ka A_la + 0.5 δ_kl\nL = 0.5 logdet(S_kl) + 0.5 r_i inv_ij(S_kl) r_j",
        lambda a: (lambda S: 0.5 * jnp.linalg.slogdet(S)[1] + 0.5 * a["r"] @ jnp.linalg.solve(S, a["r"]))(
            a["A"] @ a["A"].T + 0.5 * jnp.eye(3)),
        {"A": (3, 2), "r": (3,)}, ("A", "r")),
    "1-D convolution, stride 2": Layer(
        "h_nci = K_cdk x_{nd(2i+k)}\nL = sum_nci(h_nci h_nci)",
        lambda a: jnp.sum(jax.lax.conv_general_dilated(a["x"], a["K"], (2,), "VALID") ** 2),
        {"K": (2, 3, 3), "x": (2, 3, 9)}, ("K", "x")),
    "max pooling": Layer(
        "L = w_nci max_k(x_{nc(2i+k)})",
        lambda a: jnp.sum(a["w"] * jnp.max(jnp.stack([a["x"][:, :, k:k + 7:2] for k in range(3)]), axis=0)),
        {"x": (2, 2, 9), "w": (2, 2, 4)}, ("x",)),
    "logistic loss": Layer(
        "z_n = w_j x_nj\nL = mean_n(softplus(-y_n z_n))",
        lambda a: jnp.mean(jax.nn.softplus(-a["y"] * (a["x"] @ a["w"]))),
        {"w": (3,), "x": (6, 3), "y": (6,)}, ("w", "x")),
    "low-rank factorisation": Layer(
        "L = (T_ij - U_ik V_jk)(T_ij - U_ik V_jk)",
        lambda a: jnp.sum((a["T"] - a["U"] @ a["V"].T) ** 2),
        {"T": (3, 4), "U": (3, 2), "V": (4, 2)}, ("U", "V")),
    "2-D convolution, same padding": Layer(
        "h_ncij = K_cdkl x_{n d (i+k-1) (j+l-1)} + b_cij\nL = sum_ncij(tanh(h_ncij))",
        lambda a: jnp.sum(jnp.tanh(jax.lax.conv_general_dilated(a["x"], a["K"], (1, 1), "SAME") + a["b"])),
        {"K": (2, 2, 3, 3), "x": (1, 2, 4, 5), "b": (2, 4, 5)}, ("K", "x")),
    "LSTM cell": Layer(
        "z_a = W_ab x_b + U_ae h_e + d_a\ni_k = σ(P0_ka z_a)\nf_k = σ(P1_ka z_a)\no_k = σ(P2_ka z_a)\n"
        "g_k = tanh(P3_ka z_a)\nc_new_k = f_k c_k + i_k g_k\nh_new_k = o_k tanh(c_new_k)\nL = r_k h_new_k",
        lambda a: (lambda z: jnp.sum(a["r"] * jax.nn.sigmoid(a["P2"] @ z) * jnp.tanh(
            jax.nn.sigmoid(a["P1"] @ z) * a["c"] + jax.nn.sigmoid(a["P0"] @ z) * jnp.tanh(a["P3"] @ z))))(
            a["W"] @ a["x"] + a["U"] @ a["h"] + a["d"]),
        {"W": (8, 3), "x": (3,), "U": (8, 2), "h": (2,), "d": (8,), "c": (2,), "r": (2,),
         **{f"P{k}": (2, 8) for k in range(4)}}, ("W", "U", "h", "c")),
    "cosine similarity": Layer(
        "L = mean_n(u_nd v_nd / sqrt(u_ne u_ne v_nf v_nf))",
        lambda a: jnp.mean(jnp.sum(a["u"] * a["v"], 1) / jnp.sqrt(jnp.sum(a["u"] ** 2, 1) * jnp.sum(a["v"] ** 2, 1))),
        {"u": (4, 3), "v": (4, 3)}, ("u", "v")),
    "relu MLP, L1 penalty": Layer(
        "h_nk = relu(W1_kj x_nj)\ns_n = w2_k h_nk\nL = mean_n((s_n - y_n)^2) + 0.01 sum_kj(abs(W1_kj))",
        lambda a: jnp.mean((jax.nn.relu(a["x"] @ a["W1"].T) @ a["w2"] - a["y"]) ** 2) + 0.01 * jnp.sum(jnp.abs(a["W1"])),
        {"W1": (4, 3), "x": (6, 3), "w2": (4,), "y": (6,)}, ("W1", "w2")),
    "Huber loss by Iverson brackets": Layer(
        "e_n = w_j x_nj - y_n\n"
        "L = mean_n([abs(e_n) <= 1] 0.5 e_n e_n + [abs(e_n) > 1] (abs(e_n) - 0.5))",
        lambda a: jnp.mean(jax.numpy.where(jnp.abs(e := a["x"] @ a["w"] - a["y"]) <= 1, 0.5 * e ** 2, jnp.abs(e) - 0.5)),
        {"w": (3,), "x": (8, 3), "y": (8,)}, ("w", "x")),
    "margin by max and min": Layer(
        "L = mean_n(relu(1 + max_c(s_nc - 10 t_nc) - min_d(s_nd + 10 (1 - t_nd))))",
        lambda a: jnp.mean(jax.nn.relu(1 + jnp.max(a["s"] - 10 * a["t"], 1) - jnp.min(a["s"] + 10 * (1 - a["t"]), 1))),
        {"s": (5, 4), "t": (5, 4)}, ("s",), labels={"t": 4}),
    "one SGD step inside the loss (MAML)": Layer(
        "yhat_i = σ(w_ij x_j + b_i)\nloss = (yhat_j - y_j)(yhat_j - y_j)\n"
        "w_new_gh = w_gh - eta loss_{,(gh)}[w]\nL2 = w_new_gh w_new_gh",
        lambda a: jnp.sum((a["w"] - a["eta"] * jax.grad(
            lambda w: jnp.sum((jax.nn.sigmoid(w @ a["x"] + a["b"]) - a["y"]) ** 2))(a["w"])) ** 2),
        {"w": (2, 3), "x": (3,), "b": (2,), "y": (2,), "eta": ()}, ("w", "x", "eta"), positive=("eta",)),
}


def arrays_of(layer: Layer, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape in layer.shapes.items():
        if name in layer.labels:
            arrays[name] = np.eye(layer.labels[name])[rng.integers(0, layer.labels[name], shape[0])]
        elif name in layer.positive:
            arrays[name] = rng.uniform(0.5, 1.5, shape)
        else:
            arrays[name] = rng.normal(size=shape)
    return arrays


def on_jax(arrays: dict) -> dict:
    """The arrays as float64 jax arrays (a generated program's scalars may be Python ints)."""
    return {k: jnp.asarray(v, dtype=jnp.float64) for k, v in arrays.items()}


def wrt_text(layer: Layer, name: str, skip: int = 0) -> str:
    """`W1` as `W1_gh` for a matrix: the letters the derivative's axes are named by, none
    of them a letter of the layer's text (`skip`: after those of a first derivative)."""
    rank = len(layer.shapes[name])
    letters = [c for c in "ghpqfvmozwyabcdeijklnrstux" if c not in layer.text][skip:skip + rank]
    assert len(letters) == rank, (name, letters)
    return f"{name}_{''.join(letters)}" if rank else name


CASES = [(label, name) for label, layer in LAYERS.items() for name in layer.wrt]


@functools.cache
def jax_value_and_grad(label: str):
    """jax.value_and_grad of a layer by the names in its `wrt`, jitted: a function of
    (those arrays, the others), traced once a layer and shared by every draw of its arrays."""
    layer = LAYERS[label]
    return jax.jit(jax.value_and_grad(lambda params, others: layer.by_hand({**others, **params})))


@functools.cache
def jax_value_and_grads(label: str, seed: int = 0) -> tuple:
    """JAX's value of a layer and its gradient by every name in its `wrt` (a dict), on the
    arrays of `seed`: worked out once, which its cases share."""
    layer = LAYERS[label]
    as_jax = on_jax(arrays_of(layer, seed))
    params = {name: as_jax[name] for name in layer.wrt}
    return jax_value_and_grad(label)(params, {k: v for k, v in as_jax.items() if k not in params})


@functools.cache
def compiled(label: str) -> ic.Compiled:
    """A layer compiled with its gradient by every name in its `wrt`: once a layer, which
    its cases (float64 and float32 arrays) share."""
    layer = LAYERS[label]
    return ic.compile(layer.text, wrt=list(layer.wrt))


@pytest.mark.parametrize("label, name", CASES, ids=[f"{label}: by {name}" for label, name in CASES])
def test_every_gradient_route_gives_jaxs_gradient(label, name):
    layer = LAYERS[label]
    arrays = arrays_of(layer)
    value, grads = jax_value_and_grads(label)
    want = grads[name]
    np.testing.assert_allclose(ic.evaluate(ic.parse(layer.text), arrays), value, rtol=RTOL, atol=ATOL,
                               err_msg=f"{label}: the value")
    routes = gradient_routes(layer.text, wrt_text(layer, name), arrays)
    assert "compile(wrt)" in routes
    for route, compute in routes.items():
        np.testing.assert_allclose(compute(), want, rtol=RTOL, atol=ATOL, err_msg=f"{label} by {name}: {route}")
    compiled_value, _ = compiled(label)(arrays)
    np.testing.assert_allclose(compiled_value, value, rtol=RTOL, atol=ATOL, err_msg=f"{label}: compiled value")


@pytest.mark.parametrize("label", list(LAYERS))
def test_the_hessian_by_evaluate_and_compile_is_jaxs(label):
    """The Hessian by the first name in `wrt`, twice differentiated (`diff(diff)`),
    evaluated and compiled, against jax.hessian laid out the same way: the first
    derivative's axes, then the second's."""
    layer = LAYERS[label]
    name = layer.wrt[0]
    arrays = arrays_of(layer, seed=1)
    as_jax = on_jax(arrays)
    want = jax.jit(jax.hessian(lambda v: layer.by_hand({**as_jax, name: v})))(as_jax[name])  # jitted: 5x quicker here
    first, second = wrt_text(layer, name), wrt_text(layer, name, skip=len(layer.shapes[name]))
    hessian = ic.diff(ic.diff(layer.text, first), second)
    np.testing.assert_allclose(ic.evaluate(hessian, arrays), want, rtol=RTOL, atol=ATOL,
                               err_msg=f"{label}: evaluate(hessian)")
    np.testing.assert_allclose(ic.compile(hessian)(arrays)[0], want, rtol=RTOL, atol=ATOL,
                               err_msg=f"{label}: compile(hessian)")


@pytest.mark.parametrize("label", list(LAYERS))
def test_float32_gradients_are_float64_jaxs_to_float32_precision(label):
    """The compiled value and gradients of float32 arrays: float32 arrays out, and within
    1e-5 of float64 JAX's (the layers here lose 4e-7 at most; a step that rounded through
    a lower precision, or cast an intermediate to an integer, would lose far more)."""
    layer = LAYERS[label]
    arrays = arrays_of(layer, seed=3)
    value, grads = compiled(label)({k: v.astype(np.float32) for k, v in arrays.items()})
    assert np.asarray(value).dtype == np.float32, label
    want_value, want_grads = jax_value_and_grads(label, seed=3)
    for name in layer.wrt:
        want = want_grads[name]
        assert np.asarray(grads[name]).dtype == np.float32, (label, name)
        scale = float(np.max(np.abs(want), initial=0))
        np.testing.assert_allclose(grads[name], want, rtol=1e-5, atol=1e-5 * scale, err_msg=f"{label} by {name}")
    np.testing.assert_allclose(value, want_value, rtol=1e-5, atol=1e-6, err_msg=f"{label}: value")


# ---------------------------------------------------------------- Jacobians of layers with many outputs


JACOBIANS = {
    "sigmoid layer": ("y_i = σ(w_ij x_j + b_i)", lambda a: jax.nn.sigmoid(a["w"] @ a["x"] + a["b"]),
                      {"w": (3, 4), "x": (4,), "b": (3,)}, ("w", "x")),
    "softmax": ("p_nk = exp(x_nk) / sum_c(exp(x_nc))", lambda a: jax.nn.softmax(a["x"], axis=1), {"x": (2, 3)}, ("x",)),
    "layer norm": ("mu_n = mean_d(x_nd)\nc_nd = x_nd - mu_n\ny_nd = c_nd / sqrt(mean_e(c_ne c_ne) + 0.1)",
                   lambda a: jax.nn.standardize(a["x"], axis=1, epsilon=0.1), {"x": (2, 4)}, ("x",)),
    "strided convolution": ("h_nci = K_cdk x_{nd(2i+k)}",
                            lambda a: jax.lax.conv_general_dilated(a["x"], a["K"], (2,), "VALID"),
                            {"K": (2, 2, 3), "x": (1, 2, 7)}, ("K", "x")),
    "matrix inverse": ("B_ij = inv_ij(A_kl + 3 δ_kl)", lambda a: jnp.linalg.inv(a["A"] + 3 * jnp.eye(3)),
                       {"A": (3, 3)}, ("A",)),
    "outer product": ("P_ij = u_i v_j", lambda a: jnp.outer(a["u"], a["v"]), {"u": (3,), "v": (2,)}, ("u",)),
    "Kronecker product": ("K_ikjl = A_ij B_kl", lambda a: jnp.einsum("ij,kl->ikjl", a["A"], a["B"]),
                          {"A": (2, 2), "B": (2, 3)}, ("A", "B")),
    "bilinear layer": ("y_k = x_i W_kij z_j + b_k", lambda a: jnp.einsum("i,kij,j->k", a["x"], a["W"], a["z"]) + a["b"],
                       {"x": (2,), "W": (3, 2, 2), "z": (2,), "b": (3,)}, ("W", "x")),
    "diagonal": ("d_i = M_ii", lambda a: jnp.diagonal(a["M"]), {"M": (3, 3)}, ("M",)),
    "attention output": ("a_su = exp(q_sd k_ud) / sum_t(exp(q_sd k_td))\no_se = a_su v_ue",
                         lambda a: jax.nn.softmax(a["q"] @ a["k"].T, axis=1) @ a["v"],
                         {"q": (3, 2), "k": (4, 2), "v": (4, 2)}, ("q", "k")),
}
JACOBIAN_CASES = [(label, name) for label, entry in JACOBIANS.items() for name in entry[3]]


@pytest.mark.parametrize("label, name", JACOBIAN_CASES, ids=[f"{label}: by {name}" for label, name in JACOBIAN_CASES])
def test_a_jacobian_by_every_route_is_jaxs(label, name):
    """The last line's derivative, its axes then the tensor's (`y_{i,(gh)}[w]`), by
    evaluate, simplify, inline, the loops and compile, against jax.jacfwd."""
    text, by_hand, shapes, _ = JACOBIANS[label]
    layer = Layer(text, by_hand, shapes, ())
    arrays = arrays_of(layer, seed=2)
    as_jax = on_jax(arrays)
    want = jax.jit(jax.jacfwd(lambda v: by_hand({**as_jax, name: v})))(as_jax[name])
    for route, compute in gradient_routes(text, wrt_text(layer, name), arrays).items():
        np.testing.assert_allclose(compute(), want, rtol=RTOL, atol=ATOL, err_msg=f"{label} by {name}: {route}")


# ---------------------------------------------------------------- generated programs


# about a second a program (JAX traces the plan twice): a small fixed sample in CI,
# `HYPOTHESIS_PROFILE=soak python -m pytest -n 0 tests/test_against_jax.py -k generated` at scale
GENERATED = sample(4, derandomize=True, database=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])


def assert_autodiff_agrees(got, want, value: float, what: str) -> None:
    """Within 1e-8 of JAX's, or 1e-10 of the magnitudes about (a gradient that is zero
    exactly, as simplify knows, is roundoff to JAX: 1e-16)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    atol = 1e-10 * (1 + abs(value) + np.max(np.abs(want), initial=0))
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=atol, err_msg=what)


def jaxs_forward(case, compiled, arrays: dict, value):
    """The compiled program JAX differentiates: `case`'s own (`compiled`) or, where the
    generator moved a softmax's logits by 400, the program without the shift, if its value
    is the same (a softmax is the same at any shift); None where the shift is read
    elsewhere too. At +400 JAX's own rule for a quotient, -x y^-2 dy, overflows y^2 to inf
    and drops the term (a softmax of one entry has Jacobian 1 by JAX, 0 in fact: the JAX
    soak of 2026-12-07), where indexcalc goes through the shares exp(z - log u): its
    derivatives at +400 are compared with JAX's at no shift."""
    if FAR_SHIFT not in case.text:
        return compiled
    near = ic.compile(case.text.replace(FAR_SHIFT, ""))
    same = np.allclose(near(arrays)[0], value, rtol=1e-12, atol=1e-12, equal_nan=True)
    return near if same else None


@GENERATED
@given(route_cases())
def test_generated_programs_gradient_and_hessian_equal_jaxs_autodiff(case):
    """The compiled plan on jax arrays is a function JAX can differentiate: its value's
    gradient by JAX (jax.grad through the forward steps, derivative lines in the program
    included) must be the plan's own symbolic gradient, and JAX's Hessian the compiled
    diff(diff) — to 1e-8, where the cross-route property's finite differences tell 1e-4.
    A program whose last line is not a scalar: the compiled diff against jax.jacfwd. A
    softmax at +400: JAX differentiates it at no shift (`jaxs_forward`)."""
    if not case.wrt:
        return
    name, arrays = wrt_name(case.wrt), case.arrays()
    if not case.scalar:
        _assert_jacobian_is_jaxs(case, name, arrays)
        return
    try:
        f = ic.compile(case.text, wrt=[name])
        value, grads = f(arrays)
    except ic.IndexCalcError:
        return  # refused alike on every route: the cross-route property's concern
    value = float(value)
    f = jaxs_forward(case, f, arrays, value)
    if f is None or not np.isfinite(value) or not np.all(np.isfinite(grads[name])):
        return
    as_jax = on_jax(arrays)
    auto = jax.grad(lambda w: f({**as_jax, name: w})[0])(as_jax[name])
    assert_autodiff_agrees(grads[name], auto, value, f"{case}\nthe gradient by {name}")
    if not case.wrt2:
        return
    second = wrt_name(case.wrt2)
    try:
        hessian = ic.compile(ic.diff(ic.diff(case.text, case.wrt), case.wrt2))(arrays)[0]
    except ic.IndexCalcError:
        return
    if second == name:
        auto = jax.hessian(lambda w: f({**as_jax, name: w})[0])(as_jax[name])
    else:
        auto = jax.jacfwd(lambda w2: jax.grad(lambda w: f({**as_jax, second: w2, name: w})[0])(as_jax[name]))(
            as_jax[second])
    if np.all(np.isfinite(hessian)) and np.all(np.isfinite(auto)):
        assert_autodiff_agrees(hessian, auto, value, f"{case}\nthe Hessian by {name}, {second}")


def _assert_jacobian_is_jaxs(case, name: str, arrays: dict) -> None:
    try:
        forward = ic.compile(case.text)
        value = forward(arrays)[0]
        jacobian = ic.compile(ic.diff(case.text, case.wrt))(arrays)[0]
    except ic.IndexCalcError:
        return
    forward = jaxs_forward(case, forward, arrays, value)
    if forward is None or not (np.all(np.isfinite(value)) and np.all(np.isfinite(jacobian))):
        return
    as_jax = on_jax(arrays)
    auto = jax.jacfwd(lambda w: forward({**as_jax, name: w})[0])(as_jax[name])
    assert_autodiff_agrees(jacobian, auto, float(np.max(np.abs(value), initial=0)), f"{case}\nthe Jacobian by {name}")
