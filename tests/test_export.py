"""Export (issue 11, item 4): a compiled gradient as a standalone module.

The check the issue sets: the exported module, imported in a fresh interpreter where
indexcalc is not importable, gives the compiled numbers. indexcalc is installed in this
environment, so isolated mode (-I) and a temporary directory are not enough on their
own: the fresh interpreter also hides it (an import hook refuses it), asserts that
`import indexcalc` fails there, and that nothing named indexcalc was imported by the
modules. Inputs and outputs cross over as .npz files; one interpreter runs every NumPy
module. The jax and torch modules run in this interpreter (their libraries' imports cost
seconds), and what they import is read from their text.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, strategies as st

import indexcalc as ic
from indexcalc import cli
from indexcalc.export import ExportError
from families import soak_cases
from routes import compiled_routes
from strategies import RouteCase, sample

XOR = str(Path(ic.__file__).parent / "examples" / "xor.ic")  # by its path: the tests run from any folder

RNG = np.random.default_rng(4)


def rand(*shape):
    return RNG.uniform(-1, 1, shape)


PROGRAMS = {
    "mlp": ("h_ni = tanh(W1_ij x_nj + b1_i)\nyhat_nk = sigma(W2_ki h_ni + b2_k)\nL = mean_nk((yhat_nk - y_nk)^2)",
            ["W1", "b1", "W2", "b2"],
            {"W1": rand(5, 3), "b1": rand(5), "W2": rand(2, 5), "b2": rand(2), "x": rand(7, 3), "y": rand(7, 2)}),
    "softmax_ce": ("z_nk = W_kj x_nj + b_k\nL = mean_n(logsumexp_k(z_nk) - sum_k(t_nk z_nk))", ["W", "b"],
                   {"W": rand(3, 4), "b": rand(3), "x": rand(6, 4), "t": np.eye(3)[[0, 1, 2, 1, 0, 2]]}),
    "conv_pool": ("h_nfij = relu(K_fckl x_{nc(i+k)(j+l)} + b_f)\nL = sum_nfij(r_nfij max_kl(h_{nf(2i+k)(2j+l)}))",
                  ["K", "b"], {"K": rand(2, 1, 3, 3), "b": rand(2), "x": rand(2, 1, 6, 6), "r": rand(2, 2, 2, 2)}),
    "masked_attention": ("s_ij = q_id k_jd\nm_i = max_j(s_ij)\ne_ij = exp(s_ij - m_i) [j <= i]\n"
                         "p_ij = e_ij / sum_l(e_il)\no_id = p_ij v_jd\nL = sum_id(o_id o_id)", ["q", "k", "v"],
                         {"q": rand(5, 3), "k": rand(5, 3), "v": rand(5, 3)}),
    "masks": ("L = sum_ij(A_ij [i < j] A_ij) + sum_i(A_ii [i >= 1] softplus(A_ii)) + sum_ij(A_ij [j > i + 1])",
              ["A"], {"A": rand(4, 4)}),
    "dense_shift": ("y_pik = x_p delta_{p(i+k)} c_ik\nL = sum_pik(y_pik y_pik)", ["x", "c"],
                    {"x": rand(6), "c": rand(3, 4)}),
    "inv_logdet": ("S_ij = L_ik L_jk + 0.5 delta_ij\nloss = 0.5 logdet(S_ij) + 0.5 r_i inv_ij(S_kl) r_j", ["L", "r"],
                   {"L": rand(3, 3), "r": rand(3)}),
}

RUNNER = '''
import importlib, os, sys


class Hidden:
    """indexcalc is not importable here, whatever is installed."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "indexcalc":
            raise ImportError("indexcalc is hidden from this interpreter")


sys.meta_path.insert(0, Hidden())
try:
    import indexcalc
except ImportError:
    pass
else:
    raise SystemExit("indexcalc is importable in the fresh interpreter")

import numpy as np

sys.path.insert(0, os.getcwd())  # isolated mode (-I) leaves the modules' folder out
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    with np.load(name + "_in.npz") as given:
        arrays = {k: given[k] for k in given.files}
    value, grads = module.loss_and_grads(arrays)
    np.savez(name + "_out.npz", value=value, **{"grad_" + k: g for k, g in grads.items()})
