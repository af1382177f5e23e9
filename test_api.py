"""Hedwig's JSON API and the personal tokens it takes: made, listed and revoked on /account
or by flask create-token, acting as their user with the user's role."""

from __future__ import annotations

import re
from typing import Any

import flask_migrate
import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from conftest import create_user, post, sign_in
from hedwig_app.auth import key_hash
from models import ApiToken, User, db

TOKEN = re.compile(r"hedwig_[A-Za-z0-9_-]{43}")


def new_token(client: FlaskClient, name: str = "Dashboard") -> str:
    """Make a token on /account, as a person does: its secret is on the page once."""
    response = post(client, "/account/tokens", {"name": name})
    assert response.status_code == 201
    return TOKEN.search(response.get_data(as_text=True)).group()


def api(client: FlaskClient, token: str | None, method: str, url: str, **kwargs: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
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
    """0015's downgrade drops the tokens and keeps the users; upgraded again, a token is made
    anew."""
    new_token(signed_in)
    with app.app_context():
        flask_migrate.downgrade(revision="0016")
        assert "api_tokens" not in sqlalchemy.inspect(db.engine).get_table_names()
        assert db.session.scalar(select(User.email)) == "ada@example.com"
        db.session.rollback()
        flask_migrate.upgrade()
    assert stored_tokens(app) == []
    token = new_token(signed_in)
    assert api(signed_in, token, "GET", "/records").status_code == 200
