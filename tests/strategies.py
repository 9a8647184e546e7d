"""Hypothesis strategies for text in the notation, shared by the test files.

The strategies generate TEXT, not trees: well-formed input as a user could type it, in
ASCII and Unicode spellings, with every construct of the notation (tensors with index
letters and digits, braces, scalars, numbers with decimals and exponents, sums,
differences, products by juxtaposition, `*` and `/`, powers with `^` and `**` and negative
exponents, unary minus, parentheses, function calls and their aliases, primed derivatives,
subscripted functions, reductions, Kronecker deltas and comma derivatives).

The text is only *syntactically* well formed: index letters are drawn at random, so an
expression may break the summation rules (`a_i + b_j`). `parse` does not check those rules
(evaluation does), so these strategies suit properties of the parser and the printers.

    from strategies import expressions, equations, programs
    @given(expressions())
    def test_something(text): ...

Every generator of a sub-expression yields a pair `(text, level)`, the level saying how
tightly the text binds, so that the composites can add exactly the parentheses the grammar
needs (and, now and then, some it does not need).
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st

import indexcalc as ic

# binding levels of generated text, loosest first
SUM, NEGATED, PRODUCT, POWER, ATOM = range(5)

INDEX_LETTERS = ("i", "j", "k", "l", "m", "n", "g", "h", "p", "μ", "ν")
# names of tensors and scalars (none of them a function, a reduction or a delta)
TENSOR_NAMES = ("w", "x", "y", "b", "u", "z", "W1", "W2", "b2", "yhat", "ŷ", "w_new", "h_out", "α", "f", "X")
SCALAR_NAMES = ("eta", "loss", "a", "c", "lr", "C", "L2", "xhat", "β")
WRT_NAMES = ("w", "W1", "b", "x", "eta")
FUNCTION_SPELLINGS = (
    "sigma", "sigmoid", "σ", "tanh", "relu", "exp", "log", "sqrt", "sin", "cos", "softplus", "abs",
)
PRIMED_SPELLINGS = ("sigma'", "sigmoid'", "σ'", "tanh'", "relu'", "abs'")
REDUCTION_SPELLINGS = ("sum", "Σ", "mean")
DELTA_SPELLINGS = ("delta", "δ")
NUMBER_SAMPLES = ("0", "1", "2", "10", "0.5", ".5", "3.", "1e-3", "2.5E+2", "1e10", "6.02e23", "0.125")

index = st.builds(
    lambda letter, digits: letter + digits,
    st.sampled_from(INDEX_LETTERS),
    st.sampled_from(("",) * 8 + ("1", "4", "12")),
)


def index_lists(min_size: int = 1, max_size: int = 3, unique: bool = False):
    return st.lists(index, min_size=min_size, max_size=max_size, unique=unique)


def _subscript(indices: list[str], style: int) -> str:
    """`_ij`, `_{ij}` or `_{i j}`."""
    if style == 0:
        return "_" + "".join(indices)
    if style == 1:
        return "_{" + "".join(indices) + "}"
    return "_{" + " ".join(indices) + "}"


@st.composite
def numbers(draw) -> str:
    """A non-negative number as written: `2`, `0.5`, `.5`, `1e-3`, `2.5E+2`, ..."""
    return draw(
        st.one_of(
            st.sampled_from(NUMBER_SAMPLES),
            st.integers(0, 10_000).map(str),
            st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False).map(repr),
        )
    )


@st.composite
def tensors(draw, unique: bool = False) -> str:
    """`w_ij`, `W1_{i j}`, `w_new_gh`, `x_μ`, `x_i4`, or a scalar `eta`."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from(SCALAR_NAMES))
    name = draw(st.sampled_from(TENSOR_NAMES))
    indices = draw(index_lists(unique=unique))
    return name + _subscript(indices, draw(st.integers(0, 2)))


@st.composite
def comma_derivatives(draw, unique: bool = False) -> str:
    """`f_{,i}`, `loss_{,(gh)}`, `loss_{,(gh)}[w]`, `yhat_{i,(mn)}`, `f_{k,ij}`,
    `loss_{,(gh)(kl)}[w]`, `f_{,i(jk)}[w,b]`."""
    name = draw(st.sampled_from(TENSOR_NAMES + SCALAR_NAMES))
    pool = draw(index_lists(1, 6, unique=unique))
    k = draw(st.integers(0, len(pool) - 1))
    own, rest = pool[:k], pool[k:]
    groups: list[list[str]] = []
    while rest:
        size = draw(st.integers(1, len(rest)))
        groups.append(rest[:size])
        rest = rest[size:]
    spaced = draw(st.booleans())
    parts = [g[0] if len(g) == 1 and draw(st.booleans()) else "(" + "".join(g) + ")" for g in groups]
    own_text = (" " if spaced else "").join(own)
    text = f"{name}_{{{own_text},{''.join(parts)}}}"
    wrt = draw(st.integers(0, 2))
    if wrt == 1:
        text += "[" + draw(st.sampled_from(WRT_NAMES)) + "]"
    elif wrt == 2:
        text += "[" + ",".join(draw(st.sampled_from(WRT_NAMES)) for _ in groups) + "]"
    return text


