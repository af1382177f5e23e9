"""Hedwig: a self-hosted feedback log for teams that support their customers in Intercom.

Read top to bottom, this module is the README's tutorial, a section a step:

1. The app: ``create_app()`` puts the steps together.
2. Sign-in: accounts, the session, the CSRF token.
3. The feedback log: list, search, show, add, export.
4. Connect with Intercom: OAuth, and the token kept encrypted.
5. The Inbox app: Canvas Kit's signed initialize and submit, and a preview without Intercom.
6. The command line.
7. Plumbing: settings, the database, headers and error pages. Skip it on a first read.

Each section opens with its blueprint and views, then the helpers they call.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import hmac
import io
import json
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import click
import flask_migrate
import requests
from cryptography.fernet import Fernet
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask.cli import with_appcontext
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from markupsafe import Markup, escape
from sqlalchemy import (
    Row,
    Select,
    bindparam,
    event,
    func,
    inspect,
    literal,
    make_url,
    or_,
    select,
    union,
    union_all,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from werkzeug.exceptions import HTTPException

from models import (
    DESCRIPTION_MAX,
    EMAIL_MAX,
    ID_MAX,
    NAME_MAX,
    PREVIEW_WORKSPACE_ID,
    TITLE_MAX,
    Feedback,
    IntercomConnection,
    UsedOAuthState,
    User,
    db,
    is_email,
    normalize_email,
)

# --- 1. The app ------------------------------------------------------------------------------


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build Hedwig: its settings (defaults, then HEDWIG_* environment variables, then
    ``config``), its database, and each step of the tutorial as a blueprint."""
    config = dict(config or {})
    instance_path = config.pop("INSTANCE_PATH", None) or os.environ.get("HEDWIG_INSTANCE_PATH")
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    load_settings(app, config)
    init_database(app)
    app.extensions["hedwig_token_cipher"] = load_token_cipher(app)

    for blueprint in (auth, feedback_log, connect, inbox, preview):
        app.register_blueprint(blueprint)
    install_plumbing(app)
    for command in (init_db_command, create_user_command, backup_command, copy_db_command):
        app.cli.add_command(command)
    return app


# --- 2. Sign-in ------------------------------------------------------------------------------
#
# Every page needs a signed-in user, except the few marked @public. Every POST form carries a
# CSRF token. Canvas requests come from Intercom's servers and are the exception to both: their
# body signature is their authority (section 5).

auth = Blueprint("auth", __name__)
PASSWORD_MIN = 8


def public(view: Callable) -> Callable:
    """Mark a view that answers without sign-in."""
    view.public = True  # type: ignore[attr-defined]
    return view


@auth.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    next_url = safe_next(request.values.get("next"))
    if no_user_yet():
        return redirect(url_for("auth.first_account", next=next_url))
    if request.method == "GET":
        return render_template("login.html", next_url=next_url)

    email = normalize_email(request.form.get("email", ""))
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None or not user.check_password(request.form.get("password", "")):
        error = "Wrong email or password."
        return render_template("login.html", next_url=next_url, error=error, email=email), 401
    sign_in(user)
    return redirect(next_url)


@auth.route("/first-account", methods=["GET", "POST"])
@public
def first_account() -> Any:
    """A fresh install has no user: the first visitor creates the first account."""
    next_url = safe_next(request.values.get("next"))
    if request.method == "GET":
        if not no_user_yet():
            return redirect(url_for("auth.login", next=next_url))
        return render_template("first_account.html", next_url=next_url)

    email = normalize_email(request.form.get("email", ""))
    password = request.form.get("password", "")
    error = validate_credentials(email, password)
    if not error and password != request.form.get("confirm", ""):
        error = "The two passwords differ."
    if error:
        page = render_template("first_account.html", next_url=next_url, error=error, email=email)
        return page, 400
    user = new_user(email, password)
    begin_write(User)  # two first accounts at once: only one may win
    if not no_user_yet():
        db.session.rollback()
        abort(400, "An account exists already: sign in instead.")
    db.session.add(user)
    db.session.commit()
    sign_in(user)
    flash("Welcome to Hedwig. Your account is ready.")
    return redirect(next_url)


@auth.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"))


@auth.before_app_request
def load_signed_in_user() -> None:
    if from_intercom():  # Intercom's servers: no user, no cookie to read
        g.user = None
        return
    user_id = session.get("user_id")
    g.user = db.session.get(User, user_id) if user_id is not None else None


@auth.before_app_request
def require_sign_in() -> Response | None:
    view = current_app.view_functions.get(request.endpoint or "")
    if (
        g.user is None
        and view is not None
        and not getattr(view, "public", False)
        and request.endpoint != "static"
        and not from_intercom()
    ):
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


@auth.before_app_request
def check_csrf_token() -> None:
    if request.method != "POST" or from_intercom():
        return
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf_token", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(
            400, "This form has expired or did not come from Hedwig. Reload the page and try again."
        )


@auth.app_context_processor
def sign_in_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


def from_intercom() -> bool:
    """A canvas request, sent by Intercom's servers to the Inbox app's blueprint."""
    return request.blueprint == inbox.name


def csrf_token() -> str:
    if "csrf_token" not in session:
        session["csrf_token"] = secrets.token_urlsafe(32)
    return session["csrf_token"]


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host, scheme or protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("log.index")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or "\\" in target:
        return url_for("log.index")
    return target


def no_user_yet() -> bool:
    return db.session.scalar(select(User.id).limit(1)) is None


def validate_credentials(email: str, password: str) -> str | None:
    if not is_email(email):
        return "Enter a valid email address."
    if len(password) < PASSWORD_MIN:
        return f"The password must be at least {PASSWORD_MIN} characters."
    return None


def new_user(email: str, password: str) -> User:
    user = User(email=normalize_email(email))
    user.set_password(password)
    return user


def add_user(email: str, password: str) -> User:
    user = new_user(email, password)
    db.session.add(user)
    db.session.commit()
    return user


