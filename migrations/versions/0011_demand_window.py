"""demand: the indexes the demand page reads

Evidence by when it was heard, carrying its record and customer, so that a window (the last 30,
90 or 365 days, and the one before it) reads only its own rows from the index, never the table;
and the records by their last change, so that the page's cache asks "has anything changed?"
with one step down an index. Indexes only: no row changes either way.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 09:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        'ix_evidence_window', 'evidence', ['created_at', 'feedback_id', 'customer_key']
    )
    op.create_index('ix_feedback_updated', 'feedback', ['updated_at'])


def downgrade():
    op.drop_index('ix_feedback_updated', table_name='feedback')
    op.drop_index('ix_evidence_window', table_name='evidence')
