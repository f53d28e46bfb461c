"""``FERRY_TRACE_STARTUP=1``: when a run first reads a source, print to stderr how far the
process got, so the fixed cost of ``ferry run`` can be measured from outside
(``bench/startup.py``)::

    ferry-startup: first-read monotonic=12345.678901 cpu=0.412345

``monotonic`` is ``time.monotonic()`` (one clock for every process on the machine: the
caller subtracts its own reading taken just before it started the process); ``cpu`` is the
process's user+system CPU time so far. Printed once per process.
"""

from __future__ import annotations

import os
import sys
import time

_printed = False


def first_source_read() -> None:
    """Mark the first source read of this process (no-op unless the variable is set)."""
    global _printed
    if _printed or os.environ.get("FERRY_TRACE_STARTUP") != "1":
        return
    _printed = True
    print(f"ferry-startup: first-read monotonic={time.monotonic():.6f} "
          f"cpu={time.process_time():.6f}", file=sys.stderr, flush=True)
