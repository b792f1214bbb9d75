"""ingest from sending tools: newest event time per entry and source, token sources and signing secrets

Revision ID: 0009
Revises: 0008

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('entry_source_time',
    sa.Column('campaign_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.String(length=128), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('event_time', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'user_id', 'source')
    )
    with op.batch_alter_table('management_token') as batch_op:
        batch_op.add_column(sa.Column('source', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('signing_secret', sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table('management_token') as batch_op:
        batch_op.drop_column('signing_secret')
        batch_op.drop_column('source')
    op.drop_table('entry_source_time')
