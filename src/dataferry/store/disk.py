"""A full disk under the store, said in one line.

Python's writes report ENOSPC as an ``OSError`` with an errno; deltalake's Rust writer
as an ``OSError`` whose text ends in "(os error 28)". Both become one ``StoreError``
that says where and what to do, instead of a traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path

from dataferry.errors import StoreError

_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_ROOM_TEXT = ("No space left on device", "Disk quota exceeded", "File too large")


def is_no_room(error: BaseException) -> bool:
    """Whether ``error`` is a write that failed for want of space."""
    if not isinstance(error, OSError):
        return False
    return error.errno in _NO_ROOM or any(text in str(error) for text in _NO_ROOM_TEXT)


def no_room(where: Path) -> StoreError:
    return StoreError(f"cannot write under {where}: no space left on the device; make room "
                      "there (or move the store: home:/store: in ferry.yaml) and run again; "
                      "nothing was published", public=True)
