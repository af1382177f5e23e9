"""Hedwig's behaviour, as a user (or Intercom) would notice it: the specification.

The fixtures and helpers these tests share (the app on both databases, the Intercom stand-in,
the documented canvas payloads, the Inbox driver) are in conftest.py.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import logging
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import flask_migrate
import itsdangerous.timed
import pytest
import requests
import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from werkzeug import Request, Response

import hedwig
import hedwig_app.auth
import models
from conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    CODE,
    CONTACT_ID,
    CONVERSATION_ID,
    INITIALIZE,
    ME,
    PASSWORD,
    POSTGRES_HINT,
    POSTGRES_URL,
    SECRET_KEY,
    TOKEN,
    WORKSPACE_ID,
    Inbox,
    add_feedback,
    assert_valid_canvas,
    component,
    config_for,
    connect_workspace,
    create_user,
    created_apps,
    csrf,
    empty_postgres,
    feedback_count,
    is_sqlite,
    make_app,
    page_text,
    post,
    serve_intercom,
    sign,
    sign_in,
    signed_in_browser,
    stored_evidence,
    stored_feedback,
    texts,
    token_answer,
)
from hedwig_app import outbox
from hedwig_app.canvas_kit import HTML_READ_MAX, html_to_text, markdown_escape
from hedwig_app.canvases import COUNT_CAP
from hedwig_app.database import INITIAL_REVISION, MIGRATIONS, described_by_models
from hedwig_app.inbox import verify_canvas_signature
from hedwig_app.intercom import intercom_api_url
from hedwig_app.log import CSV_COLUMNS
from hedwig_app.preview import SAMPLE, canvas_markdown
from hedwig_app.records import add_evidence, refresh_backing
from hedwig_app.search import search, search_words
from hedwig_app.settings import SetupError
from models import Evidence, Feedback, IntercomConnection, User, db

# --- Sign-in --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/feedback/new", "/feedback/1", "/feedback.csv"])
def test_anonymous_visitor_is_sent_to_sign_in(app: Flask, client: FlaskClient, path: str) -> None:
    create_user(app)
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_sign_in_returns_to_the_page_asked_for(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = post(
        client,
        "/login",
        {"email": "ADA@example.com", "password": PASSWORD, "next": "/feedback/new"},
    )
    assert response.headers["Location"] == "/feedback/new"
    assert client.get("/feedback/new").status_code == 200


@pytest.mark.parametrize(
    "next_url",
    ["https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)", ""],
)
def test_next_never_leads_off_site(app: Flask, client: FlaskClient, next_url: str) -> None:
    create_user(app)
    response = post(
        client, "/login", {"email": "ada@example.com", "password": PASSWORD, "next": next_url}
    )
    assert response.headers["Location"] == "/"


def test_wrong_password_is_refused(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = post(client, "/login", {"email": "ada@example.com", "password": "wrong password"})
    assert response.status_code == 401
    assert "Wrong email or password." in page_text(response)
    assert client.get("/").status_code == 302


def test_unknown_email_is_refused_with_the_same_message(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = post(client, "/login", {"email": "bob@example.com", "password": PASSWORD})
    assert response.status_code == 401
    assert "Wrong email or password." in page_text(response)


def test_sign_out_ends_the_session(signed_in: FlaskClient) -> None:
    assert post(signed_in, "/logout").status_code == 302
    assert signed_in.get("/").status_code == 302


def test_session_cookie_is_httponly_and_samesite_lax(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    response = post(client, "/login", {"email": "ada@example.com", "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_when_configured(tmp_path: Any) -> None:
    app = make_app(tmp_path, SESSION_COOKIE_SECURE=True)
    create_user(app)
    client = app.test_client()
    response = post(client, "/login", {"email": "ada@example.com", "password": PASSWORD})
    assert "Secure" in response.headers["Set-Cookie"]


def test_fresh_install_offers_the_first_account(app: Flask, client: FlaskClient) -> None:
    offered = client.get("/login", follow_redirects=True)
    assert offered.request.path == "/first-account"
    assert "Create the first account" in page_text(offered)
    response = post(
        client,
        "/first-account",
        {"email": "Ada@Example.com", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200  # signed in straight away
    with app.app_context():
        assert db.session.scalar(select(User.email)) == "ada@example.com"


def test_first_account_form_is_gone_once_a_user_exists(app: Flask, client: FlaskClient) -> None:
    first = {"email": "ada@example.com", "password": PASSWORD, "confirm": PASSWORD}
    assert post(client, "/first-account", first).status_code == 302
    other = app.test_client()
    assert "Create the first account" not in page_text(other.get("/login"))
    assert other.get("/first-account").headers["Location"].startswith("/login")
    another = {"email": "eve@example.com", "password": PASSWORD, "confirm": PASSWORD}
    assert post(other, "/login", another).status_code == 401
    response = post(other, "/first-account", another)
    assert response.status_code == 400
    assert "An account exists already: sign in instead." in page_text(response)
    with app.app_context():
        assert db.session.scalar(select(func.count(User.id))) == 1


@pytest.mark.parametrize(
    ("email", "password", "confirm", "message"),
    [
        ("not-an-email", PASSWORD, PASSWORD, "Enter a valid email address."),
        ("ada@example.com", "short", "short", "at least 8 characters"),
        ("ada@example.com", PASSWORD, "something else", "The two passwords differ."),
    ],
)
def test_first_account_form_validates(
    app: Flask, client: FlaskClient, email: str, password: str, confirm: str, message: str
) -> None:
    form = {"email": email, "password": password, "confirm": confirm}
    response = post(client, "/first-account", form)
    assert response.status_code == 400
    assert message in page_text(response)
    with app.app_context():
        assert no_users()


def no_users() -> bool:
    return db.session.scalar(select(func.count(User.id))) == 0


def test_post_without_csrf_token_is_refused_and_changes_nothing(
    app: Flask, signed_in: FlaskClient
) -> None:
    response = signed_in.post("/feedback/new", data={"title": "Sneaky"})
    assert response.status_code == 400
    response = signed_in.post("/feedback/new", data={"title": "Sneaky", "csrf_token": "forged"})
    assert response.status_code == 400
    assert feedback_count(app) == 0


def test_first_account_needs_a_csrf_token_too(app: Flask, client: FlaskClient) -> None:
    response = client.post(
        "/first-account",
        data={"email": "ada@example.com", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert response.status_code == 400
    with app.app_context():
        assert no_users()


def test_a_copy_of_the_cookie_no_longer_signs_in_after_signing_out(signed_in: FlaskClient) -> None:
    old_cookie = signed_in.get_cookie("session").value
    assert post(signed_in, "/logout").status_code == 302
    signed_in.set_cookie("session", old_cookie)
    assert signed_in.get("/").status_code == 302


def test_a_sign_in_lasts_a_week(
    app: Flask, signed_in: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "Expires=" in signed_in.get("/").headers.get("Set-Cookie", "Expires=")
    assert signed_in.get("/").status_code == 200
    eight_days_later = models.utcnow() + timedelta(days=8)
    monkeypatch.setattr("hedwig_app.auth.utcnow", lambda: eight_days_later)
    assert signed_in.get("/").status_code == 302


def wrong_sign_in(client: FlaskClient, email: str = "ada@example.com", **environ: Any) -> Any:
    form = {"email": email, "password": "not the password"}
    return post(client, "/login", form, environ_base=environ)


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every password check made, by the email's account or the decoy."""
    made: list[str] = []
    for module in (hedwig_app.auth, models):
        check = module.check_password_hash

        def counted(stored: str, password: str, check: Any = check) -> bool:
            made.append(password)
            return check(stored, password)

        monkeypatch.setattr(module, "check_password_hash", counted)
    return made


def test_ten_failed_sign_ins_for_an_account_stop_further_tries_before_any_hash(
    app: Flask, client: FlaskClient, hashes: list[str]
) -> None:
    create_user(app)
    for n in range(10):  # each from its own address: the account's limit, not the client's
        assert wrong_sign_in(client, REMOTE_ADDR=f"10.0.0.{n}").status_code == 401
    assert len(hashes) == 10
    response = post(client, "/login", {"email": "ada@example.com", "password": PASSWORD})
    assert response.status_code == 429
    assert "Too many failed sign-ins. Try again in 15 minutes" in page_text(response)
    assert 880 <= int(response.headers["Retry-After"]) <= 900
    assert len(hashes) == 10  # refused before any hash was computed
    assert client.get("/").status_code == 302


