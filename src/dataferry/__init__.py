"""dataferry: a self-hosted data ecosystem broker.

Teams declare the data they produce, need and derive as code (the model); dataferry
validates it, plans the pipeline graph, moves the data and keeps every dataset as signed,
verifiable versions.
"""

from __future__ import annotations

__version__ = "0.1.0"
