"""Solid under concurrency: a real server, real parallel requests."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

import hedwig_app.inbox
import hedwig_app.log
from conftest import (
    CLIENT_SECRET,
    INITIALIZE,
    PASSWORD,
    SECRET_KEY,
    WORKSPACE_ID,
    Inbox,
    add_feedback,
    assert_valid_canvas,
    component,
    connect_workspace,
    create_user,
    delete_now,
    feedback_count,
    is_sqlite,
    make_app,
    meanwhile,
    merge_now,
    page_text,
    post,
    sign,
    signed_in_browser,
    stored_evidence,
    stored_feedback,
    texts,
)
from hedwig_app.records import refresh_backing
from models import Evidence, Feedback, User, db

# --- Solid under concurrency: a real server, real parallel requests -------------------------------

# Under pytest-xdist (make test), tests that start several processes of their own, or hammer a
# server with parallel requests, run one after another on one worker, not against each other.
SERIAL = pytest.mark.xdist_group("serial")
GUNICORN_WORKERS = 2  # processes that race each other for the database, as in production


class Gunicorn:
    """Hedwig under gunicorn with several (GUNICORN_WORKERS) workers on loopback, its instance
    folder in ``folder``, on the database at ``database_url``."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder, self.database_url = folder, database_url
        self.log = folder / "gunicorn.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "HEDWIG_INSTANCE_PATH": str(folder / "instance"),
            "HEDWIG_SECRET_KEY": SECRET_KEY,
            "HEDWIG_DATABASE_URL": database_url,
            "HEDWIG_INTERCOM_CLIENT_SECRET": CLIENT_SECRET,
            "HEDWIG_BASE_URL": "https://hedwig.example",
        }
        command = ["gunicorn", "--workers", str(GUNICORN_WORKERS), "--bind", f"127.0.0.1:{port}"]
        command += ["--error-logfile", str(self.log), "--capture-output", "hedwig:create_app()"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", *command], cwd=Path(__file__).parent, env=env
        )
        for _ in range(300):  # until it answers (or gives up), never a fixed sleep
            try:
                if requests.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                assert self.process.poll() is None, self.log.read_text()
                time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class LogSince:
    """The server's log from a test's start on: what that test made it write."""

    def __init__(self, log: Path) -> None:
        self.log, self.start = log, log.stat().st_size

    def read_text(self) -> str:
        with open(self.log, "rb") as file:
            file.seek(self.start)
            return file.read().decode()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Gunicorn]]:
    """The module's gunicorns, one a database, each started by the first test that asks:
    starting and stopping one takes seconds, so each test gets one whose tables are emptied."""
    started: dict[str, Gunicorn] = {}
    yield started
    for server in started.values():
        server.stop()


@pytest.fixture
def served(
    database_url: str, servers: dict[str, Gunicorn], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Flask, LogSince]:
    """Hedwig under gunicorn on this test's database, emptied, the fixture workspace connected;
    its URL, an app on the same database and instance folder, and the server's log."""
    kind = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    server = servers.get(kind)
    if server is None:
        folder = tmp_path_factory.mktemp(f"gunicorn-{kind}")
        if kind == "sqlite":
            database_url = f"sqlite:///{folder / 'hedwig.db'}"
        make_app(folder, DATABASE_URL=database_url)  # the SQLite file, migrated, before gunicorn
        server = servers[kind] = Gunicorn(folder, database_url)
    app = make_app(
        server.folder, DATABASE_URL=server.database_url, INTERCOM_CLIENT_SECRET=CLIENT_SECRET
    )
    with app.app_context():  # PostgreSQL's were emptied by database_url; SQLite's are here
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
    connect_workspace(app)
    return server.url, app, LogSince(server.log)


def signed_post(url: str, payload: dict[str, Any]) -> requests.Response:
    body = json.dumps(payload).encode()
    headers = {"X-Body-Signature": sign(body), "Content-Type": "application/json"}
    return requests.post(url, data=body, headers=headers, timeout=30)


def submit_payload(nonce: str, title: str) -> dict[str, Any]:
    return {
        **INITIALIZE,
        "component_id": "save",
        "input_values": {"title": title, "quote": "In parallel"},
        "current_canvas": {"stored_data": {"nonce": nonce}},
    }


