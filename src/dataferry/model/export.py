"""Write a model back out as YAML files (``ferry export-model``).

Loading the exported files gives a model equal to the one exported: the round trip is
proved by a hypothesis test over generated models.
"""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import yaml
from pydantic import BaseModel

from dataferry.model.spec import Ecosystem, EcosystemFile, Team
from dataferry.model.yamlfile import resolves_as_string

REDACTED = "***"


class _Dumper(yaml.SafeDumper):
    """Quotes every string that our YAML 1.2 reader would not read back as that string."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if any(c in value for c in "\x85\u2028\u2029\r") or not value.replace("\n", "").isprintable():
        style = '"'  # line breaks YAML folds, and control characters: escape them
    elif "\n" in value.strip("\n"):  # multi-line SQL reads best as a literal block
        style = "|"
    elif not resolves_as_string(value):
        style = '"'
    else:
        style = None
    if style:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


_FIRST = ("ecosystem", "team", "kind", "ref", "type")
_LAST = ("columns", "checks", "datasets", "notify", "sources", "transformers", "consumers")


def _key_rank(key: str) -> tuple[int, int]:
    if key in _FIRST:
        return (0, _FIRST.index(key))
    return (2, _LAST.index(key)) if key in _LAST else (1, 0)


def _ordered(spec: Any, data: Any) -> Any:
    """Keys in the order people write them: names and kinds first, nested lists last.

    Only the fields of model objects are reordered; user-named keys (columns, datasets,
    zones...) keep their order, which is meaningful (a dataset's column order).
    """
    if isinstance(data, list):
        return [_ordered(s, d) for s, d in zip(spec, data, strict=True)]
    if not isinstance(data, dict):
        return data
    if not isinstance(spec, BaseModel):
        return {key: _ordered(spec[key], value) for key, value in data.items()}
    names = {info.alias or name: name for name, info in type(spec).model_fields.items()}
    return {
        key: _ordered(getattr(spec, names[key]), data[key])
        for key in sorted(data, key=_key_rank)
    }


def _plain(spec: BaseModel) -> Any:
    # Python mode: JSON mode would write float("inf") (a valid range bound) as null.
    return _ordered(spec, spec.model_dump(by_alias=True, exclude_defaults=True))


def ecosystem_document(eco: Ecosystem) -> dict[str, Any]:
    data = {name: getattr(eco, name) for name in EcosystemFile.model_fields}
    out = _plain(EcosystemFile(**data))
    out["ecosystem"] = eco.ecosystem
    return dict(out)


def team_document(name: str, team: Team) -> dict[str, Any]:
    return {"team": name, **_plain(team)}


def export_files(eco: Ecosystem) -> dict[str, str]:
    """Relative path -> YAML text for the whole model (ferry.yaml + one file per team)."""
    files = {"ferry.yaml": dump_yaml(ecosystem_document(eco))}
    for name, team in eco.teams.items():
        files[f"teams/{name}/{name}.yaml"] = dump_yaml(team_document(name, team))
    return files


def export_stream(eco: Ecosystem) -> str:
    """The whole model as one YAML stream, each file a document headed ``# file: PATH``."""
    return "".join(
        f"---\n# file: {path}\n{text}" for path, text in export_files(eco).items()
    )


def write_model(eco: Ecosystem, target: FsPath, source_root: FsPath | None = None) -> list[str]:
    """Write the model's YAML files under ``target`` (copying referenced sql_file files)."""
    written = []
    for rel, text in export_files(eco).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(rel)
    if source_root is not None:
        for name in eco.teams:
            written += _copy_team_code(source_root / "teams" / name, target / "teams" / name)
    return written


def _copy_team_code(source: FsPath, target: FsPath) -> list[str]:
    """Copy a team's SQL files and Python transformer modules (not its model files)."""
    from dataferry.model.load import is_dsl_file

    copied = []
    for path in sorted(source.rglob("*")) if source.is_dir() else []:
        if not path.is_file() or path.suffix in (".yaml", ".yml") or "__pycache__" in path.parts:
            continue
        if path.suffix == ".py" and is_dsl_file(path):
            continue  # exported as YAML already
        out = target / path.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(path.read_bytes())
        copied.append(out.relative_to(target.parent.parent).as_posix())
    return copied
