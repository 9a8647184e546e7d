"""`ic.compile` reads numbers as `ic.evaluate` does.

The plan is Python source, so every number in it is read by Python's rules unless the
plan says otherwise: a negative literal under `**`, a Python float or int passed as a
scalar, a constant folded to inf or nan, a tensor whose name looks like a plan variable.
Each test compares `ic.compile(src)(arrays)[0]` with `ic.evaluate(src, arrays)`, nan
included. The last part: derivative programs whose index survives only on a δ take its
size from the array of the tensor they differentiate by, as `evaluate` does.
"""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

import indexcalc as ic
from families import LONG_PARTS, reads
from strategies import sample

RNG = np.random.default_rng(20250301)


def same(src, arrays, rtol=1e-12):
    """compile and evaluate give the same numbers (nan where the other has nan), and the
    compiled call warns about nothing."""
    expected = ic.evaluate(src, arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ic.compile(src)(arrays)[0]
    assert np.shape(got) == np.shape(expected)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0, equal_nan=True, err_msg=str(src))
    return got


# --------------------------------------------------------------------------------------
# Literals keep their meaning wherever they are embedded


@pytest.mark.parametrize("src", [
    "y = (-2)^a",
    "y = (-2)^(a + 1)",
    "y = (-2.5)^a a",
    "y = a (-3)^a",
    "y = (-1)^a + (-2)^a",
    "y = -(-2)^a",
    "y = exp((-2)^a)",
    "y = (1 - 3)^a",
    "y = (-2)^(-a)",
    "y = (-0.5)^a - (-2)^a",
])
def test_negative_literal_bases(src):
    for a in (2.0, 3.0, 0.0):
        same(src, {"a": np.float64(a)})


@pytest.mark.parametrize("src", [
    "y_i = (-2)^a x_i",
    "y_i = x_i + (-2)^a",
    "y_i = ((-2)^a - x_i)^2",
    "y_i = x_i^((-2)^a)",
])
def test_negative_literal_bases_beside_arrays(src):
    for a in (2.0, 3.0):
        same(src, {"a": np.float64(a), "x": RNG.uniform(0.5, 2.0, size=4)})


# --------------------------------------------------------------------------------------
# Python numbers are read as NumPy reads them


@pytest.mark.parametrize("a, b", [(-2.0, 0.5), (-2, 0.5), (-8.0, 1 / 3), (np.float32(-2.0), np.float32(0.5))])
def test_negative_base_to_a_fractional_power_is_nan(a, b):
    got = same("y = a^b", {"a": a, "b": b})
    assert np.isnan(got) and not np.iscomplexobj(got)


@pytest.mark.parametrize("a, b", [(1, 0), (1.0, 0.0), (-1, 0), (0, 0), (np.int64(3), 0), (True, False)])
def test_division_by_zero_of_python_numbers(a, b):
    same("y = a/b", {"a": a, "b": b})
    same("y = a b^(-1) + a", {"a": a, "b": b})
    same("y = a^(-2) b^(-1)", {"a": b, "b": b})


def test_integer_arrays_are_read_as_floats():
    arrays = {"a": np.array([1, 2, 0]), "b": np.array([0, 3, 0])}
    same("y_i = a_i / b_i", arrays)
    same("y_i = b_i^(-2)", arrays)
    same("y_i = a_i^c", {**arrays, "c": np.array(-1)})


def test_python_floats_and_float32_keep_their_float_type():
    f = ic.compile("y = a^b + 1")
    assert f({"a": np.float32(-2.0), "b": np.float32(2.0)})[0].dtype == np.float32
    assert f({"a": -2.0, "b": 2})[0].dtype == np.float64
    assert f({"a": np.array(-2.0, dtype=np.float32), "b": np.array(0.5, dtype=np.float32)})[0].dtype == np.float32


