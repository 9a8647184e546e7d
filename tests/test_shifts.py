"""Shifted indices (issue 10, item 3): convolution as `x_{nd(i+k)}`, with strides, offsets
(padding), 2-D, pooling windows, and the shifted δ `δ_{p(i+k)}` they are held as.

Reading and printing (plain, Unicode, LaTeX, round trip), the index rules, the range of a
letter that only a shift sizes, the numbers by einsum and by the loops against NumPy's own
convolution, derivatives against finite differences, simplify's transposed convolution
`K_{cb(e-i)}`, refusals with carets, and every route on generated convolution programs.
The compiled plan's lowering has its own tests (tests/test_conv_plan.py); here the plan
is one route among the others.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, strategies as st

import indexcalc as ic
from strategies import sample
from indexcalc.expr import Equation, Product, Shift, Tensor
from indexcalc.indices import free_indices, infer_sizes, summed_indices
from indexcalc.shifts import inferred_size, shift_array
from carets import assert_parse_refuses
from families import conv_programs
from routes import check, finite_difference

ROUTES = sample(8, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
VALUES = sample(40, suppress_health_check=[HealthCheck.too_slow])
RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.uniform(-1, 1, shape)


def conv1d(K, x, stride=1, offset=0, out=None):
    """h_nci = Σ_dk K_cdk x_{nd(stride·i + k + offset)}, zero outside x: by plain loops."""
    C, D, W = K.shape
    N, _, T = x.shape
    out = (T - 1 - (W - 1) - offset) // stride + 1 if out is None else out
    h = np.zeros((N, C, out))
    for i in range(out):
        for k in range(W):
            p = stride * i + k + offset
            if 0 <= p < T:
                h[:, :, i] += np.einsum("cd,nd->nc", K[:, :, k], x[:, :, p])
    return h


# ---------------------------------------------------------------- reading


READINGS = {
    # sugar: the same tree as the product with the letter written out
    "h_nci = K_cdk x_{nd(i+k)}": "h_nci = K_cdk x_ndp delta_{p(i+k)}",
    "h_{n c i} = K_{c d k} x_{n d (i+k)}": "h_nci = K_cdk x_ndp delta_{p(i+k)}",
    "h_nci = K_cdk x_{nd(2i+k-1)}": "h_nci = K_cdk x_ndp delta_{p(2i+k-1)}",
    "h_nci = K_cdk x_{nd(2 i + k - 1)}": "h_nci = K_cdk x_ndp delta_{p(2i+k-1)}",
    "h_ncij = K_cdkl x_{n d (i+k) (j+l)}": "h_ncij = K_cdkl x_ndpq delta_{p(i+k)} delta_{q(j+l)}",
    "h_ncij = K_cdkl x_{nd(i+k)(j+l)}": "h_ncij = K_cdkl x_ndpq delta_{p(i+k)} delta_{q(j+l)}",
    "y_i = x_(i+1)": "y_i = x_p delta_{p(i+1)}",
    "y_i = x_(2i)": "y_i = x_p delta_{p(2i)}",
    "y_i = x_{(2i+k)} w_k": "y_i = x_p delta_{p(2i+k)} w_k",
    "y_cbe = K_{cb(e-i)} g_i": "y_cbe = K_cbp delta_{p(e-i)} g_i",
    "y_cbe = K_{cb(-i+e)} g_i": "y_cbe = K_cbp delta_{p(-i+e)} g_i",
    "y_i = 2 x_(i+1) - x_(i)": "y_i = 2 x_p delta_{p(i+1)} - x_i",
    # the shifted δ standing alone
    "y_pik = delta_{p(i+k)}": "y_pik = δ_p(i+k)",
    "y_pi = δ_{p(i)}": "y_pi = delta_pi",
    "y_pi = δ_(p)(i)": "y_pi = delta_pi",
    "y_i = x_{(i)}": "y_i = x_i",
    # the fresh letter is one the text does not use anywhere
    "y_pi = x_{p(i+1)}": "y_pi = x_pq delta_{q(i+1)}",
    # named indices
    "y_{batch out i} = W_{out in k} x_{batch in (i+k)}": "y_{batch out i} = W_{out in k} x_{batch in p} δ_{p(i+k)}",
    "y_{batch c i} = x_{batch c (2i + step)} w_{step}": "y_{batch c i} = x_{batch c p} δ_{p (2i + step)} w_{step}",
}


@pytest.mark.parametrize("text, same", READINGS.items())
def test_a_shifted_index_reads_as_its_tensor_beside_a_shifted_delta(text, same):
    assert ic.parse(text) == ic.parse(same)


def test_the_tree_is_the_one_built_in_python():
    tree = Equation(Tensor("h", ("n", "c", "i")), Product((
        Tensor("K", ("c", "d", "k")), Tensor("x", ("n", "d", "p")), Shift("p", ((2, "i"), (1, "k")), -1))))
    assert ic.parse("h_nci = K_cdk x_{nd(2i+k-1)}") == tree
    assert str(tree) == "h_nci = K_cdk x_{nd(2i+k-1)}"


def test_letters_of_a_shift_count_like_a_deltas():
    node = ic.parse("K_cdk x_{nd(i+k)}")
    assert set(free_indices(node)) == {"c", "d", "n", "i"} - {"d"} | {"d"} - {"d"}  # d and k, p summed
    assert set(summed_indices(node)) == {"d", "k", "p"}
    # i on the shift alone is free; with i fixed from outside nothing changes
    assert set(free_indices(node, frozenset("i"))) == {"c", "n", "i"}
    # two shifted tensors over the same letters sum them, as einsum would
    assert set(summed_indices(ic.parse("x_(i+k) z_(i+k)"))) >= {"i", "k"}


# ---------------------------------------------------------------- printing


PRINTED = [
    ("h_nci = K_cdk x_{nd(i+k)}", "h_nci = K_cdk x_{nd(i+k)}", r"h_{nci} = K_{cdk} \, x_{nd(i+k)}"),
    ("h_nci = K_cdk x_{n d (2i+k-1)}", "h_nci = K_cdk x_{nd(2i+k-1)}", r"x_{nd(2i+k-1)}"),
    ("h_ncij = K_cdkl x_{n d (i+k) (j+l)}", "h_ncij = K_cdkl x_{nd(i+k)(j+l)}", r"x_{nd(i+k)(j+l)}"),
    ("y_i = x_(i+1)^2", "y_i = x_{(i+1)}^2", r"{x_{(i+1)}}^{2}"),
    ("y_cbe = K_{cb(e-i)} g_i", "y_cbe = K_{cb(e-i)} g_i", r"K_{cb(e-i)}"),
    ("y_pik = δ_p(i+k)", "y_pik = delta_{p(i+k)}", r"\delta_{p(i+k)}"),
    ("y_{batch c i} = x_{batch c (2i + step)} w_{step}",
     "y_{batch c i} = x_{batch c (2i + step)} w_{step}", r"x_{\mathrm{batch}\,c\,(2i+\mathrm{step})}"),
]


@pytest.mark.parametrize("text, plain, latex", PRINTED)
def test_a_shifted_index_prints_as_written(text, plain, latex):
    node = ic.parse(text)
    assert str(node) == plain
    assert node.pretty() == plain.replace("delta", "δ")
    assert latex in node.latex()
    assert str(ic.parse(str(node))) == plain  # and reads back to the same


def test_a_shift_that_is_no_shifted_index_prints_as_a_delta():
    # p is fixed: the δ is part of the answer
    assert str(ic.parse("y_pi = x_i delta_{p(i+1)}")) == "y_pi = x_i delta_{p(i+1)}"
    # p carried by two tensors: no one of them is the shifted one
    text = "y_i = x_p z_p delta_{p(i+1)}"
    assert str(ic.parse(text)) == text


def test_the_einsum_listing_names_the_shift():
    listing = ic.parse("h_nci = K_cdk x_{nd(i+k)}").einsum()
    assert 'einsum("cdk,ndp,pik->nci", K, x, delta_{p(i+k)})' in listing


# ---------------------------------------------------------------- sizes


def test_a_letter_only_a_shift_sizes_runs_over_the_valid_positions():
    shift = Shift("p", ((2, "i"), (1, "k")), -1)
    assert inferred_size(shift, "i", {"p": 10, "k": 3}) == 5  # 2i + 2 - 1 <= 9
    assert inferred_size(shift, "k", {"p": 10, "i": 5}) == 3  # 8 + k - 1 <= 9
    assert inferred_size(shift, "i", {"p": 2, "k": 5}) == 0  # a kernel wider than the input
    assert inferred_size(shift, "i", {"k": 3}) is None  # the target has no size yet
    # the transposed form: e = i + q, i runs as in the convolution it transposes
    assert inferred_size(Shift("q", ((1, "e"), (-1, "i")), 0), "i", {"e": 10, "q": 3}) == 8
    assert inferred_size(Shift("k", ((1, "e"), (-2, "i")), 1), "i", {"e": 10, "k": 3}) == 5
    sizes = infer_sizes(ic.parse("K_cdkl x_{nd(2i+k)(j+l-1)}"), {"K": (2, 3, 3, 2), "x": (4, 3, 9, 6)})
    assert (sizes["i"], sizes["j"]) == (4, 6)


def test_a_size_given_otherwise_wins_and_reads_zeros_past_the_edge():
    """`x_{(i+k-1)}` with i sized like x (by the bias here) is "same" padding."""
    K, x, b = rand(2, 3, 3), rand(4, 3, 7), rand(2, 7)
    h = ic.evaluate("h_nci = K_cdk x_{nd(i+k-1)} + b_ci", {"K": K, "x": x, "b": b})
    assert h.shape == (4, 2, 7)
    np.testing.assert_allclose(h, conv1d(K, x, offset=-1, out=7) + b, rtol=1e-12)
    loops = ic.evaluate_loops("h_nci = K_cdk x_{nd(i+k-1)} + b_ci", {"K": K, "x": x, "b": b})
    np.testing.assert_allclose(loops, h, rtol=1e-12)


def test_the_shift_array_is_the_comparison_of_index_values():
    array, axes = shift_array(Shift("p", ((2, "i"), (1, "k")), -1), {"p": 6, "i": 3, "k": 2}.get, np.float32)
    assert axes == ("p", "i", "k") and array.dtype == np.float32
    p, i, k = np.indices((6, 3, 2))
    np.testing.assert_array_equal(array, (p == 2 * i + k - 1).astype(np.float32))
    assert not array.flags.writeable


# ---------------------------------------------------------------- numbers


@VALUES
@given(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(1, 8),
       st.integers(1, 2), st.integers(-1, 1), st.integers(0, 2**32 - 1))
def test_a_convolution_is_numpys_by_einsum_and_by_loops(n, c, d, w, extra, stride, offset, seed):
    rng = np.random.default_rng(seed)
    K, x = rng.normal(size=(c, d, w)), rng.normal(size=(n, d, w + extra))
    form = f"{stride}i+k" + {-1: "-1", 0: "", 1: "+1"}[offset]
    text = f"h_nci = K_cdk x_{{nd({form})}}"
    want = conv1d(K, x, stride, offset)
    if want.shape[2] == 0:
        return
    got = ic.evaluate(text, {"K": K, "x": x})
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=text)
    np.testing.assert_allclose(ic.evaluate_loops(text, {"K": K, "x": x}), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ic.evaluate(ic.parse(str(ic.parse(text))), {"K": K, "x": x}), want, rtol=1e-10)


def test_two_d_convolution_and_max_pooling():
    K, x = rand(2, 3, 2, 3), rand(2, 3, 5, 6)
    h = ic.evaluate("h_ncij = K_cdkl x_{n d (i+k) (j+l)}", {"K": K, "x": x})
    want = np.zeros((2, 2, 4, 4))
    for i in range(4):
        for j in range(4):
            want[:, :, i, j] = np.einsum("cdkl,ndkl->nc", K, x[:, :, i:i + 2, j:j + 3])
    np.testing.assert_allclose(h, want, rtol=1e-12)
    np.testing.assert_allclose(ic.evaluate_loops("h_ncij = K_cdkl x_{n d (i+k) (j+l)}", {"K": K, "x": x}), want)
    z, s = rand(2, 3, 6), np.ones((2, 3, 3))
    # s sizes i (3), so the window's k runs over 0..1: 2x pooling, stride 2
    pooled = ic.evaluate("m_nci = s_nci max_k(z_{nc(2i+k)})", {"z": z, "s": s})
    np.testing.assert_allclose(pooled, np.maximum(z[:, :, 0::2], z[:, :, 1::2]))
    np.testing.assert_allclose(ic.evaluate_loops("m_nci = s_nci max_k(z_{nc(2i+k)})", {"z": z, "s": s}), pooled)


# ---------------------------------------------------------------- derivatives


LAYER = "h_nci = tanh(K_cdk x_{nd(2i+k-1)} + b_c)\nL = sum_nci(h_nci a_nci)"


@pytest.mark.parametrize("wrt", ["x_efg", "K_efg", "b_e"])
def test_the_derivative_is_that_of_finite_differences(wrt):
    arrays = {"K": rand(2, 3, 3), "x": rand(2, 3, 8), "b": rand(2), "a": rand(2, 2, 4)}
    name = wrt.split("_")[0]
    fd = finite_difference(lambda A: ic.evaluate(LAYER, A), arrays, name)
    d = ic.diff(LAYER, wrt)
    for route in (d, ic.simplify(d), ic.diff(LAYER, wrt, inline=True)):
        np.testing.assert_allclose(ic.evaluate(route, arrays), fd, rtol=1e-5, atol=1e-7, err_msg=str(route))
    np.testing.assert_allclose(ic.evaluate_loops(d, arrays), fd, rtol=1e-5, atol=1e-7)
    value, grads = ic.compile(LAYER, wrt=[name])(arrays)
    np.testing.assert_allclose(grads[name], fd, rtol=1e-5, atol=1e-7)


def test_the_derivative_by_the_input_is_the_transposed_convolution():
    """By x a shifted δ (comma notation); simplify eliminates it into a shifted index of K."""
    d = ic.diff("h_nci = K_cdk x_{nd(i+k)}", "x_abe")
    assert str(d) == "h_{nci,(abe)}[x] = K_cdk delta_{p(i+k)} delta_(ndp)(abe)"
    s = ic.simplify(d)
    assert str(s) == "h_{nci,(abe)}[x] = K_{cb(e-i)} delta_na"
    arrays = {"K": rand(2, 3, 3), "x": rand(2, 3, 6)}
    np.testing.assert_allclose(ic.evaluate(s, arrays), ic.evaluate(d, arrays), rtol=1e-12)
    np.testing.assert_allclose(ic.evaluate_loops(s, arrays), ic.evaluate(d, arrays), rtol=1e-12)
    strided = ic.simplify(ic.diff("h_nci = K_cdk x_{nd(2i+k-1)}", "x_abe"))
    assert str(strided) == "h_{nci,(abe)}[x] = K_{cb(e-2i+1)} delta_na"
    loss = ic.simplify(ic.diff("L = sum_nci(K_cdk x_{nd(i+k)} w_nci)", "x_abe"))
    assert str(loss) == "L_{,(abe)}[x] = sum_ci(K_{cb(e-i)} w_aci)"
    by_kernel = ic.simplify(ic.diff("h_nci = K_cdk x_{nd(i+k)}", "K_abe"))
    assert str(by_kernel) == "h_{nci,(abe)}[K] = x_{nb(i+e)} delta_ca"


def test_a_wrt_may_use_the_letter_the_shift_stands_for():
    d = ic.diff("h_nci = K_cdk x_{nd(i+k)}", "x_apq")  # p is the parser's, not shown
    arrays = {"K": rand(2, 3, 3), "x": rand(2, 3, 6)}
    np.testing.assert_allclose(ic.evaluate(d, arrays), ic.evaluate(ic.diff("h_nci = K_cdk x_{nd(i+k)}", "x_abe"),
                                                                   arrays))


# ---------------------------------------------------------------- refusals


REFUSALS = [
    ("y_i = x_(0.5i+k) w_k", "whole numbers", (9, 10)),
    ("y_i = x_(i+i)", "occurs twice", 11),
    ("y_i = x_{n()} w_n", "empty parentheses", 10),
    ("y_i = x_{(i+)}", "cannot read the shifted index", (10, 12)),
    ("y_i = x_{(3)}", "needs an index", 10),
    ("y_i = x_{(0i+1)}", "is 0", 11),
    ("y_{(i+1)} = x_i", "left-hand side", (2, 3)),
    ("y_i = x_{(i+1),g}", "comma derivative's own indices", 9),
    ("y_{i,(g+1)}[x] = x_i", "plain indices", 6),
    ("y = sum_{(i+1)}(x_i)", "shifted index stands on a tensor", 9),
    ("y_i = sigma_{(i+1)}(x_i)", "shifted index stands on a tensor", 13),
    ("y_i = x_{(i+batch)}", "one index", 12),
    ("y_pi = delta_{p(p+i)}", "both sides", 7),
    ("y_i = x_{(i+k} w_k", "unbalanced", 9),
]


@pytest.mark.parametrize("text, fragment, where", REFUSALS)
def test_what_is_not_a_shifted_index_is_refused_with_a_caret(text, fragment, where):
    assert_parse_refuses(text, fragment, where)


def test_a_wrt_with_a_shifted_index_is_refused():
    with pytest.raises(ic.IndexCalcError, match="shifted index"):
        ic.diff("h_nci = K_cdk x_{nd(i+k)}", "x_{ab(e+1)}")


# ---------------------------------------------------------------- every route


@ROUTES
@given(conv_programs())
def test_every_route_gives_the_numbers_of_finite_differences(case):
    problems = check(case, timeout=30)
    assert not problems, f"{case}\n\n" + "\n\n".join(map(str, problems))


@pytest.mark.parametrize("text, wrt, sizes", [
    # padding: b sizes i as x; by K the bias is gone and the shift alone would tell one more i
    ("h_ci = K_cdk x_{d(i+k-1)} + b_ci", "K_efg", {"K": (2, 1, 1), "x": (1, 2), "b": (2, 2)}),
    # the pool's q is sized by b alone; by W the derivative's shift cannot tell it
    ("m_cq = max_u(W_{c(2q+u)}) + b_cq", "W_ef", {"W": (2, 6), "b": (2, 3)}),
])
def test_a_derivative_keeps_the_size_an_array_gave_a_shifted_letter(text, wrt, sizes):
    arrays = {name: rand(*shape) for name, shape in sizes.items()}
    d = ic.diff(text, wrt)
    fd = finite_difference(lambda A: ic.evaluate(text, A), arrays, wrt.split("_")[0])
    for route in (d, ic.simplify(d), ic.parse(str(ic.simplify(d)))):
        np.testing.assert_allclose(ic.evaluate(route, arrays), fd, rtol=1e-5, atol=1e-7, err_msg=str(route))
    np.testing.assert_allclose(ic.evaluate_loops(d, arrays), fd, rtol=1e-5, atol=1e-7)


@st.composite
def shifted_texts(draw):
    """`y_{...} = x_{a (form) b} w_{...}` with one or two shifted positions: coefficients
    -2..2 (not 0), offsets -2..2, letters or names, the kernel's letters summed by w."""
    named = draw(st.booleans())
    pool = ["row", "col", "step", "tap"] if named else ["i", "j", "k", "l"]
    outs, taps = pool[:2], pool[2:]
    forms, plain = [], []
    for n in range(draw(st.integers(1, 2))):
        coefs = [draw(st.sampled_from([1, 2, -1])) if n == 0 else 1, draw(st.sampled_from([1, 2, -1, -2]))]
        terms = [(coefs[0], outs[n]), (coefs[1], taps[n])]
        if draw(st.booleans()):
            terms.reverse()
        forms.append((tuple(terms), draw(st.integers(-2, 2))))
        plain.append(outs[n])
    lead = "c" if not named else "chan"
    written = []
    for terms, offset in forms:
        text = ""
        for k, (coef, letter) in enumerate(terms):
            sign = "-" if coef < 0 else ("+" if k else "")
            text += f"{sign}{abs(coef) if abs(coef) != 1 else ''}{' ' if named and abs(coef) != 1 else ''}{letter}"
        text += f"{offset:+d}" if offset else ""
        written.append(f"({text})")
    taps_used = [taps[n] for n in range(len(forms))]
    if named:
        x = f"x_{{{lead} {' '.join(written)}}}"
        lhs, w = f"y_{{{lead} {' '.join(plain)}}}", f"w_{{{' '.join(taps_used)}}}"
    else:
        x = f"x_{{{lead}{''.join(written)}}}"
        lhs, w = f"y_{lead}{''.join(plain)}", f"w_{''.join(taps_used)}"
    shape = (2,) + tuple(draw(st.integers(5, 9)) for _ in forms)
    sizes = {"x": shape, "w": tuple(2 for _ in forms), "s": (2,) + tuple(3 for _ in forms)}
    text = f"{lhs} = s_{{{lead} {' '.join(plain)}}} {x} {w}" if named else f"{lhs} = s_{lead}{''.join(plain)} {x} {w}"
    return text, sizes


