"""Hedwig: a self-hosted feedback log for teams that support their customers in Intercom.

This file is the map; the rooms are in the package ``hedwig_app/``. Read the tutorial in this
order, a module a step (each opens with a docstring saying what it owns):

1. The app: ``create_app()`` below puts the steps together.
2. Sign-in (``auth.py``): accounts, the session, the CSRF token, the sign-in throttle.
3. The feedback log: what a record is and how evidence backs it (``records.py``), finding
   records by their words (``search.py``), and the pages that list, show, add and export them
   (``log.py``); what matters most now, over a window: ranked, rising and charted
   (``demand.py``).
4. Connect with Intercom: its REST API, called safely (``intercom.py``), and connecting a
   workspace with a private app's token or OAuth, or signing in with Intercom (``connect.py``).
5. The Inbox app: Canvas Kit's components (``canvas_kit.py``), the canvases an agent sees
   (``canvases.py``), Intercom's signed initialize and submit requests (``inbox.py``), and the
   same canvases in the browser without Intercom (``preview.py``).
6. Closing the loop: a status on every record and the notes it writes (``status.py``), sent
   to each conversation exactly once (``outbox.py``), from the record's page (``loop.py``).
   Telling the customer and following the work: replies they see (``replies.py``), the issues
   a record follows (``issues.py``), and GitHub's and Linear's webhooks that move the status
   (``webhooks_in.py``). Telling other tools: outgoing webhooks, signed and sent once each
   (``webhooks_out.py``), added on the owners' Webhooks page (``hooks_page.py``).
   Demand that weighs: each customer's company and what it pays, read from Intercom after
   the save by the same sender (``companies.py``).
7. A team: roles, invites, reset links and passwords (``team.py``).
8. The command line (``commands.py``).
9. Plumbing: settings (``settings.py``), the database and its migrations (``database.py``),
   headers, error pages and the marks on public views (``plumbing.py``). Skip it on a first
   read.

Imports run one way, from plumbing up to this file: a module imports only those listed
before it in ``hedwig_app/__init__.py``. The rule for transactions is written there too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from hedwig_app.api import api
from hedwig_app.auth import auth
from hedwig_app.commands import COMMANDS
from hedwig_app.connect import connect
from hedwig_app.database import init_database
from hedwig_app.demand import demand
from hedwig_app.hooks_page import webhooks_page
from hedwig_app.inbox import inbox
from hedwig_app.log import feedback_log
from hedwig_app.loop import loop
from hedwig_app.plumbing import install_plumbing
from hedwig_app.preview import preview
from hedwig_app.settings import load_settings, load_token_cipher, make_private_folder
from hedwig_app.team import team
from hedwig_app.webhooks_in import webhooks_in

BLUEPRINTS = (
    auth,
    feedback_log,
    demand,
    connect,
    inbox,
    preview,
    loop,
    webhooks_in,
    team,
    webhooks_page,
    api,
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build Hedwig: its settings (defaults, then HEDWIG_* environment variables, then
    ``config``), its database, and each step of the tutorial as a blueprint."""
    config = dict(config or {})
    instance_path = config.pop("INSTANCE_PATH", None) or os.environ.get("HEDWIG_INSTANCE_PATH")
    app = Flask(
        __name__,
        instance_path=os.path.abspath(instance_path) if instance_path else None,
        instance_relative_config=True,
    )
    make_private_folder(Path(app.instance_path))
    load_settings(app, config)
    init_database(app)
    app.extensions["hedwig_token_cipher"] = load_token_cipher(app)

    install_plumbing(app)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    for command in COMMANDS:
        app.cli.add_command(command)
    return app
