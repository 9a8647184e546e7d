"""The BLAS thread count, set through the environment before NumPy loads its BLAS: every
benchmark imports this first (it imports nothing that would load NumPy)."""

import os

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def set_blas_threads(n: int) -> None:
    for name in BLAS_ENV:
        os.environ[name] = str(n)
