"""The Webhooks settings page (owners only): add an endpoint (its signing secret shown once,
in the answer to the add, never in a URL or the session), enable or disable it, delete it, and
see its recent deliveries, each with Resend. Imports auth, outbox (waking the sender) and
webhooks_out.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import select

from hedwig_app.auth import owners_only
from hedwig_app.outbox import wake_sender
from hedwig_app.plumbing import form_text
from hedwig_app.webhooks_out import add_endpoint, recent_deliveries, resend
from models import (
    WEBHOOK_EVENTS,
    WEBHOOK_URL_MAX,
    OutgoingDelivery,
    WebhookEndpoint,
    db,
)

webhooks_page = Blueprint("webhooks", __name__)


@webhooks_page.get("/webhooks")
@owners_only
def settings() -> str:
    return show_settings()


def show_settings(
    values: dict[str, Any] | None = None, error: str = "", secret: str = "", status: int = 200
) -> Any:
    """The page: every endpoint with its recent deliveries, and the form to add one."""
    endpoints = db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()
    values = values or {"url": "", "events": list(WEBHOOK_EVENTS), "enabled": True}
    page = render_template(
        "webhooks.html",
        endpoints=[(endpoint, recent_deliveries(endpoint.id)) for endpoint in endpoints],
        events=WEBHOOK_EVENTS,
        values=values,
        error=error,
        secret=secret,
        url_max=WEBHOOK_URL_MAX,
    )
    return page, status


@webhooks_page.post("/webhooks")
@owners_only
def add() -> Any:
    """Add an endpoint; the answer is the page with its secret, the one time it is shown."""
    values = {
        "url": form_text("url", WEBHOOK_URL_MAX + 1),
        "events": request.form.getlist("events"),
        "enabled": request.form.get("enabled") == "on",
    }
    try:
        endpoint, secret = add_endpoint(
            values["url"], values["events"], values["enabled"], g.user.id
        )
    except ValueError as refused:
        db.session.rollback()
        return show_settings(values, str(refused), status=400)
    db.session.commit()
    flash(f"Webhook #{endpoint.id} added. Copy its signing secret now: it is not shown again.")
    return show_settings(secret=secret)


def owned_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        abort(404, "No such webhook.")
    return endpoint


@webhooks_page.post("/webhooks/<id:endpoint_id>/enabled")
@owners_only
def set_enabled(endpoint_id: int) -> Any:
    endpoint = owned_endpoint(endpoint_id)
    endpoint.enabled = request.form.get("enabled") == "on"
    db.session.commit()
    flash(f"Webhook #{endpoint_id} is {'enabled' if endpoint.enabled else 'disabled'}.")
    return redirect(url_for("webhooks.settings"))


@webhooks_page.post("/webhooks/<id:endpoint_id>/delete")
@owners_only
def delete(endpoint_id: int) -> Any:
    """The endpoint and its deliveries go; one being sent at this moment may still arrive."""
    db.session.delete(owned_endpoint(endpoint_id))
    db.session.commit()
    flash(f"Webhook #{endpoint_id} deleted.")
    return redirect(url_for("webhooks.settings"))


@webhooks_page.post("/webhooks/deliveries/<id:delivery_id>/resend")
@owners_only
def resend_delivery(delivery_id: int) -> Any:
    """Send it again now, with its id: a receiver that was fixed gets what it missed."""
    delivery = db.session.get(OutgoingDelivery, delivery_id)
    if delivery is None:
        abort(404, "No such delivery.")
    resend(delivery)
    db.session.commit()
    wake_sender()
    flash(f"Delivery {delivery.delivery_id} will be sent again now.")
    return redirect(url_for("webhooks.settings"))
