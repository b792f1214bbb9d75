"""The migrations produce exactly the models' schema (DESIGN 4)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ccadmin.extensions import db


def test_migrations_match_the_models(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def test_every_model_table_exists_with_its_indexes(app):
    inspector = inspect(db.engine)
    assert set(db.metadata.tables) <= set(inspector.get_table_names())
    for table in db.metadata.sorted_tables:
        expected = {index.name for index in table.indexes}
        assert expected <= {index["name"] for index in inspector.get_indexes(table.name)}
