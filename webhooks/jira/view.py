"""POST /webhooks/jira"""
from __future__ import annotations

from typing import Callable

from flask import Blueprint, Response, current_app, request

from integration.settings import Settings
from webhooks.delivery import VendorRoute, handle_delivery
from webhooks.jira.payloads import VENDOR, parse_jira
from webhooks.signatures import JiraVerifier

DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"
NOT_CONFIGURED = "JIRA_WEBHOOK_SECRET or JIRA_SHARED_SECRET is not configured"

blueprint = Blueprint("jira_webhooks", __name__)


def build_route(settings: Settings) -> VendorRoute:
    webhook_secret = settings.jira_webhook_secret.get_secret_value() if settings.jira_webhook_secret else ""
    shared_secret = settings.jira_shared_secret.get_secret_value() if settings.jira_shared_secret else ""
    authenticate: Callable | None = None
    if webhook_secret or shared_secret:
        authenticate = JiraVerifier(
            webhook_secret=webhook_secret or None,
            shared_secret_header=settings.jira_shared_secret_header,
            shared_secret=shared_secret or None,
        ).verify
    return VendorRoute(
        vendor=VENDOR,
        delivery_header=DELIVERY_HEADER,
        authenticate=authenticate,
        not_configured_message=NOT_CONFIGURED,
        parse=parse_jira,
    )


@blueprint.post("/webhooks/jira")
def receive() -> Response:
    edge = current_app.extensions["webhook_edge"]
    return handle_delivery(
        edge.routes[VENDOR],
        request,
        max_body_bytes=edge.settings.webhook_max_body_bytes,
        get_sink=edge.get_sink,
        clock=edge.clock,
    )
