"""The feedback log's pages: list (search; status, importance and plan filters; sort; pages),
show, add, edit, delete, merge, remove evidence, and the CSV export of every piece of evidence.
Views only: what a record is lives in records.py, finding it in search.py, its status in
status.py, its replies in replies.py. Imports auth, records, search, status and replies.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import contains_eager, selectinload

from hedwig_app.auth import owners_only
from hedwig_app.outbox import wake_sender_if_asked
from hedwig_app.plumbing import clean_text, form_text, plural, record_id
from hedwig_app.records import (
    EVIDENCE_FIELDS,
    RECORD_FIELDS,
    THE_CONTACT,
    RecordConflict,
    RecordGone,
    add_evidence,
    hold_records,
    merge_records,
    merge_refusal,
    merged_target,
    refresh_backing,
    validate_feedback,
    workspace_names,
)
from hedwig_app.replies import reply_form
from hedwig_app.search import (
    COUNT_CAP,
    PER_PAGE,
    SEARCH_MAX,
    SORT_KEYS,
    SORT_VALUE_LARGEST,
    Cursor,
    ListPage,
    company_plans,
    list_page,
    listed_feedback,
    search,
)
from hedwig_app.status import (
    conversations_to_note,
    notes_to_send,
    status_counts,
    status_form_defaults,
    status_history,
)
from hedwig_app.webhooks_out import announce, evidence_data, record_data
from models import (
    DEFAULT_IMPORTANCE,
    ID_MAX,
    IMPORTANCES,
    NAME_MAX,
    STATUSES,
    Company,
    ContactCompany,
    Evidence,
    Feedback,
    db,
)

feedback_log = Blueprint("log", __name__)
PAGE_MAX = 1_000_000
SORTS = ("best", "newest", "customers", "companies", "revenue")


@feedback_log.get("/")
def index() -> str:
    """The list: a search's pages by number, within its first COUNT_CAP matches; any other
    list's by cursor (?after=, ?before=: a record's sort column and id), so that a deep page
    costs what the first does. An old ?page= link to such a list still shows its page."""
    filters = list_filters()
    page = request.args.get("page", 1, type=int)
    ranked = bool(filters["q"]) and filters["sort"] in (None, "best")
    if not 1 <= page <= (COUNT_CAP // PER_PAGE if ranked else PAGE_MAX):
        if ranked and page > 1:
            abort(
                404, f"A search lists its first {COUNT_CAP:,} matches: add a word to find others."
            )
        abort(404, "There is no such page of the feedback log.")
    sort = filters["sort"] if filters["sort"] in SORT_KEYS else "newest"
    after, before = (list_cursor(name, sort) for name in ("after", "before"))
    counts = status_counts()
    by_status_alone = not (filters["q"] or filters["importance"] or filters["plan"])
    total = counts[filters["status"] or None] if by_status_alone else None
    listed = list_page(
        filters, page, after, before, selectinload(Feedback.issue_links), total=total
    )
    list_url = functools.partial(filtered_url, "log.index", filters)
    return render_template(
        "index.html",
        listed=listed,
        total=f"{listed.cap:,}+" if listed.total > listed.cap else f"{listed.total:,}",
        count_cap=COUNT_CAP,
        previous_url=list_url(**page_link(listed, sort, -1)) if listed.has_previous else None,
        next_url=list_url(**page_link(listed, sort, 1)) if listed.has_next else None,
        plans=company_plans(),
        status_counts=counts,
        list_url=list_url,
        csv_url=filtered_url("log.export_csv", filters),
        **filters,
    )


def list_cursor(name: str, sort: str) -> Cursor | None:
    """The list's ?after= or ?before=, as page_link wrote it for this sort: a record's sort
    column and id, "<value>_<id>". Anything else is refused (400), not guessed at."""
    text = request.args.get(name)
    if text is None:
        return None
    value, _, id_text = text.rpartition("_")
    try:
        if sort == "newest":
            key: Any = datetime.fromisoformat(value)
            if key.tzinfo is not None:
                raise ValueError("a local time")
        elif value.isascii() and value.isdigit() and int(value) <= SORT_VALUE_LARGEST:
            key = int(value)
        else:
            raise ValueError("not a count")
        return key, record_id(id_text)
    except ValueError:
        abort(
            400, f"This page's link is damaged (?{name}=): start again from the list's first page."
        )


def page_link(listed: ListPage, sort: str, step: int) -> dict[str, Any]:
    """The query arguments of the page before (``step`` -1) or after (1) this one: by number,
    or by a cursor on the record at this page's edge (none on an empty page: the first)."""
    if not listed.keyset:
        number = (listed.number or 1) + step
        return {"page": number if number > 1 else None}
    if not listed.records:
        return {}
    record = listed.records[0 if step < 0 else -1]
    value = getattr(record, SORT_KEYS[sort].key)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return {"before" if step < 0 else "after": f"{text}_{record.id}"}


