"""Iverson brackets (issue 10, item 5): masks on indices, `[j <= i]`, and comparisons of
values, `[x_i > 0]`, on every route.

A mask selects entries of what it multiplies: its indices take no part in the summation
count, each must occur on another factor of its product or be fixed from outside, and
it is constant under differentiation. A comparison is a scope like a function call (its
sides combine as a sum's terms) whose derivative is zero.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, strategies as st

import indexcalc as ic
from indexcalc import functions
from indexcalc.expr import Compare, Delta, Equation, Mask, Number, Product, Tensor
from families import bracket_programs
from routes import assert_routes_agree, finite_difference
from strategies import RouteCase, sample

ROUTES = sample(20, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
VALUES = sample(60, suppress_health_check=[HealthCheck.too_slow])
RNG = np.random.default_rng(11)

CAUSAL = "a_ij = [j <= i] exp(s_ij) / sum_k([k <= i] exp(s_ik))"


def rand(*shape):
    return RNG.uniform(-1, 1, shape)


def causal_softmax(s):
    e = np.exp(s) * np.tril(np.ones(s.shape))
    return e / e.sum(axis=1, keepdims=True)


def every_value(source, arrays) -> dict:
    """The value of `source` by evaluate, the loops, compile and evaluate(simplify)."""
    return {
        "evaluate": ic.evaluate(source, arrays),
        "evaluate_loops": ic.evaluate_loops(source, arrays),
        "compile": ic.compile(source)(arrays)[0],
        "evaluate(simplify)": ic.evaluate(ic.simplify(source), arrays),
    }


# ---------------------------------------------------------------- meaning


@VALUES
@given(st.integers(1, 5), st.integers(0, 2**32 - 1), st.sampled_from(["float64", "float32"]))
def test_the_causal_softmax_is_the_masked_softmax_by_every_route(n, seed, dtype):
    s = np.random.default_rng(seed).normal(size=(n, n)).astype(dtype)
    for route, got in every_value(CAUSAL, {"s": s}).items():
        np.testing.assert_allclose(got, causal_softmax(s.astype(float)), rtol=1e-5, atol=1e-7, err_msg=route)
    assert ic.evaluate(CAUSAL, {"s": s}).dtype == np.dtype(dtype)


@pytest.mark.parametrize("text, expected", [
    ("y_i = [j <= i] w_ij x_j", lambda w, x: np.tril(w) @ x),  # j summed: the causal matmul
    ("y_ij = [j <= i] w_ij", lambda w, x: np.tril(w)),
    ("y_ij = [j < i] w_ij", lambda w, x: np.tril(w, -1)),
    ("y_ij = [j <= i + 1] w_ij", lambda w, x: np.tril(w, 1)),
    ("y_ij = [j >= i - 1] w_ij", lambda w, x: np.triu(w, -1)),
    ("y_ij = [i == j] w_ij", lambda w, x: np.diag(np.diag(w))),
    ("y_ij = [i != j] w_ij", lambda w, x: w - np.diag(np.diag(w))),
    ("y_j = [j >= 1] x_j", lambda w, x: np.r_[0, x[1:]]),
    ("y_j = [j < 2] x_j", lambda w, x: np.r_[x[:2], 0, 0]),
    ("y_ij = [j <= i] x_i + 0 w_ij", lambda w, x: np.tril(np.ones((4, 4))) * x[:, None]),  # j fixed, on the mask
    ("y = sum_ij([j <= i] w_ij)", lambda w, x: np.tril(w).sum()),
    ("y_i = [j <= i] w_ij x_j + x_i", lambda w, x: np.tril(w) @ x + x),
    ("y_ij = [j <= i] + w_ij", lambda w, x: np.tril(np.ones((4, 4))) + w),  # a mask as a term
])
def test_a_mask_selects_entries_and_sums_nothing(text, expected):
    w, x = rand(4, 4), rand(4)
    arrays = {"w": w, "x": x}
    for route, got in every_value(text, arrays).items():
        np.testing.assert_allclose(got, expected(w, x), rtol=1e-12, atol=1e-15, err_msg=f"{text} by {route}")


def test_a_bare_masked_product_keeps_its_letters_free_in_order():
    w = rand(4, 4)
    np.testing.assert_allclose(ic.evaluate("[j <= i] w_ij", {"w": w}), np.tril(w).T)  # axes j, i
    np.testing.assert_allclose(ic.evaluate_loops("[j <= i] w_ij", {"w": w}), np.tril(w).T)


def test_a_letter_only_a_mask_carries_has_no_size():
    with pytest.raises(ic.ShapeError, match="size of index j"):
        ic.evaluate("y_ij = [j <= i] x_i", {"x": rand(3)})


def test_a_mask_takes_no_part_in_the_summation_count():
    assert ic.free_indices(ic.parse("[j <= i] exp(s_ij)")) == ("j", "i")
    assert ic.summed_indices(ic.parse("[j <= i] w_ij x_j")) == ("j",)
    assert ic.summed_indices(ic.parse("[j <= i] [k <= j] a_ij b_jk c_k")) == ("j", "k")
    # three occurrences are counted without the mask: w_ij x_j [j <= i] is two
    ic.parse("y_i = [j <= i] w_ij x_j")


def test_trees_built_in_python_read_as_the_text():
    tree = Equation(Tensor("y", ("i", "j")), Product((Mask("<=", "j", "i"), Tensor("w", ("i", "j")))))
    assert tree == ic.parse("y_ij = [j <= i] w_ij")
    assert Mask(">=", "i", None, 1) == ic.parse("y_i = [i >= 1] x_i").rhs.factors[0]


@pytest.mark.parametrize("text, index", [
    ("y_i = [j <= i] x_i", "j"),
    ("[j <= i]", "j"),
    ("y_i = x_i + [k <= i]", "k"),
    ("y_i = sum_j([k <= j] x_j) x_i", "k"),
])
def test_a_mask_index_nothing_sizes_is_refused_naming_it(text, index):
    tree = ic.parse(text, check=False)
    for route in (lambda: ic.evaluate(tree, {"x": rand(3)}), lambda: ic.evaluate_loops(tree, {"x": rand(3)}),
                  lambda: ic.compile(tree), lambda: ic.simplify(tree), lambda: ic.free_indices(
                      tree.rhs if isinstance(tree, Equation) else tree, frozenset(getattr(tree, "lhs", Tensor("y")).indices))):
        with pytest.raises(ic.IndexNotationError) as info:
            route()
        assert f"index {index} of the mask" in str(info.value)


@pytest.mark.parametrize("node, word", [
    (Mask("=<", "j", "i"), "'=<'"),
    (Mask("<=", "j", "i", 1.5), "whole-number"),
    (Compare("<>", Tensor("x", ("i",)), Number(0.0)), "'<>'"),
])
def test_a_bracket_built_in_python_with_an_unknown_comparison_is_refused(node, word):
    eq = Equation(Tensor("y", ("i", "j")), Product((node, Tensor("w", ("i", "j")))))
    for route in (lambda: ic.evaluate(eq, {"w": rand(2, 2), "x": rand(2)}), lambda: ic.diff(eq, "w_gh"),
                  lambda: ic.compile(eq)):
        with pytest.raises(ic.IndexNotationError) as info:
            route()
        assert word in str(info.value)


def test_the_mask_array_is_built_once_per_shape_and_type():
    functions._mask_array.cache_clear()
    s = rand(6, 6)
    f = ic.compile(CAUSAL)
    for _ in range(3):
        f({"s": s})
        ic.evaluate(CAUSAL, {"s": s})
    info = functions._mask_array.cache_info()
    assert info.misses == 1, info
    # the plan holds it: a call only reads it (one step per distinct mask, whatever its letters)
    assert "_mask1" in f._last.source and "arange" not in f._last.source
    assert sum("mask" in step.routine for step in f._last.lowering.steps) == 1
    f({"s": rand(7, 7)})
    assert functions._mask_array.cache_info().misses == 2


# ---------------------------------------------------------------- comparisons of values


@pytest.mark.parametrize("text, expected", [
    ("y_i = [x_i > 0] x_i", lambda x, c: np.maximum(x, 0)),
    ("y_i = [x_i >= (c)] x_i", lambda x, c: np.where(x >= c, x, 0)),
    ("y_i = [x_i == max_j(x_j)]", lambda x, c: (x == x.max()).astype(float)),
    ("y = sum_i([x_i < (c)])", lambda x, c: np.sum(x < c)),
    ("y_ij = [x_i <= x_j]", lambda x, c: (x[:, None] <= x[None, :]).astype(float)),  # both fixed: outer
    ("y_i = [2 < 3] x_i", lambda x, c: x),
])
def test_a_comparison_is_elementwise_one_or_zero(text, expected):
    arrays = {"x": rand(5), "c": 0.1}
    for route, got in every_value(text, arrays).items():
        np.testing.assert_allclose(got, expected(arrays["x"], 0.1), err_msg=f"{text} by {route}")


@pytest.mark.parametrize("text", ["y = [x_i > z_j]", "y_i = [a_ij b_ij > t_ij] x_i"])
def test_comparison_sides_combine_as_the_terms_of_a_sum(text):
    with pytest.raises(ic.IndexNotationError):
        ic.parse(text)


def test_the_derivative_of_a_comparison_is_zero_and_compile_gives_zeros():
    x = rand(5)
    d = ic.simplify(ic.diff("y_i = [x_i > 0] x_i", "x_g"))
    np.testing.assert_allclose(ic.evaluate(d, {"x": x}), np.diag((x > 0).astype(float)))
    value, grads = ic.compile("L = sum_i([x_i > 0] w_i)", wrt=["x", "w"])({"x": x, "w": rand(5)})
    np.testing.assert_array_equal(grads["x"], np.zeros(5))
    np.testing.assert_array_equal(grads["w"], (x > 0).astype(float))


# ---------------------------------------------------------------- diff and simplify


def test_a_mask_is_constant_under_differentiation():
    d = ic.diff(CAUSAL, "s_gh")
    s = rand(4, 4)
    np.testing.assert_allclose(ic.evaluate(d, {"s": s}), finite_difference(lambda a: ic.evaluate(CAUSAL, a),
                                                                              {"s": s}, "s"), atol=1e-8)


def test_delta_elimination_renames_the_mask_index():
    """y_i = [j <= i] w_ij x_j by x_g: the δ_jg goes, and the mask's j becomes g."""
    d = ic.simplify(ic.diff("y_i = [j <= i] w_ij x_j", "x_g"))
    assert not any(isinstance(n, Delta) for n in d.walk())
    masks = [n for n in d.walk() if isinstance(n, Mask)]
    assert masks == [Mask("<=", "g", "i")], str(d)
    w = rand(4, 4)
    np.testing.assert_allclose(ic.evaluate(d, {"w": w, "x": rand(4)}), np.tril(w))


