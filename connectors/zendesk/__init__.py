"""Zendesk Support: the connector and everything else the service uses of the vendor, as one plugin."""
from __future__ import annotations

from connectors.base import VendorPlugin
from connectors.zendesk import sla
from connectors.zendesk.connector import build_from_env
from connectors.zendesk.remote import check_remote
from connectors.zendesk.settings import ZendeskSettings
from connectors.zendesk.webhook_snapshot import snapshot_from_webhook

PLUGIN = VendorPlugin(
    name="zendesk",
    settings=ZendeskSettings,
    build=build_from_env,
    snapshot_from_webhook=snapshot_from_webhook,
    check_remote=check_remote,
    sla_plan=sla.plan_from_env,
    sla_apply=sla.apply_from_env,
    sla_sync=sla.sync_from_env,
)
