"""The Flask edge: `create_app()` wires the vendor webhook routes, /healthz and /readyz.

A delivery is authenticated on its raw body, normalized into a NeutralEvent and handed to an
`integration.intake.EventSink`, which commits it before the route answers 2xx.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Callable

from flask import Flask, Response, jsonify
from pydantic import SecretStr, ValidationError
from werkzeug.exceptions import HTTPException

from connectors.http import Redactor
from integration.intake import EventSink
from service.settings import Settings
from webhooks.admin import register_console
from webhooks import prometheus
from webhooks.jira import view as jira_view
from webhooks.signatures import utc_now
from webhooks.zendesk import view as zendesk_view

log = logging.getLogger("webhooks.app")


class ConfigurationError(RuntimeError):
    """Settings from the environment are invalid; the message names each setting and what is wrong
    (never its value, which may be a secret)."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(part) for part in error.get("loc", ())) or "settings"
            problems.append(f"  {name}: {error.get('msg', 'invalid')}")
        raise ConfigurationError("invalid configuration:\n" + "\n".join(problems)) from None


class WebhookEdge:
    """Per-app state the routes share: settings, clock, the vendor routes and the (lazily built) sink."""

    def __init__(self, settings: Settings, sink: EventSink | None, clock: Callable[[], datetime]):
        self.settings = settings
        self.clock = clock
        self.routes = {
            "zendesk": zendesk_view.build_route(settings, clock),
            "jira": jira_view.build_route(settings),
        }
        self._sink = sink
        self._lock = threading.Lock()
        # Remove secret values (every encoding) and URL passwords from text that may reach a response or log.
        self.redact = Redactor(value.get_secret_value() for value in vars(settings).values()
                               if isinstance(value, SecretStr))

    def get_sink(self) -> EventSink:
        # Built on first use so a process starts (and /healthz answers) even while the database is down.
        if self._sink is None:
            with self._lock:
                if self._sink is None:
                    from service.sink import build_event_sink

                    # Building the sink migrates the database; alembic's INFO lines ("Context impl ...",
                    # "Will assume transactional DDL") would otherwise show in every web worker's log.
                    logging.getLogger("alembic").setLevel(logging.WARNING)
                    self._sink = build_event_sink(self.settings)
        return self._sink

def create_app(
    settings: Settings | None = None,
    *,
    sink: EventSink | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Flask:
    """Build the webhook app. `settings` default to the environment (ConfigurationError when invalid);
    `sink` defaults to `service.sink.build_event_sink(settings)`, built on first use; `clock`
    (timezone-aware UTC) is used for the signature window and the received time."""
    settings = settings if settings is not None else load_settings()
    edge = WebhookEdge(settings, sink, clock or utc_now)

    app = Flask("webhooks", static_folder=None)
    app.extensions["webhook_edge"] = edge
    app.register_blueprint(zendesk_view.blueprint)
    app.register_blueprint(jira_view.blueprint)
    app.register_blueprint(prometheus.blueprint)  # GET /metrics
    register_console(app, settings, edge.clock)  # /admin; off (logged) without console credentials

    for vendor, route in edge.routes.items():
        if route.authenticate is None:
            log.warning("%s webhooks are refused with 503: %s", vendor, route.not_configured_message)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        # Anyone may call /readyz: it names checks and generic states; the reasons go to the log.
        try:
            checks = dict(edge.get_sink().health())
        except Exception as exc:  # not ready is an answer, not a crash
            log.warning("readiness: the event sink cannot be built: %s",
                        edge.redact(f"{type(exc).__name__}: {exc}")[:500])
            checks = {"event_sink": "unavailable"}
        # "ok, <note>": working, with something the admin should see (a refused matrix reload, the last good
        # matrix still running: webhooks are still accepted and processed).
        ready = bool(checks) and all(value == "ok" or value.startswith("ok, ") for value in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error: %s", type(exc).__name__)
        return jsonify(error="internal error"), 500

    return app
