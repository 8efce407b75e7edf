"""Alembic migrations, run programmatically (`Database.migrate()`, `escalation migrate`, worker startup).

Several processes may start at once (N web + N worker): on PostgreSQL an advisory lock serializes the
upgrade; on SQLite the first write transaction (BEGIN IMMEDIATE) does.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent
_ADVISORY_LOCK_ID = 0x65736361  # "esca"


def alembic_config(connection=None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({_ADVISORY_LOCK_ID})")
            connection.commit()
        try:
            command.upgrade(alembic_config(connection), revision)
            connection.commit()
        finally:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_ADVISORY_LOCK_ID})")
                connection.commit()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
