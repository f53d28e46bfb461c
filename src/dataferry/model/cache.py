"""A cache of the checked model, so that ``ferry plan`` (``apply``, ``run``, ``up``,
``serve``, the user commands) does not parse and check again a model that was checked
unchanged (at 100,000 datasets: ~30 s of loading and checking, against ~2 s to read the
cache).

**What is kept.** The typed model (``Ecosystem``), the findings, and what loading
recorded (files, teams' files, invalid references), written by ``ferry check`` and by
the first command that checks the model after a change. Not the positioned YAML trees:
a command that starts from the cache cannot add a finding at a line (none needs to: the
whole model was checked, ``sql`` included). ``ferry run`` checks all but the SQL of the
jobs it does not run; it keeps that as an entry *without SQL* (its digest is the key's
with a suffix), which only another run reads (it checks the SQL of its own jobs) and
which any wholly checked entry of the same files replaces: an unchanged model is loaded
and checked once, not on every run (a tenth of a second of every run's start-up).

**When it is used.** Only when its key is the key of the model now: a digest (BLAKE3) of
every model file (``ferry.yaml``, every ``.yaml``/``.yml``/``.py``/``.sql`` file where
``load_model`` looks, so Python DSL files, the modules they and Python transformers
import and ``sql_file`` bodies), of the ``sql_file`` bodies anywhere else, of
``FERRY_DSL_TIMEOUT`` and of which deployment variables (``FERRY_HOME``, ...) are set,
with the model's path, the cache format, the Python version, the versions of the
libraries whose answers a check depends on (pydantic, PyYAML, DuckDB, sqlglot) and a
digest of dataferry's own code (an editable install changes without a new version).
The deployment variables' values are not in the key nor in the file (``FERRY_METADATA``
may hold a password): they are applied again on every read, as ``load_model`` does.

**Where, and why it is safe.** Outside the model directory, which a pull request can
change: ``FERRY_CACHE_DIR``, else ``$XDG_CACHE_HOME/dataferry``, else
``~/.cache/dataferry``; a directory made private (0700), one file per model directory,
written atomically (a temporary file renamed over the entry). The entry is a pickle, so
it is read only when the directory and the file belong to this user, nobody else can
write them, and neither is inside the model directory; the unpickler accepts dataferry's,
pydantic's and a few standard classes only. Anything else (another owner, a torn or
corrupt file, an old format) is a miss: the model is checked again and the entry
rewritten. ``FERRY_MODEL_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle
import re
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import blake3
from pydantic import BaseModel

from dataferry.model.findings import Finding, Report
from dataferry.model.load import DEPLOYMENT_VARIABLES, LoadedModel, deployment_settings
from dataferry.model.spec import Ecosystem, Transformer

FORMAT = b"dataferry checked model 1\n"
"""The entry's first bytes: its format (a new layout changes the number)."""
SWITCH = "FERRY_MODEL_CACHE"
DIRECTORY = "FERRY_CACHE_DIR"
KEEP = 16
"""Entries kept (the most recently used): one per model directory used on this machine."""
_SUFFIXES = (".yaml", ".yml", ".py", ".sql")
_SKIP_DIRS = {"node_modules", "__pycache__", "site-packages"}
_LIBRARIES = ("pydantic", "pydantic-core", "pyyaml", "duckdb", "sqlglot")
_ALLOWED_MODULES = ("dataferry.", "pydantic.", "pydantic_core.")
_ALLOWED_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "object"),
    ("collections", "OrderedDict"), ("datetime", "date"), ("datetime", "datetime"),
    ("datetime", "time"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("decimal", "Decimal"), ("pathlib", "PosixPath"),
}
"""Classes from elsewhere that a model's values may hold (only classes are accepted)."""


def enabled() -> bool:
    """Whether commands may use the cache (``FERRY_MODEL_CACHE`` is not 0/off/false/no)."""
    return os.environ.get(SWITCH, "").strip().lower() not in ("0", "off", "false", "no")


