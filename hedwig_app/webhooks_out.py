"""Outgoing webhooks: the endpoints owners add, the deliveries every change writes, and their
sender. ``announce()`` writes one delivery per enabled endpoint that asked for the event, in
one INSERT … SELECT inside the caller's transaction (nothing is sent before the change is
kept, nothing lost after; with no endpoint it writes nothing). A sender claims each delivery
with one UPDATE (pending → sending), as notes are claimed, so two senders never send one at
once; it POSTs the event signed as Stripe signs (``Hedwig-Signature: t=…,v1=…``), never
following a redirect, cut off at a deadline; a 2xx is done, anything else is tried again
later (RETRY_DELAYS), then failed. A claim abandoned by a crash is pending again: the
receiver may see a delivery twice, always with the same ``Hedwig-Delivery`` id. Loopback,
private and link-local addresses are refused when an endpoint is added, at each send, and
as each connection is made (PublicOnlyDeadline), unless HEDWIG_WEBHOOKS_ALLOW_PRIVATE=yes.
Imports plumbing and intercom (its bounded call).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import current_app
from sqlalchemy import DateTime, String, bindparam, cast, func, insert, literal, select, update

from hedwig_app.database import claim_first
from hedwig_app.intercom import CallDeadline, call_seconds, read_bounded
from hedwig_app.plumbing import external_url
from models import (
    WEBHOOK_EVENTS,
    WEBHOOK_URL_MAX,
    Feedback,
    OutgoingDelivery,
    WebhookEndpoint,
    db,
    utcnow,
)

# Seconds before the 2nd … 7th try; after the 7th fails, the delivery has failed.
RETRY_DELAYS = (30, 120, 600, 3600, 6 * 3600, 24 * 3600)
ATTEMPTS = len(RETRY_DELAYS) + 1
RECENT_DELIVERIES = 20  # shown per endpoint on the settings page

# Built once: the Inbox's save runs it at every Save. The delivery id is the event's id and
# the endpoint's, so each endpoint's copy has its own.
ANNOUNCE_COLUMNS = ["endpoint_id", "event", "delivery_id", "payload", "state", "attempts"]
ANNOUNCE_COLUMNS += ["next_attempt_at", "reason", "created_at"]
ANNOUNCE = insert(OutgoingDelivery.__table__).from_select(
    ANNOUNCE_COLUMNS,
    select(
        WebhookEndpoint.id,
        bindparam("event", type_=String),
        bindparam("event_id", type_=String) + cast(WebhookEndpoint.id, String),
        bindparam("payload", type_=String),
        literal("pending"),
        literal(0),
        bindparam("now", type_=DateTime),
        literal(""),
        bindparam("now", type_=DateTime),
    ).where(WebhookEndpoint.enabled.is_(True), WebhookEndpoint.events.like(bindparam("pattern"))),
)


def announce(event: str, data: dict[str, Any]) -> int:
    """Write ``event`` for every enabled endpoint that asked for it, in the caller's
    transaction: how many deliveries. The caller commits, then wakes the sender
    (outbox.wake_sender_if_asked)."""
    assert event in WEBHOOK_EVENTS, event
    written = db.session.execute(
        ANNOUNCE,
        {
            "event": event,
            "event_id": f"dlv_{uuid.uuid4().hex}_",
            "payload": json.dumps(data, separators=(",", ":"), default=str),
            "now": utcnow(),
            "pattern": f"% {event} %",
        },
    ).rowcount
    if written:
        db.session.info["webhooks_announced"] = True
    return written


def record_data(record: Feedback | Any) -> dict[str, Any]:
    """What an event tells of a record (a Feedback, or the row the Inbox's save returns)."""
    data = {"id": record.id, "title": record.title, "status": record.status}
    if isinstance(record, Feedback):
        data |= {
            "details": record.description,
            "customers": record.customer_count,
            "created_at": iso(record.created_at),
            "updated_at": iso(record.updated_at),
        }
    else:
        data["customers"] = record.customer_count
    data["url"] = external_url("log.show_feedback", feedback_id=record.id)
    return {"record": data}


def evidence_data(evidence: Any) -> dict[str, Any]:
    """What an event tells of a piece of evidence."""
    return {
        "id": evidence.id,
        "customer_name": evidence.customer_name,
        "customer_email": evidence.customer_email,
        "quote": evidence.quote,
        "importance": evidence.importance,
        "conversation_id": evidence.conversation_id,
        "created_at": iso(evidence.created_at),
    }


def status_data(record: Feedback, from_status: str, message: str) -> dict[str, Any]:
    return record_data(record) | {"from": from_status, "to": record.status, "message": message}


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


# Adding an endpoint


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def endpoint_refusal(url: str, events: list[str]) -> str | None:
    """Why an endpoint with this address and these events cannot be added, or None."""
    unknown = [event for event in events if event not in WEBHOOK_EVENTS]
    if unknown:
        return f"Unknown events: {', '.join(unknown)}. Choose from {', '.join(WEBHOOK_EVENTS)}."
    if not events:
        return "Choose at least one event."
    return url_refusal(url)


def url_refusal(url: str) -> str | None:
    """Why Hedwig will not send to this address, or None: http(s), a host, and (unless
    HEDWIG_WEBHOOKS_ALLOW_PRIVATE) every address it resolves to public."""
    parts = urlsplit(url)
    if len(url) > WEBHOOK_URL_MAX or parts.scheme not in ("http", "https") or not parts.hostname:
        return f"Give an http or https address, up to {WEBHOOK_URL_MAX} characters."
    if parts.username or parts.password:
        return "Give the address without a user name or password in it."
    if current_app.config["WEBHOOKS_ALLOW_PRIVATE"]:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        found = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError, UnicodeError):
        return f"{parts.hostname} could not be resolved to an address."
    for *_, address in found:
        refusal = address_refusal(parts.hostname, address[0])
        if refusal:
            return refusal
    return None


