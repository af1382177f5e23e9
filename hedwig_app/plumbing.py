"""Plumbing every step relies on and no step is about: the marks on views that answer
without sign-in (``@public``, ``@signed_by_intercom``, ``@signed_webhook``) and reading the
bounded body of a signed request, security headers, error pages and
``Refused`` (a request turned down with a page that says why), /healthz, the ``<id:…>``
converter, cleaning what people and Intercom send, absolute URLs and redacted request logs.
Imports settings and database.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import (
    Flask,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from hedwig_app.database import ALEMBIC_VERSION
from models import ID_MAX, NAME_MAX, db
from models import plural as plural  # the one plural helper, for every module and template

ID_LARGEST = 2**31 - 1  # the largest id PostgreSQL's integer columns keep


# The marks. Every view needs a signed-in user and every POST a CSRF token, unless its view
# carries one of these: the sign-in step (auth.py) reads the mark, never the URL or blueprint.


def public(view: Callable) -> Callable:
    """Mark a view that answers without sign-in (its forms still carry a CSRF token)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def signed_by_intercom(view: Callable) -> Callable:
    """Mark a view that Intercom's servers call, whose authority is the body's signature: no
    sign-in, no cookie read, no CSRF token. The view must verify the signature itself."""
    view.public = True  # type: ignore[attr-defined]
    view.signed_by_intercom = True  # type: ignore[attr-defined]
    return view


def signed_webhook(view: Callable) -> Callable:
    """Mark a view that a tracker's servers call (GitHub's, Linear's webhooks), whose
    authority is the body's signature: no sign-in, no cookie read, no CSRF token. The view
    must verify the signature itself."""
    view.public = True  # type: ignore[attr-defined]
    view.signed_webhook = True  # type: ignore[attr-defined]
    return view


def bearer_token(view: Callable) -> Callable:
    """Mark a view of the JSON API (api.py), whose authority is the request's
    ``Authorization: Bearer`` token, checked by the API itself: no cookie read, no CSRF token
    (a browser never sends the header by itself, so no other site can forge the request)."""
    view.public = True  # type: ignore[attr-defined]
    view.bearer_token = True  # type: ignore[attr-defined]
    return view


def view_marked(mark: str) -> bool:
    """Whether this request's view carries ``mark`` ("public", "signed_by_intercom",
    "signed_webhook")."""
    view = current_app.view_functions.get(request.endpoint or "")
    return view is not None and getattr(view, mark, False)


def signed_by_its_sender() -> bool:
    """Whether this request's view is called by another service's servers or a script, which
    sign its body or carry a token instead of signing in (``@signed_by_intercom``,
    ``@signed_webhook``, ``@bearer_token``)."""
    return (
        view_marked("signed_by_intercom")
        or view_marked("signed_webhook")
        or view_marked("bearer_token")
    )


def read_body(limit: int) -> bytes:
    """The raw body of a signed request, or 413 past ``limit`` bytes, with or without a
    Content-Length (a chunked body is otherwise cut at the limit without a word, and would
    fail its signature)."""
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


def json_object(body: bytes) -> dict[str, Any] | None:
    """A request's body as the JSON object it must be, or None: not UTF-8, not JSON, nested
    deeper than the parser goes (RecursionError: "[[[[…" is a few bytes a level), or JSON but
    not an object."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return payload if isinstance(payload, dict) else None


class Refused(Exception):
    """A request turned down with a page that says why and what to do next. The message is
    safe to log and to show: it never holds a secret, a code or a token."""

    status = 400
    heading = "Something went wrong"

    def explanation(self) -> str:
        return str(self)


def refused_page(error: Refused) -> tuple[str, int]:
    db.session.rollback()
    current_app.logger.warning("%s: %s", error.heading, error)
    page = render_template(
        "intercom_failed.html", heading=error.heading, message=error.explanation()
    )
    return page, error.status


def install_plumbing(app: Flask) -> None:
    app.url_map.converters["id"] = RecordIdConverter
    if app.config["TRUSTED_PROXIES"]:
        # Behind ngrok or a reverse proxy: the client's address is the one the proxies saw.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=int(app.config["TRUSTED_PROXIES"]))
    app.add_url_rule("/healthz", view_func=healthz)
    app.add_url_rule("/favicon.ico", view_func=favicon)
    app.after_request(add_security_headers)
    app.register_error_handler(HTTPException, error_page)
    app.register_error_handler(Refused, refused_page)
    app.add_template_filter(format_datetime, "datetime")
    app.add_template_global(plural)
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


@public
def favicon() -> Response:
    """Browsers and feed readers ask for /favicon.ico whatever a page links: the SVG's there."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


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


API_PREFIX = "/api/"


def error_page(error: HTTPException) -> Any:
    """A page a person understands, or under /api/ the API's JSON error (a script reads no
    HTML, even for a URL no route matches). A server error may come from the database, so its
    page asks nothing of the database: no user in the nav, no Intercom state."""
    code = error.code or 500
    description = error.description or "Something went wrong on our side."
    if code >= 500:
        with contextlib.suppress(SQLAlchemyError):
            db.session.rollback()
        g.user = None
    heading = getattr(error, "heading", None)  # a page titled for what happened (LinkRefused)
    if request.path.startswith(API_PREFIX):
        return json_error(code, error.name.lower().replace(" ", "_"), description)
    page = render_template("error.html", code=code, description=description, heading=heading)
    return page, code


def json_error(status: int, code: str, message: str, **more: Any) -> Response:
    """The API's error: ``{"error": {"code", "message", …}}`` with its HTTP status."""
    response = current_app.json.response({"error": {"code": code, "message": message, **more}})
    response.status_code = status
    return response


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


@functools.cache
def warn_once(message: str) -> None:
    current_app.logger.warning(message)


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
