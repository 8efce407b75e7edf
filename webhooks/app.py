"""The Flask edge: `create_app()` wires the vendor webhook routes, /healthz and /readyz.

A delivery is authenticated on its raw body, normalized into a NeutralEvent and handed to an
`integration.intake.EventSink`, which commits it before the route answers 2xx.
"""
from __future__ import annotations

import logging
import re
import threading
from datetime import datetime
from typing import Callable

from flask import Flask, Response, jsonify
from pydantic import SecretStr, ValidationError
from werkzeug.exceptions import HTTPException

from integration.intake import EventSink
from service.settings import Settings, redact_url
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

    def redact(self, text: str) -> str:
        """Remove secret values and URL passwords from text that may end up in a response or log."""
        for value in vars(self.settings).values():
            if isinstance(value, SecretStr) and value.get_secret_value():
                text = text.replace(value.get_secret_value(), "***")
        return _URL_IN_TEXT.sub(_redact_url_match, text)


# A URL inside free text (an exception message): up to the next whitespace; punctuation that ends the
# sentence rather than the URL is peeled off and put back after redact_url has masked the URL.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_SENTENCE_PUNCTUATION = ".,;:!?)]}>'\""


def _redact_url_match(match: re.Match[str]) -> str:
    found = match.group()
    url = found.rstrip(_SENTENCE_PUNCTUATION)
    return redact_url(url) + found[len(url):]


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
        ready = bool(checks) and all(value == "ok" for value in checks.values())
        return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify(error=exc.description or exc.name), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error: %s", type(exc).__name__)
        return jsonify(error="internal error"), 500

    return app
