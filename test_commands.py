"""The command line: init-db, create-user, reset-password, backup, copy-db, canvas-request and
send-notes."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from sqlalchemy import func, select

import models
from conftest import (
    PASSWORD,
    WORKSPACE_ID,
    add_feedback,
    connect_workspace,
    create_user,
    feedback_count,
    make_app,
    page_text,
    post,
    sign_in,
    stored_evidence,
    stored_feedback,
    users,
)
from hedwig_app.database import INITIAL_REVISION, MIGRATIONS, described_by_models
from hedwig_app.search import search
from models import Evidence, Feedback, User, db

# --- The command line -----------------------------------------------------------------------------


def test_create_user_from_the_command_line(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["create-user", "Ada@Example.com", "--password", PASSWORD]
    )
    assert result.exit_code == 0, result.output
    client = app.test_client()
    sign_in(client)
    assert client.get("/").status_code == 200


def test_create_user_prompts_for_a_hidden_confirmed_password(app: Flask) -> None:
    result = app.test_cli_runner().invoke(
        args=["create-user", "ada@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create-user", "ada@example.com", "--password", "short"], "at least 8 characters"),
        (["create-user", "ADA@example.com", "--password", PASSWORD], "exists already"),
    ],
)
def test_create_user_refusals(app: Flask, args: list[str], message: str) -> None:
    create_user(app)
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 1
    assert message in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 1


@pytest.mark.fresh_database
def test_new_database_is_at_the_newest_migration(app: Flask) -> None:
    with app.app_context():
        version = db.session.scalar(sqlalchemy.text("SELECT version_num FROM alembic_version"))
        head = ScriptDirectory.from_config(
            app.extensions["migrate"].migrate.get_config(MIGRATIONS)
        ).get_current_head()
    assert version == head


def migration_context(connection: sqlalchemy.Connection) -> MigrationContext:
    """Alembic's view of the database, leaving out the search index a migration makes."""
    return MigrationContext.configure(connection, opts={"include_object": described_by_models})


@pytest.mark.fresh_database
def test_models_and_migrations_agree(app: Flask) -> None:
    """Every schema change ships with its migration: the migrated database is what the
    models describe."""
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(migration_context(connection), db.metadata)
    assert differences == []


@pytest.mark.fresh_database
def test_every_migration_downgrades_and_upgrades_again_keeping_rows(app: Flask) -> None:
    (feedback_id,) = add_feedback(app, title="Kept")
    owner = create_user(app)
    with app.app_context():  # rows in the tables the later migrations add, too
        change = models.StatusChange(
            feedback_id=feedback_id,
            from_status="open",
            to_status="planned",
            changed_by_id=owner,
            issue_url="https://linear.app/acme/issue/ENG-1",
        )
        db.session.add(change)
        db.session.flush()
        db.session.add(models.Note(change_id=change.id, feedback_id=feedback_id, body="<p>x</p>"))
        db.session.add(
            models.Note(change_id=change.id, feedback_id=feedback_id, kind="reply", body="<p>y</p>")
        )
        db.session.add(models.ReplyTemplate(status="done", body="Done!", updated_by_id=owner))
        db.session.add(models.WebhookDelivery(source="github", delivery_id="72d3162e"))
        endpoint = models.WebhookEndpoint(
            url="https://hooks.example/hedwig", events=" record.created ", encrypted_secret="x"
        )
        db.session.add(endpoint)
        db.session.flush()
        db.session.add(
            models.OutgoingDelivery(
                endpoint_id=endpoint.id, event="record.created", delivery_id="dlv_1", payload="{}"
            )
        )
        db.session.add(
            models.IssueLink(
                feedback_id=feedback_id,
                tracker="linear",
                issue_key="linear:ENG-1",
                url="https://linear.app/acme/issue/ENG-1",
            )
        )
        db.session.add(
            models.AccountLink(kind="invite", key_hash="0" * 64, expires_at=models.utcnow())
        )
        db.session.commit()
        flask_migrate.downgrade(revision=INITIAL_REVISION)
        flask_migrate.upgrade()
        with db.engine.connect() as connection:
            differences = compare_metadata(migration_context(connection), db.metadata)
    assert differences == []
    assert feedback_count(app) == 1
    assert users(app) == {"ada@example.com": ("owner", False)}  # 0007 made them an owner
    assert (
        post(
            app.test_client(), "/login", {"email": "ada@example.com", "password": PASSWORD}
        ).status_code
        == 302
    )


