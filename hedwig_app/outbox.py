"""The sender of notes and of replies (a Note of kind "reply": the same outbox, sent as a
comment the customer sees). A note is pending until a sender claims it (sending), then sent, failed,
or pending again: after a 429 (at the time Intercom gave), a 5xx or a timeout (after a delay,
NOTE_ATTEMPTS tries in all), or a 401 (a token revoked, or a permission missing: until someone
reconnects the workspace). A sender claims each note with one UPDATE, so two senders never
send one note twice; an abandoned claim is released only when its calls to Intercom must have
ended (each is cut off at its deadline). A thread of the web process sends at once
(``wake_sender()``), and reads the customers' companies that saving evidence asked for
(companies.py); `flask send-notes` sends what a crash or a restart left. Imports status (the
reasons the record's page shows), intercom and companies.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import select, update

from hedwig_app.companies import read_companies
from hedwig_app.database import claim_first
from hedwig_app.intercom import (
    IntercomError,
    call_seconds,
    due_for_intercom,
    intercom_response,
    next_due_at,
    refuse_connection,
    seconds_until_due,
)
from hedwig_app.status import waiting_for_reconnect
from hedwig_app.webhooks_out import next_delivery_at, send_webhooks
from models import ContactCompany, IntercomConnection, Note, db, utcnow

NOTE_ATTEMPTS = 5  # tries of a note Intercom fails on (5xx, timeouts), then it has failed
RETRY_DELAYS = (30, 60, 120, 240)  # seconds before the 2nd, 3rd, 4th and 5th try
RATE_LIMIT_WAIT = 10  # seconds, when a 429 says neither Retry-After nor X-RateLimit-Reset
SENDER_WAIT_MAX = 60  # seconds a sender waits for a note coming due, before leaving it


def send_notes(wait_max: float = 0, release: bool = True) -> Counter[str]:
    """Send every note that is due, waiting up to ``wait_max`` seconds for one coming due
    (first releasing abandoned claims, with ``release``); how many ended sent, failed,
    waiting (for later, or for a reconnect), or deleted (their record deleted while they were
    being sent)."""
    outcomes: Counter[str] = Counter()
    if release:
        release_abandoned_notes()
    while True:
        note = claim_next_note()
        if note is not None:
            outcomes[deliver_or_fail(note)] += 1
            continue
        if not wait_max:
            return outcomes
        wait = seconds_until_due(next_due_at(Note))
        if wait is None or wait > wait_max:
            return outcomes
        time.sleep(wait)


def claim_next_note() -> Note | None:
    """The next due note, claimed by this sender: the UPDATE that moves it from pending to
    sending is one statement, so of two senders only one moves it."""
    now = utcnow()
    return claim_first(Note, due_for_intercom(Note, now), now, "sending")


def deliver_or_fail(note: Note) -> str:
    """deliver(), and if anything unexpected stops it, the note fails with a reason a person
    can act on, and the sender goes on to the next. A note deleted meanwhile (with its record)
    is no fault of Hedwig's: a warning says so, without a traceback."""
    note_id, conversation_id = note.id, note.conversation_id
    try:
        return deliver(note)
    except Exception:
        db.session.rollback()
        if db.session.scalar(select(Note.id).where(Note.id == note_id)) is None:
            current_app.logger.warning(
                "Note %s to conversation %s was deleted with its record while it was being "
                "sent: it may have arrived.",
                note_id,
                conversation_id,
            )
            db.session.rollback()
            return "deleted"
        current_app.logger.exception("Sending note %s stopped", note_id)
        db.session.execute(
            update(Note)
            .where(Note.id == note_id, Note.state == "sending")
            .values(state="failed", finished_at=utcnow(), reason=MAY_HAVE_ARRIVED)
        )
        db.session.commit()
        return "failed"


MAY_HAVE_ARRIVED = "Hedwig stopped while sending it: it may have arrived. Retry sends it again."


