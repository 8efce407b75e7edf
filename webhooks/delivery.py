"""The part of every webhook route that does not depend on the vendor: limits, content type, reading the
raw body, authentication, parsing, handing the event to the sink, the answer and the log line.

`handle_delivery` takes a werkzeug request and returns an `Answer` (status, JSON body, extra headers). The
app serves it through `webhooks.app.WebhookDispatcher`, in front of Flask (no request context, URL
matching or response object per delivery); the blueprint view below answers the same for an app that
mounts the blueprint without the dispatcher."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from flask import Blueprint, Response, current_app, jsonify, request as current_request
from werkzeug.wrappers import Request

from integration import telemetry
from integration.intake import EventSink, UnstorableEvent
from integration.model import NeutralEvent
from webhooks.errors import PayloadError, Rejected
from webhooks.parsing import MAX_ID_LENGTH, decode_json_object, storable_text

log = logging.getLogger("webhooks.delivery")

READ_CHUNK = 64 * 1024
# Asked of the vendor when the event store cannot commit: Zendesk and Jira retry 503s.
STORE_RETRY_AFTER_SECONDS = 10


class SinkUnavailable(Exception):
    """The event sink could not be built or could not commit: answer 503 so the vendor retries."""


@dataclass(frozen=True)
class VendorRoute:
    vendor: str
    delivery_header: str
    # None when no secret is configured; the message says which setting is missing.
    authenticate: Callable[[Mapping[str, str], bytes], Any] | None
    not_configured_message: str
    parse: Callable[[dict[str, Any], str | None], NeutralEvent]


@dataclass(frozen=True)
class Answer:
    """What a delivery is answered: the status, the JSON body and any extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


def vendor_blueprint(vendor: str) -> Blueprint:
    """The blueprint with `POST /webhooks/<vendor>` (endpoint `<vendor>_webhooks.receive`)."""
    blueprint = Blueprint(f"{vendor}_webhooks", __name__)

    @blueprint.post(f"/webhooks/{vendor}")
    def receive() -> Response:
        return receive_delivery(vendor)

    return blueprint


def receive_delivery(vendor: str) -> Response:
    """The body of every vendor's webhook view: handle Flask's current request with `vendor`'s route and the
    limits, sink and clock of the app's `webhooks.app.WebhookEdge`."""
    edge = current_app.extensions["webhook_edge"]
    answer = handle_delivery(
        edge.routes[vendor],
        current_request,
        max_body_bytes=edge.settings.webhook_max_body_bytes,
        get_sink=edge.get_sink,
        clock=edge.clock,
    )
    response = jsonify(answer.body)
    response.status_code = answer.status
    response.headers.extend(answer.headers)
    return response


def handle_delivery(
    route: VendorRoute,
    request: Request,
    *,
    max_body_bytes: int,
    get_sink: Callable[[], EventSink],
    clock: Callable[[], datetime],
) -> Answer:
    event: NeutralEvent | None = None
    try:
        if route.authenticate is None:
            raise Rejected(route.not_configured_message, 503)
        body = _read_body(request, max_body_bytes)
        route.authenticate(request.headers, body)
        payload = decode_json_object(body)
        delivery_id = (request.headers.get(route.delivery_header) or "").strip() or None
        if delivery_id is not None:
            storable_text(delivery_id, route.delivery_header)
        event = route.parse(payload, delivery_id)
        _check_storable(event)
        try:
            sink = get_sink()
            result = sink.accept(event, body, clock())
        except UnstorableEvent as exc:
            # The store refused a value (not an outage): a retry can never succeed, so no 503.
            raise PayloadError(f"delivery cannot be stored: {exc}") from None
        except Exception as exc:  # the store failing must not look like the vendor's fault
            log.error(
                "delivery vendor=%s event=%s ticket=%s delivery=%s result=store-error status=503 error=%s",
                route.vendor, event.event_type, event.ticket_id, event.delivery_id, type(exc).__name__,
            )
            telemetry.webhook_rejected(route.vendor, "store_unavailable")
            return Answer(503, {"error": "event store unavailable, retry later"},
                          (("Retry-After", str(STORE_RETRY_AFTER_SECONDS)),))
    except Rejected as rejection:
        telemetry.webhook_rejected(route.vendor, rejection.status)
        log.warning(
            "delivery vendor=%s event=%s ticket=%s delivery=%s result=rejected status=%d reason=%s",
            route.vendor,
            event.event_type if event else "-",
            event.ticket_id if event else "-",
            (request.headers.get(route.delivery_header) or "-")[:100],
            rejection.status,
            rejection.message,
        )
        return Answer(rejection.status, {"error": rejection.message})

    if result.duplicate:
        status_text, code = "duplicate", 200
    elif not event.handled:
        status_text, code = "ignored", 200
    else:
        status_text, code = "accepted", 202
    telemetry.webhook_accepted(route.vendor, status_text)
    log.info(
        "delivery vendor=%s event=%s ticket=%s delivery=%s actor=%s result=%s status=%d event_id=%s",
        route.vendor, event.event_type, event.ticket_id, event.delivery_id, event.actor_id,
        status_text, code, result.event_id,
    )
    return Answer(code, {"status": status_text, "event_id": result.event_id})


def _check_storable(event: NeutralEvent) -> None:
    """Whatever a vendor parser let through, the event's text columns must fit the event store; the
    parsers name the body's path first, this names the event's field as a last line."""
    storable_text(event.ticket_id, "ticket id", MAX_ID_LENGTH)
    storable_text(event.event_type, "event type")
    if event.actor_id is not None:
        storable_text(event.actor_id, "actor id", MAX_ID_LENGTH)


def _read_body(request: Request, max_body_bytes: int) -> bytes:
    too_large = Rejected(f"body exceeds the {max_body_bytes}-byte limit (WEBHOOK_MAX_BODY_BYTES)", 413)
    if request.content_length is not None and request.content_length > max_body_bytes:
        raise too_large
    if request.mimetype != "application/json":
        raise Rejected("Content-Type must be application/json", 415)
    # Content-Length may be absent (chunked) or wrong: count what is actually read, never more than limit+1.
    stream = request.stream
    chunks: list[bytes] = []
    received = 0
    while True:
        chunk = stream.read(min(READ_CHUNK, max_body_bytes + 1 - received))
        if not chunk:
            break
        chunks.append(chunk)
        received += len(chunk)
        if received > max_body_bytes:
            raise too_large
    return b"".join(chunks)
