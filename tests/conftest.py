"""`INDEXCALC_MIRROR=jax` (or torch, dask) runs every compiled call of the tests on that
backend too: each call is made on NumPy and on the backend, the two compared (rtol 1e-6,
float64), and NumPy's returned, so a test suite written for NumPy checks the backend on
every program it compiles. Off unless the variable is set:

    INDEXCALC_MIRROR=torch python -m pytest -n 0 tests/test_compile.py tests/test_conv_plan.py
"""

from __future__ import annotations

import os
import warnings

# The suite runs one xdist worker per core, each on arrays of a few entries: one BLAS and one
# XLA thread per worker, not a pool each that fights the other worker for the cores (the
# suite without torch on two idle cores: 134.8 s with two threads each, 127.4 s with one).
# Set here, before NumPy or JAX is loaded, and inherited by the workers and the command-line
# runs the tests start; a value set by the caller wins.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import numpy as np

from indexcalc.compile import Compiled
from routes import to_numpy

MIRROR = os.environ.get("INDEXCALC_MIRROR")
MIRRORED = [0]  # calls compared


def _mirrored(call):
    def mirrored(self, arrays):
        value, grads = call(self, arrays)  # NumPy's answer (or its error: then the backend is not asked)
        if self.backend is None and isinstance(arrays, dict) and value.dtype == np.float64:
            twin = _twin(self)
            MIRRORED[0] += 1
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                got, got_grads = call(twin, arrays)
            for what, a, b in [("value", got, value)] + [(k, got_grads[k], grads[k]) for k in grads]:
                np.testing.assert_allclose(to_numpy(a), b, rtol=1e-6, atol=1e-9,
                                           err_msg=f"{MIRROR} backend, {what}, of {self.forward[-1]}")
        return value, grads
    return mirrored


if MIRROR:
    if MIRROR == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)

    def _twin(compiled: Compiled) -> Compiled:
        twin = Compiled(compiled.forward, compiled.backward, compiled.params, compiled.scales)
        twin.backend = MIRROR
        return twin

    Compiled.__call__ = _mirrored(Compiled.__call__)


def pytest_terminal_summary(terminalreporter):
    if MIRROR:
        terminalreporter.write_line(f"INDEXCALC_MIRROR={MIRROR}: {MIRRORED[0]} compiled calls compared with NumPy's")
