"""The customers' companies, read from Intercom after the evidence is saved. Saving evidence
asks for its contact's company (records.ask_for_company, in the save's transaction); a reader
claims each asked-for contact (pending → reading), calls GET /contacts/{id}/companies on the
workspace's regional host, stores each company once per workspace (updated, never copied),
names the one that pays most as the contact's, and weighs again every record the contact, or
a company that changed, backs. Intercom's refusals end as notes' do: a 429 makes the
workspace's reads wait, a 5xx or a timeout is tried again (READ_ATTEMPTS in all), a revoked
token waits for a reconnect; a missing permission, a 403 or a 404 ends the read with the reason
the record shows. The agent's click never waits for any of it. The canvas preview's contacts
belong to sample companies, read from here. Imports database, intercom and records.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import literal, or_, select, update

from hedwig_app.database import claim_first, upsert_insert
from hedwig_app.intercom import (
    IntercomError,
    call_intercom,
    call_seconds,
    due_for_intercom,
    next_due_at,
    refuse_connection,
    seconds_until_due,
)
from hedwig_app.plumbing import id_or_none, text_or_none
from hedwig_app.records import THE_CONTACT, reweigh_records
from models import (
    ID_MAX,
    PREVIEW_WORKSPACE_ID,
    Company,
    ContactCompany,
    Evidence,
    IntercomConnection,
    db,
    utcnow,
)

READ_ATTEMPTS = 5  # tries of a read Intercom fails on (5xx, timeouts), then it has failed
RETRY_DELAYS = (30, 60, 120, 240)  # seconds before the 2nd, 3rd, 4th and 5th try
RATE_LIMIT_WAIT = 10  # seconds, when a 429 says neither Retry-After nor X-RateLimit-Reset
SPEND_LARGEST = 10**15  # a monthly spend past this is not one Intercom keeps
NO_COMPANY = "Intercom names no company for this customer"
# The canvas preview's customers belong to these, chosen by their contact id.
PREVIEW_COMPANIES = (
    {"id": "preview-acme", "name": "Acme Inc", "monthly_spend": 1290, "plan": "Pro", "size": 40},
    {"id": "preview-globex", "name": "Globex", "monthly_spend": 5000, "plan": "Enterprise"},
    {"id": "preview-initech", "name": "Initech", "monthly_spend": 49, "plan": "Starter"},
)


def read_companies(
    limit: int | None = None, wait_max: float = 0, release: bool = True
) -> Counter[str]:
    """Read the contacts' companies that are due (at most ``limit``), waiting up to
    ``wait_max`` seconds for one coming due (after a 429), first releasing abandoned claims
    with ``release``: how many ended read, failed, or waiting (for later, or a reconnect)."""
    outcomes: Counter[str] = Counter()
    if release:
        release_abandoned_reads()
    while limit is None or outcomes.total() < limit:
        asked = claim_next_read()
        if asked is not None:
            outcomes[read_or_fail(asked)] += 1
            continue
        if not wait_max:
            break
        wait = seconds_until_due(next_due_at(ContactCompany))
        if wait is None or wait > wait_max:
            break
        time.sleep(wait)
    return outcomes


def claim_next_read() -> ContactCompany | None:
    """The next contact whose company is due, claimed by this reader with one UPDATE."""
    now = utcnow()
    return claim_first(ContactCompany, due_for_intercom(ContactCompany, now), now, "reading")


def read_or_fail(asked: ContactCompany) -> str:
    """read_company(), and if anything unexpected stops it, the read fails with the reason,
    and the reader goes on to the next."""
    asked_id = asked.id
    try:
        return read_company(asked)
    except Exception:
        db.session.rollback()
        current_app.logger.exception("Reading the company of contact row %s stopped", asked_id)
        db.session.execute(
            update(ContactCompany)
            .where(ContactCompany.id == asked_id, ContactCompany.state == "reading")
            .values(
                state="failed",
                read_at=utcnow(),
                claimed_at=None,
                reason="Hedwig stopped while reading it (its log says why)",
            )
        )
        db.session.commit()
        return "failed"


def read_company(asked: ContactCompany) -> str:
    """Read one claimed contact's companies and keep the outcome; weigh again what it backs."""
    if asked.workspace_id == PREVIEW_WORKSPACE_ID:
        return keep_companies(asked, [preview_company(asked.contact_id)])
    connection = db.session.scalar(
        select(IntercomConnection).where(IntercomConnection.workspace_id == asked.workspace_id)
    )
    if connection is None:
        return finish(asked, "failed", "the workspace was disconnected before it was read")
    if connection.needs_reconnecting:
        return wait_for_reconnect(asked, connection, connection.needs_reconnecting)
    path = f"/contacts/{asked.contact_id}/companies"
    try:
        answer = call_intercom("GET", path, connection.token, connection.region)
    except IntercomError as error:
        return after_refusal(asked, connection, error)
    companies = companies_in(answer)
    if companies is None:
        return finish(asked, "failed", f"Intercom's answer to {path} named no list of companies")
    return keep_companies(asked, companies)


