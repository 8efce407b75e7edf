"""Which connector serves a vendor: the vendor plugin's real one when its credentials are configured,
otherwise the offline stand-in that reads the ticket from the stored webhooks and writes nothing (dry run).

Incomplete vendor credentials raise connectors.base.ConfigurationError (from the plugin's `build`, see
connectors.vendors): the worker and serve build every connector at start, so the process stops with that
message.
"""
from __future__ import annotations

from typing import Any

from connectors.base import Connector
from connectors.ratelimit import shared_redis_url
from integration.simulate import OfflineConnector
from connectors.vendors import plugin
from service.settings import Settings


def build_connector(vendor: str, settings: Settings, matrix: Any, *, db: Any = None) -> Connector:
    """The connector for `vendor`. `matrix` is the current matrix_config.schema.Matrix; `db` (an
    integration.store.db.Database) lets the offline connector read stored webhooks. Raises
    connectors.base.ConfigurationError when the vendor's credentials are set only in part."""
    vendor_plugin = plugin(vendor)
    # The shared request budget lives in Redis, else in this database when it is PostgreSQL (Jira ignores both).
    connector = vendor_plugin.build(matrix, database_url=settings.database_url,
                                    redis_url=shared_redis_url(settings.redis_url, settings.queue_url))
    if connector is not None:
        return connector
    return OfflineConnector(vendor, db, matrix, vendor_plugin.snapshot_from_webhook)


def is_offline(connector: Connector) -> bool:
    """Served by the offline stand-in: nothing can be written, every decision is a dry run."""
    return isinstance(connector, OfflineConnector)
