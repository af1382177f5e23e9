"""word forms and the customers' words: the search stems words and weighs quotes below details

"currencies" finds "Multi-currency", "exported" finds "Export reports", each word still a prefix
and accents still folded. SQLite's FTS5 index is made again with the Porter stemmer (its triggers
with it); PostgreSQL's generated tsvector uses hedwig_words, a configuration that stems English
words with Snowball and, unlike 'english', keeps every word: a search for "who" or "it" finds
what it finds on SQLite. There the customers' words (names, emails, quotes) get weight C, below
the title's A and the details' B; SQLite weighs its columns in bm25() at query time.

Downgrade makes the index of 0005 again.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 10:00:00
"""
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

COLUMNS = "title, description, customers_text"


def upgrade():
    if op.get_bind().dialect.name == 'sqlite':
        make_fts5_index("porter unicode61 remove_diacritics 2")
        return
    op.execute(
        "CREATE TEXT SEARCH DICTIONARY hedwig_stem (TEMPLATE = snowball, Language = english)"
    )
    op.execute("CREATE TEXT SEARCH CONFIGURATION hedwig_words (COPY = simple)")
    # Folded text holds only letters, digits and spaces: these are all its words.
    op.execute(
        "ALTER TEXT SEARCH CONFIGURATION hedwig_words "
        "ALTER MAPPING FOR asciiword, word, numword WITH hedwig_stem"
    )
    make_search_vector("hedwig_words", "C")


def downgrade():
    if op.get_bind().dialect.name == 'sqlite':
        make_fts5_index("unicode61 remove_diacritics 2")
        return
    make_search_vector("simple", "B")
    op.execute("DROP TEXT SEARCH CONFIGURATION hedwig_words")
    op.execute("DROP TEXT SEARCH DICTIONARY hedwig_stem")


def make_fts5_index(tokenize):
    """SQLite: the FTS5 index over the records, with this tokenizer, its triggers, filled."""
    for name in ('insert', 'delete', 'update'):
        op.execute(f"DROP TRIGGER IF EXISTS feedback_search_{name}")
    op.execute("DROP TABLE IF EXISTS feedback_search")
    op.execute(
        f"CREATE VIRTUAL TABLE feedback_search USING fts5({COLUMNS}, "
        "content='feedback', content_rowid='id', "
        f"tokenize='{tokenize}', prefix='2 3')"
    )
    for statement in search_triggers():
        op.execute(statement)
    op.execute("INSERT INTO feedback_search(feedback_search) VALUES ('rebuild')")


def search_triggers():
    """SQLite: the FTS5 index follows every insert, update and delete of a record (as 0005)."""
    return [
        "CREATE TRIGGER feedback_search_insert AFTER INSERT ON feedback BEGIN "
        f"INSERT INTO feedback_search(rowid, {COLUMNS}) "
        "VALUES (new.id, new.title, new.description, new.customers_text); END",
        "CREATE TRIGGER feedback_search_delete AFTER DELETE ON feedback BEGIN "
        f"INSERT INTO feedback_search(feedback_search, rowid, {COLUMNS}) "
        "VALUES ('delete', old.id, old.title, old.description, old.customers_text); END",
        f"CREATE TRIGGER feedback_search_update AFTER UPDATE OF {COLUMNS} ON feedback BEGIN "
        f"INSERT INTO feedback_search(feedback_search, rowid, {COLUMNS}) "
        "VALUES ('delete', old.id, old.title, old.description, old.customers_text); "
        f"INSERT INTO feedback_search(rowid, {COLUMNS}) "
        "VALUES (new.id, new.title, new.description, new.customers_text); END",
    ]


def make_search_vector(config, customers_weight):
    """PostgreSQL: the generated tsvector and its GIN index, the text folded by hedwig_fold
    (0005) and split by ``config``; the customers' words weighed ``customers_weight``."""
    op.execute("DROP INDEX IF EXISTS ix_feedback_search")
    op.execute("ALTER TABLE feedback DROP COLUMN IF EXISTS search_vector")
    op.execute(
        "ALTER TABLE feedback ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
        f"setweight(to_tsvector('{config}', hedwig_fold(title)), 'A') || "
        f"setweight(to_tsvector('{config}', hedwig_fold(description)), 'B') || "
        f"setweight(to_tsvector('{config}', hedwig_fold(customers_text)), "
        f"'{customers_weight}')) STORED"
    )
    op.execute("CREATE INDEX ix_feedback_search ON feedback USING gin (search_vector)")
