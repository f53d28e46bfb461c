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
from dataferry.model.findings import Locator, Path, Report
from dataferry.model.shape import shape, valid_name
from dataferry.model.spec import NAME_PATTERN, Ecosystem, EcosystemFile, Team, TeamFile
from dataferry.model.yamlfile import Mapping, YamlProblem, parse_yaml

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


def _digest(path: FsPath) -> bytes:
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
    except OSError:
        return b""


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
    skip = _skipped_dirs(root, eco_file)
    pieces: list[_TeamPiece] = []
    yaml_files, py_files = _discover(root, skip)
    loaded.files = sorted(["ferry.yaml", *yaml_files, *py_files])
    keys = {rel: (rel, _digest(root / rel)) for rel in (*yaml_files, *py_files)}
    cached = {rel for rel, key in keys.items() if cache is not None and key in cache}
    fresh: dict[str, list[_TeamPiece]] = {}
    for rel in yaml_files:
        if rel not in cached:
            piece = _load_team_file(root, rel, report, loaded)
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
                report.locator.register(("teams", piece.value.team), rel, piece.raw)
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


def _read(root: FsPath, rel: str, report: Report) -> Any:
    try:
        data = (root / rel).read_bytes()
    except OSError as exc:
        report.add_at("parse-error", f"cannot read the file: {exc.strerror}", rel, None)
        return None
    try:
        document = parse_yaml(data)
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
    raw = _read(root, "ferry.yaml", report)
    if raw is None:
        raw = Mapping((1, 1))
    if not isinstance(raw, dict):
        report.add_at("invalid-field", "ferry.yaml must be a mapping (ecosystem: NAME, ...)",
                      "ferry.yaml", getattr(raw, "mark", (1, 1)))
        return None
    report.locator.register((), "ferry.yaml", raw)
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
    given = {name: os.environ[variable] for name, variable in DEPLOYMENT_VARIABLES.items()
             if os.environ.get(variable)}
    if "mirror_size" in given:
        from dataferry.store.mirror_cache import mirror_size

        mirror_size(given["mirror_size"])  # a usage error naming the variable
    return eco.model_copy(update=given) if eco is not None and given else eco


def model_skip_dirs(root: FsPath) -> set[FsPath]:
    """The directories under ``root`` that ``load_model`` does not look into for model
    files (the home and the store, from ferry.yaml and this machine's variables)."""
    return _skipped_dirs(root.resolve(), deployment_settings(_load_ecosystem(root.resolve(),
                                                                             Report())))


def _skipped_dirs(root: FsPath, eco: EcosystemFile | None) -> set[FsPath]:
    """The home and store directories; never ``teams/`` or a folder in it (teams would vanish)."""
    teams = (root / "teams").resolve()
    skip = set()
    for setting in ((eco.home, eco.store) if eco else (".ferry",)):
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
    raw: Mapping
    value: TeamFile
    dropped: list[Path]


def _load_team_file(root: FsPath, rel: str, report: Report, loaded: LoadedModel) -> _TeamPiece | None:
    raw = _read(root, rel, report)
    parts = rel.split("/")
    # An empty (or comment-only) file is no error and hides nothing: references into its
    # team are still checked.
    failed = not isinstance(raw, Mapping) if raw is not None else any(
        f.file == rel and f.severity == "error" for f in report.findings
    )
    if failed and len(parts) >= 3 and parts[0] == "teams":
        # The file's team is unknown, so treat its folder's team as partly invalid: no
        # follow-on "unknown team" findings for references to it.
        loaded.invalid.add(f"{parts[1]}.*")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        report.add_at("invalid-field", "a team file must be a mapping (team: NAME, zone: ..., "
                      "sources: ...)", rel, getattr(raw, "mark", (1, 1)))
        return None
    if "ecosystem" in raw:
        report.add_at("misplaced-definition", "ecosystem settings belong in ferry.yaml at the "
                      "model root", rel, raw.key_marks["ecosystem"])
        return None
    if "team" not in raw:
        if any(s in raw for s in SECTIONS):
            report.add_at("invalid-field", "missing required key 'team' (the team that owns "
                          "these definitions)", rel, raw.mark)
        else:
            report.add_at("invalid-field", "not a model file (no team: key); ignored", rel,
                          raw.mark, severity="warning")
        return None
    return _team_piece(rel, raw, report, loaded)


def _team_piece(rel: str, raw: Mapping, report: Report, loaded: LoadedModel) -> _TeamPiece | None:
    team = raw.get("team")
    parts = rel.split("/")
    if not isinstance(team, str):
        report.add_at("invalid-field", f"team must be a name, got {team!r}", rel,
                      raw.value_marks.get("team", raw.mark))
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
            rel, raw.value_marks["team"],
        )
    where: Path = ("teams", team)
    report.locator.register(where, rel, raw)
    for section in SECTIONS:
        entities = raw.get(section)
        if isinstance(entities, dict):
            for name in entities:
                report.locator.register((*where, section, name), rel, raw, (section, name))
    here = Locator()  # this file's positions: the team may have others
    here.register(where, rel, raw)
    shaped = shape(TeamFile, raw, report, where, f"team {team}", here)
    for cut in shaped.dropped:
        _mark_invalid(loaded, team, raw, cut)
    if shaped.value is None:
        loaded.invalid.add(f"{team}.*")
        return None
    loaded.team_files.setdefault(team, []).append(rel)
    return _TeamPiece(rel, raw, shaped.value, shaped.dropped)  # type: ignore[arg-type]


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
                    piece.file, piece.raw.value_marks.get(key),
                )
                continue
            if key not in header:
                header[key] = value
                origin[key] = piece.file
                report.locator.register(("teams", name, key), piece.file, piece.raw, (key,))
    missing = [key for key in ("zone", "owners") if key not in header]
    for key in missing:
        report.add_at("invalid-field", f"team {name}: missing required key {key!r} (give it in "
                      "one of the team's files)", pieces[0].file, pieces[0].raw.mark)
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    seen: dict[str, tuple[str, str]] = {}  # dataset-namespace name -> (what, file)
    for piece in pieces:
        for section in SECTIONS:
            for entity, value in getattr(piece.value, section).items():
                if entity in sections[section]:
                    first = report.locator.file_of(("teams", name, section, entity))
                    report.add_at("duplicate-name",
                                  f"team {name}: {section[:-1]} {entity!r} is also defined "
                                  f"in {first}", piece.file,
                                  piece.raw[section].key_marks.get(entity))
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
