"""Connect with Intercom, and sign in with it. Two ways to the same connection, a workspace's
token kept encrypted: a private app's access token pasted from Intercom's Developer Hub (the
path for a team's own workspace), or OAuth for published apps (the browser goes to Intercom
with a signed, session-bound, single-use state and comes back to /intercom/callback with a
code, which Hedwig trades for a token). Either way /me says which workspace the token belongs
to. The same OAuth dance signs a teammate in: /me names them, and the token is not kept. The
callback is shared; each path reads straight down from it and raises its own errors.
Imports auth, database, intercom and outbox.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

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
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from hedwig_app.auth import new_user, owners_only, sign_in
from hedwig_app.companies import ask_again
from hedwig_app.database import begin_write
from hedwig_app.intercom import IntercomError, call_intercom, fetch_me, revoke_token
from hedwig_app.outbox import wake_sender
from hedwig_app.plumbing import Refused, external_url, public, record_id
from hedwig_app.settings import BOOLEAN_WORDS
from models import IntercomConnection, UsedOAuthState, User, db, normalize_email, utcnow

connect = Blueprint("connect", __name__)
STATE_MAX_AGE = 10 * 60  # seconds
STATE_SALT = "hedwig.intercom-oauth-state"
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


@connect.get("/login/intercom")
@public
def sign_in_with_intercom() -> Response:
    """The same OAuth dance, to ask Intercom's /me who this teammate is."""
    if not sign_in_with_intercom_offered():
        abort(404, "Signing in with Intercom needs a workspace connected with OAuth.")
    return to_intercom_oauth(None)


@connect.get("/intercom/callback")
@public  # a signed-out browser gets the refusal page, not the sign-in form
def intercom_callback() -> Response:
    # This browser asked, just now, and this is the first answer: to connect (an owner), or
    # to sign in with Intercom.
    purpose = spend_oauth_state(request.args.get("state", ""))
    db.session.commit()  # spent for good before the code goes to Intercom
    # Intercom's answer: a code, unless the user denied access.
    code = request.args.get("code")
    if not code:
        raise AccessDenied(request.args.get("error", ""))
    if purpose == "sign-in":
        return sign_in_with_code(code)
    return connect_with_code(code)


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
    if not looks_like_a_token(token):
        error = "Paste the access token Intercom shows for your app: one line, no spaces."
        return render_template("connect_token.html", error=error), 400
    return connected(token, workspace_of(token), "token")


@connect.route("/intercom/disconnect", methods=["GET", "POST"])
@owners_only
def intercom_disconnect() -> Any:
    """Forget a workspace's token. Uninstalling the app from the whole workspace is a second,
    explicit choice, offered for an OAuth install only: it takes the Inbox app from every
    teammate there, and a private app's token would die with it."""
    connection_id = request.values.get("connection_id", type=record_id)
    connection = db.get_or_404(IntercomConnection, connection_id or 0)
    if request.method == "GET":
        return render_template("disconnect.html", connection=connection)
    uninstall = BOOLEAN_WORDS.get(request.form.get("uninstall", "no").lower())
    if uninstall is None or (uninstall and connection.connected_with != "oauth"):
        abort(400, "Only a workspace connected with OAuth can be uninstalled from Hedwig.")
    name = connection.workspace_name
    not_uninstalled = revoke_token(connection) if uninstall else None
    db.session.delete(connection)
    db.session.commit()
    if not uninstall:
        flash(
            f"Disconnected from {name}: Hedwig forgot its token. The app stays installed in "
            "Intercom; connect again to use it here."
        )
    elif not_uninstalled:
        flash(
            f"Disconnected from {name}: Hedwig forgot its token, but Intercom did not "
            f"uninstall the app ({not_uninstalled}). To uninstall it, use Intercom's settings "
            "(Apps → Hedwig → Uninstall)."
        )
    else:
        flash(f"Disconnected from {name}, and Hedwig was uninstalled from it in Intercom.")
    return redirect(url_for("log.index"))


@connect.route("/intercom", methods=["GET"])
@owners_only
def intercom_settings() -> str:
    """The owners' Intercom page: each connection and its region, the settings it needs and
    how to connect; a permissions check on demand (check_permissions)."""
    return render_template("intercom.html", checks={})


@connect.post("/intercom/<id:connection_id>/check")
@owners_only
def check_permissions(connection_id: int) -> str:
    """Ask Intercom, with the connection's token, for what each permission Hedwig reads with
    allows: read calls only, one item each. Writing (the notes) is not tried: it would write."""
    connection = db.get_or_404(IntercomConnection, connection_id)
    token, results = connection.token, []
    for permission, path, params in PERMISSION_PROBES:
        if token is None:
            results.append((permission, "its token no longer decrypts here: connect again"))
            continue
        try:
            call_intercom("GET", path, token=token, region=connection.region, params=params)
        except IntercomError as error:
            results.append((permission, str(error)))
        else:
            results.append((permission, ""))
    return render_template("intercom.html", checks={connection.id: results})


# What the permissions check asks: a read each permission allows, the smallest there is.
PERMISSION_PROBES = (
    ("Read admins", "/me", {}),
    ("Read conversations", "/conversations", {"per_page": 1}),
    ("Read and list users and companies", "/contacts", {"per_page": 1}),
)


