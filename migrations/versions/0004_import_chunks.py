"""import bodies stored in the database, staged by the worker

Revision ID: 0004
Revises: 0003

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('import_chunk',
    sa.Column('import_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['content_import.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'seq', name='pk_import_chunk')
    )
    with op.batch_alter_table('content_import', schema=None) as batch_op:
        batch_op.add_column(sa.Column('upload_format', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('upload_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('received_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('apply_when_staged', sa.Boolean(), nullable=True))


def downgrade():
    with op.batch_alter_table('content_import', schema=None) as batch_op:
        batch_op.drop_column('apply_when_staged')
        batch_op.drop_column('received_at')
        batch_op.drop_column('upload_bytes')
        batch_op.drop_column('upload_format')
    op.drop_table('import_chunk')
