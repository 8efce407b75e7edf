"""An in-memory Zendesk account behind `responses`, shared by the Zendesk tests and bench/bench_writes.py.

It starts from the recorded API responses in tests/fixtures/zendesk_api/, keeps tickets and SLA policies as
state, enforces `safe_update` (409 on a stale `updated_stamp`), applies `additional_tags`/`remove_tags`,
priority, group and custom fields like Zendesk, and can be told to fail the next matching call.
This module holds no tests.
"""
from __future__ import annotations

import copy
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import responses

from connectors.zendesk.settings import ZendeskSettings
from tests.support.openapi_check import validate_zendesk_calls

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "zendesk_api"
BASE = "https://acme.zendesk.com"
EMAIL = "escalation-bot@acme.example"
TOKEN = "zd-T0ken-9f8e7d6c5b4a"


def zendesk_settings(**overrides: Any) -> ZendeskSettings:
    """Complete API-token settings for the fake account (acme), never read from the environment or
    `.env`, with a budget the tests never reach."""
    values: dict[str, Any] = dict(subdomain="acme", email=EMAIL, api_token=TOKEN, requests_per_minute=10_000)
    return ZendeskSettings(_env_file=None, **{**values, **overrides})


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@contextmanager
def validated_fake_zendesk() -> Iterator[FakeZendesk]:
    """A FakeZendesk behind its own `responses` mock, for a fixture (`with validated_fake_zendesk() as fake:
    yield fake`): when the block ends, every request the test sent is validated against the Zendesk spec,
    so an invalid request fails the test's teardown."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakeZendesk(rsps)
        yield fake
        validate_zendesk_calls(rsps.calls)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def apply_ticket_update(ticket: dict, data: dict) -> None:
    """What a Zendesk ticket update does to the fields the service writes: tags (replaced, added to, removed
    from), priority, group, status, assignee and custom fields (merged by id). Shared with the soak double."""
    if "tags" in data:
        ticket["tags"] = list(data["tags"])
    removed = set(data.get("remove_tags") or [])
    tags = [t for t in ticket["tags"] if t not in removed]
    tags += [t for t in data.get("additional_tags") or [] if t not in tags]
    ticket["tags"] = tags
    for name in ("priority", "group_id", "status", "assignee_id"):
        if name in data:
            ticket[name] = data[name]
    for update in data.get("custom_fields") or []:
        for existing in ticket["custom_fields"]:
            if existing["id"] == update["id"]:
                existing["value"] = update["value"]
                break
        else:
            ticket["custom_fields"].append(dict(update))


@dataclass
class Failure:
    method: str
    path_pattern: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    content_type: str = "application/json"
    times: int = 1
    error: Exception | None = None  # raised instead of answering (timeouts, connection resets)
    skip: int = 0  # let this many matching calls through first
    before: Any = None  # called instead of failing when set: e.g. an agent edit just before the call


class FakeZendesk:
    def __init__(self, rsps: responses.RequestsMock, base: str = BASE):
        self.rsps = rsps
        self.base = base
        shown = load_fixture("ticket_5158.json")
        self.tickets: dict[str, dict] = {str(shown["ticket"]["id"]): shown["ticket"]}
        self.users = {str(u["id"]): u for u in shown["users"]}
        self.organizations = {str(o["id"]): o for o in shown["organizations"]}
        page1, page2 = load_fixture("comments_5158_page1.json"), load_fixture("comments_5158_page2.json")
        self.comments: dict[str, list[dict]] = {"5158": page1["comments"] + page2["comments"]}
        # Ticket audits, oldest first: what tests add (an agent's change) and one per accepted update.
        self.audits: dict[str, list[dict]] = {}
        self.ticket_fields = load_fixture("ticket_fields.json")["ticket_fields"]
        self.groups = load_fixture("groups.json")["groups"]
        self.me = load_fixture("users_me.json")["user"]
        self.policies: list[dict] = []
        self.incremental_pages = [load_fixture("incremental_page1.json"), load_fixture("incremental_page2.json")]
        self.failures: list[Failure] = []
        self.writes: list[tuple[str, str, Any]] = []  # (method, path, json body) of every accepted write
        self.after_ticket_update = None  # called with the request body after Zendesk stored an update
        self._next_policy_id = 400000000001
        self._clock = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)
        self._register()

    # ------------------------------------------------------------------ helpers for tests
    def add_ticket(self, ticket: dict, comments: list[dict] | None = None) -> dict:
        self.tickets[str(ticket["id"])] = ticket
        self.comments[str(ticket["id"])] = comments or []
        return ticket

    def add_audit(self, ticket_id: str, created_at: str, events: list[dict], author_id: int = 2002) -> dict:
        """Record an audit (a change someone made in Zendesk), e.g. events=[{"type": "Change",
        "field_name": "tags", "value": [...], "previous_value": [...]}]."""
        audits = self.audits.setdefault(str(ticket_id), [])
        audit = {"id": 70000 + len(audits), "ticket_id": int(ticket_id), "created_at": created_at,
                 "author_id": author_id, "events": [{"id": 71000 + i, **e} for i, e in enumerate(events)]}
        audits.append(audit)
        return audit

    def fail_next(self, method: str, path_pattern: str, status: int, *, times: int = 1, headers=None,
                  body: Any = None, content_type: str = "application/json", error: Exception | None = None,
                  skip: int = 0) -> None:
        text = body if isinstance(body, str) else json.dumps(body if body is not None else {"error": "Failed"})
        self.failures.append(Failure(method, path_pattern, status, dict(headers or {}), text, content_type, times,
                                     error, skip))

    def before_next(self, method: str, path_pattern: str, action, *, skip: int = 0) -> None:
        """Run `action()` (e.g. an agent's edit) just before the next matching call is handled."""
        self.failures.append(Failure(method, path_pattern, 0, skip=skip, before=action))

    def calls(self, method: str | None = None, path_prefix: str = "") -> list:
        return [c for c in self.rsps.calls
                if (method is None or c.request.method == method) and urlsplit(c.request.url).path.startswith(path_prefix)]

    def put_bodies(self, ticket_id: str = "5158") -> list[dict]:
        return [body for method, path, body in self.writes if method == "PUT" and path == f"/api/v2/tickets/{ticket_id}"]

    # ------------------------------------------------------------------ routing
    def _register(self) -> None:
        base = re.escape(self.base)
        routes = [
            ("GET", rf"{base}/api/v2/users/me(\.json)?(\?.*)?$", self._me),
            ("GET", rf"{base}/api/v2/users/(\d+)(\?.*)?$", self._show_user),
            ("GET", rf"{base}/api/v2/tickets/(\d+)(\?.*)?$", self._show_ticket),
            ("GET", rf"{base}/api/v2/tickets/show_many(\.json)?(\?.*)?$", self._show_many_tickets),
            ("PUT", rf"{base}/api/v2/tickets/(\d+)(\?.*)?$", self._update_ticket),
            ("GET", rf"{base}/api/v2/tickets/(\d+)/comments(\?.*)?$", self._comments),
            ("GET", rf"{base}/api/v2/tickets/(\d+)/audits(\?.*)?$", self._audits),
            ("GET", rf"{base}/api/v2/ticket_fields(\?.*)?$", self._ticket_fields),
            ("GET", rf"{base}/api/v2/groups(\?.*)?$", self._groups),
            ("GET", rf"{base}/api/v2/incremental/tickets/cursor(\?.*)?$", self._incremental),
            ("GET", rf"{base}/api/v2/slas/policies(\?.*)?$", self._list_policies),
            ("POST", rf"{base}/api/v2/slas/policies(\?.*)?$", self._create_policy),
            ("PUT", rf"{base}/api/v2/slas/policies/reorder(\?.*)?$", self._reorder_policies),
            ("PUT", rf"{base}/api/v2/slas/policies/(\d+)(\?.*)?$", self._update_policy),
            ("DELETE", rf"{base}/api/v2/slas/policies/(\d+)(\?.*)?$", self._delete_policy),
        ]
        for method, pattern, handler in routes:
            self.rsps.add_callback(method, re.compile(pattern), callback=self._wrap(method, handler))

    def _wrap(self, method: str, handler):
        def callback(request):
            path = urlsplit(request.url).path
            for failure in self.failures:
                if failure.method == method and re.search(failure.path_pattern, path) and failure.times > 0:
                    if failure.skip > 0:
                        failure.skip -= 1
                        continue
                    failure.times -= 1
                    if failure.before is not None:
                        failure.before()
                        break
                    if failure.error is not None:
                        raise failure.error
                    return failure.status, {"Content-Type": failure.content_type, **failure.headers}, failure.body
            body = json.loads(request.body) if request.body else None
            query = {k: v[-1] for k, v in parse_qs(urlsplit(request.url).query).items()}
            status, payload = handler(path, query, body)
            if status < 300 and method != "GET":
                self.writes.append((method, path, body))
            headers = {"Content-Type": "application/json; charset=utf-8"}
            return status, headers, json.dumps(payload) if payload is not None else ""
        return callback

    # ------------------------------------------------------------------ handlers
    def _me(self, path, query, body):
        return 200, {"user": self.me}

    def _show_user(self, path, query, body):
        user = self.users.get(re.search(r"/users/(\d+)", path).group(1))
        if user is None:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        return 200, {"user": user}

    def _ticket_id(self, path: str) -> str:
        return re.search(r"/tickets/(\d+)", path).group(1)

    def _show_ticket(self, path, query, body):
        ticket = self.tickets.get(self._ticket_id(path))
        if ticket is None:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        out: dict[str, Any] = {"ticket": ticket}
        includes = set((query.get("include") or "").split(","))
        if "users" in includes:
            ids = {str(ticket.get("requester_id")), str(ticket.get("assignee_id"))}
            out["users"] = [u for uid, u in self.users.items() if uid in ids]
        if "organizations" in includes:
            org = self.organizations.get(str(ticket.get("organization_id")))
            out["organizations"] = [org] if org else []
        if "comment_count" in includes:  # Zendesk's sideload: a property on the ticket itself
            out["ticket"] = {**ticket, "comment_count": len(self.comments.get(str(ticket["id"]), []))}
        return 200, out

    def _show_many_tickets(self, path, query, body):
        """Zendesk leaves out ids it cannot show; sideloads are the union over the tickets returned."""
        out: dict[str, Any] = {"tickets": [], "users": [], "organizations": []}
        for ticket_id in (query.get("ids") or "").split(","):
            status, one = self._show_ticket(f"/api/v2/tickets/{ticket_id.strip()}", query, None)
            if status != 200:
                continue
            out["tickets"].append(one["ticket"])
            for name in ("users", "organizations"):
                out[name] += [r for r in one.get(name) or [] if r not in out[name]]
        return 200, out

    def _comments(self, path, query, body):
        ticket_id = self._ticket_id(path)
        if ticket_id not in self.tickets:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        comments = self.comments.get(ticket_id, [])
        if query.get("sort") == "-created_at":
            comments = list(reversed(comments))
        size = int(query.get("page[size]", 100))
        start = int(query.get("page[after]", "0") or 0)
        page = comments[start:start + size]
        has_more = start + size < len(comments)
        out = {"comments": page, "meta": {"has_more": has_more, "after_cursor": str(start + size) if has_more else None},
               "links": {"next": f"{self.base}/api/v2/tickets/{ticket_id}/comments?include=users&page%5Bsize%5D={size}"
                                 f"&page%5Bafter%5D={start + size}" if has_more else None}}
        if "users" in (query.get("include") or ""):
            authors = {str(c.get("author_id")) for c in page}
            out["users"] = [u for uid, u in self.users.items() if uid in authors]
        return 200, out

    def _audits(self, path, query, body):
        ticket_id = self._ticket_id(path)
        if ticket_id not in self.tickets:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        audits = self.audits.get(ticket_id, [])
        return 200, {"audits": audits, "next_page": None, "previous_page": None, "count": len(audits)}

    def _update_ticket(self, path, query, body):
        ticket = self.tickets.get(self._ticket_id(path))
        if ticket is None:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        before = copy.deepcopy(ticket)
        data = (body or {}).get("ticket") or {}
        if data.get("safe_update") and data.get("updated_stamp") != ticket["updated_at"]:
            return 409, {"error": "UpdateConflict", "description": "Safe Update prevented the update due to outdated "
                         "ticket data. Please fetch the latest ticket data and try again."}
        apply_ticket_update(ticket, data)
        comment = data.get("comment")
        # Zendesk stamps an update with its own time, always after the ticket's previous updated_at: the
        # fake's time is the ticket's, so the edits tests make at their own times keep it moving forward.
        now = _parse_iso(ticket.get("updated_at")) or self._clock
        if comment:
            now += timedelta(seconds=1)
            self.comments.setdefault(str(ticket["id"]), []).append({
                "id": 80000 + len(self.writes), "type": "Comment", "author_id": int(self.me["id"]),
                "body": comment["body"], "public": comment.get("public", True), "created_at": _iso(now),
            })
        now += timedelta(seconds=1)
        ticket["updated_at"] = _iso(now)
        self._audit_update(before, ticket)
        if self.after_ticket_update is not None:
            self.writes.append(("PUT", path, body))  # stored, whatever the client hears next
            self.after_ticket_update(body)
            self.writes.pop()
        return 200, {"ticket": ticket, "audit": {"id": 90000 + len(self.writes), "ticket_id": ticket["id"]}}

    def _audit_update(self, before: dict, after: dict) -> None:
        events = []
        if before.get("tags") != after.get("tags"):
            events.append({"type": "Change", "field_name": "tags", "value": list(after["tags"]),
                           "previous_value": list(before.get("tags") or [])})
        old = {cf["id"]: cf.get("value") for cf in before.get("custom_fields") or []}
        for cf in after.get("custom_fields") or []:
            if old.get(cf["id"]) != cf.get("value"):
                events.append({"type": "Change", "field_name": str(cf["id"]), "value": cf.get("value"),
                               "previous_value": old.get(cf["id"])})
        for name in ("priority", "group_id", "status"):
            if before.get(name) != after.get(name):
                events.append({"type": "Change", "field_name": name, "value": after.get(name),
                               "previous_value": before.get(name)})
        if events:
            self.add_audit(str(after["id"]), after["updated_at"], events, author_id=int(self.me["id"]))

    def _ticket_fields(self, path, query, body):
        return 200, {"ticket_fields": self.ticket_fields, "next_page": None, "previous_page": None,
                     "count": len(self.ticket_fields)}

    def _groups(self, path, query, body):
        return 200, {"groups": self.groups, "meta": {"has_more": False}, "links": {"next": None}}

    def _incremental(self, path, query, body):
        if "cursor" in query:
            for index, page in enumerate(self.incremental_pages[:-1]):
                if page["after_cursor"] == query["cursor"]:
                    return 200, self.incremental_pages[index + 1]
            return 400, {"error": "InvalidCursor", "description": "cursor is invalid"}
        return 200, self.incremental_pages[0]

    # SLA policies ---------------------------------------------------------------------------------
    def _list_policies(self, path, query, body):
        ordered = sorted(self.policies, key=lambda p: p["position"])
        return 200, {"sla_policies": copy.deepcopy(ordered), "next_page": None, "previous_page": None,
                     "count": len(ordered)}

    def _renumber(self) -> None:
        for position, policy in enumerate(sorted(self.policies, key=lambda p: p["position"]), start=1):
            policy["position"] = position

    def _stored(self, data: dict, policy_id: int, position: int) -> dict:
        metrics = [{**m, "target_in_seconds": int(m["target"]) * 60} for m in data.get("policy_metrics", [])]
        return {"url": f"{self.base}/api/v2/slas/policies/{policy_id}.json", "id": policy_id,
                "title": data["title"], "description": data.get("description", ""), "position": position,
                "filter": data["filter"], "policy_metrics": metrics,
                "created_at": "2026-11-27T10:00:00Z", "updated_at": "2026-11-27T10:00:00Z"}

    def _create_policy(self, path, query, body):
        data = body["sla_policy"]
        policy = self._stored(data, self._next_policy_id, len(self.policies) + 1)
        self._next_policy_id += 1
        self.policies.append(policy)
        self._renumber()
        return 201, {"sla_policy": policy}

    def _find_policy(self, path) -> dict | None:
        policy_id = int(re.search(r"/policies/(\d+)", path).group(1))
        return next((p for p in self.policies if p["id"] == policy_id), None)

    def _update_policy(self, path, query, body):
        policy = self._find_policy(path)
        if policy is None:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        policy.update(self._stored(body["sla_policy"], policy["id"], policy["position"]))
        return 200, {"sla_policy": policy}

    def _delete_policy(self, path, query, body):
        policy = self._find_policy(path)
        if policy is None:
            return 404, {"error": "RecordNotFound", "description": "Not found"}
        self.policies.remove(policy)
        self._renumber()
        return 204, None

    def _reorder_policies(self, path, query, body):
        ids = body["sla_policy_ids"]
        if sorted(ids) != sorted(p["id"] for p in self.policies):
            return 422, {"error": "RecordInvalid", "description": "sla_policy_ids must list every policy"}
        for position, policy_id in enumerate(ids, start=1):
            next(p for p in self.policies if p["id"] == policy_id)["position"] = position
        return 200, {"sla_policies": sorted(self.policies, key=lambda p: p["position"])}
