"""Where jobs run: ingest (source -> store), transform (store -> store), deliver (store -> sink)."""
