"""Hedwig's tables: users, their sign-ins and the links that invite them or reset their
passwords, Intercom connections, used OAuth states, the feedback records with the evidence
that backs them, the customers' companies as Intercom knows them, the records' status changes,
the notes and replies those changes send to Intercom conversations, and the replies' texts.

Each length a column allows is named here once, and every validator in hedwig_app uses the name.
Times are stored as naive UTC datetimes, the one form every database keeps the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, foreign, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

EMAIL_MAX = 254  # the longest address SMTP allows
NAME_MAX = 255
ID_MAX = 64  # Intercom's ids (workspace, conversation, contact, admin) and form nonces
TITLE_MAX = 200
DESCRIPTION_MAX = 10_000
QUOTE_MAX = DESCRIPTION_MAX  # a customer's words
CUSTOMERS_TEXT_MAX = 200_000  # the names, emails and words a record's search reads
REGION_MAX = 16
STATE_MAX = 16  # a record's status, a note's state
MESSAGE_MAX = 2_000  # what a status change tells the team
REPLY_MAX = 2_000  # what a reply tells the customers
ISSUE_URL_MAX = 500  # a linked issue's address
ISSUE_KEY_MAX = 320  # which issue it is: its tracker, its host or repository, its number
CUSTOMER_KEY_MAX = EMAIL_MAX + 16  # "email:" and an address, or a contact in its workspace
# How passwords are hashed (werkzeug's method names). The tests set a cheap one for their own
# sign-ins; production, and every process the tests start, hash with scrypt.
PASSWORD_METHOD = "scrypt"  # noqa: S105 (a method name, not a password)
# The canvas preview's own workspace: "connected" for the preview alone, never for Intercom.
PREVIEW_WORKSPACE_ID = "hedwig-preview"
# A record's statuses, as stored and as shown; every record starts open.
STATUSES = {
    "open": "Open",
    "planned": "Planned",
    "in_progress": "In progress",
    "done": "Done",
    "declined": "Declined",
}
# How much a piece of evidence matters to its customer, as stored and as shown (least first,
# as the canvas offers them); evidence heard before this was asked is "important".
IMPORTANCES = {"nice_to_have": "Nice to have", "important": "Important", "blocker": "Blocker"}
DEFAULT_IMPORTANCE = "important"
IMPORTANCE_MAX = 16


def plural(count: int, one: str, many: str | None = None) -> str:
    """ "1 customer", "1,290 customers", "1 piece of evidence", "2 pieces of evidence": a count
    and its noun, agreeing. The one helper for counted words, in code and templates alike."""
    return f"{count:,} {one if count == 1 else many or one + 's'}"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def normalize_email(email: str) -> str:
    """The one form an address is stored and compared in."""
    return email.strip().lower()


def is_email(email: str) -> bool:
    """Something, an @, something: the one check an address needs here (no mail is sent)."""
    local, at, domain = email.rpartition("@")
    return bool(local and at and domain) and len(email) <= EMAIL_MAX


class Base(DeclarativeBase):
    # Named constraints, so that migrations can alter them on SQLite too (batch mode).
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


db = SQLAlchemy(model_class=Base)


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

    @property
    def is_owner(self) -> bool:
        return self.role == "owner"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method=PASSWORD_METHOD)

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


def intercom_web_url(region: str | None) -> str:
    """The Inbox's web origin for a region (HEDWIG_INTERCOM_REGIONS), US when unknown."""
    regions = current_app.config["INTERCOM_REGIONS"]
    return regions.get(region or "us", regions["us"])["web"]


def token_cipher() -> Fernet:
    """The key that encrypts Intercom tokens, loaded at start (hedwig.load_token_cipher)."""
    return current_app.extensions["hedwig_token_cipher"]


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


