"""The BLAS thread count, set through the environment before NumPy loads its BLAS: every
benchmark imports this first (it imports nothing that would load NumPy)."""

import os

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def set_blas_threads(n: int) -> None:
    for name in BLAS_ENV:
        os.environ[name] = str(n)


def single_threaded() -> None:
    """One thread everywhere, before NumPy or JAX load: BLAS by environment, XLA by its
    flags, and the process on one core where the OS allows (timings on a shared machine
    swing by far more with threads than without)."""
    set_blas_threads(1)
    os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
