"""single sign-on: the provider's subject of each user signed in through it

Revision ID: 0010
Revises: 0009

"""
from alembic import op
import sqlalchemy as sa

# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('admin_user') as batch_op:
        batch_op.add_column(sa.Column('sso_issuer', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('sso_subject', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint('uq_admin_user_sso', ['sso_issuer', 'sso_subject'])


def downgrade():
    with op.batch_alter_table('admin_user') as batch_op:
        batch_op.drop_constraint('uq_admin_user_sso', type_='unique')
        batch_op.drop_column('sso_subject')
        batch_op.drop_column('sso_issuer')
