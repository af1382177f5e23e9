"""Hedwig in a real browser: Debian's Chromium, driven by Playwright, against Hedwig on loopback.

Without Chromium these tests report skipped, with the install hint. With HEDWIG_SCREENSHOTS set
to a folder (`make screenshots` sets docs/), they also save the pictures the README shows.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.serving import make_server

import hedwig
from conftest import (
    PASSWORD,
    SECRET_KEY,
    WORKSPACE_ID,
    connect_workspace,
    start_migrated,
    wait_for_sender,
)
from hedwig_app.auth import add_user
from hedwig_app.issues import link_issue, read_issue_url
from hedwig_app.records import add_evidence, refresh_backing
from models import Feedback, db

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_HINT = "Chromium not installed: apt-get install chromium"
SCREENSHOTS = os.environ.get("HEDWIG_SCREENSHOTS")
EMAIL = "ada@example.com"

playwright_api = pytest.importorskip("playwright.sync_api")
# Under pytest-xdist, all on one worker: one Chromium for the module, as without it.
pytestmark = pytest.mark.xdist_group("browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(CHROMIUM_HINT)
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",  # CI runs as root
                "--disable-gpu",
                "--disable-dev-shm-usage",
                # this machine's network is closed: no background calls to Google
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Any]]]:
    """Start Hedwig on a loopback port, with extra settings; returns its base URL and app."""
    servers = []

    def start(**settings: Any) -> tuple[str, Any]:
        database_url = f"sqlite:///{tmp_path / 'hedwig.db'}"
        start_migrated(tmp_path, database_url)  # not migrated afresh for each test
        app = hedwig.create_app(
            {
                "INSTANCE_PATH": str(tmp_path / "instance"),
                "SECRET_KEY": SECRET_KEY,
                "DATABASE_URL": database_url,
                **settings,
            }
        )
        server = make_server("127.0.0.1", 0, app, threaded=True)
        # a short poll: shutdown() below waits out one
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append((server, app))
        return f"http://127.0.0.1:{server.server_port}", app

    yield start
    for server, app in servers:
        server.shutdown()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 760}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


def screenshot(target: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        target.screenshot(path=str(Path(SCREENSHOTS, f"{name}.png")))


def create_first_account(page: Any, url: str) -> None:
    page.goto(f"{url}/")
    assert page.locator("h1").inner_text() == "Welcome to Hedwig"
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=confirm]", PASSWORD)
    page.click("text=Create account")
    page.wait_for_url(f"{url}/")


def add_feedback(page: Any, url: str, title: str, **fields: str) -> None:
    page.goto(f"{url}/feedback/new")
    page.fill("input[name=title]", title)
    for name, value in fields.items():
        page.fill(f"[name={name}]", value)
    page.click("text=Save feedback")
    page.wait_for_url(f"{url}/feedback/*")


def test_first_account_then_sign_out_and_in(
    page: Any, serve: Callable[..., tuple[str, Any]]
) -> None:
    url, _ = serve()
    create_first_account(page, url)
    assert EMAIL in page.locator("header").inner_text()
    page.click("text=Sign out")
    page.goto(f"{url}/feedback/new")
    assert page.locator("h1").inner_text() == "Sign in"  # sent to sign in, first form gone
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", "wrong password")
    page.click("button:text('Sign in')")
    assert "Wrong email or password." in page.content()
    page.fill("input[name=password]", PASSWORD)
    page.click("button:text('Sign in')")
    page.wait_for_url(f"{url}/feedback/new")  # back where they were going


def test_add_list_search_show_and_export(page: Any, serve: Callable[..., tuple[str, Any]]) -> None:
    url, _ = serve()
    create_first_account(page, url)
    page.goto(f"{url}/")
    assert "No feedback yet." in page.content()
    page.goto(f"{url}/feedback/new")
    page.click("text=Save feedback")
    assert "A title is required." in page.content()
    add_feedback(
        page,
        url,
        "Dark mode for the reports",
        customer_name="Casey Customer",
        customer_email="casey@example.com",
        description="Night shift, 3am.",
    )
    assert page.locator("h1").inner_text() == "Dark mode for the reports"
    screenshot(page, "record")
    add_feedback(page, url, "Export to PDF", customer_name="Dana Doe")
    add_feedback(page, url, "=cmd|' /C calc'!A0", customer_name="Mallory")

    page.goto(f"{url}/")
    rows = page.locator(".board > li")
    assert rows.count() == 3
    assert "Export to PDF" in rows.nth(1).inner_text()  # newest first
    assert "3 records" in page.content()

    page.fill("input[name=q]", "dark")
    page.click("button:text('Search')")
    assert page.locator(".board > li").count() == 1
    page.click("text=Dark mode for the reports")
    assert "Night shift, 3am." in page.content()
    assert "casey@example.com" in page.content()

    page.goto(f"{url}/")
    with page.expect_download() as download:
        page.click("text=Download CSV")
    content = Path(download.value.path()).read_text()
    exported = list(csv.DictReader(io.StringIO(content)))
    assert [row["title"] for row in exported] == [
        "'=cmd|' /C calc'!A0",
        "Export to PDF",
        "Dark mode for the reports",
    ]


def test_connect_button_follows_the_connection(
    page: Any, serve: Callable[..., tuple[str, Any]], httpserver: HTTPServer
) -> None:
    url, _ = serve()
    create_first_account(page, url)
    assert "Intercom not connected" in page.locator("header").inner_text()
    line = page.locator("[data-setup-line]")
    assert "HEDWIG_INTERCOM_CLIENT_SECRET" not in line.inner_text()  # one line, no variables
    line.locator("a:text('set it up')").click()
    settings = page.locator("main").inner_text()
    assert "Not set: HEDWIG_INTERCOM_CLIENT_SECRET" in settings
    assert "HEDWIG_INTERCOM_CLIENT_ID" in settings
    page.goto(f"{url}/")
    page.click("[data-setup-line] button:text('Dismiss')")
    assert page.locator("[data-setup-line]").count() == 0

    intercom = {"INTERCOM_API_URL": httpserver.url_for("/"), "INTERCOM_CLIENT_SECRET": "secret-123"}
    url, _ = serve(**intercom)  # a private app: a client secret, no OAuth
    sign_in(page, url)
    page.click("header a:text('Connect with an access token')")
    assert page.locator("h1").inner_text() == "Connect with an access token"
    assert page.locator("input[name=access_token]").get_attribute("type") == "password"

    url, app = serve(INTERCOM_CLIENT_ID="client-id", **intercom)
    sign_in(page, url)  # OAuth set up too: the token comes first, OAuth is offered beside it
    page.click("header a:text('Connect with an access token')")
    oauth = page.locator("main a:text('Connect with Intercom')")
    assert oauth.get_attribute("href") == "/intercom/connect"
    assert "published app" in page.locator("main").inner_text()

    connect_workspace(app)  # what a finished connect leaves (tested in test_connect.py)
    page.reload()
    assert "Connected to Example Co workspace" in page.locator("header").inner_text()
    page.click("header a:text('Connected to Example Co workspace')")  # the Intercom page
    screenshot(page, "intercom")
    page.click("main a:text('Disconnect…')")
    page.click("main button:text('Disconnect')")
    assert "Hedwig forgot its token. The app stays installed in Intercom" in page.content()
    assert page.locator("header a:text('Connect with an access token')").count() == 1


def sign_in(page: Any, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:text('Sign in')")
    page.wait_for_url(f"{url}/")


def test_record_feedback_through_the_canvas_preview(
    page: Any, serve: Callable[..., tuple[str, Any]]
) -> None:
    url, app = serve()
    create_first_account(page, url)
    page.click("nav >> text=Canvas preview")
    inbox = page.locator(".inbox")
    assert "Nothing recorded from this conversation yet." in inbox.inner_text()
    page.click(".inbox button:text('Record feedback')")
    assert "No feedback matches yet." in inbox.inner_text()  # find before you create
    page.click(".inbox button:text('New feedback')")
    details = page.locator(".inbox textarea")  # the agent's; the customer's words are kept
    assert details.input_value() == ""
    assert "their message is kept as they wrote it" in details.get_attribute("placeholder")
    page.fill(".inbox input[name='input:title']", "CSV export crashes the reports page")
    screenshot(inbox, "canvas-form")
    page.click(".inbox button:text('Save feedback')")
    assert "saved" in page.locator(".inbox .c-header").inner_text()
    screenshot(page.locator(".inbox"), "canvas-saved")
    with page.context.expect_page() as opened:
        page.locator(".inbox a:text('Open in Hedwig')").click()
    record = opened.value
    record.wait_for_load_state()
    assert record.locator("h1").inner_text() == "CSV export crashes the reports page"
    assert record.locator("blockquote").inner_text() == (
        "Hi! The CSV export button crashes the page every time I click it."
    )
    assert "recorded in Hedwig's canvas preview" in record.content()
    record.close()

    # Another customer, another conversation, the same request: found, and added.
    page.fill("input[name=customer_name]", "Dana Doe")
    page.fill("input[name=customer_email]", "dana@example.com")
    page.fill("input[name=conversation_id]", "1002")
    page.click("button:text('Open this conversation')")
    page.click(".inbox button:text('Record feedback')")
    inbox = page.locator(".inbox")
    match = inbox.locator("button.c-item", has_text="CSV export crashes the reports page")
    assert "1 customer" in match.inner_text()
    screenshot(inbox, "canvas-find")
    match.click()
    page.fill(".inbox textarea", "Our finance team exports every Monday; it crashes each time.")
    screenshot(page.locator(".inbox"), "canvas-add")
    page.click(".inbox button:text('Add Dana Doe')")
    added = page.locator(".inbox .c-header").inner_text()
    assert added == "Dana Doe added to #1 — 2 customers"
    screenshot(page.locator(".inbox"), "canvas-added")
    page.click(".inbox button:text('Done')")
    inbox = page.locator(".inbox")
    assert "CSV export crashes the reports page" in inbox.inner_text()
    assert "2 customers" in inbox.inner_text()
    screenshot(inbox, "canvas-first")

    wait_for_sender(app)  # the sample customers' companies, read after each save
    page.goto(f"{url}/feedback/1")
    assert "2 customers" in page.locator(".record").inner_text()
    assert "a month" in page.locator(".record").inner_text()
    evidence = page.locator(".evidence")
    assert evidence.count() == 2
    assert "Dana Doe" in evidence.nth(0).inner_text()  # newest first
    assert "every Monday" in evidence.nth(0).inner_text()
    screenshot(page, "record")
    page.goto(f"{url}/")
    assert page.locator(".board .badge.preview").count() == 1
    assert page.locator(".board > li").get_attribute("data-weight").startswith("2 customers")
    assert page.locator(".board .demand-block .n").inner_text() == "2"
    screenshot(page, "list")
    page.click("nav >> text=Demand")
    assert page.locator("svg[role=img]").count() == 1
    screenshot(page, "demand")


def test_merge_a_duplicate_and_its_old_link_still_lands(
    page: Any, serve: Callable[..., tuple[str, Any]]
) -> None:
    url, _ = serve()
    create_first_account(page, url)
    add_feedback(page, url, "CSV export", customer_email="a@example.com")
    add_feedback(page, url, "Export to CSV", customer_email="b@example.com")
    assert page.locator("select[name=into]").input_value() == "1"  # offered by its words
    page.click("button:text('Merge…')")
    assert "Merge #2 into #1?" in page.locator("h1").inner_text()
    assert page.locator("[data-merge]").count() == 2  # side by side
    page.click("button:text('Merge into #1')")
    page.wait_for_url(f"{url}/feedback/1")
    assert "2 customers" in page.locator(".record").inner_text()
    page.goto(f"{url}/feedback/2")
    page.wait_for_url(f"{url}/feedback/1")
    page.goto(f"{url}/?q=export")
    assert page.locator(".board > li").count() == 1


def test_change_a_status_and_see_each_conversations_note(
    page: Any, serve: Callable[..., tuple[str, Any]], httpserver: HTTPServer
) -> None:
    url, app = serve(INTERCOM_API_URL=httpserver.url_for("/"), INTERCOM_CLIENT_SECRET="secret-123")
    connect_workspace(app)
    httpserver.expect_request("/conversations/1001/reply", method="POST").respond_with_json({})
    httpserver.expect_request("/conversations/1002/reply", method="POST").respond_with_json(
        {"type": "error.list"}, status=404
    )
    with app.app_context():
        record = Feedback(title="Export to PDF", source="intercom", workspace_id=WORKSPACE_ID)
        db.session.add(record)
        for conversation, name in (("1001", "Casey Customer"), ("1002", "Robin Reader")):
            add_evidence(
                record,
                source="intercom",
                workspace_id=WORKSPACE_ID,
                conversation_id=conversation,
                customer_name=name,
            )
        refresh_backing(record)
        db.session.commit()
        record_url = f"{url}/feedback/{record.id}"
    create_first_account(page, url)
    page.goto(record_url)
    notify = page.locator("input[type=checkbox][name=notify]")
    assert page.locator("select[name=status]").input_value() == "planned"
    assert notify.is_checked()  # planned: the conversations are told by default
    page.select_option("select[name=status]", "in_progress")
    assert not notify.is_checked()
    page.select_option("select[name=status]", "done")
    assert notify.is_checked()
    page.fill("textarea[name=message]", "It ships on Monday.")
    page.click("button:text('Change status')")
    assert "is done now; a note goes to 2 conversations." in page.locator(".flash").inner_text()
    for _ in range(50):  # the sender thread answers within a moment; reload until it has
        if page.locator("[data-note-state=pending], [data-note-state=sending]").count() == 0:
            break
        page.reload()
    assert page.locator("[data-status]").first.inner_text() == "Done"
    notes = page.locator(".notes").inner_text()
    assert "Casey Customer · conversation 1001: sent" in notes
    assert "Robin Reader · conversation 1002: failed: Intercom answered" in notes
    assert "HTTP 404" in notes
    screenshot(page.locator("#status"), "status")
    page.click("button:text('Retry failed')")
    assert "1 note will be sent again." in page.locator(".flash").inner_text()


def test_the_reply_follows_the_status_and_previews_as_the_customer_reads_it(
    page: Any, serve: Callable[..., tuple[str, Any]], httpserver: HTTPServer
) -> None:
    url, app = serve(INTERCOM_API_URL=httpserver.url_for("/"), INTERCOM_CLIENT_SECRET="secret-123")
    connect_workspace(app)
    httpserver.expect_request("/conversations/1001/reply", method="POST").respond_with_json({})
    with app.app_context():
        record = Feedback(title="Export to PDF", source="intercom", workspace_id=WORKSPACE_ID)
        db.session.add(record)
        add_evidence(
            record,
            source="intercom",
            workspace_id=WORKSPACE_ID,
            conversation_id="1001",
            customer_name="Casey Customer",
        )
        refresh_backing(record)
        db.session.commit()
        record_url = f"{url}/feedback/{record.id}"
    create_first_account(page, url)
    page.goto(record_url)
    reply, preview = page.locator("textarea[name=reply_message]"), page.locator(".reply-preview")
    assert "Good news: it is planned." in reply.input_value()
    assert "Hi Casey, thanks again for asking for Export to PDF." in preview.inner_text()
    page.select_option("select[name=status]", "done")
    assert reply.input_value().startswith("Hi {first_name}, {title} is ready for you now.")
    assert "1 customer gets it." in preview.inner_text()
    assert "Hi Casey, Export to PDF is ready for you now." in preview.inner_text()
    reply.fill("Hello {first_name}: {title} shipped.")
    assert "Hello Casey: Export to PDF shipped." in preview.inner_text()
    page.select_option("select[name=status]", "declined")  # edited by hand: the words stay
    assert reply.input_value() == "Hello {first_name}: {title} shipped."
    page.select_option("select[name=status]", "done")
    page.check("input[name=reply]")
    page.click("button:text('Change status')")
    assert "a reply to 1 customer" in page.locator(".flash").inner_text()
    wait_for_sender(app)
    page.reload()
    assert "Replies to the customers: 1 sent" in page.locator("#status").inner_text()


def test_invite_a_teammate_who_joins_as_a_member(
    browser: Any, page: Any, serve: Callable[..., tuple[str, Any]]
) -> None:
    url, _ = serve()
    create_first_account(page, url)
    page.click("nav >> text=Team")
    page.fill("form.invite-form input[name=email]", "grace@example.com")
    page.click("text=Make an invite link")
    link = page.locator("input.link-field").input_value()
    assert link.startswith(f"{url}/invite/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("button[data-copy=new-link]")
    assert page.evaluate("navigator.clipboard.readText()") == link
    screenshot(page, "team")

    newcomer = browser.new_context(viewport={"width": 1100, "height": 760}).new_page()
    newcomer.goto(link)
    assert "ada@example.com invites you" in newcomer.content()
    newcomer.fill("input[name=password]", PASSWORD)
    newcomer.fill("input[name=confirm]", PASSWORD)
    newcomer.click("text=Create my account")
    newcomer.wait_for_url(f"{url}/")
    assert "Welcome to Hedwig, grace@example.com." in newcomer.locator(".flash").inner_text()
    assert newcomer.locator("nav >> text=Team").count() == 0  # a member
    newcomer.context.close()

    page.reload()
    assert "grace@example.com" in page.locator("table.team").inner_text()
    page.goto(link)
    assert "This link has been used already" in page.content()


# --- Pages people like to use: a phone that fits, dark mode, contrast and labels ----------------

PHONE = {"width": 390, "height": 844}


def seeded(app: Any) -> None:
    """What the page checks look at: records with customers and their words, a teammate."""
    connect_workspace(app)
    with app.app_context():
        add_user(EMAIL, PASSWORD)  # the first: an owner
        add_user("grace.hopper.with.a.long.address@example.com", PASSWORD)
        titles = (
            "CSV export crashes the reports page",
            "Export to CSV with totals, subtotals and a title long enough to wrap twice",
            "Dark mode",
        )
        for n, title in enumerate(titles):
            record = Feedback(title=title, description="Night shift.\nThree in the morning.")
            record.source, record.status = "web", ("open", "planned", "done")[n]
            db.session.add(record)
            for m in range(3 - n):
                add_evidence(
                    record,
                    source="web",
                    customer_name=f"Casey Customer {m}",
                    customer_email=f"casey.{m}.with-a-long-address@example.com",
                    quote="TheCSVExportButtonCrashesThePageEveryTimeIClickIt, every time.",
                    importance="blocker" if m == 0 else "important",
                )
            refresh_backing(record)
        told_and_followed(db.session.get(Feedback, 1))
        db.session.commit()


def told_and_followed(record: Feedback) -> None:
    """A customer of the connected workspace behind ``record`` (so its status form offers the
    reply), and an issue it follows (shown on its page and in the list)."""
    add_evidence(
        record,
        source="intercom",
        workspace_id=WORKSPACE_ID,
        conversation_id="1001",
        customer_name="Robin Intercom-Customer",
        customer_email="robin@example.com",
    )
    refresh_backing(record)
    issue = read_issue_url("https://github.com/acme/app/issues/12")
    link_issue(record, issue, None)


PAGES = (
    "/",
    "/?q=export",
    "/feedback/1",
    "/feedback/new",
    "/feedback/1/edit",
    "/feedback/2/merge",
    "/feedback/2/merge?into=1",
    "/feedback/1/delete",
    "/feedback/1/evidence/1/delete",
    "/team",
    "/team/2/remove",
    "/account",
    "/intercom",
    "/intercom/preview",
    "/demand",
    "/replies",
    "/webhooks",
    "/feedback/999",  # an error page
    "/invite/not-a-link",  # a link page, titled for what it is
)


def test_every_page_fits_a_phone_and_the_nav_is_one_row(
    browser: Any, serve: Callable[..., tuple[str, Any]]
) -> None:
    url, app = serve(INTERCOM_CLIENT_SECRET="secret-123")
    seeded(app)
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.goto(f"{url}/login")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    sign_in(page, url)
    for path in PAGES:
        page.goto(f"{url}{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
    page.goto(f"{url}/")
    tops = page.eval_on_selector_all("header nav a", "links => links.map(a => a.offsetTop)")
    assert len(tops) == 8 and len(set(tops)) == 1  # one row, scrolling sideways
    assert page.locator("header").bounding_box()["height"] < 100  # two lines at most
    screenshot(page, "phone-list")
    context.close()


def test_the_dark_scheme_renders_dark(browser: Any, serve: Callable[..., tuple[str, Any]]) -> None:
    url, app = serve()
    seeded(app)
    context = browser.new_context(viewport={"width": 1100, "height": 760}, color_scheme="dark")
    page = context.new_page()
    page.goto(f"{url}/login")
    sign_in(page, url)
    for path, surface in (
        ("/", "body"),
        ("/feedback/1", ".panel"),
        ("/intercom/preview", ".inbox"),
        ("/demand", ".chart"),
    ):
        page.goto(f"{url}{path}")
        background = page.eval_on_selector(surface, "e => getComputedStyle(e).backgroundColor")
        ink = page.eval_on_selector("h1", "e => getComputedStyle(e).color")
        assert luminance(rgba(background)) < 0.05, (path, background)
        assert luminance(rgba(ink)) > 0.6, (path, ink)
    page.goto(f"{url}/")
    screenshot(page, "list-dark")
    page.set_viewport_size(PHONE)
    screenshot(page, "phone-list-dark")
    page.goto(f"{url}/feedback/1")
    screenshot(page, "phone-record-dark")
    context.close()


# The accessibility check is ours, in Python over what Chromium computed, rather than axe-core:
# axe would be a JavaScript file vendored into the repository and its npm updates followed;
# these two rules (WCAG AA contrast, and a name for every control) are the ones the issue asks
# for, and a failure here names the element, its colours and the ratio.
VISIBLE_TEXT = """() => {
  const out = [];
  const visible = (e) => e.getClientRects().length && getComputedStyle(e).visibility === "visible";
  const background = (e) => {
    const layers = [];
    for (let n = e; n; n = n.parentElement) {
      const c = getComputedStyle(n).backgroundColor;
      layers.push(c);
      if (!c.startsWith("rgba") || c.endsWith(", 1)")) break;
    }
    return layers;
  };
  for (const e of document.querySelectorAll("body *")) {
    if (!visible(e) || e.closest("svg, .visually-hidden, [hidden]")) continue;
    const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const field = e.matches("input:not([type=hidden], [type=checkbox], [type=radio])")
      || e.matches("select, textarea");
    if (!own && !field) continue;
    const s = getComputedStyle(e);
    out.push({what: e.outerHTML.slice(0, 80), color: s.color, layers: background(e),
              size: parseFloat(s.fontSize), weight: parseInt(s.fontWeight)});
  }
  return out;
}"""
UNNAMED = """() => [...document.querySelectorAll(
    "input:not([type=hidden]), select, textarea, button, a[href], img")]
  .filter((e) => e.checkVisibility() && !e.closest("[hidden]"))
  .filter((e) => e.matches("img") ? !e.hasAttribute("alt")
    : e.matches("input, select, textarea")
      ? !(e.labels.length || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby"))
      : !(e.innerText.trim() || e.getAttribute("aria-label")))
  .map((e) => e.outerHTML.slice(0, 100))"""


def rgba(css: str) -> tuple[float, ...]:
    numbers = [float(n) for n in css[css.index("(") + 1 : -1].replace("/", ",").split(",")]
    return tuple(numbers) if len(numbers) == 4 else (*numbers, 1.0)


def luminance(color: tuple[float, ...]) -> float:
    channels = [c / 255 for c in color[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def flattened(layers: list[str]) -> tuple[float, ...]:
    """The colour behind an element: its ancestors' backgrounds, the innermost on top."""
    color = (255.0, 255.0, 255.0)
    for layer in reversed(layers):
        *rgb, alpha = rgba(layer)
        color = tuple(a * alpha + b * (1 - alpha) for a, b in zip(rgb, color, strict=True))
    return color


def contrast(one: tuple[float, ...], other: tuple[float, ...]) -> float:
    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def accessibility_problems(page: Any) -> list[str]:
    problems = [f"no name: {html}" for html in page.evaluate(UNNAMED)]
    for text in page.evaluate(VISIBLE_TEXT):
        behind = flattened(text["layers"])
        *ink, alpha = rgba(text["color"])
        ink = [a * alpha + b * (1 - alpha) for a, b in zip(ink, behind, strict=True)]
        large = text["size"] >= 24 or (text["size"] >= 18.66 and text["weight"] >= 700)
        ratio = contrast(tuple(ink), behind)
        if ratio < (3.0 if large else 4.5):
            problems.append(f"contrast {ratio:.2f}: {text['color']} on {behind}: {text['what']}")
    return problems


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_log_record_and_team_pages_have_aa_contrast_and_named_controls(
    browser: Any, serve: Callable[..., tuple[str, Any]], scheme: str
) -> None:
    url, app = serve(INTERCOM_CLIENT_SECRET="secret-123")
    seeded(app)
    with app.app_context():
        db.session.get(Feedback, 1).status = "in_progress"
        db.session.get(Feedback, 3).status = "declined"
        db.session.commit()
    context = browser.new_context(viewport={"width": 1100, "height": 760}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{url}/login")
    sign_in(page, url)
    for path in ("/", "/feedback/1", "/team", "/intercom", "/replies", "/webhooks", "/account"):
        page.goto(f"{url}{path}")
        assert accessibility_problems(page) == [], path
    if scheme == "dark":
        page.goto(f"{url}/feedback/1")
        screenshot(page, "record-dark")
    context.close()


def test_removing_evidence_asks_first_and_cancel_keeps_it(
    page: Any, serve: Callable[..., tuple[str, Any]]
) -> None:
    url, app = serve()
    seeded(app)
    page.goto(f"{url}/login")
    sign_in(page, url)
    page.goto(f"{url}/feedback/2")
    assert page.locator(".evidence").count() == 2
    page.locator(".evidence").first.locator("a:text('Remove…')").click()
    assert page.locator("h1").inner_text().startswith("Remove Casey Customer 1 from #2?")
    page.click("main a:text('Cancel')")
    assert page.locator(".evidence").count() == 2  # nothing lost by one click
    page.locator(".evidence").first.locator("a:text('Remove…')").click()
    page.click("main button:text('Remove')")
    assert "Removed Casey Customer 1." in page.locator(".flash").inner_text()
    assert page.locator(".evidence").count() == 1
    assert "1 customer" in page.locator(".record-meta").inner_text()
