"""Derivatives of sums of exponentials stay numbers wherever the function is one (issue 8).

A softmax written `exp(S_n) / sum_k(exp(S_k))` is right up to logits of ~709, where
exp itself overflows; its textbook derivatives were not past ~355: `u^-2 exp(S_a)
exp(S_n)` is 0 · inf. At logits of 448 the gradient came out silently wrong (the
`-p_a p·c` term lost to an underflowed u^-2) and the Hessian NaN, on every route (the
soak's seed 11200 found the Hessian). A softmax does not change when every logit moves
by the same amount, so each form below is checked at logits moved by 300, 448 and 700
against itself at the logits as drawn, where the derivatives are checked against finite
differences. Every route: evaluate of the derivative program, of it inlined and of the
simplified Hessian, compile of the loss by S, compile of the Hessian. Past exp's overflow
(logits moved by ±1000) the value as written is NaN; the derivatives of the forms in
PAST_OVERFLOW stay those at the drawn logits (they were 0, silently, on every route).
"""

from __future__ import annotations

import functools
import re
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import indexcalc as ic
from strategies import sample
from indexcalc.backends import KNOWN, get_backend
from routes import finite_difference, to_numpy

FORMS = {
    "softmax": ("A_n = exp(S_n) / sum_k(exp(S_k))\nL = sum_n(A_n c_n)", (4,)),
    "named denominator": ("Z = sum_k(exp(S_k))\nA_n = exp(S_n) / Z\nL = sum_n(A_n c_n)", (4,)),
    "attention rows": ("A_vn = exp(S_vn) / sum_k(exp(S_vk))\nL = sum_vn(A_vn c_vn)", (2, 3)),
    "named rows": ("Z_v = sum_k(exp(S_vk))\nA_vn = exp(S_vn) / Z_v\nL = sum_vn(A_vn c_vn)", (2, 3)),
    "causal mask": ("A_vn = [n <= v] exp(S_vn) / sum_k([k <= v] exp(S_vk))\nL = sum_vn(A_vn c_vn)", (3, 3)),
    "temperature": ("A_n = exp(0.5 S_n) / sum_k(exp(0.5 S_k))\nL = sum_n(A_n c_n)", (3,)),
    "mean denominator": ("A_n = exp(S_n) / mean_k(exp(S_k))\nL = sum_n(A_n c_n)", (3,)),
    "named mean": ("Z = mean_k(exp(S_k))\nA_n = exp(S_n) / Z\nL = sum_n(A_n c_n)", (3,)),
    "a sum beside an exp": ("A_n = exp(S_n) / (exp(T_n) + sum_k(exp(S_k)))\nL = sum_n(A_n c_n)", (3,)),
    "a mean beside an exp": ("A_n = exp(S_n) / (exp(T_n) + mean_k(exp(S_k)))\nL = sum_n(A_n c_n)", (3,)),
    "log of two sums": ("L = sum_v(log(sum_j(exp(T_vj)) + sum_k(exp(S_vk)))) - c_vk S_vk", (2, 3)),
    "squared error": ("A_n = exp(S_n) / sum_k(exp(S_k))\nL = sum_n((A_n - c_n)^2)", (3,)),
    "cross-entropy": ("L = log(sum_k(exp(S_k))) - c_k S_k", (4,)),
    "named cross-entropy": ("Z = sum_k(exp(S_k))\nL = log(Z) - c_k S_k", (4,)),
    "two exps": ("p_n = exp(S_n) / (exp(S_n) + exp(T_n))\nL = sum_n(p_n c_n)", (3,)),
    "scaled denominator": ("A_n = exp(S_n) / (2 sum_k(exp(S_k)))\nL = sum_n(A_n c_n)", (3,)),
    # docs/notation.md's stable causal softmax: the masked sum's own log goes out of range
    "causal mask, shifted": ("m_v = max_k(S_vk)\nA_vn = [n <= v] exp(S_vn - m_v) / sum_k([k <= v] exp(S_vk - m_v))\n"
                             "L = sum_vn(A_vn c_vn)", (3, 3)),
}


def arrays_for(shape, seed):
    rng = np.random.default_rng(seed)
    return {"S": rng.normal(0, 2, shape), "T": rng.normal(0, 2, shape), "c": rng.normal(0, 1, shape)}


def moved(arrays, by):
    return {**arrays, "S": arrays["S"] + by, "T": arrays["T"] + by}


