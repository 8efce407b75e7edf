"""Jira Service Management: the connector and everything else the service uses of the vendor, as one plugin."""
from __future__ import annotations

from connectors.base import VendorPlugin
from connectors.jira import sla
from connectors.jira.connector import build_from_env
from connectors.jira.remote import check_remote
from connectors.jira.settings import JiraSettings
from connectors.jira.webhook_snapshot import snapshot_from_webhook

PLUGIN = VendorPlugin(
    name="jira",
    settings=JiraSettings,
    build=build_from_env,
    snapshot_from_webhook=snapshot_from_webhook,
    check_remote=check_remote,
    sla_plan=sla.plan_from_env,
    sla_check=sla.check_from_env,
)
