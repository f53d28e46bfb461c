"""Where a cloned dataset came from: ``<dataset>/_sig/origin.json``.

``{"url": "http://HOST:PORT", "dataset": "<team>.<dataset>", "dataset_id": "<id>"}``,
written by ``ferry clone`` and read by ``ferry pull``. It never holds a token. A dataset
published locally has none (pull skips it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dataferry.errors import StoreError
from dataferry.store.dataset import DatasetStore
from dataferry.store.manifest import canonical, write_atomic

ORIGIN_FILE = "origin.json"


@dataclass(frozen=True)
class Origin:
    url: str
    dataset: str
    dataset_id: str


def read_origin(dataset: DatasetStore) -> Origin | None:
    path = dataset.sig / ORIGIN_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_bytes())
        return Origin(str(raw["url"]), str(raw["dataset"]), str(raw["dataset_id"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); clone the dataset again") from None


def write_origin(dataset: DatasetStore, origin: Origin) -> None:
    write_atomic(dataset.sig / ORIGIN_FILE, canonical(
        {"url": origin.url, "dataset": origin.dataset, "dataset_id": origin.dataset_id}))
