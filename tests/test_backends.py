"""The compiled plan on other array libraries (issue 11): the same steps, the same numbers.

For each installed backend (jax, torch, dask; cupy where a GPU is), every program here and
a sample of the cross-route property's programs give the NumPy plan's numbers (rtol 1e-6
in float64), as that library's arrays. A backend whose library is missing is skipped, with
the reason, and refused by compile with the extra to install.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings

import numpy as np
import pytest
from hypothesis import given

import indexcalc as ic
from indexcalc.backends import BackendError, backend_name_of
from routes import compiled_routes, to_numpy
from strategies import route_cases, sample

INSTALLED = [name for name in ("jax", "torch", "dask", "cupy") if importlib.util.find_spec(name)]
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(name not in INSTALLED, reason=f"{name} is not installed"))
            for name in ("jax", "torch", "dask")]

if "jax" in INSTALLED:
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 is compared at rtol 1e-6


def on(backend: str, arrays: dict) -> dict:
    """The arrays as that library's (numbers stay numbers: they go over by themselves).
    dask's are cut in two blocks along every axis longer than one, so that every
    contraction crosses a block boundary; three or more per axis would test nothing more
    and multiply the graph (a Hessian of the generated programs: 49,090 tasks, 9 s)."""
    if backend == "jax":
        import jax.numpy as jnp

        convert = jnp.asarray
    elif backend == "torch":
        import torch

        convert = torch.as_tensor
    else:
        import dask.array as da

        convert = lambda a: da.from_array(a, chunks=tuple((n + 1) // 2 or 1 for n in a.shape))  # noqa: E731
    return {k: convert(v) if isinstance(v, np.ndarray) else v for k, v in arrays.items()}


def computed(*values) -> list:
    """Lazy (dask) results computed in one pass, the graph they share once; others as given."""
    if any(hasattr(v, "compute") for v in values):
        import dask

        return list(dask.compute(*values))
    return list(values)


def assert_same(got, expected, what):
    got = to_numpy(got)
    assert got.shape == np.shape(expected), f"{what}: shape {got.shape}, expected {np.shape(expected)}"
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9, err_msg=what)


RNG = np.random.default_rng(11)


def rand(*shape):
    return RNG.uniform(-1, 1, shape)


PROGRAMS = {
    "mlp": ("h_ni = tanh(W_ij x_nj + b_i)\nyhat_n = sigma(V_i h_ni)\nL = mean_n((yhat_n - y_n)^2)", ["W", "b", "V"],
            {"W": rand(4, 3), "b": rand(4), "V": rand(4), "x": rand(6, 3), "y": rand(6)}),
    "softmax cross-entropy": (
        "z_nk = W_kj x_nj\nL = mean_n(logsumexp_k(z_nk) - sum_k(t_nk z_nk))", ["W"],
        {"W": rand(3, 4), "x": rand(5, 4), "t": np.eye(3)[[0, 1, 2, 1, 0]]}),
    "relu, max, min": ("h_ni = relu(W_ij x_nj)\nm_n = max_i(h_ni) - min_i(h_ni)\nL = sum_n(m_n m_n)", ["W"],
                       {"W": rand(5, 3), "x": rand(4, 3)}),
    "softplus, abs, sqrt, exp, log, sin, cos": (
        "u_i = W_ij x_j\nL = sum_i(softplus(u_i) + abs(u_i) + sqrt(1 + u_i^2) + exp(sin(u_i)) + log(2 + cos(u_i)))",
        ["W"], {"W": rand(3, 4), "x": rand(4)}),
    "layer norm": ("mu_n = mean_d(x_nd)\nxc_nd = x_nd - mu_n\ns_n = sqrt(mean_d(xc_nd xc_nd) + 0.1)\n"
                   "y_nd = g_d xc_nd / s_n\nL = sum_nd(y_nd y_nd c_nd)", ["g", "x"],
                   {"x": rand(3, 5), "g": rand(5), "c": rand(3, 5)}),
    "conv, pool": ("h_nfij = relu(K_fckl x_{nc(i+k)(j+l)} + b_f)\n"
                   "L = sum_nfij(r_nfij max_kl(h_{nf(2i+k)(2j+l)}))", ["K", "b", "x"],
                   {"K": rand(2, 1, 3, 3), "b": rand(2), "x": rand(2, 1, 6, 6), "r": rand(2, 2, 2, 2)}),
    "stride, dilation, padding, reversal": (
        "y_ni = K_k x_{n(2i+k-1)} + K_k x_{n(i+2k)} + K_k x_{n(i-k+2)}\nL = sum_ni(y_ni y_ni)", ["K", "x"],
        {"K": rand(3), "x": rand(2, 7), "y": rand(2, 3)}),
    "causal attention": (
        "s_ij = q_id k_jd\nm_i = max_j(s_ij)\ne_ij = exp(s_ij - m_i) [j <= i]\np_ij = e_ij / sum_l(e_il)\n"
        "o_id = p_ij v_jd\nL = sum_id(o_id o_id)", ["q", "k", "v"],
        {"q": rand(4, 3), "k": rand(4, 3), "v": rand(4, 3)}),
    "gaussian": ("S_ij = L_ik L_jk + 0.5 delta_ij\nloss = 0.5 logdet(S_ij) + 0.5 r_i inv_ij(S_kl) r_j", ["L"],
                 {"L": rand(3, 3), "r": rand(3)}),
    "jacobian line": ("h_vk = tanh(A_vk + b_v)\njac_qjl = h_{qj,l}[b]\nL = c_qjl jac_qjl", ["b", "c"],
                      {"A": rand(2, 3), "b": rand(2), "c": rand(2, 3, 2)}),
}


@functools.cache
def on_numpy(name: str, hessian: bool = False) -> tuple:
    """A program of `PROGRAMS` (or its Hessian by its first and last `wrt`), compiled with
    no backend named, and its NumPy numbers: the reference every backend's case of it is
    held to, compiled once. (program or Hessian, compiled, (value, gradients))"""
    text, wrt, arrays = PROGRAMS[name]
    if hessian:
        text, wrt = ic.diff(ic.diff(text, wrt[0]), wrt[-1]), []
    f = ic.compile(text, wrt=wrt)
    return text, f, f(arrays)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_the_gradient_on_a_backend_is_numpys(backend, name):
    text, wrt, arrays = PROGRAMS[name]
    _, chosen, (value, grads) = on_numpy(name)
    f = ic.compile(text, wrt=wrt, backend=backend)
    got, got_grads = f(on(backend, arrays))
    assert backend_name_of([got]) == backend, f"{name}: the value is a {type(got).__name__}"
    assert_same(got, value, f"{name}: value")
    for k in wrt:
        assert backend_name_of([got_grads[k]]) == backend
        assert_same(got_grads[k], grads[k], f"{name}: gradient by {k}")
    # chosen from the arrays, with no backend named
    assert_same(chosen(on(backend, arrays))[0], value, f"{name}: value, backend from the arrays")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["mlp", "layer norm", "conv, pool", "jacobian line"])
def test_the_compiled_hessian_on_a_backend_is_numpys(backend, name):
    hessian, _, (expected, _) = on_numpy(name, hessian=True)
    assert_same(ic.compile(hessian, backend=backend)(on(backend, PROGRAMS[name][2]))[0], expected, f"{name}: Hessian")


@pytest.mark.skipif(not {"jax", "torch", "dask"} & set(INSTALLED), reason="no other backend is installed")
@sample(4, derandomize=True, database=None)
@given(case=route_cases())
def test_generated_programs_give_numpys_numbers_on_a_backend(case):
    """The cross-route property's programs: where the NumPy plan gives numbers, every
    installed backend gives the same (NumPy arrays and Python numbers passed, the backend
    named). One program, every backend: NumPy's numbers are computed once."""
    arrays = case.arrays()
    for source, wrt in compiled_routes(case):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                value, grads = ic.compile(source, wrt=wrt)(arrays)
            except ic.IndexCalcError:
                continue
            for backend in {"jax", "torch", "dask"} & set(INSTALLED):
                got, got_grads = ic.compile(source, wrt=wrt, backend=backend)(on(backend, arrays))
                got, *got_grads = computed(got, *(got_grads[k] for k in wrt))
                assert_same(got, value, f"{case}\n{backend}: value")
                for k, gradient in zip(wrt, got_grads):
                    assert_same(gradient, grads[k], f"{case}\n{backend}: gradient by {k}")


