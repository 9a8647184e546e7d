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

The second part, `ProgramGenerator`, draws programs that are well formed in the stronger
sense: they obey the summation rules, every letter has one size, and the generator knows
the shapes of the input tensors it invented, so the programs can be evaluated and
differentiated. `ProgramSettings` holds what the test files need differently (which
functions are safe, how big the programs are, how often each construct appears); the two
presets are `SAFE_PROGRAMS` (the evaluators) and `SMOOTH_PROGRAMS` (derivatives checked by
finite differences).

    gen = ProgramGenerator(draw(st.data()), SAFE_PROGRAMS)
    text = gen.program()
    arrays = gen.arrays(draw(st.integers(0, 2**32 - 1)))

The third part, `RouteGenerator` with `ROUTE_PROGRAMS`, composes programs from the
constructs of issue 8 (softmax, attention, layer norm, RBF, δ-only Jacobians and Hessians,
negative literals, scalar inputs, derivative lines, names like `v9`) for the cross-route
property; `route_cases()` draws one `RouteCase` (tests/routes.py compares its routes).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import os
import re

import numpy as np
from hypothesis import HealthCheck, reject, settings, strategies as st

import indexcalc as ic

# binding levels of generated text, loosest first
SUM, NEGATED, PRODUCT, POWER, ATOM = range(5)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "suite")
SOAK = PROFILE == "soak"
settings.register_profile(
    "soak", max_examples=100_000, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
# the share of each property's examples the suite draws, for a suite under two minutes on two
# cores (a third: 124 s in a clean clone's CI run on 2026-12-07), and the soak
# (scripts/soak.py, 100,000 programs) is where the depth is
SHARE = {"suite": 1 / 4, "deep": 1}


def sample(examples: int, **options) -> settings:
    """A property's settings. `examples` is its full sample, which `HYPOTHESIS_PROFILE=deep`
    draws; the suite draws a quarter of it (at least 5), and the soak profile 100,000, where
    each family runs at scale (`options`, such as derandomize, are the suite's and deep's)."""
    if SOAK:
        return settings.get_profile("soak")
    drawn = min(examples, max(5, round(examples * SHARE.get(PROFILE, 1))))
    return settings(**{"deadline": None, "suppress_health_check": list(HealthCheck), **options, "max_examples": drawn})


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
    """`w_ij`, `W1_{i j}`, `w_new_gh`, `x_μ`, `x_i4`, or a scalar `eta` (`w_new_{}`: a
    scalar whose name holds '_', its empty subscript written, else it is w with n, e, w)."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.sampled_from(SCALAR_NAMES + ("w_new_{}", "h_out_{}")))
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
    lines = list({ic.parse(line, check=False).lhs.key: line for line in lines}.values())  # a name is defined once
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


# --------------------------------------------------------------------------------------
# Random programs that obey the summation rules, with the shapes of their inputs

CONSTANTS = ("2", "0.5", "1.5", "3", "0.25")


@dataclasses.dataclass(frozen=True)
class ProgramSettings:
    """What `ProgramGenerator` draws: its letters and functions, how big, how often.

    Chances are in tenths. A function or power is a name called on its argument, or a
    template with `{}` where the argument goes.
    """

    letters: tuple[str, ...]  # the index letters
    max_size: int  # every letter has one size, 1 to this
    functions: tuple[str, ...]  # calls
    subscripted: tuple[str, ...]  # functions that may relabel a letter: σ_i(... m ...)
    powers: tuple[str, ...]
    max_depth: int  # the nesting of an expression, 1 to this
    max_free: int  # free letters of a program that is a bare expression, 0 to this
    max_lhs: int  # letters on the left of an equation, 0 to this
    reuse: int  # chance a leaf is an earlier equation's result rather than a new input
    trace: int  # chance a leaf also traces a letter of its own (T_ikk)
    delta: int  # chance a product has Kronecker deltas in it,
    max_deltas: int  # 1 to this many (two may be written as one δ_(ac)(bd))
    divide: int  # chance a product's last factor divides: a b / (1 + (c)^2)
    group: bool  # whether some factors of a product may be parenthesised: a (b c)
    fixed_scalar_terms: bool  # whether a sum whose letters are all fixed may have a scalar term
    chain: int  # chance an equation multiplies by an earlier result, reduced to a scalar,
    chain_functions: tuple[str, ...]  # and calls one of these on it ("" for parentheses; none: bare)
    constants: tuple[str, ...] = CONSTANTS  # numbers a leaf or a product may be
    mask: int = 0  # chance a product has a mask on its letters, `[i < j]`, `[k >= l + 1]`, `[i != 1]`
    reductions: tuple[str, ...] = ("sum", "Σ", "mean")  # what a reduction may be
    compare: int = 0  # chance a product has a comparison of values on its fixed letters, `[T_ij > T_j]`
    jacobian: int = 0  # chance a relabelling of a fixed letter is the notes' Jacobian, `σ_{i,m}(u) T_m`, or `σ'_i(u)`


SAFE_FUNCTIONS = ("sigma", "σ", "sigmoid", "tanh", "softplus", "sin", "cos", "relu", "abs")

# The evaluators compared: every value must stay finite (no log of a negative, no division
# by zero), kinks are fine.
SAFE_PROGRAMS = ProgramSettings(
    letters=("i", "j", "k", "l", "m", "n", "p", "q", "r", "s", "u", "v", "α", "μ", "k1", "j2"),
    max_size=4,
    functions=SAFE_FUNCTIONS + (
        "exp(tanh({}))", "exp(-({})^2)", "log(1 + ({})^2)", "sqrt(1 + ({})^2)", "exp(0.5 sin({}))",
    ),
    subscripted=SAFE_FUNCTIONS,
    powers=("({})^2", "({})^3", "(1 + ({})^2)^0.5", "(1 + ({})^2)^-1", "({})**2"),
    max_depth=4,
    max_free=2,
    max_lhs=3,
    reuse=8,
    trace=2,
    delta=7,
    max_deltas=2,
    divide=2,
    group=True,
    fixed_scalar_terms=False,
    chain=5,
    chain_functions=(),
)

SMOOTH_FUNCTIONS = ("sigma", "σ", "tanh", "softplus", "sin", "cos")

# Derivatives checked by central finite differences: smooth functions only (no relu, no
# abs), and smaller programs, since every entry of the wrt array costs two evaluations.
SMOOTH_PROGRAMS = ProgramSettings(
    letters=("i", "j", "k", "l", "m", "n", "p", "q", "r", "s", "u", "v", "μ", "k1"),
    max_size=3,
    functions=SMOOTH_FUNCTIONS + (
        "exp(tanh({}))", "log(1 + ({})^2)", "sqrt(1 + ({})^2)", "exp(0.5 sin({}))", "sigma'({})", "tanh'({})",
    ),
    subscripted=SMOOTH_FUNCTIONS,
    powers=("({})^2", "({})^3", "(1 + ({})^2)^0.5", "(1 + ({})^2)^-1", "(2 + sin({}))^1.5"),
    max_depth=3,
    max_free=1,
    max_lhs=2,
    reuse=4,
    trace=1,
    delta=3,
    max_deltas=1,
    divide=3,
    group=False,
    fixed_scalar_terms=True,
    chain=6,
    chain_functions=("tanh", "sigma", ""),
)


TENTHS = st.integers(0, 9)  # built once: Hypothesis validates a strategy at its first draw


@functools.lru_cache(maxsize=4096)
def _sampled_from(options: tuple):
    """`st.sampled_from(options)`, built once for each tuple of options the generators pick
    from (thousands of picks a program; building and validating each was a tenth of the draw)."""
    return st.sampled_from(options)


class ProgramGenerator:
    """Draws a random program (or bare expression) that obeys the summation rules.

    `expr(out, optional, fixed, depth)` returns text whose free indices at its top level are
    exactly `out` (a non-fixed letter of `out` occurs there once, a fixed one at least once),
    plus possibly letters of `optional` (fixed letters that may be broadcast over). Letters
    in `fixed` are never chosen for summation or relabelling. Every letter has one size in
    the whole program, drawn when it is first used, so relabellings and deltas pick partners
    of equal size. `inputs` maps the invented input tensors to their shapes, `results` the
    equations' names to theirs.
    """

    def __init__(self, data, settings: ProgramSettings):
        self.data = data
        self.settings = settings
        self.sizes: dict[str, int] = {}
        self.line_letters: set[str] = set()  # letters drawn since the current line began
        self.inputs: dict[str, tuple[int, ...]] = {}
        self.results: dict[str, tuple[int, ...]] = {}
        self.tags: collections.Counter = collections.Counter()  # the constructs drawn, by name
        self.count = 0

    def draw(self, strategy):
        return self.data.draw(strategy)

    def chance(self, tenths: int) -> bool:
        return self.draw(TENTHS) < tenths

    def pick(self, options):
        return self.draw(_sampled_from(tuple(options)))

    def fresh(self, avoid, size=None):
        """A letter not in `avoid` (of size `size`, if given), or None if there is none."""
        options = [
            l for l in self.settings.letters
            if l not in avoid and (size is None or self.sizes.get(l, size) == size)
        ]
        if not options:
            return None
        letter = self.pick(options)
        self.line_letters.add(letter)
        if letter not in self.sizes:
            self.sizes[letter] = size if size else self.draw(st.integers(1, self.settings.max_size))
        return letter

    def tensor(self, letters) -> str:
        shape = tuple(self.sizes[l] for l in letters)
        if self.results and self.chance(self.settings.reuse):
            for name, rshape in self.results.items():
                perm = self._arranged(letters, rshape)
                if perm is not None:
                    return name + ("_" + "".join(perm) if perm else "")
        name = f"T{self.count}"
        self.count += 1
        self.inputs[name] = shape
        return name + ("_" + "".join(letters) if letters else "")

    def _arranged(self, letters, shape) -> tuple[str, ...] | None:
        """The first ordering of `letters` (as itertools.permutations lists them) whose sizes
        are `shape`, or None. Taken position by position, each the earliest unused letter of
        the size wanted: once the sizes are the same multiset, any such choice can be
        completed, so this is that first ordering without listing the n! others (ten
        letters are 3.6 million orderings: single draws took 6 to 12 s, and one run of
        test_relabel 85 s)."""
        sizes = [self.sizes[l] for l in letters]
        if sorted(sizes) != sorted(shape):
            return None
        unused = list(range(len(letters)))
        arranged = []
        for size in shape:
            at = next(k for k in unused if sizes[k] == size)
            unused.remove(at)
            arranged.append(letters[at])
        return tuple(arranged)

    # ---- the grammar

    def expr(self, out, optional, fixed, depth) -> str:
        kinds = ["leaf"] if depth <= 0 else ["leaf", "product", "product", "sum", "call", "reduce", "power", "relabel"]
        kind = self.pick(kinds)
        if kind == "product":
            return self.product(out, optional, fixed, depth)
        return self.factor(out, optional, fixed, depth, kind=kind)

    def factor(self, out, optional, fixed, depth, busy=None, kind=None) -> str:
        """An operand of a product: anything but an unparenthesised product. `busy`: the
        letters its siblings use (no trace on them)."""
        busy = set(out | fixed) if busy is None else busy
        if kind is None:
            kinds = ["leaf"] if depth <= 0 else ["leaf", "leaf", "sum", "call", "reduce", "power", "relabel"]
            kind = self.pick(kinds)
        if kind == "sum":
            return "(" + self.sum(out, optional, fixed, depth) + ")"
        if kind == "call":
            return self.call(out, optional, fixed, depth)
        if kind == "reduce":
            return self.reduce(out, optional, fixed, depth)
        if kind == "power":
            return self.power(out, optional, fixed, depth)
        if kind == "relabel":
            text = self.relabel(out, optional, fixed, depth, busy)
            return text if text is not None else self.call(out, optional, fixed, depth)
        return self.leaf(out, optional, fixed, busy)

    def leaf(self, out, optional, fixed, busy) -> str:
        letters = sorted(out) + [l for l in sorted(optional - out) if self.chance(3)]
        if not letters and self.chance(3):
            return self.pick(self.settings.constants)
        if self.chance(self.settings.trace):
            # a letter new to the line: `busy` knows only this product's siblings, and an
            # enclosing product may sum a letter that a term beside this one carries free
            t = self.fresh(busy | out | fixed | self.line_letters)
            if t is not None:
                busy.add(t)
                letters += [t, t]  # a trace over t
        return self.tensor(self.draw(st.permutations(letters)))

    def product(self, out, optional, fixed, depth) -> str:
        settings = self.settings
        nf = self.draw(st.integers(2, 3))
        summed: set[str] = set()
        for _ in range(self.draw(st.integers(0, 2))):
            letter = self.fresh(out | fixed | summed)
            if letter is not None:
                summed.add(letter)
        assign = [set() for _ in range(nf)]
        for letter in sorted(out - fixed):
            assign[self.draw(st.integers(0, nf - 1))].add(letter)
        for letter in sorted(out & fixed):
            for k in self.draw(st.sets(st.integers(0, nf - 1), min_size=1)):
                assign[k].add(letter)
        # a pair of factors each: a letter in three is refused unless a sum_j(...) is written,
        # and that sum would fix the letter for the scopes inside (a relabelling's source)
        for letter in sorted(summed):
            count = 2
            for k in self.draw(st.permutations(range(nf)))[:count]:
                assign[k].add(letter)
        busy = set(out | fixed | summed)
        deltas = []
        n_deltas = self.draw(st.integers(1, settings.max_deltas)) if self.chance(settings.delta) else 0
        for _ in range(n_deltas):
            # δ_ab with b replacing a in one factor: b is summed against the δ
            candidates = [(k, a) for k in range(nf) for a in sorted(assign[k])]
            if not candidates:
                break
            k, a = self.pick(candidates)
            b = self.fresh(busy, size=self.sizes[a])
            if b is None:
                break
            busy.add(b)
            assign[k] = (assign[k] - {a}) | {b}
            deltas.append((a, b) if self.chance(5) else (b, a))
        texts = []
        divide = self.chance(settings.divide)
        for k in range(nf):
            if divide and k == nf - 1:
                continue
            texts.append(self.factor(frozenset(assign[k]), optional, fixed, depth - 1, busy))
        if len(deltas) == 2 and self.chance(5):
            (a, b), (c, d) = deltas
            texts.append(f"δ_({a}{c})({b}{d})")
        else:
            texts.extend(f"{self.pick(('δ', 'delta'))}_{a}{b}" for a, b in deltas)
        if self.chance(3):
            texts.append(self.pick(self.settings.constants))
        # its own letters only: a mask on a letter fixed outside would make a term that
        # carries no letter (one broadcast over its siblings') carry that one
        carried = sorted(set().union(*assign))
        if carried and self.chance(settings.mask):
            texts.append(self.mask(carried))
        # a comparison's letters count as a factor's: on fixed letters only, it sums none
        steady = sorted(set(carried) & fixed)
        if steady and self.chance(settings.compare):
            texts.append(self.comparison(steady))
        texts = list(self.draw(st.permutations(texts)))
        if settings.group and len(texts) >= 3 and self.chance(3):
            start = self.draw(st.integers(0, len(texts) - 2))
            stop = self.draw(st.integers(start + 2, len(texts)))
            texts[start:stop] = ["(" + " ".join(texts[start:stop]) + ")"]
        text = (" * " if self.chance(2) else " ").join(texts)
        if divide:
            below = self.expr(frozenset(assign[nf - 1]), optional, fixed, depth - 1)
            text += f" / (1 + ({below})^2)"
        return text

    def mask(self, letters) -> str:
        """A mask on letters the product carries (its factors'): it writes them without
        sizing them, so a derivative whose arrays cancel may leave a letter on the mask
        alone (`sum_ij([i < j] (x_i - x_j)^2)`'s Hessian lost j's size so)."""
        op = self.pick(("<", "<=", ">", ">=", "==", "!="))
        left = self.pick(letters)
        others = [l for l in letters if l != left]
        if not others or self.chance(2):
            self.tags["mask (one letter)"] += 1
            return f"[{left} {op} 1]"
        self.tags["mask (pair)"] += 1
        return f"[{left} {op} {self.pick(others)}{self.pick(('', ' + 1', ' - 1'))}]"

    def comparison(self, letters) -> str:
        """`[T_ij > T_j]`, `[T_i <= 0.5]`: values compared, on letters fixed around the
        product (a comparison is a scope whose free letters count in the product)."""
        left = self.draw(st.lists(_sampled_from(tuple(letters)), min_size=1, max_size=2, unique=True))
        right = self.pick(("0", "0.5", "-0.25", "tensor"))
        if right == "tensor":
            right = self.tensor([self.pick(left)])
        self.tags["compare (in a product)"] += 1
        return f"[{self.tensor(left)} {self.pick(('<', '<=', '>', '>='))} {right}]"

    def sum(self, out, optional, fixed, depth) -> str:
        terms = [self.expr(out, optional, fixed, depth - 1)]
        for _ in range(self.draw(st.integers(1, 2))):
            if (self.settings.fixed_scalar_terms or out - fixed) and self.chance(3):
                # a term with no free index at all is expanded over the others; it may
                # not sum a letter its siblings carry free (`a_ij b_ij - t_ij` is refused)
                terms.append(self.expr(frozenset(), frozenset(), fixed | out, depth - 1))
            else:
                terms.append(self.expr(out, optional, fixed, depth - 1))
        terms = self.draw(st.permutations(terms))
        signs = [" + "] + [self.pick((" + ", " - ")) for _ in terms[1:]]
        if self.chance(3):
            # a term and its negative: the terms that size a letter may cancel (soak seed
            # 10800: simplify dropped the carrier `0 y_u` they left, and with it u)
            k = self.draw(st.integers(0, len(terms) - 1))
            at = self.draw(st.integers(1, len(terms)))
            terms.insert(at, terms[k])
            signs.insert(at, " - " if signs[k] == " + " else " + ")
            self.tags["cancelling terms"] += 1
        text = terms[0]
        for sign, term in zip(signs[1:], terms[1:]):
            text += sign + term
        return text

    def call(self, out, optional, fixed, depth) -> str:
        func = self.pick(self.settings.functions)
        if func.startswith(("relu", "max(", "abs")):
            self.tags["relu, abs"] += 1
        arg = self.expr(out, optional, fixed, depth - 1)
        return func.format(arg) if "{" in func else f"{func}({arg})"

    def relabel(self, out, optional, fixed, depth, busy=frozenset()):
        """`σ_i(... m ...)`: m becomes i. Its source m is a letter of its own, or at times
        one that siblings in the product around it carry (`a_m (σ_i(W_m) b_i)`): the
        argument's m is the relabelling's, whether or not parentheses group it with them."""
        free = out - fixed
        targets = sorted(free) if free else sorted((out | optional) & fixed)
        if len(free) > 1 or not targets:
            return None
        target = self.pick(targets)
        shared = sorted(l for l in busy - out - fixed - {target} if self.sizes.get(l) == self.sizes[target])
        if shared and self.chance(3):
            self.tags["relabelling (a sibling's letter)"] += 1
            source = self.pick(shared)
        else:
            source = self.fresh(out | fixed | {target}, size=self.sizes[target])
        if source is None:
            return None
        arg = self.expr((out - {target}) | {source}, optional, fixed, depth - 1)
        func = self.pick(self.settings.subscripted)
        if target in fixed and self.chance(self.settings.jacobian):
            return self.jacobian(func, target, arg, out | fixed | {source})
        return f"{func}_{target}({arg})"

    def jacobian(self, func, target, arg, avoid) -> str:
        """The notes' Jacobian of an elementwise function, `σ_{i,m}(u)` = σ'(u_i) δ_im, with
        m summed against a factor of its own, or the derivative relabelled alone, `σ'_i(u)`.
        i must be fixed around it: were it carried by nothing else, the δ would sum it (the
        parser refuses that reading)."""
        if func in ("sigma", "σ", "tanh") and self.chance(3):
            self.tags["jacobian (prime)"] += 1
            return f"{func}'_{target}({arg})"
        m = self.fresh(avoid | self.line_letters, size=self.sizes[target])  # summed beside the product's letters
        if m is None:
            return f"{func}_{target}({arg})"
        self.tags["jacobian (comma)"] += 1
        return f"({func}_{{{target},{m}}}({arg}) {self.tensor([m])})"

    def reduce(self, out, optional, fixed, depth) -> str:
        letters = []
        for _ in range(1 if self.chance(7) else 2):
            letter = self.fresh(out | fixed | set(letters))
            if letter is not None:
                letters.append(letter)
        if not letters:
            return self.call(out, optional, fixed, depth)
        new = frozenset(letters)
        body = self.expr(out | new, optional | new, fixed | new, depth - 1)
        op = self.pick(self.settings.reductions)
        if op in ("logsumexp", "max", "min"):
            self.tags[f"{op} (in an expression)"] += 1
        return f"{op}_{''.join(letters)}({body})"

    def power(self, out, optional, fixed, depth) -> str:
        if self.chance(3):
            return self.leaf(out, optional, fixed, set(out | fixed)) + "^2"
        return self.pick(self.settings.powers).format(self.expr(out, optional, fixed, depth - 1))

    # ---- programs

    def program(self, max_depth: int | None = None) -> str:
        """A program the index rules accept: the grammar does not always see an index
        three times in one product or a hidden sum beside a sibling that carries it free
        (tests/test_ambiguity.py tests those refusals), so such a draw is rejected."""
        text = self._program(max_depth)
        try:
            ic.parse(text)
        except ic.IndexCalcError:
            reject()
        return text

    def _program(self, max_depth: int | None) -> str:
        settings = self.settings
        max_depth = settings.max_depth if max_depth is None else max_depth
        if self.chance(2):
            count = self.draw(st.integers(0, settings.max_free))
            out = frozenset(filter(None, (self.fresh(set()) for _ in range(count))))
            return self.expr(out, frozenset(), frozenset(), self.draw(st.integers(1, max_depth)))
        lines = []
        for number in range(self.draw(st.integers(1, 3))):
            self.line_letters = set()
            lhs: list[str] = []
            for _ in range(self.draw(st.integers(0, settings.max_lhs))):
                letter = self.fresh(set(lhs))
                if letter is not None:
                    lhs.append(letter)
            fixed = frozenset(lhs)
            rhs = self.expr(fixed, fixed, fixed, self.draw(st.integers(1, max_depth)))
            if self.results and self.chance(settings.chain):
                # use an earlier result, reduced to a scalar factor
                earlier = self.pick(sorted(self.results))
                letters: list[str] = []
                for size in self.results[earlier]:
                    letter = self.fresh(fixed | set(letters), size=size)
                    if letter is None:
                        break
                    letters.append(letter)
                if len(letters) == len(self.results[earlier]):
                    op = self.pick(("sum", "mean"))
                    use = f"{op}_{''.join(letters)}({earlier}_{''.join(letters)})" if letters else earlier
                    if settings.chain_functions:
                        use = f"{self.pick(settings.chain_functions)}({use})"
                    rhs = f"({rhs}) * {use}"
            name = f"y{number}"
            lines.append(f"{name}{'_' + ''.join(lhs) if lhs else ''} = {rhs}")
            self.results[name] = tuple(self.sizes[l] for l in lhs)
        return "\n".join(lines)

    def arrays(self, seed: int) -> dict:
        """Values for the inputs, uniform in [-1, 1]; an odd seed gives scalars as floats."""
        rng = np.random.default_rng(seed)
        out = {}
        for name, shape in self.inputs.items():
            out[name] = float(rng.uniform(-1, 1)) if not shape and seed % 2 else rng.uniform(-1, 1, shape)
        return out


# --------------------------------------------------------------------------------------
# Programs for the cross-route property (issue 8: one route, one answer)

ROUTE_FUNCTIONS = ("sigma", "σ", "tanh", "softplus", "sin", "cos")
# The kinked functions (and relu', a step), their kinks moved off 0: a program's integer
# scalars (-2, -1, 1, 2), its constants and structural zeros can make an argument exactly 0,
# where finite differences see half a slope and every route rightly the subgradient 0.
# 0.137 needs 5³ in a denominator, three quotients by 1 + (±2)² and a numerator of 17.125
# (1/5 and 0.5 make 0.1).
KINKED_FUNCTIONS = ("relu({} - 0.137)", "max(0, {} + 0.137)", "abs({} - 0.137)", "relu'({} + 0.137)")

# Every route is compared with central finite differences, so smooth functions and kinked
# ones whose kinks no exact value of the program meets, values kept away from the edges of
# their domains (log and sqrt of 1 + u², never of u), and small sizes. Negative numbers are
# factors of their own: `x_i (-2)`, `(2^-1)`.
ROUTE_PROGRAMS = ProgramSettings(
    letters=("i", "j", "k", "l", "m", "n", "p", "q", "r", "s", "t", "u", "v", "μ", "k1"),
    max_size=3,
    functions=ROUTE_FUNCTIONS + ("exp(tanh({}))", "log(1 + ({})^2)", "sqrt(1 + ({})^2)", "sigma'({})", "tanh'({})") + KINKED_FUNCTIONS,
    subscripted=ROUTE_FUNCTIONS,
    powers=("({})^2", "({})^3", "(1 + ({})^2)^-1", "(2 + sin({}))^1.5", "(1 + ({})^2)^-0.5"),
    max_depth=3,
    max_free=1,
    max_lhs=2,
    reuse=5,
    trace=1,
    delta=3,
    max_deltas=2,
    divide=2,
    group=True,
    fixed_scalar_terms=True,
    chain=0,
    chain_functions=(),
    constants=CONSTANTS + ("(-2)", "(-0.5)", "(-1.5)", "(2^-1)", "((-3)^2)"),
    mask=5,
    reductions=("sum", "Σ", "mean", "logsumexp", "max", "min"),
    compare=3,
    jacobian=3,
)

FAR_SHIFT = " + 400"  # a softmax's logits moved where exp(z)^2 overflows (RouteGenerator.far_logits)

# Input names: T0, T1, ... or names that look like the variables of generated code (v9, v10)
INPUT_NAMINGS = (("T", 0), ("v", 9), ("v", 1), ("W", 1))
WRT_LETTERS = ("a", "b", "c", "d", "e", "f")  # never used by ROUTE_PROGRAMS' letters: fresh for diff
HESSIAN_LETTERS = ("α", "β", "γ", "ζ", "η", "θ")  # nor by the letters diff chooses for itself


@dataclasses.dataclass(frozen=True)
class RouteCase:
    """One draw of the cross-route property: a program, what to differentiate by, and how to
    make its arrays again (`specs`: name → (shape, kind); `seed`), so that a failure can be
    replayed from its printout alone."""

    text: str
    wrt: str | None  # "T0_ab", or a bare name; None when the program depends on no input
    wrt2: str | None  # the second derivative's, for the Hessian routes
    specs: dict
    seed: int
    scalar: bool  # whether the target (the last line) is a scalar: compile(wrt=...) needs one
    tags: tuple[str, ...] = ()

    def arrays(self) -> dict:
        return make_arrays(self.specs, self.seed)

    def __str__(self) -> str:
        return (f"program:\n{self.text}\nwrt: {self.wrt}  wrt2: {self.wrt2}  scalar target: {self.scalar}\n"
                f"arrays: make_arrays({self.specs!r}, seed={self.seed})\ntags: {', '.join(self.tags)}")


def make_arrays(specs: dict, seed: int) -> dict:
    """Values by kind. Tensors are uniform in [-1, 1]. A scalar is a Python float, a Python
    int or a 0-d array (users pass all three); an exponent is an integer (so that `(-2)^a`
    is real), a step size is positive."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (shape, kind) in specs.items():
        if kind == "tensor" and shape:
            out[name] = rng.uniform(-1, 1, shape)
        elif kind == "exponent":
            value = int(rng.integers(2, 4))
            out[name] = value if rng.random() < 0.5 else float(value)
        elif kind == "positive":
            out[name] = float(rng.uniform(0.1, 0.5)) if rng.random() < 0.8 else 1
        else:
            style = rng.integers(0, 3)
            value = float(rng.uniform(-1, 1))
            out[name] = value if style == 0 else int(rng.choice([-2, -1, 1, 2])) if style == 1 else np.array(value)
    return out


class RouteGenerator(ProgramGenerator):
    """Programs rich enough to reach every class of issue 8, valid under the notation.

    A program is a few blocks, each a textbook construct whose operands are new inputs or
    earlier results (so the constructs compose and intermediates get inlined): a softmax,
    an attention head, a layer norm, an RBF layer, a δ-only Jacobian or quadratic form,
    literal-heavy lines, a derivative line (the update rule, a gradient, a Jacobian) used
    by a later line, or a random equation of `ProgramGenerator`'s grammar. That grammar is
    extended with reductions nested in products whose outer letters are free inside them
    (`exp(z_nk) / sum_c(exp(z_nc))`, `x_nk - mean_c(x_nc)`, `exp(-0.5 sum_c((a_kc - b_c)^2))`).
    Finally the last result is usually reduced to a scalar, so `compile(wrt=...)` applies.

    What the notation refuses is never drawn: no letter summed over three factors without
    an explicit reduction, no scalar term summing a letter its siblings carry free, no
    letter in both terms of a sum unless fixed. `tags` counts the constructs drawn.
    """

    def __init__(self, data, settings: ProgramSettings = ROUTE_PROGRAMS):
        super().__init__(data, settings)
        self.prefix, self.count = self.pick(INPUT_NAMINGS)
        self.kinds: dict[str, str] = {}
        self.depends: dict[str, set[str]] = {}  # result -> the inputs it depends on
        self.rhs: dict[str, tuple[list[str], str]] = {}  # result -> (its letters, its right-hand side)
        self.lines: list[str] = []
        self.used: set[str] = set()  # names the line being drawn reads
        # results that may be of size 100 ((-2)^a (x * -2), and what reads them): no softmax
        # or attention reads them, whose exponentials overflow past 709 as written (README)
        self.large: set[str] = set()
        self.prefer: list[str] = []  # inputs the last construct is about (the δ classes' X)
        self.scalar = True

    # ---- operands

    def new_input(self, letters, kind="tensor") -> str:
        name = f"{self.prefix}{self.count}"
        self.count += 1
        self.inputs[name] = tuple(self.sizes[l] for l in letters)
        self.kinds[name] = kind if letters or kind != "tensor" else "scalar"
        self.used.add(name)
        return name

    def operand(self, letters, reuse=None, moderate=False) -> tuple[str, tuple[str, ...]]:
        """(name, its letters in order) of a tensor over `letters`: often an earlier result
        of that shape, so that constructs compose, else a new input; `moderate`: no result
        that may be large (the soak's seed 14900: attention scores of 8,572 from `(-2)^a`
        terms overflowed exp on every route alike)."""
        reuse = self.settings.reuse if reuse is None else reuse
        if self.results and self.chance(reuse):
            options = [
                (name, perm) for name, shape in self.results.items()
                for perm in dict.fromkeys(itertools.permutations(letters))
                if tuple(self.sizes[l] for l in perm) == shape and not (moderate and name in self.large)
            ]
            if options:
                name, perm = self.pick(options)
                self.used.add(name)
                return name, perm
        return self.new_input(letters), tuple(letters)

    @staticmethod
    def ref(name, letters, swap=None) -> str:
        letters = [swap.get(l, l) for l in letters] if swap else list(letters)
        return name + ("_" + "".join(letters) if letters else "")

    def tensor(self, letters) -> str:
        return self.ref(*self.operand(letters))

    def letters(self, count, avoid=(), sizes=None) -> list[str] | None:
        out: list[str] = []
        for k in range(count):
            letter = self.fresh(set(avoid) | set(out), None if sizes is None else sizes[k])
            if letter is None:
                return None
            out.append(letter)
        return out

    def name(self, base: str) -> str:
        taken = set(self.results) | set(self.inputs) | set(self.rhs)  # (a line hidden from reuse too)
        return next(n for n in itertools.chain([base], (f"{base}{k}" for k in itertools.count(2))) if n not in taken)

    def define(self, base: str, letters, rhs: str) -> str:
        """Append the equation `base_letters = rhs`; returns the name it got."""
        name = self.name(base)
        if self.used & self.large:
            self.large.add(name)
        deps: set[str] = set()
        for used in self.used:
            deps |= self.depends.get(used, {used})
        self.used = set()
        self.line_letters = set()
        self.lines.append(f"{self.ref(name, letters)} = {rhs}")
        self.results[name] = tuple(self.sizes[l] for l in letters)
        self.depends[name] = deps
        self.rhs[name] = (list(letters), rhs)
        return name

    # ---- the grammar, with nested reductions

    def expr(self, out, optional, fixed, depth) -> str:
        if depth > 0 and self.chance(2):
            text = self.nested(out, fixed)
            if text is not None:
                return text
        return super().expr(out, optional, fixed, depth)

    def factor(self, out, optional, fixed, depth, busy=None, kind=None) -> str:
        if kind is None and depth > 0 and self.chance(2):
            text = self.nested(out, fixed)
            if text is not None:
                return text
        return super().factor(out, optional, fixed, depth, busy, kind)

    def body(self, letters, k, d_avoid) -> tuple[str, str] | None:
        """The same expression twice, over `letters` and with k renamed (to "@"): a tensor,
        or attention scores `q_sd k_ud` summing a letter of their own."""
        if len(letters) < 2 or self.chance(6):
            name, order = self.operand(sorted(letters))
            return self.ref(name, order), self.ref(name, order, {k: "@"})
        d = self.fresh(d_avoid | self.line_letters)  # summed beside the siblings: new to the line, as a trace's
        if d is None:
            return None
        q = self.tensor(sorted(letters - {k}) + [d])
        kname, korder = self.operand([k, d])
        return f"{q} {self.ref(kname, korder)}", f"{q} {self.ref(kname, korder, {k: '@'})}"

    def nested(self, out, fixed) -> str | None:
        """A reduction over c nested where the letters of `out` are free inside it: only
        with those letters fixed (a letter summed outside may occur once per product)."""
        pattern = self.pick(("softmax", "softmax-lse", "log-softmax", "centre", "scale", "rbf"))
        if pattern != "centre" and out - fixed:
            return None
        ks = sorted(out & fixed)
        if pattern == "rbf":
            c = self.fresh(out | fixed)
            if c is None:
                return None
            self.tags["nested rbf"] += 1
            return f"exp(-0.5 sum_{c}(({self.tensor(sorted(out) + [c])} - {self.tensor([c])})^2))"
        if not ks:
            return None
        k = self.pick(ks)
        c = self.fresh(out | fixed, size=self.sizes[k])
        pair = self.body(out, k, out | fixed | {c}) if c is not None else None
        if pair is None:
            return None
        top, below = pair[0], pair[1].replace("@", c)
        self.tags[f"nested {pattern}"] += 1
        if pattern == "softmax":
            return f"(exp({top}) / sum_{c}(exp({below})))"
        if pattern == "softmax-lse":
            return f"exp({top} - logsumexp_{c}({below}))"
        if pattern == "log-softmax":
            return f"({top} - logsumexp_{c}({below}))"
        if pattern == "centre":
            return f"({top} - mean_{c}({below}))"
        return f"({top} / sqrt(0.5 + mean_{c}(({below})^2)))"

    # ---- blocks: the constructs of issue 8, one or more lines each

    def block_random(self):
        lhs = self.letters(self.draw(st.integers(0, self.settings.max_lhs))) or []
        fixed = frozenset(lhs)
        rhs = self.expr(fixed, fixed, fixed, self.draw(st.integers(1, self.settings.max_depth)))
        if not self.used:  # numbers alone: nothing to differentiate, nothing to compose with
            rhs = f"({rhs}) {self.tensor(lhs)}"
        self.define("y", lhs, rhs)

    def block_softmax(self):
        """`p_nk = exp(z_nk) / sum_c(exp(z_nc))`, by logsumexp, or with a named denominator."""
        letters = self.letters(self.draw(st.integers(1, 2)))
        k = letters[-1]
        c = self.fresh(set(letters), size=self.sizes[k])
        if c is None:  # every letter of k's size taken
            return self.block_random()
        z, order = self.operand(letters, reuse=7, moderate=True)
        top, below = self.ref(z, order), self.ref(z, order, {k: c})
        style = self.pick(("sum", "logsumexp", "line"))
        self.tags[f"softmax ({style})"] += 1
        far = self.far_logits() if style != "logsumexp" else ""  # the same softmax, where exp(z)^2 overflows
        top, below = top + far, below + far
        if style == "sum":
            self.define("p", letters, f"exp({top}) / sum_{c}(exp({below}))")
        elif style == "logsumexp":
            self.define("p", letters, f"exp({top} - logsumexp_{c}({below}))")
        else:
            rest = letters[:-1]
            self.used.add(z)
            s = self.define("s", rest, f"sum_{c}(exp({below}))")
            if far:  # e^400: no other construct is to read it
                del self.results[s]
            self.used.add(z)
            self.define("p", letters, f"exp({top}) / {self.ref(s, rest)}")

    def far_logits(self) -> str:
        """Now and then FAR_SHIFT: a softmax's logits moved where exp(z)^2 overflows and
        the quotient's textbook derivatives are 0 · inf; the softmax is the same."""
        if not self.chance(2):
            return ""
        self.tags["softmax far (+400)"] += 1
        return FAR_SHIFT

    def block_attention(self, mask: str | None = None):
        """One self-attention head: scores `q_se k_ue`, a softmax over u, the values
        `A_su x_ud`; as named lines, or with the scores written inside the softmax. With
        `mask` (a comparison), the softmax by named lines over `[u mask s]` only."""
        s, d, e = self.letters(3)
        pair = self.letters(2, {s, d, e}, sizes=[self.sizes[s]] * 2)
        m = self.fresh({s, d, e, *pair}, size=self.sizes[d]) if pair else None
        if m is None:  # every letter of s's or d's size taken
            return self.block_random()
        u, v = pair
        x, order = self.operand([s, d], reuse=6, moderate=True)
        wq, wk = self.new_input([d, e]), self.new_input([d, e])
        self.prefer = [self.pick((wq, wk))]
        style = "masked" if mask else self.pick(("lines", "one line", "logsumexp"))
        self.tags[f"causal mask [{mask}]" if mask else f"attention ({style})"] += 1
        X = functools.partial(self.ref, x, order)
        self.used.add(x)
        if style == "one line":
            score = f"{X()} {wq}_{d}{e} {{}} {wk}_{m}{e}"
            a = self.define("A", [s, u], f"exp({score.format(X({s: u, d: m}))}) / "
                                          f"sum_{v}(exp({score.format(X({s: v, d: m}))}))")
        else:
            self.used.discard(wk)
            q = self.define("q", [s, e], f"{X()} {wq}_{d}{e}")
            self.used |= {x, wk}
            key = self.define("k", [u, e], f"{X({s: u})} {wk}_{d}{e}")
            self.used |= {q, key}
            far = self.far_logits()
            S = self.define("S", [s, u], f"{self.pick(('', '0.5 '))}{q}_{s}{e} {key}_{u}{e}{far}")
            if far:  # scores of 400: only the softmax is to read them
                del self.results[S]
            self.used.add(S)
            if style == "masked":
                a = self.define("A", [s, u], f"[{u} {mask} {s}] exp({S}_{s}{u}) / sum_{v}([{v} {mask} {s}] exp({S}_{s}{v}))")
            elif style == "lines":
                a = self.define("A", [s, u], f"exp({S}_{s}{u}) / sum_{v}(exp({S}_{s}{v}))")
            else:
                a = self.define("A", [s, u], f"exp({S}_{s}{u} - logsumexp_{v}({S}_{s}{v}))")
        self.used |= {a, x}
        self.define("o", [s, d], f"{a}_{s}{u} {X({s: u})}")

    def block_layernorm(self):
        """`mu_n = mean_d(x_nd)`, `x_nd - mu_n`, the variance, the scaled result; or all of
        it in one line, the means nested in the expression that uses them."""
        d = self.fresh(set())
        pair = self.letters(2, {d}, sizes=[self.sizes[d]] * 2)
        if pair is None:
            return self.block_random()
        e, f = pair
        n = [self.fresh({d, e, f})] if self.chance(7) else []
        x, order = self.operand(n + [d], reuse=7)
        X = functools.partial(self.ref, x, order)
        style = self.pick(("lines", "one line"))
        self.tags[f"layer norm ({style})"] += 1
        self.used.add(x)
        if style == "one line":
            centred = f"({X()} - mean_{e}({X({d: e})}))"
            spread = f"sqrt(0.1 + mean_{e}(({X({d: e})} - mean_{f}({X({d: f})}))^2))"
            self.define("ln", n + [d], f"{centred} / {spread}")
            return
        mu = self.define("mu", n, f"mean_{d}({X()})")
        self.used |= {x, mu}
        xc = self.define("xc", n + [d], f"{X()} - {self.ref(mu, n)}")
        XC = self.ref(xc, n + [d])
        self.used.add(xc)
        var = self.define("var", n, f"mean_{d}({self.pick((f'{XC} {XC}', f'{XC}^2'))})")
        gain = f"{self.new_input([d])}_{d} " if self.chance(5) else ""
        self.used |= {xc, var}
        self.define("ln", n + [d], f"{gain}{XC} / sqrt({self.ref(var, n)} + 0.1)")

    def block_rbf(self):
        """An RBF layer: `exp(-sum_d((x_nd - c_kd)^2))` weighted by a_k, the sum over the
        centres k as a product or written out with `sum_k`; or now and then a kernel whose
        exp sums d by the convention (`r_nk = exp(-x_nd c_kd)`), read under a log and a
        power inside a sum over d of its own (the soak's silent flag on seed 13400)."""
        if self.chance(5):
            self.kernel_read_through()
            return
        d, k = self.letters(2)
        n = [self.fresh({d, k})] if self.chance(7) else []
        x, order = self.operand(n + [d], reuse=6)
        c = self.new_input([k, d])
        square = self.pick((f"({self.ref(x, order)} - {c}_{k}{d})^2",
                            f"({self.ref(x, order)} - {c}_{k}{d}) ({self.ref(x, order)} - {c}_{k}{d})"))
        width = self.pick(("", "0.5 ", "gamma"))
        width = f"{self.new_input([], 'positive')} " if width == "gamma" else width
        style = self.pick(("lines", "sum_k"))
        self.tags[f"rbf ({style})"] += 1
        if style == "lines":
            r = self.define("r", n + [k], f"exp(-{width}sum_{d}({square}))")
            self.used.add(r)
            kernel = self.ref(r, n + [k])
        a = self.new_input([k])
        self.prefer = [self.pick((c, a))]
        if style == "sum_k":
            self.define("y", n, f"sum_{k}({a}_{k} exp(-{width}sum_{d}({square})))")
        else:
            self.define("y", n, f"{kernel} {a}_{k}")

    def kernel_read_through(self):
        d, k = self.letters(2)
        n = [self.fresh({d, k})] if self.chance(3) else []
        x, order = self.operand(n + [d], reuse=6)
        c = self.new_input([k, d])
        width = self.pick(("", "0.5 "))
        self.tags["rbf (convention in exp)"] += 1
        r = self.define("r", n + [k], f"exp(-{width}{self.ref(x, order)} {c}_{k}{d})")
        self.used |= {r, c}
        kernel = self.ref(r, n + [k])
        a = self.new_input([k])  # after r's line: what r depends on is what was used before it
        self.prefer = [self.pick((c, a))]
        self.define("y", n, f"sum_{d}(log({kernel}) {c}_{k}{d}) + ({kernel})^2 {a}_{k}")

    DELTA_FORMS = {
        # name: (left-hand letters, right-hand side, inputs and their letters, letters as long as i)
        # Jacobians whose derivative letters survive only on a δ
        "identity": ("ij", "{X}_{i}{j}", {"X": "ij"}, ""),
        "diag": ("ij", "delta_{i}{j} {x}_{i}", {"x": "i"}, "j"),
        "outer": ("ij", "{x}_{i} {z}_{j}", {"x": "i", "z": "j"}, ""),
        "kronecker": ("ijkl", "{X}_{i}{k} {B}_{j}{l}", {"X": "ik", "B": "jl"}, ""),
        "bilinear": ("k", "{x}_{i} {W}_{k}{i}{j} {z}_{j}", {"x": "i", "W": "kij", "z": "j"}, ""),
        # scalars whose Hessians are δ's: tr(X²), ‖X‖², tr(XᵀBX), bᵀXᵀXc, ‖T − UVᵀ‖², (1ᵀx)², mean(x²)
        "tr(XX)": ("", "{X}_{i}{j} {X}_{j}{i}", {"X": "ij"}, "j"),
        "|X|^2": ("", "{X}_{i}{j} {X}_{i}{j}", {"X": "ij"}, ""),
        "tr(XtBX)": ("", "{X}_{i}{j} {B}_{i}{k} {X}_{k}{j}", {"X": "ij", "B": "ik"}, "k"),
        "btXtXc": ("", "{x}_{i} {X}_{j}{i} {X}_{j}{k} {z}_{k}", {"x": "i", "X": "ji", "z": "k"}, "k"),
        "|T-UVt|^2": ("", "({T}_{i}{j} - {X}_{i}{k} {V}_{j}{k}) ({T}_{i}{j} - {X}_{i}{k} {V}_{j}{k})",
                      {"T": "ij", "X": "ik", "V": "jk"}, ""),
        "(1tx)^2": ("", "sum_{i}({x}_{i})^2", {"x": "i"}, ""),
        "(1tx)(1tx)": ("", "sum_{i}({x}_{i}) sum_{j}({x}_{j})", {"x": "i"}, "j"),
        "mean(x^2)": ("", "mean_{i}({x}_{i}^2)", {"x": "i"}, ""),
    }

    def block_delta(self):
        """A linear map or a quadratic form: its first or second derivative is δ's alone,
        so the derivative's letters get their sizes only from the wrt tensor."""
        form = self.pick(sorted(self.DELTA_FORMS))
        lhs, rhs, shapes, same = self.DELTA_FORMS[form]
        letters = {"i": self.fresh(set())}
        for generic in "jkl":
            size = self.sizes[letters["i"]] if generic in same else None
            letters[generic] = self.fresh(set(letters.values()), size=size)
        if None in letters.values():
            return self.block_random()
        names = {key: self.new_input([letters[g] for g in spec]) for key, spec in shapes.items()}
        self.prefer = [names.get("X", names.get("x"))]
        self.tags[f"δ {form}"] += 1
        self.define("J" if lhs else "Q", [letters[g] for g in lhs], rhs.format(**names, **letters))

    def block_literals(self):
        """Negative literals and scalar inputs where generated code could misread them:
        `-3 x_i`, `(-2)^a` with an integer a, `x_i * -2`, `x_i / -2`, `2^-1 x_i`."""
        lhs = self.letters(self.draw(st.integers(0, 2))) or []
        fixed = frozenset(lhs)
        terms = []
        for _ in range(self.draw(st.integers(1, 3))):
            form = self.pick(("-3 {}", "(-2)^{a} {}", "{} * -2", "{} / -2", "2^-1 {}", "{} (-0.5)", "(-2)^{a}"))
            if form == "(-2)^{a}" and lhs and not terms:
                form = "(-2)^{a} {}"  # a term of its own only beside one that carries the letters
            self.tags[f"literal {form.replace('{}', 'E')}"] += 1
            term = ""
            if "{}" in form:
                term = self.expr(fixed, fixed, fixed, self.draw(st.integers(0, 2)))
                term = term if re.fullmatch(r"\w+", term) else f"({term})"
            if "{a}" in form:
                form = form.replace("{a}", self.new_input([], "exponent"))
            terms.append(form.format(term).strip())
        text = terms[0]
        for term in terms[1:]:
            text += self.pick((" + ", " - ")) + term
        self.large.add(self.define("y", lhs, text))

    def block_derivative(self):
        """A derivative line used by a later line: the update rule
        `w_new_gh = w_gh - eta loss_{,(gh)}[w]` then a loss of w_new (by a line of its own, or
        the layer that made the loss run again with w_new: MAML), a gradient line, a
        Jacobian line, or a Hessian line `loss_{,(gh)(pq)}[w]` (or `[w,v]`, by two inputs).
        The loss is nonlinear in w, so its derivative depends on w."""
        options = [
            (r, w) for r in sorted(self.results) if len(self.results[r]) <= 2
            for w in sorted(self.depends[r]) if 1 <= len(self.inputs[w]) <= 2 and self.kinds[w] == "tensor"
        ]
        if not options:  # a layer of its own to differentiate
            i, j = self.letters(2)
            self.define("h", [i], f"tanh({self.new_input([i, j])}_{i}{j} {self.tensor([j])})")
            return self.block_derivative()
        r, w = self.pick(options)
        letters = self.letters(len(self.results[r]), sizes=self.results[r])
        if letters is None:
            return self.block_random()
        R = self.ref(r, letters)
        self.used.add(r)
        loss = self.define("loss", [], self.pick((
            f"sum_{''.join(letters)}(softplus({R}))" if letters else f"softplus({R})",
            f"mean_{''.join(letters)}(log(1 + {R}^2))" if letters else f"log(1 + {R}^2)",
        )))
        g = self.letters(len(self.inputs[w]), set(letters), sizes=self.inputs[w])
        if g is None:  # the loss line stays, a scalar of its own
            return self.block_random()
        G = "".join(g)
        comma = f"{G}" if len(g) == 1 and self.chance(5) else f"({G})"
        style = self.pick(("update", "maml", "gradient", "jacobian", "hessian"))
        if style == "hessian" and self.tags["derivative line (hessian)"]:
            style = "gradient"  # one Hessian line a program: a Hessian of a Hessian's function is a 4th derivative
        self.tags[f"derivative line ({style})"] += 1
        self.prefer = [w]
        if style in ("update", "maml"):
            self.used.add(loss)
            eta = self.new_input([], "positive")
            new = self.define(f"{w}_new", g, f"{w}_{G} - {eta} {loss}_{{,{comma}}}[{w}]")
            layer, rhs = self.rhs[r]
            # w's references, not those of a name that extends it (w_new_ij)
            pattern = rf"(?<!\w){re.escape(w)}(?=_(?:[^\W\d_]\d*)+(?!\w))"
            if style == "maml" and re.search(pattern, rhs):
                self.used.add(new)
                self.used |= self.depends[r] - {w}
                again = self.define(r + "new", layer, re.sub(pattern, new, rhs))
                self.used.add(again)
                self.define("L", [], f"sum_{''.join(layer)}(softplus({self.ref(again, layer)}))" if layer
                            else f"softplus({again})")
            else:
                self.used.add(new)
                self.define("L", [], f"{new}_{G} {new}_{G}")
        elif style == "hessian":
            # by w twice, or by w and another input the loss reads (`[w,v]`, a mixed Hessian)
            others = [v for v in sorted(self.depends[r] - {w}) if 1 <= len(self.inputs[v]) <= 2 and self.kinds[v] == "tensor"]
            v = self.pick(others) if others and self.chance(4) else w
            h = self.letters(len(self.inputs[v]), set(letters) | set(g), sizes=self.inputs[v])
            if h is None:  # the loss line stays, a scalar of its own
                return
            H = "".join(h)
            self.used.add(loss)
            hess = self.define("hess", g + h, f"{loss}_{{,({G})({H})}}[{w if v == w else f'{w},{v}'}]")
            self.used.add(hess)
            self.define("L", [], f"sum_{G}{H}(tanh({hess}_{G}{H}))" if self.chance(5)
                        else f"{self.new_input(g + h)}_{G}{H} {hess}_{G}{H}")
        elif style == "gradient" or not letters:
            self.used.add(loss)
            grad = self.define("grad", g, f"{loss}_{{,{comma}}}[{w}]")
            if self.chance(7):  # else the gradient is the program's value (issue 8, item 3)
                self.used.add(grad)
                self.define("L", [], f"{grad}_{G} {grad}_{G}")
        else:
            self.used.add(r)
            jac = self.define("jac", letters + g, f"{r}_{{{''.join(letters)},{comma}}}[{w}]")
            self.used.add(jac)
            weight = self.new_input(letters + g)
            self.define("L", [], f"{weight}_{''.join(letters + g)} {jac}_{''.join(letters + g)}")

    def block_max(self):
        """The piecewise constructs: max and min reductions (issue 10), pooling over a
        letter, a hinge `max_c(1 + z_nc - z_nk)` with the outer letter free inside, or a
        shift by the maximum inside an expression (`z_nk - max_c(z_nc)`); or, a third of
        the time, comparisons of values (`block_compare`). Random arrays tie with
        probability zero, so finite differences see the subgradient's one value. (One
        block, not two: a new entry in BLOCKS would redraw every program of the suite's
        fixed samples, where this redraws only those that drew this block.)"""
        if self.chance(3):
            self.block_compare()
            return
        letters = self.letters(self.draw(st.integers(1, 2)))
        k = letters[-1]
        c = self.fresh(set(letters), size=self.sizes[k])
        if c is None:  # every letter of k's size taken
            return self.block_random()
        z, order = self.operand(letters, reuse=7, moderate=True)
        top, below = self.ref(z, order), self.ref(z, order, {k: c})
        op = self.pick(("max", "min"))
        style = self.pick(("pool", "hinge", "shift"))
        self.tags[f"{op} ({style})"] += 1
        self.used.add(z)
        if style == "pool":
            self.define("m", letters[:-1], f"{op}_{k}({top})")
        elif style == "hinge":
            self.define("m", letters, f"{op}_{c}(1 + {below} - {top})")
        else:
            self.define("m", letters, f"{top} - {op}_{c}({below})")

    def block_compare(self):
        """Comparisons of values as factors (Iverson brackets on values, `Compare`): a ReLU
        `[z > 0] z`, a leaky ReLU, a hinge `[t z < 1] (1 - t z)`, the argmax selection
        `[z_nk == max_c(z_nc)] z_nk`, a threshold that is a scalar input, `(s)` (a bare s
        could be an index letter). The compared values are rarely an earlier result and
        the argmax's never: random arrays meet a threshold or tie with probability zero,
        where a result may be 0 or tied exactly by its formula and a route's rounding
        would then decide the bracket (and finite differences see a kink)."""
        letters = self.letters(self.draw(st.integers(1, 2)))
        k = letters[-1]
        style = self.pick(("relu", "leaky", "hinge", "argmax", "threshold"))
        z, order = (self.new_input(letters), tuple(letters)) if style == "argmax" else self.operand(letters, reuse=2)
        top = self.ref(z, order)
        self.tags[f"compare ({style})"] += 1
        self.used.add(z)
        if style == "relu":
            rhs = f"[{top} > 0] {top}"
        elif style == "leaky":
            rhs = f"[{top} > 0] {top} + 0.1 [{top} <= 0] {top}"
        elif style == "hinge":
            t = self.tensor(letters)
            rhs = f"[{t} {top} < 1] (1 - {t} {top})"
        elif style == "argmax":
            c = self.fresh(set(letters), size=self.sizes[k])
            if c is None:  # z stays an input no line reads
                return self.block_random()
            rhs = f"[{top} == max_{c}({self.ref(z, order, {k: c})})] {top}"
        else:
            s = self.new_input([], "scalar")
            rhs = f"[{top} >= ({s})] ({top} - ({s}))^2"
        self.define("r", letters, rhs)

    def block_causal(self):
        """Causal self-attention (issue 10): the attention head by named lines, its softmax
        over u masked by `[u <= s]` (or `[u >= s]`)."""
        self.block_attention(mask=self.pick(("<=", ">=")))  # not strict: row s sees u = s, no 0 denominator

    def block_matrix(self):
        """Matrix functions (issue 10): inv, det or logdet of a well-conditioned symmetric
        positive definite argument, `A_km A_lm + c δ_kl` (c ≥ 0.5 keeps every eigenvalue
        at least c), as a quadratic form `x_i inv_ij(...) z_j`, a Gaussian log-likelihood,
        a matrix line of its own or a scalar; sometimes over a batch letter fixed by the
        left-hand side. The inverse's letters i, j are new, so the parser renames the
        argument's pair onto them."""
        k = self.fresh(set())
        l = self.fresh({k}, size=self.sizes[k])
        m = self.fresh({k, l})
        i = self.fresh({k, l, m}, size=self.sizes[k])
        j = self.fresh({k, l, m, i}, size=self.sizes[k])
        n = self.fresh({k, l, m, i, j}) if self.chance(3) else None
        if None in (l, m, i, j):
            return self.block_random()
        batch = [n] if n else []
        a, order = self.operand(batch + [k, m], reuse=4)
        self.used.add(a)
        arg = f"{self.ref(a, order)} {self.ref(a, order, {k: l})} + {self.pick(('0.5', '1', '2'))} delta_{k}{l}"
        style = self.pick(("quadratic", "gaussian", "inverse", "det", "logdet"))
        self.tags[f"matrix {style}" + (" (batch)" if batch else "")] += 1
        self.prefer = [a]
        if style in ("quadratic", "gaussian"):
            x, xo = self.operand(batch + [i], reuse=3)
            z, zo = (x, xo) if style == "gaussian" else self.operand(batch + [j], reuse=3)
            zj = self.ref(z, zo, {i: j}) if style == "gaussian" else self.ref(z, zo)
            form = f"{self.ref(x, xo)} inv_{i}{j}({arg}) {zj}"
            self.define("q", batch, f"0.5 logdet({arg}) + 0.5 {form}" if style == "gaussian" else form)
        elif style == "inverse":
            self.define("B", batch + [i, j], f"inv_{i}{j}({arg})")
        else:
            self.define("d", batch, f"{style}({arg})")

    def block_conv(self):
        """A convolution (issue 10): `h_ci = tanh(K_cdk x_{d(s·i+k+o)} + b_c)` with a stride
        and an offset, i over the valid positions; padded (i sized by the bias as x's own
        axis, positions past the edge read zeros); 2-D `x_{d(i+k)(j+l)}`; or max-pooling
        `tanh(max_k(z_{c(2i+k)}) + b_ci)`, the window's k as far as b's i leaves room for."""
        style = self.pick(("1-D", "padded", "2-D", "pool"))
        dims = 2 if style == "2-D" else 1
        axes = self.letters(dims)  # the input's shifted axes
        if axes is None:
            return self.block_random()
        lead = self.letters(1, set(axes))  # channels (or, for pooling, the pooled tensor's other axis)
        x, order = self.operand(lead + axes, reuse=6)
        busy = set(axes) | set(lead)
        forms, outs, sized = {}, [], []
        for axis in axes:
            size = self.sizes[axis]
            if style == "pool":
                window, stride, offset = min(2, size), 2, 0
            else:
                window, stride, offset = self.draw(st.integers(1, size)), self.pick((1, 1, 2)), self.pick((0, 0, -1, 1))
            out = size if style == "padded" else (size - 1 - (window - 1) - offset) // stride + 1
            if out < 1:
                stride, offset, out = 1, 0, size - window + 1
            if style == "pool":  # k runs to the end: as far as out leaves room for
                window = size - stride * (out - 1)
            i = self.fresh(busy, size=out)
            k = self.fresh(busy | {i}, size=window) if i is not None else None
            if k is None:
                return self.block_random()
            busy |= {i, k}
            outs.append(i)
            sized.append(k)
            term = f"{stride if stride != 1 else ''}{i}+{k}" + (f"{offset:+d}" if offset else "")
            forms[axis] = f"({term})"
        self.used.add(x)
        shifted = f"{x}_{{{''.join(forms.get(letter, letter) for letter in order)}}}"
        self.tags[f"conv ({style})"] += 1
        if style == "pool":
            b = self.new_input(lead + outs)
            # (through tanh: a max's Hessian is 0, whose line a non-scalar result cannot size)
            self.define("m", lead + outs, f"tanh(max_{''.join(sized)}({shifted}) + {self.ref(b, lead + outs)})")
            return
        c = self.fresh(busy)
        if c is None:
            return self.block_random()
        K = self.new_input([c] + lead + sized)
        self.prefer = [self.pick((x, K)) if x in self.inputs else K]
        bias = self.new_input([c] + outs) if style == "padded" else self.new_input([c])
        B = self.ref(bias, [c] + outs) if style == "padded" else self.ref(bias, [c])
        conv = f"{self.ref(K, [c] + lead + sized)} {shifted}"
        self.define("h", [c] + outs, self.pick((f"tanh({conv} + {B})", f"{conv} + {B}")))

    # ---- programs

    BLOCKS = ("random", "random", "softmax", "attention", "layernorm", "rbf", "delta", "literals", "derivative",
              "max", "causal", "matrix", "conv")

    def program(self, max_depth: int | None = None) -> str:
        for _ in range(self.draw(st.integers(1, 3))):
            getattr(self, "block_" + self.pick(self.BLOCKS))()
        self.finish()
        if len(self.lines) == 1 and not self.rhs[next(iter(self.rhs))][0] and self.chance(1):
            # a line without letters only: the left-hand side's letters are fixed inside
            self.tags["bare expression"] += 1
            return self.lines[0].split(" = ", 1)[1]
        return "\n".join(self.lines)

    def finish(self):
        """Usually reduce the last result to a scalar, by a weighted sum (every entry of
        the result counts), a sum of squares or a cross-entropy."""
        last = self.lines[-1].split(" = ")[0]
        name = next(n for n in reversed(self.results) if last == self.ref(n, self.rhs[n][0]))
        letters = self.rhs[name][0]
        if not letters or self.chance(2):
            self.scalar = not letters
            return
        L = "".join(letters)
        X = self.ref(name, letters)
        self.used.add(name)
        form = self.pick(("weighted", "squares", "log", "cross-entropy" if len(letters) == 2 else "weighted"))
        if form == "weighted":
            weights = f"{self.new_input(letters)}_{L}"
            rhs = f"{weights} {X}" if self.chance(5) else f"{X} {weights}"
        elif form == "squares":
            rhs = f"sum_{L}({X} {X})"
        elif form == "log":
            rhs = f"mean_{L}(log(1 + {X}^2))"
        else:
            n, c = letters
            rhs = f"mean_{n}(logsumexp_{c}({X}) - {self.new_input([c])}_{c} {X})"
        self.define("L", [], rhs)

    def wrt_choices(self) -> list[str]:
        """The inputs the target depends on (not the integer exponents: `(-2)^a` has no
        derivative by a)."""
        target = next(reversed(self.results))
        return sorted(w for w in self.depends[target] if self.kinds[w] != "exponent")

    def specs(self) -> dict:
        return {name: (shape, self.kinds[name]) for name, shape in self.inputs.items()}


@st.composite
def route_cases(draw, settings: ProgramSettings = ROUTE_PROGRAMS) -> RouteCase:
    """A program of `RouteGenerator`, the tensor to differentiate by (with fresh letters,
    or bare), a second one for the Hessian, and an arrays seed."""
    gen = RouteGenerator(draw(st.data()), settings)
    text = gen.program()
    choices = gen.wrt_choices()
    wrt = wrt2 = None
    if choices:
        preferred = [w for w in gen.prefer if w in choices]
        first = draw(st.sampled_from(preferred)) if preferred and draw(st.booleans()) else draw(st.sampled_from(choices))
        second = first if draw(st.booleans()) else draw(st.sampled_from(choices))

        def spelled(name, letters):
            rank = len(gen.inputs[name])
            fresh = rank and rank <= len(letters) and draw(st.integers(0, 4))
            return name + "_" + "".join(letters[:rank]) if fresh else name

        wrt, wrt2 = spelled(first, WRT_LETTERS), spelled(second, HESSIAN_LETTERS)
        if gen.tags["derivative line (hessian)"]:
            # the Hessian route would take the line's second derivative to a fourth: the
            # soak's seed 15900 drew one past its 60 s limit, a Hessian line of two attention heads
            wrt2 = None
    tags = tuple(sorted(gen.tags)) + (("scalar inputs",) if any(not s for s in gen.inputs.values()) else ())
    tags += (f"names {gen.prefix}",) + (() if gen.scalar else ("non-scalar target",))
    return RouteCase(text, wrt, wrt2, gen.specs(), draw(st.integers(0, 2**32 - 1)), gen.scalar, tags)
