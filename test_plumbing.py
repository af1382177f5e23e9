"""Plumbing: settings, the database and its migrations, headers, health, logs."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient

import hedwig
from conftest import (
    CODE,
    POSTGRES_HINT,
    POSTGRES_URL,
    SECRET_KEY,
    add_feedback,
    config_for,
    create_user,
    created_apps,
    empty_postgres,
    make_app,
    page_text,
    sign_in,
)
from hedwig_app.settings import SetupError
from models import db

# --- Plumbing: settings, headers, health, logs ----------------------------------------------------

# Under pytest-xdist (make test), tests that start several processes of their own, or hammer a
# server with parallel requests, run one after another on one worker, not against each other.
SERIAL = pytest.mark.xdist_group("serial")


def test_secret_key_is_generated_once_kept_private_and_reused(tmp_path: Any) -> None:
    first = make_app(tmp_path, SECRET_KEY=None)
    key_file = tmp_path / "instance" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret_key) >= 32
    second = make_app(tmp_path, SECRET_KEY=None)
    assert second.secret_key == first.secret_key


def test_short_secret_key_is_refused_at_start(tmp_path: Any) -> None:
    with pytest.raises(RuntimeError, match="HEDWIG_SECRET_KEY is too short"):
        make_app(tmp_path, SECRET_KEY="short")


def test_settings_come_from_hedwig_environment_variables(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEDWIG_INTERCOM_CLIENT_ID", "12345")
    monkeypatch.setenv("HEDWIG_DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    app = hedwig.create_app({"INSTANCE_PATH": str(tmp_path / "i"), "SECRET_KEY": SECRET_KEY})
    assert app.config["INTERCOM_CLIENT_ID"] == "12345"  # text, though it looks like a number
    assert (tmp_path / "from-env.db").exists()


def test_default_database_is_sqlite_in_the_instance_folder(tmp_path: Any) -> None:
    app = make_app(tmp_path, DATABASE_URL=None)
    assert app.config["SQLALCHEMY_DATABASE_URI"].endswith("instance/hedwig.db")
    assert (tmp_path / "instance" / "hedwig.db").exists()


def test_html_pages_carry_security_headers(client: FlaskClient) -> None:
    response = client.get("/login", follow_redirects=True)
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


def test_every_page_has_a_favicon_and_favicon_ico_finds_it(client: FlaskClient) -> None:
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in (
        client.get("/first-account").get_data(as_text=True)
    )
    response = client.get("/favicon.ico")  # no sign-in: browsers ask before anyone signs in
    assert (response.status_code, response.headers["Location"]) == (301, "/static/favicon.svg")
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
    icon.close()


def test_healthz_answers_without_sign_in(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}


def test_healthz_is_503_when_the_sqlite_file_cannot_be_opened(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    with app.app_context():
        db.engine.dispose()
    for path in tmp_path.glob("hedwig.db*"):
        path.unlink()
    (tmp_path / "hedwig.db").mkdir()  # where the database was, nothing SQLite can open
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "database unavailable"}


UNREACHABLE_POSTGRES = "postgresql+psycopg://hedwig:s3cret@127.0.0.1:9/hedwig?connect_timeout=2"


def test_start_stops_with_a_sentence_when_the_database_server_does_not_answer(
    tmp_path: Any,
) -> None:
    with pytest.raises(RuntimeError) as refused:
        hedwig.create_app(config_for(tmp_path, DATABASE_URL=UNREACHABLE_POSTGRES))
    assert str(refused.value).startswith(
        "Hedwig cannot open its database (postgresql+psycopg://hedwig:***@127.0.0.1:9/hedwig"
    )
    assert "Connection refused" in str(refused.value)
    assert "s3cret" not in str(refused.value)


def test_development_server_request_logs_leave_out_the_oauth_code(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    make_app(tmp_path)  # installs the filter on the development server's logger
    request_line = f"GET /intercom/callback?code={CODE}&state=abc.def HTTP/1.1"
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logging.getLogger("werkzeug").info('"%s" %s %s', request_line, 302, 0)
    assert CODE not in caplog.text
    assert "abc.def" not in caplog.text
    assert "code=[redacted]&state=[redacted]" in caplog.text


@pytest.mark.parametrize("path", ["/invite/", "/reset/"])
def test_development_server_request_logs_leave_out_the_keys_of_links(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    make_app(tmp_path)
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        logging.getLogger("werkzeug").info(
            '"%s" %s %s', f"GET {path}WzEsImtleSJd.sig HTTP/1.1", 200, 0
        )
    assert "WzEsImtleSJd" not in caplog.text
    assert f"GET {path}[redacted] HTTP/1.1" in caplog.text


@pytest.mark.parametrize("key_file", ["secret_key", "token_key"])
def test_an_empty_key_file_stops_the_start_with_a_sentence_naming_it(
    tmp_path: Any, key_file: str
) -> None:
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / key_file).write_text("")
    with pytest.raises(RuntimeError) as refused:
        make_app(tmp_path, SECRET_KEY=None)
    assert f"key file {tmp_path / 'instance' / key_file} is empty" in str(refused.value)
    assert "HEDWIG_TOKEN_KEY" not in str(refused.value)


def test_an_unreadable_key_file_stops_the_start_with_a_sentence(tmp_path: Any) -> None:
    (tmp_path / "instance" / "token_key").mkdir(parents=True)  # not a file at all
    with pytest.raises(RuntimeError, match=r"cannot read its key file .*token_key"):
        make_app(tmp_path)


def test_a_token_key_file_that_is_no_key_is_named_as_the_culprit(tmp_path: Any) -> None:
    (tmp_path / "instance").mkdir()
    (tmp_path / "instance" / "token_key").write_text("not a fernet key")
    with pytest.raises(RuntimeError, match=r"instance/token_key does not hold a Fernet key"):
        make_app(tmp_path)


@SERIAL
def test_workers_starting_together_keep_one_key(tmp_path: Any, migrated_sqlite_file: Path) -> None:
    shutil.copy(migrated_sqlite_file, tmp_path / "hedwig.db")  # the keys race, not the migrations
    script = (
        "import pathlib, hedwig, conftest\n"
        f"config = conftest.config_for(pathlib.Path({str(tmp_path)!r}), SECRET_KEY=None)\n"
        "app = hedwig.create_app(config)\n"
        "print(app.secret_key)\n"
    )
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=Path(__file__).parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    keys = {worker.communicate(timeout=120)[0].strip() for worker in workers}
    assert len(keys) == 1
    assert keys == {(tmp_path / "instance" / "secret_key").read_text()}
    assert [p.name for p in (tmp_path / "instance").iterdir() if p.name.startswith(".")] == []


def test_database_and_instance_folder_are_private(tmp_path: Any) -> None:
    app = make_app(tmp_path, DATABASE_URL=None)
    add_feedback(app)
    instance = tmp_path / "instance"
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    for path in instance.glob("hedwig.db*"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.parametrize(
    ("written", "secure"),
    [("False", False), ("no", False), ("off", False), ("0", False), ("TRUE", True), ("yes", True)],
)
def test_yes_and_no_settings_read_as_people_write_them(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, written: str, secure: bool
) -> None:
    monkeypatch.setenv("HEDWIG_SESSION_COOKIE_SECURE", written)
    app = make_app(tmp_path)
    assert app.config["SESSION_COOKIE_SECURE"] is secure


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SESSION_COOKIE_SECURE", "maybe", "must be true or false"),
        ("BASE_URL", "abc123.ngrok.app", "must be Hedwig's public https origin"),
        ("BASE_URL", "http://abc123.ngrok.app", "must be Hedwig's public https origin"),
        ("BASE_URL", "https://abc123.ngrok.app/hedwig", "must be Hedwig's public https origin"),
        ("DATABASE_URL", "sqlite:///hedwig.db", "write sqlite:/// and then the absolute path"),
        ("DATABASE_URL", "sqlite://", "write sqlite:/// and then the absolute path"),
        ("DATABASE_URL", "not a url", "is not a database URL"),
        ("DATABASE_URL", "mysql://h@db/hedwig", "must name an SQLite or PostgreSQL database"),
        ("DATABASE_URL", "postgresql+psycopg2://h@db/hedwig", "which is not installed"),
        ("INTERCOM_TIMEOUT", "soon", "must be a number"),
    ],
)
def test_a_setting_that_cannot_work_stops_the_start_with_a_sentence(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"HEDWIG_{name}", value)
    with pytest.raises(RuntimeError, match=f"HEDWIG_{name}") as refused:
        hedwig.create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": SECRET_KEY})
    assert message in str(refused.value)


EU = {"api": "https://api.eu.intercom.io", "web": "https://app.eu.intercom.com"}


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{"eu": {"api": "https://api.eu.intercom.io"', "it is not a JSON object"),  # cut short
        ('[{"eu": "https://api.eu.intercom.io"}]', "it is not a JSON object"),
        ('"eu"', "it is not a JSON object"),
        ("eu=https://api.eu.intercom.io", "it is not a JSON object"),
        ('{"eu": {"api": "https://", "web": "https://app.eu.intercom.com"}}', "eu's api"),
        ('{"eu": {"api": "https://api.eu.intercom.io"}}', "eu needs an api and a web URL"),
        ('{"eu": "https://api.eu.intercom.io"}', "eu needs an api and a web URL"),
        ('{"eu": {"api": "http://api.eu.intercom.io", "web": "https://a.example"}}', "eu's api"),
        ('{"eu": {"api": 443, "web": "https://app.eu.intercom.com"}}', "eu's api"),
        (
            '{"europe-west-frankfurt": {"api": "https://a.example", "web": "https://b.example"}}',
            "the region name 'europe-west-frankfurt'",
        ),
        ('{"": {"api": "https://a.example", "web": "https://b.example"}}', "the region name ''"),
    ],
)
def test_a_mistaken_intercom_regions_setting_stops_the_start_with_a_sentence(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    """Flask reads HEDWIG_* values as JSON, and keeps what is not JSON as text: text, a list,
    a host without a name or a region name longer than the column (16) is a mistake to say,
    not a reason to use the defaults or to fail at the first connect."""
    monkeypatch.setenv("HEDWIG_INTERCOM_REGIONS", value)
    with pytest.raises(SetupError) as refused:
        hedwig.create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": SECRET_KEY})
    message = str(refused.value)
    assert message.startswith("HEDWIG_INTERCOM_REGIONS must be a JSON object")
    assert problem in message
    assert message.endswith(".") and "\n" not in message


def test_intercom_regions_replace_or_add_a_regions_hosts_and_nothing_else(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "HEDWIG_INTERCOM_REGIONS",
        '{"EU": {"api": "https://eu.example/", "web": "https://app.eu.example/"},'
        ' "ca": {"api": "https://ca.example", "web": "https://app.ca.example"}}',
    )
    regions = make_app(tmp_path).config["INTERCOM_REGIONS"]
    assert regions["eu"] == {"api": "https://eu.example", "web": "https://app.eu.example"}
    assert regions["ca"] == {"api": "https://ca.example", "web": "https://app.ca.example"}
    assert regions["us"] == {"api": "https://api.intercom.io", "web": "https://app.intercom.com"}
    monkeypatch.setenv("HEDWIG_INTERCOM_REGIONS", "")  # set, but empty: the defaults
    assert make_app(tmp_path / "empty").config["INTERCOM_REGIONS"]["eu"] == EU


def test_one_regions_host_set_on_its_own_changes_this_app_only(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Flask reads HEDWIG_INTERCOM_REGIONS__eu__api into the regions it holds: into the
    defaults themselves, unless each app gets its own copy."""
    monkeypatch.setenv("HEDWIG_INTERCOM_REGIONS__eu__api", "https://eu.example")
    assert make_app(tmp_path).config["INTERCOM_REGIONS"]["eu"]["api"] == "https://eu.example"
    monkeypatch.delenv("HEDWIG_INTERCOM_REGIONS__eu__api")
    assert make_app(tmp_path / "later").config["INTERCOM_REGIONS"]["eu"] == EU
    monkeypatch.setenv("HEDWIG_INTERCOM_REGIONS__ca__api", "https://ca.example")
    with pytest.raises(SetupError, match="ca needs an api and a web URL"):
        make_app(tmp_path / "half")


