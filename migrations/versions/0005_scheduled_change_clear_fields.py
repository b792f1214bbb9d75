"""scheduled changes name the fields they clear; the others are kept

Revision ID: 0005
Revises: 0004

"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade():
    # Changes already pending clear nothing: the server default fills them in.
    with op.batch_alter_table('scheduled_change', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('clear_fields', JSON_DOC, nullable=False, server_default=sa.text("'[]'"))
        )
    with op.batch_alter_table('scheduled_change', schema=None) as batch_op:
        batch_op.alter_column('clear_fields', server_default=None)


def downgrade():
    with op.batch_alter_table('scheduled_change', schema=None) as batch_op:
        batch_op.drop_column('clear_fields')
