"""Renaming keeps meaning: relabel.rename_fixed, rename and canonical_bound, on generated programs.

Both have a fast path (one simultaneous substitution, taken when the new letters capture
nothing) and the scope-aware slow one (taken when a new letter is already written in the
formula: a swap, a letter a product sums, a reduction's own letter). Whichever runs, the
renamed equation must give the same array as the original, axis for axis.
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given, strategies as st

import indexcalc as ic
from dataclasses import replace

from indexcalc.expr import Equation, Program, Reduce, Tensor, with_children
from indexcalc.relabel import (
    canonical_bound, fresh_letters, letters_in, rebind_reduction, rename, rename_fixed, substitute_letters,
)
from indexcalc.scope import explicit
from strategies import SAFE_PROGRAMS, ProgramGenerator, sample


@st.composite
def renamings(draw):
    """A program, its arrays, and new letters for the last equation's left-hand side:
    drawn from the formula's own letters (the slow path, and swaps) or fresh ones."""
    gen = ProgramGenerator(draw(st.data()), SAFE_PROGRAMS)
    program = ic.parse(gen.program())
    arrays = gen.arrays(draw(st.integers(0, 2**32 - 1)))
    last = program.lines[-1]
    assume(isinstance(last, Equation))  # a bare expression fixes no letter
    own = last.lhs.indices
    pool = sorted(letters_in(last)) + ["A", "B", "C"]
    new = draw(st.lists(st.sampled_from(pool), min_size=len(own), max_size=len(own), unique=True))
    return program, arrays, dict(zip(own, new))


def _with_last(program, equation):
    """The program with its last equation replaced; a bound letter that now shares a
    letter with a fixed one moves aside (`explicit`), since evaluate asks one size per
    letter of an equation while renaming only keeps what each occurrence means."""
    equation = explicit(equation)
    if isinstance(program, Program):
        return Program(program.equations[:-1] + (equation,))
    return equation


def _renamed_lhs(last: Equation, mapping: dict) -> Tensor:
    return Tensor(last.lhs.name, tuple(mapping.get(i, i) for i in last.lhs.indices))


@sample(60)
@given(renamings(), st.booleans())
def test_renaming_the_fixed_letters_keeps_the_values(case, made_explicit):
    program, arrays, mapping = case
    last = program.lines[-1]
    if made_explicit:  # every sum a node, as compile and simplify rename them
        last = explicit(last)
    fixed = frozenset(last.lhs.indices)
    fresh = fresh_letters(letters_in(last) | set(mapping.values()))
    rhs = rename_fixed(last.rhs, mapping, fixed, fresh)
    renamed = Equation(_renamed_lhs(last, mapping), rhs)
    want = ic.evaluate(program, arrays)
    got = ic.evaluate(_with_last(program, renamed), arrays)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{last}\n{mapping}\n{renamed}")


@sample(60)
@given(renamings())
def test_one_fixed_letter_renamed_to_a_new_one_is_a_substitution(case):
    program, arrays, mapping = case
    last = program.lines[-1]
    fixed = frozenset(last.lhs.indices)
    for old in last.lhs.indices:
        new = "Z"  # written nowhere: rename takes its fast path, which must mean what the rule says
        fresh = fresh_letters(letters_in(last) | {new})
        rhs = rename(last.rhs, old, new, fixed, fresh)
        assert rhs == substitute_letters(last.rhs, {old: new})
        renamed = Equation(_renamed_lhs(last, {old: new}), rhs)
        np.testing.assert_allclose(ic.evaluate(_with_last(program, renamed), arrays), ic.evaluate(program, arrays),
                                   rtol=1e-12, atol=1e-12)


def _rebound(node, fixed, fresh):
    """`node` with every reduction's letters moved to fresh ones: an explicit tree sums
    only in reductions, so this is the same formula spelt with other summed letters."""
    if isinstance(node, Reduce):
        for index in node.indices:
            node = rebind_reduction(node, index, fresh(), fixed, fresh)
        return replace(node, body=_rebound(node.body, fixed | set(node.indices), fresh))
    children = node.children()
    return with_children(node, tuple(_rebound(c, fixed, fresh) for c in children)) if children else node


@sample(60)
@given(renamings(), st.booleans())
def test_the_canonical_form_means_what_the_formula_means(case, made_explicit):
    """simplify merges terms whose canonical forms are equal: so the canonical form must be
    a renaming of the formula (each letter still bound where it was), never a new meaning."""
    program, arrays, _ = case
    last = program.lines[-1]
    if made_explicit:
        last = explicit(last)
    canonical = Equation(last.lhs, canonical_bound(last.rhs, frozenset(last.lhs.indices)))
    np.testing.assert_allclose(ic.evaluate(_with_last(program, canonical), arrays), ic.evaluate(program, arrays),
                               rtol=1e-12, atol=1e-12, err_msg=f"{last}\n{canonical}")


@sample(60)
@given(renamings())
def test_the_canonical_form_does_not_depend_on_the_summed_letters(case):
    program, _, _ = case
    last = explicit(program.lines[-1])
    fixed = frozenset(last.lhs.indices)
    respelt = _rebound(last.rhs, fixed, fresh_letters(letters_in(last)))
    assert canonical_bound(respelt, fixed) == canonical_bound(last.rhs, fixed), f"{last.rhs}\n{respelt}"
