"""A team: roles, invites, reset links, passwords, Sign in with Intercom."""

from __future__ import annotations

import html
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from werkzeug import Response

import models
from conftest import (
    ME,
    PASSWORD,
    TOKEN,
    add_feedback,
    callback,
    connections,
    create_user,
    csrf,
    feedback_count,
    make_app,
    page_text,
    post,
    serve_intercom,
    sign_in,
    signed_in_browser,
    users,
)
from models import IntercomConnection, User, db

# --- A team: roles, invites, passwords, Sign in with Intercom -----------------------------------

MEMBER = "grace@example.com"


def user_id(app: Flask, email: str) -> int:
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.email == email))


def shown_link(response: Any) -> str:
    """The path of the one-time link the team page shows after it was made."""
    found = re.search(r'readonly value="([^"]+)"', page_text(response))
    assert found, "no link shown"
    return urlsplit(html.unescape(found.group(1))).path


def test_the_first_account_is_an_owner_and_later_ones_members_unless_asked(
    app: Flask, client: FlaskClient
) -> None:
    post(
        client,
        "/first-account",
        {"email": "ada@example.com", "password": PASSWORD, "confirm": PASSWORD},
    )
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", MEMBER, "--password", PASSWORD])
    assert result.output == f"Created user {MEMBER}, member.\n"
    result = runner.invoke(
        args=["create-user", "lin@example.com", "--password", PASSWORD, "--owner"]
    )
    assert result.output == "Created user lin@example.com, owner.\n"
    assert users(app) == {
        "ada@example.com": ("owner", False),
        MEMBER: ("member", False),
        "lin@example.com": ("owner", False),
    }


def test_the_first_user_made_on_the_command_line_is_an_owner(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["create-user", MEMBER, "--password", PASSWORD])
    assert result.output == f"Created user {MEMBER}, owner.\n"


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/team", None),
        ("post", "/team/invite", {"role": "member"}),
        ("post", "/team/1/role", {"role": "member"}),
        ("get", "/team/1/remove", None),
        ("post", "/team/1/remove", {}),
        ("post", "/team/1/reset", {}),
        ("get", "/feedback/1/delete", None),
        ("post", "/feedback/1/delete", {}),
        ("get", "/feedback/1/merge?into=2", None),
        ("post", "/feedback/1/merge", {"into": "2"}),
        ("get", "/intercom/connect", None),
        ("get", "/intercom/connect/token", None),
        ("post", "/intercom/connect/token", {"access_token": TOKEN}),
        ("post", "/intercom/disconnect", {"connection_id": "1"}),
    ],
)
def test_a_member_is_refused_an_owners_action_with_a_sentence(
    canvas_app: Flask, method: str, path: str, data: dict[str, str] | None
) -> None:
    create_user(canvas_app)  # the owner
    add_feedback(canvas_app, 2)
    member = signed_in_browser(canvas_app, MEMBER)
    response = member.get(path) if data is None else post(member, path, data)
    assert response.status_code == 403
    assert "Only an owner of this Hedwig can do that: ask one of them." in page_text(response)
    assert feedback_count(canvas_app) == 2
    assert len(connections(canvas_app)) == 1
    assert users(canvas_app)["ada@example.com"] == ("owner", False)


def test_a_member_is_never_offered_an_owners_action(canvas_app: Flask) -> None:
    create_user(canvas_app)
    (feedback_id,) = add_feedback(canvas_app)
    member = signed_in_browser(canvas_app, MEMBER)
    page = page_text(member.get(f"/feedback/{feedback_id}"))
    assert "Delete…" not in page and "A duplicate?" not in page
    assert "Change status" in page and "Edit" in page  # members may do these
    nav = page_text(member.get("/"))
    assert 'href="/team"' not in nav and 'href="/intercom"' not in nav
    assert member.get("/intercom").status_code == 403
    assert "Connected to Example Co workspace" in nav
    owner = canvas_app.test_client()
    sign_in(owner)
    page = page_text(owner.get(f"/feedback/{feedback_id}"))
    assert "Delete…" in page and "A duplicate?" in page
    assert 'href="/team"' in page and 'href="/intercom"' in page


