"""Records and their evidence: a record (title, details) is backed by evidence, each piece a
customer who asked, where and by whom it was heard, and their words. Owns validating them,
adding evidence (and asking for its customer's company to be read), counting a record's
distinct customers and weighing their companies (its backing), merging a duplicate into
another record, and where a merged record's id leads. Imports database and plumbing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, and_, bindparam, delete, func, insert, select, update
from sqlalchemy.sql.dml import Insert

from hedwig_app.database import lock_rows, upsert_insert
from hedwig_app.plumbing import external_url
from models import (
    COMPANY_FRESH_SECONDS,
    CUSTOMERS_TEXT_MAX,
    DESCRIPTION_MAX,
    EMAIL_MAX,
    NAME_MAX,
    PREVIEW_WORKSPACE_ID,
    QUOTE_MAX,
    TITLE_MAX,
    Company,
    ContactCompany,
    Evidence,
    Feedback,
    IntercomConnection,
    IssueLink,
    MergedFeedback,
    Note,
    StatusChange,
    customer_key,
    db,
    is_email,
    utcnow,
)

RECORD_FIELDS = {"title": TITLE_MAX, "description": DESCRIPTION_MAX}
EVIDENCE_FIELDS = {"customer_name": NAME_MAX, "customer_email": EMAIL_MAX, "quote": QUOTE_MAX}


def validate_feedback(values: Mapping[str, str]) -> dict[str, str]:
    """Field name → message, for every invalid field; empty when all is well."""
    errors = {}
    if not values["title"]:
        errors["title"] = "A title is required."
    elif len(values["title"]) > TITLE_MAX:
        errors["title"] = f"Keep the title to {TITLE_MAX} characters ({len(values['title'])} now)."
    if len(values.get("description", "")) > DESCRIPTION_MAX:
        errors["description"] = f"Keep the details to {DESCRIPTION_MAX} characters."
    if len(values.get("quote", "")) > QUOTE_MAX:
        errors["quote"] = f"Keep the customer's words to {QUOTE_MAX} characters."
    email = values.get("customer_email", "")
    if email and not is_email(email):
        errors["customer_email"] = "Enter a valid email address, or leave it empty."
    if len(values.get("customer_name", "")) > NAME_MAX:
        errors["customer_name"] = f"Keep the name to {NAME_MAX} characters."
    return errors


def add_evidence(record: Feedback, **fields: Any) -> Evidence:
    """A customer backing the record; the caller refreshes the record's backing and commits
    (a conversation that backs the record already fails the unique constraint). A customer
    Intercom knows has their company read after the commit (ask_for_company)."""
    evidence = Evidence(feedback=record, **fields)
    evidence.customer_key = customer_key(
        evidence.customer_email or "",
        evidence.workspace_id,
        evidence.contact_id,
        evidence.customer_name or "",
    )
    db.session.add(evidence)
    if evidence.workspace_id and evidence.contact_id:
        ask_for_company(evidence.workspace_id, evidence.contact_id)
    return evidence


def ask_for_company(workspace_id: str, contact_id: str) -> None:
    """Have the contact's company read after this transaction commits: a contact never read
    is, and one read more than COMPANY_FRESH_SECONDS ago is read again. One statement, which
    on PostgreSQL also holds the contact's row until the commit, so that a read ending
    meanwhile weighs this transaction's evidence too (companies.read_company)."""
    connection = db.session.connection()
    now = utcnow()
    asked = connection.execute(
        company_asked(connection.dialect.name),
        {
            "workspace_id": workspace_id,
            "contact_id": contact_id,
            "now": now,
            "stale": now - timedelta(seconds=COMPANY_FRESH_SECONDS),
        },
    ).rowcount
    if asked:  # the view wakes the reader after its commit (outbox.wake_sender_if_asked)
        db.session.info["companies_asked"] = True


@functools.cache
def company_asked(dialect: str) -> Insert:
    """ask_for_company's statement: built once per kind of database, as a save runs it."""
    asked = upsert_insert(ContactCompany, dialect).values(
        workspace_id=bindparam("workspace_id"),
        contact_id=bindparam("contact_id"),
        next_attempt_at=bindparam("now"),
    )
    return asked.on_conflict_do_update(
        index_elements=["workspace_id", "contact_id"],
        set_={"state": "pending", "attempts": 0, "next_attempt_at": bindparam("now"), "reason": ""},
        where=and_(
            ContactCompany.state.in_(("read", "failed")),
            ContactCompany.read_at < bindparam("stale"),
        ),
    )


