"""Statuses: every record has one. Changing it keeps a line of history and, when asked to,
writes an internal note for every Intercom conversation behind the record into the outbox, in
the same transaction: nothing is sent before the change is kept, and nothing is lost after
it. Owns the status form's rules, the history, and each note's text and the reason a
conversation gets none. Imports plumbing and records.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

from flask import g
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from hedwig_app.plumbing import format_datetime
from hedwig_app.records import feedback_url, hold_records, workspace_names
from hedwig_app.search import COUNT_CAP
from models import (
    MESSAGE_MAX,
    NAME_MAX,
    STATUSES,
    Evidence,
    Feedback,
    IntercomConnection,
    Note,
    StatusChange,
    db,
    utcnow,
)

NOTIFY_BY_DEFAULT = frozenset({"planned", "done", "declined"})
NEXT_STATUS = {"open": "planned", "planned": "in_progress", "in_progress": "done"}
CONVERSATION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # safe in a URL path as it is


def status_counts() -> dict[str | None, int]:
    """How many records each status has, and all of them (None), each counted up to
    COUNT_CAP + 1 (the tabs say "10,000+" past it): one statement, each count a seek into
    ix_feedback_status (status first) that reads no further than the cap, however many
    records there are; all of them are the sum, as each record has one status. The log's
    status tabs show them, and an unfiltered list's total is one of them."""

    def capped(status: str) -> Any:
        counted = select(Feedback.id).where(Feedback.status == status).limit(COUNT_CAP + 1)
        return select(func.count()).select_from(counted.subquery()).scalar_subquery()

    counts = db.session.execute(select(*map(capped, STATUSES))).one()
    return {None: min(sum(counts), COUNT_CAP + 1), **dict(zip(STATUSES, counts, strict=True))}


def status_form_defaults(record: Feedback) -> dict[str, Any]:
    """The status form as the page first shows it: the status that usually comes next."""
    status = NEXT_STATUS.get(record.status, "open")
    notify = "on" if status in NOTIFY_BY_DEFAULT else "off"
    return {"status": status, "message": "", "notify": [notify], "reopen": False, "assign": False}


def status_history(record: Feedback) -> list[StatusChange]:
    """The record's status changes, newest first, each with its notes."""
    return list(
        db.session.scalars(
            select(StatusChange)
            .where(StatusChange.feedback_id == record.id)
            .order_by(StatusChange.id.desc())
            .options(selectinload(StatusChange.notes), selectinload(StatusChange.changed_by))
        )
    )


def validate_status_change(record: Feedback, values: Mapping[str, Any]) -> dict[str, str]:
    errors = {}
    if values["status"] not in STATUSES:
        errors["status"] = f"Choose a status: {', '.join(STATUSES.values())}."
    elif values["status"] == record.status:
        errors["status"] = f"#{record.id} is {record.status_label.lower()} already."
    if len(values["message"]) > MESSAGE_MAX:
        errors["message"] = f"Keep the message to {MESSAGE_MAX} characters."
    return errors


def set_status(
    record: Feedback,
    status: str,
    message: str,
    notify: bool,
    reopen: bool,
    assign: bool = False,
    issue_url: str | None = None,
) -> StatusChange | None:
    """Change the record's status, keep the change, and (``notify``) write a note for each
    conversation behind the record into the outbox, reopening it (``reopen``) and assigning
    it back to the agent who recorded it (``assign``, with ``reopen``): one transaction, the
    caller commits. ``issue_url`` names the issue whose webhook made the change, when no
    person did. None, and nothing written, when the record has that status already;
    RecordGone when it was deleted or merged meanwhile."""
    hold_records(record)  # as it is now, and no other change of it until this one is kept
    if record.status == status:
        db.session.rollback()
        return None
    change = StatusChange(
        feedback_id=record.id,
        from_status=record.status,
        to_status=status,
        message=message,
        notify=notify,
        reopen=notify and reopen,
        changed_by_id=g.user.id if g.user else None,
        issue_url=issue_url,
    )
    record.status = status
    db.session.add(change)
    if notify:
        connected, refused = connected_workspaces()
        for evidence in record.evidence:
            note = new_note(record, change, evidence, connected, refused)
            if change.reopen and assign:
                note.assignee_id = evidence.admin_id
            change.notes.append(note)
    db.session.flush()
    return change


