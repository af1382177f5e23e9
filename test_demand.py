"""The demand page: what matters most over a window, ranked by the customers who asked in it,
what is rising, and the chart of the top records' evidence per week."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta

import flask_migrate
import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient

from conftest import (
    WORKSPACE_ID,
    add_feedback,
    delete_now,
    merge_now,
    page_text,
    post,
    signed_in_browser,
    stored_evidence,
)
from hedwig_app import demand
from hedwig_app.records import add_evidence, refresh_backing, reweigh_records
from models import Company, ContactCompany, Evidence, Feedback, db, utcnow

# --- Helpers --------------------------------------------------------------------------------------


def record_with(app: Flask, title: str, *asked: tuple[str, float]) -> int:
    """A record backed by customers (their emails) who asked so many days ago each."""
    with app.app_context():
        record = Feedback(title=title, source="web")
        db.session.add(record)
        for email, days_ago in asked:
            evidence = add_evidence(record, source="web", customer_email=email)
            evidence.created_at = utcnow() - timedelta(days=days_ago)
        refresh_backing(record)
        db.session.commit()
        return record.id


def asked_again(app: Flask, feedback_id: int, email: str, days_ago: float = 0) -> None:
    with app.app_context():
        record = db.session.get(Feedback, feedback_id)
        evidence = add_evidence(record, source="web", customer_email=email)
        evidence.created_at = utcnow() - timedelta(days=days_ago)
        refresh_backing(record)
        db.session.commit()


def customers(count: int, prefix: str, days_ago: float = 1) -> list[tuple[str, float]]:
    return [(f"{prefix}{n}@example.com", days_ago) for n in range(count)]


def table(page: str, kind: str) -> str:
    """The page's table of that kind ("demand", "rising", "chart-numbers"), or ""."""
    found = re.search(rf'<table class="feedback {kind}">(.*?)</table>', page, re.S)
    return found.group(1) if found else ""


def cells(row: str, name: str) -> str:
    return re.search(rf'<td class="number {name}">(.*?)</td>', row, re.S).group(1).strip()


def ranked(page: str) -> list[tuple[int, int]]:
    """The ranked records, best first: (id, customers who asked in the window)."""
    rows = re.findall(r'<tr data-feedback-id="(\d+)">(.*?)</tr>', table(page, "demand"), re.S)
    return [(int(feedback_id), int(cells(row, "customers"))) for feedback_id, row in rows]


def rising(page: str) -> list[tuple[int, str, int, int]]:
    """The rising records: (id, change, evidence in the window, in the window before)."""
    rows = re.findall(r'<tr data-feedback-id="(\d+)">(.*?)</tr>', table(page, "rising"), re.S)
    return [
        (int(i), cells(row, "change"), int(cells(row, "recent")), int(cells(row, "before")))
        for i, row in rows
    ]


def demand_page(client: FlaskClient, days: str | None = None) -> str:
    response = client.get("/demand" + (f"?days={days}" if days else ""))
    assert response.status_code == 200
    return page_text(response)


def week_label(moment: datetime) -> str:
    return (moment.date() - timedelta(days=moment.weekday())).strftime("%b %-d, %Y")


# --- Ranking --------------------------------------------------------------------------------------


def test_records_are_ranked_by_the_customers_who_asked_in_the_window(
    app: Flask, signed_in: FlaskClient
) -> None:
    """90 days unless asked: evidence older than the window does not count, and a customer
    who asked twice counts once."""
    three = record_with(app, "Dark mode", *customers(3, "dark"))
    old = record_with(app, "SSO", *customers(2, "sso"), *customers(5, "old", days_ago=120))
    twice = record_with(app, "Export", ("ana@example.com", 3), ("ANA@example.com", 1))
    page = demand_page(signed_in)
    assert ranked(page) == [(three, 3), (old, 2), (twice, 1)]
    assert re.search(r'<td class="number evidence">2</td>', table(page, "demand"))  # Export's
    assert ranked(demand_page(signed_in, "365")) == [(old, 7), (three, 3), (twice, 1)]


def test_each_window_counts_only_its_own_days(app: Flask, signed_in: FlaskClient) -> None:
    ages = {"Ten days": 10, "Sixty days": 60, "Two hundred days": 200, "Five hundred": 500}
    ids = {title: record_with(app, title, ("c@example.com", days)) for title, days in ages.items()}
    shown = {
        days: {feedback_id for feedback_id, _ in ranked(demand_page(signed_in, days))}
        for days in ("30", "90", "365", "all")
    }
    assert shown["30"] == {ids["Ten days"]}
    assert shown["90"] == {ids["Ten days"], ids["Sixty days"]}
    assert shown["365"] == {ids["Ten days"], ids["Sixty days"], ids["Two hundred days"]}
    assert shown["all"] == set(ids.values())
    page = demand_page(signed_in, "30")
    assert "<strong>30 days</strong>" in page
    assert 'href="/demand?days=all"' in page


