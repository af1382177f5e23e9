"""Sign-in: every page needs a signed-in user, except views marked ``@public``; every POST
form carries a CSRF token, except views marked ``@signed_by_intercom`` or ``@signed_webhook``,
whose body signature is their authority. Owns accounts and passwords, the sign-in session (a
key whose hash the database keeps), the first account of a fresh install, ``@owners_only``,
and the throttle on failed sign-ins. Imports settings, database and plumbing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import ipaddress
import math
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import delete, select
from werkzeug.security import check_password_hash, generate_password_hash

from hedwig_app.database import begin_write
from hedwig_app.plumbing import form_text, public, signed_by_its_sender, warn_once
from hedwig_app.settings import FORM_FIELDS_MAX
from models import (
    EMAIL_MAX,
    ID_MAX,
    NAME_MAX,
    ApiToken,
    FailedSignIn,
    SignInSession,
    User,
    db,
    is_email,
    normalize_email,
    utcnow,
)

auth = Blueprint("auth", __name__)
PASSWORD_MIN = 8


# Failed sign-ins allowed per account, and per client, within the window; then 429 until the
# oldest of them leaves it. Refused attempts compute no password hash.
THROTTLE_LIMIT = 10


THROTTLE_WINDOW = timedelta(minutes=15)


def owners_only(view: Callable) -> Callable:
    """A view only the team's owners may use: anyone else gets 403, and a
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
    db.session.commit()  # counted before the password is checked, which takes a while
    retry_at = sign_in_throttled_until(attempt)
    if retry_at is not None:
        uncount(attempt)
        db.session.commit()
        return sign_in_throttled(retry_at, next_url, email)
    user = active_user(email)  # a removed teammate signs in no more
    if not password_matches(user, request.form.get("password", "")):
        error = "Wrong email or password."
        return render_template("login.html", next_url=next_url, error=error, email=email), 401
    db.session.execute(delete(FailedSignIn).where(FailedSignIn.email == attempt.email))
    sign_in(user)
    db.session.commit()
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
    db.session.flush()
    sign_in(user)
    db.session.commit()
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
    if signed_by_its_sender():  # Intercom's, GitHub's or Linear's servers: no cookie to read
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
    ):
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    return None


@auth.before_app_request
def check_csrf_token() -> None:
    if request.method != "POST" or request.routing_exception is not None or signed_by_its_sender():
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
    """A new account; the first one is an owner, whatever was asked, so that there is one.
    The caller commits."""
    user = new_user(email, password, "owner" if no_user_yet() else role)
    db.session.add(user)
    db.session.flush()
    return user


def active_user(email: str) -> User | None:
    return db.session.scalar(select(User).where(User.email == email, User.removed_at.is_(None)))


def sign_in(user: User) -> None:
    """Start a sign-in that lasts PERMANENT_SESSION_LIFETIME, or until signing out. The caller
    commits (the cookie names a key that the commit keeps)."""
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
    session.permanent = True
    session["session_key"] = key


def key_hash(key: str) -> str:
    """What the database keeps of a secret key: its hash, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()


# So that a leaked token is recognised (by secret scanners) and told from a password.
API_TOKEN_PREFIX = "hedwig_"  # noqa: S105 (a prefix, not a secret)


def new_api_token(user: User, name: str) -> tuple[ApiToken, str]:
    """A personal API token for ``user``, and its secret, shown this once. The caller commits.

    The database keeps a SHA-256 of the secret, not a slow password hash: the secret is 256
    random bits, so no dictionary or brute force reaches it from its hash, and every API
    request checks it, where scrypt would cost 0.1 s each."""
    secret = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name[:NAME_MAX], token_hash=key_hash(secret))
    db.session.add(token)
    db.session.flush()
    return token, secret


def api_token_error(name: str) -> str | None:
    if not name:
        return "Name the token: what will use it?"
    if len(name) > NAME_MAX:
        return f"Keep the name to {NAME_MAX} characters."
    return None


def api_token(secret: str) -> ApiToken | None:
    """The live token this secret is: not revoked, its user not removed."""
    return db.session.scalar(
        select(ApiToken)
        .join(User, User.id == ApiToken.user_id)
        .where(
            ApiToken.token_hash == key_hash(secret),
            ApiToken.revoked_at.is_(None),
            User.removed_at.is_(None),
        )
    )


def password_matches(user: User | None, password: str) -> bool:
    """The password check, with the same work for an unknown email as for a known one, so
    that timing does not tell which addresses have accounts."""
    if user is None:
        check_password_hash(decoy_password_hash(User.password_method), password)
        return False
    return user.check_password(password)


@functools.cache
def decoy_password_hash(method: str) -> str:
    """A hash made as users' are (User.password_method), once, for unknown emails."""
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


def count_sign_in_attempt(email: str, client: str) -> FailedSignIn:
    now = utcnow()
    db.session.execute(delete(FailedSignIn).where(FailedSignIn.failed_at <= now - THROTTLE_WINDOW))
    attempt = FailedSignIn(email=email, client=client, failed_at=now)
    db.session.add(attempt)
    db.session.flush()
    return attempt


def uncount(attempt: FailedSignIn) -> None:
    db.session.delete(attempt)


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
