"""``ferry serve`` stops on SIGTERM within seconds while event streams are open: the
streams end cleanly (with a comment saying why), the scheduler stops, the exit code is 0."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from dataferry.server.auth import Auth
from tests.server.conftest import PASSWORD, add_user
from tests.server.live import ferry_serve

STREAMS = 3


def test_sigterm_stops_ferry_serve_with_event_streams_open(auth: Auth, model_root: Path
                                                           ) -> None:
    add_user(auth, "root", "admin")
    with ferry_serve(model_root, scheduler=True) as served:
        with httpx.Client(base_url=served.url, timeout=30) as http:
            login = http.post("/api/v1/auth/login",
                              json={"username": "root", "password": PASSWORD})
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
        received: list[bytes] = []
        ended: list[BaseException | None] = []
        opened = threading.Barrier(STREAMS + 1, timeout=60)

        def listen() -> None:
            headers = {"Authorization": f"Bearer {token}"}
            try:
                with httpx.stream("GET", f"{served.url}/api/v1/events", headers=headers,
                                  timeout=httpx.Timeout(30, read=60)) as stream:
                    assert stream.status_code == 200
                    chunks = stream.iter_bytes()
                    received.append(next(chunks))
                    opened.wait()
                    received.extend(chunks)
                ended.append(None)
            except BaseException as error:  # reported below, in the test's thread
                ended.append(error)

        listeners = [threading.Thread(target=listen) for _ in range(STREAMS)]
        for listener in listeners:
            listener.start()
        opened.wait()
        served.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = served.process.wait(timeout=30)
        took = time.monotonic() - sent
        for listener in listeners:
            listener.join(timeout=30)
        log = (model_root.parent / f"serve-{served.port}.log").read_text(errors="replace")
    assert code == 0, log
    assert took < 5, f"ferry serve took {took:.1f} s to stop\n{log}"
    assert ended == [None] * STREAMS, ended
    assert b"".join(received).count(b": closed: the server is stopping") == STREAMS
    assert "Traceback" not in log, log
