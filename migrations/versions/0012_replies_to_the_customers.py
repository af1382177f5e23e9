"""replies: the customers told in their conversations, and assigned back to their agent

A note gains its kind: "note" (the team's, as every existing one is) or "reply" (a comment the
customer sees), sent through the same outbox; a conversation gets at most one of each per
change. A note may also assign its conversation back to the agent who recorded the evidence.
Owners keep each status's reply, and whether an issue's webhook sends it by itself.

Downgrade drops the replies (sent or not) with the column that tells them from notes.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 09:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('kind', sa.String(length=16), server_default='note', nullable=False)
        )
        batch_op.add_column(sa.Column('assignee_id', sa.String(length=64), nullable=True))
        batch_op.drop_constraint('uq_notes_change', type_='unique')
        batch_op.create_unique_constraint(
            'uq_notes_change', ['change_id', 'kind', 'workspace_id', 'conversation_id']
        )
    op.create_table(
        'reply_templates',
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column(
            'reply_automatically', sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column('updated_by_id', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['updated_by_id'],
            ['users.id'],
            name=op.f('fk_reply_templates_updated_by_id_users'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('status', name=op.f('pk_reply_templates')),
    )


def downgrade():
    op.drop_table('reply_templates')
    op.execute("DELETE FROM notes WHERE kind = 'reply'")
    with op.batch_alter_table('notes', schema=None) as batch_op:
        batch_op.drop_constraint('uq_notes_change', type_='unique')
        batch_op.create_unique_constraint(
            'uq_notes_change', ['change_id', 'workspace_id', 'conversation_id']
        )
        batch_op.drop_column('assignee_id')
        batch_op.drop_column('kind')
