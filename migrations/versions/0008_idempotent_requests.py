"""answers kept for Idempotency-Key retries on the ingest API

Revision ID: 0008
Revises: 0007

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('idempotent_request',
    sa.Column('token_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('headers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('body', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['token_id'], ['management_token.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_id', 'key')
    )
    op.create_index(op.f('ix_idempotent_request_created_at'), 'idempotent_request', ['created_at'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_idempotent_request_created_at'), table_name='idempotent_request')
    op.drop_table('idempotent_request')