def test_a_window_that_is_not_offered_is_refused(app: Flask, signed_in: FlaskClient) -> None:
    record_with(app, "Dark mode", ("a@example.com", 1))
    for days in ("7", "91", "-1", "ALL", "30days", "x" * 300):
        response = signed_in.get(f"/demand?days={days}")
        assert response.status_code == 400, days
        assert "use 30, 90, 365 or all" in page_text(response)
    assert "<strong>90 days</strong>" in demand_page(signed_in, "")  # empty: the default


def test_only_the_top_twenty_are_ranked(app: Flask, signed_in: FlaskClient) -> None:
    ids = [record_with(app, f"Ask {n}", *customers(n + 1, f"r{n}-")) for n in range(22)]
    assert [feedback_id for feedback_id, _ in ranked(demand_page(signed_in))] == ids[:1:-1]


def test_rising_compares_the_window_with_the_one_before(app: Flask, signed_in: FlaskClient) -> None:
    """+5: seven pieces of evidence in the last 90 days against two in the 90 before; a record
    asked for less than before is not rising, and all time has no "before"."""
    rises = record_with(
        app, "Rises", *customers(7, "new", days_ago=10), *customers(2, "then", days_ago=100)
    )
    steady = record_with(app, "Steady", *customers(2, "s", days_ago=5), ("t@example.com", 95))
    falls = record_with(app, "Falls", ("f@example.com", 3), *customers(4, "was", days_ago=150))
    record_with(app, "Long ago", ("g@example.com", 200))
    page = demand_page(signed_in)
    assert rising(page) == [(rises, "+5", 7, 2), (steady, "+1", 2, 1)]
    assert falls not in [feedback_id for feedback_id, *_ in rising(page)]
    assert [row[0] for row in rising(demand_page(signed_in, "30"))] == [rises, steady, falls]
    all_time = demand_page(signed_in, "all")
    assert "Rising" not in all_time
    assert table(all_time, "rising") == ""


def test_nothing_rising_says_so(app: Flask, signed_in: FlaskClient) -> None:
    record_with(app, "Falls", ("f@example.com", 3), *customers(4, "was", days_ago=150))
    assert "Nothing is rising" in demand_page(signed_in)


def test_companies_and_spend_stand_beside_each_record(app: Flask, signed_in: FlaskClient) -> None:
    with app.app_context():
        acme = Company(workspace_id=WORKSPACE_ID, intercom_id="c1", name="Acme", monthly_spend=1290)
        big = Company(workspace_id=WORKSPACE_ID, intercom_id="c2", name="Big", monthly_spend=5000)
        db.session.add_all([acme, big])
        db.session.flush()
        for contact, company in (("contact-1", acme), ("contact-2", acme), ("contact-3", big)):
            db.session.add(
                ContactCompany(
                    workspace_id=WORKSPACE_ID,
                    contact_id=contact,
                    company_id=company.id,
                    state="read",
                )
            )
        db.session.flush()
        record = Feedback(title="Weighed", source="intercom", workspace_id=WORKSPACE_ID)
        db.session.add(record)
        for contact in ("contact-1", "contact-2", "contact-3"):
            add_evidence(
                record, source="intercom", workspace_id=WORKSPACE_ID, contact_id=contact,
                conversation_id=f"conv-{contact}", customer_email=f"{contact}@example.com",
            )  # fmt: skip
        db.session.flush()
        reweigh_records([record.id])
        db.session.commit()
        weighed = record.id
    unweighed = record_with(app, "No company known", *customers(3, "u"))  # newer, as many
    rows = dict(
        re.findall(
            r'<tr data-feedback-id="(\d+)">(.*?)</tr>',
            table(demand_page(signed_in), "demand"),
            re.S,
        )
    )
    assert [i for i, _ in ranked(demand_page(signed_in))] == [weighed, unweighed]  # spend first
    assert cells(rows[str(weighed)], "companies") == "2"
    assert cells(rows[str(weighed)], "spend") == "$6,290"
    assert cells(rows[str(unweighed)], "companies") == "0"
    assert "$" not in cells(rows[str(unweighed)], "spend")


def test_each_record_is_shown_as_it_is_now(app: Flask, signed_in: FlaskClient) -> None:
    """A title edited or a status changed since the window was counted shows at once."""
    feedback_id = record_with(app, "Dark mode", ("a@example.com", 1))
    assert 'class="status open">Open<' in demand_page(signed_in)
    with app.app_context():
        record = db.session.get(Feedback, feedback_id)
        record.title, record.status = "Dark mode everywhere", "planned"
        db.session.commit()
    page = demand_page(signed_in)
    assert "Dark mode everywhere" in page
    assert 'class="status planned">Planned<' in page


