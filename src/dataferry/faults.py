"""Fault injection for the crash-safety tests.

``FERRY_CRASH_AT=<point>`` makes the process kill itself with SIGKILL when it reaches
``crash_point("<point>")``, exactly as a power cut or the OOM killer would, so the tests
can prove that every step of publishing and delivering is safe to interrupt.
"""

from __future__ import annotations

import os
import signal


def crash_point(name: str) -> None:
    """Kill this process (SIGKILL) here when ``FERRY_CRASH_AT`` names this point."""
    if os.environ.get("FERRY_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
