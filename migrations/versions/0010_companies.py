"""companies: each customer's company as Intercom knows it, and each record's weight

A company is stored once per workspace (name, monthly spend, plan, size); each Intercom
contact names one (the one that pays most), read after the evidence is saved. Each record
keeps how many distinct companies back it and their monthly spend summed once per company.
Existing records weigh nothing until their customers' companies are read (refresh-companies).
The feedback table is only added to, never rebuilt, so SQLite's search triggers (0005) stay.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 19:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'companies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.Column('intercom_id', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('monthly_spend', sa.BigInteger(), nullable=False),
        sa.Column('plan', sa.String(length=255), nullable=True),
        sa.Column('size', sa.Integer(), nullable=True),
        sa.Column('read_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_companies')),
        sa.UniqueConstraint('workspace_id', 'intercom_id', name='uq_companies_intercom'),
    )
    op.create_index('ix_companies_plan', 'companies', ['plan'])
    op.create_table(
        'contact_companies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('workspace_id', sa.String(length=64), nullable=False),
        sa.Column('contact_id', sa.String(length=64), nullable=False),
        sa.Column('company_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('claimed_at', sa.DateTime(), nullable=True),
        sa.Column('read_at', sa.DateTime(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ['company_id'],
            ['companies.id'],
            name=op.f('fk_contact_companies_company_id_companies'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_companies')),
        sa.UniqueConstraint('workspace_id', 'contact_id', name='uq_contact_companies_contact'),
    )
    op.create_index('ix_contact_companies_due', 'contact_companies', ['state', 'next_attempt_at'])
    op.create_index('ix_contact_companies_company', 'contact_companies', ['company_id'])
    op.add_column(
        'feedback', sa.Column('company_count', sa.Integer(), server_default='0', nullable=False)
    )
    op.add_column(
        'feedback',
        sa.Column('monthly_spend', sa.BigInteger(), server_default='0', nullable=False),
    )
    op.create_index('ix_feedback_companies', 'feedback', ['company_count', 'id'])
    op.create_index('ix_feedback_revenue', 'feedback', ['monthly_spend', 'id'])


def downgrade():
    op.drop_index('ix_feedback_revenue', table_name='feedback')
    op.drop_index('ix_feedback_companies', table_name='feedback')
    op.execute("ALTER TABLE feedback DROP COLUMN monthly_spend")
    op.execute("ALTER TABLE feedback DROP COLUMN company_count")
    op.drop_table('contact_companies')
    op.drop_table('companies')
