"""POST /webhooks/zendesk"""
from __future__ import annotations

from typing import Callable

from flask import Blueprint, Response, current_app, request

from integration.settings import Settings
from webhooks.delivery import VendorRoute, handle_delivery
from webhooks.signatures import Clock, ZendeskSignatureVerifier
from webhooks.zendesk.payloads import VENDOR, parse_zendesk

DELIVERY_HEADER = "X-Zendesk-Webhook-Invocation-Id"
NOT_CONFIGURED = "ZENDESK_WEBHOOK_SECRET is not configured"

blueprint = Blueprint("zendesk_webhooks", __name__)


def build_route(settings: Settings, clock: Clock) -> VendorRoute:
    secret = settings.zendesk_webhook_secret.get_secret_value() if settings.zendesk_webhook_secret else ""
    authenticate: Callable | None = None
    if secret:
        authenticate = ZendeskSignatureVerifier(
            secret, max_age_seconds=settings.webhook_max_age_seconds, clock=clock
        ).verify
    return VendorRoute(
        vendor=VENDOR,
        delivery_header=DELIVERY_HEADER,
        authenticate=authenticate,
        not_configured_message=NOT_CONFIGURED,
        parse=parse_zendesk,
    )


@blueprint.post("/webhooks/zendesk")
def receive() -> Response:
    edge = current_app.extensions["webhook_edge"]
    return handle_delivery(
        edge.routes[VENDOR],
        request,
        max_body_bytes=edge.settings.webhook_max_body_bytes,
        get_sink=edge.get_sink,
        clock=edge.clock,
    )
