"""Named indices (issue 10): `y_{batch out} = W_{out in} x_{batch in}` beside letters.

A subscript of several words reads each word as one index, a letter (`i`, `i4`) or a
name; a subscript of one word reads letters (`w_{ij}` is i, j) unless that word is a
name known in the text (written beside another index somewhere, or declared with
`index batch`). The tree holds the names as they are; every route treats them as
indices like any other, which the properties below check against the same programs
written with letters.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import strategies as st

import indexcalc as ic
from carets import assert_parse_refuses
from indexcalc.expr import Equation, Reduce, Tensor
from indexcalc.indices import index_names
from indexcalc.tokens import is_index_name, is_letter_index
from families import letters_of, named_route_cases, namings, renamed
from routes import assert_routes_agree
from strategies import expressions, route_cases, sample


def derivative_or_none(source, wrt):
    """diff(source, wrt), or None where the generator drew a wrt the target does not
    depend on (diff refuses that, as a likely typo)."""
    try:
        return ic.diff(source, wrt)
    except ic.DiffError as err:
        if "does not depend" in str(err):
            return None
        raise

def parse(text: str):
    return ic.parse(text, check=False)


# ---------------------------------------------------------------- reading


@pytest.mark.parametrize(
    "text, indices",
    [
        ("w_ij", ("i", "j")),  # as always: letters run together
        ("w_{ij}", ("i", "j")),
        ("W1_{i j}", ("i", "j")),
        ("x_{n d}", ("n", "d")),
        ("x_{i4 μ}", ("i4", "μ")),
        ("x_{batch in}", ("batch", "in")),
        ("x_{batch  j}", ("batch", "j")),
        ("x_{ij k}", ("ij", "k")),  # several words: each one index, `ij` a name
        ("x_{batch}", ("b", "a", "t", "c", "h")),  # one word, no name known: letters, as always
        ("x_batch", ("b", "a", "t", "c", "h")),
    ],
)
def test_a_subscript_reads_words_or_letters(text, indices):
    assert parse(text).indices == indices


def test_the_issue_s_layer():
    eq = parse("y_{batch out} = W_{out in} x_{batch in}")
    assert eq.lhs.indices == ("batch", "out")
    assert [f.indices for f in eq.rhs.factors] == [("out", "in"), ("batch", "in")]


def test_a_name_written_beside_another_index_is_known_everywhere_in_the_text():
    prog = parse("loss = mean_{batch}(sum_{out}(y_{batch out}))")
    assert prog.rhs.indices == ("batch",)
    assert prog.rhs.body.indices == ("out",)
    before = parse("h_{batch} = x_{batch}\ny_{batch out} = h_{batch} W_{out}")  # known from a later line
    assert before.equations[0].lhs.indices == ("batch",)
    assert before.equations[1].rhs.factors[1].indices == ("out",)


@pytest.mark.parametrize(
    "text",
    [
        "index batch\nh_{batch} = σ(x_{batch})",
        "indices batch, out\nh_{batch} = σ(x_{batch})",
        "indices batch out; h_{batch} = σ(x_{batch})",
        "h_{batch} = σ(x_{batch})\nindex batch   # declared after its use",
        "index batch\nh_batch = σ(x_batch)",  # declared, a bare subscript reads it too
    ],
)
def test_a_declared_name_reads_alone(text):
    eq = ic.parse(text)
    assert isinstance(eq, Equation)
    assert eq.lhs.indices == ("batch",) and eq.rhs.arg.indices == ("batch",)


def test_a_tensor_called_index_is_still_a_tensor():
    eq = ic.parse("index_i = 2 x_i")
    assert eq.lhs == Tensor("index", ("i",))
    assert ic.parse("y = index x").rhs.factors[0] == Tensor("index")


@pytest.mark.parametrize(
    "text, where",
    [
        ("loss_{,(out in)}[W] = 1", ("out", "in")),
        ("h_{batch out,(g h)}", ("batch", "out", "g", "h")),
        ("f_{,out in}", ("out", "in")),
    ],
)
def test_names_in_comma_derivatives(text, where):
    node = parse(text)
    tensor = node.lhs if isinstance(node, Equation) else node
    assert tensor.all_indices == where


def test_names_in_deltas_calls_reductions_and_brackets():
    node = parse("y_{batch out} = δ_{out g} δ_(out in)(g h) σ_{out}(W_{h k} x_{batch k}) sum_{in}(x_{batch in}) [out <= in]")
    delta, grouped, call, reduction, mask = node.rhs.factors
    assert (delta.left, delta.right) == (("out",), ("g",))
    assert (grouped.left, grouped.right) == (("out", "in"), ("g", "h"))
    assert call.relabel == "out" and reduction.indices == ("in",)
    assert (mask.left, mask.right) == ("out", "in")


def test_a_wrt_string_with_names():
    prog = "y_{batch out} = W_{out in} x_{batch in}\nloss = sum_{batch out}(y_{batch out} y_{batch out})"
    result = ic.diff(prog, "W_{g h}")
    assert result.equations[-1].lhs.derivs[0].indices == ("g", "h")
    named = ic.diff(prog, "W_{gout gin}")
    assert named.equations[-1].lhs.derivs[0].indices == ("gout", "gin")
    lone = ic.diff("index batch\nh_{batch} = σ(x_{batch})", "index gb\nx_{gb}")
    assert lone.lhs.derivs[0].indices == ("gb",)


def test_the_index_words():
    assert all(map(is_letter_index, ["i", "μ", "i4", "j12"]))
    assert not any(map(is_letter_index, ["in", "i4j", "", "4"]))
    assert all(map(is_index_name, ["in", "batch", "d2x", "i4j", "μν"]))
    assert not any(map(is_index_name, ["i", "i4", "d2", "2d", "d_model", "x²", ""]))
    assert index_names(parse("y_{batch out} = W_{out i} x_{batch i}")) == {"batch", "out"}


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "text, fragment, at",
    [
        ("x_{batch 2x}", "cannot read the index '2x'", "2x"),
        ("x_{batch d_model}", "cannot read the index 'd_model'", "_model"),
        ("x_{batch o²}", "write a power", "²"),
        ("index i\ny = x_i", "cannot declare 'i' an index name", "i\n"),
        ("index d_model\ny = x", "cannot declare 'd_model'", "d_model"),
        ("indices batch, 4x\ny = x", "cannot declare '4x'", "4x"),
        ("y = sum_{out out}(x_{out in})", "sum_{out out}(...) repeats an index", "sum"),
    ],
)
def test_errors_quote_names_and_point_at_them(text, fragment, at):
    assert_parse_refuses(text, fragment, text.index(at))


def test_an_undeclared_lone_word_still_reads_letters_and_the_check_says_so():
    with pytest.raises(ic.IndexCalcError) as info:
        ic.parse("h_{batch} = σ(x_{batc})")  # a typo: no name known, letters on both sides
    assert "c" in str(info.value) or "h" in str(info.value)


# ---------------------------------------------------------------- printing


@pytest.mark.parametrize(
    "text, plain, pretty, latex",
    [
        (
            "y_{batch out} = W_{out in} x_{batch in}",
            "y_{batch out} = W_{out in} x_{batch in}",
            "y_{batch out} = W_{out in} x_{batch in}",
            r"y_{\mathrm{batch}\,\mathrm{out}} = W_{\mathrm{out}\,\mathrm{in}} \, x_{\mathrm{batch}\,\mathrm{in}}",
        ),
        (
            "loss = mean_{batch}(sum_{out}(y_{batch out}))",
            "loss = mean_{batch}(sum_{out}(y_{batch out}))",
            "loss = mean_{batch}(Σ_{out}(y_{batch out}))",
            r"\mathrm{loss} = \operatorname{mean}_{\mathrm{batch}} \left(\sum_{\mathrm{out}} "
            r"\left(y_{\mathrm{batch}\,\mathrm{out}}\right)\right)",
        ),
        (
            "index batch\nh_{batch} = σ(x_{batch})",
            "index batch\nh_{batch} = sigma(x_{batch})",
            "index batch\nh_{batch} = σ(x_{batch})",
            r"h_{\mathrm{batch}} = \sigma\left(x_{\mathrm{batch}}\right)",
        ),
        (
            "y_{in} = sum_{i n}(x_{i n}) z_{in}\nindex in",  # the letters i, n beside the name in: spaced
            "index in\ny_{in} = sum_{i n}(x_{i n}) z_{in}",
            "index in\ny_{in} = Σ_{i n}(x_{i n}) z_{in}",
            r"y_{\mathrm{in}} = \sum_{i\,n} \left(x_{i\,n}\right) \, z_{\mathrm{in}}",
        ),
        (
            "h_{batch out,(g h)}[W] = δ_{out g} x_{batch h}",
            "h_{batch out,(gh)}[W] = delta_{out g} x_{batch h}",
            "h_{batch out,(gh)}[W] = δ_{out g} x_{batch h}",
            r"h_{\mathrm{batch}\,\mathrm{out},(gh)}\,[W] = \delta_{\mathrm{out}\,g} \, x_{\mathrm{batch}\,h}",
        ),
        (
            "f_{,out in}[w] = 1",
            "f_{,out in}[w] = 1",
            "f_{,out in}[w] = 1",
            r"f_{,\mathrm{out}\,\mathrm{in}}\,[w] = 1",
        ),
    ],
)
def test_printing(text, plain, pretty, latex):
    node = ic.parse(text)
    assert str(node) == plain
    assert node.pretty() == pretty
    assert node.latex() == latex
    assert ic.parse(str(node)) == node


def test_letters_print_as_they_always_did():
    for text in ["y_i = σ(w_ij x_j + b_i)", "loss_{,(gh)}[w] = 2 x_h δ_gi y_i", "y_{i,(mn)(pq)} = δ_(mn)(pq) x_i"]:
        node = ic.parse(text)
        assert "{" not in str(node).split("=")[1] or "(" in text
        assert " " not in str(node.lhs).split("_")[1]


def test_a_derivative_of_a_named_program_reads_well():
    derivative = ic.simplify(ic.diff("y_{batch out} = W_{out in} x_{batch in}", "W_{g h}"))
    assert str(derivative) == "y_{batch out,(gh)}[W] = x_{batch h} delta_{out g}"
    layer = ic.simplify(ic.diff("h_{batch out} = σ(W_{out in} x_{batch in})", "W_{g h}"))
    assert str(layer) == "h_{batch out,(gh)}[W] = sigma'(W_{out k} x_{batch k}) x_{batch h} delta_{out g}"


def test_a_printed_lone_name_in_one_equation_of_a_program_is_declared_once():
    prog = ic.parse("y_{batch out} = W_{out in} x_{batch in}\nloss = mean_{batch}(sum_{out}(y_{batch out}))")
    assert not str(prog).startswith("index")  # known from the first line
    alone = prog.equations[1]
    lone = ic.parse("index batch\nloss = mean_{batch}(x_{batch})")
    assert str(lone).startswith("index batch\n") and ic.parse(str(lone)) == lone
    assert ic.parse(str(alone)) == alone


# ---------------------------------------------------------------- properties


@sample(150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_round_trip_with_names_in_every_place(data):
    """Any tree, any of its letters renamed to names (some left as letters, so that a run
    of letters may spell a name): the printed text, declarations and all, parses back."""
    tree = parse(data.draw(expressions()))
    named = renamed(tree, data.draw(namings(letters_of(tree))))
    for text in (str(named), named.pretty()):
        assert parse(text) == named, text


@sample(40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(route_cases(), st.data())
def test_names_mean_what_letters_mean_on_every_route(case, data):
    """A program of the route property with its letters renamed to names gives the same
    numbers by einsum, by loops and from its printed text; so does its derivative."""
    program = ic.parse(case.text)
    mapping = data.draw(namings(letters_of(program), every=True))
    named = renamed(program, mapping)
    arrays = case.arrays()
    want = ic.evaluate(program, arrays)
    np.testing.assert_allclose(ic.evaluate(named, arrays), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ic.evaluate(ic.parse(str(named)), arrays), want, rtol=1e-10, atol=1e-12)
    if case.wrt is None:
        return
    by_letters = derivative_or_none(program, case.wrt)
    assume(by_letters is not None)
    reread = ic.parse(str(ic.simplify(ic.diff(named, case.wrt))))
    np.testing.assert_allclose(ic.evaluate(reread, arrays), ic.evaluate(by_letters, arrays), rtol=1e-8, atol=1e-10)



@sample(6, derandomize=True, database=None)
@given(named_route_cases())
def test_a_named_program_gives_the_same_numbers_on_every_route(case):
    """The route property on programs written with names: every route of tests/routes.py,
    compile, the loops, inlining and the Hessian among them, not only the ones above. The
    soak draws this family too (tests/families.py)."""
    assert_routes_agree(case, timeout=60)


def test_a_named_layer_evaluates_compiles_and_loops_like_its_letters():
    named = "y_{batch out} = W_{out in} x_{batch in} + b_{out}\nloss = mean_{batch}(sum_{out}(y_{batch out}^2))"
    letters = "y_no = W_oi x_ni + b_o\nloss = mean_n(sum_o(y_no^2))"
    rng = np.random.default_rng(0)
    arrays = {"W": rng.normal(size=(3, 4)), "x": rng.normal(size=(5, 4)), "b": rng.normal(size=3)}
    value = ic.evaluate(letters, arrays)
    assert np.isclose(ic.evaluate(named, arrays), value)
    assert np.isclose(ic.evaluate_loops(named, arrays), value)
    got, grads = ic.compile(named, wrt=["W", "b"])(arrays)
    _, want = ic.compile(letters, wrt=["W", "b"])(arrays)
    assert np.isclose(got, value)
    for name in ("W", "b"):
        np.testing.assert_allclose(grads[name], want[name], rtol=1e-12)


# ---------------------------------------------------------------- names wherever letters go (issue 10's examples)

LAYER = "h_{batch hid} = tanh(W_{hid in} x_{batch in} + b_{hid})\nloss = sum_{batch hid}(h_{batch hid} h_{batch hid})"
LAYER_LETTERS = "h_nh = tanh(W_hi x_ni + b_h)\nloss = sum_nh(h_nh h_nh)"


def layer_arrays():
    rng = np.random.default_rng(5)
    return {"W": rng.normal(size=(3, 2)), "x": rng.normal(size=(4, 2)), "b": rng.normal(size=3)}


@pytest.mark.parametrize("source, wrt, indices", [
    (LAYER, "b_{in}", ("in",)),
    (LAYER, "b_in", ("in",)),
    ("index gb\n" + LAYER, "b_{gb}", ("gb",)),
    ("index gb\n" + LAYER, "b_gb", ("gb",)),
    (LAYER, "b_{g}", ("g",)),
])
def test_a_wrt_string_reads_a_name_alone_as_the_program_does(source, wrt, indices):
    """`in` is a name in the program: `b_{in}` is one index there, not i and n, and so in
    wrt; so is a name the text declares (`index gb`) where no equation uses it."""
    arrays = layer_arrays()
    want = ic.evaluate(ic.diff(LAYER_LETTERS, "b_g"), arrays)
    trees = [source] + ([ic.parse(source)] if "gb" not in source else [])  # a tree keeps no unused name
    for tree in trees:
        d = ic.diff(tree, wrt)
        assert d.equations[-1].lhs.derivs[0].indices == indices
        np.testing.assert_allclose(ic.evaluate(d, arrays), want, rtol=1e-12)
    np.testing.assert_allclose(ic.compile(source, wrt=[wrt])(arrays)[1]["b"], want, rtol=1e-12)


@pytest.mark.parametrize("text, written", [
    ("y_{batch hid} = sigma_{hid}(W_{out in})", "sigma_{hid}(...) relabels"),
    ("y = sum_{batch out}(x_{batch in})", "sum_{batch out}(...) reduces over {out}"),
    ("L = (a_{batch out} b_{batch out} - t_{batch out})(a_{batch out} b_{batch out} - t_{batch out})",
     "write P_{batch out} = a_{batch out} b_{batch out}"),
    ("L = (a_{batch out} b_{batch out} - t_{batch out})(a_{batch out} b_{batch out} - t_{batch out})",
     "write sum_{batch out}(a_{batch out} b_{batch out})"),
    ("y_{out} = W_{out in} x_{in} x_{in}", "write sum_{in}(W_{out in} x_{in} x_{in})"),
    # a piece with a name alone is quoted as the text has it, with no declaration line
    ("y_{out} = W_{out in} x_{in} x_{in}", "write sum_{in}(W_{out in} x_{in}) x_{in} (or"),
    ("L = (a_{batch out} b_{batch out} - t_{out})(a_{batch out} b_{batch out} - t_{out})",
     "its sibling term t_{out} carries free"),
])
def test_messages_write_named_indices_as_written(text, written):
    with pytest.raises(ic.IndexNotationError) as info:
        ic.parse(text)
    assert written in str(info.value)
    assert not re.search(r"(^|\n|\) )(index|indices) ", str(info.value)), str(info.value)  # no declaration line


def test_a_reduction_built_in_python_is_named_as_written():
    tree = Equation(Tensor("y"), Reduce("foo", ("batch", "out"), Tensor("x", ("batch", "out"))))
    with pytest.raises(ic.IndexNotationError, match=r"foo_\{batch out\}\(\.\.\.\)"):
        ic.evaluate(tree, {"x": np.ones((2, 2))})


@pytest.mark.parametrize("wrt, written", [("W_{gout gin x}", "wrt gives 3: W_{gout gin x}"),
                                          ("W_{batch gin}", "of wrt W_{batch gin} is already used")])
def test_diff_quotes_a_named_wrt_as_written(wrt, written):
    with pytest.raises(ic.DiffError) as info:
        ic.diff(LAYER, wrt)
    assert written in str(info.value)


def test_a_model_file_takes_a_named_batch_index():
    """`batch sample mean`: the per-sample equations gain the index `sample`, as with n."""
    from indexcalc.modelfile import parse_model

    head = "data x y\nparam W[3, 2] xavier\nparam b[3] zeros\n"
    named = parse_model(head + "batch sample mean\nz_{k} = W_{k in} x_{in} + b_{k}\nloss = logsumexp_{k}(z_{k}) - y_k z_k")
    letters = parse_model(head + "batch n mean\nz_k = W_kj x_j + b_k\nloss = logsumexp_c(z_c) - y_k z_k")
    assert named.model.batch == "sample"
    assert named.model.program.equations[0].lhs.indices == ("sample", "k")
    rng = np.random.default_rng(2)
    data = {"x": rng.normal(size=(5, 2)), "y": np.eye(3)[rng.integers(0, 3, 5)]}
    params = letters.model.init_params(0)
    value, grads = named.model.loss_and_grads(params, data)
    want, want_grads = letters.model.loss_and_grads(params, data)
    assert np.isclose(value, want, rtol=1e-12)
    for name in grads:
        np.testing.assert_allclose(grads[name], want_grads[name], rtol=1e-12)
    with pytest.raises(ic.IndexCalcError, match="a name \\(batch\\)"):
        parse_model(head + "batch 2x mean\nz_k = W_kj x_j + b_k\nloss = z_k z_k")


def test_cli_eval_takes_sizes_of_named_indices_and_writes_their_axes_apart(capsys):
    from indexcalc import cli

    assert cli.main(["eval", "W_{out in} x_{batch in}", "--size", "batch=2", "out=3", "in=4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("value (axes out batch) =") and "explicit loops agree: yes" in out
    assert cli.main(["eval", "w_ij x_j", "--size", "i=2", "j=3"]) == 0
    assert capsys.readouterr().out.startswith("value (axes i) =")
    assert cli.main(["eval", "w_ij", "--size", "i=2", "j=3"]) == 0
    assert capsys.readouterr().out.startswith("value (axes ij) =")
