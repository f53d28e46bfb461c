"""The file paths replication serves and writes: plain, relative, inside a dataset."""

from __future__ import annotations


def plain_path(path: str) -> bool:
    """A relative path with no empty, ``.``, ``..`` or hidden part: what a manifest may
    name (the clone writes it under the dataset directory)."""
    parts = path.split("/")
    return not path.startswith("/") and all(
        part and not part.startswith(".") and "\\" not in part and "\x00" not in part
        for part in parts)