def cache_directory() -> Path:
    """Where the entries live: ``FERRY_CACHE_DIR``, ``$XDG_CACHE_HOME/dataferry`` or
    ``~/.cache/dataferry``."""
    given = os.environ.get(DIRECTORY)
    if given:
        return Path(given).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return (base / "dataferry").resolve()


@dataclass(frozen=True)
class ModelKey:
    """The key of a model directory's files as they are now (see the module docstring)."""

    root: Path
    digest: bytes


def model_key(root: Path) -> ModelKey:
    """The key of the model at ``root`` (resolved): cheap, one read of each model file."""
    from dataferry.model.load import model_skip_dirs

    root = root.resolve()
    hasher = blake3.blake3(_environment())
    hasher.update(os.fsencode(root) + b"\0")
    for variable in DEPLOYMENT_VARIABLES.values():  # which are set; never their values
        hasher.update(b"1" if os.environ.get(variable) else b"0")
    hasher.update(os.environ.get("FERRY_DSL_TIMEOUT", "").encode() + b"\0")
    for relative in _model_files(root, model_skip_dirs(root)):
        hasher.update(relative.encode() + b"\0" + _file_digest(root / relative))
    return ModelKey(root, hasher.digest())


def read_cached(key: ModelKey, *, sql: bool) -> tuple[LoadedModel, bool] | None:
    """The model of ``key`` from the cache and whether its SQL was checked, or None (off,
    missing, stale, not safe to read; or, with ``sql``, an entry without SQL)."""
    path = _entry_path(key.root)
    if path is None:
        return None
    try:
        with _open_private(path) as handle:
            if handle.read(len(FORMAT)) != FORMAT:
                return None
            digest = handle.read(32)
            if digest not in (key.digest, *(() if sql else (_without_sql(key),))):
                return None
            entry = _Unpickler(handle).load()
    except Exception:  # unreadable, torn, another format: a miss, checked again
        return None
    if not isinstance(entry, _Entry) or any(
            _file_digest(key.root / relative) != digest
            for relative, digest in entry.bodies.items()):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: kept when older entries are pruned
    return entry.loaded(key.root), digest == key.digest


def write_checked(key: ModelKey, loaded: LoadedModel, *, sql: bool = True) -> None:
    """Keep ``loaded`` (just loaded and wholly checked, ``sql`` included; without
    ``sql``: all but the checks that parse or bind SQL) under ``key``, the key computed
    before it was loaded: if a file changed meanwhile, nothing is kept (what was read may
    mix both contents). An entry without SQL never replaces a wholly checked one of the
    same key. A cache that cannot be written is no error."""
    path = _entry_path(key.root)
    if path is None or _holds(path, key, sql=sql) or model_key(key.root) != key:
        return
    entry = _Entry.of(loaded)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(path.parent.stat()):
            return
        data = io.BytesIO()
        data.write(FORMAT + (key.digest if sql else _without_sql(key)))
        _Pickler(data, pickle.HIGHEST_PROTOCOL).dump(entry)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".writing-")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data.getbuffer())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _prune(path.parent)
    except OSError:
        return


@dataclass
class _Entry:
    """What an entry holds: a ``LoadedModel`` without its positioned YAML trees."""

    ecosystem: Ecosystem | None
    findings: list[Finding]
    invalid: set[str]
    files: list[str]
    team_files: dict[str, list[str]]
    bodies: dict[str, bytes]
    """``sql_file`` bodies outside the files the key covers, with their digests."""

    @classmethod
    def of(cls, loaded: LoadedModel) -> _Entry:
        ecosystem = loaded.ecosystem
        if ecosystem is not None:  # this machine's settings are applied again on reading
            given = [name for name, variable in DEPLOYMENT_VARIABLES.items()
                     if os.environ.get(variable)]
            ecosystem = ecosystem.model_copy(update={
                name: Ecosystem.model_fields[name].default for name in given})
        bodies = {relative: _file_digest(loaded.root / relative)
                  for relative in _sql_files(loaded) if not relative.endswith(_SUFFIXES)}
        return cls(ecosystem, list(loaded.report.findings), set(loaded.invalid),
                   list(loaded.files), dict(loaded.team_files), bodies)

    def loaded(self, root: Path) -> LoadedModel:
        ecosystem = deployment_settings(self.ecosystem)
        assert ecosystem is None or isinstance(ecosystem, Ecosystem)
        return LoadedModel(root, ecosystem, Report(findings=self.findings),
                           invalid=self.invalid, files=self.files, team_files=self.team_files)


