"""Issues that move the status: GitHub's and Linear's signed webhooks. A closed, merged or
reopened issue changes the status of every record that links it, as a person's change would:
kept in the history (naming the issue), a note to each conversation when the status notes by
default, and a reply to the customers when an owner turned "reply automatically" on for that
status (replies.py). Owns verifying each delivery (its HMAC, in constant time; Linear's
timestamp; a delivery seen before changes nothing), reading which issue it is about and what
became of it, and making the change. Imports database, plumbing, issues, status, replies and
outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, current_app, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from hedwig_app.database import begin_write, lock_rows
from hedwig_app.issues import github_key, linear_key
from hedwig_app.outbox import wake_sender
from hedwig_app.plumbing import field, json_object, read_body, signed_webhook, text_or_none
from hedwig_app.replies import add_replies, reply_templates
from hedwig_app.status import NOTIFY_BY_DEFAULT, set_status
from hedwig_app.webhooks_out import announce, status_data
from models import ID_MAX, STATUSES, Feedback, IssueLink, WebhookDelivery, db

webhooks_in = Blueprint("webhooks_in", __name__)
DELIVERY_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{ID_MAX}}}")
LINEAR_CLOCK_SKEW = 60  # seconds: a Linear delivery signed longer ago (or ahead) is refused
# What became of a Linear issue (its workflow state's type), as a record's status.
LINEAR_STATES = {"completed": "done", "canceled": "declined", "started": "in_progress"}
# What became of a GitHub issue closed for this reason (none: closed before GitHub kept one).
GITHUB_CLOSED = {"completed": "done", None: "done", "not_planned": "declined"}


@dataclass(frozen=True)
class Moved:
    """A delivery that asks for a status: the issue's key, the status, and why, as the
    history and the team's note say it."""

    key: str
    status: str
    message: str


@webhooks_in.post("/webhooks/github")
@signed_webhook
def github_webhook() -> tuple[dict[str, Any], int]:
    body = signed_body("GITHUB_WEBHOOK_SECRET", "X-Hub-Signature-256", prefix="sha256=")
    event = request.headers.get("X-GitHub-Event", "")
    if event == "ping":
        return {"ok": "pong"}, 200
    moved = github_moved(event, delivered_object(body))
    return answer("github", request.headers.get("X-GitHub-Delivery"), body, moved)


@webhooks_in.post("/webhooks/linear")
@signed_webhook
def linear_webhook() -> tuple[dict[str, Any], int]:
    body = signed_body("LINEAR_WEBHOOK_SECRET", "Linear-Signature")
    payload = delivered_object(body)
    signed_at = payload.get("webhookTimestamp")
    if (
        isinstance(signed_at, bool)
        or not isinstance(signed_at, int | float)
        or abs(time.time() - signed_at / 1000) > LINEAR_CLOCK_SKEW
    ):
        abort(401, f"The delivery's webhookTimestamp is not within {LINEAR_CLOCK_SKEW} seconds.")
    moved = linear_moved(payload)
    return answer("linear", request.headers.get("Linear-Delivery"), body, moved)


@webhooks_in.errorhandler(HTTPException)
def webhook_error(error: HTTPException) -> tuple[dict[str, str], int]:
    """GitHub and Linear show the answer in their deliveries' log: JSON, saying why."""
    return {"error": error.description or ""}, error.code or 500


def signed_body(setting: str, header: str, prefix: str = "") -> bytes:
    """The raw body, verified: 404 while the secret is unset (the endpoint is off), 413 past
    the size allowed, 401 when the signature is missing or does not match."""
    secret = current_app.config[setting]
    if not secret:
        abort(404, f"This webhook is off: HEDWIG_{setting} is not set.")
    body = read_body(current_app.config["WEBHOOK_MAX_CONTENT_LENGTH"])
    expected = prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), request.headers.get(header, "").encode()):
        abort(401, f"The delivery's {header} does not match its body.")
    return body


def delivered_object(body: bytes) -> dict[str, Any]:
    payload = json_object(body)
    if payload is None:
        abort(400, "The delivery's body is not a JSON object.")
    return payload


