"""Closing the loop: statuses, and a note in every conversation that asked, sent exactly once."""

from __future__ import annotations

import csv
import email.utils
import html
import io
import itertools
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

import hedwig_app.loop
import models
from conftest import (
    CLIENT_SECRET,
    CONVERSATION_ID,
    ME,
    TOKEN,
    WORKSPACE_ID,
    Inbox,
    add_feedback,
    connect_workspace,
    create_user,
    csrf,
    delete_now,
    make_app,
    meanwhile,
    merge_now,
    page_text,
    post,
    serve_intercom,
    sign_in,
    signed_in_browser,
    stored_feedback,
    wait_for_sender,
)
from hedwig_app import outbox
from hedwig_app.intercom import IntercomError, call_intercom, intercom_response
from hedwig_app.preview import SAMPLE
from hedwig_app.records import add_evidence, refresh_backing
from models import Feedback, IntercomConnection, db

# --- Closing the loop: a status on every record, a note in every conversation that asked ---------

CONVERSATIONS = ("1001", "1002")


class IntercomConversations:
    """The stand-in's conversation endpoints: each request they get, in order, and the answers
    to give, one per request (then 200)."""

    def __init__(self, httpserver: HTTPServer) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str]] | tuple[int, dict[str, str], Any]] = []
        self.lock = threading.Lock()
        path = re.compile(r"^/conversations/[^/]+/(reply|parts)$")
        httpserver.expect_request(path, method="POST").respond_with_handler(self.answer)

    def answer(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(
                {"path": request.path, "headers": request.headers, "json": request.get_json()}
            )
            status, headers, *error = self.answers.pop(0) if self.answers else (200, {})
        body = error[0] if error else {"type": "conversation", "id": request.path.split("/")[2]}
        return Response(json.dumps(body), status, headers, content_type="application/json")

    def notes(self) -> list[str]:
        """The conversations that got a note, one entry per note."""
        return [r["path"].split("/")[2] for r in self.requests if r["path"].endswith("/reply")]


@pytest.fixture
def conversations(httpserver: HTTPServer) -> IntercomConversations:
    return IntercomConversations(httpserver)


@pytest.fixture
def team(canvas_app: Flask) -> FlaskClient:
    """A signed-in browser on Hedwig with the fixture workspace connected."""
    return signed_in_browser(canvas_app)


def backed_record(
    app: Flask, conversations: tuple[str, ...] = CONVERSATIONS, title: str = "CSV export"
) -> int:
    """A record backed by a customer in each of these conversations of the fixture workspace."""
    with app.app_context():
        record = Feedback(title=title, source="intercom", workspace_id=WORKSPACE_ID)
        db.session.add(record)
        for n, conversation in enumerate(conversations):
            add_evidence(
                record,
                source="intercom",
                workspace_id=WORKSPACE_ID,
                conversation_id=conversation,
                customer_name=f"Customer {n}",
                customer_email=f"customer{n}@example.com",
            )
        refresh_backing(record)
        db.session.commit()
        return record.id


@pytest.fixture
def held(canvas_app: Flask, team: FlaskClient) -> FlaskClient:
    """The team's browser, on a Hedwig that leaves its notes to send_notes(): no sender thread
    (as after a crash, or with HEDWIG_SEND_NOTES_AT_ONCE=false)."""
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    return team


def change_status(client: FlaskClient, feedback_id: int, status: str, **fields: Any) -> Any:
    return post(client, f"/feedback/{feedback_id}/status", {"status": status, **fields})


def stored_notes(app: Flask) -> list[models.Note]:
    with app.app_context():
        return list(db.session.scalars(select(models.Note).order_by(models.Note.id)))


def send_notes(app: Flask, wait_max: float = 0) -> Any:
    with app.app_context():
        return outbox.send_notes(wait_max)


def come_due(app: Flask) -> None:
    """Time passes: every pending note is due now."""
    with app.app_context():
        db.session.execute(
            sqlalchemy.update(models.Note)
            .where(models.Note.state == "pending")
            .values(next_attempt_at=datetime(2000, 1, 1))
        )
        db.session.commit()


def test_a_status_change_notes_every_conversation_that_asked(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app)
    message = "Shipping in <b>May</b>:\nwatch the changelog."
    response = change_status(team, feedback_id, "planned", message=message, notify="on")
    assert response.status_code == 302
    wait_for_sender(canvas_app)

    assert sorted(conversations.notes()) == list(CONVERSATIONS)
    first = conversations.requests[0]
    assert first["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert first["headers"]["Intercom-Version"] == "2.11"
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Accept"] == "application/json"
    note = first["json"]
    assert set(note) == {"message_type", "type", "admin_id", "body"}
    assert (note["message_type"], note["type"], note["admin_id"]) == ("note", "admin", ME["id"])
    customer = "Customer 0" if first["path"] == "/conversations/1001/reply" else "Customer 1"
    assert note["body"] == (
        f'<p>Hedwig: <a href="https://hedwig.example/feedback/{feedback_id}">'
        f"#{feedback_id} CSV export</a> is now <b>Planned</b>.</p>"
        "<p>Shipping in &lt;b&gt;May&lt;/b&gt;:<br>watch the changelog.</p>"
        f"<p>{customer} asked for it in this conversation: tell them?</p>"
    )
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert 'data-status="planned">Planned<' in page
    assert "Open → Planned" in page and "by ada@example.com" in page
    assert "Shipping in &lt;b&gt;May&lt;/b&gt;:\nwatch the changelog." in page
    assert page.count('data-note-state="sent"') == 2
    assert "Notes: 2 sent" in page


@pytest.mark.parametrize(
    ("status", "notify", "noted"),
    [
        ("planned", None, True),  # no checkbox at all: the status's default
        ("done", None, True),
        ("declined", None, True),
        ("in_progress", None, False),
        ("planned", "off", False),  # the form's checkbox, unticked
        ("in_progress", ["off", "on"], True),  # ticked
        ("in_progress", "yes", True),  # as a script might say it
        ("done", "false", False),
    ],
)
def test_notify_is_asked_for_or_the_statuss_default(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    status: str,
    notify: Any,
    noted: bool,
) -> None:
    feedback_id = backed_record(canvas_app)
    fields = {} if notify is None else {"notify": notify}
    assert change_status(team, feedback_id, status, **fields).status_code == 302
    wait_for_sender(canvas_app)
    assert len(conversations.notes()) == (2 if noted else 0)
    assert [record.status for record in stored_feedback(canvas_app)] == [status]
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert ("No note was sent (not asked)." in page) is not noted


def test_two_changes_in_a_row_send_two_notes_to_each_conversation_once(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app)
    change_status(team, feedback_id, "planned", notify="on")
    change_status(team, feedback_id, "done", notify="on")
    wait_for_sender(canvas_app)
    assert sorted(conversations.notes()) == sorted(CONVERSATIONS * 2)
    bodies = [r["json"]["body"] for r in conversations.requests]
    assert sum("<b>Planned</b>" in body for body in bodies) == 2
    assert sum("<b>Done</b>" in body for body in bodies) == 2
    assert [note.state for note in stored_notes(canvas_app)] == ["sent"] * 4
    assert "Planned → Done" in page_text(team.get(f"/feedback/{feedback_id}"))


def test_reopening_follows_the_note(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    change_status(team, feedback_id, "done", notify="on", reopen="on")
    wait_for_sender(canvas_app)
    assert [(r["path"], r["json"]) for r in conversations.requests][1:] == [
        ("/conversations/1001/parts", {"message_type": "open", "admin_id": ME["id"]})
    ]
    assert conversations.requests[0]["path"] == "/conversations/1001/reply"
    assert "sent and reopened" in page_text(team.get(f"/feedback/{feedback_id}"))


@pytest.mark.parametrize(
    ("said", "reopen"),
    [
        ("yes", True),
        ("true", True),
        ("1", True),
        ("On", True),
        ("no", False),
        ("false", False),
        ("0", False),
        ("", False),
    ],
)
def test_reopen_reads_yes_and_no_as_notify_does(
    canvas_app: Flask, held: FlaskClient, said: str, reopen: bool
) -> None:
    """A form or script that posts reopen=yes (as it may notify=yes) reopens the
    conversations; reopen=no does not."""
    feedback_id = backed_record(canvas_app, ("1001",))
    change_status(held, feedback_id, "done", notify="yes", reopen=said)
    ((state, queued_reopen),) = [(note.state, note.reopen) for note in stored_notes(canvas_app)]
    assert (state, queued_reopen) == ("pending", reopen)


def test_a_note_left_pending_by_a_crash_is_sent_later_exactly_once(
    tmp_path: Path, canvas_app: Flask, conversations: IntercomConversations
) -> None:
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False  # the process stops before sending
    create_user(canvas_app)
    client = canvas_app.test_client()
    sign_in(client)
    feedback_id = backed_record(canvas_app)
    change_status(client, feedback_id, "planned", notify="on")
    assert conversations.requests == []
    assert [note.state for note in stored_notes(canvas_app)] == ["pending", "pending"]
    assert page_text(client.get(f"/feedback/{feedback_id}")).count("to be sent") == 2

    restarted = make_app(
        tmp_path,
        DATABASE_URL=canvas_app.config["SQLALCHEMY_DATABASE_URI"],
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_API_URL=canvas_app.config["INTERCOM_API_URL"],
    )
    restarted.test_client().get("/healthz")  # its first request wakes the sender
    wait_for_sender(restarted)
    assert sorted(conversations.notes()) == list(CONVERSATIONS)
    result = restarted.test_cli_runner().invoke(args=["send-notes"])
    assert result.output == "0 sent, 0 failed, 0 waiting.\n"
    assert sorted(conversations.notes()) == list(CONVERSATIONS)


def test_flask_send_notes_sends_what_is_pending(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    change_status(held, backed_record(canvas_app), "done")
    result = canvas_app.test_cli_runner().invoke(args=["send-notes"])
    assert result.exit_code == 0
    assert result.output == "2 sent, 0 failed, 0 waiting.\n"
    assert sorted(conversations.notes()) == list(CONVERSATIONS)


def test_a_note_whose_sender_stopped_mid_call_is_never_sent_twice(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    """A sender that stopped while sending leaves a claimed note: Intercom may have it, so it is
    failed for a person to retry, never sent again by itself. One whose note went out and that
    only had its conversation left to reopen is reopened."""
    feedback_id = backed_record(canvas_app)
    change_status(held, feedback_id, "done", notify="on", reopen="on")
    long_ago = datetime(2000, 1, 1)
    with canvas_app.app_context():
        notes = db.session.scalars(select(models.Note).order_by(models.Note.conversation_id))
        unknown, noted = notes
        unknown.state, unknown.claimed_at = "sending", long_ago
        noted.state, noted.claimed_at, noted.noted_at = "sending", long_ago, long_ago
        db.session.commit()
    send_notes(canvas_app)
    assert [r["path"] for r in conversations.requests] == ["/conversations/1002/parts"]
    states = {note.conversation_id: (note.state, note.reason) for note in stored_notes(canvas_app)}
    assert states["1002"] == ("sent", "")
    assert states["1001"][0] == "failed"
    assert "it may have arrived. Retry sends it again." in states["1001"][1]
    assert "Retry failed" in page_text(held.get(f"/feedback/{feedback_id}"))


def test_two_senders_at_once_send_each_note_once(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    many = tuple(str(2000 + n) for n in range(40))
    change_status(held, backed_record(canvas_app, many), "planned", notify="on")

    def sender() -> Any:
        return send_notes(canvas_app)

    with ThreadPoolExecutor(2) as pool:
        outcomes = [future.result() for future in [pool.submit(sender), pool.submit(sender)]]
    assert sorted(conversations.notes()) == sorted(many)  # each once
    assert sum(outcome["sent"] for outcome in outcomes) == 40
    assert all(outcome["sent"] for outcome in outcomes)  # both took part
    assert {note.state for note in stored_notes(canvas_app)} == {"sent"}


def intercom_error(code: str) -> dict[str, Any]:
    """Intercom's documented error body."""
    return {
        "type": "error.list",
        "request_id": "req-1",
        "errors": [{"code": code, "message": "no"}],
    }


@pytest.mark.parametrize(
    ("error", "why"),
    [
        (
            intercom_error("unauthorized"),
            "HTTP 401 (unauthorized): it no longer accepts this token (revoked, or the app was "
            "uninstalled): connect again",
        ),
        (
            intercom_error("token_unauthorized"),
            "HTTP 401 (token_unauthorized): the app lacks a permission this needs (Write "
            "conversations): add it in the Developer Hub (your app → Configure → Authentication "
            "/ permissions), then reinstall the app",
        ),
        ({}, "HTTP 401: it no longer accepts this token"),
    ],
    ids=["revoked", "permission missing", "no error code"],
)
def test_a_refused_token_waits_for_a_reconnect_then_the_notes_go(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    httpserver: HTTPServer,
    error: dict[str, Any],
    why: str,
) -> None:
    feedback_id = backed_record(canvas_app)
    conversations.answers = [(401, {}, error)]
    change_status(team, feedback_id, "done")
    wait_for_sender(canvas_app)
    assert len(conversations.requests) == 1  # the workspace's other note was not tried
    nav = page_text(team.get("/"))
    assert "Example Co workspace needs reconnecting." in nav
    assert why in nav  # the owner reads which it is, and what to do
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert page.count("waiting until Example Co workspace is reconnected") == 2
    assert {note.state for note in stored_notes(canvas_app)} == {"pending"}

    serve_intercom(httpserver)
    assert post(team, "/intercom/connect/token", {"access_token": TOKEN}).status_code == 302
    wait_for_sender(canvas_app)
    assert {note.state for note in stored_notes(canvas_app)} == {"sent"}
    refused = conversations.notes()[0]
    assert sorted(conversations.notes()) == sorted([*CONVERSATIONS, refused])
    assert "needs reconnecting" not in page_text(team.get("/"))


def test_notes_made_while_a_workspace_needs_reconnecting_say_they_wait_for_it(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    httpserver: HTTPServer,
) -> None:
    """The sender leaves a refused workspace's notes alone until a reconnect: a change made
    meanwhile says from the start that its notes wait for it, not that they are to be sent."""
    refused = backed_record(canvas_app, ("1001",), title="Dark mode")
    later = backed_record(canvas_app, ("1002", "1003"), title="CSV export")
    conversations.answers = [(401, {}, intercom_error("unauthorized"))]
    change_status(team, refused, "done")
    wait_for_sender(canvas_app)
    change_status(team, later, "planned")
    wait_for_sender(canvas_app)
    assert len(conversations.requests) == 1
    page = page_text(team.get(f"/feedback/{later}"))
    assert page.count("waiting until Example Co workspace is reconnected") == 2
    assert "to be sent" not in page

    serve_intercom(httpserver)
    assert post(team, "/intercom/connect/token", {"access_token": TOKEN}).status_code == 302
    wait_for_sender(canvas_app)
    assert {note.state for note in stored_notes(canvas_app)} == {"sent"}
    assert sorted(conversations.notes()) == ["1001", "1001", "1002", "1003"]
    page = page_text(team.get(f"/feedback/{later}"))
    assert "waiting until" not in page and page.count('data-note-state="sent"') == 2


def test_a_plan_without_the_api_fails_the_notes_for_a_person_to_read_not_to_wait(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    """Reconnecting does not change a workspace's plan: the notes fail, saying so, and Retry
    sends them once the plan allows it."""
    feedback_id = backed_record(canvas_app)
    conversations.answers = [(403, {}, intercom_error("api_plan_restricted"))] * 2
    change_status(team, feedback_id, "done")
    wait_for_sender(canvas_app)
    assert len(conversations.requests) == 2
    assert {note.state for note in stored_notes(canvas_app)} == {"failed"}
    assert "needs reconnecting" not in page_text(team.get("/"))
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert (
        page.count("with HTTP 403 (api_plan_restricted): your Intercom plan does not include this")
        == 2
    )
    assert "Retry failed" in page


def test_a_deleted_conversation_fails_for_good_and_can_be_retried(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    conversations.answers = [(404, {})]
    change_status(team, feedback_id, "declined")
    wait_for_sender(canvas_app)
    (note,) = stored_notes(canvas_app)
    assert note.state == "failed"
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert (
        "failed: Intercom answered /conversations/1001/reply with HTTP 404: it has no such "
        "thing (deleted or merged)"
    ) in page
    response = post(team, f"/feedback/{feedback_id}/notes/retry", follow_redirects=True)
    assert "1 note will be sent again." in page_text(response)
    wait_for_sender(canvas_app)
    assert conversations.notes() == ["1001", "1001"]
    assert [note.state for note in stored_notes(canvas_app)] == ["sent"]


def test_a_429_waits_as_retry_after_says_then_goes_on(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    change_status(held, backed_record(canvas_app), "planned")
    conversations.answers = [(429, {"Retry-After": "1"})]
    outcomes = send_notes(canvas_app, wait_max=5)
    assert outcomes["sent"] == 2
    refused = conversations.notes()[0]
    assert sorted(conversations.notes()) == sorted([*CONVERSATIONS, refused])  # it, once more


@pytest.mark.parametrize("header", ["Retry-After", "Retry-After as a date", "X-RateLimit-Reset"])
def test_a_long_429_leaves_the_workspaces_notes_for_the_time_it_gives(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations, header: str
) -> None:
    change_status(held, backed_record(canvas_app), "planned")
    hour = {
        "Retry-After": "3600",
        "Retry-After as a date": email.utils.formatdate(time.time() + 3600, usegmt=True),
        "X-RateLimit-Reset": str(int(time.time()) + 3600),
    }[header]
    conversations.answers = [(429, {header.removesuffix(" as a date"): hour})]
    send_notes(canvas_app, wait_max=5)
    assert len(conversations.requests) == 1
    notes = stored_notes(canvas_app)
    assert {note.state for note in notes} == {"pending"}
    in_an_hour = models.utcnow() + timedelta(hours=1)
    for note in notes:
        assert abs(note.next_attempt_at - in_an_hour) < timedelta(minutes=1)
    assert "HTTP 429" in notes[0].reason


def test_5xx_and_timeouts_are_tried_again_a_bounded_number_of_times_then_fail(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    feedback_id = backed_record(canvas_app, ("1001",))
    change_status(team, feedback_id, "done")
    conversations.answers = [(503, {})] * 10
    send_notes(canvas_app)
    (note,) = stored_notes(canvas_app)
    assert (note.state, note.attempts) == ("pending", 1)
    assert note.next_attempt_at > models.utcnow() + timedelta(seconds=20)
    assert "try 1 of 5 failed" in page_text(team.get(f"/feedback/{feedback_id}"))
    for _ in range(4):
        come_due(canvas_app)
        send_notes(canvas_app)
    (note,) = stored_notes(canvas_app)
    assert (note.state, note.attempts) == ("failed", 5)
    assert len(conversations.requests) == 5
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert (
        "failed: Intercom answered /conversations/1001/reply with HTTP 503: it had a problem "
        "(tried 5 times)"
    ) in page
    assert "will try again" not in page and "Retry failed" in page


def test_a_note_whose_answer_never_came_is_left_for_a_person_not_sent_twice(
    canvas_app: Flask, team: FlaskClient, httpserver: HTTPServer
) -> None:
    """Intercom took the request and did not answer in time: it may have the note, so sending
    it again might say it twice. It fails, saying so, and Retry is a person's choice."""
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    calls = []

    def slow(request: Request) -> Response:
        calls.append(request.path)
        time.sleep(1.5)  # longer than INTERCOM_TIMEOUT (1 s)
        return Response("{}", 200, content_type="application/json")

    httpserver.expect_request("/conversations/1001/reply").respond_with_handler(slow)
    feedback_id = backed_record(canvas_app, ("1001",))
    change_status(team, feedback_id, "done")
    send_notes(canvas_app)
    come_due(canvas_app)
    send_notes(canvas_app)
    assert calls == ["/conversations/1001/reply"]
    (note,) = stored_notes(canvas_app)
    assert note.state == "failed"
    assert note.reason == (
        "Intercom did not answer /conversations/1001/reply within 1 seconds: it may have "
        "arrived. Retry sends it again."
    )


def test_a_note_that_could_not_reach_intercom_is_tried_again(
    tmp_path: Path, database_url: str
) -> None:
    with socket.socket() as closed:  # a port nothing listens on: the connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    app = make_app(
        tmp_path,
        DATABASE_URL=database_url,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_API_URL=f"http://127.0.0.1:{port}",
        INTERCOM_TIMEOUT=1,
        SEND_NOTES_AT_ONCE=False,
    )
    connect_workspace(app)
    create_user(app)
    client = app.test_client()
    sign_in(client)
    change_status(client, backed_record(app, ("1001",)), "done")
    send_notes(app)
    (note,) = stored_notes(app)
    assert (note.state, note.attempts) == ("pending", 1)
    assert (
        "try 1 of 5 failed: could not reach Intercom for /conversations/1001/reply" in note.reason
    )


def test_the_same_change_twice_at_once_is_made_and_told_once(
    canvas_app: Flask, conversations: IntercomConversations
) -> None:
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    create_user(canvas_app)
    feedback_id = backed_record(canvas_app)
    clients = []
    for _ in range(2):
        client = canvas_app.test_client()
        sign_in(client)
        csrf(client)
        clients.append(client)

    def click(client: FlaskClient) -> int:
        return change_status(client, feedback_id, "done").status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(click, clients))
    assert statuses == [302, 400]
    with canvas_app.app_context():
        changes = db.session.scalars(select(models.StatusChange)).all()
        assert [(c.from_status, c.to_status) for c in changes] == [("open", "done")]
    assert len(stored_notes(canvas_app)) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {"Retry-After": "1e300"},
        {"Retry-After": "inf"},
        {"Retry-After": "9_999_999"},
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"},
        {"X-RateLimit-Reset": "1e12"},
    ],
)
def test_a_429_asking_for_forever_waits_an_hour_at_most(
    canvas_app: Flask,
    held: FlaskClient,
    conversations: IntercomConversations,
    headers: dict[str, str],
) -> None:
    change_status(held, backed_record(canvas_app), "planned")
    conversations.answers = [(429, headers)]
    send_notes(canvas_app)
    notes = stored_notes(canvas_app)
    assert {note.state for note in notes} == {"pending"}
    latest = models.utcnow() + timedelta(hours=1)
    assert all(note.next_attempt_at <= latest for note in notes)


def test_a_record_deleted_while_its_note_is_sent_stops_only_that_note(
    canvas_app: Flask, team: FlaskClient, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A teammate deletes the record while Intercom is taking one of its notes: the sender
    says so in one warning line (no error, no traceback) and goes on to the other notes."""
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    doomed = backed_record(canvas_app, ("1001", "1002"), title="Doomed")
    kept = backed_record(canvas_app, ("1003",), title="Kept")
    change_status(team, doomed, "done")
    change_status(team, kept, "done")
    notes = {n.conversation_id: n.id for n in stored_notes(canvas_app)}
    asked: list[str] = []

    def answer(request: Request) -> Response:
        asked.append(request.path.split("/")[2])
        if len(asked) == 1:  # another request of the team's, while this one is answered
            assert post(team, f"/feedback/{doomed}/delete").status_code == 302
        return Response("{}", 200, content_type="application/json")

    path = re.compile(r"^/conversations/[^/]+/reply$")
    httpserver.expect_request(path).respond_with_handler(answer)
    outcomes = send_notes(canvas_app)
    being_sent, *after = asked
    assert being_sent in ("1001", "1002") and after == ["1003"]
    assert outcomes["sent"] == 1
    assert [(n.conversation_id, n.state) for n in stored_notes(canvas_app)] == [("1003", "sent")]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    (warning,) = [r for r in caplog.records if "deleted with its record" in r.getMessage()]
    assert warning.levelno == logging.WARNING and warning.exc_info is None
    assert warning.getMessage() == (
        f"Note {notes[being_sent]} to conversation {being_sent} was deleted with its record "
        "while it was being sent: it may have arrived."
    )


def test_the_delete_page_says_how_many_notes_will_never_be_sent(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, ("1001", "1002", "1003"))
    page = page_text(held.get(f"/feedback/{feedback_id}/delete"))
    assert "still to be sent" not in page
    change_status(held, feedback_id, "planned")
    conversations.answers = [(200, {})]
    with canvas_app.app_context():  # one is sent, two are left
        outbox.deliver(outbox.claim_next_note())
    page = page_text(held.get(f"/feedback/{feedback_id}/delete"))
    assert "2 notes to its conversations are still to be sent: they will not be." in page
    assert post(held, f"/feedback/{feedback_id}/delete").status_code == 302
    send_notes(canvas_app)
    assert len(conversations.notes()) == 1


def test_a_refused_reopen_after_the_note_arrived_says_so(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    conversations.answers = [(200, {}), (404, {})]
    change_status(team, feedback_id, "done", notify="on", reopen="on")
    wait_for_sender(canvas_app)
    (note,) = stored_notes(canvas_app)
    assert note.state == "sent"
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert "the note arrived, but reopening failed: Intercom answered" in page
    assert "Notes: 1 sent" in page


def test_the_form_counts_the_conversations_that_would_get_a_note(
    canvas_app: Flask, team: FlaskClient
) -> None:
    feedback_id = backed_record(canvas_app, ("1001", "1002"))
    with canvas_app.app_context():
        record = db.session.get(Feedback, feedback_id)
        add_evidence(record, source="web", customer_name="By hand")
        add_evidence(record, source="intercom", workspace_id="gone-ws", conversation_id="9")
        db.session.commit()
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert "Add an internal note to 2 conversations that asked" in page


def test_a_status_sent_from_a_merged_records_page_changes_nothing_and_keeps_the_form(
    canvas_app: Flask, team: FlaskClient
) -> None:
    """The record it went into has other conversations, maybe another status: its page
    answers, the form as it was sent, to check and send again."""
    duplicate = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    post(team, f"/feedback/{duplicate}/merge", {"into": str(target)})
    response = change_status(team, duplicate, "planned", message="In May", reopen="on")
    assert response.status_code == 409
    page = html.unescape(page_text(response))
    assert f"#{duplicate} was merged into #{target}, this record: nothing was changed." in page
    assert f'action="/feedback/{target}/status"' in page
    assert ">In May</textarea>" in page and 'name="reopen" value="on" checked' in page
    assert [(r.id, r.status) for r in stored_feedback(canvas_app)] == [(target, "open")]


@pytest.mark.parametrize("merged", [True, False], ids=["merged", "deleted"])
def test_a_status_change_racing_a_merge_or_a_delete_changes_nothing_and_says_so(
    canvas_app: Flask,
    team: FlaskClient,
    monkeypatch: pytest.MonkeyPatch,
    conversations: IntercomConversations,
    merged: bool,
) -> None:
    record = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    change = (
        (lambda: merge_now(canvas_app, record, target))
        if merged
        else (lambda: delete_now(canvas_app, record))
    )
    meanwhile(monkeypatch, hedwig_app.loop, "set_status", change)
    response = change_status(team, record, "done", message="Shipped")
    assert response.status_code == 409
    page = page_text(response)
    what = f"merged into #{target}, this record" if merged else "deleted meanwhile"
    assert f"#{record} was {what}" in page and "Shipped</textarea>" in page
    assert [r.status for r in stored_feedback(canvas_app)] == ["open"]
    wait_for_sender(canvas_app)
    assert stored_notes(canvas_app) == [] and conversations.notes() == []


def test_an_answer_that_drips_or_floods_holds_the_sender_a_bounded_time(
    canvas_app: Flask, team: FlaskClient, httpserver: HTTPServer
) -> None:
    """A 200 whose body never ends still said the note arrived: it is sent, and the rest of
    the body is left unread (at most 1 MiB, or three timeouts, is read)."""
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False

    def endless(request: Request) -> Response:
        return Response(itertools.repeat(b"x" * 65536), 200, content_type="application/json")

    httpserver.expect_request("/conversations/1001/reply").respond_with_handler(endless)
    feedback_id = backed_record(canvas_app, ("1001",))
    change_status(team, feedback_id, "done")
    send_notes(canvas_app)
    assert [note.state for note in stored_notes(canvas_app)] == ["sent"]


class DrippingIntercom:
    """A stand-in for Intercom on loopback whose answer comes a byte every 0.3 s (60 bytes at
    most, then it hangs up): from its status line on, or only its body, after a 200's headers.
    It keeps the first line of each request it gets."""

    DRIP = 0.3  # seconds between bytes

    def __init__(self, what: str) -> None:
        close = b"Connection: close\r\n" if what.endswith("then close") else b""
        if what == "the whole answer":
            self.at_once, self.dripped = b"", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
        else:
            headers = b"HTTP/1.1 200 OK\r\n" + close + b"Content-Length: 60\r\n\r\n"
            self.at_once, self.dripped = headers, b"x" * 60
        self.requests: list[str] = []
        self.asked = threading.Event()
        self.stopped = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        with self.listener:
            while not self.stopped.is_set():
                try:
                    connection, _ = self.listener.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            self.requests.append(request.split(b"\r\n", 1)[0].decode())
            self.asked.set()
            try:
                connection.sendall(self.at_once)
                for byte in self.dripped:
                    if self.stopped.wait(self.DRIP):
                        return
                    connection.sendall(bytes([byte]))
            except OSError:  # Hedwig gave up and hung up
                return


@pytest.fixture(params=["the whole answer", "the body after a 200"])
def dripping_intercom(request: pytest.FixtureRequest) -> Iterator[DrippingIntercom]:
    server = DrippingIntercom(request.param)
    yield server
    server.stopped.set()


@pytest.fixture
def dripping_app(tmp_path: Path, database_url: str, dripping_intercom: DrippingIntercom) -> Flask:
    """Hedwig with the fixture workspace connected to the dripping stand-in, a short timeout,
    and no sender thread."""
    app = make_app(
        tmp_path,
        DATABASE_URL=database_url,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_API_URL=dripping_intercom.url,
        INTERCOM_TIMEOUT=0.5,
        SEND_NOTES_AT_ONCE=False,
    )
    connect_workspace(app)
    return app


def test_a_call_whose_answer_drips_is_cut_off_at_its_deadline(
    dripping_app: Flask, dripping_intercom: DrippingIntercom
) -> None:
    """Three timeouts for the whole call, however the answer trickles in: without a whole
    status line Hedwig cannot tell whether the note arrived; after a 200's headers it can."""
    with dripping_app.app_context():
        if dripping_intercom.at_once:
            response = intercom_response("POST", "/conversations/1001/reply", TOKEN, json={})
            assert response.status_code == 200
            return
        with pytest.raises(IntercomError) as cut:
            intercom_response("POST", "/conversations/1001/reply", TOKEN, json={})
    assert (cut.value.arrived, cut.value.http_status) == (None, None)
    assert str(cut.value) == "Intercom did not answer /conversations/1001/reply within 1.5 seconds"


@pytest.mark.parametrize(
    "dripping_intercom",
    ["the body after a 200", "the body after a 200, then close"],
    indirect=True,
)
def test_an_answer_whose_body_drips_is_not_read_past_the_deadline(
    dripping_app: Flask, dripping_intercom: DrippingIntercom
) -> None:
    """Whether or not the answer says it closes the connection (http.client then hands the
    socket to the answer), the deadline cuts the read: the body is not read whole."""
    with dripping_app.app_context(), pytest.raises(IntercomError) as cut:
        call_intercom("GET", "/me", TOKEN)
    assert str(cut.value) == "Intercom's answer to /me was too long, or too slow, to read whole"


def test_a_note_whose_answer_drips_is_told_once_even_when_another_sender_runs_meanwhile(
    dripping_app: Flask, dripping_intercom: DrippingIntercom
) -> None:
    client = signed_in_browser(dripping_app)
    feedback_id = backed_record(dripping_app, ("1001",))
    change_status(client, feedback_id, "done")
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(send_notes, dripping_app)
        assert dripping_intercom.asked.wait(10)
        assert sum(send_notes(dripping_app).values()) == 0  # the note is the first sender's
        first.result()
    send_notes(dripping_app)
    assert dripping_intercom.requests == ["POST /conversations/1001/reply HTTP/1.1"]
    (note,) = stored_notes(dripping_app)
    if dripping_intercom.at_once:  # Intercom said 200: the note is there
        assert (note.state, note.reason) == ("sent", "")
        return
    assert (note.state, note.reason) == (
        "failed",
        "Intercom did not answer /conversations/1001/reply within 1.5 seconds: it may have "
        "arrived. Retry sends it again.",
    )
    assert "Retry failed" in page_text(client.get(f"/feedback/{feedback_id}"))


def test_conversations_hedwig_cannot_tell_are_skipped_and_shown(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    with canvas_app.app_context():
        record = db.session.get(Feedback, feedback_id)
        add_evidence(
            record,
            source="intercom",
            workspace_id="gone-ws",
            conversation_id="77",
            customer_name="Dana Elsewhere",
        )
        add_evidence(record, source="web", customer_name="Erin By Hand")
        add_evidence(
            record,
            source="intercom",
            workspace_id=models.PREVIEW_WORKSPACE_ID,
            conversation_id="1001",
            customer_name="Pat Preview",
        )
        db.session.commit()
    change_status(team, feedback_id, "planned")
    wait_for_sender(canvas_app)
    assert conversations.notes() == ["1001"]
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert "Dana Elsewhere · conversation 77:" in page
    assert "skipped: its workspace is not connected to Hedwig" in page
    assert "Erin By Hand:" in page and "skipped: added by hand: no Intercom conversation" in page
    assert "skipped: recorded in the canvas preview, not in Intercom" in page
    assert "Notes: 1 sent, 3 skipped" in page


def test_a_workspace_disconnected_before_its_notes_went_fails_them(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    change_status(held, backed_record(canvas_app, ("1001",)), "planned")
    with canvas_app.app_context():
        db.session.execute(sqlalchemy.delete(IntercomConnection))
        db.session.commit()
    send_notes(canvas_app)
    assert conversations.requests == []
    ((state, reason),) = [(n.state, n.reason) for n in stored_notes(canvas_app)]
    assert (state, reason) == ("failed", "the workspace was disconnected before it was sent")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "shipped"}, "Choose a status: Open, Planned, In progress, Done, Declined."),
        ({"status": "open"}, "is open already."),
        ({"status": "done", "message": "x" * 2001}, "Keep the message to 2000 characters."),
    ],
)
def test_a_bad_status_change_says_why_and_changes_nothing(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    fields: dict[str, str],
    message: str,
) -> None:
    feedback_id = backed_record(canvas_app)
    response = post(team, f"/feedback/{feedback_id}/status", fields)
    assert response.status_code == 400
    assert message in page_text(response)
    assert [record.status for record in stored_feedback(canvas_app)] == ["open"]
    assert stored_notes(canvas_app) == []
    assert post(team, "/feedback/999/status", {"status": "done"}).status_code == 404
    assert team.post(f"/feedback/{feedback_id}/status", data={"status": "done"}).status_code == 400


def test_the_list_filters_by_status_and_shows_it(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    planned = backed_record(canvas_app, ("1001",), title="Dark mode")
    backed_record(canvas_app, ("1002",), title="CSV export")
    change_status(team, planned, "planned", notify="off")
    page = page_text(team.get("/?status=planned"))
    assert "Dark mode" in page and "CSV export" not in page
    assert "1 record planned" in page
    assert 'class="status planned">Planned<' in page
    assert "CSV export" in page_text(team.get("/?status=open"))
    assert "No feedback is done." in page_text(team.get("/?status=done"))
    response = team.get("/?status=shipped")
    assert response.status_code == 400
    assert "There is no status &#39;shipped&#39;" in page_text(response)
    rows = list(csv.DictReader(io.StringIO(page_text(team.get("/feedback.csv?status=planned")))))
    assert [(row["title"], row["status"]) for row in rows] == [("Dark mode", "Planned")]


def test_a_search_counts_what_it_lists_with_or_without_a_status(
    canvas_app: Flask, team: FlaskClient
) -> None:
    planned = backed_record(canvas_app, ("1001",), title="Dark mode")
    backed_record(canvas_app, ("1002",), title="Dark theme for reports")
    backed_record(canvas_app, ("1003",), title="CSV export")
    change_status(team, planned, "planned", notify="off")
    page = page_text(team.get("/?q=dark"))
    assert "2 records matching “dark”" in page
    assert page.count('class="title" href="/feedback/') == 2
    page = page_text(team.get("/?q=dark&status=planned"))
    assert "1 record planned matching “dark”" in page
    assert "Dark mode" in page and "Dark theme" not in page


def test_the_canvases_show_each_records_status(
    canvas_app: Flask, team: FlaskClient, inbox: Inbox, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, (CONVERSATION_ID,), title="CSV export crashes")
    change_status(team, feedback_id, "in_progress")
    (listing,) = [c for c in inbox.initialize() if c["type"] == "list"]
    assert listing["items"][0]["subtitle"] == f"#{feedback_id} · In progress · 1 customer"
    find = inbox.find()
    (matches,) = [c for c in find["canvas"]["content"]["components"] if c["type"] == "list"]
    assert matches["items"][0]["subtitle"] == f"#{feedback_id} · In progress · 1 customer"


def test_the_preview_shows_status_on_its_lists(app: Flask, signed_in: FlaskClient) -> None:
    (feedback_id,) = add_feedback(
        app,
        title="Dark mode",
        source="intercom",
        workspace_id=models.PREVIEW_WORKSPACE_ID,
        conversation_id=SAMPLE["conversation_id"],
        customer_email=SAMPLE["customer_email"],
    )
    with app.app_context():
        db.session.get(Feedback, feedback_id).status = "planned"
        db.session.commit()
    page = page_text(signed_in.get("/intercom/preview"))
    assert f'<span class="c-item-subtitle">#{feedback_id} · Planned · 1 customer</span>' in page


def test_merging_keeps_the_duplicates_history_and_notes(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    duplicate = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    change_status(team, duplicate, "planned", message="Next sprint")
    wait_for_sender(canvas_app)
    post(team, f"/feedback/{duplicate}/merge", {"into": str(target)})
    page = page_text(team.get(f"/feedback/{target}"))
    assert "Open → Planned" in page and "Next sprint" in page
    assert "Customer 0 · conversation 1001:" in page


# --- Replies the customers see, and back to the agent who heard it ------------------------------


def replies_sent(conversations: IntercomConversations) -> list[tuple[str, str]]:
    """Each comment the customers got: its conversation and its body, in order."""
    return [
        (r["path"].split("/")[2], r["json"]["body"])
        for r in conversations.requests
        if r["path"].endswith("/reply") and r["json"]["message_type"] == "comment"
    ]


def internal_notes(conversations: IntercomConversations) -> list[str]:
    return [
        r["path"].split("/")[2]
        for r in conversations.requests
        if r["path"].endswith("/reply") and r["json"]["message_type"] == "note"
    ]


def stored_replies(app: Flask) -> list[models.Note]:
    return [note for note in stored_notes(app) if note.kind == "reply"]


def test_a_reply_tells_each_customer_in_their_conversation_beside_the_teams_note(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, title="CSV <export>")
    words = "Hi {first_name}, {title} is live.\nEnjoy!\n\nThe <b>team</b>"
    response = change_status(team, feedback_id, "done", reply="on", reply_message=words)
    assert response.status_code == 302
    flashed = page_text(team.get(f"/feedback/{feedback_id}"))
    assert "a note goes to 2 conversations, a reply to 2 customers" in flashed
    wait_for_sender(canvas_app)

    assert sorted(internal_notes(conversations)) == list(CONVERSATIONS)
    assert sorted(replies_sent(conversations)) == [
        (
            conversation,
            "<p>Hi Customer, CSV &lt;export&gt; is live.<br>Enjoy!</p>"
            "<p>The &lt;b&gt;team&lt;/b&gt;</p>",
        )
        for conversation in CONVERSATIONS
    ]
    comment = next(
        r["json"] for r in conversations.requests if r["json"]["message_type"] == "comment"
    )
    assert set(comment) == {"message_type", "type", "admin_id", "body"}
    assert (comment["type"], comment["admin_id"]) == ("admin", ME["id"])
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert "Notes: 2 sent" in page and "Replies to the customers: 2 sent" in page
    assert page.count('data-kind="reply"') == 2


@pytest.mark.parametrize("reply", [None, "off", "no", ["off"]])
def test_no_reply_goes_without_reply_on(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    reply: Any,
) -> None:
    feedback_id = backed_record(canvas_app)
    fields = {"reply_message": "Hi {first_name}, it is done."}
    if reply is not None:
        fields["reply"] = reply
    assert change_status(team, feedback_id, "done", **fields).status_code == 302
    wait_for_sender(canvas_app)
    assert replies_sent(conversations) == []
    assert sorted(internal_notes(conversations)) == list(CONVERSATIONS)
    assert stored_replies(canvas_app) == []


def test_the_form_offers_the_statuss_reply_and_previews_it_as_the_customer_reads_it(
    canvas_app: Flask, team: FlaskClient
) -> None:
    feedback_id = backed_record(canvas_app, ("1001", "1002"), title="Dark mode")
    with canvas_app.app_context():
        add_evidence(db.session.get(Feedback, feedback_id), source="web", customer_name="Hand")
        db.session.commit()
    page = html.unescape(page_text(team.get(f"/feedback/{feedback_id}")))
    # An open record's form offers "planned": its words, prefilled, placeholders and all.
    assert (
        'name="reply_message" rows="4" maxlength="2000">Hi {first_name}, thanks again for asking '
        "for {title}. Good news: it is planned." in page
    )
    assert "2 customers get it (skipped: 1 added by hand: no Intercom conversation)." in page
    assert "As Customer reads it:" in page
    assert (
        '<blockquote class="reply-text">Hi Customer, thanks again for asking for Dark mode.' in page
    )
    assert 'name="reply" value="on">' in page  # off until ticked

    typed = "Hello {first_name}: {title} is underway."
    response = change_status(
        team, feedback_id, "in_progress", reply="on", reply_message=typed, preview_reply="1"
    )
    assert response.status_code == 200
    page = html.unescape(page_text(response))
    assert "Hello Customer: Dark mode is underway." in page
    assert f'maxlength="2000">{typed}</textarea>' in page
    assert [record.status for record in stored_feedback(canvas_app)] == ["open"]
    assert stored_notes(canvas_app) == []


@pytest.mark.parametrize(
    ("words", "error"),
    [
        ("", "Write the reply, or untick “Reply to the customers”."),
        ("Hi {name}", "Hedwig knows no {name}: use {first_name} and {title}."),
        ("x" * 2001, "Keep the reply to 2000 characters (2001 now)."),
    ],
)
def test_a_reply_that_cannot_go_says_why_and_changes_nothing(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    words: str,
    error: str,
) -> None:
    feedback_id = backed_record(canvas_app)
    response = change_status(team, feedback_id, "done", reply="on", reply_message=words)
    assert response.status_code == 400
    assert error in html.unescape(page_text(response))
    assert [record.status for record in stored_feedback(canvas_app)] == ["open"]
    assert stored_notes(canvas_app) == []


def test_owners_word_each_statuss_reply_and_the_form_starts_from_it(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    page = html.unescape(page_text(team.get("/replies")))
    assert "Good news: it is planned." in page
    words = {f"reply_{status}": "" for status in models.STATUSES}
    words["reply_done"] = "Dear {first_name}, {title} shipped."
    bad = post(team, "/replies", {**words, "reply_planned": "Hi {firstname}"})
    assert bad.status_code == 400
    assert "Hedwig knows no {firstname}" in html.unescape(page_text(bad))
    assert "Good news: it is planned." in html.unescape(page_text(team.get("/replies")))
    assert post(team, "/replies", words).status_code == 302

    feedback_id = backed_record(canvas_app, ("1001",))
    change_status(team, feedback_id, "in_progress", notify="off")
    page = html.unescape(page_text(team.get(f"/feedback/{feedback_id}")))  # offers "done"
    assert 'maxlength="2000">Dear {first_name}, {title} shipped.</textarea>' in page
    assert "Good news" not in page

    member = signed_in_browser(canvas_app, "bea@example.com")
    assert member.get("/replies").status_code == 403
    assert post(member, "/replies", words).status_code == 403
    assert 'href="/replies"' not in page_text(member.get("/"))


def test_a_customer_already_told_a_status_is_not_told_it_again(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app)
    change_status(team, feedback_id, "done", reply="on", reply_message="Done, {first_name}!")
    change_status(team, feedback_id, "in_progress", reply="on", reply_message="Back at it.")
    wait_for_sender(canvas_app)
    assert len(replies_sent(conversations)) == 4
    with canvas_app.app_context():  # one more customer asks meanwhile
        record = db.session.get(Feedback, feedback_id)
        add_evidence(record, source="intercom", workspace_id=WORKSPACE_ID, conversation_id="1003")
        db.session.commit()
    page = html.unescape(page_text(team.get(f"/feedback/{feedback_id}")))
    assert "1 customer gets it (skipped: 2 the customer was already told it is done)." in page
    change_status(team, feedback_id, "done", reply="on", reply_message="Done, {first_name}!")
    wait_for_sender(canvas_app)
    assert [conversation for conversation, _ in replies_sent(conversations)][4:] == ["1003"]
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert page.count("skipped: the customer was already told it is done") == 2


def test_preview_and_hand_added_evidence_get_no_reply_and_say_why(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    with canvas_app.app_context():
        record = db.session.get(Feedback, feedback_id)
        add_evidence(record, source="web", customer_name="Erin By Hand")
        add_evidence(
            record,
            source="intercom",
            workspace_id=models.PREVIEW_WORKSPACE_ID,
            conversation_id="1001",
            customer_name="Pat Preview",
        )
        db.session.commit()
    change_status(team, feedback_id, "planned", notify="off", reply="on", reply_message="Hi!")
    wait_for_sender(canvas_app)
    assert replies_sent(conversations) == [("1001", "<p>Hi!</p>")]
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert "Replies to the customers: 1 sent, 2 skipped" in page
    assert "skipped: added by hand: no Intercom conversation" in page
    assert "skipped: recorded in the canvas preview, not in Intercom" in page
    assert "No note was sent (not asked)." in page


def test_a_reply_whose_sender_stopped_mid_call_is_never_sent_twice(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    """A crash while a reply was being sent: the customer may have it, so it fails for a
    person to retry; the reply left pending by the crash goes once, the note beside it too."""
    feedback_id = backed_record(canvas_app)
    change_status(held, feedback_id, "done", reply="on", reply_message="Shipped!")
    with canvas_app.app_context():
        replies = db.session.scalars(
            select(models.Note).where(models.Note.kind == "reply").order_by(models.Note.id)
        )
        abandoned = next(iter(replies))
        abandoned.state, abandoned.claimed_at = "sending", datetime(2000, 1, 1)
        abandoned_conversation = abandoned.conversation_id
        db.session.commit()
    send_notes(canvas_app)
    send_notes(canvas_app)
    assert sorted(internal_notes(conversations)) == list(CONVERSATIONS)
    others = [c for c in CONVERSATIONS if c != abandoned_conversation]
    assert [conversation for conversation, _ in replies_sent(conversations)] == others
    states = {r.conversation_id: (r.state, r.reason) for r in stored_replies(canvas_app)}
    assert states[abandoned_conversation][0] == "failed"
    assert "it may have arrived. Retry sends it again." in states[abandoned_conversation][1]


def test_replies_left_pending_by_a_crash_go_once_after_a_restart(
    tmp_path: Path, canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    change_status(held, backed_record(canvas_app), "done", reply="on", reply_message="Done!")
    assert conversations.requests == []
    restarted = make_app(
        tmp_path,
        DATABASE_URL=canvas_app.config["SQLALCHEMY_DATABASE_URI"],
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_API_URL=canvas_app.config["INTERCOM_API_URL"],
    )
    restarted.test_client().get("/healthz")  # its first request wakes the sender
    wait_for_sender(restarted)
    restarted.test_cli_runner().invoke(args=["send-notes"])
    assert sorted(c for c, _ in replies_sent(conversations)) == list(CONVERSATIONS)
    assert sorted(internal_notes(conversations)) == list(CONVERSATIONS)


def test_two_senders_at_once_send_each_reply_once(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    many = tuple(str(3000 + n) for n in range(30))
    change_status(held, backed_record(canvas_app, many), "done", reply="on", reply_message="Hi")

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: send_notes(canvas_app), range(2)))
    assert sorted(c for c, _ in replies_sent(conversations)) == sorted(many)  # each once
    assert sorted(internal_notes(conversations)) == sorted(many)
    assert sum(outcome["sent"] for outcome in outcomes) == 60
    assert all(outcome["sent"] for outcome in outcomes)  # both took part
    assert {note.state for note in stored_notes(canvas_app)} == {"sent"}


def test_replies_wait_out_a_429_then_each_goes_once(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app)
    change_status(held, feedback_id, "done", notify="off", reply="on", reply_message="Hi")
    conversations.answers = [(429, {"Retry-After": "1"})]
    outcomes = send_notes(canvas_app, wait_max=5)
    assert outcomes["sent"] == 2
    told = [conversation for conversation, _ in replies_sent(conversations)]
    assert sorted(set(told)) == list(CONVERSATIONS)
    assert len(told) == 3  # the refused one, then each once
    assert {reply.state for reply in stored_replies(canvas_app)} == {"sent"}


def test_reopening_assigns_each_conversation_back_to_the_agent_who_recorded_it(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app)
    with canvas_app.app_context():
        for evidence in db.session.get(Feedback, feedback_id).evidence:
            evidence.admin_id = f"agent-{evidence.conversation_id}"
        db.session.commit()
    change_status(team, feedback_id, "done", notify="on", reopen="on", assign="on")
    wait_for_sender(canvas_app)
    parts = sorted(
        (r["path"], r["json"]["message_type"], r["json"].get("assignee_id"))
        for r in conversations.requests
        if r["path"].endswith("/parts")
    )
    assert parts == [
        ("/conversations/1001/parts", "assignment", "agent-1001"),
        ("/conversations/1001/parts", "open", None),
        ("/conversations/1002/parts", "assignment", "agent-1002"),
        ("/conversations/1002/parts", "open", None),
    ]
    assignment = next(
        r["json"] for r in conversations.requests if r["json"]["message_type"] == "assignment"
    )
    assert assignment == {
        "message_type": "assignment",
        "type": "admin",
        "admin_id": ME["id"],
        "assignee_id": assignment["assignee_id"],
    }
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert page.count("sent, reopened and assigned back") == 2


@pytest.mark.parametrize(
    "fields",
    [{"reopen": "on"}, {"assign": "on"}, {"reopen": "on", "assign": "off"}],
    ids=["reopen alone", "assign without reopen", "assign off"],
)
def test_no_conversation_is_assigned_unless_asked_with_reopen(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    fields: dict[str, str],
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    with canvas_app.app_context():
        db.session.get(Feedback, feedback_id).evidence[0].admin_id = "agent-1"
        db.session.commit()
    change_status(team, feedback_id, "done", notify="on", **fields)
    wait_for_sender(canvas_app)
    assert [r["json"]["message_type"] for r in conversations.requests if "parts" in r["path"]] == (
        ["open"] if fields.get("reopen") else []
    )


def test_a_refused_assignment_after_the_note_arrived_says_so(
    canvas_app: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    with canvas_app.app_context():
        db.session.get(Feedback, feedback_id).evidence[0].admin_id = "gone-agent"
        db.session.commit()
    conversations.answers = [(200, {}), (200, {}), (404, {})]
    change_status(team, feedback_id, "done", notify="on", reopen="on", assign="on")
    wait_for_sender(canvas_app)
    (note,) = stored_notes(canvas_app)
    assert note.state == "sent"
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    assert "the note arrived, but assigning it back failed: Intercom answered" in page


@pytest.mark.fresh_database
def test_the_replies_migration_drops_the_replies_and_keeps_the_notes(
    canvas_app: Flask, held: FlaskClient
) -> None:
    """0012's downgrade drops the replies (and the owners' words), keeping every note and
    change; upgraded again, the notes are notes, and the form offers the default words."""
    feedback_id = backed_record(canvas_app)
    change_status(held, feedback_id, "done", reply="on", reply_message="Done!")
    post(held, "/replies", {"reply_planned": "Soon, {first_name}."})
    with canvas_app.app_context():
        flask_migrate.downgrade(revision="0011")
        inspector = sqlalchemy.inspect(db.engine)
        assert "reply_templates" not in inspector.get_table_names()
        assert "kind" not in {column["name"] for column in inspector.get_columns("notes")}
        notes = db.session.execute(sqlalchemy.text("SELECT body FROM notes")).scalars().all()
        db.session.rollback()
        flask_migrate.upgrade()
    assert len(notes) == 2 and all("is now <b>Done</b>" in body for body in notes)
    assert [(note.kind, note.state) for note in stored_notes(canvas_app)] == [
        ("note", "pending")
    ] * 2
    change_status(held, feedback_id, "planned", reply="on", reply_message="Planned!")
    assert len(stored_replies(canvas_app)) == 2
