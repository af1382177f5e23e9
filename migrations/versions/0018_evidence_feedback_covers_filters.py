"""evidence feedback covers filters: ix_evidence_feedback also holds each piece's importance,
workspace and contact, so the list's ?importance= and ?plan= filters ask each record's
evidence in the index alone (search.listed_feedback), newest records first, and stop at the
page. Indexes only: no row changes either way; downgrade narrows it back to (feedback_id, id).

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-29 22:40:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_evidence_feedback', table_name='evidence')
    op.create_index(
        'ix_evidence_feedback',
        'evidence',
        ['feedback_id', 'id', 'importance', 'workspace_id', 'contact_id'],
    )


def downgrade():
    op.drop_index('ix_evidence_feedback', table_name='evidence')
    op.create_index('ix_evidence_feedback', 'evidence', ['feedback_id', 'id'])
