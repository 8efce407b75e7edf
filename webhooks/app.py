"""The Flask edge: `create_app()` wires the vendor webhook routes, /healthz and /readyz.

A delivery is authenticated on its raw body, normalized into a NeutralEvent and handed to an
`integration.intake.EventSink`, which commits it before the route answers 2xx. `POST /webhooks/<vendor>`
is served by `WebhookDispatcher` in front of Flask (the same answers, errors, logs and counters as the
blueprint view, without Flask's per-request machinery); every other request goes to Flask.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable, Iterable

from flask import Flask, Response, jsonify
from pydantic import SecretStr, ValidationError
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request

from connectors.http import Redactor
from integration.intake import EventSink
from service.settings import Settings
from webhooks.admin import register_console
from webhooks import prometheus
from webhooks.delivery import Answer, handle_delivery
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

class WebhookDispatcher:
    """WSGI middleware (the app's `wsgi_app`): `POST /webhooks/<vendor>` goes straight to
    `webhooks.delivery.handle_delivery` on a plain werkzeug request, everything else (other methods and
    paths, /healthz, /readyz, /metrics, /admin) to Flask. Per delivery this skips Flask's request and app
    contexts, URL matching, before/after-request hooks (the webhook routes have none) and response object:
    about a third of the edge's CPU. Answers are byte-identical to the blueprint view's: `jsonify`'s JSON
    (sorted keys, trailing newline), the same status line and headers; an HTTPException is answered as the
    app's handler does, anything else is logged and answered 500 `internal error`."""

    def __init__(self, app: Flask, edge: WebhookEdge, flask_wsgi_app: Callable[..., Iterable[bytes]]):
        self._app = app
        self._edge = edge
        self._flask = flask_wsgi_app
        self._vendors = {f"/webhooks/{vendor}": vendor for vendor in edge.routes}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        vendor = self._vendors.get(environ.get("PATH_INFO", ""))
        if vendor is None or environ.get("REQUEST_METHOD") != "POST":
            return self._flask(environ, start_response)
        edge = self._edge
        try:
            answer = handle_delivery(edge.routes[vendor], Request(environ),
                                     max_body_bytes=edge.settings.webhook_max_body_bytes,
                                     get_sink=edge.get_sink, clock=edge.clock)
        except HTTPException as exc:  # e.g. the client disconnected before its body was read
            answer = Answer(exc.code or 500, {"error": exc.description or exc.name})
        except Exception as exc:  # noqa: BLE001 - as the app's errorhandler(Exception)
            log.exception("unexpected error: %s", type(exc).__name__)
            answer = Answer(500, {"error": "internal error"})
        body = self._json(answer.body)
        start_response(f"{answer.status} {HTTP_STATUS_CODES.get(answer.status, 'unknown').upper()}",
                       [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *answer.headers])
        return [body]

    def _json(self, body: dict[str, Any]) -> bytes:
        """What flask.jsonify(**body) would send."""
        provider = self._app.json
        compact = getattr(provider, "compact", None)
        if (compact is None and self._app.debug) or compact is False:
            text = provider.dumps(body, indent=2, separators=(", ", ": "))
        else:
            text = provider.dumps(body, separators=(",", ":"))
        return f"{text}\n".encode()


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

    app.wsgi_app = WebhookDispatcher(app, edge, app.wsgi_app)  # type: ignore[method-assign]
    return app
