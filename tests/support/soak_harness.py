"""The soak: the product's processes on PostgreSQL + Redis against a Zendesk double over HTTP, with workers
killed at random, and the three things that must hold afterwards. Used by bench/bench_soak.py (10,000 events,
2 web + 4 workers, scaling 1/2/4) and tests/test_soak_small.py (a CI-sized run).

One run (`run_soak`):
1. a fresh PostgreSQL schema (`search_path` in DATABASE_URL, as the PostgreSQL tests do) and a Redis
   database of its own (flushed before and after: the huey queue and the shared request budget live there,
   QUEUE_URL=redis://.../N, so the budget is shared through that Redis like in production);
2. the Zendesk double in its own process (tests/support/soak_zendesk_double.py), answering 429 with
   Retry-After and 5xx at the set rates and counting arrivals against the budget;
3. `escalation migrate`, then `webs` x `python -m webhooks.server` (the Procfile's web line, one process
   each, on their own ports: instances behind a load balancer) and `workers` x `escalation worker`;
4. the load: every ticket follows a scenario (created, then agents and customers edit it: data filled in,
   tags, comments, a priority raised to urgent, status pending/open); each step edits the ticket in the
   double first (the API is the truth) and then delivers the signed Zendesk event webhook, round-robin over
   the web processes, from `senders` threads (a ticket's steps in order). About 2 % of deliveries are sent
   twice (the redelivery must be answered 200 duplicate);
5. a killer SIGKILLs a random worker (its process group) every ~`kill_every` seconds and restarts it;
6. done when every accepted event is done (or dead) and no decision is between its intent and its commit.

Invariants (`SoakResult.failures()`):
- lost: an accepted event (202) whose row is not `done`, or a ticket whose final level tag, priority or group
  in the double is not what `integration.engine.decide` gives for the ticket's final state (what agents
  and customers left it at) from scratch, nor the level in `ticket_state`. Scenarios only ever raise the
  level (data filled in, a rule that reaches higher), so the outcome does not depend on which intermediate
  states a pass saw; the plan checks that each scenario reaches the level it is meant to.
- duplicate customer messages: a public comment by the integration user repeated on a ticket (same template
  and decision: same text).
- over budget: an API request that arrived when `budget` others had arrived in the 60 s before it (the
  double's count; the service's ZENDESK_REQUESTS_PER_MINUTE is the same number).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import requests

from tests.support.fake_connector import postgres_schema_url
from tests.support.zendesk_fake import apply_ticket_update

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SECRET = "soak-webhook-secret"
EMAIL = "escalation-bot@acme.example"
TOKEN = "soak-T0ken-0123456789"
BOT_USER_ID = 9000
AGENT_USER_ID = 2002
ENTERPRISE_MATRIX = REPO_ROOT / "matrix_config" / "examples" / "enterprise.yaml"

ISSUE_TYPE, IMPACT, ACCOUNT_ID, ENVIRONMENT, RECENT_CHANGES, AFFECTED_USERS = (
    360000100001, 360000100002, 360000100003, 360000100004, 360000100005, 360000100006)
REQUESTERS = [{"id": 5000 + n, "name": f"Customer {n}", "email": f"customer{n}@example.com", "role": "end-user"}
              for n in range(50)]
ENV_PREFIXES = ("ZENDESK_", "JIRA_", "DATABASE_URL", "QUEUE_URL", "REDIS_URL", "MATRIX_", "DRY_RUN", "WEB_",
                "WORKER_", "LEASE_", "RECONCILE_", "SCAN_", "SLA_SYNC", "PROMETHEUS_", "METRICS_TOKEN", "ADMIN_",
                "VIEWER_", "OIDC_", "LOG_LEVEL", "MAX_ATTEMPTS", "SHUTDOWN_", "PORT")


@dataclass
class SoakConfig:
    postgres_url: str  # a database to create the run's schema in
    redis_url: str  # redis://host:port/N: database N is the run's own (flushed)
    events: int = 10_000
    tickets: int = 2_000
    webs: int = 2
    workers: int = 4
    worker_concurrency: int = 2
    kill_every: float = 20.0  # seconds between SIGKILLs (jittered); 0 = never
    max_kills: int | None = None
    error_rate: float = 0.02
    rate_limited_rate: float = 0.02
    vendor_latency_ms: float = 0.0  # each API call's answer time at the double
    budget: int = 3000
    senders: int = 8
    redelivery_rate: float = 0.02
    lease_seconds: int = 6
    # The product's default. The reconciler re-enqueues every ticket whose events waited longer than 10 s on
    # each pass, queued already or not: at 2 s with a backlog, 10,000 events left 165,000 hints in the queue.
    reconcile_interval: int = 30
    timeout: float = 600.0
    seed: int = 1
    matrix_path: Path = ENTERPRISE_MATRIX
    keep_logs: bool = False
    progress: Callable[[str], None] | None = None


@dataclass
class SoakResult:
    config: SoakConfig
    accepted: int = 0
    redeliveries: int = 0
    refused: Counter = field(default_factory=Counter)
    send_seconds: float = 0.0
    total_seconds: float = 0.0
    event_statuses: dict[str, int] = field(default_factory=dict)
    lost_events: list[str] = field(default_factory=list)
    wrong_tickets: list[str] = field(default_factory=list)
    duplicate_messages: list[str] = field(default_factory=list)
    over_budget: int = 0
    peak_in_window: int = 0
    api_requests: int = 0
    double_counts: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    public_messages: int = 0
    repeated_internal_notes: list[str] = field(default_factory=list)  # reported, not an invariant
    timed_out: bool = False
    workdir: str = ""

    @property
    def events_per_second(self) -> float:
        return self.accepted / self.total_seconds if self.total_seconds else 0.0

    def failures(self) -> list[str]:
        out = []
        if self.timed_out:
            out.append(f"timed out after {self.config.timeout:g}s: events {self.event_statuses}")
        if self.lost_events:
            out.append(f"{len(self.lost_events)} lost events, e.g. {self.lost_events[:5]}")
        if self.wrong_tickets:
            out.append(f"{len(self.wrong_tickets)} tickets not at the matrix's outcome, e.g. {self.wrong_tickets[:5]}")
        if self.duplicate_messages:
            out.append(f"{len(self.duplicate_messages)} duplicate customer messages, e.g. {self.duplicate_messages[:5]}")
        if self.over_budget:
            out.append(f"{self.over_budget} requests over the budget of {self.config.budget} per 60 s "
                       f"(peak {self.peak_in_window})")
        if sum(self.refused.values()):
            out.append(f"deliveries refused: {dict(self.refused)}")
        return out


# ------------------------------------------------------------------------------------ the plan
@dataclass
class Step:
    event_type: str
    change: dict[str, Any]


@dataclass
class TicketPlan:
    ticket_id: str
    scenario: str
    raw: dict[str, Any]
    description: str
    steps: list[Step]
    meant_level: str
    expected: dict[str, Any] = field(default_factory=dict)


def _cf(pairs: dict[int, Any]) -> dict[str, Any]:
    return {"custom_fields": [{"id": k, "value": v} for k, v in pairs.items()]}


# Each scenario: (name, weight, meant level, creation tags, creation fields, required changes in order).
# Required changes only ever raise the level the matrix gives (data filled in, a rule that reaches higher).
SCENARIOS: list[tuple[str, float, str, list[str], dict[int, Any], list[tuple[str, dict[str, Any]]]]] = [
    ("frontline", 0.40, "L1", ["tier_standard"], {ISSUE_TYPE: "question"}, []),
    ("billing", 0.05, "L1", ["tier_premium"], {ISSUE_TYPE: "billing"}, []),
    ("wide_outage", 0.15, "L2", ["tier_standard"], {ISSUE_TYPE: "outage", ENVIRONMENT: "staging"}, [
        ("ticket.custom_field_changed", _cf({AFFECTED_USERS: "250"})),
        ("ticket.custom_field_changed", _cf({ACCOUNT_ID: "ACC-1"})),
        ("ticket.custom_field_changed", _cf({RECENT_CHANGES: "deployed 4.2 yesterday"})),
    ]),
    ("enterprise_outage", 0.15, "L3", ["tier_enterprise"], {ISSUE_TYPE: "outage", ENVIRONMENT: "production",
                                                             ACCOUNT_ID: "ACC-2"}, [
        ("ticket.custom_field_changed", _cf({RECENT_CHANGES: "config change at 09:00"})),
        ("ticket.custom_field_changed", _cf({AFFECTED_USERS: "40"})),
    ]),
    ("security", 0.15, "L3", ["tier_premium"], {ISSUE_TYPE: "security"}, [
        ("ticket.custom_field_changed", _cf({ACCOUNT_ID: "ACC-3", ENVIRONMENT: "production"})),
        ("ticket.custom_field_changed", _cf({RECENT_CHANGES: "new SSO provider"})),
        ("ticket.tags_changed", {"additional_tags": ["security_incident"]}),
        ("ticket.custom_field_changed", _cf({AFFECTED_USERS: "12"})),
    ]),
    ("password_reset", 0.10, "L1", ["tier_standard", "password_reset"], {ISSUE_TYPE: "question"}, []),
]


def _noise(rng: random.Random, ticket_id: str, n: int, requester_id: int) -> tuple[str, dict[str, Any]]:
    kind = rng.choice(("requester_comment", "agent_note", "agent_reply", "tag", "pending", "urgent"))
    if kind == "requester_comment":
        return "ticket.comment_added", {"comment": {"author_id": requester_id, "public": True,
                                                     "body": f"Any news on {ticket_id}? ({n})"}}
    if kind == "agent_note":
        return "ticket.comment_added", {"comment": {"author_id": AGENT_USER_ID, "public": False,
                                                     "body": f"Looking into it ({n})"}}
    if kind == "agent_reply":
        return "ticket.comment_added", {"comment": {"author_id": AGENT_USER_ID, "public": True,
                                                     "body": f"We are on it ({n})"}}
    if kind == "tag":
        return "ticket.tags_changed", {"additional_tags": [f"soak_note_{n}"]}
    if kind == "pending":
        return "ticket.status_changed", {"status": rng.choice(("pending", "open"))}
    return "ticket.priority_changed", {"priority": "urgent"}  # raising only: the engine never lowers


def make_plan(config: SoakConfig, matrix: Any) -> list[TicketPlan]:
    rng = random.Random(config.seed)
    names = [s[0] for s in SCENARIOS]
    weights = [s[1] for s in SCENARIOS]
    by_name = {s[0]: s for s in SCENARIOS}
    per_ticket = [config.events // config.tickets] * config.tickets
    for index in range(config.events % config.tickets):
        per_ticket[index] += 1
    plans = []
    for index in range(config.tickets):
        ticket_id = str(100_000 + index)
        name = rng.choices(names, weights)[0]
        _, _, meant, tags, values, required = by_name[name]
        requester = REQUESTERS[index % len(REQUESTERS)]
        raw = {"id": int(ticket_id), "subject": f"Soak {name} {ticket_id}", "status": "open", "priority": "normal",
               "requester_id": requester["id"], "submitter_id": requester["id"], "assignee_id": None,
               "organization_id": None, "group_id": None, "type": "incident", "via": {"channel": "web"},
               "tags": list(tags), "custom_fields": [{"id": k, "value": v} for k, v in values.items()]}
        steps_left = max(per_ticket[index] - 1, 0)
        required_steps = [Step(kind, json.loads(json.dumps(change))) for kind, change in required]
        if steps_left < len(required_steps):  # fewer events than required changes: merge the tail
            if steps_left == 0:
                for step in required_steps:
                    apply_ticket_update(raw, step.change)
                required_steps = []
            else:
                head, tail = required_steps[:steps_left - 1], required_steps[steps_left - 1:]
                merged: dict[str, Any] = {}
                for step in tail:
                    for key, value in step.change.items():
                        merged[key] = merged.get(key, []) + value if isinstance(value, list) else value
                required_steps = head + [Step(tail[-1].event_type, merged)]
        noise = [Step(*_noise(rng, ticket_id, n, requester["id"])) for n in range(steps_left - len(required_steps))]
        steps: list[Step] = []
        required_iter, noise_iter = list(required_steps), list(noise)
        while required_iter or noise_iter:  # a random merge that keeps the required order
            pick_required = required_iter and (not noise_iter or rng.random() < len(required_iter) /
                                               (len(required_iter) + len(noise_iter)))
            steps.append(required_iter.pop(0) if pick_required else noise_iter.pop(0))
        plan = TicketPlan(ticket_id, name, raw, f"Help with {name} please ({ticket_id})", steps, meant)
        plan.expected = expected_outcome(plan, matrix)
        if plan.expected["level"] != meant:
            raise AssertionError(f"scenario {name} reaches {plan.expected['level']}, meant {meant}: fix the plan")
        plans.append(plan)
    return plans


def final_agent_ticket(plan: TicketPlan) -> dict[str, Any]:
    """The ticket as agents and customers left it (no write of the service)."""
    raw = json.loads(json.dumps(plan.raw))
    for step in plan.steps:
        apply_ticket_update(raw, step.change)
    return raw


def expected_outcome(plan: TicketPlan, matrix: Any) -> dict[str, Any]:
    from connectors.zendesk.mapping import ticket_from_raw
    from integration.engine import decide
    from integration.model import Person
    from tests.support.zendesk_fake import load_fixture

    raw = final_agent_ticket(plan)
    field_types = {int(f["id"]): f["type"] for f in load_fixture("ticket_fields.json")["ticket_fields"]}
    custom = {int(cf["id"]): cf["value"] for cf in raw["custom_fields"]}
    ticket = ticket_from_raw(raw, matrix, custom=custom, field_types=field_types,
                             requester=Person(id=str(raw["requester_id"])))
    decision = decide(ticket, None, matrix, datetime.now(timezone.utc))
    if decision.held_level is not None:
        raise AssertionError(f"scenario {plan.scenario}: the final state still waits for data ({decision.missing_data})")
    group_key = decision.owner_group or ticket.group
    return {"level": decision.to_level, "priority": decision.priority or ticket.priority,
            "group_id": int(matrix.groups[group_key].zendesk) if group_key else None}


# ------------------------------------------------------------------------------------ processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_db_url(base: str, db: int) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


class Processes:
    def __init__(self, workdir: Path, env: dict[str, str]):
        self.workdir = workdir
        self.env = env
        self.all: list[subprocess.Popen] = []

    def start(self, args: list[str], log_name: str, **extra_env: str) -> subprocess.Popen:
        log = open(self.workdir / log_name, "ab")
        proc = subprocess.Popen(args, env={**self.env, **extra_env}, cwd=self.workdir, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.all.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.all:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.all:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()


def _wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _service_env(config: SoakConfig, database_url: str, queue_url: str, double_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env.update({
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": database_url,
        "QUEUE_URL": queue_url,  # Redis: the queue, and (no REDIS_URL) the shared request budget
        "MATRIX_PATH": str(config.matrix_path),
        "ZENDESK_WEBHOOK_SECRET": SECRET,
        "ZENDESK_BASE_URL": double_url,
        "ZENDESK_EMAIL": EMAIL,
        "ZENDESK_API_TOKEN": TOKEN,
        "ZENDESK_REQUESTS_PER_MINUTE": str(config.budget),
        "DRY_RUN": "false",
        "LEASE_SECONDS": str(config.lease_seconds),
        "RECONCILE_INTERVAL_SECONDS": str(config.reconcile_interval),
        "WORKER_CONCURRENCY": str(config.worker_concurrency),
        "SHUTDOWN_TIMEOUT_SECONDS": "2",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "16",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        "LOG_LEVEL": "WARNING",
    })
    return env


# ------------------------------------------------------------------------------------ the load
def _signed_headers(raw: bytes, invocation_id: str) -> dict[str, str]:
    timestamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = base64.b64encode(hmac.new(SECRET.encode(), timestamp.encode() + raw, hashlib.sha256).digest()).decode()
    return {"Content-Type": "application/json", "X-Zendesk-Webhook-Signature": signature,
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp, "X-Zendesk-Webhook-Invocation-Id": invocation_id}


def _event_body(ticket: dict[str, Any], event_type: str, actor_id: int, change: dict[str, Any], n: int) -> dict:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event: dict[str, Any] = {}
    comment = change.get("comment")
    if comment:
        event = {"comment": {"id": str(n), "body": comment["body"], "is_public": comment["public"],
                             "author": {"id": str(comment["author_id"])}}}
    return {"account_id": 22129848, "id": f"soak-{ticket['id']}-{n}", "subject": f"zen:ticket:{ticket['id']}",
            "time": now, "type": f"zen:event-type:{event_type}", "zendesk_event_version": "2022-11-06", "event": event,
            "detail": {"actor_id": str(actor_id), "id": str(ticket["id"]), "priority": str(ticket["priority"]).upper(),
                       "status": str(ticket["status"]).upper(), "subject": ticket["subject"], "tags": ticket["tags"],
                       "requester_id": str(ticket["requester_id"]), "created_at": ticket["created_at"],
                       "updated_at": ticket["updated_at"]}}


class Load:
    def __init__(self, config: SoakConfig, plans: list[TicketPlan], double_url: str, web_ports: list[int]):
        self.config = config
        self.plans = plans
        self.double_url = double_url
        self.web_ports = web_ports
        self.lock = threading.Lock()
        self.accepted: list[int] = []
        self.redeliveries = 0
        self.refused: Counter[str] = Counter()
        self.sent = 0

    def run(self) -> None:
        threads = [threading.Thread(target=self._sender, args=(index,), daemon=True)
                   for index in range(self.config.senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _sender(self, index: int) -> None:
        rng = random.Random(self.config.seed * 1000 + index)
        mine = [plan for n, plan in enumerate(self.plans) if n % self.config.senders == index]
        # A random interleaving of this sender's tickets, each ticket's steps in order.
        queue = [(plan, -1) for plan in mine]
        cursor = {plan.ticket_id: -1 for plan in mine}
        order: list[tuple[TicketPlan, int]] = []
        pending = list(mine)
        while pending:
            plan = rng.choice(pending)
            order.append((plan, cursor[plan.ticket_id]))
            cursor[plan.ticket_id] += 1
            if cursor[plan.ticket_id] >= len(plan.steps):
                pending.remove(plan)
        del queue
        session = requests.Session()
        webs = [requests.Session() for _ in self.web_ports]
        for n, (plan, step_index) in enumerate(order):
            if step_index < 0:
                answer = session.post(f"{self.double_url}/_double/tickets",
                                      json={"ticket": plan.raw, "description": plan.description}, timeout=30)
                ticket, event_type, actor, change = answer.json()["ticket"], "ticket.created", plan.raw["requester_id"], {}
            else:
                step = plan.steps[step_index]
                answer = session.post(f"{self.double_url}/_double/tickets/{plan.ticket_id}/edit", json=step.change,
                                      timeout=30)
                ticket = answer.json()["ticket"]
                event_type, change = step.event_type, step.change
                actor = (change.get("comment") or {}).get("author_id") or AGENT_USER_ID
            body = json.dumps(_event_body(ticket, event_type, actor, change, step_index + 1)).encode()
            invocation = f"soak-{plan.ticket_id}-{step_index + 1}-{uuid.uuid4().hex[:8]}"
            which = (index + n) % len(self.web_ports)
            self._deliver(webs[which], self.web_ports[which], body, invocation, expect_new=True)
            if rng.random() < self.config.redelivery_rate:
                self._deliver(webs[which], self.web_ports[which], body, invocation, expect_new=False)

    def _deliver(self, session: requests.Session, port: int, body: bytes, invocation: str, *, expect_new: bool) -> None:
        for attempt in range(20):  # as Zendesk retries a 503 / a connection failure
            try:
                answer = session.post(f"http://127.0.0.1:{port}/webhooks/zendesk", data=body,
                                      headers=_signed_headers(body, invocation), timeout=30)
            except requests.RequestException:
                time.sleep(0.5)
                continue
            if answer.status_code == 503:
                time.sleep(0.5)
                continue
            with self.lock:
                self.sent += 1
                if answer.status_code == 202:
                    self.accepted.append(int(answer.json()["event_id"]))
                    if not expect_new:
                        self.refused["redelivery accepted as new"] += 1
                elif answer.status_code == 200 and answer.json().get("status") == "duplicate":
                    if expect_new:
                        self.refused["new delivery called duplicate"] += 1
                    else:
                        self.redeliveries += 1
                else:
                    self.refused[f"HTTP {answer.status_code}"] += 1
            return
        with self.lock:
            self.refused["not delivered after 20 tries"] += 1


# ------------------------------------------------------------------------------------ one run
def _say(config: SoakConfig, text: str) -> None:
    if config.progress is not None:
        config.progress(text)


def _event_statuses(engine: Any) -> dict[str, int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, count(*) FROM events GROUP BY status")).all()
        applying = conn.execute(text("SELECT count(*) FROM decisions WHERE status = 'applying'")).scalar_one()
    out = {status: count for status, count in rows}
    out["decisions applying"] = applying
    return out


def run_soak(config: SoakConfig) -> SoakResult:
    import redis
    from sqlalchemy import create_engine, text

    from matrix_config.loader import load_matrix

    result = SoakResult(config)
    matrix = load_matrix(config.matrix_path).matrix
    plans = make_plan(config, matrix)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    result.workdir = str(workdir)
    (workdir / "metrics").mkdir()
    redis_client = redis.Redis.from_url(config.redis_url)
    redis_client.flushdb()
    database_url, drop_schema = postgres_schema_url(config.postgres_url)
    double_port = _free_port()
    double_url = f"http://127.0.0.1:{double_port}"
    env = _service_env(config, database_url, config.redis_url, double_url, workdir)
    processes = Processes(workdir, env)
    engine = create_engine(database_url, pool_size=2)
    stop_killing = threading.Event()
    killer: threading.Thread | None = None
    try:
        processes.start([sys.executable, "-m", "tests.support.soak_zendesk_double", "--port", str(double_port),
                         "--budget", str(config.budget), "--error-rate", str(config.error_rate),
                         "--rate-limited-rate", str(config.rate_limited_rate), "--seed", str(config.seed),
                         "--latency-ms", str(config.vendor_latency_ms)],
                        "double.log")
        _wait(lambda: "listening" in (workdir / "double.log").read_text(), 30, "the Zendesk double")
        requests.post(f"{double_url}/_double/users", json={"users": REQUESTERS}, timeout=10).raise_for_status()
        subprocess.run([str(BIN / "escalation"), "migrate"], env=env, cwd=workdir, check=True, capture_output=True)
        web_ports = [_free_port() for _ in range(config.webs)]
        for n, port in enumerate(web_ports):
            processes.start([sys.executable, "-m", "webhooks.server", "--host", "127.0.0.1", "--port", str(port)],
                            f"web-{n}.log")
        workers = [processes.start([str(BIN / "escalation"), "worker"], f"worker-{n}.log")
                   for n in range(config.workers)]
        for port in web_ports:
            _wait(lambda port=port: _ready(port), 60, f"the web process on {port}")
        _say(config, f"{config.webs} web + {config.workers} workers up; {len(plans)} tickets, "
                     f"{sum(len(p.steps) + 1 for p in plans)} events; logs in {workdir}")

        def kill_loop() -> None:
            rng = random.Random(config.seed + 7)
            # The first kill waits until passes are under way, so it lands mid-pass.
            while not stop_killing.is_set():
                with engine.connect() as conn:
                    if conn.execute(text("SELECT count(*) FROM decisions")).scalar_one() > 0:
                        break
                stop_killing.wait(0.2)
            while not stop_killing.is_set():
                if config.max_kills is not None and result.kills >= config.max_kills:
                    return
                if stop_killing.wait(config.kill_every * rng.uniform(0.5, 1.5)):
                    return
                index = rng.randrange(len(workers))
                try:
                    os.killpg(workers[index].pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                workers[index].wait()
                result.kills += 1
                _say(config, f"SIGKILL worker {index} (kill {result.kills})")
                if stop_killing.wait(0.5):
                    pass
                workers[index] = processes.start([str(BIN / "escalation"), "worker"], f"worker-{index}.log")

        if config.kill_every > 0 and config.workers > 0:
            killer = threading.Thread(target=kill_loop, daemon=True)
            killer.start()

        load = Load(config, plans, double_url, web_ports)
        started = time.monotonic()
        sender = threading.Thread(target=load.run, daemon=True)
        sender.start()
        deadline = started + config.timeout
        last_report = 0.0
        while True:
            time.sleep(0.5)
            statuses = _event_statuses(engine)
            open_events = statuses.get("pending", 0) + statuses.get("processing", 0)
            if not sender.is_alive() and result.send_seconds == 0.0:
                result.send_seconds = time.monotonic() - started
            if not sender.is_alive() and open_events == 0 and statuses["decisions applying"] == 0:
                break
            if time.monotonic() > deadline:
                result.timed_out = True
                break
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                _say(config, f"{time.monotonic() - started:5.0f}s sent {load.sent} events {statuses}")
        result.total_seconds = time.monotonic() - started
        stop_killing.set()
        if killer is not None:
            killer.join(timeout=30)
        result.accepted = len(load.accepted)
        result.redeliveries = load.redeliveries
        result.refused = load.refused
        result.event_statuses = statuses
        _verify(result, plans, engine, double_url, set(load.accepted))
    finally:
        stop_killing.set()
        processes.stop_all()
        engine.dispose()
        drop_schema()
        redis_client.flushdb()
        redis_client.close()
        failed = bool(result.failures()) if result.accepted else True
        if not config.keep_logs and not failed:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


def _verify(result: SoakResult, plans: list[TicketPlan], engine: Any, double_url: str, accepted: set[int]) -> None:
    from sqlalchemy import text

    with engine.connect() as conn:
        statuses = dict(conn.execute(text("SELECT id, status FROM events")).all())
        levels = dict(conn.execute(text("SELECT ticket_id, level FROM ticket_state")).all())
        result.decisions = dict(conn.execute(text("SELECT status, count(*) FROM decisions GROUP BY status")).all())
    result.lost_events = sorted(f"event {event_id}: {statuses.get(event_id, 'missing')}"
                                for event_id in accepted if statuses.get(event_id) != "done")
    state = requests.get(f"{double_url}/_double/state", timeout=60).json()
    stats = state["stats"]
    result.over_budget = stats["over_budget"]
    result.peak_in_window = stats["peak_in_window"]
    result.api_requests = stats["api_requests"]
    result.double_counts = stats["counts"]
    for plan in plans:
        ticket = state["tickets"].get(plan.ticket_id)
        expected = plan.expected
        if ticket is None:
            result.wrong_tickets.append(f"{plan.ticket_id}: not in the double")
            continue
        level_tags = sorted(t for t in ticket["tags"] if t.startswith("esc_"))
        got = {"level": level_tags, "priority": ticket["priority"], "group_id": ticket["group_id"],
               "stored level": levels.get(plan.ticket_id)}
        want = {"level": [f"esc_{expected['level'].lower()}"], "priority": expected["priority"],
                "group_id": expected["group_id"], "stored level": expected["level"]}
        if got != want:
            result.wrong_tickets.append(f"{plan.ticket_id} ({plan.scenario}): {got} != {want}")
        public = [c["body"] for c in state["comments"].get(plan.ticket_id, [])
                  if c["author_id"] == BOT_USER_ID and c["public"]]
        result.public_messages += len(public)
        for body, count in Counter(public).items():
            if count > 1:
                result.duplicate_messages.append(f"{plan.ticket_id} ({plan.scenario}): {count}x {body[:60]!r}")
        notes = [c["body"] for c in state["comments"].get(plan.ticket_id, [])
                 if c["author_id"] == BOT_USER_ID and not c["public"]]
        for body, count in Counter(notes).items():
            if count > 1:
                result.repeated_internal_notes.append(f"{plan.ticket_id} ({plan.scenario}): {count}x {body[:60]!r}")
