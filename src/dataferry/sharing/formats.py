"""The two response formats of Delta Sharing: which one a request gets, and the
``protocol``/``metaData``/``file`` lines of each (docs/sharing.md).

``responseformat=parquet`` lines carry the protocol's own shapes; ``responseformat=delta``
lines wrap Delta log actions (``deltaProtocol``, ``deltaMetadata``, ``deltaSingleAction``)
that the client writes into a log of its own and reads with a Delta reader. The files are
the same in both, but for deletion vectors: a Delta reader declaring the
``deletionvectors`` reader feature gets the stored files with their vectors (as signed
URLs, storage type ``p``, as the reference server does) and the ``deletionVectors``
feature in the protocol; every other client gets the deleted rows rewritten out
(files.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dataferry.sharing.files import ServedFile, TableFiles

PARQUET, DELTA = "parquet", "delta"
DELETION_VECTORS = "deletionvectors"


class FormatError(ValueError):
    """A capabilities header asking only for formats this server does not answer in."""


@dataclass(frozen=True)
class Capabilities:
    """What a request's ``delta-sharing-capabilities`` header asks for."""

    format: str
    reader_features: frozenset[str]

    @property
    def header(self) -> dict[str, str]:
        return {"delta-sharing-capabilities": f"responseformat={self.format}"}

    @property
    def deletion_vectors(self) -> bool:
        """Whether the client reads deletion vectors (a Delta reader declaring them)."""
        return self.format == DELTA and DELETION_VECTORS in self.reader_features


def capabilities(header: str) -> Capabilities:
    """The response format to answer in: parquet when the client accepts it (the protocol's
    default, and what every client reads), else delta; reader features lower-cased."""
    fields: dict[str, list[str]] = {}
    for part in header.split(";"):
        key, _, value = part.partition("=")
        fields[key.strip().lower()] = [v.strip().lower() for v in value.split(",") if v.strip()]
    formats = fields.get("responseformat") or [PARQUET]
    features = frozenset(fields.get("readerfeatures", []))
    if PARQUET in formats:
        return Capabilities(PARQUET, features)
    if DELTA in formats:
        return Capabilities(DELTA, features)
    raise FormatError(f"responseformat={','.join(formats)} is not served here: ask for "
                      "responseformat=parquet or responseformat=delta")


def _schema_json(files: TableFiles) -> dict[str, Any]:
    from deltalake import Schema as DeltaSchema

    schema: dict[str, Any] = json.loads(DeltaSchema.from_arrow(files.schema).to_json())
    return schema


def _has_ntz(node: Any) -> bool:
    if node == "timestamp_ntz":
        return True
    if isinstance(node, dict):
        return any(_has_ntz(value) for value in node.values())
    if isinstance(node, list):
        return any(_has_ntz(value) for value in node)
    return False


def _without_ntz(node: Any) -> Any:
    """The schema with ``timestamp_ntz`` written as ``timestamp``, for clients that cannot
    read the ``timestampNtz`` feature (every parquet-format client: the official Python
    client raises). The files keep their time-zone-less values, which pandas reads as the
    same wall-clock times."""
    if node == "timestamp_ntz":
        return "timestamp"
    if isinstance(node, dict):
        return {key: _without_ntz(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_ntz(value) for value in node]
    return node


def head_lines(table_id: str, name: str, files: TableFiles, asked: Capabilities,
               created: int, changes_from: int | None = None) -> list[dict[str, Any]]:
    """The ``protocol`` and ``metaData`` lines of a metadata, query or changes answer
    (``changes_from``: a change feed's starting version; in delta format its metadata is
    that version's, with the change data feed on, as Delta readers check both)."""
    schema = _schema_json(files)
    ntz = asked.format == DELTA and "timestampntz" in asked.reader_features \
        and _has_ntz(schema)
    text = json.dumps(schema if ntz else _without_ntz(schema))
    facts = {"version": files.version.number, "size": sum(f.size for f in files.files),
             "numFiles": len(files.files)}
    if asked.format == PARQUET:
        return [{"protocol": {"minReaderVersion": 1}},
                {"metaData": {"id": table_id, "name": name, "format": {"provider": "parquet"},
                              "schemaString": text, "partitionColumns": [],
                              "configuration": {}, **facts}}]
    configuration = {}
    protocol: dict[str, Any] = {"minReaderVersion": 1, "minWriterVersion": 2}
    if changes_from is not None:  # the change data feed needs writer version 4
        facts["version"] = changes_from
        configuration = {"delta.enableChangeDataFeed": "true"}
        protocol["minWriterVersion"] = 4
    features = ["timestampNtz"] if ntz else []
    if any(f.deletion_vector for f in files.files):
        features.insert(0, "deletionVectors")
        configuration["delta.enableDeletionVectors"] = "true"
    if features:
        protocol = {"minReaderVersion": 3, "minWriterVersion": 7,
                    "readerFeatures": features, "writerFeatures": features}
    return [{"protocol": {"deltaProtocol": protocol}},
            {"metaData": {"deltaMetadata": {
                "id": table_id, "name": name, "format": {"provider": "parquet", "options": {}},
                "schemaString": text, "partitionColumns": [],
                "configuration": configuration, "createdTime": created}, **facts}}]


def file_line(kind: str, served: ServedFile, url: str, version: int, timestamp: int,
              expires: int, asked: Capabilities, stats: bool = True,
              vector_url: str | None = None) -> dict[str, Any]:
    """One file of an answer: ``kind`` is ``file`` for a query, ``add`` or ``cdf`` for a
    change feed (in delta format: an ``add`` or ``cdc`` action inside a ``file`` line);
    ``vector_url``: the signed URL of the file's deletion vector, when it has one."""
    if asked.format == PARQUET:
        action: dict[str, Any] = {"url": url, "id": served.id, "partitionValues": {},
                                  "size": served.size}
        if stats:
            action["stats"] = served.stats
        return {kind: {**action, "version": version, "timestamp": timestamp,
                       "expirationTimestamp": expires}}
    delta: dict[str, Any] = {"path": _presigned(url), "partitionValues": {},
                             "size": served.size, "modificationTime": timestamp,
                             "dataChange": True}
    if kind != "cdf" and stats:
        delta["stats"] = served.stats
    line: dict[str, Any] = {"id": served.id}
    vector = served.deletion_vector
    if vector is not None and vector_url is not None:
        # storage type p: an absolute path, here the signed URL (the reference server's way)
        delta["deletionVector"] = {"storageType": "p", "pathOrInlineDv": _presigned(vector_url),
                                   "offset": vector.offset, "sizeInBytes": vector.size,
                                   "cardinality": vector.cardinality}
        line["deletionVectorFileId"] = vector.id
    return {"file": {**line, "deltaSingleAction": {"cdc" if kind == "cdf" else "add": delta},
                     "version": version, "timestamp": timestamp,
                     "expirationTimestamp": expires}}


def _presigned(url: str) -> str:
    """``url`` with its signature repeated as ``X-Amz-Signature``: delta-kernel (the
    official clients' Delta reader) fetches an http(s) path only when its query looks
    pre-signed (X-Amz-Signature, Azure's sp, ...), else it looks for a local file of that
    path; /files/ ignores the query."""
    return f"{url}?X-Amz-Signature={url.rsplit('.', 1)[-1]}"
