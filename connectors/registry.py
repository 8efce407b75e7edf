"""Which connector serves a vendor: the real one when its credentials are configured, otherwise an
offline stand-in that reads the ticket from the latest stored webhook and writes nothing (dry run).

`ESCALATION_TEST_CONNECTOR=module:factory` replaces both (tests, the end-to-end process test): the
factory is called as `factory(vendor, settings, matrix)` and must return a Connector.
"""
from __future__ import annotations

import importlib
import json
import logging
import os
from typing import Any, Callable, Iterator

from connectors.base import ApplyResult, Connector, Permanent
from integration.model import Decision, Ticket
from integration.settings import Settings

log = logging.getLogger(__name__)

VENDOR_MODULES = {"zendesk": "connectors.zendesk", "jira": "connectors.jira_sm"}
TEST_CONNECTOR_ENV = "ESCALATION_TEST_CONNECTOR"


def _vendor_module(vendor: str) -> Any | None:
    name = VENDOR_MODULES.get(vendor)
    if name is None:
        raise Permanent(f"unknown vendor {vendor!r}: expected one of {', '.join(VENDOR_MODULES)}")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        return None


def _load_factory(spec: str) -> Callable[..., Connector]:
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{TEST_CONNECTOR_ENV} must look like module:factory, got {spec!r}")
    return getattr(importlib.import_module(module_name), attribute)


def build_connector(vendor: str, settings: Settings, matrix: Any, *, db: Any = None) -> Connector:
    """The connector for `vendor`. `matrix` is the current matrix_config.schema.Matrix; `db` (an
    integration.db.Database) lets the offline connector read stored webhooks."""
    test_factory = os.environ.get(TEST_CONNECTOR_ENV)
    if test_factory:
        return _load_factory(test_factory)(vendor, settings, matrix)
    module = _vendor_module(vendor)
    build = getattr(module, "build_from_env", None) if module is not None else None
    if build is not None:
        connector = build(matrix)
        if connector is not None:
            return connector
    snapshot = getattr(module, "snapshot_from_webhook", None) if module is not None else None
    return OfflineConnector(vendor, db, matrix, snapshot)


def is_offline(connector: Connector) -> bool:
    return isinstance(connector, OfflineConnector)


class OfflineConnector:
    """No vendor credentials: tickets come from the latest stored webhook payload, nothing is written."""

    def __init__(self, vendor: str, db: Any, matrix: Any, snapshot: Callable[[dict, Any], Ticket | None] | None):
        self.vendor = vendor
        self.db = db
        self.matrix = matrix
        self.snapshot = snapshot

    def fetch_ticket(self, ticket_id: str) -> Ticket:
        payload = self._latest_payload(ticket_id)
        if payload is not None and self.snapshot is not None:
            try:
                ticket = self.snapshot(payload, self.matrix)
            except Exception:  # noqa: BLE001 - a best-effort snapshot; fall back to the bare ticket
                log.warning("could not build a %s ticket from its webhook payload", self.vendor, exc_info=True)
                ticket = None
            if ticket is not None:
                return ticket
        return Ticket(vendor=self.vendor, id=str(ticket_id))

    def _latest_payload(self, ticket_id: str) -> dict | None:
        if self.db is None:
            return None
        from sqlalchemy import select

        from integration.db import EventRow

        with self.db.session() as session:
            payloads = session.scalars(
                select(EventRow.payload)
                .where(EventRow.vendor == self.vendor, EventRow.ticket_id == str(ticket_id))
                .order_by(EventRow.id.desc())
                .limit(20)
            )
            for raw in payloads:
                try:
                    data = json.loads(raw)
                except (ValueError, TypeError):
                    continue
                if isinstance(data, dict) and "hint" not in data:
                    return data
        return None

    def apply(self, ticket: Ticket, decision: Decision) -> ApplyResult:
        return ApplyResult(writes=0, dry_run=True)

    def own_user_id(self) -> str | None:
        return None

    def changed_since(self, watermark: str | None) -> Iterator[tuple[str, str]]:
        return iter(())
