"""issue links: a record follows the GitHub, Linear or Jira issue where its work happens

Each link keeps its tracker, the issue's key (as GitHub's and Linear's webhooks name it) and
its address; a record links an issue once, and several records may link one issue. Downgrade
drops the links.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'issue_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('feedback_id', sa.Integer(), nullable=False),
        sa.Column('tracker', sa.String(length=16), nullable=False),
        sa.Column('issue_key', sa.String(length=320), nullable=False),
        sa.Column('url', sa.String(length=500), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ['created_by_id'],
            ['users.id'],
            name=op.f('fk_issue_links_created_by_id_users'),
            ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['feedback_id'],
            ['feedback.id'],
            name=op.f('fk_issue_links_feedback_id_feedback'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_issue_links')),
        sa.UniqueConstraint('feedback_id', 'issue_key', name='uq_issue_links_issue'),
    )
    op.create_index('ix_issue_links_issue', 'issue_links', ['issue_key', 'feedback_id'])


def downgrade():
    op.drop_index('ix_issue_links_issue', table_name='issue_links')
    op.drop_table('issue_links')
