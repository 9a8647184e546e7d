"""The compiled call's shortcuts keep its meaning: a call with the last call's shapes
reuses its plan, any other still gets the full checks; a plan that writes into its own
intermediates gives the numbers of one that does not, and never touches the caller's
arrays."""

import importlib

import numpy as np
import pytest

import indexcalc as ic
import indexcalc.emit as emit_module
import indexcalc.plan as plan_module

compile_module = importlib.import_module("indexcalc.compile")  # ic.compile is the function

MLP = """h_ni = sigma(W1_ij x_nj + b1_i)
o_nk = sigma(W2_kh h_nh + b2_k)
loss = mean_n((o_nk - y_nk)(o_nk - y_nk))"""
WRT = ["W1", "b1", "W2", "b2"]


def _arrays(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 3)), "y": rng.random((n, 2)), "W1": rng.standard_normal((4, 3)),
            "b1": rng.standard_normal(4), "W2": rng.standard_normal((2, 4)), "b2": rng.standard_normal(2)}


def _error(f, arrays):
    with pytest.raises(ic.IndexCalcError) as err:
        f(arrays)
    return type(err.value), str(err.value)


def test_a_wrong_shape_after_a_good_call_is_the_error_a_first_call_gives():
    f = ic.compile(MLP, wrt=WRT)
    good = _arrays()
    f(good)
    bad = {**good, "W2": np.ones((2, 5))}
    assert _error(f, bad) == _error(ic.compile(MLP, wrt=WRT), bad)
    assert _error(f, bad)[0] is ic.ShapeError
    f(good)  # and the good shapes still run
    assert f.plan_count == 1


def test_a_new_batch_size_or_type_after_a_call_is_planned_for_itself():
    f = ic.compile(MLP, wrt=WRT)
    for arrays in (_arrays(5), _arrays(7), {k: v.astype(np.float32) for k, v in _arrays(7).items()}, _arrays(5)):
        value, grads = f(arrays)
        assert value.dtype == arrays["x"].dtype
        np.testing.assert_allclose(value, ic.evaluate(MLP, arrays), rtol=1e-5 if value.dtype == np.float32 else 1e-12)
        assert grads["W1"].shape == arrays["W1"].shape
    assert f.plan_count == 3


def test_writing_in_place_gives_the_same_bits_and_leaves_the_inputs_alone(monkeypatch):
    arrays = _arrays(6, seed=3)
    before = {k: v.copy() for k, v in arrays.items()}
    f = ic.compile(MLP, wrt=WRT)
    value, grads = f(arrays)
    assert "np.multiply(" in f._last.source and "_sigma_into(" in f._last.source  # the rewrite did happen
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k])
    monkeypatch.setattr(emit_module, "in_place", lambda steps, outputs: list(steps))
    g = ic.compile(MLP, wrt=WRT)
    plain_value, plain_grads = g(arrays)
    assert "_sigma_into(" not in g._last.source
    assert value == plain_value
    for name in WRT:
        np.testing.assert_array_equal(grads[name], plain_grads[name])
    value2, grads2 = f(arrays)  # the second call (the shortcut) again
    assert value2 == value and all(np.array_equal(grads2[k], grads[k]) for k in WRT)


def test_other_arrays_after_a_numpy_call_take_the_full_path():
    f = ic.compile(MLP, wrt=WRT)
    arrays = _arrays()
    value, grads = f(arrays)
    listed = {**arrays, "x": arrays["x"].tolist()}  # a list: converted as evaluate reads it
    assert f(listed)[0] == value
    f.backend = "dask"  # a backend chosen after a NumPy call is the one the next call runs on
    pytest.importorskip("dask")
    lazy, _ = f(arrays)
    assert type(lazy).__module__.startswith("dask")
    np.testing.assert_allclose(np.asarray(lazy.compute()), value, rtol=1e-12)


