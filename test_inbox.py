"""The Inbox app: Canvas Kit requests, signatures, each canvas, the preview."""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert

from conftest import (
    CLIENT_SECRET,
    CONTACT_ID,
    CONVERSATION_ID,
    INITIALIZE,
    TOKEN,
    WORKSPACE_ID,
    Inbox,
    add_feedback,
    assert_valid_canvas,
    canvas_height,
    component,
    create_user,
    feedback_count,
    make_app,
    page_text,
    post,
    sign,
    sign_in,
    stored_evidence,
    stored_feedback,
    texts,
)
from hedwig_app.canvas_kit import HTML_READ_MAX, html_to_text
from hedwig_app.canvases import COUNT_CAP
from hedwig_app.inbox import verify_canvas_signature
from hedwig_app.preview import canvas_markdown
from hedwig_app.records import add_evidence, refresh_backing
from hedwig_app.search import SEARCH_WINDOW
from models import Feedback, IntercomConnection, db

# --- The Inbox app (Canvas Kit) -------------------------------------------------------------------


FORGED_SAVE = {
    **INITIALIZE,
    "component_id": "save",
    "input_values": {"title": "Forged"},
    "current_canvas": {"stored_data": {"nonce": "forged-form-nonce-0123456789"}},
}


@pytest.mark.parametrize(
    "forge",
    [
        lambda body: {},
        lambda body: {"X-Body-Signature": ""},
        lambda body: {"X-Body-Signature": "not-hex-at-all"},
        lambda body: {"X-Body-Signature": "0" * 64},
        lambda body: {"X-Body-Signature": "a" * 40},  # the SHA-1 length of the docs' example
        lambda body: {"X-Body-Signature": "sha256=" + sign(body)},
        lambda body: {"X-Body-Signature": sign(body, "another-secret")},
        lambda body: {"X-Body-Signature": sign(body).upper()},
        lambda body: {"X-Body-Signature": sign(body.replace(b"Casey", b"Carol"))},  # altered
    ],
    ids=[
        "unsigned",
        "empty",
        "not hex",
        "zeros",
        "sha1 length",
        "prefixed",
        "another secret",
        "upper case",
        "body altered after signing",
    ],
)
def test_canvas_requests_not_signed_by_intercom_are_401_and_store_nothing(
    canvas_app: Flask, inbox: Inbox, forge: Any
) -> None:
    for endpoint, payload in (("initialize", INITIALIZE), ("submit", FORGED_SAVE)):
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **forge(body)}
        response = inbox.client.post(f"/intercom/canvas/{endpoint}", data=body, headers=headers)
        assert response.status_code == 401
        assert response.json == {"error": "The request's X-Body-Signature does not match its body."}
    assert stored_feedback(canvas_app) == []


def test_canvas_requests_without_a_configured_secret_are_503(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app(tmp_path).test_client()
    body = json.dumps(INITIALIZE).encode()
    response = client.post(
        "/intercom/canvas/initialize", data=body, headers={"X-Body-Signature": sign(body)}
    )
    assert response.status_code == 503
    assert "HEDWIG_INTERCOM_CLIENT_SECRET is not set" in caplog.text


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b'"text"', b"\xff\xfe", b"[" * 5000])
def test_canvas_body_that_is_not_a_json_object_is_400(inbox: Inbox, body: bytes) -> None:
    assert inbox.send("initialize", body).status_code == 400
    assert inbox.send("submit", body).status_code == 400


def test_oversized_canvas_body_is_413(canvas_app: Flask, inbox: Inbox) -> None:
    payload = {**INITIALIZE, "padding": "x" * canvas_app.config["CANVAS_MAX_CONTENT_LENGTH"]}
    assert inbox.send("initialize", payload).status_code == 413
    assert inbox.send("submit", {**payload, "component_id": "save"}).status_code == 413
    assert stored_feedback(canvas_app) == []


def test_unknown_workspace_gets_a_connect_canvas_and_nothing_is_stored(
    canvas_app: Flask, inbox: Inbox
) -> None:
    components = inbox.initialize(workspace_id="unknown1")
    assert "not connected to Hedwig yet" in texts(components)[0]
    (connect,) = [c for c in components if c["type"] == "button"]
    assert connect["action"] == {"type": "url", "url": "https://hedwig.example/intercom/connect"}
    body = inbox.click("save", None, {"title": "Lost"}, payload={**INITIALIZE, "workspace_id": "x"})
    assert "not connected to Hedwig yet" in texts(body)[0]
    assert stored_feedback(canvas_app) == []


def test_first_canvas_without_history_has_an_empty_state_and_a_record_button(
    inbox: Inbox,
) -> None:
    components = inbox.initialize()
    assert "Nothing recorded from this conversation yet." in texts(components)
    (record,) = [c for c in components if c["type"] == "button"]
    assert (record["id"], record["label"], record["style"]) == (
        "record",
        "Record feedback",
        "secondary",
    )
    assert not [c for c in components if c["type"] == "list"]


def test_first_canvas_lists_this_conversations_newest_two_and_links_to_the_rest(
    canvas_app: Flask, inbox: Inbox
) -> None:
    ids = add_feedback(
        canvas_app,
        5,
        workspace_id=WORKSPACE_ID,
        conversation_id=CONVERSATION_ID,
        source="intercom",
    )
    components = inbox.initialize()
    (listing,) = [c for c in components if c["type"] == "list"]
    assert [item["id"] for item in listing["items"]] == [f"feedback-{n}" for n in ids[:-3:-1]]
    assert listing["items"][0]["action"] == {
        "type": "url",
        "url": f"https://hedwig.example/feedback/{ids[-1]}",
    }
    more = component({"canvas": {"content": {"components": components}}}, "more")
    assert (more["label"], more["style"]) == ("3 more in Hedwig", "link")
    # The rest are among this customer's records in the log.
    assert more["action"] == {
        "type": "url",
        "url": "https://hedwig.example/?q=casey.customer@example.com",
    }