def test_new_evidence_counts_at_once(app: Flask, signed_in: FlaskClient) -> None:
    first = record_with(app, "First", *customers(2, "a"))
    second = record_with(app, "Second", ("b@example.com", 1))
    assert ranked(demand_page(signed_in)) == [(first, 2), (second, 1)]
    asked_again(app, second, "c@example.com")
    asked_again(app, second, "d@example.com")
    assert ranked(demand_page(signed_in)) == [(second, 3), (first, 2)]


def test_removed_evidence_stops_counting_at_once(app: Flask, signed_in: FlaskClient) -> None:
    first = record_with(app, "First", *customers(2, "a"))
    second = record_with(app, "Second", *customers(3, "b"))
    assert ranked(demand_page(signed_in)) == [(second, 3), (first, 2)]
    for evidence in stored_evidence(app)[-2:]:
        url = f"/feedback/{second}/evidence/{evidence.id}/delete"
        assert post(signed_in, url).status_code == 302
    assert ranked(demand_page(signed_in)) == [(first, 2), (second, 1)]


def test_the_window_moves_on_with_the_clock(
    app: Flask, signed_in: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Evidence that leaves the window while nothing else changes stops counting once the
    count is older than RECOUNT_SECONDS."""
    leaving = record_with(app, "Leaving", ("a@example.com", 30 - 1 / 24))  # an hour left
    staying = record_with(app, "Staying", ("b@example.com", 1))
    assert {i for i, _ in ranked(demand_page(signed_in, "30"))} == {leaving, staying}
    later = utcnow() + timedelta(hours=2)
    monkeypatch.setattr(demand, "utcnow", lambda: later)
    assert {i for i, _ in ranked(demand_page(signed_in, "30"))} == {staying}


# --- Records gone ---------------------------------------------------------------------------------


def test_a_deleted_record_never_shows_and_the_next_takes_its_place(
    app: Flask, signed_in: FlaskClient
) -> None:
    """Deleting a record changes neither the newest evidence nor the newest record change
    (it is the oldest here): the page still finds it gone, and ranks and charts the rest
    without it, twenty and five."""
    by_customers = {
        n: record_with(app, f"Ask {n}", *customers(n, f"r{n}-")) for n in range(21, 0, -1)
    }
    top = by_customers[21]
    page = demand_page(signed_in)
    assert [i for i, _ in ranked(page)] == [by_customers[n] for n in range(21, 1, -1)]
    assert [i for _, i in chart_series(page)] == [by_customers[n] for n in range(21, 16, -1)]
    delete_now(app, top)
    for days in ("90", "all"):
        page = demand_page(signed_in, days)
        assert "Ask 21" not in page
        assert f'data-feedback-id="{top}"' not in page
        assert [i for i, _ in ranked(page)] == [by_customers[n] for n in range(20, 0, -1)]
        assert [i for _, i in chart_series(page)] == [by_customers[n] for n in range(20, 15, -1)]


def test_a_merged_record_never_shows_and_its_customers_count_for_the_other(
    app: Flask, signed_in: FlaskClient
) -> None:
    duplicate = record_with(app, "Duplicate", *customers(3, "a"))
    target = record_with(app, "Target", *customers(2, "b"))
    assert ranked(demand_page(signed_in)) == [(duplicate, 3), (target, 2)]
    merge_now(app, duplicate, target)
    page = demand_page(signed_in)
    assert ranked(page) == [(target, 5)]
    assert ">Duplicate<" not in page


# --- The chart ------------------------------------------------------------------------------------


def chart_series(page: str) -> list[tuple[str, int]]:
    """The chart's lines: (their number, the record each draws)."""
    svg = re.search(r'<svg viewBox="0 0 \d+ \d+" role="img".*?</svg>', page, re.S).group(0)
    return [
        (number, int(feedback_id))
        for number, feedback_id in re.findall(
            r'<g class="series series-(\d)" data-feedback-id="(\d+)">', svg
        )
    ]


def test_the_chart_draws_a_line_per_top_record_with_its_numbers_as_text(
    app: Flask, signed_in: FlaskClient
) -> None:
    ids = [record_with(app, f"Ask {n}", *customers(n + 1, f"r{n}-", days_ago=1)) for n in range(6)]
    top = ids[5]
    asked_again(app, top, "earlier@example.com", days_ago=15)
    page = demand_page(signed_in)
    assert chart_series(page) == [(str(n + 1), ids[5 - n]) for n in range(5)]  # not the 6th
    assert re.search(
        r'<svg [^>]*role="img" aria-labelledby="demand-chart-title demand-chart-desc"', page
    )
    assert 'id="demand-chart-title"' in page
    assert 'id="demand-chart-desc"' in page
    assert re.search(rf"<desc [^>]*>#{top} Ask 5: 7 pieces of evidence over \d+ weeks", page)
    assert "<polyline" in page and "<title>" in page
    # The same numbers, as a table: a row a week, a column a record.
    numbers = table(page, "chart-numbers")
    headings = re.findall(r'<th class="number">#(\d+) ', numbers)
    assert [int(h) for h in headings] == ids[:0:-1]
    weeks = dict(re.findall(r'<td class="nowrap">(.*?)</td>(.*?)</tr>', numbers, re.S))
    with app.app_context():
        heard = sorted(e.created_at for e in db.session.get(Feedback, top).evidence)
    column = lambda week: [int(n) for n in re.findall(r">(\d+)</td>", weeks[week])]  # noqa: E731
    assert column(week_label(heard[0]))[0] == 1  # the one 15 days ago
    assert column(week_label(heard[-1])) == [6, 5, 4, 3, 2]  # the top five, yesterday
    assert len(weeks) in (13, 14)  # the weeks the last 90 days touch
    assert len(table(demand_page(signed_in, "30"), "chart-numbers").split("<tr>")) - 2 in (5, 6)


def test_the_chart_reads_in_dark_mode(app: Flask, signed_in: FlaskClient) -> None:
    """Its colours come from the stylesheet, which has a dark scheme for it; the drawing
    itself names no colour."""
    record_with(app, "Dark mode", ("a@example.com", 1))
    page = demand_page(signed_in)
    svg = re.search(r"<svg viewBox=.*?</svg>", page, re.S).group(0)
    assert not re.search(r'(fill|stroke|color)="#', svg)
    stylesheet = page_text(signed_in.get("/static/style.css"))
    dark = stylesheet[stylesheet.index("@media (prefers-color-scheme: dark)") :]
    assert ".chart" in dark and "--series-1" in dark
    assert "currentColor" in stylesheet


# --- Who sees it, and what it shows when there is nothing ----------------------------------------


def test_signed_out_visitors_are_sent_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/demand?days=30")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


def test_the_nav_links_to_it_for_signed_in_users(app: Flask, client: FlaskClient) -> None:
    assert 'href="/demand"' not in page_text(client.get("/login"))
    browser = signed_in_browser(app)
    assert 'href="/demand"' in page_text(browser.get("/"))


def test_an_empty_log_says_what_to_do(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="No one asked yet")  # a record with no evidence weighs nothing
    for days in ("30", "all"):
        page = demand_page(signed_in, days)
        assert "Nothing to weigh yet" in page
        assert "<svg viewBox" not in page
        assert table(page, "demand") == ""


def test_an_empty_window_points_to_all_time(app: Flask, signed_in: FlaskClient) -> None:
    record_with(app, "Long ago", ("a@example.com", 200))
    page = demand_page(signed_in, "30")
    assert "No customer asked for anything in the last 30 days" in page
    assert 'href="/demand?days=all"' in page
    assert ranked(demand_page(signed_in, "all")) != []


def test_titles_are_shown_as_text(app: Flask, signed_in: FlaskClient) -> None:
    title = "<script>alert(1)</script> & </title></svg>"
    record_with(app, title, ("a@example.com", 1))
    page = demand_page(signed_in)
    assert "<script>alert(1)</script>" not in page
    assert "</title></svg>" not in page
    escaped = html.escape(title, quote=True)
    assert page.count(escaped) >= 5  # ranked, rising, the chart's text, legend and numbers


# --- The migration --------------------------------------------------------------------------------


def indexes(table_name: str) -> set[str]:
    return {index["name"] for index in sqlalchemy.inspect(db.engine).get_indexes(table_name)}


@pytest.mark.fresh_database
def test_the_window_indexes_migrate_down_and_up_keeping_rows(
    app: Flask, signed_in: FlaskClient
) -> None:
    """0011 adds the indexes the page reads and its downgrade drops them; no row changes."""
    feedback_id = record_with(app, "Kept", *customers(2, "k"))
    with app.app_context():
        assert {"ix_evidence_window"} <= indexes("evidence")
        assert {"ix_feedback_updated"} <= indexes("feedback")
        flask_migrate.downgrade(revision="0010")
        assert "ix_evidence_window" not in indexes("evidence")
        assert "ix_feedback_updated" not in indexes("feedback")
        counts = [
            db.session.scalar(sqlalchemy.select(sqlalchemy.func.count(model.id)))
            for model in (Feedback, Evidence)
        ]
        assert counts == [1, 2]
        db.session.rollback()
        flask_migrate.upgrade()
        assert {"ix_evidence_window"} <= indexes("evidence")
        assert {"ix_feedback_updated"} <= indexes("feedback")
    assert ranked(demand_page(signed_in)) == [(feedback_id, 2)]