@SERIAL
def test_fifty_parallel_submits_store_fifty_records(
    served: tuple[str, Flask, LogSince],
) -> None:
    url, app, log = served
    payloads = [submit_payload(f"parallel-nonce-{n:04d}-xxxx", f"Parallel {n}") for n in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(
            pool.map(lambda p: signed_post(f"{url}/intercom/canvas/submit", p), payloads)
        )
    assert [r.status_code for r in responses] == [200] * 50
    assert all("saved" in texts(r.json())[0] for r in responses)
    assert feedback_count(app) == 50
    assert "Traceback" not in log.read_text()
    assert "database is locked" not in log.read_text()


@SERIAL
def test_the_same_form_sent_in_parallel_stores_one_record(
    served: tuple[str, Flask, LogSince],
) -> None:
    url, app, log = served
    payload = submit_payload("one-form-many-clicks-nonce", "Clicked many times")
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(
            pool.map(lambda _: signed_post(f"{url}/intercom/canvas/submit", payload), range(10))
        )
    assert [r.status_code for r in responses] == [200] * 10
    assert len({r.text for r in responses}) == 1  # every click sees the same saved canvas
    assert feedback_count(app) == 1
    assert "Traceback" not in log.read_text()


def test_sqlite_connections_are_tuned_for_concurrent_workers(tmp_path: Any) -> None:
    app = make_app(tmp_path)
    with app.app_context():
        db.engine.dispose()  # a brand-new connection, not one left over from start-up
        with db.engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA synchronous").scalar() == 1  # NORMAL


@SERIAL
def test_first_account_race_creates_exactly_one(served: tuple[str, Flask, LogSince]) -> None:
    url, app, log = served
    browsers = []
    for _ in range(8):
        browser = requests.Session()
        page = browser.get(f"{url}/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token and "Create the first account" in page
        browsers.append((browser, token.group(1)))
    start = threading.Barrier(len(browsers))

    def create(n: int) -> int:
        browser, token = browsers[n]
        start.wait()
        form = {
            "csrf_token": token,
            "email": f"user{n}@example.com",
            "password": PASSWORD,
            "confirm": PASSWORD,
        }
        return browser.post(
            f"{url}/first-account", data=form, allow_redirects=False, timeout=30
        ).status_code

    with ThreadPoolExecutor(max_workers=len(browsers)) as pool:
        statuses = sorted(pool.map(create, range(len(browsers))))
    assert statuses.count(302) == 1
    assert set(statuses) <= {302, 400, 401}
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 1
    assert "Traceback" not in log.read_text()


@SERIAL
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # backup is SQLite's
def test_submits_racing_a_backup_all_succeed_and_the_backup_is_consistent(
    served: tuple[str, Flask, LogSince], tmp_path: Path
) -> None:
    url, app, log = served
    payloads = [submit_payload(f"racing-backup-nonce-{n:04d}", f"Racing {n}") for n in range(40)]
    backup = tmp_path / "racing-backup.db"
    with ThreadPoolExecutor(max_workers=8) as pool:
        submits = pool.map(lambda p: signed_post(f"{url}/intercom/canvas/submit", p), payloads)
        result = app.test_cli_runner().invoke(args=["backup", str(backup)])
        statuses = [r.status_code for r in submits]
    assert result.exit_code == 0, result.output
    assert statuses == [200] * 40
    assert feedback_count(app) == 40
    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        copied = copy.execute("SELECT count(*), count(DISTINCT submit_nonce) FROM evidence")
        count, distinct = copied.fetchone()
    assert 0 <= count <= 40
    assert distinct == count  # whole rows only, each once
    assert "Traceback" not in log.read_text()


@SERIAL
def test_the_printed_canvas_request_gets_a_canvas_from_a_running_hedwig(
    served: tuple[str, Flask, LogSince],
) -> None:
    url, app, _ = served
    result = app.test_cli_runner().invoke(
        args=["canvas-request", "initialize", "--workspace", WORKSPACE_ID, "--url", url]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"curl -sS -X POST {url}/intercom/canvas/initialize")
    assert CLIENT_SECRET not in result.output
    ran = subprocess.run(["bash", "-c", result.output], capture_output=True, text=True, timeout=60)
    canvas = json.loads(ran.stdout)
    assert "Feedback from this conversation" in texts(assert_valid_canvas(canvas, first=True))

    form = app.test_cli_runner().invoke(
        args=["canvas-request", "submit", "--workspace", WORKSPACE_ID, "--url", url]
    )
    ran = subprocess.run(["bash", "-c", form.output], capture_output=True, text=True, timeout=60)
    assert "Record feedback" in texts(json.loads(ran.stdout))


@SERIAL
def test_fifty_wrong_passwords_at_once_are_checked_at_most_ten_times(
    served: tuple[str, Flask, LogSince],
) -> None:
    url, app, log = served
    create_user(app)
    browser = requests.Session()
    page = browser.get(f"{url}/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "email": "ada@example.com", "password": "a wrong guess"}
    start = threading.Barrier(50)

    def guess(_: int) -> int:
        start.wait()
        return browser.post(f"{url}/login", data=form, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(guess, range(50)))
    assert statuses.count(401) <= 10  # each 401 cost a password hash; a 429 cost none
    assert statuses.count(401) + statuses.count(429) == 50
    assert "Traceback" not in log.read_text()


# --- Many conversations adding their customer to one record at once ------------------------------

ADDERS = 20


def customer_payload(n: int) -> dict[str, Any]:
    """Conversation n, with its own customer."""
    return {
        **INITIALIZE,
        "conversation": {**INITIALIZE["conversation"], "id": f"3000000000{n:05d}"},
        "contact": {
            **INITIALIZE["contact"],
            "id": f"contact-{n}",
            "name": f"Customer {n}",
            "email": f"customer{n}@example.com",
        },
    }


def test_customers_added_to_one_record_at_once_are_each_counted_and_found(
    tmp_path: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty agents click Add on the same record at the same moment: each customer counts,
    and each one's words find the record."""
    app = make_app(
        tmp_path,
        DATABASE_URL=database_url,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        SQLALCHEMY_ENGINE_OPTIONS={"hide_parameters": True, "pool_size": ADDERS + 5},
    )
    connect_workspace(app)
    (record_id,) = add_feedback(app, title="CSV export", workspace_id=WORKSPACE_ID)
    payloads = [customer_payload(n) for n in range(ADDERS)]
    forms = [Inbox(app).click(f"match-{record_id}", payload=payload) for payload in payloads]
    if not is_sqlite(app):
        # PostgreSQL: every click has written its evidence before any of them counts the
        # record's customers, the moment that loses one when the count is not serialised.
        # (SQLite lets one writer at a time write at all: there is no such moment.)
        counting = threading.Barrier(ADDERS)

        def refresh_when_all_wrote(record: Feedback) -> None:
            db.session.flush()
            counting.wait(timeout=60)
            refresh_backing(record)

        monkeypatch.setattr(hedwig_app.inbox, "refresh_backing", refresh_when_all_wrote)
    start = threading.Barrier(ADDERS)

    def add(n: int) -> Any:
        inbox = Inbox(app)
        start.wait(timeout=60)
        return inbox.click("add", forms[n], {"quote": f"word{n:02d}end please"}, payloads[n])

    with ThreadPoolExecutor(max_workers=ADDERS) as pool:
        added = list(pool.map(add, range(ADDERS)))
    assert all(f"added to #{record_id}" in texts(body)[0] for body in added)
    with app.app_context():
        record = db.session.get(Feedback, record_id)
        assert record.customer_count == ADDERS
        assert db.session.scalar(select(func.count(Evidence.id))) == ADDERS
    browser = signed_in_browser(app)
    for n in range(ADDERS):
        page = browser.get(f"/?q=word{n:02d}end").get_data(as_text=True)
        assert f'href="/feedback/{record_id}">CSV export</a>' in page, n


# --- Races: a record merged or deleted between a page's load and the write it sends ---------------


def backed_records(app: Flask, count: int) -> list[int]:
    return [
        add_feedback(app, title=f"Feedback {n}", customer_email=f"c{n}@example.com")[0]
        for n in range(count)
    ]


def test_a_merge_into_a_record_merged_meanwhile_says_so_and_changes_nothing(
    app: Flask, signed_in: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = backed_records(app, 3)
    meanwhile(monkeypatch, hedwig_app.log, "merge_records", lambda: merge_now(app, second, third))
    response = post(signed_in, f"/feedback/{first}/merge", {"into": str(second)})
    assert response.status_code == 409
    page = page_text(response)
    assert f"#{second} was merged into #{third} meanwhile. Nothing was merged." in page
    assert f'href="/feedback/{third}"' in page
    assert [(r.id, r.customer_count) for r in stored_feedback(app)] == [(first, 1), (third, 2)]


def test_a_merge_of_a_record_deleted_meanwhile_says_so(
    app: Flask, signed_in: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = backed_records(app, 2)
    meanwhile(monkeypatch, hedwig_app.log, "merge_records", lambda: delete_now(app, first))
    response = post(signed_in, f"/feedback/{first}/merge", {"into": str(second)})
    assert response.status_code == 409
    assert f"#{first} was deleted meanwhile. Nothing was merged." in page_text(response)
    assert [(r.id, r.customer_count) for r in stored_feedback(app)] == [(second, 1)]


def test_deleting_a_record_merged_meanwhile_deletes_nothing_and_says_so(
    app: Flask, signed_in: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = backed_records(app, 2)
    meanwhile(monkeypatch, db, "get_or_404", lambda: merge_now(app, first, second), after=True)
    response = post(signed_in, f"/feedback/{first}/delete")
    assert response.status_code == 409
    page = page_text(response)
    assert f"#{first} was merged into #{second} meanwhile. Nothing was deleted." in page
    assert [(r.id, r.customer_count) for r in stored_feedback(app)] == [(second, 2)]


def test_merges_racing_each_other_end_merged_or_refused_never_a_500(
    app: Flask, signed_in: FlaskClient
) -> None:
    """Fifteen triples of records, each merged four ways at once (a→b, b→c, c→a, b→a): every
    merge is made or refused with a sentence, and what remains adds up."""
    triples = [backed_records(app, 3) for _ in range(15)]
    merges = [(x, y) for a, b, c in triples for x, y in ((a, b), (b, c), (c, a), (b, a))]
    cookie = signed_in.get_cookie("session")
    local = threading.local()

    def merge(pair: tuple[int, int]) -> int:
        if not hasattr(local, "browser"):
            local.browser = app.test_client()
            local.browser.set_cookie("session", cookie.value)
        duplicate, target = pair
        return post(
            local.browser, f"/feedback/{duplicate}/merge", {"into": str(target)}
        ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(merge, merges))
    assert set(statuses) <= {302, 409}
    assert statuses.count(302) >= 15  # the first merge of each triple, at least
    records = stored_feedback(app)
    assert sum(record.customer_count for record in records) == 45
    with app.app_context():
        assert db.session.scalar(select(func.count(Evidence.id))) == 45


@pytest.mark.parametrize("gone", ["deleted", "merged"])
def test_adding_a_customer_to_a_record_gone_meanwhile_leads_back_to_the_search(
    canvas_app: Flask, monkeypatch: pytest.MonkeyPatch, gone: str
) -> None:
    """The agent chose a match; before their Add arrives, a teammate deletes or merges it."""
    inbox = Inbox(canvas_app)
    elsewhere = {
        **INITIALIZE,
        "conversation": {**INITIALIZE["conversation"], "id": "300000000000002"},
        "contact": {**INITIALIZE["contact"], "id": "dana", "email": "dana@example.com"},
    }
    inbox.save("CSV export crashes", payload=elsewhere)
    inbox.save("CSV export is slow", payload={**elsewhere, "conversation": {"id": "3"}})
    first, second = (record.id for record in stored_feedback(canvas_app))
    chosen = inbox.click(f"match-{first}", inbox.find())
    change = (
        (lambda: delete_now(canvas_app, first))
        if gone == "deleted"
        else (lambda: merge_now(canvas_app, first, second))
    )
    meanwhile(monkeypatch, hedwig_app.inbox, "add_evidence", change)
    answer = inbox.click("add", chosen, {"quote": "It crashes in Chrome."})
    assert component(answer, "query")["type"] == "input"  # the search again, to choose anew
    assert [evidence.customer_email for evidence in stored_evidence(canvas_app)] == [
        "dana@example.com"
    ] * (1 if gone == "deleted" else 2)
