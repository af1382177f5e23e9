"""Hedwig's JSON API and the personal tokens it takes: made, listed and revoked on /account
or by flask create-token, acting as their user with the user's role."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from datetime import timedelta
from typing import Any

import flask_migrate
import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

import hedwig_app.api
from conftest import (
    CONVERSATION_ID,
    WORKSPACE_ID,
    add_feedback,
    connect_workspace,
    create_user,
    feedback_count,
    post,
    sign_in,
    stored_evidence,
)
from hedwig_app.auth import key_hash, new_api_token
from models import ApiToken, Feedback, IdempotencyKey, Note, User, db, utcnow

TOKEN = re.compile(r"hedwig_[A-Za-z0-9_-]{43}")


def new_token(client: FlaskClient, name: str = "Dashboard") -> str:
    """Make a token on /account, as a person does: its secret is on the page once."""
    response = post(client, "/account/tokens", {"name": name})
    assert response.status_code == 201
    return TOKEN.search(response.get_data(as_text=True)).group()


def api(
    client: FlaskClient,
    token: str | None,
    method: str,
    url: str,
    headers_key: str | None = None,
    **kwargs: Any,
) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if headers_key is not None:
        headers["Idempotency-Key"] = headers_key
    return client.open(f"/api/v1{url}", method=method, headers=headers, **kwargs)


def stored_tokens(app: Flask) -> list[ApiToken]:
    with app.app_context():
        return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id)))


# --- Tokens on /account ------------------------------------------------------------------------


def test_a_token_is_shown_once_kept_hashed_listed_and_revoked(
    app: Flask, signed_in: FlaskClient
) -> None:
    token = new_token(signed_in, "Dashboard")
    (stored,) = stored_tokens(app)
    assert stored.token_hash == key_hash(token) and token not in stored.token_hash
    page = signed_in.get("/account").get_data(as_text=True)
    assert "Dashboard" in page and "never" in page and token not in page
    assert api(signed_in, token, "GET", "/records").status_code == 200
    page = signed_in.get("/account").get_data(as_text=True)
    assert "never" not in page  # last used: now
    response = post(signed_in, f"/account/tokens/{stored.id}/revoke")
    assert response.status_code == 302
    page = signed_in.get("/account").get_data(as_text=True)
    assert "“Dashboard” is revoked" in page and "<td>Dashboard</td>" not in page
    refused = api(signed_in, token, "GET", "/records")
    assert refused.status_code == 401 and refused.json["error"]["code"] == "unauthorized"


def test_a_token_needs_a_name_and_nobody_revokes_another_s(
    app: Flask, signed_in: FlaskClient
) -> None:
    response = post(signed_in, "/account/tokens", {"name": "  "})
    assert response.status_code == 400
    assert "Name the token" in response.get_data(as_text=True)
    assert stored_tokens(app) == []
    token = new_token(signed_in)
    other = app.test_client()
    create_user(app, "bo@example.com")
    sign_in(other, "bo@example.com")
    (stored,) = stored_tokens(app)
    assert post(other, f"/account/tokens/{stored.id}/revoke").status_code == 404
    assert api(other, token, "GET", "/records").status_code == 200


def test_create_token_prints_the_token_alone_on_the_last_line(app: Flask) -> None:
    create_user(app)
    result = app.test_cli_runner().invoke(args=["create-token", "ADA@example.com", "CI"])
    assert result.exit_code == 0, result.output
    token = result.output.splitlines()[-1]
    assert TOKEN.fullmatch(token)
    assert api(app.test_client(), token, "GET", "/records").status_code == 200
    unknown = app.test_cli_runner().invoke(args=["create-token", "no@example.com", "CI"])
    assert unknown.exit_code != 0 and "There is no teammate" in unknown.output


def test_a_removed_teammate_s_token_stops_at_once(app: Flask, signed_in: FlaskClient) -> None:
    bo = app.test_client()
    bo_id = create_user(app, "bo@example.com")
    sign_in(bo, "bo@example.com")
    token = new_token(bo)
    assert api(bo, token, "GET", "/records").status_code == 200
    assert post(signed_in, f"/team/{bo_id}/remove").status_code == 302
    response = api(app.test_client(), token, "GET", "/records")
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.fresh_database
def test_the_token_migration_downgrades_and_upgrades_again(
    app: Flask, signed_in: FlaskClient
) -> None:
    """0017's downgrade drops the tokens and their Idempotency-Keys, and keeps the users and
    records; upgraded again, a token is made anew."""
    token = new_token(signed_in)
    made = api(signed_in, token, "POST", "/records", json={"title": "Kept"}, headers_key="k")
    assert made.status_code == 201
    with app.app_context():
        flask_migrate.downgrade(revision="0016")
        tables = sqlalchemy.inspect(db.engine).get_table_names()
        assert {"api_tokens", "idempotency_keys"}.isdisjoint(tables)
        assert db.session.scalar(select(sqlalchemy.func.count(Feedback.id))) == 1
        assert db.session.scalar(select(User.email)) == "ada@example.com"
        db.session.rollback()
        flask_migrate.upgrade()
    assert stored_tokens(app) == []
    token = new_token(signed_in)
    assert api(signed_in, token, "GET", "/records").status_code == 200


# --- The API's routes --------------------------------------------------------------------------


def token_for(app: Flask, email: str) -> str:
    """A teammate (the first is an owner) and a token of theirs."""
    user_id = create_user(app, email)
    with app.app_context():
        _, secret = new_api_token(db.session.get(User, user_id), "tests")
        db.session.commit()
        return secret


@pytest.fixture
def owner(app: Flask) -> str:
    return token_for(app, "ada@example.com")


@pytest.fixture
def member(app: Flask, owner: str) -> str:
    return token_for(app, "bo@example.com")


def test_no_token_a_wrong_one_or_another_scheme_is_refused_in_json(
    app: Flask, client: FlaskClient, owner: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer hedwig_wrong"}, {"Authorization": owner}):
        response = client.get("/api/v1/records", headers=headers)
        assert response.status_code == 401
        assert response.mimetype == "application/json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert set(response.json["error"]) == {"code", "message"}


def test_unknown_urls_methods_and_ids_answer_json_never_a_page(
    client: FlaskClient, owner: str
) -> None:
    for method, url, status in (
        ("GET", "/nowhere", 404),
        ("PUT", "/records", 405),
        ("GET", "/records/999", 404),
    ):
        response = api(client, owner, method, url)
        assert response.status_code == status, url
        assert response.mimetype == "application/json", url
        assert response.json["error"]["message"], url


def test_a_server_error_answers_json_too(
    app: Flask, client: FlaskClient, owner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken(*args: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(hedwig_app.api, "listed_feedback", broken)
    response = api(client, owner, "GET", "/records")
    assert response.status_code == 500 and response.mimetype == "application/json"
    assert "database" not in response.json["error"]["message"]


def test_a_record_is_made_read_listed_changed_and_deleted(
    app: Flask, client: FlaskClient, owner: str
) -> None:
    made = api(
        client,
        owner,
        "POST",
        "/records",
        json={"title": "CSV export", "details": "It crashes", "customer_email": "c@example.com"},
    )
    assert made.status_code == 201
    record = made.json
    assert (record["title"], record["details"], record["customers"]) == (
        "CSV export",
        "It crashes",
        1,
    )
    assert made.headers["Location"] == record["api_url"]
    assert record["url"] == f"https://hedwig.example/feedback/{record['id']}"
    assert record["evidence"][0]["customer"]["email"] == "c@example.com"
    read = api(client, owner, "GET", f"/records/{record['id']}")
    assert read.status_code == 200 and read.json == record
    listed = api(client, owner, "GET", "/records?q=export")
    assert [r["id"] for r in listed.json["records"]] == [record["id"]]
    assert listed.json["next"] is None
    changed = api(client, owner, "PATCH", f"/records/{record['id']}", json={"title": "CSV"})
    assert changed.status_code == 200
    assert (changed.json["title"], changed.json["details"]) == ("CSV", "It crashes")
    assert api(client, owner, "DELETE", f"/records/{record['id']}").status_code == 204
    assert feedback_count(app) == 0


def test_bad_input_is_refused_with_each_field_s_message_and_nothing_written(
    app: Flask, client: FlaskClient, owner: str
) -> None:
    response = api(client, owner, "POST", "/records", json={"title": "", "customer_email": "x"})
    assert response.status_code == 422
    assert set(response.json["error"]["fields"]) == {"title", "customer_email"}
    for body in (b"not json", b"[1]", b"[" * 100_000, b"\xff{}"):  # nested past the limit
        response = api(client, owner, "POST", "/records", data=body)
        assert response.status_code == 400 and response.json["error"]["code"] == "bad_request"
    response = api(client, owner, "POST", "/records", json={"title": ["a list"]})
    assert response.status_code == 422
    response = api(client, owner, "POST", "/records", data=b"x" * (300 * 1024))
    assert response.status_code == 413 and response.mimetype == "application/json"
    assert feedback_count(app) == 0
    response = api(client, owner, "GET", "/records?status=nope&sort=worst")
    assert response.status_code == 400
    assert set(response.json["error"]["fields"]) == {"status", "sort"}


def test_the_list_pages_with_a_cursor_and_filters(
    app: Flask, client: FlaskClient, owner: str
) -> None:
    ids = add_feedback(app, 5)
    seen, url = [], "/api/v1/records?limit=2"
    while url:
        page = client.get(url, headers={"Authorization": f"Bearer {owner}"})
        assert page.status_code == 200
        seen += [record["id"] for record in page.json["records"]]
        url = page.json["next"] and page.json["next"].removeprefix("https://hedwig.example")
    assert seen == sorted(ids, reverse=True)
    (popular,) = add_feedback(app, customer_email="a@example.com")
    by_customers = api(client, owner, "GET", "/records?sort=customers&limit=1").json
    assert by_customers["records"][0]["id"] == popular
    assert api(client, owner, "GET", "/records?status=done").json["records"] == []
    later = api(client, owner, "GET", "/records?updated_since=2999-01-01T00:00:00Z").json
    assert later["records"] == []
    # Damaged, nested past the parser's depth, a number past a float's, past a BIGINT's.
    hostile = ("[" * 100_000, '{"key": 1e400, "id": 1}', json.dumps({"key": 10**30, "id": 1}))
    for cursor in ("garbage", *(base64.urlsafe_b64encode(c.encode()).decode() for c in hostile)):
        bad = api(client, owner, "GET", f"/records?sort=customers&cursor={cursor}")
        assert bad.status_code == 400
        assert bad.json["error"]["fields"] == {"cursor": "Not understood."}
    # Past a run of records tied on the sort's value: each listed once, in order.
    tied = add_feedback(app, 4, customer_email="t@example.com")
    listed, url = [], "/api/v1/records?sort=customers&limit=3"
    while url:
        page = client.get(url, headers={"Authorization": f"Bearer {owner}"}).json
        listed += [(record["customers"], record["id"]) for record in page["records"]]
        url = page["next"] and page["next"].removeprefix("https://hedwig.example")
    assert listed == sorted(listed, reverse=True) and len(listed) == len(ids) + 1 + len(tied)


def test_a_merged_id_leads_to_its_target_and_merging_is_for_owners(
    app: Flask, client: FlaskClient, owner: str, member: str
) -> None:
    duplicate, target = add_feedback(app, 2, customer_email="c@example.com")
    refused = api(client, member, "POST", f"/records/{duplicate}/merge", json={"into": target})
    assert refused.status_code == 403 and refused.json["error"]["code"] == "forbidden"
    assert api(client, member, "DELETE", f"/records/{target}").status_code == 403
    merged = api(client, owner, "POST", f"/records/{duplicate}/merge", json={"into": target})
    assert merged.status_code == 200 and merged.json["record"]["id"] == target
    moved = api(client, member, "GET", f"/records/{duplicate}")
    assert moved.status_code == 301
    assert moved.headers["Location"] == f"https://hedwig.example/api/v1/records/{target}"
    assert feedback_count(app) == 1


def test_evidence_follows_the_canvas_s_rules(app: Flask, client: FlaskClient, member: str) -> None:
    connect_workspace(app)
    (record,) = add_feedback(app)
    url = f"/records/{record}/evidence"
    first = {
        "customer_email": "c@example.com",
        "quote": "Please",
        "conversation_id": CONVERSATION_ID,
    }
    added = api(client, member, "POST", url, json=first | {"importance": "blocker"})
    assert added.status_code == 201
    assert added.json["importance"] == "blocker" and added.json["record"]["customers"] == 1
    assert added.json["conversation_url"] and WORKSPACE_ID in added.json["conversation_url"]
    again = api(client, member, "POST", url, json=first)
    assert again.status_code == 409  # a conversation backs a record once
    same_customer = api(client, member, "POST", url, json={"customer_email": "c@example.com"})
    assert same_customer.status_code == 201 and same_customer.json["record"]["customers"] == 1
    assert len(stored_evidence(app)) == 2
    empty = api(client, member, "POST", url, json={})
    assert empty.status_code == 422 and "customer_name" in empty.json["error"]["fields"]


def test_a_status_change_is_kept_in_the_history_and_writes_its_notes(
    app: Flask, client: FlaskClient, member: str
) -> None:
    app.config["SEND_NOTES_AT_ONCE"] = False
    connect_workspace(app)
    (record,) = add_feedback(
        app,
        customer_email="c@example.com",
        workspace_id=WORKSPACE_ID,
        conversation_id=CONVERSATION_ID,
        source="intercom",
    )
    body = {"status": "planned", "message": "Next sprint", "reply": "On its way, {first_name}!"}
    changed = api(client, member, "POST", f"/records/{record}/status", json=body)
    assert changed.status_code == 200, changed.json
    assert changed.json["status"] == "planned"
    (change,) = changed.json["history"]
    assert (change["from"], change["to"], change["by"]) == ("open", "planned", "bo@example.com")
    with app.app_context():
        kinds = sorted(db.session.scalars(select(Note.kind).where(Note.feedback_id == record)))
    assert kinds == ["note", "reply"]
    same = api(client, member, "POST", f"/records/{record}/status", json=body)
    assert same.status_code == 422 and "status" in same.json["error"]["fields"]


def test_a_token_makes_120_requests_a_minute_then_waits(
    app: Flask, client: FlaskClient, owner: str, member: str
) -> None:
    for _ in range(120):
        assert api(client, owner, "GET", "/records?limit=1").status_code == 200
    refused = api(client, owner, "GET", "/records")
    assert refused.status_code == 429 and refused.json["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert api(client, member, "GET", "/records").status_code == 200  # per token
    app.config["API_RATE_LIMIT"] = 0  # no limit
    assert api(client, owner, "GET", "/records").status_code == 200


def test_an_idempotency_key_answers_a_post_sent_again_with_its_first_answer(
    app: Flask, client: FlaskClient, owner: str, member: str
) -> None:
    body = {"title": "Dark mode"}
    first = api(client, owner, "POST", "/records", json=body, headers_key="k-1")
    again = api(client, owner, "POST", "/records", json=body, headers_key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert feedback_count(app) == 1
    other = api(client, owner, "POST", "/records", json={"title": "Light"}, headers_key="k-1")
    assert other.status_code == 422
    assert other.json["error"]["code"] == "idempotency_key_reused"
    theirs = api(client, member, "POST", "/records", json=body, headers_key="k-1")
    assert theirs.status_code == 201 and theirs.json["id"] != first.json["id"]  # per token
    refused = api(client, owner, "POST", "/records", json={"title": ""}, headers_key="k-2")
    assert api(client, owner, "POST", "/records", json={"title": ""}, headers_key="k-2").json == (
        refused.json
    )
    assert feedback_count(app) == 2


def test_an_idempotency_key_is_kept_for_a_day(app: Flask, client: FlaskClient, owner: str) -> None:
    first = api(client, owner, "POST", "/records", json={"title": "A"}, headers_key="day")
    with app.app_context():
        db.session.execute(
            sqlalchemy.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25))
        )
        db.session.commit()
    later = api(client, owner, "POST", "/records", json={"title": "A"}, headers_key="day")
    assert later.status_code == 201 and later.json["id"] != first.json["id"]


# --- The OpenAPI document ----------------------------------------------------------------------


def matches_document(document: dict[str, Any], template: str, method: str, response: Any) -> None:
    """The answer matches its schema in the document (JSON Schema 2020-12, as OpenAPI 3.1's
    schemas are): jsonschema checks it, refs and all, where no OpenAPI tool checks answers."""
    jsonschema = pytest.importorskip("jsonschema")
    answer = document["paths"][template][method]["responses"][str(response.status_code)]
    if "content" not in answer:
        assert not response.get_data(), (method, template)
        return
    schema = answer["content"]["application/json"]["schema"]
    # The document itself is the schema's root, so that its #/components/... refs resolve.
    validator = jsonschema.Draft202012Validator(
        document | schema, format_checker=jsonschema.FormatChecker()
    )
    validator.validate(response.json)


def test_the_openapi_document_is_valid_and_covers_every_route(
    app: Flask, client: FlaskClient, owner: str
) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    document = api(client, owner, "GET", "/openapi.json").json
    validator.validate(document)
    documented = {
        (f"/api/v1{path}".replace("{id}", "<id:feedback_id>"), method.upper())
        for path, operations in document["paths"].items()
        for method in operations
        if method != "parameters"
    }
    routes = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert documented == routes


def test_every_answer_matches_its_schema_in_the_openapi_document(
    app: Flask, client: FlaskClient, owner: str
) -> None:
    connect_workspace(app)
    document = api(client, owner, "GET", "/openapi.json").json
    one = "/records/{id}"

    def check(template: str, method: str, url: str, status: int, **kwargs: Any) -> Any:
        response = api(client, owner, method.upper(), url, **kwargs)
        assert response.status_code == status, response.get_data(as_text=True)
        matches_document(document, template, method, response)
        return response

    record = check("/records", "post", "/records", 201, json={"title": "A", "quote": "Please"})
    record_id = record.json["id"]
    (other,) = add_feedback(app, title="B")
    check("/records", "get", "/records?limit=1", 200)
    check(one, "get", f"/records/{record_id}", 200)
    check(one, "patch", f"/records/{record_id}", 200, json={"details": "More"})
    evidence = {"customer_name": "Casey", "conversation_id": CONVERSATION_ID}
    check(one + "/evidence", "post", f"/records/{record_id}/evidence", 201, json=evidence)
    check(one + "/evidence", "post", f"/records/{record_id}/evidence", 409, json=evidence)
    status = {"status": "done", "notify": False}
    check(one + "/status", "post", f"/records/{record_id}/status", 200, json=status)
    check(one + "/status", "post", f"/records/{record_id}/status", 422, json=status)
    check(one + "/merge", "post", f"/records/{other}/merge", 200, json={"into": record_id})
    check(one, "get", f"/records/{other}", 301)
    check(one, "delete", f"/records/{record_id}", 204)
    check(one, "get", f"/records/{record_id}", 404)
    check("/records", "post", "/records", 400, data=b"{")
    check("/records", "get", "/records?sort=worst", 400)


def test_a_key_whose_request_died_unanswered_is_free_again_after_a_while(
    app: Flask, client: FlaskClient, owner: str
) -> None:
    """A process that dies mid-request leaves its claim unanswered: the same request is
    refused (409) while it may still be running, and runs once that is past."""
    raw = b'{"title": "A"}'
    digest = hashlib.sha256(b"POST /api/v1/records\n" + raw).hexdigest()
    with app.app_context():
        token_id = db.session.scalar(select(ApiToken.id))
        db.session.add(IdempotencyKey(token_id=token_id, key="died", body_hash=digest))
        db.session.commit()
    running = api(client, owner, "POST", "/records", data=raw, headers_key="died")
    assert running.status_code == 409 and running.json["error"]["code"] == "in_progress"
    assert feedback_count(app) == 0
    with app.app_context():
        claim = db.session.get(IdempotencyKey, (token_id, "died"))
        claim.created_at = utcnow() - timedelta(minutes=6)
        db.session.commit()
    again = api(client, owner, "POST", "/records", data=raw, headers_key="died")
    assert again.status_code == 201 and feedback_count(app) == 1