class UsedOAuthState(db.Model):
    """Nonces of OAuth states already spent: the unique key makes each state single use."""

    __tablename__ = "used_oauth_states"

    nonce: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(db.Model):
    """A feedback record: what customers ask for, backed by evidence of who asked."""

    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    description: Mapped[str] = mapped_column(Text, default="")  # up to DESCRIPTION_MAX
    # Where it was recorded: "web" or "intercom"; both, "intercom+web", once merged.
    source: Mapped[str] = mapped_column(String(16), default="web")
    # The workspace whose Inbox shows it: where it was recorded, or the one chosen on the web.
    workspace_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    # Kept with each change of its evidence: how many distinct customers back it, and their
    # names, emails and words, which the search reads beside the title and description.
    customer_count: Mapped[int] = mapped_column(default=0, server_default="0")
    # Kept beside it: how many distinct companies those customers belong to, and their
    # monthly spend summed once per company (Intercom's companies; see ContactCompany).
    company_count: Mapped[int] = mapped_column(default=0, server_default="0")
    monthly_spend: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    customers_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    status: Mapped[str] = mapped_column(String(STATE_MAX), default="open", server_default="open")

    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    created_by: Mapped[User | None] = relationship()
    evidence: Mapped[list[Evidence]] = relationship(
        back_populates="feedback",
        order_by="Evidence.id.desc()",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )
    issue_links: Mapped[list[IssueLink]] = relationship(
        order_by="IssueLink.id", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def sources(self) -> list[str]:
        return self.source.split("+")

    @property
    def origins(self) -> list[str]:
        """Where it was recorded, as its badges say: web, intercom (both, merged), or preview
        (the canvas preview)."""
        return ["preview"] if self.workspace_id == PREVIEW_WORKSPACE_ID else self.sources

    @property
    def origin(self) -> str:
        return "+".join(self.origins)

    @property
    def status_label(self) -> str:
        return STATUSES.get(self.status, self.status)

    @property
    def weight(self) -> str:
        """Who backs it and what they pay: "3 customers · 2 companies · $1,290 a month" (the
        companies' part once any of their companies is known)."""
        parts = [plural(self.customer_count, "customer")]
        if self.company_count:
            parts += [plural(self.company_count, "company", "companies")]
            parts += [f"${self.monthly_spend:,} a month"]
        return " · ".join(parts)

    @property
    def importance_counts(self) -> str:
        """How much it matters to those who asked, most first: "1 blocker · 2 important"."""
        levels = [piece.importance for piece in self.evidence]
        return " · ".join(
            f"{levels.count(level)} {label.lower()}"
            for level, label in reversed(IMPORTANCES.items())
            if level in levels
        )

    __table_args__ = (
        # The list: newest first, or most customers first, or by status, newest first.
        Index("ix_feedback_created", "created_at", "id"),
        Index("ix_feedback_customers", "customer_count", "id"),
        Index("ix_feedback_companies", "company_count", "id"),
        Index("ix_feedback_revenue", "monthly_spend", "id"),
        Index("ix_feedback_status", "status", "created_at", "id"),
        # The demand page's cache: has any record changed since it counted? (demand.py)
        Index("ix_feedback_updated", "updated_at"),
        # SQLite: an id is never given out again, so a deleted or merged record's links
        # never lead to another one.
        {"sqlite_autoincrement": True},
    )


class Evidence(db.Model):
    """One customer backing a record: who said it, where it was heard, who heard it, and
    their words. A conversation backs a record once."""

    __tablename__ = "evidence"

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"))
    customer_name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    customer_email: Mapped[str] = mapped_column(String(EMAIL_MAX), default="")
    contact_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    # Who the customer is, across their evidence: customer_key(); None when unknown.
    customer_key: Mapped[str | None] = mapped_column(String(CUSTOMER_KEY_MAX))
    quote: Mapped[str] = mapped_column(Text, default="")  # the customer's words
    source: Mapped[str] = mapped_column(String(16), default="web")  # "web" or "intercom"
    importance: Mapped[str] = mapped_column(  # one of IMPORTANCES
        String(IMPORTANCE_MAX), default=DEFAULT_IMPORTANCE, server_default=DEFAULT_IMPORTANCE
    )

    # Where it was heard and who heard it, when it came from the Intercom Inbox.
    workspace_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    region: Mapped[str | None] = mapped_column(String(REGION_MAX))
    conversation_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    admin_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    admin_name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    admin_email: Mapped[str | None] = mapped_column(String(EMAIL_MAX))
    # The one-time nonce of the canvas form that added it: a double submit hits this key.
    submit_nonce: Mapped[str | None] = mapped_column(String(ID_MAX), unique=True)

    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    feedback: Mapped[Feedback] = relationship(back_populates="evidence")
    created_by: Mapped[User | None] = relationship()
    # The customer's company comes through their contact: read once per contact, not per
    # piece of evidence (None for evidence with no Intercom contact: added by hand).
    contact_company: Mapped[ContactCompany | None] = relationship(
        primaryjoin=lambda: and_(
            Evidence.workspace_id == foreign(ContactCompany.workspace_id),
            Evidence.contact_id == foreign(ContactCompany.contact_id),
        ),
        viewonly=True,
        uselist=False,
        lazy="selectin",
    )

    @property
    def company(self) -> Company | None:
        return self.contact_company.company if self.contact_company else None

    @property
    def company_unknown(self) -> str:
        """Why the record names no company for this customer ("" when it names one)."""
        if self.company is not None:
            return ""
        if self.contact_company is not None:
            return self.contact_company.why_no_company
        if self.contact_id and self.workspace_id:
            return "not read from Intercom yet (flask refresh-companies reads it)"
        return "added by hand, with no Intercom contact to read it from"

    @property
    def origin(self) -> str:
        """Where it was heard: web, intercom, or preview (the canvas preview)."""
        return "preview" if self.workspace_id == PREVIEW_WORKSPACE_ID else self.source

    @property
    def importance_label(self) -> str:
        return IMPORTANCES.get(self.importance, self.importance)

    @property
    def conversation_url(self) -> str | None:
        """The conversation in Intercom's Inbox. Intercom documents no permalink: this is the
        form public code uses, kept in this one place."""
        if not self.workspace_id or not self.conversation_id or self.origin == "preview":
            return None
        return (
            f"{intercom_web_url(self.region)}/a/inbox/{self.workspace_id}"
            f"/inbox/conversation/{self.conversation_id}"
        )

    __table_args__ = (
        UniqueConstraint(
            "feedback_id", "workspace_id", "conversation_id", name="uq_evidence_conversation"
        ),
        # A record's evidence, newest first.
        Index("ix_evidence_feedback", "feedback_id", "id"),
        # The demand page: a window's evidence, read from the index alone (demand.py).
        Index("ix_evidence_window", "created_at", "feedback_id", "customer_key"),
        # The first canvas: what this conversation backs, and this customer's other records.
        # Each index carries what the lookup needs, so it never reads the table.
        Index("ix_evidence_conversation", "workspace_id", "conversation_id", "id", "feedback_id"),
        Index(
            "ix_evidence_contact",
            "workspace_id",
            "contact_id",
            "id",
            "conversation_id",
            "feedback_id",
        ),
        Index(
            "ix_evidence_customer_email",
            "workspace_id",
            "customer_email",
            "id",
            "conversation_id",
            "feedback_id",
        ),
    )


def customer_key(
    email: str, workspace_id: str | None, contact_id: str | None, name: str
) -> str | None:
    """Who a customer is, to count them once however many conversations they backed a record
    in: their email, else their Intercom contact in its workspace, else their name."""
    if email:
        return f"email:{normalize_email(email)}"
    if contact_id:
        return f"contact:{workspace_id or ''}:{contact_id}"
    if name.strip():
        return f"name:{name.strip().lower()}"[:CUSTOMER_KEY_MAX]
    return None


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


class MergedFeedback(db.Model):
    """A record merged into another: its old id, so that old links still land."""

    __tablename__ = "merged_feedback"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    into_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"), index=True)
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)


