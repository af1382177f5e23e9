"""Connect with Intercom: OAuth and access tokens, against a stand-in for Intercom on loopback."""

from __future__ import annotations

import html
import json
import logging
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import itsdangerous.timed
import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    CODE,
    CONVERSATION_ID,
    INITIALIZE,
    ME,
    TOKEN,
    WORKSPACE_ID,
    Inbox,
    callback,
    connect_workspace,
    connections,
    create_user,
    is_sqlite,
    make_app,
    page_text,
    post,
    serve_intercom,
    sign_in,
    signed_in_browser,
    stored_feedback,
    token_answer,
    wait_for_sender,
)
from hedwig_app.intercom import IntercomError, fetch_me, intercom_api_url
from models import IntercomConnection, db

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


def test_connect_end_to_end(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    assert "Connect with Intercom" in page_text(agent.get("/intercom"))
    response = callback(agent, start_connect(agent))
    assert response.status_code == 302
    assert "Connected to Example Co workspace" in page_text(agent.get("/"))
    assert "Disconnect…" in page_text(agent.get("/intercom"))  # the owners' Intercom page
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
    assert "Connect with an access token" in page_text(agent.get("/"))
    assert post(agent, "/intercom/disconnect", {"connection_id": "999"}).status_code == 404
    assert agent.get("/intercom/disconnect?connection_id=999").status_code == 404


def test_connect_without_credentials_says_which_settings_to_set(signed_in: FlaskClient) -> None:
    """The log says it in one line, linking to the Intercom page; that page names them."""
    log = page_text(signed_in.get("/"))
    assert "HEDWIG_INTERCOM_CLIENT_SECRET" not in log
    assert 'Intercom not connected: <a href="/intercom">set it up</a>' in log
    page = page_text(signed_in.get("/intercom"))
    assert "Not set: HEDWIG_INTERCOM_CLIENT_SECRET" in page
    assert "Not set: HEDWIG_INTERCOM_CLIENT_ID" in page
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


def intercom_error(status: int, code: str, message: str) -> Response:
    """Intercom's documented error body: an error.list whose first error's code says why."""
    body = {
        "type": "error.list",
        "request_id": "req-0001",
        "errors": [{"code": code, "message": message}],
    }
    return Response(json.dumps(body), status, content_type="application/json")


PERMISSION_MISSING = (
    "HTTP 401 (token_unauthorized): the app lacks a permission this needs (Read admins): add it "
    "in the Developer Hub (your app → Configure → Authentication / permissions), then reinstall "
    "the app"
)
TOKEN_REFUSED = (
    "it no longer accepts this token (revoked, or the app was uninstalled): connect again"
)
PLAN_RESTRICTED = "HTTP 403 (api_plan_restricted): your Intercom plan does not include this"
BIG_BODY = json.dumps({"errors": [{"code": "token_unauthorized"}], "pad": "x" * 2_000_000})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            intercom_error(401, "unauthorized", "Access Token Invalid"),
            f"HTTP 401 (unauthorized): {TOKEN_REFUSED}",
        ),
        (
            intercom_error(401, "token_unauthorized", "Not authorized to access resource"),
            PERMISSION_MISSING,
        ),
        (
            intercom_error(403, "api_plan_restricted", "Active subscription needed."),
            PLAN_RESTRICTED,
        ),
        (Response("", 401), f"HTTP 401: {TOKEN_REFUSED}"),
        (Response("<html>Unauthorized</html>", 401), f"HTTP 401: {TOKEN_REFUSED}"),
        (Response(BIG_BODY, 401, content_type="application/json"), f"HTTP 401: {TOKEN_REFUSED}"),
        (Response("upstream broke", 503), "HTTP 503: it had a problem"),
        (Response("<html>not json</html>", 200), "was not JSON"),
        (Response('{"type": "admin", "id": "1"}', 200), "named no workspace"),
        (Response(json.dumps({**ME, "app": {"id_code": "../../x"}}), 200), "named no workspace"),
        (
            Response(json.dumps({**ME, "app": {"id_code": "hedwig-preview"}}), 200),
            "named no workspace",
        ),
    ],
    ids=[
        "revoked",
        "permission missing",
        "plan",
        "401 without a body",
        "401 not JSON",
        "401 too big to read",
        "intercom down",
        "garbage",
        "no workspace",
        "a path for a workspace",
        "the preview's workspace",
    ],
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


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (intercom_error(401, "unauthorized", "Access Token Invalid"), 401, "unauthorized"),
        (intercom_error(401, "token_unauthorized", "Not authorized"), 401, "token_unauthorized"),
        (intercom_error(403, "api_plan_restricted", "Upgrade"), 403, "api_plan_restricted"),
        (intercom_error(401, "no such code <script>", "odd"), 401, None),
        (Response("", 401), 401, None),
    ],
)
def test_intercoms_error_code_is_kept_for_the_callers_to_tell_refusals_apart(
    private_app: Flask, httpserver: HTTPServer, answer: Response, status: int, code: str | None
) -> None:
    httpserver.expect_request("/me").respond_with_response(answer)
    with private_app.app_context(), pytest.raises(IntercomError) as refused:
        fetch_me("tok_wrong_0123456789")
    assert (refused.value.http_status, refused.value.code) == (status, code)


