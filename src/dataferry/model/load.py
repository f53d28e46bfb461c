"""Load a model directory (YAML files and Python DSL files) into one ``Ecosystem``.

Loading never raises for bad content: every problem becomes a finding in the returned
``LoadedModel.report`` and the valid rest is still loaded, so ``ferry check`` can report
all problems at once. Only a missing directory or ``ferry.yaml`` raises ``UsageError``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from dataferry.errors import UsageError
from dataferry.model.findings import Path, Report
from dataferry.model.shape import shape, valid_name
from dataferry.model.spec import NAME_PATTERN, Ecosystem, EcosystemFile, Team, TeamFile
from dataferry.model.yamlfile import Mapping, YamlProblem
from dataferry.model.yamlvalues import Strings, parse_values

SECTIONS = ("sources", "transformers", "consumers")
_SKIP_DIRS = {"node_modules", "__pycache__", "site-packages"}


@dataclass
class LoadedModel:
    """A loaded model: the ecosystem (None if ferry.yaml is unusable) and the findings."""

    root: FsPath
    ecosystem: Ecosystem | None
    report: Report
    invalid: set[str] = field(default_factory=set)
    """References ("team.name", or "team.*") left out because they were invalid."""
    files: list[str] = field(default_factory=list)
    team_files: dict[str, list[str]] = field(default_factory=dict)


def find_model_dir(start: FsPath | None = None) -> FsPath:
    """The nearest directory at or above ``start`` (default: cwd) holding ``ferry.yaml``."""
    here = (start or FsPath.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "ferry.yaml").is_file():
            return directory
    raise UsageError(
        f"no ferry.yaml in {here} or any parent directory; pass --model DIR or run "
        "`ferry init` to create a model"
    )


PieceCache = dict[tuple[str, bytes], list["_TeamPiece"]]
"""Parsed team files by (path, content digest): ``--base`` reuses the unchanged ones."""


def _digest(data: bytes | OSError) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest() if isinstance(data, bytes) else b""


def _content(path: FsPath) -> bytes | OSError:
    try:
        return path.read_bytes()
    except OSError as exc:
        return exc


def load_model(root: FsPath, *, python: bool = True, cache: PieceCache | None = None) -> LoadedModel:
    """Load every model file under ``root``; see the module docstring.

    ``cache`` (shared between loads) skips parsing files whose content was seen before.
    """
    root = root.resolve()
    if not root.is_dir():
        raise UsageError(f"model directory {root} does not exist")
    if not (root / "ferry.yaml").is_file():
        raise UsageError(f"{root} has no ferry.yaml; run `ferry init {root}` to create one")
    report = Report()
    loaded = LoadedModel(root, None, report)
    eco_file = deployment_settings(_load_ecosystem(root, report))
    skip = (_skipped_dirs(root, eco_file.home, eco_file.store) if eco_file is not None
            else _skipped_dirs(root, ".ferry", None))
    pieces: list[_TeamPiece] = []
    yaml_files, py_files = _discover(root, skip)
    loaded.files = sorted(["ferry.yaml", *yaml_files, *py_files])
    contents = {rel: _content(root / rel) for rel in yaml_files}
    keys = {rel: (rel, _digest(contents[rel] if rel in contents else _content(root / rel)))
            for rel in (*yaml_files, *py_files)}
    cached = {rel for rel, key in keys.items() if cache is not None and key in cache}
    fresh: dict[str, list[_TeamPiece]] = {}
    strings = Strings()
    for rel in yaml_files:
        data = contents.pop(rel)
        if isinstance(data, bytes):
            report.locator.sources[rel] = data  # a finding's position is found in it
        if rel not in cached:
            piece = _load_team_file(rel, data, report, loaded, strings)
            fresh[rel] = [piece] if piece is not None else []
    to_run = [rel for rel in py_files if rel not in cached]
    if python and to_run:
        from dataferry.model.dslrun import run_dsl_files

        for rel in to_run:
            fresh[rel] = []
        for rel, raw in run_dsl_files(root, to_run, report):
            piece = _team_piece(rel, raw, report, loaded)
            if piece is not None:
                fresh[rel].append(piece)
    for rel in (*yaml_files, *(py_files if python else [])):
        if rel in cached and cache is not None:
            file_pieces = cache[keys[rel]]
            for piece in file_pieces:
                report.locator.register(("teams", piece.value.team), rel, piece.node)
        else:
            file_pieces = fresh.get(rel, [])
            if cache is not None and not any(f.file == rel for f in report.findings):
                cache[keys[rel]] = file_pieces
        pieces.extend(file_pieces)
    teams = _merge_teams(pieces, report, loaded)
    if eco_file is not None:
        loaded.ecosystem = Ecosystem(
            **{name: getattr(eco_file, name) for name in EcosystemFile.model_fields},
            teams=dict(sorted(teams.items())),
        )
    return loaded


def _read(rel: str, data: bytes | OSError, report: Report, strings: Strings | None = None
          ) -> Any:
    """The values of the file ``rel`` of content ``data`` (plain: ``Locator`` finds the
    positions of its findings); None when it cannot be read."""
    if isinstance(data, OSError):
        report.add_at("parse-error", f"cannot read the file: {data.strerror}", rel, None)
        return None
    try:
        document = parse_values(data, strings)
    except YamlProblem as problem:
        report.add_at("parse-error", problem.message, rel, problem.mark)
        return None
    for dup in document.duplicates:
        report.add_at(
            "duplicate-name",
            f"key {dup.key!r} appears twice in one mapping (first at line {dup.first[0]}); "
            "the first one is used",
            rel,
            dup.again,
        )
    if document.value is None:
        report.add_at("invalid-field", "the file is empty; nothing was loaded", rel, (1, 1),
                      severity="warning")
    return document.value


def _load_ecosystem(root: FsPath, report: Report) -> EcosystemFile | None:
    content = _content(root / "ferry.yaml")
    if isinstance(content, bytes):
        report.locator.sources["ferry.yaml"] = content
    raw = _read("ferry.yaml", content, report)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        report.add_at("invalid-field", "ferry.yaml must be a mapping (ecosystem: NAME, ...)",
                      "ferry.yaml", report.locator.position_in("ferry.yaml"))
        return None
    report.locator.register((), "ferry.yaml", _positioned(raw))
    for section in SECTIONS:
        if section in raw:
            report.add("misplaced-definition",
                       f"{section} belong to a team: define them in teams/<team>/*.yaml",
                       (section,), key=True)
    data = {k: v for k, v in raw.items() if k not in (*SECTIONS, "team", "teams")}
    if "team" in raw or "teams" in raw:
        report.add("misplaced-definition",
                   "teams are defined in teams/<team>/*.yaml, not in ferry.yaml",
                   ("team" if "team" in raw else "teams",), key=True)
    if not isinstance(data.get("ecosystem"), str):
        data.setdefault("ecosystem", None)
    shaped = shape(EcosystemFile, data, report, (), "ferry.yaml")
    if shaped.value is None and "ecosystem" in data:
        # Keep going with a placeholder name so the teams are still checked.
        data = {k: v for k, v in data.items() if k != "ecosystem"}
        shaped = shape(EcosystemFile, {**data, "ecosystem": "invalid"}, Report(), (), "")
    return shaped.value  # type: ignore[return-value]


DEPLOYMENT_VARIABLES = {"home": "FERRY_HOME", "store": "FERRY_STORE",
                        "metadata": "FERRY_METADATA", "mirror_size": "FERRY_MIRROR_SIZE"}
"""Environment variables that set ferry.yaml's ``home``, ``store``, ``metadata`` and
``mirror_size`` for this machine: one model in git, deployed with its own directories,
database and disk."""


def deployment_settings(eco: EcosystemFile | None) -> EcosystemFile | None:
    """``eco`` with the settings that ``FERRY_HOME``, ``FERRY_STORE`` and
    ``FERRY_METADATA`` give (non-empty) in place of ferry.yaml's."""
    given = _deployed()
    if "mirror_size" in given:
        from dataferry.store.mirror_cache import mirror_size

        mirror_size(given["mirror_size"])  # a usage error naming the variable
    return eco.model_copy(update=given) if eco is not None and given else eco


