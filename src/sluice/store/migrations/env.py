"""Alembic environment: always run with a connection handed in by ``sluice.store.db.migrate``."""

from __future__ import annotations

from alembic import context

from sluice.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running alembic by hand
    raise RuntimeError("run migrations through `sluice` (sluice.store.db.migrate)")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
