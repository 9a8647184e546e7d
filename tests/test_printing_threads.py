"""Printing from many threads at once (a web server's, dask's).

The printers need more of Python's stack than its default recursion limit allows for the
deepest derivatives, and that limit is the whole process's. Raising it for each print
and lowering it after changed it twice per call, under every other thread: threads
printing side by side restored one another's limit (it was left raised, at random), and
CPython 3.11 fails a compile in flight when the limit moves under it (SystemError: AST
constructor recursion depth mismatch; dask's threads planning blocks met it in CI). It
is now raised once, where it is lower, and left so."""

from __future__ import annotations

import ast
import sys
import threading

import pytest

import indexcalc as ic
from indexcalc.printing import PRINTING_STACK, latex, plain


@pytest.fixture
def low_limit():
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1500)
    yield
    sys.setrecursionlimit(before)


def test_threads_printing_raise_the_limit_once_and_never_lower_it(low_limit, monkeypatch):
    setrecursionlimit, changes, errors = sys.setrecursionlimit, [], []

    def counted(limit: int) -> None:
        changes.append(limit)
        setrecursionlimit(limit)

    monkeypatch.setattr(sys, "setrecursionlimit", counted)
    derivative = ic.diff("yhat_i = σ(w_ij x_j + b_i)\nloss = (yhat_j - y_j)(yhat_j - y_j)", "w_gh")

    def printing() -> None:
        try:
            for _ in range(50):
                plain(derivative), latex(derivative), derivative.einsum()
        except Exception as err:  # noqa: BLE001 - any error in a thread is the failure
            errors.append(err)

    def compiling() -> None:
        try:
            for _ in range(2000):
                ast.parse("a + b * c - (d + e) * f(g, h)")
        except Exception as err:  # noqa: BLE001
            errors.append(err)

    threads = [threading.Thread(target=printing) for _ in range(3)] + [threading.Thread(target=compiling)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert changes == [PRINTING_STACK], changes[:10]
    assert sys.getrecursionlimit() == PRINTING_STACK


def test_a_higher_limit_is_left_alone(low_limit):
    sys.setrecursionlimit(PRINTING_STACK + 1000)
    plain(ic.parse("y_i = w_ij x_j"))
    assert sys.getrecursionlimit() == PRINTING_STACK + 1000