@st.composite
def deltas(draw) -> str:
    """`delta_ij`, `δ_{i j}`, `δ_(ij)(kl)`."""
    name = draw(st.sampled_from(DELTA_SPELLINGS))
    if draw(st.booleans()):
        return name + _subscript(draw(index_lists(2, 2)), draw(st.integers(0, 2)))
    n = draw(st.integers(1, 3))
    left, right = draw(index_lists(n, n)), draw(index_lists(n, n))
    return f"{name}_({''.join(left)})({''.join(right)})"


def leaves():
    return st.one_of(
        tensors(), tensors(), numbers(), comma_derivatives(), deltas()
    ).map(lambda text: (text, ATOM))


def _at_least(item: tuple[str, int], level: int) -> str:
    text, own = item
    return text if own >= level else f"({text})"


def _op(draw, op: str) -> str:
    """An operator with or without spaces around it."""
    return draw(st.sampled_from((f" {op} ", op, f" {op}")))


def _extend(children):
    @st.composite
    def sums(draw):
        items = draw(st.lists(children, min_size=2, max_size=4))
        first, *rest = items
        lead = draw(st.sampled_from(("", "", "-", "+")))
        text = lead + _at_least(first, NEGATED if not lead else PRODUCT)
        for item in rest:
            op = draw(st.sampled_from(("+", "-", "- -")))
            text += _op(draw, op) + _at_least(item, PRODUCT if op == "+" else NEGATED)
        return text, SUM

    @st.composite
    def negated(draw):
        signs = draw(st.sampled_from(("-", "-", "- -", "--")))
        return signs + _at_least(draw(children), PRODUCT), NEGATED

    @st.composite
    def products(draw):
        items = draw(st.lists(children, min_size=2, max_size=4))
        text = _at_least(items[0], POWER)
        for item in items[1:]:
            how = draw(st.sampled_from((" ", " ", "*", "/")))
            if how == " ":
                text += " " + _at_least(item, POWER)
            else:
                sign = draw(st.sampled_from(("", "", "", "-", "- -")))
                text += _op(draw, how) + sign + _at_least(item, POWER)
        return text, PRODUCT

    @st.composite
    def powers(draw):
        base = _at_least(draw(children), ATOM)
        op = draw(st.sampled_from(("^", "^", "**")))
        sign = draw(st.sampled_from(("", "", "-", "--")))
        exponent = draw(numbers()) if draw(st.booleans()) else _at_least(draw(children), POWER)
        return base + _op(draw, op).replace(" ", "", draw(st.integers(0, 2))) + sign + exponent, POWER

    @st.composite
    def calls(draw):
        kind = draw(st.integers(0, 5))
        arg = draw(children)[0]
        if kind == 0:
            return draw(st.sampled_from(FUNCTION_SPELLINGS)) + f"({arg})", ATOM
        if kind == 1:
            return draw(st.sampled_from(PRIMED_SPELLINGS)) + f"({arg})", ATOM
        if kind == 2:  # subscripted: σ_i(...), also primed, written σ'_i(...) or σ_i'(...)
            func = draw(st.sampled_from(FUNCTION_SPELLINGS + PRIMED_SPELLINGS))
            sub = _subscript([draw(index)], draw(st.integers(0, 1)))
            if func.endswith("'") and draw(st.booleans()):
                return f"{func[:-1]}{sub}'({arg})", ATOM
            return f"{func}{sub}({arg})", ATOM
        if kind == 3:
            zero = draw(st.sampled_from(("0", "0.", "0.0")))
            inner = (zero, arg) if draw(st.booleans()) else (arg, zero)
            return "max(" + _op(draw, ",").lstrip().join(inner) + ")", ATOM
        if kind == 4:  # reduction
            op = draw(st.sampled_from(REDUCTION_SPELLINGS))
            indices = draw(index_lists(1, 2, unique=True))
            return op + _subscript(indices, draw(st.integers(0, 2))) + f"({arg})", ATOM
        return f"({arg})", ATOM  # parentheses, needed or not

    return st.one_of(sums(), negated(), products(), powers(), calls())


@functools.lru_cache(maxsize=None)
def expressions(max_leaves: int = 12):
    """Text of a random well-formed expression (not necessarily obeying the index rules)."""
    return st.recursive(leaves(), _extend, max_leaves=max_leaves).map(lambda item: item[0])


@st.composite
def equations(draw, max_leaves: int = 10) -> str:
    """`lhs = rhs`: the left-hand side a tensor (or comma derivative) with distinct indices."""
    lhs = draw(st.one_of(tensors(unique=True), comma_derivatives(unique=True)))
    return f"{lhs}{_op(draw, '=')}{draw(expressions(max_leaves))}"


@st.composite
def programs(draw) -> str:
    """Several equations, one per line, with `#` comments and blank lines."""
    lines = draw(st.lists(equations(max_leaves=6), min_size=2, max_size=4))
    lines = list({ic.parse(line).lhs.key: line for line in lines}.values())  # a name is defined once
    if len(lines) < 2:
        lines.append("unused_defined_once = 1")
    out = []
    for line in lines:
        if draw(st.booleans()):
            out.append("# " + draw(st.sampled_from(("a layer", "the loss", "σ(w x) = ŷ", ""))))
        comment = draw(st.sampled_from(("", "", "  # note", "# x_i = 2")))
        out.append(line + comment)
        if draw(st.booleans()):
            out.append("")
    return "\n".join(out)
