"""Work items handed to a few threads ("lanes"), each lane keeping state of its own.

Why: the store's Parquet writer was one thread, and on tables of long text (``json``,
``jsonb``, ``text[]``) it was the slowest step of an ingest while the reading thread
waited on it. pyarrow encodes and compresses with the GIL released, so a second lane
gets a second core's worth of encoding.

How work is handed out: ``submit`` gives an item to the first idle lane, the lowest index
first, and waits while every lane is busy. Lane 1 thus gets work only while lane 0 is
still busy with the previous item: where one lane keeps up, everything goes to lane 0
(and a lane's thread starts only when it first gets an item). Each lane holds at most
one item, so at most ``count`` items are in flight, plus the one the caller is gathering.

Memory: items have a size (bytes), and ``budget`` bounds what the lanes hold and the
caller gathers together: ``make_room`` (before the caller takes more) and ``submit`` wait
while a lane is busy and the sizes would pass it. A lane that is alone may always take
an item, so one item larger than the budget still goes through, one at a time.

Errors: the first error, a lane's or the caller's (``stop``), is the one kept; the lanes
stop after their current item, and the caller raises it. ``close`` and ``stop`` return
only once every lane's thread has ended.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Lanes(Generic[Item]):
    """``count`` lanes running ``work(lane, item)``; ``finish(lane)`` ends each used lane."""

    def __init__(self, count: int, work: Callable[[int, Item], None],
                 finish: Callable[[int], None], name: str, budget: int) -> None:
        if count < 1:
            raise ValueError(f"need at least one lane, not {count}")
        self._work = work
        self._finish = finish
        self._name = name
        self._budget = budget
        self._items: list[Item | None] = [None] * count
        self._sizes = [0] * count
        self._threads: list[threading.Thread | None] = [None] * count
        self._changed = threading.Condition()
        self._closing = False
        self._stopping = False
        self.failure: BaseException | None = None
        """The first error, once there is one."""

    def make_room(self, size: int) -> None:
        """Wait until the caller may hold ``size`` bytes more than the lanes hold (the
        budget), or no lane is busy; raises a lane's error once one has failed."""
        with self._changed:
            while True:
                if self.failure is not None:
                    raise self.failure
                if sum(self._sizes) + size <= self._budget or not any(self._sizes):
                    return
                self._changed.wait()

    def submit(self, item: Item, size: int) -> None:
        """Give ``item`` (``size`` bytes) to the first idle lane, waiting while all are
        busy or the budget has no room for it; raises a lane's error once one has failed."""
        with self._changed:
            while True:
                if self.failure is not None:
                    raise self.failure
                idle = next((i for i, held in enumerate(self._items) if held is None), None)
                held = sum(self._sizes)
                if idle is not None and (held + size <= self._budget or not held):
                    break
                self._changed.wait()
            self._items[idle] = item
            self._sizes[idle] = max(size, 1)
            if self._threads[idle] is None:
                thread = threading.Thread(target=self._run, args=(idle,),
                                          name=f"{self._name}-{idle}", daemon=True)
                self._threads[idle] = thread
                thread.start()
            self._changed.notify_all()

    def check(self) -> None:
        """Raise a lane's error, if one has failed (without waiting for anything)."""
        failure = self.failure
        if failure is not None:
            raise failure

    def close(self) -> None:
        """Wait for every item, run ``finish`` in each lane used, and end the threads;
        raises the first error."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._join()
        self.check()

    def stop(self, error: BaseException) -> BaseException:
        """After ``error`` in the caller: lanes end after their current item, without
        ``finish``. Returns the first error: a lane's that came before, else ``error``."""
        with self._changed:
            if self.failure is None:
                self.failure = error
            self._stopping = True
            self._changed.notify_all()
        self._join()
        return self.failure

    def _join(self) -> None:
        for thread in self._threads:
            if thread is not None:
                thread.join()

    def _run(self, lane: int) -> None:
        try:
            while True:
                with self._changed:
                    while (self._items[lane] is None and not self._closing
                           and not self._stopping):
                        self._changed.wait()
                    if self._stopping:
                        return
                    item = self._items[lane]
                if item is None:  # closing, and nothing left to do
                    break
                self._work(lane, item)
                del item  # hold no item while idle: the memory bound counts on it
                with self._changed:
                    self._items[lane] = None
                    self._sizes[lane] = 0
                    self._changed.notify_all()
            self._finish(lane)
        except BaseException as error:  # handed to the caller, who raises it
            with self._changed:
                if self.failure is None:
                    self.failure = error
                self._stopping = True
                self._changed.notify_all()