def refresh_backing(record: Feedback) -> None:
    """Count the record's distinct customers, weigh their companies and gather their words for
    the search, from its evidence as it stands in this transaction. The record is held first:
    two transactions adding evidence at once count one after the other, the second seeing
    the first's."""
    db.session.flush()
    lock_rows(Feedback, [record.id])
    rows = db.session.execute(
        select(
            Evidence.customer_key,
            Evidence.customer_name,
            Evidence.customer_email,
            Evidence.quote,
            Company.id.label("company_id"),
            Company.monthly_spend,
        )
        .outerjoin(ContactCompany, THE_CONTACT)
        .outerjoin(Company, Company.id == ContactCompany.company_id)
        .where(Evidence.feedback_id == record.id)
        .order_by(Evidence.id)
    ).all()
    set_backing(record, rows)
    set_weight(record, rows)


# Evidence and its contact's company: joined on the contact in its workspace.
THE_CONTACT = and_(
    ContactCompany.workspace_id == Evidence.workspace_id,
    ContactCompany.contact_id == Evidence.contact_id,
)


def set_backing(record: Feedback, evidence: Sequence[Any]) -> None:
    """The record's customer count and their words for the search, from ``evidence``."""
    record.customer_count = len({piece.customer_key for piece in evidence if piece.customer_key})
    record.customers_text = "\n".join(
        " ".join(filter(None, (piece.customer_name, piece.customer_email, piece.quote)))
        for piece in evidence
    )[:CUSTOMERS_TEXT_MAX]


def set_weight(record: Feedback, evidence: Iterable[Any]) -> None:
    """The record's distinct companies and their monthly spend, each company counted once
    however many of its people asked, from rows with ``company_id`` and ``monthly_spend``."""
    spend = {row.company_id: row.monthly_spend for row in evidence if row.company_id is not None}
    record.company_count, record.monthly_spend = len(spend), sum(spend.values())


def save_new_record(record: Mapping[str, Any], first: Mapping[str, Any]) -> Row:
    """A new record and its first piece of evidence, as the Inbox saves them at every Save:
    the record's id, title, status and customer count. It is the Inbox's one hot write, so it
    is three statements built once (NEW_RECORD, NEW_EVIDENCE), run on the session's
    connection with no unit of work: the customer's company asked for (ask_for_company, which
    on PostgreSQL holds the contact's row first), the record, weighing that company if it was
    read before, and the evidence (its unique nonce fails a second save of the same form: the
    caller rolls back). The caller commits."""
    workspace_id, contact_id = first.get("workspace_id"), first.get("contact_id")
    name, email = first.get("customer_name", ""), first.get("customer_email", "")
    key = customer_key(email, workspace_id, contact_id, name)
    if workspace_id and contact_id:
        ask_for_company(workspace_id, contact_id)
    said = " ".join(filter(None, (name, email, first.get("quote"))))
    connection = db.session.connection()
    saved = connection.execute(
        NEW_RECORD,
        {
            **record,
            "customer_count": 1 if key else 0,
            "customers_text": said[:CUSTOMERS_TEXT_MAX],
            "heard_workspace": workspace_id,
            "heard_contact": contact_id,
        },
    ).one()
    connection.execute(NEW_EVIDENCE, {**first, "feedback_id": saved.id, "customer_key": key})
    return saved


def known_company(value: Any) -> Any:
    """``value`` of the heard contact's company as read before (0 when none is known), inside
    the statement that inserts a new record."""
    known = (
        select(value)
        .join(ContactCompany, Company.id == ContactCompany.company_id)
        .where(
            ContactCompany.workspace_id == bindparam("heard_workspace"),
            ContactCompany.contact_id == bindparam("heard_contact"),
        )
    )
    return func.coalesce(known.scalar_subquery(), 0)


NEW_RECORD = (
    insert(Feedback)
    .values(
        company_count=known_company(func.count(Company.id)),
        monthly_spend=known_company(Company.monthly_spend),
    )
    .returning(Feedback.id, Feedback.title, Feedback.status, Feedback.customer_count)
)
NEW_EVIDENCE = insert(Evidence)


def reweigh_records(feedback_ids: Iterable[int]) -> None:
    """Weigh these records again (a company was read, or changed): each held, then counted.
    The caller commits."""
    for feedback_id in sorted(set(feedback_ids)):
        record = db.session.get(Feedback, feedback_id)
        if record is not None:
            refresh_backing(record)


class RecordConflict(Exception):
    """A change refused as things stand now; its message says why, in a sentence."""


class RecordGone(RecordConflict):
    """A record deleted, or merged into ``into``, since the page that changes it was loaded."""

    def __init__(self, feedback_id: int, into: Feedback | None) -> None:
        self.feedback_id, self.into = feedback_id, into
        what = f"merged into #{into.id}" if into else "deleted"
        super().__init__(f"#{feedback_id} was {what} meanwhile.")