class _Pickler(pickle.Pickler):
    """Pickles the model's pydantic objects as their fields (``_spec``), and one set of
    field names for all frozen objects that were given the same fields: a third faster to
    read than pydantic's own ``__getstate__``/``__setstate__`` (a million columns at
    100,000 datasets). Sharing is safe only where nothing adds to the set in place:
    pydantic does on assignment, which a frozen model refuses first, and ``model_copy``
    copies the set before adding the updated names."""

    def __init__(self, file: BinaryIO, protocol: int) -> None:
        super().__init__(file, protocol)
        self.field_sets: dict[frozenset[str], set[str]] = {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, BaseModel) and obj.__pydantic_extra__ is None \
                and obj.__pydantic_private__ is None:
            fields_set = obj.__pydantic_fields_set__
            if obj.model_config.get("frozen"):
                fields_set = self.field_sets.setdefault(frozenset(fields_set), fields_set)
            return _spec, (type(obj), obj.__dict__, fields_set)
        return NotImplemented


_new = object.__new__
_set = object.__setattr__


def _spec(cls: type[BaseModel], fields: dict[str, Any], fields_set: set[str]) -> BaseModel:
    """A pydantic object as it was pickled (not validated again: it was, when loaded)."""
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        raise pickle.UnpicklingError(f"{cls!r} is not a model class")
    made = _new(cls)
    _set(made, "__dict__", fields)
    _set(made, "__pydantic_fields_set__", fields_set)
    _set(made, "__pydantic_extra__", None)
    _set(made, "__pydantic_private__", None)
    return made


class _Unpickler(pickle.Unpickler):
    """Only the classes a checked model is made of, and ``_spec`` (defence in depth:
    the file is also only read from a private directory)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, "_spec"):
            return _spec
        if module.startswith(_ALLOWED_MODULES) or (module, name) in _ALLOWED_GLOBALS:
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checked model")


def _sql_files(loaded: LoadedModel) -> list[str]:
    """Every transformer's ``sql_file``, relative to the model directory."""
    if loaded.ecosystem is None:
        return []
    return sorted({f"teams/{team_name}/{spec.sql_file}"
                   for team_name, team in loaded.ecosystem.teams.items()
                   for spec in team.transformers.values()
                   if isinstance(spec, Transformer) and spec.sql_file is not None})


@functools.cache
def _environment() -> bytes:
    """The cache format, Python, the libraries checks depend on, and dataferry's code
    (once per process)."""
    import dataferry

    hasher = blake3.blake3(FORMAT + sys.version.encode() + b"\0")
    versions = _installed_versions()
    for library in _LIBRARIES:
        hasher.update(f"{library}={versions.get(_normalized(library), '')}\0".encode())
    package = Path(dataferry.__file__).parent
    for path in sorted(_python_files(package)):
        hasher.update(path.relative_to(package).as_posix().encode() + b"\0")
        hasher.update(_file_digest(path))
    return hasher.digest()


def _installed_versions() -> dict[str, str]:
    """The versions of ``_LIBRARIES`` installed where ``import`` finds them: the name of
    the first ``NAME-VERSION.dist-info`` (or ``.egg-info``) directory of each on
    ``sys.path``, as ``importlib.metadata`` finds it. Read from the directory names:
    importing ``importlib.metadata`` and asking it was 0.02 s of every run's start-up."""
    wanted = {_normalized(library) for library in _LIBRARIES}
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, dot, suffix = name.rpartition(".")
            if not dot or suffix not in ("dist-info", "egg-info"):
                continue
            project, _, version = stem.partition("-")
            project = _normalized(project)
            if project in wanted and project not in found:
                found[project] = version
    return found


