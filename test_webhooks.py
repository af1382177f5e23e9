"""Outgoing webhooks: endpoints owners add, the events each change writes, and their delivery
to a receiver on loopback, signed, retried, never redirected, once each."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from conftest import (
    Inbox,
    add_feedback,
    create_user,
    make_app,
    post,
    sign_in,
    stored_feedback,
    wait_for_sender,
)
from hedwig_app import webhooks_out
from hedwig_app.webhooks_out import add_endpoint, announce, send_webhooks
from models import Evidence, OutgoingDelivery, WebhookEndpoint, db, utcnow
from test_inbox import OTHER_CUSTOMER


class Receiver:
    """A webhook receiver on loopback: it keeps each request and answers with the next of
    ``answers`` (then 200)."""

    def __init__(self, httpserver: HTTPServer, answers: list[Response] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers = list(answers or [])
        self.lock = threading.Lock()
        self.url = httpserver.url_for("/hook")
        httpserver.expect_request("/hook", method="POST").respond_with_handler(self.answer)

    def answer(self, request: Request) -> Response:
        with self.lock:
            self.requests.append({"headers": dict(request.headers), "body": request.get_data()})
            return self.answers.pop(0) if self.answers else Response("ok", 200)

    def ids(self) -> list[str]:
        return [r["headers"]["Hedwig-Delivery"] for r in self.requests]

    def events(self) -> list[str]:
        return [r["headers"]["Hedwig-Event"] for r in self.requests]


@pytest.fixture
def receiver(httpserver: HTTPServer) -> Receiver:
    return Receiver(httpserver)


@pytest.fixture
def hooks_app(tmp_path: Any, database_url: str) -> Flask:
    """Hedwig allowed to send webhooks to loopback, sending only when a test says so."""
    return make_app(
        tmp_path,
        DATABASE_URL=database_url,
        WEBHOOKS_ALLOW_PRIVATE=True,
        SEND_NOTES_AT_ONCE=False,
        INTERCOM_TIMEOUT=1,
    )


@pytest.fixture
def owner(hooks_app: Flask) -> FlaskClient:
    create_user(hooks_app)
    client = hooks_app.test_client()
    sign_in(client)
    return client


def add_webhook(app: Flask, url: str, *events: str) -> str:
    """The endpoint added with the CLI, and the secret it printed on its last line."""
    args = ["add-webhook", url] + (["--events", ",".join(events)] if events else [])
    result = app.test_cli_runner().invoke(args=args)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def send(app: Flask, *options: str) -> str:
    result = app.test_cli_runner().invoke(args=["send-webhooks", *options])
    assert result.exit_code == 0, result.output
    return result.output


def deliveries(app: Flask) -> list[OutgoingDelivery]:
    with app.app_context():
        found = db.session.scalars(select(OutgoingDelivery).order_by(OutgoingDelivery.id)).all()
        db.session.expunge_all()
        return list(found)


def readme_verifier() -> Callable[..., bool]:
    """The function the README gives receivers to copy, run as they would run it."""
    readme = (Path(__file__).parent / "README.md").read_text()
    (code,) = [
        block.split("\n", 1)[1]
        for block in readme.split("```python")[1:]
        if "def verify_hedwig_signature" in block.split("```")[0]
    ]
    namespace: dict[str, Any] = {}
    exec(code.split("```")[0], namespace)  # noqa: S102 (the README's own code)
    return namespace["verify_hedwig_signature"]


verify_signature = readme_verifier()


def test_a_new_record_is_told_to_the_endpoint_signed_and_verifiable(
    hooks_app: Flask, owner: FlaskClient, receiver: Receiver
) -> None:
    secret = add_webhook(hooks_app, receiver.url)
    assert secret.startswith("whsec_")
    response = post(owner, "/feedback/new", {"title": "Dark mode", "description": "Please"})
    assert response.status_code == 302
    assert send(hooks_app) == "1 sent, 0 failed, 0 waiting.\n"
    (request,) = receiver.requests
    headers, body = request["headers"], request["body"]
    assert headers["Hedwig-Event"] == "record.created"
    assert headers["Content-Type"] == "application/json"
    assert verify_signature(headers["Hedwig-Signature"], body, secret)
    assert not verify_signature(headers["Hedwig-Signature"], body + b" ", secret)
    assert not verify_signature(headers["Hedwig-Signature"], body, "whsec_another")
    assert not verify_signature(headers["Hedwig-Signature"], body, secret, tolerance=-1)  # stale
    assert not verify_signature("v1=abc", body, secret)
    sent = json.loads(body)
    assert sent["id"] == headers["Hedwig-Delivery"]
    assert sent["event"] == "record.created"
    assert sent["created_at"].endswith("Z")
    record = sent["data"]["record"]
    assert (record["title"], record["details"], record["status"]) == ("Dark mode", "Please", "open")
    assert record["url"] == f"https://hedwig.example/feedback/{record['id']}"
    (delivery,) = deliveries(hooks_app)
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("sent", 1, 200)


def test_a_failed_delivery_is_tried_again_with_the_same_id_then_fails(
    hooks_app: Flask, receiver: Receiver
) -> None:
    add_webhook(hooks_app, receiver.url)
    receiver.answers = [Response("down", 500)]
    add_feedback(hooks_app)  # no event: written outside a view
    with hooks_app.app_context():
        announce("record.created", {"record": {"id": 1}})
        db.session.commit()
    assert send(hooks_app) == "0 sent, 0 failed, 1 waiting.\n"
    (delivery,) = deliveries(hooks_app)
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("pending", 1, 500)
    assert delivery.next_attempt_at > utcnow()  # about 30 s on
    assert send(hooks_app) == "0 sent, 0 failed, 1 waiting.\n"  # not due yet
    assert len(receiver.requests) == 1
    assert send(hooks_app, "--retry-now") == "1 sent, 0 failed, 0 waiting.\n"
    first, second = receiver.ids()
    assert first == second
    (delivery,) = deliveries(hooks_app)
    assert (delivery.state, delivery.attempts, delivery.response_code) == ("sent", 2, 200)
    # A receiver that never recovers: after the 7th try the delivery has failed.
    with hooks_app.app_context():
        announce("record.created", {"record": {"id": 2}})
        db.session.commit()
    receiver.answers = [Response("down", 503)] * 7
    for _ in range(6):
        send(hooks_app, "--retry-now")
    assert send(hooks_app, "--retry-now") == "0 sent, 1 failed, 0 waiting.\n"
    assert [d.state for d in deliveries(hooks_app)] == ["sent", "failed"]
    assert len(set(receiver.ids()[2:])) == 1 and len(receiver.requests) == 9


def test_a_redirect_is_not_followed(
    hooks_app: Flask, receiver: Receiver, httpserver: HTTPServer
) -> None:
    elsewhere: list[Request] = []
    httpserver.expect_request("/elsewhere").respond_with_handler(
        lambda request: elsewhere.append(request) or Response("ok")
    )
    add_webhook(hooks_app, receiver.url)
    receiver.answers = [Response("", 307, {"Location": httpserver.url_for("/elsewhere")})]
    with hooks_app.app_context():
        announce("record.deleted", {"record": {"id": 1}})
        db.session.commit()
    assert send(hooks_app) == "0 sent, 0 failed, 1 waiting.\n"
    assert elsewhere == []
    (delivery,) = deliveries(hooks_app)
    assert (delivery.state, delivery.response_code) == ("pending", 307)


def test_private_addresses_are_refused_when_added_and_when_sent(
    tmp_path: Any, database_url: str, receiver: Receiver
) -> None:
    app = make_app(tmp_path, DATABASE_URL=database_url, SEND_NOTES_AT_ONCE=False)
    for url in (
        receiver.url,
        "http://10.0.0.7/hook",
        "http://169.254.169.254/",
        "http://[::1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://localhost/",
    ):
        result = app.test_cli_runner().invoke(args=["add-webhook", url])
        assert result.exit_code == 1
        assert "loopback, private or link-local" in result.output
    with app.app_context():
        assert db.session.scalars(select(WebhookEndpoint)).all() == []
        # Added while it was allowed (or its name resolved elsewhere then): refused at send.
        app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
        add_endpoint(receiver.url, ["record.created"])
        announce("record.created", {"record": {"id": 1}})
        db.session.commit()
        app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    assert send(app) == "0 sent, 0 failed, 1 waiting.\n"
    assert receiver.requests == []
    (delivery,) = deliveries(app)
    assert "loopback, private or link-local" in delivery.reason


def test_two_senders_at_once_send_each_delivery_once(hooks_app: Flask, receiver: Receiver) -> None:
    add_webhook(hooks_app, receiver.url)
    with hooks_app.app_context():
        for n in range(30):
            announce("record.updated", {"record": {"id": n}})
        db.session.commit()

    def sender() -> int:
        with hooks_app.app_context():
            return send_webhooks()["sent"]

    with ThreadPoolExecutor(2) as pool:
        sent = [future.result() for future in [pool.submit(sender), pool.submit(sender)]]
    assert sum(sent) == 30
    assert len(receiver.ids()) == len(set(receiver.ids())) == 30
    assert {d.state for d in deliveries(hooks_app)} == {"sent"}


def test_a_delivery_a_crashed_sender_claimed_is_sent_once(
    hooks_app: Flask, receiver: Receiver
) -> None:
    add_webhook(hooks_app, receiver.url)
    with hooks_app.app_context():
        announce("status.changed", {"record": {"id": 1}})
        delivery = db.session.scalars(select(OutgoingDelivery)).one()
        delivery.state, delivery.claimed_at = "sending", utcnow() - timedelta(hours=1)
        announce("status.changed", {"record": {"id": 2}})  # claimed just now: still sending
        db.session.flush()
        latest = db.session.scalars(select(OutgoingDelivery).order_by(OutgoingDelivery.id)).all()
        latest[-1].state, latest[-1].claimed_at = "sending", utcnow()
        db.session.commit()
    assert send(hooks_app) == "1 sent, 0 failed, 0 waiting.\n"
    assert send(hooks_app) == "0 sent, 0 failed, 0 waiting.\n"
    assert len(receiver.requests) == 1
    assert [d.state for d in deliveries(hooks_app)] == ["sent", "sending"]


def test_each_change_in_the_log_is_told_to_the_endpoints_that_asked(
    hooks_app: Flask, owner: FlaskClient
) -> None:
    add_webhook(hooks_app, "http://127.0.0.1:9/all")
    add_webhook(hooks_app, "http://127.0.0.1:9/status", "status.changed")
    with hooks_app.app_context():
        disabled, _ = add_endpoint("http://127.0.0.1:9/off", ["record.created"], enabled=False)
        disabled_id = disabled.id
        db.session.commit()
    first = {"title": "Dark mode", "customer_name": "Ann", "quote": "Night!"}
    assert post(owner, "/feedback/new", first).status_code == 302
    assert post(owner, "/feedback/new", {"title": "Night theme"}).status_code == 302
    created = deliveries(hooks_app)
    record_id = json.loads(created[0].payload)["record"]["id"]
    other_id = json.loads(created[1].payload)["record"]["id"]
    edit = {"title": "Dark mode!", "description": ""}
    assert post(owner, f"/feedback/{record_id}/edit", edit).status_code == 302
    assert post(owner, f"/feedback/{record_id}/edit", edit).status_code == 302  # no change
    status = {"status": "planned", "message": "Soon"}
    assert post(owner, f"/feedback/{record_id}/status", status).status_code == 302
    with hooks_app.app_context():
        evidence_id = db.session.scalars(select(Evidence.id)).one()
    url = f"/feedback/{record_id}/evidence/{evidence_id}/delete"
    assert post(owner, url).status_code == 302
    merge = f"/feedback/{other_id}/merge?into={record_id}"
    assert post(owner, merge).status_code == 302
    assert post(owner, f"/feedback/{record_id}/delete").status_code == 302
    told = [(d.endpoint_id, d.event) for d in deliveries(hooks_app)]
    assert told == [
        (1, "record.created"),
        (1, "record.created"),
        (1, "record.updated"),
        (1, "status.changed"),
        (2, "status.changed"),
        (1, "evidence.removed"),
        (1, "record.merged"),
        (1, "record.deleted"),
    ]
    assert disabled_id not in {endpoint for endpoint, _ in told}
    payloads = [json.loads(d.payload) for d in deliveries(hooks_app)]
    assert payloads[3]["from"] == "open" and payloads[3]["to"] == "planned"
    assert payloads[3]["message"] == "Soon"
    assert payloads[5]["evidence"]["customer_name"] == "Ann"
    assert payloads[6]["merged_id"] == other_id and payloads[6]["record"]["id"] == record_id
    assert len({d.delivery_id for d in deliveries(hooks_app)}) == 8


def test_the_inbox_tells_a_new_record_once_and_evidence_added(
    canvas_app: Flask, inbox: Inbox
) -> None:
    assert inbox.save("Before any endpoint")  # writes no delivery
    canvas_app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    with canvas_app.app_context():
        add_endpoint("http://127.0.0.1:9/hook", ["record.created", "evidence.added"])
        db.session.commit()
    form = inbox.form(OTHER_CUSTOMER)
    inbox.click("save", form, {"title": "CSV export"}, payload=OTHER_CUSTOMER)
    inbox.click("save", form, {"title": "CSV export"}, payload=OTHER_CUSTOMER)  # once only
    record_id = max(record.id for record in stored_feedback(canvas_app))
    inbox.add_to(record_id, "It crashes in Chrome.")
    created, added = deliveries(canvas_app)
    assert (created.event, added.event) == ("record.created", "evidence.added")
    assert json.loads(created.payload)["record"]["title"] == "CSV export"
    evidence = json.loads(added.payload)
    assert (evidence["record"]["id"], evidence["record"]["customers"]) == (record_id, 2)
    assert evidence["evidence"]["quote"] == "It crashes in Chrome."


# --- The owners' Webhooks page ---------------------------------------------------------------


def test_an_owner_adds_a_webhook_on_the_page_and_sees_its_secret_once(
    hooks_app: Flask, owner: FlaskClient, receiver: Receiver
) -> None:
    assert 'href="/webhooks">Webhooks</a>' in owner.get("/").get_data(as_text=True)
    form = {"url": receiver.url, "events": ["record.created", "status.changed"], "enabled": "on"}
    response = post(owner, "/webhooks", form)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    secret = page.split('<section class="secret"')[1].split("<code>")[1].split("</code>")[0]
    assert secret.startswith("whsec_")
    assert "record.created, status.changed" in page
    assert secret not in owner.get("/webhooks").get_data(as_text=True)
    with hooks_app.app_context():
        (endpoint,) = db.session.scalars(select(WebhookEndpoint)).all()
        assert secret not in endpoint.encrypted_secret and endpoint.secret == secret
    assert post(owner, "/feedback/new", {"title": "Dark mode"}).status_code == 302
    send(hooks_app)
    (request,) = receiver.requests
    assert verify_signature(request["headers"]["Hedwig-Signature"], request["body"], secret)
    page = owner.get("/webhooks").get_data(as_text=True)
    assert "record.created" in page and request["headers"]["Hedwig-Delivery"] in page
    assert "<td>200</td>" in page


def test_a_webhook_the_page_refuses_is_said_and_nothing_is_stored(
    tmp_path: Any, database_url: str
) -> None:
    app = make_app(tmp_path, DATABASE_URL=database_url, SEND_NOTES_AT_ONCE=False)
    create_user(app)
    client = app.test_client()
    sign_in(client)
    for form, said in [
        ({"url": "http://127.0.0.1:8080/hook", "events": "record.created"}, "loopback, private"),
        ({"url": "ftp://hooks.example/", "events": "record.created"}, "http or https address"),
        ({"url": "http://10.1.2.3/", "events": "record.nope"}, "Unknown events: record.nope"),
        ({"url": "http://10.1.2.3/"}, "Choose at least one event."),
    ]:
        response = post(client, "/webhooks", form)
        assert response.status_code == 400
        assert said in response.get_data(as_text=True)
    assert client.post("/webhooks", data={"url": "http://1.1.1.1/"}).status_code == 400  # no CSRF
    with app.app_context():
        assert db.session.scalars(select(WebhookEndpoint)).all() == []


def test_members_cannot_see_or_change_webhooks(hooks_app: Flask, owner: FlaskClient) -> None:
    add_webhook(hooks_app, "http://127.0.0.1:9/hook")
    member = hooks_app.test_client()
    create_user(hooks_app, "bea@example.com")
    sign_in(member, "bea@example.com")
    assert "Webhooks</a>" not in member.get("/").get_data(as_text=True)
    assert member.get("/webhooks").status_code == 403
    assert post(member, "/webhooks", {"url": "http://127.0.0.1:9/x"}).status_code == 403
    assert post(member, "/webhooks/1/delete").status_code == 403
    with hooks_app.app_context():
        assert len(db.session.scalars(select(WebhookEndpoint)).all()) == 1


def test_an_owner_disables_deletes_and_resends(
    hooks_app: Flask, owner: FlaskClient, receiver: Receiver
) -> None:
    add_webhook(hooks_app, receiver.url)
    assert post(owner, "/webhooks/1/enabled", {"enabled": "off"}).status_code == 302
    assert post(owner, "/feedback/new", {"title": "Unheard"}).status_code == 302
    assert deliveries(hooks_app) == []
    assert post(owner, "/webhooks/1/enabled", {"enabled": "on"}).status_code == 302
    assert post(owner, "/feedback/new", {"title": "Heard"}).status_code == 302
    receiver.answers = [Response("down", 500)] * 7
    for _ in range(7):
        send(hooks_app, "--retry-now")
    (delivery,) = deliveries(hooks_app)
    assert (delivery.state, delivery.attempts) == ("failed", 7)
    assert "failed" in owner.get("/webhooks").get_data(as_text=True)
    assert post(owner, f"/webhooks/deliveries/{delivery.id}/resend").status_code == 302
    assert send(hooks_app) == "1 sent, 0 failed, 0 waiting.\n"
    assert set(receiver.ids()) == {delivery.delivery_id} and len(receiver.requests) == 8
    assert post(owner, "/webhooks/deliveries/999/resend").status_code == 404
    assert post(owner, "/webhooks/1/delete").status_code == 302
    assert post(owner, "/webhooks/1/delete").status_code == 404
    assert deliveries(hooks_app) == []
    assert post(owner, "/feedback/new", {"title": "After"}).status_code == 302
    assert deliveries(hooks_app) == []


def test_the_sender_thread_sends_a_change_at_once(
    tmp_path: Any, database_url: str, receiver: Receiver
) -> None:
    app = make_app(tmp_path, DATABASE_URL=database_url, WEBHOOKS_ALLOW_PRIVATE=True)
    add_webhook(app, receiver.url, "record.created")
    create_user(app)
    client = app.test_client()
    sign_in(client)
    assert post(client, "/feedback/new", {"title": "Dark mode"}).status_code == 302
    wait_for_sender(app)
    assert receiver.events() == ["record.created"]
    assert [d.state for d in deliveries(app)] == ["sent"]


def test_a_receiver_too_slow_to_answer_is_tried_again(
    hooks_app: Flask, httpserver: HTTPServer
) -> None:
    calls: list[str] = []
    answer = threading.Event()

    def slow(request: Request) -> Response:
        calls.append(request.headers["Hedwig-Delivery"])
        if len(calls) == 1:
            answer.wait(10)  # past HEDWIG_INTERCOM_TIMEOUT (1 s here)
        return Response("ok")

    httpserver.expect_request("/slow", method="POST").respond_with_handler(slow)
    add_webhook(hooks_app, httpserver.url_for("/slow"))
    with hooks_app.app_context():
        announce("record.created", {"record": {"id": 1}})
        db.session.commit()
    assert send(hooks_app) == "0 sent, 0 failed, 1 waiting.\n"
    (delivery,) = deliveries(hooks_app)
    assert (delivery.attempts, delivery.response_code) == (1, None)
    assert "did not answer" in delivery.reason
    answer.set()  # the receiver, fixed, answers at once
    assert send(hooks_app, "--retry-now") == "1 sent, 0 failed, 0 waiting.\n"
    assert calls[0] == calls[1]


def test_an_endpoint_deleted_while_it_is_sent_to_stops_nothing_else(
    hooks_app: Flask, httpserver: HTTPServer, receiver: Receiver
) -> None:
    def delete_meanwhile(request: Request) -> Response:
        with hooks_app.app_context():
            db.session.delete(db.session.get(WebhookEndpoint, 1))
            db.session.commit()
        return Response("ok")

    httpserver.expect_request("/gone", method="POST").respond_with_handler(delete_meanwhile)
    add_webhook(hooks_app, httpserver.url_for("/gone"))
    add_webhook(hooks_app, receiver.url)
    with hooks_app.app_context():
        announce("record.created", {"record": {"id": 1}})
        db.session.commit()
    assert send(hooks_app) == "1 sent, 0 failed, 0 waiting.\n"
    assert receiver.events() == ["record.created"]
    assert [d.endpoint_id for d in deliveries(hooks_app)] == [2]


def test_a_name_that_turns_private_after_the_check_is_refused_before_sending(
    tmp_path: Any, database_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name resolved to a public address when checked, and the connection
    reaches a private one."""
    app = make_app(tmp_path, DATABASE_URL=database_url, SEND_NOTES_AT_ONCE=False)
    with app.app_context():
        app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
        add_endpoint(receiver.url, ["record.created"])
        announce("record.created", {"record": {"id": 1}})
        db.session.commit()
        app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    monkeypatch.setattr(webhooks_out, "url_refusal", lambda url: None)  # "public" when checked
    assert send(app) == "0 sent, 0 failed, 1 waiting.\n"
    assert receiver.requests == []
    (delivery,) = deliveries(app)
    assert "loopback, private or link-local address (127.0.0.1)" in delivery.reason


