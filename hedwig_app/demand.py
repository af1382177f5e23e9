"""The demand page, ``/demand``: the records that matter most over a window (the last 30, 90 or
365 days, or all time), ranked by how many customers asked for each in it, with the companies
and monthly spend behind each; the records rising fastest (the most new evidence against the
window before); and a chart of evidence per week for the top five, drawn here as SVG. Views and
their counting only. Imports nothing of Hedwig's but models.

What it costs, and why. Counting a window groups its evidence by record: at 50,000 records and
150,000 pieces of evidence spread over two years, on SQLite, about 0.07 s for 90 days and
0.3 s for 365 days or all time (the ranking, and the rising records' two windows), where the
list page answers in a few milliseconds. So a window is counted once and the count kept, per process
(``Counted``, in ``app.extensions``), and each request asks only whether anything changed
since: the newest evidence id and the newest change to a record (``data_version()``: one step
down the primary key, one down ix_feedback_updated). Adding evidence moves the first; removing
it, a merge, a status, an edit or a company read move the second, as each rewrites its record
(a change that leaves the record's columns as they were is seen within RECOUNT_SECONDS). A
count is redone anyway once it is RECOUNT_SECONDS old, as the window moves on. The records a
count names are read again by id at each request (at most 35 rows, only the columns shown), so
titles, statuses, companies and spend are as they are now; and as a deletion moves neither
mark, a record gone from that read has the window counted again at once: a deleted or merged
record never shows, and the next one takes its place. A recount reads only its window's
evidence, from ix_evidence_window (when, record, customer) without the evidence table, and
each record it counted once, for its spend: its cost grows with the window, not the log. So a
page costs what the list's does, and a recount is paid once per process after each change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy import case, distinct, func, literal_column, select
from sqlalchemy.orm import load_only

from models import Evidence, Feedback, db, utcnow

demand = Blueprint("demand", __name__)

# ?days=: the window's days (None: all time), and its name on the page.
WINDOWS: dict[str, int | None] = {"30": 30, "90": 90, "365": 365, "all": None}
WINDOW_NAMES = {"30": "30 days", "90": "90 days", "365": "365 days", "all": "All time"}
DEFAULT_WINDOW = "90"
TOP = 20  # records ranked
RISING = 10  # records rising
CHARTED = 5  # records charted, week by week
CHART_WEEKS_MAX = 104  # all time is charted over the last two years' weeks at most
RECOUNT_SECONDS = 60  # a count is redone at least this often, as its window moves on


@dataclass(frozen=True)
class Ranked:
    feedback_id: int
    customers: int  # distinct customers who asked in the window
    evidence: int  # pieces of evidence in the window


@dataclass(frozen=True)
class Rise:
    feedback_id: int
    recent: int  # pieces of evidence in the window
    before: int  # in the window of the same length before it

    @property
    def change(self) -> int:
        return self.recent - self.before


@dataclass(frozen=True)
class Counted:
    """A window, counted: what the page shows but the records' own columns."""

    version: tuple[Any, ...]  # data_version() when counted
    counted_at: datetime
    ranked: tuple[Ranked, ...]
    rising: tuple[Rise, ...]
    chart: Chart | None  # the top records' evidence per week, drawn

    @property
    def ids(self) -> set[int]:
        rows = (*self.ranked, *self.rising, *(self.chart.lines if self.chart else ()))
        return {row.feedback_id for row in rows}


@demand.get("/demand")
def demand_page() -> str:
    window = window_choice()
    counted = current_count(window)
    records = records_by_id(counted.ids)
    if len(records) < len(counted.ids):  # deleted or merged since it was counted
        counted = current_count(window, recount=True)
        records = records_by_id(counted.ids)
    return render_template(
        "demand.html",
        window=window,
        windows=WINDOW_NAMES,
        days=WINDOWS[window],
        ranked=with_records(counted.ranked, records),
        rising=with_records(counted.rising, records),
        chart=counted.chart,
        lines=with_records(counted.chart.lines if counted.chart else (), records),
        any_evidence=counted.version[0] is not None,
    )


def with_records(
    rows: Sequence[Ranked | Rise | Line], records: dict[int, Feedback]
) -> list[tuple[Any, Feedback]]:
    """Each counted row beside its record as it is now; a record gone since, left out."""
    return [(row, records[row.feedback_id]) for row in rows if row.feedback_id in records]


