"""What Hedwig's tests share: the app on SQLite and PostgreSQL, a signed-in browser, the
Intercom stand-in on loopback, Intercom's documented payloads and a driver playing Intercom's
part in the Inbox. Every test_<area>.py, and bench_hedwig.py, use them."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import textwrap
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import jinja2
import pytest
import sqlalchemy
from alembic.script import ScriptDirectory
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import func, insert, select
from werkzeug import Request, Response
from werkzeug.routing import Rule

import hedwig
import models
from hedwig_app import search
from hedwig_app.auth import add_user
from hedwig_app.database import MIGRATIONS
from hedwig_app.records import add_evidence, merge_records, refresh_backing
from models import Evidence, Feedback, IntercomConnection, User, db

SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"
PASSWORD = "correct horse battery"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under make test (pytest-xdist, --dist loadgroup) the tests of one xdist_group share a
    worker, which xdist marks by adding @group to their ids: say so when it did not (as on
    pytest 9.2, pytest-xdist's issue 1386), since the group's tests then run at once."""
    if not getattr(config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in items if item.get_closest_marker("xdist_group")]
    lost = [nodeid for nodeid in lost if "@" not in nodeid]
    if lost:
        warnings.warn(
            f"pytest-xdist ignored the xdist_group of {len(lost)} tests ({lost[0]}, ...): "
            "they may run at once on different workers",
            pytest.PytestWarning,
            stacklevel=1,
        )


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests configure Hedwig themselves: no HEDWIG_* setting leaks in from the shell."""
    for name in list(os.environ):
        if name.startswith("HEDWIG_"):
            monkeypatch.delenv(name)


# Production hashes passwords with scrypt, about 0.1 s a hash: hundreds of sign-ins would spend
# a minute or more on it. The tests' own users get one round of PBKDF2 instead, and so does the
# decoy an unknown email is checked against; test_passwords_are_hashed_with_scrypt holds
# production to scrypt, and the processes the tests start (gunicorn, flask) hash as it does.
PRODUCTION_PASSWORD_METHOD = models.PASSWORD_METHOD
TEST_PASSWORD_METHOD = "pbkdf2:sha256:1"


@pytest.fixture(scope="session", autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    User.password_method = TEST_PASSWORD_METHOD
    yield
    User.password_method = PRODUCTION_PASSWORD_METHOD


def worker_database(url: str) -> str:
    """Each pytest-xdist worker gets a PostgreSQL database of its own (hedwig_test_gw0, ...),
    made on first use beside the one HEDWIG_TEST_POSTGRES_URL names; a run without workers
    uses that one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"{parts.path}_{worker}"))


# The suite runs against SQLite and, where a server is reachable, PostgreSQL (make test starts
# a throwaway one when PostgreSQL is installed: see .ci/with-postgres).
BASE_POSTGRES_URL = os.environ.get("HEDWIG_TEST_POSTGRES_URL", "")
POSTGRES_URL = worker_database(BASE_POSTGRES_URL)
POSTGRES_HINT = (
    "PostgreSQL not reachable: apt-get install postgresql, then make test "
    "(or set HEDWIG_TEST_POSTGRES_URL)"
)
created_apps: list[Flask] = []


def config_for(tmp_path: Any, **overrides: Any) -> dict[str, Any]:
    return {
        "TESTING": True,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'hedwig.db'}",
        "BASE_URL": "https://hedwig.example",
        # Nothing leaves this machine: a test that wants Intercom gives its loopback stand-in;
        # any other call (a company read after an Inbox save) finds this closed port.
        "INTERCOM_API_URL": "http://127.0.0.1:9",
        **overrides,
    }


# Each test's SQLite database starts as a copy of one migrated once per session (per xdist
# worker): the app's start then finds it at the newest migration. Tests marked fresh_database,
# those about the migrations themselves, start from no database file, as a new install does.
migrated_sqlite: Path | None = None


@pytest.fixture(scope="session")
def migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("migrated")
    app = hedwig.create_app(config_for(folder))
    with app.app_context():
        db.engine.dispose()
    database = folder / "hedwig.db"
    with contextlib.closing(sqlite3.connect(database)) as connection:  # no -wal file left over
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return database


