"""The migrations produce exactly the models' schema (docs/architecture.md#the-database)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from ccadmin.extensions import db


# SQLite cannot reflect the PostgreSQL-only expression index it never builds.
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression")
def test_migrations_match_the_models(app):
    with db.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, db.metadata)
    assert differences == []


def built_here(index) -> bool:
    """False for an index the model builds only on another database (`ddl_if`)."""
    condition = index._ddl_if
    return condition is None or condition.dialect in (None, db.engine.dialect.name)


def test_every_model_table_exists_with_its_indexes(app):
    inspector = inspect(db.engine)
    assert set(db.metadata.tables) <= set(inspector.get_table_names())
    for table in db.metadata.sorted_tables:
        expected = {index.name for index in table.indexes if built_here(index)}
        assert expected <= {index["name"] for index in inspector.get_indexes(table.name)}
