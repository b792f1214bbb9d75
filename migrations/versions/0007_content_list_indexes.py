"""content list: sort by updated time and version, filter by author, search field text

Revision ID: 0007
Revises: 0006

On PostgreSQL the indexes are built CONCURRENTLY, so a table of millions of
entries keeps taking writes while they build; the trigram index needs the
pg_trgm extension, which database owners may create (it is trusted).
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
TRIGRAM = (
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_content_entry_field_text ON content_entry '
    "USING gin ((CAST(jsonb_path_query_array(fields, '$.*') AS TEXT)) gin_trgm_ops)"
)


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        for name, columns in BTREE.items():
            op.execute(f'CREATE INDEX IF NOT EXISTS {name} ON content_entry {columns}')
        return
    with op.get_context().autocommit_block():
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        for name, columns in BTREE.items():
            op.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON content_entry {columns}')
        op.execute(TRIGRAM)


def downgrade():
    names = [*BTREE, 'ix_content_entry_field_text']
    for name in names:
        op.execute(f'DROP INDEX IF EXISTS {name}')
