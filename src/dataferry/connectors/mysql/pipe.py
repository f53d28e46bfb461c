"""A named pipe that a thread fills with CSV while ``LOAD DATA LOCAL INFILE`` reads it.

One ``LOAD DATA`` statement then takes every batch of a delivery, and the client renders
and writes the next rows while the server parses and inserts the previous ones; nothing
goes to disk. (Loading a temporary file per batch left the server idle while the client
rendered, and the client idle while the server loaded.)

The pipe lives in a private temporary directory (mode 0700). The feeding thread stops at
the end of the rows, at its first error (kept in ``error`` for the caller to raise), or
when the reader goes away (the server refused the statement, or failed mid-load).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import pyarrow as pa

WRITE_BYTES = 1 << 20
"""Bytes buffered before a write into the pipe (the kernel's pipe buffer is 64 KiB)."""


class Feeder:
    """Writes ``render(batch)`` for every batch into the pipe at ``path``, in a thread."""

    def __init__(self, path: str, batches: Iterable[pa.RecordBatch],
                 render: Callable[[pa.RecordBatch], pa.Buffer]) -> None:
        self.path = path
        self.rows = 0
        self.error: BaseException | None = None
        self._batches = batches
        self._render = render
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ferry-mysql-load",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            with open(self.path, "wb", buffering=WRITE_BYTES) as pipe:
                self._opened.set()
                self._feed(pipe)
        except BrokenPipeError:
            pass  # the reader stopped: the statement failed, and says why
        except BaseException as exc:  # raised by the caller once the statement ends
            self.error = exc
        finally:
            self._opened.set()

    def _feed(self, pipe: BinaryIO) -> None:
        for batch in self._batches:
            if self._stop.is_set():
                return
            if batch.num_rows == 0:
                continue
            pipe.write(memoryview(self._render(batch)))
            self.rows += batch.num_rows

    def finish(self) -> None:
        """Stop the thread (once the statement is over, whatever happened) and wait."""
        self._stop.set()
        while self._thread.is_alive() and not self._opened.is_set():
            # The server never asked for the file: open the read end so the writer's open
            # returns; its first write then fails with a broken pipe and it ends.
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
            self._thread.join(0.05)
        self._thread.join()


@contextmanager
def named_pipe(prefix: str) -> Iterator[str]:
    """The path of a new named pipe in a private temporary directory, removed after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        path = os.path.join(scratch, "rows.csv")
        os.mkfifo(path, 0o600)
        yield path
