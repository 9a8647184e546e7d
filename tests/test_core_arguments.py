"""The core calls' keywords, checked where they are given (`compile`'s wrt, of and backend,
a compiled call's arrays, `diff`'s inline and of, the printers' style, `free_indices` and
`summed_indices`): a value of the wrong kind is an `ArgumentError` (an IndexCalcError, and
a TypeError as Python's own calls raise) that names the keyword and what it takes, never a
Python error from inside. A property throws any value at any of them; the table pins the
messages. (Expression nodes built by hand with fields of the wrong kind are refused where
a route reads them, by wellformed's check at the door, not when built.)
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

import indexcalc as ic
from strategies import sample

LAYER = "h_i = tanh(W_ij x_j + b_i)\nL = h_i h_i"
ARRAYS = {"W": np.ones((3, 2)), "x": np.ones(2), "b": np.ones(3)}
PROGRAM = ic.parse(LAYER)

CALLS = {
    "compile wrt": lambda v: ic.compile(LAYER, wrt=v)(ARRAYS),
    "compile of": lambda v: ic.compile(LAYER, wrt=["W"], of=v)(ARRAYS),
    "compile backend": lambda v: ic.compile(LAYER, wrt=["W"], backend=v),
    "compiled call": lambda v: ic.compile(LAYER, wrt=["W"])(v),
    "diff wrt": lambda v: ic.diff(LAYER, v),
    "diff inline": lambda v: ic.diff(LAYER, "W_ab", inline=v),
    "diff of": lambda v: ic.diff(LAYER, "W_ab", of=v),
    "pretty style": lambda v: PROGRAM.pretty(style=v),
    "latex style": lambda v: PROGRAM.latex(style=v),
    "free_indices": lambda v: ic.free_indices(v),
    "free_indices fixed": lambda v: ic.free_indices(PROGRAM.equations[0].rhs, v),
    "summed_indices": lambda v: ic.summed_indices(v),
    "parse names": lambda v: ic.parse("y_{batch out} = x_{batch out}", names=v),
}


@pytest.mark.parametrize("call, value, words", [
    ("compile wrt", 1.5, 'wrt must be a name or a list of names (wrt="W1" or wrt=["W1", "b1"]), not float 1.5'),
    ("compile wrt", ["W", 2], "wrt must be a name or a list of names"),
    ("compile wrt", b"W", "not bytes b'W'"),
    ("compile of", np.ones(2), 'of must be a name (of="L") or None, not ndarray'),
    ("compile backend", ["jax"], "backend must be a name (one of numpy, jax, torch, dask, cupy) or None, not list ['jax']"),
    ("compiled call", np.ones(3), "arrays must be a mapping of names to arrays, not ndarray"),
    ("compiled call", None, "arrays must be a mapping of names to arrays, not NoneType None"),
    ("diff inline", np.ones(2), "inline must be True or False, not ndarray"),
    ("diff inline", "yes", "inline must be True or False, not str 'yes'"),
    ("diff of", 3, 'of must be a name (of="L") or None, not int 3'),
    ("pretty style", None, 'style must be "default" or "notes", not NoneType None'),
    ("free_indices", {}, "free_indices takes an expression (ic.parse(...)), not dict {}"),
    ("free_indices fixed", None, "free_indices's fixed letters must be a set of names, not NoneType None"),
    ("summed_indices", "w_ij x_j", "summed_indices takes an expression (ic.parse(...)), not str"),
    ("parse names", 5, 'names must be a name or a list of names (names=["batch"]), not int 5'),
    ("parse names", [["a"]], "names must be a name or a list of names"),
    ("parse names", ["i"], "names: 'i' is not an index name (a letter index needs no naming)"),
    ("parse names", "2d", "names: '2d' is not an index name (a named index is a letter, then letters and digits"),
])
def test_a_keyword_of_the_wrong_kind_is_named_with_what_it_takes(call, value, words):
    with pytest.raises(ic.ArgumentError, match=re.escape(words)) as caught:
        CALLS[call](value)
    assert isinstance(caught.value, TypeError)  # as Python's own calls raise


@pytest.mark.parametrize("wrt", [None, (), "W", ["W"], ("W", "b"), {"W": 1}, iter(["W"])])
def test_wrt_is_none_one_name_or_any_collection_of_names(wrt):
    value, grads = ic.compile(LAYER, wrt=wrt)(ARRAYS)
    want = ic.compile(LAYER, wrt=["W", "b"])(ARRAYS)[1]
    assert set(grads) <= {"W", "b"}
    for name, gradient in grads.items():
        np.testing.assert_array_equal(gradient, want[name])


def test_parse_names_are_one_name_or_a_collection_of_names():
    """A lone string is one name, as wrt's is (it was read as its letters: "ab" as a and b)."""
    one = ic.parse("y = sum_{ab}(x_{ab})", names="ab")
    assert one == ic.parse("y = sum_{ab}(x_{ab})", names=["ab"]) and one.rhs.indices == ("ab",)
    assert ic.parse("y = sum_ab(x_ab)").rhs.indices == ("a", "b")  # without the name: two letters
    for names in (iter(["batch"]), {"batch"}, ("batch",)):
        assert ic.parse("y_{batch} = x_{batch}", names=names).lhs.indices == ("batch",)
    for names in (None, ()):
        assert ic.parse("y_{batch} = x_{batch}", names=names).lhs.indices == tuple("batch")


ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True), st.text(max_size=5),
    st.sampled_from([np.ones(3), np.ones((3, 2)), b"x", object(), "W", "W_ab", "x_a", "L", "h", "w_ij x_j", "notes",
                     PROGRAM, PROGRAM.equations[0], PROGRAM.equations[0].rhs, (), [], {}, "numpy", "jax", "sum"]),
)


@given(call=st.sampled_from(sorted(CALLS)),
       value=st.one_of(ANY, st.lists(ANY, max_size=3),
                       st.dictionaries(st.sampled_from(["W", "b", "x", "q"]), ANY, max_size=3)))
@sample(300)
def test_any_value_of_any_core_keyword_works_or_is_an_indexcalc_error(call, value):
    """Before: wrt=None or 1.5 a TypeError, backend=[...] unhashable, of=array and
    inline=array a ValueError, a compiled call given an array an IndexError,
    free_indices({}) and summed_indices(None) errors from inside."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            CALLS[call](value)
    except ic.IndexCalcError:
        pass