@pytest.mark.fresh_database
def test_database_from_before_migrations_is_stamped_and_keeps_its_rows(tmp_path: Any) -> None:
    with make_app(tmp_path).app_context():  # before migrations, Hedwig made 0001's tables
        flask_migrate.downgrade(revision=INITIAL_REVISION)
        db.session.execute(sqlalchemy.text("DROP TABLE alembic_version"))
        db.session.commit()
        db.engine.dispose()
    old = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'hedwig.db'}")
    with old.begin() as connection:
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO feedback (title, description, customer_name, "
                "customer_email, source, created_at) "
                "VALUES ('Kept', '', '', '', 'web', '2026-01-02 03:04:05')"
            )
        )
    old.dispose()
    app = make_app(tmp_path)
    assert feedback_count(app) == 1
    with app.app_context():
        assert db.session.scalar(sqlalchemy.text("SELECT version_num FROM alembic_version"))


def test_init_db_is_idempotent(app: Flask) -> None:
    add_feedback(app)
    result = app.test_cli_runner().invoke(args=["init-db"])
    assert result.exit_code == 0
    assert feedback_count(app) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_backup_refuses_databases_other_than_sqlite(app: Flask, tmp_path: Any) -> None:
    result = app.test_cli_runner().invoke(args=["backup", str(tmp_path / "copy.db")])
    assert result.exit_code == 1
    assert "backup copies SQLite databases only" in result.output
    assert "pg_dump" in result.output
    assert not (tmp_path / "copy.db").exists()


