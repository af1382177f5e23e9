"""The feedback log: records and their evidence, the list, search, merge, the CSV export."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, insert, select

from conftest import (
    CONVERSATION_ID,
    INITIALIZE,
    WORKSPACE_ID,
    Inbox,
    add_feedback,
    create_user,
    delete_now,
    feedback_count,
    is_sqlite,
    page_text,
    post,
    sign_in,
    signed_in_browser,
    stored_evidence,
    stored_feedback,
)
from hedwig_app.log import CSV_COLUMNS
from hedwig_app.records import add_evidence, refresh_backing
from hedwig_app.search import SEARCH_MAX, best_matches, listed_feedback, search_words
from hedwig_app.status import status_counts
from models import DESCRIPTION_MAX, Company, ContactCompany, Evidence, Feedback, db, utcnow

# --- The feedback log -----------------------------------------------------------------------------


def test_add_feedback_by_hand_and_read_it(app: Flask, signed_in: FlaskClient) -> None:
    response = post(
        signed_in,
        "/feedback/new",
        {
            "title": "Dark mode, please",
            "description": "Our night shift\nreads the reports at 3am.",
            "customer_name": "Casey Customer",
            "customer_email": "casey@example.com",
        },
    )
    assert response.status_code == 302
    page = page_text(signed_in.get(response.headers["Location"]))
    assert "Dark mode, please" in page
    assert "reads the reports at 3am." in page
    assert "Casey Customer" in page
    assert "ada@example.com" in page  # who added it
    with app.app_context():
        feedback = db.session.scalar(select(Feedback))
        assert feedback.source == "web"
        assert feedback.created_by.email == "ada@example.com"


@pytest.mark.parametrize(
    ("title", "message"),
    [("", "A title is required."), ("   ", "A title is required."), ("x" * 201, "200 characters")],
)
def test_invalid_title_shows_the_form_again_with_values_kept(
    app: Flask, signed_in: FlaskClient, title: str, message: str
) -> None:
    response = post(
        signed_in,
        "/feedback/new",
        {"title": title, "description": "Kept details", "customer_name": "Kept Name"},
    )
    assert response.status_code == 400
    page = page_text(response)
    assert message in page
    assert "Kept details" in page
    assert 'value="Kept Name"' in page
    assert feedback_count(app) == 0


def test_title_of_exactly_200_characters_is_accepted(app: Flask, signed_in: FlaskClient) -> None:
    response = post(signed_in, "/feedback/new", {"title": "x" * 200})
    assert response.status_code == 302
    assert feedback_count(app) == 1


def test_invalid_customer_email_is_refused(app: Flask, signed_in: FlaskClient) -> None:
    response = post(signed_in, "/feedback/new", {"title": "Hi", "customer_email": "nope"})
    assert response.status_code == 400
    assert "Enter a valid email address" in page_text(response)
    assert feedback_count(app) == 0


def test_unknown_feedback_is_404(signed_in: FlaskClient) -> None:
    assert signed_in.get("/feedback/999").status_code == 404
    assert signed_in.get("/feedback/abc").status_code == 404


def test_html_in_feedback_is_shown_as_text(app: Flask, signed_in: FlaskClient) -> None:
    (feedback_id,) = add_feedback(
        app, title="<script>alert(1)</script>", customer_name="<b>Bold</b>"
    )
    for page in (
        page_text(signed_in.get("/")),
        page_text(signed_in.get(f"/feedback/{feedback_id}")),
    ):
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<b>Bold</b>" not in page


def test_list_is_newest_first_with_a_total(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Older")
    add_feedback(app, title="Newer")
    page = page_text(signed_in.get("/"))
    assert page.index("Newer") < page.index("Older")
    assert "2 records" in page


def test_empty_list_says_so(signed_in: FlaskClient) -> None:
    page = page_text(signed_in.get("/"))
    assert "No feedback yet." in page
    assert "0 records" in page


def listed_ids(response: Any) -> list[int]:
    return [int(n) for n in re.findall(r'href="/feedback/(\d+)"', page_text(response))]


def linked(page: str, rel: str) -> str | None:
    """The href of the page's Previous (rel "prev") or Next (rel "next") link, if any."""
    link = re.search(rf'<a rel="{rel}" href="([^"]+)"', page)
    return html.unescape(link.group(1)) if link else None


def walked(client: FlaskClient, url: str, rel: str = "next") -> list[tuple[str, list[int]]]:
    """Each page's URL and ids, following the Next (or Previous) links from ``url`` on."""
    pages = []
    while url:
        page = page_text(client.get(url))
        pages.append((url, listed_ids_of(page)))
        url = linked(page, rel)
        assert len(pages) < 100, "the links go round"
    return pages


