"""webhooks: issues that move the status

A status change keeps the address of the issue whose webhook made it, when no person did; each
GitHub or Linear delivery that asked for a change is kept, so the same delivery again changes
nothing. Downgrade drops both (the changes stay, as a person's without a name).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 11:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('status_changes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('issue_url', sa.String(length=500), nullable=True))
    op.create_table(
        'webhook_deliveries',
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('delivery_id', sa.String(length=64), nullable=False),
        sa.Column('received_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'delivery_id', name=op.f('pk_webhook_deliveries')),
    )


def downgrade():
    op.drop_table('webhook_deliveries')
    # In place: batch mode would rebuild status_changes, which the notes refer to.
    op.execute("ALTER TABLE status_changes DROP COLUMN issue_url")
