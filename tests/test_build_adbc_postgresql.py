"""scripts/build-adbc-postgresql.sh refuses, before building anything, what cannot work,
and says what to install or pass. (The build itself takes minutes of two cores: it was
run by hand on apache/arrow-adbc, see docs/performance.md.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "scripts" / "build-adbc-postgresql.sh"


def _tree(root: Path, version: str) -> Path:
    """The files of an arrow-adbc tree the script reads before it builds."""
    (root / "c" / "cmake_modules").mkdir(parents=True)
    (root / "c" / "CMakeLists.txt").write_text("project(adbc)\n")
    (root / "c" / "cmake_modules" / "AdbcVersion.cmake").write_text(
        f'set(ADBC_VERSION "{version}")\n')
    return root


def _tools(bin_dir: Path, *names: str) -> str:
    """A PATH holding only ``names`` (links to the real ones): to hide cmake or g++."""
    bin_dir.mkdir()
    for name in ("bash", "env", "sed", "nproc", "find", "readlink", "grep", *names):
        found = shutil.which(name)
        if found:
            (bin_dir / name).symlink_to(found)
    return str(bin_dir)


def _run(*args: str | Path, path: str | None = None, venv: str | None = None,
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CXX")}
    if path is not None:
        env["PATH"] = path
    if venv is not None:
        env["VIRTUAL_ENV"] = venv
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run([bash, str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=60)


def _refused(tree: Path, venv: str | None = sys.prefix) -> str:
    """Run the script on ``tree``; it must refuse (exit 1) before building anything.
    Returns what it said. Skips where cmake or a compiler is missing: it stops there
    first."""
    done = _run(tree, venv=venv)
    if "is not installed" in done.stderr or "no C++ compiler" in done.stderr:
        pytest.skip("this machine has no cmake, C++ compiler or libpq headers: the script "
                    "stops there first")
    assert done.returncode == 1, done
    assert not (tree / "build-release").exists()
    return done.stderr


def test_usage_and_a_directory_that_is_not_arrow_adbc(tmp_path: Path) -> None:
    usage = _run()
    assert usage.returncode == 1 and "usage:" in usage.stderr and "SOURCE_DIR" in usage.stderr
    missing = _run(tmp_path / "nowhere")
    assert missing.returncode == 1 and "no such directory" in missing.stderr
    not_adbc = _run(tmp_path)
    assert not_adbc.returncode == 1
    assert "has no c/CMakeLists.txt" in not_adbc.stderr and "arrow-adbc" in not_adbc.stderr


def test_missing_cmake_or_compiler_is_named_with_what_to_install(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "src", "1.13.0")
    no_cmake = _run(tree, path=_tools(tmp_path / "bin1"))
    assert no_cmake.returncode == 1
    assert "cmake is not installed" in no_cmake.stderr and "apt-get install cmake" in no_cmake.stderr
    if shutil.which("cmake"):
        no_cxx = _run(tree, path=_tools(tmp_path / "bin2", "cmake"))
        assert no_cxx.returncode == 1 and "no C++ compiler" in no_cxx.stderr


def test_it_installs_only_into_an_active_virtualenv(tmp_path: Path) -> None:
    assert "no active virtualenv" in _refused(_tree(tmp_path / "src", "1.13.0"), venv=None)


def test_a_snapshot_tree_needs_the_release_to_install_named(tmp_path: Path) -> None:
    said = _refused(_tree(tmp_path / "src", "1.13.0-SNAPSHOT"))
    assert "development snapshot (1.13.0-SNAPSHOT)" in said
    assert "pass the release to install as VERSION (e.g. 1.13.0)" in said


def test_a_tree_whose_writer_loses_nulls_in_arrays_is_refused(tmp_path: Path) -> None:
    """Before 1.13.0 ADBC wrote a NULL element of a text[] as '' and of an interval[] as
    00:00:00 (tests/connectors/postgres/test_types_round_trip.py caught it)."""
    tree = _tree(tmp_path / "src", "1.12.0")
    writer = tree / "c" / "driver" / "postgresql" / "copy" / "writer.h"
    writer.parent.mkdir(parents=True)
    writer.write_text("template <bool IsFixedSize>\n"
                      "class PostgresCopyListFieldWriter : public PostgresCopyFieldWriter {\n"
                      "    for (auto i = start; i < end; ++i) {\n"
                      "      NANOARROW_RETURN_NOT_OK(child_->Write(tmp.get(), i, error));\n"
                      "    }\n};\n")
    said = _refused(tree)
    assert "writes a NULL inside an array as an empty value" in said
    assert "build 1.13.0 or later" in said