@connect.post("/intercom/setup-line/dismiss")
def dismiss_setup_line() -> Response:
    """Hide the log's "Intercom not connected" line in this browser, for a year."""
    response = redirect(url_for("log.index"))
    response.set_cookie(
        SETUP_LINE_COOKIE,
        "dismissed",
        max_age=365 * 24 * 3600,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
    )
    return response


SETUP_LINE_COOKIE = "hedwig_setup_line"


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
        "setup_line_dismissed": request.cookies.get(SETUP_LINE_COOKIE) == "dismissed",
        "sign_in_with_intercom_offered": sign_in_with_intercom_offered,
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
    owner), or with no user to sign in. Both come back to the one callback URL,
    since Intercom uses the first redirect URL an app lists."""
    query = urlencode(
        {
            "client_id": current_app.config["INTERCOM_CLIENT_ID"],
            "state": new_oauth_state(user),
            "redirect_uri": external_url("connect.intercom_callback"),
        }
    )
    return redirect(f"{current_app.config['INTERCOM_OAUTH_URL']}?{query}")


# The OAuth dance's state, and its errors, which both purposes share.


class ConnectFailed(Refused):
    """Connecting did not happen; the message says why."""

    heading = "Not connected to Intercom"


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
    "sign-in". Raise OAuthStateError otherwise. The caller commits, before the code is
    traded: a state is spent whatever Intercom answers."""
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
        db.session.flush()
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


# Connecting: a token (from the dance, or pasted) and /me's word on whose it is, kept.


class IntercomFailed(ConnectFailed):
    """Intercom did not give a token, or did not say whose it is."""

    status = 502

    def explanation(self) -> str:
        return f"Connecting failed: {self}. Nothing was stored; please try again."


def connect_with_code(code: str) -> Response:
    try:
        token = exchange_code_for_token(code)
    except IntercomError as error:
        raise IntercomFailed(str(error)) from None
    return connected(token, workspace_of(token), "oauth")


def workspace_of(token: str) -> dict[str, Any]:
    """What /me says of the token: its workspace, region and admin."""
    try:
        return fetch_me(token)
    except IntercomError as error:
        raise IntercomFailed(str(error)) from None


def looks_like_a_token(token: str) -> bool:
    """One line of printable ASCII, as an HTTP header carries it: no spaces, no more than
    ACCESS_TOKEN_MAX characters."""
    return (
        0 < len(token) <= ACCESS_TOKEN_MAX
        and token.isascii()
        and token.isprintable()
        and " " not in token
    )


def connected(token: str, details: Mapping[str, Any], connected_with: str) -> Response:
    """Keep the token, encrypted, for its workspace; the notes that waited for it go out."""
    connection = save_connection(details, token, g.user, connected_with)
    db.session.commit()
    wake_sender()
    current_app.logger.info(
        "Connected Intercom workspace %s (%s)", connection.workspace_id, connection.region
    )
    flash(f"Connected to {connection.workspace_name}.")
    return redirect(url_for("log.index"))


CONNECTION_DETAILS = (
    "workspace_id",
    "workspace_name",
    "region",
    "admin_id",
    "admin_name",
    "admin_email",
)


def save_connection(
    details: Mapping[str, str | None], token: str, user: User, connected_with: str
) -> IntercomConnection:
    """Store the token for its workspace: connecting again updates the row in place. The
    caller commits."""
    begin_write(IntercomConnection)
    connection = db.session.scalar(
        select(IntercomConnection).where(IntercomConnection.workspace_id == details["workspace_id"])
    ) or IntercomConnection(workspace_id=details["workspace_id"])
    for name in CONNECTION_DETAILS:
        setattr(connection, name, details[name])
    connection.token = token
    connection.connected_with = connected_with
    connection.connected_by_id = user.id
    connection.refused_at = connection.refusal = None
    db.session.add(connection)
    # Company reads that failed (a permission missing, say) are tried again with the new token.
    ask_again(details["workspace_id"], failed_only=True)
    return connection


# Signing in with Intercom: /me names a teammate, and Hedwig signs in the account with that
# verified email. The token is not kept.


class SignInRefused(Refused):
    """Intercom said who the teammate is, and it does not sign anyone in: the message says why."""

    status = 403
    heading = "Not signed in"

    def explanation(self) -> str:
        return f"Nobody was signed in: {self}"


def sign_in_with_code(code: str) -> Response:
    try:
        details = fetch_me(exchange_code_for_token(code))
    except IntercomError as error:
        raise SignInRefused(f"Intercom could not say who you are ({error}).") from None
    return signed_in_with_intercom(details)


def sign_in_with_intercom_offered() -> bool:
    """Shown on the sign-in page when OAuth is set up and a workspace is connected."""
    return (
        oauth_configured() and db.session.scalar(select(IntercomConnection.id).limit(1)) is not None
    )


def signed_in_with_intercom(details: Mapping[str, Any]) -> Response:
    """Sign in the Hedwig user /me names: a verified email, in a connected workspace. A
    teammate without an account joins as a member where an owner allowed it."""
    email = normalize_email(details.get("admin_email") or "")
    if email and not details.get("email_exact"):
        # An invisible or look-alike character would make it someone else's address.
        raise SignInRefused(
            "the email address of your Intercom account holds characters that stand for "
            f"others ({ascii(email)[:80]}), so Hedwig cannot tell whose it is. Sign in with "
            "your password."
        )
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
    db.session.commit()
    flash(f"Signed in with Intercom as {email}.")
    return redirect(url_for("log.index"))