def address_refusal(host: str, address: str) -> str | None:
    """Why Hedwig will not send to this IP address (loopback, private, link-local), or None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # ::ffff:127.0.0.1
        ip = ip.ipv4_mapped
    if ip.is_global and not ip.is_multicast:
        return None
    return (
        f"{host} is a loopback, private or link-local address ({ip}): Hedwig sends webhooks "
        "only to public ones (HEDWIG_WEBHOOKS_ALLOW_PRIVATE=yes allows it)."
    )


class PublicOnlyDeadline(CallDeadline):
    """A call's deadline that also checks the address each connection reached, before a byte
    is sent: a name that resolved to a public address for url_refusal() and to a private one
    for the connection (DNS rebinding) is refused."""

    refusal: str | None = None

    def watch(self, sock: socket.socket) -> None:
        super().watch(sock)
        if current_app.config["WEBHOOKS_ALLOW_PRIVATE"]:
            return
        refusal = address_refusal("the endpoint", sock.getpeername()[0])
        if refusal:
            self.refusal = refusal
            raise ConnectionRefusedError(refusal)


def add_endpoint(
    url: str, events: list[str], enabled: bool = True, created_by_id: int | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (the caller shows it once, and commits);
    ValueError, with what to fix, when it cannot be added."""
    url = url.strip()
    refusal = endpoint_refusal(url, events)
    if refusal:
        raise ValueError(refusal)
    secret = new_secret()
    chosen = [event for event in WEBHOOK_EVENTS if event in events]
    endpoint = WebhookEndpoint(
        url=url, events=f" {' '.join(chosen)} ", enabled=enabled, created_by_id=created_by_id
    )
    endpoint.secret = secret
    db.session.add(endpoint)
    db.session.flush()
    return endpoint, secret


# Sending


def send_webhooks(retry_now: bool = False, release: bool = True) -> Counter[str]:
    """Send every due delivery (``retry_now``: every pending one, due or not), first
    releasing abandoned claims with ``release``; how many ended sent, failed, or waiting to be
    tried again."""
    outcomes: Counter[str] = Counter()
    if release:
        release_abandoned_deliveries()
    if retry_now:
        db.session.execute(
            update(OutgoingDelivery)
            .where(OutgoingDelivery.state == "pending")
            .values(next_attempt_at=utcnow())
        )
        db.session.commit()
    while (delivery := claim_next_delivery()) is not None:
        outcomes[deliver_or_leave(delivery)] += 1
    return outcomes


def deliver_or_leave(delivery: OutgoingDelivery) -> str:
    """deliver(), and if anything unexpected stops it (its endpoint deleted meanwhile, the
    database gone), the sender goes on to the next: a delivery left claimed is sent again
    once its claim is abandoned (release_abandoned_deliveries)."""
    row_id, delivery_id = delivery.id, delivery.delivery_id
    try:
        return deliver(delivery)
    except Exception:
        db.session.rollback()
        if db.session.get(OutgoingDelivery, row_id) is None:  # no fault: said without a trace
            current_app.logger.warning(
                "Webhook delivery %s was deleted with its endpoint while it was sent",
                delivery_id,
            )
            db.session.rollback()
            return "deleted"
        current_app.logger.exception("Sending webhook delivery %s stopped", delivery_id)
        db.session.rollback()
        return "stopped"


