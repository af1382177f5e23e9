"""Issues that follow the work: records linked to GitHub, Linear and Jira issues, and the
signed webhooks by which GitHub and Linear move those records' status."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select

from conftest import (
    make_app,
    page_text,
    post,
    signed_in_browser,
    stored_feedback,
    wait_for_sender,
)
from hedwig_app.webhooks_out import add_endpoint
from models import STATUSES, Feedback, IssueLink, OutgoingDelivery, StatusChange, db
from test_loop import IntercomConversations, backed_record, stored_notes


@pytest.fixture
def team(canvas_app: Flask) -> FlaskClient:
    """A signed-in browser on Hedwig with the fixture workspace connected."""
    return signed_in_browser(canvas_app)


@pytest.fixture
def conversations(httpserver: HTTPServer) -> IntercomConversations:
    return IntercomConversations(httpserver)


def link(client: FlaskClient, feedback_id: int, url: str) -> Any:
    return post(client, f"/feedback/{feedback_id}/issue", {"url": url})


def links(app: Flask) -> list[tuple[int, str, str, str]]:
    """Each link: its record, tracker, key and address."""
    with app.app_context():
        rows = db.session.scalars(select(IssueLink).order_by(IssueLink.feedback_id, IssueLink.id))
        return [(row.feedback_id, row.tracker, row.issue_key, row.url) for row in rows]


# --- Linking a record to the issue where its work happens -----------------------------------


def test_a_record_follows_its_issues_shown_on_it_and_in_the_list(
    canvas_app: Flask, team: FlaskClient
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",), title="Dark mode")
    response = link(team, feedback_id, " https://github.com/Acme/App/pull/7/files?w=1 ")
    assert response.status_code == 302
    assert f"#{feedback_id} now follows GitHub Acme/App#7." in page_text(
        team.get(f"/feedback/{feedback_id}")
    )
    assert (
        link(team, feedback_id, "https://linear.app/acme/issue/eng-12/dark-mode").status_code == 302
    )
    assert link(team, feedback_id, "https://acme.atlassian.net/browse/WEB-3").status_code == 302
    assert links(canvas_app) == [
        (feedback_id, "github", "github:acme/app#7", "https://github.com/Acme/App/pull/7"),
        (feedback_id, "linear", "linear:ENG-12", "https://linear.app/acme/issue/ENG-12"),
        (
            feedback_id,
            "jira",
            "jira:acme.atlassian.net/WEB-3",
            "https://acme.atlassian.net/browse/WEB-3",
        ),
    ]
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    github = 'href="https://github.com/Acme/App/pull/7" target="_blank" rel="noopener noreferrer">'
    assert f"{github}Acme/App#7</a>" in page
    assert ">ENG-12</a>" in page and ">WEB-3</a>" in page
    listing = page_text(team.get("/"))
    assert (
        'class="issue-link" href="https://linear.app/acme/issue/ENG-12" title="Linear"' in listing
    )
    assert ">Acme/App#7</a>" in listing and ">WEB-3</a>" in listing


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", "Paste the issue's address"),
        ("http://github.com/acme/app/issues/1", "That is not an https address of an issue"),
        ("javascript:alert(1)", "That is not an https address of an issue"),
        ("https://user:secret@github.com/acme/app/issues/1", "not an https address"),
        ("https://github.com/acme/app/pulls", "A GitHub link names an issue or a pull request"),
        ("https://github.com/acme/app/issues/0", "A GitHub link names an issue"),
        ("https://linear.app/acme/project/roadmap", "A Linear link names an issue"),
        ("https://example.com/tickets/12", "Hedwig links GitHub, Linear and Jira issues"),
        ("https://github.com/" + "a" * 500, "at most 500 characters"),
    ],
)
def test_an_address_that_names_no_issue_says_why_and_links_nothing(
    canvas_app: Flask, team: FlaskClient, url: str, error: str
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    response = link(team, feedback_id, url)
    assert response.status_code == 400
    page = html.unescape(page_text(response))
    assert error in page
    if url and len(url) <= 500:
        assert f'name="url" value="{url}"' in page  # kept, to mend
    assert links(canvas_app) == []


def test_several_records_follow_one_issue_and_each_links_it_once(
    canvas_app: Flask, team: FlaskClient
) -> None:
    first = backed_record(canvas_app, ("1001",), title="Dark mode")
    second = backed_record(canvas_app, ("1002",), title="Night theme")
    url = "https://github.com/acme/app/issues/12"
    for feedback_id in (first, second, first):
        assert link(team, feedback_id, url).status_code == 302
    assert f"#{first} links {url} already." in page_text(team.get(f"/feedback/{first}"))
    assert [(row[0], row[2]) for row in links(canvas_app)] == [
        (first, "github:acme/app#12"),
        (second, "github:acme/app#12"),
    ]


def test_a_link_is_removed_and_only_from_its_record(canvas_app: Flask, team: FlaskClient) -> None:
    first = backed_record(canvas_app, ("1001",))
    second = backed_record(canvas_app, ("1002",))
    link(team, first, "https://linear.app/acme/issue/ENG-1")
    with canvas_app.app_context():
        link_id = db.session.scalar(select(IssueLink.id))
    assert post(team, f"/feedback/{second}/issue/{link_id}/delete").status_code == 404
    assert len(links(canvas_app)) == 1
    response = post(team, f"/feedback/{first}/issue/{link_id}/delete", follow_redirects=True)
    assert f"#{first} no longer follows Linear ENG-1." in page_text(response)
    assert links(canvas_app) == []
    assert "ENG-1" not in page_text(team.get("/"))


def test_a_merged_records_links_go_with_it_once(canvas_app: Flask, team: FlaskClient) -> None:
    duplicate = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    for feedback_id in (duplicate, target):
        link(team, feedback_id, "https://github.com/acme/app/issues/12")
    link(team, duplicate, "https://linear.app/acme/issue/ENG-9")
    assert post(team, f"/feedback/{duplicate}/merge", {"into": str(target)}).status_code == 302
    assert [(row[0], row[2]) for row in links(canvas_app)] == [
        (target, "github:acme/app#12"),
        (target, "linear:ENG-9"),
    ]


def test_linking_a_record_gone_or_merged_changes_nothing_and_keeps_the_address(
    canvas_app: Flask, team: FlaskClient
) -> None:
    duplicate = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    post(team, f"/feedback/{duplicate}/merge", {"into": str(target)})
    url = "https://github.com/acme/app/issues/12"
    response = link(team, duplicate, url)
    assert response.status_code == 409
    assert f"#{duplicate} was merged into #{target}" in page_text(response)
    assert url in page_text(response)
    assert link(team, 999, url).status_code == 404
    assert links(canvas_app) == []


def test_members_link_issues_too(canvas_app: Flask, team: FlaskClient) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    member = signed_in_browser(canvas_app, "bea@example.com")
    assert link(member, feedback_id, "https://github.com/acme/app/issues/3").status_code == 302
    with canvas_app.app_context():
        assert db.session.get(Feedback, feedback_id).issue_links[0].created_by_id is not None


# --- Issues that move the status: GitHub's and Linear's signed webhooks ---------------------

GITHUB_SECRET = "github-webhook-secret-never-shown-0123"
LINEAR_SECRET = "linear-webhook-secret-never-shown-4567"
ISSUE = "https://github.com/Acme/App/issues/12"


@pytest.fixture
def hooked(canvas_app: Flask) -> Flask:
    """Hedwig with the fixture workspace connected and both webhooks' secrets set."""
    canvas_app.config["GITHUB_WEBHOOK_SECRET"] = GITHUB_SECRET
    canvas_app.config["LINEAR_WEBHOOK_SECRET"] = LINEAR_SECRET
    return canvas_app


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_issue(action: str = "closed", state_reason: str | None = "completed") -> dict[str, Any]:
    """GitHub's issues event, in its documented shape (trimmed of what Hedwig ignores)."""
    closed = action == "closed"
    return {
        "action": action,
        "issue": {
            "number": 12,
            "title": "Dark mode",
            "html_url": ISSUE,
            "state": "closed" if closed else "open",
            "state_reason": state_reason if closed else None,
        },
        "repository": {"id": 1296269, "name": "App", "full_name": "Acme/App"},
        "sender": {"login": "octocat", "type": "User"},
    }