def test_the_url_postgresql_hosts_print_works_as_it_is(tmp_path: Any) -> None:
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_HINT)
    empty_postgres(POSTGRES_URL)
    printed = POSTGRES_URL.replace("postgresql+psycopg://", "postgres://")
    app = hedwig.create_app(config_for(tmp_path, DATABASE_URL=printed))
    created_apps.append(app)
    assert app.test_client().get("/healthz").json == {"status": "ok"}


@pytest.mark.fresh_database
def test_a_new_database_of_either_kind_is_brought_up_to_date_at_start(
    tmp_path: Any, database_url: str
) -> None:
    if not database_url.startswith("sqlite"):
        empty_postgres(database_url, fresh=True)
    app = hedwig.create_app(config_for(tmp_path, DATABASE_URL=database_url))  # no db upgrade
    created_apps.append(app)
    create_user(app)
    client = app.test_client()
    sign_in(client)
    assert client.get("/").status_code == 200


@pytest.mark.fresh_database
def test_healthz_fails_while_the_schema_is_behind(app: Flask) -> None:
    with app.app_context():
        flask_migrate.downgrade(revision="-1")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "schema behind: run flask --app hedwig db upgrade"}


def test_healthz_fails_while_the_database_is_read_only(tmp_path: Any, database_url: str) -> None:
    make_app(tmp_path, DATABASE_URL=database_url)
    if database_url.startswith("sqlite"):
        read_only = f"sqlite:///file:{tmp_path / 'hedwig.db'}?mode=ro&uri=true"
    else:
        read_only = database_url + "&options=-cdefault_transaction_read_only%3Don"
    app = make_app(tmp_path, DATABASE_URL=read_only)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json == {"status": "database is read-only"}