def companies_in(answer: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The companies of a /contacts/{id}/companies answer ({"type": "list", "data": […]}),
    each with what Hedwig keeps; None when the answer is not such a list. A company without
    an id is left out; the first page (Intercom's default of 15) is all Hedwig reads."""
    data = answer.get("data")
    if not isinstance(data, list):
        return None
    companies = []
    for company in data:
        if not isinstance(company, dict) or id_or_none(company.get("id")) is None:
            continue
        plan = company.get("plan")
        companies.append(
            {
                "id": id_or_none(company.get("id")),
                "name": text_or_none(company.get("name")) or "",
                "monthly_spend": whole_number(company.get("monthly_spend")) or 0,
                "plan": text_or_none(plan.get("name") if isinstance(plan, dict) else None),
                "size": whole_number(company.get("size")),
            }
        )
    return companies


def whole_number(value: Any) -> int | None:
    """A count or an amount as Intercom gives it (a whole number, or a float it truncates),
    or None for anything else: a string, a negative, a bool, a number past SPEND_LARGEST."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return int(value) if 0 <= value <= SPEND_LARGEST else None


def preview_company(contact_id: str) -> dict[str, Any]:
    digest = hashlib.sha256(contact_id.encode()).digest()
    return PREVIEW_COMPANIES[digest[0] % len(PREVIEW_COMPANIES)]


def keep_companies(asked: ContactCompany, companies: list[dict[str, Any]]) -> str:
    """Store the companies (once per workspace), name the one that pays most as the contact's,
    and weigh again the records the contact backs, and those of any company that changed."""
    changed, stored = set(), {}
    for found in companies:
        company = db.session.scalar(
            select(Company).where(
                Company.workspace_id == asked.workspace_id,
                Company.intercom_id == found["id"][:ID_MAX],
            )
        ) or Company(workspace_id=asked.workspace_id, intercom_id=found["id"][:ID_MAX])
        if company.id and (company.monthly_spend, company.plan) != (
            found["monthly_spend"],
            found["plan"],
        ):
            changed.add(company.id)
        company.name, company.monthly_spend = found["name"], found["monthly_spend"]
        company.plan, company.size = found.get("plan"), found.get("size")
        company.read_at = utcnow()
        db.session.add(company)
        stored[found["id"]] = company
    db.session.flush()
    paying_most = max(stored.values(), key=lambda company: company.monthly_spend, default=None)
    asked.company_id = paying_most.id if paying_most else None
    outcome = finish(asked, "read", "" if paying_most else NO_COMPANY)
    # Its own transaction, after the contact's: evidence saved meanwhile is weighed too.
    reweigh_records(backed_by(asked, changed))
    db.session.commit()
    return outcome


def backed_by(asked: ContactCompany, changed_companies: set[int]) -> list[int]:
    """The records backed by the contact, or by anyone in a company whose spend or plan
    changed."""
    contacts = select(ContactCompany.contact_id).where(
        ContactCompany.workspace_id == asked.workspace_id,
        or_(
            ContactCompany.id == asked.id,
            ContactCompany.company_id.in_(changed_companies or [-1]),
        ),
    )
    return list(
        db.session.scalars(
            select(Evidence.feedback_id)
            .where(Evidence.workspace_id == asked.workspace_id, Evidence.contact_id.in_(contacts))
            .distinct()
        )
    )


def after_refusal(
    asked: ContactCompany, connection: IntercomConnection, error: IntercomError
) -> str:
    status = error.http_status
    if status == 401 and error.code != "token_unauthorized":
        return wait_for_reconnect(asked, connection, str(error))
    if status == 429:
        # Every read in this workspace waits: Intercom limits the app, not the contact.
        resume = utcnow() + timedelta(seconds=error.retry_after or RATE_LIMIT_WAIT)
        db.session.execute(
            update(ContactCompany)
            .where(
                ContactCompany.workspace_id == asked.workspace_id,
                ContactCompany.state == "pending",
                ContactCompany.next_attempt_at < resume,
            )
            .values(next_attempt_at=resume)
        )
        return pending_again(asked, resume, f"waiting: {error}")
    if status is not None and status < 500:
        # A missing permission (401 token_unauthorized), 403, 404: trying again won't help;
        # a reconnect after the permission is added asks again (ask_again_after_reconnect).
        return finish(asked, "failed", str(error))
    asked.attempts += 1
    if asked.attempts >= READ_ATTEMPTS:
        return finish(asked, "failed", f"{error} (tried {READ_ATTEMPTS} times)")
    retry_at = utcnow() + timedelta(seconds=RETRY_DELAYS[asked.attempts - 1])
    return pending_again(
        asked, retry_at, f"try {asked.attempts} of {READ_ATTEMPTS} failed: {error}"
    )


def wait_for_reconnect(asked: ContactCompany, connection: IntercomConnection, reason: str) -> str:
    refuse_connection(connection, reason)
    return pending_again(
        asked, utcnow(), f"waiting for the workspace to be connected again: {reason}"
    )


def pending_again(asked: ContactCompany, next_attempt_at: datetime, reason: str) -> str:
    asked.state, asked.next_attempt_at, asked.reason, asked.claimed_at = (
        "pending",
        next_attempt_at,
        reason,
        None,
    )
    db.session.commit()
    return "waiting"


def finish(asked: ContactCompany, state: str, reason: str = "") -> str:
    asked.state = state
    asked.reason, asked.read_at, asked.claimed_at, asked.attempts = reason, utcnow(), None, 0
    db.session.commit()
    if state == "failed":
        current_app.logger.warning(
            "The company of contact %s could not be read: %s", asked.contact_id, reason
        )
    return state


def release_abandoned_reads() -> None:
    """Reads a reader claimed and never finished (its process stopped) are pending again:
    reading twice is harmless."""
    abandoned = utcnow() - timedelta(seconds=2 * call_seconds() + 60)
    db.session.execute(
        update(ContactCompany)
        .where(ContactCompany.state == "reading", ContactCompany.claimed_at < abandoned)
        .values(state="pending", claimed_at=None)
    )
    db.session.commit()


def ask_again(
    workspace_id: str | None = None,
    older_than: timedelta | None = None,
    failed_only: bool = False,
) -> int:
    """Ask for the companies of the contacts with evidence (in one workspace, or all): those
    never asked for, and those read (or failed: ``failed_only``) longer ago than
    ``older_than``, or at any time. How many were asked for. What refresh-companies does, and
    a reconnect for the reads that failed."""
    now = utcnow()
    in_workspace = [] if workspace_id is None else [ContactCompany.workspace_id == workspace_id]
    ended = ("failed",) if failed_only else ("read", "failed")
    since = [] if older_than is None else [ContactCompany.read_at < now - older_than]
    again = db.session.execute(
        update(ContactCompany)
        .where(ContactCompany.state.in_(ended), *in_workspace, *since)
        .values(state="pending", attempts=0, next_attempt_at=now, reason="")
    ).rowcount
    if failed_only:
        return again
    never = (
        select(
            Evidence.workspace_id,
            Evidence.contact_id,
            literal("pending"),
            literal(0),
            literal(now),
            literal(""),
        )
        .where(
            Evidence.workspace_id.is_not(None),
            Evidence.contact_id.is_not(None),
            ~select(ContactCompany.id).where(THE_CONTACT).exists(),
            *([] if workspace_id is None else [Evidence.workspace_id == workspace_id]),
        )
        .distinct()
    )
    columns = ["workspace_id", "contact_id", "state", "attempts", "next_attempt_at", "reason"]
    # Counted by RETURNING: an INSERT … SELECT's row count is not reported on every driver.
    # A contact a save asks for meanwhile is asked for already: nothing to do.
    new = db.session.execute(
        upsert_insert(ContactCompany, db.session.get_bind().dialect.name)
        .from_select(columns, never)
        .on_conflict_do_nothing()
        .returning(ContactCompany.id)
    )
    return again + len(new.all())
