"""A transformer's definition and its fingerprint: what a version was computed by.

The definition is what changes a transformer's output, in five parts, each hashed on its
own (blake3 of canonical JSON) so that a difference can be named:

- ``body``: the SQL text (``sql:``, or the content of ``sql_file:``, never its path), or
  for ``python: module:function`` the target and the content of the module's file in the
  team's folder (the whole file: a helper the function calls counts too);
- ``columns``: the declared columns in order, with their types and nullability;
- ``primary_key``;
- ``checks``;
- ``masks``: the input columns the transformer gets as a keyed hash (declared and
  required by policy).

Descriptions, owners, classification, schedules and triggers are not part of it. The
fingerprint is the hash of the parts. Each version a transformer publishes records its
definition in the manifest (``definition``, next to ``lineage``); a transformer whose
latest version was computed by another definition is due again, like one whose input has
a new version, and says what changed ("SQL changed", "columns changed: added x").

A version published before fingerprints existed has none recorded. Its schema (columns,
types, nullability, key) is still compared with the model, so a column change is caught;
anything else is unknown and does not make it due: the next version it publishes (a new
input version, ``ferry run REF --full``) records the definition. ``ferry plan`` says
"definition not recorded" for such a transformer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataferry.model.graph import ModelIndex
from dataferry.model.policy import masked_input_columns
from dataferry.model.spec import DatasetCommon, Transformer
from dataferry.store.hashing import hash_bytes
from dataferry.store.manifest import Manifest, canonical
from dataferry.store.primary_key import with_keys_required

ALGORITHM = "blake3"
PARTS = ("body", "columns", "primary_key", "checks", "masks")


@dataclass(frozen=True)
class Definition:
    """The fingerprint of a transformer's definition, part by part."""

    body: str
    """``sql`` or ``python``: names the body's change ("SQL changed")."""
    parts: dict[str, str]
    """Part name (``PARTS``) -> the hash of its canonical JSON."""

    @property
    def fingerprint(self) -> str:
        return hash_bytes(ALGORITHM, canonical(self.parts))

    def to_json(self) -> dict[str, Any]:
        """What a manifest records (``Manifest.definition``)."""
        return {"fingerprint": self.fingerprint, "body": self.body, "parts": dict(self.parts)}


def transformer_definition(index: ModelIndex, root: Path, ref: str) -> Definition:
    """The definition of transformer ``ref`` as the model (and its files) has it now."""
    entry = index.datasets[ref]
    spec = entry.spec
    assert isinstance(spec, Transformer)
    folder = root / "teams" / entry.team
    body: dict[str, Any]
    if spec.python is not None:
        module = spec.python.partition(":")[0]
        path = module_file(folder, module)
        body = {"python": spec.python, "source": _text(path) if path is not None else None}
    elif spec.sql is not None:
        body = {"sql": spec.sql}
    else:
        body = {"sql": _text(folder / (spec.sql_file or ""))}
    values: dict[str, Any] = {
        "body": body,
        "columns": [[name, column.type, column.nullable]
                    for name, column in spec.columns.items()],
        "primary_key": list(spec.primary_key),
        "checks": [check.model_dump(mode="json", exclude_none=True) for check in spec.checks],
        "masks": {input_ref: sorted(masked) for input_ref in spec.inputs
                  if (masked := masked_input_columns(index, ref, input_ref))},
    }
    return Definition("python" if spec.python is not None else "sql",
                      {part: hash_bytes(ALGORITHM, canonical(values[part])) for part in PARTS})


def module_file(folder: Path, module: str) -> Path | None:
    """The file of Python module ``module`` in a team's folder (``a.b``: ``a/b.py`` or
    ``a/b/__init__.py``), or None when it is not there."""
    base = folder.joinpath(*module.split("."))
    for path in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _text(path: Path) -> str | None:
    """A body file's text; None when it cannot be read (running the transform says why)."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def changes(manifest: Manifest, current: Definition, spec: Transformer) -> list[str]:
    """What differs between the definition ``manifest``'s version was computed by and
    ``current`` (the model's), one phrase per part; [] when nothing that is known does.

    A version without a recorded definition is compared by its schema only."""
    schema = schema_changes(manifest.schema, spec)
    before = manifest.definition
    if before is None:
        return schema
    if before.get("fingerprint") == current.fingerprint:
        return []
    parts = before.get("parts") or {}
    out: list[str] = []
    for part in PARTS:
        if parts.get(part) == current.parts[part]:
            continue
        if part == "body":
            out.append(_body_change(str(before.get("body") or ""), current.body))
        elif part in ("columns", "primary_key"):
            label = part.replace("_", " ")
            out.extend([c for c in schema if c.startswith(label)] or [f"{label} changed"])
        else:
            out.append(f"{part} changed")
    return out or ["definition changed"]


def _body_change(before: str, now: str) -> str:
    names = {"sql": "SQL", "python": "Python source"}
    if before and before != now:
        return f"body changed: {names.get(before, before)} -> {names.get(now, now)}"
    return f"{names.get(now, now)} changed"


def schema_changes(schema: dict[str, Any], model: DatasetCommon) -> list[str]:
    """How a version's recorded schema differs from the declared one, in words (key
    columns are stored not nullable, whatever the model says); [] when it does not."""
    spec = with_keys_required(model)
    stored = [(str(c["name"]), str(c["type"]), bool(c["nullable"]))
              for c in schema.get("columns", [])]
    declared = [(name, column.type, column.nullable) for name, column in spec.columns.items()]
    out: list[str] = []
    if stored != declared:
        old = {name: (kind, nullable) for name, kind, nullable in stored}
        new = {name: (kind, nullable) for name, kind, nullable in declared}
        words = [f"added {n}" for n in new if n not in old]
        words += [f"removed {n}" for n in old if n not in new]
        for name in (n for n in new if n in old):
            (kind_before, null_before), (kind, nullable) = old[name], new[name]
            if kind_before != kind:
                words.append(f"{name} {kind_before} -> {kind}")
            if null_before != nullable:
                words.append(f"{name} {'nullable' if nullable else 'not nullable'}")
        if not words:
            words.append("order " + ", ".join(new))
        out.append("columns changed: " + ", ".join(words))
    key = list(schema.get("primary_key", []))
    if key != list(spec.primary_key):
        out.append(f"primary key changed: {json.dumps(key)} -> "
                   f"{json.dumps(list(spec.primary_key))}")
    return out


def rebuild_reason(manifest: Manifest, current: Definition, spec: Transformer) -> str | None:
    """Why a transformer whose latest version is ``manifest`` must run again although its
    inputs did not change ("SQL changed; checks changed"), or None."""
    found = changes(manifest, current, spec)
    return "; ".join(found) if found else None
