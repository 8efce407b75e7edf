"""POST /webhooks/jira"""
from __future__ import annotations

from typing import Callable

from service.settings import Settings
from webhooks.delivery import VendorRoute, vendor_blueprint
from webhooks.jira.payloads import VENDOR, parse_jira
from webhooks.signatures import JiraVerifier

DELIVERY_HEADER = "X-Atlassian-Webhook-Identifier"
NOT_CONFIGURED = "JIRA_WEBHOOK_SECRET or JIRA_SHARED_SECRET is not configured"

blueprint = vendor_blueprint(VENDOR)


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

