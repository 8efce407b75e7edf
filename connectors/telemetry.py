"""Vendor API series (issue 13): calls by status, 429s and retries, by vendor and endpoint. Counted once,
where every vendor call passes: the response hook of the one status table (connectors.http.count_responses)
and the one retry layer (connectors.retry). Built on first use, like integration.telemetry (the
connectors may import nothing of the core but its model, so their series live here).

`endpoint` is a route template (`PUT /api/v2/tickets/{id}`), never a raw id, so the number of series stays
bounded by the routes the connectors call, whatever tickets they touch.
"""
from __future__ import annotations

import re
import threading
from urllib.parse import urlsplit

PREFIX = "escalation"
_LITERAL = re.compile(r"[A-Za-z_][A-Za-z_-]*(\.json)?")
_VERSION = re.compile(r"v\d+")


def endpoint_template(method: str, path_or_url: str) -> str:
    """`PUT /api/v2/tickets/{id}` for `PUT https://acme.zendesk.com/api/v2/tickets/5158?x=1`: a path segment
    that is not a plain word (a ticket id, a Jira issue key, customfield_10010, a uuid) becomes `{id}`;
    API versions (`/api/3/`, `/v2/`) stay."""
    path = urlsplit(path_or_url).path or "/"
    segments = []
    previous = ""
    for segment in path.split("/"):
        if not segment or _LITERAL.fullmatch(segment) or _VERSION.fullmatch(segment) or (
                previous == "api" and segment.isdigit()):
            segments.append(segment)
        else:
            segments.append("{id}.json" if segment.endswith(".json") else "{id}")
        previous = segment
    return f"{method.upper()} {'/'.join(segments)}"


class _Series:
    def __init__(self) -> None:
        from prometheus_client import Counter

        self.calls = Counter(f"{PREFIX}_vendor_api_calls_total",
                             "Vendor API responses, by vendor, endpoint and status class (2xx, 4xx, 429, 5xx)",
                             ["vendor", "endpoint", "status"])
        self.rate_limited = Counter(f"{PREFIX}_vendor_api_rate_limited_total",
                                    "Vendor API 429 answers (and 503 with Retry-After), by vendor and endpoint",
                                    ["vendor", "endpoint"])
        self.retries = Counter(f"{PREFIX}_vendor_api_retries_total",
                               "Vendor API calls repeated by the retry layer, by vendor and endpoint",
                               ["vendor", "endpoint"])


_series: _Series | None = None
_lock = threading.Lock()


def series() -> _Series:
    global _series
    if _series is None:
        with _lock:
            if _series is None:
                _series = _Series()
    return _series


def vendor_response(vendor: str, method: str, url: str, status: int, rate_limited: bool) -> None:
    endpoint = endpoint_template(method, url)
    s = series()
    s.calls.labels(vendor, endpoint, "429" if status == 429 else f"{status // 100}xx").inc()
    if rate_limited:
        s.rate_limited.labels(vendor, endpoint).inc()


def vendor_retry(vendor: str, method: str, path: str) -> None:
    series().retries.labels(vendor, endpoint_template(method, path)).inc()
