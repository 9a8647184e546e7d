"""The route property's programs beyond the main generator (tests/strategies.py), and
the mix the soak draws (scripts/soak.py).

Each family has its test module, which runs it on every route in CI: masks and
comparisons (tests/test_masks.py), max and min (tests/test_max_min.py), convolutions
(tests/test_shifts.py), inverses and determinants (tests/test_matrices.py), sums and
products longer than a compiled plan's line (tests/test_routes.py), and the main
generator's programs with their letters renamed to names (tests/test_named_indices.py:
`y_{batch out} = W_{out in} x_{batch in}`). The soak draws them all (`soak_cases`), so
that its count covers the families too: each is a few templates whose depth is in the
sizes and letters drawn, which a hundred CI examples only sample.
"""

from __future__ import annotations

import dataclasses
import re

from hypothesis import strategies as st

import indexcalc as ic
from indexcalc.expr import Call, Delta, Deriv, Equation, Mask, MatrixCall, Program, Reduce, Shift, Tensor, with_children
from strategies import RouteCase, route_cases

ATTENTION = """q_se = x_sd Wq_de
k_ue = x_ud Wk_de
S_su = q_se k_ue
A_su = [u {op} s] exp(S_su) / sum_v([v {op} s] exp(S_sv))
o_sd = A_su x_ud
L = sum_sd(o_sd t_sd)"""


@st.composite
def bracket_programs(draw):
    """Programs with masks and comparisons: causal self-attention (one line and by named
    lines), a masked matmul with an offset, a mask as a term beside a penalty, a masked
    max, a mask on one index, ReLU written as a comparison, a comparison with a reduction,
    pairwise losses over i < j."""
    n, d, e = (draw(st.integers(1, 3)) for _ in range(3))
    op = draw(st.sampled_from(["<=", ">=", "=="]))
    strict = draw(st.sampled_from(["<", ">", "!="]))
    offset = draw(st.sampled_from(["", " + 1", " - 1"]))
    templates = [
        (ATTENTION.format(op=op), {"x": (n, d), "Wq": (d, e), "Wk": (d, e), "t": (n, d)}, "Wq_gh", "Wk_pq"),
        (f"y_i = [j {op} i{offset}] w_ij x_j\nL = sum_i(y_i y_i)", {"w": (n, n), "x": (n,)}, "w_gh", "x_p"),
        (f"y_i = [j {strict} i{offset}] w_ij x_j", {"w": (n, d), "x": (d,)}, "x_g", None),
        (f"m_i = max_j([j {op} i] s_ij - 3 [j {strict} i])\nL = sum_i(m_i)", {"s": (n, n)}, "s_gh", None),
        (f"L = sum_i([i >= 1] x_i x_i + [i {strict} 1] x_i)", {"x": (n,)}, "x_g", "x_p"),
        ("y_i = [x_i > 0] x_i\nL = sum_i(y_i u_i)", {"x": (n,), "u": (n,)}, "x_g", "u_p"),
        (f"L = sum_i([x_i {strict} mean_j(x_j)] x_i x_i)", {"x": (n,)}, "x_g", "x_p"),
        (f"y_ij = [j {op} i] tanh(w_ij) + [i {strict} j] w_ji", {"w": (n, n)}, "w_gh", None),
        # pairwise losses over i < j: the Hessian's terms leave a letter on the mask and a δ
        (f"L = sum_ij([i {strict} j{offset}] (x_i - x_j)^2)", {"x": (n,)}, "x_g", "x_p"),
        (f"L = sum_ijk([i {op} j] (W_ik - W_jk)^2)", {"W": (n, d)}, "W_gh", "W_pq"),
        (f"D_ij = [i {strict} j] log(1 + (x_i - x_j)^2)\nL = sum_ij(D_ij) + sum_i(x_i^2)", {"x": (n,)}, "x_g", "x_p"),
    ]
    text, shapes, wrt, wrt2 = draw(st.sampled_from(templates))
    scalar = text.splitlines()[-1].startswith("L =")
    specs = {name: (shape, "tensor") for name, shape in shapes.items()}
    return RouteCase(text, wrt, wrt2, specs, draw(st.integers(0, 2**32 - 1)), scalar, ("brackets",))