@pytest.mark.parametrize(
    "pasted", ["", "   ", "two words", "x" * 513, "tab\there", "t\u00f6ken-0123456789"]
)
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


@pytest.fixture(scope="module")
def regional_intercom_servers() -> Iterator[dict[str, HTTPServer]]:
    """A stand-in for Intercom's API host in each region, on loopback, started once for the
    module (stopping one waits out its half-second poll)."""
    servers = {region: HTTPServer(host="127.0.0.1", port=0) for region in ("us", "eu", "au")}
    for server in servers.values():
        server.start()
    yield servers
    with ThreadPoolExecutor() as pool:  # each waits out its poll: all three at once
        list(pool.map(HTTPServer.stop, servers.values()))


@pytest.fixture
def regional_intercom(
    regional_intercom_servers: dict[str, HTTPServer],
) -> Iterator[dict[str, HTTPServer]]:
    """The regional stand-ins, each test's with no answers set and no requests heard yet."""
    for server in regional_intercom_servers.values():
        server.clear()
    yield regional_intercom_servers
    for server in regional_intercom_servers.values():
        server.clear()


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
        INTERCOM_API_URL="",  # each region's own stand-in
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

    with regional_app.app_context():  # as an OAuth install, which Hedwig may uninstall
        db.session.get(IntercomConnection, connection.id).connected_with = "oauth"
        db.session.commit()
    form = {"connection_id": str(connection.id), "uninstall": "yes"}
    post(browser, "/intercom/disconnect", form)
    (uninstall,) = [
        req for req, _ in regional_intercom[region].log if req.path == "/auth/uninstall"
    ]
    assert uninstall.headers["Authorization"] == f"Bearer {TOKEN}"
    others = [name for name in regional_intercom if name not in (region, "us")]
    assert all(regional_intercom[name].log == [] for name in others)


@pytest.mark.parametrize(("said", "kept"), [("Mars", "mars"), ("x" * 100_000, "x" * 15 + "…")])
def test_an_unknown_region_uses_the_us_hosts_and_says_so_on_the_intercom_page(
    regional_app: Flask,
    regional_intercom: dict[str, HTTPServer],
    caplog: pytest.LogCaptureFixture,
    said: str,
    kept: str,
) -> None:
    """Intercom's name for the region is kept (bounded), the US hosts answer for it, and the
    Intercom page says so, where an owner looks; the log says it once, briefly."""
    me = {**ME, "app": {**ME["app"], "region": said}}
    regional_intercom["us"].expect_request("/me").respond_with_json(me)
    regional_intercom["us"].expect_request("/auth/uninstall", method="POST").respond_with_json({})
    create_user(regional_app)
    browser = regional_app.test_client()
    sign_in(browser)
    paste_token(browser)
    (connection,) = connections(regional_app)
    assert connection.region == kept
    (warning,) = [r.getMessage() for r in caplog.records if "Unknown Intercom region" in r.message]
    assert warning.startswith(f"Unknown Intercom region {said.lower()[:40]!r}")
    assert warning.endswith(": using the US hosts") and len(warning) < 100
    settings = page_text(browser.get("/intercom"))
    assert (
        f"Intercom said region '{kept}', which Hedwig does not know: using the US hosts" in settings
    )
    assert "data-unknown-region" not in page_text(browser.get("/team"))

    companies = f"/contacts/{INITIALIZE['contact']['id']}/companies"
    regional_intercom["us"].expect_request(companies).respond_with_json({"data": []})
    inbox = Inbox(regional_app)
    inbox.save("Heard here", payload={**INITIALIZE, "workspace_region": said})
    wait_for_sender(regional_app)  # the customer's company, read on the US hosts too
    (record,) = stored_feedback(regional_app)
    page = page_text(browser.get(f"/feedback/{record.id}"))
    assert f'href="https://app.us.example/a/inbox/{WORKSPACE_ID}/inbox/conversation/' in page

    with regional_app.app_context():  # as an OAuth install, which Hedwig may uninstall
        db.session.get(IntercomConnection, connection.id).connected_with = "oauth"
        db.session.commit()
    form = {"connection_id": str(connection.id), "uninstall": "yes"}
    post(browser, "/intercom/disconnect", form)
    assert [req.path for req, _ in regional_intercom["us"].log][-1] == "/auth/uninstall"
    assert all(regional_intercom[name].log == [] for name in ("eu", "au"))