def claim_next_delivery() -> OutgoingDelivery | None:
    """The next due delivery, claimed by this sender in one UPDATE: of two, one moves it."""
    now = utcnow()
    due = (
        select(OutgoingDelivery.id)
        .where(OutgoingDelivery.state == "pending", OutgoingDelivery.next_attempt_at <= now)
        .order_by(OutgoingDelivery.next_attempt_at, OutgoingDelivery.id)
    )
    return claim_first(OutgoingDelivery, due, now, "sending")


def next_delivery_at() -> Any:
    """When the next pending delivery comes due (NULL: none is pending)."""
    pending = OutgoingDelivery.state == "pending"
    return select(func.min(OutgoingDelivery.next_attempt_at)).where(pending).scalar_subquery()


def release_abandoned_deliveries() -> None:
    """Deliveries a sender claimed and never finished (its process stopped) are pending again,
    once their call must have ended: the receiver may get one twice, with the same id."""
    abandoned = utcnow() - timedelta(seconds=2 * call_seconds() + 60)
    db.session.execute(
        update(OutgoingDelivery)
        .where(OutgoingDelivery.state == "sending", OutgoingDelivery.claimed_at < abandoned)
        .values(state="pending", claimed_at=None)
    )
    db.session.commit()


def signed_request(delivery: OutgoingDelivery, secret: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one try: the same id every try, signed afresh."""
    body = json.dumps(
        {
            "id": delivery.delivery_id,
            "event": delivery.event,
            "created_at": iso(delivery.created_at),
            "data": json.loads(delivery.payload),
        },
        separators=(",", ":"),
    ).encode()
    stamp = str(int(time.time()))
    signature = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Hedwig-Webhooks",
        "Hedwig-Event": delivery.event,
        "Hedwig-Delivery": delivery.delivery_id,
        "Hedwig-Signature": f"t={stamp},v1={signature.hexdigest()}",
    }
    return body, headers


def deliver(delivery: OutgoingDelivery) -> str:
    """One try of a claimed delivery, and its outcome kept."""
    endpoint = db.session.get(WebhookEndpoint, delivery.endpoint_id)
    secret = endpoint.secret if endpoint else None
    if endpoint is None or secret is None:
        return finish(delivery, "failed", None, "its endpoint's secret no longer decrypts")
    refusal = url_refusal(endpoint.url)
    if refusal:
        return try_failed(delivery, None, refusal)
    body, headers = signed_request(delivery, secret)
    timeout = current_app.config["INTERCOM_TIMEOUT"]
    deadline = PublicOnlyDeadline(call_seconds(), then_every=timeout)
    try:
        with deadline.session() as session, deadline:
            # Never follow a redirect: a 3xx is a failure, and the body goes nowhere else.
            response = session.post(
                endpoint.url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
            )
            read_bounded(response)
            response.close()
    except requests.RequestException as error:
        if deadline.refusal:
            return try_failed(delivery, None, deadline.refusal)
        reason = "no answer in time" if deadline.cut_off else type(error).__name__
        return try_failed(delivery, None, f"the endpoint did not answer: {reason}")
    if 200 <= response.status_code < 300:
        return finish(delivery, "sent", response.status_code)
    return try_failed(delivery, response.status_code, f"answered {response.status_code}")


def try_failed(delivery: OutgoingDelivery, code: int | None, reason: str) -> str:
    """Pending again after its delay, or failed after its last try."""
    delivery.attempts += 1
    if delivery.attempts >= ATTEMPTS:
        return finish(delivery, "failed", code, f"{reason} (tried {ATTEMPTS} times)")
    delivery.state, delivery.claimed_at = "pending", None
    delivery.response_code, delivery.reason = code, reason
    delay = RETRY_DELAYS[delivery.attempts - 1]
    delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
    db.session.commit()
    return "waiting"


def finish(delivery: OutgoingDelivery, state: str, code: int | None, reason: str = "") -> str:
    if state == "sent":
        delivery.attempts += 1
    delivery.state, delivery.claimed_at, delivery.finished_at = state, None, utcnow()
    delivery.response_code, delivery.reason = code, reason
    db.session.commit()
    if state == "failed":
        current_app.logger.warning("Webhook delivery %s failed: %s", delivery.delivery_id, reason)
    return state


def resend(delivery: OutgoingDelivery) -> None:
    """Send it again, now, with the same id (the caller commits and wakes the sender)."""
    if delivery.state != "sending":
        delivery.state, delivery.next_attempt_at, delivery.finished_at = "pending", utcnow(), None
        delivery.attempts = 0


def recent_deliveries(endpoint_id: int) -> list[OutgoingDelivery]:
    return list(
        db.session.scalars(
            select(OutgoingDelivery)
            .where(OutgoingDelivery.endpoint_id == endpoint_id)
            .order_by(OutgoingDelivery.id.desc())
            .limit(RECENT_DELIVERIES)
        )
    )