def deliver(note: Note) -> str:
    """Send one claimed note or reply (then reopen its conversation and assign it back, if
    asked), and keep the outcome."""
    connection = db.session.scalar(
        select(IntercomConnection).where(IntercomConnection.workspace_id == note.workspace_id)
    )
    if connection is None:
        return finish(note, "failed", "the workspace was disconnected before it was sent")
    if connection.needs_reconnecting or not connection.admin_id:
        reason = connection.needs_reconnecting or "the connection names no admin to write as"
        return wait_for_reconnect(note, connection, reason)
    path = f"/conversations/{note.conversation_id}"
    author = {"admin_id": connection.admin_id}
    step = "reopening"
    try:
        if note.noted_at is None:
            # A reply is a comment, which the customer sees; a note only the team.
            kind = {"message_type": "comment" if note.kind == "reply" else "note"}
            note_json = kind | {"type": "admin", "body": note.body} | author
            intercom_response(
                "POST", f"{path}/reply", connection.token, connection.region, json=note_json
            )
            note.noted_at = utcnow()
            db.session.commit()  # told: a crash from here on never tells again
        if note.reopen:
            reopen_json = {"message_type": "open"} | author
            intercom_response(
                "POST", f"{path}/parts", connection.token, connection.region, json=reopen_json
            )
        if note.reopen and note.assignee_id:
            step = "assigning it back"
            assign_json = {"message_type": "assignment", "type": "admin"} | author
            assign_json["assignee_id"] = note.assignee_id
            intercom_response(
                "POST", f"{path}/parts", connection.token, connection.region, json=assign_json
            )
    except IntercomError as error:
        return after_refusal(note, connection, error, step)
    return finish(note, "sent")


def after_refusal(
    note: Note, connection: IntercomConnection, error: IntercomError, step: str = "reopening"
) -> str:
    """Keep what Intercom's refusal means for the note: ``step`` names what failed once the
    note itself had arrived (reopening, or assigning it back)."""
    status, noted = error.http_status, note.noted_at is not None
    if error.arrived is None and not noted:
        # The note went out and no answer came: sending it again might say it twice.
        return finish(note, "failed", f"{error}: it may have arrived. Retry sends it again.")
    if status == 401:
        # The token was revoked, or the app lacks a permission (error.code says which, and so
        # does the reason owners read): either way, notes wait for a reconnect after the fix.
        # A 403 (the plan lacks the API) is not mended by reconnecting: it fails below.
        return wait_for_reconnect(note, connection, str(error))
    if status == 429:
        # Every note to this workspace waits: Intercom limits the app, not the conversation.
        resume = utcnow() + timedelta(seconds=error.retry_after or RATE_LIMIT_WAIT)
        db.session.execute(
            update(Note)
            .where(
                Note.workspace_id == note.workspace_id,
                Note.state == "pending",
                Note.next_attempt_at < resume,
            )
            .values(next_attempt_at=resume)
        )
        return pending_again(note, resume, f"waiting: {error}", "waiting")
    if status is not None and status < 500:  # 404 and any other refusal: trying again won't help
        if noted:
            return finish(note, "sent", f"the note arrived, but {step} failed: {error}")
        return finish(note, "failed", str(error))
    note.attempts += 1
    if note.attempts >= NOTE_ATTEMPTS:
        return finish(note, "failed", f"{error} (tried {NOTE_ATTEMPTS} times)")
    retry_at = utcnow() + timedelta(seconds=RETRY_DELAYS[note.attempts - 1])
    reason = f"try {note.attempts} of {NOTE_ATTEMPTS} failed: {error}"
    return pending_again(note, retry_at, reason, "waiting")


def wait_for_reconnect(note: Note, connection: IntercomConnection, reason: str) -> str:
    """Intercom refused the token (or Hedwig cannot use it): the workspace needs reconnecting,
    and its notes wait for that."""
    refuse_connection(connection, reason)
    waiting = waiting_for_reconnect(connection.workspace_name)
    db.session.execute(
        update(Note)
        .where(Note.workspace_id == note.workspace_id, Note.state == "pending")
        .values(reason=waiting)
    )
    return pending_again(note, utcnow(), waiting, "waiting")


def pending_again(note: Note, next_attempt_at: datetime, reason: str, outcome: str) -> str:
    note.state, note.next_attempt_at, note.reason, note.claimed_at = (
        "pending",
        next_attempt_at,
        reason,
        None,
    )
    db.session.commit()
    return outcome


def finish(note: Note, state: str, reason: str = "") -> str:
    note.state, note.reason, note.finished_at, note.claimed_at = state, reason, utcnow(), None
    db.session.commit()
    if state == "failed":
        current_app.logger.warning(
            "Note %s to conversation %s failed: %s", note.id, note.conversation_id, reason
        )
    return state