@st.composite
def max_programs(draw):
    """A program with a max or min: pooling, a hinge with the outer letter free inside,
    the shift by the maximum, a two-letter max, a max inside a function and of a
    function, nested max and min, and the margin loss of a linear layer."""
    op, other = draw(st.permutations(["max", "min"]))
    n, c, j = (draw(st.integers(1, 3)) for _ in range(3))
    templates = [
        (f"m_n = {op}_c(T_nc)\nL = sum_n(m_n a_n)", {"T": (n, c), "a": (n,)}, "T_gh", "a_p"),
        (f"L = mean_n({op}_c(1 + z_nc - z_nk y_nk))", {"z": (n, c), "y": (n, c)}, "z_gh", None),
        (f"y_nc = T_nc - {op}_k(T_nk)\nL = sum_nc(y_nc y_nc)", {"T": (n, c)}, "T_gh", "T_pq"),
        (f"L = {op}_ij(T_ij u_i)", {"T": (n, c), "u": (n,)}, "u_g", "T_pq"),
        (f"L = log(1 + exp({op}_j(tanh(u_j))))", {"u": (j,)}, "u_g", "u_p"),
        (f"m_i = {op}_j(W_ij + {other}_k(V_jk x_k))\nL = sum_i(m_i m_i)", {"W": (n, j), "V": (j, c), "x": (c,)},
         "x_g", "V_pq"),
        (f"z_nc = W_cj x_nj\nL = mean_n({op}_c(1 + z_nc - z_nk y_nk))",
         {"W": (c, j), "x": (n, j), "y": (n, c)}, "W_gh", "x_pq"),
        (f"y_i = {op}_j(W_ij x_j)^2", {"W": (n, c), "x": (c,)}, "W_gh", "x_p"),
    ]
    text, shapes, wrt, wrt2 = draw(st.sampled_from(templates))
    scalar = text.splitlines()[-1].startswith("L =")
    specs = {name: (shape, "tensor") for name, shape in shapes.items()}
    return RouteCase(text, wrt, wrt2, specs, draw(st.integers(0, 2**32 - 1)), scalar, (op,))

