"""The customers' companies (companies.py): read from Intercom after the save, never in the
request the Inbox waits on; stored once per workspace; weighing each record by its distinct
companies' monthly spend; every refusal of Intercom's kept as a reason, never a lost save."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import flask_migrate
import pytest
import sqlalchemy
from flask import Flask
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from werkzeug import Request, Response

from conftest import (
    CONTACT_ID,
    INITIALIZE,
    TOKEN,
    WORKSPACE_ID,
    Inbox,
    connect_workspace,
    connections,
    signed_in_browser,
    stored_evidence,
    stored_feedback,
    wait_for_sender,
)
from hedwig_app import companies
from models import Company, ContactCompany, IntercomConnection, db, utcnow

ACME = {
    "type": "company",
    "id": "6657add46abd0167d9419cd2",
    "company_id": "acme",
    "name": "Acme Inc",
    "monthly_spend": 1290,
    "plan": {"type": "plan", "id": "269315", "name": "Pro"},
    "size": 40,
}
TINY = {**ACME, "id": "6657add46abd0167d9419cd3", "name": "Tiny", "monthly_spend": 10}
GLOBEX = {**ACME, "id": "6657add46abd0167d9419cd4", "name": "Globex", "monthly_spend": 5000}


def companies_path(contact_id: str = CONTACT_ID) -> str:
    return f"/contacts/{contact_id}/companies"


def listed(*found: dict[str, Any]) -> dict[str, Any]:
    """Intercom's answer to GET /contacts/{id}/companies."""
    return {"type": "list", "data": list(found), "total_count": len(found)}


def customer(contact_id: str, conversation_id: str, email: str) -> dict[str, Any]:
    """A canvas request from another customer's conversation in the fixture workspace."""
    contact = {"type": "contact", "id": contact_id, "email": email, "name": email.split("@")[0]}
    source = {**INITIALIZE["conversation"]["source"], "author": {"type": "user", **contact}}
    conversation = {**INITIALIZE["conversation"], "id": conversation_id, "source": source}
    return {**INITIALIZE, "contact": contact, "conversation": conversation}


@pytest.fixture
def held_app(canvas_app: Flask) -> Flask:
    """Hedwig with no sender thread: the reads wait for read_companies(), so that each test
    sees what a request alone did."""
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    return canvas_app


def read(app: Flask, **options: Any) -> Counter[str]:
    with app.app_context():
        return companies.read_companies(**options)


def asked(app: Flask) -> list[ContactCompany]:
    with app.app_context():
        rows = db.session.scalars(select(ContactCompany).order_by(ContactCompany.id))
        return list(rows)


def weights(app: Flask) -> list[tuple[str, str]]:
    return [(record.title, record.weight) for record in stored_feedback(app)]