def test_an_unknown_backend_is_refused():
    with pytest.raises(BackendError, match="unknown backend 'jaxx'"):
        ic.compile("y = x_i x_i", backend="jaxx")


def test_a_missing_library_names_its_extra(monkeypatch):
    import indexcalc.backends as backends

    monkeypatch.setitem(backends.KNOWN, "nolib", ("no_such_backend_module", "nolib"))
    with pytest.raises(BackendError, match=r'pip install "indexcalc\[nolib\]"'):
        ic.compile("y = x_i x_i", backend="nolib")


def test_arrays_of_two_libraries_are_refused():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    import jax.numpy as jnp
    import torch

    with pytest.raises(BackendError, match="several libraries"):
        ic.compile("y = x_i z_i")({"x": torch.ones(2), "z": jnp.ones(2)})


def test_torch_keeps_no_graph_and_the_tensors_dtype():
    torch = pytest.importorskip("torch")
    W = torch.tensor(rand(3, 4), dtype=torch.float32, requires_grad=True)
    value, grads = ic.compile("L = sum_i((W_ij x_j)^2)", wrt=["W"])({"W": W, "x": torch.ones(4, dtype=torch.float32)})
    assert value.dtype == torch.float32 and grads["W"].dtype == torch.float32
    assert not value.requires_grad and not grads["W"].requires_grad
    expected = 2 * (W.detach().numpy() @ np.ones(4))[:, None] * np.ones((3, 4))
    np.testing.assert_allclose(grads["W"].numpy(), expected, rtol=1e-5)


