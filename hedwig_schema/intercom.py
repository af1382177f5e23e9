"""What Hedwig keeps of Intercom: each connected workspace and its encrypted token, the OAuth
states already spent, and the customers' companies as Intercom knows them, with the outbox of
reading each contact's company.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.fernet import InvalidToken
from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hedwig_schema.base import (
    EMAIL_MAX,
    ID_MAX,
    NAME_MAX,
    REGION_MAX,
    STATE_MAX,
    db,
    token_cipher,
    utcnow,
)


class IntercomConnection(db.Model):
    """One connected Intercom workspace and the token it granted, encrypted."""

    __tablename__ = "intercom_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Intercom's app.id_code: the workspace_id every canvas request carries.
    workspace_id: Mapped[str] = mapped_column(String(ID_MAX), unique=True)
    workspace_name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    # Fernet-encrypted, with a key kept outside the database: set and read it as .token.
    encrypted_token: Mapped[str] = mapped_column(Text)
    admin_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    admin_name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    admin_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    # Where Intercom hosts the workspace (us, eu, au): its API host and its Inbox links.
    region: Mapped[str] = mapped_column(String(REGION_MAX), default="us", server_default="us")
    connected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Set when Intercom refused the token (401/403) while sending notes: they wait for a
    # reconnect, which clears it.
    refused_at: Mapped[datetime | None]
    refusal: Mapped[str | None] = mapped_column(Text)
    # How it was connected: "token" (a private app's access token) or "oauth"; None for a
    # connection made before Hedwig kept it. Only an OAuth install is Hedwig's to uninstall.
    connected_with: Mapped[str | None] = mapped_column(String(16))
    # Teammates of this workspace may join as members by signing in with Intercom.
    teammates_may_join: Mapped[bool] = mapped_column(default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def token(self) -> str | None:
        """The access token, or None when it no longer decrypts (the key changed)."""
        try:
            return token_cipher().decrypt(self.encrypted_token.encode()).decode()
        except InvalidToken:
            return None

    @token.setter
    def token(self, token: str) -> None:
        self.encrypted_token = token_cipher().encrypt(token.encode()).decode()

    @property
    def token_readable(self) -> bool:
        return self.token is not None

    @property
    def needs_reconnecting(self) -> str | None:
        """Why Hedwig cannot use this connection until someone connects again, or None."""
        if self.refused_at is not None:
            return self.refusal or "Intercom refused its token"
        if not self.token_readable:
            return "its token no longer decrypts here (the token key changed)"
        return None


class UsedOAuthState(db.Model):
    """Nonces of OAuth states already spent: the unique key makes each state single use."""

    __tablename__ = "used_oauth_states"

    nonce: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(default=utcnow)


class Company(db.Model):
    """A company as Intercom knows it, stored once per workspace and updated with each read:
    what it pays a month, its plan and size."""

    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(ID_MAX))
    intercom_id: Mapped[str] = mapped_column(String(ID_MAX))
    name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    monthly_spend: Mapped[int] = mapped_column(BigInteger, default=0)  # whole units, as Intercom
    plan: Mapped[str | None] = mapped_column(String(NAME_MAX))
    size: Mapped[int | None]  # people, as the workspace recorded it
    read_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("workspace_id", "intercom_id", name="uq_companies_intercom"),
        Index("ix_companies_plan", "plan"),
    )


# A contact's companies are read again when new evidence comes from them after this long.
COMPANY_FRESH_SECONDS = 3600


class ContactCompany(db.Model):
    """One Intercom contact's company, and the outbox of reading it: a row is asked for (pending)
    in the transaction that saves the contact's evidence, and a reader claims it (reading) and
    asks Intercom after the commit, so the agent's click never waits for, or fails on, the read.
    A contact in several companies counts for the one that pays most."""

    __tablename__ = "contact_companies"

    id: Mapped[int] = mapped_column(primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(ID_MAX))
    contact_id: Mapped[str] = mapped_column(String(ID_MAX))
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"))
    # pending → reading → read or failed; pending again after a 429, a 5xx or a refused token.
    state: Mapped[str] = mapped_column(String(STATE_MAX), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]  # when the last read ended, read or failed
    reason: Mapped[str] = mapped_column(Text, default="")  # why the company is unknown

    company: Mapped[Company | None] = relationship(lazy="joined")

    @property
    def why_no_company(self) -> str:
        if self.state in ("pending", "reading") and not self.reason:
            return "being read from Intercom"
        return self.reason or "Intercom names no company for this customer"

    __table_args__ = (
        UniqueConstraint("workspace_id", "contact_id", name="uq_contact_companies_contact"),
        Index("ix_contact_companies_due", "state", "next_attempt_at"),
        Index("ix_contact_companies_company", "company_id"),
    )