def listed_ids_of(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/feedback/(\d+)"', page)]


@pytest.mark.parametrize(("rows", "pages"), [(50, 1), (51, 2), (100, 2), (101, 3)])
def test_pagination_boundaries(app: Flask, signed_in: FlaskClient, rows: int, pages: int) -> None:
    add_feedback(app, rows)
    forward = [ids for _, ids in walked(signed_in, "/")]
    assert [len(ids) for ids in forward] == [50] * (pages - 1) + [rows - 50 * (pages - 1)]
    seen = [record for ids in forward for record in ids]
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == rows
    last = page_text(signed_in.get(f"/?page={pages}"))  # an old numbered link still works
    assert listed_ids_of(last) == forward[-1]
    assert ('rel="prev"' in last) == (pages > 1) and 'rel="next"' not in last
    assert [ids for _, ids in walked(signed_in, f"/?page={pages}", "prev")] == forward[::-1]
    assert listed_ids(signed_in.get(f"/?page={pages + 1}")) == []


def tie_list(app: Flask, count: int) -> list[int]:
    """``count`` records whose customer, company and spend figures and first-heard times tie
    in threes, and a third of them planned: the ids."""
    ids = add_feedback(app, count)
    with app.app_context():
        heard = utcnow()
        for n, record_id in enumerate(ids):
            record = db.session.get(Feedback, record_id)
            record.customer_count = record.company_count = n // 3 % 7
            record.monthly_spend, record.created_at = n // 3 % 5 * 100, heard - timedelta(n // 3)
            record.status = "planned" if n % 3 == 1 else "open"
        db.session.commit()
    return ids


@pytest.mark.parametrize(
    ("sort", "column"),
    [
        ("newest", "created_at"),
        ("customers", "customer_count"),
        ("companies", "company_count"),
        ("revenue", "monthly_spend"),
    ],
)
def test_pages_follow_each_other_by_cursor_through_ties_keeping_every_filter(
    app: Flask, signed_in: FlaskClient, sort: str, column: str
) -> None:
    tie_list(app, 230)
    with app.app_context():
        open_records = db.session.scalars(select(Feedback).where(Feedback.status == "open"))
        order = sorted(open_records, key=lambda r: (getattr(r, column), r.id), reverse=True)
        expected = [record.id for record in order]
    forward = walked(signed_in, f"/?sort={sort}&status=open&importance=")
    assert [n for _, ids in forward for n in ids] == expected  # each once, in order
    assert [len(ids) for _, ids in forward] == [50, 50, 50, 3]
    for url, _ in forward[1:]:  # every page by cursor, every filter kept
        assert set(parse_qs(urlsplit(url).query)) == {"sort", "status", "after"}
        assert "153 records open" in page_text(signed_in.get(url))
    backward = walked(signed_in, forward[-1][0], "prev")
    assert [ids for _, ids in backward] == [ids for _, ids in forward[::-1]]
    for url, _ in backward[1:]:
        assert set(parse_qs(urlsplit(url).query)) == {"sort", "status", "before"}


def test_an_old_numbered_link_shows_its_page_and_leads_on_by_cursor(
    app: Flask, signed_in: FlaskClient
) -> None:
    tie_list(app, 160)
    pages = [ids for _, ids in walked(signed_in, "/?sort=customers")]
    second = page_text(signed_in.get("/?sort=customers&page=2"))
    assert listed_ids_of(second) == pages[1]
    assert listed_ids_of(page_text(signed_in.get(linked(second, "next")))) == pages[2]
    assert listed_ids_of(page_text(signed_in.get(linked(second, "prev")))) == pages[0]


@pytest.mark.parametrize(
    "query",
    [
        "after=junk",
        "after=",
        "before=_",
        "after=2025-01-01T10:00:00",
        "after=2025-01-01T10:00:00_",
        "after=2025-01-01T10:00:00_0",
        "after=2025-01-01T10:00:00_99999999999",
        "after=2025-01-01T10:00:00+05:00_3",
        "after=2025-13-01T10:00:00_3",
        "after=3_3",
        "sort=customers&after=2025-01-01T10:00:00_3",
        "sort=revenue&after=-1_3",
        "sort=revenue&before=99999999999999999999_3",
        "sort=companies&after=%EF%BC%93_3",
        "sort=customers&q=export&after=x_1",
    ],
)
def test_a_damaged_page_link_is_refused_with_a_sentence(
    app: Flask, signed_in: FlaskClient, query: str
) -> None:
    add_feedback(app, 3, title="Export")
    response = signed_in.get(f"/?{query}")
    assert response.status_code == 400
    assert "This page&#39;s link is damaged" in page_text(response)
    assert "start again from the list&#39;s first page" in page_text(response)


def test_a_long_list_counts_to_10000_and_says_so(app: Flask, signed_in: FlaskClient) -> None:
    with app.app_context():
        rows = [{"title": f"Export {n}", "source": "web"} for n in range(10_001)]
        db.session.execute(insert(Feedback), rows)
        db.session.commit()
    add_feedback(app, 1, title="Import")
    listing = page_text(signed_in.get("/"))
    assert "10,000+ records" in listing
    tabs = re.findall(r'>([\w ]+)<span class="tab-count">([\d,+]+)</span>', listing)
    assert tabs[:3] == [("All", "10,000+"), ("Open", "10,000+"), ("Planned", "0")]
    assert "10,000+ records open" in page_text(signed_in.get("/?status=open"))
    page = page_text(signed_in.get("/?q=export"))
    counted, pages = ("10,000+", "200+") if is_sqlite(app) else ("1,000+", "20+")  # see below
    assert f"{counted} records matching “export”" in page
    assert f"Page 1 of {pages}" in page
    last = page_text(signed_in.get("/?q=export&page=200"))
    assert len(listed_ids_of(last)) == 50 and 'rel="next"' not in last
    response = signed_in.get("/?q=export&page=201")
    assert response.status_code == 404
    assert "A search lists its first 10,000 matches: add a word to find others." in page_text(
        response
    )
    assert "1 record matching “import”" in page_text(signed_in.get("/?q=import"))
    assert "0 records done matching “export”" in page_text(signed_in.get("/?q=export&status=done"))


def test_a_list_filtered_by_its_evidence_counts_to_1000_and_says_so(
    app: Flask, signed_in: FlaskClient
) -> None:
    # Each record is checked beside the index: the count stops sooner than the plain list's.
    with app.app_context():
        records = [{"title": f"Blocked {n}", "source": "web"} for n in range(1_001)]
        db.session.execute(insert(Feedback), records)
        ids = db.session.scalars(select(Feedback.id).order_by(Feedback.id)).all()
        pieces = [{"feedback_id": n, "importance": "blocker"} for n in ids]
        db.session.execute(insert(Evidence), pieces)
        db.session.commit()
    (wanted,) = add_feedback(app, title="Nice one", importance="nice_to_have")
    blockers = page_text(signed_in.get("/?importance=blocker"))
    assert "1,000+ records with evidence marked blocker" in blockers
    assert listed_ids_of(blockers) == list(reversed(ids))[:50]  # newest first, a page
    nice = page_text(signed_in.get("/?importance=nice_to_have"))
    assert "1 record with evidence marked nice to have" in nice
    assert listed_ids_of(nice) == [wanted]
    searched_page = page_text(signed_in.get("/?q=blocked&importance=blocker"))
    assert "1,000+ records with evidence marked blocker matching “blocked”" in searched_page
    assert "1,002 records" in page_text(signed_in.get("/"))  # the plain list counts on
    # PostgreSQL reads each match's record to count it (its GIN index holds no ids), as a
    # filter does: any search counts to 1,000 there. SQLite's counts in its index.
    counted = "1,001" if is_sqlite(app) else "1,000+"
    assert f"{counted} records matching “blocked”" in page_text(signed_in.get("/?q=blocked"))


@pytest.mark.usefixtures("weighing")
def test_a_search_pages_past_its_ranked_window_listing_each_match_once(
    app: Flask, signed_in: FlaskClient
) -> None:
    with app.app_context():
        rows = [
            {"title": f"Other {n}", "description": "needle", "source": "web"} for n in range(620)
        ]
        db.session.execute(insert(Feedback), rows)
        db.session.commit()
    (titled,) = add_feedback(app, title="Needle in the title")
    add_feedback(app, 30, description="needle")  # newer: the title match is not the newest
    pages = walked(signed_in, "/?q=needle")
    assert [len(ids) for _, ids in pages] == [50] * 13 + [1]
    listed = [n for _, ids in pages for n in ids]
    assert listed[0] == titled and len(set(listed)) == 651  # best first, then each once
    older = listed[500:]  # past the ranked window: newest first
    assert older == sorted(older, reverse=True) and max(older) < min(listed[1:500])
    assert "Page 11 of 14" in page_text(signed_in.get(pages[10][0]))


def test_search_looks_in_title_description_and_customer(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Export is slow")
    add_feedback(app, title="Other", description="the EXPORT button")
    add_feedback(app, title="Third", customer_name="Exporter Inc")
    add_feedback(app, title="Fourth", customer_email="export@example.com")
    add_feedback(app, title="Unrelated")
    response = signed_in.get("/?q=export")
    page = page_text(response)
    assert "4 records matching" in page
    assert "Unrelated" not in page


def test_search_keeps_its_query_across_pages(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, 60, description="needle")
    add_feedback(app, 5)
    page = page_text(signed_in.get("/?q=needle"))
    assert "60 records" in page
    assert "/?q=needle&amp;page=2" in page


@pytest.mark.parametrize(
    "path", ["/feedback/9999999999999999999999999", "/feedback/0", "/?page=4611686018427387904"]
)
def test_ids_and_pages_beyond_what_a_database_keeps_are_404(
    signed_in: FlaskClient, path: str
) -> None:
    assert signed_in.get(path).status_code == 404


def test_a_search_longer_than_200_characters_is_refused(signed_in: FlaskClient) -> None:
    assert signed_in.get("/?q=" + "x" * 200).status_code == 200
    response = signed_in.get("/?q=" + "x" * 201)
    assert response.status_code == 400
    assert "Search for at most 200 characters." in page_text(response)
    assert signed_in.get("/feedback.csv?q=" + "x" * 201).status_code == 400


def test_control_characters_in_web_input_are_dropped_not_stored(
    app: Flask, signed_in: FlaskClient
) -> None:
    form = {"title": "NUL\x00 here", "customer_name": "Ca\x00sey", "description": "a\x00b\nc"}
    response = post(signed_in, "/feedback/new", form)
    assert response.status_code == 302
    (record,) = stored_feedback(app)
    (evidence,) = stored_evidence(app)
    assert (record.title, evidence.customer_name, record.description) == (
        "NUL here",
        "Casey",
        "ab\nc",
    )
    assert signed_in.get("/?q=NUL%00").status_code == 200


@pytest.mark.parametrize("path", ["/feedback/2147483648", "/feedback/%D9%A1"])
def test_ids_beyond_an_integer_column_or_in_other_digits_are_404(
    signed_in: FlaskClient, path: str
) -> None:
    assert signed_in.get(path).status_code == 404


# Demand: one record, many customers.


def backed_by(app: Flask, feedback_id: int, *customers: str, **fields: Any) -> None:
    """Customers (emails) backing a record, as if added from the Inbox or by hand."""
    with app.app_context():
        record = db.session.get(Feedback, feedback_id)
        for email in customers:
            add_evidence(record, customer_email=email, **fields)
        refresh_backing(record)
        db.session.commit()


def test_a_record_shows_how_many_customers_back_it_and_who(
    app: Flask, signed_in: FlaskClient
) -> None:
    (record_id,) = add_feedback(app, title="Dark mode", customer_email="first@example.com")
    backed_by(app, record_id, "second@example.com", "FIRST@Example.com ")  # the first again
    page = page_text(signed_in.get(f"/feedback/{record_id}"))
    assert "2 customers" in page
    assert page.index("second@example.com") < page.index("first@example.com")  # newest first
    listing = page_text(signed_in.get("/"))
    assert 'data-weight="2 customers"' in listing


def test_adding_by_hand_with_a_customer_makes_the_first_evidence(
    app: Flask, signed_in: FlaskClient
) -> None:
    form = {
        "title": "SSO with Okta",
        "description": "Enterprise plans need it.",
        "customer_name": "Dana Doe",
        "customer_email": "dana@example.com",
        "quote": "We cannot roll out without Okta.",
    }
    response = post(signed_in, "/feedback/new", form)
    assert response.status_code == 302
    (record,) = stored_feedback(app)
    (evidence,) = stored_evidence(app)
    assert (record.title, record.description, record.customer_count, record.workspace_id) == (
        "SSO with Okta",
        "Enterprise plans need it.",
        1,
        None,
    )
    assert (evidence.quote, evidence.source, evidence.created_by_id) == (
        "We cannot roll out without Okta.",
        "web",
        record.created_by_id,
    )
    page = page_text(signed_in.get(response.headers["Location"]))
    assert "We cannot roll out without Okta." in page
    assert "Shown in no Inbox" in page


def test_a_record_made_on_the_web_may_belong_to_a_connected_workspace(
    canvas_app: Flask,
) -> None:
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    page = page_text(browser.get("/feedback/new"))
    assert f'<option value="{WORKSPACE_ID}" selected>Example Co workspace</option>' in page
    post(browser, "/feedback/new", {"title": "Seen in the Inbox", "workspace_id": WORKSPACE_ID})
    response = post(browser, "/feedback/new", {"title": "Not", "workspace_id": "other-ws"})
    assert response.status_code == 400
    assert "Choose a connected workspace, or none." in page_text(response)
    (record,) = stored_feedback(canvas_app)
    assert record.workspace_id == WORKSPACE_ID


def test_removing_evidence_asks_first_then_updates_the_count(
    app: Flask, signed_in: FlaskClient
) -> None:
    (record_id,) = add_feedback(app, title="Dark mode", customer_email="a@example.com")
    backed_by(app, record_id, "b@example.com")
    first, _ = stored_evidence(app)
    url = f"/feedback/{record_id}/evidence/{first.id}/delete"
    record_page = page_text(signed_in.get(f"/feedback/{record_id}"))
    assert f'<a href="{url}">Remove…</a>' in record_page  # a link to the question, no button
    asked = page_text(signed_in.get(url))
    assert f"<h1>Remove a@example.com from #{record_id}?</h1>" in asked
    assert "is backed by 2 customers now" in asked and f'action="{url}"' in asked
    assert len(stored_evidence(app)) == 2  # asking changed nothing
    assert signed_in.post(url).status_code == 400  # no CSRF token
    assert post(signed_in, url).status_code == 302
    assert stored_feedback(app)[0].customer_count == 1
    assert post(signed_in, url).status_code == 404
    assert signed_in.get(url).status_code == 404
    assert post(signed_in, f"/feedback/999/evidence/{first.id}/delete").status_code == 404


def test_editing_a_record_changes_its_title_and_details(app: Flask, signed_in: FlaskClient) -> None:
    (record_id,) = add_feedback(app, title="Dark mod")
    assert 'value="Dark mod"' in page_text(signed_in.get(f"/feedback/{record_id}/edit"))
    response = post(signed_in, f"/feedback/{record_id}/edit", {"title": "", "description": "x"})
    assert response.status_code == 400
    assert "A title is required." in page_text(response)
    edit = {"title": "Dark mode", "description": "For the night shift"}
    assert post(signed_in, f"/feedback/{record_id}/edit", edit).status_code == 302
    (record,) = stored_feedback(app)
    assert (record.title, record.description) == ("Dark mode", "For the night shift")
    assert "Dark mode" in page_text(signed_in.get("/?q=dark"))  # the search follows
    assert signed_in.get("/feedback/999/edit").status_code == 404


def test_deleting_a_record_asks_first_then_takes_its_evidence(
    app: Flask, signed_in: FlaskClient
) -> None:
    (record_id,) = add_feedback(app, title="Spam", customer_email="a@example.com")
    page = page_text(signed_in.get(f"/feedback/{record_id}/delete"))
    assert "Delete feedback #" in page
    assert feedback_count(app) == 1
    assert post(signed_in, f"/feedback/{record_id}/delete").status_code == 302
    assert stored_feedback(app) == []
    assert stored_evidence(app) == []
    assert signed_in.get(f"/feedback/{record_id}").status_code == 404
    assert page_text(signed_in.get("/?q=spam")).count("Spam") == 0
    (new_id,) = add_feedback(app, title="After")
    assert new_id > record_id  # an id is never given out again


def test_merging_moves_the_evidence_and_old_links_lead_to_the_target(
    app: Flask, signed_in: FlaskClient
) -> None:
    (target,) = add_feedback(
        app,
        title="CSV export",
        workspace_id=WORKSPACE_ID,
        conversation_id="c1",
        customer_email="a@example.com",
    )
    (duplicate,) = add_feedback(
        app,
        title="Export to CSV",
        workspace_id=WORKSPACE_ID,
        conversation_id="c1",
        customer_email="a@example.com",
    )
    backed_by(app, duplicate, "b@example.com", workspace_id=WORKSPACE_ID, conversation_id="c2")
    page = page_text(signed_in.get(f"/feedback/{duplicate}/merge?into={target}"))
    assert f"Merge #{duplicate} into #{target}?" in page
    assert feedback_count(app) == 2
    response = post(signed_in, f"/feedback/{duplicate}/merge", {"into": str(target)})
    assert response.headers["Location"] == f"/feedback/{target}"
    (record,) = stored_feedback(app)
    assert (record.id, record.customer_count) == (target, 2)
    assert sorted((e.conversation_id, e.customer_email) for e in stored_evidence(app)) == [
        ("c1", "a@example.com"),  # the conversation that backed both is kept once
        ("c2", "b@example.com"),
    ]
    moved = signed_in.get(f"/feedback/{duplicate}")
    assert (moved.status_code, moved.headers["Location"]) == (301, f"/feedback/{target}")
    assert "Export to CSV" not in page_text(signed_in.get("/"))
    assert [row["feedback_id"] for row in export(signed_in)] == [str(target)] * 2


def test_merging_into_a_merged_record_follows_it_and_chains_stay_short(
    app: Flask, signed_in: FlaskClient
) -> None:
    first, second, third = add_feedback(app, 3)
    post(signed_in, f"/feedback/{first}/merge", {"into": str(second)})
    post(signed_in, f"/feedback/{second}/merge", {"into": str(third)})
    for old in (first, second):
        assert signed_in.get(f"/feedback/{old}").headers["Location"] == f"/feedback/{third}"
    response = post(signed_in, f"/feedback/{third}/merge", {"into": str(third)})
    assert "Merge into which record?" in page_text(signed_in.get(response.headers["Location"]))
    assert feedback_count(app) == 1


def merged_away(client: FlaskClient, duplicate: int, target: int) -> None:
    response = post(client, f"/feedback/{duplicate}/merge", {"into": str(target)})
    assert response.headers["Location"] == f"/feedback/{target}"


def test_merging_adds_the_duplicates_details_to_the_targets(
    app: Flask, signed_in: FlaskClient
) -> None:
    (target,) = add_feedback(app, title="CSV export", description="It crashes.")
    (duplicate,) = add_feedback(app, title="Export to CSV", description="No totals row\neither.")
    page = page_text(signed_in.get(f"/feedback/{duplicate}/merge?into={target}"))
    assert f"its title and details are added to #{target}'s details" in html.unescape(page)
    merged_away(signed_in, duplicate, target)
    (record,) = stored_feedback(app)
    assert record.description == (
        f"It crashes.\n\nFrom #{duplicate} Export to CSV:\nNo totals row\neither."
    )
    assert searched(signed_in, "totals") == ["CSV export"]


def test_a_merge_whose_details_would_not_fit_is_refused_and_says_why(
    app: Flask, signed_in: FlaskClient
) -> None:
    target, duplicate = add_feedback(app, 2, description="x" * (DESCRIPTION_MAX // 2))
    page = page_text(signed_in.get(f"/feedback/{duplicate}/merge?into={target}"))
    together = DESCRIPTION_MAX + len(f"\n\nFrom #{duplicate} Feedback 1:\n")
    refusal = f"would be {together:,} characters, and a record keeps {DESCRIPTION_MAX:,}"
    assert refusal in page and "shorten one of them first" in page
    assert f"Merge into #{target}</button>" not in page
    response = post(signed_in, f"/feedback/{duplicate}/merge", {"into": str(target)})
    assert response.status_code == 409 and refusal in page_text(response)
    assert [len(r.description) for r in stored_feedback(app)] == [DESCRIPTION_MAX // 2] * 2


def test_a_merged_records_source_is_where_each_of_its_parts_was_recorded(
    app: Flask, signed_in: FlaskClient
) -> None:
    (by_hand,) = add_feedback(app, title="Dark mode")
    (in_inbox,) = add_feedback(
        app, title="Dark theme", source="intercom", workspace_id=WORKSPACE_ID, conversation_id="1"
    )
    merged_away(signed_in, in_inbox, by_hand)
    badges = '<span class="badge intercom">intercom</span> <span class="badge web">web</span>'
    assert badges in page_text(signed_in.get(f"/feedback/{by_hand}"))
    assert badges in page_text(signed_in.get("/"))


def test_records_of_two_workspaces_are_not_merged(canvas_app: Flask, inbox: Inbox) -> None:
    team = signed_in_browser(canvas_app)
    (ours,) = add_feedback(
        canvas_app,
        title="CSV export",
        source="intercom",
        workspace_id=WORKSPACE_ID,
        conversation_id=CONVERSATION_ID,
        customer_email="casey.customer@example.com",
    )
    (theirs,) = add_feedback(
        canvas_app,
        title="Their export",
        source="intercom",
        workspace_id="other-ws",
        conversation_id="9",
        customer_email="someone@other.example",
    )
    refusal = "records of two workspaces are not merged, so that neither workspace sees"
    for duplicate, target in ((ours, theirs), (theirs, ours)):
        page = html.unescape(page_text(team.get(f"/feedback/{duplicate}/merge?into={target}")))
        assert refusal in page and "Example Co workspace" in page and "other-ws" in page
        assert f"Merge into #{target}</button>" not in page
        response = post(team, f"/feedback/{duplicate}/merge", {"into": str(target)})
        assert response.status_code == 409 and refusal in html.unescape(page_text(response))
    assert [record.id for record in stored_feedback(canvas_app)] == [ours, theirs]
    first = inbox.initialize()
    assert "Their export" not in json.dumps(first)
    found = inbox.click("query", inbox.find(), {"query": "export"})
    assert [item["title"] for item in list_items(found)] == ["CSV export"]


def test_a_record_made_on_the_web_merges_with_a_workspaces_and_its_inbox_shows_it(
    canvas_app: Flask, inbox: Inbox
) -> None:
    team = signed_in_browser(canvas_app)
    (by_phone,) = add_feedback(canvas_app, title="Dark mode, asked by phone")
    (in_inbox,) = add_feedback(
        canvas_app,
        title="Dark mode",
        source="intercom",
        workspace_id=WORKSPACE_ID,
        conversation_id=CONVERSATION_ID,
    )
    page = page_text(team.get(f"/feedback/{in_inbox}/merge?into={by_phone}"))
    assert f"#{by_phone} is shown where #{in_inbox} was" in page
    merged_away(team, in_inbox, by_phone)
    assert "Shown in the Inbox of Example Co workspace" in page_text(
        team.get(f"/feedback/{by_phone}")
    )
    found = inbox.click("query", inbox.find(), {"query": "dark mode"})
    assert [item["title"] for item in list_items(found)] == ["Dark mode, asked by phone"]
    (web_only,) = add_feedback(canvas_app, title="Dark mode for print")
    merged_away(team, web_only, by_phone)  # one shown in no Inbox merges into any
    assert stored_feedback(canvas_app)[0].workspace_id == WORKSPACE_ID


# A page left open on a record merged or deleted since.


def test_a_merge_sent_twice_says_it_was_merged_already(app: Flask, signed_in: FlaskClient) -> None:
    first, second = add_feedback(app, 2)
    merged_away(signed_in, first, second)
    response = post(signed_in, f"/feedback/{first}/merge", {"into": str(second)})
    assert response.status_code == 409
    assert f"#{first} was merged into #{second}: nothing was changed." in page_text(response)


def test_an_edit_sent_from_a_merged_records_page_names_the_target_and_keeps_the_text(
    app: Flask, signed_in: FlaskClient
) -> None:
    target, duplicate = add_feedback(app, 2)
    assert signed_in.get(f"/feedback/{duplicate}/edit").status_code == 200
    merged_away(signed_in, duplicate, target)
    typed = {"title": "Typed title", "description": "Typed <details>"}
    response = post(signed_in, f"/feedback/{duplicate}/edit", typed)
    assert response.status_code == 409
    page = page_text(response)
    assert f"#{duplicate} was merged into #{target} while you edited it: nothing was" in page
    assert "Typed title" in page and "Typed &lt;details&gt;" in page
    assert f'action="/feedback/{target}/edit"' in page
    assert [(r.id, r.title) for r in stored_feedback(app)] == [(target, "Feedback 0")]


def test_an_edit_sent_for_a_deleted_record_keeps_the_text(
    app: Flask, signed_in: FlaskClient
) -> None:
    (record,) = add_feedback(app)
    delete_now(app, record)
    response = post(signed_in, f"/feedback/{record}/edit", {"title": "Typed title"})
    assert response.status_code == 404
    assert f"There is no feedback #{record}" in page_text(response)
    assert "Typed title" in page_text(response)


def test_the_list_sorts_by_most_customers(app: Flask, signed_in: FlaskClient) -> None:
    few, many, none = add_feedback(app, 3)
    backed_by(app, few, "a@example.com")
    backed_by(app, many, "a@example.com", "b@example.com", "c@example.com")
    assert listed_ids(signed_in.get("/?sort=customers")) == [many, few, none]
    assert listed_ids(signed_in.get("/")) == [none, many, few]
    assert listed_ids(signed_in.get("/?sort=nonsense")) == [none, many, few]


# Search: words, in any order, by prefix, accents folded, the title first.


def searched(client: FlaskClient, q: str) -> list[str]:
    page = page_text(client.get("/?" + urlencode({"q": q})))
    return re.findall(r'href="/feedback/\d+">([^<]+)</a>', page)


@pytest.mark.usefixtures("weighing")
def test_search_finds_words_in_any_order_and_by_prefix(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="CSV export crashes the reports page")
    add_feedback(app, title="Dark mode")
    for q in ("export csv", "expo", "CRASH report", "csv   EXPORT"):
        assert searched(signed_in, q) == ["CSV export crashes the reports page"], q


def test_search_folds_accents_both_ways(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Café menu in the app")
    add_feedback(app, title="Resume where I left off")
    assert searched(signed_in, "cafe") == ["Café menu in the app"]
    assert searched(signed_in, "résumé") == ["Resume where I left off"]


@pytest.mark.usefixtures("weighing")
def test_search_ranks_the_title_then_the_details_then_the_customers_words(
    app: Flask, signed_in: FlaskClient
) -> None:
    add_feedback(app, title="Reports page", description="It should export to PDF")
    add_feedback(app, title="Export to PDF")
    add_feedback(app, title="Slow page", customer_name="Pdf Lover", quote="A PDF, please")
    assert searched(signed_in, "pdf") == ["Export to PDF", "Reports page", "Slow page"]


@pytest.mark.usefixtures("weighing")
def test_search_finds_each_form_of_a_word_both_ways_still_by_prefix(
    app: Flask, signed_in: FlaskClient
) -> None:
    add_feedback(app, title="Multi-currency invoices")
    add_feedback(app, title="Export reports", description="As the customer exported them")
    add_feedback(app, title="Exports of currencies")
    add_feedback(app, title="Café menus")
    add_feedback(app, title="Who is online")
    for q in ("currencies", "currency", "CURRENC", "curr"):
        assert set(searched(signed_in, q)) == {"Multi-currency invoices", "Exports of currencies"}
    for q in ("exported", "exports", "exporting", "export", "expo"):
        assert set(searched(signed_in, q)) == {"Export reports", "Exports of currencies"}, q
    assert searched(signed_in, "exported currency") == ["Exports of currencies"]
    assert searched(signed_in, "invoice") == ["Multi-currency invoices"]
    assert searched(signed_in, "cafes") == ["Café menus"]
    assert searched(signed_in, "menu café") == ["Café menus"]
    assert searched(signed_in, "who is") == ["Who is online"]  # only common words: kept


@pytest.mark.usefixtures("weighing")
def test_a_word_the_log_holds_whole_is_not_taken_as_the_start_of_longer_ones(
    app: Flask, signed_in: FlaskClient
) -> None:
    # Asked for whole, a word's matches are read in order, and the database knows how many.
    add_feedback(app, title="Time zones in reports")
    add_feedback(app, title="Timeout on large uploads")
    for q in ("time", "times", "TIME"):
        assert searched(signed_in, q) == ["Time zones in reports"], q
    assert searched(signed_in, "timeo") == ["Timeout on large uploads"]  # held whole by none
    both = {"Time zones in reports", "Timeout on large uploads"}
    assert set(searched(signed_in, "tim")) == both
    with app.app_context():
        assert [record.title for record in best_matches("time", None)] == ["Time zones in reports"]


@pytest.mark.usefixtures("weighing")
def test_a_title_match_outranks_a_popular_match_in_the_customers_words(
    app: Flask, signed_in: FlaskClient
) -> None:
    add_feedback(app, title="SSO with Okta", customer_email="a@example.com")
    (popular,) = add_feedback(app, title="Login page", quote="we need SSO", customer_email="b@x.io")
    backed_by(app, popular, *(f"c{n}@example.com" for n in range(30)), quote="SSO please")
    assert searched(signed_in, "sso") == ["SSO with Okta", "Login page"]


@pytest.mark.usefixtures("weighing")
def test_among_equal_matches_records_more_customers_back_come_first(
    app: Flask, signed_in: FlaskClient
) -> None:
    (backed,) = add_feedback(app, title="Dark mode", customer_email="a@example.com")
    backed_by(app, backed, "b@example.com", "c@example.com", "d@example.com")
    add_feedback(app, title="Dark mode", customer_email="e@example.com")  # newer, one customer
    with app.app_context():
        backed_first = db.session.scalars(listed_feedback("dark mode")).all()
    assert [record.customer_count for record in backed_first] == [4, 1]
    assert [record.customer_count for record in best_match_records(app, "dark")] == [4, 1]


def best_match_records(app: Flask, q: str) -> list[Feedback]:
    with app.app_context():
        return best_matches(q, None)


def test_search_reads_customers_names_emails_and_words(app: Flask, signed_in: FlaskClient) -> None:
    (record_id,) = add_feedback(app, title="Dark mode")
    backed_by(app, record_id, "zoe@bigcorp.example")
    with app.app_context():
        record = db.session.get(Feedback, record_id)
        add_evidence(record, customer_name="Ångström Ltd", quote="night shift please")
        refresh_backing(record)
        db.session.commit()
    add_feedback(app, title="Unrelated")
    for q in ("bigcorp", "zoe", "angstrom", "night shift"):
        assert searched(signed_in, q) == ["Dark mode"], q


@pytest.mark.parametrize(
    "hostile",
    [
        '"export',
        "export*",
        "-export",
        "export NEAR csv",
        "export OR",
        "(export",
        "csv)",
        "AND",
        "NOT csv",
        "^export",
        "title:export",
        "{title}: x",
        "'",
        "%",
        "\\",
        ":*",
        "&|!",
        "'&|!:*()<->\"\\",
        "export:* & !csv",
        "export <-> csv",
        "csv:A",
    ],
)
def test_query_syntax_is_searched_as_words_and_never_raises(
    app: Flask, signed_in: FlaskClient, hostile: str
) -> None:
    add_feedback(app, title="CSV export")
    response = signed_in.get("/?" + urlencode({"q": hostile}))
    assert response.status_code == 200
    words = search_words(hostile)  # its words, without the commonest ("or", "not")
    found = words and all(any(t.startswith(w) for t in ("csv", "export")) for w in words)
    assert searched(signed_in, hostile) == (["CSV export"] if found else [])
    assert signed_in.get("/feedback.csv?" + urlencode({"q": hostile})).status_code == 200


# Letters that PostgreSQL's unaccent folds into punctuation: U+02BB, U+02BC and U+02C8 into an
# apostrophe, U+02D0 into a colon, U+2474 into "(1)", U+2487 into "(20)".
FOLDED_INTO_PUNCTUATION = [
    "\u02bbokina",
    "k\u0251\u02d0r",
    "\u02bctwas",
    "1\u2474",
    "\u02c8stress",
    "\u2487",
]


@pytest.mark.parametrize("word", FOLDED_INTO_PUNCTUATION)
def test_words_folded_into_punctuation_are_searched_for(
    app: Flask, signed_in: FlaskClient, word: str
) -> None:
    add_feedback(app, title=f"Say {word} right")
    add_feedback(app, title="Unrelated")
    assert searched(signed_in, word) == [f"Say {word} right"]
    assert searched(signed_in, f"{word} say") == [f"Say {word} right"]
    assert [row["title"] for row in export(signed_in, "?" + urlencode({"q": word}))] == [
        f"Say {word} right"
    ]


@pytest.mark.parametrize("word", FOLDED_INTO_PUNCTUATION)
def test_the_inbox_finds_words_folded_into_punctuation(
    canvas_app: Flask, inbox: Inbox, word: str
) -> None:
    add_feedback(canvas_app, title=f"Say {word} right", workspace_id=WORKSPACE_ID)
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"]["subject"] = f"<p>{word}</p>"
    find = inbox.find(payload)  # Record feedback searches for the subject
    assert [item["title"] for item in list_items(find)] == [f"Say {word} right"]
    typed = inbox.click("query", find, {"query": f"right {word}"}, payload=payload)
    assert [item["title"] for item in list_items(typed)] == [f"Say {word} right"]


def list_items(body: Any) -> list[dict[str, Any]]:
    return [
        item
        for c in body["canvas"]["content"]["components"]
        if c["type"] == "list"
        for item in c["items"]
    ]


# Any text at all, with the characters that are query syntax somewhere, or become it.
SEARCH_TEXT = st.text(
    alphabet=st.characters(codec="utf-8")
    | st.sampled_from("\u02bb\u02bc\u02c8\u02d0\u2474\u2487\ufb04'\"&|!():*<->%_^ "),
    max_size=SEARCH_MAX,
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=SEARCH_TEXT)
@example(q="\u02bbokina \u2487 k\u0251\u02d0r")
def test_any_search_answers_a_page_and_the_whole_export(
    app: Flask, signed_in: FlaskClient, q: str
) -> None:
    add_feedback(app, title="CSV export")
    query = urlencode({"q": q})
    assert signed_in.get(f"/?{query}").status_code == 200
    assert signed_in.get(f"/?{query}&sort=customers").status_code == 200
    export(signed_in, f"?{query}")  # its every row, not a header and then a break


# Export


def export(client: FlaskClient, query: str = "") -> list[dict[str, str]]:
    response = client.get(f"/feedback.csv{query}")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(page_text(response))))


def test_csv_quotes_commas_quotes_and_newlines(app: Flask, signed_in: FlaskClient) -> None:
    tricky = 'Commas, "quotes"\nand a newline'
    add_feedback(app, title="Tricky", description=tricky)
    (row,) = export(signed_in)
    assert row["details"] == tricky
    assert row["title"] == "Tricky"


@pytest.mark.parametrize("dangerous", ["=HYPERLINK(1)", "+1+1", "-2+3", "@SUM(A1)"])
def test_csv_neutralises_formulas(app: Flask, signed_in: FlaskClient, dangerous: str) -> None:
    add_feedback(app, title=dangerous, customer_name=dangerous)
    (row,) = export(signed_in)
    assert row["title"] == "'" + dangerous
    assert row["customer_name"] == "'" + dangerous


def test_csv_holds_provenance_and_conversation_url(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(
        app,
        title="From the Inbox",
        source="intercom",
        workspace_id="abc12def",
        conversation_id="215471234567890",
        contact_id="65f0",
        admin_id="5551234",
        admin_name="Alex Agent",
        admin_email="alex@example.com",
    )
    (row,) = export(signed_in)
    assert row["source"] == "intercom"
    assert row["heard_by"] == "Alex Agent"
    assert row["conversation_url"] == (
        "https://app.intercom.com/a/inbox/abc12def/inbox/conversation/215471234567890"
    )


def test_csv_follows_the_search(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(app, title="Export is slow")
    add_feedback(app, title="Unrelated")
    assert [row["title"] for row in export(signed_in, "?q=export")] == ["Export is slow"]
    assert len(export(signed_in)) == 2


def test_csv_names_the_source_as_the_list_does(app: Flask, signed_in: FlaskClient) -> None:
    add_feedback(
        app,
        title="From the preview",
        source="intercom",
        workspace_id="hedwig-preview",
        conversation_id="1001",
    )
    (row,) = export(signed_in)
    assert row["source"] == "preview"
    assert "preview" in page_text(signed_in.get("/"))


def test_the_export_has_a_row_per_piece_of_evidence_and_per_record_without(
    app: Flask, signed_in: FlaskClient
) -> None:
    backed, alone = add_feedback(app, 2)
    backed_by(
        app,
        backed,
        "a@example.com",
        "=cmd@example.com",
        workspace_id=WORKSPACE_ID,
        conversation_id=None,
        quote="+1 please",
    )
    rows = export(signed_in)
    assert [(row["feedback_id"], row["customer_email"]) for row in rows] == [
        (str(alone), ""),
        (str(backed), "'=cmd@example.com"),
        (str(backed), "a@example.com"),
    ]
    assert rows[1]["customer_count"] == "2"
    assert rows[1]["quote"] == "'+1 please"
    assert list(rows[0]) == list(CSV_COLUMNS)


# --- How much it matters ----------------------------------------------------------------------


def test_the_web_form_asks_how_much_it_matters_to_the_first_customer(
    app: Flask, signed_in: FlaskClient
) -> None:
    form = page_text(signed_in.get("/feedback/new"))
    assert "How much does it matter to them?" in form
    assert '<option value="important" selected>Important</option>' in form
    fields = {"title": "SSO", "customer_email": "dana@example.com", "importance": "blocker"}
    assert post(signed_in, "/feedback/new", fields).status_code == 302
    assert [e.importance for e in stored_evidence(app)] == ["blocker"]


def test_the_web_form_refuses_an_unknown_importance_and_saves_nothing(
    app: Flask, signed_in: FlaskClient
) -> None:
    fields = {"title": "SSO", "customer_email": "dana@example.com", "importance": "urgent"}
    response = post(signed_in, "/feedback/new", fields)
    assert response.status_code == 400
    assert "Choose how much it matters: Nice to have, Important, Blocker." in page_text(response)
    assert stored_feedback(app) == []


def levelled(app: Flask, feedback_id: int, **levels: int) -> None:
    """Customers backing a record, so many at each level of importance."""
    with app.app_context():
        record = db.session.get(Feedback, feedback_id)
        for level, count in levels.items():
            for n in range(count):
                add_evidence(record, customer_email=f"{level}{n}@example.com", importance=level)
        refresh_backing(record)
        db.session.commit()


def test_a_record_shows_how_much_it_matters_per_level_and_per_piece(
    app: Flask, signed_in: FlaskClient
) -> None:
    (record_id,) = add_feedback(app, title="SSO")
    levelled(app, record_id, important=2, nice_to_have=1, blocker=1)
    page = page_text(signed_in.get(f"/feedback/{record_id}"))
    assert "1 blocker · 2 important · 1 nice to have" in page
    assert page.count('<span class="importance blocker">Blocker</span>') == 1
    assert page.count('<span class="importance important">Important</span>') == 2
    assert page.count('<span class="importance nice_to_have">Nice to have</span>') == 1


def test_csv_says_how_much_each_piece_matters(app: Flask, signed_in: FlaskClient) -> None:
    (record_id,) = add_feedback(app, title="SSO")
    levelled(app, record_id, blocker=1, nice_to_have=1)
    rows = export(signed_in)
    assert "importance" in CSV_COLUMNS
    assert [row["importance"] for row in rows] == ["Nice to have", "Blocker"]


def test_the_list_shows_records_with_a_blocker_with_the_search_and_status(
    app: Flask, signed_in: FlaskClient
) -> None:
    blocked, nice, other = add_feedback(app, 3, title="Export")
    levelled(app, blocked, blocker=1, important=1)
    levelled(app, nice, nice_to_have=2)
    levelled(app, other, blocker=1)
    with app.app_context():
        db.session.get(Feedback, other).title = "Dark mode"
        db.session.get(Feedback, other).status = "planned"
        db.session.commit()

    def listed(query: str) -> list[int]:
        page = page_text(signed_in.get(f"/{query}"))
        return [int(n) for n in re.findall(r'href="/feedback/(\d+)"', page)]

    assert listed("?importance=blocker") == [other, blocked]
    assert listed("?importance=blocker&q=export") == [blocked]
    assert listed("?importance=blocker&status=planned") == [other]
    assert listed("?importance=nice_to_have") == [nice]
    assert "1 record with evidence marked nice to have" in page_text(
        signed_in.get("/?importance=nice_to_have")
    )
    assert [row["feedback_id"] for row in export(signed_in, "?importance=nice_to_have")] == [
        str(nice),
        str(nice),
    ]
    response = signed_in.get("/?importance=urgent")
    assert response.status_code == 400
    assert "There is no importance &#39;urgent&#39;: use one of" in page_text(response)


# --- The weight: companies, their plan and spend ---------------------------------------------


def company(app: Flask, name: str, monthly_spend: int, plan: str | None = "Pro") -> int:
    """A company as a read from Intercom keeps it."""
    with app.app_context():
        row = Company(
            workspace_id=WORKSPACE_ID,
            intercom_id=f"company-{name}",
            name=name,
            monthly_spend=monthly_spend,
            plan=plan,
        )
        db.session.add(row)
        db.session.commit()
        return row.id


def backed_by_people_of(
    app: Flask, feedback_id: int, *people: tuple[str, int | None], **fields: Any
) -> None:
    """Customers backing a record from the Inbox: each an Intercom contact (their email) in
    a company read already (its id), or in one not read yet (None)."""
    with app.app_context():
        record = db.session.get(Feedback, feedback_id)
        for email, company_id in people:
            known = {"workspace_id": WORKSPACE_ID, "contact_id": f"contact-{email}"}
            if company_id is not None and not db.session.scalar(
                select(ContactCompany).filter_by(**known)
            ):
                db.session.add(
                    ContactCompany(**known, company_id=company_id, state="read", read_at=utcnow())
                )
                db.session.flush()
            add_evidence(record, customer_email=email, source="intercom", **known, **fields)
        refresh_backing(record)
        db.session.commit()


def test_one_customer_of_a_bigger_company_outranks_three_of_a_smaller_one(
    app: Flask, signed_in: FlaskClient
) -> None:
    globex, acme = company(app, "Globex", 5000), company(app, "Acme Inc", 1290)
    three, none, big = add_feedback(app, 3)
    backed_by_people_of(
        app, three, ("a@acme.com", acme), ("b@acme.com", acme), ("c@acme.com", acme)
    )
    backed_by_people_of(app, big, ("d@globex.com", globex))
    assert listed_ids(signed_in.get("/?sort=revenue")) == [big, three, none]
    assert listed_ids(signed_in.get("/?sort=customers")) == [three, big, none]
    assert "3 customers · 1 company · $1,290 a month" in page_text(
        signed_in.get(f"/feedback/{three}")
    )
    listing = page_text(signed_in.get("/?sort=revenue"))
    assert 'data-weight="1 customer · 1 company · $5,000 a month"' in listing
    assert 'data-weight="0 customers"' in listing


def test_a_companys_spend_counts_once_however_many_of_its_people_ask(
    app: Flask, signed_in: FlaskClient
) -> None:
    acme, initech = company(app, "Acme Inc", 1000), company(app, "Initech", 290)
    (record,) = add_feedback(app)
    backed_by_people_of(
        app, record, ("a@acme.com", acme), ("b@acme.com", acme), ("c@initech.com", initech)
    )
    weight = "3 customers · 2 companies · $1,290 a month"
    assert weight in page_text(signed_in.get(f"/feedback/{record}"))
    assert f'data-weight="{weight}"' in page_text(signed_in.get("/"))


def test_the_list_sorts_by_most_companies(app: Flask, signed_in: FlaskClient) -> None:
    acme, initech = company(app, "Acme Inc", 1000), company(app, "Initech", 290)
    two, none, one, also_one = add_feedback(app, 4)
    backed_by_people_of(app, two, ("a@acme.com", acme), ("c@initech.com", initech))
    backed_by_people_of(app, one, ("a@acme.com", acme), ("b@acme.com", acme))
    backed_by_people_of(app, also_one, ("c@initech.com", initech))
    assert listed_ids(signed_in.get("/?sort=companies")) == [two, also_one, one, none]
    assert listed_ids(signed_in.get("/?sort=revenue")) == [two, one, also_one, none]
    assert listed_ids(signed_in.get("/?sort=companies&q=feedback")) == [two, also_one, one, none]
    sorted_page = page_text(signed_in.get("/?sort=companies"))
    assert '<option value="companies" selected>Most companies</option>' in sorted_page


def test_each_piece_of_evidence_names_its_company_and_plan_or_why_not(
    app: Flask, signed_in: FlaskClient
) -> None:
    acme, initech = company(app, "Acme Inc", 1290), company(app, "Initech", 49, plan=None)
    (record,) = add_feedback(app, title="SSO", customer_email="hand@example.com")
    backed_by_people_of(
        app, record, ("a@acme.com", acme), ("i@initech.com", initech), ("new@example.com", None)
    )
    with app.app_context():
        refused = ContactCompany(
            workspace_id=WORKSPACE_ID,
            contact_id="contact-gone@example.com",
            state="failed",
            reason="Intercom answered 404: the contact is gone",
        )
        db.session.add(refused)
        db.session.commit()
    backed_by_people_of(app, record, ("gone@example.com", None))
    page = page_text(signed_in.get(f"/feedback/{record}"))
    assert "Acme Inc · Pro plan · $1,290 a month" in page
    assert "Initech · $49 a month" in page
    assert "Company unknown: being read from Intercom" in page
    assert "Company unknown: Intercom answered 404: the contact is gone" in page
    assert "Company unknown: added by hand, with no Intercom contact to read it from" in page
    assert "5 customers · 2 companies · $1,339 a month" in page


def test_a_blocker_stands_out_on_the_record(app: Flask, signed_in: FlaskClient) -> None:
    (record_id,) = add_feedback(app, title="SSO")
    levelled(app, record_id, blocker=1, important=2)
    page = page_text(signed_in.get(f"/feedback/{record_id}"))
    assert page.count('<section class="evidence blocker"') == 1
    assert page.count('<section class="evidence important"') == 2
    assert '<span class="importance blocker">Blocker</span>' in page
    assert "1 blocker · 2 important" in page


def plan_records(app: Flask) -> dict[str, int]:
    """Records backed by companies on the Pro and Enterprise plans, and by none."""
    acme, globex = company(app, "Acme Inc", 1290), company(app, "Globex", 5000, "Enterprise")
    ids = dict(
        zip(
            ["pro", "enterprise", "planned", "both", "none"],
            add_feedback(app, 5, title="Export"),
            strict=True,
        )
    )
    backed_by_people_of(app, ids["pro"], ("a@acme.com", acme))
    backed_by_people_of(app, ids["enterprise"], ("g@globex.com", globex))
    backed_by_people_of(app, ids["planned"], ("b@acme.com", acme))
    backed_by_people_of(app, ids["both"], ("c@acme.com", acme), ("h@globex.com", globex))
    with app.app_context():
        db.session.get(Feedback, ids["planned"]).title = "Dark mode"
        db.session.get(Feedback, ids["planned"]).status = "planned"
        db.session.commit()
    return ids


def test_the_list_shows_records_backed_by_a_plan_with_the_search_and_status(
    app: Flask, signed_in: FlaskClient
) -> None:
    ids = plan_records(app)
    pro, planned, both = ids["pro"], ids["planned"], ids["both"]
    assert listed_ids(signed_in.get("/?plan=Pro")) == [both, planned, pro]
    assert listed_ids(signed_in.get("/?plan=Pro&q=export&sort=newest")) == [both, pro]
    assert listed_ids(signed_in.get("/?plan=Pro&status=planned")) == [planned]
    assert listed_ids(signed_in.get("/?plan=Enterprise&sort=revenue")) == [both, ids["enterprise"]]
    assert listed_ids(signed_in.get("/?plan=Enterprise&importance=blocker")) == []
    # The search's total counted in its index would count the Enterprise-only record too.
    searched_page = page_text(signed_in.get("/?plan=Pro&q=export"))
    assert "2 records backed by a company on the Pro plan matching “export”" in searched_page
    listing = page_text(signed_in.get("/"))
    assert '<option value="Enterprise">Enterprise</option>' in listing
    assert '<option value="Pro">Pro</option>' in listing
    assert [row["feedback_id"] for row in export(signed_in, "?plan=Enterprise")] == [
        str(both),
        str(both),
        str(ids["enterprise"]),
    ]


def test_a_plan_no_company_is_on_lists_nothing_and_a_long_one_is_refused(
    app: Flask, signed_in: FlaskClient
) -> None:
    plan_records(app)
    response = signed_in.get("/?plan=Basic")
    assert response.status_code == 200
    assert listed_ids(response) == []
    assert "No feedback backed by a company on the Basic plan." in page_text(response)
    assert signed_in.get("/?plan=" + "x" * 255).status_code == 200
    for path in ("/?plan=", "/feedback.csv?plan="):
        response = signed_in.get(path + "x" * 256)
        assert response.status_code == 400
        assert "A plan&#39;s name is at most 255 characters." in page_text(response)
    assert listed_ids(signed_in.get("/?plan=&sort=junk")) == listed_ids(signed_in.get("/"))


def link_args(page: str, text: str) -> dict[str, list[str]]:
    """The query of the page's first link that says ``text``."""
    link = re.search(rf'<a[^>]*href="([^"]+)"[^>]*>[^<]*{re.escape(text)}', page)
    assert link, text
    return parse_qs(urlsplit(html.unescape(link.group(1))).query)


def test_the_sort_the_filters_and_the_pages_keep_each_other(
    app: Flask, signed_in: FlaskClient
) -> None:
    acme = company(app, "Acme Inc", 1290)
    backed_by_people_of(app, *add_feedback(app), ("a@acme.com", acme))  # a contact read once
    add_feedback(
        app,
        51,
        title="Export",
        source="intercom",
        workspace_id=WORKSPACE_ID,
        contact_id="contact-a@acme.com",
        customer_email="a@acme.com",
    )
    filters = {"q": ["export"], "status": ["open"], "importance": ["important"], "plan": ["Pro"]}
    query = urlencode({name: values[0] for name, values in filters.items()})
    page = page_text(signed_in.get(f"/?{query}&sort=revenue"))
    assert "51 records open" in page
    following = link_args(page, "Next")  # by cursor: the record at the page's end
    assert following == filters | {"sort": ["revenue"], "after": following["after"]}
    controls = re.search(r'<form [^>]*class="list-controls".*?</form>', page, re.S).group(0)
    kept = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', controls))
    assert kept == {"q": "export", "status": "open"}  # the sort, importance and plan: selects
    for name, value in (("sort", "revenue"), ("importance", "important"), ("plan", "Pro")):
        assert re.search(
            rf'<select name="{name}">.*?<option value="{value}" selected>', controls, re.S
        )
    assert link_args(page, "Download CSV") == filters | {"sort": ["revenue"]}
    assert link_args(page, "Planned") == filters | {"sort": ["revenue"], "status": ["planned"]}
    assert '<option value="">Any</option>' in controls  # any plan: the same form, plan ""
    second = page_text(signed_in.get(linked(page, "next")))
    assert len(listed_ids_of(second)) == 1 and "51 records open" in second
    preceding = link_args(second, "Previous")
    assert preceding == filters | {"sort": ["revenue"], "before": preceding["before"]}
    assert listed_ids_of(page_text(signed_in.get(linked(second, "prev")))) == listed_ids_of(page)
    assert 'name="plan" value="Pro"' in page


def test_csv_names_each_customers_company_plan_and_spend(
    app: Flask, signed_in: FlaskClient
) -> None:
    acme, formula = company(app, "Acme Inc", 1290), company(app, "=HYPERLINK(1)", 5, "+Pro")
    (record,) = add_feedback(app, title="SSO", customer_email="hand@example.com")
    backed_by_people_of(app, record, ("a@acme.com", acme), ("f@example.com", formula))
    backed_by_people_of(app, record, ("new@example.com", None))
    columns = list(CSV_COLUMNS)
    assert columns[columns.index("importance") + 1 :][:3] == [
        "company",
        "company_plan",
        "company_monthly_spend",
    ]
    rows = export(signed_in)
    assert [
        (row["customer_email"], row["company"], row["company_plan"], row["company_monthly_spend"])
        for row in rows
    ] == [
        ("new@example.com", "", "", ""),
        ("f@example.com", "'=HYPERLINK(1)", "'+Pro", "5"),
        ("a@acme.com", "Acme Inc", "Pro", "1290"),
        ("hand@example.com", "", "", ""),
    ]


def test_the_export_reads_the_companies_with_the_rows_not_per_row(
    app: Flask, signed_in: FlaskClient
) -> None:
    acme = company(app, "Acme Inc", 1290)
    (first,) = add_feedback(app)
    backed_by_people_of(app, first, ("first@acme.com", acme))

    def statements_run() -> tuple[int, list[dict[str, str]]]:
        """How many statements the export ran (its sign-in check too), and its rows."""
        run: list[str] = []

        def count(*args: Any) -> None:
            run.append(args[2])

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            rows = export(signed_in)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(run), rows

    one_row, _ = statements_run()
    others = add_feedback(app, 199)
    with app.app_context():  # 199 more customers of Acme, in one transaction
        for n, record_id in enumerate(others):
            db.session.add(
                ContactCompany(
                    workspace_id=WORKSPACE_ID,
                    contact_id=f"contact-{n}",
                    company_id=acme,
                    state="read",
                    read_at=utcnow(),
                )
            )
            add_evidence(
                db.session.get(Feedback, record_id),
                workspace_id=WORKSPACE_ID,
                contact_id=f"contact-{n}",
                customer_email=f"p{n}@acme.com",
            )
        db.session.commit()
    many_rows, rows = statements_run()
    assert len(rows) == 200
    assert {row["company"] for row in rows} == {"Acme Inc"}
    assert many_rows == one_row


# --- Words that agree with their counts -----------------------------------------------------------


def test_one_customer_and_one_piece_of_evidence_are_said_in_the_singular(
    app: Flask, signed_in: FlaskClient
) -> None:
    (target,) = add_feedback(app, title="CSV export", customer_email="a@example.com")
    (duplicate,) = add_feedback(app, title="Export to CSV", customer_email="b@example.com")
    page = page_text(signed_in.get(f"/feedback/{duplicate}/merge?into={target}"))
    assert "(1 customer)" in page and "customers)" not in page
    page = page_text(signed_in.get(f"/feedback/{duplicate}/delete"))
    assert "its 1 piece of evidence (1 customer)" in page
    response = post(signed_in, f"/feedback/{duplicate}/merge", {"into": str(target)})
    flashed = page_text(signed_in.get(response.headers["Location"]))
    assert "1 piece of evidence moved; 2 customers back it now." in flashed


# --- Merging by title ---------------------------------------------------------------------------


def test_the_record_page_offers_its_likeliest_duplicates_to_merge_into(
    app: Flask, signed_in: FlaskClient
) -> None:
    target, _, duplicate = add_feedback(app, 3, title="CSV export crashes the reports page")
    with app.app_context():
        db.session.get(Feedback, target + 1).title = "Dark mode"
        db.session.get(Feedback, duplicate).title = "Export to CSV"
        elsewhere = Feedback(title="CSV export elsewhere", source="intercom", workspace_id="ws-9")
        db.session.add(elsewhere)
        db.session.commit()
        db.session.get(Feedback, duplicate).workspace_id = WORKSPACE_ID
        db.session.commit()
    page = page_text(signed_in.get(f"/feedback/{duplicate}"))
    offered = re.findall(r'<option value="(\d+)">#\d+ ([^<]+) \(', page)
    # its title's words found in the other's; not itself, nor another workspace's record
    assert offered == [(str(target), "CSV export crashes the reports page")]
    assert f'action="/feedback/{duplicate}/merge"' in page


def test_merge_finds_the_other_record_by_its_words_or_its_number(
    app: Flask, signed_in: FlaskClient
) -> None:
    target, other, duplicate = add_feedback(app, 3)
    with app.app_context():
        db.session.get(Feedback, target).title = "Totals row missing in the export"
        db.session.commit()
    page = page_text(signed_in.get(f"/feedback/{duplicate}/merge?q=totals"))
    assert f"Merge #{duplicate} into which record?" in page
    assert f'href="/feedback/{duplicate}/merge?into={target}">#{target} Totals row' in page
    assert f"into={other}" not in page and f"into={duplicate}" not in page
    for q in (f"%23{other}", str(other)):  # "#12" or "12": straight to the question
        response = signed_in.get(f"/feedback/{duplicate}/merge?q={q}")
        assert response.headers["Location"] == f"/feedback/{duplicate}/merge?into={other}"
    nothing = page_text(signed_in.get(f"/feedback/{duplicate}/merge?q=zebra"))
    assert "No record it may merge into has the words “zebra”." in nothing
    assert feedback_count(app) == 3  # finding and asking changed nothing


def test_the_merge_question_shows_both_records_side_by_side(
    app: Flask, signed_in: FlaskClient
) -> None:
    (target,) = add_feedback(app, title="CSV export", description="It crashes.")
    (duplicate,) = add_feedback(app, title="Export to CSV", customer_email="b@example.com")
    page = page_text(signed_in.get(f"/feedback/{duplicate}/merge?into={target}"))
    sides = re.findall(r'<article class="panel" data-merge="(\w+)">(.*?)</article>', page, re.S)
    assert [side for side, _ in sides] == ["duplicate", "target"]
    assert f"#{duplicate} Export to CSV" in sides[0][1] and "1 customer" in sides[0][1]
    assert f"#{target} CSV export" in sides[1][1] and "It crashes." in sides[1][1]


def test_merging_a_duplicate_without_details_keeps_its_title(
    app: Flask, signed_in: FlaskClient
) -> None:
    (target,) = add_feedback(app, title="CSV export", description="It crashes.")
    (duplicate,) = add_feedback(app, title="Export to CSV, with totals")
    merged_away(signed_in, duplicate, target)
    (record,) = stored_feedback(app)
    assert record.description == f"It crashes.\n\nFrom #{duplicate} Export to CSV, with totals"
    assert searched(signed_in, "totals") == ["CSV export"]


# --- The log as a demand-first board --------------------------------------------------------------


def test_the_log_puts_each_records_customers_left_of_its_title_with_a_status_chip(
    app: Flask, signed_in: FlaskClient
) -> None:
    (one,) = add_feedback(app, title="Dark mode", customer_email="a@example.com")
    (three,) = add_feedback(app, title="CSV export", customer_email="b@example.com")
    backed_by(app, three, "c@example.com", "d@example.com")
    page = page_text(signed_in.get("/"))
    rows = re.findall(r'<li data-feedback-id="(\d+)".*?</li>', page, re.S)
    assert rows == [str(three), str(one)]
    row = re.search(rf'<li data-feedback-id="{three}".*?</li>', page, re.S).group(0)
    demand = re.search(r'<div class="demand-block"[^>]*>(.*?)</div>', row, re.S).group(1)
    assert re.sub(r"<[^>]+>|\s+", " ", demand).split() == ["3", "customers"]
    assert row.index("demand-block") < row.index("CSV export")  # demand first, then the title
    assert '<span class="status open">Open</span>' in row
    single = re.search(rf'<li data-feedback-id="{one}".*?</li>', page, re.S).group(0)
    assert '<span class="what">customer</span>' in single


def test_the_status_tabs_count_the_records_of_each_status(
    app: Flask, signed_in: FlaskClient
) -> None:
    first, second, _ = add_feedback(app, 3)
    with app.app_context():
        db.session.get(Feedback, first).status = "planned"
        db.session.get(Feedback, second).status = "planned"
        db.session.commit()
    page = page_text(signed_in.get("/?status=planned"))
    tabs = re.search(r'<nav class="tabs" aria-label="Status">(.*?)</nav>', page, re.S).group(1)
    counted = re.findall(r'>([\w ]+)<span class="tab-count">([\d,]+)</span>', tabs)
    assert counted == [
        ("All", "3"),
        ("Open", "1"),
        ("Planned", "2"),
        ("In progress", "0"),
        ("Done", "0"),
        ("Declined", "0"),
    ]
    assert '<a href="/?status=planned" aria-current="page">Planned' in tabs


def test_the_status_counts_read_the_status_index_alone(app: Flask) -> None:
    """At 50,000 records the tabs' counts must cost an index scan, not the table's rows."""
    if not is_sqlite(app):
        pytest.skip("the plan is SQLite's to show; PostgreSQL's depends on its statistics")
    with app.app_context():
        captured: list[tuple[str, Any]] = []
        listener = lambda *args: captured.append((args[2], args[3]))  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            status_counts()
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        ((statement, parameters),) = captured
        explain = f"EXPLAIN QUERY PLAN {statement}"
        plan = db.session.connection().exec_driver_sql(explain, parameters).all()
    assert any("COVERING INDEX ix_feedback_status" in row[-1] for row in plan), plan


def test_the_record_page_puts_the_customers_words_before_the_controls(
    app: Flask, signed_in: FlaskClient
) -> None:
    """Two columns on a wide screen, one on a phone: in either, the evidence comes first."""
    (record_id,) = add_feedback(app, title="Dark mode", customer_email="a@example.com")
    add_feedback(app, title="Dark theme")
    page = page_text(signed_in.get(f"/feedback/{record_id}"))
    main = page.index('<article class="record">')
    order = [
        page.index(mark) for mark in ('id="evidence"', 'id="status"', "A duplicate?", ">Edit<")
    ]
    assert main < order[0] < page.index('<aside class="side"') < order[1] < order[2] < order[3]
