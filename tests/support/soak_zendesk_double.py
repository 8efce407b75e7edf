"""A Zendesk account as a real HTTP server, for the soak (bench/bench_soak.py, tests/test_soak_small.py).

    python -m tests.support.soak_zendesk_double --port 0 --budget 3000 --error-rate 0.02 --rate-limited-rate 0.02

prints `listening on http://127.0.0.1:PORT` once it accepts requests. The worker processes' Zendesk
connectors point at it with ZENDESK_BASE_URL=http://127.0.0.1:PORT (the connector takes any base URL and
mounts its budgeted adapter on http:// too).

The ticket logic is tests/support/zendesk_fake.FakeZendesk's (show with sideloads, comments with cursor
pages and `sort=-created_at`, audits, ticket fields, groups, users/me), driven without `responses`; what
differs is what a real server over minutes needs:
- time is real: each update sets the ticket's `updated_at` (and its comment's `created_at`) to now, at
  least one second after the ticket's previous `updated_at` (Zendesk's stamps have whole seconds, and
  `safe_update` compares them), so SLA clocks run on the wall clock as they would against Zendesk;
- faults at a set rate on API calls: `429` with `Retry-After` and 5xx (`500`/`502`/`503`); half of the
  5xx answers to a `PUT` come *after* the update was stored, as a gateway timeout would, so the client
  cannot know whether it was written;
- a set latency per API call (`--latency-ms`, slept after the answer is decided and outside the double's
  lock, so calls overlap as they do against a real account): a worker then waits on the vendor as it
  would on Zendesk (tens to hundreds of ms a call), which is what more workers buy throughput against;
- the budget is checked as Zendesk would and as `connectors.ratelimit` promises it: every API request
  that arrives (whatever it is answered) counts, and a request that finds `budget` requests already
  arrived in the 60 s before it is *over budget* (counted, and answered 429 like Zendesk's own limit).

Control routes under `/_double/` (create and edit tickets as agents and customers do, read the final
state and the counters) are not API calls: they bypass faults and the budget.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import threading
import time
from collections import Counter, deque
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.zendesk_fake import FakeZendesk, apply_ticket_update

BUDGET_WINDOW_SECONDS = 60.0
BOT_USER_ID = 9000  # tests/fixtures/zendesk_api/users_me.json
AGENT_USER_ID = 2002


class _NoRoutes:
    """Stands in for `responses`: FakeZendesk registers its routes here and this server dispatches them."""

    calls: list = []

    def add_callback(self, *args: Any, **kwargs: Any) -> None:
        pass


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class RealTimeZendesk(FakeZendesk):
    def __init__(self, base: str):
        super().__init__(_NoRoutes(), base=base)
        self.tickets.clear()
        self.comments.clear()
        self._next_comment_id = 100_000

    def _next_stamp(self, ticket: dict) -> str:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        previous = ticket.get("updated_at")
        if previous:
            earliest = datetime.strptime(previous, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) + timedelta(seconds=1)
            now = max(now, earliest)
        return _iso(now)

    def add_comment(self, ticket: dict, author_id: int, body: str, public: bool, created_at: str) -> None:
        self._next_comment_id += 1
        self.comments.setdefault(str(ticket["id"]), []).append({
            "id": self._next_comment_id, "type": "Comment", "author_id": int(author_id), "body": body,
            "public": bool(public), "created_at": created_at})

    # -------------------------------------------------------------- the API's ticket update (PUT)
    def _update_ticket(self, path, query, body):
        ticket = self.tickets.get(self._ticket_id(path))
        if ticket is None:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        data = (body or {}).get("ticket") or {}
        if data.get("safe_update") and data.get("updated_stamp") != ticket["updated_at"]:
            return 409, {"error": "UpdateConflict", "description": "Safe Update prevented the update due to outdated "
                         "ticket data. Please fetch the latest ticket data and try again."}
        before = json.loads(json.dumps(ticket))
        apply_ticket_update(ticket, data)
        stamp = self._next_stamp(ticket)
        comment = data.get("comment")
        if comment:
            self.add_comment(ticket, BOT_USER_ID, comment["body"], comment.get("public", True), stamp)
        ticket["updated_at"] = stamp
        self._audit_update(before, ticket)
        self.writes.append(("PUT", path, body))
        return 200, {"ticket": ticket, "audit": {"id": 90000 + len(self.writes), "ticket_id": ticket["id"]}}

    def _incremental(self, path, query, body):
        # The catch-up scan: nothing is ever missed here (every change comes with its webhook).
        return 200, {"tickets": [], "after_cursor": query.get("cursor") or "soak-cursor", "before_cursor": None,
                     "end_of_stream": True}

    # -------------------------------------------------------------- what people do (control routes)
    def create(self, raw: dict, description: str) -> dict:
        ticket = json.loads(json.dumps(raw))
        ticket.setdefault("tags", [])
        ticket.setdefault("custom_fields", [])
        ticket["updated_at"] = ticket["created_at"] = self._next_stamp({})
        self.tickets[str(ticket["id"])] = ticket
        self.comments[str(ticket["id"])] = []
        self.add_comment(ticket, int(ticket["requester_id"]), description, True, ticket["created_at"])
        return ticket

    def edit(self, ticket_id: str, change: dict) -> dict | None:
        """An edit in Zendesk's UI: `custom_fields`, `additional_tags`, `priority`, `status`, and a
        `comment` {author_id, body, public}; recorded as an audit by its author."""
        ticket = self.tickets.get(str(ticket_id))
        if ticket is None:
            return None
        before = json.loads(json.dumps(ticket))
        apply_ticket_update(ticket, change)
        stamp = self._next_stamp(ticket)
        comment = change.get("comment")
        if comment:
            self.add_comment(ticket, int(comment["author_id"]), comment["body"], comment.get("public", True), stamp)
        ticket["updated_at"] = stamp
        author = int((comment or {}).get("author_id") or AGENT_USER_ID)
        events = []
        if before.get("tags") != ticket.get("tags"):
            events.append({"type": "Change", "field_name": "tags", "value": list(ticket["tags"]),
                           "previous_value": list(before.get("tags") or [])})
        old = {cf["id"]: cf.get("value") for cf in before.get("custom_fields") or []}
        for cf in ticket.get("custom_fields") or []:
            if old.get(cf["id"]) != cf.get("value"):
                events.append({"type": "Change", "field_name": str(cf["id"]), "value": cf.get("value"),
                               "previous_value": old.get(cf["id"])})
        for name in ("priority", "status"):
            if before.get(name) != ticket.get(name):
                events.append({"type": "Change", "field_name": name, "value": ticket.get(name),
                               "previous_value": before.get(name)})
        if events:
            self.add_audit(str(ticket_id), stamp, events, author_id=author)
        return ticket


class Budget:
    """Arrivals of API requests; over budget = a request that finds `limit` others in the 60 s before it."""

    def __init__(self, limit: int, window: float = BUDGET_WINDOW_SECONDS):
        self.limit = limit
        self.window = window
        self.arrivals: deque[float] = deque()
        self.total = 0
        self.over = 0
        self.peak = 0

    def arrive(self, now: float) -> bool:
        while self.arrivals and self.arrivals[0] <= now - self.window:
            self.arrivals.popleft()
        self.arrivals.append(now)
        self.total += 1
        self.peak = max(self.peak, len(self.arrivals))
        if len(self.arrivals) > self.limit:
            self.over += 1
            return False
        return True


ROUTES = [
    ("GET", re.compile(r"^/api/v2/users/me(\.json)?$"), "_me"),
    ("GET", re.compile(r"^/api/v2/users/(\d+)$"), "_show_user"),
    ("GET", re.compile(r"^/api/v2/tickets/(\d+)$"), "_show_ticket"),
    ("PUT", re.compile(r"^/api/v2/tickets/(\d+)$"), "_update_ticket"),
    ("GET", re.compile(r"^/api/v2/tickets/(\d+)/comments$"), "_comments"),
    ("GET", re.compile(r"^/api/v2/tickets/(\d+)/audits$"), "_audits"),
    ("GET", re.compile(r"^/api/v2/ticket_fields$"), "_ticket_fields"),
    ("GET", re.compile(r"^/api/v2/groups$"), "_groups"),
    ("GET", re.compile(r"^/api/v2/incremental/tickets/cursor$"), "_incremental"),
]


def _template(path: str) -> str:
    return re.sub(r"/\d+", "/{id}", path)


class Double:
    def __init__(self, base: str, budget: int, error_rate: float, rate_limited_rate: float, retry_after: int,
                 seed: int):
        self.account = RealTimeZendesk(base)
        self.budget = Budget(budget)
        self.error_rate = error_rate
        self.rate_limited_rate = rate_limited_rate
        self.retry_after = retry_after
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def api(self, method: str, url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            endpoint = f"{method} {_template(path)}"
            self.counts[f"requests {endpoint}"] += 1
            if not self.budget.arrive(time.time()):
                self.counts["429 over budget"] += 1
                return self._answer(429, {"error": "APIRateLimitExceeded", "description": "Rate limit exceeded"},
                                    {"Retry-After": str(self.retry_after)})
            roll = self.random.random()
            if roll < self.rate_limited_rate:
                self.counts["429 served"] += 1
                return self._answer(429, {"error": "APIRateLimitExceeded", "description": "Rate limit exceeded"},
                                    {"Retry-After": str(self.retry_after)})
            fault = roll < self.rate_limited_rate + self.error_rate
            status = self.random.choice((500, 502, 503)) if fault else 0
            stored_then_failed = fault and method == "PUT" and self.random.random() < 0.5
            if fault and not stored_then_failed:
                self.counts["5xx served"] += 1
                return self._answer(status, {"error": "ServerError", "description": "injected by the soak double"})
            for route_method, pattern, handler in ROUTES:
                if route_method == method and pattern.match(path):
                    payload = json.loads(body) if body else None
                    answer, out = getattr(self.account, handler)(path, query, payload)
                    break
            else:
                answer, out = 404, {"error": "InvalidEndpoint", "description": f"{method} {path} is not in the double"}
            self.counts[f"status {answer}"] += 1
            if stored_then_failed:
                self.counts["5xx served"] += 1
                self.counts["5xx after storing"] += 1
                return self._answer(status, {"error": "GatewayTimeout", "description": "stored, then the gateway timed out"})
            return self._answer(answer, out)

    @staticmethod
    def _answer(status: int, payload: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        return status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, \
            (json.dumps(payload).encode() if payload is not None else b"")

    def control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        data = json.loads(body) if body else {}
        with self.lock:
            if method == "POST" and path == "/_double/tickets":
                return self._answer(201, {"ticket": self.account.create(data["ticket"], data["description"])})
            match = re.fullmatch(r"/_double/tickets/(\d+)/edit", path)
            if method == "POST" and match:
                ticket = self.account.edit(match.group(1), data)
                return self._answer(200 if ticket else 404, {"ticket": ticket})
            if method == "POST" and path == "/_double/users":
                for user in data["users"]:
                    self.account.users[str(user["id"])] = user
                return self._answer(200, {"users": len(self.account.users)})
            if method == "GET" and path == "/_double/stats":
                return self._answer(200, self.stats())
            if method == "GET" and path == "/_double/state":
                return self._answer(200, {"tickets": self.account.tickets, "comments": self.account.comments,
                                          "stats": self.stats()})
        return self._answer(404, {"error": "unknown control route"})

    def stats(self) -> dict[str, Any]:
        return {"budget": self.budget.limit, "window_seconds": self.budget.window, "api_requests": self.budget.total,
                "over_budget": self.budget.over, "peak_in_window": self.budget.peak, "counts": dict(self.counts)}


def handler_for(double: Double, latency_seconds: float = 0.0) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.path.startswith("/_double/"):
                status, headers, payload = double.control(self.command, urlsplit(self.path).path, body)
            else:
                status, headers, payload = double.api(self.command, self.path, body)
                if latency_seconds:
                    time.sleep(latency_seconds)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # workers, web checks and the load generator connect at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):  # a killed worker's socket
            super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.soak_zendesk_double", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--budget", type=int, default=3000, help="requests per any 60 s window")
    parser.add_argument("--error-rate", type=float, default=0.02, help="share of API calls answered 5xx")
    parser.add_argument("--rate-limited-rate", type=float, default=0.02, help="share answered 429")
    parser.add_argument("--retry-after", type=int, default=1, help="Retry-After of the 429s, seconds")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="time every API call takes to answer")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    server = _Server((args.host, args.port), BaseHTTPRequestHandler)
    port = server.server_address[1]
    double = Double(f"http://{args.host}:{port}", args.budget, args.error_rate, args.rate_limited_rate,
                    args.retry_after, args.seed)
    server.RequestHandlerClass = handler_for(double, args.latency_ms / 1000.0)
    sys.stdout.write(f"listening on http://{args.host}:{port}\n")
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.2)


if __name__ == "__main__":
    main()
