"""Closing the loop and telling other tools: the records' status changes, the outbox of notes
and replies they send to Intercom conversations, the owners' reply texts, the GitHub and Linear
webhook deliveries already acted on, and the outgoing webhooks' endpoints with their outbox.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.fernet import InvalidToken
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hedwig_schema.base import (
    ID_MAX,
    ISSUE_URL_MAX,
    NAME_MAX,
    STATE_MAX,
    STATUSES,
    WEBHOOK_URL_MAX,
    db,
    token_cipher,
    utcnow,
)
from hedwig_schema.people import User


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
