"""Matrix functions on an index pair (issue 10, item 6): `inv_ij(A_kl)`, `det(A_kl)`,
`logdet(A_kl)`, on every route, against NumPy, finite differences and the closed form of
a Gaussian log-likelihood's gradient."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import Phase, given, strategies as st

import indexcalc as ic
from strategies import sample
from carets import assert_points_at
from indexcalc import datasets
from indexcalc.expr import MatrixCall, Tensor
from indexcalc.matrices import SingularMatrixError
from indexcalc.modelfile import parse_model
from indexcalc.train import train_file
from families import matrix_programs
from routes import assert_routes_agree, finite_difference, gradient_routes

RNG = np.random.default_rng(10)


def rand(*shape):
    return RNG.uniform(-1, 1, shape)


def spd(n, *batch):
    """A well-conditioned symmetric positive definite matrix (or a stack of them)."""
    a = rand(*batch, n, n)
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


def value_routes(source, arrays) -> dict:
    """The value of `source` by every route."""
    return {
        "evaluate": lambda: ic.evaluate(source, arrays),
        "evaluate_loops": lambda: ic.evaluate_loops(source, arrays),
        "compile": lambda: ic.compile(source)(arrays)[0],
        "evaluate(simplify)": lambda: ic.evaluate(ic.simplify(source), arrays),
        "evaluate(parse(str))": lambda: ic.evaluate(ic.parse(str(ic.parse(source))), arrays),
        "evaluate(parse(pretty))": lambda: ic.evaluate(ic.parse(ic.parse(source).pretty()), arrays),
    }


def assert_every_route(source, arrays, expected, rtol=1e-9):
    for route, compute in value_routes(source, arrays).items():
        np.testing.assert_allclose(compute(), expected, rtol=rtol, atol=1e-10, err_msg=f"{route} of {source}")


A3, S3, R3 = rand(3, 3), spd(3), rand(3)
AB = rand(2, 3, 3)
L34 = rand(3, 4)
INV = np.linalg.inv

VALUES = [
    # the argument's pair, in order of first appearance, is renamed to the relabelling
    ("B_ij = inv_ij(A_kl)", {"A": A3}, INV(A3)),
    ("B_ij = inv_ij(A_lk)", {"A": A3}, INV(A3)),
    ("B_ij = inv_ji(A_kl)", {"A": A3}, INV(A3).T),
    # an argument that carries both letters already is the matrix it reads: (Aᵀ)⁻¹
    ("B_ij = inv_ij(A_ji)", {"A": A3}, INV(A3.T)),
    ("C_ij = inv_ik(A_ab) A_kj", {"A": A3}, np.eye(3)),
    ("B_nij = inv_ij(A_nkl)", {"A": AB}, INV(AB)),
    ("B_ij = inv_ij(A_kl + 0.1 delta_kl)", {"A": A3}, INV(A3 + 0.1 * np.eye(3))),
    ("y = r_i inv_ij(S_kl) r_j", {"r": R3, "S": S3}, R3 @ INV(S3) @ R3),
    ("d = det(A_kl)", {"A": A3}, np.linalg.det(A3)),
    ("d_n = det(A_nkl)", {"A": AB}, np.linalg.det(AB)),
    ("y = x_n det_kl(A_nkl)", {"A": AB, "x": rand(2)}, None),
    ("l = logdet(S_kl)", {"S": S3}, np.linalg.slogdet(S3)[1]),
    ("l = logdet(L_ka L_la)", {"L": L34}, np.linalg.slogdet(L34 @ L34.T)[1]),
    ("l_n = logdet(A_nkm A_nlm + 2 delta_kl)", {"A": AB}, np.linalg.slogdet(AB @ np.swapaxes(AB, 1, 2) + 2 * np.eye(3))[1]),
]


@pytest.mark.parametrize("source, arrays, expected", VALUES, ids=[v[0] for v in VALUES])
def test_every_route_reads_the_notation_as_numpy_does(source, arrays, expected):
    if expected is None:  # y = x_n det_kl(A_nkl)
        expected = arrays["x"] @ np.linalg.det(arrays["A"])
    assert_every_route(source, arrays, expected)


def test_the_held_form_prints_back_and_in_latex():
    eq = ic.parse("y = 0.5 logdet(S_kl) + 0.5 r_i inv_ij(S_kl) r_j")
    assert str(eq) == "y = 0.5 logdet(S_kl) + 0.5 r_i inv_ij(S_ij) r_j"
    assert ic.parse(str(eq)) == eq and ic.parse(eq.pretty()) == eq
    assert eq.latex() == (r"y = 0.5 \, \log\det\left(S_{kl}\right) + 0.5 \, r_{i} \, "
                          r"\left(S_{ij}\right)^{-1}_{ij} \, r_{j}")
    assert ic.parse("d = det(A_kl)").latex() == r"d = \det\left(A_{kl}\right)"
    # a pair the text would not find by itself is named, as sum_kl names its indices
    summed = ic.parse("y = x_n det_kl(A_nkl)")
    assert str(summed) == "y = x_n det_kl(A_nkl)" and r"\det_{kl}" in summed.latex()


ARGUMENTS = ["A_{a}{b}", "A_{b}{a}", "A_{a}{c} B_{c}{b}", "A_{a}{b} + 0.5 delta_{a}{b}", "L_{a}{c} L_{b}{c}"]


@sample(40)
@given(st.sampled_from(ARGUMENTS), st.sampled_from(["inv_ij", "inv_ji", "det", "logdet", "det_ab"]),
       st.permutations(["k", "l", "m"]), st.booleans())
def test_printed_matrix_functions_parse_back_the_same(argument, function, letters, batch):
    a, b, c = letters
    arg = argument.format(a=a, b=b, c=c)
    if function == "det_ab":
        function = f"det_{a}{b}"
    if batch:
        arg = arg.replace("A_", "A_n").replace("L_", "L_n")
    free = (["n"] if batch else []) + (["i", "j"] if function.startswith("inv") else [])
    eq = ic.parse(f"y{'_' + ''.join(free) if free else ''} = {function}({arg})")
    for text in (str(eq), eq.pretty()):
        assert ic.parse(text) == eq, text


# ---------------------------------------------------------------- derivatives



def assert_close_to_fd(got, truth, what):
    scale = max(1.0, float(np.max(np.abs(truth))))
    np.testing.assert_allclose(got, truth, rtol=1e-5, atol=1e-6 * scale, err_msg=what)


DERIVATIVES = [
    ("B_ij = inv_ij(A_kl)", "A_gh", {"A": spd(3)}),
    ("d = det(A_kl)", "A_gh", {"A": rand(3, 3)}),
    ("l = logdet(A_kl)", "A_gh", {"A": spd(3) + 0.3 * rand(3, 3)}),  # not symmetric: the transpose shows
    ("l = logdet(L_ka L_la + 0.5 delta_kl)", "L_gh", {"L": rand(3, 2)}),
    ("y = r_i inv_ij(S_kl + 0.1 delta_kl) r_j", "S_gh", {"S": spd(3) + 0.3 * rand(3, 3), "r": rand(3)}),
    ("y = r_i inv_ij(S_kl) r_j", "r_g", {"S": spd(3), "r": rand(3)}),
    ("d_n = det(A_nkl)", "A_fgh", {"A": rand(2, 2, 2)}),
    ("C_ij = inv_ik(A_ab) A_kl W_lj", "A_gh", {"A": spd(2) + 0.3 * rand(2, 2), "W": rand(2, 2)}),
]


@pytest.mark.parametrize("source, wrt, arrays", DERIVATIVES, ids=[f"{s} by {w}" for s, w, _ in DERIVATIVES])
def test_each_rule_by_every_route_against_finite_differences(source, wrt, arrays):
    name = wrt.split("_")[0]
    truth = finite_difference(lambda a: ic.evaluate(source, a), arrays, name)
    for route, compute in gradient_routes(source, wrt, arrays).items():
        assert_close_to_fd(compute(), truth, f"{route} of {source} by {wrt}")


HESSIANS = [
    ("l = logdet(A_kl)", "A_gh", "A_ab", {"A": spd(2) + 0.3 * rand(2, 2)}),
    ("d = det(A_kl)", "A_gh", "A_ab", {"A": rand(3, 3)}),
    ("y = r_i inv_ij(S_kl) r_j", "S_gh", "S_ab", {"S": spd(2) + 0.3 * rand(2, 2), "r": rand(2)}),
    ("y = r_i inv_ij(S_kl) r_j", "S_gh", "r_a", {"S": spd(2), "r": rand(2)}),
]


@pytest.mark.parametrize("source, wrt, wrt2, arrays", HESSIANS, ids=[f"{s} by {w}, {v}" for s, w, v, _ in HESSIANS])
def test_second_derivatives_by_diff_of_diff(source, wrt, wrt2, arrays):
    d = ic.diff(source, wrt)
    h = ic.diff(d, wrt2)
    truth = finite_difference(lambda a: ic.evaluate(d, a), arrays, wrt2.split("_")[0])
    for route, got in {
        "evaluate(h)": ic.evaluate(h, arrays),
        "evaluate(simplify(h))": ic.evaluate(ic.simplify(h), arrays),
        "compile(h)": ic.compile(h)(arrays)[0],
        "evaluate_loops(h)": ic.evaluate_loops(h, arrays),
    }.items():
        assert_close_to_fd(got, truth, f"{route} of {source} by {wrt}, {wrt2}")


GAUSSIAN = "nll = 0.5 logdet(S_kl) + 0.5 r_i inv_ij(S_kl) r_j"


def test_the_gaussian_log_likelihood_gradient_is_the_closed_form_by_every_route():
    S, r = spd(4), rand(4)
    inv = np.linalg.inv(S)
    closed = 0.5 * (inv - inv @ np.outer(r, r) @ inv)
    arrays = {"S": S, "r": r}
    for route, compute in gradient_routes(GAUSSIAN, "S_gh", arrays).items():
        np.testing.assert_allclose(compute(), closed, rtol=1e-9, atol=1e-12, err_msg=route)
    # and the derivative reads as on paper once simplified: ½(S⁻ᵀ - S⁻ᵀ r rᵀ S⁻ᵀ)
    assert str(ic.simplify(ic.diff(GAUSSIAN, "S_gh"))) == (
        "nll_{,(gh)}[S] = 0.5 (inv_gh(S_hg) - inv_hj(S_hj) inv_ig(S_ig) r_i r_j)")


# ---------------------------------------------------------------- the plan


def test_the_plan_solves_where_the_inverse_only_multiplies():
    f = ic.compile(GAUSSIAN, wrt=["r"])
    arrays = {"S": spd(3), "r": rand(3)}
    value, grads = f(arrays)
    plan = str(f)
    assert "_solve(" in plan and "_matrix('inv'" not in plan, plan
    assert "_matrix('logdet'" in plan, plan
    # S⁻¹r, shared by the value and the gradient, and S⁻ᵀr: ∂/∂r of rᵀS⁻¹r is (S⁻¹ + S⁻ᵀ) r
    assert plan.count("_solve(") == 2, plan
    np.testing.assert_allclose(grads["r"], np.linalg.solve(arrays["S"], arrays["r"]), rtol=1e-10)
    # a line that is the inverse itself is an inverse
    g = ic.compile("B_ij = inv_ij(S_kl)")
    g(arrays)
    assert "_matrix('inv'" in str(g)


def test_float32_stays_float32():
    arrays = {"S": spd(3).astype(np.float32), "r": rand(3).astype(np.float32)}
    for route in (ic.evaluate, lambda s, a: ic.compile(s)(a)[0]):
        for source in (GAUSSIAN, "B_ij = inv_ij(S_kl)", "d = det(S_kl)"):
            assert np.asarray(route(source, arrays)).dtype == np.float32, source


def test_a_batch_of_solves_and_the_solve_with_the_transpose():
    A, x = rand(2, 3, 3) + 3 * np.eye(3), rand(2, 3, 4)
    f = ic.compile("y_nim = x_nkm inv_kj(A_nab) W_ji")
    W = rand(3, 3)
    got = f({"A": A, "x": x, "W": W})[0]
    assert "_solve(" in str(f)
    np.testing.assert_allclose(got, np.einsum("nkm,nkj,ji->nim", x, np.linalg.inv(A), W), rtol=1e-10)


# ---------------------------------------------------------------- edges and errors


def test_a_singular_matrix_has_no_inverse_on_any_route_but_a_determinant_of_zero():
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    for route, compute in value_routes("B_ij = inv_ij(A_kl)", {"A": singular}).items():
        with pytest.raises(SingularMatrixError) as info:
            compute()
        assert "singular" in str(info.value) and "inv_ij(A_ij)" in str(info.value), route
    with pytest.raises(SingularMatrixError):
        ic.compile("y = r_i inv_ij(A_kl) r_j")({"A": singular, "r": rand(2)})  # the solve
    assert_every_route("d = det(A_kl)", {"A": singular}, 0.0)
    assert_every_route("l = logdet(A_kl)", {"A": singular}, -np.inf)
    # logdet is log(det A): nan where det A < 0, as log(det(A)) is
    negative = np.array([[0.0, 1.0], [1.0, 0.0]])
    assert_every_route("l = logdet(A_kl)", {"A": negative}, np.nan)


REFUSED = [
    ("d = det(x_k)", "exactly two free indices", "det"),
    ("B_ij = inv_ij(A_klm)", "exactly two free indices", "inv"),
    ("y = r_i inv_ij(S_kl S_kl) r_j", "exactly two free indices", "inv"),
    ("B_ij = inv_ij(A_ikl)", "already carries i", "inv"),
    ("B_i = inv_i(A_kl)", "names the two indices", "inv"),
    ("B_ij = inv(A_kl)", "names the two indices", "inv"),
    ("d = det_k(A_kl)", "consumes its argument's pair", "det"),
    ("d = logdet", "needs an argument", "logdet"),
]


@pytest.mark.parametrize("text, fragment, at", REFUSED, ids=[r[0] for r in REFUSED])
def test_refusals_point_at_the_matrix_function(text, fragment, at):
    with pytest.raises(ic.IndexCalcError) as info:
        ic.parse(text)
    assert fragment in str(info.value)
    assert_points_at(info.value, text, text.index(at))


def test_a_matrix_that_is_not_square_is_a_shape_error_naming_both_sizes():
    for source in ("d = det(A_kl)", "B_ij = inv_ij(A_kl)"):
        for route in (ic.evaluate, ic.evaluate_loops, lambda s, a: ic.compile(s)(a)):
            with pytest.raises(ic.ShapeError) as info:
                route(source, {"A": rand(2, 3)})
            assert "size 2" in str(info.value) and "size 3" in str(info.value), str(info.value)


def test_the_loops_reference_works_by_formula_up_to_4x4():
    assert_every_route("d = det(A_kl)", {"A": (a4 := rand(4, 4))}, np.linalg.det(a4))
    with pytest.raises(ic.IndexCalcError, match="up to 4×4"):
        ic.evaluate_loops("d = det(A_kl)", {"A": rand(5, 5)})


def test_a_tree_built_in_python_carries_its_pair():
    node = MatrixCall("inv", Tensor("A", ("k", "l")), ("i", "j"))
    with pytest.raises(ic.IndexNotationError, match="does not carry i, j"):
        ic.evaluate(node, {"A": A3})
    held = MatrixCall("inv", Tensor("A", ("i", "j")), ("i", "j"))
    np.testing.assert_allclose(ic.evaluate(held, {"A": A3}), INV(A3))


# ---------------------------------------------------------------- the example


def test_the_gaussian_example_fits_the_sample_mean_and_covariance():
    with open(f"{ic.__path__[0]}/examples/gaussian.ic") as handle:
        mf = parse_model(handle.read())
    result, _, _ = train_file(mf)
    assert result.stopped == "done"
    (x,), _ = datasets.gaussian()
    L = result.params["L"]
    np.testing.assert_allclose(result.params["mu"], x.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(L @ L.T + 0.001 * np.eye(3), np.cov(x.T, bias=True), atol=1e-3)


def test_a_per_sample_quadratic_form_gradient_builds_no_batch_by_batch_delta():
    """The adjoint of r_ni in mean_n(r_ni inv_ij(S) r_nj) is sum_n(... δ_np) under a sum of
    inner sums: simplify splits it so the δ is contracted (it was an (n, i, n) array)."""
    f = ic.compile("q_n = r_ni inv_ij(S_kl) r_nj\nloss = mean_n(q_n)", wrt=["r"])
    S, r = spd(3), rand(50, 3)
    _, grads = f({"S": S, "r": r})
    assert "_embed" not in str(f), str(f)
    np.testing.assert_allclose(grads["r"], r @ (np.linalg.inv(S) + np.linalg.inv(S).T) / 50, rtol=1e-10)


@sample(15, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
@given(matrix_programs())
def test_generated_programs_with_matrix_functions_agree_on_every_route(case):
    """The soak's matrix family (tests/families.py): a Gaussian, a solve, an inverse in a
    layer, a batch of determinants, a kernel's Gram matrix, by any two of their tensors."""
    assert_routes_agree(case, timeout=20)