def test_numbers_promote_float32_operands_beside_float64_ones_as_in_evaluate():
    x = RNG.normal(size=5).astype(np.float32)
    same("y = a / (3 b)", {"a": -2, "b": np.float32(-2.0)}, rtol=1e-15)
    same("y_i = x_i^2 c", {"x": x, "c": 0.1}, rtol=1e-15)
    same("y_i = 0.1 x_i + c", {"x": x, "c": 1.0}, rtol=1e-15)


# --------------------------------------------------------------------------------------
# Constants that come out inf or nan


@pytest.mark.parametrize("src", [
    "y = 1/(1 - 1)",
    "y = -1/(1 - 1)",
    "y = 1/(1 - 1) + a",
    "y = a / (2 - 2)",
    "y = (1/(1 - 1))^a",
    "y = a^(1/(1 - 1))",
    "y = (-1)^0.5 + a",
    "y = log(0) + a",
    "y = log(-1) a",
    "y = exp(1000) a",
    "y = 2 exp(1000) a",
    "y = sqrt(-1) - a",
])
def test_constants_that_come_out_inf_or_nan(src):
    for a in (2.0, 0.0, -1.5):
        same(src, {"a": a})


@pytest.mark.parametrize("src", [
    "y = 1e308 * 10 a",
    "y = 1e308 * 10",
    "y = -1e308 * 10 + a",
    "y = (1e308 * 10 - 1e308 * 10) a",
    "y = a^(-1e308 * 10)",
])
def test_numbers_that_simplify_folds_to_inf_or_nan(src):
    for a in (2.0, 0.5):
        same(src, {"a": a})


