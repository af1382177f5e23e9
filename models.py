"""Hedwig's tables: users, Intercom connections, used OAuth states and feedback.

Times are stored as naive UTC datetimes, the one form every database keeps the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ForeignKey, Index, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

TITLE_MAX = 200
# The canvas preview's own workspace: "connected" for the preview alone, never for Intercom.
PREVIEW_WORKSPACE_ID = "hedwig-preview"
DESCRIPTION_MAX = 10_000


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # always lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IntercomConnection(db.Model):
    """One connected Intercom workspace and the OAuth token it granted."""

    __tablename__ = "intercom_connections"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Intercom's app.id_code: the workspace_id every canvas request carries.
    workspace_id: Mapped[str] = mapped_column(String(64), unique=True)
    workspace_name: Mapped[str] = mapped_column(String(255), default="")
    # Fernet-encrypted; the key lives outside the database (see hedwig.token_cipher).
    encrypted_token: Mapped[str] = mapped_column(Text)
    admin_id: Mapped[str | None] = mapped_column(String(64))
    admin_name: Mapped[str | None] = mapped_column(String(255))
    admin_email: Mapped[str | None] = mapped_column(String(254))
    connected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    connected_by: Mapped[User | None] = relationship()


class UsedOAuthState(db.Model):
    """Nonces of OAuth states already spent: the unique key makes each state single use."""

    __tablename__ = "used_oauth_states"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(default=utcnow)


class Feedback(db.Model):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    description: Mapped[str] = mapped_column(Text, default="")
    customer_name: Mapped[str] = mapped_column(String(255), default="")
    customer_email: Mapped[str] = mapped_column(String(254), default="")
    source: Mapped[str] = mapped_column(String(16), default="web")  # "web" or "intercom"

    # Where it was heard, when it came from the Intercom Inbox.
    workspace_id: Mapped[str | None] = mapped_column(String(64))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    contact_id: Mapped[str | None] = mapped_column(String(64))
    admin_id: Mapped[str | None] = mapped_column(String(64))
    admin_name: Mapped[str | None] = mapped_column(String(255))
    admin_email: Mapped[str | None] = mapped_column(String(254))
    # The one-time nonce of the canvas form that created it: a double submit hits this key.
    submit_nonce: Mapped[str | None] = mapped_column(String(64), unique=True)

    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    created_by: Mapped[User | None] = relationship()

    @property
    def origin(self) -> str:
        """Where it was recorded: web, intercom, or preview (the canvas preview)."""
        return "preview" if self.workspace_id == PREVIEW_WORKSPACE_ID else self.source

    __table_args__ = (
        # The list: newest first.
        Index("ix_feedback_created", "created_at", "id"),
        # The first canvas: this conversation's feedback, and this customer's. The customer's
        # carry conversation_id, so telling "elsewhere" apart never reads the table.
        Index("ix_feedback_conversation", "workspace_id", "conversation_id", "id"),
        Index("ix_feedback_contact", "workspace_id", "contact_id", "id", "conversation_id"),
        Index("ix_feedback_customer_email", "customer_email", "id", "conversation_id"),
    )
