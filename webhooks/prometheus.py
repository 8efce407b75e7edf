"""`GET /metrics`: the Prometheus exposition (text format 0.0.4) of every process of the deployment
(service.telemetry). With METRICS_TOKEN set, a scrape must send `Authorization: Bearer <token>`
(compared in constant time); without it the route is open, like /healthz, for a scraper on a private
network."""
from __future__ import annotations

import hmac
import threading

from flask import Blueprint, Response, current_app, jsonify, request

blueprint = Blueprint("prometheus", __name__)
_lock = threading.Lock()


@blueprint.get("/metrics")
def metrics() -> Response | tuple[Response, int, dict[str, str]]:
    from service import telemetry

    edge = current_app.extensions["webhook_edge"]
    token = edge.settings.metrics_token
    if token is not None and not _bearer_matches(request.headers.get("Authorization", ""), token.get_secret_value()):
        return (jsonify(error="a bearer token is required (METRICS_TOKEN)"), 401,
                {"WWW-Authenticate": 'Bearer realm="metrics"'})
    state = current_app.extensions.get("prometheus_state")
    if state is None:
        with _lock:
            state = current_app.extensions.get("prometheus_state")
            if state is None:
                state = current_app.extensions["prometheus_state"] = telemetry.state_collector_for(edge.settings)
    body, content_type = telemetry.render(state, request.headers.get("Accept", ""))
    return Response(body, content_type=content_type)


def _bearer_matches(header: str, token: str) -> bool:
    scheme, _, given = header.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