@st.composite
def conv_programs(draw):
    """A convolution layer on every route: 1-D with a stride and an offset (padding where
    the bias sizes i as x), 2-D, a pooling window over a convolution, and a transposed
    convolution written as a shifted index."""
    n, c, d = (draw(st.integers(1, 2)) for _ in range(3))
    w = draw(st.integers(1, 3))
    t = w + draw(st.integers(0, 3))
    stride, offset = draw(st.integers(1, 2)), draw(st.sampled_from(["", "-1", "+1"]))
    form = f"{stride}i+k{offset}".replace("1i", "i")
    out = (t - 1 - (w - 1) - int(offset or 0)) // stride + 1
    templates = [
        (f"h_nci = tanh(K_cdk x_{{nd({form})}} + b_c)\nL = sum_nci(h_nci a_nci)",
         {"K": (c, d, w), "x": (n, d, t), "b": (c,), "a": (n, c, max(out, 1))}, "x_efg", "K_αβγ", out >= 1),
        ("h_nci = tanh(K_cdk x_{nd(i+k-1)} + b_ci)\nL = sum_nci(h_nci h_nci)",
         {"K": (c, d, w), "x": (n, d, t), "b": (c, t)}, "K_efg", "x_αβγ", True),
        ("h_ncij = K_cdkl x_{n d (i+k) (j+l)}\nL = sum_ncij(sigma(h_ncij) a_ncij)",
         {"K": (c, d, w, 2), "x": (n, d, t, 3), "a": (n, c, t - w + 1, 2)}, "x_efgh", "K_αβγζ", True),
        # the pooling window's k runs as far as a's i leaves room for (2 or 3 here)
        ("h_nci = K_cdk x_{nd(i+k)}\nL = sum_nci(max_k(h_{nc(2i+k)}) a_nci)",
         {"K": (c, d, w), "x": (n, d, t + 2), "a": (n, c, (t - w + 1) // 2 + 1)}, "x_efg", "K_αβγ", True),
        # the transposed convolution, e sized by the bias ("full": every e that some i reaches)
        ("y_de = K_{cd(e-i)} g_ci + b_de\nL = sum_de(y_de y_de)",
         {"K": (c, d, w), "g": (c, t), "b": (d, t + w - 1)}, "g_uv", "K_αβγ", True),
    ]
    text, shapes, wrt, wrt2, valid = draw(st.sampled_from(templates))
    if not valid:
        text, shapes, wrt, wrt2, _ = templates[1]
    specs = {name: (shape, "tensor") for name, shape in shapes.items()}
    return RouteCase(text, wrt, wrt2, specs, draw(st.integers(0, 2**32 - 1)), True, ("conv",))

@st.composite
def matrix_programs(draw):
    """Programs with an inverse, a determinant or a log-determinant, beyond the main
    generator's block (RouteGenerator.block_matrix: symmetric arguments, a quadratic form,
    a Gaussian): matrices that are not symmetric (`4 δ_kl + A_kl`), where the transpose
    shows; the inverse of a transpose, in a layer, and read by a logdet; a determinant
    inside a function and over a batch; a kernel's Gram matrix; a solve; both derivatives
    by one tensor. Every matrix is a shift of δ that keeps it well conditioned (entries of A
    in [-1, 1], at most 3 rows), so finite differences, the routes' ground truth, stay
    accurate."""
    n, d, b = (draw(st.integers(1, 3)) for _ in range(3))
    templates = [  # the letters g, h, z, p, q, e are the derivatives'
        ("S_kl = A_km A_lm + delta_kl\nL = 0.5 logdet(S_kl) + 0.5 r_i inv_ij(S_kl) r_j", {"A": (n, d), "r": (n,)}),
        ("S_nkl = A_nkm A_nlm + 2 delta_kl\nL = sum_n(logdet(S_nkl) + r_nk inv_kl(S_nab) r_nl)",
         {"A": (b, n, d), "r": (b, n)}),
        ("B_ij = inv_ij(4 delta_kl + A_kl)\nL = sum_ij(B_ij W_ij)", {"A": (n, n), "W": (n, n)}),
        ("L = log(1 + det(delta_kl + 0.3 A_kl)^2) + x_i A_ij x_j", {"A": (n, n), "x": (n,)}),
        ("S_kl = A_km A_lm + delta_kl\ny_i = inv_ij(S_kl) c_j\nL = sum_i(y_i y_i)", {"A": (n, d), "c": (n,)}),
        ("h_ni = tanh(x_nj inv_ji(4 delta_kl + M_kl))\nL = sum_ni(h_ni t_ni)", {"x": (b, n), "M": (n, n), "t": (b, n)}),
        ("d_n = det_kl(A_nkl + 3 delta_kl)\nL = sum_n(d_n c_n)", {"A": (b, n, n), "c": (b,)}),
        ("L = u_i inv_ij(4 delta_ji + A_ji) v_j", {"A": (n, n), "u": (n,), "v": (n,)}),
        ("K_nm = exp(-0.5 sum_d((x_nd - x_md)^2)) + delta_nm\nL = logdet(K_nm) + y_n inv_nm(K_ab) y_m",
         {"x": (n, d), "y": (n,)}),
        ("P_ij = inv_ij(A_km A_lm + delta_kl)\nL = logdet(P_ij + delta_ij) + sum_ij(P_ij P_ij)", {"A": (n, d)}),
    ]
    text, shapes = draw(st.sampled_from(templates))
    first, second = (draw(st.sampled_from(sorted(shapes))) for _ in range(2))
    wrt, wrt2 = f"{first}_{'ghz'[:len(shapes[first])]}", f"{second}_{'pqe'[:len(shapes[second])]}"
    specs = {name: (shape, "tensor") for name, shape in shapes.items()}
    return RouteCase(text, wrt, wrt2, specs, draw(st.integers(0, 2**32 - 1)), True, ("matrix",))


NAMES = ("batch", "out", "in", "hid", "dm", "seq", "ch", "μν", "ij", "gh", "k1x")


def renamed(node, mapping: dict[str, str]):
    """`node` with every index written i renamed mapping.get(i, i), wherever it stands."""
    def one(i):
        return mapping.get(i, i)

    def many(indices):
        return tuple(one(i) for i in indices)

    if isinstance(node, Tensor):
        derivs = tuple(Deriv(many(d.indices), d.wrt) for d in node.derivs)
        return Tensor(node.name, many(node.indices), derivs)
    if isinstance(node, Delta):
        return Delta(many(node.left), many(node.right))
    if isinstance(node, Mask):
        return dataclasses.replace(node, left=one(node.left), right=None if node.right is None else one(node.right))
    if isinstance(node, Shift):  # x_{nd(i+k)}'s δ_{p(i+k)}
        return Shift(one(node.index), tuple((c, one(i)) for c, i in node.terms), node.offset)
    kids = tuple(renamed(k, mapping) for k in node.children())
    if isinstance(node, Call):
        return Call(node.func, kids[0], None if node.relabel is None else one(node.relabel))
    if isinstance(node, MatrixCall):
        return MatrixCall(node.func, kids[0], many(node.relabel))
    if isinstance(node, Reduce):
        return Reduce(node.op, many(node.indices), kids[0])
    if isinstance(node, Equation):
        return Equation(kids[0], kids[1])
    if isinstance(node, Program):
        return Program(kids)
    return with_children(node, kids) if kids else node


def letters_of(node) -> list[str]:
    """Every index written in `node`, in order of first appearance."""
    found: dict[str, None] = {}
    for sub in node.walk():
        if isinstance(sub, (Tensor, Delta, Mask, Shift)):
            found.update(dict.fromkeys(sub.all_indices))
        elif isinstance(sub, Reduce):
            found.update(dict.fromkeys(sub.indices))
        elif isinstance(sub, Call) and sub.relabel:
            found[sub.relabel] = None
        elif isinstance(sub, MatrixCall):
            found.update(dict.fromkeys(sub.relabel))
    return list(found)


@st.composite
def namings(draw, letters: list[str], every: bool = False) -> dict[str, str]:
    """Some (or every) letter of a text renamed to a distinct name."""
    chosen = letters if every else [i for i in letters if draw(st.booleans())]
    names = draw(st.lists(st.sampled_from(NAMES), min_size=len(chosen), max_size=len(chosen), unique=True)) \
        if len(chosen) <= len(NAMES) else [f"n{i}x" for i in range(len(chosen))]
    return dict(zip(chosen, names))


@st.composite
def named_route_cases(draw) -> RouteCase:
    """A program of the main generator with some or every letter renamed to a name; the
    wrt keeps its fresh letters, which no name spells."""
    case = draw(route_cases())
    program = ic.parse(case.text)
    mapping = draw(namings(letters_of(program), every=draw(st.booleans())))
    return dataclasses.replace(case, text=str(renamed(program, mapping)), tags=case.tags + ("named indices",))


def reads(text: str, name: str) -> bool:
    """Whether `text` reads the tensor `name` (`name_` with indices, `name)` bare)."""
    return re.search(rf"\b{name}(_|\))", text) is not None


LONG_PARTS = {"c": "sin({k} c)", "x": "{k} x_i", "w": "{k} w_mi", "z": "cos({k} z_m)", "xw": "tanh({k} x_i w_mi)"}


@st.composite
def long_programs(draw):
    """A sum or a product of more operands than one line of a compiled plan holds (64), of
    scalar, vector and matrix parts in any order: the plan writes it in lines and adds or
    multiplies the lines, and a line of scalars once took the whole result's shape (the
    plan wrote into it in place: a TypeError from NumPy, 2026-12-07). The generator's
    programs are a few operands long."""
    product = draw(st.booleans())
    # in runs of one kind, so that a line may hold one kind only; a product's scalar factors
    # make its chain (its arrays are contracted apart), and it is differentiated by w alone,
    # once: by a letter of n factors its derivative has n terms of n factors (by x, 65
    # factors: 20 s to compile, by c, 19 s for the routes together)
    runs = draw(st.lists(st.tuples(st.sampled_from(["c"] if product else sorted(LONG_PARTS)),
                                   st.integers(1, 70)), min_size=1, max_size=4))
    kinds = [kind for kind, count in runs for _ in range(count)]
    kinds = (kinds + [runs[0][0]] * 65)[: max(65, min(len(kinds), 68 if product else 100))]
    parts = [LONG_PARTS[kind].format(k=round(1 + 0.01 * k, 2)) for k, kind in enumerate(kinds)]
    if product:
        text = "y_mi = " + " ".join(f"(1 + 0.01 {part})" for part in parts) + " w_mi"
    else:
        text = "y_mi = " + " + ".join(parts) + " + w_mi"
    text += draw(st.sampled_from(["\nL = sum_mi(y_mi y_mi)", "\nL = sum_mi(tanh(y_mi) t_mi)"]))
    m, i = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shapes = {"c": (), "x": (i,), "w": (m, i), "z": (m,), "t": (m, i)}
    specs = {name: (shape, "tensor") for name, shape in shapes.items() if reads(text, name)}
    wrt = "w" if product else draw(st.sampled_from([n for n in sorted(specs) if n != "t"]))
    wrt2 = None if product else draw(st.sampled_from([n for n in sorted(specs) if n != "t"]))
    return RouteCase(text, wrt, wrt2, specs, draw(st.integers(0, 2**32 - 1)), True, ("long chain",))


FAMILIES = (  # (weight in sixteenths, family): the main generator's programs most of the time
    (9, route_cases()),
    (2, named_route_cases()),
    (1, long_programs()),
    (1, bracket_programs()),
    (1, max_programs()),
    (1, conv_programs()),
    (1, matrix_programs()),
)


@st.composite
def soak_cases(draw) -> RouteCase:
    """One program of the soak: from the main generator, or from one of the families."""
    return draw(draw(st.sampled_from([family for weight, family in FAMILIES for _ in range(weight)])))
