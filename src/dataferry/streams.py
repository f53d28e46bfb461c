"""Reading ahead in threads: items of one or more iterables, handed over through a
bounded queue so the consumer works while they are produced.

The store's writer reads (decodes, conforms) the next batches while it encodes the
current one; the PostgreSQL source merges parallel key-range streams. Both need the same
hand-over: at most ``depth`` items wait, so memory stays bounded; an error in a producer
is raised in the consumer, where it reads; a consumer that stops early stops the
producers.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def read_ahead(streams: Iterable[Callable[[], Iterable[T]]], *, depth: int, name: str,
               on_error: Callable[[BaseException], None] | None = None) -> Iterator[T]:
    """Start a thread per stream now; the returned iterator yields their items as they
    arrive. ``on_error`` is called in the failing thread before its error is handed over
    (to wake other producers, or to keep the original error for callers that wrap it)."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def pump(stream: Callable[[], Iterable[T]]) -> None:
        try:
            for item in stream():
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed over to the consumer
            if on_error is not None:
                on_error(exc)
            slots.put(exc)

    threads = [threading.Thread(target=pump, args=(s,), name=name, daemon=True)
               for s in streams]
    for thread in threads:
        thread.start()

    def items() -> Iterator[T]:
        finished = 0
        try:
            while finished < len(threads):
                item = slots.get()
                if item is _DONE:
                    finished += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item  # type: ignore[misc]
        finally:
            stop.set()

    return items()
