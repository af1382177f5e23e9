"""Hedwig's rooms: one module per step of the tutorial and per shared concern.

Imports run one way, down this list: a module imports from those above it, never from one
below it, and hedwig.py (create_app) imports from any. ``models.py`` beside the package, and
the tables it maps in ``hedwig_schema/``, are below them all: the schema imports nothing from
here, and every module here reads it through ``models.py``.

    settings      the settings, checked; the keys kept in the instance folder
    database      the database, its migrations, tuning and write locks
    plumbing      the marks on public views, headers, error pages, text and URL helpers
    auth          sign-in: accounts, the session, CSRF, the throttle
    records       records and their evidence: validation, backing, merge
    search        the full-text search and the log's list query
    issues        records linked to GitHub, Linear and Jira issues: which issue, link, unlink
    status        statuses, their history, and the notes a change writes
    replies       the replies customers see: their words per status, who gets one, the preview
    intercom      the client for Intercom's REST API
    companies     the customers' companies, read from Intercom after the save
    webhooks_out  outgoing webhooks: endpoints, the deliveries each change writes, their sender
    outbox        the sender of the notes, exactly once, of the company reads and the webhooks
    log           the feedback log's pages and the CSV export
    demand        the demand page: what matters most over a window, rising, charted
    loop          the status form's views, and waking the sender
    webhooks_in   GitHub's and Linear's signed webhooks: issues that move the status
    connect       connecting a workspace (token or OAuth); signing in with Intercom
    canvas_kit    Canvas Kit's components, as pure functions
    canvases      the Inbox app's canvases and the first canvas's lookups
    inbox         Intercom's signed initialize and submit requests
    preview       the canvases in the browser, without Intercom
    team          roles, invites, reset links, your password and API tokens
    hooks_page    the owners' Webhooks page: endpoints, their deliveries, Resend
    openapi       the JSON API's OpenAPI document
    api           the JSON API (/api/v1), its token auth and rate limit
    commands      the flask commands

Transactions have one rule: **the view or command that owns the request commits, in its own
body or in the function that finishes it and returns its answer (``connected()``,
``save_feedback()``); the helpers it calls never do.** Helpers add, change, flush (to get an
id, or to meet a unique key) and may roll back to refuse. A view commits more than once only
where something must be kept before a slow or outside step (a sign-in try is counted before
its password is checked; an OAuth state is spent before its code goes to Intercom), and says
so there. The note sender (outbox.py) and the company reader (companies.py) own their own
transactions: they keep each note's and each read's progress as it happens, so that a crash
never sends a note twice.
"""
