"""Parquet: a sink (``ParquetSink``) writing each table as a folder of Parquet files.

Readers (DuckDB, pandas, Spark) read ``<path>/<table>/`` and always see one whole version;
``sink.py`` describes the layout and how a version is switched atomically.
"""
