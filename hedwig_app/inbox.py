"""The Inbox app's endpoints. Intercom POSTs signed JSON to /intercom/canvas/initialize
(every time an agent opens a conversation) and /intercom/canvas/submit (when a button is
clicked); Hedwig verifies the body's signature, parses it, and answers with a canvas. Owns
reading and verifying those requests, choosing the canvas, and saving feedback and evidence
exactly once however often a submit arrives, then waking the reader of the customer's
company. Imports canvases, records, search and outbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from hedwig_app.canvases import (
    WORKSPACE_CONNECTION,
    InboxContext,
    add_canvas,
    added_canvas,
    close_read_connection,
    customers_words,
    find_canvas,
    first_canvas,
    form_canvas,
    not_connected_canvas,
    read_connection,
    saved_canvas,
    search_prefill,
)
from hedwig_app.outbox import wake_sender_if_asked
from hedwig_app.plumbing import (
    ID_LARGEST,
    clean_text,
    field,
    id_number,
    id_or_none,
    json_object,
    read_body,
    signed_by_intercom,
    text_or_none,
)
from hedwig_app.records import (
    add_evidence,
    merged_target,
    refresh_backing,
    save_new_record,
    validate_feedback,
)
from hedwig_app.search import SEARCH_MAX
from hedwig_app.webhooks_out import announce, evidence_data, record_data
from models import (
    DEFAULT_IMPORTANCE,
    DESCRIPTION_MAX,
    IMPORTANCES,
    PREVIEW_WORKSPACE_ID,
    QUOTE_MAX,
    TITLE_MAX,
    Evidence,
    Feedback,
    db,
)

inbox = Blueprint("inbox", __name__)
NONCE_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,64}")  # what secrets.token_urlsafe() gives


@inbox.post("/intercom/canvas/initialize")
@signed_by_intercom
def canvas_initialize() -> Response:
    payload = read_canvas_request()
    connected = workspace_connected(payload.get("workspace_id"), read_connection())
    return canvas_response(initialize_canvas(payload, connected))


@inbox.post("/intercom/canvas/submit")
@signed_by_intercom
def canvas_submit() -> Response:
    payload = read_canvas_request()
    # On the ORM session's connection: a save goes on to use it.
    connected = workspace_connected(payload.get("workspace_id"), db.session.connection())
    return canvas_response(submit_canvas(payload, connected))


@inbox.errorhandler(HTTPException)
def canvas_error(error: HTTPException) -> tuple[dict[str, str], int]:
    """Intercom reads JSON, not pages."""
    return {"error": error.description or ""}, error.code or 500


def read_canvas_request() -> dict[str, Any]:
    """The verified JSON object Intercom sent, or an abort: 413, 503, 401, 400 in that order."""
    body = read_body(current_app.config["CANVAS_MAX_CONTENT_LENGTH"])
    secret = current_app.config["INTERCOM_CLIENT_SECRET"]
    if not secret:
        current_app.logger.error("Canvas request refused: HEDWIG_INTERCOM_CLIENT_SECRET is not set")
        abort(503, "Hedwig has no Intercom client secret configured, so it cannot verify requests.")
    # The signature comes first: nothing of an unverified body is parsed or trusted.
    if not verify_canvas_signature(body, request.headers.get("X-Body-Signature"), secret):
        abort(401, "The request's X-Body-Signature does not match its body.")
    payload = json_object(body)
    if payload is None:
        abort(400, "The request body is not a JSON object.")
    return payload


def verify_canvas_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """True only for the exact hex HMAC-SHA256 of the raw body, keyed with the client secret."""
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), (signature or "").encode())


def canvas_response(body: dict[str, Any]) -> Response:
    response = Response(json.dumps(body, ensure_ascii=False), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def workspace_connected(workspace_id: Any, connection: Connection) -> bool:
    """Whether the request's workspace is connected. The preview's workspace never is: a real
    canvas request naming it is refused like any unconnected one."""
    workspace_id = id_or_none(workspace_id)
    if workspace_id == PREVIEW_WORKSPACE_ID:
        return False
    found = connection.execute(WORKSPACE_CONNECTION, {"workspace_id": workspace_id})
    return found.first() is not None


def initialize_canvas(payload: Mapping[str, Any], connected: bool) -> dict[str, Any]:
    """The answer to an initialize request (from Intercom, or from the preview)."""
    if not connected:
        return not_connected_canvas()
    return first_canvas(InboxContext.from_payload(payload))


def submit_canvas(payload: Mapping[str, Any], connected: bool) -> dict[str, Any]:
    """The answer to a submit request, by the component that was clicked."""
    if not connected:
        return not_connected_canvas()
    context = InboxContext.from_payload(payload)
    component_id = payload.get("component_id")
    stored_query = field(payload, "current_canvas", "stored_data", "query")
    typed = clean_text(field(payload.get("input_values"), "query"), SEARCH_MAX)[:SEARCH_MAX]
    query = typed or (text_or_none(stored_query, SEARCH_MAX) or "")
    if component_id == "save":
        return save_feedback(context, payload)
    if component_id == "add":
        return add_customer(context, payload)
    if component_id in ("record", "another"):
        return find_canvas(context, search_prefill(context))
    if component_id in ("query", "find"):
        return find_canvas(context, query)
    if component_id == "new":
        return form_canvas(context, title=query[:TITLE_MAX], query=query)
    if isinstance(component_id, str) and component_id.startswith("match-"):
        record = visible_record(id_number(component_id.removeprefix("match-")), context)
        return add_canvas(context, record, query) if record else find_canvas(context, query)
    return first_canvas(context)  # "back", "done", or anything unknown


def save_feedback(context: InboxContext, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A new record and its first piece of evidence, stored once however often it arrives:
    the agent's title and details, and the customer's opening message as their words."""
    inputs = payload.get("input_values")
    title = clean_text(field(inputs, "title"), TITLE_MAX)
    quote = customers_words(context)
    details = submitted_details(inputs, quote)
    query = text_or_none(field(payload, "current_canvas", "stored_data", "query"), SEARCH_MAX)
    errors = validate_feedback({"title": title, "description": details})
    importance = submitted_importance(inputs)
    if importance is None:
        errors["importance"] = IMPORTANCE_REFUSED
    nonce = submitted_nonce(payload)
    if nonce is None:
        errors["form"] = "This form has expired. Check the details and save again."
    if errors:
        return form_canvas(
            context,
            title[:TITLE_MAX],
            details[:DESCRIPTION_MAX],
            errors,
            query or "",
            importance or "",
        )
    try:
        # The record is inserted whole, once, and so is its row in the search index (an
        # UPDATE would rewrite that row).
        record = save_new_record(
            {
                "title": title,
                "description": details,
                "source": "intercom",
                "workspace_id": context.workspace_id,
            },
            {"quote": quote, "submit_nonce": nonce, "importance": importance, **heard_in(context)},
        )
        announce("record.created", record_data(record))  # one INSERT … SELECT, most often of none
        db.session.commit()
    except IntegrityError:
        # The same form again (double click, retry, replay, another worker): the unique nonce
        # refused a second row, so answer with the record the first submit made.
        db.session.rollback()
        first = evidence_with_nonce(nonce)
        if first is None or first.workspace_id != context.workspace_id:
            # A nonce another workspace spent: this form is not one Hedwig gave out here.
            errors = {"form": "This form has expired. Check the details and save again."}
            return form_canvas(context, title, details, errors, query or "")
        record = first.feedback
    wake_sender_if_asked()
    return saved_canvas(record)