def hold_records(*records: Feedback, exclusive: bool = False) -> None:
    """Begin the transaction that changes these records (``exclusive``: deletes or merges
    them), each held until it ends (lock_rows), and read them as they are now: a request that
    loaded them before another deleted or merged one is refused (RecordGone, rolled back), not
    run on rows that are gone."""
    ids = [record.id for record in records]
    for record in records:
        db.session.expire(record)
    found = lock_rows(Feedback, ids, exclusive)
    gone = next((feedback_id for feedback_id in ids if feedback_id not in found), None)
    if gone is not None:
        db.session.rollback()
        raise RecordGone(gone, merged_target(gone))


def merge_records(duplicate: Feedback, target: Feedback) -> int:
    """Move the duplicate's evidence to the target (a conversation already backing the target
    is not repeated), add its details to the target's, remember its id, and delete it: one
    transaction, the caller commits. RecordConflict, nothing changed, when the two are not to
    be merged (merge_refusal) or one of them went meanwhile."""
    hold_records(duplicate, target, exclusive=True)
    refusal = merge_refusal(duplicate, target)
    if refusal:
        db.session.rollback()
        raise RecordConflict(refusal)
    target.description = merged_description(duplicate, target)
    target.workspace_id = target.workspace_id or duplicate.workspace_id
    target.source = "+".join(sorted(set(target.sources) | set(duplicate.sources)))
    backed = set(
        db.session.execute(
            select(Evidence.workspace_id, Evidence.conversation_id).where(
                Evidence.feedback_id == target.id, Evidence.conversation_id.is_not(None)
            )
        ).all()
    )
    moved = 0
    for evidence in list(duplicate.evidence):
        if evidence.conversation_id and (evidence.workspace_id, evidence.conversation_id) in backed:
            continue  # deleted with the duplicate
        evidence.feedback = target
        moved += 1
    db.session.flush()
    # Links to the duplicate, and to records merged into it before, lead to the target now.
    db.session.execute(
        update(MergedFeedback)
        .where(MergedFeedback.into_id == duplicate.id)
        .values(into_id=target.id)
    )
    # Its history and its notes (sent, or still to send) go with its evidence, and so do its
    # issue links, but for those the target has already.
    linked = select(IssueLink.issue_key).where(IssueLink.feedback_id == target.id)
    db.session.execute(
        delete(IssueLink).where(
            IssueLink.feedback_id == duplicate.id, IssueLink.issue_key.in_(linked)
        )
    )
    for model in (StatusChange, Note, IssueLink):
        db.session.execute(
            update(model).where(model.feedback_id == duplicate.id).values(feedback_id=target.id)
        )
    db.session.add(MergedFeedback(id=duplicate.id, into_id=target.id))
    db.session.delete(duplicate)
    refresh_backing(target)
    return moved


def merge_refusal(duplicate: Feedback, target: Feedback) -> str | None:
    """Why the duplicate may not be merged into the target, or None. Records shown in two
    workspaces' Inboxes stay apart: merged, one workspace's agents would see the other's
    customers. A record shown in no Inbox (made on the web) merges with any, and the merged
    record is shown where the other one was."""
    if duplicate.workspace_id and target.workspace_id not in (None, duplicate.workspace_id):
        names = workspace_names() | {PREVIEW_WORKSPACE_ID: "Hedwig's canvas preview"}
        return (
            f"#{duplicate.id} is shown in the Inbox of "
            f"{names.get(duplicate.workspace_id, duplicate.workspace_id)}, and #{target.id} in "
            f"that of {names.get(target.workspace_id, target.workspace_id)}: records of two "
            "workspaces are not merged, so that neither workspace sees the other's customers."
        )
    length = len(merged_description(duplicate, target))
    if length > DESCRIPTION_MAX:
        return (
            f"Together, the details of #{target.id} and #{duplicate.id} would be {length:,} "
            f"characters, and a record keeps {DESCRIPTION_MAX:,}: shorten one of them first."
        )
    return None


def merged_description(duplicate: Feedback, target: Feedback) -> str:
    """The target's details, then the duplicate's title and details as a paragraph saying
    where they came from: nothing a person wrote is dropped by a merge."""
    kept = f"From #{duplicate.id} {duplicate.title}"
    if duplicate.description:
        kept += f":\n{duplicate.description}"
    return f"{target.description}\n\n{kept}" if target.description else kept


def merged_target(feedback_id: int | None) -> Feedback | None:
    merged = db.session.get(MergedFeedback, feedback_id) if feedback_id else None
    return db.session.get(Feedback, merged.into_id) if merged else None


def workspace_names() -> dict[str, str]:
    """Connected workspaces by id: a record made on the web may belong to one of them."""
    rows = db.session.execute(
        select(IntercomConnection.workspace_id, IntercomConnection.workspace_name)
    )
    return {workspace_id: name for workspace_id, name in rows}


def feedback_url(record: Feedback | Row) -> str:
    return external_url("log.show_feedback", feedback_id=record.id)
