"""entry versions set aside because they could not be published

Revision ID: 0006
Revises: 0005

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('publish_failure',
    sa.Column('content_entry_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['content_entry_id'], ['content_entry.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('content_entry_id')
    )


def downgrade():
    op.drop_table('publish_failure')
