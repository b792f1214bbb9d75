"""content list: sort by updated time and version, filter by author, search field words

Revision ID: 0007
Revises: 0006

On PostgreSQL the indexes are built CONCURRENTLY, so a table of millions of
entries keeps taking writes while they build.
"""
from alembic import op

# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

BTREE = {
    'ix_content_entry_updated': '(updated_at, id)',
    'ix_content_entry_version': '(version, id)',
    'ix_content_entry_updated_by': '(updated_by, updated_at, id)',
}
WORDS = (
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_content_entry_field_words ON content_entry '
    "USING gin (to_tsvector('simple'::regconfig, fields))"
)


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        for name, columns in BTREE.items():
            op.execute(f'CREATE INDEX IF NOT EXISTS {name} ON content_entry {columns}')
        return
    with op.get_context().autocommit_block():
        for name, columns in BTREE.items():
            op.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON content_entry {columns}')
        op.execute(WORDS)


def downgrade():
    names = [*BTREE, 'ix_content_entry_field_words']
    for name in names:
        op.execute(f'DROP INDEX IF EXISTS {name}')
