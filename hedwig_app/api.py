"""The JSON API, /api/v1: everything a person does with records, a script does with a
personal API token (``Authorization: Bearer``, made on /account). JSON in and out, errors as
``{"error": {"code", "message"}}``, never a page. Each token is rate limited (the count is
kept in the database, which every worker process shares). The views reuse the log's, the
loop's and the records' own rules and helpers. Imports plumbing, auth, records, search,
status, replies, outbox and log.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, current_app, g, request
from sqlalchemy import case, delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from hedwig_app.auth import api_token
from hedwig_app.openapi import openapi_document
from hedwig_app.outbox import wake_sender, wake_sender_if_asked
from hedwig_app.plumbing import (
    ID_LARGEST,
    bearer_token,
    clean_text,
    external_url,
    json_error,
    json_object,
    read_body,
)
from hedwig_app.records import (
    EVIDENCE_FIELDS,
    RECORD_FIELDS,
    RecordConflict,
    RecordGone,
    add_evidence,
    hold_records,
    merge_records,
    merged_target,
    refresh_backing,
    validate_feedback,
    workspace_names,
)
from hedwig_app.replies import add_replies, reply_error
from hedwig_app.search import (
    SORT_KEYS,
    SORT_ORDERS,
    SORT_VALUE_LARGEST,
    Cursor,
    listed_feedback,
    rows_past,
)
from hedwig_app.status import (
    NOTIFY_BY_DEFAULT,
    set_status,
    status_history,
    validate_status_change,
)
from hedwig_app.webhooks_out import announce, evidence_data, record_data, status_data
from models import (
    DEFAULT_IMPORTANCE,
    ID_MAX,
    IMPORTANCES,
    MESSAGE_MAX,
    NAME_MAX,
    REPLY_MAX,
    STATUSES,
    ApiToken,
    Evidence,
    Feedback,
    IdempotencyKey,
    StatusChange,
    db,
    utcnow,
)

api = Blueprint("api", __name__, url_prefix="/api/v1")
RATE_WINDOW = timedelta(minutes=1)
BODY_MAX = 256 * 1024  # bytes: a record's details and a quote are 10,000 characters each
PAGE_DEFAULT, PAGE_MAX = 50, 200


class Invalid(Exception):
    """Input refused (422, or ``status``): a message, and each field's."""

    def __init__(self, message: str, fields: Mapping[str, str] | None = None, status: int = 422):
        super().__init__(message)
        self.fields, self.status = dict(fields or {}), status


@api.errorhandler(Invalid)
def invalid(error: Invalid) -> Response:
    db.session.rollback()  # nothing half-written
    code = "invalid" if error.status == 422 else "bad_request"
    return json_error(error.status, code, str(error), **({"fields": error.fields}))


@api.errorhandler(RecordConflict)
def conflict(error: RecordConflict) -> Response:
    db.session.rollback()
    return json_error(409, "conflict", str(error))


# --- Who asks: the token, and its rate limit ---------------------------------------------------


@api.before_request
def authenticate() -> Response | None:
    """The token's user is the request's user, with their role; the request is counted
    (committed before the work, so that a failing request counts too)."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    token = api_token(secret.strip()) if scheme.lower() == "bearer" and secret.strip() else None
    if token is None:
        response = json_error(
            401,
            "unauthorized",
            "Send a live API token as 'Authorization: Bearer <token>': make one on "
            "your account page. A revoked token, or a removed teammate's, works no more.",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="hedwig"'
        return response
    window_start, count = count_request(token)
    db.session.commit()
    limit = current_app.config["API_RATE_LIMIT"]  # a minute's requests (RATE_WINDOW)
    if limit and count > limit:
        retry = max(1, math.ceil((window_start + RATE_WINDOW - utcnow()).total_seconds()))
        response = json_error(
            429,
            "rate_limited",
            f"A token makes at most {limit} requests a minute: try again in {retry} s.",
        )
        response.headers["Retry-After"] = str(retry)
        return response
    g.user, g.api_token = token.user, token
    return None


def count_request(token: ApiToken) -> tuple[datetime, int]:
    """Count the request in the token's minute, in one UPDATE (concurrent requests of one
    token, from any worker, count one after the other): its minute's start and count."""
    now = utcnow()
    fresh = or_(ApiToken.window_start.is_(None), ApiToken.window_start <= now - RATE_WINDOW)
    row = db.session.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id)
        .values(
            window_start=case((fresh, now), else_=ApiToken.window_start),
            window_count=case((fresh, 1), else_=ApiToken.window_count + 1),
            last_used_at=now,
        )
        .returning(ApiToken.window_start, ApiToken.window_count)
        .execution_options(synchronize_session=False)
    ).one()
    return row.window_start, row.window_count


