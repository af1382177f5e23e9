"""The feedback log's records: each record, the evidence of the customers who back it, the
old ids of records merged into another, and the issues a record is linked to.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint, and_
from sqlalchemy.orm import Mapped, foreign, mapped_column, relationship

from hedwig_schema.base import (
    CUSTOMER_KEY_MAX,
    DEFAULT_IMPORTANCE,
    EMAIL_MAX,
    ID_MAX,
    IMPORTANCE_MAX,
    IMPORTANCES,
    ISSUE_KEY_MAX,
    ISSUE_URL_MAX,
    NAME_MAX,
    PREVIEW_WORKSPACE_ID,
    REGION_MAX,
    STATE_MAX,
    STATUSES,
    TITLE_MAX,
    db,
    intercom_web_url,
    plural,
    utcnow,
)
from hedwig_schema.intercom import Company, ContactCompany
from hedwig_schema.people import User


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
        # A record's evidence, newest first; and, from the index alone, whether a record has
        # evidence of an importance or from a contact (the list's filters, search.py).
        Index(
            "ix_evidence_feedback", "feedback_id", "id", "importance", "workspace_id", "contact_id"
        ),
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


class MergedFeedback(db.Model):
    """A record merged into another: its old id, so that old links still land."""

    __tablename__ = "merged_feedback"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    into_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"), index=True)
    merged_at: Mapped[datetime] = mapped_column(default=utcnow)


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