def github_pull(merged: bool, action: str = "closed") -> dict[str, Any]:
    """GitHub's pull_request event, trimmed."""
    return {
        "action": action,
        "number": 12,
        "pull_request": {"number": 12, "state": "closed", "merged": merged},
        "repository": {"id": 1296269, "name": "App", "full_name": "Acme/App"},
    }


def deliver_github(
    app: Flask,
    payload: Any,
    event: str = "issues",
    delivery: str | None = None,
    signature: str | None = None,
) -> Any:
    """A delivery as GitHub sends it: signed with the secret, from no browser."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "User-Agent": "GitHub-Hookshot/044aadd",
    }
    if signature != "":
        headers["X-Hub-Signature-256"] = signature or "sha256=" + hmac_hex(GITHUB_SECRET, body)
    return app.test_client().post("/webhooks/github", data=body, headers=headers)


def linear_issue(
    state_type: str = "completed",
    state_name: str = "Done",
    signed_at: float | None = None,
    state_changed: bool = True,
    action: str = "update",
) -> dict[str, Any]:
    """Linear's Issue data-change webhook, in its documented shape (trimmed)."""
    return {
        "action": action,
        "type": "Issue",
        "createdAt": "2026-12-01T09:00:00.000Z",
        "organizationId": "0c9e5c6a-1111-4c2e-9a35-3c7b2d8f0a11",
        "data": {
            "id": "5e8d7c6b-2222-4a1b-8c3d-9e0f1a2b3c4d",
            "identifier": "ENG-12",
            "title": "Dark mode",
            "url": "https://linear.app/acme/issue/ENG-12/dark-mode",
            "state": {"id": "state-2", "name": state_name, "type": state_type},
        },
        "updatedFrom": {"stateId": "state-1", "updatedAt": "2026-11-30T09:00:00.000Z"}
        if state_changed
        else {"title": "Dark theme"},
        "url": "https://linear.app/acme/issue/ENG-12/dark-mode",
        "webhookTimestamp": int((time.time() if signed_at is None else signed_at) * 1000),
        "webhookId": "8a1b2c3d-3333-4e5f-a6b7-c8d9e0f1a2b3",
    }


