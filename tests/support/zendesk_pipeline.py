"""The Zendesk side of the service in one process, for tests that send signed webhooks and run the worker's
pass: a Runtime on SQLite files, the web app on its event store, and a ZendeskConnector against the
in-memory account (`zendesk_pipeline`: its own, every request validated against the Zendesk spec subset).
Used by test_zendesk_e2e, test_calls_seen_events, test_group_change_assigned, test_org_attributes and
test_prometheus."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from connectors.ratelimit import TokenBucket
from connectors.retry import RetryPolicy
from connectors.zendesk.connector import ZendeskConnector
from connectors.zendesk.settings import ZendeskSettings
from integration.store.events import DatabaseEventSink
from service.runtime import Runtime
from service.settings import Settings
from tests.support.zendesk_fake import FakeZendesk, validated_fake_zendesk
from webhooks.app import create_app
from webhooks.signatures import zendesk_signature


def zendesk_runtime(tmp_path: Path, matrix_path: Path, fake: FakeZendesk, *, secret: str, now: datetime,
                    knows_its_user_id: bool = False, **settings: Any) -> tuple[Runtime, Any]:
    """(runtime, Flask test client) on SQLite files in `tmp_path`, its connector talking to `fake`; the web
    app's clock stands at `now`; `settings` are further Settings fields. With `knows_its_user_id` the
    connector is configured with the bot's Zendesk user id (ZENDESK_USER_ID), as a deployment that drops
    echoes of its own writes is. The caller disposes of `runtime.db`."""
    configured = Settings(_env_file=None, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                          QUEUE_URL=f"sqlite:///{tmp_path / 'q.db'}", MATRIX_PATH=str(matrix_path),
                          DRY_RUN=False, ZENDESK_WEBHOOK_SECRET=secret, **settings)

    def connector_factory(vendor: str) -> ZendeskConnector:
        zendesk = ZendeskSettings(_env_file=None, subdomain="acme", email="bot@acme.example",
                                  api_token="pipeline-token",
                                  **({"user_id": str(fake.me["id"])} if knows_its_user_id else {}))
        return ZendeskConnector(zendesk, runtime.matrix().matrix, rate_limiter=TokenBucket(10_000),
                                retry_policy=RetryPolicy(sleep=lambda s: None))

    runtime = Runtime(configured, connector_factory=connector_factory)
    app = create_app(configured, sink=DatabaseEventSink(runtime.db, None), clock=lambda: now)
    return runtime, app.test_client()


@contextmanager
def zendesk_pipeline(tmp_path: Path, matrix_path: Path, *, secret: str, signed_at: datetime,
                     knows_its_user_id: bool = True) -> Iterator[tuple[Runtime, Any, FakeZendesk]]:
    """`zendesk_runtime` with its own validated in-memory account: (runtime, Flask test client, fake)."""
    with validated_fake_zendesk() as fake:
        runtime, client = zendesk_runtime(tmp_path, matrix_path, fake, secret=secret, now=signed_at,
                                          knows_its_user_id=knows_its_user_id)
        try:
            yield runtime, client, fake
        finally:
            runtime.db.dispose()


def signed_headers(secret: str, signed_at: datetime, body: bytes, invocation: str) -> dict[str, str]:
    """The headers Zendesk sends with a webhook signed at `signed_at`."""
    stamp = signed_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"Content-Type": "application/json", "X-Zendesk-Webhook-Invocation-Id": invocation,
            "X-Zendesk-Webhook-Signature": zendesk_signature(secret, stamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": stamp}