@pytest.mark.parametrize("text, folded", [
    ("y_i = sum_j([j <= i] delta_ij x_j)", "y_i = x_i"),
    ("y_i = sum_j([j < i] delta_ij x_j)", "y_i = 0 x_i"),  # a zero that keeps its index
    ("y_i = [i <= i + 2] x_i", "y_i = x_i"),
    ("y_i = [i > i - 1] x_i", "y_i = x_i"),
    ("y_i = [i >= 0] x_i", "y_i = x_i"),
    ("y_i = [i < 0] x_i", "y_i = 0 x_i"),
    ("y_i = [i != i] x_i", "y_i = 0 x_i"),
    ("y_ij = [j <= i] [j <= i] w_ij", "y_ij = [j <= i] w_ij"),  # its square is itself, not a power
    ("y_i = [3 > 2] x_i", "y_i = x_i"),
])
def test_simplify_folds_masks_that_do_not_depend_on_the_index(text, folded):
    simplified = ic.simplify(text)
    assert str(simplified) == folded
    arrays = {"x": rand(4), "w": rand(4, 4)}
    np.testing.assert_allclose(ic.evaluate(simplified, arrays), ic.evaluate(text, arrays))


@pytest.mark.parametrize("text", ["y_i = [i >= 1] x_i", "y_ij = [j <= i + 1] w_ij", "y_i = [i <= 2] x_i"])
def test_simplify_keeps_masks_that_depend_on_the_index(text):
    assert str(ic.simplify(text)) == text