class StatusChange(db.Model):
    """A record's status changed: from what to what, by whom, when, and what the team was
    told. ``notes`` are what it sent to the conversations behind the record."""

    __tablename__ = "status_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"))
    from_status: Mapped[str] = mapped_column(String(STATE_MAX))
    to_status: Mapped[str] = mapped_column(String(STATE_MAX))
    message: Mapped[str] = mapped_column(Text, default="")  # up to MESSAGE_MAX
    notify: Mapped[bool] = mapped_column(default=False)
    reopen: Mapped[bool] = mapped_column(default=False)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The issue whose webhook made the change (its address), when a tracker made it.
    issue_url: Mapped[str | None] = mapped_column(String(ISSUE_URL_MAX))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    changed_by: Mapped[User | None] = relationship()
    notes: Mapped[list[Note]] = relationship(
        order_by="Note.id", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def internal_notes(self) -> list[Note]:
        return [note for note in self.notes if note.kind == "note"]

    @property
    def replies(self) -> list[Note]:
        return [note for note in self.notes if note.kind == "reply"]

    @property
    def labels(self) -> tuple[str, str]:
        return STATUSES.get(self.from_status, self.from_status), STATUSES.get(
            self.to_status, self.to_status
        )

    __table_args__ = (Index("ix_status_changes_feedback", "feedback_id", "id"),)


class Note(db.Model):
    """The outbox: one internal note (``kind`` "note"), or one reply the customer sees
    ("reply"), to one conversation about one status change. It is written in the change's
    transaction, so nothing is sent before the change is kept and nothing is lost after; a
    sender claims it (pending → sending) before sending it, so no two senders send it. A
    conversation Hedwig cannot tell is kept as ``skipped``, with why."""

    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    change_id: Mapped[int] = mapped_column(ForeignKey("status_changes.id", ondelete="CASCADE"))
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(STATE_MAX), default="note", server_default="note")
    customer: Mapped[str] = mapped_column(String(NAME_MAX), default="")  # who asked, shown
    workspace_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    conversation_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    body: Mapped[str] = mapped_column(Text, default="")  # the note's HTML, as Intercom gets it
    reopen: Mapped[bool] = mapped_column(default=False)  # reopen the conversation after it
    # Then assign it to this Intercom admin: the agent who recorded the customer's evidence.
    assignee_id: Mapped[str | None] = mapped_column(String(ID_MAX))
    # pending → sending → sent or failed; pending again after a 429, a 5xx or a refused token.
    state: Mapped[str] = mapped_column(String(STATE_MAX), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)  # failed ones: 5xx, timeouts
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None]
    noted_at: Mapped[datetime | None]  # when Intercom took the note (reopening may follow)
    finished_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text, default="")  # why it failed, waits or was skipped

    __table_args__ = (
        UniqueConstraint(
            "change_id", "kind", "workspace_id", "conversation_id", name="uq_notes_change"
        ),
        Index("ix_notes_due", "state", "next_attempt_at"),
        Index("ix_notes_feedback", "feedback_id", "state"),
    )


