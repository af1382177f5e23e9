"""Hedwig: a self-hosted feedback log for teams that support their customers in Intercom.

Read top to bottom, this module is the README's tutorial, a section a step:

1. The app: ``create_app()`` puts the steps together.
2. Sign-in: accounts, the session, the CSRF token.
3. The feedback log: list, search, show, add, export.
4. Connect with Intercom: OAuth, and the token kept encrypted.
5. The Inbox app: Canvas Kit's signed initialize and submit, and a preview without Intercom.
6. Closing the loop: a status on every record, and a note in every conversation that asked.
7. A team: roles, invites, passwords, and signing in with Intercom.
8. The command line.
9. Plumbing: settings, the database, headers and error pages. Skip it on a first read.

Each section opens with its blueprint and views, then the helpers they call.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import functools
import hashlib
import hmac
import html
import io
import ipaddress
import itertools
import json
import logging
import math
import os
import re
import secrets
import shlex
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import click
import flask_migrate
import requests
import urllib3
from alembic.script import ScriptDirectory
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
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from markupsafe import Markup, escape
from sqlalchemy import (
    Row,
    Select,
    bindparam,
    column,
    delete,
    distinct,
    event,
    func,
    inspect,
    literal,
    literal_column,
    make_url,
    null,
    or_,
    select,
    table,
    union,
    union_all,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    NoSuchModuleError,
    SQLAlchemyError,
)
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter
from werkzeug.security import check_password_hash, generate_password_hash

from models import (
    CUSTOMERS_TEXT_MAX,
    DESCRIPTION_MAX,
    EMAIL_MAX,
    ID_MAX,
    MESSAGE_MAX,
    NAME_MAX,
    PREVIEW_WORKSPACE_ID,
    QUOTE_MAX,
    ROLES,
    STATUSES,
    TITLE_MAX,
    AccountLink,
    Evidence,
    FailedSignIn,
    Feedback,
    IntercomConnection,
    MergedFeedback,
    Note,
    SignInSession,
    StatusChange,
    UsedOAuthState,
    User,
    customer_key,
    db,
    is_email,
    normalize_email,
    utcnow,
)

# --- 1. The app ------------------------------------------------------------------------------


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build Hedwig: its settings (defaults, then HEDWIG_* environment variables, then
    ``config``), its database, and each step of the tutorial as a blueprint."""
    config = dict(config or {})
    instance_path = config.pop("INSTANCE_PATH", None) or os.environ.get("HEDWIG_INSTANCE_PATH")
    app = Flask(
        __name__,
        instance_path=os.path.abspath(instance_path) if instance_path else None,
        instance_relative_config=True,
    )
    make_private_folder(Path(app.instance_path))
    load_settings(app, config)
    init_database(app)
    app.extensions["hedwig_token_cipher"] = load_token_cipher(app)

    install_plumbing(app)
    for blueprint in (auth, feedback_log, connect, inbox, preview, loop, team):
        app.register_blueprint(blueprint)
    for command in (
        init_db_command,
        create_user_command,
        reset_password_command,
        backup_command,
        copy_db_command,
        canvas_request_command,
        send_notes_command,
    ):
        app.cli.add_command(command)
    return app


# --- 2. Sign-in ------------------------------------------------------------------------------
#
# Every page needs a signed-in user, except the few marked @public. Every POST form carries a
# CSRF token. Canvas requests come from Intercom's servers and are the exception to both: their
# body signature is their authority (section 5).

auth = Blueprint("auth", __name__)
PASSWORD_MIN = 8
# Failed sign-ins allowed per account, and per client, within the window; then 429 until the
# oldest of them leaves it. Refused attempts compute no password hash.
THROTTLE_LIMIT = 10
THROTTLE_WINDOW = timedelta(minutes=15)
FORM_FIELDS_MAX = 100


def public(view: Callable) -> Callable:
    """Mark a view that answers without sign-in."""
    view.public = True  # type: ignore[attr-defined]
    return view


def owners_only(view: Callable) -> Callable:
    """A view only the team's owners may use (section 7): anyone else gets 403, and a
    sentence saying so. Pages never offer these actions to members."""

    @functools.wraps(view)
    def owners_view(*args: Any, **kwargs: Any) -> Any:
        if g.user is None or not g.user.is_owner:
            abort(403, "Only an owner of this Hedwig can do that: ask one of them.")
        return view(*args, **kwargs)

    return owners_view


@auth.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    next_url = safe_next(request.values.get("next"))
    if no_user_yet():
        return redirect(url_for("auth.first_account", next=next_url))
    if request.method == "GET":
        return render_template("login.html", next_url=next_url)

    email = normalize_email(form_text("email", EMAIL_MAX))
    # Each try counts as a failure until its password is checked, so that tries running at
    # once cannot all slip under the limit; a try that is refused, or succeeds, is uncounted.
    attempt = count_sign_in_attempt(email[:EMAIL_MAX], client_address())
    retry_at = sign_in_throttled_until(attempt)
    if retry_at is not None:
        uncount(attempt)
        return sign_in_throttled(retry_at, next_url, email)
    user = active_user(email)  # a removed teammate signs in no more
    if not password_matches(user, request.form.get("password", "")):
        error = "Wrong email or password."
        return render_template("login.html", next_url=next_url, error=error, email=email), 401
    db.session.execute(delete(FailedSignIn).where(FailedSignIn.email == attempt.email))
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

    if not no_user_yet():  # refused before any password is hashed
        abort(400, "An account exists already: sign in instead.")
    email = normalize_email(form_text("email", EMAIL_MAX))
    password = request.form.get("password", "")
    error = validate_credentials(email, password, request.form.get("confirm", ""))
    if error:
        page = render_template("first_account.html", next_url=next_url, error=error, email=email)
        return page, 400
    user = new_user(email, password, role="owner")
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
    """End this sign-in for good: a copy of the old cookie no longer signs anyone in."""
    key = session.get("session_key")
    if isinstance(key, str):
        db.session.execute(delete(SignInSession).where(SignInSession.key_hash == key_hash(key)))
        db.session.commit()
    session.clear()
    return redirect(url_for("auth.login"))


