"""The database: opening it from HEDWIG_DATABASE_URL (SQLite by default, or PostgreSQL),
bringing its schema up to date with the migrations at every start, SQLite's tuning, and
``begin_write()`` and ``lock_rows()`` for transactions that read and then write, and
``upsert_insert()`` (INSERT … ON CONFLICT on both databases). Imports settings.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import flask_migrate
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import Select, column, event, func, inspect, make_url, select, table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from hedwig_app.settings import SetupError
from models import db

MIGRATIONS = str(Path(__file__).parent.parent / "migrations")
INITIAL_REVISION = "0001"
MIGRATION_LOCK_KEY = 0x4865647769670001  # PostgreSQL advisory lock: "Hedwig" 1
ALEMBIC_VERSION = table("alembic_version", column("version_num"))
migrate = flask_migrate.Migrate()


def init_database(app: Flask) -> None:
    """Open the database and bring its schema up to date: no setup step on any database."""
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url_setting(app)
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        keep_private(Path(sqlite_path(url)))
    # An error's message never carries the statement's values (customers' words) into a log.
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"hide_parameters": True})
    db.init_app(app)
    migrate.init_app(
        app, db, directory=MIGRATIONS, render_as_batch=True, include_object=described_by_models
    )
    try:
        with app.app_context(), db.engine.connect():
            pass
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise SetupError(
            f"Hedwig cannot open its database ({url.render_as_string(hide_password=True)}): "
            f"{reason}. Check HEDWIG_DATABASE_URL, and that the database server is running."
        ) from None
    upgrade_database(app)


def database_app(url: str, instance_path: str) -> Flask:
    """An app holding nothing but the database at ``url``, migrated: what copy-db fills."""
    app = Flask(__name__, instance_path=instance_path)
    app.config["DATABASE_URL"] = url
    init_database(app)
    return app


def database_url_setting(app: Flask) -> str:
    """HEDWIG_DATABASE_URL, checked, or the SQLite file in the instance folder."""
    configured = app.config.get("DATABASE_URL")
    default = Path(app.instance_path, "hedwig.db")
    if not configured:
        return f"sqlite:///{default}"
    works = f"use postgresql+psycopg://user:password@host/name, or leave it unset for {default}"
    try:
        url = make_url(configured)
    except ArgumentError:
        raise SetupError(f"HEDWIG_DATABASE_URL is not a database URL: {works}.") from None
    configured = url.render_as_string(hide_password=True)  # for the messages below
    if url.drivername in ("postgres", "postgresql"):  # as hosts print it: psycopg 3 serves it
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend == "sqlite" and not os.path.isabs(sqlite_path(url)):
        raise SetupError(
            f"HEDWIG_DATABASE_URL names no absolute SQLite file ({configured!r}): write "
            "sqlite:/// and then the absolute path, like sqlite:////srv/hedwig/hedwig.db, or "
            f"leave it unset for {default}."
        )
    if backend not in ("sqlite", "postgresql"):
        raise SetupError(
            f"HEDWIG_DATABASE_URL must name an SQLite or PostgreSQL database ({configured!r}): "
            f"{works}."
        )
    try:
        url.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        raise SetupError(
            f"HEDWIG_DATABASE_URL asks for the driver {url.drivername!r}, which is not "
            f"installed: {works}."
        ) from None
    return url.render_as_string(hide_password=False)


def sqlite_path(url: URL) -> str:
    """The file an SQLite URL names (a file: URI included), or "" for a database in memory."""
    path = url.database or ""
    if url.query.get("uri") == "true":
        path = urlsplit(path).path
    return "" if path == ":memory:" else path


def keep_private(database: Path) -> None:
    """The SQLite file holds password hashes and customers' words: readable by its owner only.
    SQLite gives its -wal and -shm files the database's mode. A file that is not an SQLite
    database is left alone, and Hedwig does not start."""
    if database.exists() and not is_sqlite_file(database, empty_ok=True):
        raise SetupError(f"{database} is not an SQLite database: point HEDWIG_DATABASE_URL at one.")
    fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if path.stat().st_uid == os.getuid():
                path.chmod(0o600)


def is_sqlite_file(path: Path, empty_ok: bool = False) -> bool:
    """Whether the file begins as SQLite's databases do (an empty one, if ``empty_ok``)."""
    if not path.is_file():
        return False
    with open(path, "rb") as file:
        header = file.read(16)
    return header == b"SQLite format 3\x00" or (empty_ok and header == b"")


