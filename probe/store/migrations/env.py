"""Alembic environment. Run through `probe db upgrade`, which hands over a connection."""

from alembic import context

from probe.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `probe db upgrade -c FILE`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
