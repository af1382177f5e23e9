"""how much it matters: each piece of evidence says how much its customer needs it

Nice to have, important or a blocker. Evidence heard before this was asked is "important", the
canvas's default.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 18:45:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                'importance', sa.String(length=16), server_default='important', nullable=False
            )
        )


def downgrade():
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_column('importance')
