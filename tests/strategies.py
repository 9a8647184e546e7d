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
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np
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
        self.inputs: dict[str, tuple[int, ...]] = {}
        self.results: dict[str, tuple[int, ...]] = {}
        self.count = 0

    def draw(self, strategy):
        return self.data.draw(strategy)

    def chance(self, tenths: int) -> bool:
        return self.draw(st.integers(0, 9)) < tenths

    def pick(self, options):
        return self.draw(st.sampled_from(list(options)))

    def fresh(self, avoid, size=None):
        """A letter not in `avoid` (of size `size`, if given), or None if there is none."""
        options = [
            l for l in self.settings.letters
            if l not in avoid and (size is None or self.sizes.get(l, size) == size)
        ]
        if not options:
            return None
        letter = self.pick(options)
        if letter not in self.sizes:
            self.sizes[letter] = size if size else self.draw(st.integers(1, self.settings.max_size))
        return letter

    def tensor(self, letters) -> str:
        shape = tuple(self.sizes[l] for l in letters)
        if self.results and self.chance(self.settings.reuse):
            for name, rshape in self.results.items():
                for perm in itertools.permutations(letters):
                    if tuple(self.sizes[l] for l in perm) == rshape:
                        return name + ("_" + "".join(perm) if perm else "")
        name = f"T{self.count}"
        self.count += 1
        self.inputs[name] = shape
        return name + ("_" + "".join(letters) if letters else "")

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
            text = self.relabel(out, optional, fixed, depth)
            return text if text is not None else self.call(out, optional, fixed, depth)
        return self.leaf(out, optional, fixed, busy)

    def leaf(self, out, optional, fixed, busy) -> str:
        letters = list(out) + [l for l in sorted(optional - out) if self.chance(3)]
        if not letters and self.chance(3):
            return self.pick(CONSTANTS)
        if self.chance(self.settings.trace):
            t = self.fresh(busy | out | fixed)
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
        for letter in sorted(summed):
            count = 3 if nf == 3 and self.chance(3) else 2
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
            texts.append(self.pick(CONSTANTS))
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

    def sum(self, out, optional, fixed, depth) -> str:
        terms = [self.expr(out, optional, fixed, depth - 1)]
        for _ in range(self.draw(st.integers(1, 2))):
            if (self.settings.fixed_scalar_terms or out - fixed) and self.chance(3):
                # a term with no free index at all is expanded over the others
                terms.append(self.expr(frozenset(), frozenset(), fixed, depth - 1))
            else:
                terms.append(self.expr(out, optional, fixed, depth - 1))
        terms = self.draw(st.permutations(terms))
        text = terms[0]
        for term in terms[1:]:
            text += self.pick((" + ", " - ")) + term
        return text

    def call(self, out, optional, fixed, depth) -> str:
        func = self.pick(self.settings.functions)
        arg = self.expr(out, optional, fixed, depth - 1)
        return func.format(arg) if "{" in func else f"{func}({arg})"

    def relabel(self, out, optional, fixed, depth):
        free = out - fixed
        targets = sorted(free) if free else sorted((out | optional) & fixed)
        if len(free) > 1 or not targets:
            return None
        target = self.pick(targets)
        source = self.fresh(out | fixed | {target}, size=self.sizes[target])
        if source is None:
            return None
        arg = self.expr((out - {target}) | {source}, optional, fixed, depth - 1)
        return f"{self.pick(self.settings.subscripted)}_{target}({arg})"

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
        return f"{self.pick(('sum', 'Σ', 'mean'))}_{''.join(letters)}({body})"

    def power(self, out, optional, fixed, depth) -> str:
        if self.chance(3):
            return self.leaf(out, optional, fixed, set(out | fixed)) + "^2"
        return self.pick(self.settings.powers).format(self.expr(out, optional, fixed, depth - 1))

    # ---- programs

    def program(self, max_depth: int | None = None) -> str:
        settings = self.settings
        max_depth = settings.max_depth if max_depth is None else max_depth
        if self.chance(2):
            count = self.draw(st.integers(0, settings.max_free))
            out = frozenset(filter(None, (self.fresh(set()) for _ in range(count))))
            return self.expr(out, frozenset(), frozenset(), self.draw(st.integers(1, max_depth)))
        lines = []
        for number in range(self.draw(st.integers(1, 3))):
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
