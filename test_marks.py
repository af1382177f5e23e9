"""Public routes are marked, not inferred: a view answers without sign-in only if it is marked
@public, and skips the CSRF token only if it is marked @signed_by_intercom."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.routing import Rule

from hedwig_app.plumbing import RecordIdConverter

# Adding a view to either list is a decision about security: make it here, on purpose.
PUBLIC = {
    "auth.login",
    "auth.first_account",
    "connect.intercom_callback",
    "connect.sign_in_with_intercom",
    "team.accept_invite",
    "team.reset_password",
    "healthz",
}
SIGNED_BY_INTERCOM = {"inbox.canvas_initialize", "inbox.canvas_submit"}
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
    assert marked(app, "public") == PUBLIC | SIGNED_BY_INTERCOM
    assert marked(app, "signed_by_intercom") == SIGNED_BY_INTERCOM


def test_every_unmarked_route_sends_a_signed_out_browser_to_sign_in(
    app: Flask, client: FlaskClient
) -> None:
    checked = 0
    for rule, url, method in routes(app):
        if rule.endpoint in PUBLIC | SIGNED_BY_INTERCOM:
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
        if rule.endpoint in SIGNED_BY_INTERCOM:
            continue
        response = signed_in.post(url, data={"title": "x"})
        assert response.status_code == 400, url
        assert CSRF_REFUSED in response.get_data(as_text=True), url
    assert {rule.endpoint for rule, _ in posts} >= SIGNED_BY_INTERCOM | {"auth.login"}


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