def window_choice() -> str:
    """?days=: 30, 90 (when not given), 365 or all; any other is refused, not ignored."""
    window = request.args.get("days") or DEFAULT_WINDOW
    if window not in WINDOWS:
        abort(400, f"There is no window of {window[:20]!r} days: use 30, 90, 365 or all.")
    return window


def current_count(window: str, recount: bool = False) -> Counted:
    """The window's count, kept from an earlier request while nothing has changed since and
    it is younger than RECOUNT_SECONDS; else counted now, and kept."""
    kept: dict[str, Counted] = current_app.extensions.setdefault("hedwig_demand", {})
    version, now = data_version(), utcnow()
    counted = kept.get(window)
    if (
        recount
        or counted is None
        or counted.version != version
        or not timedelta(0) <= now - counted.counted_at <= timedelta(seconds=RECOUNT_SECONDS)
    ):
        counted = count_window(WINDOWS[window], version, now)
        kept[window] = counted  # one assignment: another thread reads the old or the new
    return counted


def data_version() -> tuple[Any, ...]:
    """What moves whenever the counts could: the newest evidence id and the newest change to a
    record (None, None in an empty log). Read from two indexes, never a table."""
    newest_evidence = select(func.max(Evidence.id)).scalar_subquery()
    newest_change = select(func.max(Feedback.updated_at)).scalar_subquery()
    return tuple(db.session.execute(select(newest_evidence, newest_change)).one())


def count_window(days: int | None, version: tuple[Any, ...], now: datetime) -> Counted:
    since = now - timedelta(days=days) if days else None
    ranked = top_records(since)
    weeks, series = evidence_per_week([row.feedback_id for row in ranked[:CHARTED]], since, now)
    return Counted(
        version=version,
        counted_at=now,
        ranked=ranked,
        rising=rising_records(since, days) if since and days else (),
        chart=chart_drawing(weeks, series),
    )


# The record of each piece of evidence, as an expression: grouped by the bare column, SQLite
# would read the whole table in record order (ix_evidence_feedback) to save a sort, where the
# window's rows alone, from ix_evidence_window, cost a fraction of that.
UNINDEXED_RECORD = Evidence.feedback_id + literal_column("0")


def top_records(since: datetime | None) -> tuple[Ranked, ...]:
    """The TOP records with the most distinct customers asking since ``since`` (ever, when
    None); ties go to the record whose companies spend more, then to more evidence."""
    customers = func.count(distinct(Evidence.customer_key))
    counts = select(
        UNINDEXED_RECORD.label("feedback_id"),
        customers.label("customers"),
        func.count().label("evidence"),
    ).group_by(UNINDEXED_RECORD)
    if since is not None:
        counts = counts.where(Evidence.created_at >= since)
    counts = counts.subquery()
    rows = db.session.execute(
        select(counts.c.feedback_id, counts.c.customers, counts.c.evidence)
        .join(Feedback, Feedback.id == counts.c.feedback_id)
        .order_by(
            counts.c.customers.desc(),
            Feedback.monthly_spend.desc(),
            counts.c.evidence.desc(),
            counts.c.feedback_id.desc(),
        )
        .limit(TOP)
    )
    return tuple(Ranked(*row) for row in rows)


def rising_records(since: datetime, days: int) -> tuple[Rise, ...]:
    """The RISING records with the most more evidence since ``since`` than in the ``days``
    before it; only those with more now than then."""
    recent = func.sum(case((Evidence.created_at >= since, 1), else_=0))
    gain = recent * 2 - func.count()  # recent - before
    rows = db.session.execute(
        select(UNINDEXED_RECORD, recent, func.count() - recent)
        .where(Evidence.created_at >= since - timedelta(days=days))
        .group_by(UNINDEXED_RECORD)
        .having(gain > 0)
        .order_by(gain.desc(), recent.desc(), UNINDEXED_RECORD.desc())
        .limit(RISING)
    )
    return tuple(Rise(*row) for row in rows)


def week_of(moment: datetime) -> date:
    """The Monday (UTC) of the week ``moment`` falls in."""
    return moment.date() - timedelta(days=moment.weekday())


