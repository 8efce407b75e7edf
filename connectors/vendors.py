"""The vendor catalogue: every helpdesk the service plugs into, by name, each as its plugin object
(connectors.base.VendorPlugin). Code that needs a vendor capability looks it up here, never by module name."""
from __future__ import annotations

from connectors.base import Permanent, VendorPlugin
from connectors.jira import PLUGIN as JIRA
from connectors.zendesk import PLUGIN as ZENDESK

PLUGINS: dict[str, VendorPlugin] = {plugin.name: plugin for plugin in (ZENDESK, JIRA)}


def plugin(vendor: str) -> VendorPlugin:
    """The plugin of `vendor`; Permanent (a dead letter, never retried) for a vendor the service does not know."""
    found = PLUGINS.get(vendor)
    if found is None:
        raise Permanent(f"unknown vendor {vendor!r}: expected one of {', '.join(PLUGINS)}")
    return found
