"""Alembic environment: always given a live connection by integration.store.migrations.upgrade()."""
from __future__ import annotations

from alembic import context

from integration.store.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `escalation migrate` (integration.store.migrations.upgrade)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
