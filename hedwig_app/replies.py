"""Replies the customers see: on a status change, beside the team's note, a reply in each
conversation behind the record, written into the same outbox (a Note of kind "reply") in the
change's transaction and sent by the same sender, exactly once. Owns the reply's words (a
template per status that owners edit, with placeholders for the customer's first name and the
record's title; plain text, escaped into Intercom's HTML), who gets one and why not (a
customer already told this status is not told again), and the form's preview. Imports
status.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from hedwig_app.status import connected_workspaces, not_noted, waiting_for_reconnect
from models import (
    NAME_MAX,
    REPLY_MAX,
    STATUSES,
    Evidence,
    Feedback,
    Note,
    ReplyTemplate,
    StatusChange,
    db,
    utcnow,
)

# What a reply says unless an owner changed it (on the Replies page). A record opened again
# has nothing to tell its customers by default.
DEFAULT_REPLIES = {
    "open": "",
    "planned": (
        "Hi {first_name}, thanks again for asking for {title}. Good news: it is planned. "
        "We will let you know here when it is ready."
    ),
    "in_progress": (
        "Hi {first_name}, a quick update on {title}: we have started working on it. "
        "We will tell you here as soon as it is ready."
    ),
    "done": (
        "Hi {first_name}, {title} is ready for you now. Thanks for asking for it: "
        "tell us how it works for you!"
    ),
    "declined": (
        "Hi {first_name}, thank you for suggesting {title}. We have decided not to build it "
        "for now; we have kept your request, and will tell you if that changes."
    ),
}
PLACEHOLDERS = {
    "first_name": "the customer's first name (“there” when Hedwig has no name)",
    "title": "the record's title",
}
PLACEHOLDER = re.compile(r"\{(\w*)\}")
NO_FIRST_NAME = "there"  # "Hi there," when the customer's name is unknown


@dataclass
class ReplyWords:
    """A status's reply: its words, and whether an issue's webhook sends it by itself."""

    body: str
    reply_automatically: bool


def reply_templates() -> dict[str, ReplyWords]:
    """Each status's reply, as the owners left it (or the default)."""
    kept = {row.status: row for row in db.session.scalars(select(ReplyTemplate))}
    return {
        status: ReplyWords(kept[status].body, kept[status].reply_automatically)
        if status in kept
        else ReplyWords(DEFAULT_REPLIES[status], False)
        for status in STATUSES
    }


def save_reply_templates(words: Mapping[str, ReplyWords], user_id: int) -> None:
    """Keep every status's reply; the caller commits."""
    kept = {row.status: row for row in db.session.scalars(select(ReplyTemplate))}
    for status, reply in words.items():
        row = kept.get(status) or ReplyTemplate(status=status)
        row.body, row.reply_automatically = reply.body, reply.reply_automatically
        row.updated_by_id = user_id
        db.session.add(row)


def reply_error(text: str) -> str | None:
    """What is wrong with a reply's words (too long, a placeholder Hedwig does not know), or
    None."""
    if len(text) > REPLY_MAX:
        return f"Keep the reply to {REPLY_MAX} characters ({len(text)} now)."
    unknown = sorted({name for name in PLACEHOLDER.findall(text) if name not in PLACEHOLDERS})
    if unknown:
        known = " and ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        return f"Hedwig knows no {{{unknown[0]}}}: use {known}."
    return None


def first_name(evidence: Evidence) -> str:
    """The customer's first name, as the reply greets them: the first word of their name."""
    words = (evidence.customer_name or "").split()
    return words[0][:NAME_MAX] if words else NO_FIRST_NAME


def filled_in(text: str, name: str, title: str) -> str:
    """The reply's words for one customer: its placeholders replaced, once (a title holding
    "{first_name}" stays as it is)."""
    values = {"first_name": name, "title": title}
    return PLACEHOLDER.sub(lambda found: values.get(found.group(1), found.group(0)), text)


def reply_html(text: str) -> str:
    """Plain text as Intercom's HTML body: escaped, a paragraph per blank-line-separated block,
    line breaks kept."""
    blocks = [block.strip() for block in re.split(r"\n\s*\n", text.strip()) if block.strip()]
    return "".join(f"<p>{html.escape(block).replace(chr(10), '<br>')}</p>" for block in blocks)