def deliver_linear(
    app: Flask, payload: Any, delivery: str | None = None, signature: str | None = None
) -> Any:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Linear-Event": "Issue",
        "Linear-Delivery": delivery or str(uuid.uuid4()),
    }
    if signature != "":
        headers["Linear-Signature"] = signature or hmac_hex(LINEAR_SECRET, body)
    return app.test_client().post("/webhooks/linear", data=body, headers=headers)


def statuses(app: Flask) -> list[str]:
    return [record.status for record in stored_feedback(app)]


def linked_records(app: Flask, team: FlaskClient, url: str = ISSUE) -> tuple[int, int, int]:
    """Two records that follow the issue (two conversations, then one), and one that does not."""
    first = backed_record(app, ("1001", "1002"), title="Dark mode")
    second = backed_record(app, ("1003",), title="Night theme")
    other = backed_record(app, ("1004",), title="CSV export")
    for feedback_id in (first, second):
        assert link(team, feedback_id, url).status_code == 302
    assert link(team, other, "https://github.com/Acme/App/issues/99").status_code == 302
    return first, second, other


def test_a_github_close_moves_its_records_to_done_and_their_conversations_get_the_note(
    hooked: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    first, second, _ = linked_records(hooked, team)
    response = deliver_github(hooked, github_issue("closed", "completed"))
    assert (response.status_code, response.json) == (200, {"changed": [first, second]})
    assert statuses(hooked) == ["done", "done", "open"]
    wait_for_sender(hooked)
    assert sorted(conversations.notes()) == ["1001", "1002", "1003"]
    body = conversations.requests[0]["json"]["body"]
    assert "is now <b>Done</b>." in body
    assert "<p>GitHub: Acme/App#12 was closed as completed.</p>" in body
    assert {r["json"]["message_type"] for r in conversations.requests} == {"note"}  # no reply
    page = page_text(team.get(f"/feedback/{first}"))
    assert "Open → Done" in page
    assert f'by <a href="{ISSUE}" target="_blank" rel="noopener noreferrer">its issue</a>' in page
    assert "GitHub: Acme/App#12 was closed as completed." in page
    assert "Notes: 2 sent" in page


def test_a_github_close_tells_the_webhook_endpoints_of_each_status_change(
    hooked: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    first, second, _ = linked_records(hooked, team)
    hooked.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    with hooked.app_context():
        add_endpoint("http://127.0.0.1:9/hook", ["status.changed"])
        db.session.commit()
    assert deliver_github(hooked, github_issue("closed", "completed")).status_code == 200
    with hooked.app_context():
        told = db.session.scalars(select(OutgoingDelivery).order_by(OutgoingDelivery.id)).all()
        payloads = [json.loads(delivery.payload) for delivery in told]
    assert [delivery.event for delivery in told] == ["status.changed"] * 2
    assert [(p["record"]["id"], p["from"], p["to"]) for p in payloads] == [
        (first, "open", "done"),
        (second, "open", "done"),
    ]


@pytest.mark.parametrize(
    ("event", "payload", "status"),
    [
        ("issues", github_issue("closed", "completed"), "done"),
        ("issues", github_issue("closed", None), "done"),  # closed before GitHub kept a reason
        ("issues", github_issue("closed", "not_planned"), "declined"),
        ("issues", github_issue("closed", "duplicate"), "open"),
        ("issues", github_issue("reopened"), "in_progress"),
        ("issues", github_issue("edited"), "open"),
        ("pull_request", github_pull(merged=True), "done"),
        ("pull_request", github_pull(merged=False), "open"),
        ("pull_request", github_pull(merged=False, action="reopened"), "in_progress"),
        ("issue_comment", github_issue("created"), "open"),
    ],
    ids=[
        "closed completed",
        "closed, no reason",
        "closed not planned",
        "closed duplicate",
        "reopened",
        "edited",
        "pull request merged",
        "pull request closed unmerged",
        "pull request reopened",
        "a comment",
    ],
)
def test_what_becomes_of_a_github_issue_becomes_the_records_status(
    hooked: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    event: str,
    payload: dict[str, Any],
    status: str,
) -> None:
    feedback_id = backed_record(hooked, ("1001",))
    link(team, feedback_id, ISSUE)
    response = deliver_github(hooked, payload, event)
    assert response.status_code == 200
    assert statuses(hooked) == [status]
    wait_for_sender(hooked)
    told = status in ("done", "declined")  # the statuses that note by default
    assert conversations.notes() == (["1001"] if told else [])


def test_a_github_ping_is_answered_and_changes_nothing(hooked: Flask, team: FlaskClient) -> None:
    feedback_id = backed_record(hooked, ("1001",))
    link(team, feedback_id, ISSUE)
    response = deliver_github(hooked, {"zen": "Design for failure.", "hook_id": 1}, "ping")
    assert (response.status_code, response.json) == (200, {"ok": "pong"})
    assert statuses(hooked) == ["open"]


@pytest.mark.parametrize(
    "signature",
    [
        "",  # unsigned
        "sha256=" + "0" * 64,
        "sha1=" + "0" * 40,
        "signed with another secret",
        "the signature of another body",
    ],
)
def test_an_unsigned_or_badly_signed_github_delivery_is_refused_and_changes_nothing(
    hooked: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    caplog: pytest.LogCaptureFixture,
    signature: str,
) -> None:
    feedback_id = backed_record(hooked, ("1001",))
    link(team, feedback_id, ISSUE)
    payload = github_issue()
    if signature == "signed with another secret":
        signature = "sha256=" + hmac_hex("another-secret", json.dumps(payload).encode())
    elif signature == "the signature of another body":
        signature = "sha256=" + hmac_hex(
            GITHUB_SECRET, json.dumps(github_issue("reopened")).encode()
        )
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    response = deliver_github(hooked, payload, delivery=delivery, signature=signature)
    assert response.status_code == 401
    assert response.json == {"error": "The delivery's X-Hub-Signature-256 does not match its body."}
    assert statuses(hooked) == ["open"] and stored_notes(hooked) == []
    assert GITHUB_SECRET not in caplog.text
    # The same delivery, signed, is taken: a refused one was not remembered.
    assert deliver_github(hooked, payload, delivery=delivery).json == {"changed": [feedback_id]}


@pytest.mark.parametrize("endpoint", ["github", "linear"])
def test_a_webhook_whose_secret_is_unset_is_not_there(
    canvas_app: Flask, team: FlaskClient, endpoint: str
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    link(team, feedback_id, ISSUE)
    link(team, feedback_id, "https://linear.app/acme/issue/ENG-12")
    if endpoint == "github":
        response = deliver_github(canvas_app, github_issue())
        setting = "HEDWIG_GITHUB_WEBHOOK_SECRET"
    else:
        response = deliver_linear(canvas_app, linear_issue())
        setting = "HEDWIG_LINEAR_WEBHOOK_SECRET"
    assert response.status_code == 404
    assert response.json == {"error": f"This webhook is off: {setting} is not set."}
    assert statuses(canvas_app) == ["open"]


def test_a_github_delivery_seen_before_changes_nothing(
    hooked: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    feedback_id = backed_record(hooked, ("1001",))
    link(team, feedback_id, ISSUE)
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert deliver_github(hooked, github_issue(), delivery=delivery).json == {
        "changed": [feedback_id]
    }
    post(team, f"/feedback/{feedback_id}/status", {"status": "open", "notify": "off"})
    replayed = deliver_github(hooked, github_issue(), delivery=delivery)
    assert (replayed.status_code, replayed.json) == (
        200,
        {"ignored": "this delivery was received before"},
    )
    assert statuses(hooked) == ["open"]
    wait_for_sender(hooked)
    assert conversations.notes() == ["1001"]
    with hooked.app_context():
        changes = db.session.scalars(select(StatusChange).order_by(StatusChange.id)).all()
        assert [(c.from_status, c.to_status) for c in changes] == [
            ("open", "done"),
            ("done", "open"),
        ]


def test_the_same_delivery_twice_at_once_changes_the_records_once(
    hooked: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    hooked.config["SEND_NOTES_AT_ONCE"] = False
    first, second, _ = linked_records(hooked, team)
    delivery = "0b989ba4-242f-11e5-81e1-c7b6966d2516"
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda _: deliver_github(hooked, github_issue(), delivery=delivery).json, [1, 2]
            )
        )
    assert sorted(answers, key=str) == [
        {"changed": [first, second]},
        {"ignored": "this delivery was received before"},
    ]
    with hooked.app_context():
        assert db.session.scalar(select(func.count(StatusChange.id))) == 2
    assert len(stored_notes(hooked)) == 3


def test_an_issue_no_record_links_is_ignored(hooked: Flask, team: FlaskClient) -> None:
    feedback_id = backed_record(hooked, ("1001",))
    link(team, feedback_id, "https://github.com/Acme/App/issues/13")
    response = deliver_github(hooked, github_issue())  # #12
    assert (response.status_code, response.json) == (200, {"changed": []})
    response = deliver_linear(hooked, linear_issue())
    assert (response.status_code, response.json) == (200, {"changed": []})
    assert statuses(hooked) == ["open"] and stored_notes(hooked) == []


@pytest.mark.parametrize("endpoint", ["github", "linear"])
def test_a_delivery_too_large_or_not_json_is_refused(hooked: Flask, endpoint: str) -> None:
    deliver = deliver_github if endpoint == "github" else deliver_linear
    huge = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'
    assert deliver(hooked, huge).status_code == 413
    response = deliver(hooked, b"{not json")
    assert (response.status_code, response.json) == (
        400,
        {"error": "The delivery's body is not a JSON object."},
    )
    assert deliver(hooked, b"[1, 2]").status_code == 400


def test_a_status_a_linked_issue_sets_replies_only_when_the_owner_asked(
    hooked: Flask, team: FlaskClient, conversations: IntercomConversations
) -> None:
    linked_records(hooked, team)
    words = {f"reply_{status}": "" for status in STATUSES}
    words |= {"reply_done": "Hi {first_name}, {title} is live!", "auto_done": "on"}
    assert post(team, "/replies", words).status_code == 302
    deliver_github(hooked, github_issue())
    wait_for_sender(hooked)
    comments = sorted(
        (r["path"], r["json"]["body"])
        for r in conversations.requests
        if r["json"]["message_type"] == "comment"
    )
    assert comments == [
        ("/conversations/1001/reply", "<p>Hi Customer, Dark mode is live!</p>"),
        ("/conversations/1002/reply", "<p>Hi Customer, Dark mode is live!</p>"),
        ("/conversations/1003/reply", "<p>Hi Customer, Night theme is live!</p>"),
    ]
    deliver_github(hooked, github_issue("reopened"))  # in progress: no reply asked for it
    wait_for_sender(hooked)
    assert len([r for r in conversations.requests if r["json"]["message_type"] == "comment"]) == 3


# --- Linear ---


def linked_to_linear(app: Flask, team: FlaskClient) -> int:
    feedback_id = backed_record(app, ("1001",))
    assert (
        link(team, feedback_id, "https://linear.app/acme/issue/ENG-12/dark-mode").status_code == 302
    )
    return feedback_id


@pytest.mark.parametrize(
    ("state_type", "name", "status"),
    [
        ("completed", "Done", "done"),
        ("canceled", "Canceled", "declined"),
        ("started", "In Progress", "in_progress"),
        ("unstarted", "Todo", "open"),
        ("triage", "Triage", "open"),
    ],
)
def test_a_linear_issue_whose_state_becomes_completed_canceled_or_started_moves_its_records(
    hooked: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    state_type: str,
    name: str,
    status: str,
) -> None:
    feedback_id = linked_to_linear(hooked, team)
    response = deliver_linear(hooked, linear_issue(state_type, name))
    assert response.status_code == 200
    assert statuses(hooked) == [status]
    wait_for_sender(hooked)
    if status in ("done", "declined"):
        assert conversations.notes() == ["1001"]
        assert (
            f"<p>Linear: ENG-12 moved to {name}.</p>" in conversations.requests[0]["json"]["body"]
        )
        page = page_text(team.get(f"/feedback/{feedback_id}"))
        assert 'by <a href="https://linear.app/acme/issue/ENG-12"' in page


def test_a_linear_update_that_leaves_the_state_as_it_was_changes_nothing(
    hooked: Flask, team: FlaskClient
) -> None:
    linked_to_linear(hooked, team)
    assert deliver_linear(hooked, linear_issue(state_changed=False)).json == {
        "ignored": "no status change asked for"
    }
    assert deliver_linear(hooked, linear_issue(action="create")).status_code == 200
    assert statuses(hooked) == ["open"]


@pytest.mark.parametrize(
    "signed_at", [-61, 61, -3600], ids=["a minute and more ago", "ahead", "an hour ago"]
)
def test_a_linear_delivery_signed_outside_the_minute_is_refused(
    hooked: Flask, team: FlaskClient, signed_at: int
) -> None:
    linked_to_linear(hooked, team)
    response = deliver_linear(hooked, linear_issue(signed_at=time.time() + signed_at))
    assert response.status_code == 401
    assert "webhookTimestamp is not within 60 seconds" in response.json["error"]
    payload = linear_issue()
    del payload["webhookTimestamp"]
    assert deliver_linear(hooked, payload).status_code == 401
    assert statuses(hooked) == ["open"]


@pytest.mark.parametrize("signature", ["", "0" * 64, "sha256=0"])
def test_an_unsigned_or_badly_signed_linear_delivery_is_refused(
    hooked: Flask, team: FlaskClient, signature: str
) -> None:
    linked_to_linear(hooked, team)
    response = deliver_linear(hooked, linear_issue(), signature=signature)
    assert response.status_code == 401
    assert response.json == {"error": "The delivery's Linear-Signature does not match its body."}
    assert statuses(hooked) == ["open"]


def test_a_linear_delivery_seen_before_changes_nothing(hooked: Flask, team: FlaskClient) -> None:
    feedback_id = linked_to_linear(hooked, team)
    payload = linear_issue()
    delivery = "a3f1c2d4-4444-4b5c-8d6e-7f8091a2b3c4"
    assert deliver_linear(hooked, payload, delivery).json == {"changed": [feedback_id]}
    post(team, f"/feedback/{feedback_id}/status", {"status": "open", "notify": "off"})
    assert deliver_linear(hooked, payload, delivery).json == {
        "ignored": "this delivery was received before"
    }
    # Without its header, the same signed bytes are the same delivery.
    assert deliver_linear(hooked, json.dumps(payload).encode(), "not a delivery id!").json == {
        "changed": [feedback_id]
    }
    post(team, f"/feedback/{feedback_id}/status", {"status": "open", "notify": "off"})
    assert deliver_linear(hooked, json.dumps(payload).encode(), "still not one!").json == {
        "ignored": "this delivery was received before"
    }
    assert statuses(hooked) == ["open"]


def test_the_webhook_secrets_are_read_from_the_environment(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEDWIG_GITHUB_WEBHOOK_SECRET", "12345678")  # digits: text all the same
    app = make_app(tmp_path, DATABASE_URL=database_url)
    assert app.config["GITHUB_WEBHOOK_SECRET"] == "12345678"
    assert app.config["LINEAR_WEBHOOK_SECRET"] == ""


@pytest.mark.fresh_database
def test_the_issue_migrations_drop_the_links_and_deliveries_and_keep_the_history(
    hooked: Flask, team: FlaskClient
) -> None:
    """0014's and 0013's downgrades drop the deliveries, which issue made a change, and the
    links; every change and its notes stay. Upgraded again, an issue is linked anew."""
    hooked.config["SEND_NOTES_AT_ONCE"] = False
    feedback_id = backed_record(hooked, ("1001",))
    link(team, feedback_id, ISSUE)
    deliver_github(hooked, github_issue())
    with hooked.app_context():
        flask_migrate.downgrade(revision="0012")
        inspector = sqlalchemy.inspect(db.engine)
        assert {"issue_links", "webhook_deliveries"}.isdisjoint(inspector.get_table_names())
        assert "issue_url" not in {c["name"] for c in inspector.get_columns("status_changes")}
        counts = [
            db.session.scalar(select(func.count()).select_from(sqlalchemy.table(name)))
            for name in ("status_changes", "notes")
        ]
        db.session.rollback()
        flask_migrate.upgrade()
    assert counts == [1, 1]
    assert statuses(hooked) == ["done"] and len(stored_notes(hooked)) == 1
    assert links(hooked) == []
    assert link(team, feedback_id, ISSUE).status_code == 302
    assert deliver_github(hooked, github_issue("reopened")).json == {"changed": [feedback_id]}
