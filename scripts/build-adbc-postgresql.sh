#!/usr/bin/env bash
# Build Apache ADBC's PostgreSQL driver with optimization and install it into the active
# virtualenv, the way upstream's sdist supports (its setup.py copies the library named by
# ADBC_POSTGRESQL_LIBRARY into the package).
#
# Why: the PyPI wheels of adbc-driver-postgresql 1.9.0 to 1.13.0 ship a library compiled
# at -O0. It is correct, but decoding PostgreSQL's binary COPY costs about 3x the CPU of
# an optimized build (docs/connectors.md#a-faster-adbc-postgresql-driver).
#
#   scripts/build-adbc-postgresql.sh SOURCE_DIR [VERSION]
#
# SOURCE_DIR  an apache/arrow-adbc source tree of 1.13.0 or later (its release tag, or
#             the sources of its release tarball): it must hold c/CMakeLists.txt. Older
#             trees are refused: their writer loses NULLs inside arrays.
# VERSION     the adbc-driver-postgresql sdist to install around the library; by default
#             the version in c/cmake_modules/AdbcVersion.cmake. A -SNAPSHOT tree (main
#             between releases) has no sdist: name the release to install, e.g. 1.13.0.
#
# Needs: cmake (3.18+), a C++20 compiler (g++ 10+ or clang), libpq's headers (Debian and
# Ubuntu: libpq-dev; Fedora: libpq-devel), an active virtualenv with pip, and PyPI (or a
# mirror) for the sdist. The library links the system's libpq at run time (libpq5).
# Environment: BUILD_DIR (default SOURCE_DIR/build-release), JOBS (default: all cores).
set -euo pipefail

fail() { echo "build-adbc-postgresql: error: $*" >&2; exit 1; }
# The name of an accessor only a -O0 build keeps (see dataferry.connectors.postgres.driver).
unoptimized_marker=_ZNKSt15__uniq_ptr_implIN6adbcpq23PostgresCopyFieldReaderESt14default_deleteIS1_EE6_M_ptrEv

[[ $# -ge 1 && $# -le 2 ]] || fail "usage: $0 SOURCE_DIR [VERSION] (an apache/arrow-adbc source tree)"
source_dir=$(cd "$1" 2>/dev/null && pwd) || fail "no such directory: $1"
[[ -f "$source_dir/c/CMakeLists.txt" ]] \
    || fail "$source_dir has no c/CMakeLists.txt: give the root of an apache/arrow-adbc source tree"

command -v cmake >/dev/null || fail "cmake is not installed (Debian/Ubuntu: apt-get install cmake; or pip install cmake)"
cxx=${CXX:-$(command -v g++ || command -v clang++ || true)}
[[ -n "$cxx" ]] && command -v "$cxx" >/dev/null \
    || fail "no C++ compiler (g++ or clang++) found (Debian/Ubuntu: apt-get install g++), or set CXX"

libpq_headers=""
for dir in "$(pg_config --includedir 2>/dev/null || true)" \
           "$(pkg-config --variable=includedir libpq 2>/dev/null || true)" \
           /usr/include/postgresql /usr/include /usr/local/include /opt/homebrew/include; do
    if [[ -n "$dir" && -f "$dir/libpq-fe.h" ]]; then libpq_headers=$dir; break; fi
done
[[ -n "$libpq_headers" ]] \
    || fail "libpq's headers (libpq-fe.h) are not installed (Debian/Ubuntu: apt-get install libpq-dev; Fedora: dnf install libpq-devel)"

[[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]] \
    || fail "no active virtualenv: activate the one dataferry runs in (. .venv/bin/activate) first"
python="$VIRTUAL_ENV/bin/python"
"$python" -m pip --version >/dev/null 2>&1 || fail "$python has no pip"

version=${2:-$(sed -n 's/^set(ADBC_VERSION "\(.*\)")/\1/p' "$source_dir/c/cmake_modules/AdbcVersion.cmake" 2>/dev/null || true)}
[[ -n "$version" ]] || fail "cannot read the version from $source_dir/c/cmake_modules/AdbcVersion.cmake: pass it as VERSION"
[[ "$version" != *SNAPSHOT* ]] \
    || fail "$source_dir is a development snapshot ($version) with no sdist of its own: pass the release to install as VERSION (e.g. ${version%-SNAPSHOT})"

# Before 1.13.0 the COPY writer wrote a NULL inside an array as the element type's empty
# value ('' for text[], 00:00:00 for interval[]): dataferry's sink would corrupt such rows.
writer="$source_dir/c/driver/postgresql/copy/writer.h"
if [[ -f "$writer" ]] && grep -q "class PostgresCopyListFieldWriter" "$writer" \
    && ! sed -n '/^class PostgresCopyListFieldWriter/,/^};/p' "$writer" | grep -q ArrowArrayViewIsNull; then
    fail "$source_dir's PostgreSQL driver writes a NULL inside an array as an empty value (fixed in ADBC 1.13.0; $writer, PostgresCopyListFieldWriter): build 1.13.0 or later"
fi

build_dir=${BUILD_DIR:-$source_dir/build-release}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
mkdir -p "$build_dir"
echo "build-adbc-postgresql: building $source_dir (ADBC $version) in $build_dir with $cxx, $jobs jobs"
cmake -S "$source_dir/c" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
    -DADBC_DRIVER_POSTGRESQL=ON -DADBC_BUILD_TESTS=OFF \
    >"$build_dir/ferry-cmake.log" 2>&1 \
    || { tail -20 "$build_dir/ferry-cmake.log" >&2
         fail "cmake could not configure the build (above; all of it: $build_dir/ferry-cmake.log)"; }
cmake --build "$build_dir" --target adbc_driver_postgresql_shared -j "$jobs" \
    || fail "the build failed (above)"

library=$(find "$build_dir" -name 'libadbc_driver_postgresql.so' -print -quit)
[[ -n "$library" ]] || fail "the build made no libadbc_driver_postgresql.so under $build_dir"
library=$(readlink -f "$library")
if grep -q -a -F "$unoptimized_marker" "$library"; then
    fail "$library was built without optimization: is CMAKE_BUILD_TYPE overridden (CMAKE_BUILD_TYPE, CXXFLAGS=-O0)?"
fi

echo "build-adbc-postgresql: installing adbc-driver-postgresql==$version around $library into $VIRTUAL_ENV"
# --no-cache-dir: pip would otherwise reuse a wheel it built from this sdist before,
# with whatever library it held then.
ADBC_POSTGRESQL_LIBRARY="$library" "$python" -m pip install --quiet --no-cache-dir \
    --no-binary adbc-driver-postgresql --force-reinstall --no-deps "adbc-driver-postgresql==$version" \
    || fail "pip could not install adbc-driver-postgresql==$version from its sdist (above)"

installed=$("$python" -c 'import adbc_driver_postgresql as p; print(p._driver_path())')
if grep -q -a -F "$unoptimized_marker" "$installed"; then
    fail "$installed is still an unoptimized build: is another adbc_driver_postgresql first on sys.path?"
fi
echo "build-adbc-postgresql: done: $installed (optimized)"
