"""Closing the loop, from the record's page: the status form (a change, its message, whether
the conversations behind the record get a note, are reopened and assigned back, and whether
their customers get a reply), retrying failed notes, the Replies page where owners word each
status's reply, and linking a record to its issues; each change wakes the sender (outbox.py).
Imports auth, log (to show the record again with the form's errors), records, issues, status,
replies and outbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from hedwig_app.auth import owners_only
from hedwig_app.issues import link_issue, read_issue_url
from hedwig_app.log import changed_meanwhile, missing_record, show_record
from hedwig_app.outbox import wake_sender
from hedwig_app.plumbing import form_text, plural
from hedwig_app.records import RecordGone, merged_target
from hedwig_app.replies import (
    PLACEHOLDERS,
    ReplyWords,
    add_replies,
    reply_error,
    reply_templates,
    save_reply_templates,
)
from hedwig_app.settings import BOOLEAN_WORDS
from hedwig_app.status import NOTIFY_BY_DEFAULT, note_outcome, set_status, validate_status_change
from hedwig_app.webhooks_out import announce, status_data
from models import (
    ISSUE_URL_MAX,
    MESSAGE_MAX,
    REPLY_MAX,
    STATUSES,
    Feedback,
    IssueLink,
    Note,
    OutgoingDelivery,
    StatusChange,
    db,
    utcnow,
)

loop = Blueprint("loop", __name__)


@loop.post("/feedback/<id:feedback_id>/status")
def change_status(feedback_id: int) -> Any:
    record = db.session.get(Feedback, feedback_id)
    values = status_form_values()
    if record is None:
        return changed_elsewhere(feedback_id, values)
    errors = validate_status_change(record, values)
    if values["reply"]:
        errors |= {"reply_message": reply_error(values["reply_message"]) or ""}
        if not values["reply_message"]:
            errors["reply_message"] = "Write the reply, or untick “Reply to the customers”."
        errors = {name: message for name, message in errors.items() if message}
    if errors or request.form.get("preview_reply"):  # a preview changes nothing
        return show_record(record, status_form=values, errors=errors), 400 if errors else 200
    notify = (
        any(BOOLEAN_WORDS.get(value.lower()) for value in values["notify"])
        if values["notify"]
        else values["status"] in NOTIFY_BY_DEFAULT
    )
    reopen, assign = values["reopen"], values["reopen"] and values["assign"]
    try:
        change = set_status(record, values["status"], values["message"], notify, reopen, assign)
    except RecordGone:
        return changed_elsewhere(feedback_id, values, meanwhile=True)
    if change is None:  # the same change, made at this moment by another click or teammate
        errors = validate_status_change(record, values)
        return show_record(record, status_form=values, errors=errors), 400
    if values["reply"]:
        add_replies(record, change, values["reply_message"])
    said = told(change)  # counted before the sender can pick the notes up
    announce("status.changed", status_data(record, change.from_status, change.message))
    db.session.commit()
    wake_sender()
    flash(f"#{feedback_id} is {STATUSES[values['status']].lower()} now{said}.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


def status_form_values() -> dict[str, Any]:
    """The status form as sent: the status, the team's message, the note (absent: the
    status's default), reopening and assigning back, and the reply to the customers."""
    return {
        "status": request.form.get("status", ""),
        "message": form_text("message", MESSAGE_MAX),
        "notify": request.form.getlist("notify"),
        "reopen": yes("reopen"),
        "assign": yes("assign"),
        "reply": yes("reply"),
        "reply_message": form_text("reply_message", REPLY_MAX),
    }


def yes(name: str) -> bool:
    """A checkbox, or a script's yes or no: the last value sent (a hidden "off" comes first)."""
    said = request.form.getlist(name)
    return BOOLEAN_WORDS.get(said[-1].strip().lower(), False) if said else False


