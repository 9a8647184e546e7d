"""The compiled plan of shifted indices (issue 10, item 3): a convolution is sliding
windows and a matmul, its backward pass a matmul and strided slice-adds, never a dense
shift array; every number checked against a hand-written NumPy convolution and against
evaluate, evaluate_loops and evaluate(diff).

The NumPy references below loop over the kernel offsets explicitly (one slice per
offset, zero padding by hand), so they share no code with the plan's windows.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, strategies as st

import indexcalc as ic
from strategies import sample
from indexcalc.expr import Equation, Product, Shift, Tensor
from indexcalc.emit import emit
from indexcalc.plan import Lowering

RNG = np.random.default_rng(3)


def rand(*shape):
    return RNG.normal(size=shape)


# ---------------------------------------------------------------- hand-written references


def positions(count: int, stride: int, start: int) -> np.ndarray:
    return start + stride * np.arange(count)


def conv1d(x, K, size, stride=1, dilation=1, offset=0):
    """h[n,c,i] = Σ_dk K[c,d,k] x[n,d,stride·i + dilation·k + offset], zero outside x."""
    N, D, P = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (P, P)))
    h = np.zeros((N, K.shape[0], size))
    for k in range(K.shape[2]):
        h += np.einsum("cd,ndi->nci", K[:, :, k], padded[:, :, P + positions(size, stride, dilation * k + offset)])
    return h


def conv1d_grads(x, K, g, stride=1, dilation=1, offset=0):
    """The gradients of Σ g·conv1d by K and by x, one kernel offset at a time (col2im)."""
    N, D, P = x.shape
    size = g.shape[2]
    padded = np.pad(x, ((0, 0), (0, 0), (P, P)))
    dK = np.zeros_like(K)
    dx = np.zeros_like(padded)
    for k in range(K.shape[2]):
        at = P + positions(size, stride, dilation * k + offset)
        dK[:, :, k] = np.einsum("nci,ndi->cd", g, padded[:, :, at])
        np.add.at(dx, (slice(None), slice(None), at), np.einsum("nci,cd->ndi", g, K[:, :, k]))
    return dK, dx[:, :, P : 2 * P]


def conv2d(x, K, sizes, stride=1, offset=0):
    """h[n,c,i,j] = Σ_dkl K[c,d,k,l] x[n,d,stride·i+k+offset, stride·j+l+offset], zero outside."""
    N, D, P, Q = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (P, P), (Q, Q)))
    h = np.zeros((N, K.shape[0]) + sizes)
    for k in range(K.shape[2]):
        for l in range(K.shape[3]):
            rows = P + positions(sizes[0], stride, k + offset)
            cols = Q + positions(sizes[1], stride, l + offset)
            h += np.einsum("cd,ndij->ncij", K[:, :, k, l], padded[:, :, rows][:, :, :, cols])
    return h


def conv2d_grads(x, K, g, stride=1, offset=0):
    N, D, P, Q = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (P, P), (Q, Q)))
    dK, dx = np.zeros_like(K), np.zeros_like(padded)
    for k in range(K.shape[2]):
        for l in range(K.shape[3]):
            rows = P + positions(g.shape[2], stride, k + offset)
            cols = Q + positions(g.shape[3], stride, l + offset)
            dK[:, :, k, l] = np.einsum("ncij,ndij->cd", g, padded[:, :, rows][:, :, :, cols])
            np.add.at(dx, (slice(None), slice(None), rows[:, None], cols[None, :]),
                      np.einsum("ncij,cd->ndij", g, K[:, :, k, l]))
    return dK, dx[:, :, P : 2 * P, Q : 2 * Q]


def maxpool2x2(h):
    N, C, P, Q = h.shape
    blocks = h[:, :, : P // 2 * 2, : Q // 2 * 2].reshape(N, C, P // 2, 2, Q // 2, 2)
    m = blocks.max(axis=(3, 5))
    ties = blocks == m[:, :, :, None, :, None]
    return m, ties / ties.sum(axis=(3, 5), keepdims=True)


# ---------------------------------------------------------------- every route against the references


def check_routes(text, arrays, value, grads, loops=True):
    """compile(wrt) against the reference, and evaluate(diff), compile(diff) and
    (small cases) evaluate_loops(diff) against compile(wrt)."""
    f = ic.compile(text, wrt=list(grads))
    got, got_grads = f(arrays)
    np.testing.assert_allclose(got, value, rtol=1e-10)
    for name, want in grads.items():
        np.testing.assert_allclose(got_grads[name], want, rtol=1e-9, atol=1e-12, err_msg=f"compile, by {name}")
    np.testing.assert_allclose(ic.evaluate(text, arrays), value, rtol=1e-10)
    if loops:
        np.testing.assert_allclose(ic.evaluate_loops(text, arrays), value, rtol=1e-10)
    for name, want in grads.items():
        d = ic.diff(text, name)
        for label, route in (("evaluate(diff)", ic.evaluate), ("compile(diff)", lambda p, a: ic.compile(p)(a)[0]),
                             ("evaluate_loops(diff)", ic.evaluate_loops if loops else None)):
            if route is not None:
                np.testing.assert_allclose(route(d, arrays), want, rtol=1e-9, atol=1e-12, err_msg=f"{label} by {name}")
    return f


CONV1D = [  # text of h (i's size from the shapes, or from b where it is declared larger), stride, dilation, offset
    ("valid", "h_nci = K_cdk x_{nd(i+k)}", 1, 1, 0),
    ("strided", "h_nci = K_cdk x_{nd(2i+k)}", 2, 1, 0),
    ("dilated", "h_nci = K_cdk x_{nd(i+2k)}", 1, 2, 0),
    ("offset, padded on the left", "h_nci = K_cdk x_{nd(i+k-1)}", 1, 1, -1),
    ("strided and offset", "h_nci = K_cdk x_{nd(3i+k-2)}", 3, 1, -2),
]


@pytest.mark.parametrize("name, text, stride, dilation, offset", CONV1D, ids=[c[0] for c in CONV1D])
def test_a_1d_convolution_and_its_gradients_are_those_of_numpy(name, text, stride, dilation, offset):
    x, K = rand(2, 3, 11), rand(4, 3, 3)
    size = (11 - 1 - dilation * 2 - offset) // stride + 1  # the valid range the notation documents
    g = rand(2, 4, size)
    program = text + "\nL = sum_{nci}(g_nci h_nci)"
    value = np.sum(g * conv1d(x, K, size, stride, dilation, offset))
    dK, dx = conv1d_grads(x, K, g, stride, dilation, offset)
    check_routes(program, {"x": x, "K": K, "g": g}, value, {"K": dK, "x": dx})


def test_same_padding_a_size_declared_by_another_array_reads_zeros_past_both_edges():
    """b_ci sizes i like x: positions -1 and 11 are read, as zeros (np.pad in the plan)."""
    x, K, b, g = rand(2, 3, 11), rand(4, 3, 3), rand(4, 11), rand(2, 4, 11)
    program = "h_nci = K_cdk x_{nd(i+k-1)} + b_ci\nL = sum_{nci}(g_nci h_nci)"
    value = np.sum(g * (conv1d(x, K, 11, offset=-1) + b))
    dK, dx = conv1d_grads(x, K, g, offset=-1)
    f = check_routes(program, {"x": x, "K": K, "b": b, "g": g}, value, {"K": dK, "x": dx, "b": g.sum(axis=0)})
    assert "np.pad(" in f._last.source


def test_a_2d_multichannel_convolution_layer_with_bias_and_relu():
    x, K, b = rand(2, 2, 5, 4), rand(3, 2, 3, 2), rand(3)
    g = rand(2, 3, 3, 3)
    program = "h_ncij = relu(K_cdkl x_{nd(i+k)(j+l)} + b_c)\nL = sum_{ncij}(g_ncij h_ncij)"
    u = conv2d(x, K, (3, 3)) + b[:, None, None]
    adjoint = g * (u > 0)
    dK, dx = conv2d_grads(x, K, adjoint)
    check_routes(program, {"x": x, "K": K, "b": b, "g": g}, np.sum(g * np.maximum(u, 0)),
                 {"K": dK, "x": dx, "b": adjoint.sum(axis=(0, 2, 3))}, loops=False)


def test_a_strided_padded_2d_convolution():
    x, K = rand(2, 2, 6, 6), rand(2, 2, 3, 3)
    sizes = ((6 - 1 - 2 + 1) // 2 + 1,) * 2  # 2i + k - 1 ≤ 5 for k ≤ 2: i ≤ 2
    g = rand(2, 2, *sizes)
    program = "h_ncij = K_cdkl x_{nd(2i+k-1)(2j+l-1)}\nL = sum_{ncij}(g_ncij h_ncij)"
    dK, dx = conv2d_grads(x, K, g, stride=2, offset=-1)
    check_routes(program, {"x": x, "K": K, "g": g}, np.sum(g * conv2d(x, K, sizes, 2, -1)),
                 {"K": dK, "x": dx}, loops=False)


def test_max_pooling_2x2_stride_2_and_its_tie_weights():
    """g sizes the pooled grid (3x3 of a 6x6 h), and so k and l run over 0..1."""
    h = rand(1, 2, 6, 6)
    h[0, 0, 0, 0] = h[0, 0, 1, 1] = 9.0  # a tie, split evenly
    g = rand(1, 2, 3, 3)
    program = "L = sum_{ncij}(g_ncij max_{kl}(h_{nc(2i+k)(2j+l)}))"
    m, weights = maxpool2x2(h)
    dh = (weights * g[:, :, :, None, :, None]).reshape(h.shape)
    f = check_routes(program, {"h": h, "g": g}, np.sum(g * m), {"h": dh})
    assert "_scatter(" in f._last.source and not f._last.lowering.constants


# ---------------------------------------------------------------- what the plan does


def conv_plan(text, arrays, wrt):
    f = ic.compile(text, wrt=wrt)
    f(arrays)
    return f._last


def test_no_dense_shift_array_is_built_for_the_forward_and_backward_passes():
    """The forward pass is windows of x (a view) contracted by a matmul; the gradient by
    K reads the same windows; the gradient by x is a matmul and strided slice-adds."""
    x, K, g = rand(4, 3, 9, 9), rand(5, 3, 3, 3), rand(4, 5, 7, 7)
    program = "h_ncij = K_cdkl x_{nd(i+k)(j+l)}\nL = sum_{ncij}(g_ncij h_ncij)"
    plan = conv_plan(program, {"x": x, "K": K, "g": g}, ["K", "x"])
    assert plan.lowering.constants == {}  # a dense δ_{p(i+k)} would be one, as a mask is
    assert "sliding_window_view(" in plan.source and "_scatter(" in plan.source
    assert "_shift" not in plan.source and "np.einsum" not in plan.source
    assert "np.pad(" not in plan.source  # valid positions only: nothing to pad
    # nothing larger than the im2col matrix (N·I·J × D·K·L) is ever held
    im2col = 4 * 7 * 7 * 3 * 3 * 3
    assert max(np.prod(step.shape) for step in plan.lowering.steps) <= im2col


def lowered(eq: Equation, arrays: dict, like: str):
    """`eq` planned as a backward line is (its left side shaped like the array `like`)."""
    lowering = Lowering({k: v.shape for k, v in arrays.items()}, dtypes=[v.dtype for v in arrays.values()])
    var = lowering.equation(eq, like=like)
    source, run = emit(lowering, var, {})
    return run(arrays)[0], lowering, source


@pytest.mark.parametrize("form", ["scatter form", "solved form"])
def test_the_transposed_convolution_is_a_matmul_and_slice_adds_in_either_form(form):
    """x̄_{nde} = g_{nci} K_{cdk} δ_{e(i+k)} and its solved form g_{nci} K_{cd(e-i)}
    (K_{cdq} δ_{q(e-i)}): both solved for e, the largest letter, so both scatter; windows
    of K over (e, i) would be a banded Toeplitz matrix, E/K times the work."""
    K, g, x = rand(4, 3, 3), rand(2, 4, 8), rand(2, 3, 10)
    kernel, shift = ((Tensor("K", ("c", "d", "k")), Shift("e", ((1, "i"), (1, "k")))) if form == "scatter form"
                     else (Tensor("K", ("c", "d", "q")), Shift("q", ((1, "e"), (-1, "i")))))
    eq = Equation(Tensor("xbar", ("n", "d", "e")), Product((Tensor("g", ("n", "c", "i")), kernel, shift)))
    got, lowering, source = lowered(eq, {"K": K, "g": g, "x": x}, like="x")
    _, want = conv1d_grads(x, K, g)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert "_scatter(" in source and "sliding_window_view" not in source and not lowering.constants


def test_a_form_neither_gather_nor_scatter_fits_is_the_dense_fallback():
    """p, i and k all free: the Shift is its 0/1 array, a constant of the shapes."""
    f = ic.compile("y_pik = delta_{p(i+k)} s_p t_i u_k")
    s, t, u = rand(5), rand(4), rand(2)
    got = f({"s": s, "t": t, "u": u})[0]
    want = np.zeros((5, 4, 2))
    for i in range(4):
        for k in range(2):
            want[i + k, i, k] = s[i + k] * t[i] * u[k]
    np.testing.assert_allclose(got, want)
    assert [a.shape for a in f._last.lowering.constants.values()] == [(5, 4, 2)]


def test_windows_that_share_letters_are_each_a_view():
    """y_ik = x_{(i+k)} z_{(i+k)}: two gathers over the same (i, k)."""
    x, z, w = rand(6), rand(6), rand(3)
    f = ic.compile("y_ik = x_{(i+k)} z_{(i+k)} w_k")
    got = f({"x": x, "z": z, "w": w})[0]
    want = np.array([[x[i + k] * z[i + k] * w[k] for k in range(3)] for i in range(4)])
    np.testing.assert_allclose(got, want)
    assert not f._last.lowering.constants


def test_common_subexpressions_tell_shifts_apart():
    """x_{(i+k)} and x_{(i+k+1)} are different windows; the same one twice is one step."""
    x, w, r = rand(8), rand(3), rand(6)
    text = "a_i = w_k x_{(i+k)} r_i\nb_i = w_k x_{(i+k+1)} r_i\nc_i = w_k x_{(i+k)} r_i\ny_i = a_i + 2 b_i + 3 c_i"
    f = ic.compile(text)
    got = f({"x": x, "w": w, "r": r})[0]
    a = np.array([x[i : i + 3] @ w for i in range(6)]) * r
    b = np.array([np.r_[x, 0][i + 1 : i + 4] @ w for i in range(6)]) * r
    np.testing.assert_allclose(got, 4 * a + 2 * b)
    assert f._last.source.count("sliding_window_view(") == 2


# ---------------------------------------------------------------- a family of 1-D shifts


@sample(25, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, 3), st.sampled_from([-2, -1, 1, 2]), st.integers(-3, 3), st.integers(1, 3),
       st.integers(6, 10), st.booleans(), st.sampled_from(["float64", "float32"]))
def test_any_1d_shift_compiles_to_evaluates_numbers(stride, dilation, offset, width, length, declared, dtype):
    """x_{(a·i + b·k + c)} for strides, dilations (negative: a reversed kernel), offsets
    and, where `declared`, i sized by another array (padding past an edge): compile's
    value and gradients against evaluate and evaluate(diff)."""
    rng = np.random.default_rng(stride * 1000 + dilation * 100 + offset * 10 + width)
    shift = f"{stride}i{'+' if dilation > 0 else '-'}{abs(dilation)}k{offset:+d}" if offset else \
        f"{stride}i{'+' if dilation > 0 else '-'}{abs(dilation)}k"
    text = f"h_ci = w_ck x_{{({shift})}}" + (" r_i" if declared else "") + "\nL = sum_{ci}(g_ci h_ci)"
    arrays = {"w": rng.normal(size=(2, width)), "x": rng.normal(size=length)}
    if declared:
        arrays["r"] = rng.normal(size=length)
    arrays["g"] = rng.normal(size=ic.evaluate(text.splitlines()[0], arrays).shape)
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    value, grads = ic.compile(text, wrt=["w", "x"])(arrays)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(value, ic.evaluate(text, arrays), **tol)
    for name in ("w", "x"):
        np.testing.assert_allclose(grads[name], ic.evaluate(ic.diff(text, name), arrays), **tol, err_msg=name)
        assert grads[name].dtype == np.dtype(dtype)


def test_a_large_pooling_takes_its_few_values_one_elementwise_maximum_at_a_time():
    """Past FEW_REST outputs a max over a 2x2 window is np.maximum of four strided views
    (_reduce_few): the same numbers as np.max, nan and infinities included, and the
    tie count of its gradient a sum of four."""
    h = rand(4, 16, 8, 8)
    h[0, 0, 0, 0], h[1, 1, 2, 3], h[2, 2, 4, 4] = np.nan, -np.inf, np.inf
    g = rand(4, 16, 4, 4)
    f = ic.compile("m_ncij = g_ncij max_{kl}(h_{nc(2i+k)(2j+l)})")
    got = f({"h": h, "g": g})[0]
    assert "_reduce_few('max'" in f._last.source
    np.testing.assert_array_equal(got, g * h.reshape(4, 16, 4, 2, 4, 2).max(axis=(3, 5)))
    h = rand(4, 16, 8, 8)
    h[3, 3, 6, 6] = h[3, 3, 7, 7]  # a tie: half each
    f = ic.compile("L = sum_{ncij}(g_ncij max_{kl}(h_{nc(2i+k)(2j+l)}))", wrt=["h"])
    _, grads = f({"h": h, "g": g})
    assert "_reduce_few('sum'" in f._last.source
    _, weights = maxpool2x2(h)
    np.testing.assert_allclose(grads["h"], (weights * g[:, :, :, None, :, None]).reshape(h.shape), rtol=1e-12)


def _affine(stride: int, dilation: int, offset: int, i: str, k: str) -> str:
    text = f"{stride}{i}{'+' if dilation > 0 else '-'}{abs(dilation)}{k}"
    return text + (f"{offset:+d}" if offset else "")


@sample(12, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(st.integers(1, 2), st.sampled_from([-2, -1, 1, 2]), st.integers(-2, 2)),
       st.tuples(st.integers(1, 2), st.sampled_from([-1, 1, 2]), st.integers(-2, 2)), st.booleans())
def test_any_2d_shift_compiles_to_evaluates_numbers(rows, cols, declared):
    """Both axes of one array windowed at once (one np.pad, one view) and scattered back
    at once (one slice-add per kernel offset pair), whatever the strides, dilations,
    directions and paddings of each axis."""
    text = f"h_cij = w_ckl x_{{({_affine(*rows, 'i', 'k')})({_affine(*cols, 'j', 'l')})}}"
    text += (" r_ij" if declared else "") + "\nL = sum_{cij}(g_cij h_cij)"
    rng = np.random.default_rng(abs(hash((rows, cols, declared))) % 2**32)
    arrays = {"w": rng.normal(size=(2, 2, 3)), "x": rng.normal(size=(7, 6))}
    if declared:
        arrays["r"] = rng.normal(size=(7, 6))
    arrays["g"] = rng.normal(size=ic.evaluate(text.splitlines()[0], arrays).shape)
    f = ic.compile(text, wrt=["w", "x"])
    value, grads = f(arrays)
    np.testing.assert_allclose(value, ic.evaluate(text, arrays), rtol=1e-10)
    for name in ("w", "x"):
        np.testing.assert_allclose(grads[name], ic.evaluate(ic.diff(text, name), arrays), rtol=1e-10, atol=1e-12)
    if arrays["g"].size:  # a valid range can be empty: then the Shift is its (empty) dense array
        assert not f._last.lowering.constants
        calls = re.findall(r"sliding_window_view\(\w+, \(([\d, ]+)\)", f._last.source)
        assert calls and all(len(shape.split(",")) == 2 for shape in calls)  # both axes in one view


def test_a_scatter_that_tiles_its_positions_is_a_reshape_but_not_past_an_edge():
    """e = 2i + k with k < 2 covers 0..2I-1 once: the max-pool's backward pass is then a
    reshape. Where i is declared longer than x allows (r_i), positions past the edge are
    dropped, not reshaped into a longer x̄ (hypothesis found that once)."""
    w, x, g = rand(2, 2), rand(6), rand(2, 3)
    f = ic.compile("h_ci = w_ck x_{(2i+k)}\nL = sum_{ci}(g_ci h_ci)", wrt=["x"])
    np.testing.assert_allclose(f({"w": w, "x": x, "g": g})[1]["x"], (g.T @ w).reshape(6))
    r, g = rand(6), rand(2, 6)
    f = ic.compile("h_ci = w_ck x_{(2i+k)} r_i\nL = sum_{ci}(g_ci h_ci)", wrt=["x"])
    want = ((g * r).T @ w).reshape(12)[:6]
    np.testing.assert_allclose(f({"w": w, "x": x, "g": g, "r": r})[1]["x"], want)
