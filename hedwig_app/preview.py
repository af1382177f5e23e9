"""The canvas preview plays Intercom's part in the browser, through the same canvas functions.
Its authority is the signed-in session and the CSRF token, not a signature, so it works with
no Intercom settings at all; its records belong to a workspace of its own. Imports inbox.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shlex
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, abort, current_app, g, render_template, request
from markupsafe import Markup, escape

from hedwig_app.canvas_kit import html_to_text
from hedwig_app.inbox import initialize_canvas, submit_canvas
from hedwig_app.plumbing import external_url
from models import PREVIEW_WORKSPACE_ID

preview = Blueprint("preview", __name__)
SAMPLE = {
    "customer_name": "Casey Customer",
    "customer_email": "casey.customer@example.com",
    "agent_name": "Alex Agent",
    "conversation_id": "1001",
    "message": "<p>Hi! The CSV export button crashes the page every time I click it.</p>",
}


@preview.route("/intercom/preview", methods=["GET", "POST"])
def canvas_preview() -> str:
    sample = {name: request.values.get(name, default) for name, default in SAMPLE.items()}
    if "words" in request.values:  # the form's plain text, sent as Intercom sends HTML
        sample["message"] = words_as_html(request.values["words"])
    payload = preview_payload(sample)
    if request.method == "GET":
        body = initialize_canvas(payload, connected=True)
    else:
        try:
            stored_data = json.loads(request.form.get("stored_data") or "{}")
        except (ValueError, RecursionError):
            abort(400, "The preview's stored data is not JSON.")
        payload |= {
            "component_id": request.form.get("component_id", ""),
            "input_values": {
                name.removeprefix("input:"): value
                for name, value in request.form.items()
                if name.startswith("input:")
            },
            "current_canvas": {"stored_data": stored_data},
        }
        body = submit_canvas(payload, connected=True)
    return render_template(
        "preview.html",
        sample=sample,
        words=request.values.get("words", html_to_text(sample["message"])),
        components=body["canvas"]["content"]["components"],
        stored_data=json.dumps(body["canvas"].get("stored_data", {})),
    )


def words_as_html(words: str) -> str:
    """A customer's plain message as Intercom sends it: a paragraph each, escaped, its lines
    kept as <br>."""
    paragraphs = [part.strip() for part in re.split(r"\n\s*\n", words.replace("\r", ""))]
    return "".join(
        f"<p>{'<br>'.join(str(escape(line)) for line in part.splitlines())}</p>"
        for part in paragraphs
        if part
    )


def preview_payload(sample: Mapping[str, str]) -> dict[str, Any]:
    """A canvas request as Intercom would send it, for a sample conversation in the preview."""
    return sample_canvas_payload(sample, PREVIEW_WORKSPACE_ID, g.user.email)


def sample_canvas_payload(
    sample: Mapping[str, str], workspace_id: str, admin_email: str
) -> dict[str, Any]:
    """A canvas request in the documented shape, for a sample conversation."""
    customer = {
        "type": "contact",
        "id": f"preview-{hashlib.sha256(sample['customer_email'].encode()).hexdigest()[:12]}",
        "name": sample["customer_name"],
        "email": sample["customer_email"],
    }
    return {
        "workspace_id": workspace_id,
        "workspace_region": "us",
        "admin": {
            "type": "admin",
            "id": "preview-agent",
            "name": sample["agent_name"],
            "email": admin_email,
        },
        "conversation": {
            "type": "conversation",
            "id": sample["conversation_id"],
            "source": {"type": "conversation", "body": sample["message"], "author": customer},
        },
        "contact": customer,
        "context": {"location": "conversation"},
    }


@preview.app_template_filter()
def canvas_markdown(value: str) -> Markup:
    """A canvas text's markdown as Intercom documents it: **bold** and [links](https://…);
    everything else is text, a backslash too (Intercom documents no escape)."""
    html = str(escape(value))
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    html = re.sub(
        r"\[([^\]]+?)\]\((https://[^)\s]+)\)",
        r'<a href="\2" target="_blank" rel="noopener noreferrer">\1</a>',
        html,
    )
    return Markup(html)  # noqa: S704


def signed_canvas_request(
    url: str, endpoint: str, workspace_id: str, component: str = "record"
) -> str:
    """A curl command sending a sample canvas request to ``url``, signed as Intercom signs it
    with the client secret (which it does not hold): for `flask canvas-request` and the
    owners' Intercom page. "" without a client secret."""
    secret = current_app.config["INTERCOM_CLIENT_SECRET"]
    if not secret:
        return ""
    payload = sample_canvas_payload(SAMPLE, workspace_id, "alex.agent@example.com")
    if endpoint == "submit":
        payload |= {"component_id": component, "input_values": {}, "current_canvas": {}}
    body = json.dumps(payload)
    signature = hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return (
        f"curl -sS -X POST {url} -H 'Content-Type: application/json' \\\n"
        f"  -H 'X-Body-Signature: {signature}' --data-binary {shlex.quote(body)}"
    )


@preview.app_context_processor
def signed_request_helper() -> dict[str, Any]:
    """The owners' Intercom page shows a signed initialize request for each workspace."""

    def signed_initialize(workspace_id: str) -> str:
        url = external_url("inbox.canvas_initialize")
        return signed_canvas_request(url, "initialize", workspace_id)

    return {"signed_initialize": signed_initialize}
