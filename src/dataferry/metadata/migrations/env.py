"""Alembic environment for the metadata database, driven from code (no alembic.ini).

``dataferry.metadata.database.upgrade`` passes an open connection, already inside a
transaction (and, on PostgreSQL, holding the migration lock), in
``config.attributes["connection"]``. To write a new migration after changing
``schema.py``::

    from alembic import command
    from dataferry.metadata.database import alembic_config, open_metadata
    db = open_metadata("sqlite:////tmp/dev.db")
    with db.engine.begin() as connection:
        command.revision(alembic_config(connection), "what changed", autogenerate=True,
                         rev_id="0002")
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from dataferry.metadata.schema import Base, UTCDateTime


def _render_item(kind: str, item: Any, autogen: AutogenContext) -> str | Literal[False]:
    # Migrations stay plain SQLAlchemy: UTC handling is Python-side, the column is a
    # timezone-aware timestamp in the database either way.
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        render_item=_render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "run the metadata migrations through dataferry.metadata.open_metadata(url), "
            "not the alembic command line"
        )
    _run(connection)


_main()
