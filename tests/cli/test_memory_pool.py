"""The ``ferry`` process allocates Arrow buffers with the C library's malloc unless the user
chose a pool (mimalloc's page churn cost the wide PostgreSQL bench ~0.3 s of CPU)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_POOL = ("import dataferry.cli.main, pyarrow; "
         "print(pyarrow.default_memory_pool().backend_name)")


@pytest.mark.parametrize(("given", "expected"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_arrow_memory_pool_defaults_to_malloc(given: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if given is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = given
    out = subprocess.run([sys.executable, "-c", _POOL], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == expected


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("4", "4")])
def test_numpy_starts_no_blas_threads(given: str | None, expected: str) -> None:
    """OpenBLAS's idle threads spun on the cores a run needs (1% of an ingest's CPU): the
    ``ferry`` process asks for none before numpy loads, unless the user set a number."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if given is not None:
        env["OPENBLAS_NUM_THREADS"] = given
    script = "import dataferry.cli.main, os; print(os.environ['OPENBLAS_NUM_THREADS'])"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == expected
