"""Progress bars for long work: shown on a terminal (stderr), silent otherwise."""

from __future__ import annotations

import sys
from types import TracebackType

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.progress import Progress as RichProgress
from rich.text import Text


class _Rate(ProgressColumn):
    """Items per second, e.g. ``12,345 rows/s``."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} {self.unit}/s")


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

            if self.unit == "bytes":
                columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                           TransferSpeedColumn(), TimeElapsedColumn()]
            else:
                count = MofNCompleteColumn() if self.total else TextColumn(
                    "{task.completed:,.0f} " + self.unit)
                columns = [TextColumn("{task.description}"), BarColumn(), count,
                           _Rate(self.unit), TaskProgressColumn(), TimeElapsedColumn()]
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