@VALUES
@given(shifted_texts(), st.integers(0, 2**32 - 1))
def test_printing_a_shifted_index_reads_back_to_the_same_numbers_and_text(case, seed):
    text, sizes = case
    rng = np.random.default_rng(seed)
    arrays = {name: rng.normal(size=shape) for name, shape in sizes.items()}
    node = ic.parse(text)
    want = ic.evaluate(node, arrays)
    np.testing.assert_allclose(ic.evaluate_loops(node, arrays), want, rtol=1e-10, atol=1e-12)
    for printed in (str(node), node.pretty()):
        again = ic.parse(printed)
        assert str(again) == str(node), printed
        np.testing.assert_allclose(ic.evaluate(again, arrays), want, rtol=1e-12, atol=1e-12)
    assert ic.parse(text) == again  # the same fresh letter: the tree itself comes back
    assert "delta" not in str(node) and node.latex().count("(") >= len(sizes["w"])


@pytest.mark.parametrize("shift", [
    Shift("p", ((0.5, "i"),)), Shift("p", ((0, "i"),)), Shift("p", ()), Shift("p", ((1, "i"),), 0.5),
    Shift("p", ((True, "i"),)),
])
def test_a_shift_built_in_python_with_what_the_notation_cannot_write_is_refused(shift):
    with pytest.raises(ic.IndexNotationError, match="shifted δ"):
        ic.evaluate(Product((Tensor("x", ("p",)), shift)), {"x": rand(4)})