def test_deliveries_an_earlier_process_left_are_sent_after_a_start(
    tmp_path: Any, database_url: str, receiver: Receiver
) -> None:
    app = make_app(tmp_path, DATABASE_URL=database_url, WEBHOOKS_ALLOW_PRIVATE=True)
    add_webhook(app, receiver.url)
    with app.app_context():  # written, then the process stopped before it sent it
        announce("record.deleted", {"record": {"id": 1}})
        db.session.commit()
    assert receiver.requests == []
    restarted = make_app(tmp_path, DATABASE_URL=database_url, WEBHOOKS_ALLOW_PRIVATE=True)
    restarted.test_client().get("/login")
    wait_for_sender(restarted)
    assert receiver.events() == ["record.deleted"]


def test_each_change_made_through_the_api_is_told_as_the_pages_tell_it(
    hooks_app: Flask, owner: FlaskClient
) -> None:
    add_webhook(hooks_app, "http://127.0.0.1:9/all")
    created = post(owner, "/account/tokens", {"name": "Script"})
    token = re.search(r"hedwig_[A-Za-z0-9_-]+", created.get_data(as_text=True)).group()
    headers = {"Authorization": f"Bearer {token}"}

    def call(method: str, url: str, body: Any = None) -> Any:
        return owner.open(f"/api/v1{url}", method=method, headers=headers, json=body)

    record_id = call("POST", "/records", {"title": "Dark mode"}).json["id"]
    other_id = call("POST", "/records", {"title": "Night theme"}).json["id"]
    assert call("PATCH", f"/records/{record_id}", {"title": "Dark mode!"}).status_code == 200
    assert call("PATCH", f"/records/{record_id}", {"title": "Dark mode!"}).status_code == 200
    evidence = {"customer_name": "Ann", "quote": "Night!"}
    assert call("POST", f"/records/{record_id}/evidence", evidence).status_code == 201
    assert call("POST", f"/records/{record_id}/status", {"status": "planned"}).status_code == 200
    assert call("POST", f"/records/{other_id}/merge", {"into": record_id}).status_code == 200
    assert call("DELETE", f"/records/{record_id}").status_code == 204
    assert [d.event for d in deliveries(hooks_app)] == [
        "record.created",
        "record.created",
        "record.updated",  # once: the second PATCH changed nothing
        "evidence.added",
        "status.changed",
        "record.merged",
        "record.deleted",
    ]