def submitted_details(inputs: Any, quote: str) -> str:
    """The agent's details, or none when they only repeat the customer's ``quote``. A form
    given out before the form asked for details sends the customer's words as "quote": what
    the agent left there is kept as the details."""
    details = field(inputs, "details")
    details = clean_text(field(inputs, "quote") if details is None else details, DESCRIPTION_MAX)
    return "" if details.split() == quote.split() else details


def add_customer(context: InboxContext, payload: Mapping[str, Any]) -> dict[str, Any]:
    """This conversation's customer, backing a record found by the search: added once,
    however often it arrives, and never twice from one conversation."""
    stored = field(payload, "current_canvas", "stored_data")
    query = text_or_none(field(stored, "query"), SEARCH_MAX) or ""
    record = visible_record(field(stored, "feedback_id"), context)
    nonce = submitted_nonce(payload)
    if record is None or nonce is None:
        return find_canvas(context, query)
    quote = clean_text(field(payload.get("input_values"), "quote"), QUOTE_MAX)
    importance = submitted_importance(payload.get("input_values"))
    if len(quote) > QUOTE_MAX or importance is None:
        error = IMPORTANCE_REFUSED if importance is None else ""
        return add_canvas(context, record, query, quote[:QUOTE_MAX], importance or "", error)
    record_id_ = record.id
    try:
        evidence = add_evidence(
            record, quote=quote, submit_nonce=nonce, importance=importance, **heard_in(context)
        )
        refresh_backing(record)
        db.session.flush()
        announce("evidence.added", record_data(record) | {"evidence": evidence_data(evidence)})
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        first = evidence_with_nonce(nonce)
        if first is None:
            backed = db.session.get(Feedback, record_id_)
            if backed is None:  # deleted or merged meanwhile: the agent chooses again
                return find_canvas(context, query)
            # This conversation backs the record already: nothing changes.
            return added_canvas(context, backed, already=True)
        if first.workspace_id != context.workspace_id:  # a nonce another workspace spent
            return find_canvas(context, query)
        return added_canvas(context, first.feedback, already=False)  # the same click again
    wake_sender_if_asked()
    return added_canvas(context, record, already=False)