def filtered_url(endpoint: str, filters: Mapping[str, Any], **changes: Any) -> str:
    """The list (or its CSV) with the filters and sort kept, but for ``changes``."""
    return url_for(endpoint, **{name: value or None for name, value in (filters | changes).items()})


@feedback_log.get("/feedback/<id:feedback_id>")
def show_feedback(feedback_id: int) -> Any:
    record = db.session.get(Feedback, feedback_id)
    if record is None:
        return to_merged_record(feedback_id, "log.show_feedback")
    return show_record(record)


@feedback_log.route("/feedback/new", methods=["GET", "POST"])
def new_feedback() -> Any:
    workspaces = workspace_names()
    if request.method == "GET":
        values = {"workspace_id": next(iter(workspaces)) if len(workspaces) == 1 else ""}
        return render_template("new.html", values=values, errors={}, workspaces=workspaces)
    values = {
        name: form_text(name, limit) for name, limit in (RECORD_FIELDS | EVIDENCE_FIELDS).items()
    }
    values["workspace_id"] = form_text("workspace_id", ID_MAX)
    values["importance"] = form_text("importance", ID_MAX) or DEFAULT_IMPORTANCE
    errors = validate_feedback(values)
    if values["workspace_id"] and values["workspace_id"] not in workspaces:
        errors["workspace_id"] = "Choose a connected workspace, or none."
    if values["importance"] not in IMPORTANCES:
        errors["importance"] = f"Choose how much it matters: {', '.join(IMPORTANCES.values())}."
    if errors:
        page = render_template("new.html", values=values, errors=errors, workspaces=workspaces)
        return page, 400
    record = Feedback(
        title=values["title"],
        description=values["description"],
        workspace_id=values["workspace_id"] or None,
        source="web",
        created_by_id=g.user.id,
    )
    db.session.add(record)
    if any(values[name] for name in EVIDENCE_FIELDS):
        add_evidence(
            record,
            source="web",
            created_by_id=g.user.id,
            importance=values["importance"],
            **{name: values[name] for name in EVIDENCE_FIELDS},
        )
    refresh_backing(record)
    db.session.flush()
    announce("record.created", record_data(record))
    db.session.commit()
    wake_sender_if_asked()
    flash(f"Feedback #{record.id} saved.")
    return redirect(url_for("log.show_feedback", feedback_id=record.id))


