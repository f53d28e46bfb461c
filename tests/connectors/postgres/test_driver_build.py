"""The ADBC PostgreSQL driver detector, on real libraries: the one installed here, the
1.8.0 wheel's when it is around, and files with and without the -O0 marker.

``nm`` is the independent judge: a -O0 build defines ``std::__uniq_ptr_impl`` accessors,
an optimized one none (they are inlined), whatever the detector's byte search says.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import adbc_driver_postgresql
import pytest

from dataferry.connectors.postgres.driver import (
    UNOPTIMIZED_MARKER,
    DriverBuild,
    installed,
    is_optimized,
)
from tests.conftest import Result

# Unpacked by hand from PyPI's adbc_driver_postgresql-1.8.0 manylinux2014 wheel: the last
# optimized wheel (its writer corrupts jsonb and numeric, so it is only looked at here).
WHEEL_1_8_0 = Path("/tmp/adbcw1.8.0/adbc_driver_postgresql/libadbc_driver_postgresql.so")


def _nm_says_optimized(library: Path) -> bool:
    """No ``__uniq_ptr_impl`` symbol defined: what ``nm`` sees in an optimized build."""
    listed = subprocess.run(["nm", "--defined-only", str(library)], capture_output=True,
                            text=True, check=True).stdout
    return "__uniq_ptr_impl" not in listed


def test_installed_driver_is_the_one_adbc_loads_and_its_build_agrees_with_nm() -> None:
    driver = installed()
    assert driver.version == importlib.metadata.version("adbc-driver-postgresql")
    assert driver.library is not None
    assert driver.library.resolve() == Path(adbc_driver_postgresql._driver_path()).resolve()
    if shutil.which("nm") is None:
        pytest.skip("nm (binutils) is not installed: nothing independent to compare with")
    assert driver.optimized == _nm_says_optimized(driver.library)


def test_the_pypi_wheels_of_1_9_to_1_13_are_unoptimized() -> None:
    dist = importlib.metadata.distribution("adbc-driver-postgresql")
    tags = dist.read_text("WHEEL") or ""
    version = tuple(int(part) for part in dist.version.split(".")[:2])
    if "manylinux" not in tags or not (1, 9) <= version <= (1, 13):
        pytest.skip(f"the installed adbc-driver-postgresql {dist.version} is not a PyPI "
                    "manylinux wheel of 1.9 to 1.13 (built from source or by conda?)")
    driver = installed()
    assert driver.optimized is False
    assert "unoptimized (-O0)" in driver.describe()
    assert "docs/connectors.md#a-faster-adbc-postgresql-driver" in driver.describe()


@pytest.mark.skipif(not WHEEL_1_8_0.is_file(),
                    reason=f"{WHEEL_1_8_0} is absent (unpack PyPI's 1.8.0 manylinux wheel "
                           "into /tmp/adbcw1.8.0 to run this)")
def test_the_1_8_0_wheel_is_optimized() -> None:
    assert is_optimized(WHEEL_1_8_0) is True
    if shutil.which("nm"):
        assert _nm_says_optimized(WHEEL_1_8_0)


def test_marker_found_anywhere_in_a_file_means_unoptimized(tmp_path: Path) -> None:
    with_marker = tmp_path / "o0.so"
    # past mmap's first page and across no boundary in particular
    with_marker.write_bytes(b"\x7fELF" + b"\0" * 70_000 + UNOPTIMIZED_MARKER + b"\0tail")
    without = tmp_path / "o2.so"
    without.write_bytes(b"\x7fELF" + b"\0" * 70_000 + UNOPTIMIZED_MARKER[:-1] + b"\0tail")
    empty = tmp_path / "empty.so"
    empty.write_bytes(b"")
    assert is_optimized(with_marker) is False
    assert is_optimized(without) is True
    assert is_optimized(empty) is True


def test_description_of_each_build() -> None:
    library = Path("/x/libadbc_driver_postgresql.so")
    fast = DriverBuild("1.13.0", library, optimized=True).describe()
    assert fast == f"ADBC PostgreSQL driver 1.13.0, optimized build, {library}"
    slow = DriverBuild("1.13.0", library, optimized=False).describe()
    assert "unoptimized (-O0) build" in slow and "3x slower" in slow
    assert DriverBuild(None, None, None).describe() == "ADBC PostgreSQL driver: not installed"
    assert "unknown build, library not found" in DriverBuild("1.13.0", None, None).describe()


def test_ferry_version_names_the_driver_and_its_build(ferry: Callable[..., Result]) -> None:
    out = ferry("--version").out
    first, second = out.splitlines()[:2]
    assert first.startswith("ferry ")
    assert second == installed().describe()