def test_dask_stays_lazy_until_asked():
    da = pytest.importorskip("dask.array")
    x = da.random.default_rng(0).uniform(-1, 1, size=(1000, 3), chunks=(250, 3))
    value, grads = ic.compile("p_n = sigma(x_nj w_j)\nL = -sum_n(y_n log(p_n) + (1 - y_n) log(1 - p_n))",
                              wrt=["w"])({"x": x, "y": (x[:, 0] > 0).astype(float), "w": np.zeros(3)})
    assert isinstance(value, da.Array) and isinstance(grads["w"], da.Array)
    assert np.isclose(value.compute(), 1000 * np.log(2))


def test_float64_on_jax_without_x64_is_refused():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(BackendError, match="jax_enable_x64"):
            ic.compile("y = x_i x_i", backend="jax")({"x": np.ones(3)})
    finally:
        jax.config.update("jax_enable_x64", True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_mask_reshaped_for_a_batched_product(backend):
    """Found by the property in CI: on dask, a causal mask (a constant of the plan) was a
    NumPy array, which dask's reshape refused in the Hessian's batched product."""
    from strategies import RouteCase

    text = ("q_kn = T1_kr T2_rn\nk_mn = T1_mr T3_rn\nS_km = 0.5 q_kn k_mn\n"
            "A_km = [m <= k] exp(S_km) / sum_u([u <= k] exp(S_ku))\no_kr = A_km T1_mr\nL = mean_kr(log(1 + o_kr^2))")
    case = RouteCase(text, "T3_ab", "T3_cd", {"T1": ((1, 3), "tensor"), "T2": ((3, 3), "tensor"),
                                               "T3": ((3, 3), "tensor")}, 2, True)
    arrays = case.arrays()
    for source, wrt in compiled_routes(case):
        value, grads = ic.compile(source, wrt=wrt)(arrays)
        got, got_grads = ic.compile(source, wrt=wrt, backend=backend)(on(backend, arrays))
        assert_same(got, value, "value")
        for k in wrt:
            assert_same(got_grads[k], grads[k], f"gradient by {k}")