def drop_tables(*names: str) -> None:
    """Break the database under a running app: its tables gone (PostgreSQL needs CASCADE)."""
    cascade = " CASCADE" if db.engine.dialect.name == "postgresql" else ""
    for name in names:
        db.session.execute(sqlalchemy.text(f"DROP TABLE {name}{cascade}"))
    db.session.commit()


def test_the_error_page_renders_without_the_database(
    tmp_path: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(tmp_path, DATABASE_URL=database_url, TESTING=False)
    create_user(app)
    client = app.test_client()
    sign_in(client)
    with app.app_context():  # the tables a page and the nav read are gone
        drop_tables("feedback", "intercom_connections")
    response = client.get("/")
    assert response.status_code == 500
    assert "Something went wrong" in page_text(response)
    assert "Back to the feedback log" in page_text(response)


def test_a_database_url_naming_a_file_that_is_no_database_leaves_it_alone(tmp_path: Any) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    notes.chmod(0o644)
    with pytest.raises(SetupError, match="is not an SQLite database"):
        make_app(tmp_path, DATABASE_URL=f"sqlite:///{notes}")
    assert stat.S_IMODE(notes.stat().st_mode) == 0o644
    assert notes.read_text() == "my notes"


def test_a_database_url_is_never_shown_with_its_password(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEDWIG_DATABASE_URL", "mysql://hedwig:SuperSecretPw@db/hedwig")
    with pytest.raises(SetupError) as refused:
        hedwig.create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "SECRET_KEY": SECRET_KEY})
    assert "SuperSecretPw" not in str(refused.value)
    assert "hedwig:***@db" in str(refused.value)