def _deployed() -> dict[str, str]:
    """The settings this machine's ``DEPLOYMENT_VARIABLES`` give (the non-empty ones)."""
    return {name: os.environ[variable] for name, variable in DEPLOYMENT_VARIABLES.items()
            if os.environ.get(variable)}


def model_skip_dirs(root: FsPath) -> set[FsPath]:
    """The directories under ``root`` that ``load_model`` does not look into for model
    files (the home and the store, from ferry.yaml and this machine's variables).

    Read from ferry.yaml's plain values, not validated: every run computes the model
    cache's key with this before it knows whether the cache holds the model, and
    validating the file as ``EcosystemFile`` built pydantic's validators of the whole
    ecosystem file (zones, platforms, defaults: 0.04 s of a run's start-up). A ``home``
    or ``store`` that is not a text counts as unset, as validation leaves it out."""
    root = root.resolve()
    raw = _read("ferry.yaml", _content(root / "ferry.yaml"), Report())
    if not isinstance(raw, dict):  # the model has errors: load_model skips .ferry only
        return _skipped_dirs(root, ".ferry", None)
    home, store = raw.get("home"), raw.get("store")
    given = _deployed()
    return _skipped_dirs(root, given.get("home", home if isinstance(home, str) else ".ferry"),
                         given.get("store", store if isinstance(store, str) else None))


