"""Search: the database's own full-text index (SQLite FTS5, PostgreSQL tsvector), behind one
function. People type words, never query syntax: each word found in any order, in any of its
forms ("exported" finds "exports"), by prefix ("expo" finds "export"), accents folded; a
match in the title ranks above one in the details, and that above one in the customers' words
(names, emails, quotes); among equals, records more customers back come first. Ranking reads
the newest SEARCH_WINDOW matches of the list's filters, so a word that is in every record costs
what a rare one does; older matches follow, newest first. PostgreSQL's GIN index gives a
word's every match, in no order: there a search reads the records newest first while its words
are common among the newest, and else the index's matches once (``postgres_window``). Also
owns the log's list query (``listed_feedback``), its pages and its total, each bounded by the
page, not by the records (``list_page``: COUNT_CAP, keyset cursors), and the Inbox's best
matches. Imports nothing of Hedwig's but models.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request
from sqlalchemy import (
    Select,
    Text,
    and_,
    case,
    column,
    exists,
    func,
    literal,
    literal_column,
    null,
    select,
    table,
    union_all,
)

from models import Company, ContactCompany, Evidence, Feedback, db

SEARCH_MAX = 200  # characters: what people type in a search box, not a pasted essay
SEARCH_WINDOW = 500
SEARCH_WORDS_MAX = 12
SEARCH_INDEX = table("feedback_search", column("rowid"))
RANKED = table("feedback", column("id"), column("search_vector")).alias("ranked")  # PostgreSQL
WORD = re.compile(r"[^\W_]+")
FIND_LIMIT = 5
PLANS_SHOWN = 20
# How much a word weighs where it is found: in the title, the details, the customers' words.
# A word there counts by its rarity, once, however often it is said and however long the
# record (a record many customers back has long customers' words, which one BM25 over the
# whole row would hold against its title): BM25 with each column's weight saturated, which
# gives a word its rarity times k1 + 1 (BM25_SATURATED). PostgreSQL: ts_rank's weights of D,
# C, B and A in the same ratios (0005 and 0015 weigh the title A, the details B, the
# customers' words C).
COLUMNS = ("title", "description", "customers_text")
WEIGHTS = (1.0, 0.4, 0.1)
SATURATED, BM25_SATURATED = 1000.0, 2.2
RARITY_SAMPLE = 1000  # a word's newest matches that tell how rare it is
# SQLite's bm25() reads every match of each word to weigh it: it may, when the words have this
# many matches between them (a few milliseconds); past that the window is weighed word by word.
BM25_READS = 100_000
POSTGRES_WEIGHTS = f"'{{{WEIGHTS[2]}, {WEIGHTS[2]}, {WEIGHTS[1]}, {WEIGHTS[0]}}}'::real[]"
POSTGRES_CONFIG = "hedwig_words"  # 0015: words stemmed as English, none dropped
# PostgreSQL's GIN index gives a word's every match, in no order, each read from its record: a
# search reads the records newest first instead (asking each one, and stopping at what it
# wants) when the newest PROBE_RECORDS records say that costs at most ORDERED_READS records.
PROBE_RECORDS = 1000
ORDERED_READS = 20_000
BACKING_BOOST, BACKING_HALF = 0.2, 3.0


PER_PAGE = 50
COUNT_CAP = 10_000  # the list counts this many records, then says "10,000+"
# ...or this many, when each is checked beside the index (its evidence's importance or plan,
# a search's filters), reading more rows per record counted.
CHECKED_COUNT_CAP = 1_000

# The list's orders besides the search's own: a column, highest first, then the newest id
# first among equals. Each has a (column, id) index, so a page after a cursor (a record's
# column and id) reads its own rows, however deep (keyset_page).
SORT_KEYS = {
    "newest": Feedback.created_at,
    "customers": Feedback.customer_count,
    "companies": Feedback.company_count,
    "revenue": Feedback.monthly_spend,
}
SORT_ORDERS = {name: (key.desc(), Feedback.id.desc()) for name, key in SORT_KEYS.items()}


@dataclass
class ListPage:
    """A page of the list: its records; the list's total, counted up to ``cap`` + 1; its
    number and the count of pages when pages are numbered (a ranked search, an old ?page=
    link), else None; whether pages come before and after it; and whether those are reached
    by cursor (``keyset``) or by number."""

    records: list[Feedback]
    total: int
    cap: int
    number: int | None = None
    pages: int | None = None
    has_previous: bool = False
    has_next: bool = False
    keyset: bool = True


Cursor = tuple[Any, int]  # a record's sort column and its id: where a keyset page starts
SORT_VALUE_LARGEST = 2**63 - 1  # a count or monthly spend in a cursor: what a BIGINT keeps


def list_page(
    filters: dict[str, Any],
    number: int | None = None,
    after: Cursor | None = None,
    before: Cursor | None = None,
    *loading: Any,
    total: int | None = None,
) -> ListPage:
    """The list's page: a ranked search's by number (within its first COUNT_CAP matches);
    any other by keyset, after or before a cursor (an old numbered link still works). Its
    records are read with the ``loading`` options given (what the page shows beside them);
    its ``total``, when the caller counted it already (a status tab's count), is not counted
    again."""
    if filters["q"] and filters["sort"] in (None, "best"):
        return ranked_page(filters, number or 1, loading)
    return keyset_page(filters, number, after, before, loading, total)


def ranked_page(filters: dict[str, Any], number: int, loading: tuple[Any, ...] = ()) -> ListPage:
    """Page ``number`` of a search, best match first. The search reads no further than the
    page (``reach``), so its cost grows with the page's number, up to COUNT_CAP matches."""
    offset = (number - 1) * PER_PAGE
    statement = listed_feedback(**filters, reach=offset + PER_PAGE + 1).options(*loading)
    records = list(db.session.scalars(statement.limit(PER_PAGE + 1).offset(offset)))
    filtered = listed_feedback(**filters | {"q": ""})
    # PostgreSQL counts a match by reading its record (its GIN index holds no ids): each is
    # checked beside the index, as with a filter.
    postgres = db.session.get_bind().dialect.name == "postgresql"
    cap = COUNT_CAP if filtered.whereclause is None and not postgres else CHECKED_COUNT_CAP
    total = search_count(filters["q"], filtered, cap)
    pages = max(number, -(-min(total, cap) // PER_PAGE))
    has_next = len(records) > PER_PAGE and number < COUNT_CAP // PER_PAGE
    return ListPage(records[:PER_PAGE], total, cap, number, pages, number > 1, has_next, False)


def keyset_page(
    filters: dict[str, Any],
    number: int | None,
    after: Cursor | None,
    before: Cursor | None,
    loading: tuple[Any, ...] = (),
    total: int | None = None,
) -> ListPage:
    """A page of a list in a SORT_ORDERS order: the records after ``after``, or before
    ``before``, or (an old link) at page ``number``'s offset, or the first page."""
    statement = listed_feedback(**filters)
    column = SORT_KEYS.get(filters["sort"] or "newest", Feedback.created_at)
    checked = filters["q"] or filters["importance"] or filters["plan"]
    cap = CHECKED_COUNT_CAP if checked else COUNT_CAP
    total = capped_count(statement, cap) if total is None else total
    statement = statement.options(*loading)
    if before is not None:
        # Read back up from the cursor; what reaches the top is the first page, in full.
        rows = rows_past(statement, column, before, PER_PAGE + 1, upward=True)
        if len(rows) > PER_PAGE:
            return ListPage(rows[PER_PAGE - 1 :: -1], total, cap, has_previous=True, has_next=True)
    elif after is not None or (number or 1) > 1:
        if after is not None:
            rows = rows_past(statement, column, after, PER_PAGE + 1)
        else:
            offset = (number or 1) * PER_PAGE - PER_PAGE
            rows = list(db.session.scalars(statement.limit(PER_PAGE + 1).offset(offset)))
        return ListPage(
            rows[:PER_PAGE], total, cap, has_previous=True, has_next=len(rows) > PER_PAGE
        )
    rows = list(db.session.scalars(statement.limit(PER_PAGE + 1)))
    return ListPage(rows[:PER_PAGE], total, cap, has_next=len(rows) > PER_PAGE)


def rows_past(
    statement: Select, column: Any, cursor: Cursor, limit: int, upward: bool = False
) -> list[Feedback]:
    """Up to ``limit`` of the statement's records past ``cursor``, in the list's order (or,
    ``upward``, back towards its top): those tied with it on ``column`` first, then those
    past its value. Two reads, each from a seek on the (column, id) index: SQLite seeks a
    row value by its first column alone, and would read a whole run of ties to pass them."""
    value, record_id = cursor
    if upward:
        order = (column, Feedback.id)
        tied, rest = and_(column == value, Feedback.id > record_id), column > value
    else:
        order = (column.desc(), Feedback.id.desc())
        tied, rest = and_(column == value, Feedback.id < record_id), column < value
    ordered = statement.order_by(None).order_by(*order)
    rows = list(db.session.scalars(ordered.where(tied).limit(limit)))
    if len(rows) < limit:
        rows += db.session.scalars(ordered.where(rest).limit(limit - len(rows)))
    return rows


def capped_count(statement: Select, cap: int = COUNT_CAP) -> int:
    """How many rows ``statement`` has, counted up to ``cap`` + 1: a page view reads at most
    that many index entries, however long the list."""
    counted = statement.with_only_columns(literal(1), maintain_column_froms=True)
    counted = counted.order_by(None).limit(cap + 1).subquery()
    return db.session.scalar(select(func.count()).select_from(counted))


def listed_feedback(
    q: str,
    sort: str | None = None,
    status: str | None = None,
    importance: str | None = None,
    plan: str | None = None,
    reach: int | None = None,
) -> Select:
    """The list, as the page and the CSV show it: narrowed by the search, the status, the
    importance (records with a piece of evidence of it) and the plan (records with a customer
    of a company on it), and sorted, best match first when searching, else newest first (or
    by SORT_ORDERS: most customers, companies or monthly spend first). A ranked search lists
    ``reach`` matches at most (the page's end): the CSV lists them all."""
    statement = select(Feedback)
    if status:
        statement = statement.where(Feedback.status == status)
    # Each record is asked about its own evidence (ix_evidence_feedback holds what is asked),
    # so a page reads the records in its order until it is full, however many match.
    if importance:
        levelled = (
            select(literal(1))
            .select_from(Evidence)
            .where(Evidence.feedback_id == Feedback.id, Evidence.importance == importance)
            .correlate(Feedback)  # the CSV reads evidence too: this is each record's own
        )
        statement = statement.where(levelled.exists())
    if plan:
        statement = statement.where(backed_on_plan(plan).exists())
    if q:
        statement = search(statement, q, ranked=sort in (None, "best"), reach=reach)
    if sort in SORT_ORDERS:
        statement = statement.order_by(None).order_by(*SORT_ORDERS[sort])
    elif not q:  # a search keeps its own order, best match first
        statement = statement.order_by(None).order_by(*SORT_ORDERS["newest"])
    return statement


def backed_on_plan(plan: str) -> Select:
    """Whether a record has a customer whose company is on ``plan``: its evidence, each one's
    contact's company (on the contact in its workspace), the company's plan."""
    return (
        select(literal(1))
        .select_from(Evidence)
        .join(
            ContactCompany,
            and_(
                ContactCompany.workspace_id == Evidence.workspace_id,
                ContactCompany.contact_id == Evidence.contact_id,
            ),
        )
        .join(Company, Company.id == ContactCompany.company_id)
        .where(Evidence.feedback_id == Feedback.id, Company.plan == plan)
        .correlate(Feedback)
    )


def company_plans() -> list[str]:
    """The plans the customers' companies are on, A to Z, to filter the list by (the first
    PLANS_SHOWN: a choice, not a report)."""
    plans = (
        select(Company.plan)
        .where(Company.plan.is_not(None), Company.plan != "")
        .distinct()
        .order_by(Company.plan)
        .limit(PLANS_SHOWN)
    )
    return list(db.session.scalars(plans))


def best_matches(query: str, workspace_id: str | None) -> list[Feedback]:
    """Up to FIND_LIMIT of the workspace's records, best first: those with all of the
    words, then those with any of them, each among the newest SEARCH_WINDOW matches."""
    in_workspace = select(Feedback).where(Feedback.workspace_id == workspace_id)
    found = list(
        db.session.scalars(search(in_workspace, query, window_only=True).limit(FIND_LIMIT))
    )
    if len(found) < FIND_LIMIT:
        others = in_workspace.where(Feedback.id.not_in([record.id for record in found]))
        some_words = search(others, query, any_word=True, window_only=True)
        found += db.session.scalars(some_words.limit(FIND_LIMIT - len(found)))
    return found


def search(
    statement: Select,
    q: str,
    ranked: bool = True,
    any_word: bool = False,
    window_only: bool = False,
    reach: int | None = None,
) -> Select:
    """Narrow a Feedback statement to records with all of q's words (or any, with
    ``any_word``), best match first when ``ranked``; ``window_only`` keeps only the newest
    SEARCH_WINDOW matches, for a few best ones at a bounded cost; ``reach`` (a page's end)
    lists no more than that many older matches after them."""
    index = search_index(search_words(q), any_word)
    if index is None:
        return statement.where(literal(False))
    if not ranked:
        if index.source is Feedback.__table__:  # a list a page at a time, counted to 1,000
            return statement.where(index.postgres_matching(statement, CHECKED_COUNT_CAP + 1))
        found = select(index.key).select_from(index.source).where(index.matching)
        return statement.where(Feedback.id.in_(found))
    window, oldest = index.ranked_window(statement)
    if window is None:
        return statement.where(literal(False))
    # The window holds the statement's newest SEARCH_WINDOW matches: a page within it needs
    # no older one.
    if window_only or (reach is not None and reach <= SEARCH_WINDOW):
        return statement.join(window, window.c.id == Feedback.id).order_by(
            backed_score(window.c.score), Feedback.id.desc()
        )
    # Then the older matches, newest first: below the window's oldest id (each listed once,
    # none scored), narrowed by the filters before ``reach`` cuts them at the page's end.
    if index.source is Feedback.__table__:
        older = index.postgres_newest(statement, reach or COUNT_CAP, below=oldest)
    else:
        older = (
            narrowed(select(index.key.label("id")).select_from(index.source), statement, index)
            .where(index.matching, index.key < oldest)
            .order_by(index.key.desc())
        )
    older = older.limit(reach).subquery()
    found = union_all(
        select(window.c.id, window.c.score), select(older.c.id, null().label("score"))
    ).subquery()
    return statement.join(found, found.c.id == Feedback.id).order_by(
        found.c.score.is_(None),
        backed_score(found.c.score),
        Feedback.id.desc(),
    )


def narrowed(found: Select, statement: Select, index: SearchIndex) -> Select:
    """Ids read from the search index, narrowed by a Feedback statement's filters when it has
    any. SQLite reads each match's record in a subquery, not a join: joined, its planner may
    walk the records and ask the full-text index once per record."""
    if statement.whereclause is None:
        return found
    if index.source is Feedback.__table__:  # PostgreSQL: the index is the records' own column
        return found.where(statement.whereclause)
    inside = select(literal(1)).where(Feedback.id == index.key, statement.whereclause)
    return found.where(inside.exists())


def search_count(q: str, statement: Select | None = None, cap: int = COUNT_CAP) -> int:
    """How many records (of ``statement``'s) have all of q's words, counted in the search
    index up to ``cap`` + 1: read in the index's order, a record read beside each match only
    when a filter needs it, and the ranking not run again."""
    index = search_index(search_words(q))
    if index is None:
        return 0
    if index.source is Feedback.__table__:
        filtered = select(Feedback) if statement is None else statement
        read = remembered("search_found")
        key = filters_key(index, filtered)
        if key in read:  # read from the GIN index with the window
            return min(read[key], cap + 1)
        found = index.postgres_newest(filtered, cap + 1, in_order=False).limit(cap + 1)
        return db.session.scalar(select(func.count()).select_from(found.subquery()))
    found = select(index.key).select_from(index.source).where(index.matching)
    if statement is not None:
        found = narrowed(found, statement, index)
    return capped_count(found, cap)


@dataclass(frozen=True)
class SearchIndex:
    """Where the database keeps its full-text index (``source``), the record id there
    (``key``), the condition for the words (``matching``), and how it ranks a statement's
    newest matches (``ranked_window``)."""

    source: Any
    key: Any
    matching: Any
    terms: tuple[Term, ...] = ()  # SQLite's: the words as asked for
    every_word: bool = True
    postgres_query: Any = None  # PostgreSQL's: the words as a tsquery
    words: tuple[tuple[str, bool], ...] = ()  # PostgreSQL's: each word, and whether it is whole

    def ranked_window(self, statement: Select) -> tuple[Any, Any]:
        """The statement's newest SEARCH_WINDOW matches with their scores (lower is better),
        as a selectable of (id, score), and the oldest id among them; (None, None) when
        nothing matches."""
        if self.source is Feedback.__table__:
            return self.postgres_window(statement)
        newest = narrowed(
            select(self.key.label("id")).select_from(self.source).where(self.matching),
            statement,
            self,
        ).order_by(self.key.desc())
        if sum(term.matches for term in self.terms) <= BM25_READS:
            window = newest.add_columns(SQLITE_SCORE.label("score")).limit(SEARCH_WINDOW).cte()
            return window, select(func.min(window.c.id)).scalar_subquery()
        window = newest.limit(SEARCH_WINDOW).subquery()
        oldest = db.session.scalar(select(func.min(window.c.id)))
        if oldest is None:
            return None, None
        return self.sqlite_scores(oldest), oldest

    def sqlite_scores(self, oldest: int) -> Any:
        """SQLite: each match from ``oldest`` on, scored as SQLITE_SCORE scores it (each
        word's rarity times k1 + 1, times its column's weight, for each column that holds it),
        with no read of the words' older matches: each column is asked for each word among
        the window's ids alone, and the rarity comes from the word's newest matches."""
        found_with = "" if not self.every_word or len(self.terms) == 1 else f" AND ({self.query})"
        held = union_all(
            *(
                select(
                    self.key.label("id"),
                    literal(BM25_SATURATED * weight * term.rarity).label("weight"),
                )
                .select_from(self.source)
                .where(
                    match(f"{{{column}}} : {term.phrase}{found_with}"),
                    self.key >= oldest,
                )
                for term in self.terms
                for column, weight in zip(COLUMNS, WEIGHTS, strict=True)
            )
        ).subquery()
        score = (-func.sum(held.c.weight)).label("score")
        return select(held.c.id, score).group_by(held.c.id).subquery()

    @property
    def query(self) -> str:
        """SQLite: the words as one MATCH expression."""
        return (" " if self.every_word else " OR ").join(term.phrase for term in self.terms)

    def postgres_window(self, statement: Select) -> tuple[Any, Any]:
        """PostgreSQL: ``ranked_window``, scored by ts_rank once the window is chosen. Read
        newest first when its words are common among the newest records; else from the GIN
        index, which gives every match (each read from its record, in no order): read once,
        for the window's ids and, beside them, their count, which ``search_count`` takes."""
        score = -func.ts_rank(
            literal_column(POSTGRES_WEIGHTS), RANKED.c.search_vector, self.postgres_query
        )
        if self.reads_newest_first(statement, SEARCH_WINDOW):
            ids = self.postgres_newest(statement, SEARCH_WINDOW).limit(SEARCH_WINDOW).subquery()
            window = select(ids.c.id, score.label("score")).select_from(ids)
            window = window.join(RANKED, RANKED.c.id == ids.c.id).cte()
            return window, select(func.min(window.c.id)).scalar_subquery()
        matches = self.gin_matches(statement)
        total = select(func.count()).select_from(matches).scalar_subquery()
        newest = select(matches.c.id, total).order_by(matches.c.id.desc()).limit(SEARCH_WINDOW)
        rows = db.session.execute(newest).all()
        found: dict[Any, int] = remembered("search_found")
        found[filters_key(self, statement)] = rows[0][1] if rows else 0
        if not rows:
            return None, None
        chosen = RANKED.c.id.in_([row.id for row in rows])
        return select(RANKED.c.id, score.label("score")).where(chosen).cte(), rows[-1].id

    def postgres_newest(
        self, statement: Select, wanted: int, below: Any = None, in_order: bool = True
    ) -> Select:
        """PostgreSQL: the ids ("id") of the statement's matches (below id ``below``), newest
        first, read the cheaper way for ``wanted`` of them (``reads_newest_first``): the
        records newest first, each asked for the words (ts_match_vq, the function behind @@,
        which no index serves), stopping there; or every match from the GIN index, sorted
        (not ``in_order``: a count's, unsorted). The index's matches are a materialized CTE,
        planned for all its rows: under ORDER BY id LIMIT, PostgreSQL would guess at a
        prefix's matches (2% of the records, whatever they are) and may walk every record."""
        newest_first = self.reads_newest_first(statement, wanted)
        if below is not None:
            statement = statement.where(Feedback.id < below)
        if newest_first:
            asked = func.ts_match_vq(literal_column("feedback.search_vector"), self.query_once)
            found = select(Feedback.id.label("id")).where(asked)
            return narrowed(found, statement, self).order_by(Feedback.id.desc())
        matches = self.gin_matches(statement)
        found = select(matches.c.id)
        return found.order_by(matches.c.id.desc()) if in_order else found

    def gin_matches(self, statement: Select) -> Any:
        """PostgreSQL: the statement's matches' ids, from the GIN index: a materialized CTE,
        planned for all its rows (see ``postgres_newest``)."""
        found = select(Feedback.id.label("id")).where(self.matching)
        return narrowed(found, statement, self).cte().prefix_with("MATERIALIZED")

    def postgres_matching(self, statement: Select, wanted: int) -> Any:
        """PostgreSQL: the words' condition on a statement in an order of its own (most
        customers first, ...), for ``wanted`` records: each record asked when the words are
        common enough (``reads_newest_first``), else among the GIN index's matches."""
        if self.reads_newest_first(statement, wanted):
            return func.ts_match_vq(literal_column("feedback.search_vector"), self.query_once)
        return Feedback.id.in_(select(self.gin_matches(select(Feedback)).c.id))

    @property
    def query_once(self) -> Any:  # PostgreSQL: as an expression, made again for each record
        return select(self.postgres_query).scalar_subquery()

    def reads_newest_first(self, statement: Select, wanted: int) -> bool:
        """PostgreSQL: whether ``wanted`` of the statement's matches come within ORDERED_READS
        of its records read newest first, as its matches among the newest PROBE_RECORDS say."""
        return newest_hits(self, statement) * ORDERED_READS >= wanted * PROBE_RECORDS


def filters_key(index: SearchIndex, statement: Select) -> tuple[Any, ...]:
    """PostgreSQL: the words and the filters, as the key to what a request remembers."""
    where = statement.whereclause
    asked = None if where is None else where.compile(dialect=db.session.get_bind().dialect)
    return (index.words, index.every_word, str(asked), repr(asked.params if asked else None))


def newest_hits(index: SearchIndex, statement: Select) -> int:
    """PostgreSQL: how many of the newest PROBE_RECORDS records have the words and pass the
    statement's filters (read newest first: a millisecond, however long the log)."""
    where, key = statement.whereclause, filters_key(index, statement)
    known: dict[Any, int] = remembered("search_hits")
    if key not in known:
        vector = literal_column("feedback.search_vector").label("vector")
        newest = select(Feedback.id, vector).order_by(Feedback.id.desc()).limit(PROBE_RECORDS)
        newest = newest.subquery("newest")
        hits = select(func.count()).where(func.ts_match_vq(newest.c.vector, index.query_once))
        if where is not None:  # each record's own row, beside it
            hits = hits.where(exists().where(Feedback.id == newest.c.id, where))
        known[key] = db.session.scalar(hits)
    return known[key]


@dataclass(frozen=True)
class Term:
    """SQLite: a word as the index is asked for it (``phrase``: whole, in any of its forms,
    when the index holds it so, else as the start of longer words) and how rare it is
    (``rarity``: bm25's inverse document frequency)."""

    phrase: str
    rarity: float
    matches: int  # how many records hold it: counted to RARITY_SAMPLE, then estimated


def search_index(words: list[str], any_word: bool = False) -> SearchIndex | None:
    """The database's full-text index, asked for these words (all, or any); None when no
    word was given, or on SQLite when no record holds (all of) them."""
    if not words:
        return None
    if db.session.get_bind().dialect.name == "sqlite":
        terms = sqlite_terms(words)
        found = [terms[word] for word in words if terms[word] is not None]
        if not found or (len(found) < len(words) and not any_word):
            return None
        index = SearchIndex(SEARCH_INDEX, SEARCH_INDEX.c.rowid, None, tuple(found), not any_word)
        return dataclasses.replace(index, matching=match(index.query))
    whole = postgres_whole(words)
    query = functools.reduce(
        lambda left, right: left.op("||" if any_word else "&&")(right),
        (word_query(word, whole[word]) for word in words),
    )
    vector = literal_column("feedback.search_vector")
    return SearchIndex(
        Feedback.__table__,
        Feedback.id,
        vector.op("@@")(query),
        every_word=not any_word,
        postgres_query=query,
        words=tuple((word, whole[word]) for word in words),
    )


def postgres_whole(words: list[str]) -> dict[str, bool]:
    """PostgreSQL: whether the index holds each word whole (in any of its forms, as it stems
    them). A word held whole is asked for whole, as on SQLite (``sqlite_terms``): the
    column's statistics tell PostgreSQL how many records hold it, where it guesses at a
    prefix. A word it does not hold is asked for as the start of longer words ("expo" finds
    "export"). Each EXISTS reads a rare word's few index entries or a common one's first
    records, as the statistics say. Remembered for the request."""
    known: dict[str, bool] = remembered("search_whole")
    asked = [word for word in words if word not in known]
    if asked:
        vector = literal_column("feedback.search_vector")
        held = (
            select(Feedback.id).where(vector.op("@@")(word_query(word, whole=True))).exists()
            for word in asked
        )
        known |= zip(asked, db.session.execute(select(*held)).one(), strict=True)
    return {word: known[word] for word in words}


def remembered(name: str) -> dict[Any, Any]:
    """What the request being answered remembers under ``name`` (nothing, outside one)."""
    return request.environ.setdefault(f"hedwig.{name}", {}) if has_request_context() else {}


def match(expression: str) -> Any:  # SQLite
    return literal_column("feedback_search").op("MATCH")(expression)


def sqlite_terms(words: list[str]) -> dict[str, Term | None]:
    """SQLite: each word as the index will be asked for it, and how rare it is; None for a
    word no record holds, whole or as the start of a longer one. A word held whole is asked
    for whole (in all its forms, as the index stems them: "exported" finds "exports"): FTS5
    reads a whole word's matches newest first and stops at the page, where it would read
    every match of a prefix first. A word it does not hold is asked for as a prefix ("expo"
    finds "export"). Remembered for the request: a list page counts and ranks the same words."""
    known: dict[str, Term | None] = remembered("search_terms")
    asked = [word for word in words if word not in known]
    if asked:
        newest = select(func.max(Feedback.id)).scalar_subquery()
        counted = newest_matches({word: f'"{word}"' for word in asked}, newest)
        partial = [word for word in asked if not counted[word][0]]
        if partial:
            counted |= newest_matches({word: f'"{word}"*' for word in partial}, newest)
        for word in asked:
            matches, oldest, top = counted[word]
            phrase = f'"{word}"' if word not in partial else f'"{word}"*'
            known[word] = Term(phrase, *rarity(matches, oldest, top)) if matches else None
    return {word: known[word] for word in words}


def newest_matches(phrases: dict[str, str], newest: Any) -> dict[str, tuple[int, int, int]]:
    """SQLite: for each phrase, how many of its newest RARITY_SAMPLE matches there are, the
    oldest id among them, and the newest record's id: one statement for them all."""
    counts = union_all(
        *(
            select(literal(n), func.count(), func.min(sample.c.rowid), newest).select_from(sample)
            for n, sample in enumerate(
                select(SEARCH_INDEX.c.rowid)
                .where(match(phrase))
                .order_by(SEARCH_INDEX.c.rowid.desc())
                .limit(RARITY_SAMPLE)
                .subquery()
                for phrase in phrases.values()
            )
        )
    )
    words = list(phrases)
    return {words[n]: (count, oldest, top) for n, count, oldest, top in db.session.execute(counts)}


def rarity(matches: int, oldest: int, newest: int) -> tuple[float, int]:
    """bm25's inverse document frequency of a word in ``matches`` of the log's ``newest``
    records (its ids, a count that deletions only round up), and those matches. A word
    matched more than RARITY_SAMPLE times is counted as often as in its newest RARITY_SAMPLE
    matches, which span the ids from ``oldest`` to ``newest``."""
    if matches >= RARITY_SAMPLE:
        matches = min(newest, RARITY_SAMPLE * newest // (newest - oldest + 1))
    return max(1e-6, math.log((newest - matches + 0.5) / (matches + 0.5))), matches


def backed_score(score: Any) -> Any:
    """A match's score with a small boost for the customers backing its record: at most
    BACKING_BOOST more (half of it at BACKING_HALF customers), less than a title outweighs
    the details, so a popular weak match never passes a strong one. Scores are negative, as
    bm25's, the best lowest: the boost makes them lower. The older matches a list reads past
    the window have none, and are not weighed: on SQLite, weighing each costs a list page of
    a common word 15%."""
    return case((score.is_not(None), score * BACKING))


# Built once: search() runs for every find canvas and list page. Each column's bm25() with
# its weight saturated (SATURATED), times the column's weight.
SQLITE_SCORE = literal_column(
    " + ".join(
        f"{weight} * bm25(feedback_search, "
        + ", ".join(str(SATURATED if n == column else 0.0) for n in range(len(WEIGHTS)))
        + ")"
        for column, weight in enumerate(WEIGHTS)
    )
)
BACKING = 1.0 + BACKING_BOOST * Feedback.customer_count / (Feedback.customer_count + BACKING_HALF)


@functools.lru_cache(maxsize=4096)  # built once: a find canvas asks each word three times
def word_query(word: str, whole: bool = False) -> Any:
    """PostgreSQL: a word's tsquery, the word folded as the index folds it (hedwig_fold: accents
    off, lower case, split at all but letters and digits), each part a prefix (or ``whole``),
    stemmed by the index's own configuration ("exported" is 'export':*): "1\u2474" is '1':* &
    '1':*, as unaccent makes U+2474 "(1)". Only letters, digits and spaces are left, so nothing
    becomes tsquery syntax; nothing left is the empty query, which && and || skip. Each
    function is immutable: the planner makes the query once, not once per row."""
    folded = func.btrim(func.hedwig_fold(literal(word, Text)))
    parts = folded if whole else func.regexp_replace(folded, r"(\S+)", r"\1:*", "g")
    return func.to_tsquery(POSTGRES_CONFIG, func.replace(parts, " ", " & "))


def search_words(q: str) -> list[str]:
    """The words of a search, lower-cased, as the index splits them; one-letter words and
    the commonest (STOPWORDS) only when there is nothing else."""
    words = WORD.findall(q.lower())
    telling = [word for word in words if len(word) > 1 and word not in STOPWORDS]
    return list(dict.fromkeys(telling or words))[:SEARCH_WORDS_MAX]


STOPWORDS = frozenset(
    """a about an and any are as at be but by can could do does for from had has have hello hi
    how i if in into is it its me my no not of on or our please so that the their them there
    they this to us was we were what when where which who will with would you your""".split()  # noqa: SIM905
)
