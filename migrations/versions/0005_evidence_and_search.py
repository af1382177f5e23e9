"""evidence and search: one record, many customers, found by what people mean

Each record's customer and provenance become its first piece of evidence (when it had any);
the record keeps its title, details, source and workspace, and gains the count of customers
backing it and their names, emails and words for the search. Merged records leave their id in
merged_feedback. On SQLite the record's ids are never given out again (AUTOINCREMENT), and an
FTS5 index over the records is kept in step by triggers; on PostgreSQL a generated tsvector
column with a GIN index does the same, with accents folded by unaccent.

A later migration that makes SQLite rebuild the feedback table (batch mode's "recreate") drops
these triggers: it must create them again (search_triggers() below).

Downgrade keeps, for each record, its oldest piece of evidence: a record backed by several
customers keeps one of them, and merged records' old ids are forgotten.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 00:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 1000
MOVED = (
    'customer_name', 'customer_email', 'contact_id', 'workspace_id', 'region', 'conversation_id',
    'admin_id', 'admin_name', 'admin_email', 'submit_nonce', 'source', 'created_by_id',
    'created_at',
)


def customer_key(email, workspace_id, contact_id, name):
    """models.customer_key() as it was when this migration was written."""
    if email:
        return f"email:{email.strip().lower()}"
    if contact_id:
        return f"contact:{workspace_id or ''}:{contact_id}"
    if name.strip():
        return f"name:{name.strip().lower()}"[:270]
    return None


def upgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == 'sqlite'
    op.create_table('evidence',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('feedback_id', sa.Integer(), nullable=False),
    sa.Column('customer_name', sa.String(length=255), nullable=False),
    sa.Column('customer_email', sa.String(length=254), nullable=False),
    sa.Column('contact_id', sa.String(length=64), nullable=True),
    sa.Column('customer_key', sa.String(length=270), nullable=True),
    sa.Column('quote', sa.Text(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('workspace_id', sa.String(length=64), nullable=True),
    sa.Column('region', sa.String(length=16), nullable=True),
    sa.Column('conversation_id', sa.String(length=64), nullable=True),
    sa.Column('admin_id', sa.String(length=64), nullable=True),
    sa.Column('admin_name', sa.String(length=255), nullable=True),
    sa.Column('admin_email', sa.String(length=254), nullable=True),
    sa.Column('submit_nonce', sa.String(length=64), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_evidence_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['feedback_id'], ['feedback.id'], name=op.f('fk_evidence_feedback_id_feedback'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_evidence')),
    sa.UniqueConstraint('feedback_id', 'workspace_id', 'conversation_id', name='uq_evidence_conversation'),
    sa.UniqueConstraint('submit_nonce', name=op.f('uq_evidence_submit_nonce'))
    )
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.create_index('ix_evidence_contact', ['workspace_id', 'contact_id', 'id', 'conversation_id', 'feedback_id'], unique=False)
        batch_op.create_index('ix_evidence_conversation', ['workspace_id', 'conversation_id', 'id', 'feedback_id'], unique=False)
        batch_op.create_index('ix_evidence_customer_email', ['workspace_id', 'customer_email', 'id', 'conversation_id', 'feedback_id'], unique=False)
        batch_op.create_index('ix_evidence_feedback', ['feedback_id', 'id'], unique=False)

    op.create_table('merged_feedback',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('into_id', sa.Integer(), nullable=False),
    sa.Column('merged_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['into_id'], ['feedback.id'], name=op.f('fk_merged_feedback_into_id_feedback'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_merged_feedback'))
    )
    with op.batch_alter_table('merged_feedback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_merged_feedback_into_id'), ['into_id'], unique=False)

    # Each record's customer and provenance become its first piece of evidence.
    feedback = sa.table('feedback', sa.column('id'), *(sa.column(name) for name in MOVED))
    evidence = sa.table(
        'evidence', sa.column('feedback_id'), sa.column('customer_key'), sa.column('quote'),
        *(sa.column(name) for name in MOVED),
    )
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(feedback).where(feedback.c.id > last_id).order_by(feedback.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        last_id = rows[-1].id
        moved = [
            {
                'feedback_id': row.id,
                'customer_key': customer_key(
                    row.customer_email, row.workspace_id, row.contact_id, row.customer_name
                ),
                'quote': '',
                **{name: getattr(row, name) for name in MOVED},
            }
            for row in rows
            if row.customer_name or row.customer_email or row.contact_id or row.conversation_id
        ]
        if moved:
            bind.execute(evidence.insert(), moved)

    with op.batch_alter_table(
        'feedback',
        schema=None,
        recreate='always' if sqlite else 'auto',
        table_kwargs={'sqlite_autoincrement': True},
    ) as batch_op:
        batch_op.drop_index('ix_feedback_contact')
        batch_op.drop_index('ix_feedback_conversation')
        batch_op.drop_index('ix_feedback_customer_email')
        batch_op.drop_constraint('uq_feedback_submit_nonce', type_='unique')
        for name in ('customer_name', 'customer_email', 'contact_id', 'region', 'conversation_id',
                     'admin_id', 'admin_name', 'admin_email', 'submit_nonce'):
            batch_op.drop_column(name)
        batch_op.add_column(sa.Column('customer_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('customers_text', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(), nullable=True))
    op.execute("UPDATE feedback SET updated_at = created_at")
    op.execute(
        "UPDATE feedback SET "
        "customer_count = (SELECT count(DISTINCT customer_key) FROM evidence "
        "WHERE evidence.feedback_id = feedback.id), "
        "customers_text = coalesce((SELECT customer_name || ' ' || customer_email FROM evidence "
        "WHERE evidence.feedback_id = feedback.id), '')"
    )
    with op.batch_alter_table(
        'feedback', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.alter_column('updated_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.create_index('ix_feedback_customers', ['customer_count', 'id'], unique=False)

    if sqlite:
        op.execute(
            "CREATE VIRTUAL TABLE feedback_search USING fts5(title, description, customers_text, "
            "content='feedback', content_rowid='id', "
            "tokenize='unicode61 remove_diacritics 2', prefix='2 3')"
        )
        for statement in search_triggers():
            op.execute(statement)
        op.execute("INSERT INTO feedback_search(feedback_search) VALUES ('rebuild')")
    else:
        # Folded as SQLite's tokenizer folds: accents off, lower case, words split at every
        # character that is not a letter or a digit (an email address is several words).
        op.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
        op.execute(
            "CREATE OR REPLACE FUNCTION hedwig_fold(text) RETURNS text "
            "LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT "
            "AS $$ SELECT regexp_replace(lower(unaccent('unaccent'::regdictionary, $1)), "
            "'[^[:alnum:]]+', ' ', 'g') $$"
        )
        op.execute(
            "ALTER TABLE feedback ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
            "setweight(to_tsvector('simple', hedwig_fold(title)), 'A') || "
            "setweight(to_tsvector('simple', hedwig_fold(description)), 'B') || "
            "setweight(to_tsvector('simple', hedwig_fold(customers_text)), 'B')) STORED"
        )
        op.execute("CREATE INDEX ix_feedback_search ON feedback USING gin (search_vector)")


def search_triggers():
    """SQLite: the FTS5 index follows every insert, update and delete of a record."""
    columns = "title, description, customers_text"
    return [
        "CREATE TRIGGER feedback_search_insert AFTER INSERT ON feedback BEGIN "
        f"INSERT INTO feedback_search(rowid, {columns}) "
        "VALUES (new.id, new.title, new.description, new.customers_text); END",
        "CREATE TRIGGER feedback_search_delete AFTER DELETE ON feedback BEGIN "
        f"INSERT INTO feedback_search(feedback_search, rowid, {columns}) "
        "VALUES ('delete', old.id, old.title, old.description, old.customers_text); END",
        f"CREATE TRIGGER feedback_search_update AFTER UPDATE OF {columns} ON feedback BEGIN "
        f"INSERT INTO feedback_search(feedback_search, rowid, {columns}) "
        "VALUES ('delete', old.id, old.title, old.description, old.customers_text); "
        f"INSERT INTO feedback_search(rowid, {columns}) "
        "VALUES (new.id, new.title, new.description, new.customers_text); END",
    ]


def downgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == 'sqlite'
    if sqlite:
        for name in ('insert', 'delete', 'update'):
            op.execute(f"DROP TRIGGER IF EXISTS feedback_search_{name}")
        op.execute("DROP TABLE IF EXISTS feedback_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_feedback_search")
        op.execute("ALTER TABLE feedback DROP COLUMN IF EXISTS search_vector")
        op.execute("DROP FUNCTION IF EXISTS hedwig_fold(text)")

    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index('ix_feedback_customers')
        batch_op.add_column(sa.Column('customer_name', sa.String(length=255), server_default='', nullable=False))
        batch_op.add_column(sa.Column('customer_email', sa.String(length=254), server_default='', nullable=False))
        for name, length in (('contact_id', 64), ('region', 16), ('conversation_id', 64),
                             ('admin_id', 64), ('admin_name', 255), ('admin_email', 254),
                             ('submit_nonce', 64)):
            batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))
    # Each record takes back its oldest piece of evidence's customer and provenance.
    for name in ('customer_name', 'customer_email', 'contact_id', 'region', 'conversation_id',
                 'admin_id', 'admin_name', 'admin_email', 'submit_nonce', 'workspace_id'):
        op.execute(
            f"UPDATE feedback SET {name} = (SELECT {name} FROM evidence "
            "WHERE evidence.feedback_id = feedback.id ORDER BY evidence.id LIMIT 1) "
            "WHERE EXISTS (SELECT 1 FROM evidence WHERE evidence.feedback_id = feedback.id)"
        )
    with op.batch_alter_table(
        'feedback', schema=None, recreate='always' if sqlite else 'auto'
    ) as batch_op:
        batch_op.drop_column('customer_count')
        batch_op.drop_column('customers_text')
        batch_op.drop_column('updated_at')
        batch_op.alter_column('customer_name', server_default=None, existing_type=sa.String(length=255), existing_nullable=False)
        batch_op.alter_column('customer_email', server_default=None, existing_type=sa.String(length=254), existing_nullable=False)
        batch_op.create_unique_constraint('uq_feedback_submit_nonce', ['submit_nonce'])
        batch_op.create_index('ix_feedback_customer_email', ['workspace_id', 'customer_email', 'id', 'conversation_id'], unique=False)
        batch_op.create_index('ix_feedback_conversation', ['workspace_id', 'conversation_id', 'id'], unique=False)
        batch_op.create_index('ix_feedback_contact', ['workspace_id', 'contact_id', 'id', 'conversation_id'], unique=False)

    with op.batch_alter_table('merged_feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_merged_feedback_into_id'))
    op.drop_table('merged_feedback')
    with op.batch_alter_table('evidence', schema=None) as batch_op:
        batch_op.drop_index('ix_evidence_feedback')
        batch_op.drop_index('ix_evidence_customer_email')
        batch_op.drop_index('ix_evidence_conversation')
        batch_op.drop_index('ix_evidence_contact')
    op.drop_table('evidence')
