"""The ecosystem model: load YAML and Python DSL files into one typed model and check it.

The names exported here are the Python DSL (see ``dataferry.model.dsl``)::

    from dataferry.model import Team, Source, Dataset, Column, Consumer, Need

The typed model itself is in ``dataferry.model.spec``; loading in
``dataferry.model.load``; checking in ``dataferry.model.check``.
"""

from __future__ import annotations

from dataferry.model.dsl import Column, Consumer, Dataset, Need, Source, Team, Transformer

__all__ = ["Column", "Consumer", "Dataset", "Need", "Source", "Team", "Transformer"]