def described_by_models(obj: Any, name: str | None, kind: str, *args: Any) -> bool:
    """What the models describe, for comparing them with the database: not the search index,
    which a migration makes (an FTS5 table, or a tsvector column and its index)."""
    return not (name or "").startswith(("feedback_search", "search_vector", "ix_feedback_search"))


def upgrade_database(app: Flask) -> None:
    """Apply the migrations. A database made by Hedwig before it had migrations (its tables,
    but no alembic_version) is first stamped at the initial migration, not created again."""
    with app.app_context(), start_up_lock(app):
        tables = set(inspect(db.engine).get_table_names())
        if "feedback" in tables and "alembic_version" not in tables:
            flask_migrate.stamp(revision=INITIAL_REVISION)
        flask_migrate.upgrade()
        scripts = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        app.extensions["hedwig_schema_head"] = scripts.get_current_head()


@contextmanager
def start_up_lock(app: Flask) -> Iterator[None]:
    """One process at a time: gunicorn's workers start together and would migrate together.
    A file lock serves one box; on PostgreSQL an advisory lock serves app servers on several."""
    with open(
        os.open(Path(app.instance_path, "migrate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    ) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if db.engine.dialect.name != "postgresql":
            yield
            return
        with db.engine.connect() as connection:
            connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            try:
                yield
            finally:
                connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))


@event.listens_for(Engine, "connect")
def tune_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite only: WAL so readers never wait for the writer, and a wait instead of
    "database is locked" when two workers write at once."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def begin_write(model: type[db.Model]) -> None:
    """Start a transaction that reads and then writes ``model``'s table, holding the write
    lock from its first statement. On SQLite a plain (deferred) BEGIN would fail with
    "database is locked" if another worker wrote in between, busy timeout or not; on PostgreSQL
    the table lock makes a concurrent read-then-write wait instead of acting on stale reads."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        table = connection.dialect.identifier_preparer.format_table(model.__table__)
        connection.exec_driver_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")


def lock_rows(model: type[db.Model], ids: Iterable[int], exclusive: bool = False) -> set[int]:
    """Hold the rows of ``model`` with these ids until the transaction ends, read them as they
    are now (the session's copies too), and say which still exist. SQLite holds the write lock
    (BEGIN IMMEDIATE, unless this transaction writes already). PostgreSQL locks each row, in id
    order so that two holders of the same rows never deadlock: FOR NO KEY UPDATE, which makes
    only another holder wait and still lets new rows refer to them (evidence added to a
    record), or, ``exclusive``, FOR UPDATE, which waits for those too (to delete or merge)."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite" and not in_transaction(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    found = set()
    for row_id in sorted(set(ids)):
        row = db.session.scalar(
            select(model)
            .where(model.id == row_id)
            .with_for_update(key_share=not exclusive)
            .execution_options(populate_existing=True)
        )
        if row is not None:
            found.add(row_id)
    return found


def in_transaction(connection: Connection) -> bool:
    """Whether SQLite's own transaction is open (pysqlite opens one at the first write)."""
    return connection.connection.dbapi_connection.in_transaction


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in each of Hedwig's tables that exist in the database."""
    existing = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        return {
            table.name: connection.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
            if table.name in existing
        }


def upsert_insert(model: type[db.Model], dialect: str) -> Any:
    """An INSERT into ``model``'s table that can say what to do ON CONFLICT, for the database
    named by ``dialect`` ("sqlite" or "postgresql", which spell it alike)."""
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def claim_first(model: type[db.Model], due: Select, now: Any, claimed_state: str) -> Any:
    """The first of ``due``'s ids (pending rows whose time has come) that this sender claims:
    one UPDATE moves it from pending to ``claimed_state``, so of two senders only one moves it.
    Each claim is committed at once; None when every due row went to another sender. The
    outbox's notes, the company reads and the webhook deliveries are all claimed this way."""
    for row_id in db.session.scalars(due.limit(20)).all():
        claimed = db.session.execute(
            update(model)
            .where(model.id == row_id, model.state == "pending", model.next_attempt_at <= now)
            .values(state=claimed_state, claimed_at=now)
        ).rowcount
        db.session.commit()
        if claimed:
            return db.session.get(model, row_id)
    db.session.rollback()
    return None