@pytest.fixture(autouse=True)
def start_from_migrated_sqlite(request: pytest.FixtureRequest) -> Iterator[None]:
    global migrated_sqlite
    if request.node.get_closest_marker("fresh_database") is None:
        migrated_sqlite = request.getfixturevalue("migrated_sqlite_file")
    yield
    migrated_sqlite = None


class SharedTemplateCode(jinja2.BytecodeCache):
    """Each app compiles its templates in a Jinja environment of its own: the tests' hundreds
    of apps share the compiled code instead, in memory, keyed by each template's source."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


shared_template_code = SharedTemplateCode()


# Each app binds its sixty-odd URL rules, and werkzeug writes and compiles two Python functions
# for each (the URL builders): a third of an app's start, repeated for every test. The builder
# is a pure function of the rule's parsed parts and defaults, so the tests' apps share them.
compile_builder = getattr(Rule, "_compile_builder", None)  # werkzeug's, not public: may go
shared_builders: dict[tuple[Any, ...], Callable[..., Any]] = {}


def shared_builder(rule: Rule, append_unknown: bool = True) -> Callable[..., Any]:
    defaults = sorted(repr(item) for item in (rule.defaults or {}).items())
    key = (rule.rule, tuple(rule._trace), tuple(defaults), append_unknown)
    if key not in shared_builders:
        shared_builders[key] = compile_builder(rule, append_unknown)
    return shared_builders[key]


@pytest.fixture(scope="session", autouse=True)
def share_url_builders() -> Iterator[None]:
    if compile_builder is None:
        yield
        return
    Rule._compile_builder = shared_builder
    yield
    Rule._compile_builder = compile_builder


def make_app(tmp_path: Any, **overrides: Any) -> Flask:
    config = config_for(tmp_path, **overrides)
    start_migrated(tmp_path, config["DATABASE_URL"])
    app = hedwig.create_app(config)  # its start migrates the database, as `flask db upgrade` does
    app.jinja_env.bytecode_cache = shared_template_code
    created_apps.append(app)
    return app


def start_migrated(tmp_path: Any, database_url: str | None) -> None:
    """The test's SQLite file (hedwig.db in ``tmp_path``), when ``database_url`` names it and
    it does not exist yet, as a copy of the one migrated for the session."""
    database = Path(tmp_path, "hedwig.db")
    if migrated_sqlite and database_url == f"sqlite:///{database}" and not database.exists():
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(migrated_sqlite, database)


def is_sqlite(app: Flask) -> bool:
    return app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")


@pytest.fixture(autouse=True)
def dispose_engines() -> Iterator[None]:
    """Stop each test's sender thread and close its database connections, so a PostgreSQL
    server is not left with hundreds of idle ones, nor a later test's rows with a sender."""
    yield
    while created_apps:
        app = created_apps.pop()
        sender = app.extensions.get("hedwig_sender")
        if sender is not None:  # a sender thread waiting to retry must not outlive its test
            sender.stop(timeout=30)
        with app.app_context():
            db.engine.dispose()


HEAD = ScriptDirectory(MIGRATIONS).get_current_head()


def empty_postgres(url: str, fresh: bool = False) -> None:
    """An empty database, as fast as it can be had: its rows deleted and its ids started again
    at 1 when a test left the schema whole at the newest migration, else (or when ``fresh``) no
    schema at all, which the app's start migrates. DELETE, not TRUNCATE: on tables this small
    TRUNCATE costs a tenth of a second a test (new files for every table and index)."""
    if url == POSTGRES_URL:
        create_worker_database()
    try:
        if fresh:
            raise LookupError("a fresh schema asked for")
        with postgres_engine(url).begin() as connection:
            delete_every_row(connection)
    except (sqlalchemy.exc.SQLAlchemyError, LookupError):
        with postgres_engine(url).begin() as connection:
            connection.execute(sqlalchemy.text("DROP SCHEMA public CASCADE"))
            connection.execute(sqlalchemy.text("CREATE SCHEMA public"))


@functools.cache
def postgres_engine(url: str) -> sqlalchemy.Engine:
    """One engine a database for the whole session: its idle connection holds no lock."""
    return sqlalchemy.create_engine(url)