def already_told(record: Feedback) -> dict[str, set[tuple[str | None, str | None]]]:
    """By status, the conversations whose customer was told, or is being told, that the
    record is that status: a reply of an earlier change, not failed nor skipped."""
    rows = db.session.execute(
        select(StatusChange.to_status, Note.workspace_id, Note.conversation_id)
        .join(StatusChange, StatusChange.id == Note.change_id)
        .where(
            Note.feedback_id == record.id,
            Note.kind == "reply",
            Note.state.in_(("pending", "sending", "sent")),
        )
    )
    told: dict[str, set[tuple[str | None, str | None]]] = {status: set() for status in STATUSES}
    for row in rows:
        told.setdefault(row.to_status, set()).add((row.workspace_id, row.conversation_id))
    return told


def not_replied(
    evidence: Evidence,
    connected: set[str],
    told: set[tuple[str | None, str | None]],
    status: str,
) -> str | None:
    """Why the customer behind a piece of evidence gets no reply, or None."""
    if (evidence.workspace_id, evidence.conversation_id) in told and evidence.conversation_id:
        return f"the customer was already told it is {STATUSES[status].lower()}"
    return not_noted(evidence, connected)


def add_replies(record: Feedback, change: StatusChange, text: str) -> list[Note]:
    """A reply for each conversation behind the record into the outbox, in the change's
    transaction (the caller commits): pending, waiting for a reconnect, or skipped with why."""
    connected, refused = connected_workspaces()
    told = already_told(record).get(change.to_status, set())
    replies = []
    for evidence in record.evidence:
        customer = evidence.customer_name or evidence.customer_email or "the customer"
        reply = Note(
            kind="reply",
            feedback_id=record.id,
            customer=customer[:NAME_MAX],
            workspace_id=evidence.workspace_id,
            conversation_id=evidence.conversation_id,
            body=reply_html(filled_in(text, first_name(evidence), record.title)),
        )
        skipped = not_replied(evidence, connected, told, change.to_status)
        if skipped:
            reply.state, reply.reason, reply.finished_at = "skipped", skipped, utcnow()
        elif evidence.workspace_id in refused:
            reply.reason = waiting_for_reconnect(refused[evidence.workspace_id])
        change.notes.append(reply)
        replies.append(reply)
    db.session.flush()
    return replies


@dataclass
class ReplyPreview:
    """What the status form says before a reply goes: how many customers get it, who does
    not and why, the name the words are shown with, and the words as that customer reads
    them."""

    count: int
    skipped: str
    name: str
    text: str


def reply_previews(record: Feedback, texts: Mapping[str, str]) -> dict[str, ReplyPreview]:
    """For each status in ``texts``, the reply a change of the record to it would send."""
    connected = set(connected_workspaces()[0])
    told = already_told(record)
    evidence = sorted(record.evidence, key=lambda piece: piece.id)
    previews = {}
    for status, text in texts.items():
        replied, skipped = [], Counter()
        for piece in evidence:
            reason = not_replied(piece, connected, told.get(status, set()), status)
            if reason:
                skipped[reason] += 1
            else:
                replied.append(piece)
        name = first_name(replied[0]) if replied else NO_FIRST_NAME
        said = "; ".join(f"{count} {reason}" for reason, count in sorted(skipped.items()))
        previews[status] = ReplyPreview(
            len(replied), said, name, filled_in(text, name, record.title)
        )
    return previews


def reply_form(record: Feedback, form: Mapping[str, Any]) -> dict[str, Any]:
    """What the status form needs for its reply: each status's words, to prefill the reply as
    the status chosen changes, and the preview of each (of the words the form holds, for the
    status it holds)."""
    templates = {status: words.body for status, words in reply_templates().items()}
    status = form.get("status", "")
    text = form.get("reply_message")
    if text is None:
        text = templates.get(status, "")
    texts = {name: body for name, body in templates.items() if name != record.status}
    if status in texts:
        texts[status] = text
    return {
        "reply_templates": templates,
        "reply_message": text,
        "reply_previews": reply_previews(record, texts),
    }