def test_the_command_line_sizes_an_array_read_at_a_shifted_index(capsys):
    from test_errors import run_cli

    code, out, _ = run_cli(capsys, "eval", "h_nci = K_cdk x_{nd(2i+k-1)}", "--size", "n=2", "c=3", "d=2", "k=3",
                           "i=4")
    assert code == 0 and "explicit loops agree: yes" in out
    code, _, err = run_cli(capsys, "eval", "h_nci = K_cdk x_{nd(2i+k-1)}", "--size", "n=2", "c=3", "d=2", "k=3")
    assert code != 0 and "give a size for index i of the shifted index" in err


def test_a_model_file_may_batch_over_the_letter_a_shifted_index_stands_for():
    """`batch p`: the p the parser chose for x_(i+k) moves aside; the user wrote no p."""
    from indexcalc.modelfile import parse_model

    model = parse_model("data x y\nbatch p mean\nparam K[3] normal\nloss = sum_i((K_k x_(i+k) - y_i)^2)\n").model
    params = model.init_params(0)
    data = {"x": rand(4, 7), "y": rand(4, 5)}
    loss, grads = model.loss_and_grads(params, data)
    K = params["K"]
    windows = np.stack([data["x"][:, i:i + 3] for i in range(5)], axis=1)  # (n, i, k)
    residual = windows @ K - data["y"]
    assert loss == pytest.approx(np.mean(np.sum(residual**2, axis=1)), rel=1e-12)
    np.testing.assert_allclose(grads["K"], np.mean(2 * np.einsum("ni,nik->nk", residual, windows), axis=0), rtol=1e-10)
