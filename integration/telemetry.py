"""The service's Prometheus series (issue 13): one module holds every metric object of the core and the
webhook edge; the vendor series live beside the one status table and retry layer (connectors.telemetry),
the gauges computed at scrape time in service.telemetry, the exposition in webhooks.prometheus.

The metric objects are built on first use, not at import: prometheus_client chooses between in-process
values and the multiprocess files (PROMETHEUS_MULTIPROC_DIR) once, when it is first imported, and the
web server and the worker set that variable at start-up (service.metrics_dir), after their modules
are imported.

Labels are bounded: vendors, levels, clocks, timer kinds and rule ids come from code or the matrix, the
rejection reason is named by the HTTP status, and a decision's free-text reason is cut to its kind.
"""
from __future__ import annotations

import functools
import re
import threading
import time
from datetime import datetime
from typing import Any, Callable, TypeVar

PREFIX = "escalation"
# Pass latency: a pass is one fetch, one decision and up to three writes; vendor calls dominate.
PASS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Timer lateness (fired - due): seconds when healthy, minutes when the worker was down.
LATENESS_BUCKETS = (0.5, 1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# Why a delivery was refused, by the status the edge answered (webhooks.delivery): the message itself is free text.
REJECTION_REASONS = {
    400: "invalid_payload",
    401: "unauthorized",
    403: "unauthorized",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_payload",
    503: "not_configured",
}
_REASON_KIND = re.compile(r"[a-z][a-z0-9_-]*")

F = TypeVar("F", bound=Callable[..., Any])


class _Series:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        # One series per delivery outcome (received = the sum; accepted = result != rejected), so a delivery
        # costs the intake one increment.
        self.webhooks = Counter(
            f"{PREFIX}_webhooks_total",
            "Webhook deliveries received, by vendor and result (accepted, duplicate, ignored: stored and answered "
            "2xx; rejected: refused, with the reason)", ["vendor", "result", "reason"])
        self.pass_seconds = Histogram(
            f"{PREFIX}_pass_duration_seconds",
            "Processing passes (one ticket's events, or one due timer), by trigger and outcome",
            ["trigger", "outcome"], buckets=PASS_BUCKETS)
        self.decisions = Counter(
            f"{PREFIX}_decisions_total",
            "Decisions committed, by vendor, the level entered ('none': no level change), reason kind and dry run",
            ["vendor", "level", "reason", "dry_run"])
        self.clock_alerts = Counter(
            f"{PREFIX}_clock_alerts_total", "SLA clock warnings and breaches fired, by kind, clock and level",
            ["kind", "clock", "level"])
        self.timer_lateness = Histogram(
            f"{PREFIX}_timer_lateness_seconds", "How long after its due time a timer fired, by kind",
            ["kind"], buckets=LATENESS_BUCKETS)
        self.dead_letters = Counter(
            f"{PREFIX}_dead_letters_total", "Events dead-lettered (a permanent error or too many attempts), by vendor",
            ["vendor"])


_series: _Series | None = None
_lock = threading.Lock()


def series() -> _Series:
    global _series
    if _series is None:
        with _lock:
            if _series is None:
                _series = _Series()
    return _series


# ---------------------------------------------------------------------------- webhook intake
# On every delivery: the labelled child is looked up once per label set (a handful of vendors, results and
# reasons), which keeps the intake's cost to one increment.
@functools.lru_cache(maxsize=None)
def _accepted(vendor: str, result: str) -> Any:
    return series().webhooks.labels(vendor, result, "")


@functools.lru_cache(maxsize=None)
def _rejected(vendor: str, status: int | str) -> Any:
    reason = status if isinstance(status, str) else REJECTION_REASONS.get(status, f"http_{status}")
    return series().webhooks.labels(vendor, "rejected", reason)


def webhook_accepted(vendor: str, result: str) -> None:
    """A delivery stored and answered 2xx: `accepted`, `duplicate` or `ignored`."""
    _accepted(vendor, result).inc()


def webhook_rejected(vendor: str, status: int | str) -> None:
    """A delivery refused: `status` is the HTTP status answered, or a reason (`store_unavailable`)."""
    _rejected(vendor, status).inc()


# ---------------------------------------------------------------------------- passes
def timed_pass(trigger: str) -> Callable[[F], F]:
    """Decorates a pass function: its duration and outcome (`result.status`, or the returned string)."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            outcome = "error"
            try:
                result = fn(*args, **kwargs)
                outcome = result if isinstance(result, str) else str(getattr(result, "status", "done"))
                return result
            finally:
                series().pass_seconds.labels(trigger, outcome).observe(time.perf_counter() - started)

        return wrapper  # type: ignore[return-value]

    return decorate


def reason_kind(reason: str | None, rule_id: str | None) -> str:
    """A decision's reason as a bounded label: `rule:<id>`, `breach:<clock>`, or the reason's first word
    ('manual', 'default', ...)."""
    if rule_id:
        # The engine records breaches, the default placement and hand-set levels in rule_id too.
        if rule_id.startswith("breach:") or rule_id in ("default", "manual"):
            return rule_id[:80]
        return f"rule:{rule_id}"[:80]
    text = (reason or "").strip().lower()
    if text.startswith("breach:"):
        words = text[len("breach:"):].split()
        return f"breach:{words[0][:40]}" if words else "breach"
    match = _REASON_KIND.match(text)
    return match.group()[:40] if match else "none"


def decision_committed(decision: Any, dry_run: bool) -> None:
    if decision is None or decision.is_empty:
        return
    series().decisions.labels(decision.vendor, decision.to_level or "none",
                              reason_kind(decision.reason, decision.rule_id), str(bool(dry_run)).lower()).inc()


def timer_fired(kind: str, clock: str | None, level: str | None, due_at: datetime, fired_at: datetime) -> None:
    s = series()
    s.timer_lateness.labels(kind).observe(max((fired_at - due_at).total_seconds(), 0.0))
    if kind in ("warning", "breach"):
        s.clock_alerts.labels(kind, clock or "", level or "").inc()


def dead_lettered(vendor: str, events: int) -> None:
    series().dead_letters.labels(vendor).inc(events)
