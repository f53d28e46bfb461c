"""``ferry pull --watch``: follow every clone of a store, one thread per dataset.

Each thread pulls, then waits on the origin's ``head`` long-poll for a version past
the one it holds, and pulls again as soon as there is one (the server answers within
its 0.2 s poll of the store, so a version shows here about a second after it is
published). A failure (peer gone, a lie) is reported and retried with backoff, 1 s
doubling to 60 s; the next success resets it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from dataferry.errors import FerryError
from dataferry.replication.origin import read_origin
from dataferry.replication.peer import Peer
from dataferry.replication.sync import SyncResult, sync
from dataferry.store.store import Store

WAIT_SECONDS = 25.0
LONGEST_BACKOFF = 60.0


def watch(store: Store, token: str | None, applied: Callable[[SyncResult], None],
          failed: Callable[[str, str], None], stop: threading.Event) -> list[str]:
    """Follow every cloned dataset of ``store`` until ``stop`` is set; returns the refs
    followed (none: nothing to watch). ``applied`` hears of each pull that brought
    versions, ``failed`` of each error (ref, message)."""
    followed = []
    for ref in store.refs():
        origin = read_origin(store.dataset(ref))
        if origin is None:
            continue
        followed.append(ref)
        thread = threading.Thread(target=_follow, name=f"watch-{ref}", daemon=True,
                                  args=(store, ref, origin.url, token, applied, failed, stop))
        thread.start()
    return followed


def _follow(store: Store, ref: str, url: str, token: str | None,
            applied: Callable[[SyncResult], None], failed: Callable[[str, str], None],
            stop: threading.Event) -> None:
    backoff = 1.0
    while not stop.is_set():
        try:
            with Peer(url, ref, token) as peer:
                while not stop.is_set():
                    result = sync(peer, store.dataset(ref))
                    backoff = 1.0
                    if result.versions:
                        applied(result)
                    peer.head(after=result.head or 0, wait=WAIT_SECONDS)
        except FerryError as exc:
            failed(ref, f"{exc} (retrying in {backoff:g} s)")
            stop.wait(backoff)
            backoff = min(backoff * 2, LONGEST_BACKOFF)