assert not [m for m in sys.modules if m.partition(".")[0] == "indexcalc"], "a module imported indexcalc"
print("ran", len(sys.argv) - 1)
'''


def run_fresh(folder, cases: dict) -> dict:
    """Each case's module (name -> (source, arrays)) run in a fresh interpreter: its outputs."""
    for name, (source, arrays) in cases.items():
        (folder / f"{name}.py").write_text(source, encoding="utf-8")
        np.savez(folder / f"{name}_in.npz", **arrays)
    (folder / "runner.py").write_text(RUNNER, encoding="utf-8")
    done = subprocess.run([sys.executable, "-I", "runner.py", *cases], cwd=folder, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = {}
    for name in cases:
        with np.load(folder / f"{name}_out.npz") as saved:
            out[name] = (saved["value"], {k[5:]: saved[k] for k in saved.files if k.startswith("grad_")})
    return out


def assert_same_numbers(got, expected, rtol, what):
    value, grads = got
    np.testing.assert_allclose(value, expected[0], rtol=rtol, atol=rtol, err_msg=f"{what}: value")
    assert set(grads) == set(expected[1]), what
    for k, g in expected[1].items():
        assert grads[k].shape == np.shape(g), f"{what}: gradient by {k} has shape {grads[k].shape}"
        np.testing.assert_allclose(grads[k], g, rtol=rtol, atol=rtol, err_msg=f"{what}: gradient by {k}")


def test_the_exported_numpy_module_gives_the_compiled_numbers_without_indexcalc(tmp_path):
    cases, expected = {}, {}
    for name, (text, wrt, arrays) in PROGRAMS.items():
        f = ic.compile(text, wrt=wrt)
        expected[name] = f(arrays)
        source = f.source("numpy", arrays)
        assert imported(source) - sys.stdlib_module_names == {"numpy"}, name
        cases[name] = (source, arrays)
    # the CLI's module for a model file, run on the data set's own arrays
    from indexcalc.modelfile import load

    assert cli.main(["export", XOR, "-o", str(tmp_path / "xor_grads.py")]) == 0
    mf = load(XOR)
    params = mf.model.init_params(0)
    arrays = {**mf.load_data().train, **params}
    expected["xor_grads"] = mf.model.loss_and_grads(params, mf.load_data().train)
    cases["xor_grads"] = ((tmp_path / "xor_grads.py").read_text(encoding="utf-8"), arrays)
    got = run_fresh(tmp_path, cases)
    for name in cases:  # the same steps and routines: the same numbers, to the last bit
        assert_same_numbers(got[name], expected[name], 0, name)


def imported(source: str) -> set[str]:
    """The top-level modules an exported module imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_exported_jax_and_torch_modules_give_the_compiled_numbers(backend):
    """Run here, where the library is already imported (a fresh interpreter would import
    it again, seconds each); that they import nothing but it and the standard library is
    read from their text."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        convert, back = jnp.asarray, np.asarray
    else:
        import torch

        convert, back = torch.as_tensor, lambda t: t.numpy()
    # jax traces and compiles each module (a second or so apiece on a busy machine): fewer there
    names = ("mlp", "masked_attention", "inv_logdet") if backend == "jax" else \
        ("mlp", "conv_pool", "masked_attention", "dense_shift", "inv_logdet")
    for name in names:
        text, wrt, arrays = PROGRAMS[name]
        f = ic.compile(text, wrt=wrt)
        expected = f(arrays)
        source = f.source(backend, arrays)
        assert imported(source) - sys.stdlib_module_names == {backend}, name
        assert ("@jax.jit" if backend == "jax" else "@torch.no_grad()") in source
        value, grads = load_module(source)["loss_and_grads"]({k: convert(v) for k, v in arrays.items()})
        got = (back(value), {k: back(g) for k, g in grads.items()})
        assert_same_numbers(got, expected, 1e-9, f"{backend}: {name}")


def load_module(source: str) -> dict:
    space: dict = {}
    exec(compile(source, "<exported>", "exec"), space)  # noqa: S102 - the text under test
    return space


def test_the_module_reads_as_the_plan_and_says_what_it_is_for():
    text, wrt, arrays = PROGRAMS["mlp"]
    f = ic.compile(text, wrt=wrt)
    f(arrays)
    source = f.source()  # the last call's shapes
    for line in text.splitlines():
        assert line in source  # the program it came from
    assert f"indexcalc {ic.__version__}" in source and "backend: numpy" in source
    assert "x   (7, 3)  float64" in source
    run = [line.strip() for line in f._last.source.splitlines() if re.match(r"\s+v\d+ = ", line)]
    assert run and all(f"    {line}    # " in source for line in run)  # the plan's steps as it runs them, each with its comment
    assert "# matmul  [" in source and "def _reduce" not in source  # only what the plan calls
    assert source.count("def ") == len(re.findall(r"^def ", source, re.M))  # no nested definitions
    g = load_module(source)["loss_and_grads"]
    value, grads = g(arrays)
    assert value == f(arrays)[0]


def test_other_shapes_and_types_are_refused_naming_the_array():
    text, wrt, arrays = PROGRAMS["mlp"]
    space = load_module(ic.compile(text, wrt=wrt).source("numpy", arrays))
    g = space["loss_and_grads"]
    with pytest.raises(ValueError, match=r"x has shape \(8, 3\), but this module was exported for x of shape \(7, 3\)"):
        g({**arrays, "x": rand(8, 3)})
    with pytest.raises(ValueError, match="W1 is float32, but this module was exported for float64"):
        g({**arrays, "W1": arrays["W1"].astype(np.float32)})
    with pytest.raises(ValueError, match="no array given for 'y'"):
        g({k: v for k, v in arrays.items() if k != "y"})


def test_shapes_without_arrays_and_float32():
    text, wrt, arrays = PROGRAMS["conv_pool"]
    f = ic.compile(text, wrt=wrt)
    with pytest.raises(ExportError, match="give arrays="):
        f.source()
    with pytest.raises(ExportError, match="choose one of numpy, jax, torch"):
        f.source("dask", arrays)
    with pytest.raises(ic.MissingArrayError, match="'r'"):
        f.source(shapes={k: v.shape for k, v in arrays.items() if k != "r"})
    source = f.source(shapes={k: v.shape for k, v in arrays.items()}, dtype="float32")
    single = {k: v.astype(np.float32) for k, v in arrays.items()}
    value, grads = load_module(source)["loss_and_grads"](single)
    expected, expected_grads = f(single)
    assert value.dtype == np.float32 and grads["K"].dtype == np.float32
    np.testing.assert_array_equal(value, expected)
    np.testing.assert_array_equal(grads["K"], expected_grads["K"])


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_the_cli_writes_to_stdout_and_refuses_bad_input_in_one_line(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "export", XOR, "--size", "n=2")
    assert code == 0 and "def loss_and_grads(arrays):" in out and "('x', (2, 2), np.dtype('float64'))" in out
    for argv, message in [
        (["export", str(tmp_path / "missing.ic")], "cannot read the model file"),
        (["export", XOR, "--size", "k=3"], "only the batch index n has a size to choose"),
        (["export", XOR, "-o", str(tmp_path / "no" / "such" / "dir.py")], "cannot be written"),
    ]:
        code, out, err = run_cli(capsys, *argv)
        assert code == 1 and out == "" and err.startswith("indexcalc: error: ") and message in err, err
        assert err.count("\n") == 1, err
    with pytest.raises(SystemExit) as info:  # argparse's own: usage and exit 2
        cli.main(["export", XOR, "--backend", "cupy"])
    assert info.value.code == 2
    assert "invalid choice: 'cupy'" in capsys.readouterr().err


def test_the_cli_never_writes_over_a_file_it_did_not_write(capsys, tmp_path):
    """`-o` named the model file itself and replaced it with the module, silently."""
    model = tmp_path / "xor.ic"
    model.write_text(Path(XOR).read_text(encoding="utf-8"), encoding="utf-8")
    own = tmp_path / "mine.py"
    own.write_text("print('my own work')\n", encoding="utf-8")
    for target in (model, own):
        before = target.read_bytes()
        code, out, err = run_cli(capsys, "export", str(model), "-o", str(target))
        assert code == 1 and f"the module {target} exists and is not one; not overwriting it" in err, err
        assert target.read_bytes() == before
    module, empty = tmp_path / "grads.py", tmp_path / "empty.py"
    empty.write_text("", encoding="utf-8")
    for target in (module, module, empty):  # a module it wrote, again; an empty file
        assert run_cli(capsys, "export", str(model), "-o", str(target))[0] == 0
        assert "exported by indexcalc" in target.read_text(encoding="utf-8").splitlines()[0]


@sample(8, derandomize=True, database=None)
@given(case=soak_cases())
@example(case=RouteCase("h_ni = tanh(x_nj inv_ji(4 delta_kl + M_kl))\nL = sum_ni(h_ni t_ni)", "M_gh", "M_pq",
                        {"x": ((3, 2), "tensor"), "M": ((2, 2), "tensor"), "t": ((3, 2), "tensor")}, 549, True))
def test_generated_programs_export_with_the_compiled_numbers(case):
    """The soak's programs (softmax, attention, layer norm, δ-only Jacobians, derivative
    lines, names like v9, and the families: masks, max, convolutions, inverses): the
    exported NumPy module, run here, gives the compiled plan's numbers exactly, for the
    gradient and for a Hessian program. The example's Hessian differed in its last bit
    while the module spelled out of place what the plan writes in place (the result's
    memory order, then a matmul's rounding, followed the operand's)."""
    arrays = {k: np.asarray(v) if np.asarray(v).dtype.kind == "f" else np.asarray(v, dtype=np.float64)
              for k, v in case.arrays().items()}
    for source, wrt in compiled_routes(case):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f = ic.compile(source, wrt=wrt)
            try:
                value, grads = f(arrays)
            except ic.IndexCalcError:
                continue
            got, got_grads = load_module(f.source("numpy", arrays))["loss_and_grads"](arrays)
        np.testing.assert_array_equal(got, value, err_msg=f"{case}\nvalue")
        for k in wrt:
            np.testing.assert_array_equal(got_grads[k], grads[k], err_msg=f"{case}\ngradient by {k}")


def test_a_constant_that_cannot_be_rebuilt_is_written_out(monkeypatch):
    """The fallback: a mask whose making is not known is a literal array, and says so."""
    import indexcalc.export as export

    monkeypatch.setattr(export, "_rebuilt", lambda key, dtype, code: None)
    text, wrt, arrays = PROGRAMS["masks"]
    f = ic.compile(text, wrt=wrt)
    source = f.source("numpy", arrays)
    assert "_mask1 = np.asarray([[" in source and "written out as literal arrays" in source
    value, grads = load_module(source)["loss_and_grads"](arrays)
    expected, expected_grads = f(arrays)
    assert value == expected and np.array_equal(grads["A"], expected_grads["A"])


ANY = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 10), st.floats(allow_nan=True), st.text(max_size=4),
    st.sampled_from([np.ones(3), np.ones((4, 2)), (4, 2), (4,), (-1, 2), (4.5, 2), (), b"x", object(),
                     "float32", "int64", "complex128", "jax", "dask", "W", "x"]),
)


@given(keyword=st.sampled_from(["backend", "arrays", "shapes", "dtype", "name", "program"]),
       value=st.one_of(ANY, st.lists(ANY, max_size=3),
                       st.dictionaries(st.sampled_from(["W", "b", "x", "q"]), ANY, max_size=4)))
@sample(150)
def test_any_value_of_any_export_keyword_works_or_is_an_indexcalc_error(keyword, value):
    """A list for shapes, None for the name, a dict for the dtype: Python errors from inside, before."""
    f = ic.compile("h_i = tanh(W_ij x_j + b_i)\nL = h_i h_i", wrt=["W", "b"])
    shapes = {"W": (4, 2), "b": (4,), "x": (2,)}
    settings_ = {keyword: value} if keyword in ("arrays", "shapes") else {"shapes": shapes, keyword: value}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            f.source(**settings_)
    except ic.IndexCalcError:
        pass
