"""The JSON Schema of the model's YAML files, for editors (``ferry schema``).

It is generated from the typed model (``spec``), whose fields carry the patterns of
``patterns``, and then given what pydantic cannot say: that every name of a mapping of
datasets, columns or teams follows the name rule, and the rules between keys that
``ferry check`` enforces in ``lint`` (exactly one transformer body, ``cursor`` for
incremental capture, keys that apply to one kind of source only...). The schema must
never reject a model ``ferry check`` accepts; docs/editors.md lists what only
``ferry check`` sees.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from dataferry.model import patterns
from dataferry.model.spec import EcosystemFile, TeamFile

SCHEMA_ID = "https://dataferry.dev/schema/model.json"

_DATABASES = ("PostgresSource", "MysqlSource", "SqliteSource", "DuckdbSource")
_CDC = ("PostgresSource", "MysqlSource")
_HTTP_ONLY = ("endpoint", "records", "pagination")
_FILES_ONLY = ("path", "format", "null_values")
_DATABASE_ONLY = ("table", "query")


def model_json_schema(kind: str = "all") -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for ferry.yaml, team files, or either."""
    if kind == "ecosystem":
        schema = TypeAdapter(EcosystemFile).json_schema(by_alias=True)
    elif kind == "team":
        schema = TypeAdapter(TeamFile).json_schema(by_alias=True)
    else:
        schema = TypeAdapter(EcosystemFile | TeamFile).json_schema(by_alias=True)
    _name_keys(schema)
    _add_rules(schema.get("$defs", {}))
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID if kind == "all" else SCHEMA_ID.replace("model", kind)
    schema["title"] = {"all": "dataferry model file", "ecosystem": "ferry.yaml",
                       "team": "dataferry team file"}[kind]
    return schema


def _name_keys(node: Any) -> None:
    """pydantic writes ``dict[Name, X]`` as ``patternProperties``, which lets a key that
    does not match (``Items-2``) through unchecked: make the pattern a rule for every key."""
    if isinstance(node, list):
        for item in node:
            _name_keys(item)
        return
    if not isinstance(node, dict):
        return
    for value in node.values():
        _name_keys(value)
    by_pattern = node.get("patternProperties")
    if (node.get("type") == "object" and isinstance(by_pattern, dict) and len(by_pattern) == 1
            and "additionalProperties" not in node):
        ((pattern, value),) = by_pattern.items()
        del node["patternProperties"]
        node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
        node["additionalProperties"] = value


def _null_or_absent(*keys: str) -> dict[str, Any]:
    """``ferry check`` treats ``key: null`` as a key not given."""
    return {"properties": {key: {"type": "null"} for key in keys}}


def _given(key: str) -> dict[str, Any]:
    return {"required": [key], "properties": {key: {"not": {"type": "null"}}}}


def _exactly_one(*keys: str) -> dict[str, Any]:
    return {"oneOf": [_given(key) for key in keys]}


def _dataset_rules(source: str) -> list[dict[str, Any]]:
    """What ``lint.check_capture`` asks of a dataset of a ``source`` kind."""
    rules: list[dict[str, Any]] = []
    if source in _DATABASES:
        rules += [_null_or_absent(*_HTTP_ONLY, *_FILES_ONLY), _exactly_one(*_DATABASE_ONLY)]
    elif source == "FilesSource":
        rules.append(_null_or_absent(*_DATABASE_ONLY, *_HTTP_ONLY))
    else:
        rules.append(_null_or_absent(*_DATABASE_ONLY, *_FILES_ONLY))
    if source != "FilesSource":
        rules.append({"if": {"required": ["capture"], "properties": {
            "capture": {"const": "incremental"}}}, "then": _given("cursor")})
    if source in _CDC:
        rules.append({"if": {"required": ["capture"], "properties": {
            "capture": {"const": "cdc"}}}, "then": {
                "required": ["primary_key"], "properties": {"primary_key": {"minItems": 1}}}})
    else:
        rules.append({"properties": {"capture": {"not": {"const": "cdc"}}}})
    return rules


def _add_rules(defs: dict[str, Any]) -> None:
    """The rules between keys that ``ferry check`` enforces (see ``lint``)."""
    for source, spec in defs.items():
        datasets = spec.get("properties", {}).get("datasets")
        if source.endswith("Source") and datasets is not None:
            datasets["additionalProperties"] = {"allOf": [
                datasets["additionalProperties"], *_dataset_rules(source)]}
    if "Transformer" in defs:
        defs["Transformer"].update(_exactly_one("sql", "sql_file", "python"))
    if "Range" in defs:
        defs["Range"]["anyOf"] = [_given("min"), _given("max")]
    if "Platform" in defs:
        defs["Platform"]["if"] = {"required": ["engine"], "properties": {
            "engine": {"const": "spark"}}}
        defs["Platform"]["then"] = _null_or_absent("network")
    # Other YAML parsers split an unquoted {type: decimal(12,2)} into "decimal(12" and a
    # key "2)" (and {price: decimal(12,2)} likewise); ferry reads it whole, so the schema
    # lets the pieces be.
    tail = {patterns.FLOW_TYPE_TAIL: {"type": "null"}}
    if "Column" in defs:
        defs["Column"]["patternProperties"] = tail
    for name in ("SourceDataset", "Transformer"):
        columns = defs.get(name, {}).get("properties", {}).get("columns")
        if columns is not None:
            names = columns["propertyNames"]
            names["pattern"] = f"{names['pattern']}|{patterns.FLOW_TYPE_TAIL}"
            columns["patternProperties"] = tail