def _skipped_dirs(root: FsPath, home: str | None, store: str | None) -> set[FsPath]:
    """The home and store directories; never ``teams/`` or a folder in it (teams would vanish)."""
    teams = (root / "teams").resolve()
    skip = set()
    for setting in (home, store):
        if setting and "://" not in setting and "\0" not in setting:  # NUL: not a path
            path = (root / setting).resolve()
            if path != teams and teams not in path.parents:
                skip.add(path)
    return skip


def _discover(root: FsPath, skip: set[FsPath]) -> tuple[list[str], list[str]]:
    yaml_files: list[str] = []
    py_files: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        here = FsPath(directory)
        dirnames[:] = sorted(
            d for d in dirnames
            if not d.startswith(".") and d not in _SKIP_DIRS
            and (here / d).resolve() not in skip
            and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(filenames):
            rel = (here / name).relative_to(root).as_posix()
            if rel == "ferry.yaml" or name.startswith("."):
                continue
            if name.endswith((".yaml", ".yml")):
                yaml_files.append(rel)
            elif name.endswith(".py") and is_dsl_file(here / name):
                py_files.append(rel)
    return yaml_files, py_files


def is_dsl_file(path: FsPath) -> bool:
    """A .py file is a model file when it imports the DSL (``dataferry.model``)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(1 << 16)
    except OSError:
        return False
    return b"dataferry.model" in head or b"from dataferry import model" in head


@dataclass
class _TeamPiece:
    file: str
    node: Mapping | None
    """The positioned values it was read from (a DSL file's); None: the file's content
    is in the locator's sources."""
    value: TeamFile
    dropped: list[Path]


def _positioned(raw: Any) -> Mapping | None:
    """``raw`` when it knows its positions (a DSL file's values; a YAML file's with
    anchors or merge keys), else None: the locator parses the file again for them."""
    return raw if isinstance(raw, Mapping) else None


def _load_team_file(rel: str, data: bytes | OSError, report: Report, loaded: LoadedModel,
                    strings: Strings) -> _TeamPiece | None:
    raw = _read(rel, data, report, strings)
    parts = rel.split("/")
    # An empty (or comment-only) file is no error and hides nothing: references into its
    # team are still checked.
    failed = not isinstance(raw, dict) if raw is not None else any(
        f.file == rel and f.severity == "error" for f in report.findings
    )
    if failed and len(parts) >= 3 and parts[0] == "teams":
        # The file's team is unknown, so treat its folder's team as partly invalid: no
        # follow-on "unknown team" findings for references to it.
        loaded.invalid.add(f"{parts[1]}.*")
    if raw is None:
        return None
    where = report.locator.position_in
    node = _positioned(raw)
    if not isinstance(raw, dict):
        report.add_at("invalid-field", "a team file must be a mapping (team: NAME, zone: ..., "
                      "sources: ...)", rel, where(rel))
        return None
    if "ecosystem" in raw:
        report.add_at("misplaced-definition", "ecosystem settings belong in ferry.yaml at the "
                      "model root", rel, where(rel, ("ecosystem",), key=True, node=node))
        return None
    if "team" not in raw:
        if any(s in raw for s in SECTIONS):
            report.add_at("invalid-field", "missing required key 'team' (the team that owns "
                          "these definitions)", rel, where(rel, node=node))
        else:
            report.add_at("invalid-field", "not a model file (no team: key); ignored", rel,
                          where(rel, node=node), severity="warning")
        return None
    return _team_piece(rel, raw, report, loaded)


def _team_piece(rel: str, raw: dict[str, Any], report: Report, loaded: LoadedModel
                ) -> _TeamPiece | None:
    """Shape one team file's values (``raw``: a YAML file's, or a DSL file's team, which
    knows its positions)."""
    team = raw.get("team")
    parts = rel.split("/")
    node = _positioned(raw)
    where = report.locator.position_in
    if not isinstance(team, str):
        report.add_at("invalid-field", f"team must be a name, got {team!r}", rel,
                      where(rel, ("team",), node=node))
        return None
    # An invalid name (``Marketing``) is reported with the valid one to use instead; its
    # folder is checked against that one, so no folder that is itself invalid is suggested.
    folder = team if re.fullmatch(NAME_PATTERN, team) else valid_name(team)
    if len(parts) < 3 or parts[0] != "teams" or parts[1] != folder:
        report.add_at(
            "misplaced-definition",
            f"team {team!r} is defined in {rel}; a team's files must be under "
            f"teams/{folder or '<team>'}/ (so ownership can be checked per path)"
            + (f"; name the team {folder!r}" if folder and folder != team else ""),
            rel, where(rel, ("team",), node=node),
        )
    at: Path = ("teams", team)
    report.locator.register(at, rel, node)
    for section in SECTIONS:
        entities = raw.get(section)
        if isinstance(entities, dict):
            for name in entities:
                report.locator.register((*at, section, name), rel, node, (section, name))
    here = report.locator.sharing()  # this file's positions: the team may have others
    here.register(at, rel, node)
    shaped = shape(TeamFile, raw, report, at, f"team {team}", here)
    for cut in shaped.dropped:
        _mark_invalid(loaded, team, raw, cut)
    if shaped.value is None:
        loaded.invalid.add(f"{team}.*")
        return None
    loaded.team_files.setdefault(team, []).append(rel)
    return _TeamPiece(rel, node, shaped.value, shaped.dropped)  # type: ignore[arg-type]


def _mark_invalid(loaded: LoadedModel, team: str, raw: dict[str, Any], cut: Path) -> None:
    """Remember the names of dropped entities, so references to them are not reported again."""
    if cut[:1] == ("sources",) and len(cut) == 2:
        source = raw.get("sources", {}).get(cut[1])
        datasets = source.get("datasets") if isinstance(source, dict) else None
        for name in datasets if isinstance(datasets, dict) else ():
            loaded.invalid.add(f"{team}.{name}")
    elif len(cut) >= 2:
        loaded.invalid.add(f"{team}.{cut[-1]}")
    else:
        loaded.invalid.add(f"{team}.*")


def _merge_teams(pieces: list[_TeamPiece], report: Report, loaded: LoadedModel) -> dict[str, Team]:
    by_team: dict[str, list[_TeamPiece]] = {}
    for piece in pieces:
        by_team.setdefault(piece.value.team, []).append(piece)
    teams: dict[str, Team] = {}
    for name, team_pieces in by_team.items():
        team = _merge_team(name, team_pieces, report)
        if team is None:
            loaded.invalid.add(f"{name}.*")
        else:
            teams[name] = team
    return teams


def _merge_team(name: str, pieces: list[_TeamPiece], report: Report) -> Team | None:
    header: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for piece in pieces:
        for key in ("zone", "owners", "description"):
            value = getattr(piece.value, key)
            if value is None:
                continue
            if key in header and header[key] != value:
                report.add_at(
                    "invalid-field",
                    f"team {name}: {key} is {value!r} here but {header[key]!r} in "
                    f"{origin[key]}; give it once, or the same in every file",
                    piece.file, report.locator.position_in(piece.file, (key,), node=piece.node),
                )
                continue
            if key not in header:
                header[key] = value
                origin[key] = piece.file
                report.locator.register(("teams", name, key), piece.file, piece.node, (key,))
    missing = [key for key in ("zone", "owners") if key not in header]
    for key in missing:
        report.add_at("invalid-field", f"team {name}: missing required key {key!r} (give it in "
                      "one of the team's files)", pieces[0].file,
                      report.locator.position_in(pieces[0].file, node=pieces[0].node))
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    seen: dict[str, tuple[str, str]] = {}  # dataset-namespace name -> (what, file)
    for piece in pieces:
        for section in SECTIONS:
            for entity, value in getattr(piece.value, section).items():
                if entity in sections[section]:
                    first = report.locator.file_of(("teams", name, section, entity))
                    report.add_at("duplicate-name",
                                  f"team {name}: {section[:-1]} {entity!r} is also defined "
                                  f"in {first}", piece.file, report.locator.position_in(
                                      piece.file, (section, entity), key=True,
                                      node=piece.node))
                    continue
                sections[section][entity] = value
                for dataset, what in _dataset_names(section, entity, value):
                    if dataset in seen:
                        other, other_file = seen[dataset]
                        report.add(
                            "duplicate-name",
                            f"team {name}: dataset {dataset!r} is defined twice ({what}, and "
                            f"{other} in {other_file}); datasets and transformers share one "
                            "namespace per team",
                            _dataset_path(name, section, entity, dataset), key=True,
                        )
                    else:
                        seen[dataset] = (what, piece.file)
    if missing:
        return None
    return Team(**header, **sections)


def _dataset_names(section: str, entity: str, value: Any) -> Iterator[tuple[str, str]]:
    if section == "sources":
        for dataset in value.datasets:
            yield dataset, f"in source {entity}"
    elif section == "transformers":
        yield entity, "as a transformer"


def _dataset_path(team: str, section: str, entity: str, dataset: str) -> Path:
    if section == "sources":
        return ("teams", team, "sources", entity, "datasets", dataset)
    return ("teams", team, section, entity)
