"""The flask commands: init-db, create-user, reset-password, backup (SQLite), copy-db (to
PostgreSQL), canvas-request (a signed curl for trying the Inbox app) and send-notes (for a
timer), refresh-companies (the customers' companies read again), and add-webhook and
send-webhooks (outgoing webhooks). Each owns its transaction. Imports auth, database,
companies, webhooks_out, preview, outbox and team.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from flask import current_app, url_for
from flask.cli import with_appcontext
from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from hedwig_app.auth import (
    PASSWORD_MIN,
    active_user,
    add_user,
    api_token_error,
    new_api_token,
    validate_credentials,
)
from hedwig_app.companies import ask_again, read_companies
from hedwig_app.database import (
    database_app,
    is_sqlite_file,
    row_counts,
    sqlite_path,
    upgrade_database,
)
from hedwig_app.outbox import SENDER_WAIT_MAX, send_notes
from hedwig_app.preview import signed_canvas_request
from hedwig_app.team import RESET_LIFETIME, new_link
from hedwig_app.webhooks_out import add_endpoint, send_webhooks
from models import WEBHOOK_EVENTS, ContactCompany, Note, OutgoingDelivery, db, normalize_email

COPY_BATCH = 1000


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database tables (safe to run again)."""
    upgrade_database(current_app._get_current_object())
    click.echo("The database is ready.")


@click.command("create-user")
@with_appcontext
@click.argument("email")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help=f"At least {PASSWORD_MIN} characters.",
)
@click.option("--owner", is_flag=True, help="An owner, not a member (the first user always is).")
def create_user_command(email: str, password: str, owner: bool) -> None:
    """Create a user who can sign in to Hedwig."""
    email = normalize_email(email)
    error = validate_credentials(email, password)
    if error:
        raise click.ClickException(error)
    try:
        user = add_user(email, password, "owner" if owner else "member")
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(f"A user with the email {email} exists already.") from None
    click.echo(f"Created user {email}, {user.role}.")


@click.command("create-token")
@with_appcontext
@click.argument("email")
@click.argument("name")
def create_token_command(email: str, name: str) -> None:
    """Print a new API token for EMAIL, named NAME: the token alone on the last line."""
    user = active_user(normalize_email(email))
    if user is None:
        raise click.ClickException(f"There is no teammate {normalize_email(email)}.")
    error = api_token_error(name.strip())
    if error:
        raise click.ClickException(error)
    token, secret = new_api_token(user, name.strip())
    db.session.commit()
    click.echo(f"Created the API token “{token.name}” for {user.email}; it is shown this once:")
    click.echo(secret)


@click.command("reset-password")
@with_appcontext
@click.argument("email")
@click.option("--url", "origin", help="Hedwig's origin [default: HEDWIG_BASE_URL, or :5000].")
def reset_password_command(email: str, origin: str | None) -> None:
    """Print a one-hour, single-use link that sets EMAIL's password (no mail is sent)."""
    user = active_user(normalize_email(email))
    if user is None:
        raise click.ClickException(f"There is no teammate {normalize_email(email)}.")
    origin = origin or current_app.config["BASE_URL"] or local_origin()
    with current_app.test_request_context(base_url=origin):
        url = new_link("reset", RESET_LIFETIME, user_id=user.id)
        db.session.commit()
    click.echo(f"Open this link within an hour to set the password of {user.email}:\n{url}")


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False))
def backup_command(path: str) -> None:
    """Write a consistent copy of the SQLite database to PATH, safe while Hedwig serves."""
    if db.engine.url.get_backend_name() != "sqlite":
        raise click.ClickException(
            "backup copies SQLite databases only; for another database use its own tools "
            "(e.g. pg_dump for PostgreSQL)."
        )
    target = Path(path).absolute()
    live = Path(sqlite_path(db.engine.url)).absolute()
    if not target.parent.is_dir():
        raise click.ClickException(f"The folder {target.parent} does not exist: create it first.")
    if target.resolve() in {Path(f"{live}{suffix}").resolve() for suffix in ("", "-wal", "-shm")}:
        raise click.ClickException(f"{target} is Hedwig's live database: choose another file.")
    if target.exists() and not (target.is_file() and is_sqlite_file(target)):
        raise click.ClickException(
            f"{target} exists and is not an SQLite database: choose a new file name, so that "
            "nothing of yours is overwritten."
        )
    # Written whole to a new private file beside the target, then renamed over it: a failure
    # never leaves a backup that looks valid and is not.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        with (
            db.engine.connect() as connection,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            connection.connection.driver_connection.backup(copy)
            if copy.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("the copy does not pass SQLite's quick_check")
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as error:
        partial.unlink(missing_ok=True)
        raise click.ClickException(
            f"The backup failed and {target} was not written: {error}. Is the disk full "
            f"(df -h {target.parent})?"
        ) from None
    click.echo(f"Backed up the database to {target} (readable by its owner only).")


