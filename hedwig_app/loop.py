"""Closing the loop, from the record's page: the status form (a change, its message, and
whether the conversations behind the record get a note) and retrying failed notes; each wakes
the sender (outbox.py). Imports log (to show the record again with the form's errors),
records, status and outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, flash, redirect, request, url_for
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from hedwig_app.log import changed_meanwhile, missing_record, show_record
from hedwig_app.outbox import wake_sender
from hedwig_app.plumbing import form_text, plural
from hedwig_app.records import RecordGone, merged_target
from hedwig_app.settings import BOOLEAN_WORDS
from hedwig_app.status import NOTIFY_BY_DEFAULT, note_outcome, set_status, validate_status_change
from models import MESSAGE_MAX, STATUSES, Feedback, Note, db, utcnow

loop = Blueprint("loop", __name__)


@loop.post("/feedback/<id:feedback_id>/status")
def change_status(feedback_id: int) -> Any:
    record = db.session.get(Feedback, feedback_id)
    values = {
        "status": request.form.get("status", ""),
        "message": form_text("message", MESSAGE_MAX),
        "notify": request.form.getlist("notify"),  # absent: the status's default
        "reopen": BOOLEAN_WORDS.get(request.form.get("reopen", "").strip().lower(), False),
    }
    if record is None:
        return changed_elsewhere(feedback_id, values)
    errors = validate_status_change(record, values)
    if errors:
        return show_record(record, status_form=values, errors=errors), 400
    notify = (
        any(BOOLEAN_WORDS.get(value.lower()) for value in values["notify"])
        if values["notify"]
        else values["status"] in NOTIFY_BY_DEFAULT
    )
    try:
        change = set_status(record, values["status"], values["message"], notify, values["reopen"])
    except RecordGone:
        return changed_elsewhere(feedback_id, values, meanwhile=True)
    if change is None:  # the same change, made at this moment by another click or teammate
        errors = validate_status_change(record, values)
        return show_record(record, status_form=values, errors=errors), 400
    queued = sum(note.state == "pending" for note in change.notes)
    db.session.commit()
    wake_sender()
    told = f"; a note goes to {plural(queued, 'conversation')}" if queued else ""
    flash(f"#{feedback_id} is {STATUSES[values['status']].lower()} now{told}.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


def changed_elsewhere(
    feedback_id: int, values: Mapping[str, Any], meanwhile: bool = False
) -> tuple[str, int]:
    """A status posted for a record merged since its page was loaded changes nothing: the
    record it went into has other conversations, maybe another status, and its notes go to
    customers. Its page answers (409), the form filled in as it was sent, to check and send
    again; a deleted record's answer keeps the message."""
    into = merged_target(feedback_id)
    if into is None:
        typed = {"Message": values["message"]}
        if meanwhile:
            message = f"#{feedback_id} was deleted meanwhile: no status was changed."
            return changed_meanwhile(message, None, typed)
        return missing_record(feedback_id, typed)
    error = (
        f"#{feedback_id} was merged into #{into.id}, this record: nothing was changed. "
        f"Check #{into.id}'s status and conversations, then change it here."
    )
    return show_record(into, status_form=values, errors={"status": error}), 409


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