def test_evaluate_reads_inf_minus_inf_as_nan_without_a_warning():
    """inf and nan are answers here, not accidents: a sum's terms add as quietly as powers
    and functions evaluate (the plan runs under errstate too)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(ic.evaluate("y = (1e308 * 10 - 1e308 * 10) a", {"a": 2.0}))
        assert np.isnan(ic.evaluate("y_i = x_i - z_i", {"x": [np.inf], "z": [np.inf]})).all()


@pytest.mark.parametrize("src", [
    "y = 1e308 * 10 a",
    "y = -1e308 * 10 + a",
    "y = (1e308 * 10 - 1e308 * 10) a",
    "y_i = 1e200 x_i 1e200 + 1e308 x_i + 1e308 x_i",
    "y = 1/(1 - 1) + a",
    "y = a^(-1e308 * 10)",
])
def test_simplify_folds_no_number_to_inf_or_nan(src):
    """A folded inf would print as `inf`, which reads back as a tensor of that name: the
    simplified form has only finite numbers and reads back to the same values."""
    simplified = ic.simplify(src)
    assert all(np.isfinite(n.value) for n in simplified.walk() if isinstance(n, ic.Number)), str(simplified)
    for a in (2.0, 0.5):
        arrays = {"a": a, "x": RNG.normal(size=2)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            np.testing.assert_array_equal(ic.evaluate(ic.parse(str(simplified)), arrays), ic.evaluate(src, arrays))


def test_a_folded_inf_in_an_array_equation():
    x = RNG.normal(size=3)
    same("y_i = x_i / (1 - 1)", {"x": x})
    same("y_i = x_i + log(0)", {"x": x})
    same("y_i = 0 x_i + 1/(1 - 1)", {"x": x})
    same("y_i = 1e308 * 10 x_i", {"x": x})


# --------------------------------------------------------------------------------------
# Tensors named like plan variables


@pytest.mark.parametrize("src", [
    "y = v9 + 1",
    "y = v5 v6 + v7 v8",
    "y = v10 v1",
])
def test_scalars_named_like_plan_variables(src):
    same(src, {f"v{k}": RNG.normal() for k in range(1, 12)})


def test_arrays_named_like_plan_variables():
    arrays = {"v4": RNG.normal(size=3), "v5": RNG.normal(size=(2, 3)), "v6": RNG.normal(size=2)}
    same("y_i = v5_ij v4_j + v6_i", arrays)
    same("y_i = v6_i + tanh(v5_ij v4_j) v6_i", arrays)


def test_gradients_of_programs_that_read_tensors_named_like_plan_variables():
    program = "h_n = tanh(v98_nj v99_j)\nL = h_n h_n"
    arrays = {"v99": RNG.normal(size=3), "v98": RNG.normal(size=(2, 3))}
    for wrt in (["v98"], ["v99"], ["v98", "v99"]):
        value, grads = ic.compile(program, wrt=wrt)(arrays)
        np.testing.assert_allclose(value, ic.evaluate(program, arrays), rtol=1e-12)
        for name in wrt:
            np.testing.assert_allclose(grads[name], ic.evaluate(ic.diff(program, name), arrays), rtol=1e-12)


def test_plan_names_only_its_own_variables():
    """Every name the plan source uses outside quotes is a plan variable or a helper."""
    f = ic.compile("y = v9 v1 + v2")
    f({"v9": 2.0, "v1": 3.0, "v2": 1.0})
    code = re.sub(r"'[^']*'", "''", f._last.source)
    used = set(re.findall(r"\b[A-Za-z_]\w*\b", code))
    variables = {step.out for step in f._last.lowering.steps}
    assert used - variables <= {"def", "plan", "arrays", "return", "del", "np"}


# --------------------------------------------------------------------------------------
# Random literal expressions (hypothesis)

ATOMS = ["0", "1", "2", "3", "0.5", "1.5", "(-1)", "(-2)", "(-3)", "(-0.5)", "(-1.5)", "a", "b", "v9"]


def literal_expressions():
    def grow(inner):
        pair = st.tuples(inner, inner)
        return st.one_of(
            pair.map(lambda p: f"({p[0]})^({p[1]})"),
            pair.map(lambda p: f"({p[0]}) ({p[1]})"),
            pair.map(lambda p: f"{p[0]} + {p[1]}"),
            pair.map(lambda p: f"{p[0]} - ({p[1]})"),
            pair.map(lambda p: f"({p[0]}) / ({p[1]})"),
            inner.map(lambda x: f"-({x})"),
            st.tuples(st.sampled_from(["exp", "log", "sqrt", "tanh"]), inner).map(lambda p: f"{p[0]}({p[1]})"),
        )

    return st.recursive(st.sampled_from(ATOMS), grow, max_leaves=8)


def scalars():
    """Python ints and floats, NumPy scalars and 0-d arrays. Not 0: a zero input negated
    is -0 in the plan and +0 in evaluate (see zero_sign_blind), and 0^(1/-0) is then inf
    by one route and 0 by the other; zeros come from the literals and from sums instead,
    and the tests above divide by zero inputs."""
    values = st.sampled_from([-2, -1, 1, 2, 3])
    return st.one_of(
        values,
        values.map(float),
        st.sampled_from([-1.5, -0.5, 0.5, 2.5]),
        values.map(np.float32),
        values.map(np.float64),
        values.map(lambda v: np.array(float(v))),
    )


def zero_sign_blind(got, expected):
    """Both, with an infinity the two routes both reach taken without its sign. evaluate's
    products are einsums, which add from +0, so (-1)·0 is +0 there and -0 in the plan
    (as IEEE has it): 1/that is +inf by one route and -inf by the other."""
    both = np.isinf(got) & np.isinf(expected)
    return np.where(both, np.abs(got), got), np.where(both, np.abs(expected), expected)


@sample(300, suppress_health_check=[HealthCheck.too_slow])
@given(literal_expressions(), scalars(), scalars(), scalars())
def test_random_literal_expressions_compile_to_evaluate(expr, a, b, v9):
    src = f"y = {expr}"
    # only the arrays it reads: evaluate takes its numbers' type from every array given
    arrays = {k: v for k, v in {"a": a, "b": b, "v9": v9}.items() if re.search(rf"\b{k}\b", expr)}
    # float32 anywhere: the routes may round an operation in different orders
    rtol = 1e-5 if any(np.result_type(v) == np.float32 for v in arrays.values()) else 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = ic.compile(src)(arrays)[0]
    simplified = ic.evaluate(ic.simplify(src), arrays)
    np.testing.assert_allclose(*zero_sign_blind(got, simplified), rtol=rtol, equal_nan=True, err_msg=src)
    direct = ic.evaluate(src, arrays)
    if np.allclose(direct, simplified, rtol=rtol, equal_nan=True):  # else simplify changed the value
        np.testing.assert_allclose(*zero_sign_blind(got, direct), rtol=rtol, equal_nan=True, err_msg=src)


# --------------------------------------------------------------------------------------
# Derivative programs whose index survives only on a δ

X23 = RNG.normal(size=(2, 3))
X33 = RNG.normal(size=(3, 3))
x4 = RNG.normal(size=4)


@pytest.mark.parametrize("program, wrt, arrays", [
    ("Y_ij = X_ij", ["X_gh"], {"X": X23}),
    ("y_ij = x_i delta_ij", ["x_g"], {"x": x4}),
    ("y_ij = x_i z_j", ["x_g"], {"x": x4, "z": RNG.normal(size=2)}),
    ("y_ij = x_i z_j", ["z_g"], {"x": x4, "z": RNG.normal(size=2)}),
    ("K_ijkl = A_ij B_kl", ["A_gh"], {"A": X23, "B": X33}),
    ("y_k = W_kij a_i b_j", ["W_gpq"], {"W": RNG.normal(size=(2, 3, 4)), "a": RNG.normal(size=3), "b": x4}),
    ("L = X_ij X_ji", ["X_gh", "X_kl"], {"X": X33}),
    ("L = X_ij X_ij", ["X_gh", "X_kl"], {"X": X23}),
    ("L = X_ji B_jk X_ki", ["X_gh", "X_pq"], {"X": X33, "B": RNG.normal(size=(3, 3))}),
    ("L = b_i X_ji X_jk c_k", ["X_gh", "X_pq"], {"X": X23, "b": RNG.normal(size=3), "c": RNG.normal(size=3)}),
    ("L = sum_i(x_i) sum_j(x_j)", ["x_g", "x_h"], {"x": x4}),
    ("L = mean_i(x_i x_i)", ["x_g", "x_h"], {"x": x4}),
])
def test_derivative_sizes_come_from_the_tensor_differentiated_by(program, wrt, arrays):
    derivative = program
    for w in wrt:
        derivative = ic.diff(derivative, w)
    expected = ic.evaluate(derivative, arrays)
    got = ic.compile(derivative)(arrays)[0]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


def test_hessian_of_a_low_rank_residual_by_one_factor():
    arrays = {"T": RNG.normal(size=(3, 4)), "U": RNG.normal(size=(3, 2)), "V": RNG.normal(size=(4, 2))}
    program = "R_ij = T_ij - U_ik V_jk\nL = R_ij R_ij"
    hessian = ic.diff(ic.diff(program, "U_gh"), "U_pq")
    np.testing.assert_allclose(ic.compile(hessian)(arrays)[0], ic.evaluate(hessian, arrays), rtol=1e-12, atol=1e-14)


def test_a_derivative_sized_by_an_array_the_program_does_not_read_is_planned_per_shape():
    f = ic.compile(ic.diff("Y_ij = X_ij", "X_gh"))
    for shape in ((2, 3), (1, 2), (2, 3)):
        X = np.zeros(shape)
        np.testing.assert_array_equal(f({"X": X})[0], np.eye(X.size).reshape(shape + shape))
    assert f.plan_count == 2


@pytest.mark.parametrize("terms", [5, 200])
@pytest.mark.parametrize("chain", [4, 64])
def test_a_long_sum_is_planned_in_lines_of_bounded_length(terms, chain, monkeypatch):
    """A 10,000-term sum overflowed Python's compiler (a chain nests one level per
    operand): the plan writes at most CHAIN operands a line, and the numbers stay right
    whatever the signs and the split, gradients and scalar products too."""
    plan = sys.modules["indexcalc.plan"]
    monkeypatch.setattr(plan, "CHAIN", chain)
    rng = np.random.default_rng(terms)
    signs = rng.choice(["+", "-"], terms)
    text = "L = " + " ".join(f"{s} {k % 5} x a{k} b" for k, s in enumerate(signs)).lstrip("+ ")
    arrays = {"x": 0.7, "b": 1.3, **{f"a{k}": rng.uniform(-1, 1) for k in range(terms)}}
    f = ic.compile(text, wrt=["x"])
    value, grads = f(arrays)
    np.testing.assert_allclose(value, ic.evaluate(text, arrays), rtol=1e-12)
    np.testing.assert_allclose(grads["x"], ic.evaluate(ic.diff(text, "x"), arrays), rtol=1e-12)
    for step in f._last.lowering.steps:
        assert str(step).count(" + ") + str(step).count(" - ") + str(step).count(" * ") < chain + 2, str(step)


@sample(60)
@given(st.lists(st.sampled_from(sorted(LONG_PARTS)), min_size=1, max_size=24), st.sampled_from([2, 3, 4]),
       st.booleans())
def test_a_long_chain_of_parts_of_different_shapes_compiles_to_evaluate_s_numbers(kinds, chain, product):
    """A sum or product longer than a line (CHAIN operands) is planned in lines, and a
    line held only its own operands but was recorded with the whole result's shape: a
    line of scalars or of vectors, which the next line then wrote the result into in
    place (`np.add(v7, v8, v7)`), raised a TypeError or ValueError from NumPy on valid
    programs (65 scalar terms before an x_i; a 35-deep sin chain's Hessian, whose
    product has 65 factors). Every order of scalars, vectors and matrices, in lines of
    2 to 4: the compiled value and gradient are evaluate's."""
    if product:  # the plan multiplies the scalar factors into the contraction of the others
        factors = [f"(1 + {LONG_PARTS[kind].format(k=k % 3 + 1)})" for k, kind in enumerate(kinds)]
        text = "y_mi = " + " ".join(factors) + " w_mi x_i"
    else:
        text = "y_mi = " + " + ".join(LONG_PARTS[kind].format(k=k % 3 + 1) for k, kind in enumerate(kinds))
        text += " + w_mi" * ("w" not in kinds)
    program = text + "\nL = sum_mi(y_mi y_mi)"
    wrt = [name for name in ("c", "x", "w", "z") if reads(text, name)]
    rng = np.random.default_rng(len(kinds))
    arrays = {"c": 0.3, "x": rng.uniform(-1, 1, 3), "w": rng.uniform(-1, 1, (2, 3)), "z": rng.uniform(-1, 1, 2)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules["indexcalc.plan"], "CHAIN", chain)
        value, _ = ic.compile(text)(arrays)
        loss, grads = ic.compile(program, wrt=wrt)(arrays)
    np.testing.assert_allclose(value, ic.evaluate(text, arrays), rtol=1e-12)
    np.testing.assert_allclose(loss, ic.evaluate(program, arrays), rtol=1e-12)
    for name in wrt:
        np.testing.assert_allclose(grads[name], ic.evaluate(ic.diff(program, name), arrays), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("text", [
    "y_i = " + " + ".join(f"sin({k} c)" for k in range(1, 65)) + " + x_i",
    "y_mi = " + " + ".join(f"sin({k} x_i)" for k in range(1, 65)) + " + w_mi",
    "y_i = " + " ".join(f"sin({k} c)" for k in range(1, 66)) + " x_i",
])
def test_a_chain_longer_than_a_line_compiles_where_its_first_line_is_smaller(text):
    """The reproductions at the plan's own CHAIN, 64: 64 scalar terms or factors, or 64
    vector terms, and then the array of the result's shape."""
    arrays = {"c": 0.7, "x": np.array([0.3, -0.2, 0.5]), "w": np.arange(6.0).reshape(2, 3)}
    np.testing.assert_allclose(ic.compile(text)(arrays)[0], ic.evaluate(text, arrays), rtol=1e-12)