def derivative_routes(text, ndim):
    """The gradient and Hessian by S on every route, by route: each worked out once, a
    function of the arrays (the same symbols at every shift of the logits)."""
    first, second = ("S_a", "S_b") if ndim == 1 else ("S_ab", "S_cd")
    gradient = ic.diff(text, first)
    hessian = ic.diff(gradient, second)
    inline, simplified = ic.diff(text, first, inline=True), ic.simplify(hessian)
    compiled, compiled_hessian = ic.compile(text, wrt=["S"]), ic.compile(hessian)
    return {
        "evaluate(gradient)": lambda arrays: ic.evaluate(gradient, arrays),
        "evaluate(inline gradient)": lambda arrays: ic.evaluate(inline, arrays),
        "compile(wrt) gradient": lambda arrays: compiled(arrays)[1]["S"],
        "evaluate(hessian)": lambda arrays: ic.evaluate(hessian, arrays),
        "evaluate(simplified hessian)": lambda arrays: ic.evaluate(simplified, arrays),
        "compile(hessian)": lambda arrays: compiled_hessian(arrays)[0],
    }


@functools.cache
def routes_of(form: str) -> dict:
    """derivative_routes of a form, worked out once a test process."""
    text, shape = FORMS[form]
    return derivative_routes(text, len(shape))


def derivatives(routes, arrays):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow on the way is the defect
        return {route: compute(arrays) for route, compute in routes.items()}


@pytest.mark.parametrize("form", FORMS)
def test_logits_moved_far_give_the_derivatives_at_the_drawn_ones(form):
    text, shape = FORMS[form]
    arrays = arrays_for(shape, seed=len(form))
    routes = routes_of(form)
    want = derivatives(routes, arrays)
    gradient = finite_difference(lambda a: ic.evaluate(text, a), arrays, "S")
    first = ic.diff(text, "S_" + "ab"[:len(shape)])
    hessian = finite_difference(lambda a: ic.evaluate(first, a), arrays, "S")
    for route, value in want.items():
        np.testing.assert_allclose(value, hessian if "hessian" in route else gradient, rtol=1e-5, atol=1e-7,
                                   err_msg=f"{route} at the drawn logits")
    for by in (300.0, 448.0, 700.0):
        for route, value in derivatives(routes, moved(arrays, by)).items():
            np.testing.assert_allclose(value, want[route], rtol=1e-9, atol=1e-12, err_msg=f"{route}, logits + {by}")