def evidence_per_week(
    ids: Sequence[int], since: datetime | None, now: datetime
) -> tuple[tuple[date, ...], dict[int, tuple[int, ...]]]:
    """The weeks the window touches (all time: from the first of these records' evidence, at
    most CHART_WEEKS_MAX), and each record's evidence in each, in the order of ``ids``."""
    if not ids:
        return (), {}
    last = week_of(now)
    earliest = last - timedelta(weeks=CHART_WEEKS_MAX - 1)
    first = max(week_of(since), earliest) if since else earliest
    heard = db.session.execute(
        select(Evidence.feedback_id, Evidence.created_at).where(
            Evidence.feedback_id.in_(ids), Evidence.created_at >= datetime.combine(first, time())
        )
    ).all()
    if since is None and heard:
        first = max(earliest, min(week_of(at) for _, at in heard))
    weeks = tuple(first + timedelta(weeks=n) for n in range((last - first).days // 7 + 1))
    counts = {feedback_id: [0] * len(weeks) for feedback_id in ids}
    for feedback_id, at in heard:
        week = (week_of(at) - first).days // 7
        if 0 <= week < len(weeks):  # never a week ahead of this one (a clock set wrong)
            counts[feedback_id][week] += 1
    return weeks, {feedback_id: tuple(counts[feedback_id]) for feedback_id in ids}


def records_by_id(ids: set[int]) -> dict[int, Feedback]:
    """The records as they are now, with only the columns the page shows; one gone since it
    was counted is not among them."""
    if not ids:
        return {}
    records = db.session.scalars(
        select(Feedback)
        .where(Feedback.id.in_(ids))
        .options(
            load_only(
                Feedback.title,
                Feedback.status,
                Feedback.customer_count,
                Feedback.company_count,
                Feedback.monthly_spend,
            )
        )
    )
    return {record.id: record for record in records}


# The chart: an SVG drawing in viewBox units, scaled by the browser to the page's width. It is
# drawn when a window is counted, and kept with the count; the template writes it out.
CHART_WIDTH, CHART_HEIGHT = 640, 240
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 40, 628, 12, 208
X_LABELS_MAX = 7
DOTS_WEEKS_MAX = 20  # a dot on each week's point while there are few enough to tell apart


@dataclass(frozen=True)
class Line:
    number: int  # 1, 2, ...: its colour and dash in the stylesheet (.series-1, ...)
    feedback_id: int
    counts: tuple[int, ...]  # evidence per week
    points: tuple[tuple[float, float], ...]
    path: str  # the points, as <polyline points> takes them


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    weeks: tuple[date, ...]
    lines: tuple[Line, ...]
    y_ticks: tuple[tuple[float, int], ...]  # (y, count)
    x_ticks: tuple[tuple[float, str], ...]  # (x, the week's label)
    dots: bool


def chart_drawing(weeks: Sequence[date], series: dict[int, Sequence[int]]) -> Chart | None:
    """Where each line (a record's evidence per week, by record id), tick and label goes; the
    template draws them. None: nothing to draw."""
    if not weeks or not series:
        return None
    most = max(max(counts) for counts in series.values())
    step = tick_step(most)
    highest = max(step, math.ceil(most / step) * step)

    def x(week: int) -> float:
        if len(weeks) == 1:
            return (PLOT_LEFT + PLOT_RIGHT) / 2
        return round(PLOT_LEFT + week * (PLOT_RIGHT - PLOT_LEFT) / (len(weeks) - 1), 1)

    def y(count: int) -> float:
        return round(PLOT_BOTTOM - count * (PLOT_BOTTOM - PLOT_TOP) / highest, 1)

    def line(number: int, feedback_id: int, counts: Sequence[int]) -> Line:
        points = tuple((x(week), y(count)) for week, count in enumerate(counts))
        path = " ".join(f"{px:g},{py:g}" for px, py in points)
        return Line(number, feedback_id, tuple(counts), points, path)

    lines = tuple(
        line(number, feedback_id, counts)
        for number, (feedback_id, counts) in enumerate(series.items(), start=1)
    )
    every = math.ceil(len(weeks) / X_LABELS_MAX)
    label = "%b %Y" if (weeks[-1] - weeks[0]).days > 180 else "%b %-d"
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        left=PLOT_LEFT,
        right=PLOT_RIGHT,
        top=PLOT_TOP,
        bottom=PLOT_BOTTOM,
        weeks=tuple(weeks),
        lines=lines,
        y_ticks=tuple((y(count), count) for count in range(0, highest + 1, step)),
        x_ticks=tuple((x(n), weeks[n].strftime(label)) for n in range(0, len(weeks), every)),
        dots=len(weeks) <= DOTS_WEEKS_MAX,
    )


def tick_step(highest: int) -> int:
    """A round step (1, 2, 5, 10, 20, 50, ...) that marks 0 to ``highest`` in at most 5 ticks."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if math.ceil(highest / (factor * magnitude)) <= 4:
                return factor * magnitude
        magnitude *= 10