def test_hedwig_always_keeps_an_owner(app: Flask, signed_in: FlaskClient) -> None:
    me = user_id(app, "ada@example.com")
    for path, data in ((f"/team/{me}/role", {"role": "member"}), (f"/team/{me}/remove", {})):
        response = post(signed_in, path, data)
        assert response.status_code == 400
        assert "Hedwig needs an owner: make someone else an owner first." in page_text(response)
    assert users(app) == {"ada@example.com": ("owner", False)}
    create_user(app, MEMBER)
    assert (
        post(signed_in, f"/team/{user_id(app, MEMBER)}/role", {"role": "owner"}).status_code == 302
    )
    assert post(signed_in, f"/team/{me}/role", {"role": "member"}).status_code == 302
    assert users(app) == {"ada@example.com": ("member", False), MEMBER: ("owner", False)}
    assert signed_in.get("/team").status_code == 403  # a member now


def test_a_removed_teammate_is_signed_out_at_once_and_their_records_stay_theirs(
    app: Flask, signed_in: FlaskClient
) -> None:
    member = signed_in_browser(app, MEMBER)
    post(member, "/feedback/new", {"title": "Dark mode"})
    url = f"/team/{user_id(app, MEMBER)}/remove"
    assert f'<a href="{url}">Remove…</a>' in page_text(signed_in.get("/team"))
    asked = page_text(signed_in.get(url))  # asked first, as removing evidence is
    assert f"<h1>Remove {MEMBER} from the team?</h1>" in asked and f'action="{url}"' in asked
    assert member.get("/").status_code == 200  # asking changed nothing
    assert signed_in.post(url).status_code == 400  # no CSRF token
    response = post(signed_in, url)
    assert response.status_code == 302
    assert member.get("/").status_code == 302  # to the sign-in page
    refused = post(member, "/login", {"email": MEMBER, "password": PASSWORD})
    assert refused.status_code == 401
    assert "by grace@example.com" in page_text(signed_in.get("/feedback/1"))
    team = page_text(signed_in.get("/team"))
    assert MEMBER not in team
    assert users(app)[MEMBER] == ("member", True)


def test_the_team_page_shows_roles_and_last_sign_in(app: Flask, signed_in: FlaskClient) -> None:
    create_user(app, MEMBER)
    page = page_text(signed_in.get("/team"))
    row = re.search(rf'<tr data-teammate="{MEMBER}">.*?</tr>', page, re.S).group(0)
    assert "never" in row and '<option value="member" selected>' in row
    row = re.search(r'<tr data-teammate="ada@example.com">.*?</tr>', page, re.S).group(0)
    assert "(you)" in row and " UTC" in row and '<option value="owner" selected>' in row


def invite_link(client: FlaskClient, **fields: str) -> str:
    response = post(client, "/team/invite", {"role": "member", **fields})
    assert response.status_code == 200
    assert "It works once; Hedwig will not show it again." in page_text(response)
    assert 'data-copy="new-link" hidden>Copy</button>' in page_text(response)  # copy.js shows it
    return shown_link(response)


def test_an_invite_makes_an_account_once(app: Flask, signed_in: FlaskClient) -> None:
    link = invite_link(signed_in, email=MEMBER)
    assert link.startswith("/invite/")
    newcomer = app.test_client()
    form = newcomer.get(link)
    assert form.status_code == 200
    assert "ada@example.com invites you" in page_text(form) and MEMBER in page_text(form)
    mismatch = post(newcomer, link, {"password": PASSWORD, "confirm": "something else"})
    assert mismatch.status_code == 400 and "The two passwords differ." in page_text(mismatch)
    joined = post(newcomer, link, {"password": PASSWORD, "confirm": PASSWORD})
    assert joined.status_code == 302
    assert MEMBER in page_text(newcomer.get("/"))  # signed in
    assert users(app)[MEMBER] == ("member", False)

    again = post(app.test_client(), link, {"password": PASSWORD, "confirm": PASSWORD})
    assert again.status_code == 410
    assert "This link has been used already" in page_text(again)
    assert "<title>This link was used already · Hedwig</title>" in page_text(again)
    assert "Something went wrong" not in page_text(again)
    assert app.test_client().get(link).status_code == 410
    assert len(users(app)) == 2


