"""A name such as `c_new`, meant as one scalar, is the tensor c with the indices n, e, w
(`w_ij` is w with i and j). Where that reading is refused, the refusal says so and how
the scalar is written (`c_new_{}`), on every route; the spelling it gives is accepted and
gives the scalar's numbers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import indexcalc as ic
from strategies import sample

BASES = ("c", "lr", "eta", "b", "w", "h", "β")
LETTERS = "bcdefghkmnopqrstuvwxz"


@st.composite
def spellings(draw):
    """A base name and a word of two to four distinct letters: the name base_word."""
    base = draw(st.sampled_from(BASES))
    word = "".join(draw(st.lists(st.sampled_from(LETTERS), min_size=2, max_size=4, unique=True)))
    return base, f"{base}_{word}"


# (a program that reads `name` as a scalar, its value at a=0.5, y=0.25 and base=3 with the scalar's spelling)
TEMPLATES = [
    ("{name} = {base} - 0.1\nL = {name}^2", lambda v: (3 - 0.1) ** 2),
    ("L = (a {name} - y)^2", lambda v: (0.5 * v - 0.25) ** 2),
    ("L = (a {base} - y)^2\n{name} = {base} - 0.1", None),  # read before it is defined: no fix by spelling
    ("{base} = 1\n{name} = {base} - 0.1\nL = {name}^2", lambda v: (1 - 0.1) ** 2),  # c defined twice, as read
]


def hint(name: str) -> str:
    return f"a scalar named {name} is written {name}_{{}}"


@sample(60)
@given(spelled=spellings(), template=st.sampled_from(TEMPLATES))
def test_a_refused_line_that_reads_a_name_as_indices_gives_the_other_reading(spelled, template):
    base, name = spelled
    text, value = template
    program = text.format(name=name, base=base)
    for route in (ic.parse, lambda t: ic.diff(t, base), ic.compile):
        with pytest.raises(ic.IndexCalcError) as refused:
            route(program)
        assert hint(name) in str(refused.value) and f"{name} reads as {base} with the indices" in str(refused.value)
    if value is None:
        return
    fixed = text.format(name=name + "_{}", base=base)
    arrays = {"a": 0.5, "y": 0.25, base: 3.0, name: 2.0}  # an array a program does not read changes nothing
    np.testing.assert_allclose(ic.evaluate(fixed, arrays), value(2.0))
    np.testing.assert_allclose(ic.compile(fixed)(arrays)[0], value(2.0))


@sample(40)
@given(spelled=spellings())
def test_an_array_given_by_a_name_the_program_reads_as_indices_is_said_to_be(spelled):
    """`L = a c_new c_new` is valid (c contracted with itself over n, e, w), so it is
    only the arrays given, `c_new` but no c, that show the other reading was meant."""
    base, name = spelled
    program = f"L = a {name} {name}"
    arrays = {"a": 0.5, name: 2.0}
    for route in (ic.evaluate, ic.evaluate_loops, lambda t, a: ic.compile(t)(a)):
        with pytest.raises(ic.MissingArrayError) as refused:
            route(program, arrays)
        assert hint(name) in str(refused.value)
    np.testing.assert_allclose(ic.evaluate(f"L = a {name}_{{}} {name}_{{}}", arrays), 2.0)


@pytest.mark.parametrize("program", [
    "y_i = w_ijk x_j",  # k free on the right: w_ijk is a tensor of three indices, as written
    "L = w_ij w_ij + x_k",  # the letters of w_ij are read twice
])
def test_a_refusal_that_no_reading_as_one_name_explains_says_nothing_of_it(program):
    with pytest.raises(ic.IndexCalcError) as refused:
        ic.parse(program)
    assert "reads as" not in str(refused.value)


@sample(30)
@given(spelled=spellings(), declared_as=st.sampled_from(["params", "data"]))
def test_a_model_that_declares_a_name_its_equations_read_as_indices_says_so(spelled, declared_as):
    """A model declares its names, so `c_new` declared while the equations read c with n,
    e, w is refused at once; the spelling the refusal gives builds a model that predicts."""
    _, name = spelled
    params, data = {"a": 0.5}, {"t": 0.0}
    (params if declared_as == "params" else data)[name] = 2.0
    declared = {"params": {key: () for key in params}, "data": list(data)}
    with pytest.raises(ic.IndexCalcError) as refused:
        ic.Model(f"y = a {name} {name}\nL = (y - t)^2", batch=None, **declared)
    assert hint(name) in str(refused.value)
    model = ic.Model(f"y = a {name}_{{}} {name}_{{}}\nL = (y - t)^2", batch=None, **declared)
    np.testing.assert_allclose(model.predict(params, data, "y")["y"], 2.0)


def test_a_model_asked_to_predict_without_an_array_it_reads_names_one_given_as_one_name():
    model = ic.Model("y = a c_new c_new\nL = (y - t)^2", params={"a": ()}, data=["c", "t"], batch=None)
    with pytest.raises(ic.IndexCalcError) as refused:
        model.predict({"a": 1.0}, {"c_new": 1.0}, "y")
    assert hint("c_new") in str(refused.value)


def test_an_index_with_digits_is_not_called_a_letter():
    """`c_new2` is c with n, e and w2 (a letter with its digit, one index)."""
    with pytest.raises(ic.IndexCalcError) as refused:
        ic.parse("c_new2 = c - 0.1")
    assert "c_new2 reads as c with the indices n, e, w2: a scalar named c_new2 is written c_new2_{}" in str(refused.value)


OWN_NAME_LINES = [  # (a line that reads its own name, its value with a=0.5 and base=3 where one name was meant)
    ("{name} = {base} - 0.1", lambda: 3 - 0.1),
    ("{name} = a {base}^2", lambda: 0.5 * 9),
    ("{base}_i = {base}_i - a g_i", None),  # the update of a vector: the new value needs a name
    ("{base}_ij = {base}_ij {base}_ij", None),
]


@sample(60)
@given(spelled=spellings(), line=st.sampled_from(OWN_NAME_LINES))
def test_the_line_an_own_name_refusal_suggests_is_accepted(spelled, line):
    """A line that reads its own name is refused with a line to write instead: as one name
    (`c_new_{} = c - 0.1`) where the left-hand side was spelled as one, else with a new
    name (`w_new_i = w_i - 0.1 g_i`). That line is accepted, never refused in its turn."""
    base, name = spelled
    text, value = line
    with pytest.raises(ic.IndexCalcError) as refused:
        ic.parse(text.format(name=name, base=base))
    suggested = str(refused.value).split(", as in ", 1)[1].splitlines()[0]
    ic.parse(suggested)
    assert (value is not None) == suggested.startswith(f"{name}_{{}} = ")
    if value is not None:
        assert str(refused.value).count(hint(name)) == 1
        np.testing.assert_allclose(ic.evaluate(suggested, {"a": 0.5, base: 3.0}), value())
