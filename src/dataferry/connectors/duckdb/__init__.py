"""DuckDB: a source (``DuckdbSource``) and a sink (``DuckdbSink``) over one database file.

``path:`` is relative to the model directory. Type mapping: ``types.py``.
"""