def delete_every_row(connection: sqlalchemy.Connection) -> None:
    """Every row of every table but alembic_version, children first, and every sequence a
    test used started again, as TRUNCATE … RESTART IDENTITY would. LookupError when the schema
    is not the models' at the newest migration."""
    version = connection.scalar(sqlalchemy.text("SELECT version_num FROM alembic_version"))
    tables = set(
        connection.scalars(
            sqlalchemy.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
    )
    models_tables = {table.name for table in db.metadata.sorted_tables}
    if version != HEAD or tables != models_tables | {"alembic_version"}:
        raise LookupError("not the newest migration's schema")
    for table in reversed(db.metadata.sorted_tables):
        connection.execute(table.delete())
    used = connection.scalars(
        sqlalchemy.text(
            "SELECT sequencename FROM pg_sequences "
            "WHERE schemaname = 'public' AND last_value IS NOT NULL"
        )
    )
    for sequence in used.all():
        connection.execute(sqlalchemy.text(f'ALTER SEQUENCE "{sequence}" RESTART'))


@functools.cache
def create_worker_database() -> None:
    """This worker's own database, made once (connecting to the base database) if missing."""
    if POSTGRES_URL == BASE_POSTGRES_URL:
        return
    name = sqlalchemy.make_url(POSTGRES_URL).database
    engine = sqlalchemy.create_engine(BASE_POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.scalar(
            sqlalchemy.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
        )
        if not exists:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """Each test that touches the database runs on both: an SQLite file, and an emptied
    PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hedwig.db'}"
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_HINT)
    empty_postgres(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture(params=["bm25", "window"])
def weighing(request: pytest.FixtureRequest, database_url: str, monkeypatch: Any) -> str:
    """SQLite ranks a search with bm25() while its words have few matches between them, and
    past search.BM25_READS weighs the newest matches word by word. PostgreSQL reads a search's
    matches from its GIN index while they are few among the newest records, and past that
    (search.ORDERED_READS) reads the records newest first: here "bm25" reads from the index,
    "window" newest first. A ranking test holds for each way."""
    if database_url.startswith("sqlite"):
        if request.param == "window":
            monkeypatch.setattr(search, "BM25_READS", 0)
    else:
        monkeypatch.setattr(search, "ORDERED_READS", 0 if request.param == "bm25" else 10**9)
    return request.param


@pytest.fixture
def app(tmp_path: Any, database_url: str) -> Flask:
    return make_app(tmp_path, DATABASE_URL=database_url)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf(client: FlaskClient) -> str:
    with client.session_transaction() as session:
        session.setdefault("csrf_token", "csrf-token-for-tests")
        return session["csrf_token"]


def post(client: FlaskClient, url: str, data: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """A form POST as the browser sends it: with the page's CSRF token."""
    return client.post(url, data={"csrf_token": csrf(client), **(data or {})}, **kwargs)


def create_user(app: Flask, email: str = "ada@example.com", password: str = PASSWORD) -> int:
    with app.app_context():
        user = add_user(email, password)
        db.session.commit()
        return user.id


def sign_in(client: FlaskClient, email: str = "ada@example.com") -> None:
    response = post(client, "/login", {"email": email, "password": PASSWORD})
    assert response.status_code == 302


def signed_in_browser(app: Flask, email: str = "ada@example.com") -> FlaskClient:
    """A new user, and a browser of theirs signed in (the app's first user is an owner)."""
    create_user(app, email)
    client = app.test_client()
    sign_in(client, email)
    return client


@pytest.fixture
def signed_in(app: Flask, client: FlaskClient) -> FlaskClient:
    create_user(app)
    sign_in(client)
    return client


RECORD_FIELDS = {"title", "description", "source", "workspace_id", "created_at"}


def add_feedback(app: Flask, count: int = 1, **fields: Any) -> list[int]:
    """Records, as the app makes them: fields of the customer and of where they were heard
    go to each record's first piece of evidence (workspace_id to both)."""
    record_fields = {name: value for name, value in fields.items() if name in RECORD_FIELDS}
    evidence_fields = {
        name: value
        for name, value in fields.items()
        if name not in RECORD_FIELDS - {"workspace_id", "source"}
    }
    record_fields = {"source": "web", **record_fields}
    with app.app_context():
        if not set(evidence_fields) - {"workspace_id", "source"}:
            return add_bare_records(count, record_fields)
        records = []
        for n in range(count):
            record = Feedback(**{"title": f"Feedback {n}", **record_fields})
            db.session.add(record)
            add_evidence(record, **evidence_fields)
            refresh_backing(record)
            records.append(record)
        db.session.commit()
        return [record.id for record in records]


def add_bare_records(count: int, fields: dict[str, Any]) -> list[int]:
    """Records with no evidence, all in one INSERT: tests ask for thousands, and one at a time
    through the ORM takes seconds. refresh_backing, which the app runs on each new record,
    leaves such a record as it is: the first is run through it, to hold this shortcut to it."""
    rows = [{"title": f"Feedback {n}", **fields} for n in range(count)]
    added = insert(Feedback).returning(Feedback.id, sort_by_parameter_order=True)
    ids = list(db.session.scalars(added, rows))
    if ids:
        first = db.session.get(Feedback, ids[0])
        refresh_backing(first)
        assert not db.session.is_modified(first), "add_feedback must refresh_backing each record"
    db.session.commit()
    return ids


def merge_now(app: Flask, duplicate_id: int, target_id: int) -> None:
    """Another teammate merges one record into another, in a request of their own."""
    with app.app_context():
        merge_records(db.session.get(Feedback, duplicate_id), db.session.get(Feedback, target_id))
        db.session.commit()


def delete_now(app: Flask, feedback_id: int) -> None:
    """Another teammate deletes a record, in a request of their own."""
    with app.app_context():
        db.session.delete(db.session.get(Feedback, feedback_id))
        db.session.commit()


def meanwhile(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    change: Callable[[], Any],
    after: bool = False,
) -> None:
    """A race, made to happen every time: when the request calls ``owner.name``, just before
    (or ``after``) the call, ``change`` runs and commits in a thread of its own, as another
    request would (its own session, connection and transaction). Once."""
    original = getattr(owner, name)
    pending = [change]

    def run() -> None:
        if pending:
            with ThreadPoolExecutor(max_workers=1) as other_request:
                other_request.submit(pending.pop()).result()

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not after:
            run()
        result = original(*args, **kwargs)
        if after:
            run()
        return result

    monkeypatch.setattr(owner, name, racing)


def feedback_count(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count(Feedback.id)))


def page_text(response: Any) -> str:
    return response.get_data(as_text=True)


# --- The Intercom stand-in on loopback ---------------------------------------------------------

CLIENT_ID = "hedwig-test-client"
CLIENT_SECRET = "client-secret-that-must-never-show-0123456789"
CODE = "Y29kZS1mcm9tLWludGVyY29t=="  # Intercom's codes can end in "="
TOKEN = "dG9rOmV4YW1wbGUtbm90LWEtcmVhbC10b2tlbi0wMDAxOjE6MA=="
WORKSPACE_ID = "abc12def"
ME = {
    "type": "admin",
    "id": "5551234",
    "email": "alex.agent@example.com",
    "name": "Alex Agent",
    "email_verified": True,
    "app": {
        "type": "app",
        "id_code": WORKSPACE_ID,
        "name": "Example Co workspace",
        "created_at": 1661876617,
        "secure": True,
        "identity_verification": True,
        "timezone": "Europe/Dublin",
        "region": "US",
    },
    "avatar": {"type": "avatar", "image_url": "https://static.intercomassets.com/a.png"},
    "has_inbox_seat": True,
}


@pytest.fixture
def intercom_app(tmp_path: Any, database_url: str, httpserver: HTTPServer) -> Flask:
    """Hedwig with Intercom settings, its API pointed at the loopback stand-in."""
    return make_app(
        tmp_path,
        DATABASE_URL=database_url,
        INTERCOM_CLIENT_ID=CLIENT_ID,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_OAUTH_URL="https://intercom.example/oauth",
        INTERCOM_API_URL=httpserver.url_for("/").rstrip("/"),
        INTERCOM_TIMEOUT=1,
    )


@pytest.fixture
def agent(intercom_app: Flask) -> FlaskClient:
    """A signed-in browser on the Intercom-configured Hedwig."""
    return signed_in_browser(intercom_app)


def token_answer(request: Request) -> Response:
    """Intercom's token endpoint: only the exact code, client id and secret get a token."""
    form = request.form
    if (form.get("code"), form.get("client_id"), form.get("client_secret")) != (
        CODE,
        CLIENT_ID,
        CLIENT_SECRET,
    ):
        return Response('{"type": "error.list", "errors": [{"code": "unauthorized"}]}', 401)
    body = {"token_type": "Bearer", "token": TOKEN, "access_token": TOKEN}
    return Response(json.dumps(body), 200, content_type="application/json")


def me_answer(request: Request) -> Response:
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        return Response('{"type": "error.list"}', 401, content_type="application/json")
    return Response(json.dumps(ME), 200, content_type="application/json")


def serve_intercom(httpserver: HTTPServer, token: Any = token_answer, me: Any = me_answer) -> None:
    httpserver.expect_request("/auth/eagle/token", method="POST").respond_with_handler(token)
    httpserver.expect_request("/me", method="GET").respond_with_handler(me)


# --- The Inbox: Intercom's payloads, its canvas rules, and a driver playing its part ------------

# Intercom's documented initialize payload for an Inbox app (trimmed of fields Hedwig ignores).
INITIALIZE = {
    "workspace_id": WORKSPACE_ID,
    "workspace_region": "us",
    "admin": {
        "type": "admin",
        "id": "5551234",
        "name": "Alex Agent",
        "email": "alex.agent@example.com",
        "job_title": "Support Engineer",
        "team_ids": [814865],
    },
    "conversation": {
        "type": "conversation",
        "id": "215471234567890",
        "title": None,
        "created_at": 1719479000,
        "state": "open",
        "admin_assignee_id": 5551234,
        "source": {
            "type": "conversation",
            "id": "2912345678",
            "delivered_as": "customer_initiated",
            "subject": "",
            "body": "<p>Hi! The CSV export button crashes the page every time I click it.</p>",
            "author": {
                "type": "user",
                "id": "65f0a1b2c3d4e5f6a7b8c9d0",
                "name": "Casey Customer",
                "email": "casey.customer@example.com",
            },
            "attachments": [],
            "url": "https://app.example.com/reports",
        },
        "contacts": {
            "type": "contact.list",
            "contacts": [{"type": "contact", "id": "65f0a1b2c3d4e5f6a7b8c9d0"}],
        },
    },
    "contact": {
        "type": "contact",
        "id": "65f0a1b2c3d4e5f6a7b8c9d0",
        "workspace_id": WORKSPACE_ID,
        "external_id": "cust_42",
        "role": "user",
        "email": "casey.customer@example.com",
        "name": "Casey Customer",
        "custom_attributes": {"plan": "pro"},
    },
    "context": {"conversation_id": 215471234567890, "location": "conversation", "locale": "en"},
}
CONVERSATION_ID = "215471234567890"
CONTACT_ID = "65f0a1b2c3d4e5f6a7b8c9d0"

TEXT_STYLES = {"header", "paragraph", "muted", "error"}
BUTTON_STYLES = {"primary", "secondary", "link"}
# The height of a canvas as Intercom's Inbox draws it, to hold a first canvas to Intercom's
# 400 px rule. Intercom publishes no figures: these are generous estimates for the
# conversation details sidebar at its default width, a canvas about 300 px wide. A header is
# 24 px a line of 32 characters; paragraph, muted and error text 20 px a line of 38
# characters; a list item 20 px of padding, 20 px a line of its title (36 characters a line)
# and 20 px of subtitle, so 60 px with a one-line title; a data table 24 px a row (the Inbox
# cuts each to one line); a button 40 px; 12 px between components. Text wraps at words, and
# a word longer than a line breaks.
TEXT_LINES = {"header": (24, 32), "paragraph": (20, 38), "muted": (20, 38), "error": (20, 38)}
LIST_TITLE_CHARACTERS, LIST_LINE, LIST_PADDING, TABLE_ROW = 36, 20, 20, 24
HEIGHTS = {
    "button": 40,
    "input": 64,
    "textarea": 96,
    "single-select": 64,
    "dropdown": 64,
    "spacer": 16,
    "divider": 16,
}
GAP = 12
CANVAS_CAP = 64 * 1024


def assert_valid_action(action: Any) -> None:
    assert action["type"] in ("submit", "url")
    if action["type"] == "url":
        url = urlsplit(action["url"])
        assert url.scheme == "https" and url.netloc, action


def assert_valid_component(component: dict[str, Any]) -> None:
    kind = component["type"]
    if kind == "text":
        assert isinstance(component["text"], str) and component["text"]
        assert component.get("style", "paragraph") in TEXT_STYLES
    elif kind == "button":
        assert component["id"] and component["label"]
        assert component.get("style", "primary") in BUTTON_STYLES
        assert_valid_action(component["action"])
    elif kind == "input":
        assert component["id"]
        assert component.get("save_state", "unsaved") in ("unsaved", "saved", "failed")
        assert isinstance(component.get("value", ""), str)
    elif kind == "textarea":
        assert component["id"]
        assert isinstance(component.get("error", False), bool)
        assert isinstance(component.get("value", ""), str)
    elif kind == "list":
        assert component["items"]
        for item in component["items"]:
            assert item["type"] == "item"
            assert item["id"] and item["title"]
            if "action" in item:
                assert_valid_action(item["action"])
    elif kind == "data-table":
        assert component["items"]
        for row in component["items"]:
            assert row["type"] == "field-value"
            assert isinstance(row["field"], str) and row["field"]
            assert isinstance(row["value"], str) and row["value"]
    elif kind in ("single-select", "dropdown"):
        assert_valid_select(component)
    else:
        assert kind in ("spacer", "divider"), f"unknown component {kind}"


def assert_valid_select(component: dict[str, Any]) -> None:
    """A single-select or dropdown: an id, 2 to 10 options each with its type, id and text,
    and a value, when there is one, that is one of the options."""
    assert component["id"]
    assert isinstance(component.get("label", ""), str)
    options = component["options"]
    assert 2 <= len(options) <= 10
    for option in options:
        assert option.get("type") == "option"
        assert isinstance(option["id"], str) and option["id"]
        assert isinstance(option["text"], str) and option["text"]
    assert len({option["id"] for option in options}) == len(options)
    if "value" in component:
        assert component["value"] in {option["id"] for option in options}


def wrapped_lines(text: str, characters: int) -> int:
    return max(1, len(textwrap.wrap(text, characters)))


def component_height(component: dict[str, Any]) -> int:
    kind = component["type"]
    if kind == "text":
        line, characters = TEXT_LINES[component.get("style", "paragraph")]
        return line * wrapped_lines(component["text"], characters)
    if kind == "list":
        return sum(
            LIST_PADDING
            + LIST_LINE * wrapped_lines(item["title"], LIST_TITLE_CHARACTERS)
            + (LIST_LINE if item.get("subtitle") else 0)
            for item in component["items"]
        )
    if kind == "data-table":
        return TABLE_ROW * len(component["items"])
    return HEIGHTS[kind]


def canvas_height(components: list[dict[str, Any]]) -> int:
    """The canvas's height in px, by the figures above."""
    return sum(map(component_height, components)) + GAP * (len(components) - 1)


def assert_valid_canvas(body: Any, first: bool = False) -> list[dict[str, Any]]:
    """Intercom's component catalogue and Inbox rules, checked on every canvas we receive."""
    assert set(body) == {"canvas"}
    content, stored_data = body["canvas"]["content"], body["canvas"].get("stored_data", {})
    assert len(json.dumps(content, ensure_ascii=False).encode()) <= CANVAS_CAP
    assert len(json.dumps(stored_data, ensure_ascii=False).encode()) <= CANVAS_CAP
    components = content["components"]
    assert components
    for component in components:
        assert_valid_component(component)
    ids = [c["id"] for c in components if "id" in c]
    assert len(ids) == len(set(ids)), "component ids must be unique"
    if first:
        assert not [c for c in components if c.get("style") == "primary" and c["type"] == "button"]
        assert canvas_height(components) <= 400
    return components


def sign(body: bytes, secret: str = CLIENT_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def connect_workspace(app: Flask) -> None:
    """What a finished OAuth flow leaves behind for the fixture workspace."""
    with app.app_context():
        connection = IntercomConnection(
            workspace_id=WORKSPACE_ID,
            workspace_name="Example Co workspace",
            admin_id=ME["id"],
            admin_name=ME["name"],
        )
        connection.token = TOKEN
        db.session.add(connection)
        db.session.commit()


@pytest.fixture
def canvas_app(intercom_app: Flask) -> Flask:
    """Hedwig with the fixture workspace connected."""
    connect_workspace(intercom_app)
    return intercom_app


class Inbox:
    """Plays Intercom's part: signed canvas requests, and clicks on the returned canvas."""

    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def send(self, endpoint: str, payload: Any, signature: str | None = None) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        headers["X-Body-Signature"] = sign(body) if signature is None else signature
        return self.client.post(f"/intercom/canvas/{endpoint}", data=body, headers=headers)

    def initialize(self, payload: Any = None, **changes: Any) -> list[dict[str, Any]]:
        response = self.send("initialize", {**(payload or INITIALIZE), **changes})
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        assert response.headers["Cache-Control"] == "no-store"
        return assert_valid_canvas(response.json, first=True)

    def click(
        self,
        component_id: str,
        current: Any = None,
        inputs: dict[str, str] | None = None,
        payload: Any = None,
    ) -> Any:
        """Submit from the canvas `current` (a response body), as Intercom would."""
        request = {
            **(payload or INITIALIZE),
            "component_id": component_id,
            "input_values": inputs or {},
            "current_canvas": (current or {}).get("canvas", {}),
        }
        response = self.send("submit", request)
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert_valid_canvas(response.json)
        return response.json

    def find(self, payload: Any = None) -> Any:
        """Click Record feedback: the find canvas, its search prefilled."""
        return self.click("record", payload=payload)

    def form(self, payload: Any = None) -> Any:
        """Find, then New feedback: the form for a new record."""
        return self.click("new", self.find(payload), payload=payload)

    def save(self, title: str, details: str = "", payload: Any = None) -> Any:
        form = self.form(payload)
        return self.click("save", form, {"title": title, "details": details}, payload=payload)

    def add_to(self, feedback_id: int, quote: str | None = None, payload: Any = None) -> Any:
        """Find, click the match, and add this conversation's customer to it."""
        find = self.find(payload)
        chosen = self.click(f"match-{feedback_id}", find, payload=payload)
        words = component(chosen, "quote")["value"] if quote is None else quote
        return self.click("add", chosen, {"quote": words}, payload=payload)


@pytest.fixture
def inbox(canvas_app: Flask) -> Inbox:
    return Inbox(canvas_app)


def texts(components_or_body: Any) -> list[str]:
    components = components_or_body
    if isinstance(components_or_body, dict):
        components = components_or_body["canvas"]["content"]["components"]
    return [c["text"] for c in components if c["type"] == "text"]


def component(body: Any, component_id: str) -> dict[str, Any]:
    components = body["canvas"]["content"]["components"]
    return next(c for c in components if c.get("id") == component_id)


def stored_feedback(app: Flask) -> list[Feedback]:
    with app.app_context():
        return list(db.session.scalars(select(Feedback).order_by(Feedback.id)))


def stored_evidence(app: Flask) -> list[Evidence]:
    with app.app_context():
        return list(db.session.scalars(select(Evidence).order_by(Evidence.id)))


def callback(client: FlaskClient, state: str, code: str | None = CODE) -> Any:
    params = {"state": state, **({"code": code} if code is not None else {})}
    return client.get("/intercom/callback?" + urlencode(params))


def connections(app: Flask) -> list[IntercomConnection]:
    with app.app_context():
        return list(db.session.scalars(select(IntercomConnection)))


def users(app: Flask) -> dict[str, tuple[str, bool]]:
    """Email → (role, removed), for everyone Hedwig knows."""
    with app.app_context():
        return {
            u.email: (u.role, u.removed_at is not None) for u in db.session.scalars(select(User))
        }


@pytest.fixture
def private_app(tmp_path: Any, database_url: str, httpserver: HTTPServer) -> Flask:
    """Hedwig set up as a team with a private app sets it up: a client secret, no OAuth."""
    return make_app(
        tmp_path,
        DATABASE_URL=database_url,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_API_URL=httpserver.url_for("/").rstrip("/"),
        INTERCOM_TIMEOUT=1,
    )


def wait_for_sender(app: Flask) -> None:
    """Let this process's sender thread finish what it was woken for."""
    sender = app.extensions.get("hedwig_sender")
    if sender is not None:
        sender.join(timeout=30)
        assert sender.thread is None or not sender.thread.is_alive()