def test_a_save_reads_the_customers_company_after_it_and_weighs_the_record(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(companies_path(), method="GET").respond_with_json(listed(TINY, ACME))
    body = Inbox(canvas_app).save("Export to CSV")
    assert body["canvas"]["content"]["components"][0]["text"].endswith("saved")
    wait_for_sender(canvas_app)
    assert weights(canvas_app) == [("Export to CSV", "1 customer · 1 company · $1,290 a month")]
    (evidence,) = stored_evidence(canvas_app)
    with canvas_app.app_context():
        company = db.session.get(type(evidence), evidence.id).company
        assert (company.name, company.plan, company.size) == ("Acme Inc", "Pro", 40)
    (request, _), *_ = httpserver.log
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Intercom-Version"]


def test_a_wake_that_finds_nothing_due_asks_the_database_once(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    """While a workspace waits for a reconnect, each save still asks for its customer's
    company (read after the reconnect); the sender it wakes sees in one statement that
    nothing is due, where it asked each outbox apart, and looked for abandoned claims, at
    every wake (12 statements, on the web process's connection pool)."""
    httpserver.expect_request(companies_path(), method="GET").respond_with_json(listed(ACME))
    inbox = Inbox(canvas_app)
    inbox.save("Export to CSV")
    wait_for_sender(canvas_app)  # the first wake looks for abandoned claims, and reads
    with canvas_app.app_context():
        connection = db.session.scalar(select(IntercomConnection))
        connection.refused_at = utcnow()
        db.session.commit()
        engine = db.engine
    asked_by_sender: list[str] = []

    def count(*args: Any) -> None:
        if threading.current_thread().name == "hedwig-notes":
            asked_by_sender.append(args[2])

    sqlalchemy.event.listen(engine, "before_cursor_execute", count)
    try:
        inbox.save("Dark mode", payload=customer("contact-2", "2002", "dana@acme.example"))
        wait_for_sender(canvas_app)
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", count)
    assert len(asked_by_sender) == 1, asked_by_sender
    assert [row.state for row in asked(canvas_app)] == ["read", "pending"]


def test_the_inbox_never_waits_for_the_read(held_app: Flask, httpserver: HTTPServer) -> None:
    """The save answers before Intercom is asked anything: the read comes after its commit."""
    httpserver.expect_request(companies_path()).respond_with_json(listed(ACME))
    Inbox(held_app).save("Export to CSV")
    assert httpserver.log == []
    assert [row.state for row in asked(held_app)] == ["pending"]
    assert read(held_app) == Counter(read=1)
    assert weights(held_app) == [("Export to CSV", "1 customer · 1 company · $1,290 a month")]


def test_two_people_of_one_company_count_it_once(held_app: Flask, httpserver: HTTPServer) -> None:
    httpserver.expect_request(companies_path()).respond_with_json(listed(ACME))
    httpserver.expect_request(companies_path("contact-2")).respond_with_json(listed(ACME))
    httpserver.expect_request(companies_path("contact-3")).respond_with_json(listed(GLOBEX))
    inbox = Inbox(held_app)
    inbox.save("Export to CSV")
    (record,) = stored_feedback(held_app)
    inbox.add_to(record.id, payload=customer("contact-2", "2002", "dana@acme.example"))
    assert read(held_app) == Counter(read=2)
    assert weights(held_app) == [("Export to CSV", "2 customers · 1 company · $1,290 a month")]
    inbox.add_to(record.id, payload=customer("contact-3", "2003", "eve@globex.example"))
    read(held_app)
    assert weights(held_app) == [("Export to CSV", "3 customers · 2 companies · $6,290 a month")]
    with held_app.app_context():
        assert db.session.scalar(select(sqlalchemy.func.count(Company.id))) == 2


def test_a_company_is_stored_once_and_a_change_reweighs_every_record_it_backs(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(companies_path()).respond_with_json(listed(ACME))
    raised = {**ACME, "monthly_spend": 2000, "plan": {"name": "Enterprise"}}
    httpserver.expect_request(companies_path("contact-2")).respond_with_json(listed(raised))
    inbox = Inbox(held_app)
    inbox.save("Export to CSV")
    read(held_app)
    inbox.save("Dark mode", payload=customer("contact-2", "2002", "dana@acme.example"))
    read(held_app)
    assert weights(held_app) == [
        ("Export to CSV", "1 customer · 1 company · $2,000 a month"),
        ("Dark mode", "1 customer · 1 company · $2,000 a month"),
    ]
    with held_app.app_context():
        (company,) = db.session.scalars(select(Company))
        assert (company.monthly_spend, company.plan) == (2000, "Enterprise")


def test_a_known_customers_new_record_weighs_at_once(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    """A customer whose company was read moments ago is not read again for a new record, and
    the record weighs their company from its first save."""
    httpserver.expect_request(companies_path()).respond_with_json(listed(ACME))
    inbox = Inbox(held_app)
    inbox.save("Export to CSV")
    read(held_app)
    inbox.save("Dark mode", payload={**INITIALIZE, "conversation": {"id": "3003"}})
    assert [row.state for row in asked(held_app)] == ["read"]
    assert weights(held_app)[1] == ("Dark mode", "1 customer · 1 company · $1,290 a month")
    assert len(httpserver.log) == 1


def test_a_customer_in_no_company_says_so(held_app: Flask, httpserver: HTTPServer) -> None:
    httpserver.expect_request(companies_path()).respond_with_json(listed())
    Inbox(held_app).save("Export to CSV")
    assert read(held_app) == Counter(read=1)
    assert weights(held_app) == [("Export to CSV", "1 customer")]
    (evidence,) = evidence_with_company(held_app)
    assert evidence == "Intercom names no company for this customer"


def evidence_with_company(app: Flask) -> list[str]:
    """Each piece of evidence's company ("Acme Inc, Pro") or why it has none."""
    with app.app_context():
        found = []
        for evidence in db.session.scalars(select(type(stored_evidence(app)[0]))):
            company = evidence.company
            found.append(f"{company.name}, {company.plan}" if company else evidence.company_unknown)
        return found


REFUSALS = {
    "plan": (403, "api_plan_restricted", "failed", "your Intercom plan does not include this"),
    "gone": (404, "not_found", "failed", "it has no such thing (deleted or merged)"),
    "permission": (
        401,
        "token_unauthorized",
        "failed",
        "the app lacks a permission this needs (Read and list users and companies)",
    ),
    "revoked": (401, "unauthorized", "pending", "it no longer accepts this token"),
    "broken": (500, "server_error", "pending", "try 1 of 5 failed: Intercom answered"),
}


@pytest.mark.parametrize("refusal", REFUSALS)
def test_intercom_refusing_the_read_never_loses_the_save(
    held_app: Flask, httpserver: HTTPServer, refusal: str
) -> None:
    status, code, state, reason = REFUSALS[refusal]
    error = {"type": "error.list", "errors": [{"code": code, "message": "No"}]}
    httpserver.expect_request(companies_path()).respond_with_json(error, status=status)
    body = Inbox(held_app).save("Export to CSV")
    assert body["canvas"]["content"]["components"][0]["text"].endswith("saved")
    read(held_app)
    (row,) = asked(held_app)
    assert row.state == state
    assert reason in row.reason
    assert weights(held_app) == [("Export to CSV", "1 customer")]
    (unknown,) = evidence_with_company(held_app)
    assert reason in unknown
    (connection,) = connections(held_app)
    # Only a revoked token stops the workspace (its notes too); a missing permission for
    # companies must not stop the notes.
    assert (connection.refused_at is not None) == (refusal == "revoked")


def test_a_read_intercom_never_answers_is_tried_again(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    given_up = threading.Event()

    def never_in_time(request: Request) -> Response:
        given_up.wait(timeout=30)  # past Hedwig's deadline; then the stand-in is free again
        return Response(json.dumps(listed(ACME)), 200, content_type="application/json")

    httpserver.expect_request(companies_path()).respond_with_handler(never_in_time)
    Inbox(canvas_app).save("Export to CSV")
    try:
        assert read(canvas_app) == Counter(waiting=1)
    finally:
        given_up.set()
    (row,) = asked(canvas_app)
    assert (row.state, row.attempts) == ("pending", 1)
    assert "did not answer" in row.reason
    assert len(stored_feedback(canvas_app)) == 1


def test_a_429_makes_the_workspaces_reads_wait_then_they_go_on(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    answers = [Response("{}", 429, {"Retry-After": "1"})]

    def first_slow_down(request: Request) -> Response:
        if answers:
            return answers.pop()
        return Response(json.dumps(listed(ACME)), 200, content_type="application/json")

    httpserver.expect_request(companies_path()).respond_with_handler(first_slow_down)
    httpserver.expect_request(companies_path("contact-2")).respond_with_json(listed(GLOBEX))
    inbox = Inbox(held_app)
    inbox.save("Export to CSV")
    inbox.save("Dark mode", payload=customer("contact-2", "2002", "dana@globex.example"))
    assert read(held_app) == Counter(waiting=1)  # the other waits too: none read meanwhile
    assert [row.state for row in asked(held_app)] == ["pending", "pending"]
    assert read(held_app, wait_max=5) == Counter(read=2)
    assert [weight for _, weight in weights(held_app)] == [
        "1 customer · 1 company · $1,290 a month",
        "1 customer · 1 company · $5,000 a month",
    ]


def test_an_answer_that_is_not_a_list_of_companies_fails_the_read(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(companies_path()).respond_with_json({"data": "Acme"})
    Inbox(held_app).save("Export to CSV")
    assert read(held_app) == Counter(failed=1)
    assert "named no list of companies" in asked(held_app)[0].reason


def test_odd_values_in_a_company_are_read_as_nothing(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    odd = {"id": "c9", "name": ["Acme"], "monthly_spend": "lots", "plan": "Pro", "size": True}
    negative = {"id": "c10", "name": "Owes", "monthly_spend": -5}
    httpserver.expect_request(companies_path()).respond_with_json(
        listed(odd, negative, {"name": "No id"}, "junk")
    )
    Inbox(held_app).save("Export to CSV")
    assert read(held_app) == Counter(read=1)
    with held_app.app_context():
        stored = {
            (c.intercom_id, c.name, c.monthly_spend, c.plan, c.size)
            for c in db.session.scalars(select(Company))
        }
    assert stored == {("c9", "", 0, None, None), ("c10", "Owes", 0, None, None)}


def test_reconnecting_asks_again_for_the_reads_that_failed(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    error = {"type": "error.list", "errors": [{"code": "token_unauthorized"}]}
    httpserver.expect_oneshot_request(companies_path()).respond_with_json(error, status=401)
    httpserver.expect_request(companies_path()).respond_with_json(listed(ACME))
    Inbox(held_app).save("Export to CSV")
    read(held_app)
    assert asked(held_app)[0].state == "failed"
    with held_app.app_context():  # the permission added, the app is connected again
        db.session.execute(sqlalchemy.delete(IntercomConnection))
        db.session.commit()
    connect_workspace(held_app)
    with held_app.app_context():
        connection = db.session.scalar(select(IntercomConnection))
        details = {name: getattr(connection, name) for name in ("workspace_id",)}
        companies.ask_again(details["workspace_id"], failed_only=True)
        db.session.commit()
    assert read(held_app) == Counter(read=1)
    assert weights(held_app) == [("Export to CSV", "1 customer · 1 company · $1,290 a month")]


def test_the_preview_reads_sample_companies_without_intercom(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    browser = signed_in_browser(canvas_app)
    page = browser.get("/intercom/preview")
    token = page.get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    form = {"csrf_token": token, "component_id": "record", "stored_data": "{}"}
    browser.post("/intercom/preview", data=form)
    # The form is reached through "New feedback" with its nonce; the saved record follows.
    found = browser.post("/intercom/preview", data={**form, "component_id": "new"})
    stored = found.get_data(as_text=True).split('name="stored_data" value="')[1].split('"')[0]
    stored = stored.replace("&#34;", '"').replace("&quot;", '"')
    browser.post(
        "/intercom/preview",
        data={
            **form,
            "component_id": "save",
            "stored_data": stored,
            "input:title": "Sample feedback",
        },
    )
    wait_for_sender(canvas_app)
    ((title, weight),) = weights(canvas_app)
    assert title == "Sample feedback"
    assert weight.startswith("1 customer · 1 company · $")
    assert httpserver.log == []


def refresh(app: Flask, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["refresh-companies", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_refresh_companies_reads_them_again_a_bounded_number_at_a_time(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    raised = {**ACME, "monthly_spend": 3000}
    httpserver.expect_oneshot_request(companies_path()).respond_with_json(listed(ACME))
    httpserver.expect_request(companies_path()).respond_with_json(listed(raised))
    httpserver.expect_request(companies_path("contact-2")).respond_with_json(listed(GLOBEX))
    inbox = Inbox(held_app)
    inbox.save("Export to CSV")
    inbox.save("Dark mode", payload=customer("contact-2", "2002", "dana@globex.example"))
    read(held_app)
    assert (
        refresh(held_app, "--older-than", "1") == "0 asked for: 0 read, 0 failed, 0 still to read."
    )
    assert refresh(held_app, "--limit", "1") == (
        "2 asked for: 1 read, 0 failed, 1 still to read (run it again, or wait for the rate limit)."
    )
    assert (
        refresh(held_app, "--older-than", "1") == "0 asked for: 1 read, 0 failed, 0 still to read."
    )
    assert weights(held_app)[0] == ("Export to CSV", "1 customer · 1 company · $3,000 a month")


@pytest.mark.fresh_database
def test_the_companies_migration_drops_and_brings_back_the_weights_keeping_the_records(
    held_app: Flask, httpserver: HTTPServer
) -> None:
    """0010's downgrade drops companies and the weights, keeping every record and piece of
    evidence; upgraded again, records weigh nothing until refresh-companies reads them."""
    httpserver.expect_request(companies_path()).respond_with_json(listed(ACME))
    Inbox(held_app).save("Export to CSV")
    read(held_app)
    with held_app.app_context():
        flask_migrate.downgrade(revision="0009")
        inspector = sqlalchemy.inspect(db.engine)
        assert "companies" not in inspector.get_table_names()
        assert "monthly_spend" not in {c["name"] for c in inspector.get_columns("feedback")}
        counts = [
            db.session.scalar(select(sqlalchemy.func.count()).select_from(sqlalchemy.table(name)))
            for name in ("feedback", "evidence")
        ]
        db.session.rollback()
        flask_migrate.upgrade()
    assert counts == [1, 1]
    assert weights(held_app) == [("Export to CSV", "1 customer")]
    assert [(row.workspace_id, row.contact_id) for row in asked(held_app)] == []
    assert refresh(held_app) == "1 asked for: 1 read, 0 failed, 0 still to read."
    assert weights(held_app) == [("Export to CSV", "1 customer · 1 company · $1,290 a month")]
    assert evidence_with_company(held_app) == ["Acme Inc, Pro"]
    with held_app.app_context():
        assert db.session.scalar(select(ContactCompany.workspace_id)) == WORKSPACE_ID