def _normalized(project: str) -> str:
    """A project's name as PEP 503 compares them (``PyYAML`` = ``pyyaml``,
    ``pydantic_core`` = ``pydantic-core``)."""
    return re.sub(r"[-_.]+", "-", project).lower()


def _python_files(package: Path) -> list[Path]:
    """The ``.py`` files under ``package`` (``os.walk``: a sixth of ``Path.rglob``'s time)."""
    found = []
    for directory, dirnames, filenames in os.walk(package):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        found += [Path(directory, name) for name in filenames if name.endswith(".py")]
    return found


def _model_files(root: Path, skip: set[Path]) -> list[str]:
    """The files the key covers: those where ``load_model`` looks for model files
    (hidden folders, virtual environments, the home and the store left out), with the
    suffixes a model, its Python and its SQL use."""
    found = []
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and d not in _SKIP_DIRS
            and (here / d).resolve() not in skip
            and not (here / d / "pyvenv.cfg").exists()
        )
        relative = here.relative_to(root).as_posix()
        for name in sorted(filenames):
            if name.endswith(_SUFFIXES) and not name.startswith("."):
                found.append(name if relative == "." else f"{relative}/{name}")
    return found


def _file_digest(path: Path) -> bytes:
    """BLAKE3 of a file's bytes; a fixed marker for a file that cannot be read."""
    try:
        return blake3.blake3(path.read_bytes()).digest()
    except OSError:
        return b"\0" * 32


def _entry_path(root: Path) -> Path | None:
    """The entry of model directory ``root``; None when the cache is off or would be
    inside the model directory (a pull request could write it)."""
    if not enabled():
        return None
    try:
        directory = cache_directory()
    except (RuntimeError, KeyError, OSError):  # no home directory (a container's odd user)
        return None
    if directory == root or root in directory.parents:
        return None
    return directory / f"{blake3.blake3(os.fsencode(root)).hexdigest(length=16)}.checked"


def _holds(path: Path, key: ModelKey, *, sql: bool) -> bool:
    """Whether the entry at ``path`` is one of ``key`` already (a check run again), as
    checked as ``sql`` says or more."""
    try:
        with _open_private(path) as handle:
            header = handle.read(len(FORMAT) + 32)
    except OSError:
        return False
    return header == FORMAT + key.digest or (
        not sql and header == FORMAT + _without_sql(key))


def _without_sql(key: ModelKey) -> bytes:
    """The digest an entry of ``key`` without SQL checks is written under."""
    return blake3.blake3(key.digest + b"\0without sql").digest()


def _private(status: os.stat_result) -> bool:
    """Owned by this user and writable by nobody else."""
    return status.st_uid == os.geteuid() and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@contextlib.contextmanager
def _open_private(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading if it and its directory are private regular files
    (a symbolic link is not followed); raises ``OSError`` otherwise."""
    if not _private(path.parent.stat()):
        raise PermissionError(f"{path.parent} is not private")
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or not _private(status):
            raise PermissionError(f"{path} is not a private file")
        yield handle


def _prune(directory: Path) -> None:
    """Remove all but the ``KEEP`` most recently used entries (and abandoned writes)."""
    entries = []
    for path in directory.iterdir():
        with contextlib.suppress(OSError):
            if path.name.endswith(".checked"):
                entries.append((path.stat().st_mtime, path))
            elif path.name.startswith(".writing-") and \
                    path.stat().st_mtime < time.time() - 3600:  # a writer that died
                path.unlink()
    for _, path in sorted(entries, reverse=True)[KEEP:]:
        path.unlink(missing_ok=True)
