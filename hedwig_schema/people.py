"""Teammates and how they get in: users and their roles, sign-in sessions, the failed
sign-ins the throttle counts, the links that invite a teammate or reset a password, and the
API's personal tokens with the Idempotency-Keys of their requests.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from hedwig_schema.base import EMAIL_MAX, ID_MAX, NAME_MAX, STATE_MAX, db, utcnow

# How passwords are hashed (werkzeug's method names): production, and every process the tests
# start, hash with scrypt. The tests' own sign-ins set a cheap User.password_method instead.
PASSWORD_METHOD = "scrypt"  # noqa: S105 (a method name, not a password)
ROLES = {"owner": "Owner", "member": "Member"}


class User(db.Model):
    """A teammate. Owners manage the team and the Intercom connections, and may delete and
    merge records; members record, edit, set statuses and export. A removed teammate keeps
    their row, so what they recorded is still theirs by name, but signs in no more."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)  # normalize_email()
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(STATE_MAX), default="member", server_default="member")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_signed_in_at: Mapped[datetime | None]
    removed_at: Mapped[datetime | None]

    # A class attribute, not a module's constant, so one assignment reaches every import of
    # User (models.py re-exports it): conftest.py sets a cheap method for the tests' users.
    password_method: ClassVar[str] = PASSWORD_METHOD

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=self.password_method)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class SignInSession(db.Model):
    """A browser signed in as a user. The cookie holds a random key; this row holds its hash,
    so signing out (or a password change) ends the session everywhere, copies of the cookie
    included."""

    __tablename__ = "sign_in_sessions"

    key_hash: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)

    user: Mapped[User] = relationship()


class FailedSignIn(db.Model):
    """One wrong password, kept for the sign-in throttle's window: by account and by client."""

    __tablename__ = "failed_sign_ins"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    client: Mapped[str] = mapped_column(String(ID_MAX))  # the client's IP address
    failed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    __table_args__ = (
        Index("ix_failed_sign_ins_email", "email", "failed_at"),
        Index("ix_failed_sign_ins_client", "client", "failed_at"),
    )


class AccountLink(db.Model):
    """A link an owner hands a teammate: an invite that makes an account, or a reset that
    sets a forgotten password. The link holds a key; the row holds its hash. Single use."""

    __tablename__ = "account_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(STATE_MAX))  # "invite" or "reset"
    key_hash: Mapped[str] = mapped_column(String(ID_MAX))
    email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))  # an invite's, if fixed
    role: Mapped[str] = mapped_column(String(STATE_MAX), default="member")  # an invite's
    # A reset's teammate; an invite's, once used.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User | None] = relationship(foreign_keys=[user_id])
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])

    __table_args__ = (Index("ix_account_links_kind", "kind", "used_at", "expires_at"),)


class ApiToken(db.Model):
    """A teammate's personal token for the JSON API (/api/v1): it acts as its user, with the
    user's role. The database keeps the token's hash alone; a revoked token, or a removed
    user's, is refused. Each token's requests are counted per minute, here, so that every
    worker process shares one limit."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    token_hash: Mapped[str] = mapped_column(String(ID_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    window_start: Mapped[datetime | None]  # the rate limit's current minute began
    window_count: Mapped[int] = mapped_column(default=0, server_default="0")

    user: Mapped[User] = relationship()


class IdempotencyKey(db.Model):
    """An API POST's Idempotency-Key, per token, for a day: the same key and body again get
    the first answer, kept here (a null status: the first is still being answered)."""

    __tablename__ = "idempotency_keys"

    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(NAME_MAX), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(ID_MAX))  # the method, path and body's
    status: Mapped[int | None]
    body: Mapped[str | None] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
