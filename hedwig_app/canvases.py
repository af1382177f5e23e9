"""The Inbox app's canvases, each one function returning plain data for an InboxContext (where
the agent is: workspace, conversation, customer): the first canvas, find, add, the new
feedback form, saved and added. The first canvas is asked for on every conversation switch,
so its two lists come from one statement built once at import, read on a plain Core
connection. Imports canvas_kit, connect (where "Connect" leads), records, search and intercom.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import g
from sqlalchemy import (
    Row,
    Select,
    bindparam,
    distinct,
    func,
    literal,
    or_,
    select,
    union,
    union_all,
)
from sqlalchemy.engine import Connection

from hedwig_app.canvas_kit import (
    button,
    canvas,
    data_table,
    html_to_text,
    item,
    plain_words,
    single_select,
    text,
)
from hedwig_app.connect import connect_url
from hedwig_app.intercom import region_of
from hedwig_app.plumbing import external_url, field, id_or_none, plural, text_or_none
from hedwig_app.records import feedback_url
from hedwig_app.search import SEARCH_MAX, best_matches
from models import (
    DEFAULT_IMPORTANCE,
    EMAIL_MAX,
    IMPORTANCES,
    NAME_MAX,
    QUOTE_MAX,
    STATUSES,
    Evidence,
    Feedback,
    IntercomConnection,
    db,
)

# Intercom's Inbox rule: a first canvas at most 400 px tall. Each list shows two records at
# most, and both three in all (test_inbox measures the fullest: 368 px).
CANVAS_LIST_LIMIT = 2
FIRST_CANVAS_RECORDS = 3
FIRST_TITLE_MAX = 36  # characters of a title a first canvas's list item shows: one line
FIRST_NAME_MAX = 20  # characters of a name "More from …" shows: a header of one line
PREFILL_MAX = 60  # characters of the first message the find canvas searches for
NONCE_BYTES = 24  # a form's single-use key; inbox.py checks its shape


@dataclass(frozen=True)
class InboxContext:
    """What a canvas request says about where the agent is: workspace, conversation, customer."""

    workspace_id: str | None
    region: str
    conversation_id: str | None
    contact_id: str | None
    customer_name: str
    customer_email: str
    admin_id: str | None
    admin_name: str | None
    admin_email: str | None
    subject_html: str  # the conversation's subject (may hold markup), for the search
    opening_html: str  # the customer's first message; turned into text only for the form

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> InboxContext:
        # Older apps get `customer` instead of `contact`; `context` may be absent. The
        # customer is a contact, never a teammate: in a conversation a teammate started, the
        # source's author is an admin, and the source's body is the teammate's words.
        contact = payload.get("contact")
        if not isinstance(contact, dict):
            contact = payload.get("customer")
        source = field(payload, "conversation", "source")
        author = field(source, "author")
        if field(author, "type") not in CUSTOMER_TYPES:
            author = None
        return cls(
            workspace_id=id_or_none(payload.get("workspace_id")),
            region=region_of(payload.get("workspace_region")),
            conversation_id=id_or_none(field(payload, "conversation", "id"))
            or id_or_none(field(payload, "context", "conversation_id")),
            contact_id=id_or_none(field(contact, "id")),
            customer_name=text_or_none(field(contact, "name"))
            or text_or_none(field(author, "name"))
            or "",
            customer_email=text_or_none(field(contact, "email"), EMAIL_MAX)
            or text_or_none(field(author, "email"), EMAIL_MAX)
            or "",
            admin_id=id_or_none(field(payload, "admin", "id")),
            admin_name=text_or_none(field(payload, "admin", "name")),
            admin_email=text_or_none(field(payload, "admin", "email"), EMAIL_MAX),
            subject_html=text_or_none(field(source, "subject"), SEARCH_MAX * 4)
            or text_or_none(field(payload, "conversation", "title"), SEARCH_MAX * 4)
            or "",
            opening_html=customers_first_message(payload.get("conversation")),
        )


CUSTOMER_TYPES = frozenset({"user", "lead", "contact"})


def customers_first_message(conversation: Any) -> str:
    """The HTML of the first message a customer wrote: the conversation's source when a
    customer started it, else the first customer part (when Intercom sends the parts)."""
    source = field(conversation, "source")
    if field(source, "author", "type") in CUSTOMER_TYPES:
        body = field(source, "body")
        return body if isinstance(body, str) else ""
    parts = field(conversation, "conversation_parts", "conversation_parts")
    for part in parts if isinstance(parts, list) else []:
        body = field(part, "body")
        if field(part, "author", "type") in CUSTOMER_TYPES and isinstance(body, str) and body:
            return body
    return ""


def not_connected_canvas() -> dict[str, Any]:
    return canvas(
        [
            text("This Intercom workspace is not connected to Hedwig yet.", "muted"),
            button("connect", "Connect in Hedwig", url=connect_url()),
        ]
    )


def first_canvas(context: InboxContext) -> dict[str, Any]:
    """What this conversation backs and this customer asked for elsewhere, a link to the rest,
    and a Record button. It is sent on every conversation switch: one indexed statement, no
    outside calls, no primary button, within 400 px."""
    lists = first_canvas_lists(read_connection(), context)
    ours = lists["conversation"]
    theirs = lists["customer"][: FIRST_CANVAS_RECORDS - len(ours)]
    components = [text("Feedback from this conversation", "header")]
    if ours:
        components.append(first_list(ours))
    else:
        components.append(text("Nothing recorded from this conversation yet.", "muted"))
    if theirs:
        who = plain_words(context.customer_name, "this customer", FIRST_NAME_MAX)
        components += [text(f"More from {who}", "header"), first_list(theirs)]
    left = left_out(lists, {"conversation": len(ours), "customer": len(theirs)})
    if left:
        url = customer_search_url(context)
        components.append(button("more", f"{left} more in Hedwig", "link", url=url))
    components.append(button("record", "Record feedback"))
    return canvas(components)


def first_list(records: list[Row]) -> dict[str, Any]:
    """Records as a first canvas lists them: each title cut to one line."""
    items = [
        {**record_item(row), "title": shortened(row.title, FIRST_TITLE_MAX)} for row in records
    ]
    return {"type": "list", "items": items}


def left_out(lists: Mapping[str, list[Row]], shown: Mapping[str, int]) -> str:
    """How many records the lists leave out ("3", or "98+" past a count's cap), or ""."""
    left, capped = 0, False
    for name, rows in lists.items():
        if rows:
            left += rows[0].total - shown[name]
            capped = capped or rows[0].total >= COUNT_CAP
    if not left:
        return ""
    return f"{left}+" if capped else str(left)


def shortened(value: str, longest: int) -> str:
    """``value`` cut at a word to at most ``longest`` characters, with "…" when cut."""
    if len(value) <= longest:
        return value
    cut = value[: longest - 1]
    words = cut.rsplit(" ", 1)[0].rstrip(" ,.;:-")
    return (words if len(words) >= longest // 2 else cut) + "…"


def customer_search_url(context: InboxContext) -> str:
    """The feedback log searched for this customer (their email, else their name): what the
    first canvas leaves out is there, among their records."""
    who = context.customer_email or context.customer_name
    return external_url("log.index", q=who) if who else external_url("log.index")


def find_canvas(context: InboxContext, query: str) -> dict[str, Any]:
    """Find before you create: the workspace's records that match, best first, each one click
    from adding this customer to it; or a new record, its title the search."""
    matches = best_matches(query, context.workspace_id) if query else []
    components: list[dict[str, Any]] = [
        text("Record feedback", "header"),
        {
            "type": "input",
            "id": "query",
            "label": "Is it asked for already?",
            "placeholder": "Search the feedback log",
            "value": query,
            "action": {"type": "submit"},
        },
    ]
    if matches:
        components.append(record_list(matches, "match", submit=True))
    elif query:
        components.append(text("No feedback matches yet.", "muted"))
    components += [button("new", "New feedback"), button("back", "Back", "link")]
    return canvas(components, {"query": query})


def add_canvas(
    context: InboxContext,
    record: Feedback,
    query: str,
    quote: str | None = None,
    importance: str = DEFAULT_IMPORTANCE,
    error: str = "",
) -> dict[str, Any]:
    """A match, this customer's words to add to it, and how much it matters to them."""
    if quote is None:
        quote = customers_words(context)
    components = [
        {"type": "list", "items": [record_item(record)]},
        *([text(error, "error")] if error else []),
        {
            "type": "textarea",
            "id": "quote",
            "label": f"{customer_called(context)}'s words",
            "placeholder": "What they asked for, in their words",
            "value": quote,
        },
        importance_select(importance),
        button("add", f"Add {customer_called(context)}", "primary"),
        button("find", "Back", "link"),
    ]
    stored = {"nonce": new_nonce(), "feedback_id": record.id, "query": query}
    return canvas(components, stored)


def form_canvas(
    context: InboxContext,
    title: str = "",
    details: str = "",
    errors: Mapping[str, str] | None = None,
    query: str = "",
    importance: str = DEFAULT_IMPORTANCE,
) -> dict[str, Any]:
    """A new record: its title, the agent's details, and how much it matters to the customer.
    The customer's opening message is kept as they wrote it, as the evidence's quote
    (customers_words), whatever the agent writes."""
    errors = errors or {}
    customer = {"From": context.customer_name, "Email": context.customer_email}
    customer = {field: value for field, value in customer.items() if value}
    components = [
        text("New feedback", "header"),
        data_table(customer) if customer else text("Customer unknown", "muted"),
    ]
    components += [text(message, "error") for message in errors.values()]
    title_input: dict[str, Any] = {
        "type": "input",
        "id": "title",
        "label": "Title",
        "placeholder": "What do they ask for, in a line?",
        "value": title,
    }
    if "title" in errors:
        title_input["save_state"] = "failed"
    components.append(title_input)
    components.append(
        {
            "type": "textarea",
            "id": "details",
            "label": "Details",
            "placeholder": DETAILS_KEEPING_WORDS if customers_words(context) else DETAILS,
            "value": details,
            "error": "description" in errors,
        }
    )
    components += [
        importance_select(importance),
        button("save", "Save feedback", "primary"),
        button("find", "Back", "link"),
    ]
    # The nonce makes this form single use: a second submit finds the record the first made.
    return canvas(components, {"nonce": new_nonce(), "query": query})


DETAILS = "What they ask for, in your words or theirs"
DETAILS_KEEPING_WORDS = "Anything to add, in your words: their message is kept as they wrote it"


def customers_words(context: InboxContext) -> str:
    """The customer's opening message as plain text, bounded: a new record's first quote."""
    return html_to_text(context.opening_html)[:QUOTE_MAX]


IMPORTANCE_QUESTION = "How much does it matter to them?"


def importance_select(importance: str) -> dict[str, Any]:
    """The question every piece of evidence from the Inbox answers; an unknown ``importance``
    (refused) shows the default chosen."""
    chosen = importance if importance in IMPORTANCES else DEFAULT_IMPORTANCE
    return single_select("importance", IMPORTANCE_QUESTION, IMPORTANCES, chosen)


def saved_canvas(record: Feedback | Row) -> dict[str, Any]:
    return canvas(
        [
            text(f"Feedback #{record.id} saved", "header"),
            {"type": "list", "items": [record_item(record, action=None)]},
            button("open", "Open in Hedwig", url=feedback_url(record)),
            button("another", "Record another", "link"),
            button("done", "Done", "link"),
        ]
    )


def added_canvas(context: InboxContext, record: Feedback, already: bool) -> dict[str, Any]:
    who = plain_words(context.customer_name, "This customer", NAME_MAX)
    said = (
        f"This conversation backs #{record.id} already"
        if already
        else f"{who} added to #{record.id}"
    )
    return canvas(
        [
            text(f"{said} — {backing(record.customer_count)}", "header"),
            {"type": "list", "items": [record_item(record, action=None)]},
            button("open", "Open in Hedwig", url=feedback_url(record)),
            button("done", "Done", "link"),
        ]
    )


def search_prefill(context: InboxContext) -> str:
    """What the find canvas searches for first, its first PREFILL_MAX characters' words: the
    conversation's subject, unless it says nothing ("Re: Quick question"); else the customer's
    first sentence that says something, without greetings, filler, small talk and emoji
    ("Hi there! Quick question: can I export to PDF? Thanks" is "can I export to PDF")."""
    subject = telling_part(REPLY_MARK.sub("", html_to_text(context.subject_html)))
    if not subject:
        message = html_to_text(context.opening_html[: 20 * PREFILL_MAX])
        sentences = [part for part in map(telling_part, SENTENCE_END.split(message)) if part]
        subject = next((s for s in sentences if not SMALL_TALK.match(s)), "".join(sentences[:1]))
    prefill = ""
    for word in subject.split():
        if len(prefill) + len(word) + 1 > PREFILL_MAX:
            break
        prefill = f"{prefill} {word}".strip()
    return prefill or subject[:PREFILL_MAX]  # a first word longer than that, cut


def telling_part(sentence: str) -> str:
    """A sentence without emoji, its opening greetings and filler, and its closing
    punctuation; nothing when it says nothing else ("Thanks!", "Quick question")."""
    sentence = "".join(" " if is_emoji(c) else c for c in sentence).strip()
    while (shorter := OPENING_FILLER.sub("", sentence, count=1)) != sentence:
        sentence = shorter
    # Its words alone are matched: a pattern around punctuation runs would backtrack on them.
    words = " ".join(SENTENCE_WORD.findall(sentence))
    return "" if ONLY_FILLER.fullmatch(words) else sentence.rstrip(" ,.;:!?-")


def is_emoji(character: str) -> bool:
    """Emoji and their joiners, variation selectors and skin tones: no word to search for."""
    return unicodedata.category(character) in ("So", "Sk", "Cn") or character in "\u200d\ufe0f"


SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
REPLY_MARK = re.compile(r"^(?:\s*(?:re|fwd?|aw|wg|tr)\s*:\s*)+", re.IGNORECASE)
GREETING = (
    r"(?:hi|hello|hey|hiya|heya|howdy|hallo|hola|bonjour|ciao|hej|moin|greetings|dear"
    r"|good\s+(?:morning|afternoon|evening|day))"
)
FILLER = (
    r"(?:(?:just\s+)?(?:a\s+)?quick\s+(?:question|one)|i\s+have\s+a\s+(?:quick\s+)?question"
    r"|question|sorry\s+to\s+bother(?:\s+you)?|hope\s+(?:you(?:'re|\s+are)|all\s+is)"
    r"(?:\s+doing)?\s+well|(?:many\s+)?thanks(?:\s+(?:so\s+much|in\s+advance|a\s+lot))?"
    r"|thank\s+you(?:\s+(?:so\s+much|in\s+advance))?|thx|cheers|please(?:\s+help)?|help"
    r"|urgent|fyi|ok(?:ay)?|so|well|um+|hmm+|(?:best|kind)?\s*regards|best)"
)
# At a sentence's start: a greeting with whom it greets, when punctuation ends it ("Hello
# team,", "Hi Casey!"); a greeting alone; filler that punctuation ends ("Quick question:"); a
# label that a colon ends ("One more thing from our side:"); "Question about".
OPENING_FILLER = re.compile(
    rf"^(?:{GREETING}(?:\s+(?:there|team|all|everyone|folks|guys|again|support(?:\s+team)?"
    r"|[A-Z][\w'-]*(?:\s+team)?))?\s*[,.!?:;-]+\s*"
    rf"|{GREETING}\b[\s,.!?:;-]*"
    rf"|{FILLER}\s*[,.!?:;-]+\s*"
    r"|(?:just\s+)?(?:a\s+|one\s+)?(?:quick|small|short|more|other|last|one)\s+"
    r"(?:question|thing|one|request|q)(?:\s+(?!about\b|on\b|re\b)[\w']+){0,4}?\s*:\s*"
    r"|(?:a\s+)?(?:quick\s+)?question\s+(?:about|on|regarding|re)\s+)",
    re.IGNORECASE,
)
ONLY_FILLER = re.compile(rf"(?:{FILLER}|{GREETING})?", re.IGNORECASE)
SENTENCE_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# A sentence of thanks or good wishes, passed over for the next one when there is one.
SMALL_TALK = re.compile(
    r"(?:just\s+wanted\s+to\s+say\s+)?(?:many\s+)?(?:thanks|thank\s+you)\b"
    r"|(?:i\s+|we\s+)?hope\s+(?:you|your|all|everything|this|the\s+team)\b"
    r"|how\s+are\s+you\b|happy\s+\w+day\b",
    re.IGNORECASE,
)


def customer_called(context: InboxContext) -> str:
    return context.customer_name or context.customer_email or "this customer"


def about(record: Feedback | Row) -> str:
    """A record's status and backing, as a canvas's lists say them: "Planned · 7 customers"."""
    return f"{STATUSES.get(record.status, record.status)} · {backing(record.customer_count)}"


def backing(customer_count: int) -> str:
    return plural(customer_count, "customer")


def record_list(records: list[Any], id_prefix: str, submit: bool = False) -> dict[str, Any]:
    """Records as a list: each opens in Hedwig, or (``submit``) is a choice on the canvas."""
    return {
        "type": "list",
        "items": [
            record_item(record, id_prefix, "submit" if submit else "url") for record in records
        ],
    }


def record_item(
    record: Feedback | Row, id_prefix: str = "feedback", action: str | None = "url"
) -> dict[str, Any]:
    """A record as a list item: its title as written, its number, status and backing. Its
    ``action`` opens the record in Hedwig ("url"), makes it a choice ("submit"), or is none."""
    return item(
        f"{id_prefix}-{record.id}",
        record.title,
        f"#{record.id} · {about(record)}",
        url=feedback_url(record) if action == "url" else None,
        submit=action == "submit",
    )


COUNT_CAP = 100
LOOKBACK = 2 * COUNT_CAP


def newest_backed(*conditions: Any) -> Select:
    """The records of up to COUNT_CAP matching pieces of evidence, newest first."""
    return (
        select(Evidence.feedback_id)
        .where(*conditions)
        .order_by(Evidence.id.desc())
        .limit(COUNT_CAP)
    )


def newest_backed_elsewhere(customer: Any) -> Select:
    """The records of up to COUNT_CAP of a customer's pieces of evidence from other
    conversations, found among their LOOKBACK newest. Without that bound, each piece of theirs
    in this conversation would be one more index entry to step over. Exact unless this
    conversation holds more than LOOKBACK - COUNT_CAP of their pieces."""
    recent = (
        select(Evidence.feedback_id, Evidence.conversation_id)
        .where(customer)
        .order_by(Evidence.id.desc())
        .limit(LOOKBACK)
        .subquery()
    )
    elsewhere = or_(
        recent.c.conversation_id.is_(None),
        recent.c.conversation_id != bindparam("conversation_id"),
    )
    return select(select(recent.c.feedback_id).where(elsewhere).limit(COUNT_CAP).subquery())


def newest_first(list_name: str, records: Select, excluded: Select | None = None) -> Select:
    """Up to CANVAS_LIST_LIMIT of ``records`` (but ``excluded``), newest first, each row
    carrying the list's name and how many records there are."""
    matching = records.cte()
    listed = Feedback.id.in_(select(matching.c.feedback_id))
    counted = select(func.count(distinct(matching.c.feedback_id))).select_from(matching)
    if excluded is not None:
        listed = listed & Feedback.id.not_in(excluded)
        counted = counted.where(matching.c.feedback_id.not_in(excluded))
    newest = (
        select(
            literal(list_name).label("list"),
            Feedback.id,
            Feedback.title,
            Feedback.status,
            Feedback.customer_count,
            counted.scalar_subquery().label("total"),
        )
        .where(listed)
        .order_by(Feedback.id.desc())
        .limit(CANVAS_LIST_LIMIT)
    )
    return select(newest.subquery())


IN_THIS_WORKSPACE = Evidence.workspace_id == bindparam("workspace_id")
BACKED_BY_THIS_CONVERSATION = newest_backed(
    IN_THIS_WORKSPACE, Evidence.conversation_id == bindparam("conversation_id")
)
FIRST_CANVAS_LISTS = union_all(
    newest_first("conversation", BACKED_BY_THIS_CONVERSATION),
    # A customer is their Intercom contact, or their email address, in this workspace: a
    # canvas never shows what was heard in another workspace (a Messenger visitor can claim
    # any email), nor evidence added by hand on the web, which was heard in none.
    newest_first(
        "customer",
        union(
            newest_backed_elsewhere(
                IN_THIS_WORKSPACE & (Evidence.contact_id == bindparam("contact_id"))
            ),
            newest_backed_elsewhere(
                IN_THIS_WORKSPACE & (Evidence.customer_email == bindparam("customer_email"))
            ),
        ),
        excluded=BACKED_BY_THIS_CONVERSATION,
    ),
)
WORKSPACE_CONNECTION = select(IntercomConnection.id).where(
    IntercomConnection.workspace_id == bindparam("workspace_id")
)


def first_canvas_lists(connection: Connection, context: InboxContext) -> dict[str, list[Row]]:
    """This conversation's newest records and this customer's from elsewhere, by list name.
    A None value matches nothing."""
    values = {
        "workspace_id": context.workspace_id,
        # An unknown conversation holds no record: all the customer's are elsewhere.
        "conversation_id": context.conversation_id or "",
        "contact_id": context.contact_id,
        "customer_email": context.customer_email or None,
    }
    lists: dict[str, list[Row]] = {"conversation": [], "customer": []}
    for row in connection.execute(FIRST_CANVAS_LISTS, values):
        lists[row.list].append(row)
    for rows in lists.values():
        rows.sort(key=lambda row: row.id, reverse=True)  # a UNION promises no order
    return lists


def read_connection() -> Connection:
    """This request's connection for the canvas lookups, opened on first use and closed at
    teardown: plain Core rows, without the ORM session's bookkeeping, which costs 6% more
    instructions per initialize than this path."""
    if "read_connection" not in g:
        g.read_connection = db.engine.connect()
    return g.read_connection


def close_read_connection(error: BaseException | None = None) -> None:
    connection = g.pop("read_connection", None)
    if connection is not None:
        connection.close()


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)