def test_ten_failed_sign_ins_from_one_client_stop_its_tries_for_any_account(
    app: Flask, client: FlaskClient, hashes: list[str]
) -> None:
    create_user(app)
    for n in range(10):
        assert wrong_sign_in(client, f"guess{n}@example.com").status_code == 401
    assert wrong_sign_in(client).status_code == 429
    other_client = app.test_client()  # another address: the account itself is not locked
    response = post(
        other_client,
        "/login",
        {"email": "ada@example.com", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert response.status_code == 302
    assert len(hashes) == 11


def test_the_sign_in_throttle_lifts_after_fifteen_minutes(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_user(app)
    for _ in range(10):
        wrong_sign_in(client)
    assert wrong_sign_in(client).status_code == 429
    sixteen_minutes_later = models.utcnow() + timedelta(minutes=16)
    monkeypatch.setattr("hedwig_app.auth.utcnow", lambda: sixteen_minutes_later)
    assert wrong_sign_in(client).status_code == 401


def test_a_signed_in_user_is_never_throttled(app: Flask, signed_in: FlaskClient) -> None:
    for _ in range(12):
        wrong_sign_in(app.test_client())
    assert signed_in.get("/").status_code == 200
    assert post(signed_in, "/feedback/new", {"title": "Still here"}).status_code == 302


@pytest.mark.parametrize(("trusted", "throttled"), [(0, True), (1, False)])
def test_forwarded_client_addresses_count_only_behind_trusted_proxies(
    tmp_path: Any, database_url: str, trusted: int, throttled: bool
) -> None:
    """Behind ngrok every request comes from the proxy: with HEDWIG_TRUSTED_PROXIES=1 the
    address it forwards tells clients apart; without it, forwarded headers are ignored."""
    app = make_app(tmp_path, DATABASE_URL=database_url, TRUSTED_PROXIES=trusted)
    create_user(app)
    client = app.test_client()
    for n in range(10):
        wrong_sign_in(client, f"guess{n}@example.com", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
    response = wrong_sign_in(client, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert response.status_code == (429 if throttled else 401)


def test_an_unknown_email_costs_the_same_password_check_as_a_known_one(
    app: Flask, client: FlaskClient, hashes: list[str]
) -> None:
    create_user(app)
    wrong_sign_in(client, "ada@example.com")
    wrong_sign_in(client, "nobody@example.com")
    assert hashes == ["not the password", "not the password"]


def test_control_characters_in_a_sign_in_form_are_dropped(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    form = {"email": "ada@exam\x00ple.com\x07", "password": PASSWORD}
    assert post(client, "/login", form).status_code == 302


def test_a_form_with_more_fields_than_any_of_hedwigs_is_refused_unparsed(
    app: Flask, client: FlaskClient
) -> None:
    body = "a=&" * 5_000  # well under the size limit
    response = client.post("/login", data=body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert "more fields than any of Hedwig&#39;s" in page_text(response)
    unknown = client.post("/nowhere", data=body, content_type="application/x-www-form-urlencoded")
    assert unknown.status_code == 404  # not parsed for a CSRF token first


def test_the_first_account_form_hashes_nothing_once_an_account_exists(
    app: Flask, client: FlaskClient, hashes: list[str]
) -> None:
    create_user(app)
    hashes.clear()
    form = {"email": "eve@example.com", "password": PASSWORD, "confirm": PASSWORD}
    for _ in range(3):
        assert post(client, "/first-account", form).status_code == 400
    assert hashes == []


def test_an_overlong_email_is_refused_and_counted_like_any_other(
    app: Flask, client: FlaskClient
) -> None:
    create_user(app)
    for _ in range(10):
        assert wrong_sign_in(client, "x" * 300 + "@example.com").status_code == 401
    assert wrong_sign_in(client, "y" * 300 + "@example.com").status_code == 429


def test_addresses_of_one_ipv6_network_share_a_limit(app: Flask, client: FlaskClient) -> None:
    create_user(app)
    for n in range(10):
        wrong_sign_in(client, f"guess{n}@example.com", REMOTE_ADDR=f"2001:db8:0:1::{n + 1:x}")
    assert wrong_sign_in(client, REMOTE_ADDR="2001:db8:0:1::ffff").status_code == 429
    assert wrong_sign_in(client, REMOTE_ADDR="2001:db8:0:2::1").status_code == 401


# --- The feedback log -----------------------------------------------------------------------------


def test_add_feedback_by_hand_and_read_it(app: Flask, signed_in: FlaskClient) -> None:
    response = post(
        signed_in,
        "/feedback/new",
        {
            "title": "Dark mode, please",
            "description": "Our night shift\nreads the reports at 3am.",
            "customer_name": "Casey Customer",
            "customer_email": "casey@example.com",
        },
    )
    assert response.status_code == 302
    page = page_text(signed_in.get(response.headers["Location"]))
    assert "Dark mode, please" in page
    assert "reads the reports at 3am." in page
    assert "Casey Customer" in page
    assert "ada@example.com" in page  # who added it
    with app.app_context():
        feedback = db.session.scalar(select(Feedback))
        assert feedback.source == "web"
        assert feedback.created_by.email == "ada@example.com"


@pytest.mark.parametrize(
    ("title", "message"),
    [("", "A title is required."), ("   ", "A title is required."), ("x" * 201, "200 characters")],
)
def test_invalid_title_shows_the_form_again_with_values_kept(
    app: Flask, signed_in: FlaskClient, title: str, message: str
) -> None:
    response = post(
        signed_in,
        "/feedback/new",
        {"title": title, "description": "Kept details", "customer_name": "Kept Name"},
    )
    assert response.status_code == 400
    page = page_text(response)
    assert message in page
    assert "Kept details" in page
    assert 'value="Kept Name"' in page
    assert feedback_count(app) == 0


def test_title_of_exactly_200_characters_is_accepted(app: Flask, signed_in: FlaskClient) -> None:
    response = post(signed_in, "/feedback/new", {"title": "x" * 200})
    assert response.status_code == 302
    assert feedback_count(app) == 1


def test_invalid_customer_email_is_refused(app: Flask, signed_in: FlaskClient) -> None:
    response = post(signed_in, "/feedback/new", {"title": "Hi", "customer_email": "nope"})
    assert response.status_code == 400
    assert "Enter a valid email address" in page_text(response)
    assert feedback_count(app) == 0


def test_unknown_feedback_is_404(signed_in: FlaskClient) -> None:
    assert signed_in.get("/feedback/999").status_code == 404
    assert signed_in.get("/feedback/abc").status_code == 404


def test_html_in_feedback_is_shown_as_text(app: Flask, signed_in: FlaskClient) -> None:
    (feedback_id,) = add_feedback(
        app, title="<script>alert(1)</script>", customer_name="<b>Bold</b>"
    )
    for page in (
        page_text(signed_in.get("/")),
        page_text(signed_in.get(f"/feedback/{feedback_id}")),
    ):
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<b>Bold</b>" not in page


def test_list_is_newest_first_with_a_total(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Older")
    add_feedback(app, title="Newer")
    page = page_text(signed_in.get("/"))
    assert page.index("Newer") < page.index("Older")
    assert "2 records" in page


def test_empty_list_says_so(signed_in: FlaskClient) -> None:
    page = page_text(signed_in.get("/"))
    assert "No feedback yet." in page
    assert "0 records" in page


def listed_ids(response: Any) -> list[int]:
    return [int(n) for n in re.findall(r'href="/feedback/(\d+)"', page_text(response))]


@pytest.mark.parametrize(("rows", "pages"), [(50, 1), (51, 2), (100, 2), (101, 3)])
def test_pagination_boundaries(app: Flask, signed_in: FlaskClient, rows: int, pages: int) -> None:
    add_feedback(app, rows)
    seen = []
    for page in range(1, pages + 1):
        response = signed_in.get(f"/?page={page}")
        assert f"Page {page} of {pages}" in page_text(response)
        assert ('rel="next"' in page_text(response)) == (page < pages)
        assert ('rel="prev"' in page_text(response)) == (page > 1)
        seen += listed_ids(response)
    assert len(seen) == rows
    assert seen == sorted(seen, reverse=True)
    assert listed_ids(signed_in.get(f"/?page={pages + 1}")) == []


def test_search_looks_in_title_description_and_customer(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Export is slow")
    add_feedback(app, title="Other", description="the EXPORT button")
    add_feedback(app, title="Third", customer_name="Exporter Inc")
    add_feedback(app, title="Fourth", customer_email="export@example.com")
    add_feedback(app, title="Unrelated")
    response = signed_in.get("/?q=export")
    page = page_text(response)
    assert "4 records matching" in page
    assert "Unrelated" not in page


def test_search_keeps_its_query_across_pages(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, 60, description="needle")
    add_feedback(app, 5)
    page = page_text(signed_in.get("/?q=needle"))
    assert "60 records" in page
    assert "/?q=needle&amp;page=2" in page


@pytest.mark.parametrize(
    "path", ["/feedback/9999999999999999999999999", "/feedback/0", "/?page=4611686018427387904"]
)
def test_ids_and_pages_beyond_what_a_database_keeps_are_404(
    signed_in: FlaskClient, path: str
) -> None:
    assert signed_in.get(path).status_code == 404


def test_a_search_longer_than_200_characters_is_refused(signed_in: FlaskClient) -> None:
    assert signed_in.get("/?q=" + "x" * 200).status_code == 200
    response = signed_in.get("/?q=" + "x" * 201)
    assert response.status_code == 400
    assert "Search for at most 200 characters." in page_text(response)
    assert signed_in.get("/feedback.csv?q=" + "x" * 201).status_code == 400


def test_control_characters_in_web_input_are_dropped_not_stored(
    app: Flask, signed_in: FlaskClient
) -> None:
    form = {"title": "NUL\x00 here", "customer_name": "Ca\x00sey", "description": "a\x00b\nc"}
    response = post(signed_in, "/feedback/new", form)
    assert response.status_code == 302
    (record,) = stored_feedback(app)
    (evidence,) = stored_evidence(app)
    assert (record.title, evidence.customer_name, record.description) == (
        "NUL here",
        "Casey",
        "ab\nc",
    )
    assert signed_in.get("/?q=NUL%00").status_code == 200


@pytest.mark.parametrize("path", ["/feedback/2147483648", "/feedback/%D9%A1"])
def test_ids_beyond_an_integer_column_or_in_other_digits_are_404(
    signed_in: FlaskClient, path: str
) -> None:
    assert signed_in.get(path).status_code == 404


# Demand: one record, many customers.


def backed_by(app: Flask, feedback_id: int, *customers: str, **fields: Any) -> None:
    """Customers (emails) backing a record, as if added from the Inbox or by hand."""
    with app.app_context():
        record = db.session.get(Feedback, feedback_id)
        for email in customers:
            add_evidence(record, customer_email=email, **fields)
        refresh_backing(record)
        db.session.commit()


def test_a_record_shows_how_many_customers_back_it_and_who(
    app: Flask, signed_in: FlaskClient
) -> None:
    (record_id,) = add_feedback(app, title="Dark mode", customer_email="first@example.com")
    backed_by(app, record_id, "second@example.com", "FIRST@Example.com ")  # the first again
    page = page_text(signed_in.get(f"/feedback/{record_id}"))
    assert "2 customers" in page
    assert page.index("second@example.com") < page.index("first@example.com")  # newest first
    listing = page_text(signed_in.get("/"))
    assert re.search(r'<td class="number">2</td>', listing)


def test_adding_by_hand_with_a_customer_makes_the_first_evidence(
    app: Flask, signed_in: FlaskClient
) -> None:
    form = {
        "title": "SSO with Okta",
        "description": "Enterprise plans need it.",
        "customer_name": "Dana Doe",
        "customer_email": "dana@example.com",
        "quote": "We cannot roll out without Okta.",
    }
    response = post(signed_in, "/feedback/new", form)
    assert response.status_code == 302
    (record,) = stored_feedback(app)
    (evidence,) = stored_evidence(app)
    assert (record.title, record.description, record.customer_count, record.workspace_id) == (
        "SSO with Okta",
        "Enterprise plans need it.",
        1,
        None,
    )
    assert (evidence.quote, evidence.source, evidence.created_by_id) == (
        "We cannot roll out without Okta.",
        "web",
        record.created_by_id,
    )
    page = page_text(signed_in.get(response.headers["Location"]))
    assert "We cannot roll out without Okta." in page
    assert "Shown in no Inbox" in page


def test_a_record_made_on_the_web_may_belong_to_a_connected_workspace(
    canvas_app: Flask,
) -> None:
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    page = page_text(browser.get("/feedback/new"))
    assert f'<option value="{WORKSPACE_ID}" selected>Example Co workspace</option>' in page
    post(browser, "/feedback/new", {"title": "Seen in the Inbox", "workspace_id": WORKSPACE_ID})
    response = post(browser, "/feedback/new", {"title": "Not", "workspace_id": "other-ws"})
    assert response.status_code == 400
    assert "Choose a connected workspace, or none." in page_text(response)
    (record,) = stored_feedback(canvas_app)
    assert record.workspace_id == WORKSPACE_ID


def test_removing_evidence_updates_the_count(app: Flask, signed_in: FlaskClient) -> None:
    (record_id,) = add_feedback(app, title="Dark mode", customer_email="a@example.com")
    backed_by(app, record_id, "b@example.com")
    first, _ = stored_evidence(app)
    url = f"/feedback/{record_id}/evidence/{first.id}/delete"
    assert signed_in.post(url).status_code == 400  # no CSRF token
    assert post(signed_in, url).status_code == 302
    assert stored_feedback(app)[0].customer_count == 1
    assert post(signed_in, url).status_code == 404
    assert post(signed_in, f"/feedback/999/evidence/{first.id}/delete").status_code == 404


def test_editing_a_record_changes_its_title_and_details(app: Flask, signed_in: FlaskClient) -> None:
    (record_id,) = add_feedback(app, title="Dark mod")
    assert 'value="Dark mod"' in page_text(signed_in.get(f"/feedback/{record_id}/edit"))
    response = post(signed_in, f"/feedback/{record_id}/edit", {"title": "", "description": "x"})
    assert response.status_code == 400
    assert "A title is required." in page_text(response)
    edit = {"title": "Dark mode", "description": "For the night shift"}
    assert post(signed_in, f"/feedback/{record_id}/edit", edit).status_code == 302
    (record,) = stored_feedback(app)
    assert (record.title, record.description) == ("Dark mode", "For the night shift")
    assert "Dark mode" in page_text(signed_in.get("/?q=dark"))  # the search follows
    assert signed_in.get("/feedback/999/edit").status_code == 404


def test_deleting_a_record_asks_first_then_takes_its_evidence(
    app: Flask, signed_in: FlaskClient
) -> None:
    (record_id,) = add_feedback(app, title="Spam", customer_email="a@example.com")
    page = page_text(signed_in.get(f"/feedback/{record_id}/delete"))
    assert "Delete feedback #" in page
    assert feedback_count(app) == 1
    assert post(signed_in, f"/feedback/{record_id}/delete").status_code == 302
    assert stored_feedback(app) == []
    assert stored_evidence(app) == []
    assert signed_in.get(f"/feedback/{record_id}").status_code == 404
    assert page_text(signed_in.get("/?q=spam")).count("Spam") == 0
    (new_id,) = add_feedback(app, title="After")
    assert new_id > record_id  # an id is never given out again


def test_merging_moves_the_evidence_and_old_links_lead_to_the_target(
    app: Flask, signed_in: FlaskClient
) -> None:
    (target,) = add_feedback(
        app,
        title="CSV export",
        workspace_id=WORKSPACE_ID,
        conversation_id="c1",
        customer_email="a@example.com",
    )
    (duplicate,) = add_feedback(
        app,
        title="Export to CSV",
        workspace_id=WORKSPACE_ID,
        conversation_id="c1",
        customer_email="a@example.com",
    )
    backed_by(app, duplicate, "b@example.com", workspace_id=WORKSPACE_ID, conversation_id="c2")
    page = page_text(signed_in.get(f"/feedback/{duplicate}/merge?into={target}"))
    assert f"Merge #{duplicate} into #{target}?" in page
    assert feedback_count(app) == 2
    response = post(signed_in, f"/feedback/{duplicate}/merge", {"into": str(target)})
    assert response.headers["Location"] == f"/feedback/{target}"
    (record,) = stored_feedback(app)
    assert (record.id, record.customer_count) == (target, 2)
    assert sorted((e.conversation_id, e.customer_email) for e in stored_evidence(app)) == [
        ("c1", "a@example.com"),  # the conversation that backed both is kept once
        ("c2", "b@example.com"),
    ]
    moved = signed_in.get(f"/feedback/{duplicate}")
    assert (moved.status_code, moved.headers["Location"]) == (301, f"/feedback/{target}")
    assert "Export to CSV" not in page_text(signed_in.get("/"))
    assert [row["feedback_id"] for row in export(signed_in)] == [str(target)] * 2


def test_merging_into_a_merged_record_follows_it_and_chains_stay_short(
    app: Flask, signed_in: FlaskClient
) -> None:
    first, second, third = add_feedback(app, 3)
    post(signed_in, f"/feedback/{first}/merge", {"into": str(second)})
    post(signed_in, f"/feedback/{second}/merge", {"into": str(third)})
    for old in (first, second):
        assert signed_in.get(f"/feedback/{old}").headers["Location"] == f"/feedback/{third}"
    response = post(signed_in, f"/feedback/{third}/merge", {"into": str(third)})
    assert "Merge into which record?" in page_text(signed_in.get(response.headers["Location"]))
    assert feedback_count(app) == 1


def test_the_list_sorts_by_most_customers(app: Flask, signed_in: FlaskClient) -> None:
    few, many, none = add_feedback(app, 3)
    backed_by(app, few, "a@example.com")
    backed_by(app, many, "a@example.com", "b@example.com", "c@example.com")
    assert listed_ids(signed_in.get("/?sort=customers")) == [many, few, none]
    assert listed_ids(signed_in.get("/")) == [none, many, few]
    assert listed_ids(signed_in.get("/?sort=nonsense")) == [none, many, few]


# Search: words, in any order, by prefix, accents folded, the title first.


def searched(client: FlaskClient, q: str) -> list[str]:
    page = page_text(client.get("/?" + urlencode({"q": q})))
    return re.findall(r'href="/feedback/\d+">([^<]+)</a>', page)


def test_search_finds_words_in_any_order_and_by_prefix(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="CSV export crashes the reports page")
    add_feedback(app, title="Dark mode")
    for q in ("export csv", "expo", "CRASH report", "csv   EXPORT"):
        assert searched(signed_in, q) == ["CSV export crashes the reports page"], q


def test_search_folds_accents_both_ways(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Café menu in the app")
    add_feedback(app, title="Resume where I left off")
    assert searched(signed_in, "cafe") == ["Café menu in the app"]
    assert searched(signed_in, "résumé") == ["Resume where I left off"]


def test_search_ranks_a_match_in_the_title_first(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Reports page", description="It should export to PDF")
    add_feedback(app, title="Export to PDF")
    add_feedback(app, title="Slow page", customer_name="Pdf Lover")
    assert searched(signed_in, "pdf")[0] == "Export to PDF"
    assert searched(signed_in, "pdf")[1:] == ["Slow page", "Reports page"]  # newest first


def test_search_reads_customers_names_emails_and_words(app: Flask, signed_in: FlaskClient) -> None:
    (record_id,) = add_feedback(app, title="Dark mode")
    backed_by(app, record_id, "zoe@bigcorp.example")
    with app.app_context():
        record = db.session.get(Feedback, record_id)
        add_evidence(record, customer_name="Ångström Ltd", quote="night shift please")
        refresh_backing(record)
        db.session.commit()
    add_feedback(app, title="Unrelated")
    for q in ("bigcorp", "zoe", "angstrom", "night shift"):
        assert searched(signed_in, q) == ["Dark mode"], q


@pytest.mark.parametrize(
    "hostile",
    [
        '"export',
        "export*",
        "-export",
        "export NEAR csv",
        "export OR",
        "(export",
        "csv)",
        "AND",
        "NOT csv",
        "^export",
        "title:export",
        "{title}: x",
        "'",
        "%",
        "\\",
        ":*",
        "&|!",
    ],
)
def test_query_syntax_is_searched_as_words_and_never_raises(
    app: Flask, signed_in: FlaskClient, hostile: str
) -> None:
    add_feedback(app, title="CSV export")
    response = signed_in.get("/?" + urlencode({"q": hostile}))
    assert response.status_code == 200
    words = search_words(hostile)  # its words, without the commonest ("or", "not")
    found = words and all(any(t.startswith(w) for t in ("csv", "export")) for w in words)
    assert searched(signed_in, hostile) == (["CSV export"] if found else [])
    assert signed_in.get("/feedback.csv?" + urlencode({"q": hostile})).status_code == 200


# Export


def export(client: FlaskClient, query: str = "") -> list[dict[str, str]]:
    response = client.get(f"/feedback.csv{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(page_text(response))))


def test_csv_quotes_commas_quotes_and_newlines(app: Flask, signed_in: FlaskClient) -> None:
    tricky = 'Commas, "quotes"\nand a newline'
    add_feedback(app, title="Tricky", description=tricky)
    (row,) = export(signed_in)
    assert row["details"] == tricky
    assert row["title"] == "Tricky"


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)"])
def test_csv_neutralises_formulas(app: Flask, signed_in: FlaskClient, dangerous: str) -> None:
    add_feedback(app, title=dangerous, customer_name=dangerous)
    (row,) = export(signed_in)
    assert row["title"] == "'" + dangerous
    assert row["customer_name"] == "'" + dangerous


def test_csv_holds_provenance_and_conversation_url(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(
        app,
        title="From the Inbox",
        source="intercom",
        workspace_id="abc12def",
        conversation_id="215471234567890",
        contact_id="65f0",
        admin_id="5551234",
        admin_name="Alex Agent",
        admin_email="alex@example.com",
    )
    (row,) = export(signed_in)
    assert row["source"] == "intercom"
    assert row["heard_by"] == "Alex Agent"
    assert row["conversation_url"] == (
        "https://app.intercom.com/a/inbox/abc12def/inbox/conversation/215471234567890"
    )


def test_csv_follows_the_search(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Export is slow")
    add_feedback(app, title="Unrelated")
    assert [row["title"] for row in export(signed_in, "?q=export")] == ["Export is slow"]
    assert len(export(signed_in)) == 2


def test_csv_names_the_source_as_the_list_does(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(
        app,
        title="From the preview",
        source="intercom",
        workspace_id="hedwig-preview",
        conversation_id="1001",
    )
    (row,) = export(signed_in)
    assert row["source"] == "preview"
    assert "preview" in page_text(signed_in.get("/"))


def test_the_export_has_a_row_per_piece_of_evidence_and_per_record_without(
    app: Flask, signed_in: FlaskClient
) -> None:
    backed, alone = add_feedback(app, 2)
    backed_by(
        app,
        backed,
        "a@example.com",
        "=cmd@example.com",
        workspace_id=WORKSPACE_ID,
        conversation_id=None,
        quote="+1 please",
    )
    rows = export(signed_in)
    assert [(row["feedback_id"], row["customer_email"]) for row in rows] == [
        (str(alone), ""),
        (str(backed), "'=cmd@example.com"),
        (str(backed), "a@example.com"),
    ]
    assert rows[1]["customer_count"] == "2"
    assert rows[1]["quote"] == "'+1 please"
    assert list(rows[0]) == list(CSV_COLUMNS)


# --- Connect with Intercom (OAuth), against a stand-in for Intercom on loopback -------------------


def start_connect(client: FlaskClient) -> str:
    """Click Connect with Intercom; return the state Intercom would be handed."""
    response = client.get("/intercom/connect")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "https://intercom.example/oauth"
    )
    query = parse_qs(location.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == ["https://hedwig.example/intercom/callback"]
    return query["state"][0]


def callback(client: FlaskClient, state: str, code: str | None = CODE) -> Any:
    params = {"state": state, **({"code": code} if code is not None else {})}
    return client.get("/intercom/callback?" + urlencode(params))


def connections(app: Flask) -> list[IntercomConnection]:
    with app.app_context():
        return list(db.session.scalars(select(IntercomConnection)))


def test_connect_end_to_end(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    assert "Connect with Intercom" in page_text(agent.get("/"))
    response = callback(agent, start_connect(agent))
    assert response.status_code == 302
    page = page_text(agent.get("/"))
    assert "Connected to Example Co workspace" in page
    assert "Disconnect" in page
    (connection,) = connections(intercom_app)
    assert connection.workspace_id == WORKSPACE_ID
    assert (connection.admin_id, connection.admin_name, connection.admin_email) == (
        "5551234",
        "Alex Agent",
        "alex.agent@example.com",
    )
    with intercom_app.app_context():
        assert connection.token == TOKEN
        assert connection.encrypted_token != TOKEN


def test_code_reaches_intercom_with_its_trailing_equals_intact(
    agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    callback(agent, start_connect(agent))
    token_request = next(req for req, _ in httpserver.log if req.path == "/auth/eagle/token")
    assert token_request.form["code"] == CODE
    assert token_request.mimetype == "application/x-www-form-urlencoded"
    assert token_request.headers["Accept"] == "application/json"


def assert_refused_without_exchange(
    response: Any,
    app: Flask,
    httpserver: HTTPServer,
    message: str = "did not start in this browser",
) -> None:
    assert response.status_code == 400
    assert message in page_text(response)
    assert [req.path for req, _ in httpserver.log if req.path == "/auth/eagle/token"] == []
    assert connections(app) == []


def test_tampered_state_is_refused(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    state = start_connect(agent)
    tampered = state[:-2] + ("AA" if not state.endswith("AA") else "BB")
    assert_refused_without_exchange(callback(agent, tampered), intercom_app, httpserver)


def test_expired_state_is_refused_with_its_own_message(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    serve_intercom(httpserver)
    state = start_connect(agent)
    eleven_minutes_later = time.time() + 11 * 60
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: eleven_minutes_later)
    response = callback(agent, state)
    assert_refused_without_exchange(response, intercom_app, httpserver, "expired")
    assert "within 10 minutes" in page_text(response)


def test_state_works_once(intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer) -> None:
    serve_intercom(httpserver)
    state = start_connect(agent)
    assert callback(agent, state).status_code == 302
    httpserver.clear_log()
    response = callback(agent, state)
    assert response.status_code == 400
    assert [req for req, _ in httpserver.log] == []


def test_replay_with_an_old_copy_of_the_session_cookie_is_refused(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    state = start_connect(agent)
    old_cookie = agent.get_cookie("session").value  # still holds the state's nonce
    assert callback(agent, state).status_code == 302
    httpserver.clear_log()
    agent.set_cookie("session", old_cookie)
    response = callback(agent, state)
    assert response.status_code == 400
    assert [req for req, _ in httpserver.log] == []


def test_state_made_for_another_users_session_is_refused(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    state = start_connect(agent)
    create_user(intercom_app, "mallory@example.com")
    mallory = intercom_app.test_client()
    sign_in(mallory, "mallory@example.com")
    assert_refused_without_exchange(callback(mallory, state), intercom_app, httpserver)


def test_callback_in_a_signed_out_browser_is_refused(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    state = start_connect(agent)
    stranger = intercom_app.test_client()
    assert_refused_without_exchange(callback(stranger, state), intercom_app, httpserver)


def test_denied_authorization_is_explained_and_nothing_is_exchanged(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    state = start_connect(agent)
    response = agent.get("/intercom/callback?" + urlencode({"state": state, "error": "denied"}))
    assert_refused_without_exchange(response, intercom_app, httpserver, "did not grant access")


def slow_answer(request: Request) -> Response:
    time.sleep(2)  # longer than the app's INTERCOM_TIMEOUT of 1 second
    return token_answer(request)


@pytest.mark.parametrize(
    ("token_endpoint", "message"),
    [
        (lambda request: Response('{"type": "error.list"}', 401), "HTTP 401"),
        (lambda request: Response("Internal error", 500), "HTTP 500"),
        (lambda request: Response("<html>not json</html>", 200), "not JSON"),
        (lambda request: Response('["a list"]', 200), "not a JSON object"),
        (lambda request: Response('{"token_type": "Bearer"}', 200), "held no token"),
        (slow_answer, "did not answer"),
    ],
)
def test_failed_token_exchange_explains_and_stores_nothing(
    intercom_app: Flask,
    agent: FlaskClient,
    httpserver: HTTPServer,
    token_endpoint: Any,
    message: str,
) -> None:
    serve_intercom(httpserver, token=token_endpoint)
    response = callback(agent, start_connect(agent))
    assert response.status_code == 502
    assert message in page_text(response)
    assert "Nothing was stored" in page_text(response)
    assert connections(intercom_app) == []
    assert "/me" not in [req.path for req, _ in httpserver.log]


@pytest.mark.parametrize(
    "me_endpoint",
    [
        lambda request: Response('{"type": "error.list"}', 401),
        lambda request: Response('{"type": "admin", "id": "1"}', 200),  # no app.id_code
    ],
)
def test_failed_me_call_stores_nothing(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer, me_endpoint: Any
) -> None:
    serve_intercom(httpserver, me=me_endpoint)
    response = callback(agent, start_connect(agent))
    assert response.status_code == 502
    assert connections(intercom_app) == []


def test_unreachable_intercom_is_explained(tmp_path: Any) -> None:
    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    app = make_app(
        tmp_path,
        INTERCOM_CLIENT_ID=CLIENT_ID,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_API_URL=f"http://127.0.0.1:{closed_port}",
    )
    create_user(app)
    client = app.test_client()
    sign_in(client)
    state = parse_qs(urlsplit(client.get("/intercom/connect").headers["Location"]).query)["state"]
    response = callback(client, state[0])
    assert response.status_code == 502
    assert "could not reach Intercom" in page_text(response)
    assert connections(app) == []


def test_reconnecting_updates_the_workspace_in_place(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    callback(agent, start_connect(agent))
    (first,) = connections(intercom_app)
    renamed = {**ME, "app": {**ME["app"], "name": "Renamed workspace"}}
    httpserver.clear()
    serve_intercom(httpserver, me=lambda request: Response(json.dumps(renamed), 200))
    callback(agent, start_connect(agent))
    (second,) = connections(intercom_app)
    assert second.id == first.id
    assert second.workspace_name == "Renamed workspace"
    assert "Connected to Renamed workspace" in page_text(agent.get("/"))


def test_database_files_and_backups_hold_no_usable_token(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer, tmp_path: Any
) -> None:
    serve_intercom(httpserver)
    callback(agent, start_connect(agent))
    with intercom_app.app_context():
        raw_rows = db.session.execute(sqlalchemy.text("SELECT * FROM intercom_connections"))
        assert TOKEN not in repr(raw_rows.all())
    if is_sqlite(intercom_app):
        backup = tmp_path / "backup.db"
        assert intercom_app.test_cli_runner().invoke(args=["backup", str(backup)]).exit_code == 0
        for path in [*tmp_path.glob("hedwig.db*"), backup]:
            assert TOKEN.encode() not in path.read_bytes()
            assert TOKEN.rstrip("=").encode() not in path.read_bytes()


def test_token_that_no_longer_decrypts_asks_to_reconnect(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer, tmp_path: Any
) -> None:
    serve_intercom(httpserver)
    callback(agent, start_connect(agent))
    (tmp_path / "instance" / "token_key").unlink()  # the key is lost: a new one is made
    restarted = make_app(
        tmp_path,
        DATABASE_URL=intercom_app.config["DATABASE_URL"],
        INTERCOM_CLIENT_ID=CLIENT_ID,
        INTERCOM_CLIENT_SECRET="x",
    )
    client = restarted.test_client()
    sign_in(client)
    response = client.get("/")
    assert response.status_code == 200
    assert "Reconnect" in page_text(response)


def test_secrets_never_reach_logs_pages_or_urls(
    intercom_app: Flask,
    agent: FlaskClient,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = []
    serve_intercom(httpserver)
    response = agent.get("/intercom/connect")
    seen.append(response.headers["Location"])
    state = parse_qs(urlsplit(response.headers["Location"]).query)["state"][0]
    response = callback(agent, state)
    seen += [response.headers["Location"], page_text(agent.get(response.headers["Location"]))]
    # and a failing exchange, whose log line names the failure
    httpserver.clear()
    serve_intercom(httpserver, token=lambda request: Response("no", 500))
    seen.append(page_text(callback(agent, start_connect(agent))))
    assert "HTTP 500" in caplog.text
    for secret in (TOKEN, CODE, CLIENT_SECRET):
        assert secret not in caplog.text
        assert all(secret not in text for text in seen)


def test_disconnect_forgets_the_token(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    callback(agent, start_connect(agent))
    (connection,) = connections(intercom_app)
    assert (
        agent.post("/intercom/disconnect", data={"connection_id": connection.id}).status_code == 400
    )
    assert len(connections(intercom_app)) == 1
    response = post(agent, "/intercom/disconnect", {"connection_id": str(connection.id)})
    assert response.status_code == 302
    assert connections(intercom_app) == []
    assert "Connect with Intercom" in page_text(agent.get("/"))
    assert post(agent, "/intercom/disconnect", {"connection_id": "999"}).status_code == 404


def test_connect_without_credentials_says_which_settings_to_set(signed_in: FlaskClient) -> None:
    page = page_text(signed_in.get("/"))
    assert "HEDWIG_INTERCOM_CLIENT_ID" in page
    assert "HEDWIG_INTERCOM_CLIENT_SECRET" in page
    response = signed_in.get("/intercom/connect")
    assert response.status_code == 503
    assert "HEDWIG_INTERCOM_CLIENT_SECRET" in page_text(response)


def test_intercom_redirects_are_never_followed(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    stolen = httpserver.url_for("/elsewhere")
    httpserver.expect_request("/auth/eagle/token").respond_with_response(
        Response(status=307, headers={"Location": stolen})
    )
    httpserver.expect_request("/elsewhere").respond_with_data("{}")
    response = callback(agent, start_connect(agent))
    assert response.status_code == 502
    assert "HTTP 307" in page_text(response)
    assert [req.path for req, _ in httpserver.log] == ["/auth/eagle/token"]
    assert connections(intercom_app) == []


def test_a_workspace_id_too_long_to_be_real_is_refused(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    long_id = {**ME, "app": {**ME["app"], "id_code": "w" * 500}}
    serve_intercom(httpserver, me=lambda request: Response(json.dumps(long_id), 200))
    response = callback(agent, start_connect(agent))
    assert response.status_code == 502
    assert "named no workspace" in page_text(response)
    assert connections(intercom_app) == []


def test_disconnecting_an_id_beyond_what_a_database_keeps_is_404(agent: FlaskClient) -> None:
    response = post(agent, "/intercom/disconnect", {"connection_id": "9" * 30})
    assert response.status_code == 404


# Connect with an access token: a private app's way in.


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


@pytest.fixture
def teammate(private_app: Flask) -> FlaskClient:
    return signed_in_browser(private_app)


def paste_token(client: FlaskClient, token: str = TOKEN) -> Any:
    return post(client, "/intercom/connect/token", {"access_token": token})


def test_a_private_apps_access_token_connects_its_workspace(
    private_app: Flask, teammate: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    nav = page_text(teammate.get("/"))
    assert 'href="/intercom/connect/token"' in nav
    assert "Connect with Intercom" not in nav  # no client id: OAuth is not offered
    response = paste_token(teammate, f"  {TOKEN}\n")
    assert response.status_code == 302
    assert "Connected to Example Co workspace" in page_text(teammate.get("/"))
    (connection,) = connections(private_app)
    assert (connection.workspace_id, connection.region, connection.admin_id) == (
        WORKSPACE_ID,
        "us",
        "5551234",
    )
    with private_app.app_context():
        assert connection.token == TOKEN
    (me,) = [req for req, _ in httpserver.log if req.path == "/me"]
    assert me.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_new_token_for_a_connected_workspace_updates_it_in_place(
    private_app: Flask, teammate: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    paste_token(teammate)
    (first,) = connections(private_app)
    httpserver.clear()
    renamed = {**ME, "app": {**ME["app"], "name": "Renamed"}}
    httpserver.expect_request("/me").respond_with_json(renamed)
    paste_token(teammate, "another-token-0123456789")
    (second,) = connections(private_app)
    assert (second.id, second.workspace_name) == (first.id, "Renamed")
    with private_app.app_context():
        assert second.token == "another-token-0123456789"


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Response('{"type": "error.list"}', 401), "HTTP 401: it no longer accepts this token"),
        (Response('{"type": "error.list"}', 403), "HTTP 403: the app lacks a permission"),
        (Response("upstream broke", 503), "HTTP 503: it had a problem"),
        (Response("<html>not json</html>", 200), "was not JSON"),
        (Response('{"type": "admin", "id": "1"}', 200), "named no workspace"),
    ],
    ids=["refused", "permission missing", "intercom down", "garbage", "no workspace"],
)
def test_a_token_intercom_does_not_vouch_for_stores_nothing(
    private_app: Flask,
    teammate: FlaskClient,
    httpserver: HTTPServer,
    caplog: pytest.LogCaptureFixture,
    answer: Response,
    message: str,
) -> None:
    httpserver.expect_request("/me").respond_with_response(answer)
    response = paste_token(teammate, "tok_wrong_0123456789")
    assert response.status_code == 502
    assert message in page_text(response)
    assert "Nothing was stored" in page_text(response)
    assert connections(private_app) == []
    for text in (page_text(response), caplog.text, response.headers.get("Location", "")):
        assert "tok_wrong_0123456789" not in text


@pytest.mark.parametrize("pasted", ["", "   ", "two words", "x" * 513, "tab\there"])
def test_something_that_is_not_a_token_is_refused_before_asking_intercom(
    private_app: Flask, teammate: FlaskClient, httpserver: HTTPServer, pasted: str
) -> None:
    response = paste_token(teammate, pasted)
    assert response.status_code == 400
    assert "Paste the access token Intercom shows for your app" in page_text(response)
    assert httpserver.log == []
    assert connections(private_app) == []


def test_the_token_form_needs_sign_in_a_csrf_token_and_a_client_secret(
    private_app: Flask, teammate: FlaskClient, tmp_path: Any, httpserver: HTTPServer
) -> None:
    stranger = private_app.test_client()
    assert stranger.post("/intercom/connect/token", data={"access_token": TOKEN}).status_code in (
        302,
        400,
    )
    assert teammate.post("/intercom/connect/token", data={"access_token": TOKEN}).status_code == 400
    unconfigured = make_app(tmp_path / "other")
    create_user(unconfigured)
    browser = unconfigured.test_client()
    sign_in(browser)
    response = paste_token(browser)
    assert response.status_code == 503
    assert "HEDWIG_INTERCOM_CLIENT_SECRET" in page_text(response)
    assert httpserver.log == []


# Regions: each workspace's API calls and links go to its region's hosts.


@pytest.fixture
def regional_intercom() -> Iterator[dict[str, HTTPServer]]:
    """A stand-in for Intercom's API host in each region, on loopback."""
    servers = {region: HTTPServer(host="127.0.0.1", port=0) for region in ("us", "eu", "au")}
    for server in servers.values():
        server.start()
    yield servers
    for server in servers.values():
        server.clear()
        server.stop()


@pytest.fixture
def regional_app(
    tmp_path: Any, database_url: str, regional_intercom: dict[str, HTTPServer]
) -> Flask:
    regions = {
        region: {"api": server.url_for("/").rstrip("/"), "web": f"https://app.{region}.example"}
        for region, server in regional_intercom.items()
    }
    return make_app(
        tmp_path,
        DATABASE_URL=database_url,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_REGIONS=regions,
        INTERCOM_TIMEOUT=1,
    )


@pytest.mark.parametrize(("said", "region"), [("US", "us"), ("EU", "eu"), ("AU", "au")])
def test_each_regions_workspace_is_called_and_linked_on_its_own_hosts(
    regional_app: Flask, regional_intercom: dict[str, HTTPServer], said: str, region: str
) -> None:
    me = {**ME, "app": {**ME["app"], "region": said}}
    regional_intercom["us"].expect_request("/me").respond_with_json(me)  # US routes /me
    regional_intercom[region].expect_request("/auth/uninstall", method="POST").respond_with_json({})
    create_user(regional_app)
    browser = regional_app.test_client()
    sign_in(browser)
    paste_token(browser)
    (connection,) = connections(regional_app)
    assert connection.region == region

    inbox = Inbox(regional_app)
    inbox.save("Heard here", payload={**INITIALIZE, "workspace_region": said.lower()})
    (record,) = stored_feedback(regional_app)
    page = page_text(browser.get(f"/feedback/{record.id}"))
    assert (
        f'href="https://app.{region}.example/a/inbox/{WORKSPACE_ID}/inbox/conversation/'
        f'{CONVERSATION_ID}"' in page
    )

    post(browser, "/intercom/disconnect", {"connection_id": str(connection.id)})
    (uninstall,) = [
        req for req, _ in regional_intercom[region].log if req.path == "/auth/uninstall"
    ]
    assert uninstall.headers["Authorization"] == f"Bearer {TOKEN}"
    others = [name for name in regional_intercom if name not in (region, "us")]
    assert all(regional_intercom[name].log == [] for name in others)


def test_an_unknown_region_uses_the_us_hosts_and_says_so_in_the_log(
    regional_app: Flask,
    regional_intercom: dict[str, HTTPServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    me = {**ME, "app": {**ME["app"], "region": "Mars"}}
    regional_intercom["us"].expect_request("/me").respond_with_json(me)
    create_user(regional_app)
    browser = regional_app.test_client()
    sign_in(browser)
    paste_token(browser)
    (connection,) = connections(regional_app)
    assert connection.region == "us"
    assert "Unknown Intercom region 'mars': using the US hosts" in caplog.text


def test_hedwig_intercom_api_url_replaces_every_regions_api_host(
    tmp_path: Any, httpserver: HTTPServer
) -> None:
    app = make_app(
        tmp_path,
        INTERCOM_CLIENT_SECRET=CLIENT_SECRET,
        INTERCOM_API_URL=httpserver.url_for("/"),
    )
    with app.app_context():
        for region in ("us", "eu", "au"):
            assert intercom_api_url(region) == httpserver.url_for("/").rstrip("/")


# Disconnect: Hedwig forgets the token, and asks Intercom to revoke it.


def test_disconnect_revokes_the_token_at_intercom(
    private_app: Flask, teammate: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    httpserver.expect_request("/auth/uninstall", method="POST").respond_with_data("", 200)
    paste_token(teammate)
    (connection,) = connections(private_app)
    response = post(teammate, "/intercom/disconnect", {"connection_id": str(connection.id)})
    assert response.status_code == 302
    assert "Intercom revoked its token, and Hedwig forgot it." in page_text(teammate.get("/"))
    assert connections(private_app) == []


def test_disconnect_forgets_the_token_even_when_intercom_cannot_revoke_it(
    private_app: Flask, teammate: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    httpserver.expect_request("/auth/uninstall").respond_with_data("down", 500)
    paste_token(teammate)
    (connection,) = connections(private_app)
    post(teammate, "/intercom/disconnect", {"connection_id": str(connection.id)})
    page = page_text(teammate.get("/"))
    assert "Hedwig forgot its token, but Intercom did not revoke it" in page
    assert "HTTP 500" in page
    assert "Uninstall app" in page
    assert connections(private_app) == []


# --- The Inbox app (Canvas Kit) -------------------------------------------------------------------


FORGED_SAVE = {
    **INITIALIZE,
    "component_id": "save",
    "input_values": {"title": "Forged"},
    "current_canvas": {"stored_data": {"nonce": "forged-form-nonce-0123456789"}},
}


@pytest.mark.parametrize(
    "forge",
    [
        lambda body: {},
        lambda body: {"X-Body-Signature": ""},
        lambda body: {"X-Body-Signature": "not-hex-at-all"},
        lambda body: {"X-Body-Signature": "0" * 64},
        lambda body: {"X-Body-Signature": "a" * 40},  # the SHA-1 length of the docs' example
        lambda body: {"X-Body-Signature": "sha256=" + sign(body)},
        lambda body: {"X-Body-Signature": sign(body, "another-secret")},
        lambda body: {"X-Body-Signature": sign(body).upper()},
        lambda body: {"X-Body-Signature": sign(body.replace(b"Casey", b"Carol"))},  # altered
    ],
    ids=[
        "unsigned",
        "empty",
        "not hex",
        "zeros",
        "sha1 length",
        "prefixed",
        "another secret",
        "upper case",
        "body altered after signing",
    ],
)
def test_canvas_requests_not_signed_by_intercom_are_401_and_store_nothing(
    canvas_app: Flask, inbox: Inbox, forge: Any
) -> None:
    for endpoint, payload in (("initialize", INITIALIZE), ("submit", FORGED_SAVE)):
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **forge(body)}
        response = inbox.client.post(f"/intercom/canvas/{endpoint}", data=body, headers=headers)
        assert response.status_code == 401
        assert response.json == {"error": "The request's X-Body-Signature does not match its body."}
    assert stored_feedback(canvas_app) == []


def test_canvas_requests_without_a_configured_secret_are_503(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(tmp_path).test_client()
    body = json.dumps(INITIALIZE).encode()
    response = client.post(
        "/intercom/canvas/initialize", data=body, headers={"X-Body-Signature": sign(body)}
    )
    assert response.status_code == 503
    assert "HEDWIG_INTERCOM_CLIENT_SECRET is not set" in caplog.text


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b'"text"', b"\xff\xfe", b"[" * 5000])
def test_canvas_body_that_is_not_a_json_object_is_400(inbox: Inbox, body: bytes) -> None:
    assert inbox.send("initialize", body).status_code == 400
    assert inbox.send("submit", body).status_code == 400


def test_oversized_canvas_body_is_413(canvas_app: Flask, inbox: Inbox) -> None:
    payload = {**INITIALIZE, "padding": "x" * canvas_app.config["CANVAS_MAX_CONTENT_LENGTH"]}
    assert inbox.send("initialize", payload).status_code == 413
    assert inbox.send("submit", {**payload, "component_id": "save"}).status_code == 413
    assert stored_feedback(canvas_app) == []


def test_unknown_workspace_gets_a_connect_canvas_and_nothing_is_stored(
    canvas_app: Flask, inbox: Inbox
) -> None:
    components = inbox.initialize(workspace_id="unknown1")
    assert "not connected to Hedwig yet" in texts(components)[0]
    (connect,) = [c for c in components if c["type"] == "button"]
    assert connect["action"] == {"type": "url", "url": "https://hedwig.example/intercom/connect"}
    body = inbox.click("save", None, {"title": "Lost"}, payload={**INITIALIZE, "workspace_id": "x"})
    assert "not connected to Hedwig yet" in texts(body)[0]
    assert stored_feedback(canvas_app) == []


def test_first_canvas_without_history_has_an_empty_state_and_a_record_button(
    inbox: Inbox,
) -> None:
    components = inbox.initialize()
    assert "Nothing recorded from this conversation yet." in texts(components)
    (record,) = [c for c in components if c["type"] == "button"]
    assert (record["id"], record["label"], record["style"]) == (
        "record",
        "Record feedback",
        "secondary",
    )
    assert not [c for c in components if c["type"] == "list"]


def test_first_canvas_lists_this_conversations_newest_three_and_counts_the_rest(
    canvas_app: Flask, inbox: Inbox
) -> None:
    ids = add_feedback(
        canvas_app,
        5,
        workspace_id=WORKSPACE_ID,
        conversation_id=CONVERSATION_ID,
        source="intercom",
    )
    components = inbox.initialize()
    (listing,) = [c for c in components if c["type"] == "list"]
    assert [item["id"] for item in listing["items"]] == [f"feedback-{n}" for n in ids[:1:-1]]
    assert listing["items"][0]["action"] == {
        "type": "url",
        "url": f"https://hedwig.example/feedback/{ids[-1]}",
    }
    assert "+2 more in Hedwig" in texts(components)


def test_first_canvas_shows_the_customers_feedback_from_elsewhere(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(
        canvas_app,
        title="Asked before",
        workspace_id=WORKSPACE_ID,
        conversation_id="999",
        contact_id=CONTACT_ID,
    )
    add_feedback(
        canvas_app,
        title="Told us by email",
        workspace_id=WORKSPACE_ID,
        contact_id="an-earlier-lead",
        customer_email="casey.customer@example.com",
    )
    add_feedback(canvas_app, title="Someone else", workspace_id=WORKSPACE_ID, contact_id="other")
    components = inbox.initialize()
    assert "More from Casey Customer" in texts(components)
    (listing,) = [c for c in components if c["type"] == "list"]
    assert [item["title"] for item in listing["items"]] == ["Told us by email", "Asked before"]
    assert "Nothing recorded from this conversation yet." in texts(components)


def test_a_canvas_shows_only_its_own_workspaces_records(canvas_app: Flask, inbox: Inbox) -> None:
    """A Messenger visitor can claim any email: another workspace's records about that
    address must not show. Records added by hand on the web belong to no workspace, and the
    Inbox sidebar is seen by every teammate of a workspace, so no canvas shows them either."""
    victim = {"customer_email": "casey.customer@example.com", "conversation_id": "777"}
    add_feedback(canvas_app, title="Workspace B's secret", workspace_id="other-ws", **victim)
    add_feedback(canvas_app, title="Added by hand", **victim)
    add_feedback(canvas_app, title="B's contact", workspace_id="other-ws", contact_id=CONTACT_ID)
    components = inbox.initialize()
    assert not [c for c in components if c["type"] == "list"]
    assert not any(line.startswith("More from") for line in texts(components))


def test_first_canvas_stays_within_400px_with_a_long_history(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, 20, workspace_id=WORKSPACE_ID, conversation_id=CONVERSATION_ID)
    add_feedback(canvas_app, 20, workspace_id=WORKSPACE_ID, contact_id=CONTACT_ID)
    components = inbox.initialize()  # checks the height and the absence of a primary button
    assert sum(len(c["items"]) for c in components if c["type"] == "list") == 6
    assert texts(components).count("+17 more in Hedwig") == 2


def test_form_is_prefilled_with_the_customers_opening_message(inbox: Inbox) -> None:
    form = inbox.form()
    assert component(form, "quote")["value"] == (
        "Hi! The CSV export button crashes the page every time I click it."
    )
    # The title starts as what was searched for: the first words of the message.
    assert component(form, "title")["value"] == (
        "Hi! The CSV export button crashes the page every time I"
    )
    assert "From Casey Customer · casey.customer@example.com" in texts(form)
    assert component(form, "save")["style"] == "primary"
    assert component(form, "find")["style"] == "link"  # Back, to the search
    stored = form["canvas"]["stored_data"]
    assert set(stored) == {"nonce", "query"}
    assert len(json.dumps(stored)) < 200


def test_html_in_the_customers_message_becomes_plain_text(inbox: Inbox) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"]["body"] = (
        "<p>Use <b>bold</b> &amp; <a href='https://x.example'>links</a>"
        "<script>alert(1)</script></p><p>Second&nbsp;line &lt;tag&gt;</p>"
    )
    value = component(inbox.form(payload), "quote")["value"]
    assert value == "Use bold & links\nSecond line <tag>"


def test_back_returns_to_the_first_canvas(inbox: Inbox) -> None:
    search = inbox.click("find", inbox.form())
    assert component(search, "query")["type"] == "input"
    body = inbox.click("back", search)
    assert "Nothing recorded from this conversation yet." in texts(body)


def test_saving_stores_the_feedback_with_its_provenance(canvas_app: Flask, inbox: Inbox) -> None:
    saved = inbox.save("CSV export crashes", "Every time, in Chrome.")
    (record,) = stored_feedback(canvas_app)
    assert f"Feedback #{record.id} saved" in texts(saved)
    assert component(saved, "open")["action"] == {
        "type": "url",
        "url": f"https://hedwig.example/feedback/{record.id}",
    }
    assert component(saved, "another")["style"] == "link"
    assert component(saved, "done")["style"] == "link"
    assert (record.title, record.source, record.workspace_id, record.customer_count) == (
        "CSV export crashes",
        "intercom",
        WORKSPACE_ID,
        1,
    )
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.feedback_id, evidence.quote, evidence.source) == (
        record.id,
        "Every time, in Chrome.",
        "intercom",
    )
    assert (evidence.workspace_id, evidence.conversation_id, evidence.contact_id) == (
        WORKSPACE_ID,
        CONVERSATION_ID,
        CONTACT_ID,
    )
    assert (evidence.customer_name, evidence.customer_email) == (
        "Casey Customer",
        "casey.customer@example.com",
    )
    assert (evidence.admin_id, evidence.admin_name, evidence.admin_email) == (
        "5551234",
        "Alex Agent",
        "alex.agent@example.com",
    )
    assert (record.created_by_id, evidence.created_by_id) == (None, None)


def test_saved_feedback_shows_on_the_first_canvas_and_links_to_the_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("Dark mode")
    components = inbox.initialize()
    (listing,) = [c for c in components if c["type"] == "list"]
    assert listing["items"][0]["title"] == "Dark mode"
    (record,) = stored_feedback(canvas_app)
    browser = canvas_app.test_client()
    create_user(canvas_app)
    sign_in(browser)
    page = page_text(browser.get(f"/feedback/{record.id}"))
    assert (
        'href="https://app.intercom.com/a/inbox/abc12def/inbox/conversation/215471234567890"'
        in page
    )
    assert "Alex Agent" in page


@pytest.mark.parametrize(
    ("title", "description", "message", "failed"),
    [
        ("", "Kept details", "A title is required.", "title"),
        ("   ", "Kept details", "A title is required.", "title"),
        ("x" * 201, "Kept details", "200 characters", "title"),
        ("Fine title", "y" * 10_001, "10000 characters", "quote"),
    ],
)
def test_invalid_submit_shows_the_form_again_and_stores_nothing(
    canvas_app: Flask, inbox: Inbox, title: str, description: str, message: str, failed: str
) -> None:
    form = inbox.form()
    body = inbox.click("save", form, {"title": title, "quote": description})
    assert any(message in line for line in texts(body))
    assert any(
        c["style"] == "error"
        for c in body["canvas"]["content"]["components"]
        if c["type"] == "text"
    )
    assert component(body, "title").get("save_state") == ("failed" if failed == "title" else None)
    assert component(body, "quote")["error"] is (failed == "quote")
    assert component(body, "title")["value"] == title.strip()[:200]
    assert component(body, "quote")["value"].startswith(description[:100])
    assert stored_feedback(canvas_app) == []


def test_double_submit_stores_one_record_and_answers_alike(canvas_app: Flask, inbox: Inbox) -> None:
    form = inbox.form()
    first = inbox.click("save", form, {"title": "Once only"})
    second = inbox.click("save", form, {"title": "Once only"})
    assert first == second
    assert len(stored_feedback(canvas_app)) == 1
    assert component(first, "another")["label"] == "Record another"
    next_form = inbox.click("new", inbox.click("another", first))
    assert next_form["canvas"]["stored_data"]["nonce"] != form["canvas"]["stored_data"]["nonce"]
    third = inbox.click("save", next_form, {"title": "A new one"})
    assert third != first
    assert len(stored_feedback(canvas_app)) == 2


def test_submit_without_the_forms_nonce_stores_nothing(canvas_app: Flask, inbox: Inbox) -> None:
    body = inbox.click("save", None, {"title": "No form before"})
    assert "This form has expired. Check the details and save again." in texts(body)
    assert component(body, "title")["value"] == "No form before"
    assert stored_feedback(canvas_app) == []


def test_legacy_customer_key_is_read(canvas_app: Flask, inbox: Inbox) -> None:
    legacy = {key: value for key, value in INITIALIZE.items() if key != "contact"}
    legacy["customer"] = {"type": "user", "id": "legacy-1", "name": "Lee Legacy", "email": None}
    inbox.initialize(legacy)
    inbox.save("From an older app", payload=legacy)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.contact_id, evidence.customer_name) == ("legacy-1", "Lee Legacy")


def test_payload_without_context_uses_the_conversation(canvas_app: Flask, inbox: Inbox) -> None:
    without_context = {key: value for key, value in INITIALIZE.items() if key != "context"}
    inbox.initialize(without_context)
    inbox.save("No context", payload=without_context)
    assert stored_evidence(canvas_app)[0].conversation_id == CONVERSATION_ID


def test_payload_without_conversation_uses_the_context(canvas_app: Flask, inbox: Inbox) -> None:
    without_conversation = {k: v for k, v in INITIALIZE.items() if k != "conversation"}
    inbox.initialize(without_conversation)
    form = inbox.form(without_conversation)
    assert component(form, "quote")["value"] == ""
    inbox.click("save", form, {"title": "Integer id"}, payload=without_conversation)
    assert stored_evidence(canvas_app)[0].conversation_id == CONVERSATION_ID


def test_bare_payload_still_records_feedback(canvas_app: Flask, inbox: Inbox) -> None:
    bare = {"workspace_id": WORKSPACE_ID, "contact": None, "admin": None, "conversation": None}
    inbox.initialize(bare)
    inbox.save("Hardly anything known", payload=bare)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.conversation_id, evidence.customer_name, evidence.admin_id) == (None, "", None)
    assert stored_feedback(canvas_app)[0].customer_count == 0  # no one known backs it


def test_oversized_field_values_stay_within_canvas_limits(canvas_app: Flask, inbox: Inbox) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["contact"]["name"] = "N" * 5000
    payload["contact"]["id"] = "i" * 500
    payload["conversation"]["source"]["body"] = "<p>" + "😀" * 20_000 + "</p>"
    form = inbox.form(payload)  # the validator checks the 64 KB caps
    assert len(component(form, "quote")["value"]) == 10_000
    body = inbox.click(
        "save", form, {"title": "t" * 100_000, "quote": "😀" * 30_000}, payload=payload
    )
    assert component(body, "title")["save_state"] == "failed"
    assert stored_feedback(canvas_app) == []
    inbox.save("Long name", payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert evidence.customer_name == "N" * 255
    assert evidence.contact_id is None  # an id too long to be real is not kept


def test_markdown_in_customer_names_is_not_rendered(canvas_app: Flask, inbox: Inbox) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["contact"]["name"] = "[Click me](https://evil.example)"
    form = inbox.form(payload)
    assert "From \\[Click me\\](https://evil.example)" in texts(form)[1]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
canvas_keys = st.sampled_from(
    [
        "workspace_id",
        "admin",
        "conversation",
        "contact",
        "customer",
        "context",
        "component_id",
        "input_values",
        "current_canvas",
    ]
)
canvas_payloads = st.one_of(
    json_values,
    st.dictionaries(canvas_keys, json_values, max_size=9).map(
        lambda d: {**d, "workspace_id": WORKSPACE_ID}
    ),
    st.builds(
        lambda component_id, inputs, nonce, drop: {
            **{k: v for k, v in INITIALIZE.items() if k not in drop},
            "component_id": component_id,
            "input_values": inputs,
            "current_canvas": {"stored_data": {"nonce": nonce}},
        },
        st.sampled_from(["save", "record", "another", "back", "done", "x"]) | json_values,
        st.dictionaries(st.sampled_from(["title", "description"]), json_values),
        st.text(min_size=16, max_size=70) | json_values,
        st.sets(canvas_keys),
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=canvas_payloads, endpoint=st.sampled_from(["initialize", "submit"]))
def test_any_signed_json_gets_a_canvas_or_a_4xx_never_a_500(
    inbox: Inbox, payload: Any, endpoint: str
) -> None:
    response = inbox.send(endpoint, payload)
    assert response.status_code == 200 or 400 <= response.status_code < 500
    if response.status_code == 200:
        assert_valid_canvas(response.json)


BODY = b'{"workspace_id": "abc12def"}'


@settings(max_examples=200)
@given(body=st.binary(max_size=200), signature=st.none() | st.text(max_size=80))
@example(body=BODY, signature=None)
@example(body=BODY, signature=sign(BODY + b" "))
@example(body=BODY, signature=sign(BODY, CLIENT_SECRET + "x"))
def test_verify_accepts_nothing_but_the_hmac(body: bytes, signature: str | None) -> None:
    expected = sign(body)
    assert verify_canvas_signature(body, signature, CLIENT_SECRET) == (signature == expected)
    assert verify_canvas_signature(body, expected, CLIENT_SECRET)


def test_a_chunked_body_over_the_limit_is_413(canvas_app: Flask, inbox: Inbox) -> None:
    padding = "x" * canvas_app.config["CANVAS_MAX_CONTENT_LENGTH"]
    body = json.dumps({**INITIALIZE, "padding": padding}).encode()
    response = inbox.client.post(
        "/intercom/canvas/initialize",
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "X-Body-Signature": sign(body)},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_a_signed_chunked_body_within_the_limit_is_read_whole(inbox: Inbox) -> None:
    body = json.dumps(INITIALIZE).encode()
    response = inbox.client.post(
        "/intercom/canvas/initialize",
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "X-Body-Signature": sign(body)},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200


def test_a_form_nonce_spent_in_another_workspace_gives_the_form_again(
    canvas_app: Flask, inbox: Inbox
) -> None:
    with canvas_app.app_context():
        other = IntercomConnection(workspace_id="other-ws", workspace_name="Other")
        other.token = TOKEN
        db.session.add(other)
        db.session.commit()
    form = inbox.form()
    inbox.click("save", form, {"title": "Saved in A"})
    in_b = {**INITIALIZE, "workspace_id": "other-ws"}
    body = inbox.click("save", form, {"title": "Replayed in B"}, payload=in_b)
    assert "This form has expired. Check the details and save again." in texts(body)
    assert component(body, "title")["value"] == "Replayed in B"
    assert [r.title for r in stored_feedback(canvas_app)] == ["Saved in A"]


def test_lone_surrogates_and_control_characters_in_a_canvas_request_are_dropped(
    canvas_app: Flask, inbox: Inbox
) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["contact"]["name"] = "Casey\ud800 \x00Customer"
    payload["conversation"]["id"] = "2154\x0071"
    payload["conversation"]["source"]["body"] = "<p>Hi\ud800\x00 there</p>"
    inbox.initialize(payload)
    form = inbox.form(payload)
    assert component(form, "quote")["value"] == "Hi there"
    inbox.click("save", form, {"title": "Odd\ud800 title\x00"}, payload=payload)
    (record,) = stored_feedback(canvas_app)
    (evidence,) = stored_evidence(canvas_app)
    assert (record.title, evidence.customer_name, evidence.conversation_id) == (
        "Odd title",
        "Casey Customer",
        "215471",
    )


@pytest.mark.parametrize(
    "hostile",
    ["<a " * 350_000, "<!--" * 260_000, "<" + "a" * 1_048_576, "&#" * 520_000, "<p " * 350_000],
    ids=["unclosed tags", "unclosed comments", "one endless tag", "entity starts", "paragraphs"],
)
def test_a_megabyte_of_hostile_html_becomes_bounded_text(hostile: str) -> None:
    """CPython's html.parser takes quadratic time on such input (CVE-2025-6069); the form needs
    only the first part of a message, read in one linear pass (timed in make bench)."""
    text = html_to_text("<p>Hello <b>there</b></p>" + hostile)
    assert text.startswith("Hello there")
    assert len(text) <= HTML_READ_MAX


def test_a_workspace_that_is_not_connected_is_sent_where_this_hedwig_connects(
    private_app: Flask, canvas_app: Flask
) -> None:
    """The canvas points to OAuth when the app's client id is set, else to the token form."""
    for app, path in ((private_app, "/intercom/connect/token"), (canvas_app, "/intercom/connect")):
        components = Inbox(app).initialize(workspace_id="not-connected")
        (connect,) = [c for c in components if c["type"] == "button"]
        assert connect["action"] == {"type": "url", "url": f"https://hedwig.example{path}"}


def teammate_started(**conversation: Any) -> dict[str, Any]:
    """A conversation a teammate started: its source is the teammate's message."""
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"] = {
        "type": "conversation",
        "delivered_as": "admin_initiated",
        "body": "<p>Hi Casey, how is the new dashboard working for you?</p>",
        "author": {"type": "admin", "id": "5551234", "name": "Alex Agent", "email": "a@x.example"},
    }
    payload["conversation"].update(conversation)
    return payload


def test_in_a_conversation_a_teammate_started_the_customer_is_still_the_contact(
    canvas_app: Flask, inbox: Inbox
) -> None:
    parts = {
        "type": "conversation_part.list",
        "conversation_parts": [
            {"part_type": "comment", "body": "<p>Ping?</p>", "author": {"type": "admin"}},
            {
                "part_type": "comment",
                "body": "<p>Great, but I need a dark mode.</p>",
                "author": {"type": "user", "id": CONTACT_ID, "name": "Casey Customer"},
            },
        ],
    }
    payload = teammate_started(conversation_parts=parts)
    form = inbox.form(payload)
    assert component(form, "quote")["value"] == "Great, but I need a dark mode."
    assert "From Casey Customer · casey.customer@example.com" in texts(form)
    inbox.click("save", form, {"title": "Dark mode"}, payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.customer_name, evidence.contact_id) == ("Casey Customer", CONTACT_ID)


def test_a_teammates_words_are_never_prefilled_as_the_customers(
    canvas_app: Flask, inbox: Inbox
) -> None:
    payload = teammate_started()
    del payload["contact"]
    form = inbox.form(payload)
    assert component(form, "quote")["value"] == ""
    assert "Customer unknown" in texts(form)
    inbox.click("save", form, {"title": "Asked on a call"}, payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.customer_name, evidence.customer_email) == ("", "")


def test_a_conversation_with_500_parts_is_answered(canvas_app: Flask, inbox: Inbox) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    part = {
        "type": "conversation_part",
        "part_type": "comment",
        "body": "<p>" + "A long message about exports. " * 100 + "</p>",
        "author": {"type": "admin", "id": "5551234", "name": "Alex Agent"},
    }
    payload["conversation"]["conversation_parts"] = {
        "type": "conversation_part.list",
        "conversation_parts": [part] * 500,
        "total_count": 500,
    }
    assert len(json.dumps(payload)) > 1024 * 1024  # more than a form may send
    inbox.initialize(payload)
    form = inbox.form(payload)
    assert component(form, "quote")["value"].startswith("Hi! The CSV export button")


def test_web_forms_keep_their_own_smaller_limit(app: Flask, signed_in: FlaskClient) -> None:
    response = post(signed_in, "/feedback/new", {"title": "Big", "description": "x" * 300_000})
    assert response.status_code == 413
    assert feedback_count(app) == 0


@pytest.mark.parametrize(
    "nonce", ["\ud800" * 20, "\x00" * 20, " " * 20, "nonce with spaces in it", "ok" * 40]
)
def test_a_form_nonce_of_the_wrong_shape_gives_the_form_again(
    canvas_app: Flask, inbox: Inbox, nonce: str
) -> None:
    body = inbox.click("save", {"canvas": {"stored_data": {"nonce": nonce}}}, {"title": "Odd"})
    assert "This form has expired. Check the details and save again." in texts(body)
    assert stored_feedback(canvas_app) == []


# Find before you create: the Inbox searches the log, and adds a customer to a match.


OTHER_CUSTOMER = {
    **INITIALIZE,
    "conversation": {**INITIALIZE["conversation"], "id": "300000000000001"},
    "contact": {
        **INITIALIZE["contact"],
        "id": "dana-contact",
        "name": "Dana Doe",
        "email": "dana@example.com",
    },
}


def test_record_feedback_searches_first_prefilled_from_the_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    (match,) = add_feedback(canvas_app, title="CSV export crashes", workspace_id=WORKSPACE_ID)
    add_feedback(canvas_app, title="Export from the reports page", workspace_id=WORKSPACE_ID)
    add_feedback(canvas_app, title="CSV export, but elsewhere", workspace_id="other-ws")
    add_feedback(canvas_app, title="CSV export, added by hand")
    find = inbox.find()
    assert component(find, "query")["value"] == (
        "Hi! The CSV export button crashes the page every time I"
    )
    assert component(find, "query")["action"] == {"type": "submit"}
    (listing,) = [c for c in find["canvas"]["content"]["components"] if c["type"] == "list"]
    assert [item["title"] for item in listing["items"]] == [
        "CSV export crashes",  # the words in its title
        "Export from the reports page",  # some of them
    ]
    assert listing["items"][0] == {
        "type": "item",
        "id": f"match-{match}",
        "title": "CSV export crashes",
        "subtitle": f"#{match} · Open · 0 customers",
        "action": {"type": "submit"},
    }
    assert component(find, "new")["style"] == "secondary"  # a second screen: no primary yet


def test_the_subject_is_searched_first_and_a_new_search_refreshes_the_matches(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, title="Dark mode", workspace_id=WORKSPACE_ID)
    add_feedback(canvas_app, title="Single sign-on", workspace_id=WORKSPACE_ID)
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"]["subject"] = "<p>Dark mode?</p>"
    find = inbox.find(payload)
    assert component(find, "query")["value"] == "Dark mode?"
    again = inbox.click("query", find, {"query": "sign"}, payload=payload)
    assert [item["title"] for item in component_list(again)["items"]] == ["Single sign-on"]
    nothing = inbox.click("query", find, {"query": "quantum teleport"}, payload=payload)
    assert "No feedback matches yet." in texts(nothing)
    form = inbox.click("new", nothing, {"query": "quantum teleport"}, payload=payload)
    assert component(form, "title")["value"] == "quantum teleport"


def test_at_most_five_matches_show(canvas_app: Flask, inbox: Inbox) -> None:
    add_feedback(canvas_app, 8, title="CSV export", workspace_id=WORKSPACE_ID)
    assert len(component_list(inbox.find())["items"]) == 5


def component_list(body: Any) -> dict[str, Any]:
    (listing,) = [c for c in body["canvas"]["content"]["components"] if c["type"] == "list"]
    return listing


def test_adding_a_customer_to_a_match_from_another_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes", payload=OTHER_CUSTOMER)  # Dana, another day
    (record,) = stored_feedback(canvas_app)
    chosen = inbox.click(f"match-{record.id}", inbox.find())
    assert texts(chosen)[:2] == ["CSV export crashes", f"#{record.id} · Open · 1 customer"]
    assert component(chosen, "quote")["value"] == (
        "Hi! The CSV export button crashes the page every time I click it."
    )
    assert component(chosen, "add")["label"] == "Add Casey Customer"
    assert component(chosen, "add")["style"] == "primary"
    added = inbox.click("add", chosen, {"quote": "It crashes in Chrome."})
    assert texts(added)[0] == f"Casey Customer added to #{record.id} — 2 customers"
    assert (
        component(added, "open")["action"]["url"] == f"https://hedwig.example/feedback/{record.id}"
    )
    casey = stored_evidence(canvas_app)[-1]
    assert (casey.quote, casey.conversation_id, casey.customer_email) == (
        "It crashes in Chrome.",
        CONVERSATION_ID,
        "casey.customer@example.com",
    )
    first = inbox.initialize()
    listing = component_list({"canvas": {"content": {"components": first}}})
    assert listing["items"][0]["title"] == "CSV export crashes"
    assert listing["items"][0]["subtitle"] == f"#{record.id} · Open · 2 customers"


def test_adding_twice_adds_once_and_a_conversation_backs_a_record_once(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes", payload=OTHER_CUSTOMER)
    (record,) = stored_feedback(canvas_app)
    chosen = inbox.click(f"match-{record.id}", inbox.find())
    first = inbox.click("add", chosen, {"quote": "Once"})
    again = inbox.click("add", chosen, {"quote": "Once"})  # a double click, or a retry
    assert first == again
    another_form = inbox.click(f"match-{record.id}", inbox.find())
    later = inbox.click("add", another_form, {"quote": "And again"})
    assert texts(later)[0] == f"This conversation backs #{record.id} already — 2 customers"
    assert len(stored_evidence(canvas_app)) == 2


def test_the_same_customer_from_another_conversation_is_still_one_customer(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes")
    (record,) = stored_feedback(canvas_app)
    later = {**INITIALIZE, "conversation": {**INITIALIZE["conversation"], "id": "999000"}}
    added = inbox.add_to(record.id, payload=later)
    assert texts(added)[0] == f"Casey Customer added to #{record.id} — 1 customer"
    assert len(stored_evidence(canvas_app)) == 2


def test_a_stale_canvas_naming_a_merged_or_deleted_record_is_handled(
    canvas_app: Flask, inbox: Inbox
) -> None:
    target, duplicate, gone = add_feedback(
        canvas_app, 3, title="CSV export", workspace_id=WORKSPACE_ID
    )
    chosen = inbox.click(f"match-{duplicate}", inbox.find())
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    post(browser, f"/feedback/{duplicate}/merge", {"into": str(target)})
    post(browser, f"/feedback/{gone}/delete")
    added = inbox.click("add", chosen, {"quote": "Still wanted"})
    assert texts(added)[0] == f"Casey Customer added to #{target} — 1 customer"
    stale = inbox.click(f"match-{gone}", inbox.find())
    assert component(stale, "query")  # back to the search: that record is gone


def test_a_match_of_another_workspace_cannot_be_chosen(canvas_app: Flask, inbox: Inbox) -> None:
    (theirs,) = add_feedback(canvas_app, title="CSV export", workspace_id="other-ws")
    chosen = inbox.click(f"match-{theirs}", inbox.find())
    assert component(chosen, "query")
    forged = {"canvas": {"stored_data": {"nonce": "n" * 32, "feedback_id": theirs}}}
    inbox.click("add", forged, {"quote": "Sneaky"})
    assert stored_evidence(canvas_app) == []


# The first canvas's lookups: bounded, whatever the history


def test_first_canvas_counts_a_long_history_only_up_to_a_cap(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, 150, workspace_id=WORKSPACE_ID, conversation_id=CONVERSATION_ID)
    components = inbox.initialize()
    assert "97+ more in Hedwig" in texts(components)


CUSTOMER = {"workspace_id": WORKSPACE_ID, "contact_id": CONTACT_ID}


def customer_list(components: list[dict[str, Any]]) -> list[str]:
    """The titles listed under "More from …"."""
    header = components.index(
        {"type": "text", "text": "More from Casey Customer", "style": "header"}
    )
    return [item["title"] for item in components[header + 1]["items"]]


def test_canvas_requests_give_their_database_connections_back(
    canvas_app: Flask, inbox: Inbox
) -> None:
    """Initialize runs on every conversation switch: a connection kept per request would
    exhaust the pool within minutes."""
    for _ in range(20):
        inbox.initialize()
        inbox.click("back")
    with canvas_app.app_context():
        assert db.engine.pool.checkedout() == 0


def test_feedback_known_by_contact_and_email_is_listed_and_counted_once(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(
        canvas_app,
        5,
        **CUSTOMER,
        conversation_id="999",
        customer_email="casey.customer@example.com",
    )
    components = inbox.initialize()
    assert customer_list(components) == ["Feedback 4", "Feedback 3", "Feedback 2"]
    assert texts(components)[-1] == "+2 more in Hedwig"


def test_customer_list_sees_past_a_long_history_in_this_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    """The customer's other feedback is found behind up to COUNT_CAP of their records in this
    conversation (the bound that keeps a long conversation as cheap as a short one)."""
    for conversation_id in ("earlier-1", "earlier-2", "earlier-3", "earlier-4"):
        add_feedback(canvas_app, title=conversation_id, conversation_id=conversation_id, **CUSTOMER)
    add_feedback(canvas_app, COUNT_CAP, conversation_id=CONVERSATION_ID, **CUSTOMER)
    components = inbox.initialize()
    assert customer_list(components) == ["earlier-4", "earlier-3", "earlier-2"]
    assert texts(components)[-1] == "+1 more in Hedwig"
    assert "97+ more in Hedwig" in texts(components)  # this conversation's own list


def test_customer_list_counts_a_long_history_only_up_to_a_cap(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, 150, conversation_id="999", **CUSTOMER)
    components = inbox.initialize()
    assert customer_list(components) == ["Feedback 149", "Feedback 148", "Feedback 147"]
    assert texts(components)[-1] == "97+ more in Hedwig"


# The canvas preview: the same canvases, without Intercom


def preview_click(client: FlaskClient, page: str, component_id: str, **inputs: str) -> Any:
    """Click a canvas button in the preview page, sending what the page's form holds."""
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    fields = {name: html.unescape(value) for name, value in fields.items()}
    fields |= {f"input:{name}": value for name, value in inputs.items()}
    return client.post("/intercom/preview", data={**fields, "component_id": component_id})


def test_preview_records_feedback_from_first_canvas_to_saved(
    app: Flask, signed_in: FlaskClient
) -> None:
    first = page_text(signed_in.get("/intercom/preview"))  # no Intercom settings at all
    assert "Nothing recorded from this conversation yet." in first
    assert 'value="record"' in first
    search = page_text(preview_click(signed_in, first, "record"))
    assert "No feedback matches yet." in search
    form = page_text(preview_click(signed_in, search, "new"))
    assert "Hi! The CSV export button crashes the page every time I click it." in form
    assert "From Casey Customer · casey.customer@example.com" in form
    saved = preview_click(signed_in, form, "save", title="Export crashes", quote="Every time")
    assert saved.status_code == 200
    (record,) = stored_feedback(app)
    (evidence,) = stored_evidence(app)
    assert f"Feedback #{record.id} saved" in page_text(saved)
    assert (record.workspace_id, record.origin, evidence.customer_name) == (
        "hedwig-preview",
        "preview",
        "Casey Customer",
    )
    listing = page_text(signed_in.get("/"))
    assert "Export crashes" in listing
    assert '<span class="badge preview">preview</span>' in listing
    assert "Open conversation" not in page_text(signed_in.get(f"/feedback/{record.id}"))
    again = page_text(signed_in.get("/intercom/preview"))
    assert "Export crashes" in again  # the first canvas now lists it


def test_preview_shows_validation_errors_like_the_inbox(app: Flask, signed_in: FlaskClient) -> None:
    search = preview_click(signed_in, page_text(signed_in.get("/intercom/preview")), "record")
    form = page_text(preview_click(signed_in, page_text(search), "new"))
    page = page_text(preview_click(signed_in, form, "save", title=""))
    assert "A title is required." in page
    assert 'aria-invalid="true"' in page
    assert stored_feedback(app) == []


def test_preview_uses_the_edited_sample(app: Flask, signed_in: FlaskClient) -> None:
    page = page_text(
        signed_in.get(
            "/intercom/preview?customer_name=Dana+Doe&customer_email=dana@example.com"
            "&message=<p>Hello <b>there</b></p>"
        )
    )
    search = page_text(preview_click(signed_in, page, "record"))
    form = page_text(preview_click(signed_in, search, "new"))
    assert "From Dana Doe · dana@example.com" in form
    assert ">Hello there</textarea>" in form


def test_preview_needs_sign_in_and_a_csrf_token(app: Flask, signed_in: FlaskClient) -> None:
    assert app.test_client().get("/intercom/preview").status_code == 302
    response = signed_in.post("/intercom/preview", data={"component_id": "save"})
    assert response.status_code == 400
    assert stored_feedback(app) == []


def test_real_canvas_requests_for_the_preview_workspace_are_refused(
    canvas_app: Flask, inbox: Inbox
) -> None:
    components = inbox.initialize(workspace_id="hedwig-preview")
    assert "not connected to Hedwig yet" in texts(components)[0]
    body = inbox.click(
        "save", None, {"title": "Sneaky"}, payload={**INITIALIZE, "workspace_id": "hedwig-preview"}
    )
    assert "not connected to Hedwig yet" in texts(body)[0]
    assert stored_feedback(canvas_app) == []


def test_canvas_markdown_renders_bold_and_links_but_not_escaped_text() -> None:
    assert str(canvas_markdown("**Saved** [open](https://h.example/1)")) == (
        '<strong>Saved</strong> <a href="https://h.example/1" target="_blank" '
        'rel="noopener noreferrer">open</a>'
    )
    assert str(canvas_markdown(markdown_escape("[x](https://evil.example) <b>"))) == (
        "[x](https://evil.example) &lt;b&gt;"
    )


def test_preview_refuses_stored_data_nested_beyond_reason(
    app: Flask, signed_in: FlaskClient
) -> None:
    response = post(signed_in, "/intercom/preview", {"stored_data": "[" * 50_000})
    assert response.status_code == 400
    assert "stored data is not JSON" in page_text(response)


def test_preview_reusing_an_inbox_forms_nonce_gives_the_form_again(
    canvas_app: Flask, inbox: Inbox
) -> None:
    form = inbox.form()
    inbox.click("save", form, {"title": "From the Inbox"})
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    stored = json.dumps(form["canvas"]["stored_data"])
    response = post(
        browser,
        "/intercom/preview",
        {"stored_data": stored, "component_id": "save", "input:title": "Preview replay"},
    )
    assert response.status_code == 200
    assert "This form has expired." in page_text(response)
    assert [r.title for r in stored_feedback(canvas_app)] == ["From the Inbox"]


# --- Closing the loop: a status on every record, a note in every conversation that asked ---------

CONVERSATIONS = ("1001", "1002")


class IntercomConversations:
    """The stand-in's conversation endpoints: each request they get, in order, and the answers
    to give, one per request (then 200)."""

    def __init__(self, httpserver: HTTPServer) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.lock = threading.Lock()
        path = re.compile(r"^/conversations/[^/]+/(reply|parts)$")
        httpserver.expect_request(path, method="POST").respond_with_handler(self.answer)

    def answer(self, request: Request) -> Response:
        with self.lock:
            self.requests.append(
                {"path": request.path, "headers": request.headers, "json": request.get_json()}
            )
            status, headers = self.answers.pop(0) if self.answers else (200, {})
        body = {"type": "conversation", "id": request.path.split("/")[2]}
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


def wait_for_sender(app: Flask) -> None:
    """Let this process's sender thread finish what it was woken for."""
    sender = app.extensions.get("hedwig_sender")
    if sender is not None:
        sender.join(timeout=30)
        assert sender.thread is None or not sender.thread.is_alive()


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


@pytest.mark.parametrize("refusal", [401, 403])
def test_a_refused_token_waits_for_a_reconnect_then_the_notes_go(
    canvas_app: Flask,
    team: FlaskClient,
    conversations: IntercomConversations,
    httpserver: HTTPServer,
    refusal: int,
) -> None:
    feedback_id = backed_record(canvas_app)
    conversations.answers = [(refusal, {})]
    change_status(team, feedback_id, "done")
    wait_for_sender(canvas_app)
    assert len(conversations.requests) == 1  # the workspace's other note was not tried
    nav = page_text(team.get("/"))
    assert "Example Co workspace needs reconnecting." in nav
    assert f"HTTP {refusal}" in nav
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


@pytest.mark.parametrize("header", ["Retry-After", "X-RateLimit-Reset"])
def test_a_long_429_leaves_the_workspaces_notes_for_the_time_it_gives(
    canvas_app: Flask, held: FlaskClient, conversations: IntercomConversations, header: str
) -> None:
    change_status(held, backed_record(canvas_app), "planned")
    hour = "3600" if header == "Retry-After" else str(int(time.time()) + 3600)
    conversations.answers = [(429, {header: hour})]
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
    assert "failed: Intercom answered /conversations/1001/reply with HTTP 503" in page
    assert "(5 tries)" in page and "Retry failed" in page


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
    [{"Retry-After": "1e300"}, {"Retry-After": "inf"}, {"X-RateLimit-Reset": "1e12"}],
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
    canvas_app: Flask, team: FlaskClient, httpserver: HTTPServer
) -> None:
    canvas_app.config["SEND_NOTES_AT_ONCE"] = False
    doomed = backed_record(canvas_app, ("1001",), title="Doomed")
    kept = backed_record(canvas_app, ("1002",), title="Kept")
    change_status(team, doomed, "done")
    change_status(team, kept, "done")
    sent = []

    def delete_then_answer(request: Request) -> Response:
        with canvas_app.app_context():
            db.session.execute(sqlalchemy.delete(Feedback).where(Feedback.id == doomed))
            db.session.commit()
        return Response("{}", 200, content_type="application/json")

    def answer(request: Request) -> Response:
        sent.append(request.path)
        return Response("{}", 200, content_type="application/json")

    httpserver.expect_request("/conversations/1001/reply").respond_with_handler(delete_then_answer)
    httpserver.expect_request("/conversations/1002/reply").respond_with_handler(answer)
    send_notes(canvas_app)
    assert sent == ["/conversations/1002/reply"]
    assert [(n.conversation_id, n.state) for n in stored_notes(canvas_app)] == [("1002", "sent")]


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


def test_a_status_change_on_a_merged_records_old_id_changes_the_record_it_went_into(
    canvas_app: Flask, team: FlaskClient
) -> None:
    duplicate = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    post(team, f"/feedback/{duplicate}/merge", {"into": str(target)})
    response = change_status(team, duplicate, "planned", notify="off")
    assert response.status_code == 302
    assert response.headers["Location"] == f"/feedback/{target}"
    assert [(r.id, r.status) for r in stored_feedback(canvas_app)] == [(target, "planned")]


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
    assert page.count('<td><a href="/feedback/') == 2
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


# --- A team: roles, invites, passwords, Sign in with Intercom -----------------------------------

MEMBER = "grace@example.com"


def users(app: Flask) -> dict[str, tuple[str, bool]]:
    """Email → (role, removed), for everyone Hedwig knows."""
    with app.app_context():
        return {
            u.email: (u.role, u.removed_at is not None) for u in db.session.scalars(select(User))
        }


def user_id(app: Flask, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def shown_link(response: Any) -> str:
    """The path of the one-time link the team page shows after it was made."""
    found = re.search(r'readonly value="([^"]+)"', page_text(response))
    assert found, "no link shown"
    return urlsplit(html.unescape(found.group(1))).path


def test_the_first_account_is_an_owner_and_later_ones_members_unless_asked(
    app: Flask, client: FlaskClient
) -> None:
    post(
        client,
        "/first-account",
        {"email": "ada@example.com", "password": PASSWORD, "confirm": PASSWORD},
    )
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", MEMBER, "--password", PASSWORD])
    assert result.output == f"Created user {MEMBER}, member.\n"
    result = runner.invoke(
        args=["create-user", "lin@example.com", "--password", PASSWORD, "--owner"]
    )
    assert result.output == "Created user lin@example.com, owner.\n"
    assert users(app) == {
        "ada@example.com": ("owner", False),
        MEMBER: ("member", False),
        "lin@example.com": ("owner", False),
    }


def test_the_first_user_made_on_the_command_line_is_an_owner(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["create-user", MEMBER, "--password", PASSWORD])
    assert result.output == f"Created user {MEMBER}, owner.\n"


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/team", None),
        ("post", "/team/invite", {"role": "member"}),
        ("post", "/team/1/role", {"role": "member"}),
        ("post", "/team/1/remove", {}),
        ("post", "/team/1/reset", {}),
        ("get", "/feedback/1/delete", None),
        ("post", "/feedback/1/delete", {}),
        ("get", "/feedback/1/merge?into=2", None),
        ("post", "/feedback/1/merge", {"into": "2"}),
        ("get", "/intercom/connect", None),
        ("get", "/intercom/connect/token", None),
        ("post", "/intercom/connect/token", {"access_token": TOKEN}),
        ("post", "/intercom/disconnect", {"connection_id": "1"}),
    ],
)
def test_a_member_is_refused_an_owners_action_with_a_sentence(
    canvas_app: Flask, method: str, path: str, data: dict[str, str] | None
) -> None:
    create_user(canvas_app)  # the owner
    add_feedback(canvas_app, 2)
    member = signed_in_browser(canvas_app, MEMBER)
    response = member.get(path) if data is None else post(member, path, data)
    assert response.status_code == 403
    assert "Only an owner of this Hedwig can do that: ask one of them." in page_text(response)
    assert feedback_count(canvas_app) == 2
    assert len(connections(canvas_app)) == 1
    assert users(canvas_app)["ada@example.com"] == ("owner", False)


def test_a_member_is_never_offered_an_owners_action(canvas_app: Flask) -> None:
    create_user(canvas_app)
    (feedback_id,) = add_feedback(canvas_app)
    member = signed_in_browser(canvas_app, MEMBER)
    page = page_text(member.get(f"/feedback/{feedback_id}"))
    assert "Delete…" not in page and "Merge…" not in page
    assert "Change status" in page and "Edit" in page  # members may do these
    nav = page_text(member.get("/"))
    assert 'href="/team"' not in nav and "Disconnect" not in nav
    assert "Connected to Example Co workspace" in nav
    owner = canvas_app.test_client()
    sign_in(owner)
    page = page_text(owner.get(f"/feedback/{feedback_id}"))
    assert "Delete…" in page and "Merge…" in page
    assert 'href="/team"' in page and "Disconnect" in page


def test_hedwig_always_keeps_an_owner(app: Flask, signed_in: FlaskClient) -> None:
    me = user_id(app, "ada@example.com")
    for path, data in ((f"/team/{me}/role", {"role": "member"}), (f"/team/{me}/remove", {})):
        response = post(signed_in, path, data)
        assert response.status_code == 400
        assert "Hedwig needs an owner: make someone else an owner first." in page_text(response)
    assert users(app) == {"ada@example.com": ("owner", False)}
    create_user(app, MEMBER)
    assert (
        post(signed_in, f"/team/{user_id(app, MEMBER)}/role", {"role": "owner"}).status_code == 302
    )
    assert post(signed_in, f"/team/{me}/role", {"role": "member"}).status_code == 302
    assert users(app) == {"ada@example.com": ("member", False), MEMBER: ("owner", False)}
    assert signed_in.get("/team").status_code == 403  # a member now


def test_a_removed_teammate_is_signed_out_at_once_and_their_records_stay_theirs(
    app: Flask, signed_in: FlaskClient
) -> None:
    member = signed_in_browser(app, MEMBER)
    post(member, "/feedback/new", {"title": "Dark mode"})
    response = post(signed_in, f"/team/{user_id(app, MEMBER)}/remove")
    assert response.status_code == 302
    assert member.get("/").status_code == 302  # to the sign-in page
    refused = post(member, "/login", {"email": MEMBER, "password": PASSWORD})
    assert refused.status_code == 401
    assert "by grace@example.com" in page_text(signed_in.get("/feedback/1"))
    team = page_text(signed_in.get("/team"))
    assert MEMBER not in team
    assert users(app)[MEMBER] == ("member", True)


def test_the_team_page_shows_roles_and_last_sign_in(app: Flask, signed_in: FlaskClient) -> None:
    create_user(app, MEMBER)
    page = page_text(signed_in.get("/team"))
    row = re.search(rf'<tr data-teammate="{MEMBER}">.*?</tr>', page, re.S).group(0)
    assert "never" in row and '<option value="member" selected>' in row
    row = re.search(r'<tr data-teammate="ada@example.com">.*?</tr>', page, re.S).group(0)
    assert "(you)" in row and " UTC" in row and '<option value="owner" selected>' in row


def invite_link(client: FlaskClient, **fields: str) -> str:
    response = post(client, "/team/invite", {"role": "member", **fields})
    assert response.status_code == 200
    assert "It works once; Hedwig will not show it again." in page_text(response)
    return shown_link(response)


def test_an_invite_makes_an_account_once(app: Flask, signed_in: FlaskClient) -> None:
    link = invite_link(signed_in, email=MEMBER)
    assert link.startswith("/invite/")
    newcomer = app.test_client()
    form = newcomer.get(link)
    assert form.status_code == 200
    assert "ada@example.com invites you" in page_text(form) and MEMBER in page_text(form)
    mismatch = post(newcomer, link, {"password": PASSWORD, "confirm": "something else"})
    assert mismatch.status_code == 400 and "The two passwords differ." in page_text(mismatch)
    joined = post(newcomer, link, {"password": PASSWORD, "confirm": PASSWORD})
    assert joined.status_code == 302
    assert MEMBER in page_text(newcomer.get("/"))  # signed in
    assert users(app)[MEMBER] == ("member", False)

    again = post(app.test_client(), link, {"password": PASSWORD, "confirm": PASSWORD})
    assert again.status_code == 410
    assert "This link has been used already" in page_text(again)
    assert app.test_client().get(link).status_code == 410
    assert len(users(app)) == 2


def test_an_open_invite_asks_for_the_email_and_gives_its_role(
    app: Flask, signed_in: FlaskClient
) -> None:
    link = invite_link(signed_in, role="owner")
    newcomer = app.test_client()
    assert 'name="email"' in page_text(newcomer.get(link))
    taken = post(
        newcomer, link, {"email": "ADA@example.com", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert taken.status_code == 400
    assert "ada@example.com has an account already: sign in instead." in page_text(taken)
    joined = post(
        newcomer, link, {"email": "lin@example.com", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert joined.status_code == 302
    assert users(app)["lin@example.com"] == ("owner", False)


@pytest.mark.parametrize(
    ("spoil", "status", "message"),
    [
        ("expire", 410, "This link has expired."),
        ("revoke", 410, "This link was withdrawn by an owner."),
        ("tamper", 404, "This link is not one Hedwig made"),
    ],
)
def test_an_expired_revoked_or_tampered_invite_says_which_and_makes_nothing(
    app: Flask, signed_in: FlaskClient, spoil: str, status: int, message: str
) -> None:
    link = invite_link(signed_in, email=MEMBER)
    with app.app_context():
        invite = db.session.scalars(select(models.AccountLink)).one()
        invite_id = invite.id
        if spoil == "expire":
            invite.expires_at = models.utcnow() - timedelta(seconds=1)
            db.session.commit()
    if spoil == "revoke":
        assert "Withdraw" in page_text(signed_in.get("/team"))
        assert post(signed_in, f"/team/links/{invite_id}/revoke").status_code == 302
    if spoil == "tamper":
        link = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    newcomer = app.test_client()
    for response in (
        newcomer.get(link),
        post(newcomer, link, {"password": PASSWORD, "confirm": PASSWORD}),
    ):
        assert response.status_code == status
        assert message in page_text(response)
    assert MEMBER not in users(app)


def test_an_invite_lasts_seven_days(app: Flask, signed_in: FlaskClient) -> None:
    invite_link(signed_in)
    with app.app_context():
        invite = db.session.scalars(select(models.AccountLink)).one()
        assert invite.expires_at - invite.created_at == timedelta(days=7)
        assert len(invite.key_hash) == 64  # a hash; the key is in the link alone


def test_changing_your_password_ends_your_other_sign_ins(
    app: Flask, signed_in: FlaskClient
) -> None:
    elsewhere = app.test_client()
    sign_in(elsewhere)
    wrong = post(
        signed_in,
        "/account/password",
        {"current_password": "nope", "password": "new password 123", "confirm": "new password 123"},
    )
    assert wrong.status_code == 400
    assert "That is not your current password." in page_text(wrong)
    assert elsewhere.get("/").status_code == 200
    changed = post(
        signed_in,
        "/account/password",
        {
            "current_password": PASSWORD,
            "password": "new password 123",
            "confirm": "new password 123",
        },
    )
    assert changed.status_code == 302
    assert signed_in.get("/").status_code == 200  # this sign-in goes on
    assert elsewhere.get("/").status_code == 302  # the other has ended
    old = post(app.test_client(), "/login", {"email": "ada@example.com", "password": PASSWORD})
    assert old.status_code == 401
    new = post(
        app.test_client(), "/login", {"email": "ada@example.com", "password": "new password 123"}
    )
    assert new.status_code == 302


def test_a_reset_link_sets_a_forgotten_password_once_and_ends_old_sign_ins(
    app: Flask, signed_in: FlaskClient
) -> None:
    member = signed_in_browser(app, MEMBER)
    response = post(signed_in, f"/team/{user_id(app, MEMBER)}/reset")
    assert "Send this link to grace@example.com (password reset)" in page_text(response)
    link = shown_link(response)
    assert link.startswith("/reset/")
    browser = app.test_client()
    assert f"For {MEMBER}." in page_text(browser.get(link))
    short = post(browser, link, {"password": "short", "confirm": "short"})
    assert short.status_code == 400
    assert (
        post(browser, link, {"password": "brand new pass", "confirm": "brand new pass"}).status_code
        == 302
    )
    assert browser.get("/").status_code == 200  # signed in
    assert member.get("/").status_code == 302  # the old sign-in has ended
    assert (
        post(
            app.test_client(), link, {"password": "another one 1", "confirm": "another one 1"}
        ).status_code
        == 410
    )
    ok = post(app.test_client(), "/login", {"email": MEMBER, "password": "brand new pass"})
    assert ok.status_code == 302
    with app.app_context():
        reset = db.session.scalars(select(models.AccountLink)).one()
        assert reset.expires_at - reset.created_at == timedelta(hours=1)


def test_an_invite_link_is_no_reset_link(app: Flask, signed_in: FlaskClient) -> None:
    link = invite_link(signed_in)
    response = app.test_client().get(link.replace("/invite/", "/reset/"))
    assert response.status_code == 404


def test_flask_reset_password_prints_a_link_for_a_lone_owner(
    app: Flask, client: FlaskClient
) -> None:
    create_user(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reset-password", "Ada@Example.com"])
    assert result.exit_code == 0
    link = urlsplit(result.output.splitlines()[-1])
    assert (link.scheme, link.netloc) == ("https", "hedwig.example")
    assert (
        post(
            client, link.path, {"password": "fresh password", "confirm": "fresh password"}
        ).status_code
        == 302
    )
    unknown = runner.invoke(args=["reset-password", "nobody@example.com"])
    assert unknown.exit_code == 1 and "There is no teammate nobody@example.com." in unknown.output


def test_links_go_with_the_power_of_the_owner_who_made_them(
    app: Flask, signed_in: FlaskClient
) -> None:
    """An owner demoted or removed leaves no working link behind: not an invite that would
    bring them back, not a reset link into another account."""
    mallory = "mallory@example.com"
    create_user(app, mallory)
    post(signed_in, f"/team/{user_id(app, mallory)}/role", {"role": "owner"})
    insider = app.test_client()
    sign_in(insider, mallory)
    invite = invite_link(insider, role="owner")
    reset = shown_link(post(insider, f"/team/{user_id(app, 'ada@example.com')}/reset"))
    post(signed_in, f"/team/{user_id(app, mallory)}/role", {"role": "member"})
    for link in (invite, reset):
        response = app.test_client().get(link)
        assert response.status_code == 410
        assert "This link was withdrawn by an owner." in page_text(response)
    post(signed_in, f"/team/{user_id(app, mallory)}/remove")
    back = post(
        app.test_client(), invite, {"email": mallory, "password": PASSWORD, "confirm": PASSWORD}
    )
    assert back.status_code == 410
    assert users(app)[mallory] == ("member", True)
    assert 'data-teammate="mallory@example.com"' not in page_text(signed_in.get("/team"))


def test_a_removed_teammates_reset_link_stays_dead_when_they_come_back(
    app: Flask, signed_in: FlaskClient
) -> None:
    create_user(app, MEMBER)
    reset = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    post(signed_in, f"/team/{user_id(app, MEMBER)}/remove")
    assert "Password reset for" not in page_text(signed_in.get("/team"))
    invite = invite_link(signed_in, email=MEMBER)
    assert (
        post(app.test_client(), invite, {"password": PASSWORD, "confirm": PASSWORD}).status_code
        == 302
    )
    assert users(app)[MEMBER] == ("member", False)
    assert app.test_client().get(reset).status_code == 410


def test_an_open_invite_cannot_take_a_removed_teammates_place(
    app: Flask, signed_in: FlaskClient
) -> None:
    create_user(app, MEMBER)
    post(signed_in, f"/team/{user_id(app, MEMBER)}/remove")
    link = invite_link(signed_in)
    response = post(
        app.test_client(), link, {"email": MEMBER, "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.status_code == 400
    assert "was removed from the team: ask an owner for an invite made for it." in page_text(
        response
    )
    assert users(app)[MEMBER] == ("member", True)
    assert app.test_client().get(link).status_code == 200  # not spent


def test_two_invites_accepted_at_once_for_one_email_make_one_account(
    app: Flask, signed_in: FlaskClient
) -> None:
    links = [invite_link(signed_in), invite_link(signed_in, role="owner")]
    browsers = [app.test_client() for _ in links]
    for browser in browsers:
        csrf(browser)

    def join(n: int) -> int:
        fields = {
            "email": MEMBER,
            "password": f"password number {n}",
            "confirm": f"password number {n}",
        }
        return post(browsers[n], links[n], fields).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(join, range(2)))
    assert statuses == [302, 400]
    role = users(app)[MEMBER][0]
    winner = 0 if role == "member" else 1
    ok = post(
        app.test_client(), "/login", {"email": MEMBER, "password": f"password number {winner}"}
    )
    assert ok.status_code == 302


def test_a_failing_invite_request_logs_no_key(
    app: Flask,
    signed_in: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = invite_link(signed_in)
    token = link.removeprefix("/invite/")

    def broken(link: Any) -> None:
        raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))

    monkeypatch.setattr("hedwig_app.team.spend_link", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: a 500 page, and a log line
    with caplog.at_level(logging.ERROR):
        response = post(
            app.test_client(), link, {"email": MEMBER, "password": PASSWORD, "confirm": PASSWORD}
        )
    assert response.status_code == 500
    assert "Exception on /invite/[redacted] [POST]" in caplog.text
    assert token not in caplog.text


def test_a_changed_password_ends_copies_of_this_sign_in_too_and_guesses_are_throttled(
    app: Flask, signed_in: FlaskClient
) -> None:
    copy = app.test_client()
    with signed_in.session_transaction() as original, copy.session_transaction() as copied:
        copied.update(original)
    fields = {
        "current_password": PASSWORD,
        "password": "new password 123",
        "confirm": "new password 123",
    }
    assert post(signed_in, "/account/password", fields).status_code == 302
    assert signed_in.get("/").status_code == 200
    assert copy.get("/").status_code == 302
    wrong = {"current_password": "guess", "password": "another pass 1", "confirm": "another pass 1"}
    statuses = [post(signed_in, "/account/password", wrong).status_code for _ in range(11)]
    assert statuses == [400] * 10 + [429]


def test_a_new_password_withdraws_the_reset_links_made_before(
    app: Flask, signed_in: FlaskClient
) -> None:
    member = signed_in_browser(app, MEMBER)
    older = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    newer = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    fields = {"password": "brand new pass", "confirm": "brand new pass"}
    assert post(app.test_client(), newer, fields).status_code == 302
    assert app.test_client().get(older).status_code == 410
    third = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    sign_in_again = {"email": MEMBER, "password": "brand new pass"}
    assert post(member, "/login", sign_in_again).status_code == 302
    changed = {
        "current_password": "brand new pass",
        "password": "newest pass 1",
        "confirm": "newest pass 1",
    }
    assert post(member, "/account/password", changed).status_code == 302
    assert app.test_client().get(third).status_code == 410
    assert "Password reset for" not in page_text(signed_in.get("/team"))


def test_printed_links_follow_the_port_make_run_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path, BASE_URL="")
    create_user(app)
    monkeypatch.setenv("FLASK_RUN_PORT", "5057")
    result = app.test_cli_runner().invoke(args=["reset-password", "ada@example.com"])
    assert result.output.splitlines()[-1].startswith("http://127.0.0.1:5057/reset/")


def test_a_record_no_conversation_backs_offers_no_note(app: Flask, signed_in: FlaskClient) -> None:
    (feedback_id,) = add_feedback(app, customer_name="By hand")
    page = page_text(signed_in.get(f"/feedback/{feedback_id}"))
    assert "No conversation of a connected Intercom workspace backs it: no note to add." in page
    assert 'name="notify"' not in page


def test_an_owner_who_makes_themselves_a_member_lands_on_the_log(
    app: Flask, signed_in: FlaskClient
) -> None:
    create_user(app, "lin@example.com")
    post(signed_in, f"/team/{user_id(app, 'lin@example.com')}/role", {"role": "owner"})
    response = post(signed_in, f"/team/{user_id(app, 'ada@example.com')}/role", {"role": "member"})
    assert response.headers["Location"] == "/"


def test_a_sign_in_with_intercom_callback_without_a_code_keeps_no_row(
    canvas_app: Flask,
) -> None:
    create_user(canvas_app)
    for _ in range(5):
        browser = canvas_app.test_client()
        callback(browser, start_sign_in_with_intercom(browser), code=None)
    with canvas_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(models.UsedOAuthState)) == 0


def start_sign_in_with_intercom(client: FlaskClient) -> str:
    login = page_text(client.get("/login"))
    assert 'href="/login/intercom"' in login
    response = client.get("/login/intercom")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["redirect_uri"] == ["https://hedwig.example/intercom/callback"]
    return query["state"][0]


def serve_me(httpserver: HTTPServer, **changes: Any) -> None:
    me = {**ME, **changes}
    serve_intercom(
        httpserver,
        me=lambda request: Response(json.dumps(me), 200, content_type="application/json"),
    )


def test_sign_in_with_intercom_signs_in_the_teammate_with_that_verified_email(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    create_user(canvas_app)
    create_user(canvas_app, ME["email"])
    serve_intercom(httpserver)
    browser = canvas_app.test_client()
    state = start_sign_in_with_intercom(browser)
    response = callback(browser, state)
    assert response.status_code == 302
    page = page_text(browser.get("/"))
    assert "Signed in with Intercom as alex.agent@example.com." in page
    (connection,) = connections(canvas_app)
    assert connection.admin_id == ME["id"]  # the connection is as it was: the token not kept
    with canvas_app.app_context():
        assert db.session.get(IntercomConnection, connection.id).token == TOKEN
    replay = callback(canvas_app.test_client(), state)
    assert replay.status_code == 400
    again = callback(browser, state)
    assert again.status_code == 400  # single use, in this browser too


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"email_verified": False},
            "Intercom has not verified the email address alex.agent@example.com",
        ),
        (
            {"app": {**ME["app"], "id_code": "other-ws", "name": "Other Co"}},
            "your Intercom workspace (Other Co) is not connected to this Hedwig",
        ),
        (
            {},
            "there is no Hedwig account for alex.agent@example.com. Ask an owner for an invite, "
            "or to let teammates of Example Co workspace join.",
        ),
    ],
)
def test_sign_in_with_intercom_refuses_and_says_why(
    canvas_app: Flask, httpserver: HTTPServer, changes: dict[str, Any], message: str
) -> None:
    create_user(canvas_app)
    if changes:
        create_user(canvas_app, ME["email"])
    serve_me(httpserver, **changes)
    browser = canvas_app.test_client()
    response = callback(browser, start_sign_in_with_intercom(browser))
    assert response.status_code == 403
    assert message in page_text(response)
    assert browser.get("/").status_code == 302  # nobody signed in
    assert len(users(canvas_app)) == (2 if changes else 1)


def test_a_new_teammate_joins_as_a_member_where_an_owner_allowed_it(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    create_user(canvas_app)
    owner = canvas_app.test_client()
    sign_in(owner)
    (connection,) = connections(canvas_app)
    post(owner, f"/team/workspaces/{connection.id}", {"teammates_may_join": "on"})
    serve_intercom(httpserver)
    browser = canvas_app.test_client()
    assert callback(browser, start_sign_in_with_intercom(browser)).status_code == 302
    assert users(canvas_app)[ME["email"]] == ("member", False)
    assert ME["email"] in page_text(browser.get("/"))


def test_sign_in_with_intercom_is_offered_only_when_it_can_work(
    intercom_app: Flask, httpserver: HTTPServer
) -> None:
    create_user(intercom_app)
    browser = intercom_app.test_client()
    assert "Sign in with Intercom" not in page_text(browser.get("/login"))  # nothing connected
    assert browser.get("/login/intercom").status_code == 404


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


def test_models_and_migrations_agree(app: Flask) -> None:
    """Every schema change ships with its migration: the migrated database is what the
    models describe."""
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(migration_context(connection), db.metadata)
    assert differences == []


def test_every_migration_downgrades_and_upgrades_again_keeping_rows(app: Flask) -> None:
    (feedback_id,) = add_feedback(app, title="Kept")
    owner = create_user(app)
    with app.app_context():  # rows in the tables the later migrations add, too
        change = models.StatusChange(
            feedback_id=feedback_id, from_status="open", to_status="planned", changed_by_id=owner
        )
        db.session.add(change)
        db.session.flush()
        db.session.add(models.Note(change_id=change.id, feedback_id=feedback_id, body="<p>x</p>"))
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


# --- Plumbing: settings, headers, health, logs ----------------------------------------------------


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


def test_workers_starting_together_keep_one_key(tmp_path: Any) -> None:
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


def test_the_url_postgresql_hosts_print_works_as_it_is(tmp_path: Any) -> None:
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_HINT)
    empty_postgres(POSTGRES_URL)
    printed = POSTGRES_URL.replace("postgresql+psycopg://", "postgres://")
    app = hedwig.create_app(config_for(tmp_path, DATABASE_URL=printed))
    created_apps.append(app)
    assert app.test_client().get("/healthz").json == {"status": "ok"}


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


# --- Solid under concurrency: a real server, real parallel requests -------------------------------


@pytest.fixture
def served(tmp_path: Any, database_url: str) -> Iterator[tuple[str, Flask, Path]]:
    """Hedwig under gunicorn with 4 workers on loopback, the fixture workspace connected."""
    app = make_app(tmp_path, DATABASE_URL=database_url, INTERCOM_CLIENT_SECRET=CLIENT_SECRET)
    connect_workspace(app)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "HEDWIG_INSTANCE_PATH": str(tmp_path / "instance"),
        "HEDWIG_SECRET_KEY": SECRET_KEY,
        "HEDWIG_DATABASE_URL": database_url,
        "HEDWIG_INTERCOM_CLIENT_SECRET": CLIENT_SECRET,
        "HEDWIG_BASE_URL": "https://hedwig.example",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "4",
            "--bind",
            f"127.0.0.1:{port}",
            "--error-logfile",
            str(log),
            "--capture-output",
            "hedwig:create_app()",
        ],
        cwd=Path(__file__).parent,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # until it answers (or gives up), never a fixed sleep
            try:
                if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                assert server.poll() is None, log.read_text()
                time.sleep(0.1)
        yield url, app, log
    finally:
        server.terminate()
        server.wait(timeout=30)


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


def test_fifty_parallel_submits_store_fifty_records(
    served: tuple[str, Flask, Path],
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


def test_the_same_form_sent_in_parallel_stores_one_record(
    served: tuple[str, Flask, Path],
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


def test_first_account_race_creates_exactly_one(served: tuple[str, Flask, Path]) -> None:
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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # backup is SQLite's
def test_submits_racing_a_backup_all_succeed_and_the_backup_is_consistent(
    served: tuple[str, Flask, Path], tmp_path: Path
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


def test_the_printed_canvas_request_gets_a_canvas_from_a_running_hedwig(
    served: tuple[str, Flask, Path],
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


def test_fifty_wrong_passwords_at_once_are_checked_at_most_ten_times(
    served: tuple[str, Flask, Path],
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


# --- make: the README's two commands on a machine that is not quite ready ---------------------


def make_dry_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-n", *args], cwd=Path(__file__).parent, capture_output=True, text=True
    )


def test_make_says_which_python_is_needed_before_installing_anything(tmp_path: Any) -> None:
    old = tmp_path / "python3"
    old.write_text(
        '#!/bin/sh\ncase "$*" in *--version*) echo "Python 3.9.2";; *) echo False;; esac\n'
    )
    old.chmod(0o755)
    result = make_dry_run("run", f"PYTHON={old}", f"VENV={tmp_path / '.venv'}")
    assert result.returncode != 0
    assert "Hedwig needs Python 3.11 or newer, and" in result.stderr
    assert "is Python 3.9.2" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_make_rebuilds_a_venv_made_by_another_python(tmp_path: Any) -> None:
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("#!/bin/sh\necho 3.10.4\n")
    (venv / "bin" / "python").chmod(0o755)
    (venv / ".installed-run").touch()
    result = make_dry_run("run", f"VENV={venv}")
    assert result.returncode == 0, result.stderr
    assert f"-m venv {venv}" in result.stdout
    assert not venv.exists()