@click.command("copy-db")
@click.option("--to", "target_url", required=True, help="SQLAlchemy URL of an empty database.")
@with_appcontext
def copy_db_command(target_url: str) -> None:
    """Copy every row into the empty database at --to (e.g. PostgreSQL), keeping the ids."""
    source_app = current_app._get_current_object()
    target_app = database_app(target_url, source_app.instance_path)
    source = db.engine
    tables = db.metadata.sorted_tables  # parents before children: users come first
    with target_app.app_context():
        target = db.engine
    if any(row_counts(target).values()):
        raise click.ClickException("The target database is not empty: nothing was copied.")
    problems = list(itertools.islice(uncopyable_values(source, tables), 10))
    if problems:
        raise click.ClickException(
            "Nothing was copied: the target would refuse these values, which SQLite kept. "
            "Correct or delete them (in Hedwig, or with sqlite3), then copy again.\n"
            + "\n".join(f"- {problem}" for problem in problems)
        )

    with source.connect() as reading, target.begin() as writing:
        for table in tables:
            total = reading.scalar(select(func.count()).select_from(table))
            copied = 0
            for batch in rows_in_order(reading, table).partitions():
                writing.execute(table.insert(), [row._asdict() for row in batch])
                copied += len(batch)
                click.echo(f"{table.name}: {copied}/{total}")
        if target.dialect.name == "postgresql":
            # Rows came with their ids: move each id sequence past the largest one.
            for table in tables:
                largest = "id" in table.columns and writing.scalar(select(func.max(table.c.id)))
                if largest:
                    sequence = func.pg_get_serial_sequence(table.name, "id")
                    writing.execute(select(func.setval(sequence, largest)))

    source_counts, target_counts = row_counts(source), row_counts(target)
    for name, count in source_counts.items():
        click.echo(f"{name}: {count} in the source, {target_counts.get(name)} copied")
    if source_counts != target_counts:
        raise click.ClickException("The counts differ: check the target before using it.")
    click.echo("Copied. Point HEDWIG_DATABASE_URL at the new database to use it.")


def rows_in_order(connection: Connection, table: Any) -> Any:
    statement = select(table).order_by(*table.primary_key.columns)
    return connection.execution_options(yield_per=COPY_BATCH).execute(statement)


def uncopyable_values(source: Engine, tables: list[Any]) -> Iterator[str]:
    """Values SQLite keeps and PostgreSQL refuses, each named by its row: text holding a NUL
    character, or longer than its column allows."""
    with source.connect() as connection:
        for table in tables:
            key = table.primary_key.columns.keys()
            for row in rows_in_order(connection, table):
                where = ", ".join(f"{name} {row._mapping[name]}" for name in key)
                for column in table.columns:
                    value = row._mapping[column.name]
                    if not isinstance(value, str):
                        continue
                    limit = getattr(column.type, "length", None)
                    if "\x00" in value:
                        yield f"{table.name} ({where}): {column.name} holds a NUL character"
                    elif limit and len(value) > limit:
                        yield (
                            f"{table.name} ({where}): {column.name} has {len(value)} characters, "
                            f"more than its {limit}"
                        )


@click.command("canvas-request")
@click.argument("endpoint", type=click.Choice(["initialize", "submit"]))
@click.option("--workspace", required=True, help="The workspace id (app.id_code) to name.")
@click.option("--component", default="record", show_default=True, help="submit: what was clicked.")
@click.option("--url", "origin", help="Hedwig's origin [default: HEDWIG_BASE_URL, or :5000].")
@with_appcontext
def canvas_request_command(endpoint: str, workspace: str, component: str, origin: str) -> None:
    """Print a curl command that sends a canvas request signed as Intercom signs it."""
    secret = current_app.config["INTERCOM_CLIENT_SECRET"]
    if not secret:
        raise click.ClickException(
            "Set HEDWIG_INTERCOM_CLIENT_SECRET: requests are signed with it."
        )
    origin = origin or current_app.config["BASE_URL"] or local_origin()
    with current_app.test_request_context(base_url=origin):
        url = url_for(f"inbox.canvas_{endpoint}", _external=True)
    click.echo(signed_canvas_request(url, endpoint, workspace, component))


