"""Which ADBC PostgreSQL driver reads and writes for dataferry, and whether it is optimized.

The PyPI wheels of ``adbc-driver-postgresql`` 1.9.0 to 1.13.0 ship a
``libadbc_driver_postgresql.so`` compiled without optimization (``-O0``): it reads and
writes correctly, but decoding binary COPY into Arrow costs the client about 3.5 times the
CPU of an optimized build (``select *`` of a 20-column table of 2,000,000 rows: 7.0 to
8.6 s against 2.0 to 2.3 s). conda-forge's package and a build from Apache's source with
``scripts/build-adbc-postgresql.sh`` are optimized. The 1.6 to 1.8 wheels were optimized
too, but their writer corrupts jsonb, numeric and ``interval[]`` values our sinks send.

Nothing in the library says how it was compiled, but an ``-O0`` build keeps out-of-line
copies of the C++ standard library's one-line accessors that an optimizing compiler
inlines everywhere, and their names stay in the library's symbol table. So
``is_optimized`` looks for the name of one of them, ``std::__uniq_ptr_impl<
adbcpq::PostgresCopyFieldReader>::_M_ptr() const`` (the owner of every column's decoder),
as bytes in the file: about 10 ms for the wheel's 10 MB, no process or ``nm`` needed. A
stripped ``-O0`` library (no symbol table) would pass for optimized; no release ships one.

``installed()`` finds the library where ``adbc_driver_postgresql`` loads it from, without
importing it (so ``ferry --version`` and the benches stay cheap).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import mmap
import sys
from dataclasses import dataclass
from pathlib import Path

DISTRIBUTION = "adbc-driver-postgresql"
PACKAGE = "adbc_driver_postgresql"

# ``nm`` (without -C) of a -O0 build lists it; optimized builds (1.6.0-1.8.0 wheels,
# conda-forge, a Release build of 1.13) have no ``__uniq_ptr_impl`` symbol at all.
UNOPTIMIZED_MARKER = (b"_ZNKSt15__uniq_ptr_implIN6adbcpq23PostgresCopyFieldReader"
                      b"ESt14default_deleteIS1_EE6_M_ptrEv")

FAST_READER_DOCS = "docs/connectors.md#a-faster-adbc-postgresql-driver"


@dataclass(frozen=True)
class DriverBuild:
    """The installed driver: its distribution's version, its library and how it was built.

    ``library`` is None when no file is found where ``adbc_driver_postgresql`` looks (the
    driver manager then searches the system's library path), and ``optimized`` is None
    when there is no library to look at.
    """

    version: str | None
    library: Path | None
    optimized: bool | None

    @property
    def build(self) -> str:
        """``optimized``, ``unoptimized (-O0)`` or ``unknown``, in the words users read."""
        if self.optimized is None:
            return "unknown"
        return "optimized" if self.optimized else "unoptimized (-O0)"

    def describe(self) -> str:
        """One line for a header or ``ferry --version``: version, build, path, and where
        to read about a faster one when this one is slow."""
        if self.version is None and self.library is None:
            return "ADBC PostgreSQL driver: not installed"
        text = (f"ADBC PostgreSQL driver {self.version or '(unknown version)'}, "
                f"{self.build} build, {self.library or 'library not found'}")
        if self.optimized is False:
            text += f" (decodes ~3x slower than an optimized build: {FAST_READER_DOCS})"
        return text


def is_optimized(library: Path) -> bool:
    """Whether ``library`` (a libadbc_driver_postgresql) was compiled with optimization:
    False when it holds the name of an accessor only ``-O0`` builds keep (module doc)."""
    with library.open("rb") as file:
        if library.stat().st_size == 0:
            return True  # nothing to map; an empty file is no -O0 build either
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as contents:
            return contents.find(UNOPTIMIZED_MARKER) < 0


def library_path() -> Path | None:
    """The library ``adbc_driver_postgresql`` loads, searched in its own order: inside the
    package (wheels, the sdist route), then ``sys.prefix``'s ``lib``/``bin`` (conda)."""
    name = f"lib{PACKAGE}"
    spec = importlib.util.find_spec(PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            bundled = Path(location) / f"{name}.so"
            if bundled.is_file():
                return bundled
    prefix = Path(sys.prefix)
    for candidate in (prefix / "lib" / f"{name}.so", prefix / "lib" / f"{name}.dylib",
                      prefix / "bin" / f"{PACKAGE}.dll"):
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def installed() -> DriverBuild:
    """The driver this Python environment uses (cached: it cannot change in a process)."""
    try:
        version: str | None = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    library = library_path()
    return DriverBuild(version, library, None if library is None else is_optimized(library))


if __name__ == "__main__":
    print(installed().describe())
