"""Issues that follow the work: records linked to GitHub, Linear and Jira issues, and the
signed webhooks by which GitHub and Linear move those records' status."""

from __future__ import annotations

import html
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import select

from conftest import page_text, post, signed_in_browser
from models import Feedback, IssueLink, db
from test_loop import IntercomConversations, backed_record


@pytest.fixture
def team(canvas_app: Flask) -> FlaskClient:
    """A signed-in browser on Hedwig with the fixture workspace connected."""
    return signed_in_browser(canvas_app)


@pytest.fixture
def conversations(httpserver: HTTPServer) -> IntercomConversations:
    return IntercomConversations(httpserver)


def link(client: FlaskClient, feedback_id: int, url: str) -> Any:
    return post(client, f"/feedback/{feedback_id}/issue", {"url": url})


def links(app: Flask) -> list[tuple[int, str, str, str]]:
    """Each link: its record, tracker, key and address."""
    with app.app_context():
        rows = db.session.scalars(select(IssueLink).order_by(IssueLink.feedback_id, IssueLink.id))
        return [(row.feedback_id, row.tracker, row.issue_key, row.url) for row in rows]


# --- Linking a record to the issue where its work happens -----------------------------------


def test_a_record_follows_its_issues_shown_on_it_and_in_the_list(
    canvas_app: Flask, team: FlaskClient
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",), title="Dark mode")
    response = link(team, feedback_id, " https://github.com/Acme/App/pull/7/files?w=1 ")
    assert response.status_code == 302
    assert f"#{feedback_id} now follows GitHub Acme/App#7." in page_text(
        team.get(f"/feedback/{feedback_id}")
    )
    assert (
        link(team, feedback_id, "https://linear.app/acme/issue/eng-12/dark-mode").status_code == 302
    )
    assert link(team, feedback_id, "https://acme.atlassian.net/browse/WEB-3").status_code == 302
    assert links(canvas_app) == [
        (feedback_id, "github", "github:acme/app#7", "https://github.com/Acme/App/pull/7"),
        (feedback_id, "linear", "linear:ENG-12", "https://linear.app/acme/issue/ENG-12"),
        (
            feedback_id,
            "jira",
            "jira:acme.atlassian.net/WEB-3",
            "https://acme.atlassian.net/browse/WEB-3",
        ),
    ]
    page = page_text(team.get(f"/feedback/{feedback_id}"))
    github = 'href="https://github.com/Acme/App/pull/7" target="_blank" rel="noopener noreferrer">'
    assert f"{github}Acme/App#7</a>" in page
    assert ">ENG-12</a>" in page and ">WEB-3</a>" in page
    listing = page_text(team.get("/"))
    assert (
        'class="issue-link" href="https://linear.app/acme/issue/ENG-12" title="Linear"' in listing
    )
    assert ">Acme/App#7</a>" in listing and ">WEB-3</a>" in listing


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", "Paste the issue's address"),
        ("http://github.com/acme/app/issues/1", "That is not an https address of an issue"),
        ("javascript:alert(1)", "That is not an https address of an issue"),
        ("https://user:secret@github.com/acme/app/issues/1", "not an https address"),
        ("https://github.com/acme/app/pulls", "A GitHub link names an issue or a pull request"),
        ("https://github.com/acme/app/issues/0", "A GitHub link names an issue"),
        ("https://linear.app/acme/project/roadmap", "A Linear link names an issue"),
        ("https://example.com/tickets/12", "Hedwig links GitHub, Linear and Jira issues"),
        ("https://github.com/" + "a" * 500, "at most 500 characters"),
    ],
)
def test_an_address_that_names_no_issue_says_why_and_links_nothing(
    canvas_app: Flask, team: FlaskClient, url: str, error: str
) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    response = link(team, feedback_id, url)
    assert response.status_code == 400
    page = html.unescape(page_text(response))
    assert error in page
    if url and len(url) <= 500:
        assert f'name="url" value="{url}"' in page  # kept, to mend
    assert links(canvas_app) == []


def test_several_records_follow_one_issue_and_each_links_it_once(
    canvas_app: Flask, team: FlaskClient
) -> None:
    first = backed_record(canvas_app, ("1001",), title="Dark mode")
    second = backed_record(canvas_app, ("1002",), title="Night theme")
    url = "https://github.com/acme/app/issues/12"
    for feedback_id in (first, second, first):
        assert link(team, feedback_id, url).status_code == 302
    assert f"#{first} links {url} already." in page_text(team.get(f"/feedback/{first}"))
    assert [(row[0], row[2]) for row in links(canvas_app)] == [
        (first, "github:acme/app#12"),
        (second, "github:acme/app#12"),
    ]


def test_a_link_is_removed_and_only_from_its_record(canvas_app: Flask, team: FlaskClient) -> None:
    first = backed_record(canvas_app, ("1001",))
    second = backed_record(canvas_app, ("1002",))
    link(team, first, "https://linear.app/acme/issue/ENG-1")
    with canvas_app.app_context():
        link_id = db.session.scalar(select(IssueLink.id))
    assert post(team, f"/feedback/{second}/issue/{link_id}/delete").status_code == 404
    assert len(links(canvas_app)) == 1
    response = post(team, f"/feedback/{first}/issue/{link_id}/delete", follow_redirects=True)
    assert f"#{first} no longer follows Linear ENG-1." in page_text(response)
    assert links(canvas_app) == []
    assert "ENG-1" not in page_text(team.get("/"))


def test_a_merged_records_links_go_with_it_once(canvas_app: Flask, team: FlaskClient) -> None:
    duplicate = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    for feedback_id in (duplicate, target):
        link(team, feedback_id, "https://github.com/acme/app/issues/12")
    link(team, duplicate, "https://linear.app/acme/issue/ENG-9")
    assert post(team, f"/feedback/{duplicate}/merge", {"into": str(target)}).status_code == 302
    assert [(row[0], row[2]) for row in links(canvas_app)] == [
        (target, "github:acme/app#12"),
        (target, "linear:ENG-9"),
    ]


def test_linking_a_record_gone_or_merged_changes_nothing_and_keeps_the_address(
    canvas_app: Flask, team: FlaskClient
) -> None:
    duplicate = backed_record(canvas_app, ("1001",), title="Export CSV")
    target = backed_record(canvas_app, ("1002",), title="CSV export")
    post(team, f"/feedback/{duplicate}/merge", {"into": str(target)})
    url = "https://github.com/acme/app/issues/12"
    response = link(team, duplicate, url)
    assert response.status_code == 409
    assert f"#{duplicate} was merged into #{target}" in page_text(response)
    assert url in page_text(response)
    assert link(team, 999, url).status_code == 404
    assert links(canvas_app) == []


def test_members_link_issues_too(canvas_app: Flask, team: FlaskClient) -> None:
    feedback_id = backed_record(canvas_app, ("1001",))
    member = signed_in_browser(canvas_app, "bea@example.com")
    assert link(member, feedback_id, "https://github.com/acme/app/issues/3").status_code == 302
    with canvas_app.app_context():
        assert db.session.get(Feedback, feedback_id).issue_links[0].created_by_id is not None