def test_a_hand_written_sigmoid_has_its_derivatives_far_out():
    """`1 / (1 + exp(-x))` at x = -400, where the textbook form of σ'' holds
    u^-3 exp(-x)^2 = 0 · inf. (σ itself, through tanh, is 0 below x ≈ -37 rather than
    e^x: the tolerance is absolute.)"""
    text = "y_n = 1 / (1 + exp(-x_n))\nL = sum_n(y_n)"
    x = np.array([-400.0, -30.0, 0.5, 40.0, 400.0])
    first = np.exp(-abs(x)) / (1 + np.exp(-abs(x))) ** 2
    second = first * -np.tanh(0.5 * x)
    hessian = ic.diff(ic.diff(text, "x_a"), "x_b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exp(400) is a number; the question is what follows
        got = {"evaluate(gradient)": ic.evaluate(ic.diff(text, "x_a"), {"x": x}),
               "compile(wrt) gradient": ic.compile(text, wrt=["x"])({"x": x})[1]["x"],
               "evaluate(hessian)": np.diag(ic.evaluate(hessian, {"x": x})),
               "compile(hessian)": np.diag(ic.compile(hessian)({"x": x})[0])}
    for route, value in got.items():
        np.testing.assert_allclose(value, second if "hessian" in route else first, rtol=1e-9, atol=1e-15, err_msg=route)


def test_a_named_denominator_is_differentiated_through_its_sum():
    """The derivative reads Z's line through its sum: the shares exp(S_vl - logsumexp(S_v)),
    in range where log(Z_v) (inf once an S passes 709) is not. A sum whose log has no
    form in range here (a masked one) keeps log(Z_v)."""
    text = "Z_v = sum_k(exp(S_vk))\nA_vn = exp(S_vn) / Z_v\nL = sum_vn(A_vn c_vn)"
    line = str(ic.diff(text, "S_ab").equations[-2])
    assert line.startswith("A_{vn,(ab)}[S] = exp(S_vn - logsumexp_")
    assert "log(Z_v)" not in line and "^-2" not in line
    masked = "Z_v = sum_k([k <= v] exp(S_vk))\nA_vn = [n <= v] exp(S_vn) / Z_v\nL = sum_vn(A_vn c_vn)"
    assert "log(Z_v)" in str(ic.diff(masked, "S_ab").equations[-2])


# every form but the squared error, whose derivative holds the softmax's value (NaN there)
PAST_OVERFLOW = [form for form in FORMS if form != "squared error"]


@pytest.mark.parametrize("form", PAST_OVERFLOW)
def test_past_the_overflow_the_derivatives_are_still_those_at_the_drawn_logits(form):
    """At logits moved by ±1000 or 5000 the softmax as written is NaN (exp(1000) is inf:
    docs/notation.md), but its derivatives, through the shares exp(S - log(u)) with log u
    in range (logsumexp, or shifted by the largest logit: indexcalc/logs_in_range.py), are
    those at the drawn logits on every route, and so is a log of such a sum (cross-entropy).
    They were 0 or wrong, silently, on every route: log u as written is inf there, and every
    share exp(S - inf) 0."""
    arrays = arrays_for(FORMS[form][1], seed=len(form))
    routes = routes_of(form)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the forward lines overflow: their NaN is the ratio's, as written
        want = {route: compute(arrays) for route, compute in routes.items()}
        for by in (1000.0, -1000.0, 5000.0):
            for route, compute in routes.items():
                np.testing.assert_allclose(compute(moved(arrays, by)), want[route], rtol=1e-9, atol=1e-12,
                                           err_msg=f"{route}, logits + {by}")


@sample(20)
@given(form=st.sampled_from(PAST_OVERFLOW), by=st.floats(-5000.0, 5000.0), seed=st.integers(0, 2**16))
def test_any_move_of_the_logits_leaves_the_derivatives_as_they_were(form, by, seed):
    """The family of the test above: any form, any logits, any move."""
    arrays = arrays_for(FORMS[form][1], seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for route, compute in routes_of(form).items():
            np.testing.assert_allclose(compute(moved(arrays, by)), compute(arrays), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{form}: {route}, logits + {by}")


@pytest.mark.parametrize("backend", sorted(KNOWN))
def test_a_compiled_softmax_gradient_past_the_overflow_on_every_backend(backend):
    """The compiled gradient takes logsumexp from the forward pass's sum where that is in
    range (no exps computed again: the plan's step reads it), and computes it shifted
    where not; on float32 arrays exp overflows at 88."""
    try:
        get_backend(backend)
    except ic.IndexCalcError:
        pytest.skip(f"{backend} is not installed")
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)  # as tests/test_backends.py: float64 compared here too
    text, shape = FORMS["attention rows"]
    arrays = arrays_for(shape, seed=5)
    compiled = ic.compile(text, wrt=["S"], backend=backend)
    if backend == "numpy":
        assert re.search(r"_reduce\('logsumexp', v\d+, \(1,\), v\d+\)", compiled.source("numpy", arrays))
    want = np.asarray(ic.compile(text, wrt=["S"])(arrays)[1]["S"])
    for dtype, by in ((np.float64, 1000.0), (np.float64, -1000.0), (np.float32, 100.0), (np.float32, 0.0)):
        at = {k: v.astype(dtype) for k, v in moved(arrays, by).items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = to_numpy(compiled(at)[1]["S"])
        tolerance = 1e-9 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance, err_msg=f"{dtype.__name__} + {by}")


NAMED = [
    # (the named line, the loss reading it): each a softmax's function, unchanged by a move
    ("{P}_{q}{k} = exp(S_{q}{k} - logsumexp_{j}(S_{q}{j}))", "L = sum_{a}{b}({P}_{a}{b}^2)"),
    ("{P}_{q} = sum_{j}(exp(S_{q}{j}))", "L = sum_{a}{b}(c_{a}{b} exp(S_{a}{b}) / {P}_{a})"),
    ("{P}_{q} = sum_{j}(exp(S_{q}{j}))", "L = sum_{a}(log({P}_{a})) - c_{a}{b} S_{a}{b}"),
]


@sample(30, derandomize=True)
@given(form=st.sampled_from(NAMED), letters=st.lists(st.sampled_from("pqrstuvklmjab"), min_size=5, max_size=5,
                                                     unique=True))
def test_a_named_line_is_read_through_whatever_its_letters(form, letters):
    """The derivative through a named line reads the line's sum with the line's letters
    moved off both equations' (the soak's seed 11800: `p_qk1 = exp(v1_qk1 -
    logsumexp_v(v1_qv))` read as p_kp took q for its bound letter, capturing the line's
    own q: every route refused the program). Any letters, the same numbers as finite
    differences and the same at logits moved by 448; inlined and compiled (whose backward
    pass reads the line through its sum too, its letters fresh to every line) the same."""
    q, k, j, a, b = letters
    text = "\n".join(line.format(P="P", q=q, k=k, j=j, a=a, b=b) for line in form)
    arrays = arrays_for((2, 3), seed=7)
    gradient = ic.diff(text, "S_gh")
    got = ic.evaluate(gradient, arrays)
    np.testing.assert_allclose(got, finite_difference(lambda x: ic.evaluate(text, x), arrays, "S"), rtol=1e-5, atol=1e-7)
    for route, value in [("inline", ic.evaluate(ic.diff(text, "S_gh", inline=True), arrays)),
                         ("compile(wrt)", ic.compile(text, wrt=["S"])(arrays)[1]["S"])]:
        np.testing.assert_allclose(value, got, rtol=1e-10, atol=1e-12, err_msg=f"{text}\n{route}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(ic.evaluate(gradient, moved(arrays, 448.0)), got, rtol=1e-9, atol=1e-12)


LOGS = {
    # a log of a sum of exponentials the program writes, and its value by np.logaddexp
    "log(sum_k(exp(s_k)))": lambda s: np.logaddexp.reduce(s),
    "log(1 + sum_k(exp(s_k)))": lambda s: np.logaddexp.reduce(np.append(s, 0.0)),
    "log(sum_k([k <= 2] exp(s_k)))": lambda s: np.logaddexp.reduce(s[:3]),
    "log(mean_k(exp(s_k)))": lambda s: np.logaddexp.reduce(s) - np.log(len(s)),
    "log(exp(t) + 2 sum_k(exp(s_k)))": lambda s: np.logaddexp(s[0] - 1.0, np.log(2) + np.logaddexp.reduce(s)),
}


@pytest.mark.parametrize("log", LOGS)
def test_a_log_of_a_sum_of_exponentials_is_its_value_at_any_logits(log):
    """Where the sum leaves the floats, every route computes its log shifted by the largest
    exponent (indexcalc/logs_in_range.py): a cross-entropy written out is its value at any
    logits, as np.logaddexp gives it. It was inf past 709 and -inf below -745."""
    text = f"L = {log}"
    compiled, compiled_wrt = ic.compile(text), ic.compile(text, wrt=["s"])
    for by in (0.0, 1000.0, -1000.0, 5000.0):
        s = np.array([0.3, -1.2, 2.0, 0.5]) + by
        arrays = {"s": s, "t": s[0] - 1.0}
        want = LOGS[log](s)
        got = {"evaluate": ic.evaluate(text, arrays), "loops": ic.evaluate_loops(text, arrays),
               "compile": compiled(arrays)[0], "compile(wrt)": compiled_wrt(arrays)[0]}
        for route, value in got.items():
            np.testing.assert_allclose(value, want, rtol=1e-12, err_msg=f"{route}, logits + {by}")


TRACED_DEFINITIONS = ["r_mk = exp(x_mk)", "r_mk = exp(x_mk) + exp(2 x_km)", "r_mk = 1 + exp(-x_mk)",
                      "r_mk = sum_l(exp(x_ml + x_lk))", "r_mk = exp(-sum_l((x_ml - x_kl)^2))"]
TRACED_USES = ["y = c / (1 + (r_ii)^2)", "y = log(r_ii)", "y = log(1 + (r_ii)^2)", "y = (r_ii)^-1 + log(r_jj)",
               "y = exp(x_jj) (r_ii)^-1", "y = log(r_ii) - sum_j(x_jj)"]


@sample(12, derandomize=True, database=None)
@given(st.sampled_from(TRACED_DEFINITIONS), st.sampled_from(TRACED_USES), st.integers(1, 3), st.integers(0, 2**16))
def test_a_traced_named_exponential_is_not_read_through_its_definition(definition, use, size, seed):
    """The soak's flag on seed 13100 (15,900 programs in): `r_μk = exp(...)`, then
    `y2 = v4 / (1 + (r_ii)^2)`. Every route reads a named sum of exponentials under a
    power or a log through its definition, to compute it in range; for the trace r_ii
    that put the sum over i inside the exp, `exp(v_ii)^2` = exp(Σ_i v_ii)^2 where
    (Σ_i exp(v_ii))^2 was written: evaluate and the loops gave wrong numbers at sizes
    above 1 (an error at 1), as did diff's derivatives. Each use of each definition, on
    every route."""
    from routes import assert_routes_agree
    from strategies import RouteCase

    case = RouteCase(f"{definition}\n{use}", "x", "x_ab", {"x": ((size, size), "tensor"), "c": ((), "scalar")}, seed, True)
    assert_routes_agree(case, timeout=60)


# each sums over l or k terms that lack the line's m (broadcast over it, m being fixed there)
BROADCASTING_DEFINITIONS = ["r_m = exp(-sum_l((a_l - x_ml)^2))", "r_m = 1 + exp(-sum_l((a_l - x_ml)^2))",
                            "r_m = sum_k(exp(x_mk - a_k))", "r_m = exp(c_m) + sum_k(exp(x_mk - a_k))",
                            "r_m = mean_k(exp(a_k - x_mk))"]
# each sums over q by the convention: the product holds two q's
SUMMED_USES = ["y = (r_q)^3 r_q", "y = log(r_q) c_q", "y = (r_q)^-1 softplus_q(r_v)", "y = c_q log(1 + (r_q)^2)",
               "y = exp(c_q) (r_q)^-1", "y = (r_q)^2 r_p x_qp", "y = 2 (r_q)^3 r_q + c_p c_p"]


@sample(12, derandomize=True, database=None)
@given(st.sampled_from(BROADCASTING_DEFINITIONS), st.sampled_from(SUMMED_USES), st.integers(1, 3),
       st.integers(0, 2**16))
def test_a_named_exponential_read_through_in_a_sum_by_the_convention_keeps_its_letter_fixed(
        definition, use, size, seed):
    """The soak's flag on seed 13300 (1,800 programs in): `r_s = exp(-sum_j((W1_j -
    W2_sj)^2))`, then `y2 = (-2)^W4 ((r_q)^3 softplus_q(r_v)) + ...`. evaluate and the
    loops read a named sum of exponentials under a power or a log through its definition
    on the line as written, where the product sums q by the convention; set there,
    `sum_p(W1_p - W2_qp ...)` broadcasts W1 over a q that nothing fixed, which the index
    rules refuse, so every route but compile's refused a valid program. Now the line's
    sums are written out first (scope.explicit), as compile does: inside `sum_q(...)` q
    is fixed. Each use of each definition, on every route."""
    from routes import assert_routes_agree
    from strategies import RouteCase

    case = RouteCase(f"{definition}\n{use}", "x", "x_ab",
                     {"x": ((size, size), "tensor"), "a": ((size,), "tensor"), "c": ((size,), "tensor")}, seed, True)
    assert_routes_agree(case, timeout=60)


# each sums j by the convention inside an exp, where no node binds it
INNER_SUM_DEFINITIONS = ["Z_n = exp(x_nj b_j)", "Z_n = sum_k(exp(W_kj x_nj))", "Z_n = 1 + exp(x_nj b_j)",
                         "Z_n = exp(tanh(x_nj b_j))", "Z_n = exp(x_nj b_j) + exp(W_nj b_j)"]
# each binds a j of its own around the use: a sum, the convention, a second sum of j
J_BINDING_USES = ["L = sum_j(log(Z_n) c_jn)", "L = sum_j((Z_n)^2 c_jn)", "L = sum_n(log(Z_n) b_j c_jn)",
                  "L = sum_n((Z_n)^-1 b_j c_jn)", "L = sum_n(log(Z_n)) b_j b_j", "L = sum_nj(exp(x_nj) / Z_n)",
                  "L = sum_n(log(Z_n) (Z_n)^2) + x_nj c_jn"]


@sample(12, derandomize=True, database=None)
@given(st.sampled_from(INNER_SUM_DEFINITIONS), st.sampled_from(J_BINDING_USES), st.sampled_from(["x", "b"]),
       st.integers(0, 2**16))
def test_a_named_exponential_read_through_renames_the_sums_its_exp_leaves_to_the_convention(
        definition, use, by, seed):
    """The soak's flag on seed 13400 (4,500 programs in), silently wrong: `y_μm =
    exp(W2_mpuμ W3_μm W1_mpvvu)`, then `L = mean_μm(log(1 + y_μm^2))`. A use of a named
    sum of exponentials under a power or a log is read through its definition, whose bound
    letters are renamed apart; a sum the definition left to the convention inside its exp
    was bound by no node and kept its letter, which the use's own sum then bound:
    `sum_j(log(Z_n) c_jn)` with `Z_n = exp(x_nj b_j)` evaluated to 0.50 where it is 0.135
    (compile, whose lines have their sums written out, gave 0.135), and diff's
    derivatives were wrong the same way. Now the definitions are read with their sums
    written out (exponentials.named_exponentials). Each use of each definition, by each
    array, on every route."""
    from routes import assert_routes_agree
    from strategies import RouteCase

    shapes = {"x": ((2, 3), "tensor"), "b": ((3,), "tensor"), "c": ((3, 2), "tensor"), "W": ((2, 3), "tensor")}
    case = RouteCase(f"{definition}\n{use}", by, by + "_" + "ab"[: len(shapes[by][0])], shapes, seed, True)
    assert_routes_agree(case, timeout=60)
