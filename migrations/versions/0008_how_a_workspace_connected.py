"""how a workspace was connected: a private app's access token, or OAuth

Disconnecting forgets the token; uninstalling the app from the whole workspace is offered only
for an OAuth install. Connections made before this are left unknown (NULL): Hedwig cannot tell
which way they came, so it offers no uninstall for them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 17:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('intercom_connections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connected_with', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('intercom_connections', schema=None) as batch_op:
        batch_op.drop_column('connected_with')
