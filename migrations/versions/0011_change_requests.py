"""change requests: campaigns whose changes need approval, the requests and their comments

Revision ID: 0011
Revises: 0010

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    with op.batch_alter_table('campaign') as batch_op:
        batch_op.add_column(sa.Column('changes_need_approval', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('management_token') as batch_op:
        batch_op.add_column(sa.Column('needs_approval', sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table('content_import') as batch_op:
        batch_op.add_column(sa.Column('approval_via', sa.String(length=220), nullable=True))
    op.create_table('change_request',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('campaign_id', BIG_ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('changes', JSON, nullable=False),
    sa.Column('details', JSON, nullable=False),
    sa.Column('content_import_id', BIG_ID, nullable=True),
    sa.Column('requested_by', sa.String(length=254), nullable=False),
    sa.Column('via', sa.String(length=220), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('decided_by', sa.String(length=254), nullable=True),
    sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('result', JSON, nullable=True),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaign.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['content_import_id'], ['content_import.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_change_request_status_requested_at', 'change_request', ['status', 'requested_at'])
    op.create_index('ix_change_request_campaign', 'change_request', ['campaign_id', 'id'])
    op.create_table('change_request_comment',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('change_request_id', BIG_ID, nullable=False),
    sa.Column('author', sa.String(length=254), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['change_request_id'], ['change_request.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_change_request_comment_change_request_id', 'change_request_comment', ['change_request_id'])


def downgrade():
    op.drop_index('ix_change_request_comment_change_request_id', table_name='change_request_comment')
    op.drop_table('change_request_comment')
    op.drop_index('ix_change_request_campaign', table_name='change_request')
    op.drop_index('ix_change_request_status_requested_at', table_name='change_request')
    op.drop_table('change_request')
    with op.batch_alter_table('content_import') as batch_op:
        batch_op.drop_column('approval_via')
    with op.batch_alter_table('management_token') as batch_op:
        batch_op.drop_column('needs_approval')
    with op.batch_alter_table('campaign') as batch_op:
        batch_op.drop_column('changes_need_approval')
