"""A team. Owners manage the team and the Intercom connections, and may delete and merge
records (``@owners_only``); members record, edit, set statuses and export. There is always an
owner. Nobody needs a mail server: an owner hands out single-use links (an invite, a password
reset) however they like. Also each user's own password. Imports auth, database and plumbing.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any

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
    url_for,
)
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from hedwig_app.auth import (
    active_user,
    api_token_error,
    client_address,
    count_sign_in_attempt,
    key_hash,
    new_api_token,
    new_user,
    owners_only,
    password_error,
    sign_in,
    sign_in_throttled_until,
    uncount,
    validate_credentials,
)
from hedwig_app.database import begin_write
from hedwig_app.plumbing import external_url, form_text, public
from models import (
    EMAIL_MAX,
    NAME_MAX,
    ROLES,
    AccountLink,
    ApiToken,
    IntercomConnection,
    SignInSession,
    User,
    db,
    is_email,
    normalize_email,
    utcnow,
)

team = Blueprint("team", __name__)
INVITE_LIFETIME = timedelta(days=7)
RESET_LIFETIME = timedelta(hours=1)
LINK_REFUSED = {
    "tampered": "This link is not one Hedwig made: it was changed or cut short. Ask for a new one.",
    "used": "This link has been used already: each works once. Sign in, or ask for a new one.",
    "expired": "This link has expired. Ask the owner who sent it for a new one.",
    "revoked": "This link was withdrawn by an owner. Ask them for a new one.",
}
LINK_HEADINGS = {
    "tampered": "This link does not work",
    "used": "This link was used already",
    "expired": "This link has expired",
    "revoked": "This link was withdrawn",
}
LAST_OWNER = "Hedwig needs an owner: make someone else an owner first."


class LinkRefused(HTTPException):
    """An invite or reset link that opens nothing now: its page is titled for why (a link
    Hedwig did not make is a 404, one that was good once a 410)."""

    def __init__(self, reason: str) -> None:
        super().__init__(LINK_REFUSED[reason])
        self.code = 404 if reason == "tampered" else 410
        self.heading = LINK_HEADINGS[reason]


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
    db.session.commit()
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


@team.route("/team/<id:user_id>/remove", methods=["GET", "POST"])
@owners_only
def remove_teammate(user_id: int) -> Any:
    """Ask first (GET), then: they sign in no more, their sessions end at once; what they
    recorded stays theirs."""
    if request.method == "GET":
        teammate = team_member_or_404(user_id)
        return render_template(
            "remove_teammate.html",
            heading=f"Remove {teammate.email} from the team?",
            button="Remove from the team",
            action=request.path,
            cancel=url_for("team.team_page"),
            teammate=teammate,
        )
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
    db.session.commit()
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
    sign_in(user)
    db.session.commit()  # the account, the spent link and the sign-in together
    flash(f"Welcome to Hedwig, {email}.")
    return redirect(url_for("log.index"))


@team.route("/reset/<token>", methods=["GET", "POST"])
@public
def reset_password(token: str) -> Any:
    link = account_link(token, "reset")
    if link.user is None or link.user.removed_at is not None:
        raise LinkRefused("revoked")
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
    db.session.commit()
    flash("Your password is set: you are signed in.")
    return redirect(url_for("log.index"))


@team.get("/account")
def account() -> str:
    return render_account_page()


def render_account_page(errors: dict[str, str] | None = None, new_token: str = "") -> str:
    """Your account: your password, and your API tokens (a new one's secret shown once)."""
    tokens = db.session.scalars(
        select(ApiToken)
        .where(ApiToken.user_id == g.user.id, ApiToken.revoked_at.is_(None))
        .order_by(ApiToken.id.desc())
    )
    return render_template(
        "account.html", errors=errors or {}, api_tokens=list(tokens), new_token=new_token
    )


@team.post("/account/tokens")
def create_api_token() -> Any:
    """A new API token: its secret is on this page once, and never again (only its hash is
    kept), so the page is not a redirect."""
    name = form_text("name", NAME_MAX)
    error = api_token_error(name)
    if error:
        return render_account_page({"token_name": error}), 400
    _, secret = new_api_token(g.user, name)
    db.session.commit()
    return render_account_page(new_token=secret), 201


@team.post("/account/tokens/<id:token_id>/revoke")
def revoke_api_token(token_id: int) -> Response:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != g.user.id or token.revoked_at is not None:
        abort(404, "You have no such API token.")
    token.revoked_at = utcnow()
    db.session.commit()
    flash(f"The token “{token.name}” is revoked: it works no more.")
    return redirect(url_for("team.account"))


@team.post("/account/password")
def change_password() -> Any:
    """A new password ends every other sign-in of this user; this one goes on, under a new
    key. Wrong current passwords count towards the sign-in throttle, as at the sign-in page."""
    user, password = g.user, request.form.get("password", "")
    attempt = count_sign_in_attempt(user.email, client_address())
    db.session.commit()  # counted before the password is checked, which takes a while
    retry_at = sign_in_throttled_until(attempt)
    if retry_at is not None:
        uncount(attempt)
        db.session.commit()
        error = f"Too many wrong passwords. Try again after {retry_at:%H:%M} UTC."
        return render_account_page({"current_password": error}), 429
    errors = {}
    if user.check_password(request.form.get("current_password", "")):
        uncount(attempt)
        db.session.commit()
    else:
        errors["current_password"] = "That is not your current password."  # noqa: S105
    error = password_error(password, request.form.get("confirm", ""))
    if error:
        errors["password"] = error
    if errors:
        return render_account_page(errors), 400
    user.set_password(password)
    end_sessions(user)
    sign_in(user)  # a copy of the old cookie, this one's included, signs nobody in now
    db.session.commit()
    flash("Your password is changed: every other sign-in of yours has ended.")
    return redirect(url_for("team.account"))


@team.app_context_processor
def team_helpers() -> dict[str, Any]:
    return {"roles": ROLES}


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
    the key's hash alone, so a copy of the database opens nothing. The caller commits."""
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
    db.session.flush()
    token = link_serializer(kind).dumps([link.id, key])
    endpoint = "team.accept_invite" if kind == "invite" else "team.reset_password"
    return external_url(endpoint, token=token)


def account_link(token: str, kind: str) -> AccountLink:
    """The link a token names, if it may still be used; else a page that says why not."""
    try:
        link_id, key = link_serializer(kind).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise LinkRefused("tampered") from None
    link = db.session.get(AccountLink, link_id) if isinstance(link_id, int) else None
    if (
        link is None
        or link.kind != kind
        or not isinstance(key, str)
        or not hmac.compare_digest(key_hash(key), link.key_hash)
    ):
        raise LinkRefused("tampered")
    refused = link_refused(link)
    if refused:
        raise LinkRefused(refused)
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
        raise LinkRefused(link_refused(db.session.get(AccountLink, link.id)) or "used")