def told(change: StatusChange) -> str:
    """What the flash says goes out: "; a note goes to 2 conversations, a reply to 2
    customers"."""
    notes = sum(note.state == "pending" for note in change.internal_notes)
    replies = sum(reply.state == "pending" for reply in change.replies)
    said = [f"a note goes to {plural(notes, 'conversation')}"] if notes else []
    said += [f"a reply to {plural(replies, 'customer')}"] if replies else []
    return "; " + ", ".join(said) if said else ""


def changed_elsewhere(
    feedback_id: int, values: Mapping[str, Any], meanwhile: bool = False
) -> tuple[str, int]:
    """A status posted for a record merged since its page was loaded changes nothing: the
    record it went into has other conversations, maybe another status, and its notes go to
    customers. Its page answers (409), the form filled in as it was sent, to check and send
    again; a deleted record's answer keeps the message."""
    into = merged_target(feedback_id)
    if into is None:
        typed = {"Message": values["message"], "Reply": values["reply_message"]}
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


@loop.post("/feedback/<id:feedback_id>/issue")
def link_issue_to_record(feedback_id: int) -> Any:
    """Link the record to the issue where its work happens (``url``)."""
    record = db.session.get(Feedback, feedback_id)
    url = form_text("url", ISSUE_URL_MAX)
    if record is None:
        return missing_record(feedback_id, {"Issue": url})
    try:
        issue = read_issue_url(url)
    except ValueError as error:
        return show_record(record, errors={"issue_url": str(error)}, issue_url=url), 400
    try:
        link = link_issue(record, issue, g.user.id)
    except RecordGone as gone:
        return changed_meanwhile(f"{gone} No issue was linked.", gone.into, {"Issue": url})
    if link is None:
        flash(f"#{feedback_id} links {issue.url} already.")
    else:
        db.session.commit()
        flash(f"#{feedback_id} now follows {link.tracker_name} {link.name}.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


@loop.post("/feedback/<id:feedback_id>/issue/<id:link_id>/delete")
def unlink_issue(feedback_id: int, link_id: int) -> Response:
    link = db.session.get(IssueLink, link_id)
    if link is None or link.feedback_id != feedback_id:
        abort(404, "This record links no such issue.")
    name = f"{link.tracker_name} {link.name}"
    db.session.delete(link)
    db.session.commit()
    flash(f"#{feedback_id} no longer follows {name}.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


@loop.route("/replies", methods=["GET", "POST"])
@owners_only
def replies_page() -> Any:
    """Each status's reply to the customers, as the status form prefills it, and whether a
    change an issue's webhook makes sends it by itself."""
    if request.method == "GET":
        return render_template("replies.html", replies=reply_templates(), errors={})
    replies = {
        status: ReplyWords(form_text(f"reply_{status}", REPLY_MAX), yes(f"auto_{status}"))
        for status in STATUSES
    }
    errors = {status: reply_error(words.body) for status, words in replies.items()}
    for status, words in replies.items():
        if words.reply_automatically and not words.body:
            errors[status] = "Write the reply before it is sent automatically."
    errors = {status: error for status, error in errors.items() if error}
    if errors:
        return render_template("replies.html", replies=replies, errors=errors), 400
    save_reply_templates(replies, g.user.id)
    db.session.commit()
    flash("The replies are saved: the status form offers them from now on.")
    return redirect(url_for("loop.replies_page"))


@loop.before_app_request
def send_notes_left_behind() -> None:
    """A process's first request wakes the sender if an earlier process left notes or webhook
    deliveries to send."""
    app = current_app._get_current_object()
    if app.extensions.get("hedwig_sender_woken") or not app.config["SEND_NOTES_AT_ONCE"]:
        return
    try:
        left = db.session.scalar(
            select(Note.id).where(Note.state.in_(("pending", "sending")))
        ) or db.session.scalar(
            select(OutgoingDelivery.id).where(OutgoingDelivery.state.in_(("pending", "sending")))
        )
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
        "reply_max": REPLY_MAX,
        "reply_placeholders": PLACEHOLDERS,
        "note_outcome": note_outcome,
    }