def release_abandoned_notes() -> None:
    """Notes a sender claimed and never finished (its process stopped): a note whose delivery
    is unknown has failed, for a person to retry, since sending it again might say it twice;
    one only left to reopen its conversation (and assign it back) is pending again (doing
    either twice is harmless)."""
    abandoned = utcnow() - timedelta(seconds=abandoned_after())
    sending = (Note.state == "sending", Note.claimed_at < abandoned)
    db.session.execute(
        update(Note)
        .where(*sending, Note.noted_at.is_(None))
        .values(
            state="failed",
            finished_at=utcnow(),
            reason=MAY_HAVE_ARRIVED,
        )
    )
    db.session.execute(update(Note).where(*sending).values(state="pending", claimed_at=None))
    db.session.commit()


def abandoned_after() -> float:
    """Seconds after which a claim is abandoned: twice the longest a sender holds one (three
    calls to Intercom: the note, reopening, assigning; each cut off at its deadline) and a
    minute, so that a note is never marked failed, for a person to retry, while its call
    could still be under way."""
    return 2 * (3 * call_seconds()) + 60


def wake_sender() -> None:
    """Send the notes and read the companies now, in a thread of this process, so that no page
    waits for Intercom. HEDWIG_SEND_NOTES_AT_ONCE=false leaves them to `flask send-notes` and
    `flask refresh-companies` (timers)."""
    app = current_app._get_current_object()
    if app.config["SEND_NOTES_AT_ONCE"]:
        app.extensions.setdefault("hedwig_sender", NoteSender(app)).wake()


def wake_sender_if_asked() -> None:
    """Wake the sender if this request's committed evidence asked for a company read
    (records.ask_for_company), or its change wrote webhooks (webhooks_out.announce): most
    saves do neither, and wake nothing."""
    companies = db.session.info.pop("companies_asked", False)
    if db.session.info.pop("webhooks_announced", False) or companies:
        wake_sender()


def seconds_until_next_due() -> float | None:
    """How long until a note, a company read or a webhook comes due (None: none will), read
    in one statement."""
    return seconds_until_due(next_due_at(Note), next_due_at(ContactCompany), next_delivery_at())


class NoteSender:
    """This process's sender thread: it sends the notes and reads the companies that are due,
    sleeps until the next comes due, and ends when none is left (a reconnect, a new change or
    new evidence wakes it again)."""

    IDLE_MAX = 10 * 60  # seconds: a note due later than that is left to the next wake
    # Seconds between two looks for claims a stopped process left: at the first wake, then
    # at most this often (a claim is abandoned only minutes after it was made), not at each.
    RELEASE_EVERY = 60

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.woken = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stopped = False
        self.released_at: float | None = None

    def wake(self) -> None:
        with self.lock:
            self.woken.set()
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="hedwig-notes", daemon=True)
                self.thread.start()

    def run(self) -> None:
        with self.app.app_context():
            while True:
                self.woken.clear()
                try:
                    wait = self.send_what_is_due()
                except Exception:  # a database gone away: the next wake, or a timer, goes on
                    current_app.logger.exception("Sending notes stopped")
                    db.session.rollback()
                    wait = None
                finally:
                    db.session.remove()
                with self.lock:
                    idle = (wait is None or wait > self.IDLE_MAX) and not self.woken.is_set()
                    if idle or self.stopped:
                        self.thread = None
                        return
                self.woken.wait(wait if wait is not None else None)

    def send_what_is_due(self) -> float | None:
        """Send the notes, read the companies and send the webhooks that are due, if any is
        (one statement tells, when none is: a wake after a save often finds nothing to do, its
        read waiting for a reconnect); how long until the next comes due."""
        release = self.release_due()
        wait = None if release else seconds_until_next_due()
        if release or wait == 0:
            send_notes(release=release)
            read_companies(release=release)
            send_webhooks(release=release)
            wait = seconds_until_next_due()
        return wait

    def release_due(self) -> bool:
        """Whether this wake looks for abandoned claims (RELEASE_EVERY)."""
        now = time.monotonic()
        if self.released_at is not None and now - self.released_at < self.RELEASE_EVERY:
            return False
        self.released_at = now
        return True

    def stop(self, timeout: float | None = None) -> None:
        """End the thread once it is done with what it is doing (the tests do, after each)."""
        with self.lock:
            self.stopped = True
            self.woken.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (the tests do)."""
        thread = self.thread
        if thread is not None:
            thread.join(timeout)