@auth.before_app_request
def load_signed_in_user() -> None:
    g.user = None
    if from_intercom():  # Intercom's servers: no user, no cookie to read
        return
    key = session.get("session_key")
    if isinstance(key, str):
        g.user = db.session.scalar(
            select(User)
            .join(SignInSession, SignInSession.user_id == User.id)
            .where(
                SignInSession.key_hash == key_hash(key),
                SignInSession.expires_at > utcnow(),
                User.removed_at.is_(None),
            )
        )


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
    if request.method != "POST" or from_intercom() or request.routing_exception is not None:
        return
    refuse_outsized_form()
    sent = request.form.get("csrf_token", "")
    expected = session.get("csrf_token", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(
            400, "This form has expired or did not come from Hedwig. Reload the page and try again."
        )


@auth.app_context_processor
def sign_in_helpers() -> dict[str, Any]:
    return {"csrf_token": csrf_token}


def refuse_outsized_form() -> None:
    """Parsing a form costs time per field, and anyone may post one: none of Hedwig's forms has
    more than FORM_FIELDS_MAX fields, so a body with more is refused before it is parsed."""
    if request.mimetype == "application/x-www-form-urlencoded":
        fields = request.get_data().count(b"&") + 1  # kept for the form's parser
        if fields > FORM_FIELDS_MAX:
            abort(413, "This form has more fields than any of Hedwig's.")


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


def validate_credentials(email: str, password: str, confirm: str | None = None) -> str | None:
    if not is_email(email):
        return "Enter a valid email address."
    return password_error(password, confirm)


def password_error(password: str, confirm: str | None = None) -> str | None:
    """What is wrong with a new password (and its confirmation, when the form asks twice)."""
    if len(password) < PASSWORD_MIN:
        return f"The password must be at least {PASSWORD_MIN} characters."
    if confirm is not None and password != confirm:
        return "The two passwords differ."
    return None


def new_user(email: str, password: str, role: str = "member") -> User:
    user = User(email=normalize_email(email), role=role)
    user.set_password(password)
    return user


def add_user(email: str, password: str, role: str = "member") -> User:
    """A new account; the first one is an owner, whatever was asked, so that there is one."""
    user = new_user(email, password, "owner" if no_user_yet() else role)
    db.session.add(user)
    db.session.commit()
    return user


def sign_in(user: User) -> None:
    """Start a sign-in that lasts PERMANENT_SESSION_LIFETIME, or until signing out."""
    session.clear()  # a fresh session: nothing from before sign-in carries over
    key = secrets.token_urlsafe(32)
    now = utcnow()
    db.session.execute(delete(SignInSession).where(SignInSession.expires_at <= now))
    db.session.add(
        SignInSession(
            key_hash=key_hash(key),
            user_id=user.id,
            expires_at=now + current_app.permanent_session_lifetime,
        )
    )
    user.last_signed_in_at = now
    db.session.commit()
    session.permanent = True
    session["session_key"] = key


def key_hash(key: str) -> str:
    """What the database keeps of a secret key: its hash, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


def password_matches(user: User | None, password: str) -> bool:
    """The password check, with the same work for an unknown email as for a known one, so
    that timing does not tell which addresses have accounts."""
    if user is None:
        check_password_hash(decoy_password_hash(), password)
        return False
    return user.check_password(password)


@functools.cache
def decoy_password_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


def count_sign_in_attempt(email: str, client: str) -> FailedSignIn:
    now = utcnow()
    db.session.execute(delete(FailedSignIn).where(FailedSignIn.failed_at <= now - THROTTLE_WINDOW))
    attempt = FailedSignIn(email=email, client=client, failed_at=now)
    db.session.add(attempt)
    db.session.commit()
    return attempt


def uncount(attempt: FailedSignIn) -> None:
    db.session.delete(attempt)
    db.session.commit()


def sign_in_throttled_until(attempt: FailedSignIn) -> datetime | None:
    """When sign-in may be tried again, if this try's account or client has failed
    THROTTLE_LIMIT times within THROTTLE_WINDOW (this try counted); None when it may go on."""
    since = utcnow() - THROTTLE_WINDOW
    retry_at = None
    for key, value in ((FailedSignIn.email, attempt.email), (FailedSignIn.client, attempt.client)):
        oldest_counted = db.session.scalar(
            select(FailedSignIn.failed_at)
            .where(key == value, FailedSignIn.failed_at > since, FailedSignIn.id != attempt.id)
            .order_by(FailedSignIn.failed_at.desc())
            .offset(THROTTLE_LIMIT - 1)
            .limit(1)
        )
        if oldest_counted is not None:
            retry_at = max(retry_at or since, oldest_counted + THROTTLE_WINDOW)
    return retry_at


def sign_in_throttled(retry_at: datetime, next_url: str, email: str) -> tuple[str, int, dict]:
    seconds = max(1, math.ceil((retry_at - utcnow()).total_seconds()))
    error = (
        f"Too many failed sign-ins. Try again in {math.ceil(seconds / 60)} minutes "
        f"(at {retry_at:%H:%M} UTC)."
    )
    page = render_template("login.html", next_url=next_url, error=error, email=email)
    return page, 429, {"Retry-After": str(seconds)}


def client_address() -> str:
    """Who is trying, for the throttle: the address, or for IPv6 its /64, which one client
    usually holds whole."""
    address = request.remote_addr or "unknown"
    if request.headers.get("X-Forwarded-For") and not current_app.config["TRUSTED_PROXIES"]:
        warn_once(
            "Requests come through a proxy (they carry X-Forwarded-For) but "
            "HEDWIG_TRUSTED_PROXIES is 0: every client shares the proxy's sign-in limit."
        )
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(address).version == 6:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return address[:ID_MAX]


@functools.cache
def warn_once(message: str) -> None:
    current_app.logger.warning(message)


# --- 3. The feedback log ---------------------------------------------------------------------
#
# A record (title, details) is backed by evidence: each piece a customer who asked, where and
# by whom it was heard, and their words. The list says how many customers back each record.

feedback_log = Blueprint("log", __name__)
PER_PAGE = 50
PAGE_MAX = 1_000_000
SEARCH_MAX = 200  # characters: what people type in a search box, not a pasted essay
SORTS = ("best", "newest", "customers")
RECORD_FIELDS = {"title": TITLE_MAX, "description": DESCRIPTION_MAX}
EVIDENCE_FIELDS = {"customer_name": NAME_MAX, "customer_email": EMAIL_MAX, "quote": QUOTE_MAX}


@feedback_log.get("/")
def index() -> str:
    q, status = search_text(), status_filter()
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else None
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= PAGE_MAX:
        abort(404, "There is no such page of the feedback log.")
    statement = listed_feedback(q, sort, status)
    # A search's total is counted in the index (search_count), not by running the list again.
    counted_in_index = bool(q) and status is None
    pagination = db.paginate(
        statement, page=page, per_page=PER_PAGE, error_out=False, count=not counted_in_index
    )
    if counted_in_index:
        pagination.total = search_count(q)
    return render_template("index.html", pagination=pagination, q=q, sort=sort, status=status)


@feedback_log.get("/feedback/<id:feedback_id>")
def show_feedback(feedback_id: int) -> Any:
    record = db.session.get(Feedback, feedback_id)
    if record is None:
        return to_merged_record(feedback_id, "log.show_feedback")
    return show_record(record)


@feedback_log.route("/feedback/new", methods=["GET", "POST"])
def new_feedback() -> Any:
    workspaces = workspace_names()
    if request.method == "GET":
        values = {"workspace_id": next(iter(workspaces)) if len(workspaces) == 1 else ""}
        return render_template("new.html", values=values, errors={}, workspaces=workspaces)
    values = {
        name: form_text(name, limit) for name, limit in (RECORD_FIELDS | EVIDENCE_FIELDS).items()
    }
    values["workspace_id"] = form_text("workspace_id", ID_MAX)
    errors = validate_feedback(values)
    if values["workspace_id"] and values["workspace_id"] not in workspaces:
        errors["workspace_id"] = "Choose a connected workspace, or none."
    if errors:
        page = render_template("new.html", values=values, errors=errors, workspaces=workspaces)
        return page, 400
    record = Feedback(
        title=values["title"],
        description=values["description"],
        workspace_id=values["workspace_id"] or None,
        source="web",
        created_by_id=g.user.id,
    )
    db.session.add(record)
    if any(values[name] for name in EVIDENCE_FIELDS):
        add_evidence(
            record,
            source="web",
            created_by_id=g.user.id,
            **{name: values[name] for name in EVIDENCE_FIELDS},
        )
    refresh_backing(record)
    db.session.commit()
    flash(f"Feedback #{record.id} saved.")
    return redirect(url_for("log.show_feedback", feedback_id=record.id))


@feedback_log.route("/feedback/<id:feedback_id>/edit", methods=["GET", "POST"])
def edit_feedback(feedback_id: int) -> Any:
    record = db.session.get(Feedback, feedback_id) or to_merged_record(
        feedback_id, "log.edit_feedback"
    )
    if isinstance(record, Response):
        return record
    if request.method == "GET":
        values = {"title": record.title, "description": record.description}
        return render_template("edit.html", feedback=record, values=values, errors={})
    values = {name: form_text(name, limit) for name, limit in RECORD_FIELDS.items()}
    errors = validate_feedback(values)
    if errors:
        page = render_template("edit.html", feedback=record, values=values, errors=errors)
        return page, 400
    record.title, record.description = values["title"], values["description"]
    db.session.commit()
    flash(f"Feedback #{record.id} saved.")
    return redirect(url_for("log.show_feedback", feedback_id=record.id))


@feedback_log.route("/feedback/<id:feedback_id>/delete", methods=["GET", "POST"])
@owners_only
def delete_feedback(feedback_id: int) -> Any:
    """Ask first; then the record, its evidence and the links of records merged into it go."""
    record = db.get_or_404(Feedback, feedback_id)
    if request.method == "GET":
        return render_template("delete.html", feedback=record)
    title = record.title
    db.session.delete(record)
    db.session.commit()
    flash(f"Feedback #{feedback_id} deleted: {title}")
    return redirect(url_for("log.index"))


@feedback_log.route("/feedback/<id:feedback_id>/merge", methods=["GET", "POST"])
@owners_only
def merge_feedback(feedback_id: int) -> Any:
    """Merge a duplicate into another record: its evidence moves there, and its id leads
    there from now on. GET asks to confirm the record chosen in ``into``."""
    duplicate = db.get_or_404(Feedback, feedback_id)
    into_id = request.values.get("into", type=record_id)
    target = db.session.get(Feedback, into_id or 0) or merged_target(into_id)
    if target is None or target.id == duplicate.id:
        flash("Merge into which record? Give the number of another record.")
        return redirect(url_for("log.show_feedback", feedback_id=duplicate.id))
    if request.method == "GET":
        return render_template("merge.html", duplicate=duplicate, target=target)
    moved = merge_records(duplicate, target)
    db.session.commit()
    flash(
        f"Feedback #{feedback_id} merged into #{target.id}: {moved} pieces of evidence moved; "
        f"{plural(target.customer_count, 'customer')} back it now."
    )
    return redirect(url_for("log.show_feedback", feedback_id=target.id))


@feedback_log.post("/feedback/<id:feedback_id>/evidence/<id:evidence_id>/delete")
def remove_evidence(feedback_id: int, evidence_id: int) -> Response:
    evidence = db.session.get(Evidence, evidence_id)
    if evidence is None or evidence.feedback_id != feedback_id:
        abort(404, "No such evidence on this record.")
    record = evidence.feedback
    db.session.delete(evidence)
    db.session.flush()
    refresh_backing(record)
    db.session.commit()
    flash(f"Removed {evidence.customer_name or evidence.customer_email or 'the evidence'}.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


@feedback_log.get("/feedback.csv")
def export_csv() -> Response:
    """The evidence export: a row per piece of evidence, with its record."""
    statement = listed_feedback(search_text(), request.args.get("sort"), status_filter())
    response = Response(stream_with_context(csv_lines(statement)), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="hedwig-evidence.csv"'
    return response


def search_text() -> str:
    """The list's ?q=, cleaned and bounded: a longer one is refused, not searched for."""
    q = clean_text(request.args.get("q", ""), SEARCH_MAX)
    if len(q) > SEARCH_MAX:
        abort(400, f"Search for at most {SEARCH_MAX} characters.")
    return q


def status_filter() -> str | None:
    """The list's ?status=, one of STATUSES; any other is refused, not ignored."""
    status = request.args.get("status") or None
    if status is not None and status not in STATUSES:
        abort(400, f"There is no status {status[:20]!r}: use one of {', '.join(STATUSES)}.")
    return status


def listed_feedback(q: str, sort: str | None = None, status: str | None = None) -> Select:
    """The list, as the page and the CSV show it: narrowed by the search and the status, and
    sorted, best match first when searching, else newest first (or most customers first)."""
    statement = select(Feedback)
    if status:
        statement = statement.where(Feedback.status == status)
    if q:
        statement = search(statement, q, ranked=sort in (None, "best"))
    if sort == "customers":
        statement = statement.order_by(None).order_by(
            Feedback.customer_count.desc(), Feedback.id.desc()
        )
    elif sort == "newest" or not q:
        statement = statement.order_by(None).order_by(
            Feedback.created_at.desc(), Feedback.id.desc()
        )
    return statement


def show_record(
    record: Feedback,
    status_form: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
) -> str:
    """The record's page: the record, its status with each change and what its notes did
    (section 6), and its evidence."""
    return render_template(
        "show.html",
        feedback=record,
        workspaces=workspace_names(),
        changes=status_history(record),
        conversations_to_note=conversations_to_note(record),
        status_form=status_form or status_form_defaults(record),
        errors=errors or {},
    )


def to_merged_record(feedback_id: int, endpoint: str) -> Response:
    """A merged record's id leads to the record it was merged into, for good (301)."""
    target = merged_target(feedback_id)
    if target is None:
        abort(404, f"There is no feedback #{feedback_id}.")
    return redirect(url_for(endpoint, feedback_id=target.id), 301)


def merged_target(feedback_id: int | None) -> Feedback | None:
    merged = db.session.get(MergedFeedback, feedback_id) if feedback_id else None
    return db.session.get(Feedback, merged.into_id) if merged else None


def workspace_names() -> dict[str, str]:
    """Connected workspaces by id: a record made on the web may belong to one of them."""
    rows = db.session.execute(
        select(IntercomConnection.workspace_id, IntercomConnection.workspace_name)
    )
    return {workspace_id: name for workspace_id, name in rows}


def validate_feedback(values: Mapping[str, str]) -> dict[str, str]:
    """Field name → message, for every invalid field; empty when all is well."""
    errors = {}
    if not values["title"]:
        errors["title"] = "A title is required."
    elif len(values["title"]) > TITLE_MAX:
        errors["title"] = f"Keep the title to {TITLE_MAX} characters ({len(values['title'])} now)."
    if len(values.get("description", "")) > DESCRIPTION_MAX:
        errors["description"] = f"Keep the details to {DESCRIPTION_MAX} characters."
    if len(values.get("quote", "")) > QUOTE_MAX:
        errors["quote"] = f"Keep the customer's words to {QUOTE_MAX} characters."
    email = values.get("customer_email", "")
    if email and not is_email(email):
        errors["customer_email"] = "Enter a valid email address, or leave it empty."
    if len(values.get("customer_name", "")) > NAME_MAX:
        errors["customer_name"] = f"Keep the name to {NAME_MAX} characters."
    return errors


def add_evidence(record: Feedback, **fields: Any) -> Evidence:
    """A customer backing the record; the caller refreshes the record's backing and commits
    (a conversation that backs the record already fails the unique constraint)."""
    evidence = Evidence(feedback=record, **fields)
    evidence.customer_key = customer_key(
        evidence.customer_email or "",
        evidence.workspace_id,
        evidence.contact_id,
        evidence.customer_name or "",
    )
    db.session.add(evidence)
    return evidence


def refresh_backing(record: Feedback) -> None:
    """Count the record's distinct customers and gather their words for the search, from its
    evidence as it stands in this transaction."""
    db.session.flush()
    rows = db.session.execute(
        select(
            Evidence.customer_key, Evidence.customer_name, Evidence.customer_email, Evidence.quote
        )
        .where(Evidence.feedback_id == record.id)
        .order_by(Evidence.id)
    ).all()
    set_backing(record, rows)


def set_backing(record: Feedback, evidence: Sequence[Any]) -> None:
    """The record's customer count and their words for the search, from ``evidence``."""
    record.customer_count = len({piece.customer_key for piece in evidence if piece.customer_key})
    record.customers_text = "\n".join(
        " ".join(filter(None, (piece.customer_name, piece.customer_email, piece.quote)))
        for piece in evidence
    )[:CUSTOMERS_TEXT_MAX]


def merge_records(duplicate: Feedback, target: Feedback) -> int:
    """Move the duplicate's evidence to the target (a conversation already backing the target
    is not repeated), remember its id, and delete it: one transaction, the caller commits."""
    begin_write(Evidence)
    backed = set(
        db.session.execute(
            select(Evidence.workspace_id, Evidence.conversation_id).where(
                Evidence.feedback_id == target.id, Evidence.conversation_id.is_not(None)
            )
        ).all()
    )
    moved = 0
    for evidence in list(duplicate.evidence):
        if evidence.conversation_id and (evidence.workspace_id, evidence.conversation_id) in backed:
            continue  # deleted with the duplicate
        evidence.feedback = target
        moved += 1
    db.session.flush()
    # Links to the duplicate, and to records merged into it before, lead to the target now.
    db.session.execute(
        update(MergedFeedback)
        .where(MergedFeedback.into_id == duplicate.id)
        .values(into_id=target.id)
    )
    # Its history and its notes (sent, or still to send) go with its evidence.
    for model in (StatusChange, Note):
        db.session.execute(
            update(model).where(model.feedback_id == duplicate.id).values(feedback_id=target.id)
        )
    db.session.add(MergedFeedback(id=duplicate.id, into_id=target.id))
    db.session.delete(duplicate)
    refresh_backing(target)
    return moved


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# Search: the database's own full-text index (SQLite FTS5, PostgreSQL tsvector), behind one
# function. People type words, never query syntax: each word found in any order, by prefix,
# accents folded; a match in the title ranks above one in the details or the customers'
# words. Ranking reads the newest SEARCH_WINDOW matches, so a word that is in every record
# costs what a rare one does; older matches follow, newest first.

SEARCH_WINDOW = 500
SEARCH_WORDS_MAX = 12
SEARCH_INDEX = table("feedback_search", column("rowid"))
WORD = re.compile(r"[^\W_]+")


def best_matches(query: str, workspace_id: str | None) -> list[Feedback]:
    """Up to FIND_LIMIT of the workspace's records, best first: those with all of the
    words, then those with any of them, each among the newest SEARCH_WINDOW matches."""
    in_workspace = select(Feedback).where(Feedback.workspace_id == workspace_id)
    found = list(
        db.session.scalars(search(in_workspace, query, window_only=True).limit(FIND_LIMIT))
    )
    if len(found) < FIND_LIMIT:
        others = in_workspace.where(Feedback.id.not_in([record.id for record in found]))
        some_words = search(others, query, any_word=True, window_only=True)
        found += db.session.scalars(some_words.limit(FIND_LIMIT - len(found)))
    return found


def search(
    statement: Select,
    q: str,
    ranked: bool = True,
    any_word: bool = False,
    window_only: bool = False,
) -> Select:
    """Narrow a Feedback statement to records with all of q's words (or any, with
    ``any_word``), best match first when ``ranked``; ``window_only`` keeps only the newest
    SEARCH_WINDOW matches, for a few best ones at a bounded cost."""
    words = search_words(q)
    if not words:
        return statement.where(literal(False))
    source, key, matching, score = search_index(words, any_word)
    if not ranked:
        return statement.where(Feedback.id.in_(select(key).select_from(source).where(matching)))
    window = (
        select(key.label("id"), score.label("score"))
        .select_from(source)
        .where(matching)
        .order_by(key.desc())
        .limit(SEARCH_WINDOW)
        .cte("search_window")
    )
    if window_only:
        return statement.join(window, window.c.id == Feedback.id).order_by(
            window.c.score, Feedback.id.desc()
        )
    # The window's matches best first, then the older matches, newest first: those below the
    # window's oldest id, so that each is listed once and none is scored.
    older = (
        select(key.label("id"), null().label("score"))
        .select_from(source)
        .where(matching, key < select(func.min(window.c.id)).scalar_subquery())
    )
    found = union_all(select(window.c.id, window.c.score), older).subquery()
    return statement.join(found, found.c.id == Feedback.id).order_by(
        found.c.score.is_(None), found.c.score, Feedback.id.desc()
    )


def search_count(q: str) -> int:
    """How many records have all of q's words, counted in the search index alone: no record
    is read, and the ranking is not run again (as db.paginate's own count would run it)."""
    words = search_words(q)
    if not words:
        return 0
    source, _, matching, _ = search_index(words)
    return db.session.scalar(select(func.count()).select_from(source).where(matching))


def search_index(words: list[str], any_word: bool = False) -> tuple[Any, Any, Any, Any]:
    """Where the database keeps its full-text index, the record id there, the condition for
    the words (all of them, or any), and each match's score (lower is better)."""
    if db.session.get_bind().dialect.name == "sqlite":
        joiner = " OR " if any_word else " "
        matching = literal_column("feedback_search").op("MATCH")(
            joiner.join(f'"{word}"*' for word in words)
        )
        score = func.bm25(literal_column("feedback_search"), 10.0, 1.0, 1.0)
        return SEARCH_INDEX, SEARCH_INDEX.c.rowid, matching, score
    joiner = " | " if any_word else " & "
    terms = joiner.join(f"{word}:*" for word in words)
    query = func.to_tsquery("simple", func.lower(func.unaccent(terms)))
    vector = literal_column("feedback.search_vector")
    score = -func.ts_rank(vector, query)  # negated: lower is better, as bm25
    return Feedback.__table__, Feedback.id, vector.op("@@")(query), score


def search_words(q: str) -> list[str]:
    """The words of a search, lower-cased, as the index splits them; one-letter words and
    the commonest (STOPWORDS) only when there is nothing else."""
    words = WORD.findall(q.lower())
    telling = [word for word in words if len(word) > 1 and word not in STOPWORDS]
    return list(dict.fromkeys(telling or words))[:SEARCH_WORDS_MAX]


STOPWORDS = frozenset(
    [
        "a",
        "about",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "hello",
        "hi",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "please",
        "so",
        "that",
        "the",
        "their",
        "them",
        "there",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)


# The evidence export: a row per piece of evidence, with its record; a record with none has a
# row of its own, so that no record is missing.

CSV_COLUMNS = (
    "feedback_id",
    "title",
    "details",
    "status",
    "customer_count",
    "customer_name",
    "customer_email",
    "quote",
    "source",
    "conversation_url",
    "heard_by",
    "heard_at",
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

    rows = (
        statement.add_columns(Evidence)
        .outerjoin(Evidence, Evidence.feedback_id == Feedback.id)
        .order_by(Evidence.id.desc())
        .execution_options(yield_per=500)
    )
    writer.writerow(CSV_COLUMNS)
    yield flush()
    for record, evidence in db.session.execute(rows):
        writer.writerow(csv_row(record, evidence))
        yield flush()


def csv_row(record: Feedback, evidence: Evidence | None) -> list[str]:
    values = {
        "feedback_id": record.id,
        "title": record.title,
        "details": record.description,
        "status": record.status_label,
        "customer_count": record.customer_count,
    }
    if evidence is not None:
        values |= {
            "customer_name": evidence.customer_name,
            "customer_email": evidence.customer_email,
            "quote": evidence.quote,
            "source": evidence.origin,
            "conversation_url": evidence.conversation_url,
            "heard_by": evidence.admin_name or evidence.admin_email,
            "heard_at": f"{evidence.created_at:%Y-%m-%d %H:%M:%S}",
        }
    return [csv_cell(values.get(column)) for column in CSV_COLUMNS]


def csv_cell(value: Any) -> str:
    """Text a spreadsheet shows as text: a leading ' defuses formula injection."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


# --- 4. Connect with Intercom ----------------------------------------------------------------
#
# Two ways to the same connection, a workspace's token kept encrypted:
# - Connect with Intercom (OAuth): the browser goes to Intercom with a signed `state`, comes
#   back to /intercom/callback with a `code`, and Hedwig trades the code for a token.
# - An access token: a private app installed in the team's own workspace shows one in
#   Intercom's Developer Hub; it is pasted into /intercom/connect/token.
# Either way Hedwig asks /me which workspace the token belongs to, and in which region.

connect = Blueprint("connect", __name__)
STATE_MAX_AGE = 10 * 60  # seconds
STATE_SALT = "hedwig.intercom-oauth-state"
INTERCOM_API_VERSION = "2.11"
ACCESS_TOKEN_MAX = 512
SETTINGS_MISSING = (
    "Connecting needs your Intercom app's client secret (HEDWIG_INTERCOM_CLIENT_SECRET), which "
    "verifies the Inbox's requests, and for Connect with Intercom (OAuth) its client id "
    "(HEDWIG_INTERCOM_CLIENT_ID) too: set them, then restart Hedwig."
)


@connect.get("/intercom/connect")
@owners_only
def intercom_connect() -> Response:
    if not oauth_configured():
        abort(503, SETTINGS_MISSING)
    return to_intercom_oauth(g.user)


@connect.get("/intercom/callback")
@public  # a signed-out browser gets the refusal page, not the sign-in form
def intercom_callback() -> Response:
    # This browser asked, just now, and this is the first answer: to connect (an owner), or
    # to sign in with Intercom (section 7).
    purpose = spend_oauth_state(request.args.get("state", ""))
    # Intercom's answer: a code, unless the user denied access.
    code = request.args.get("code")
    if not code:
        raise AccessDenied(request.args.get("error", ""))
    # Trade the code for an access token, then ask /me which workspace granted it.
    try:
        token = exchange_code_for_token(code)
        details = fetch_me(token)
    except IntercomError as error:
        if purpose == "sign-in":
            raise SignInRefused(f"Intercom could not say who you are ({error}).") from None
        raise
    if purpose == "sign-in":
        return signed_in_with_intercom(details)  # the token is not kept
    # Keep the token, encrypted, for that workspace.
    return connected(save_connection(details, token, g.user))


@connect.route("/intercom/connect/token", methods=["GET", "POST"])
@owners_only
def connect_with_token() -> Any:
    """A private app's access token, pasted from Intercom's Developer Hub."""
    if not current_app.config["INTERCOM_CLIENT_SECRET"]:
        abort(503, SETTINGS_MISSING)
    if request.method == "GET":
        return render_template("connect_token.html")
    # The token is read from the form, never echoed into a page, a log line or a URL.
    token = request.form.get("access_token", "").strip()
    if not token or len(token) > ACCESS_TOKEN_MAX or not token.isprintable() or " " in token:
        error = "Paste the access token Intercom shows for your app: one line, no spaces."
        return render_template("connect_token.html", error=error), 400
    # Ask /me which workspace the token belongs to, then keep it, encrypted.
    details = fetch_me(token)
    return connected(save_connection(details, token, g.user))


@connect.post("/intercom/disconnect")
@owners_only
def intercom_disconnect() -> Response:
    """Forget a workspace's token, and ask Intercom to revoke it (best effort)."""
    connection_id = request.form.get("connection_id", type=record_id)
    connection = db.get_or_404(IntercomConnection, connection_id or 0)
    name, not_revoked = connection.workspace_name, revoke_token(connection)
    db.session.delete(connection)
    db.session.commit()
    if not_revoked:
        flash(
            f"Disconnected from {name}: Hedwig forgot its token, but Intercom did not revoke "
            f"it ({not_revoked}). To revoke it, uninstall the app in Intercom's Developer Hub "
            "(your app → Test & Publish → Uninstall app)."
        )
    else:
        flash(f"Disconnected from {name}: Intercom revoked its token, and Hedwig forgot it.")
    return redirect(url_for("log.index"))


class ConnectFailed(Exception):
    """Connecting did not happen. The message is safe to log and to show: it never holds the
    client secret, the code or a token."""

    status = 400
    heading = "Not connected to Intercom"

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
    """A call to Intercom failed: ``http_status`` is Intercom's answer (None when there was
    none), ``retry_after`` the seconds a 429 asked Hedwig to wait."""

    status = 502

    def __init__(
        self,
        message: str,
        http_status: int | None = None,
        retry_after: float = 0,
        arrived: bool | None = False,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.retry_after = retry_after
        self.arrived = arrived  # None: the request went out, and the answer never came

    def explanation(self) -> str:
        return f"Connecting failed: {self}. Nothing was stored; please try again."


@connect.errorhandler(ConnectFailed)
def connect_failed(error: ConnectFailed) -> tuple[str, int]:
    db.session.rollback()
    current_app.logger.warning("Connect with Intercom failed: %s", error)
    page = render_template(
        "intercom_failed.html", heading=error.heading, message=error.explanation()
    )
    return page, error.status


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
        "oauth_configured": oauth_configured(),
        "token_configured": bool(current_app.config["INTERCOM_CLIENT_SECRET"]),
        "settings_missing": SETTINGS_MISSING,
    }


def oauth_configured() -> bool:
    return bool(
        current_app.config["INTERCOM_CLIENT_ID"] and current_app.config["INTERCOM_CLIENT_SECRET"]
    )


def connect_url() -> str:
    """Where "Connect" leads: OAuth when the app's client id is set, else the token form."""
    if oauth_configured():
        return external_url("connect.intercom_connect")
    return external_url("connect.connect_with_token")


def to_intercom_oauth(user: User | None) -> Response:
    """The browser, off to Intercom's authorize page with a fresh state: to connect (an
    owner), or with no user to sign in (section 7). Both come back to the one callback URL,
    since Intercom uses the first redirect URL an app lists."""
    query = urlencode(
        {
            "client_id": current_app.config["INTERCOM_CLIENT_ID"],
            "state": new_oauth_state(user),
            "redirect_uri": external_url("connect.intercom_callback"),
        }
    )
    return redirect(f"{current_app.config['INTERCOM_OAUTH_URL']}?{query}")


def connected(connection: IntercomConnection) -> Response:
    current_app.logger.info(
        "Connected Intercom workspace %s (%s)", connection.workspace_id, connection.region
    )
    flash(f"Connected to {connection.workspace_name}.")
    return redirect(url_for("log.index"))


STATE_REFUSED = (
    "This connection request expired or did not start in this browser. "
    "Go back to Hedwig and click Connect with Intercom again."
)


def state_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=STATE_SALT)


def new_oauth_state(user: User | None) -> str:
    """A state naming the user (none, to sign in with Intercom) and a nonce that only this
    browser's session also holds."""
    nonce = secrets.token_urlsafe(24)
    session["oauth_nonce"] = nonce
    if user is None:
        return state_serializer().dumps({"purpose": "sign-in", "nonce": nonce})
    return state_serializer().dumps({"purpose": "connect", "user_id": user.id, "nonce": nonce})


def spend_oauth_state(state: str) -> str:
    """Accept the state once: signed by us, at most 10 minutes old, made in this browser (for
    the signed-in owner, to connect), and never used before; its purpose, "connect" or
    "sign-in". Raise OAuthStateError otherwise."""
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
    purpose = payload.get("purpose", "connect") if isinstance(payload, dict) else None
    if not (
        isinstance(payload, dict)
        and (
            purpose == "sign-in"
            or (
                purpose == "connect"
                and g.user is not None
                and g.user.is_owner
                and payload.get("user_id") == g.user.id
            )
        )
        and isinstance(expected_nonce, str)
        and hmac.compare_digest(str(payload.get("nonce", "")), expected_nonce)
    ):
        raise OAuthStateError(STATE_REFUSED)
    # The session is a cookie the browser keeps: an old copy of it still holds the nonce, so
    # single use is settled by the database's unique key, not by the session.
    if not request.args.get("code"):
        return purpose  # nothing to replay: the nonce has left this browser's session
    db.session.execute(
        delete(UsedOAuthState).where(
            UsedOAuthState.used_at < utcnow() - timedelta(seconds=STATE_MAX_AGE)
        )
    )
    db.session.add(UsedOAuthState(nonce=expected_nonce))
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise OAuthStateError(STATE_REFUSED) from None
    return purpose


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
    """Ask Intercom who granted the token: the workspace (app.id_code), its region and the
    admin. /me is asked on the US host, which routes to the workspace's own region."""
    body = call_intercom("GET", "/me", token=token)
    workspace = body.get("app") if isinstance(body.get("app"), dict) else {}
    workspace_id = id_or_none(workspace.get("id_code"))
    if workspace_id is None:
        raise IntercomError("Intercom's /me answer named no workspace (app.id_code)")
    return {
        "workspace_id": workspace_id,
        "workspace_name": text_or_none(workspace.get("name")) or workspace_id,
        "region": region_of(workspace.get("region")),
        "admin_id": id_or_none(body.get("id")),
        "admin_name": text_or_none(body.get("name")),
        "admin_email": text_or_none(body.get("email"), EMAIL_MAX),
        "email_verified": body.get("email_verified") is True,
    }


def call_intercom(
    method: str, path: str, token: str | None = None, region: str = "us", **kwargs: Any
) -> dict:
    """One request to Intercom's API on the region's host: its JSON object (empty when the
    answer has no body), or an IntercomError whose message a person can read."""
    response = intercom_response(method, path, token, region, **kwargs)
    if not response.content.strip():
        return {}
    try:
        body = response.json()
    except ValueError:
        raise IntercomError(f"Intercom's answer to {path} was not JSON") from None
    if not isinstance(body, dict):
        raise IntercomError(f"Intercom's answer to {path} was not a JSON object")
    return body


def intercom_response(
    method: str, path: str, token: str | None = None, region: str = "us", **kwargs: Any
) -> requests.Response:
    """Intercom's 2xx answer to one request, or an IntercomError: it did not answer in time,
    could not be reached, or refused (refusal())."""
    headers = {"Accept": "application/json", "Intercom-Version": INTERCOM_API_VERSION}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = intercom_api_url(region) + path
    timeout = current_app.config["INTERCOM_TIMEOUT"]
    try:
        # Never follow a redirect: it would carry the client secret or the token elsewhere.
        response = requests.request(
            method,
            url,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            **kwargs,
        )
        read_bounded(response, deadline=time.monotonic() + 3 * timeout)
    except (requests.ConnectTimeout, requests.ConnectionError) as error:
        if not never_sent(error):
            raise IntercomError(
                f"Intercom's connection for {path} broke ({type(error).__name__})", arrived=None
            ) from None
        raise IntercomError(
            f"could not reach Intercom for {path} ({type(error).__name__})", arrived=False
        ) from None
    except requests.RequestException:  # a read timeout, or the answer took too long
        raise IntercomError(
            f"Intercom did not answer {path} within {timeout} seconds", arrived=None
        ) from None
    if not 200 <= response.status_code < 300:
        raise refusal(path, response)
    return response


INTERCOM_ANSWER_MAX = 1024 * 1024  # bytes: Hedwig reads small JSON answers, or none


def read_bounded(response: requests.Response, deadline: float) -> None:
    """Read the answer, up to INTERCOM_ANSWER_MAX and until ``deadline``: past either (an
    endpoint dripping bytes, or sending hundreds of megabytes) the rest is dropped unread.
    Its status has said what happened; a body Hedwig needs is small JSON."""
    body = bytearray()
    with contextlib.closing(response):
        try:
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > INTERCOM_ANSWER_MAX or time.monotonic() > deadline:
                    body.clear()
                    break
        except requests.RequestException:
            body.clear()
    response._content = bytes(body)  # what response.json() and .content read


def never_sent(error: requests.RequestException) -> bool:
    """Whether the request failed before it reached Intercom (no connection was made)."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectTimeout) or isinstance(
        reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
    )


def refusal(path: str, response: requests.Response) -> IntercomError:
    """Intercom's non-2xx answer, as a sentence that says what it means for the team."""
    status = response.status_code
    meaning = {
        401: "it no longer accepts this token (revoked, or the app was uninstalled)",
        403: "the app lacks a permission this needs (see the README's setup guide)",
        404: "it has no such thing (deleted or merged)",
        429: "it asks Hedwig to slow down for a while",
    }.get(status, "it had a problem; Hedwig will try again" if status >= 500 else "")
    wait = retry_after_seconds(response)
    message = f"Intercom answered {path} with HTTP {status}"
    return IntercomError(f"{message}: {meaning}" if meaning else message, status, wait)


def retry_after_seconds(response: requests.Response) -> float:
    """How long a 429 asks to wait: Retry-After (seconds), else X-RateLimit-Reset (epoch), at
    most RETRY_AFTER_MAX: an answer cannot park Hedwig for years, nor overflow a date."""
    waits = []
    with contextlib.suppress(ValueError):
        waits.append(float(response.headers.get("Retry-After", "")))
    with contextlib.suppress(ValueError):
        waits.append(float(response.headers.get("X-RateLimit-Reset", "")) - time.time())
    for wait in waits:
        if math.isfinite(wait):
            return min(max(0.0, wait), RETRY_AFTER_MAX)
    return 0.0


def intercom_api_url(region: str) -> str:
    """The API host for a workspace's region; HEDWIG_INTERCOM_API_URL replaces every region's
    (for stand-ins and tests)."""
    override = current_app.config["INTERCOM_API_URL"]
    return (override or current_app.config["INTERCOM_REGIONS"][region]["api"]).rstrip("/")


def region_of(value: Any) -> str:
    """Intercom's name for a region as Hedwig keys it (us, eu, au); an unknown one is the US,
    with a warning: US hosts route to other regions, while the reverse fails."""
    name = str(value or "").strip().lower()
    region = REGION_ALIASES.get(name, name)
    if region not in current_app.config["INTERCOM_REGIONS"]:
        if name:
            current_app.logger.warning("Unknown Intercom region %r: using the US hosts", name)
        return "us"
    return region


REGION_ALIASES = {"usa": "us", "europe": "eu", "australia": "au"}
RETRY_AFTER_MAX = 3600  # seconds


def revoke_token(connection: IntercomConnection) -> str | None:
    """Ask Intercom to revoke the connection's token: None when it did, else why not."""
    token = connection.token
    if token is None:
        return "its token no longer decrypts here"
    try:
        call_intercom("POST", "/auth/uninstall", token=token, region=connection.region)
    except IntercomError as error:
        current_app.logger.warning("Revoking %s's token failed: %s", connection.workspace_id, error)
        return str(error)
    return None


CONNECTION_DETAILS = (
    "workspace_id",
    "workspace_name",
    "region",
    "admin_id",
    "admin_name",
    "admin_email",
)


def save_connection(
    details: Mapping[str, str | None], token: str, user: User
) -> IntercomConnection:
    """Store the token for its workspace: connecting again updates the row in place."""
    begin_write(IntercomConnection)
    connection = db.session.scalar(
        select(IntercomConnection).where(IntercomConnection.workspace_id == details["workspace_id"])
    ) or IntercomConnection(workspace_id=details["workspace_id"])
    for name in CONNECTION_DETAILS:
        setattr(connection, name, details[name])
    connection.token = token
    connection.connected_by_id = user.id
    connection.refused_at = connection.refusal = None
    db.session.add(connection)
    db.session.commit()
    wake_sender()  # notes that waited for this reconnect
    return connection


def load_token_cipher(app: Flask) -> Fernet:
    """The key that encrypts Intercom tokens at rest: kept outside the database, so a copy of
    the database alone (a backup, say) holds no usable token."""
    key = app.config.get("TOKEN_KEY")
    source = "HEDWIG_TOKEN_KEY"
    if not key:
        key = instance_secret(app, "token_key", lambda: Fernet.generate_key().decode())
        source = str(Path(app.instance_path, "token_key"))
    try:
        return Fernet(key)
    except ValueError:
        raise SetupError(
            f"{source} does not hold a Fernet key: make one with python -c 'from "
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
FIND_LIMIT = 5
PREFILL_MAX = 60  # characters of the first message the find canvas searches for
NONCE_BYTES = 24
NONCE_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what secrets.token_urlsafe() gives


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
    body = read_body(current_app.config["CANVAS_MAX_CONTENT_LENGTH"])
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


def read_body(limit: int) -> bytes:
    """The raw body, or 413 past ``limit`` bytes, with or without a Content-Length (a chunked
    body is otherwise cut at the limit without a word, and would fail its signature)."""
    too_large = f"The request body is larger than {limit} bytes."
    if request.content_length is not None and request.content_length > limit:
        abort(413, too_large)
    request.max_content_length = limit + 1  # so that a byte past the limit can be seen
    chunks, size = [], 0
    while size <= limit and (chunk := request.stream.read(limit + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        abort(413, too_large)
    return b"".join(chunks)


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
    stored_query = field(payload, "current_canvas", "stored_data", "query")
    typed = clean_text(field(payload.get("input_values"), "query"), SEARCH_MAX)[:SEARCH_MAX]
    query = typed or (text_or_none(stored_query, SEARCH_MAX) or "")
    if component_id == "save":
        return save_feedback(context, payload)
    if component_id == "add":
        return add_customer(context, payload)
    if component_id in ("record", "another"):
        return find_canvas(context, search_prefill(context))
    if component_id in ("query", "find"):
        return find_canvas(context, query)
    if component_id == "new":
        return form_canvas(context, title=query[:TITLE_MAX], query=query)
    if isinstance(component_id, str) and component_id.startswith("match-"):
        record = visible_record(id_number(component_id.removeprefix("match-")), context)
        return add_canvas(context, record, query) if record else find_canvas(context, query)
    return first_canvas(context)  # "back", "done", or anything unknown


@dataclass(frozen=True)
class InboxContext:
    """What a canvas request says about where the agent is: workspace, conversation, customer."""

    workspace_id: str | None
    region: str
    conversation_id: str | None
    contact_id: str | None
    customer_name: str
    customer_email: str
    admin_id: str | None
    admin_name: str | None
    admin_email: str | None
    subject_html: str  # the conversation's subject (may hold markup), for the search
    opening_html: str  # the customer's first message; turned into text only for the form

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> InboxContext:
        # Older apps get `customer` instead of `contact`; `context` may be absent. The
        # customer is a contact, never a teammate: in a conversation a teammate started, the
        # source's author is an admin, and the source's body is the teammate's words.
        contact = payload.get("contact")
        if not isinstance(contact, dict):
            contact = payload.get("customer")
        source = field(payload, "conversation", "source")
        author = field(source, "author")
        if field(author, "type") not in CUSTOMER_TYPES:
            author = None
        return cls(
            workspace_id=id_or_none(payload.get("workspace_id")),
            region=region_of(payload.get("workspace_region")),
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
            subject_html=text_or_none(field(source, "subject"), SEARCH_MAX * 4)
            or text_or_none(field(payload, "conversation", "title"), SEARCH_MAX * 4)
            or "",
            opening_html=customers_first_message(payload.get("conversation")),
        )


CUSTOMER_TYPES = frozenset({"user", "lead", "contact"})


def customers_first_message(conversation: Any) -> str:
    """The HTML of the first message a customer wrote: the conversation's source when a
    customer started it, else the first customer part (when Intercom sends the parts)."""
    source = field(conversation, "source")
    if field(source, "author", "type") in CUSTOMER_TYPES:
        body = field(source, "body")
        return body if isinstance(body, str) else ""
    parts = field(conversation, "conversation_parts", "conversation_parts")
    for part in parts if isinstance(parts, list) else []:
        body = field(part, "body")
        if field(part, "author", "type") in CUSTOMER_TYPES and isinstance(body, str) and body:
            return body
    return ""


def field(data: Any, *path: str) -> Any:
    """data[path[0]][path[1]]…, or None where a step is missing or not an object: real payloads
    leave out or null any field."""
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def text_or_none(value: Any, limit: int = NAME_MAX) -> str | None:
    """A JSON value as clean, bounded text: numbers become text, anything else None."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return clean_text(str(value), limit)[:limit] or None


def id_or_none(value: Any) -> str | None:
    """An Intercom id as text (conversation ids come as strings or integers)."""
    text = text_or_none(value, limit=ID_MAX + 1)
    return text if text and len(text) <= ID_MAX else None


# The canvases, one function each.


def not_connected_canvas() -> dict[str, Any]:
    return canvas(
        [
            text("This Intercom workspace is not connected to Hedwig yet.", "muted"),
            button("connect", "Connect in Hedwig", url=connect_url()),
        ]
    )


def first_canvas(context: InboxContext) -> dict[str, Any]:
    """What this conversation backs and this customer asked for elsewhere, and a Record
    button. It is sent on every conversation switch: one indexed statement, no outside
    calls, no primary button."""
    lists = first_canvas_lists(read_connection(), context)
    components = [text("Feedback from this conversation", "header")]
    if lists["conversation"]:
        components += listed(lists["conversation"])
    else:
        components.append(text("Nothing recorded from this conversation yet.", "muted"))
    if lists["customer"]:
        components.append(text(f"More from {markdown_escape(customer_called(context))}", "header"))
        components += listed(lists["customer"])
    components.append(button("record", "Record feedback"))
    return canvas(components)


def find_canvas(context: InboxContext, query: str) -> dict[str, Any]:
    """Find before you create: the workspace's records that match, best first, each one click
    from adding this customer to it; or a new record, its title the search."""
    matches = best_matches(query, context.workspace_id) if query else []
    components: list[dict[str, Any]] = [
        text("Record feedback", "header"),
        {
            "type": "input",
            "id": "query",
            "label": "Is it asked for already?",
            "placeholder": "Search the feedback log",
            "value": query,
            "action": {"type": "submit"},
        },
    ]
    if matches:
        components.append(record_list(matches, "match", submit=True))
    elif query:
        components.append(text("No feedback matches yet.", "muted"))
    components += [button("new", "New feedback"), button("back", "Back", "link")]
    return canvas(components, {"query": query})


def add_canvas(
    context: InboxContext, record: Feedback, query: str, quote: str | None = None
) -> dict[str, Any]:
    """A match, and this customer's words to add to it."""
    if quote is None:
        quote = html_to_text(context.opening_html)[:QUOTE_MAX]
    components = [
        text(markdown_escape(record.title), "header"),
        text(f"#{record.id} · {about(record)}", "muted"),
        {
            "type": "textarea",
            "id": "quote",
            "label": f"{customer_called(context)}'s words",
            "placeholder": "What they asked for, in their words",
            "value": quote,
        },
        button("add", f"Add {customer_called(context)}", "primary"),
        button("find", "Back", "link"),
    ]
    stored = {"nonce": new_nonce(), "feedback_id": record.id, "query": query}
    return canvas(components, stored)


def form_canvas(
    context: InboxContext,
    title: str = "",
    quote: str | None = None,
    errors: Mapping[str, str] | None = None,
    query: str = "",
) -> dict[str, Any]:
    """A new record, its first customer's words prefilled from their opening message."""
    errors = errors or {}
    customer = " · ".join(filter(None, [context.customer_name, context.customer_email]))
    components = [
        text("New feedback", "header"),
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
    if quote is None:
        quote = html_to_text(context.opening_html)[:QUOTE_MAX]
    components.append(
        {
            "type": "textarea",
            "id": "quote",
            "label": "In the customer's words",
            "placeholder": "What they asked for, in their words",
            "value": quote,
            "error": "quote" in errors,
        }
    )
    components += [
        button("save", "Save feedback", "primary"),
        button("find", "Back", "link"),
    ]
    # The nonce makes this form single use: a second submit finds the record the first made.
    return canvas(components, {"nonce": new_nonce(), "query": query})


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


def added_canvas(context: InboxContext, record: Feedback, already: bool) -> dict[str, Any]:
    who = markdown_escape(customer_called(context))
    said = (
        f"This conversation backs #{record.id} already"
        if already
        else f"{who} added to #{record.id}"
    )
    return canvas(
        [
            text(f"{said} — {backing(record.customer_count)}", "header"),
            text(markdown_escape(record.title)),
            button("open", "Open in Hedwig", url=feedback_url(record)),
            button("done", "Done", "link"),
        ]
    )


def save_feedback(context: InboxContext, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A new record and its first piece of evidence, stored once however often it arrives."""
    inputs = payload.get("input_values")
    title = clean_text(field(inputs, "title"), TITLE_MAX)
    quote = clean_text(field(inputs, "quote"), QUOTE_MAX)
    query = text_or_none(field(payload, "current_canvas", "stored_data", "query"), SEARCH_MAX)
    errors = validate_feedback({"title": title, "quote": quote})
    nonce = submitted_nonce(payload)
    if nonce is None:
        errors["form"] = "This form has expired. Check the details and save again."
    if errors:
        return form_canvas(context, title[:TITLE_MAX], quote[:QUOTE_MAX], errors, query or "")
    try:
        record = Feedback(title=title, source="intercom", workspace_id=context.workspace_id)
        db.session.add(record)
        evidence = add_evidence(record, quote=quote, submit_nonce=nonce, **heard_in(context))
        # A new record's one piece of evidence is all it has: the record is inserted whole,
        # once, and so is its row in the search index (an UPDATE would rewrite that row).
        set_backing(record, [evidence])
        db.session.commit()
    except IntegrityError:
        # The same form again (double click, retry, replay, another worker): the unique nonce
        # refused a second row, so answer with the record the first submit made.
        db.session.rollback()
        first = evidence_with_nonce(nonce)
        if first is None or first.workspace_id != context.workspace_id:
            # A nonce another workspace spent: this form is not one Hedwig gave out here.
            errors = {"form": "This form has expired. Check the details and save again."}
            return form_canvas(context, title, quote, errors, query or "")
        record = first.feedback
    return saved_canvas(record)


def add_customer(context: InboxContext, payload: Mapping[str, Any]) -> dict[str, Any]:
    """This conversation's customer, backing a record found by the search: added once,
    however often it arrives, and never twice from one conversation."""
    stored = field(payload, "current_canvas", "stored_data")
    query = text_or_none(field(stored, "query"), SEARCH_MAX) or ""
    record = visible_record(field(stored, "feedback_id"), context)
    nonce = submitted_nonce(payload)
    if record is None or nonce is None:
        return find_canvas(context, query)
    quote = clean_text(field(payload.get("input_values"), "quote"), QUOTE_MAX)
    if len(quote) > QUOTE_MAX:
        return add_canvas(context, record, query, quote[:QUOTE_MAX])
    record_id_ = record.id
    try:
        add_evidence(record, quote=quote, submit_nonce=nonce, **heard_in(context))
        refresh_backing(record)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        first = evidence_with_nonce(nonce)
        if first is None:  # this conversation backs the record already: nothing changes
            return added_canvas(context, db.session.get(Feedback, record_id_), already=True)
        if first.workspace_id != context.workspace_id:  # a nonce another workspace spent
            return find_canvas(context, query)
        return added_canvas(context, first.feedback, already=False)  # the same click again
    return added_canvas(context, record, already=False)


def heard_in(context: InboxContext) -> dict[str, Any]:
    """The evidence's customer and provenance, as the canvas request gives them."""
    return {
        "source": "intercom",
        "customer_name": context.customer_name,
        "customer_email": context.customer_email,
        "contact_id": context.contact_id,
        "workspace_id": context.workspace_id,
        "region": context.region,
        "conversation_id": context.conversation_id,
        "admin_id": context.admin_id,
        "admin_name": context.admin_name,
        "admin_email": context.admin_email,
    }


def visible_record(feedback_id: Any, context: InboxContext) -> Feedback | None:
    """The record a canvas names, if this workspace's Inbox may show it (a merged record
    leads to the one it was merged into)."""
    if not isinstance(feedback_id, int) or not 1 <= feedback_id <= ID_LARGEST:
        return None
    record = db.session.get(Feedback, feedback_id) or merged_target(feedback_id)
    if record is None or record.workspace_id != context.workspace_id:
        return None
    return record


def submitted_nonce(payload: Mapping[str, Any]) -> str | None:
    nonce = field(payload, "current_canvas", "stored_data", "nonce")
    return nonce if isinstance(nonce, str) and NONCE_SHAPE.fullmatch(nonce) else None


def evidence_with_nonce(nonce: str) -> Evidence | None:
    return db.session.scalar(select(Evidence).where(Evidence.submit_nonce == nonce))


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def search_prefill(context: InboxContext) -> str:
    """What the find canvas searches for first: the conversation's subject, else the first
    words of the customer's first message."""
    subject = html_to_text(context.subject_html)
    if subject:
        return subject[:PREFILL_MAX]
    words = html_to_text(context.opening_html[: 20 * PREFILL_MAX]).split()
    prefill = ""
    for word in words:
        if len(prefill) + len(word) + 1 > PREFILL_MAX:
            break
        prefill = f"{prefill} {word}".strip()
    return prefill


def customer_called(context: InboxContext) -> str:
    return context.customer_name or context.customer_email or "this customer"


def about(record: Feedback | Row) -> str:
    """A record's status and backing, as a canvas's lists say them: "Planned · 7 customers"."""
    return f"{STATUSES.get(record.status, record.status)} · {backing(record.customer_count)}"


def backing(customer_count: int) -> str:
    return plural(customer_count, "customer")


# Canvas components, one helper each, so a canvas reads as the list of what the agent sees.


def canvas(components: list[dict[str, Any]], stored_data: dict | None = None) -> dict[str, Any]:
    return {"canvas": {"content": {"components": components}, "stored_data": stored_data or {}}}


def text(value: str, style: str = "paragraph") -> dict[str, Any]:
    return {"type": "text", "text": value, "style": style}


def button(component_id: str, label: str, style: str = "secondary", url: str | None = None) -> dict:
    action = {"type": "url", "url": url} if url else {"type": "submit"}
    return {"type": "button", "id": component_id, "label": label, "style": style, "action": action}


def record_list(records: list[Any], id_prefix: str, submit: bool = False) -> dict[str, Any]:
    """Records as a list: each opens in Hedwig, or (``submit``) is a choice on the canvas."""
    return {
        "type": "list",
        "items": [
            {
                "type": "item",
                "id": f"{id_prefix}-{record.id}",
                "title": record.title,
                "subtitle": f"#{record.id} · {about(record)}",
                "action": {"type": "submit"}
                if submit
                else {"type": "url", "url": feedback_url(record)},
            }
            for record in records
        ],
    }


def listed(records: list[Row]) -> list[dict[str, Any]]:
    """A list of records and, below it, how many more there are."""
    shown, total = len(records), records[0].total
    if total <= shown:
        return [record_list(records, "feedback")]
    more = f"{total - shown}+" if total >= COUNT_CAP else f"+{total - shown}"
    return [record_list(records, "feedback"), text(f"{more} more in Hedwig", "muted")]


def feedback_url(record: Feedback | Row) -> str:
    return external_url("log.show_feedback", feedback_id=record.id)


# What customers write, made safe for a canvas.


HTML_READ_MAX = 10 * DESCRIPTION_MAX  # characters of markup read; the details keep fewer
HTML_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*+)[^<>]*+>|<!--")
BLOCK_TAGS = frozenset({"p", "div", "li", "tr", "blockquote", "pre", "h1", "h2", "h3", "h4"})
SKIPPED_TAGS = frozenset({"script", "style"})


def html_to_text(markup: str) -> str:
    """The customer's message as clean plain text: tags dropped, entities decoded, blank runs
    folded.

    One pass over a bounded prefix, in linear time whatever the input: CPython's html.parser
    takes quadratic time on unclosed tags (CVE-2025-6069), and a customer writes this HTML.
    """
    markup = markup[:HTML_READ_MAX]
    parts: list[str] = []
    position, skipping = 0, ""
    while match := HTML_TOKEN.search(markup, position):
        if not skipping:
            parts.append(markup[position : match.start()])
        if match.group() == "<!--":
            end = markup.find("-->", match.end())
            position = len(markup) if end < 0 else end + 3
            continue
        position = match.end()
        closing, tag = match.group(1), match.group(2).lower()
        if skipping:
            skipping = "" if closing and tag == skipping else skipping
        elif tag in SKIPPED_TAGS and not closing:
            skipping = tag
        elif tag == "br" or (closing and tag in BLOCK_TAGS):
            parts.append("\n")
    if not skipping:
        parts.append(markup[position:])
    text = clean_text(html.unescape("".join(parts)), HTML_READ_MAX)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def markdown_escape(text: str) -> str:
    """Customer-supplied text in a markdown `text` component must not become a link or emphasis."""
    return re.sub(r"([\\`*_\[\]<>])", r"\\\1", text)


# The first canvas's lookups. Intercom asks for the first canvas on every conversation switch,
# so its two lists come from one statement, built once at import: building it per request
# costs more than running it. Each list reads a bounded number of index entries, so a
# conversation with 2,000 pieces of evidence costs what one with 2 does.

COUNT_CAP = 100
LOOKBACK = 2 * COUNT_CAP


def newest_backed(*conditions: Any) -> Select:
    """The records of up to COUNT_CAP matching pieces of evidence, newest first."""
    return (
        select(Evidence.feedback_id)
        .where(*conditions)
        .order_by(Evidence.id.desc())
        .limit(COUNT_CAP)
    )


def newest_backed_elsewhere(customer: Any) -> Select:
    """The records of up to COUNT_CAP of a customer's pieces of evidence from other
    conversations, found among their LOOKBACK newest. Without that bound, each piece of theirs
    in this conversation would be one more index entry to step over. Exact unless this
    conversation holds more than LOOKBACK - COUNT_CAP of their pieces."""
    recent = (
        select(Evidence.feedback_id, Evidence.conversation_id)
        .where(customer)
        .order_by(Evidence.id.desc())
        .limit(LOOKBACK)
        .subquery()
    )
    elsewhere = or_(
        recent.c.conversation_id.is_(None),
        recent.c.conversation_id != bindparam("conversation_id"),
    )
    return select(select(recent.c.feedback_id).where(elsewhere).limit(COUNT_CAP).subquery())


def newest_first(list_name: str, records: Select, excluded: Select | None = None) -> Select:
    """Up to CANVAS_LIST_LIMIT of ``records`` (but ``excluded``), newest first, each row
    carrying the list's name and how many records there are."""
    matching = records.cte()
    listed = Feedback.id.in_(select(matching.c.feedback_id))
    counted = select(func.count(distinct(matching.c.feedback_id))).select_from(matching)
    if excluded is not None:
        listed = listed & Feedback.id.not_in(excluded)
        counted = counted.where(matching.c.feedback_id.not_in(excluded))
    newest = (
        select(
            literal(list_name).label("list"),
            Feedback.id,
            Feedback.title,
            Feedback.status,
            Feedback.customer_count,
            counted.scalar_subquery().label("total"),
        )
        .where(listed)
        .order_by(Feedback.id.desc())
        .limit(CANVAS_LIST_LIMIT)
    )
    return select(newest.subquery())


IN_THIS_WORKSPACE = Evidence.workspace_id == bindparam("workspace_id")
BACKED_BY_THIS_CONVERSATION = newest_backed(
    IN_THIS_WORKSPACE, Evidence.conversation_id == bindparam("conversation_id")
)
FIRST_CANVAS_LISTS = union_all(
    newest_first("conversation", BACKED_BY_THIS_CONVERSATION),
    # A customer is their Intercom contact, or their email address, in this workspace: a
    # canvas never shows what was heard in another workspace (a Messenger visitor can claim
    # any email), nor evidence added by hand on the web, which was heard in none.
    newest_first(
        "customer",
        union(
            newest_backed_elsewhere(
                IN_THIS_WORKSPACE & (Evidence.contact_id == bindparam("contact_id"))
            ),
            newest_backed_elsewhere(
                IN_THIS_WORKSPACE & (Evidence.customer_email == bindparam("customer_email"))
            ),
        ),
        excluded=BACKED_BY_THIS_CONVERSATION,
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
        except (ValueError, RecursionError):
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
    return sample_canvas_payload(sample, PREVIEW_WORKSPACE_ID, g.user.email)


def sample_canvas_payload(
    sample: Mapping[str, str], workspace_id: str, admin_email: str
) -> dict[str, Any]:
    """A canvas request in the documented shape, for a sample conversation."""
    customer = {
        "type": "contact",
        "id": f"preview-{hashlib.sha256(sample['customer_email'].encode()).hexdigest()[:12]}",
        "name": sample["customer_name"],
        "email": sample["customer_email"],
    }
    return {
        "workspace_id": workspace_id,
        "workspace_region": "us",
        "admin": {
            "type": "admin",
            "id": "preview-agent",
            "name": sample["agent_name"],
            "email": admin_email,
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


# --- 6. Closing the loop: a status on every record, a note in every conversation -------------
#
# Every record has a status. Changing it keeps a line of history and, when asked to, writes an
# internal note for every Intercom conversation behind the record into an outbox, in the same
# transaction: nothing is sent before the change is kept, and nothing is lost after it. A
# sender thread sends the notes at once, without holding the page; `flask send-notes` sends
# what a crash or a restart left. A sender claims each note with one UPDATE before sending
# it, so two senders never send one note twice.

loop = Blueprint("loop", __name__)
NOTIFY_BY_DEFAULT = frozenset({"planned", "done", "declined"})
NEXT_STATUS = {"open": "planned", "planned": "in_progress", "in_progress": "done"}
NOTE_ATTEMPTS = 5  # tries of a note Intercom fails on (5xx, timeouts), then it has failed
RETRY_DELAYS = (30, 60, 120, 240)  # seconds before the 2nd, 3rd, 4th and 5th try
RATE_LIMIT_WAIT = 10  # seconds, when a 429 says neither Retry-After nor X-RateLimit-Reset
SENDER_WAIT_MAX = 60  # seconds a sender waits for a note coming due, before leaving it
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # safe in a URL path as it is


@loop.post("/feedback/<id:feedback_id>/status")
def change_status(feedback_id: int) -> Any:
    # A merged record's old id (a page left open) changes the record it was merged into.
    record = db.session.get(Feedback, feedback_id) or merged_target(feedback_id)
    if record is None:
        abort(404, f"There is no feedback #{feedback_id}.")
    values = {
        "status": request.form.get("status", ""),
        "message": form_text("message", MESSAGE_MAX),
        "notify": request.form.getlist("notify"),  # absent: the status's default
        "reopen": request.form.get("reopen") == "on",
    }
    errors = validate_status_change(record, values)
    if errors:
        return show_record(record, status_form=values, errors=errors), 400
    notify = (
        any(BOOLEAN_WORDS.get(value.lower()) for value in values["notify"])
        if values["notify"]
        else values["status"] in NOTIFY_BY_DEFAULT
    )
    change = set_status(record, values["status"], values["message"], notify, values["reopen"])
    if change is None:  # the same change, made at this moment by another click or teammate
        errors = validate_status_change(record, values)
        return show_record(record, status_form=values, errors=errors), 400
    queued = sum(note.state == "pending" for note in change.notes)
    db.session.commit()
    wake_sender()
    told = f"; a note goes to {plural(queued, 'conversation')}" if queued else ""
    flash(f"#{record.id} is {STATUSES[change.to_status].lower()} now{told}.")
    return redirect(url_for("log.show_feedback", feedback_id=record.id))


@loop.post("/feedback/<id:feedback_id>/notes/retry")
def retry_failed_notes(feedback_id: int) -> Response:
    """Send the record's failed notes again, from their first try."""
    db.get_or_404(Feedback, feedback_id)
    retried = db.session.execute(
        update(Note)
        .where(Note.feedback_id == feedback_id, Note.state == "failed")
        .values(state="pending", attempts=0, next_attempt_at=utcnow(), reason="")
    ).rowcount
    db.session.commit()
    wake_sender()
    flash(f"{plural(retried, 'note')} will be sent again." if retried else "No note had failed.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


@loop.before_app_request
def send_notes_left_behind() -> None:
    """A process's first request wakes the sender if an earlier process left notes to send."""
    app = current_app._get_current_object()
    if app.extensions.get("hedwig_sender_woken") or not app.config["SEND_NOTES_AT_ONCE"]:
        return
    try:
        left = db.session.scalar(select(Note.id).where(Note.state.in_(("pending", "sending"))))
    except SQLAlchemyError:  # a database not ready yet: /healthz says so; a later request looks
        db.session.rollback()
        return
    app.extensions["hedwig_sender_woken"] = True
    if left:
        wake_sender()


@loop.app_context_processor
def status_helpers() -> dict[str, Any]:
    return {
        "statuses": STATUSES,
        "notify_by_default": NOTIFY_BY_DEFAULT,
        "message_max": MESSAGE_MAX,
        "note_outcome": note_outcome,
    }


def status_form_defaults(record: Feedback) -> dict[str, Any]:
    """The status form as the page first shows it: the status that usually comes next."""
    status = NEXT_STATUS.get(record.status, "open")
    notify = "on" if status in NOTIFY_BY_DEFAULT else "off"
    return {"status": status, "message": "", "notify": [notify], "reopen": False}


def status_history(record: Feedback) -> list[StatusChange]:
    """The record's status changes, newest first, each with its notes."""
    return list(
        db.session.scalars(
            select(StatusChange)
            .where(StatusChange.feedback_id == record.id)
            .order_by(StatusChange.id.desc())
            .options(selectinload(StatusChange.notes), selectinload(StatusChange.changed_by))
        )
    )


def validate_status_change(record: Feedback, values: Mapping[str, Any]) -> dict[str, str]:
    errors = {}
    if values["status"] not in STATUSES:
        errors["status"] = f"Choose a status: {', '.join(STATUSES.values())}."
    elif values["status"] == record.status:
        errors["status"] = f"#{record.id} is {record.status_label.lower()} already."
    if len(values["message"]) > MESSAGE_MAX:
        errors["message"] = f"Keep the message to {MESSAGE_MAX} characters."
    return errors


def set_status(
    record: Feedback, status: str, message: str, notify: bool, reopen: bool
) -> StatusChange | None:
    """Change the record's status, keep the change, and (``notify``) write a note for each
    conversation behind the record into the outbox: one transaction, the caller commits.
    None, and nothing written, when the record has that status already."""
    begin_write(StatusChange)
    db.session.refresh(record)  # as it is now that this transaction holds the write lock
    if record.status == status:
        db.session.rollback()
        return None
    change = StatusChange(
        feedback_id=record.id,
        from_status=record.status,
        to_status=status,
        message=message,
        notify=notify,
        reopen=notify and reopen,
        changed_by_id=g.user.id,
    )
    record.status = status
    db.session.add(change)
    if notify:
        connected = set(workspace_names())
        for evidence in record.evidence:
            change.notes.append(new_note(record, change, evidence, connected))
    db.session.flush()
    return change


def new_note(
    record: Feedback, change: StatusChange, evidence: Evidence, connected: set[str]
) -> Note:
    """The note for the conversation a piece of evidence was heard in: pending, or skipped
    with the reason a person reads on the record's page."""
    customer = evidence.customer_name or evidence.customer_email or "the customer"
    note = Note(
        feedback_id=record.id,
        customer=customer[:NAME_MAX],
        workspace_id=evidence.workspace_id,
        conversation_id=evidence.conversation_id,
        reopen=change.reopen,
        body=note_body(record, change, customer),
    )
    skipped = not_noted(evidence, connected)
    if skipped:
        note.state, note.reason, note.finished_at = "skipped", skipped, utcnow()
    return note


def not_noted(evidence: Evidence, connected: set[str]) -> str | None:
    """Why the conversation a piece of evidence was heard in gets no note, or None."""
    if evidence.origin == "preview":
        return "recorded in the canvas preview, not in Intercom"
    if not evidence.conversation_id or evidence.source != "intercom":
        return "added by hand: no Intercom conversation"
    if evidence.workspace_id not in connected:
        return "its workspace is not connected to Hedwig"
    if not CONVERSATION_ID.fullmatch(evidence.conversation_id):
        return "not an Intercom conversation id"
    return None


def conversations_to_note(record: Feedback) -> int:
    """How many conversations a change of the record's status would send a note to."""
    connected = set(workspace_names())
    return sum(not_noted(evidence, connected) is None for evidence in record.evidence)


def note_body(record: Feedback, change: StatusChange, customer: str) -> str:
    """The note as teammates read it in the conversation: the record (a link to it), its new
    status, the team's message, and who to tell."""
    url, title = html.escape(feedback_url(record)), html.escape(record.title)
    link = f'<a href="{url}">#{record.id} {title}</a>'
    lines = [f"<p>Hedwig: {link} is now <b>{html.escape(STATUSES[change.to_status])}</b>.</p>"]
    if change.message:
        lines.append(f"<p>{html.escape(change.message).replace(chr(10), '<br>')}</p>")
    lines.append(f"<p>{html.escape(customer)} asked for it in this conversation: tell them?</p>")
    return "".join(lines)


# The sender. A note is pending until a sender claims it (sending), then sent, failed, or
# pending again: after a 429 (at the time Intercom gave), a 5xx or a timeout (after a delay,
# NOTE_ATTEMPTS tries in all), or a refused token (until someone reconnects the workspace).


def send_notes(wait_max: float = 0) -> Counter[str]:
    """Send every note that is due, waiting up to ``wait_max`` seconds for one coming due;
    how many ended sent, failed, waiting (for later, or for a reconnect)."""
    outcomes: Counter[str] = Counter()
    release_abandoned_notes()
    while True:
        note = claim_next_note()
        if note is not None:
            outcomes[deliver_or_fail(note)] += 1
            continue
        wait = seconds_until_next_note()
        if wait is None or wait > wait_max:
            return outcomes
        time.sleep(wait)


def claim_next_note() -> Note | None:
    """The next due note, claimed by this sender: the UPDATE that moves it from pending to
    sending is one statement, so of two senders only one moves it."""
    now = utcnow()
    for note_id in db.session.scalars(due_notes(now).limit(20)).all():
        claimed = db.session.execute(
            update(Note)
            .where(Note.id == note_id, Note.state == "pending", Note.next_attempt_at <= now)
            .values(state="sending", claimed_at=now)
        ).rowcount
        db.session.commit()
        if claimed:
            return db.session.get(Note, note_id)
    db.session.rollback()
    return None


def due_notes(now: datetime) -> Select:
    """Pending notes whose time has come, except those waiting for a reconnect."""
    return (
        select(Note.id)
        .outerjoin(IntercomConnection, IntercomConnection.workspace_id == Note.workspace_id)
        .where(
            Note.state == "pending",
            Note.next_attempt_at <= now,
            IntercomConnection.refused_at.is_(None),
        )
        .order_by(Note.next_attempt_at, Note.id)
    )


def seconds_until_next_note() -> float | None:
    """How long until a pending note comes due (None: none will, without a reconnect)."""
    future = db.session.scalar(
        select(func.min(Note.next_attempt_at))
        .outerjoin(IntercomConnection, IntercomConnection.workspace_id == Note.workspace_id)
        .where(Note.state == "pending", IntercomConnection.refused_at.is_(None))
    )
    db.session.rollback()
    return None if future is None else max(0.0, (future - utcnow()).total_seconds())


def deliver_or_fail(note: Note) -> str:
    """deliver(), and if anything unexpected stops it (the record deleted meanwhile, say), the
    note fails with a reason a person can act on, and the sender goes on to the next."""
    note_id = note.id
    try:
        return deliver(note)
    except Exception:
        current_app.logger.exception("Sending note %s stopped", note_id)
        db.session.rollback()
        db.session.execute(
            update(Note)
            .where(Note.id == note_id, Note.state == "sending")
            .values(state="failed", finished_at=utcnow(), reason=MAY_HAVE_ARRIVED)
        )
        db.session.commit()
        return "failed"


MAY_HAVE_ARRIVED = "Hedwig stopped while sending it: it may have arrived. Retry sends it again."


def deliver(note: Note) -> str:
    """Send one claimed note (and reopen its conversation, if asked), and keep the outcome."""
    connection = db.session.scalar(
        select(IntercomConnection).where(IntercomConnection.workspace_id == note.workspace_id)
    )
    if connection is None:
        return finish(note, "failed", "the workspace was disconnected before it was sent")
    if connection.needs_reconnecting or not connection.admin_id:
        reason = connection.needs_reconnecting or "the connection names no admin to write as"
        return wait_for_reconnect(note, connection, reason)
    path = f"/conversations/{note.conversation_id}"
    author = {"admin_id": connection.admin_id}
    try:
        if note.noted_at is None:
            note_json = {"message_type": "note", "type": "admin", "body": note.body} | author
            intercom_response(
                "POST", f"{path}/reply", connection.token, connection.region, json=note_json
            )
            note.noted_at = utcnow()
            db.session.commit()  # told: a crash from here on never tells again
        if note.reopen:
            reopen_json = {"message_type": "open"} | author
            intercom_response(
                "POST", f"{path}/parts", connection.token, connection.region, json=reopen_json
            )
    except IntercomError as error:
        return after_refusal(note, connection, error)
    return finish(note, "sent")


def after_refusal(note: Note, connection: IntercomConnection, error: IntercomError) -> str:
    status, noted = error.http_status, note.noted_at is not None
    if error.arrived is None and not noted:
        # The note went out and no answer came: sending it again might say it twice.
        return finish(note, "failed", f"{error}: it may have arrived. Retry sends it again.")
    if status in (401, 403):
        return wait_for_reconnect(note, connection, str(error))
    if status == 429:
        # Every note to this workspace waits: Intercom limits the app, not the conversation.
        resume = utcnow() + timedelta(seconds=error.retry_after or RATE_LIMIT_WAIT)
        db.session.execute(
            update(Note)
            .where(
                Note.workspace_id == note.workspace_id,
                Note.state == "pending",
                Note.next_attempt_at < resume,
            )
            .values(next_attempt_at=resume)
        )
        return pending_again(note, resume, f"waiting: {error}", "waiting")
    if status is not None and status < 500:  # 404 and any other refusal: trying again won't help
        if noted:
            return finish(note, "sent", f"the note arrived, but reopening failed: {error}")
        return finish(note, "failed", str(error))
    note.attempts += 1
    if note.attempts >= NOTE_ATTEMPTS:
        return finish(note, "failed", f"{error} ({NOTE_ATTEMPTS} tries)")
    retry_at = utcnow() + timedelta(seconds=RETRY_DELAYS[note.attempts - 1])
    reason = f"try {note.attempts} of {NOTE_ATTEMPTS} failed: {error}"
    return pending_again(note, retry_at, reason, "waiting")


def wait_for_reconnect(note: Note, connection: IntercomConnection, reason: str) -> str:
    """Intercom refused the token (or Hedwig cannot use it): the workspace needs reconnecting,
    and its notes wait for that."""
    if connection.refused_at is None:
        connection.refused_at, connection.refusal = utcnow(), reason
        current_app.logger.warning(
            "Intercom workspace %s needs reconnecting: %s", connection.workspace_id, reason
        )
    waiting = f"waiting until {connection.workspace_name} is reconnected"
    db.session.execute(
        update(Note)
        .where(Note.workspace_id == note.workspace_id, Note.state == "pending")
        .values(reason=waiting)
    )
    return pending_again(note, utcnow(), waiting, "waiting")


def pending_again(note: Note, next_attempt_at: datetime, reason: str, outcome: str) -> str:
    note.state, note.next_attempt_at, note.reason, note.claimed_at = (
        "pending",
        next_attempt_at,
        reason,
        None,
    )
    db.session.commit()
    return outcome


def finish(note: Note, state: str, reason: str = "") -> str:
    note.state, note.reason, note.finished_at, note.claimed_at = state, reason, utcnow(), None
    db.session.commit()
    if state == "failed":
        current_app.logger.warning(
            "Note %s to conversation %s failed: %s", note.id, note.conversation_id, reason
        )
    return state


def release_abandoned_notes() -> None:
    """Notes a sender claimed and never finished (its process stopped): a note whose delivery
    is unknown has failed, for a person to retry, since sending it again might say it twice;
    one only left to reopen its conversation is pending again (reopening twice is harmless)."""
    # A sender holds a claim for two calls to Intercom, each cut off after three timeouts.
    abandoned = utcnow() - timedelta(seconds=10 * current_app.config["INTERCOM_TIMEOUT"] + 60)
    sending = (Note.state == "sending", Note.claimed_at < abandoned)
    db.session.execute(
        update(Note)
        .where(*sending, Note.noted_at.is_(None))
        .values(
            state="failed",
            finished_at=utcnow(),
            reason=MAY_HAVE_ARRIVED,
        )
    )
    db.session.execute(update(Note).where(*sending).values(state="pending", claimed_at=None))
    db.session.commit()


def wake_sender() -> None:
    """Send the notes now, in a thread of this process, so that no page waits for Intercom.
    HEDWIG_SEND_NOTES_AT_ONCE=false leaves them to `flask send-notes` (a timer)."""
    app = current_app._get_current_object()
    if app.config["SEND_NOTES_AT_ONCE"]:
        app.extensions.setdefault("hedwig_sender", NoteSender(app)).wake()


class NoteSender:
    """This process's sender thread: it sends what is due, sleeps until the next note comes
    due, and ends when none is left (a reconnect or a new change wakes it again)."""

    IDLE_MAX = 10 * 60  # seconds: a note due later than that is left to the next wake

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.woken = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def wake(self) -> None:
        with self.lock:
            self.woken.set()
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="hedwig-notes", daemon=True)
                self.thread.start()

    def run(self) -> None:
        with self.app.app_context():
            while True:
                self.woken.clear()
                try:
                    send_notes()
                    wait = seconds_until_next_note()
                except Exception:  # a database gone away: the next wake, or a timer, goes on
                    current_app.logger.exception("Sending notes stopped")
                    db.session.rollback()
                    wait = None
                finally:
                    db.session.remove()
                with self.lock:
                    if (wait is None or wait > self.IDLE_MAX) and not self.woken.is_set():
                        self.thread = None
                        return
                self.woken.wait(wait if wait is not None else None)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (the tests do)."""
        thread = self.thread
        if thread is not None:
            thread.join(timeout)


def note_outcome(note: Note) -> str:
    """A note's state as the record's page says it."""
    if note.state == "sent":
        reopened = " and reopened" if note.reopen and not note.reason else ""
        after = f"; {note.reason}" if note.reason else ""
        return f"sent{reopened} {format_datetime(note.finished_at)}{after}"
    if note.state == "sending":
        return "being sent"
    if note.state == "pending":
        later = note.next_attempt_at > utcnow()
        return (note.reason or "to be sent") + (
            f"; next try {format_datetime(note.next_attempt_at)}" if later else ""
        )
    return f"{note.state}: {note.reason}"


# --- 7. A team: roles, invites, passwords, and signing in with Intercom ----------------------
#
# Owners manage the team and the Intercom connections, and may delete and merge records
# (@owners_only); members record, edit, set statuses and export. There is always an owner.
# Nobody needs a mail server: an owner hands out links (an invite, a password reset) however
# they like, and teammates of a connected workspace may sign in with Intercom.

team = Blueprint("team", __name__)
INVITE_LIFETIME = timedelta(days=7)
RESET_LIFETIME = timedelta(hours=1)
LINK_REFUSED = {
    "tampered": "This link is not one Hedwig made: it was changed or cut short. Ask for a new one.",
    "used": "This link has been used already: each works once. Sign in, or ask for a new one.",
    "expired": "This link has expired. Ask the owner who sent it for a new one.",
    "revoked": "This link was withdrawn by an owner. Ask them for a new one.",
}


@team.get("/team")
@owners_only
def team_page() -> str:
    return render_team_page()


@team.post("/team/invite")
@owners_only
def invite() -> Any:
    """An invite link, shown once: Hedwig keeps only its hash."""
    email = normalize_email(form_text("email", EMAIL_MAX))
    role = request.form.get("role", "member")
    if email and not is_email(email):
        return render_team_page(error="Enter a valid email address, or none."), 400
    if role not in ROLES:
        return render_team_page(error="Choose a role: owner or member."), 400
    if email and active_user(email):
        return render_team_page(error=f"{email} is on the team already."), 400
    url = new_link("invite", INVITE_LIFETIME, email=email or None, role=role)
    return render_team_page(new_link=url, new_link_for=email or "anyone with the link")


@team.post("/team/links/<id:link_id>/revoke")
@owners_only
def revoke_link(link_id: int) -> Response:
    link = db.get_or_404(AccountLink, link_id)
    if link.used_at is not None:
        flash("That link was used already: nothing to withdraw.")
    else:
        link.revoked_at = link.revoked_at or utcnow()
        db.session.commit()
        flash("The link was withdrawn: it opens nothing now.")
    return redirect(url_for("team.team_page"))


@team.post("/team/<id:user_id>/role")
@owners_only
def change_role(user_id: int) -> Any:
    role = request.form.get("role", "")
    if role not in ROLES:
        return render_team_page(error="Choose a role: owner or member."), 400
    begin_write(User)  # two owners demoting each other at once: one of them stays an owner
    teammate = team_member_or_404(user_id)
    if teammate.is_owner and role != "owner" and is_last_owner(teammate):
        db.session.rollback()
        return render_team_page(error=LAST_OWNER), 400
    teammate.role = role
    if role != "owner":
        withdraw_links(made_by=teammate)
    db.session.commit()
    flash(f"{teammate.email} is {ROLES[role].lower()} now.")
    if not g.user.is_owner:  # they made themselves a member: the team page is not theirs now
        return redirect(url_for("log.index"))
    return redirect(url_for("team.team_page"))


@team.post("/team/<id:user_id>/remove")
@owners_only
def remove_teammate(user_id: int) -> Any:
    """They sign in no more, their sessions end at once; what they recorded stays theirs."""
    begin_write(User)
    teammate = team_member_or_404(user_id)
    if teammate.is_owner and is_last_owner(teammate):
        db.session.rollback()
        return render_team_page(error=LAST_OWNER), 400
    teammate.removed_at = utcnow()
    end_sessions(teammate)
    withdraw_links(made_by=teammate, made_for=teammate)
    db.session.commit()
    flash(f"{teammate.email} was removed from the team.")
    if teammate.id == g.user.id:
        return redirect(url_for("auth.login"))
    return redirect(url_for("team.team_page"))


@team.post("/team/<id:user_id>/reset")
@owners_only
def reset_link(user_id: int) -> str:
    teammate = team_member_or_404(user_id)
    url = new_link("reset", RESET_LIFETIME, user_id=teammate.id)
    return render_team_page(new_link=url, new_link_for=f"{teammate.email} (password reset)")


@team.post("/team/workspaces/<id:connection_id>")
@owners_only
def teammates_may_join(connection_id: int) -> Response:
    connection = db.get_or_404(IntercomConnection, connection_id)
    connection.teammates_may_join = request.form.get("teammates_may_join") == "on"
    db.session.commit()
    who = f"Teammates of {connection.workspace_name}"
    flash(
        f"{who} without an account may join as members by signing in with Intercom."
        if connection.teammates_may_join
        else f"{who} need an invite to join."
    )
    return redirect(url_for("team.team_page"))


@team.route("/invite/<token>", methods=["GET", "POST"])
@public
def accept_invite(token: str) -> Any:
    """The invited teammate's form: their email (unless the invite names it) and a password.
    The account is made, and the link spent, in one transaction."""
    link = account_link(token, "invite")
    if request.method == "GET":
        return render_template("invite.html", link=link, email=link.email or "")
    email = link.email or normalize_email(form_text("email", EMAIL_MAX))
    password = request.form.get("password", "")
    error = validate_credentials(email, password, request.form.get("confirm", ""))
    if not error and active_user(email):
        error = f"{email} has an account already: sign in instead."
    if error:
        return render_template("invite.html", link=link, email=email, error=error), 400
    spend_link(link)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None and (user.removed_at is None or link.email != email):
        # Joined a moment ago, or a removed teammate's address: only an invite made for that
        # address brings them back.
        db.session.rollback()
        error = (
            f"{email} has an account already: sign in instead."
            if user.removed_at is None
            else f"{email} was removed from the team: ask an owner for an invite made for it."
        )
        return render_template("invite.html", link=link, email=email, error=error), 400
    if user is None:
        user = new_user(email, password, link.role)
        db.session.add(user)
    else:
        user.set_password(password)
        user.role, user.removed_at = link.role, None
    try:
        db.session.flush()
    except IntegrityError:  # the same email joined at this very moment
        db.session.rollback()
        error = f"{email} has an account already: sign in instead."
        return render_template("invite.html", link=link, email=email, error=error), 400
    link.user_id = user.id
    sign_in(user)  # commits the account and the spent link together
    flash(f"Welcome to Hedwig, {email}.")
    return redirect(url_for("log.index"))


@team.route("/reset/<token>", methods=["GET", "POST"])
@public
def reset_password(token: str) -> Any:
    link = account_link(token, "reset")
    if link.user is None or link.user.removed_at is not None:
        abort(410, LINK_REFUSED["revoked"])
    if request.method == "GET":
        return render_template("reset.html", link=link)
    password = request.form.get("password", "")
    error = password_error(password, request.form.get("confirm", ""))
    if error:
        return render_template("reset.html", link=link, error=error), 400
    spend_link(link)
    link.user.set_password(password)
    end_sessions(link.user)  # whoever knew the old password is signed out
    sign_in(link.user)
    flash("Your password is set: you are signed in.")
    return redirect(url_for("log.index"))


@team.get("/account")
def account() -> str:
    return render_template("account.html", errors={})


@team.post("/account/password")
def change_password() -> Any:
    """A new password ends every other sign-in of this user; this one goes on, under a new
    key. Wrong current passwords count towards the sign-in throttle, as at the sign-in page."""
    user, password = g.user, request.form.get("password", "")
    attempt = count_sign_in_attempt(user.email, client_address())
    retry_at = sign_in_throttled_until(attempt)
    if retry_at is not None:
        uncount(attempt)
        error = f"Too many wrong passwords. Try again after {retry_at:%H:%M} UTC."
        return render_template("account.html", errors={"current_password": error}), 429
    errors = {}
    if user.check_password(request.form.get("current_password", "")):
        uncount(attempt)
    else:
        errors["current_password"] = "That is not your current password."  # noqa: S105
    error = password_error(password, request.form.get("confirm", ""))
    if error:
        errors["password"] = error
    if errors:
        return render_template("account.html", errors=errors), 400
    user.set_password(password)
    end_sessions(user)
    sign_in(user)  # a copy of the old cookie, this one's included, signs nobody in now
    flash("Your password is changed: every other sign-in of yours has ended.")
    return redirect(url_for("team.account"))


@team.get("/login/intercom")
@public
def sign_in_with_intercom() -> Response:
    """The OAuth dance again, to ask Intercom's /me who this teammate is (section 4)."""
    if not sign_in_with_intercom_offered():
        abort(404, "Signing in with Intercom needs a workspace connected with OAuth.")
    return to_intercom_oauth(None)


@team.app_context_processor
def team_helpers() -> dict[str, Any]:
    return {"roles": ROLES, "sign_in_with_intercom_offered": sign_in_with_intercom_offered}


LAST_OWNER = "Hedwig needs an owner: make someone else an owner first."


def render_team_page(error: str = "", new_link: str = "", new_link_for: str = "") -> str:
    teammates = db.session.scalars(
        select(User).where(User.removed_at.is_(None)).order_by(User.role.desc(), User.email)
    )
    links = db.session.scalars(
        select(AccountLink)
        .where(
            AccountLink.used_at.is_(None),
            AccountLink.revoked_at.is_(None),
            AccountLink.expires_at > utcnow(),
        )
        .order_by(AccountLink.id.desc())
    )
    connections = db.session.scalars(select(IntercomConnection).order_by(IntercomConnection.id))
    return render_template(
        "team.html",
        teammates=list(teammates),
        links=list(links),
        team_connections=list(connections),
        error=error,
        new_link=new_link,
        new_link_for=new_link_for,
    )


def team_member_or_404(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None or user.removed_at is not None:
        abort(404, "There is no such teammate.")
    return user


def active_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email, User.removed_at.is_(None)))


def is_last_owner(user: User) -> bool:
    others = select(func.count(User.id)).where(
        User.role == "owner", User.removed_at.is_(None), User.id != user.id
    )
    return db.session.scalar(others) == 0


def withdraw_links(made_by: User, made_for: User | None = None) -> None:
    """Withdraw the open links a teammate made (they are no longer an owner, or no longer
    here), and a removed teammate's own reset links."""
    made = AccountLink.created_by_id == made_by.id
    if made_for is not None:
        made = made | (AccountLink.user_id == made_for.id)
    db.session.execute(
        update(AccountLink)
        .where(made, AccountLink.used_at.is_(None), AccountLink.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def end_sessions(user: User) -> None:
    """End the user's sign-ins everywhere, and withdraw their open reset links: a new
    password, or leaving the team, closes every way in that came before."""
    db.session.execute(delete(SignInSession).where(SignInSession.user_id == user.id))
    db.session.execute(
        update(AccountLink)
        .where(
            AccountLink.kind == "reset",
            AccountLink.user_id == user.id,
            AccountLink.used_at.is_(None),
            AccountLink.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )


def link_serializer(kind: str) -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt=f"hedwig.{kind}-link")


def new_link(kind: str, lifetime: timedelta, **fields: Any) -> str:
    """A new single-use link of ``kind``: its URL, which holds a random key; the database keeps
    the key's hash alone, so a copy of the database opens nothing."""
    key, now = secrets.token_urlsafe(24), utcnow()
    link = AccountLink(
        kind=kind,
        key_hash=key_hash(key),
        created_at=now,
        expires_at=now + lifetime,
        created_by_id=g.user.id if g.get("user") else None,
        **fields,
    )
    db.session.add(link)
    db.session.commit()
    token = link_serializer(kind).dumps([link.id, key])
    endpoint = "team.accept_invite" if kind == "invite" else "team.reset_password"
    return external_url(endpoint, token=token)


def account_link(token: str, kind: str) -> AccountLink:
    """The link a token names, if it may still be used; else a page that says why not."""
    try:
        link_id, key = link_serializer(kind).loads(token)
    except (BadSignature, ValueError, TypeError):
        abort(404, LINK_REFUSED["tampered"])
    link = db.session.get(AccountLink, link_id) if isinstance(link_id, int) else None
    if (
        link is None
        or link.kind != kind
        or not isinstance(key, str)
        or not hmac.compare_digest(key_hash(key), link.key_hash)
    ):
        abort(404, LINK_REFUSED["tampered"])
    refused = link_refused(link)
    if refused:
        abort(410, LINK_REFUSED[refused])
    return link


def link_refused(link: AccountLink) -> str | None:
    maker = link.created_by  # None: made on the command line
    if link.revoked_at is not None or (
        maker is not None and (maker.removed_at is not None or not maker.is_owner)
    ):
        return "revoked"
    if link.used_at is not None:
        return "used"
    if link.expires_at <= utcnow():
        return "expired"
    return None


def spend_link(link: AccountLink) -> None:
    """Mark the link used in this transaction, or refuse: one UPDATE, so that of two uses at
    once only one gets through. The caller commits."""
    now = utcnow()
    spent = db.session.execute(
        update(AccountLink)
        .where(
            AccountLink.id == link.id,
            AccountLink.used_at.is_(None),
            AccountLink.revoked_at.is_(None),
            AccountLink.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if not spent:
        db.session.rollback()
        abort(410, LINK_REFUSED[link_refused(db.session.get(AccountLink, link.id)) or "used"])


def sign_in_with_intercom_offered() -> bool:
    """Shown on the sign-in page when OAuth is set up and a workspace is connected."""
    return (
        oauth_configured() and db.session.scalar(select(IntercomConnection.id).limit(1)) is not None
    )


class SignInRefused(ConnectFailed):
    """Intercom said who the teammate is, and it does not sign anyone in: the message says why."""

    status = 403
    heading = "Not signed in"

    def explanation(self) -> str:
        return f"Nobody was signed in: {self}"


def signed_in_with_intercom(details: Mapping[str, Any]) -> Response:
    """Sign in the Hedwig user /me names: a verified email, in a connected workspace. A
    teammate without an account joins as a member where an owner allowed it."""
    email = normalize_email(details.get("admin_email") or "")
    if not email or not details["email_verified"]:
        raise SignInRefused(
            f"Intercom has not verified the email address {email or '(none)'} of your Intercom "
            "account, so Hedwig cannot tell it is yours. Verify it in Intercom, or sign in with "
            "your password."
        )
    connection = db.session.scalar(
        select(IntercomConnection).where(IntercomConnection.workspace_id == details["workspace_id"])
    )
    if connection is None:
        raise SignInRefused(
            f"your Intercom workspace ({details['workspace_name']}) is not connected to this "
            "Hedwig. Sign in with your password, or ask an owner to connect it."
        )
    user = db.session.scalar(select(User).where(User.email == email))
    if user is not None and user.removed_at is not None:
        raise SignInRefused(f"{email} was removed from this team. Ask an owner to invite you.")
    if user is None:
        if not connection.teammates_may_join:
            raise SignInRefused(
                f"there is no Hedwig account for {email}. Ask an owner for an invite, or to let "
                f"teammates of {connection.workspace_name} join."
            )
        user = new_user(email, secrets.token_urlsafe(32))  # a password nobody knows
        db.session.add(user)
        try:
            db.session.flush()
        except IntegrityError:  # the same teammate, signing in twice at this moment
            db.session.rollback()
            user = db.session.scalar(select(User).where(User.email == email))
    sign_in(user)
    flash(f"Signed in with Intercom as {email}.")
    return redirect(url_for("log.index"))


# --- 8. The command line ---------------------------------------------------------------------

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
@click.option("--owner", is_flag=True, help="An owner, not a member (the first user always is).")
def create_user_command(email: str, password: str, owner: bool) -> None:
    """Create a user who can sign in to Hedwig."""
    email = normalize_email(email)
    error = validate_credentials(email, password)
    if error:
        raise click.ClickException(error)
    try:
        user = add_user(email, password, "owner" if owner else "member")
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(f"A user with the email {email} exists already.") from None
    click.echo(f"Created user {email}, {user.role}.")


@click.command("reset-password")
@with_appcontext
@click.argument("email")
@click.option("--url", "origin", help="Hedwig's origin [default: HEDWIG_BASE_URL, or :5000].")
def reset_password_command(email: str, origin: str | None) -> None:
    """Print a one-hour, single-use link that sets EMAIL's password (no mail is sent)."""
    user = active_user(normalize_email(email))
    if user is None:
        raise click.ClickException(f"There is no teammate {normalize_email(email)}.")
    origin = origin or current_app.config["BASE_URL"] or local_origin()
    with current_app.test_request_context(base_url=origin):
        url = new_link("reset", RESET_LIFETIME, user_id=user.id)
    click.echo(f"Open this link within an hour to set the password of {user.email}:\n{url}")


@click.command("backup")
@with_appcontext
@click.argument("path", type=click.Path(dir_okay=False))
def backup_command(path: str) -> None:
    """Write a consistent copy of the SQLite database to PATH, safe while Hedwig serves."""
    if db.engine.url.get_backend_name() != "sqlite":
        raise click.ClickException(
            "backup copies SQLite databases only; for another database use its own tools "
            "(e.g. pg_dump for PostgreSQL)."
        )
    target = Path(path).absolute()
    live = Path(sqlite_path(db.engine.url)).absolute()
    if not target.parent.is_dir():
        raise click.ClickException(f"The folder {target.parent} does not exist: create it first.")
    if target.resolve() in {Path(f"{live}{suffix}").resolve() for suffix in ("", "-wal", "-shm")}:
        raise click.ClickException(f"{target} is Hedwig's live database: choose another file.")
    if target.exists() and not (target.is_file() and is_sqlite_file(target)):
        raise click.ClickException(
            f"{target} exists and is not an SQLite database: choose a new file name, so that "
            "nothing of yours is overwritten."
        )
    # Written whole to a new private file beside the target, then renamed over it: a failure
    # never leaves a backup that looks valid and is not.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(fd)
    partial = Path(name)
    try:
        with (
            db.engine.connect() as connection,
            contextlib.closing(sqlite3.connect(partial)) as copy,
        ):
            connection.connection.driver_connection.backup(copy)
            if copy.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("the copy does not pass SQLite's quick_check")
        os.replace(partial, target)
    except (OSError, sqlite3.Error) as error:
        partial.unlink(missing_ok=True)
        raise click.ClickException(
            f"The backup failed and {target} was not written: {error}. Is the disk full "
            f"(df -h {target.parent})?"
        ) from None
    click.echo(f"Backed up the database to {target} (readable by its owner only).")


def is_sqlite_file(path: Path, empty_ok: bool = False) -> bool:
    """Whether the file begins as SQLite's databases do (an empty one, if ``empty_ok``)."""
    if not path.is_file():
        return False
    with open(path, "rb") as file:
        header = file.read(16)
    return header == b"SQLite format 3\x00" or (empty_ok and header == b"")


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
    tables = db.metadata.sorted_tables  # parents before children: users come first
    with target_app.app_context():
        target = db.engine
    if any(row_counts(target).values()):
        raise click.ClickException("The target database is not empty: nothing was copied.")
    problems = list(itertools.islice(uncopyable_values(source, tables), 10))
    if problems:
        raise click.ClickException(
            "Nothing was copied: the target would refuse these values, which SQLite kept. "
            "Correct or delete them (in Hedwig, or with sqlite3), then copy again.\n"
            + "\n".join(f"- {problem}" for problem in problems)
        )

    with source.connect() as reading, target.begin() as writing:
        for table in tables:
            total = reading.scalar(select(func.count()).select_from(table))
            copied = 0
            for batch in rows_in_order(reading, table).partitions():
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


def rows_in_order(connection: Connection, table: Any) -> Any:
    statement = select(table).order_by(*table.primary_key.columns)
    return connection.execution_options(yield_per=COPY_BATCH).execute(statement)


def uncopyable_values(source: Engine, tables: list[Any]) -> Iterator[str]:
    """Values SQLite keeps and PostgreSQL refuses, each named by its row: text holding a NUL
    character, or longer than its column allows."""
    with source.connect() as connection:
        for table in tables:
            key = table.primary_key.columns.keys()
            for row in rows_in_order(connection, table):
                where = ", ".join(f"{name} {row._mapping[name]}" for name in key)
                for column in table.columns:
                    value = row._mapping[column.name]
                    if not isinstance(value, str):
                        continue
                    limit = getattr(column.type, "length", None)
                    if "\x00" in value:
                        yield f"{table.name} ({where}): {column.name} holds a NUL character"
                    elif limit and len(value) > limit:
                        yield (
                            f"{table.name} ({where}): {column.name} has {len(value)} characters, "
                            f"more than its {limit}"
                        )


@click.command("canvas-request")
@click.argument("endpoint", type=click.Choice(["initialize", "submit"]))
@click.option("--workspace", required=True, help="The workspace id (app.id_code) to name.")
@click.option("--component", default="record", show_default=True, help="submit: what was clicked.")
@click.option("--url", "origin", help="Hedwig's origin [default: HEDWIG_BASE_URL, or :5000].")
@with_appcontext
def canvas_request_command(endpoint: str, workspace: str, component: str, origin: str) -> None:
    """Print a curl command that sends a canvas request signed as Intercom signs it."""
    secret = current_app.config["INTERCOM_CLIENT_SECRET"]
    if not secret:
        raise click.ClickException(
            "Set HEDWIG_INTERCOM_CLIENT_SECRET: requests are signed with it."
        )
    payload = sample_canvas_payload(SAMPLE, workspace, "alex.agent@example.com")
    if endpoint == "submit":
        payload |= {"component_id": component, "input_values": {}, "current_canvas": {}}
    body = json.dumps(payload)
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    origin = origin or current_app.config["BASE_URL"] or local_origin()
    with current_app.test_request_context(base_url=origin):
        url = url_for(f"inbox.canvas_{endpoint}", _external=True)
    click.echo(
        f"curl -sS -X POST {url} -H 'Content-Type: application/json' \\\n"
        f"  -H 'X-Body-Signature: {signature}' --data-binary {shlex.quote(body)}"
    )


@click.command("send-notes")
@click.option(
    "--wait",
    "wait_max",
    default=SENDER_WAIT_MAX,
    show_default=True,
    help="Seconds to wait for a note coming due (after a 429, or between tries).",
)
@with_appcontext
def send_notes_command(wait_max: float) -> None:
    """Send the notes status changes left to send: run it from a cron job or a timer."""
    outcomes = send_notes(wait_max)
    waiting = db.session.scalar(select(func.count(Note.id)).where(Note.state == "pending"))
    click.echo(f"{outcomes['sent']} sent, {outcomes['failed']} failed, {waiting} waiting.")


def local_origin() -> str:
    """Where `make run` serves, for links the commands print: FLASK_RUN_PORT, else 5000."""
    return f"http://127.0.0.1:{os.environ.get('FLASK_RUN_PORT') or 5000}"


def row_counts(engine: Engine) -> dict[str, int]:
    """Rows in each of Hedwig's tables that exist in the database."""
    existing = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        return {
            table.name: connection.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
            if table.name in existing
        }


# --- 9. Plumbing: settings, the database, headers, error pages -------------------------------
#
# What every section relies on and no step of the tutorial is about.

SECRET_KEY_MIN = 32
MIGRATIONS = str(Path(__file__).with_name("migrations"))
INITIAL_REVISION = "0001"
MIGRATION_LOCK_KEY = 0x4865647769670001  # PostgreSQL advisory lock: "Hedwig" 1
ID_LARGEST = 2**31 - 1  # the largest id PostgreSQL's integer columns keep
ALEMBIC_VERSION = table("alembic_version", column("version_num"))
DEFAULTS: dict[str, Any] = {
    "INTERCOM_OAUTH_URL": "https://app.intercom.com/oauth",
    "INTERCOM_API_URL": "",  # by region, unless set
    # Intercom's hosts by region. The EU and AU web hosts come from public guides, not from
    # Intercom's docs: HEDWIG_INTERCOM_REGIONS (JSON) replaces any of them.
    "INTERCOM_REGIONS": {
        "us": {"api": "https://api.intercom.io", "web": "https://app.intercom.com"},
        "eu": {"api": "https://api.eu.intercom.io", "web": "https://app.eu.intercom.com"},
        "au": {"api": "https://api.au.intercom.io", "web": "https://app.au.intercom.com"},
    },
    "INTERCOM_CLIENT_ID": "",
    "INTERCOM_CLIENT_SECRET": "",
    "BASE_URL": "",
    "TRUSTED_PROXIES": 0,
    "SESSION_COOKIE_SECURE": False,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_HTTPONLY": True,
    "PERMANENT_SESSION_LIFETIME": 7 * 24 * 3600,  # seconds a sign-in lasts
    "MAX_CONTENT_LENGTH": 256 * 1024,  # forms: the longest holds 10,000 characters of details
    "MAX_FORM_PARTS": FORM_FIELDS_MAX,  # multipart forms
    # Canvas requests carry the conversation, which may hold up to 500 parts.
    "CANVAS_MAX_CONTENT_LENGTH": 4 * 1024 * 1024,
    "INTERCOM_TIMEOUT": 10,  # seconds, for each call to Intercom's API
    "SEND_NOTES_AT_ONCE": True,  # false: only `flask send-notes` sends them
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
NUMBER_SETTINGS = (
    "TRUSTED_PROXIES",
    "PERMANENT_SESSION_LIFETIME",
    "INTERCOM_TIMEOUT",
    "MAX_CONTENT_LENGTH",
    "CANVAS_MAX_CONTENT_LENGTH",
)
BOOLEAN_SETTINGS = ("SESSION_COOKIE_SECURE", "SEND_NOTES_AT_ONCE")
BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "1": True}
BOOLEAN_WORDS |= {"false": False, "no": False, "off": False, "0": False}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
migrate = flask_migrate.Migrate()


class SetupError(RuntimeError, click.ClickException):
    """A setting or file Hedwig cannot start with. The message is one sentence saying what
    works; the flask command prints it alone, without a traceback."""

    def __init__(self, message: str) -> None:
        click.ClickException.__init__(self, message)


def load_settings(app: Flask, config: Mapping[str, Any]) -> None:
    """Defaults, then HEDWIG_* variables, then ``config``; a setting that cannot work stops
    the start with a sentence saying what would."""
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("HEDWIG")
    app.config.update(config)
    for name in TEXT_SETTINGS:
        if app.config.get(name) is not None:
            app.config[name] = str(app.config[name])
    for name in BOOLEAN_SETTINGS:
        app.config[name] = boolean_setting(name, app.config[name])
    for name in NUMBER_SETTINGS:
        value = app.config[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise SetupError(f"HEDWIG_{name} must be a number of 0 or more (it is {value!r}).")
    app.config["BASE_URL"] = base_url_setting(app.config["BASE_URL"])
    app.config["INTERCOM_REGIONS"] = regions_setting(app.config["INTERCOM_REGIONS"])
    app.config["SECRET_KEY"] = secret_key(app)


def boolean_setting(name: str, value: Any) -> bool:
    """Yes or no, as people write it: true/false, yes/no, on/off, 1/0, any case."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word not in BOOLEAN_WORDS:
        raise SetupError(
            f"HEDWIG_{name} must be true or false (or yes/no, on/off, 1/0); it is {value!r}."
        )
    return BOOLEAN_WORDS[word]


def base_url_setting(value: str) -> str:
    """The public origin: https, a host, nothing after it (http only on this machine)."""
    if not value:
        return ""
    parts = urlsplit(value)
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or (parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS)
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise SetupError(
            "HEDWIG_BASE_URL must be Hedwig's public https origin and nothing more, like "
            f"https://abc123.ngrok.app (it is {value!r})."
        )
    return value.rstrip("/")


def regions_setting(value: Any) -> dict[str, dict[str, str]]:
    """Intercom's hosts by region: the defaults, with any region HEDWIG_INTERCOM_REGIONS names
    replaced, e.g. {"eu": {"api": "https://api.eu.intercom.io", "web": "https://…"}}."""
    regions = {**DEFAULTS["INTERCOM_REGIONS"]}
    if not isinstance(value, dict):
        value = {}
    for name, hosts in value.items():
        if not (
            isinstance(hosts, dict)
            and all(
                str(hosts.get(key, "")).startswith(("https://", "http://"))
                for key in ("api", "web")
            )
        ):
            raise SetupError(
                "HEDWIG_INTERCOM_REGIONS must map each region to its api and web URLs, like "
                '{"eu": {"api": "https://api.eu.intercom.io", "web": "https://app.eu.intercom.com"}}'
                f" (it says {json.dumps(value)[:200]})."
            )
        regions[str(name).lower()] = {"api": hosts["api"], "web": str(hosts["web"]).rstrip("/")}
    return regions


def make_private_folder(folder: Path) -> None:
    """The instance folder holds the keys and the database: its owner's alone."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_uid == os.getuid():
        folder.chmod(0o700)


def secret_key(app: Flask) -> str:
    """The configured key, else one generated once and kept in the instance folder."""
    configured = app.config.get("SECRET_KEY")
    if configured:
        if len(configured) < SECRET_KEY_MIN:
            raise SetupError(
                f"HEDWIG_SECRET_KEY is too short ({len(configured)} characters): use at least "
                f"{SECRET_KEY_MIN}, e.g. the output of: python -c 'import secrets; "
                "print(secrets.token_hex(32))'"
            )
        return configured
    return instance_secret(app, "secret_key", lambda: secrets.token_hex(32))


def instance_secret(app: Flask, name: str, generate: Callable[[], str]) -> str:
    """A secret kept in a file of the instance folder (mode 0600), made the first time.

    The new key is written whole to a temporary file, then linked into place: a start that
    fails halfway (a full disk) leaves no half-written key, and two workers starting at once
    never each keep a different one (the link fails for the second; it reads the first's).
    """
    path = Path(app.instance_path, name)
    if not path.exists():
        temporary = path.with_name(f".{name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(generate())
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink(missing_ok=True)
    try:
        key = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise SetupError(f"Hedwig cannot read its key file {path}: {error}.") from None
    if not key:
        raise SetupError(
            f"Hedwig's key file {path} is empty: an earlier start failed while writing it (a "
            "full disk?). Delete the file and start Hedwig again to make a new key."
        )
    return key


def init_database(app: Flask) -> None:
    """Open the database and bring its schema up to date: no setup step on any database."""
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url_setting(app)
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        keep_private(Path(sqlite_path(url)))
    # An error's message never carries the statement's values (customers' words) into a log.
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"hide_parameters": True})
    db.init_app(app)
    migrate.init_app(
        app, db, directory=MIGRATIONS, render_as_batch=True, include_object=described_by_models
    )
    try:
        with app.app_context(), db.engine.connect():
            pass
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise SetupError(
            f"Hedwig cannot open its database ({url.render_as_string(hide_password=True)}): "
            f"{reason}. Check HEDWIG_DATABASE_URL, and that the database server is running."
        ) from None
    upgrade_database(app)


def database_url_setting(app: Flask) -> str:
    """HEDWIG_DATABASE_URL, checked, or the SQLite file in the instance folder."""
    configured = app.config.get("DATABASE_URL")
    default = Path(app.instance_path, "hedwig.db")
    if not configured:
        return f"sqlite:///{default}"
    works = f"use postgresql+psycopg://user:password@host/name, or leave it unset for {default}"
    try:
        url = make_url(configured)
    except ArgumentError:
        raise SetupError(f"HEDWIG_DATABASE_URL is not a database URL: {works}.") from None
    configured = url.render_as_string(hide_password=True)  # for the messages below
    if url.drivername in ("postgres", "postgresql"):  # as hosts print it: psycopg 3 serves it
        url = url.set(drivername="postgresql+psycopg")
    backend = url.get_backend_name()
    if backend == "sqlite" and not os.path.isabs(sqlite_path(url)):
        raise SetupError(
            f"HEDWIG_DATABASE_URL names no absolute SQLite file ({configured!r}): write "
            "sqlite:/// and then the absolute path, like sqlite:////srv/hedwig/hedwig.db, or "
            f"leave it unset for {default}."
        )
    if backend not in ("sqlite", "postgresql"):
        raise SetupError(
            f"HEDWIG_DATABASE_URL must name an SQLite or PostgreSQL database ({configured!r}): "
            f"{works}."
        )
    try:
        url.get_dialect().import_dbapi()
    except (ImportError, NoSuchModuleError):
        raise SetupError(
            f"HEDWIG_DATABASE_URL asks for the driver {url.drivername!r}, which is not "
            f"installed: {works}."
        ) from None
    return url.render_as_string(hide_password=False)


def sqlite_path(url: URL) -> str:
    """The file an SQLite URL names (a file: URI included), or "" for a database in memory."""
    path = url.database or ""
    if url.query.get("uri") == "true":
        path = urlsplit(path).path
    return "" if path == ":memory:" else path


def keep_private(database: Path) -> None:
    """The SQLite file holds password hashes and customers' words: readable by its owner only.
    SQLite gives its -wal and -shm files the database's mode. A file that is not an SQLite
    database is left alone, and Hedwig does not start."""
    if database.exists() and not is_sqlite_file(database, empty_ok=True):
        raise SetupError(f"{database} is not an SQLite database: point HEDWIG_DATABASE_URL at one.")
    fd = os.open(database, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if path.stat().st_uid == os.getuid():
                path.chmod(0o600)


def described_by_models(obj: Any, name: str | None, kind: str, *args: Any) -> bool:
    """What the models describe, for comparing them with the database: not the search index,
    which a migration makes (an FTS5 table, or a tsvector column and its index)."""
    return not (name or "").startswith(("feedback_search", "search_vector", "ix_feedback_search"))


def upgrade_database(app: Flask) -> None:
    """Apply the migrations. A database made by Hedwig before it had migrations (its tables,
    but no alembic_version) is first stamped at the initial migration, not created again."""
    with app.app_context(), start_up_lock(app):
        tables = set(inspect(db.engine).get_table_names())
        if "feedback" in tables and "alembic_version" not in tables:
            flask_migrate.stamp(revision=INITIAL_REVISION)
        flask_migrate.upgrade()
        scripts = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config())
        app.extensions["hedwig_schema_head"] = scripts.get_current_head()


@contextmanager
def start_up_lock(app: Flask) -> Iterator[None]:
    """One process at a time: gunicorn's workers start together and would migrate together.
    A file lock serves one box; on PostgreSQL an advisory lock serves app servers on several."""
    with open(
        os.open(Path(app.instance_path, "migrate.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    ) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if db.engine.dialect.name != "postgresql":
            yield
            return
        with db.engine.connect() as connection:
            connection.execute(select(func.pg_advisory_lock(MIGRATION_LOCK_KEY)))
            try:
                yield
            finally:
                connection.execute(select(func.pg_advisory_unlock(MIGRATION_LOCK_KEY)))


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
    app.url_map.converters["id"] = RecordIdConverter
    if app.config["TRUSTED_PROXIES"]:
        # Behind ngrok or a reverse proxy: the client's address is the one the proxies saw.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["TRUSTED_PROXIES"]))
    app.add_url_rule("/healthz", view_func=healthz)
    app.after_request(add_security_headers)
    app.register_error_handler(HTTPException, error_page)
    app.add_template_filter(format_datetime, "datetime")
    logging.getLogger("werkzeug").addFilter(REDACT_CREDENTIALS)
    app.logger.addFilter(REDACT_CREDENTIALS)  # "Exception on /invite/<key> [POST]"


@public
def healthz() -> tuple[dict[str, str], int]:
    """For monitors: ok only when the database answers, its schema is current and it takes
    writes (the probe's write is rolled back)."""
    try:
        with db.engine.connect() as connection:
            version = connection.scalar(select(ALEMBIC_VERSION.c.version_num))
            if version != current_app.extensions["hedwig_schema_head"]:
                return {"status": "schema behind: run flask --app hedwig db upgrade"}, 503
            try:
                connection.execute(update(ALEMBIC_VERSION).values(version_num=version))
            finally:
                connection.rollback()
    except SQLAlchemyError as error:
        if read_only(error):
            return {"status": "database is read-only"}, 503
        return {"status": "database unavailable"}, 503
    return {"status": "ok"}, 200


def read_only(error: SQLAlchemyError) -> bool:
    """Whether the database refused a write for being read-only (SQLite, or PostgreSQL)."""
    orig = getattr(error, "orig", None)
    return getattr(orig, "sqlite_errorname", "").startswith("SQLITE_READONLY") or (
        getattr(orig, "sqlstate", None) == "25006"
    )


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
    """A page a person understands. A server error may come from the database, so its page
    asks nothing of the database: no user in the nav, no Intercom state."""
    code = error.code or 500
    description = error.description or "Something went wrong on our side."
    if code >= 500:
        with contextlib.suppress(SQLAlchemyError):
            db.session.rollback()
        g.user = None
    return render_template("error.html", code=code, description=description), code


class RecordIdConverter(IntegerConverter):
    """``<id:name>`` in a route: ASCII digits a database keeps as an id, else a 404."""

    regex = r"[0-9]+"

    def __init__(self, map: Any) -> None:
        super().__init__(map, min=1, max=ID_LARGEST)


def record_id(value: str) -> int:
    """A record's id from a form: a ValueError (so: none) unless it is one a database keeps."""
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= ID_LARGEST):
        raise ValueError(f"{value[:20]!r} is no record id")
    return int(value)


def id_number(value: str) -> int | None:
    with contextlib.suppress(ValueError):
        return record_id(value)
    return None


def clean_text(value: Any, limit: int) -> str:
    """Text as a person meant it: control characters and lone surrogates dropped (newlines and
    tabs kept, other spaces made plain), trimmed. It keeps up to twice ``limit`` characters, so
    that a validator can still say "too long"."""
    if not isinstance(value, str):
        return ""
    return "".join(
        c if c.isprintable() or c in "\n\t" else " " if c.isspace() else ""
        for c in value[: limit * 2]
    ).strip()


def form_text(name: str, limit: int) -> str:
    """A web form's field, cleaned as every input is (a NUL, say, never reaches the database)."""
    return clean_text(request.form.get(name, ""), limit)


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


class RedactCredentials(logging.Filter):
    """Request lines logged by the development server must not carry the OAuth callback's
    `code` or `state`, nor an invite's or a reset's key: each is a credential until spent."""

    SECRET_PARAMETER = re.compile(r"\b(code|state)=[^&\s\"]+")
    SECRET_PATH = re.compile(r"/(invite|reset)/[^\s?\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):  # Flask's own "Exception on <path>" is formatted
            record.msg = self.redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.redact(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True

    def redact(self, line: str) -> str:
        line = self.SECRET_PARAMETER.sub(r"\1=[redacted]", line)
        return self.SECRET_PATH.sub(r"/\1/[redacted]", line)


REDACT_CREDENTIALS = RedactCredentials()