def test_an_open_invite_asks_for_the_email_and_gives_its_role(
    app: Flask, signed_in: FlaskClient
) -> None:
    link = invite_link(signed_in, role="owner")
    newcomer = app.test_client()
    assert 'name="email"' in page_text(newcomer.get(link))
    taken = post(
        newcomer, link, {"email": "ADA@example.com", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert taken.status_code == 400
    assert "ada@example.com has an account already: sign in instead." in page_text(taken)
    joined = post(
        newcomer, link, {"email": "lin@example.com", "password": PASSWORD, "confirm": PASSWORD}
    )
    assert joined.status_code == 302
    assert users(app)["lin@example.com"] == ("owner", False)


@pytest.mark.parametrize(
    ("spoil", "status", "heading", "message"),
    [
        ("expire", 410, "This link has expired", "This link has expired."),
        ("revoke", 410, "This link was withdrawn", "This link was withdrawn by an owner."),
        ("tamper", 404, "This link does not work", "This link is not one Hedwig made"),
    ],
)
def test_an_expired_revoked_or_tampered_invite_says_which_and_makes_nothing(
    app: Flask, signed_in: FlaskClient, spoil: str, status: int, heading: str, message: str
) -> None:
    """The page is titled for what the link is, and says what to do."""
    link = invite_link(signed_in, email=MEMBER)
    with app.app_context():
        invite = db.session.scalars(select(models.AccountLink)).one()
        invite_id = invite.id
        if spoil == "expire":
            invite.expires_at = models.utcnow() - timedelta(seconds=1)
            db.session.commit()
    if spoil == "revoke":
        assert "Withdraw" in page_text(signed_in.get("/team"))
        assert post(signed_in, f"/team/links/{invite_id}/revoke").status_code == 302
    if spoil == "tamper":
        link = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    newcomer = app.test_client()
    for response in (
        newcomer.get(link),
        post(newcomer, link, {"password": PASSWORD, "confirm": PASSWORD}),
    ):
        assert response.status_code == status
        assert message in page_text(response)
        assert f"<title>{heading} · Hedwig</title>" in page_text(response)
        assert f"<h1>{heading}</h1>" in page_text(response)
    assert MEMBER not in users(app)


def test_an_invite_lasts_seven_days(app: Flask, signed_in: FlaskClient) -> None:
    invite_link(signed_in)
    with app.app_context():
        invite = db.session.scalars(select(models.AccountLink)).one()
        assert invite.expires_at - invite.created_at == timedelta(days=7)
        assert len(invite.key_hash) == 64  # a hash; the key is in the link alone


def test_changing_your_password_ends_your_other_sign_ins(
    app: Flask, signed_in: FlaskClient
) -> None:
    elsewhere = app.test_client()
    sign_in(elsewhere)
    wrong = post(
        signed_in,
        "/account/password",
        {"current_password": "nope", "password": "new password 123", "confirm": "new password 123"},
    )
    assert wrong.status_code == 400
    assert "That is not your current password." in page_text(wrong)
    assert elsewhere.get("/").status_code == 200
    changed = post(
        signed_in,
        "/account/password",
        {
            "current_password": PASSWORD,
            "password": "new password 123",
            "confirm": "new password 123",
        },
    )
    assert changed.status_code == 302
    assert signed_in.get("/").status_code == 200  # this sign-in goes on
    assert elsewhere.get("/").status_code == 302  # the other has ended
    old = post(app.test_client(), "/login", {"email": "ada@example.com", "password": PASSWORD})
    assert old.status_code == 401
    new = post(
        app.test_client(), "/login", {"email": "ada@example.com", "password": "new password 123"}
    )
    assert new.status_code == 302


def test_a_reset_link_sets_a_forgotten_password_once_and_ends_old_sign_ins(
    app: Flask, signed_in: FlaskClient
) -> None:
    member = signed_in_browser(app, MEMBER)
    response = post(signed_in, f"/team/{user_id(app, MEMBER)}/reset")
    assert "Send this link to grace@example.com (password reset)" in page_text(response)
    link = shown_link(response)
    assert link.startswith("/reset/")
    browser = app.test_client()
    assert f"For {MEMBER}." in page_text(browser.get(link))
    short = post(browser, link, {"password": "short", "confirm": "short"})
    assert short.status_code == 400
    assert (
        post(browser, link, {"password": "brand new pass", "confirm": "brand new pass"}).status_code
        == 302
    )
    assert browser.get("/").status_code == 200  # signed in
    assert member.get("/").status_code == 302  # the old sign-in has ended
    assert (
        post(
            app.test_client(), link, {"password": "another one 1", "confirm": "another one 1"}
        ).status_code
        == 410
    )
    ok = post(app.test_client(), "/login", {"email": MEMBER, "password": "brand new pass"})
    assert ok.status_code == 302
    with app.app_context():
        reset = db.session.scalars(select(models.AccountLink)).one()
        assert reset.expires_at - reset.created_at == timedelta(hours=1)


def test_an_invite_link_is_no_reset_link(app: Flask, signed_in: FlaskClient) -> None:
    link = invite_link(signed_in)
    response = app.test_client().get(link.replace("/invite/", "/reset/"))
    assert response.status_code == 404


def test_flask_reset_password_prints_a_link_for_a_lone_owner(
    app: Flask, client: FlaskClient
) -> None:
    create_user(app)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reset-password", "Ada@Example.com"])
    assert result.exit_code == 0
    link = urlsplit(result.output.splitlines()[-1])
    assert (link.scheme, link.netloc) == ("https", "hedwig.example")
    assert (
        post(
            client, link.path, {"password": "fresh password", "confirm": "fresh password"}
        ).status_code
        == 302
    )
    unknown = runner.invoke(args=["reset-password", "nobody@example.com"])
    assert unknown.exit_code == 1 and "There is no teammate nobody@example.com." in unknown.output


def test_links_go_with_the_power_of_the_owner_who_made_them(
    app: Flask, signed_in: FlaskClient
) -> None:
    """An owner demoted or removed leaves no working link behind: not an invite that would
    bring them back, not a reset link into another account."""
    mallory = "mallory@example.com"
    create_user(app, mallory)
    post(signed_in, f"/team/{user_id(app, mallory)}/role", {"role": "owner"})
    insider = app.test_client()
    sign_in(insider, mallory)
    invite = invite_link(insider, role="owner")
    reset = shown_link(post(insider, f"/team/{user_id(app, 'ada@example.com')}/reset"))
    post(signed_in, f"/team/{user_id(app, mallory)}/role", {"role": "member"})
    for link in (invite, reset):
        response = app.test_client().get(link)
        assert response.status_code == 410
        assert "This link was withdrawn by an owner." in page_text(response)
    post(signed_in, f"/team/{user_id(app, mallory)}/remove")
    back = post(
        app.test_client(), invite, {"email": mallory, "password": PASSWORD, "confirm": PASSWORD}
    )
    assert back.status_code == 410
    assert users(app)[mallory] == ("member", True)
    assert 'data-teammate="mallory@example.com"' not in page_text(signed_in.get("/team"))


def test_a_removed_teammates_reset_link_stays_dead_when_they_come_back(
    app: Flask, signed_in: FlaskClient
) -> None:
    create_user(app, MEMBER)
    reset = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    post(signed_in, f"/team/{user_id(app, MEMBER)}/remove")
    assert "Password reset for" not in page_text(signed_in.get("/team"))
    invite = invite_link(signed_in, email=MEMBER)
    assert (
        post(app.test_client(), invite, {"password": PASSWORD, "confirm": PASSWORD}).status_code
        == 302
    )
    assert users(app)[MEMBER] == ("member", False)
    assert app.test_client().get(reset).status_code == 410


def test_an_open_invite_cannot_take_a_removed_teammates_place(
    app: Flask, signed_in: FlaskClient
) -> None:
    create_user(app, MEMBER)
    post(signed_in, f"/team/{user_id(app, MEMBER)}/remove")
    link = invite_link(signed_in)
    response = post(
        app.test_client(), link, {"email": MEMBER, "password": PASSWORD, "confirm": PASSWORD}
    )
    assert response.status_code == 400
    assert "was removed from the team: ask an owner for an invite made for it." in page_text(
        response
    )
    assert users(app)[MEMBER] == ("member", True)
    assert app.test_client().get(link).status_code == 200  # not spent


def test_two_invites_accepted_at_once_for_one_email_make_one_account(
    app: Flask, signed_in: FlaskClient
) -> None:
    links = [invite_link(signed_in), invite_link(signed_in, role="owner")]
    browsers = [app.test_client() for _ in links]
    for browser in browsers:
        csrf(browser)

    def join(n: int) -> int:
        fields = {
            "email": MEMBER,
            "password": f"password number {n}",
            "confirm": f"password number {n}",
        }
        return post(browsers[n], links[n], fields).status_code

    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(join, range(2)))
    assert statuses == [302, 400]
    role = users(app)[MEMBER][0]
    winner = 0 if role == "member" else 1
    ok = post(
        app.test_client(), "/login", {"email": MEMBER, "password": f"password number {winner}"}
    )
    assert ok.status_code == 302


def test_a_failing_invite_request_logs_no_key(
    app: Flask,
    signed_in: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    link = invite_link(signed_in)
    token = link.removeprefix("/invite/")

    def broken(link: Any) -> None:
        raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("database is locked"))

    monkeypatch.setattr("hedwig_app.team.spend_link", broken)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: a 500 page, and a log line
    with caplog.at_level(logging.ERROR):
        response = post(
            app.test_client(), link, {"email": MEMBER, "password": PASSWORD, "confirm": PASSWORD}
        )
    assert response.status_code == 500
    assert "Exception on /invite/[redacted] [POST]" in caplog.text
    assert token not in caplog.text


def test_a_changed_password_ends_copies_of_this_sign_in_too_and_guesses_are_throttled(
    app: Flask, signed_in: FlaskClient
) -> None:
    copy = app.test_client()
    with signed_in.session_transaction() as original, copy.session_transaction() as copied:
        copied.update(original)
    fields = {
        "current_password": PASSWORD,
        "password": "new password 123",
        "confirm": "new password 123",
    }
    assert post(signed_in, "/account/password", fields).status_code == 302
    assert signed_in.get("/").status_code == 200
    assert copy.get("/").status_code == 302
    wrong = {"current_password": "guess", "password": "another pass 1", "confirm": "another pass 1"}
    statuses = [post(signed_in, "/account/password", wrong).status_code for _ in range(11)]
    assert statuses == [400] * 10 + [429]


def test_a_new_password_withdraws_the_reset_links_made_before(
    app: Flask, signed_in: FlaskClient
) -> None:
    member = signed_in_browser(app, MEMBER)
    older = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    newer = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    fields = {"password": "brand new pass", "confirm": "brand new pass"}
    assert post(app.test_client(), newer, fields).status_code == 302
    assert app.test_client().get(older).status_code == 410
    third = shown_link(post(signed_in, f"/team/{user_id(app, MEMBER)}/reset"))
    sign_in_again = {"email": MEMBER, "password": "brand new pass"}
    assert post(member, "/login", sign_in_again).status_code == 302
    changed = {
        "current_password": "brand new pass",
        "password": "newest pass 1",
        "confirm": "newest pass 1",
    }
    assert post(member, "/account/password", changed).status_code == 302
    assert app.test_client().get(third).status_code == 410
    assert "Password reset for" not in page_text(signed_in.get("/team"))


def test_printed_links_follow_the_port_make_run_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(tmp_path, BASE_URL="")
    create_user(app)
    monkeypatch.setenv("FLASK_RUN_PORT", "5057")
    result = app.test_cli_runner().invoke(args=["reset-password", "ada@example.com"])
    assert result.output.splitlines()[-1].startswith("http://127.0.0.1:5057/reset/")


def test_a_record_no_conversation_backs_offers_no_note(app: Flask, signed_in: FlaskClient) -> None:
    (feedback_id,) = add_feedback(app, customer_name="By hand")
    page = page_text(signed_in.get(f"/feedback/{feedback_id}"))
    assert "No conversation of a connected Intercom workspace backs it: no note to add." in page
    assert 'name="notify"' not in page


def test_an_owner_who_makes_themselves_a_member_lands_on_the_log(
    app: Flask, signed_in: FlaskClient
) -> None:
    create_user(app, "lin@example.com")
    post(signed_in, f"/team/{user_id(app, 'lin@example.com')}/role", {"role": "owner"})
    response = post(signed_in, f"/team/{user_id(app, 'ada@example.com')}/role", {"role": "member"})
    assert response.headers["Location"] == "/"


def test_a_sign_in_with_intercom_callback_without_a_code_keeps_no_row(
    canvas_app: Flask,
) -> None:
    create_user(canvas_app)
    for _ in range(5):
        browser = canvas_app.test_client()
        callback(browser, start_sign_in_with_intercom(browser), code=None)
    with canvas_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(models.UsedOAuthState)) == 0


