"""A logical slot read over the streaming replication protocol (``START_REPLICATION`` on
a replication connection), through libpq's COPY BOTH calls as psycopg exposes them.

The walsender decodes the slot's WAL once and sends each pgoutput message in a CopyData
``w`` (XLogData) message; it keeps going past any position, so the read stops by itself:

- at a ``Begin`` whose commit LSN is at or past ``upto`` (that transaction and every
  later one belongs to the next run), or at a ``Stream Commit`` with such a commit LSN
  (a large transaction streamed in chunks before its commit, protocol version 2), or
- at a keepalive (``k``) saying the walsender has decoded up to ``upto`` or further:
  every transaction committed before ``upto`` was sent before it.

The walsender sends a keepalive when it has caught up and has not been told of our
position; when it is idle without one, a status update asking for a reply makes it send
one. Status updates while reading never confirm anything (flush position 0): the slot's
``confirmed_flush_lsn`` moves only with ``confirm``, after the run's version is
published and signed. Once read, the stream is ended and the connection closed, so
nothing waits on the server through the publish (a stream left unread would be cut by
``wal_sender_timeout``). ``confirm``, on a new replication connection, starts a stream
at the position, sends it as flushed, ends the stream and waits for the server to end it
too (so the walsender has applied it before the connection closes): the slot's restart
point moves with it, without decoding the WAL a second time.
"""

from __future__ import annotations

import contextlib
import select
import struct
import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import pq

from dataferry.connectors.postgres.cdc_protocol import format_lsn, parse_lsn
from dataferry.errors import FerryError, SourceError, TransientError

IDLE_SECONDS = 0.5
"""Without a message for this long while reading, ask the walsender where it is."""
ACTIVE_SECONDS = 30.0
"""How long to wait for a slot another (ending) session still holds."""
_EPOCH_2000_MICROS = 946_684_800_000_000
_BEGIN_LSN = struct.Struct(">Q")
_KEEPALIVE = struct.Struct(">Qq?")
_STATUS = struct.Struct(">cQQQq?")


def _now() -> int:
    """Microseconds since 2000-01-01 UTC (the protocol's clock)."""
    return time.time_ns() // 1000 - _EPOCH_2000_MICROS


