"""SQLite: a source (``SqliteSource``) and a sink (``SqliteSink``) over one database file.

``path:`` is relative to the model directory. Type mapping: ``types.py``.
"""