def test_backup_yields_a_database_that_opens_and_holds_the_rows(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    add_feedback(app, 3)
    target = tmp_path / "backup.db"
    result = app.test_cli_runner().invoke(args=["backup", str(target)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert copy.execute("SELECT count(*) FROM feedback").fetchone() == (3,)


def test_copy_db_moves_every_row_keeping_ids(tmp_path: Any, database_url: str) -> None:
    source = make_app(tmp_path / "source")
    create_user(source)
    connect_workspace(source)
    ids = add_feedback(source, 2500, source="intercom", workspace_id=WORKSPACE_ID)
    with source.app_context():  # a gap in the ids must survive the copy
        db.session.execute(sqlalchemy.delete(Feedback).where(Feedback.id == ids[10]))
        db.session.commit()

    result = source.test_cli_runner().invoke(args=["copy-db", "--to", database_url])
    assert result.exit_code == 0, result.output
    assert "feedback: 2499 in the source, 2499 copied" in result.output
    assert "users: 1 in the source, 1 copied" in result.output

    target = make_app(tmp_path / "source", DATABASE_URL=database_url)
    assert feedback_count(target) == 2499
    client = target.test_client()
    sign_in(client)  # the user, and the password hash, came along
    assert "Feedback 2000" in page_text(client.get(f"/feedback/{ids[2000]}"))
    assert client.get(f"/feedback/{ids[10]}").status_code == 404
    response = post(client, "/feedback/new", {"title": "After the move"})
    assert response.headers["Location"] == f"/feedback/{ids[-1] + 1}"


def test_copy_db_refuses_a_database_that_is_not_empty(tmp_path: Any, database_url: str) -> None:
    source = make_app(tmp_path / "source")
    add_feedback(source, 3)
    target = make_app(tmp_path, DATABASE_URL=database_url)
    add_feedback(target, 1, title="Already here")
    result = source.test_cli_runner().invoke(args=["copy-db", "--to", database_url])
    assert result.exit_code == 1
    assert "not empty" in result.output
    assert feedback_count(target) == 1


def sqlite_app_with_rows(tmp_path: Any, rows: int = 3) -> Flask:
    app = make_app(tmp_path)
    add_feedback(app, rows, description="x" * 1000)
    return app


def backup(app: Flask, target: Any) -> Any:
    return app.test_cli_runner().invoke(args=["backup", str(target)])


def test_a_backup_is_private_to_its_owner(tmp_path: Any) -> None:
    app = sqlite_app_with_rows(tmp_path)
    assert backup(app, tmp_path / "copy.db").exit_code == 0
    assert stat.S_IMODE((tmp_path / "copy.db").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing-folder/copy.db", "does not exist: create it first"),
        ("notes.txt", "exists and is not an SQLite database"),
        ("hedwig.db", "is Hedwig's live database"),
        ("hedwig.db-wal", "is Hedwig's live database"),
    ],
)
def test_backup_refuses_a_target_it_would_spoil(tmp_path: Any, target: str, message: str) -> None:
    app = sqlite_app_with_rows(tmp_path)
    (tmp_path / "notes.txt").write_text("my notes")
    result = backup(app, tmp_path / target)
    assert result.exit_code == 1
    assert message in result.output
    assert (tmp_path / "notes.txt").read_text() == "my notes"
    assert feedback_count(app) == 3


def test_a_backup_that_runs_out_of_disk_leaves_nothing_behind(tmp_path: Any) -> None:
    """A full disk, played by a file-size limit on the backup's process."""
    sqlite_app_with_rows(tmp_path, rows=300)
    script = (
        "import pathlib, resource, signal, hedwig, conftest\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))\n"
        f"app = hedwig.create_app(conftest.config_for(pathlib.Path({str(tmp_path)!r})))\n"
        f"result = app.test_cli_runner().invoke(args=['backup', {str(tmp_path / 'copy.db')!r}])\n"
        "print(result.exit_code, result.output)\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parent, capture_output=True, text=True
    )
    assert ran.stdout.startswith("1 "), ran.stdout + ran.stderr
    assert "The backup failed and" in ran.stdout
    assert "Is the disk full" in ran.stdout
    assert not (tmp_path / "copy.db").exists()
    assert [path.name for path in tmp_path.glob(".copy.db*")] == []


def test_copy_db_refuses_values_the_target_would_refuse_naming_their_rows(
    tmp_path: Any, database_url: str
) -> None:
    source = make_app(tmp_path / "source")
    ids = add_feedback(source, 3, customer_name="Casey")
    (_, _, evidence) = stored_evidence(source)
    with source.app_context():  # what an older Hedwig let into SQLite
        db.session.execute(
            sqlalchemy.update(Feedback).where(Feedback.id == ids[0]).values(title="NUL\x00")
        )
        db.session.execute(
            sqlalchemy.update(Evidence).where(Evidence.id == evidence.id).values(admin_id="i" * 300)
        )
        db.session.commit()
    result = source.test_cli_runner().invoke(args=["copy-db", "--to", database_url])
    assert result.exit_code == 1
    assert "Nothing was copied" in result.output
    assert f"feedback (id {ids[0]}): title holds a NUL character" in result.output
    assert (
        f"evidence (id {evidence.id}): admin_id has 300 characters, more than its 64"
        in result.output
    )
    assert "Traceback" not in result.output
    target = make_app(tmp_path, DATABASE_URL=database_url)
    assert feedback_count(target) == 0


def test_backup_refuses_an_empty_file_or_a_pipe(tmp_path: Any) -> None:
    app = sqlite_app_with_rows(tmp_path)
    (tmp_path / "empty").touch()
    os.mkfifo(tmp_path / "pipe")
    for name in ("empty", "pipe"):
        result = backup(app, tmp_path / name)
        assert result.exit_code == 1
        assert "is not an SQLite database" in result.output
    assert (tmp_path / "empty").read_bytes() == b""


def test_backup_onto_a_symlink_replaces_the_link_not_what_it_points_to(tmp_path: Any) -> None:
    app = sqlite_app_with_rows(tmp_path)
    elsewhere = tmp_path / "elsewhere.db"
    assert backup(app, elsewhere).exit_code == 0
    before = elsewhere.read_bytes()
    (tmp_path / "link.db").symlink_to(elsewhere)
    assert backup(app, tmp_path / "link.db").exit_code == 0
    assert not (tmp_path / "link.db").is_symlink()
    assert elsewhere.read_bytes() == before


@pytest.mark.fresh_database
def test_evidence_migration_moves_customers_and_back_keeping_rows(app: Flask) -> None:
    """0005 makes each record's customer and provenance its first piece of evidence, and its
    downgrade puts them back."""
    with app.app_context():
        flask_migrate.downgrade(revision="0004")
        feedback = sqlalchemy.table(
            "feedback",
            *(
                sqlalchemy.column(name)
                for name in (
                    "title",
                    "description",
                    "customer_name",
                    "customer_email",
                    "source",
                    "workspace_id",
                    "region",
                    "conversation_id",
                    "contact_id",
                    "admin_name",
                    "submit_nonce",
                    "created_at",
                )
            ),
        )
        db.session.execute(
            feedback.insert(),
            [
                {
                    "title": "From the Inbox",
                    "description": "",
                    "customer_name": "Casey Café",
                    "customer_email": "casey@example.com",
                    "source": "intercom",
                    "workspace_id": WORKSPACE_ID,
                    "region": "eu",
                    "conversation_id": "c1",
                    "contact_id": "k1",
                    "admin_name": "Alex",
                    "submit_nonce": "nonce-0123456789abcdef",
                    "created_at": datetime(2026, 1, 2),
                },
                {
                    "title": "By hand, nobody",
                    "description": "d",
                    "customer_name": "",
                    "customer_email": "",
                    "source": "web",
                    "workspace_id": None,
                    "region": None,
                    "conversation_id": None,
                    "contact_id": None,
                    "admin_name": None,
                    "submit_nonce": None,
                    "created_at": datetime(2026, 1, 3),
                },
            ],
        )
        db.session.commit()
        flask_migrate.upgrade()
    inbox_record, hand_record = stored_feedback(app)
    (evidence,) = stored_evidence(app)
    assert (inbox_record.customer_count, hand_record.customer_count) == (1, 0)
    assert (
        evidence.feedback_id,
        evidence.customer_name,
        evidence.region,
        evidence.admin_name,
        evidence.submit_nonce,
    ) == (inbox_record.id, "Casey Café", "eu", "Alex", "nonce-0123456789abcdef")
    assert (inbox_record.workspace_id, inbox_record.source) == (WORKSPACE_ID, "intercom")
    with app.app_context():
        found = db.session.scalars(search(select(Feedback), "cafe")).all()
        assert [record.title for record in found] == ["From the Inbox"]  # indexed
        db.session.rollback()  # the read's transaction ends before the schema changes
        flask_migrate.downgrade(revision="0004")
        row = db.session.execute(
            sqlalchemy.text(
                "SELECT customer_name, conversation_id, region FROM feedback "
                "WHERE title = 'From the Inbox'"
            )
        ).one()
        assert tuple(row) == ("Casey Café", "c1", "eu")
        db.session.rollback()
        flask_migrate.upgrade()
    assert [e.customer_email for e in stored_evidence(app)] == ["casey@example.com"]


@pytest.mark.fresh_database
def test_importance_migration_makes_existing_evidence_important_and_back(app: Flask) -> None:
    """0009 gives each piece of evidence heard before it "important", and its downgrade
    drops the column, keeping the rows."""
    (feedback_id,) = add_feedback(app, title="Kept", customer_email="dana@example.com")
    with app.app_context():
        flask_migrate.downgrade(revision="0008")
        db.session.execute(
            sqlalchemy.text(
                "INSERT INTO evidence (feedback_id, customer_name, customer_email, quote, "
                "source, created_at) VALUES (:id, '', 'eve@example.com', '', 'web', :at)"
            ),
            {"id": feedback_id, "at": datetime(2026, 1, 2)},
        )
        db.session.commit()
        flask_migrate.upgrade()
    assert [(e.customer_email, e.importance) for e in stored_evidence(app)] == [
        ("dana@example.com", "important"),
        ("eve@example.com", "important"),
    ]
    with app.app_context():
        flask_migrate.downgrade(revision="0008")
        columns = {c["name"] for c in sqlalchemy.inspect(db.engine).get_columns("evidence")}
        assert "importance" not in columns
        count = db.session.scalar(sqlalchemy.text("SELECT count(*) FROM evidence"))
        assert count == 2
        db.session.rollback()
        flask_migrate.upgrade()


@pytest.mark.fresh_database
def test_word_forms_migration_reindexes_the_rows_and_back(app: Flask) -> None:
    """0015 makes the search index again, stemming its words: rows saved before it are found
    in any form of their words; its downgrade makes 0005's index again, in step with the rows
    (those saved meanwhile too), and the upgrade after it finds them all."""
    add_feedback(app, title="Multi-currency invoices", customer_email="dana@example.com")
    with app.app_context():
        assert searched_titles("currencies") == ["Multi-currency invoices"]
        flask_migrate.downgrade(revision="0014")
        assert titles_in_0005_index("currencies") == []  # no stems: prefixes only
        assert titles_in_0005_index("currency") == ["Multi-currency invoices"]
    add_feedback(app, title="Currency of each invoice")  # the 0005 index's triggers keep it
    with app.app_context():
        assert titles_in_0005_index("currency") == [
            "Multi-currency invoices",
            "Currency of each invoice",
        ]
        if db.engine.dialect.name == "postgresql":
            configs = "SELECT count(*) FROM pg_ts_config WHERE cfgname = 'hedwig_words'"
            assert db.session.scalar(sqlalchemy.text(configs)) == 0
        db.session.rollback()
        flask_migrate.upgrade()
        assert sorted(searched_titles("currencies")) == [
            "Currency of each invoice",
            "Multi-currency invoices",
        ]
        assert searched_titles("dana invoiced") == ["Multi-currency invoices"]


def searched_titles(q: str) -> list[str]:
    titles = [record.title for record in db.session.scalars(search(select(Feedback), q))]
    db.session.rollback()  # the read's transaction ends before the schema changes
    return titles


def titles_in_0005_index(word: str) -> list[str]:
    """Titles the index of 0005 finds for a word's prefix, oldest first."""
    if db.engine.dialect.name == "sqlite":
        query = (
            "SELECT feedback.title FROM feedback JOIN feedback_search ON feedback_search.rowid = "
            "feedback.id WHERE feedback_search MATCH :q ORDER BY feedback.id"
        )
        word = f'"{word}"*'
    else:
        query = (
            "SELECT title FROM feedback WHERE search_vector @@ to_tsquery('simple', :q || ':*') "
            "ORDER BY id"
        )
    titles = list(db.session.scalars(sqlalchemy.text(query), {"q": word}))
    db.session.rollback()
    return titles
