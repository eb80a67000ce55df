"""Alembic environment: runs on the connection the service hands over (see echocenter.db.migrate)."""

from __future__ import annotations

from alembic import context

from echocenter.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `echocenter migrate` (or the service start), not bare alembic")

context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