def test_the_flask_command_says_a_setup_mistake_in_one_line(tmp_path: Any) -> None:
    env = {**os.environ, "HEDWIG_INSTANCE_PATH": str(tmp_path), "HEDWIG_BASE_URL": "abc.ngrok"}
    ran = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "hedwig", "routes"],
        cwd=Path(__file__).parent,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 1
    assert ran.stderr.strip().splitlines() == [
        "Error: HEDWIG_BASE_URL must be Hedwig's public https origin and nothing more, like "
        "https://abc123.ngrok.app (it is 'abc.ngrok')."
    ]


def test_a_relative_instance_path_is_taken_from_where_hedwig_starts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = hedwig.create_app({"INSTANCE_PATH": "relative-instance", "SECRET_KEY": SECRET_KEY})
    created_apps.append(app)
    assert app.instance_path == str(tmp_path / "relative-instance")
    assert stat.S_IMODE((tmp_path / "relative-instance").stat().st_mode) == 0o700


def test_an_existing_instance_folder_is_made_private(tmp_path: Any) -> None:
    (tmp_path / "instance").mkdir(mode=0o755)
    make_app(tmp_path)
    assert stat.S_IMODE((tmp_path / "instance").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "instance" / "migrate.lock").stat().st_mode) == 0o600


def test_database_errors_in_the_log_never_carry_customers_words(
    tmp_path: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(tmp_path, DATABASE_URL=database_url, TESTING=False)
    create_user(app)
    client = app.test_client()
    sign_in(client)
    with app.app_context():
        drop_tables("feedback")
    assert client.get("/?q=casey-private-words").status_code == 500
    assert "Exception on /" in caplog.text
    assert "casey-private-words" not in caplog.text