# --- Idempotency-Key: a POST sent again gets its first answer -----------------------------------

IDEMPOTENCY_WINDOW = timedelta(hours=24)
# A claim with no answer this long after: its request died with its process (gunicorn ends a
# request after 30 s), and the key is free again.
CLAIM_ABANDONED = timedelta(minutes=5)


@api.before_request
def replay_or_claim() -> Response | None:
    """A POST with an Idempotency-Key: the first answer again when the key was used with the
    same request within IDEMPOTENCY_WINDOW, 422 when with another, else the key is claimed
    (committed, so that the same request sent twice at once runs once: the second gets 409)."""
    if request.method not in ("POST", "PATCH"):
        return None
    g.raw_body = read_body(BODY_MAX)
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or key is None:
        return None
    if not 0 < len(key) <= NAME_MAX:
        return json_error(400, "bad_request", f"An Idempotency-Key has 1 to {NAME_MAX} characters.")
    digest = hashlib.sha256(f"{request.method} {request.path}\n".encode() + g.raw_body).hexdigest()
    db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at <= utcnow() - IDEMPOTENCY_WINDOW)
    )
    kept = db.session.get(IdempotencyKey, (g.api_token.id, key))
    if kept is not None and kept.status is None and kept.created_at <= utcnow() - CLAIM_ABANDONED:
        db.session.delete(kept)
        db.session.flush()
        kept = None
    if kept is None:
        try:
            db.session.add(IdempotencyKey(token_id=g.api_token.id, key=key, body_hash=digest))
            db.session.commit()
        except IntegrityError:  # the same key, at this moment, in another request
            db.session.rollback()
            kept = db.session.get(IdempotencyKey, (g.api_token.id, key))
    if kept is None:
        g.idempotency_key = key
        return None
    return kept_answer(kept, digest)


def kept_answer(kept: IdempotencyKey, digest: str) -> Response:
    if kept.body_hash != digest:
        return json_error(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was sent with another request: use a new key for it.",
        )
    if kept.status is None:
        return json_error(409, "in_progress", "The first request with this key is still running.")
    response = Response(kept.body, kept.status, mimetype="application/json")
    if kept.location:
        response.headers["Location"] = kept.location
    response.headers["Idempotent-Replayed"] = "true"
    return response


@api.after_request
def keep_answer(response: Response) -> Response:
    """Keep the answer to a claimed key; a server error frees the key, to be tried again."""
    key = g.pop("idempotency_key", None)
    if key is None:
        return response
    db.session.rollback()
    kept = db.session.get(IdempotencyKey, (g.api_token.id, key))
    if kept is not None:
        if response.status_code >= 500:
            db.session.delete(kept)
        else:
            kept.status, kept.body = response.status_code, response.get_data(as_text=True)
            kept.location = response.headers.get("Location")
        db.session.commit()
    return response


# --- Reading: the list and a record ------------------------------------------------------------


@api.get("/records")
@bearer_token
def list_records() -> Any:
    """The log's list (search.listed_feedback), a page at a time: ``next`` is the next
    page's URL, or null."""
    filters = list_filters()
    limit = int_arg("limit", PAGE_DEFAULT, PAGE_MAX)
    statement = listed_feedback(
        filters["q"], filters["sort"], filters["status"], None, filters["plan"]
    )
    if filters["updated_since"]:
        statement = statement.where(Feedback.updated_at >= filters["updated_since"])
    cursor = read_cursor(request.args.get("cursor"))
    keyed = filters["sort"] in SORT_ORDERS or not filters["q"]
    sort = filters["sort"] if filters["sort"] in SORT_ORDERS else "newest"
    # Each record's issues in one more query, not one each.
    statement = statement.options(selectinload(Feedback.issue_links))
    if keyed and cursor:  # past the cursor's record, from a seek on the sort's index
        records = rows_past(statement, SORT_KEYS[sort], sort_cursor(sort, cursor), limit + 1)
    else:  # a search's own ranking has no key to continue from: its cursor is an offset
        offset = cursor.get("offset", 0) if cursor and not keyed else 0
        records = list(db.session.scalars(statement.limit(limit + 1).offset(offset)))
    more = len(records) > limit
    records = records[:limit]
    next_url = None
    if more:
        if keyed:
            last = records[-1]
            position = {"key": sort_value(last, sort), "id": last.id}
        else:
            position = {"offset": (cursor or {}).get("offset", 0) + limit}
        args = {name: value for name, value in request.args.items() if name != "cursor"}
        next_url = external_url("api.list_records", **args, cursor=write_cursor(position))
    return {"records": [record_json(record) for record in records], "next": next_url}


