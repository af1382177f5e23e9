"""The schema's ground, below every table: the database and its declarative base (with the
constraint names migrations need), every length a column allows, the vocabularies tables in
more than one module share (statuses, importances, the preview's workspace), and the small
helpers the tables and the app share: counted words, the time, addresses, who a customer is,
Intercom's web origin and the key that encrypts secrets.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.fernet import Fernet
from flask import current_app
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

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
IMPORTANCE_MAX = 16  # one of IMPORTANCES
WEBHOOK_URL_MAX = 500  # an outgoing webhook's address
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


def intercom_web_url(region: str | None) -> str:
    """The Inbox's web origin for a region (HEDWIG_INTERCOM_REGIONS), US when unknown."""
    regions = current_app.config["INTERCOM_REGIONS"]
    return regions.get(region or "us", regions["us"])["web"]


def token_cipher() -> Fernet:
    """The key that encrypts Intercom tokens, loaded at start (hedwig.load_token_cipher)."""
    return current_app.extensions["hedwig_token_cipher"]


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