class ReplyTemplate(db.Model):
    """An owner's words for the reply a status change offers to send the customers, per status
    (replies.py keeps the defaults), and whether a change made by an issue's webhook sends it."""

    __tablename__ = "reply_templates"

    status: Mapped[str] = mapped_column(String(STATE_MAX), primary_key=True)
    body: Mapped[str] = mapped_column(Text, default="")  # plain text, up to REPLY_MAX
    reply_automatically: Mapped[bool] = mapped_column(default=False, server_default=false())
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


TRACKERS = {"github": "GitHub", "linear": "Linear", "jira": "Jira"}


class IssueLink(db.Model):
    """A record linked to the issue (or pull request) where the work happens: shown on the
    record and in the list; GitHub's and Linear's webhooks move the status of every record
    that links the issue they are about. Several records may link one issue."""

    __tablename__ = "issue_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"))
    tracker: Mapped[str] = mapped_column(String(16))  # one of TRACKERS
    # Which issue, as the webhooks name it (issues.issue_key): "github:owner/repo#12",
    # "linear:ENG-12", "jira:example.atlassian.net/KEY-12".
    issue_key: Mapped[str] = mapped_column(String(ISSUE_KEY_MAX))
    url: Mapped[str] = mapped_column(String(ISSUE_URL_MAX))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def name(self) -> str:
        """How the record shows it: "owner/repo#12", "ENG-12", "KEY-12"."""
        if self.tracker == "github":  # as written: the key is in lower case
            owner, repository, _, number = self.url.split("/")[3:7]
            return f"{owner}/{repository}#{number}"
        return self.issue_key.partition(":")[2].rpartition("/")[2]

    @property
    def tracker_name(self) -> str:
        return TRACKERS.get(self.tracker, self.tracker)

    __table_args__ = (
        UniqueConstraint("feedback_id", "issue_key", name="uq_issue_links_issue"),
        # A webhook: the records that link the issue it is about.
        Index("ix_issue_links_issue", "issue_key", "feedback_id"),
    )


class WebhookDelivery(db.Model):
    """A GitHub or Linear webhook delivery that asked for a status change, kept in the
    change's transaction: the same delivery again (a replay, or a redelivery) changes
    nothing."""

    __tablename__ = "webhook_deliveries"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)  # "github", "linear"
    delivery_id: Mapped[str] = mapped_column(String(ID_MAX), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


WEBHOOK_EVENTS = (
    "record.created",
    "record.updated",
    "record.merged",
    "record.deleted",
    "evidence.added",
    "evidence.removed",
    "status.changed",
)
WEBHOOK_URL_MAX = 500


class WebhookEndpoint(db.Model):
    """An address an owner asked Hedwig to tell of changes (webhooks_out.py), and its signing
    secret, encrypted as the Intercom tokens are: shown once, kept so Hedwig can sign."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(WEBHOOK_URL_MAX))
    # The events it asked for, each between spaces (" record.created status.changed "), so one
    # LIKE finds the endpoints of an event inside the statement that writes the deliveries.
    events: Mapped[str] = mapped_column(String(NAME_MAX))
    enabled: Mapped[bool] = mapped_column(default=True)
    encrypted_secret: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def secret(self) -> str | None:
        try:
            return token_cipher().decrypt(self.encrypted_secret.encode()).decode()
        except InvalidToken:
            return None

    @secret.setter
    def secret(self, secret: str) -> None:
        self.encrypted_secret = token_cipher().encrypt(secret.encode()).decode()

    @property
    def event_list(self) -> list[str]:
        return self.events.split()


class OutgoingDelivery(db.Model):
    """The webhooks' outbox: one event to one endpoint, written in the change's transaction
    and claimed (pending → sending) by one sender, as a Note is; sent, or pending again after
    a failed try, until it has failed WEBHOOK_RETRY_DELAYS times."""

    __tablename__ = "outgoing_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    delivery_id: Mapped[str] = mapped_column(String(ID_MAX), unique=True)  # Hedwig-Delivery
    payload: Mapped[str] = mapped_column(Text)  # the "data" it sends, as JSON
    state: Mapped[str] = mapped_column(String(STATE_MAX), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    response_code: Mapped[int | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    claimed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outgoing_deliveries_due", "state", "next_attempt_at"),
        Index("ix_outgoing_deliveries_endpoint", "endpoint_id", "id"),
    )


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