def sign_in(user: User) -> None:
    session.clear()  # a fresh session: nothing from before sign-in carries over
    session["user_id"] = user.id


# --- 3. The feedback log ---------------------------------------------------------------------

feedback_log = Blueprint("log", __name__)
PER_PAGE = 50


@feedback_log.get("/")
def index() -> str:
    q = request.args.get("q", "").strip()
    page = request.args.get("page", 1, type=int)
    pagination = db.paginate(listed_feedback(q), page=page, per_page=PER_PAGE, error_out=False)
    return render_template("index.html", pagination=pagination, q=q)


@feedback_log.get("/feedback/<int:feedback_id>")
def show_feedback(feedback_id: int) -> str:
    return render_template("show.html", feedback=db.get_or_404(Feedback, feedback_id))


@feedback_log.route("/feedback/new", methods=["GET", "POST"])
def new_feedback() -> Any:
    if request.method == "GET":
        return render_template("new.html", values={}, errors={})
    values = {
        name: request.form.get(name, "").strip()
        for name in ("title", "description", "customer_name", "customer_email")
    }
    errors = validate_feedback(values)
    if errors:
        return render_template("new.html", values=values, errors=errors), 400
    feedback = Feedback(**values, source="web", created_by_id=g.user.id)
    db.session.add(feedback)
    db.session.commit()
    flash(f"Feedback #{feedback.id} saved.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback.id))


@feedback_log.get("/feedback.csv")
def export_csv() -> Response:
    statement = listed_feedback(request.args.get("q", "").strip())
    response = Response(stream_with_context(csv_lines(statement)), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="hedwig-feedback.csv"'
    return response


def listed_feedback(q: str) -> Select:
    """The list, as the page and the CSV show it: newest first, narrowed by the search."""
    return search(select(Feedback).order_by(Feedback.created_at.desc(), Feedback.id.desc()), q)


def search(statement: Select, q: str) -> Select:
    """Narrow a Feedback query to rows whose text fields contain ``q`` (any case)."""
    if not q:
        return statement
    # SQLite's LIKE already ignores (ASCII) case, as its lower() would, and is 3x faster
    # without lower() around every column; other databases get ILIKE.
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    return statement.where(
        or_(
            *(
                column.contains(q, autoescape=True)
                if sqlite
                else column.icontains(q, autoescape=True)
                for column in (
                    Feedback.title,
                    Feedback.description,
                    Feedback.customer_name,
                    Feedback.customer_email,
                )
            )
        )
    )


def validate_feedback(values: Mapping[str, str]) -> dict[str, str]:
    """Field name → message, for every invalid field; empty when all is well."""
    errors = {}
    if not values["title"]:
        errors["title"] = "A title is required."
    elif len(values["title"]) > TITLE_MAX:
        errors["title"] = f"Keep the title to {TITLE_MAX} characters ({len(values['title'])} now)."
    if len(values.get("description", "")) > DESCRIPTION_MAX:
        errors["description"] = f"Keep the details to {DESCRIPTION_MAX} characters."
    email = values.get("customer_email", "")
    if email and not is_email(email):
        errors["customer_email"] = "Enter a valid email address, or leave it empty."
    if len(values.get("customer_name", "")) > NAME_MAX:
        errors["customer_name"] = f"Keep the name to {NAME_MAX} characters."
    return errors


CSV_COLUMNS = (
    "id",
    "created_at",
    "title",
    "description",
    "customer_name",
    "customer_email",
    "source",
    "workspace_id",
    "conversation_id",
    "contact_id",
    "admin_id",
    "admin_name",
    "admin_email",
    "conversation_url",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_lines(statement: Select) -> Iterator[str]:
    """The export, a line at a time, reading the rows in batches so memory stays flat."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for feedback in db.session.scalars(statement.execution_options(yield_per=500)):
        writer.writerow(csv_row(feedback))
        yield flush()


def csv_row(feedback: Feedback) -> list[str]:
    values = {
        **{column: getattr(feedback, column) for column in CSV_COLUMNS},
        "created_at": feedback.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return [csv_cell(values[column]) for column in CSV_COLUMNS]


def csv_cell(value: Any) -> str:
    """Text a spreadsheet shows as text: a leading ' defuses formula injection."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


# --- 4. Connect with Intercom ----------------------------------------------------------------
#
# The browser goes to Intercom with a signed `state`, comes back to /intercom/callback with a
# `code`, and Hedwig trades the code for a token and asks /me which workspace granted it.

connect = Blueprint("connect", __name__)
STATE_MAX_AGE = 10 * 60  # seconds
STATE_SALT = "hedwig.intercom-oauth-state"
INTERCOM_API_VERSION = "2.11"
SETTINGS_MISSING = (
    "Connecting needs your Intercom app's credentials: set HEDWIG_INTERCOM_CLIENT_ID and "
    "HEDWIG_INTERCOM_CLIENT_SECRET, then restart Hedwig."
)


@connect.get("/intercom/connect")
def intercom_connect() -> Response:
    if not intercom_configured():
        abort(503, SETTINGS_MISSING)
    query = urlencode(
        {
            "client_id": current_app.config["INTERCOM_CLIENT_ID"],
            "state": new_oauth_state(g.user),
            "redirect_uri": external_url("connect.intercom_callback"),
        }
    )
    return redirect(f"{current_app.config['INTERCOM_OAUTH_URL']}?{query}")


@connect.get("/intercom/callback")
@public  # a signed-out browser gets the refusal page, not the sign-in form
def intercom_callback() -> Response:
    # This browser's user asked to connect, just now, and this is the first answer.
    spend_oauth_state(request.args.get("state", ""))
    # Intercom's answer: a code, unless the user denied access.
    code = request.args.get("code")
    if not code:
        raise AccessDenied(request.args.get("error", ""))
    # Trade the code for an access token, then ask /me which workspace granted it.
    token = exchange_code_for_token(code)
    details = fetch_me(token)
    # Keep the token, encrypted, for that workspace.
    connection = save_connection(details, token, g.user)
    current_app.logger.info("Connected Intercom workspace %s", connection.workspace_id)
    flash(f"Connected to {connection.workspace_name}.")
    return redirect(url_for("log.index"))


@connect.post("/intercom/disconnect")
def intercom_disconnect() -> Response:
    connection = db.get_or_404(IntercomConnection, request.form.get("connection_id", type=int) or 0)
    name = connection.workspace_name
    db.session.delete(connection)
    db.session.commit()
    flash(f"Disconnected from {name}. Its token is forgotten.")
    return redirect(url_for("log.index"))


class ConnectFailed(Exception):
    """Connecting did not happen. The message is safe to log and to show: it never holds the
    client secret, the code or a token."""

    status = 400

    def explanation(self) -> str:
        return str(self)


class OAuthStateError(ConnectFailed):
    """The callback's state is not one this browser's user asked for just now."""


class AccessDenied(ConnectFailed):
    """The callback carries no code: the user denied access (Intercom's `error`, if any)."""

    def explanation(self) -> str:
        return (
            "Intercom did not grant access, so nothing was connected. "
            "To connect, click Connect with Intercom again and choose Authorize."
        )

    def __str__(self) -> str:
        return f"no code in the callback (error={self.args[0][:100]!r})"


class IntercomError(ConnectFailed):
    """A call to Intercom failed."""

    status = 502

    def explanation(self) -> str:
        return f"Connecting failed: {self}. Nothing was stored; please try again."


@connect.errorhandler(ConnectFailed)
def connect_failed(error: ConnectFailed) -> tuple[str, int]:
    db.session.rollback()
    current_app.logger.warning("Connect with Intercom failed: %s", error)
    return render_template("intercom_failed.html", message=error.explanation()), error.status


@connect.app_context_processor
def connection_state() -> dict[str, Any]:
    """What the nav shows of Intercom: connected workspaces, or how to connect."""
    connections: list[IntercomConnection] = []
    if g.get("user") is not None:
        connections = list(
            db.session.scalars(select(IntercomConnection).order_by(IntercomConnection.id))
        )
    return {
        "connections": connections,
        "intercom_configured": intercom_configured(),
        "settings_missing": SETTINGS_MISSING,
    }


def intercom_configured() -> bool:
    return bool(
        current_app.config["INTERCOM_CLIENT_ID"] and current_app.config["INTERCOM_CLIENT_SECRET"]
    )


STATE_REFUSED = (
    "This connection request expired or did not start in this browser. "
    "Go back to Hedwig and click Connect with Intercom again."
)


def state_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=STATE_SALT)


def new_oauth_state(user: User) -> str:
    """A state naming the user and a nonce that only this browser's session also holds."""
    nonce = secrets.token_urlsafe(24)
    session["oauth_nonce"] = nonce
    return state_serializer().dumps({"user_id": user.id, "nonce": nonce})


def spend_oauth_state(state: str) -> None:
    """Accept the state once: signed by us, at most 10 minutes old, made for the signed-in user
    in this browser, and never used before. Raise OAuthStateError otherwise."""
    expected_nonce = session.pop("oauth_nonce", None)
    try:
        payload = state_serializer().loads(state, max_age=STATE_MAX_AGE)
    except SignatureExpired:  # a subclass of BadSignature, so it is caught first
        raise OAuthStateError(
            "This connection request expired: it must be completed within 10 minutes. "
            "Click Connect with Intercom again."
        ) from None
    except BadSignature:
        raise OAuthStateError(STATE_REFUSED) from None
    if not (
        isinstance(payload, dict)
        and g.user is not None
        and payload.get("user_id") == g.user.id
        and isinstance(expected_nonce, str)
        and hmac.compare_digest(str(payload.get("nonce", "")), expected_nonce)
    ):
        raise OAuthStateError(STATE_REFUSED)
    # The session is a cookie the browser keeps: an old copy of it still holds the nonce, so
    # single use is settled by the database's unique key, not by the session.
    db.session.add(UsedOAuthState(nonce=expected_nonce))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise OAuthStateError(STATE_REFUSED) from None


def exchange_code_for_token(code: str) -> str:
    """Trade the callback's code, byte for byte (it may end in "="), for an access token."""
    body = call_intercom(
        "POST",
        "/auth/eagle/token",
        data={
            "code": code,
            "client_id": current_app.config["INTERCOM_CLIENT_ID"],
            "client_secret": current_app.config["INTERCOM_CLIENT_SECRET"],
        },
    )
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str) or not token:
        raise IntercomError("Intercom's token answer held no token")
    return token


def fetch_me(token: str) -> dict[str, str | None]:
    """Ask Intercom who granted the token: the workspace (app.id_code) and the admin."""
    body = call_intercom("GET", "/me", token=token)
    workspace = body.get("app") if isinstance(body.get("app"), dict) else {}
    workspace_id = workspace.get("id_code")
    if not isinstance(workspace_id, str) or not workspace_id:
        raise IntercomError("Intercom's /me answer named no workspace (app.id_code)")
    return {
        "workspace_id": workspace_id,
        "workspace_name": text_or_none(workspace.get("name")) or workspace_id,
        "admin_id": text_or_none(body.get("id")),
        "admin_name": text_or_none(body.get("name")),
        "admin_email": text_or_none(body.get("email")),
    }


def call_intercom(method: str, path: str, token: str | None = None, **kwargs: Any) -> dict:
    """One request to Intercom's API, returning its JSON object or raising IntercomError."""
    headers = {"Accept": "application/json", "Intercom-Version": INTERCOM_API_VERSION}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = current_app.config["INTERCOM_API_URL"].rstrip("/") + path
    timeout = current_app.config["INTERCOM_TIMEOUT"]
    try:
        response = requests.request(method, url, headers=headers, timeout=timeout, **kwargs)
    except requests.Timeout:
        raise IntercomError(f"Intercom did not answer {path} within {timeout} seconds") from None
    except requests.RequestException as error:
        raise IntercomError(
            f"could not reach Intercom for {path} ({type(error).__name__})"
        ) from None
    if response.status_code != 200:
        raise IntercomError(f"Intercom answered {path} with HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise IntercomError(f"Intercom's answer to {path} was not JSON") from None
    if not isinstance(body, dict):
        raise IntercomError(f"Intercom's answer to {path} was not a JSON object")
    return body


def save_connection(
    details: Mapping[str, str | None], token: str, user: User
) -> IntercomConnection:
    """Store the token for its workspace: connecting again updates the row in place."""
    begin_write(IntercomConnection)
    connection = db.session.scalar(
        select(IntercomConnection).where(IntercomConnection.workspace_id == details["workspace_id"])
    ) or IntercomConnection(workspace_id=details["workspace_id"])
    for name, value in details.items():
        setattr(connection, name, value)
    connection.token = token
    connection.connected_by_id = user.id
    db.session.add(connection)
    db.session.commit()
    return connection


def load_token_cipher(app: Flask) -> Fernet:
    """The key that encrypts Intercom tokens at rest: kept outside the database, so a copy of
    the database alone (a backup, say) holds no usable token."""
    key = app.config.get("TOKEN_KEY") or instance_secret(
        app, "token_key", lambda: Fernet.generate_key().decode()
    )
    try:
        return Fernet(key)
    except ValueError:
        raise RuntimeError(
            "HEDWIG_TOKEN_KEY is not a Fernet key: make one with python -c 'from "
            "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        ) from None


# --- 5. The Inbox app (Canvas Kit) -----------------------------------------------------------
#
# Intercom POSTs signed JSON to /intercom/canvas/initialize (every time an agent opens a
# conversation) and /intercom/canvas/submit (when a button is clicked); Hedwig answers with a
# canvas: a list of components. The views only verify, parse and pick a canvas; each canvas is
# one function returning plain data, built from the small component helpers below.

inbox = Blueprint("inbox", __name__)
CANVAS_LIST_LIMIT = 3
NONCE_BYTES = 24


@inbox.post("/intercom/canvas/initialize")
def canvas_initialize() -> Response:
    payload = read_canvas_request()
    connected = workspace_connected(payload.get("workspace_id"), read_connection())
    return canvas_response(initialize_canvas(payload, connected))


@inbox.post("/intercom/canvas/submit")
def canvas_submit() -> Response:
    payload = read_canvas_request()
    # On the ORM session's connection: a save goes on to use it.
    connected = workspace_connected(payload.get("workspace_id"), db.session.connection())
    return canvas_response(submit_canvas(payload, connected))


@inbox.errorhandler(HTTPException)
def canvas_error(error: HTTPException) -> tuple[dict[str, str], int]:
    """Intercom reads JSON, not pages."""
    return {"error": error.description or ""}, error.code or 500


def read_canvas_request() -> dict[str, Any]:
    """The verified JSON object Intercom sent, or an abort: 413, 503, 401, 400 in that order."""
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before anything else
    secret = current_app.config["INTERCOM_CLIENT_SECRET"]
    if not secret:
        current_app.logger.error("Canvas request refused: HEDWIG_INTERCOM_CLIENT_SECRET is not set")
        abort(503, "Hedwig has no Intercom client secret configured, so it cannot verify requests.")
    # The signature comes first: nothing of an unverified body is parsed or trusted.
    if not verify_canvas_signature(body, request.headers.get("X-Body-Signature"), secret):
        abort(401, "The request's X-Body-Signature does not match its body.")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        abort(400, "The request body is not JSON.")
    if not isinstance(payload, dict):
        abort(400, "The request body must be a JSON object.")
    return payload


def verify_canvas_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """True only for the exact hex HMAC-SHA256 of the raw body, keyed with the client secret."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), (signature or "").encode())


def canvas_response(body: dict[str, Any]) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def workspace_connected(workspace_id: Any, connection: Connection) -> bool:
    """Whether the request's workspace is connected. The preview's workspace never is: a real
    canvas request naming it is refused like any unconnected one."""
    workspace_id = id_or_none(workspace_id)
    if workspace_id == PREVIEW_WORKSPACE_ID:
        return False
    found = connection.execute(WORKSPACE_CONNECTION, {"workspace_id": workspace_id})
    return found.first() is not None


def initialize_canvas(payload: Mapping[str, Any], connected: bool) -> dict[str, Any]:
    """The answer to an initialize request (from Intercom, or from the preview)."""
    if not connected:
        return not_connected_canvas()
    return first_canvas(InboxContext.from_payload(payload))


def submit_canvas(payload: Mapping[str, Any], connected: bool) -> dict[str, Any]:
    """The answer to a submit request, by the component that was clicked."""
    if not connected:
        return not_connected_canvas()
    context = InboxContext.from_payload(payload)
    component_id = payload.get("component_id")
    if component_id == "save":
        return save_feedback(context, payload)
    if component_id in ("record", "another"):
        return form_canvas(context)
    return first_canvas(context)  # "back", "done", or anything unknown


@dataclass(frozen=True)
class InboxContext:
    """What a canvas request says about where the agent is: workspace, conversation, customer."""

    workspace_id: str | None
    conversation_id: str | None
    contact_id: str | None
    customer_name: str
    customer_email: str
    admin_id: str | None
    admin_name: str | None
    admin_email: str | None
    opening_html: str  # the customer's first message; turned into text only for the form

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> InboxContext:
        # Older apps get `customer` instead of `contact`; `context` may be absent.
        contact = payload.get("contact")
        if not isinstance(contact, dict):
            contact = payload.get("customer")
        author = field(payload, "conversation", "source", "author")
        body = field(payload, "conversation", "source", "body")
        return cls(
            workspace_id=id_or_none(payload.get("workspace_id")),
            conversation_id=id_or_none(field(payload, "conversation", "id"))
            or id_or_none(field(payload, "context", "conversation_id")),
            contact_id=id_or_none(field(contact, "id")),
            customer_name=text_or_none(field(contact, "name"))
            or text_or_none(field(author, "name"))
            or "",
            customer_email=text_or_none(field(contact, "email"), EMAIL_MAX)
            or text_or_none(field(author, "email"), EMAIL_MAX)
            or "",
            admin_id=id_or_none(field(payload, "admin", "id")),
            admin_name=text_or_none(field(payload, "admin", "name")),
            admin_email=text_or_none(field(payload, "admin", "email"), EMAIL_MAX),
            opening_html=body if isinstance(body, str) else "",
        )


def field(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]…, or None where a step is missing or not an object: real payloads
    leave out or null any field."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def text_or_none(value: Any, limit: int = NAME_MAX) -> str | None:
    """A JSON value as bounded text: numbers become text, anything else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)[:limit] or None


def id_or_none(value: Any) -> str | None:
    """An Intercom id as text (conversation ids come as strings or integers)."""
    text = text_or_none(value, limit=ID_MAX + 1)
    return text if text and len(text) <= ID_MAX else None


# The canvases, one function each.


def not_connected_canvas() -> dict[str, Any]:
    return canvas(
        [
            text("This Intercom workspace is not connected to Hedwig yet.", "muted"),
            button("connect", "Connect in Hedwig", url=external_url("connect.intercom_connect")),
        ]
    )


def first_canvas(context: InboxContext) -> dict[str, Any]:
    """What this conversation and this customer already gave, and a Record button. It is sent
    on every conversation switch: one indexed statement, no outside calls, no primary button."""
    lists = first_canvas_lists(read_connection(), context)
    components = [text("Feedback from this conversation", "header")]
    if lists["conversation"]:
        components += listed(lists["conversation"])
    else:
        components.append(text("Nothing recorded from this conversation yet.", "muted"))
    if lists["customer"]:
        who = markdown_escape(context.customer_name or context.customer_email)
        components.append(text(f"More from {who}", "header"))
        components += listed(lists["customer"])
    components.append(button("record", "Record feedback"))
    return canvas(components)


def form_canvas(
    context: InboxContext,
    title: str = "",
    description: str | None = None,
    errors: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The form, prefilled with the customer's opening message so their words are kept."""
    errors = errors or {}
    customer = " · ".join(filter(None, [context.customer_name, context.customer_email]))
    components = [
        text("Record feedback", "header"),
        text(f"From {markdown_escape(customer)}" if customer else "Customer unknown", "muted"),
    ]
    components += [text(message, "error") for message in errors.values()]
    title_input: dict[str, Any] = {
        "type": "input",
        "id": "title",
        "label": "Title",
        "placeholder": "What do they ask for, in a line?",
        "value": title,
    }
    if "title" in errors:
        title_input["save_state"] = "failed"
    components.append(title_input)
    if description is None:
        description = html_to_text(context.opening_html)[:DESCRIPTION_MAX]
    components.append(
        {
            "type": "textarea",
            "id": "description",
            "label": "Details",
            "placeholder": "In the customer's words",
            "value": description,
            "error": "description" in errors,
        }
    )
    components += [
        button("save", "Save feedback", "primary"),
        button("back", "Back", "link"),
    ]
    # The nonce makes this form single use: a second submit finds the record the first made.
    return canvas(components, {"nonce": secrets.token_urlsafe(NONCE_BYTES)})


def saved_canvas(record: Feedback) -> dict[str, Any]:
    return canvas(
        [
            text(f"Feedback #{record.id} saved", "header"),
            text(markdown_escape(record.title)),
            button("open", "Open in Hedwig", url=feedback_url(record)),
            button("another", "Record another", "link"),
            button("done", "Done", "link"),
        ]
    )


def save_feedback(context: InboxContext, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Store the submitted form once, however often it arrives, and show it saved."""
    inputs = payload.get("input_values")
    title = clean_text(field(inputs, "title"), TITLE_MAX)
    description = clean_text(field(inputs, "description"), DESCRIPTION_MAX)
    errors = validate_feedback({"title": title, "description": description})
    nonce = field(payload, "current_canvas", "stored_data", "nonce")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= ID_MAX:
        errors["form"] = "This form has expired. Check the details and save again."
    if errors:
        return form_canvas(context, title[:TITLE_MAX], description[:DESCRIPTION_MAX], errors=errors)

    record = Feedback(
        title=title,
        description=description,
        customer_name=context.customer_name,
        customer_email=context.customer_email,
        source="intercom",
        workspace_id=context.workspace_id,
        conversation_id=context.conversation_id,
        contact_id=context.contact_id,
        admin_id=context.admin_id,
        admin_name=context.admin_name,
        admin_email=context.admin_email,
        submit_nonce=nonce,
    )
    db.session.add(record)
    try:
        db.session.commit()
    except IntegrityError:
        # The same form again (double click, retry, replay, another worker): the unique nonce
        # refused a second row, so answer with the record the first submit made.
        db.session.rollback()
        record = db.session.scalar(select(Feedback).where(Feedback.submit_nonce == nonce))
        if record is None or record.workspace_id != context.workspace_id:
            raise
    return saved_canvas(record)


# Canvas components, one helper each, so a canvas reads as the list of what the agent sees.


def canvas(components: list[dict[str, Any]], stored_data: dict | None = None) -> dict[str, Any]:
    return {"canvas": {"content": {"components": components}, "stored_data": stored_data or {}}}


def text(value: str, style: str = "paragraph") -> dict[str, Any]:
    return {"type": "text", "text": value, "style": style}


def button(component_id: str, label: str, style: str = "secondary", url: str | None = None) -> dict:
    action = {"type": "url", "url": url} if url else {"type": "submit"}
    return {"type": "button", "id": component_id, "label": label, "style": style, "action": action}


def feedback_list(records: list[Row]) -> dict[str, Any]:
    return {
        "type": "list",
        "items": [
            {
                "type": "item",
                "id": f"feedback-{record.id}",
                "title": record.title,
                "subtitle": f"#{record.id} · {format_datetime(record.created_at)}",
                "action": {"type": "url", "url": feedback_url(record)},
            }
            for record in records
        ],
    }


def listed(records: list[Row]) -> list[dict[str, Any]]:
    """A list of records and, below it, how many more there are."""
    shown, total = len(records), records[0].total
    if total <= shown:
        return [feedback_list(records)]
    more = f"{total - shown}+" if total >= COUNT_CAP else f"+{total - shown}"
    return [feedback_list(records), text(f"{more} more in Hedwig", "muted")]


def feedback_url(record: Feedback | Row) -> str:
    return external_url("log.show_feedback", feedback_id=record.id)


# What customers write, made safe for a canvas.


def html_to_text(html: str) -> str:
    """The customer's message as plain text: tags dropped, entities decoded, blank runs folded."""
    extractor = TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = [" ".join(line.split()) for line in "".join(extractor.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


class TextExtractor(HTMLParser):
    BLOCKS = frozenset({"p", "div", "li", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4"})
    SKIPPED = frozenset({"script", "style"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def clean_text(value: Any, limit: int) -> str:
    """An input value as text: control characters (but newlines and tabs) dropped, trimmed."""
    if not isinstance(value, str):
        return ""
    return "".join(c for c in value[: limit * 2] if c in "\n\t" or c.isprintable()).strip()


def markdown_escape(text: str) -> str:
    """Customer-supplied text in a markdown `text` component must not become a link or emphasis."""
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


# The first canvas's lookups. Intercom asks for the first canvas on every conversation switch,
# so its two lists come from one statement, built once at import: building it per request
# costs more than running it. Each list reads a bounded number of index entries, so a
# conversation with 2,000 records costs what one with 2 does.

COUNT_CAP = 100
LOOKBACK = 2 * COUNT_CAP


def newest_ids(*conditions: Any) -> Select:
    """The ids of up to COUNT_CAP matching records, newest first."""
    return select(Feedback.id).where(*conditions).order_by(Feedback.id.desc()).limit(COUNT_CAP)


def newest_ids_elsewhere(customer: Any) -> Select:
    """The ids of up to COUNT_CAP of a customer's records from other conversations, found among
    their LOOKBACK newest. Without that bound, each record of theirs in this conversation would
    be one more index entry to step over. Exact unless this conversation holds more than
    LOOKBACK - COUNT_CAP of their records."""
    recent = (
        select(Feedback.id, Feedback.conversation_id)
        .where(customer)
        .order_by(Feedback.id.desc())
        .limit(LOOKBACK)
        .subquery()
    )
    elsewhere = or_(
        recent.c.conversation_id.is_(None),
        recent.c.conversation_id != bindparam("conversation_id"),
    )
    return select(select(recent.c.id).where(elsewhere).limit(COUNT_CAP).subquery())


def newest_first(list_name: str, ids: Select) -> Select:
    """Up to CANVAS_LIST_LIMIT records of ``ids``, newest first, each row carrying the list's
    name and how many ids there are."""
    matching = ids.cte()
    total = select(func.count()).select_from(matching).scalar_subquery()
    newest = (
        select(
            literal(list_name).label("list"),
            Feedback.id,
            Feedback.title,
            Feedback.created_at,
            total.label("total"),
        )
        .where(Feedback.id.in_(select(matching.c.id)))
        .order_by(Feedback.id.desc())
        .limit(CANVAS_LIST_LIMIT)
    )
    return select(newest.subquery())


FIRST_CANVAS_LISTS = union_all(
    newest_first(
        "conversation",
        newest_ids(
            Feedback.workspace_id == bindparam("workspace_id"),
            Feedback.conversation_id == bindparam("conversation_id"),
        ),
    ),
    # A customer is their Intercom contact in this workspace, or their email address (which
    # also finds the feedback added by hand).
    newest_first(
        "customer",
        union(
            newest_ids_elsewhere(
                (Feedback.workspace_id == bindparam("workspace_id"))
                & (Feedback.contact_id == bindparam("contact_id"))
            ),
            newest_ids_elsewhere(Feedback.customer_email == bindparam("customer_email")),
        ),
    ),
)
WORKSPACE_CONNECTION = select(IntercomConnection.id).where(
    IntercomConnection.workspace_id == bindparam("workspace_id")
)


def first_canvas_lists(connection: Connection, context: InboxContext) -> dict[str, list[Row]]:
    """This conversation's newest records and this customer's from elsewhere, by list name.
    A None value matches nothing."""
    values = {
        "workspace_id": context.workspace_id,
        # An unknown conversation holds no record: all the customer's are elsewhere.
        "conversation_id": context.conversation_id or "",
        "contact_id": context.contact_id,
        "customer_email": context.customer_email or None,
    }
    lists: dict[str, list[Row]] = {"conversation": [], "customer": []}
    for row in connection.execute(FIRST_CANVAS_LISTS, values):
        lists[row.list].append(row)
    for rows in lists.values():
        rows.sort(key=lambda row: row.id, reverse=True)  # a UNION promises no order
    return lists


def read_connection() -> Connection:
    """This request's connection for the canvas lookups, opened on first use and closed at
    teardown: plain Core rows, without the ORM session's bookkeeping, which costs 6% more
    instructions per initialize than this path."""
    if "read_connection" not in g:
        g.read_connection = db.engine.connect()
    return g.read_connection


@inbox.teardown_app_request
def close_read_connection(error: BaseException | None = None) -> None:
    connection = g.pop("read_connection", None)
    if connection is not None:
        connection.close()


# The canvas preview plays Intercom's part in the browser, through the same canvas functions.
# Its authority is the signed-in session and the CSRF token, not a signature, so it works with
# no Intercom settings at all; its records belong to a workspace of its own.

preview = Blueprint("preview", __name__)
SAMPLE = {
    "customer_name": "Casey Customer",
    "customer_email": "casey.customer@example.com",
    "agent_name": "Alex Agent",
    "conversation_id": "1001",
    "message": "<p>Hi! The CSV export button crashes the page every time I click it.</p>",
}


@preview.route("/intercom/preview", methods=["GET", "POST"])
def canvas_preview() -> str:
    sample = {name: request.values.get(name, default) for name, default in SAMPLE.items()}
    payload = preview_payload(sample)
    if request.method == "GET":
        body = initialize_canvas(payload, connected=True)
    else:
        try:
            stored_data = json.loads(request.form.get("stored_data") or "{}")
        except ValueError:
            abort(400, "The preview's stored data is not JSON.")
        payload |= {
            "component_id": request.form.get("component_id", ""),
            "input_values": {
                name.removeprefix("input:"): value
                for name, value in request.form.items()
                if name.startswith("input:")
            },
            "current_canvas": {"stored_data": stored_data},
        }
        body = submit_canvas(payload, connected=True)
    return render_template(
        "preview.html",
        sample=sample,
        components=body["canvas"]["content"]["components"],
        stored_data=json.dumps(body["canvas"].get("stored_data", {})),
    )


def preview_payload(sample: Mapping[str, str]) -> dict[str, Any]:
    """A canvas request as Intercom would send it, for a sample conversation in the preview."""
    customer = {
        "type": "contact",
        "id": f"preview-{hashlib.sha256(sample['customer_email'].encode()).hexdigest()[:12]}",
        "name": sample["customer_name"],
        "email": sample["customer_email"],
    }
    return {
        "workspace_id": PREVIEW_WORKSPACE_ID,
        "admin": {
            "type": "admin",
            "id": "preview-agent",
            "name": sample["agent_name"],
            "email": g.user.email,
        },
        "conversation": {
            "type": "conversation",
            "id": sample["conversation_id"],
            "source": {"type": "conversation", "body": sample["message"], "author": customer},
        },
        "contact": customer,
        "context": {"location": "conversation"},
    }


@preview.app_template_filter()
def canvas_markdown(value: str) -> Markup:
    """A canvas text's markdown as Intercom shows it: **bold** and [links](https://…), with
    backslash escapes; everything else is text."""
    html = str(escape(value))
    html = re.sub(r"(?<!\\)\*\*(.+?)(?<!\\)\*\*", r"<strong>\1</strong>", html)
    html = re.sub(
        r"(?<!\\)\[([^\]]+?)(?<!\\)\]\((https://[^)\s]+)\)",
        r'<a href="\2" target="_blank" rel="noopener noreferrer">\1</a>',
        html,
    )
    return Markup(re.sub(r"\\([\\`*_\[\]<>]|&lt;|&gt;)", r"\1", html))  # noqa: S704


# --- 6. The command line ---------------------------------------------------------------------

COPY_BATCH = 1000


@click.command("init-db")
@with_appcontext
def init_db_command() -> None:
    """Create or upgrade the database tables (safe to run again)."""
    upgrade_database(current_app._get_current_object())
    click.echo("The database is ready.")


@click.command("create-user")
@with_appcontext
@click.argument("email")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help=f"At least {PASSWORD_MIN} characters.",
)
def create_user_command(email: str, password: str) -> None:
    """Create a user who can sign in to Hedwig."""
    email = normalize_email(email)
    error = validate_credentials(email, password)
    if error:
        raise click.ClickException(error)
    try:
        add_user(email, password)
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(f"A user with the email {email} exists already.") from None
    click.echo(f"Created user {email}.")


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False, writable=True))
def backup_command(path: str) -> None:
    """Write a consistent copy of the SQLite database to PATH, safe while Hedwig serves."""
    if db.engine.url.get_backend_name() != "sqlite":
        raise click.ClickException(
            "backup copies SQLite databases only; for another database use its own tools "
            "(e.g. pg_dump for PostgreSQL)."
        )
    with db.engine.connect() as connection:
        source = connection.connection.driver_connection
        target = sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            target.close()
    click.echo(f"Backed up the database to {path}.")


@click.command("copy-db")
@click.option("--to", "target_url", required=True, help="SQLAlchemy URL of an empty database.")
@with_appcontext
def copy_db_command(target_url: str) -> None:
    """Copy every row into the empty database at --to (e.g. PostgreSQL), keeping the ids."""
    source_app = current_app._get_current_object()
    target_app = create_app(
        {
            "DATABASE_URL": target_url,
            "SECRET_KEY": source_app.secret_key,
            "INSTANCE_PATH": source_app.instance_path,
        }
    )
    source = db.engine
    with target_app.app_context():
        target = db.engine
        if any(row_counts(target).values()):
            raise click.ClickException("The target database is not empty: nothing was copied.")
        upgrade_database(target_app)

    tables = db.metadata.sorted_tables  # parents before children: users come first
    with source.connect() as reading, target.begin() as writing:
        for table in tables:
            total = reading.scalar(select(func.count()).select_from(table))
            copied = 0
            rows = reading.execution_options(yield_per=COPY_BATCH).execute(
                select(table).order_by(*table.primary_key.columns)
            )
            for batch in rows.partitions():
                writing.execute(table.insert(), [row._asdict() for row in batch])
                copied += len(batch)
                click.echo(f"{table.name}: {copied}/{total}")
        if target.dialect.name == "postgresql":
            # Rows came with their ids: move each id sequence past the largest one.
            for table in tables:
                largest = "id" in table.columns and writing.scalar(select(func.max(table.c.id)))
                if largest:
                    sequence = func.pg_get_serial_sequence(table.name, "id")
                    writing.execute(select(func.setval(sequence, largest)))

    source_counts, target_counts = row_counts(source), row_counts(target)
    for name, count in source_counts.items():
        click.echo(f"{name}: {count} in the source, {target_counts.get(name)} copied")
    if source_counts != target_counts:
        raise click.ClickException("The counts differ: check the target before using it.")
    click.echo("Copied. Point HEDWIG_DATABASE_URL at the new database to use it.")


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in each of Hedwig's tables that exist in the database."""
    existing = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        return {
            table.name: connection.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
            if table.name in existing
        }


# --- 7. Plumbing: settings, the database, headers, error pages -------------------------------
#
# What every section relies on and no step of the tutorial is about.

SECRET_KEY_MIN = 32
MIGRATIONS = str(Path(__file__).with_name("migrations"))
INITIAL_REVISION = "0001"
DEFAULTS: dict[str, Any] = {
    "INTERCOM_OAUTH_URL": "https://app.intercom.com/oauth",
    "INTERCOM_API_URL": "https://api.intercom.io",
    "INTERCOM_CLIENT_ID": "",
    "INTERCOM_CLIENT_SECRET": "",
    "BASE_URL": "",
    "SESSION_COOKIE_SECURE": False,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "INTERCOM_TIMEOUT": 10,  # seconds, for each call to Intercom's API
}
# Settings read from the environment as text, even when they look like numbers.
TEXT_SETTINGS = (
    "SECRET_KEY",
    "TOKEN_KEY",
    "DATABASE_URL",
    "INTERCOM_CLIENT_ID",
    "INTERCOM_CLIENT_SECRET",
    "INTERCOM_OAUTH_URL",
    "INTERCOM_API_URL",
    "BASE_URL",
)
migrate = flask_migrate.Migrate()


def load_settings(app: Flask, config: Mapping[str, Any]) -> None:
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("HEDWIG")
    app.config.update(config)
    for name in TEXT_SETTINGS:
        if app.config.get(name) is not None:
            app.config[name] = str(app.config[name])
    app.config["SECRET_KEY"] = secret_key(app)


def secret_key(app: Flask) -> str:
    """The configured key, else one generated once and kept in the instance folder."""
    configured = app.config.get("SECRET_KEY")
    if configured:
        if len(configured) < SECRET_KEY_MIN:
            raise RuntimeError(
                f"HEDWIG_SECRET_KEY is too short ({len(configured)} characters): use at least "
                f"{SECRET_KEY_MIN}, e.g. the output of: python -c 'import secrets; "
                "print(secrets.token_hex(32))'"
            )
        return configured
    return instance_secret(app, "secret_key", lambda: secrets.token_hex(32))


def instance_secret(app: Flask, name: str, generate: Callable[[], str]) -> str:
    """Read a secret file from the instance folder, creating it (mode 0600) the first time."""
    path = Path(app.instance_path, name)
    try:
        # O_EXCL: two workers starting at once must not each write a different key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(generate())
    return path.read_text().strip()


def init_database(app: Flask) -> None:
    app.config["SQLALCHEMY_DATABASE_URI"] = app.config.get("DATABASE_URL") or (
        "sqlite:///" + os.path.join(app.instance_path, "hedwig.db")
    )
    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS, render_as_batch=True)
    if make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name() == "sqlite":
        # The embedded default needs no setup step: bring its schema up to date on start.
        upgrade_database(app)


def upgrade_database(app: Flask) -> None:
    """Apply the migrations. A database made by Hedwig before it had migrations (its tables,
    but no alembic_version) is first stamped at the initial migration, not created again."""
    with app.app_context(), start_up_lock(app):
        tables = set(inspect(db.engine).get_table_names())
        if "feedback" in tables and "alembic_version" not in tables:
            flask_migrate.stamp(revision=INITIAL_REVISION)
        flask_migrate.upgrade()


@contextmanager
def start_up_lock(app: Flask) -> Iterator[None]:
    """One process at a time: gunicorn's workers start together and would migrate together."""
    with open(Path(app.instance_path, "migrate.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@event.listens_for(Engine, "connect")
def tune_sqlite(dbapi_connection: Any, connection_record: Any) -> None:
    """SQLite only: WAL so readers never wait for the writer, and a wait instead of
    "database is locked" when two workers write at once."""
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def begin_write(model: type[db.Model]) -> None:
    """Start a transaction that reads and then writes ``model``'s table, holding the write
    lock from its first statement. On SQLite a plain (deferred) BEGIN would fail with
    "database is locked" if another worker wrote in between, busy timeout or not; on PostgreSQL
    the table lock makes a concurrent read-then-write wait instead of acting on stale reads."""
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif connection.dialect.name == "postgresql":
        table = connection.dialect.identifier_preparer.format_table(model.__table__)
        connection.exec_driver_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")


def install_plumbing(app: Flask) -> None:
    app.add_url_rule("/healthz", view_func=healthz)
    app.after_request(add_security_headers)
    app.register_error_handler(HTTPException, error_page)
    app.add_template_filter(format_datetime, "datetime")
    logging.getLogger("werkzeug").addFilter(REDACT_OAUTH_QUERY)


@public
def healthz() -> tuple[dict[str, str], int]:
    try:
        db.session.execute(select(1))
    except SQLAlchemyError:
        return {"status": "database unavailable"}, 503
    return {"status": "ok"}, 200


def add_security_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def error_page(error: HTTPException) -> tuple[str, int]:
    code = error.code or 500
    description = error.description or "Something went wrong on our side."
    return render_template("error.html", code=code, description=description), code


def format_datetime(value: datetime | None) -> str:
    """Absolute dates, as Intercom's design rules ask: "Jan 8, 2019 at 1:05 PM UTC"."""
    if value is None:
        return ""
    return value.strftime("%b %-d, %Y at %-I:%M %p UTC")


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL for links that leave this browser: OAuth redirect_uri, canvas links.

    Behind ngrok or a proxy, HEDWIG_BASE_URL names the public https origin; forwarded headers
    are never trusted.
    """
    base = current_app.config["BASE_URL"].rstrip("/")
    if base:
        return base + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)


class RedactOAuthQuery(logging.Filter):
    """Request lines logged by the development server must not carry the OAuth callback's
    `code` or `state`: the code is a credential until it is spent."""

    SECRET_PARAMETER = re.compile(r"\b(code|state)=[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.SECRET_PARAMETER.sub(r"\1=[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


REDACT_OAUTH_QUERY = RedactOAuthQuery()