def test_masks_never_collect_with_numbers():
    text = "y_ij = [j <= i] w_ij + w_ij + 2 [j < i] w_ij"
    simplified = ic.simplify(text)
    w = rand(4, 4)
    np.testing.assert_allclose(ic.evaluate(simplified, {"w": w}), np.tril(w) + w + 2 * np.tril(w, -1))


# ---------------------------------------------------------------- every route, on generated programs

@ROUTES
@given(bracket_programs())
def test_every_route_gives_the_numbers_of_finite_differences(case):
    assert_routes_agree(case, timeout=20)


@pytest.mark.parametrize("mask", ["[i < j]", "[i != j]", "[i <= j]", "[j > i]", "[i == j]", "[i < j + 1]"])
@pytest.mark.parametrize("form", ["L = sum_ij({mask} (x_i - x_j)^2)", "L = sum_i(sum_j({mask} (x_i - x_j)^2))",
                                  "s_ij = {mask} (x_i - x_j)^2\nL = sum_ij(s_ij)",
                                  "L = sum_ijk({mask} (W_ik - W_jk)^2)"])
def test_a_pairwise_loss_over_a_mask_has_its_hessian_on_every_route(form, mask):
    """Found by hand beside a soak of 27,000 programs with no flag: the compiled Hessian
    of `sum_ij([i < j] (x_i - x_j)^2)` was refused (`cannot tell the size of index j`).
    Its terms, `2 [i < j] (δ_ia - δ_ja)(δ_ib - δ_jb)`, size j through δ_ja alone; simplify
    split the sum into parts and `sum_j(2 [a < j] δ_ab)` kept j on the mask, which sizes
    nothing. A part of a split sum now sizes what the whole did, through a δ to a letter
    fixed outside too. The generator draws masks in its products since."""
    text = form.format(mask=mask)
    name = "W" if "W_" in text else "x"
    specs = {name: ((4, 2) if name == "W" else (4,), "tensor")}
    assert_routes_agree(RouteCase(text, f"{name}_{'gh' if name == 'W' else 'g'}", f"{name}_{'pq' if name == 'W' else 'p'}",
                                  specs, 5, True), timeout=20)