@feedback_log.route("/feedback/<id:feedback_id>/edit", methods=["GET", "POST"])
def edit_feedback(feedback_id: int) -> Any:
    record = db.session.get(Feedback, feedback_id)
    if request.method == "GET":
        if record is None:
            return to_merged_record(feedback_id, "log.edit_feedback")
        values = {"title": record.title, "description": record.description}
        return render_template("edit.html", feedback=record, values=values, errors={})
    values = {name: form_text(name, limit) for name, limit in RECORD_FIELDS.items()}
    errors = validate_feedback(values)
    if record is not None and not errors:
        try:
            hold_records(record)  # merged or deleted since the form was loaded: see below
        except RecordGone:
            record = None
    if record is None:
        return edited_elsewhere(feedback_id, values)
    if errors:
        page = render_template("edit.html", feedback=record, values=values, errors=errors)
        return page, 400
    changed = (record.title, record.description) != (values["title"], values["description"])
    record.title, record.description = values["title"], values["description"]
    if changed:
        db.session.flush()
        announce("record.updated", record_data(record))
    db.session.commit()
    wake_sender_if_asked()
    flash(f"Feedback #{feedback_id} saved.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


def edited_elsewhere(feedback_id: int, typed: Mapping[str, str]) -> tuple[str, int]:
    """An edit posted from the page of a record merged since (409: the edit page of the record
    it went into, what was typed beside it, unsaved), or deleted (404, the text kept too).
    The typed text is not saved over the other record's: it was written for this one."""
    into = merged_target(feedback_id)
    typed = {"Title": typed["title"], "Details": typed["description"]}
    if into is None:
        return missing_record(feedback_id, typed)
    values = {"title": into.title, "description": into.description}
    stale = {"feedback_id": feedback_id, "typed": typed}
    page = render_template("edit.html", feedback=into, values=values, errors={}, stale=stale)
    return page, 409


@feedback_log.route("/feedback/<id:feedback_id>/delete", methods=["GET", "POST"])
@owners_only
def delete_feedback(feedback_id: int) -> Any:
    """Ask first; then the record, its evidence and the links of records merged into it go."""
    record = db.get_or_404(Feedback, feedback_id)
    if request.method == "GET":
        return render_template("delete.html", feedback=record, unsent=unsent_notes(record))
    try:
        hold_records(record, exclusive=True)
    except RecordGone as gone:
        return changed_meanwhile(f"{gone} Nothing was deleted.", gone.into)
    title = record.title
    announce("record.deleted", record_data(record))
    db.session.delete(record)
    db.session.commit()
    wake_sender_if_asked()
    flash(f"Feedback #{feedback_id} deleted: {title}")
    return redirect(url_for("log.index"))


def unsent_notes(record: Feedback) -> str:
    """What deleting the record does to its notes not sent yet: they never will be."""
    count = notes_to_send(record)
    if not count:
        return ""
    are, they = ("is", "it") if count == 1 else ("are", "they")
    return (
        f"{plural(count, 'note')} to its conversations {are} still to be sent: {they} will not be."
    )


@feedback_log.route("/feedback/<id:feedback_id>/merge", methods=["GET", "POST"])
@owners_only
def merge_feedback(feedback_id: int) -> Any:
    """Merge a duplicate into another record: its evidence moves there, its details are added
    to the other's, and its id leads there from now on. GET asks to confirm the record chosen
    in ``into``, or says why the two are not merged (merge_refusal)."""
    duplicate = db.session.get(Feedback, feedback_id)
    if duplicate is None:
        return missing_record(feedback_id)
    if request.method == "GET" and "into" not in request.args:
        return merge_choices(duplicate)
    into_id = request.values.get("into", type=record_id)
    target = db.session.get(Feedback, into_id or 0) or merged_target(into_id)
    if target is None or target.id == duplicate.id:
        flash("Merge into which record? Choose another record, or find it by its title.")
        return redirect(url_for("log.show_feedback", feedback_id=duplicate.id))
    if request.method == "GET":
        refusal = merge_refusal(duplicate, target)
        return render_template("merge.html", duplicate=duplicate, target=target, refusal=refusal)
    try:
        moved = merge_records(duplicate, target)
    except RecordGone as gone:
        return changed_meanwhile(f"{gone} Nothing was merged.", gone.into)
    except RecordConflict as refused:
        page = render_template(
            "merge.html", duplicate=duplicate, target=target, refusal=str(refused)
        )
        return page, 409
    # Said from what this transaction wrote: once committed, the target may change again.
    done = (
        f"Feedback #{feedback_id} merged into #{target.id}: "
        f"{plural(moved, 'piece of evidence', 'pieces of evidence')} moved; "
        f"{plural(target.customer_count, 'customer')} back it now."
    )
    target_id = target.id
    db.session.flush()
    announce("record.merged", {"merged_id": feedback_id, **record_data(target)})
    db.session.commit()
    wake_sender_if_asked()
    flash(done)
    return redirect(url_for("log.show_feedback", feedback_id=target_id))


def merge_choices(duplicate: Feedback) -> Any:
    """The records ``?q=`` finds by their words (a number, "12" or "#12", goes straight to
    asking to merge into it), or those likeliest to be the same request, to choose from."""
    q = search_text()
    number = q.removeprefix("#").strip()
    if number.isascii() and number.isdigit():
        return redirect(url_for("log.merge_feedback", feedback_id=duplicate.id, into=number))
    found = merge_candidates(duplicate, q, MERGE_FOUND) if q else merge_candidates(duplicate)
    return render_template("merge_pick.html", duplicate=duplicate, q=q, found=found)


MERGE_SUGGESTED, MERGE_FOUND = 5, 10


def merge_candidates(record: Feedback, words: str = "", limit: int = MERGE_SUGGESTED) -> list:
    """The records ``record`` may be merged into that share the most of ``words`` (its own
    title's, unless given) by the full-text search, best first; records shown in another
    workspace's Inbox are left out, as merge_refusal refuses them."""
    others = select(Feedback).where(Feedback.id != record.id)
    if record.workspace_id:
        others = others.where(
            or_(Feedback.workspace_id.is_(None), Feedback.workspace_id == record.workspace_id)
        )
    found = search(others, words or record.title, any_word=not words, window_only=True)
    return list(db.session.scalars(found.limit(limit)))


@feedback_log.route(
    "/feedback/<id:feedback_id>/evidence/<id:evidence_id>/delete", methods=["GET", "POST"]
)
def remove_evidence(feedback_id: int, evidence_id: int) -> Any:
    """Ask first (GET: who, their words, what follows), then remove it and count again."""
    evidence = db.session.get(Evidence, evidence_id)
    if evidence is None or evidence.feedback_id != feedback_id:
        abort(404, "No such evidence on this record.")
    record = evidence.feedback
    if request.method == "GET":
        who = evidence.customer_name or evidence.customer_email or "this evidence"
        return render_template(
            "remove_evidence.html",
            heading=f"Remove {who} from #{feedback_id}?",
            button="Remove",
            action=request.path,
            cancel=url_for("log.show_feedback", feedback_id=feedback_id, _anchor="evidence"),
            evidence=evidence,
            feedback=record,
        )
    try:
        hold_records(record)
    except RecordGone as gone:
        return changed_meanwhile(f"{gone} Nothing was removed.", gone.into)
    db.session.delete(evidence)
    db.session.flush()
    refresh_backing(record)
    db.session.flush()
    announce("evidence.removed", record_data(record) | {"evidence": evidence_data(evidence)})
    db.session.commit()
    wake_sender_if_asked()
    flash(f"Removed {evidence.customer_name or evidence.customer_email or 'the evidence'}.")
    return redirect(url_for("log.show_feedback", feedback_id=feedback_id))


@feedback_log.get("/feedback.csv")
def export_csv() -> Response:
    """The evidence export: a row per piece of evidence, with its record."""
    statement = listed_feedback(**list_filters())
    response = Response(stream_with_context(csv_lines(statement)), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="hedwig-evidence.csv"'
    return response


def list_filters() -> dict[str, str | None]:
    """The list's ?q=, ?sort=, ?status=, ?importance= and ?plan=, each checked: a sort it does
    not know is ignored, the others refused (400)."""
    return {
        "q": search_text(),
        "sort": request.args.get("sort") if request.args.get("sort") in SORTS else None,
        "status": status_filter(),
        "importance": importance_filter(),
        "plan": plan_filter(),
    }


def search_text() -> str:
    """The list's ?q=, cleaned and bounded: a longer one is refused, not searched for."""
    q = clean_text(request.args.get("q", ""), SEARCH_MAX)
    if len(q) > SEARCH_MAX:
        abort(400, f"Search for at most {SEARCH_MAX} characters.")
    return q


def status_filter() -> str | None:
    """The list's ?status=, one of STATUSES."""
    return choice_filter("status", STATUSES)


def importance_filter() -> str | None:
    """The list's ?importance=, one of IMPORTANCES."""
    return choice_filter("importance", IMPORTANCES)


def plan_filter() -> str | None:
    """The list's ?plan=, a company's plan name, cleaned and bounded as plans are kept: a
    longer one is refused; one no company is on lists nothing."""
    plan = clean_text(request.args.get("plan", ""), NAME_MAX)
    if len(plan) > NAME_MAX:
        abort(400, f"A plan's name is at most {NAME_MAX} characters.")
    return plan or None


def choice_filter(name: str, choices: Mapping[str, str]) -> str | None:
    """The list's ?<name>=, one of ``choices``; any other is refused, not ignored."""
    value = request.args.get(name) or None
    if value is not None and value not in choices:
        abort(400, f"There is no {name} {value[:20]!r}: use one of {', '.join(choices)}.")
    return value


@feedback_log.app_context_processor
def importance_levels() -> dict[str, Any]:
    return {"importances": IMPORTANCES, "default_importance": DEFAULT_IMPORTANCE}


def show_record(
    record: Feedback,
    status_form: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    issue_url: str = "",
) -> str:
    """The record's page: the record, its status with each change and what its notes and
    replies did (status.py, replies.py), and its evidence."""
    status_form = status_form or status_form_defaults(record)
    return render_template(
        "show.html",
        feedback=record,
        workspaces=workspace_names(),
        changes=status_history(record),
        conversations_to_note=conversations_to_note(record),
        merge_candidates=merge_candidates(record) if g.user.is_owner else [],
        status_form=status_form,
        errors=errors or {},
        issue_url=issue_url,
        **reply_form(record, status_form),
    )


def to_merged_record(feedback_id: int, endpoint: str) -> Response:
    """A merged record's id leads to the record it was merged into, for good (301)."""
    target = merged_target(feedback_id)
    if target is None:
        abort(404, f"There is no feedback #{feedback_id}.")
    return redirect(url_for(endpoint, feedback_id=target.id), 301)


def missing_record(feedback_id: int, typed: Mapping[str, str] | None = None) -> tuple[str, int]:
    """A form posted for a record that is no longer there: merged (409, naming the record it
    went into) or deleted (404); what was typed is on the page, not lost."""
    into = merged_target(feedback_id)
    if into is None:
        message = f"There is no feedback #{feedback_id}: it was deleted, or never was."
        return changed_meanwhile(message, None, typed, 404)
    message = f"#{feedback_id} was merged into #{into.id}: nothing was changed."
    return changed_meanwhile(message, into, typed)


def changed_meanwhile(
    message: str,
    into: Feedback | None,
    typed: Mapping[str, str] | None = None,
    code: int = 409,
) -> tuple[str, int]:
    """What happened to a record since its page was loaded, the record it went into, and
    what was typed, unsaved."""
    page = render_template(
        "conflict.html", message=message, into=into, typed=typed or {}, code=code
    )
    return page, code


CSV_COLUMNS = (
    "feedback_id",
    "title",
    "details",
    "status",
    "customer_count",
    "customer_name",
    "customer_email",
    "quote",
    "importance",
    "company",
    "company_plan",
    "company_monthly_spend",
    "source",
    "conversation_url",
    "heard_by",
    "heard_at",
)
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_lines(statement: Select) -> Iterator[str]:
    """The export, a line at a time, reading the rows in batches so memory stays flat."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    # Each row's company comes in the same query (contains_eager): Evidence.contact_company's
    # own loading would read the companies again, a query per batch of rows.
    rows = (
        statement.add_columns(Evidence)
        .outerjoin(Evidence, Evidence.feedback_id == Feedback.id)
        .outerjoin(ContactCompany, THE_CONTACT)
        .outerjoin(Company, Company.id == ContactCompany.company_id)
        .options(contains_eager(Evidence.contact_company).contains_eager(ContactCompany.company))
        .order_by(Evidence.id.desc())
        .execution_options(yield_per=500)
    )
    writer.writerow(CSV_COLUMNS)
    yield flush()
    for record, evidence in db.session.execute(rows):
        writer.writerow(csv_row(record, evidence))
        yield flush()


def csv_row(record: Feedback, evidence: Evidence | None) -> list[str]:
    values = {
        "feedback_id": record.id,
        "title": record.title,
        "details": record.description,
        "status": record.status_label,
        "customer_count": record.customer_count,
    }
    if evidence is not None:
        values |= {
            "customer_name": evidence.customer_name,
            "customer_email": evidence.customer_email,
            "quote": evidence.quote,
            "importance": evidence.importance_label,
            "source": evidence.origin,
            "conversation_url": evidence.conversation_url,
            "heard_by": evidence.admin_name or evidence.admin_email,
            "heard_at": f"{evidence.created_at:%Y-%m-%d %H:%M:%S}",
        }
    company = evidence.company if evidence is not None else None
    if company is not None:
        values |= {
            "company": company.name,
            "company_plan": company.plan,
            "company_monthly_spend": company.monthly_spend,
        }
    return [csv_cell(values.get(column)) for column in CSV_COLUMNS]


def csv_cell(value: Any) -> str:
    """Text a spreadsheet shows as text: a leading ' defuses formula injection."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