def test_first_canvas_shows_the_customers_feedback_from_elsewhere(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(
        canvas_app,
        title="Asked before",
        workspace_id=WORKSPACE_ID,
        conversation_id="999",
        contact_id=CONTACT_ID,
    )
    add_feedback(
        canvas_app,
        title="Told us by email",
        workspace_id=WORKSPACE_ID,
        contact_id="an-earlier-lead",
        customer_email="casey.customer@example.com",
    )
    add_feedback(canvas_app, title="Someone else", workspace_id=WORKSPACE_ID, contact_id="other")
    components = inbox.initialize()
    assert "More from Casey Customer" in texts(components)
    (listing,) = [c for c in components if c["type"] == "list"]
    assert [item["title"] for item in listing["items"]] == ["Told us by email", "Asked before"]
    assert "Nothing recorded from this conversation yet." in texts(components)


def test_a_canvas_shows_only_its_own_workspaces_records(canvas_app: Flask, inbox: Inbox) -> None:
    """A Messenger visitor can claim any email: another workspace's records about that
    address must not show. Records added by hand on the web belong to no workspace, and the
    Inbox sidebar is seen by every teammate of a workspace, so no canvas shows them either."""
    victim = {"customer_email": "casey.customer@example.com", "conversation_id": "777"}
    add_feedback(canvas_app, title="Workspace B's secret", workspace_id="other-ws", **victim)
    add_feedback(canvas_app, title="Added by hand", **victim)
    add_feedback(canvas_app, title="B's contact", workspace_id="other-ws", contact_id=CONTACT_ID)
    components = inbox.initialize()
    assert not [c for c in components if c["type"] == "list"]
    assert not any(line.startswith("More from") for line in texts(components))


def test_form_asks_for_details_and_says_the_customers_words_are_kept(inbox: Inbox) -> None:
    form = inbox.form()
    details = component(form, "details")
    assert (details["type"], details["label"], details["value"]) == ("textarea", "Details", "")
    assert "their message is kept as they wrote it" in details["placeholder"]
    # The title starts as what was searched for: the message's first sentence, greeting off.
    assert component(form, "title")["value"] == (
        "The CSV export button crashes the page every time I click it"
    )
    assert customer_rows(form) == [("From", "Casey Customer"), ("Email", CASEY_EMAIL)]
    assert component(form, "save")["style"] == "primary"
    assert component(form, "find")["style"] == "link"  # Back, to the search
    stored = form["canvas"]["stored_data"]
    assert set(stored) == {"nonce", "query"}
    assert len(json.dumps(stored)) < 200


CASEY_EMAIL = "casey.customer@example.com"


def customer_rows(body: Any) -> list[tuple[str, str]]:
    """The new feedback form's customer: the data table's fields and values."""
    components = body["canvas"]["content"]["components"]
    (table,) = [c for c in components if c["type"] == "data-table"]
    return [(row["field"], row["value"]) for row in table["items"]]


def test_html_in_the_customers_message_becomes_plain_text(canvas_app: Flask, inbox: Inbox) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"]["body"] = (
        "<p>Use <b>bold</b> &amp; <a href='https://x.example'>links</a>"
        "<script>alert(1)</script></p><p>Second&nbsp;line &lt;tag&gt;</p>"
    )
    inbox.save("Bold", payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert evidence.quote == "Use bold & links\nSecond line <tag>"


def test_back_returns_to_the_first_canvas(inbox: Inbox) -> None:
    search = inbox.click("find", inbox.form())
    assert component(search, "query")["type"] == "input"
    body = inbox.click("back", search)
    assert "Nothing recorded from this conversation yet." in texts(body)


def test_saving_stores_the_feedback_with_its_provenance(canvas_app: Flask, inbox: Inbox) -> None:
    saved = inbox.save("CSV export crashes", "Every time, in Chrome.")
    (record,) = stored_feedback(canvas_app)
    assert record.description == "Every time, in Chrome."
    assert f"Feedback #{record.id} saved" in texts(saved)
    assert component(saved, "open")["action"] == {
        "type": "url",
        "url": f"https://hedwig.example/feedback/{record.id}",
    }
    assert component(saved, "another")["style"] == "link"
    assert component(saved, "done")["style"] == "link"
    assert (record.title, record.source, record.workspace_id, record.customer_count) == (
        "CSV export crashes",
        "intercom",
        WORKSPACE_ID,
        1,
    )
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.feedback_id, evidence.quote, evidence.source) == (
        record.id,
        "Hi! The CSV export button crashes the page every time I click it.",
        "intercom",
    )
    assert (evidence.workspace_id, evidence.conversation_id, evidence.contact_id) == (
        WORKSPACE_ID,
        CONVERSATION_ID,
        CONTACT_ID,
    )
    assert (evidence.customer_name, evidence.customer_email) == (
        "Casey Customer",
        "casey.customer@example.com",
    )
    assert (evidence.admin_id, evidence.admin_name, evidence.admin_email) == (
        "5551234",
        "Alex Agent",
        "alex.agent@example.com",
    )
    assert (record.created_by_id, evidence.created_by_id) == (None, None)


OPENING = "Hi! The CSV export button crashes the page every time I click it."


