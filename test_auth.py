"""Sign-in: the first account, signing in and out, the session, CSRF, the throttle."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.routing import Rule

import hedwig_app.auth
import hedwig_schema.people
import models
from conftest import (
    PASSWORD,
    PRODUCTION_PASSWORD_METHOD,
    create_user,
    feedback_count,
    make_app,
    page_text,
    post,
    sign_in,
)
from hedwig_app.auth import decoy_password_hash
from hedwig_app.plumbing import RecordIdConverter
from models import User, db

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


def test_passwords_are_hashed_with_scrypt(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production's hashing (the tests' own users get a cheap one: see conftest): a user made
    with the default setting gets an scrypt hash that checks, and signs in with it; so does
    the decoy an unknown email is checked against."""
    monkeypatch.setattr(User, "password_method", PRODUCTION_PASSWORD_METHOD)
    create_user(app)
    with app.app_context():
        user = db.session.scalars(select(User)).one()
        assert user.password_hash.startswith("scrypt:")
        assert user.check_password(PASSWORD)
        assert not user.check_password("wrong password")
    sign_in(client)
    assert client.get("/").status_code == 200
    assert decoy_password_hash(PRODUCTION_PASSWORD_METHOD).startswith("scrypt:")


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
    for module in (hedwig_app.auth, hedwig_schema.people):  # the decoy's, and User's
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


# --- Public routes are marked, not inferred ----------------------------------------------------

# Adding a view to either list is a decision about security: make it here, on purpose.
PUBLIC = {
    "auth.login",
    "auth.first_account",
    "connect.intercom_callback",
    "connect.sign_in_with_intercom",
    "team.accept_invite",
    "team.reset_password",
    "healthz",
    "favicon",  # a redirect to the static icon: browsers ask before anyone signs in
}
SIGNED_BY_INTERCOM = {"inbox.canvas_initialize", "inbox.canvas_submit"}
# GitHub's and Linear's webhooks: their body's HMAC is their authority, like Intercom's.
SIGNED_WEBHOOKS = {"webhooks_in.github_webhook", "webhooks_in.linear_webhook"}
# The JSON API: its Bearer token is its authority, checked by the API itself.
BEARER_TOKEN = {
    "api.list_records",
    "api.get_record",
    "api.create_record",
    "api.update_record",
    "api.delete_record",
    "api.merge_record",
    "api.add_record_evidence",
    "api.change_record_status",
    "api.openapi",
}
SIGNED = SIGNED_BY_INTERCOM | SIGNED_WEBHOOKS | BEARER_TOKEN
CSRF_REFUSED = "This form has expired or did not come from Hedwig"


def routes(app: Flask) -> list[tuple[Rule, str, str]]:
    """Every route of the app but the static files, with a URL for it and each method."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        values = {
            name: 1 if isinstance(converter, RecordIdConverter) else "x"
            for name, converter in rule._converters.items()
        }
        url = rule.build(values, append_unknown=False)[1]
        found += [(rule, url, method) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return found


def marked(app: Flask, mark: str) -> set[str]:
    return {endpoint for endpoint, view in app.view_functions.items() if getattr(view, mark, False)}


def test_the_views_that_answer_without_sign_in_are_the_marked_ones(app: Flask) -> None:
    assert marked(app, "public") == PUBLIC | SIGNED
    assert marked(app, "signed_by_intercom") == SIGNED_BY_INTERCOM
    assert marked(app, "signed_webhook") == SIGNED_WEBHOOKS
    assert marked(app, "bearer_token") == BEARER_TOKEN


def test_every_unmarked_route_sends_a_signed_out_browser_to_sign_in(
    app: Flask, client: FlaskClient
) -> None:
    checked = 0
    for rule, url, method in routes(app):
        if rule.endpoint in PUBLIC | SIGNED:
            continue
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert response.headers["Location"].startswith("/login?next="), (method, url)
        checked += 1
    assert checked > 20


def test_every_form_but_intercom_s_needs_its_csrf_token(app: Flask, signed_in: FlaskClient) -> None:
    """A signed-in owner's POST without the token is refused, on every route that takes one."""
    posts = [(rule, url) for rule, url, method in routes(app) if method == "POST"]
    for rule, url in posts:
        if rule.endpoint in SIGNED:
            continue
        response = signed_in.post(url, data={"title": "x"})
        assert response.status_code == 400, url
        assert CSRF_REFUSED in response.get_data(as_text=True), url
    assert {rule.endpoint for rule, _ in posts} >= SIGNED - BEARER_TOKEN | {"auth.login"}


def test_the_api_reads_no_cookie_and_asks_no_csrf_token(app: Flask, signed_in: FlaskClient) -> None:
    """A signed-in browser's cookie is no authority for the API (another site could make the
    browser send it): every API route answers it 401 JSON, not 302 nor a CSRF page."""
    for rule, url, method in routes(app):
        if rule.endpoint in BEARER_TOKEN:
            response = signed_in.open(url, method=method, json={})
            assert response.status_code == 401, (method, url)
            assert response.json["error"]["code"] == "unauthorized", (method, url)


def test_intercom_s_routes_answer_a_signed_request_without_cookie_or_token(
    app: Flask, client: Any
) -> None:
    """The mark is what lets Intercom in: an unsigned body is refused by the signature check
    (401), not by sign-in (302) or CSRF (400)."""
    app.config["INTERCOM_CLIENT_SECRET"] = "a-client-secret"
    for endpoint in SIGNED_BY_INTERCOM:
        rule = next(app.url_map.iter_rules(endpoint))
        response = client.post(rule.rule, data=b"{}", content_type="application/json")
        assert response.status_code == 401, endpoint


def test_the_webhooks_answer_a_signed_request_without_cookie_or_token(
    app: Flask, client: Any
) -> None:
    """GitHub and Linear neither sign in nor send a CSRF token: an unsigned delivery is
    refused by the signature check (401), not by sign-in (302) or CSRF (400)."""
    app.config["GITHUB_WEBHOOK_SECRET"] = app.config["LINEAR_WEBHOOK_SECRET"] = "a-secret"
    for endpoint in SIGNED_WEBHOOKS:
        rule = next(app.url_map.iter_rules(endpoint))
        response = client.post(rule.rule, data=b"{}", content_type="application/json")
        assert response.status_code == 401, endpoint
