"""Ambiguous index use and routes that disagree on validity (issue 8, items 5 and 6).

An index that a term sums while a sibling term carries it free, or an index occurring three
times in one product, has two readings; the notation refuses to pick one silently. The
error shows both and how to write each, with a caret at the offending product. Trees built
in Python (an unknown reduction or function), equations that read their own name and
comma derivatives with the wrong number of indices are refused by the same shared check,
so every route (evaluate, loops, diff, compile) says the same thing.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import indexcalc as ic
from strategies import sample
from carets import assert_points_at
from indexcalc.program import check_program

RNG = np.random.default_rng(8)
A, B, T = RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4)), RNG.normal(size=(3, 4))
W, X, G = RNG.normal(size=(3, 4)), RNG.normal(size=4), RNG.normal(size=4)
M = RNG.normal(size=(4, 4))
ARRAYS = {"a": A, "b": B, "t": T, "w": W, "x": X, "g": G, "m": M, "c": 0.5, "u": RNG.normal(size=5)}


def refused_by_every_route(text, arrays=ARRAYS, wrt="a") -> list[ic.IndexNotationError]:
    """The errors of evaluate, the loops, diff and compile on `text`: all must refuse."""
    errors = []
    routes = [
        lambda: ic.evaluate(text, arrays),
        lambda: ic.evaluate_loops(text, arrays),
        lambda: ic.diff(text, wrt),
        lambda: ic.compile(text)(arrays),
    ]
    for route in routes:
        with pytest.raises(ic.IndexNotationError) as info:
            route()
        errors.append(info.value)
    return errors


def assert_same_numbers(text, expected, arrays=ARRAYS):
    for evaluator in (ic.evaluate, ic.evaluate_loops):
        np.testing.assert_allclose(evaluator(text, arrays), expected, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- a term summing a sibling's free index

ELEMENTWISE_LOSS = "L = (a_ij b_ij - t_ij)(a_ij b_ij - t_ij)"


def test_a_term_summing_what_its_sibling_carries_free_is_refused():
    for err in refused_by_every_route(ELEMENTWISE_LOSS):
        message = str(err)
        assert "a_ij b_ij sums i, j" in message and "t_ij" in message
        assert "P_ij = a_ij b_ij" in message  # the elementwise reading, spelled out
        assert "sum_ij(a_ij b_ij)" in message  # the summed reading, spelled out
        assert_points_at(err, ELEMENTWISE_LOSS, ELEMENTWISE_LOSS.index("a_ij b_ij"))


def test_both_readings_written_as_the_message_says_give_their_numbers():
    elementwise = "P_ij = a_ij b_ij\nL = (P_ij - t_ij)(P_ij - t_ij)"
    summed = "L = (sum_ij(a_ij b_ij) - t_ij)(sum_ij(a_ij b_ij) - t_ij)"
    assert_same_numbers(elementwise, np.sum((A * B - T) ** 2))
    assert_same_numbers(summed, np.sum((np.sum(A * B) - T) ** 2))


@pytest.mark.parametrize(
    "text",
    [
        "t_i - a_ij b_ij",  # sums i (and j); the sibling carries i
        "m_jj - x_j",  # a trace beside a vector
        "L = (x_j - (1 + g_j g_j))(x_j - 1)",  # summed inside a parenthesised sum
    ],
)
def test_hidden_sums_beside_a_free_sibling_are_refused(text):
    with pytest.raises(ic.IndexNotationError, match="carries free"):
        ic.evaluate(text, ARRAYS)


def test_a_written_out_reduction_does_not_excuse_what_its_body_sums_implicitly():
    text = "v_i - sum_k(a_ij m_jk b_ik)"
    with pytest.raises(ic.IndexNotationError) as info:
        ic.evaluate(text, dict(ARRAYS, v=RNG.normal(size=3)))
    # i is ambiguous, j stays summed either way, k is fixed by sum_k
    assert "P_ik = a_ij m_jk b_ik" in str(info.value)
    assert "sum_i(a_ij m_jk b_ik)" in str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1 + exp(u_n)", 1 + np.exp(ARRAYS["u"])),  # scalar expansion, nothing summed
        ("x_i - mean_j(x_j)", X - X.mean()),  # the user wrote the reduction
        ("y_i = w_ij x_j + c", W @ X + 0.5),
        ("y_i = g_i - sqrt(x_j x_j)", G - np.sqrt(X @ X)),  # j summed, the sibling carries i only
        ("y_ij = a_ij b_ij - t_ij", A * B - T),  # i and j fixed: elementwise, as written
        ("x_j - sqrt(sum_j(x_j x_j))", X - np.sqrt(X @ X)),
        ("L = x_i x_i + g_j g_j", X @ X + G @ G),
    ],
)
def test_unambiguous_sums_stay_legal(text, expected):
    assert_same_numbers(text, expected)


# ---------------------------------------------------------------- an index three times in one product


def test_an_index_three_times_in_a_product_is_refused():
    text = "y_i = w_ij x_j x_j"
    for err in refused_by_every_route(text, wrt="x"):
        message = str(err)
        assert "j occurs 3 times in w_ij x_j x_j" in message
        assert "sum_j(w_ij x_j x_j)" in message  # one sum over all three
        assert "sum_j(w_ij x_j) x_j" in message  # a pair summed, the third kept
        assert_points_at(err, text, text.rindex("x_j"))


@pytest.mark.parametrize("text", ["m_ii x_i", "m_ii x_i x_i", "x_j (w_ij x_j)", "x_j exp(x_j) x_j", "m_jjj"])
def test_three_occurrences_count_through_groups_calls_and_one_tensor(text):
    arrays = dict(ARRAYS, m=RNG.normal(size=(4, 4)), x=X)
    if text == "m_jjj":
        arrays["m"] = RNG.normal(size=(4, 4, 4))
    with pytest.raises(ic.IndexNotationError, match="occurs [34] times"):
        ic.evaluate(text, arrays)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("y_i = sum_j(w_ij x_j x_j)", W @ (X * X)),  # the user wrote the reduction
        ("z_j = x_j g_j x_j", X * G * X),  # fixed from outside: elementwise
        ("x_i delta_ij g_j", X @ G),  # occurrences on a δ do not count
        ("x_i x_i delta_ij", X * X),
        ("sum_j(x_j) x_j", X.sum() * X),  # inside the sum, j is its own
    ],
)
def test_explicit_reductions_fixed_indices_and_deltas_stay_legal(text, expected):
    assert_same_numbers(text, expected)


# ---------------------------------------------------------------- one validity check for trees built in Python


def python_built(rhs: ic.Expr) -> ic.Equation:
    return ic.Equation(ic.Tensor("y", ("i",)), rhs)


def test_an_unknown_reduction_built_in_python_is_refused():
    eq = python_built(ic.Reduce("median", ("j",), ic.parse("w_ij x_j")))  # (max and min are known since issue 10)
    for err in refused_by_every_route(eq, wrt="w"):
        assert "'median'" in str(err) and "sum, mean, logsumexp, max, min" in str(err)


def test_an_unknown_function_built_in_python_is_refused():
    eq = python_built(ic.Call("foo", ic.parse("w_ij x_j")))
    for err in refused_by_every_route(eq, wrt="w"):
        assert "'foo'" in str(err) and "sigma" in str(err)


def test_an_equation_that_reads_its_own_name_is_refused():
    text = "w_i = w_i - 0.1 g_i"
    arrays = {"w": X, "g": G}
    for err in refused_by_every_route(text, arrays, wrt="g"):
        assert "w_new_i = w_i - 0.1 g_i" in str(err)
        assert_points_at(err, text, text.index("w_i -"))


DERIVATIVE_WITH_ONE_INDEX = "y = x_i w_ij c_j\nD_g = y_{,g}[w]"


def test_a_comma_derivative_with_the_wrong_number_of_indices_is_refused():
    arrays = {"x": RNG.normal(size=3), "w": W, "c": X}
    with pytest.raises(ic.IndexNotationError) as info:
        ic.evaluate(DERIVATIVE_WITH_ONE_INDEX, arrays)
    message = str(info.value)
    assert "y_{,g}[w]" in message and "w carries 2 indices" in message
    assert_points_at(info.value, DERIVATIVE_WITH_ONE_INDEX, DERIVATIVE_WITH_ONE_INDEX.index("y_{,g}"))
    with pytest.raises(ic.IndexNotationError):
        check_program(ic.parse(DERIVATIVE_WITH_ONE_INDEX).equations)


def test_compile_refuses_the_wrong_number_of_derivative_indices_too():
    arrays = {"x": RNG.normal(size=3), "w": W, "c": X}
    with pytest.raises(ic.IndexNotationError):
        ic.compile(DERIVATIVE_WITH_ONE_INDEX)(arrays)


def test_check_program_accepts_the_update_rule_and_refuses_names_defined_twice():
    update = ic.parse("yhat_i = sigma(w_ij x_j)\nloss = yhat_i yhat_i\nw_new_gh = w_gh - eta loss_{,(gh)}[w]")
    check_program(update.equations)
    check_program(ic.diff(ic.parse("yhat_i = sigma(w_ij x_j)\nloss = yhat_i yhat_i"), "w_gh").equations)
    twice = (ic.parse("y_i = x_i"), ic.parse("y_i = g_i"))
    with pytest.raises(ic.IndexNotationError, match="defined twice"):
        check_program(twice)


def test_own_indices_of_a_derivative_must_match_its_definition():
    text = "h_i = w_ij x_j\nD_gh = h_{ij,(gh)}[w] c_ij"
    with pytest.raises(ic.IndexNotationError, match="h carries 1 index"):
        check_program(ic.parse(text).equations)


# ---------------------------------------------------------------- properties

LETTERS = "ijklmn"


@st.composite
def triple_products(draw):
    """(text, arrays): a product in which one letter occurs 3+ times outside a δ, not fixed
    from outside, perhaps inside a function, grouped, beside δ's, as an equation's
    right-hand side."""
    size = draw(st.integers(1, 3))
    j = draw(st.sampled_from(LETTERS))
    others = [l for l in LETTERS if l != j]
    factors, arrays, seen = [], {}, []

    def tensor(letters):
        seen.extend(letters)
        name = f"T{len(arrays)}"
        arrays[name] = np.arange(1, size ** len(letters) + 1, dtype=float).reshape((size,) * len(letters)) / 7
        return f"{name}_{''.join(letters)}" if letters else name

    carriers = draw(st.integers(3, 4))
    if draw(st.booleans()):  # twice on one tensor, as in a trace
        factors.append(tensor([j, j]))
        carriers -= 2
    for _ in range(carriers):
        extra = draw(st.lists(st.sampled_from(others), max_size=2))
        letters = draw(st.permutations([j] + extra))
        text = tensor(letters)
        if draw(st.integers(0, 3)) == 0:
            text = f"{draw(st.sampled_from(['exp', 'tanh', 'sigma']))}({text})"
        factors.append(text)
    for _ in range(draw(st.integers(0, 2))):
        partner = draw(st.sampled_from(others))
        kind = draw(st.sampled_from(["delta", "2", "c", "scalar"]))
        if kind == "delta":
            seen.extend([j, partner])
        factors.append({"delta": f"delta_{j}{partner}", "scalar": tensor([])}.get(kind, kind))
    arrays["c"] = 0.5
    factors = draw(st.permutations(factors))
    if len(factors) > 3 and draw(st.booleans()):
        cut = draw(st.integers(1, len(factors) - 1))
        factors = factors[:cut] + ["(" + " ".join(factors[cut:]) + ")"]
    product = " ".join(factors)
    if draw(st.booleans()):
        product = f"exp({product})"
    once = [l for l in others if seen.count(l) == 1]
    if draw(st.booleans()):
        present = [l for l in others if l in seen]
        fixable = once + (draw(st.lists(st.sampled_from(present), max_size=1)) if present else [])
        lhs = "".join(dict.fromkeys(fixable))
        return (f"y_{lhs} = {product}" if lhs else f"y = {product}"), arrays
    return product, arrays


@st.composite
def sibling_sums(draw):
    """(text, arrays): a sum one term of which sums (perhaps inside a function or a
    parenthesised sum) an index that a sibling term carries free."""
    size = draw(st.integers(1, 3))
    ambiguous = draw(st.lists(st.sampled_from("ij"), min_size=1, max_size=2, unique=True))
    arrays = {"c": 0.5}

    def tensor(letters):
        name = f"T{len(arrays)}"
        arrays[name] = np.linspace(-1, 1, size ** len(letters)).reshape((size,) * len(letters))
        return f"{name}_{''.join(letters)}" if letters else name

    if len(ambiguous) == 1 and draw(st.booleans()):
        summing = tensor(ambiguous * 2)  # a trace
    else:
        extra = draw(st.lists(st.just("k"), max_size=1))
        summing = f"{tensor(ambiguous + extra)} {tensor(draw(st.permutations(ambiguous + extra)))}"
    wrap = draw(st.sampled_from(["{}", "c {}", "(1 + {})", "({})^2", "(2 + {}) c"]))
    summing = wrap.format(summing)
    carried = draw(st.lists(st.sampled_from(ambiguous), min_size=1, max_size=2, unique=True))
    sibling = draw(st.sampled_from(["{}", "sigma({})", "2 {}"])).format(tensor(carried))
    terms = draw(st.permutations([summing, sibling] + draw(st.lists(st.sampled_from(["1", "c"]), max_size=1))))
    signs = draw(st.lists(st.sampled_from([" + ", " - "]), min_size=len(terms) - 1, max_size=len(terms) - 1))
    text = terms[0] + "".join(s + t for s, t in zip(signs, terms[1:]))
    shape = draw(st.sampled_from(["{}", "L = ({})({})", "L = c ({}) ({})"]))
    return shape.replace("{}", text), arrays


def assert_refused(text, arrays):
    for route in (ic.evaluate, ic.evaluate_loops):
        with pytest.raises(ic.IndexNotationError):
            route(text, arrays)
    with pytest.raises(ic.IndexNotationError):
        ic.compile(text)(arrays)


@sample(60, suppress_health_check=[HealthCheck.too_slow])
@given(triple_products())
def test_property_an_index_three_times_in_a_product_is_always_refused(case):
    assert_refused(*case)


@sample(60, suppress_health_check=[HealthCheck.too_slow])
@given(sibling_sums())
def test_property_a_term_summing_a_siblings_free_index_is_always_refused(case):
    assert_refused(*case)


def test_a_sum_inside_a_function_argument_is_its_own():
    """The notation makes a function's argument a scope ("summed within the arguments
    first"): exp(g_j g_j) beside x_j is the exponential of a dot product, expanded."""
    g, x = RNG.normal(size=3), RNG.normal(size=3)
    value = ic.evaluate("x_j - sqrt(x_k x_k) + exp(g_j g_j)", {"x": x, "g": g})
    np.testing.assert_allclose(value, x - np.sqrt(x @ x) + np.exp(g @ g))