def test_a_record_keeps_the_customers_words_beside_the_agents_details(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes", "Reproduced in Chrome 126; Firefox is fine.")
    (record,) = stored_feedback(canvas_app)
    (evidence,) = stored_evidence(canvas_app)
    assert record.description == "Reproduced in Chrome 126; Firefox is fine."
    assert evidence.quote == OPENING
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    page = page_text(browser.get(f"/feedback/{record.id}"))
    assert '<div class="description">Reproduced in Chrome 126; Firefox is fine.</div>' in page
    assert f"<blockquote>{OPENING}</blockquote>" in page


def test_details_that_repeat_the_customers_words_are_kept_once(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes", OPENING.replace(" every ", "\n every  "))
    (record,) = stored_feedback(canvas_app)
    assert (record.description, stored_evidence(canvas_app)[0].quote) == ("", OPENING)


def test_a_form_given_out_before_details_keeps_what_the_agent_wrote_there(
    canvas_app: Flask, inbox: Inbox
) -> None:
    """Its textarea was the customer's words, sent as "quote": the agent's text is kept as
    the details, and the customer's own words as the quote."""
    form = inbox.form()
    inbox.click("save", form, {"title": "CSV export crashes", "quote": "Only on big reports"})
    (record,) = stored_feedback(canvas_app)
    assert (record.description, stored_evidence(canvas_app)[0].quote) == (
        "Only on big reports",
        OPENING,
    )


def test_the_customers_words_are_found_when_the_agent_wrote_their_own(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("Reports crash", "Chrome only")  # "button" is only in the customer's words
    add_feedback(canvas_app, title="Dark mode", workspace_id=WORKSPACE_ID)
    find = inbox.click("query", inbox.find(OTHER_CUSTOMER), {"query": "button"}, OTHER_CUSTOMER)
    assert [item["title"] for item in component_list(find)["items"]] == ["Reports crash"]
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    assert "Reports crash" in page_text(browser.get("/?q=buttons"))


def test_saved_feedback_shows_on_the_first_canvas_and_links_to_the_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("Dark mode")
    components = inbox.initialize()
    (listing,) = [c for c in components if c["type"] == "list"]
    assert listing["items"][0]["title"] == "Dark mode"
    (record,) = stored_feedback(canvas_app)
    browser = canvas_app.test_client()
    create_user(canvas_app)
    sign_in(browser)
    page = page_text(browser.get(f"/feedback/{record.id}"))
    assert (
        'href="https://app.intercom.com/a/inbox/abc12def/inbox/conversation/215471234567890"'
        in page
    )
    assert "Alex Agent" in page


@pytest.mark.parametrize(
    ("title", "description", "message", "failed"),
    [
        ("", "Kept details", "A title is required.", "title"),
        ("   ", "Kept details", "A title is required.", "title"),
        ("x" * 201, "Kept details", "200 characters", "title"),
        ("Fine title", "y" * 10_001, "10000 characters", "details"),
    ],
)
def test_invalid_submit_shows_the_form_again_and_stores_nothing(
    canvas_app: Flask, inbox: Inbox, title: str, description: str, message: str, failed: str
) -> None:
    form = inbox.form()
    body = inbox.click("save", form, {"title": title, "details": description})
    assert any(message in line for line in texts(body))
    assert any(
        c["style"] == "error"
        for c in body["canvas"]["content"]["components"]
        if c["type"] == "text"
    )
    assert component(body, "title").get("save_state") == ("failed" if failed == "title" else None)
    assert component(body, "details")["error"] is (failed == "details")
    assert component(body, "title")["value"] == title.strip()[:200]
    assert component(body, "details")["value"].startswith(description[:100])
    assert stored_feedback(canvas_app) == []


def test_double_submit_stores_one_record_and_answers_alike(canvas_app: Flask, inbox: Inbox) -> None:
    form = inbox.form()
    first = inbox.click("save", form, {"title": "Once only"})
    second = inbox.click("save", form, {"title": "Once only"})
    assert first == second
    assert len(stored_feedback(canvas_app)) == 1
    assert component(first, "another")["label"] == "Record another"
    next_form = inbox.click("new", inbox.click("another", first))
    assert next_form["canvas"]["stored_data"]["nonce"] != form["canvas"]["stored_data"]["nonce"]
    third = inbox.click("save", next_form, {"title": "A new one"})
    assert third != first
    assert len(stored_feedback(canvas_app)) == 2


def test_submit_without_the_forms_nonce_stores_nothing(canvas_app: Flask, inbox: Inbox) -> None:
    body = inbox.click("save", None, {"title": "No form before"})
    assert "This form has expired. Check the details and save again." in texts(body)
    assert component(body, "title")["value"] == "No form before"
    assert stored_feedback(canvas_app) == []


def test_legacy_customer_key_is_read(canvas_app: Flask, inbox: Inbox) -> None:
    legacy = {key: value for key, value in INITIALIZE.items() if key != "contact"}
    legacy["customer"] = {"type": "user", "id": "legacy-1", "name": "Lee Legacy", "email": None}
    inbox.initialize(legacy)
    inbox.save("From an older app", payload=legacy)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.contact_id, evidence.customer_name) == ("legacy-1", "Lee Legacy")


def test_payload_without_context_uses_the_conversation(canvas_app: Flask, inbox: Inbox) -> None:
    without_context = {key: value for key, value in INITIALIZE.items() if key != "context"}
    inbox.initialize(without_context)
    inbox.save("No context", payload=without_context)
    assert stored_evidence(canvas_app)[0].conversation_id == CONVERSATION_ID


def test_payload_without_conversation_uses_the_context(canvas_app: Flask, inbox: Inbox) -> None:
    without_conversation = {k: v for k, v in INITIALIZE.items() if k != "conversation"}
    inbox.initialize(without_conversation)
    form = inbox.form(without_conversation)
    assert component(form, "details")["placeholder"] == "What they ask for, in your words or theirs"
    inbox.click("save", form, {"title": "Integer id"}, payload=without_conversation)
    assert stored_evidence(canvas_app)[0].conversation_id == CONVERSATION_ID
    assert stored_evidence(canvas_app)[0].quote == ""  # no message of theirs known


def test_bare_payload_still_records_feedback(canvas_app: Flask, inbox: Inbox) -> None:
    bare = {"workspace_id": WORKSPACE_ID, "contact": None, "admin": None, "conversation": None}
    inbox.initialize(bare)
    inbox.save("Hardly anything known", payload=bare)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.conversation_id, evidence.customer_name, evidence.admin_id) == (None, "", None)
    assert stored_feedback(canvas_app)[0].customer_count == 0  # no one known backs it


def test_oversized_field_values_stay_within_canvas_limits(canvas_app: Flask, inbox: Inbox) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["contact"]["name"] = "N" * 5000
    payload["contact"]["id"] = "i" * 500
    payload["conversation"]["source"]["body"] = "<p>" + "😀" * 20_000 + "</p>"
    form = inbox.form(payload)  # the validator checks the 64 KB caps
    body = inbox.click(
        "save", form, {"title": "t" * 100_000, "details": "😀" * 30_000}, payload=payload
    )
    assert component(body, "title")["save_state"] == "failed"
    assert len(component(body, "details")["value"]) == 10_000
    assert stored_feedback(canvas_app) == []
    inbox.save("Long name", payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert evidence.customer_name == "N" * 255
    assert evidence.quote == "😀" * 10_000  # their words, bounded
    assert evidence.contact_id is None  # an id too long to be real is not kept


EVIL_NAME = "Ann_Marie **CEO** [x](https://evil.example)"


def strings(value: Any) -> Iterator[str]:
    """Every string in a canvas, keys aside."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from strings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from strings(inner)


def assert_shown_as_written(body: Any) -> None:
    """No backslash anywhere, and each text (Intercom's markdown) renders no bold and no link."""
    assert not [value for value in strings(body) if "\\" in value]
    for line in texts(body):
        assert "<" not in str(canvas_markdown(line)).replace("&lt;", ""), line


def test_customers_words_show_as_written_in_every_canvas(canvas_app: Flask, inbox: Inbox) -> None:
    """Intercom documents bold and links in a canvas text, and no escape: names, emails and
    titles go where no markdown is read (list items, labels, data tables), or are left out."""
    payload = json.loads(json.dumps(INITIALIZE))
    payload["contact"]["name"] = EVIL_NAME
    payload["conversation"]["source"]["subject"] = EVIL_NAME
    add_feedback(canvas_app, title=EVIL_NAME, conversation_id="999", **CUSTOMER)
    first = inbox.initialize(payload)
    find = inbox.find(payload)
    form = inbox.click("new", find, payload=payload)
    failed = inbox.click("save", form, {"title": ""}, payload=payload)
    saved = inbox.click("save", form, {"title": EVIL_NAME}, payload=payload)
    (older, _) = stored_feedback(canvas_app)
    chosen = inbox.click(f"match-{older.id}", find, payload=payload)
    added = inbox.click("add", chosen, {"quote": "Me too"}, payload=payload)
    for body in (first, find, form, failed, saved, chosen, added):
        assert_shown_as_written(body)
    assert "More from this customer" in texts(first)
    assert component(form, "title")["value"] == EVIL_NAME  # the search, prefilled
    assert component(chosen, "quote")["label"] == f"{EVIL_NAME}'s words"
    assert component(chosen, "add")["label"] == f"Add {EVIL_NAME}"
    assert texts(added)[0].startswith(f"This customer added to #{older.id} — ")
    titles = [item["title"] for body in (saved, chosen, added) for item in listed_items(body)]
    assert titles == [EVIL_NAME] * 3


def listed_items(body: Any) -> list[dict[str, Any]]:
    components = body["canvas"]["content"]["components"]
    return [item for c in components if c["type"] == "list" for item in c["items"]]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
canvas_keys = st.sampled_from(
    [
        "workspace_id",
        "admin",
        "conversation",
        "contact",
        "customer",
        "context",
        "component_id",
        "input_values",
        "current_canvas",
    ]
)
canvas_payloads = st.one_of(
    json_values,
    st.dictionaries(canvas_keys, json_values, max_size=9).map(
        lambda d: {**d, "workspace_id": WORKSPACE_ID}
    ),
    st.builds(
        lambda component_id, inputs, nonce, drop: {
            **{k: v for k, v in INITIALIZE.items() if k not in drop},
            "component_id": component_id,
            "input_values": inputs,
            "current_canvas": {"stored_data": {"nonce": nonce}},
        },
        st.sampled_from(["save", "record", "another", "back", "done", "x"]) | json_values,
        st.dictionaries(st.sampled_from(["title", "description"]), json_values),
        st.text(min_size=16, max_size=70) | json_values,
        st.sets(canvas_keys),
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(payload=canvas_payloads, endpoint=st.sampled_from(["initialize", "submit"]))
def test_any_signed_json_gets_a_canvas_or_a_4xx_never_a_500(
    inbox: Inbox, payload: Any, endpoint: str
) -> None:
    response = inbox.send(endpoint, payload)
    assert response.status_code == 200 or 400 <= response.status_code < 500
    if response.status_code == 200:
        assert_valid_canvas(response.json)


BODY = b'{"workspace_id": "abc12def"}'


@settings(max_examples=200)
@given(body=st.binary(max_size=200), signature=st.none() | st.text(max_size=80))
@example(body=BODY, signature=None)
@example(body=BODY, signature=sign(BODY + b" "))
@example(body=BODY, signature=sign(BODY, CLIENT_SECRET + "x"))
def test_verify_accepts_nothing_but_the_hmac(body: bytes, signature: str | None) -> None:
    expected = sign(body)
    assert verify_canvas_signature(body, signature, CLIENT_SECRET) == (signature == expected)
    assert verify_canvas_signature(body, expected, CLIENT_SECRET)


def test_a_chunked_body_over_the_limit_is_413(canvas_app: Flask, inbox: Inbox) -> None:
    padding = "x" * canvas_app.config["CANVAS_MAX_CONTENT_LENGTH"]
    body = json.dumps({**INITIALIZE, "padding": padding}).encode()
    response = inbox.client.post(
        "/intercom/canvas/initialize",
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "X-Body-Signature": sign(body)},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


def test_a_signed_chunked_body_within_the_limit_is_read_whole(inbox: Inbox) -> None:
    body = json.dumps(INITIALIZE).encode()
    response = inbox.client.post(
        "/intercom/canvas/initialize",
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", "X-Body-Signature": sign(body)},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200


def test_a_form_nonce_spent_in_another_workspace_gives_the_form_again(
    canvas_app: Flask, inbox: Inbox
) -> None:
    with canvas_app.app_context():
        other = IntercomConnection(workspace_id="other-ws", workspace_name="Other")
        other.token = TOKEN
        db.session.add(other)
        db.session.commit()
    form = inbox.form()
    inbox.click("save", form, {"title": "Saved in A"})
    in_b = {**INITIALIZE, "workspace_id": "other-ws"}
    body = inbox.click("save", form, {"title": "Replayed in B"}, payload=in_b)
    assert "This form has expired. Check the details and save again." in texts(body)
    assert component(body, "title")["value"] == "Replayed in B"
    assert [r.title for r in stored_feedback(canvas_app)] == ["Saved in A"]


def test_lone_surrogates_and_control_characters_in_a_canvas_request_are_dropped(
    canvas_app: Flask, inbox: Inbox
) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["contact"]["name"] = "Casey\ud800 \x00Customer"
    payload["conversation"]["id"] = "2154\x0071"
    payload["conversation"]["source"]["body"] = "<p>Hi\ud800\x00 there</p>"
    inbox.initialize(payload)
    form = inbox.form(payload)
    inbox.click("save", form, {"title": "Odd\ud800 title\x00"}, payload=payload)
    (record,) = stored_feedback(canvas_app)
    (evidence,) = stored_evidence(canvas_app)
    assert (record.title, evidence.customer_name, evidence.conversation_id, evidence.quote) == (
        "Odd title",
        "Casey Customer",
        "215471",
        "Hi there",
    )


@pytest.mark.parametrize(
    "hostile",
    ["<a " * 350_000, "<!--" * 260_000, "<" + "a" * 1_048_576, "&#" * 520_000, "<p " * 350_000],
    ids=["unclosed tags", "unclosed comments", "one endless tag", "entity starts", "paragraphs"],
)
def test_a_megabyte_of_hostile_html_becomes_bounded_text(hostile: str) -> None:
    """CPython's html.parser takes quadratic time on such input (CVE-2025-6069); the form needs
    only the first part of a message, read in one linear pass (timed in make bench)."""
    text = html_to_text("<p>Hello <b>there</b></p>" + hostile)
    assert text.startswith("Hello there")
    assert len(text) <= HTML_READ_MAX


def test_a_workspace_that_is_not_connected_is_sent_where_this_hedwig_connects(
    private_app: Flask, canvas_app: Flask
) -> None:
    """The canvas points to OAuth when the app's client id is set, else to the token form."""
    for app, path in ((private_app, "/intercom/connect/token"), (canvas_app, "/intercom/connect")):
        components = Inbox(app).initialize(workspace_id="not-connected")
        (connect,) = [c for c in components if c["type"] == "button"]
        assert connect["action"] == {"type": "url", "url": f"https://hedwig.example{path}"}


def teammate_started(**conversation: Any) -> dict[str, Any]:
    """A conversation a teammate started: its source is the teammate's message."""
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"] = {
        "type": "conversation",
        "delivered_as": "admin_initiated",
        "body": "<p>Hi Casey, how is the new dashboard working for you?</p>",
        "author": {"type": "admin", "id": "5551234", "name": "Alex Agent", "email": "a@x.example"},
    }
    payload["conversation"].update(conversation)
    return payload


def test_in_a_conversation_a_teammate_started_the_customer_is_still_the_contact(
    canvas_app: Flask, inbox: Inbox
) -> None:
    parts = {
        "type": "conversation_part.list",
        "conversation_parts": [
            {"part_type": "comment", "body": "<p>Ping?</p>", "author": {"type": "admin"}},
            {
                "part_type": "comment",
                "body": "<p>Great, but I need a dark mode.</p>",
                "author": {"type": "user", "id": CONTACT_ID, "name": "Casey Customer"},
            },
        ],
    }
    payload = teammate_started(conversation_parts=parts)
    form = inbox.form(payload)
    assert customer_rows(form) == [("From", "Casey Customer"), ("Email", CASEY_EMAIL)]
    inbox.click("save", form, {"title": "Dark mode"}, payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.customer_name, evidence.contact_id) == ("Casey Customer", CONTACT_ID)
    assert evidence.quote == "Great, but I need a dark mode."  # the customer's, not "Ping?"


def test_a_teammates_words_are_never_prefilled_as_the_customers(
    canvas_app: Flask, inbox: Inbox
) -> None:
    payload = teammate_started()
    del payload["contact"]
    form = inbox.form(payload)
    assert "Customer unknown" in texts(form)
    inbox.click("save", form, {"title": "Asked on a call"}, payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert (evidence.customer_name, evidence.customer_email, evidence.quote) == ("", "", "")


def test_a_conversation_with_500_parts_is_answered(canvas_app: Flask, inbox: Inbox) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    part = {
        "type": "conversation_part",
        "part_type": "comment",
        "body": "<p>" + "A long message about exports. " * 100 + "</p>",
        "author": {"type": "admin", "id": "5551234", "name": "Alex Agent"},
    }
    payload["conversation"]["conversation_parts"] = {
        "type": "conversation_part.list",
        "conversation_parts": [part] * 500,
        "total_count": 500,
    }
    assert len(json.dumps(payload)) > 1024 * 1024  # more than a form may send
    inbox.initialize(payload)
    inbox.save("Exports", payload=payload)
    (evidence,) = stored_evidence(canvas_app)
    assert evidence.quote == "Hi! The CSV export button crashes the page every time I click it."


def test_web_forms_keep_their_own_smaller_limit(app: Flask, signed_in: FlaskClient) -> None:
    response = post(signed_in, "/feedback/new", {"title": "Big", "description": "x" * 300_000})
    assert response.status_code == 413
    assert feedback_count(app) == 0


@pytest.mark.parametrize(
    "nonce", ["\ud800" * 20, "\x00" * 20, " " * 20, "nonce with spaces in it", "ok" * 40]
)
def test_a_form_nonce_of_the_wrong_shape_gives_the_form_again(
    canvas_app: Flask, inbox: Inbox, nonce: str
) -> None:
    body = inbox.click("save", {"canvas": {"stored_data": {"nonce": nonce}}}, {"title": "Odd"})
    assert "This form has expired. Check the details and save again." in texts(body)
    assert stored_feedback(canvas_app) == []


# Find before you create: the Inbox searches the log, and adds a customer to a match.


OTHER_CUSTOMER = {
    **INITIALIZE,
    "conversation": {**INITIALIZE["conversation"], "id": "300000000000001"},
    "contact": {
        **INITIALIZE["contact"],
        "id": "dana-contact",
        "name": "Dana Doe",
        "email": "dana@example.com",
    },
}


def test_record_feedback_searches_first_prefilled_from_the_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    (match,) = add_feedback(canvas_app, title="CSV export crashes", workspace_id=WORKSPACE_ID)
    add_feedback(canvas_app, title="Export from the reports page", workspace_id=WORKSPACE_ID)
    add_feedback(canvas_app, title="CSV export, but elsewhere", workspace_id="other-ws")
    add_feedback(canvas_app, title="CSV export, added by hand")
    find = inbox.find()
    assert component(find, "query")["value"] == (
        "The CSV export button crashes the page every time I click it"
    )
    assert component(find, "query")["action"] == {"type": "submit"}
    (listing,) = [c for c in find["canvas"]["content"]["components"] if c["type"] == "list"]
    assert [item["title"] for item in listing["items"]] == [
        "CSV export crashes",  # the words in its title
        "Export from the reports page",  # some of them
    ]
    assert listing["items"][0] == {
        "type": "item",
        "id": f"match-{match}",
        "title": "CSV export crashes",
        "subtitle": f"#{match} · Open · 0 customers",
        "action": {"type": "submit"},
    }
    assert component(find, "new")["style"] == "secondary"  # a second screen: no primary yet


def test_the_subject_is_searched_first_and_a_new_search_refreshes_the_matches(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, title="Dark mode", workspace_id=WORKSPACE_ID)
    add_feedback(canvas_app, title="Single sign-on", workspace_id=WORKSPACE_ID)
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"]["subject"] = "<p>Dark mode?</p>"
    find = inbox.find(payload)
    assert component(find, "query")["value"] == "Dark mode"
    again = inbox.click("query", find, {"query": "sign"}, payload=payload)
    assert [item["title"] for item in component_list(again)["items"]] == ["Single sign-on"]
    nothing = inbox.click("query", find, {"query": "quantum teleport"}, payload=payload)
    assert "No feedback matches yet." in texts(nothing)
    form = inbox.click("new", nothing, {"query": "quantum teleport"}, payload=payload)
    assert component(form, "title")["value"] == "quantum teleport"


@pytest.mark.parametrize(
    ("message", "prefill"),
    [
        (
            "<p>Hi there! Quick question: can I export invoices to PDF? Thanks!</p>",
            "can I export invoices to PDF",
        ),
        (
            "<p>Hello team,</p><p>\U0001f44b We need SSO for our staff \U0001f64f</p>",
            "We need SSO for our staff",
        ),
        ("<p>Hey Casey! Hope you're doing well. Is there a dark mode?</p>", "Is there a dark mode"),
        ("<p>Good morning \u2600\ufe0f</p><p>Thanks so much!</p>", ""),
        ("<p>Help center search is broken</p>", "Help center search is broken"),
        (
            "<p>Hallo Alex, hope you had a lovely weekend! One more thing from our side: can we "
            "attach files from Google Drive?</p>",
            "can we attach files from Google Drive",
        ),
        (
            "<p>Thanks for last week, it went well. Quick question about exports: why so slow?</p>",
            "exports: why so slow",
        ),
        ("<p>Hi, " + "exports " * 20 + "</p>", ("exports " * 7).strip()),  # 60 at most
    ],
)
def test_the_search_starts_from_the_customers_first_sentence_without_greetings(
    inbox: Inbox, message: str, prefill: str
) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"]["body"] = message
    assert component(inbox.find(payload), "query")["value"] == prefill


@pytest.mark.parametrize(
    ("subject", "prefill"),
    [
        ("Re: Export to PDF", "Export to PDF"),
        ("Quick question", "Can I export to PDF"),
        ("Re: Hi!", "Can I export to PDF"),
    ],
)
def test_a_subject_that_says_nothing_is_passed_over_for_the_message(
    inbox: Inbox, subject: str, prefill: str
) -> None:
    payload = json.loads(json.dumps(INITIALIZE))
    payload["conversation"]["source"]["subject"] = subject
    payload["conversation"]["source"]["body"] = "<p>Hello! Can I export to PDF?</p>"
    assert component(inbox.find(payload), "query")["value"] == prefill


@pytest.mark.usefixtures("weighing")
def test_the_find_canvas_offers_a_title_match_before_a_popular_match_in_customers_words(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, title="Export to PDF", workspace_id=WORKSPACE_ID)
    (popular,) = add_feedback(
        canvas_app, title="Slow reports", quote="The PDF takes ages", workspace_id=WORKSPACE_ID
    )
    with canvas_app.app_context():
        record = db.session.get(Feedback, popular)
        for n in range(12):
            add_evidence(record, customer_email=f"c{n}@example.com", quote="PDFs too")
        refresh_backing(record)
        db.session.commit()
    find = inbox.click("query", inbox.find(), {"query": "pdf"})
    assert [item["title"] for item in component_list(find)["items"]] == [
        "Export to PDF",
        "Slow reports",
    ]


def test_the_find_canvas_finds_its_workspaces_record_behind_another_workspaces_newer_ones(
    canvas_app: Flask, inbox: Inbox
) -> None:
    # The newest matches are read after the workspace is chosen, not before.
    add_feedback(canvas_app, title="Export to PDF", workspace_id=WORKSPACE_ID)
    with canvas_app.app_context():
        elsewhere = {"workspace_id": "another-workspace", "source": "web"}
        rows = [{"title": f"Export {n}", **elsewhere} for n in range(SEARCH_WINDOW + 1)]
        db.session.execute(insert(Feedback), rows)
        db.session.commit()
    find = inbox.click("query", inbox.find(), {"query": "export"})
    assert [item["title"] for item in component_list(find)["items"]] == ["Export to PDF"]


def test_at_most_five_matches_show(canvas_app: Flask, inbox: Inbox) -> None:
    add_feedback(canvas_app, 8, title="CSV export", workspace_id=WORKSPACE_ID)
    assert len(component_list(inbox.find())["items"]) == 5


def component_list(body: Any) -> dict[str, Any]:
    (listing,) = [c for c in body["canvas"]["content"]["components"] if c["type"] == "list"]
    return listing


def test_adding_a_customer_to_a_match_from_another_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes", payload=OTHER_CUSTOMER)  # Dana, another day
    (record,) = stored_feedback(canvas_app)
    chosen = inbox.click(f"match-{record.id}", inbox.find())
    (match,) = component_list(chosen)["items"]
    assert (match["title"], match["subtitle"]) == (
        "CSV export crashes",
        f"#{record.id} · Open · 1 customer",
    )
    assert match["action"]["url"] == f"https://hedwig.example/feedback/{record.id}"
    assert component(chosen, "quote")["value"] == (
        "Hi! The CSV export button crashes the page every time I click it."
    )
    assert component(chosen, "add")["label"] == "Add Casey Customer"
    assert component(chosen, "add")["style"] == "primary"
    added = inbox.click("add", chosen, {"quote": "It crashes in Chrome."})
    assert texts(added)[0] == f"Casey Customer added to #{record.id} — 2 customers"
    assert (
        component(added, "open")["action"]["url"] == f"https://hedwig.example/feedback/{record.id}"
    )
    casey = stored_evidence(canvas_app)[-1]
    assert (casey.quote, casey.conversation_id, casey.customer_email) == (
        "It crashes in Chrome.",
        CONVERSATION_ID,
        "casey.customer@example.com",
    )
    first = inbox.initialize()
    listing = component_list({"canvas": {"content": {"components": first}}})
    assert listing["items"][0]["title"] == "CSV export crashes"
    assert listing["items"][0]["subtitle"] == f"#{record.id} · Open · 2 customers"


def test_adding_twice_adds_once_and_a_conversation_backs_a_record_once(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes", payload=OTHER_CUSTOMER)
    (record,) = stored_feedback(canvas_app)
    chosen = inbox.click(f"match-{record.id}", inbox.find())
    first = inbox.click("add", chosen, {"quote": "Once"})
    again = inbox.click("add", chosen, {"quote": "Once"})  # a double click, or a retry
    assert first == again
    another_form = inbox.click(f"match-{record.id}", inbox.find())
    later = inbox.click("add", another_form, {"quote": "And again"})
    assert texts(later)[0] == f"This conversation backs #{record.id} already — 2 customers"
    assert len(stored_evidence(canvas_app)) == 2


def test_the_same_customer_from_another_conversation_is_still_one_customer(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("CSV export crashes")
    (record,) = stored_feedback(canvas_app)
    later = {**INITIALIZE, "conversation": {**INITIALIZE["conversation"], "id": "999000"}}
    added = inbox.add_to(record.id, payload=later)
    assert texts(added)[0] == f"Casey Customer added to #{record.id} — 1 customer"
    assert len(stored_evidence(canvas_app)) == 2


def test_a_stale_canvas_naming_a_merged_or_deleted_record_is_handled(
    canvas_app: Flask, inbox: Inbox
) -> None:
    target, duplicate, gone = add_feedback(
        canvas_app, 3, title="CSV export", workspace_id=WORKSPACE_ID
    )
    chosen = inbox.click(f"match-{duplicate}", inbox.find())
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    post(browser, f"/feedback/{duplicate}/merge", {"into": str(target)})
    post(browser, f"/feedback/{gone}/delete")
    added = inbox.click("add", chosen, {"quote": "Still wanted"})
    assert texts(added)[0] == f"Casey Customer added to #{target} — 1 customer"
    stale = inbox.click(f"match-{gone}", inbox.find())
    assert component(stale, "query")  # back to the search: that record is gone


def test_a_match_of_another_workspace_cannot_be_chosen(canvas_app: Flask, inbox: Inbox) -> None:
    (theirs,) = add_feedback(canvas_app, title="CSV export", workspace_id="other-ws")
    chosen = inbox.click(f"match-{theirs}", inbox.find())
    assert component(chosen, "query")
    forged = {"canvas": {"stored_data": {"nonce": "n" * 32, "feedback_id": theirs}}}
    inbox.click("add", forged, {"quote": "Sneaky"})
    assert stored_evidence(canvas_app) == []


# The first canvas's lookups: bounded, whatever the history


def test_first_canvas_counts_a_long_history_only_up_to_a_cap(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, 150, workspace_id=WORKSPACE_ID, conversation_id=CONVERSATION_ID)
    components = inbox.initialize()
    assert more_label(components) == "98+ more in Hedwig"


CUSTOMER = {"workspace_id": WORKSPACE_ID, "contact_id": CONTACT_ID}


def customer_list(components: list[dict[str, Any]]) -> list[str]:
    """The titles listed under "More from …"."""
    header = components.index(
        {"type": "text", "text": "More from Casey Customer", "style": "header"}
    )
    return [item["title"] for item in components[header + 1]["items"]]


def more_label(components: list[dict[str, Any]]) -> str | None:
    """What the first canvas's link to the rest says, if it has one."""
    return next((c["label"] for c in components if c.get("id") == "more"), None)


# A title of TITLE_MAX characters, in words too long to wrap well.
LONG_TITLE = ("Internationalisation " * 10)[:200]
LONG_NAMES = ("N" * 255, "Alexandra Montgomery", "Ann Marie-Louise van der Berg", "")


@pytest.mark.parametrize(("ours", "theirs"), [(20, 20), (1, 20), (0, 20), (20, 0)])
def test_the_first_canvas_at_its_fullest_is_at_most_400px_tall(
    canvas_app: Flask, inbox: Inbox, ours: int, theirs: int
) -> None:
    """Intercom's Inbox rule, measured by conftest's canvas_height(): a header 24 px a line of
    32 characters, text 20 px a line of 38, a list item with a subtitle 60 px (and 20 px more a
    line its title wraps to, 36 characters a line), a button 40 px, 12 px between components.
    At its fullest: both lists full, every title 200 characters long, names long or odd."""
    if ours:
        here = {"conversation_id": CONVERSATION_ID, "source": "intercom"}
        add_feedback(canvas_app, ours, title=LONG_TITLE, workspace_id=WORKSPACE_ID, **here)
    if theirs:
        add_feedback(canvas_app, theirs, title=LONG_TITLE, conversation_id="999", **CUSTOMER)
    for name in LONG_NAMES:
        payload = json.loads(json.dumps(INITIALIZE))
        payload["contact"]["name"] = payload["conversation"]["source"]["author"]["name"] = name
        components = inbox.initialize(payload)  # checks the 400 px too
        assert canvas_height(components) <= 400, (name, canvas_height(components))
        shown = sum(len(c["items"]) for c in components if c["type"] == "list")
        assert shown == min(3, min(ours, 2) + min(theirs, 2))
        assert more_label(components) == f"{ours + theirs - shown} more in Hedwig"


def test_canvas_requests_give_their_database_connections_back(
    canvas_app: Flask, inbox: Inbox
) -> None:
    """Initialize runs on every conversation switch: a connection kept per request would
    exhaust the pool within minutes."""
    for _ in range(20):
        inbox.initialize()
        inbox.click("back")
    with canvas_app.app_context():
        assert db.engine.pool.checkedout() == 0


def test_feedback_known_by_contact_and_email_is_listed_and_counted_once(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(
        canvas_app,
        5,
        **CUSTOMER,
        conversation_id="999",
        customer_email="casey.customer@example.com",
    )
    components = inbox.initialize()
    assert customer_list(components) == ["Feedback 4", "Feedback 3"]
    assert more_label(components) == "3 more in Hedwig"


def test_customer_list_sees_past_a_long_history_in_this_conversation(
    canvas_app: Flask, inbox: Inbox
) -> None:
    """The customer's other feedback is found behind up to COUNT_CAP of their records in this
    conversation (the bound that keeps a long conversation as cheap as a short one)."""
    for conversation_id in ("earlier-1", "earlier-2", "earlier-3", "earlier-4"):
        add_feedback(canvas_app, title=conversation_id, conversation_id=conversation_id, **CUSTOMER)
    add_feedback(canvas_app, COUNT_CAP, conversation_id=CONVERSATION_ID, **CUSTOMER)
    components = inbox.initialize()
    assert customer_list(components) == ["earlier-4"]  # after two of this conversation's
    assert more_label(components) == "101+ more in Hedwig"  # 98 and more here, 3 elsewhere


def test_customer_list_counts_a_long_history_only_up_to_a_cap(
    canvas_app: Flask, inbox: Inbox
) -> None:
    add_feedback(canvas_app, 150, conversation_id="999", **CUSTOMER)
    components = inbox.initialize()
    assert customer_list(components) == ["Feedback 149", "Feedback 148"]
    assert more_label(components) == "98+ more in Hedwig"


# The canvas preview: the same canvases, without Intercom


def preview_click(client: FlaskClient, page: str, component_id: str, **inputs: str) -> Any:
    """Click a canvas button in the preview page, sending what the page's form holds."""
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    fields = {name: html.unescape(value) for name, value in fields.items()}
    fields |= {f"input:{name}": value for name, value in inputs.items()}
    return client.post("/intercom/preview", data={**fields, "component_id": component_id})


def test_the_preview_shows_the_customers_words_as_text_and_the_html_behind_a_toggle(
    signed_in: FlaskClient,
) -> None:
    page = page_text(signed_in.get("/intercom/preview"))
    box = re.search(r'<textarea name="words" rows="4">(.*?)</textarea>', page, re.S).group(1)
    assert box == "Hi! The CSV export button crashes the page every time I click it."
    raw = re.search(r"<summary>Show as Intercom sends it</summary>\s*<pre><code>(.*?)</code>", page)
    assert html.unescape(raw.group(1)) == f"<p>{box}</p>"
    typed = {"words": "Two <things>:\nexports\n\nand totals", "conversation_id": "7"}
    page = page_text(signed_in.get("/intercom/preview?" + urlencode(typed)))
    raw = re.search(r"<summary>Show as Intercom sends it</summary>\s*<pre><code>(.*?)</code>", page)
    assert html.unescape(raw.group(1)) == "<p>Two &lt;things&gt;:<br>exports</p><p>and totals</p>"
    assert f'<textarea name="words" rows="4">{html.escape(typed["words"], quote=False)}<' in page
    form = page_text(
        preview_click(signed_in, page_text(preview_click(signed_in, page, "record")), "new")
    )
    assert "Two &lt;things&gt;:\nexports\n" in form  # the quote, as text again


def test_preview_records_feedback_from_first_canvas_to_saved(
    app: Flask, signed_in: FlaskClient
) -> None:
    first = page_text(signed_in.get("/intercom/preview"))  # no Intercom settings at all
    assert "Nothing recorded from this conversation yet." in first
    assert 'value="record"' in first
    search = page_text(preview_click(signed_in, first, "record"))
    assert "No feedback matches yet." in search
    form = page_text(preview_click(signed_in, search, "new"))
    assert "Hi! The CSV export button crashes the page every time I click it." in form
    assert (
        "<dt>From</dt><dd>Casey Customer</dd><dt>Email</dt><dd>casey.customer@example.com</dd>"
        in form
    )
    saved = preview_click(signed_in, form, "save", title="Export crashes", details="Every time")
    assert saved.status_code == 200
    (record,) = stored_feedback(app)
    (evidence,) = stored_evidence(app)
    assert f"Feedback #{record.id} saved" in page_text(saved)
    assert (record.workspace_id, record.origin, evidence.customer_name) == (
        "hedwig-preview",
        "preview",
        "Casey Customer",
    )
    listing = page_text(signed_in.get("/"))
    assert "Export crashes" in listing
    assert '<span class="badge preview">preview</span>' in listing
    assert "Open conversation" not in page_text(signed_in.get(f"/feedback/{record.id}"))
    again = page_text(signed_in.get("/intercom/preview"))
    assert "Export crashes" in again  # the first canvas now lists it


def test_preview_shows_validation_errors_like_the_inbox(app: Flask, signed_in: FlaskClient) -> None:
    search = preview_click(signed_in, page_text(signed_in.get("/intercom/preview")), "record")
    form = page_text(preview_click(signed_in, page_text(search), "new"))
    page = page_text(preview_click(signed_in, form, "save", title=""))
    assert "A title is required." in page
    assert 'aria-invalid="true"' in page
    assert stored_feedback(app) == []


def test_preview_uses_the_edited_sample(app: Flask, signed_in: FlaskClient) -> None:
    page = page_text(
        signed_in.get(
            "/intercom/preview?customer_name=Dana+Doe&customer_email=dana@example.com"
            "&message=<p>Hello <b>there</b></p>"
        )
    )
    search = page_text(preview_click(signed_in, page, "record"))
    form = page_text(preview_click(signed_in, search, "new"))
    assert "<dd>Dana Doe</dd><dt>Email</dt><dd>dana@example.com</dd>" in form
    preview_click(signed_in, form, "save", title="Hello")
    assert [e.quote for e in stored_evidence(app)] == ["Hello there"]


def test_preview_needs_sign_in_and_a_csrf_token(app: Flask, signed_in: FlaskClient) -> None:
    assert app.test_client().get("/intercom/preview").status_code == 302
    response = signed_in.post("/intercom/preview", data={"component_id": "save"})
    assert response.status_code == 400
    assert stored_feedback(app) == []


def test_real_canvas_requests_for_the_preview_workspace_are_refused(
    canvas_app: Flask, inbox: Inbox
) -> None:
    components = inbox.initialize(workspace_id="hedwig-preview")
    assert "not connected to Hedwig yet" in texts(components)[0]
    body = inbox.click(
        "save", None, {"title": "Sneaky"}, payload={**INITIALIZE, "workspace_id": "hedwig-preview"}
    )
    assert "not connected to Hedwig yet" in texts(body)[0]
    assert stored_feedback(canvas_app) == []


def test_canvas_markdown_renders_bold_and_links_and_backslashes_as_they_are() -> None:
    assert str(canvas_markdown("**Saved** [open](https://h.example/1)")) == (
        '<strong>Saved</strong> <a href="https://h.example/1" target="_blank" '
        'rel="noopener noreferrer">open</a>'
    )
    # Intercom documents no escape: the preview shows a backslash as it may show in the Inbox.
    assert str(canvas_markdown("Ann\\_Marie <b>")) == "Ann\\_Marie &lt;b&gt;"


def test_preview_shows_customers_words_as_written(app: Flask, signed_in: FlaskClient) -> None:
    first = page_text(signed_in.get("/intercom/preview", query_string={"customer_name": EVIL_NAME}))
    search = page_text(preview_click(signed_in, first, "record"))
    form = page_text(preview_click(signed_in, search, "new"))
    saved = page_text(preview_click(signed_in, form, "save", title=EVIL_NAME, details="Me"))
    again = page_text(signed_in.get("/intercom/preview", query_string={"customer_name": EVIL_NAME}))
    escaped = html.escape(EVIL_NAME, quote=False)
    assert f"<dd>{escaped}</dd>" in form
    assert f'<span class="c-item-title">{escaped}</span>' in saved
    for page in (first, search, form, saved, again):
        assert "<strong>" not in page
        assert 'href="https://evil.example"' not in page
        assert "\\" not in page


def test_preview_refuses_stored_data_nested_beyond_reason(
    app: Flask, signed_in: FlaskClient
) -> None:
    response = post(signed_in, "/intercom/preview", {"stored_data": "[" * 50_000})
    assert response.status_code == 400
    assert "stored data is not JSON" in page_text(response)


def test_preview_reusing_an_inbox_forms_nonce_gives_the_form_again(
    canvas_app: Flask, inbox: Inbox
) -> None:
    form = inbox.form()
    inbox.click("save", form, {"title": "From the Inbox"})
    create_user(canvas_app)
    browser = canvas_app.test_client()
    sign_in(browser)
    stored = json.dumps(form["canvas"]["stored_data"])
    response = post(
        browser,
        "/intercom/preview",
        {"stored_data": stored, "component_id": "save", "input:title": "Preview replay"},
    )
    assert response.status_code == 200
    assert "This form has expired." in page_text(response)
    assert [r.title for r in stored_feedback(canvas_app)] == ["From the Inbox"]


# --- How much it matters ----------------------------------------------------------------------

IMPORTANCE_OPTIONS = [
    {"type": "option", "id": "nice_to_have", "text": "Nice to have"},
    {"type": "option", "id": "important", "text": "Important"},
    {"type": "option", "id": "blocker", "text": "Blocker"},
]


def test_the_add_and_new_feedback_canvases_ask_how_much_it_matters_and_store_it(
    canvas_app: Flask, inbox: Inbox
) -> None:
    form = inbox.form()
    question = component(form, "importance")
    assert (question["type"], question["label"], question["value"]) == (
        "single-select",
        "How much does it matter to them?",
        "important",
    )
    assert question["options"] == IMPORTANCE_OPTIONS
    inbox.click("save", form, {"title": "SSO", "details": "We need it", "importance": "blocker"})
    (record,) = stored_feedback(canvas_app)
    chosen = inbox.click(f"match-{record.id}", inbox.find(OTHER_CUSTOMER), payload=OTHER_CUSTOMER)
    assert component(chosen, "importance")["options"] == IMPORTANCE_OPTIONS
    assert component(chosen, "importance")["value"] == "important"
    inputs = {"quote": "Would be nice", "importance": "nice_to_have"}
    inbox.click("add", chosen, inputs, payload=OTHER_CUSTOMER)
    assert [e.importance for e in stored_evidence(canvas_app)] == ["blocker", "nice_to_have"]


@pytest.mark.parametrize("importance", ["urgent", "", 3, ["blocker"], {"id": "blocker"}])
def test_an_unknown_importance_is_refused_with_the_canvas_and_stores_nothing(
    canvas_app: Flask, inbox: Inbox, importance: Any
) -> None:
    form = inbox.form()
    again = inbox.click("save", form, {"title": "SSO", "details": "Now", "importance": importance})
    assert "Choose how much it matters to them: Nice to have, Important, Blocker." in texts(again)
    assert component(again, "title")["value"] == "SSO"
    assert stored_feedback(canvas_app) == []
    inbox.save("SSO", payload=OTHER_CUSTOMER)
    (record,) = stored_feedback(canvas_app)
    chosen = inbox.click(f"match-{record.id}", inbox.find())
    refused = inbox.click("add", chosen, {"quote": "Kept", "importance": importance})
    assert "Choose how much it matters to them: Nice to have, Important, Blocker." in texts(refused)
    assert component(refused, "quote")["value"] == "Kept"
    assert component(refused, "add")["style"] == "primary"
    assert len(stored_evidence(canvas_app)) == 1


def test_a_canvas_given_out_before_the_question_saves_as_important(
    canvas_app: Flask, inbox: Inbox
) -> None:
    inbox.save("SSO", "No importance in the submit")  # input_values without "importance"
    assert [e.importance for e in stored_evidence(canvas_app)] == ["important"]


def test_the_canvas_check_knows_single_select_as_documented() -> None:
    select = {"type": "single-select", "id": "size", "label": "Size", "value": "s"}
    options = [
        {"type": "option", "id": "s", "text": "Small"},
        {"type": "option", "id": "l", "text": "Large"},
    ]
    assert_valid_canvas({"canvas": {"content": {"components": [{**select, "options": options}]}}})
    for broken in (
        {**select, "options": options[:1]},  # at least two options
        {**select, "options": [{"id": "s", "text": "Small"}, options[1]]},  # each with its type
        {**select, "options": options, "value": "m"},  # the value is an option
        {**select, "options": [options[0]] * 11},  # at most ten
    ):
        with pytest.raises(AssertionError):
            assert_valid_canvas({"canvas": {"content": {"components": [broken]}}})


def test_preview_asks_how_much_it_matters_and_stores_the_choice(
    app: Flask, signed_in: FlaskClient
) -> None:
    search = page_text(
        preview_click(signed_in, page_text(signed_in.get("/intercom/preview")), "record")
    )
    form = page_text(preview_click(signed_in, search, "new"))
    assert "How much does it matter to them?" in form
    assert 'name="input:importance" value="important" checked' in form
    assert 'name="input:importance" value="blocker"' in form
    saved = preview_click(
        signed_in, form, "save", title="Export", details="Now", importance="blocker"
    )
    assert saved.status_code == 200
    assert [e.importance for e in stored_evidence(app)] == ["blocker"]