class SlotStream:
    """One streaming read of a logical slot on an open replication connection (see the
    module docstring). ``messages`` yields the pgoutput payloads up to ``upto``."""

    def __init__(self, connection: psycopg.Connection[Any], slot: str, what: str) -> None:
        self.connection, self.slot, self.what = connection, slot, what
        self.pgconn = connection.pgconn
        self.received = 0  # the furthest position the walsender said it has sent
        self.streaming = False

    def flushed(self) -> int:
        """The server's flushed WAL position now (``IDENTIFY_SYSTEM``)."""
        result = self._exec(b"IDENTIFY_SYSTEM", pq.ExecStatus.TUPLES_OK)
        value = result.get_value(0, 2)
        assert value is not None
        return parse_lsn(bytes(value).decode())

    def setting(self, statement: str) -> None:
        """Run one ``SET`` in the walsender's session (it decodes with these settings)."""
        self._exec(statement.encode(), pq.ExecStatus.COMMAND_OK)

    def start(self, start: int, options: dict[str, str]) -> None:
        """``START_REPLICATION`` from ``start`` (the server skips transactions that commit
        before it). A slot still held by an ending session is waited for."""
        text = ", ".join(f"{name} '{value}'" for name, value in options.items())
        command = (f"START_REPLICATION SLOT {self.slot} LOGICAL {format_lsn(start)} "
                   f"({text})").encode()
        deadline = time.monotonic() + ACTIVE_SECONDS
        while True:
            result = self.pgconn.exec_(command)
            if result.status == pq.ExecStatus.COPY_BOTH:
                break
            state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
            if state != "55006" or time.monotonic() > deadline:  # object in use
                raise self._error(result)
            time.sleep(0.1)  # a killed run's walsender has not noticed yet
        self.streaming = True
        self.received = max(self.received, start)

    def messages(self, upto: int) -> Iterator[bytes]:
        """The pgoutput messages of the transactions that commit before ``upto``; then the
        stream is ended (``stop``)."""
        pgconn = self.pgconn
        while True:
            size, data = pgconn.get_copy_data(1)
            if size > 0:
                kind = data[0]
                if kind == 0x77:  # w: XLogData
                    if size > 25 and data[25] == 0x42 and \
                            _BEGIN_LSN.unpack_from(data, 26)[0] >= upto:  # B: a Begin
                        break  # the first transaction of the next run
                    if size > 38 and data[25] == 0x63 and \
                            _BEGIN_LSN.unpack_from(data, 31)[0] >= upto:  # c: Stream Commit
                        break  # a streamed transaction of the next run
                    yield bytes(data[25:])
                elif kind == 0x6B:  # k: keepalive
                    end, _, reply = _KEEPALIVE.unpack_from(data, 1)
                    self.received = max(self.received, end)
                    if end >= upto:
                        break
                    if reply:
                        self._status(reply=False)
                continue
            if size == 0:
                if not self._wait(IDLE_SECONDS):
                    self._status(reply=True)
                continue
            raise self._lost()
        self.stop()

    def stop(self, confirm: int = 0) -> None:
        """End the stream (after a status update confirming ``confirm``; 0: nothing) and
        wait until the server has ended it: the connection is idle again, which the
        server does not time out (``wal_sender_timeout`` applies to a stream)."""
        if confirm:
            self.received = max(self.received, confirm)
        self.pgconn.put_copy_data(_STATUS.pack(b"r", self.received, confirm, confirm, _now(),
                                               False))
        self.pgconn.put_copy_end()
        self._flush()
        deadline = time.monotonic() + ACTIVE_SECONDS
        while True:  # what it sent meanwhile (the next run's changes) is dropped
            size, _ = self.pgconn.get_copy_data(1)
            if size == -1:
                break
            if size == -2:
                raise self._lost()
            if size == 0 and not self._wait(max(deadline - time.monotonic(), 0)):
                raise SourceError(f"{self.what}: the server did not end the replication "
                                  f"stream of slot {self.slot} in {ACTIVE_SECONDS:.0f} s")
        self.streaming = False
        while (result := self.pgconn.get_result()) is not None:
            if result.status == pq.ExecStatus.FATAL_ERROR:
                raise self._error(result)

    def confirm(self, lsn: int, options: dict[str, str]) -> None:
        """Tell the walsender that everything before ``lsn`` is safely kept (the slot's
        ``confirmed_flush_lsn``): on a connection that has not streamed yet (a walsender
        ends each later stream at once), a stream from ``lsn`` whose first message
        confirms it, ended at once. The walsender applies it before decoding anything,
        with the restart point the read's decoding found (the slot keeps it in shared
        memory): the restart point moves too."""
        self.start(lsn, options)
        self.stop(confirm=lsn)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()

    # -- helpers ----------------------------------------------------------------------

    def _status(self, *, reply: bool) -> None:
        """A status update saying what was received, confirming nothing (flush 0)."""
        self.pgconn.put_copy_data(_STATUS.pack(b"r", self.received, 0, 0, _now(), reply))
        self._flush()

    def _flush(self) -> None:
        while self.pgconn.flush() == 1:
            select.select([], [self.pgconn.socket], [], 1.0)

    def _wait(self, seconds: float) -> bool:
        """Wait for input (False: none came in ``seconds``)."""
        ready, _, _ = select.select([self.pgconn.socket], [], [], seconds)
        if not ready:
            return False
        try:
            self.pgconn.consume_input()
        except psycopg.OperationalError:
            raise self._lost() from None
        return True

    def _exec(self, command: bytes, expected: pq.ExecStatus) -> pq.abc.PGresult:
        result = self.pgconn.exec_(command)
        if result.status != expected:
            raise self._error(result)
        return result

    def _error(self, result: pq.abc.PGresult) -> SourceError:
        message = (result.error_message or b"").decode("utf-8", "replace").strip() or \
            self._connection_text()
        return SourceError(f"{self.what}: reading replication slot {self.slot}: {message}",
                           public=f"{self.what}: reading replication slot {self.slot} failed"
                                  f" ({(result.error_field(pq.DiagnosticField.SQLSTATE) or b'?').decode()})")

    def _lost(self) -> FerryError:
        text = self._connection_text()
        return TransientError(f"{self.what}: the replication stream of slot {self.slot} "
                              f"broke: {text}",
                              public=f"{self.what}: the replication stream of slot "
                                     f"{self.slot} broke")

    def _connection_text(self) -> str:
        return (self.pgconn.error_message or b"").decode("utf-8", "replace").strip() or \
            "the connection was lost"
