"""customer indexes cover conversation_id

The first canvas looks for a customer's records outside the open conversation. With
conversation_id in the contact and email indexes, that test is made on the index alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 23:33:02.460312

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index('ix_feedback_contact')
        batch_op.create_index('ix_feedback_contact', ['workspace_id', 'contact_id', 'id', 'conversation_id'], unique=False)
        batch_op.drop_index('ix_feedback_customer_email')
        batch_op.create_index('ix_feedback_customer_email', ['customer_email', 'id', 'conversation_id'], unique=False)


def downgrade():
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index('ix_feedback_customer_email')
        batch_op.create_index('ix_feedback_customer_email', ['customer_email', 'id'], unique=False)
        batch_op.drop_index('ix_feedback_contact')
        batch_op.create_index('ix_feedback_contact', ['workspace_id', 'contact_id', 'id'], unique=False)