def new_note(
    record: Feedback,
    change: StatusChange,
    evidence: Evidence,
    connected: set[str],
    refused: Mapping[str, str],
) -> Note:
    """The note for the conversation a piece of evidence was heard in: pending (waiting, when
    its workspace needs reconnecting: ``refused``), or skipped with the reason a person reads
    on the record's page."""
    customer = evidence.customer_name or evidence.customer_email or "the customer"
    note = Note(
        feedback_id=record.id,
        customer=customer[:NAME_MAX],
        workspace_id=evidence.workspace_id,
        conversation_id=evidence.conversation_id,
        reopen=change.reopen,
        body=note_body(record, change, customer),
    )
    skipped = not_noted(evidence, connected)
    if skipped:
        note.state, note.reason, note.finished_at = "skipped", skipped, utcnow()
    elif evidence.workspace_id in refused:  # the sender leaves it until a reconnect
        note.reason = waiting_for_reconnect(refused[evidence.workspace_id])
    return note


def connected_workspaces() -> tuple[set[str], dict[str, str]]:
    """The connected workspaces' ids, and of those the ones whose token Intercom refused, by
    id, with their names: their notes wait until someone connects them again."""
    rows = db.session.execute(
        select(
            IntercomConnection.workspace_id,
            IntercomConnection.workspace_name,
            IntercomConnection.refused_at,
        )
    ).all()
    refused = {row.workspace_id: row.workspace_name for row in rows if row.refused_at}
    return {row.workspace_id for row in rows}, refused


def waiting_for_reconnect(workspace_name: str) -> str:
    """The reason a note waiting for its workspace's reconnect shows on the record's page."""
    return f"waiting until {workspace_name} is reconnected"


def not_noted(evidence: Evidence, connected: set[str]) -> str | None:
    """Why the conversation a piece of evidence was heard in gets no note, or None."""
    if evidence.origin == "preview":
        return "recorded in the canvas preview, not in Intercom"
    if not evidence.conversation_id or evidence.source != "intercom":
        return "added by hand: no Intercom conversation"
    if evidence.workspace_id not in connected:
        return "its workspace is not connected to Hedwig"
    if not CONVERSATION_ID.fullmatch(evidence.conversation_id):
        return "not an Intercom conversation id"
    return None


def conversations_to_note(record: Feedback) -> int:
    """How many conversations a change of the record's status would send a note to."""
    connected = set(workspace_names())
    return sum(not_noted(evidence, connected) is None for evidence in record.evidence)


def notes_to_send(record: Feedback) -> int:
    """How many of the record's notes are still to be sent (pending, or being sent)."""
    return db.session.scalar(
        select(func.count(Note.id)).where(
            Note.feedback_id == record.id, Note.state.in_(("pending", "sending"))
        )
    )


def note_body(record: Feedback, change: StatusChange, customer: str) -> str:
    """The note as teammates read it in the conversation: the record (a link to it), its new
    status, the team's message, and who to tell."""
    url, title = html.escape(feedback_url(record)), html.escape(record.title)
    link = f'<a href="{url}">#{record.id} {title}</a>'
    lines = [f"<p>Hedwig: {link} is now <b>{html.escape(STATUSES[change.to_status])}</b>.</p>"]
    if change.message:
        lines.append(f"<p>{html.escape(change.message).replace(chr(10), '<br>')}</p>")
    lines.append(f"<p>{html.escape(customer)} asked for it in this conversation: tell them?</p>")
    return "".join(lines)


def note_outcome(note: Note) -> str:
    """A note's state as the record's page says it."""
    if note.state == "sent":
        reopened = " and reopened" if note.reopen and not note.reason else ""
        if reopened and note.assignee_id:
            reopened = ", reopened and assigned back"
        after = f"; {note.reason}" if note.reason else ""
        return f"sent{reopened} {format_datetime(note.finished_at)}{after}"
    if note.state == "sending":
        return "being sent"
    if note.state == "pending":
        later = note.next_attempt_at > utcnow()
        return (note.reason or "to be sent") + (
            f"; next try {format_datetime(note.next_attempt_at)}" if later else ""
        )
    return f"{note.state}: {note.reason}"