def test_a_known_region_says_nothing_on_the_intercom_page(
    regional_app: Flask, regional_intercom: dict[str, HTTPServer]
) -> None:
    me = {**ME, "app": {**ME["app"], "region": "EU"}}
    regional_intercom["us"].expect_request("/me").respond_with_json(me)
    create_user(regional_app)
    browser = regional_app.test_client()
    sign_in(browser)
    paste_token(browser)
    settings = page_text(browser.get("/intercom"))
    assert "which Hedwig does not know" not in settings and "<dd>EU" in settings


def test_a_region_too_long_to_be_real_is_logged_only_in_part(
    regional_app: Flask,
    regional_intercom: dict[str, HTTPServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    me = {**ME, "app": {**ME["app"], "region": "Mars" + "s" * 100_000}}
    regional_intercom["us"].expect_request("/me").respond_with_json(me)
    create_user(regional_app)
    browser = regional_app.test_client()
    sign_in(browser)
    paste_token(browser)
    (connection,) = connections(regional_app)
    assert connection.region == "mars" + "s" * 11 + "…"  # kept, cut to the column
    (warning,) = [
        r.getMessage() for r in caplog.records if "Unknown Intercom region" in r.getMessage()
    ]
    assert warning.startswith("Unknown Intercom region 'marssss")
    assert len(warning) < 200


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


# Disconnect: Hedwig forgets the token; uninstalling the app from the workspace is a second,
# explicit choice, for an OAuth install only.


def test_disconnect_forgets_the_token_and_leaves_the_app_installed(
    private_app: Flask, teammate: FlaskClient, httpserver: HTTPServer
) -> None:
    serve_intercom(httpserver)
    paste_token(teammate)
    (connection,) = connections(private_app)
    page = page_text(teammate.get(f"/intercom/disconnect?connection_id={connection.id}"))
    assert "Disconnect Example Co workspace?" in page
    assert "uninstall" not in page.lower()  # a private app's install is not Hedwig's to undo
    refused = post(
        teammate,
        "/intercom/disconnect",
        {"connection_id": str(connection.id), "uninstall": "yes"},
    )
    assert refused.status_code == 400
    assert len(connections(private_app)) == 1
    response = post(teammate, "/intercom/disconnect", {"connection_id": str(connection.id)})
    assert response.status_code == 302
    assert "Hedwig forgot its token. The app stays installed" in page_text(teammate.get("/"))
    assert connections(private_app) == []
    assert [request.path for request, _ in httpserver.log] == ["/me"]


def oauth_connection(app: Flask, browser: FlaskClient, httpserver: HTTPServer) -> Any:
    serve_intercom(httpserver)
    callback(browser, start_connect(browser))
    (connection,) = connections(app)
    assert connection.connected_with == "oauth"
    return connection


def test_an_oauth_install_may_also_be_uninstalled_when_asked(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    connection = oauth_connection(intercom_app, agent, httpserver)
    httpserver.expect_request("/auth/uninstall", method="POST").respond_with_data("", 200)
    page = page_text(agent.get(f"/intercom/disconnect?connection_id={connection.id}"))
    assert "Also uninstall Hedwig from Example Co workspace" in page
    assert "every teammate there loses the Inbox app" in page
    form = {"connection_id": str(connection.id), "uninstall": "yes"}
    assert post(agent, "/intercom/disconnect", form).status_code == 302
    assert "Hedwig was uninstalled from it in Intercom" in page_text(agent.get("/"))
    assert connections(intercom_app) == []
    uninstalls = [request for request, _ in httpserver.log if request.path == "/auth/uninstall"]
    assert [request.headers["Authorization"] for request in uninstalls] == [f"Bearer {TOKEN}"]


def test_disconnect_forgets_the_token_even_when_intercom_cannot_uninstall(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    connection = oauth_connection(intercom_app, agent, httpserver)
    httpserver.expect_request("/auth/uninstall").respond_with_data("down", 500)
    form = {"connection_id": str(connection.id), "uninstall": "yes"}
    post(agent, "/intercom/disconnect", form)
    page = page_text(agent.get("/"))
    assert "Hedwig forgot its token, but Intercom did not uninstall the app" in page
    assert "HTTP 500" in page
    assert connections(intercom_app) == []


# The owners' Intercom page: the connection, its region, a permissions check, how to connect.


def test_the_log_says_intercom_is_not_connected_in_one_line_that_can_be_dismissed(
    app: Flask, signed_in: FlaskClient
) -> None:
    member = signed_in_browser(app, "grace@example.com")  # the second user: a member
    for browser in (signed_in, member):  # the same words for everyone
        page = page_text(browser.get("/"))
        assert page.count("Intercom not connected") == 2  # the nav, and the log's one line
        assert "Intercom not set up" not in page
    assert "an owner can connect it" in page_text(member.get("/"))
    assert signed_in.post("/intercom/setup-line/dismiss").status_code == 400  # no CSRF token
    response = post(signed_in, "/intercom/setup-line/dismiss")
    assert (response.status_code, response.headers["Location"]) == (302, "/")
    page = page_text(signed_in.get("/"))
    assert "data-setup-line" not in page and page.count("Intercom not connected") == 1
    assert "data-setup-line" in page_text(member.get("/"))  # their browser did not dismiss it


def test_the_permissions_check_says_which_permission_is_missing(
    intercom_app: Flask, agent: FlaskClient, httpserver: HTTPServer
) -> None:
    connect_workspace(intercom_app)
    (connection,) = connections(intercom_app)
    httpserver.expect_request("/me").respond_with_json(ME)
    missing = {"type": "error.list", "errors": [{"code": "token_unauthorized"}]}
    httpserver.expect_request("/conversations").respond_with_json(missing, status=401)
    httpserver.expect_request("/contacts").respond_with_json({"data": []})
    page = page_text(agent.get("/intercom"))
    assert "Connected" in page and "Example Co workspace" in page and "<dd>US" in page
    assert "data-permission" not in page  # checked only when asked
    response = post(agent, f"/intercom/{connection.id}/check")
    page = html.unescape(page_text(response))
    assert response.status_code == 200
    assert "✓ Read admins" in page and "✓ Read and list users and companies" in page
    assert "✗ Read conversations</span>: Intercom answered /conversations with HTTP 401" in page
    assert "the app lacks a permission this needs (Read conversations)" in page
    assert TOKEN not in page
    sent = [(request.path, request.args.get("per_page")) for request, _ in httpserver.log]
    assert sent == [("/me", None), ("/conversations", "1"), ("/contacts", "1")]
    assert post(agent, "/intercom/999/check").status_code == 404
    assert agent.post(f"/intercom/{connection.id}/check").status_code == 400  # no CSRF token


def test_the_intercom_page_offers_a_signed_request_to_copy_that_the_inbox_accepts(
    intercom_app: Flask, agent: FlaskClient
) -> None:
    connect_workspace(intercom_app)
    page = html.unescape(page_text(agent.get("/intercom")))
    assert 'data-copy="curl-1"' in page and CLIENT_SECRET not in page
    curl = re.search(r'<code id="curl-1"[^>]*>(.*?)</code>', page, re.DOTALL).group(1)
    url, signature, body = re.fullmatch(
        r"curl -sS -X POST (\S+) -H 'Content-Type: application/json' \\\n"
        r"  -H 'X-Body-Signature: (\w+)' --data-binary '(.*)'",
        curl,
        re.DOTALL,
    ).groups()
    assert url == "https://hedwig.example/intercom/canvas/initialize"
    assert json.loads(body)["workspace_id"] == WORKSPACE_ID
    response = intercom_app.test_client().post(
        urlsplit(url).path,
        data=body,
        headers={"Content-Type": "application/json", "X-Body-Signature": signature},
    )
    assert response.status_code == 200 and "canvas" in response.get_json()
