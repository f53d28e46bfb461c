"""Connectors to the systems data comes from (sources) and goes to (sinks).

One subpackage per system, each with the same files: ``source.py``, ``sink.py``,
``types.py``. The contract every connector follows is in ``base.py``; ``registry.py``
finds the connector for a model's ``kind:`` (entry points let other packages add theirs).
"""