IMPORTANCE_REFUSED = "Choose how much it matters to them: " + ", ".join(IMPORTANCES.values()) + "."


def submitted_importance(inputs: Any) -> str | None:
    """The chosen option's id, or the default when the canvas asked nothing (one given out
    before the question was); None for any other value, which is refused."""
    importance = field(inputs, "importance")
    if importance is None:
        return DEFAULT_IMPORTANCE
    return importance if isinstance(importance, str) and importance in IMPORTANCES else None


def heard_in(context: InboxContext) -> dict[str, Any]:
    """The evidence's customer and provenance, as the canvas request gives them."""
    return {
        "source": "intercom",
        "customer_name": context.customer_name,
        "customer_email": context.customer_email,
        "contact_id": context.contact_id,
        "workspace_id": context.workspace_id,
        "region": context.region,
        "conversation_id": context.conversation_id,
        "admin_id": context.admin_id,
        "admin_name": context.admin_name,
        "admin_email": context.admin_email,
    }


def visible_record(feedback_id: Any, context: InboxContext) -> Feedback | None:
    """The record a canvas names, if this workspace's Inbox may show it (a merged record
    leads to the one it was merged into)."""
    if not isinstance(feedback_id, int) or not 1 <= feedback_id <= ID_LARGEST:
        return None
    record = db.session.get(Feedback, feedback_id) or merged_target(feedback_id)
    if record is None or record.workspace_id != context.workspace_id:
        return None
    return record


def submitted_nonce(payload: Mapping[str, Any]) -> str | None:
    nonce = field(payload, "current_canvas", "stored_data", "nonce")
    return nonce if isinstance(nonce, str) and NONCE_SHAPE.fullmatch(nonce) else None


def evidence_with_nonce(nonce: str) -> Evidence | None:
    return db.session.scalar(select(Evidence).where(Evidence.submit_nonce == nonce))


inbox.teardown_app_request(close_read_connection)