def start_sign_in_with_intercom(client: FlaskClient) -> str:
    login = page_text(client.get("/login"))
    assert 'href="/login/intercom"' in login
    response = client.get("/login/intercom")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response.headers["Location"]).query)
    assert query["redirect_uri"] == ["https://hedwig.example/intercom/callback"]
    return query["state"][0]


def serve_me(httpserver: HTTPServer, **changes: Any) -> None:
    me = {**ME, **changes}
    serve_intercom(
        httpserver,
        me=lambda request: Response(json.dumps(me), 200, content_type="application/json"),
    )


def test_sign_in_with_intercom_signs_in_the_teammate_with_that_verified_email(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    create_user(canvas_app)
    create_user(canvas_app, ME["email"])
    serve_intercom(httpserver)
    browser = canvas_app.test_client()
    state = start_sign_in_with_intercom(browser)
    response = callback(browser, state)
    assert response.status_code == 302
    page = page_text(browser.get("/"))
    assert "Signed in with Intercom as alex.agent@example.com." in page
    (connection,) = connections(canvas_app)
    assert connection.admin_id == ME["id"]  # the connection is as it was: the token not kept
    with canvas_app.app_context():
        assert db.session.get(IntercomConnection, connection.id).token == TOKEN
    replay = callback(canvas_app.test_client(), state)
    assert replay.status_code == 400
    again = callback(browser, state)
    assert again.status_code == 400  # single use, in this browser too


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"email_verified": False},
            "Intercom has not verified the email address alex.agent@example.com",
        ),
        (
            {"app": {**ME["app"], "id_code": "other-ws", "name": "Other Co"}},
            "your Intercom workspace (Other Co) is not connected to this Hedwig",
        ),
        (
            {},
            "there is no Hedwig account for alex.agent@example.com. Ask an owner for an invite, "
            "or to let teammates of Example Co workspace join.",
        ),
    ],
)
def test_sign_in_with_intercom_refuses_and_says_why(
    canvas_app: Flask, httpserver: HTTPServer, changes: dict[str, Any], message: str
) -> None:
    create_user(canvas_app)
    if changes:
        create_user(canvas_app, ME["email"])
    serve_me(httpserver, **changes)
    browser = canvas_app.test_client()
    response = callback(browser, start_sign_in_with_intercom(browser))
    assert response.status_code == 403
    assert message in page_text(response)
    assert browser.get("/").status_code == 302  # nobody signed in
    assert len(users(canvas_app)) == (2 if changes else 1)


