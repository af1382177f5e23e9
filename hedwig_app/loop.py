"""Closing the loop, from the record's page: the status form (a change, its message, and
whether the conversations behind the record get a note) and retrying failed notes; each wakes
the sender (outbox.py). Imports log (to show the record again with the form's errors),
records, status and outbox.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, abort, current_app, flash, redirect, request, url_for
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from hedwig_app.log import show_record
from hedwig_app.outbox import wake_sender
from hedwig_app.plumbing import form_text, plural
from hedwig_app.records import merged_target
from hedwig_app.settings import BOOLEAN_WORDS
from hedwig_app.status import NOTIFY_BY_DEFAULT, note_outcome, set_status, validate_status_change
from models import MESSAGE_MAX, STATUSES, Feedback, Note, db, utcnow

loop = Blueprint("loop", __name__)


@loop.post("/feedback/<id:feedback_id>/status")
def change_status(feedback_id: int) -> Any:
    # A merged record's old id (a page left open) changes the record it was merged into.
    record = db.session.get(Feedback, feedback_id) or merged_target(feedback_id)
    if record is None:
        abort(404, f"There is no feedback #{feedback_id}.")
    values = {
        "status": request.form.get("status", ""),
        "message": form_text("message", MESSAGE_MAX),
        "notify": request.form.getlist("notify"),  # absent: the status's default
        "reopen": request.form.get("reopen") == "on",
    }
    errors = validate_status_change(record, values)
    if errors:
        return show_record(record, status_form=values, errors=errors), 400
    notify = (
        any(BOOLEAN_WORDS.get(value.lower()) for value in values["notify"])
        if values["notify"]
        else values["status"] in NOTIFY_BY_DEFAULT
    )
    change = set_status(record, values["status"], values["message"], notify, values["reopen"])
    if change is None:  # the same change, made at this moment by another click or teammate
        errors = validate_status_change(record, values)
        return show_record(record, status_form=values, errors=errors), 400
    queued = sum(note.state == "pending" for note in change.notes)
    db.session.commit()
    wake_sender()
    told = f"; a note goes to {plural(queued, 'conversation')}" if queued else ""
    flash(f"#{record.id} is {STATUSES[change.to_status].lower()} now{told}.")
    return redirect(url_for("log.show_feedback", feedback_id=record.id))


@loop.post("/feedback/<id:feedback_id>/notes/retry")
def retry_failed_notes(feedback_id: int) -> Response:
    """Send the record's failed notes again, from their first try."""
    db.get_or_404(Feedback, feedback_id)
    retried = db.session.execute(
        update(Note)
        .where(Note.feedback_id == feedback_id, Note.state == "failed")
        .values(state="pending", attempts=0, next_attempt_at=utcnow(), reason="")
    ).rowcount
    db.session.commit()
    wake_sender()
    flash(f"{plural(retried, 'note')} will be sent again." if retried else "No note had failed.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


@loop.before_app_request
def send_notes_left_behind() -> None:
    """A process's first request wakes the sender if an earlier process left notes to send."""
    app = current_app._get_current_object()
    if app.extensions.get("hedwig_sender_woken") or not app.config["SEND_NOTES_AT_ONCE"]:
        return
    try:
        left = db.session.scalar(select(Note.id).where(Note.state.in_(("pending", "sending"))))
    except SQLAlchemyError:  # a database not ready yet: /healthz says so; a later request looks
        db.session.rollback()
        return
    app.extensions["hedwig_sender_woken"] = True
    if left:
        wake_sender()


@loop.app_context_processor
def status_helpers() -> dict[str, Any]:
    return {
        "statuses": STATUSES,
        "notify_by_default": NOTIFY_BY_DEFAULT,
        "message_max": MESSAGE_MAX,
        "note_outcome": note_outcome,
    }