def list_filters() -> dict[str, Any]:
    args, errors = request.args, {}
    status, sort, plan = args.get("status") or None, args.get("sort") or None, args.get("plan")
    if status and status not in STATUSES:
        errors["status"] = f"One of {', '.join(STATUSES)}."
    if sort and sort not in SORT_ORDERS and sort != "best":
        errors["sort"] = f"One of best, {', '.join(SORT_ORDERS)}."
    since = None
    if args.get("updated_since"):
        try:
            since = datetime.fromisoformat(args["updated_since"].replace("Z", "+00:00"))
        except ValueError:
            errors["updated_since"] = "An ISO 8601 time, such as 2026-01-31T09:00:00Z."
        if since is not None:
            since = utc_naive(since)
    if errors:
        raise Invalid("Some of the list's parameters are not understood.", errors, 400)
    q = clean_text(args.get("q", ""), 200)[:200]
    return {"q": q, "sort": sort, "status": status, "plan": plan or None, "updated_since": since}


def utc_naive(moment: datetime) -> datetime:
    """As the database keeps times: naive UTC."""
    offset = moment.utcoffset() or timedelta(0)
    return (moment - offset).replace(tzinfo=None)


def int_arg(name: str, default: int, largest: int) -> int:
    value = request.args.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit() and 1 <= int(value) <= largest):
        raise Invalid(f"{name} is a number from 1 to {largest}.", {name: "Out of range."}, 400)
    return int(value)