@pytest.mark.parametrize(
    "sent",
    [
        "\u212aate@example.com",  # the Kelvin sign, which lower-cases to k
        "kate\u200b@example.com",  # a zero-width space, which cleaning drops
        "kate@exam\u00adple.com",  # a soft hyphen
        "kate@example.com\u202e",  # a right-to-left override
        "kate@example.com\u0000",
    ],
    ids=["kelvin", "zero-width space", "soft hyphen", "right-to-left", "nul"],
)
def test_a_look_alike_email_from_intercom_signs_nobody_in(
    canvas_app: Flask, httpserver: HTTPServer, sent: str
) -> None:
    """An email that would become kate@… only once cleaned or folded is not kate's."""
    create_user(canvas_app)
    create_user(canvas_app, "kate@example.com")
    serve_me(httpserver, email=sent)
    browser = canvas_app.test_client()
    response = callback(browser, start_sign_in_with_intercom(browser))
    assert response.status_code == 403
    assert "holds characters that stand for others" in page_text(response)
    assert browser.get("/").status_code == 302  # nobody signed in


def test_a_new_teammate_joins_as_a_member_where_an_owner_allowed_it(
    canvas_app: Flask, httpserver: HTTPServer
) -> None:
    create_user(canvas_app)
    owner = canvas_app.test_client()
    sign_in(owner)
    (connection,) = connections(canvas_app)
    post(owner, f"/team/workspaces/{connection.id}", {"teammates_may_join": "on"})
    serve_intercom(httpserver)
    browser = canvas_app.test_client()
    assert callback(browser, start_sign_in_with_intercom(browser)).status_code == 302
    assert users(canvas_app)[ME["email"]] == ("member", False)
    assert ME["email"] in page_text(browser.get("/"))


def test_sign_in_with_intercom_is_offered_only_when_it_can_work(
    intercom_app: Flask, httpserver: HTTPServer
) -> None:
    create_user(intercom_app)
    browser = intercom_app.test_client()
    assert "Sign in with Intercom" not in page_text(browser.get("/login"))  # nothing connected
    assert browser.get("/login/intercom").status_code == 404