@pytest.mark.parametrize("text", ["y_p = tanh_p(u_kr (v_r [r <= k]))\nL = sum_p(y_p^2)",
                                  "y_p = tanh_p(u_kr δ_rl (v_l [r <= k]))\nL = sum_p(y_p^2)",
                                  "y_k = softplus_k(u_jr (v_r [r <= j - 1]) [j != 1])\nL = sum_k(y_k^2)"])
def test_a_mask_in_parentheses_reads_the_letters_of_the_product_around_it_on_every_route(text):
    """The generator's first draws with masks in products (one in 2,000): a relabelling
    call renames its argument's free letter, and the rename read the parenthesised group
    `(v_r [r <= k])` alone, where neither k nor r is carried, and refused the mask, though
    parentheses around a product only group and evaluate read it so. Inside a group, the
    letters of the product around it stand fixed."""
    specs = {"u": ((3, 3), "tensor"), "v": ((3,), "tensor")}
    assert_routes_agree(RouteCase(text, "u_ab", "v_c", specs, 9, True), timeout=20)


@pytest.mark.parametrize("mask", ["[i != k]", "[i != k - 1]", "[i < k]", "[i >= k + 1]"])
@pytest.mark.parametrize("body", ["sin(v3_ki (v1_k - v1_k + 1) v2_i {mask})", "sin(v3_ki (v1_k - 3 - v1_k) v2_i {mask} 3)"])
def test_a_letter_a_cancelled_term_sized_keeps_its_size_beside_a_mask_on_every_route(body, mask):
    """The widened generator's first flag (3,000 draws, masks and comparisons dense): the
    compiled Hessian by v1 of `g_mp = y_{,(mp)}[v3]`, `L = g_mp g_mp`, with v1 cancelling
    in y, was refused (`cannot tell the size of index m`). A zero term's carrier `v3_mp`
    was dropped as held by sibling terms, which then cancelled; simplify tells a letter so
    lost by its leaving the formula and simplifies again without the hold, but m stayed
    on the mask `[p != m - 1]`, free and sized by nothing. A reduction's letter is now lost
    where it is no longer sized too."""
    text = f"y = {body.format(mask=mask)}\ng_mp = y_{{,(mp)}}[v3]\nL = g_mp g_mp"
    specs = {"v1": ((3,), "tensor"), "v2": ((2,), "tensor"), "v3": ((3, 2), "tensor")}
    assert_routes_agree(RouteCase(text, "v1_a", "v1_b", specs, 0, True), timeout=20)


# ---------------------------------------------------------------- renaming (masks pass through relabel.rename)


@pytest.mark.parametrize("text", ["y_j = sigma_j(T_kii) s", "y_j = sigma_j([k <= 1] T_kii) s"])
def test_renaming_a_relabelled_letter_onto_one_the_argument_sums_moves_that_one_aside(text):
    """σ_j(T_kii) with j renamed i: the argument's own summed i must not become the fixed
    one (it would read the diagonal T_kii per i); found by test_relabel's property."""
    from indexcalc.relabel import fresh_letters, letters_in, rename_fixed

    eq = ic.parse(text)
    rhs = rename_fixed(eq.rhs, {"j": "i"}, frozenset("j"), fresh_letters(letters_in(eq) | {"i"}))
    renamed = Equation(Tensor("y", ("i",)), rhs)
    arrays = {"T": rand(3, 2, 2), "s": 0.5}
    np.testing.assert_allclose(ic.evaluate(renamed, arrays), ic.evaluate(eq, arrays), rtol=1e-12)
