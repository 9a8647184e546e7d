"""Trees built in Python hold only what the notation writes, or every route refuses them
alike (issue 8: one validity check, one reading).

A tree that parse never makes (`Reduce("sum", ("j", "j"), ...)`, an empty `Sum(())`, a
bare float among a product's factors, a tensor named `delta`) was read by each route its
own way: the loops summed the repeated j twice and einsum once, the empty sum was 0 to
the loops and None from evaluate, compile failed with an IndexError. The family: the layers
below and the cross-route generator's programs, parsed, with one node of any kind made
into what no text writes (`MUTATIONS`, by node type): every route must refuse the tree
with the same IndexCalcError, and no route may return a number. And the other side: what
parse, diff and simplify make, and the same rebuilt node by node in Python, passes.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import indexcalc as ic
from indexcalc.expr import with_children
from indexcalc.scope import explicit
from indexcalc.wellformed import check_tree
from routes import wrt_name
from strategies import route_cases, sample

LAYERS = [  # text, the arrays' shapes, what to differentiate by
    ("yhat_i = σ(w_ij x_j + b_i)\nloss = (yhat_j - y_j)(yhat_j - y_j)", {"w": (3, 4), "x": (4,), "b": (3,), "y": (3,)}, "w"),
    ("p_nk = exp(x_nk) / sum_c(exp(x_nc))\nL = r_nk p_nk", {"x": (2, 3), "r": (2, 3)}, "x"),
    ("a_ij = [j <= i] exp(s_ij) / sum_k([k <= i] exp(s_ik))\nL = r_ij a_ij", {"s": (3, 3), "r": (3, 3)}, "s"),
    ("h_nci = K_cdk x_{nd(2i+k)}\nL = sum_nci(h_nci h_nci)", {"K": (2, 2, 3), "x": (1, 2, 7)}, "K"),
    ("S_kl = A_ka A_la + 0.5 δ_kl\nL = 0.5 logdet(S_kl) + 0.5 r_i inv_ij(S_kl) r_j", {"A": (3, 2), "r": (3,)}, "A"),
    ("L = mean_n(relu(1 + max_c(s_nc - 10 t_nc) - min_d(s_nd + 10 (1 - t_nd))))", {"s": (3, 4), "t": (3, 4)}, "s"),
    ("e_n = w_j x_nj - y_n\nL = mean_n([abs(e_n) <= 1] 0.5 e_n e_n + [abs(e_n) > 1] (abs(e_n) - 0.5))",
     {"w": (3,), "x": (5, 3), "y": (5,)}, "w"),
    ("y_ik = x_i δ_ik + x_i^2 + σ_k(u_jk v_j)\nL = y_ik y_ik", {"x": (3,), "u": (2, 3), "v": (2,)}, "u"),
    ("yhat_i = σ(w_ij x_j)\nloss = yhat_i yhat_i\nw_new_gh = w_gh - eta loss_{,(gh)}[w]\nL2 = w_new_gh w_new_gh",
     {"w": (2, 3), "x": (3,), "eta": ()}, "w"),
]


def _tensor_name(node):  # names no text reads back as this tensor
    return [dataclasses.replace(node, name=name) for name in ("x y", "", "2x", "sum", "y = x")] + (
        [dataclasses.replace(node, name="delta")] if len(node.all_indices) == 2 else [])


MUTATIONS = {  # node type -> what no text writes, made of such a node
    ic.Reduce: lambda n: [dataclasses.replace(n, indices=n.indices + n.indices[:1]), dataclasses.replace(n, indices=()),
                          dataclasses.replace(n, indices=list(n.indices)), dataclasses.replace(n, indices="".join(n.indices)),
                          dataclasses.replace(n, op="median"), dataclasses.replace(n, indices=("j j",))],
    ic.Product: lambda n: [ic.Product(()), ic.Product(list(n.factors)), ic.Product((2.0,) + n.factors[1:]),
                           ic.Product((ic.Equation(ic.Tensor("q"), n.factors[0]),) + n.factors[1:])],
    ic.Sum: lambda n: [ic.Sum(()), ic.Sum((1,) + n.terms[1:]), ic.Sum(list(n.terms))],
    ic.Number: lambda n: [ic.Number(v) for v in ("2", math.nan, math.inf, -math.inf, complex(1, 1), None, np.array(2.0),
                                                 10**400)],
    ic.Tensor: lambda n: _tensor_name(n) + [
        dataclasses.replace(n, indices=list(n.indices)), dataclasses.replace(n, indices=n.indices + ("j j",)),
        dataclasses.replace(n, indices=n.indices + (3,)), dataclasses.replace(n, indices=n.indices + ("",)),
        dataclasses.replace(n, derivs=list(n.derivs) or [ic.Deriv(("g",), "w")])],
    ic.Power: lambda n: [dataclasses.replace(n, exponent=2), dataclasses.replace(n, base=1.5)],
    ic.Call: lambda n: [dataclasses.replace(n, func="foo"), dataclasses.replace(n, func=None),
                        dataclasses.replace(n, relabel="j j"), dataclasses.replace(n, arg=0.5)],
    ic.Compare: lambda n: [dataclasses.replace(n, op="=<"), dataclasses.replace(n, right=1)],
    ic.Delta: lambda n: [dataclasses.replace(n, right=()), dataclasses.replace(n, left=list(n.left)),
                         dataclasses.replace(n, right=(1,) * len(n.right))],
    ic.Mask: lambda n: [dataclasses.replace(n, op="=<"), dataclasses.replace(n, offset=0.5),
                        dataclasses.replace(n, left=("i",))],
    ic.Shift: lambda n: [dataclasses.replace(n, offset=0.5), dataclasses.replace(n, terms=()),
                         dataclasses.replace(n, terms=((0.5, "i"),))],
    ic.MatrixCall: lambda n: [dataclasses.replace(n, func="pinv"), dataclasses.replace(n, relabel=list(n.relabel))],
    ic.Equation: lambda n: [dataclasses.replace(n, lhs=ic.Tensor(n.lhs.name, ("i", "i"))),
                            dataclasses.replace(n, lhs=ic.Delta(("i",), ("j",))), dataclasses.replace(n, rhs=3.0)],
    ic.Program: lambda n: [ic.Program(()), ic.Program(list(n.equations)), ic.Program(n.equations + (ic.Tensor("q"),))],
}


def replaced(tree, target, new):
    """`tree` with the node `target` (by identity) replaced by `new`."""
    if tree is target:
        return new
    children = tree.children()
    swapped = tuple(replaced(child, target, new) for child in children)
    return tree if all(a is b for a, b in zip(swapped, children)) else with_children(tree, swapped)


def arrays_of(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {name: rng.uniform(0.5, 1.5, shape) for name, shape in shapes.items()}


def routes(tree, arrays, wrt):
    return {
        "evaluate": lambda: ic.evaluate(tree, arrays),
        "evaluate_loops": lambda: ic.evaluate_loops(tree, arrays),
        "simplify": lambda: ic.simplify(tree),
        "diff": lambda: ic.diff(tree, wrt),
        "diff inline": lambda: ic.diff(tree, wrt, inline=True),
        "compile": lambda: ic.compile(tree)(arrays),
        "compile(wrt)": lambda: ic.compile(tree, wrt=[wrt])(arrays),
    }


def refusals(tree, arrays, wrt) -> dict[str, str]:
    """Each route's error message; a route that returns, or raises anything but an
    IndexCalcError, fails the test."""
    messages = {}
    for name, route in routes(tree, arrays, wrt).items():
        with pytest.raises(ic.IndexCalcError) as info:
            route()
        messages[name] = str(info.value)
    return messages


@st.composite
def malformed_trees(draw):
    """A layer's tree, or a program of the cross-route generator's, with one node made
    into what no text writes."""
    if draw(st.booleans()):
        text, shapes, wrt = draw(st.sampled_from(LAYERS))
        arrays = arrays_of(shapes)
    else:
        case = draw(route_cases())
        text, arrays = case.text, case.arrays()
        wrt = wrt_name(case.wrt) if case.wrt else next(iter(arrays), "x")
    tree = ic.parse(text)
    node = draw(st.sampled_from([n for n in tree.walk() if type(n) in MUTATIONS]))
    bad = draw(st.sampled_from(MUTATIONS[type(node)](node)))
    return replaced(tree, node, bad), arrays, wrt


@sample(150)
@given(malformed_trees())
def test_a_tree_no_text_writes_is_refused_alike_by_every_route(case):
    tree, arrays, wrt = case
    messages = refusals(tree, arrays, wrt)
    assert len(set(messages.values())) == 1, messages
    assert "Traceback" not in next(iter(messages.values()))


@sample(40)
@given(malformed_trees())
def test_a_tree_no_text_writes_prints_or_says_what_is_wrong(case):
    """Printing is a route too: a tree built in Python with a bare float or a list inside
    raised a TypeError or an AttributeError from inside the printer. Now each printer
    gives text or an IndexCalcError (the refusal every route gives, or the printer's own
    word on the node it cannot print); repr, for debugging, never raises."""
    tree, _, _ = case
    for name, printer in {"str": str, "pretty": lambda t: t.pretty(), "latex": lambda t: t.latex(),
                          "einsum": lambda t: t.einsum()}.items():
        try:
            assert isinstance(printer(tree), str), name
        except ic.IndexCalcError:
            pass
    assert repr(tree).startswith(f"<{type(tree).__name__} ")


@pytest.mark.parametrize("text, shapes, wrt", LAYERS, ids=[text.splitlines()[-1] for text, _, _ in LAYERS])
def test_a_tree_rebuilt_in_python_is_taken_and_means_its_text(text, shapes, wrt):
    """Node by node, as a user builds it (no spans, no source text): accepted by every
    route, with the text's numbers; so are the routes' own trees (every sum a node,
    letters such as j~1)."""
    parsed = ic.parse(text)
    arrays = arrays_of(shapes)
    want = ic.evaluate(text, arrays)
    equations = parsed.lines
    for tree in (_rebuilt(parsed), ic.Program(tuple(explicit(eq) for eq in equations))):
        np.testing.assert_allclose(ic.evaluate(tree, arrays), want, rtol=1e-12)
        np.testing.assert_allclose(ic.evaluate_loops(tree, arrays), want, rtol=1e-9)
        np.testing.assert_allclose(ic.compile(tree)(arrays)[0], want, rtol=1e-12)
        np.testing.assert_allclose(ic.evaluate(ic.simplify(tree), arrays), want, rtol=1e-9)
        ic.diff(tree, wrt)


@sample(40)
@given(route_cases())
def test_what_the_routes_make_passes_the_check(case):
    """The check refuses only what no text writes: never a generated program rebuilt in
    Python, nor a derivative, its simplified form or the inlined one."""
    tree = ic.parse(case.text)
    made = [_rebuilt(tree)]
    if case.wrt:
        made += [ic.diff(tree, case.wrt), ic.simplify(ic.diff(tree, case.wrt))]
    for node in made:
        check_tree(_rebuilt(node))


def _rebuilt(node):
    fresh = {f.name: getattr(node, f.name) for f in dataclasses.fields(node) if f.name not in ("span", "source")}
    children = node.children()
    rebuilt = type(node)(**fresh)
    return with_children(rebuilt, tuple(_rebuilt(c) for c in children)) if children else rebuilt


X = ic.Tensor("x", ("i", "j"))
ARRAYS = {"x": np.arange(6.0).reshape(2, 3) + 1, "w": np.ones(3)}


@pytest.mark.parametrize("tree, fragment", [
    # the loops summed the repeated j twice, einsum once: 3 times apart on this x (j of size 3)
    (ic.Equation(ic.Tensor("y", ("i",)), ic.Reduce("sum", ("j", "j"), X)), "sum reduces over j twice (j, j)"),
    (ic.Equation(ic.Tensor("y"), ic.Sum(())), "a Sum of no terms: for 0 write ic.Number(0)"),
    (ic.Equation(ic.Tensor("y"), ic.Product(())), "a Product of no factors: for 1 write ic.Number(1)"),
    (ic.Equation(ic.Tensor("y", ("i", "j")), ic.Product((2.0, X))), "float 2.0, not an expression node: write ic.Number(2.0)"),
    (ic.Equation(ic.Tensor("y", ("i", "j")), ic.Power(X, 2)), "write ic.Number(2)"),
    (ic.Equation(ic.Tensor("y", ("i", "j")), ic.Product((ic.Number(math.inf), X))), "a finite real number, got inf"),
    (ic.Equation(ic.Tensor("y", ("i", "j")), ic.Tensor("x", ["i", "j"])), "got list ['i', 'j']"),
    (ic.Equation(ic.Tensor("y", ("i",)), ic.Reduce("sum", "j", X)), "got str 'j': write ('j',)"),
    (ic.Equation(ic.Tensor("y", ("i", "j")), ic.Tensor("delta", ("i", "j"))),
     "prints as 'delta_ij', which the notation reads as ic.Delta"),
    (ic.Equation(ic.Tensor("y", ("i", "i")), ic.Tensor("x", ("i", "i"))), "the left-hand side y_ii repeats the index i"),
])
def test_the_refusal_says_what_is_wrong_and_how_to_write_it(tree, fragment):
    for message in refusals(tree, ARRAYS, "x").values():
        assert fragment in message, message