def read_cursor(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        cursor = json_object(base64.urlsafe_b64decode(value.encode() + b"=="))
    except ValueError:  # not base64
        cursor = None
    if cursor is None:
        raise damaged_cursor()
    return cursor


def damaged_cursor() -> Invalid:
    return Invalid("This cursor is not one Hedwig made.", {"cursor": "Not understood."}, 400)


def write_cursor(position: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def sort_value(record: Feedback, sort: str) -> Any:
    value = getattr(record, SORT_KEYS[sort].key)
    return value.isoformat() if isinstance(value, datetime) else value


def sort_cursor(sort: str, cursor: Mapping[str, Any]) -> Cursor:
    """The cursor's record, as the sort orders it: its sort value and id; 400 if it is not a
    value that sort's column holds."""
    key, last_id = cursor.get("key"), cursor.get("id")
    try:
        if sort == "newest":
            key = datetime.fromisoformat(key)
        elif type(key) is not int or not 0 <= key <= SORT_VALUE_LARGEST:
            raise TypeError
        if type(last_id) is not int or not 0 < last_id <= ID_LARGEST:
            raise TypeError
    except (TypeError, ValueError):
        raise damaged_cursor() from None
    return key, last_id


def record_json(record: Feedback) -> dict[str, Any]:
    return {
        "id": record.id,
        "title": record.title,
        "details": record.description,
        "status": record.status,
        "customers": record.customer_count,
        "companies": record.company_count,
        "monthly_spend": record.monthly_spend,
        "url": external_url("log.show_feedback", feedback_id=record.id),
        "api_url": external_url("api.get_record", feedback_id=record.id),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
        "issues": [
            {"tracker": link.tracker, "name": link.name, "url": link.url}
            for link in record.issue_links
        ],
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment else None


def evidence_json(evidence: Evidence) -> dict[str, Any]:
    company = evidence.company
    return {
        "id": evidence.id,
        "customer": {"name": evidence.customer_name, "email": evidence.customer_email},
        "company": (
            {"name": company.name, "plan": company.plan, "monthly_spend": company.monthly_spend}
            if company
            else None
        ),
        "quote": evidence.quote,
        "conversation_url": evidence.conversation_url,
        "agent": evidence.admin_name or evidence.admin_email,
        "importance": evidence.importance,
        "created_at": iso(evidence.created_at),
    }


def change_json(change: StatusChange) -> dict[str, Any]:
    return {
        "from": change.from_status,
        "to": change.to_status,
        "message": change.message,
        "by": change.changed_by.email if change.changed_by else None,
        "issue_url": change.issue_url,
        "changed_at": iso(change.changed_at),
    }


def full_record_json(record: Feedback) -> dict[str, Any]:
    return record_json(record) | {
        "evidence": [evidence_json(evidence) for evidence in record.evidence],
        "history": [change_json(change) for change in status_history(record)],
    }


@api.get("/records/<id:feedback_id>")
@bearer_token
def get_record(feedback_id: int) -> Any:
    return full_record_json(found_record(feedback_id, follow_merge=True))


def found_record(feedback_id: int, follow_merge: bool = False) -> Feedback:
    """The record, or: a merged id leads to its target's URL for good (301, when reading), or
    is refused (409, when changing); an unknown id is 404."""
    record = db.session.get(Feedback, feedback_id)
    if record is not None:
        return record
    into = merged_target(feedback_id)
    if into is None:
        abort(404, f"There is no record #{feedback_id}: it was deleted, or never was.")
    if follow_merge:
        response = json_error(
            301, "moved", f"#{feedback_id} was merged into #{into.id}.", id=into.id
        )
        response.headers["Location"] = external_url("api.get_record", feedback_id=into.id)
        abort(response)
    raise RecordConflict(f"#{feedback_id} was merged into #{into.id}: nothing was changed.")


@api.get("/openapi.json")
@bearer_token
def openapi() -> Any:
    """The API's OpenAPI 3.1 document (with a token, as every route: it says what a token
    may do)."""
    return openapi_document(external_url("api.list_records").removesuffix("/records"))


# --- Changing: records, evidence, statuses -----------------------------------------------------


def json_body() -> dict[str, Any]:
    """The request's JSON object, or 400 (not JSON, not an object) or 413 (too large)."""
    body = json_object(g.raw_body)
    if body is None:
        raise Invalid("The body is not a JSON object.", status=400)
    return body


def text_fields(body: Mapping[str, Any], limits: Mapping[str, int]) -> dict[str, str]:
    """Each of these fields that was sent, as clean text; 422 if one is not text."""
    wrong = {
        name: "Text, please."
        for name in limits
        if name in body and not isinstance(body[name], str | type(None))
    }
    if wrong:
        raise Invalid("Some fields are not text.", wrong)
    return {
        name: clean_text(body[name] or "", limit) for name, limit in limits.items() if name in body
    }


# The API's names for the record's and evidence's fields, and the forms' names for them.
API_FIELDS = {"details": "description"}


def record_values(body: Mapping[str, Any]) -> dict[str, str]:
    renamed = {API_FIELDS.get(name, name): value for name, value in body.items()}
    return text_fields(renamed, RECORD_FIELDS | EVIDENCE_FIELDS)


def checked(errors: Mapping[str, str]) -> None:
    """422 with each field's message, in the API's names for them."""
    if errors:
        named = {"details" if name == "description" else name: m for name, m in errors.items()}
        raise Invalid("Some fields need another look.", named)


@api.post("/records")
@bearer_token
def create_record() -> Any:
    """A record, and its first piece of evidence when a customer or their words are given."""
    body = json_body()
    values = {"title": "", "description": ""} | record_values(body)
    importance = body.get("importance", DEFAULT_IMPORTANCE)
    errors = validate_feedback(values)
    if importance not in IMPORTANCES:
        errors["importance"] = f"One of {', '.join(IMPORTANCES)}."
    checked(errors)
    record = Feedback(
        title=values["title"],
        description=values["description"],
        source="web",
        created_by_id=g.user.id,
    )
    db.session.add(record)
    if any(values.get(name) for name in EVIDENCE_FIELDS):
        add_evidence(
            record,
            source="web",
            created_by_id=g.user.id,
            importance=importance,
            **{name: values.get(name, "") for name in EVIDENCE_FIELDS},
        )
    refresh_backing(record)
    db.session.flush()
    announce("record.created", record_data(record))
    db.session.commit()
    wake_sender_if_asked()
    return full_record_json(record), 201, {"Location": record_json(record)["api_url"]}


@api.patch("/records/<id:feedback_id>")
@bearer_token
def update_record(feedback_id: int) -> Any:
    body = json_body()
    record = found_record(feedback_id)
    sent = record_values({name: body[name] for name in ("title", "details") if name in body})
    values = {"title": record.title, "description": record.description} | sent
    checked(validate_feedback(values))
    hold_records(record)  # RecordGone (409) when it went meanwhile
    if (record.title, record.description) != (values["title"], values["description"]):
        record.title, record.description = values["title"], values["description"]
        announce("record.updated", record_data(record))
    db.session.commit()
    wake_sender_if_asked()
    return full_record_json(record)


def owner_required() -> None:
    if not g.user.is_owner:
        abort(403, "Only an owner of this Hedwig can do that: ask one of them.")


@api.delete("/records/<id:feedback_id>")
@bearer_token
def delete_record(feedback_id: int) -> Any:
    owner_required()
    record = found_record(feedback_id)
    hold_records(record, exclusive=True)
    announce("record.deleted", record_data(record))
    db.session.delete(record)
    db.session.commit()
    wake_sender_if_asked()
    return Response(status=204)


@api.post("/records/<id:feedback_id>/merge")
@bearer_token
def merge_record(feedback_id: int) -> Any:
    """Merge this record into ``into``: its evidence moves there, and its id leads there."""
    owner_required()
    body = json_body()
    into_id = body.get("into")
    if not isinstance(into_id, int) or isinstance(into_id, bool) or into_id == feedback_id:
        raise Invalid("Merge into which record?", {"into": "Another record's id."})
    duplicate = found_record(feedback_id)
    target = db.session.get(Feedback, into_id) or merged_target(into_id)
    if target is None or target.id == duplicate.id:
        raise Invalid("Merge into which record?", {"into": f"There is no record #{into_id}."})
    moved = merge_records(duplicate, target)
    announce("record.merged", {"merged_id": feedback_id, **record_data(target)})
    db.session.commit()
    wake_sender_if_asked()
    return {"moved": moved, "record": full_record_json(target)}


@api.post("/records/<id:feedback_id>/evidence")
@bearer_token
def add_record_evidence(feedback_id: int) -> Any:
    """A customer backing the record, as the canvas adds one: a conversation backs a record
    once (409), and the same customer again adds evidence but no customer."""
    body = json_body()
    record = found_record(feedback_id)
    values = {"title": record.title} | record_values(
        {name: body[name] for name in EVIDENCE_FIELDS if name in body}
    )
    ids = text_fields(body, {"conversation_id": ID_MAX, "workspace_id": ID_MAX})
    importance = body.get("importance", DEFAULT_IMPORTANCE)
    errors = validate_feedback(values)
    if importance not in IMPORTANCES:
        errors["importance"] = f"One of {', '.join(IMPORTANCES)}."
    if not any(values.get(name) for name in EVIDENCE_FIELDS):
        errors["customer_name"] = "Name the customer, give their email, or their words."
    workspace = conversation_workspace(ids, errors)
    checked(errors)
    hold_records(record)
    conversation = ids.get("conversation_id") or None
    evidence = add_evidence(
        record,
        source="intercom" if conversation else "web",
        workspace_id=workspace,
        conversation_id=conversation,
        created_by_id=g.user.id,
        importance=importance,
        **{name: values.get(name, "") for name in EVIDENCE_FIELDS},
    )
    try:
        refresh_backing(record)  # flushes: a conversation backing it already fails its key
    except IntegrityError:
        db.session.rollback()
        raise RecordConflict(
            f"Conversation {conversation} backs #{feedback_id} already: nothing was added."
        ) from None
    announce("evidence.added", record_data(record) | {"evidence": evidence_data(evidence)})
    db.session.commit()
    wake_sender_if_asked()
    return evidence_json(evidence) | {"record": record_json(record)}, 201


def conversation_workspace(ids: Mapping[str, str], errors: dict[str, str]) -> str | None:
    """The connected workspace a conversation is in: the one named, or the only one."""
    workspaces = workspace_names()
    workspace = ids.get("workspace_id") or None
    if workspace and workspace not in workspaces:
        errors["workspace_id"] = "A connected workspace's id."
    if ids.get("conversation_id") and workspace is None:
        if len(workspaces) != 1:
            errors["workspace_id"] = "Which connected workspace is the conversation in?"
        else:
            workspace = next(iter(workspaces))
    return workspace


@api.post("/records/<id:feedback_id>/status")
@bearer_token
def change_record_status(feedback_id: int) -> Any:
    """A status change as the record's page makes it (status.set_status): its message, a note
    to each conversation (``notify``, else the status's default) and a ``reply`` to each
    customer."""
    body = json_body()
    record = found_record(feedback_id)
    texts = text_fields(body, {"status": 32, "message": MESSAGE_MAX, "reply": REPLY_MAX})
    values = {"status": "", "message": ""} | texts
    errors = validate_status_change(record, values)
    notify = body.get("notify", values["status"] in NOTIFY_BY_DEFAULT)
    if not isinstance(notify, bool):
        errors["notify"] = "true or false."
    reply = texts.get("reply", "")
    if reply and reply_error(reply):
        errors["reply"] = reply_error(reply) or ""
    checked(errors)
    try:
        change = set_status(record, values["status"], values["message"], notify, reopen=False)
    except RecordGone as gone:
        raise RecordConflict(f"{gone} No status was changed.") from None
    if change is None:
        raise Invalid("Nothing to change.", validate_status_change(record, values))
    if reply:
        add_replies(record, change, reply)
    announce("status.changed", status_data(record, change.from_status, change.message))
    db.session.commit()
    wake_sender()
    return full_record_json(record)
