"""Parentheses around factors only group (issue 8, one reading): `a_t (σ_u(W_t) b_u)` is
`a_t σ_u(W_t) b_u`, on every route, for what the line means and for whether it is valid.

The index rules count a grouped factor as a factor of the product around it (indices.py
opens groups up), and so does renaming (relabel.py). Renaming used to read a group with
every letter of the product around it fixed, so a relabelling inside the group lost the
index it relabels when a sibling outside carried the same letter: the soak's seed 16800
drew `sin_{u,s}(logsumexp_rj(W4_jtr) [t < 1] (σ_{u,q}(W5_tll) W6_q))`, which every route
refused, while the same line without the parentheses gave its numbers. The property below
regroups generated programs (groups opened, runs of factors grouped) and runs every route
on the regrouped text.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import Phase, given, strategies as st

import indexcalc as ic
from indexcalc.expr import Expr, Product, with_children
from routes import assert_routes_agree
from strategies import SAFE_PROGRAMS, ProgramGenerator, RouteCase, route_cases, sample

PROPERTY = sample(12, derandomize=True, database=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])


def regrouped(node: Expr, draw) -> Expr:
    """`node` with the factors of each product regrouped: nested groups opened up, or a
    run of at least two (and not all) of its factors put in parentheses, or left alone."""
    children = node.children()
    if children:
        node = with_children(node, tuple(regrouped(c, draw) for c in children))
    if not isinstance(node, Product):
        return node
    how = draw(st.sampled_from(("keep", "open", "group")))
    if how == "open":
        opened = [g for f in node.factors for g in (f.factors if isinstance(f, Product) else (f,))]
        return Product(tuple(opened), span=node.span)
    factors = node.factors
    if how == "group" and len(factors) >= 3:
        start = draw(st.integers(0, len(factors) - 2))
        stop = draw(st.integers(start + 2, len(factors) - (start == 0)))
        return Product(factors[:start] + (Product(factors[start:stop]),) + factors[stop:], span=node.span)
    return node


# the evaluators' programs, with relabellings dense: a relabelling's source letter is at
# times one its siblings carry, and a product's factors are often grouped
DENSE = dataclasses.replace(SAFE_PROGRAMS, jacobian=8, mask=3)


@st.composite
def programs(draw):
    gen = ProgramGenerator(draw(st.data()), DENSE)
    text = gen.program()
    return text, gen.arrays(draw(st.integers(0, 2**32 - 1)))


@sample(150)
@given(programs(), st.data())
def test_a_regrouped_program_gives_the_same_numbers(case, data):
    """evaluate reads groups open (indices.py); compile writes the scopes out by renaming
    (relabel.py) and the loops run the text's own reading: all three on the regrouped text
    against evaluate on the text as drawn."""
    text, arrays = case
    again = str(regrouped(ic.parse(text), data.draw))
    expected = ic.evaluate(text, arrays)
    for route, value in (("evaluate", ic.evaluate(again, arrays)), ("compile", ic.compile(again)(arrays)[0]),
                         ("evaluate_loops", ic.evaluate_loops(again, arrays))):
        np.testing.assert_allclose(value, expected, rtol=1e-8, atol=1e-9, err_msg=f"{route}: {again}")


@PROPERTY
@given(route_cases(), st.data())
def test_a_program_regrouped_gives_the_same_numbers_on_every_route(case, data):
    tree = ic.parse(case.text)
    text = str(regrouped(tree, data.draw))
    arrays = case.arrays()
    np.testing.assert_allclose(ic.evaluate(text, arrays), ic.evaluate(tree, arrays), rtol=1e-9, atol=1e-12)
    assert_routes_agree(dataclasses.replace(case, text=text), timeout=30)


SEED_16800 = {"W4": (2, 2, 2), "W5": (2, 3, 3), "W6": (2,), "c": (2,)}
SEED_16700 = {"T0": (1, 1, 2), "T2": (2, 2, 2), "T3": (2,)}


@pytest.mark.parametrize("grouped, flat, shapes", [
    # seed 16800's line: sin_{u,s} relabels t, which the σ inside relabels to u of its own
    ("y_u = sin_{u,s}(logsumexp_rj(W4_jtr) [t < 1] (σ_{u,q}(W5_tll) W6_q)) c_s",
     "y_u = sin_{u,s}(logsumexp_rj(W4_jtr) [t < 1] σ_{u,q}(W5_tll) W6_q) c_s", SEED_16800),
    # seed 16700's line: m on the δ beside the relabelling tanh_t(T0_μμm), in one group
    ("y_tk1 = (sigma_{t,k}((-1.5) (δ_(jj)(ml) tanh_t(T0_μμm)) [k1 <= 1] / (1 + (T2_k1lt)^2)) T3_k)",
     "y_tk1 = (sigma_{t,k}((-1.5) δ_(jj)(ml) tanh_t(T0_μμm) [k1 <= 1] / (1 + (T2_k1lt)^2)) T3_k)", SEED_16700),
    ("y = a_t (σ_u(W_t) b_u) c_t", "y = a_t σ_u(W_t) b_u c_t", {"a": (2,), "W": (2,), "b": (2,), "c": (2,)}),
    ("y_k = u_kr (v_l δ_rl [r <= k])", "y_k = u_kr v_l δ_rl [r <= k]", {"u": (3, 3), "v": (3,)}),
])
def test_a_line_in_parentheses_reads_as_without_them_on_every_route(grouped, flat, shapes):
    """Each line is valid, and the grouped one gives the flat one's numbers by evaluate, the
    loops, compile and simplify, and its derivative by each tensor by every route."""
    rng = np.random.default_rng(3)
    arrays = {name: rng.uniform(-1, 1, shape) for name, shape in shapes.items()}
    expected = ic.evaluate(flat, arrays)
    routes = {
        "evaluate": lambda: ic.evaluate(grouped, arrays),
        "evaluate_loops": lambda: ic.evaluate_loops(grouped, arrays),
        "compile": lambda: ic.compile(grouped)(arrays)[0],
        "evaluate(simplify)": lambda: ic.evaluate(ic.simplify(grouped), arrays),
    }
    for route, run in routes.items():
        np.testing.assert_allclose(run(), expected, rtol=1e-9, atol=1e-12, err_msg=route)
    specs = {name: (shape, "tensor") for name, shape in shapes.items()}
    for name in shapes:
        assert_routes_agree(RouteCase(f"{grouped}\nL = {_squared(grouped)}", name, None, specs, 5, True, ()))


def _squared(line: str) -> str:
    """The line's result summed over its letters, squared: a scalar to differentiate."""
    lhs = ic.parse(line).lhs
    letters = "".join(lhs.indices)
    return f"sum_{letters}({lhs} {lhs})" if letters else f"{lhs} {lhs}"