@pytest.mark.parametrize("library", ["jax", "torch"])
def test_a_backends_arrays_alike_reuse_the_last_plan_and_others_take_the_full_path(library):
    """The last call's check on another library's arrays: same type, shapes, element
    type and device run its plan as they are; anything else is planned, converted and
    checked as a first call would be."""
    if library == "jax":
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        mine = lambda a: jax.numpy.asarray(a)  # noqa: E731
    else:
        torch = pytest.importorskip("torch")
        mine = torch.from_numpy
    f = ic.compile(MLP, wrt=WRT)
    arrays = _arrays()
    expected, expected_grads = f(arrays)
    given = {**{k: mine(v) for k, v in arrays.items()}, "note": "not read"}
    for _ in range(2):  # the second call is the checked one
        value, grads = f(given)
        np.testing.assert_allclose(np.asarray(value), expected, rtol=1e-12)
        for k in WRT:
            np.testing.assert_allclose(np.asarray(grads[k]), expected_grads[k], rtol=1e-12)
    assert f._fast is not None and f.plan_count == 2
    assert f._fast(given) is not compile_module._OTHER  # the check passes the backend's own arrays
    mixed = {**given, "x": arrays["x"]}  # a NumPy array among them: converted, the same numbers
    np.testing.assert_allclose(np.asarray(f(mixed)[0]), expected, rtol=1e-12)
    single = {k: mine(v.astype(np.float32)) for k, v in _arrays(7).items()}
    value, _ = f(single)
    assert str(value.dtype).endswith("float32")
    np.testing.assert_allclose(np.asarray(value), f(_arrays(7))[0], rtol=1e-5)
    f(given)
    bad = {**given, "W2": mine(np.ones((2, 5)))}
    assert _error(f, bad) == _error(ic.compile(MLP, wrt=WRT), bad)


@pytest.mark.parametrize("text, shapes", [
    ("y_ni = tanh(W_ij x_nj + b_i)", {"W": (3, 2), "x": (5, 2), "b": (3,)}),
    ("y = mean_n(x_nk x_nk)", {"x": (4, 3)}),
    ("y_ij = x_i z_j [j <= i]", {"x": (3,), "z": (3,)}),
    ("y_i = x_ij δ_jk z_k", {"x": (2, 3), "z": (3,)}),  # a δ: infer_sizes' own
    ("y_i = W_ij x_j", {"W": (2, 3), "x": (4,)}),  # sizes that disagree: infer_sizes' error
    ("y = mean_n(x_n)", {"x": (0,)}),  # a mean over nothing: infer_sizes' error
])
def test_the_plans_own_size_inference_is_infer_sizes_or_leaves_it_to_it(text, shapes):
    from indexcalc.indices import infer_sizes

    eq = ic.parse(text)
    fixed = frozenset(eq.lhs.all_indices)
    try:
        expected = infer_sizes(eq.rhs, shapes, fixed, {})
    except ic.ShapeError:
        expected = None
    plain = plan_module._plain_sizes(eq.rhs, shapes, {})
    assert plain is None or plain == expected
    if "W_ij" in text and "tanh" in text:
        assert plain == expected  # the common line is answered here


def test_jax_arrays_of_a_new_shape_are_traced_once_each_and_never_refused(monkeypatch):
    """On jax arrays the call is one jitted function per program, which picks the plan for
    the traced shapes: batches of 5 and 7 rows, alternating, give the NumPy plan's numbers,
    each shape traced (planned) once, and the next call's check asks only that its inputs
    are jax arrays."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    traced = []
    run_plan = compile_module.Compiled.run_plan
    monkeypatch.setattr(compile_module.Compiled, "run_plan",
                        lambda self, *a, **k: traced.append(1) or run_plan(self, *a, **k))
    f = ic.compile(MLP, wrt=WRT)
    batches = {n: _arrays(n, seed=n) for n in (5, 7)}
    mine = {n: {k: jax.numpy.asarray(v) for k, v in arrays.items()} for n, arrays in batches.items()}
    for n in (5, 7, 5, 7, 5):
        value, grads = f(mine[n])
        want, want_grads = ic.compile(MLP, wrt=WRT)(batches[n])
        np.testing.assert_allclose(np.asarray(value), want, rtol=1e-12)
        for k in WRT:
            np.testing.assert_allclose(np.asarray(grads[k]), want_grads[k], rtol=1e-12)
    assert len(traced) == 2 and f.plan_count == 2
    assert f._fast(mine[7]) is not compile_module._OTHER
    assert f._fast({**mine[5], "x": batches[5]["x"]}) is compile_module._OTHER  # a NumPy array: the full path
