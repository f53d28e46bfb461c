"""The JSON Schema of the model's YAML files, for editors (``ferry schema``)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from dataferry.model.spec import EcosystemFile, TeamFile

SCHEMA_ID = "https://dataferry.dev/schema/model.json"


def model_json_schema(kind: str = "all") -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for ferry.yaml, team files, or either."""
    if kind == "ecosystem":
        schema = TypeAdapter(EcosystemFile).json_schema(by_alias=True)
    elif kind == "team":
        schema = TypeAdapter(TeamFile).json_schema(by_alias=True)
    else:
        schema = TypeAdapter(EcosystemFile | TeamFile).json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID if kind == "all" else SCHEMA_ID.replace("model", kind)
    schema["title"] = {"all": "dataferry model file", "ecosystem": "ferry.yaml",
                       "team": "dataferry team file"}[kind]
    return schema
