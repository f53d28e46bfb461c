"""Progress bars for long work: shown on a terminal (stderr), silent otherwise.

Rich is imported only when a bar is shown: off a terminal (scheduled runs, CI, pipes) a
``ferry run`` does not pay for ``rich.progress`` (a tenth of its start-up).
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import ProgressColumn, TaskID


def _rate(unit: str) -> ProgressColumn:
    """A column of items per second, e.g. ``12,345 rows/s``."""
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed or 0:,.0f} {unit}/s")

    return Rate()


class Progress:
    """``with Progress("publishing x", total=n, unit="rows") as p: p.advance(k)``."""

    def __init__(self, label: str, *, total: int | None = None, unit: str = "rows") -> None:
        self.enabled = sys.stderr.isatty()
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None
        self.label, self.total, self.unit = label, total, unit

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            if self.unit == "bytes":
                columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                           TransferSpeedColumn(), TimeElapsedColumn()]
            else:
                count = MofNCompleteColumn() if self.total else TextColumn(
                    "{task.completed:,.0f} " + self.unit)
                columns = [TextColumn("{task.description}"), BarColumn(), count,
                           _rate(self.unit), TaskProgressColumn(), TimeElapsedColumn()]
            self._bar = RichProgress(*columns, console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total)
        return self

    def advance(self, amount: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()


class JobProgress:
    """One bar per job (rows, rows/s) on a terminal; nothing otherwise."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._bar: RichProgress | None = None

    def __enter__(self) -> JobProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn

            self._bar = RichProgress(TextColumn("{task.description:<48}"),
                                     TextColumn("{task.completed:>12,.0f} rows"), _rate("rows"),
                                     TimeElapsedColumn(), TextColumn("{task.fields[status]}"),
                                     console=Console(stderr=True))
            self._bar.start()
        return self

    def start(self, label: str) -> _JobTask:
        task = self._bar.add_task(label, total=None, status="") if self._bar else None
        return _JobTask(self._bar, task)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


class _JobTask:
    def __init__(self, bar: RichProgress | None, task: TaskID | None) -> None:
        self.bar, self.task = bar, task

    def advance(self, rows: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task, rows)

    def finish(self, status: str) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, status=status)