@click.command("send-notes")
@click.option(
    "--wait",
    "wait_max",
    default=SENDER_WAIT_MAX,
    show_default=True,
    help="Seconds to wait for a note coming due (after a 429, or between tries).",
)
@with_appcontext
def send_notes_command(wait_max: float) -> None:
    """Send the notes status changes left to send: run it from a cron job or a timer."""
    outcomes = send_notes(wait_max)
    waiting = db.session.scalar(select(func.count(Note.id)).where(Note.state == "pending"))
    click.echo(f"{outcomes['sent']} sent, {outcomes['failed']} failed, {waiting} waiting.")


@click.command("refresh-companies")
@click.option("--workspace", help="Only this workspace's customers (its id).")
@click.option(
    "--older-than",
    "older_than_days",
    type=click.FloatRange(min=0),
    default=0,
    help="Only companies read longer ago than this many days (0: all).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Read at most this many customers' companies; run again for the rest.",
)
@click.option(
    "--wait-max",
    type=click.FloatRange(min=0),
    default=SENDER_WAIT_MAX,
    show_default=True,
    help="Seconds to wait when Intercom asks Hedwig to slow down (429).",
)
@with_appcontext
def refresh_companies_command(
    workspace: str | None, older_than_days: float, limit: int, wait_max: float
) -> None:
    """Read the customers' companies from Intercom again: their spend, plan and size."""
    older_than = timedelta(days=older_than_days) if older_than_days else None
    asked = ask_again(workspace, older_than)
    db.session.commit()
    outcomes = read_companies(limit, wait_max)
    left = db.session.scalar(
        select(func.count(ContactCompany.id)).where(ContactCompany.state == "pending")
    )
    click.echo(
        f"{asked} asked for: {outcomes['read']} read, {outcomes['failed']} failed, "
        f"{left} still to read" + (" (run it again, or wait for the rate limit)." if left else ".")
    )


def local_origin() -> str:
    """Where `make run` serves, for links the commands print: FLASK_RUN_PORT, else 5000."""
    return f"http://127.0.0.1:{os.environ.get('FLASK_RUN_PORT') or 5000}"


@click.command("send-webhooks")
@click.option(
    "--retry-now",
    is_flag=True,
    help="Send every pending delivery now, not at its next try (after a receiver is fixed).",
)
@with_appcontext
def send_webhooks_command(retry_now: bool) -> None:
    """Send the webhook deliveries that are due: run it from a cron job or a timer."""
    outcomes = send_webhooks(retry_now)
    waiting = db.session.scalar(
        select(func.count(OutgoingDelivery.id)).where(OutgoingDelivery.state == "pending")
    )
    click.echo(f"{outcomes['sent']} sent, {outcomes['failed']} failed, {waiting} waiting.")


@click.command("add-webhook")
@click.argument("url")
@click.option(
    "--events",
    default=",".join(WEBHOOK_EVENTS),
    show_default=True,
    help="The events to send, separated by commas.",
)
@with_appcontext
def add_webhook_command(url: str, events: str) -> None:
    """Add a webhook endpoint; its signing secret is printed once, alone on the last line."""
    chosen = [event.strip() for event in events.replace(" ", ",").split(",") if event.strip()]
    try:
        endpoint, secret = add_endpoint(url, chosen)
    except ValueError as refused:
        raise click.ClickException(str(refused)) from None
    db.session.commit()
    click.echo(f"Webhook #{endpoint.id} added for {', '.join(endpoint.event_list)}.")
    click.echo("Its signing secret, shown only now:")
    click.echo(secret)


COMMANDS = (
    init_db_command,
    create_user_command,
    create_token_command,
    reset_password_command,
    backup_command,
    copy_db_command,
    canvas_request_command,
    send_notes_command,
    send_webhooks_command,
    add_webhook_command,
    refresh_companies_command,
)