def github_moved(event: str, payload: Mapping[str, Any]) -> Moved | None:
    """The status a GitHub issue or pull request event asks for: closed as completed, or a
    pull request merged, is done; closed as not planned, declined; reopened, in progress."""
    action, repository = (
        payload.get("action"),
        text_or_none(field(payload, "repository", "full_name")),
    )
    kind = {"issues": "issue", "pull_request": "pull_request"}.get(event)
    number = field(payload, kind, "number") if kind else None
    if not repository or isinstance(number, bool) or not isinstance(number, int):
        return None
    what = f"{repository}#{number}" if kind == "issue" else f"pull request {repository}#{number}"
    if action == "reopened":
        return Moved(github_key(repository, number), "in_progress", f"GitHub: {what} was reopened.")
    if action != "closed":
        return None
    if kind == "pull_request":
        if field(payload, "pull_request", "merged") is not True:
            return None
        return Moved(github_key(repository, number), "done", f"GitHub: {what} was merged.")
    reason = field(payload, "issue", "state_reason")
    if reason not in GITHUB_CLOSED:  # closed as a duplicate, say: nothing to tell
        return None
    said = "as not planned" if reason == "not_planned" else "as completed"
    return Moved(
        github_key(repository, number), GITHUB_CLOSED[reason], f"GitHub: {what} was closed {said}."
    )


def linear_moved(payload: Mapping[str, Any]) -> Moved | None:
    """The status a Linear issue's update asks for, when its workflow state changed: to a
    completed state, done; canceled, declined; started, in progress."""
    if payload.get("type") != "Issue" or payload.get("action") != "update":
        return None
    if "stateId" not in (payload.get("updatedFrom") or {}):  # its state did not change
        return None
    status = LINEAR_STATES.get(field(payload, "data", "state", "type"))
    identifier = text_or_none(field(payload, "data", "identifier"), ID_MAX)
    if status is None or not identifier:
        return None
    state = text_or_none(field(payload, "data", "state", "name")) or STATUSES[status]
    return Moved(linear_key(identifier), status, f"Linear: {identifier} moved to {state}.")


def answer(
    source: str, delivery: str | None, body: bytes, moved: Moved | None
) -> tuple[dict[str, Any], int]:
    """Make the change a verified delivery asks for, once, and commit it: 200, and what it
    changed."""
    if moved is None:
        return {"ignored": "no status change asked for"}, 200
    # A delivery without a usable id is known by its body: the same bytes, the same delivery.
    if not delivery or not DELIVERY_ID.fullmatch(delivery):
        delivery = hashlib.sha256(body).hexdigest()
    changed = move_records(source, delivery, moved)
    if changed is None:
        return {"ignored": "this delivery was received before"}, 200
    db.session.commit()
    if changed:
        wake_sender()
    return {"changed": changed}, 200


def move_records(source: str, delivery: str, moved: Moved) -> list[int] | None:
    """Change the status of every record that links the issue, and keep the delivery, in one
    transaction (the caller commits): the records changed, or None, rolled back, when the
    delivery was kept before."""
    begin_write(WebhookDelivery)  # the same delivery twice at once: the second waits, then sees it
    if db.session.get(WebhookDelivery, (source, delivery)) is not None:
        db.session.rollback()
        return None
    db.session.add(WebhookDelivery(source=source, delivery_id=delivery))
    links = db.session.scalars(
        select(IssueLink).where(IssueLink.issue_key == moved.key).order_by(IssueLink.feedback_id)
    ).all()
    issue_urls = {link.feedback_id: link.url for link in links}
    found = lock_rows(Feedback, issue_urls)
    replies = reply_templates()[moved.status]
    changed = []
    for feedback_id in sorted(found):
        record = db.session.get(Feedback, feedback_id)
        if record.status == moved.status:
            continue
        notify = moved.status in NOTIFY_BY_DEFAULT
        change = set_status(
            record, moved.status, moved.message, notify, False, issue_url=issue_urls[feedback_id]
        )
        if change is not None and replies.reply_automatically and replies.body:
            add_replies(record, change, replies.body)
        if change is not None:
            announce("status.changed", status_data(record, change.from_status, change.message))
        changed.append(feedback_id)
    return changed
