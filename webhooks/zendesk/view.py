"""POST /webhooks/zendesk"""
from __future__ import annotations

from typing import Callable

from service.settings import Settings
from webhooks.delivery import VendorRoute, vendor_blueprint
from webhooks.signatures import Clock, ZendeskSignatureVerifier
from webhooks.zendesk.payloads import VENDOR, parse_zendesk

DELIVERY_HEADER = "X-Zendesk-Webhook-Invocation-Id"
NOT_CONFIGURED = "ZENDESK_WEBHOOK_SECRET is not configured"

blueprint = vendor_blueprint(VENDOR)


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

