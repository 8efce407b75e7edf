"""Zendesk Support connector: reads tickets into the neutral model and writes decisions back with as
few `PUT /api/v2/tickets/{id}` calls as Zendesk allows (one; two when a decision carries both a customer
reply and an internal note, because Zendesk takes one comment per update; zero when nothing changes).

The rest of the package: `settings` (ZENDESK_*), `client` (the HTTP edge, errors through connectors.http),
`mapping` (API JSON <-> Ticket), `webhook_snapshot` (dry runs), `remote` (`validate --remote zendesk`),
`sla` (Zendesk SLA policies)."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence

import requests

from connectors.base import (
    PART_FIELDS,
    PART_NOTE,
    PART_REPLY,
    ApplyProgress,
    ApplyResult,
    ConnectorDefaults,
    Conflict,
    ConnectorError,
    NotFound,
    Permanent,
    PostedComment,
    RateLimited,
    not_sent,
)
from connectors.customer_data import TtlCache
from connectors.ratelimit import PerKeyWindow, RateLimiter
from connectors.retry import DEFAULT_POLICY, RetryPolicy
from connectors.zendesk.client import ZendeskClient
from connectors.zendesk.mapping import (
    attribute_changes,
    id_or_none,
    parse_time,
    prefixed_tag,
    ticket_from_raw,
    to_matrix_value,
    to_zendesk_value,
)
from connectors.zendesk.settings import AGENT_ROLES, VENDOR, ZendeskSettings
from integration.model import Decision, Person, Ticket
from matrix_config.schema import Matrix


NOTE_CONFLICT_ROUNDS = 2  # re-sends of a decision's second (note-only) update after 409
# Zendesk: "Update Ticket" allows 30 updates per ticket per 10 minutes (per user); more are answered 429.
TICKET_UPDATES_PER_WINDOW = 30
TICKET_UPDATE_WINDOW_SECONDS = 600
REMEMBERED_TICKETS = 10_000  # tickets whose agent replies a connector keeps between passes
SHOW_MANY_LIMIT = 100  # ids per GET /api/v2/tickets/show_many (Zendesk's maximum)
NEWER_COMMENTS_PAGE = 10  # page size of the newest-first read of comments after a ticket changed


@dataclass
class _SeenReplies:
    updated_at: str | None
    requester_id: str | None
    newest_comment_id: str | None
    times: list[tuple[datetime, str]]
    authors: dict[str, Mapping[str, Any]]
    comment_count: Any = None  # the ticket's comment_count sideload when the comments were read

    def result(self) -> tuple[datetime | None, datetime | None, Person | None]:
        if not self.times:
            return None, None, None
        last, last_by = max(self.times)
        user = self.authors.get(last_by) or {}
        return min(self.times)[0], last, Person(id=last_by, name=user.get("name"), email=user.get("email"))


def _first_and_last(times: list[tuple[datetime, str]]) -> list[tuple[datetime, str]]:
    return sorted({min(times), max(times)}) if times else []


# --------------------------------------------------------------------------------- connector
@dataclass
class _Lookups:
    """Account metadata the connector needs per ticket, cached and refreshed when an unknown id shows up."""

    field_types: dict[int, str] = field(default_factory=dict)
    fields_loaded: bool = False
    own_user_id: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class ZendeskConnector(ConnectorDefaults):
    vendor = VENDOR
    reads_field_history = True  # ticket audits
    remembers_comments = True  # False: every pass reads all comments (bench/bench_writes.py's baseline)

    def __init__(
        self,
        settings: ZendeskSettings,
        matrix: Matrix,
        *,
        session: requests.Session | None = None,
        retry_policy: RetryPolicy = DEFAULT_POLICY,
        rate_limiter: RateLimiter | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        database_url: str | None = None,
        redis_url: str | None = None,
    ):
        self.settings = settings
        self.matrix = matrix
        # redis_url / database_url: where the shared request budget lives (connectors.ratelimit.limiter_for);
        # neither given = a budget of this process only.
        self.client = ZendeskClient(settings, session=session, retry_policy=retry_policy, rate_limiter=rate_limiter,
                                    database_url=database_url, redis_url=redis_url)
        self._lookups = _Lookups(own_user_id=settings.user_id)
        self._clock = clock
        self._customer_data = TtlCache(timedelta(seconds=settings.customer_data_ttl_seconds), clock)
        # Per ticket: the public agent replies seen so far, valid while the ticket's updated_at is the one
        # they were read at (Zendesk bumps updated_at on every comment). Bounded: oldest tickets go first.
        self._replies: dict[str, _SeenReplies] = {}
        self._replies_lock = threading.Lock()
        self.ticket_update_budget = PerKeyWindow(
            TICKET_UPDATES_PER_WINDOW, TICKET_UPDATE_WINDOW_SECONDS, clock=lambda: self._clock().timestamp())

    # ------------------------------------------------------------------ lookups
    def own_user_id(self) -> str | None:
        if self._lookups.own_user_id is None:
            user = self.client.me()
            if user.get("id") is not None:
                self._lookups.own_user_id = str(user["id"])
        return self._lookups.own_user_id

    def _field_types(self, needed: set[int]) -> dict[int, str]:
        lookups = self._lookups
        with lookups.lock:
            if not lookups.fields_loaded or not needed <= lookups.field_types.keys():
                for item in self.client.get_all("/api/v2/ticket_fields", "ticket_fields"):
                    lookups.field_types[int(item["id"])] = str(item.get("type") or "")
                lookups.fields_loaded = True
            return lookups.field_types

    def _mapped_custom_field_ids(self) -> set[int]:
        return {m.zendesk.custom_field for m in self.matrix.fields.values()
                if m.zendesk is not None and m.zendesk.custom_field is not None}

    def _customer_fields(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Matrix attributes mapped to `organization_field` / `user_field`: the ticket's organization and
        requester are read in full (`GET organizations/{id}`, `users/{id}`; the ticket's sideloads are partial
        records without custom fields), each at most once per ZENDESK_CUSTOMER_DATA_TTL_SECONDS."""
        out: dict[str, Any] = {}
        sources = (("organization_field", "organization_id", "organizations", "organization", "organization_fields"),
                   ("user_field", "requester_id", "users", "user", "user_fields"))
        for source, id_key, collection, record, fields_key in sources:
            mapped = {name: m.zendesk for name, m in self.matrix.fields.items()
                      if m.zendesk is not None and getattr(m.zendesk, source) is not None}
            record_id = id_or_none(raw.get(id_key))
            if not mapped or record_id is None:
                continue

            def load(path: str = f"/api/v2/{collection}/{record_id}", record: str = record,
                     fields_key: str = fields_key) -> dict[str, Any]:
                try:
                    return dict(((self.client.get(path) or {}).get(record) or {}).get(fields_key) or {})
                except NotFound:
                    return {}  # deleted since the ticket named it: the attributes are empty

            values = self._customer_data.get_or_load((collection, record_id), load)
            for name, zd in mapped.items():
                value = to_matrix_value(zd, values.get(getattr(zd, source)))
                if value is not None:
                    out[name] = value
        return out

    # ------------------------------------------------------------------ read
    def fetch_ticket(self, ticket_id: str) -> Ticket:
        data = self.client.get(f"/api/v2/tickets/{ticket_id}", include="users,organizations,comment_count") or {}
        raw = data.get("ticket")
        if not raw:
            raise NotFound(f"Zendesk ticket {ticket_id} not found")
        return self._ticket_from(raw, data)

    def fetch_tickets(self, ticket_ids: Sequence[str]) -> dict[str, Ticket]:
        """Many tickets in one read per SHOW_MANY_LIMIT ids (`GET /api/v2/tickets/show_many`, with the same
        sideloads as a ticket read): a burst of events across tickets costs one request instead of one per
        ticket. Tickets Zendesk does not return (deleted, merged) are left out: their pass reads them alone."""
        out: dict[str, Ticket] = {}
        ids = list(dict.fromkeys(str(t) for t in ticket_ids))
        for start in range(0, len(ids), SHOW_MANY_LIMIT):
            chunk = ids[start:start + SHOW_MANY_LIMIT]
            data = self.client.get("/api/v2/tickets/show_many", ids=",".join(chunk),
                                   include="users,organizations,comment_count") or {}
            for raw in data.get("tickets") or []:
                if raw and str(raw.get("id")) in chunk:
                    out[str(raw["id"])] = self._ticket_from(raw, data)
        return out

    def _ticket_from(self, raw: Mapping[str, Any], data: Mapping[str, Any]) -> Ticket:
        users = {str(u.get("id")): u for u in data.get("users") or []}
        orgs = {str(o.get("id")): o for o in data.get("organizations") or []}
        custom = {int(cf["id"]): cf.get("value") for cf in raw.get("custom_fields") or [] if cf.get("id") is not None}
        mapped = self._mapped_custom_field_ids() & set(custom)
        field_types = self._field_types(mapped) if mapped else {}
        requester_id = id_or_none(raw.get("requester_id"))
        requester = users.get(requester_id or "", {})
        assignee_id = id_or_none(raw.get("assignee_id"))
        assignee = users.get(assignee_id or "")
        organization = orgs.get(str(raw.get("organization_id")))
        first_reply, last_reply, last_author = self._public_agent_replies(
            str(raw["id"]), requester_id, raw.get("updated_at"), raw.get("comment_count"),
            only_description_by_requester=raw.get("comment_count") in (0, 1)
            and requester_id is not None and id_or_none(raw.get("submitter_id")) == requester_id)
        rating = raw.get("satisfaction_rating") or {}
        score = rating.get("score") if isinstance(rating, dict) else None
        ticket = ticket_from_raw(
            raw, self.matrix, custom=custom, field_types=field_types,
            organization=organization.get("name") if organization else None,
            requester=Person(id=requester_id, name=requester.get("name"), email=requester.get("email")),
            assignee=Person(id=assignee_id, name=assignee.get("name"), email=assignee.get("email")) if assignee_id else None,
            first_public_agent_reply_at=first_reply,
            last_public_agent_reply_at=last_reply,
            last_public_agent_reply_by=last_author,
            satisfaction=score if score in ("good", "bad") else None,
            url=f"{self.client.base_url}/agent/tickets/{raw['id']}",
        )
        customer = self._customer_fields(raw)
        people = self._role_names(ticket, field_types, users)
        changed = {**customer, **people}
        return ticket.with_(fields={**ticket.fields, **changed}) if changed else ticket

    def _role_names(self, ticket: Ticket, field_types: Mapping[int, str],
                    users: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Incident roles (attributes under a level's `roles:`) kept in a user lookup field hold a user id;
        notes and templates name the person, as Jira's user pickers do (displayName). The id is resolved from
        the ticket's sideloaded users, else by `GET /api/v2/users/{id}`, each user read at most once per
        ZENDESK_CUSTOMER_DATA_TTL_SECONDS (in the request budget); a failed read leaves the id."""
        roles = {name for level in self.matrix.levels for name in level.roles}
        out: dict[str, Any] = {}
        for name in roles:
            zd = self.matrix.fields[name].zendesk if name in self.matrix.fields else None
            value = ticket.fields.get(name)
            if zd is None or zd.custom_field is None or field_types.get(zd.custom_field) != "lookup" or value in (None, ""):
                continue
            user_id = str(value)
            known = users.get(user_id)
            if known and known.get("name"):
                out[name] = known["name"]
                continue

            def load(user_id: str = user_id) -> str | None:
                try:
                    return ((self.client.get(f"/api/v2/users/{user_id}") or {}).get("user") or {}).get("name")
                except NotFound:
                    return None

            try:
                shown = self._customer_data.get_or_load(("user_name", user_id), load)
            except ConnectorError:
                shown = None  # not cached: the next pass tries again
            if shown:
                out[name] = shown
        return out

    def field_changes(self, ticket: Ticket) -> dict[str, datetime]:
        """When each matrix attribute (the level among them) last changed, from the ticket audits
        (`GET /api/v2/tickets/{id}/audits`, one request per 100 audits). The pipeline asks only when a pass
        needs the time of a change: a level someone else set, or a move a rule caused."""
        audits = self.client.get_all(f"/api/v2/tickets/{ticket.id}/audits", "audits")
        return attribute_changes(audits, self.matrix)

    def _public_agent_replies(self, ticket_id: str, requester_id: str | None, updated_at: str | None = None,
                              comment_count: Any = None, *, only_description_by_requester: bool = False
                              ) -> tuple[datetime | None, datetime | None, Person | None]:
        """First and last public comment by an agent (an author who is neither the requester nor the
        integration user and, where Zendesk sideloads the author, whose role is agent or admin), and the
        author of the last one.

        Zendesk bumps a ticket's updated_at with every comment, so while updated_at is the one the replies
        were read at (a duplicate delivery, the echo of our own update) no comment is read at all; after a
        change only the comments newer than the newest one seen are read, newest first
        (`sort=-created_at`, cursor pages of 10), stopping at the first one already seen. The ticket read
        sideloads `comment_count` (include=comment_count): a change that left it as it was (tags, fields,
        status, an echo) added no comment, and no comment is read. A new ticket whose one comment is the
        description its requester submitted (submitter = requester) has no agent reply: nothing is read."""
        with self._replies_lock:
            seen = self._replies.get(ticket_id)
        if seen is not None and (seen.requester_id != requester_id or not self.remembers_comments):
            seen = None
        if seen is not None and updated_at is not None and seen.updated_at == updated_at:
            return seen.result()
        if seen is not None and comment_count is not None and seen.comment_count == comment_count:
            with self._replies_lock:
                seen.updated_at = updated_at
            return seen.result()
        sideloads: dict[str, list] = {}
        if seen is None and only_description_by_requester and self.remembers_comments:
            comments = []
        elif seen is None:
            comments = self.client.get_all(f"/api/v2/tickets/{ticket_id}/comments", "comments",
                                            sideloads=sideloads, include="users")
        else:
            comments = self._comments_newer_than(ticket_id, seen.newest_comment_id, sideloads)
        own = self.own_user_id()
        times: list[tuple[datetime, str]] = []
        authors = {str(u.get("id")): u for u in sideloads.get("users", [])}
        if seen is not None:
            times.extend(seen.times)
            authors = {**seen.authors, **authors}
        if seen is None:
            newest = str(comments[-1].get("id")) if comments else None
        else:
            newest = str(comments[0].get("id")) if comments else seen.newest_comment_id
        for comment in comments:
            if not comment.get("public"):
                continue
            author = str(comment.get("author_id")) if comment.get("author_id") is not None else None
            if author is None or author == requester_id or author == own:
                continue
            role = (authors.get(author) or {}).get("role")
            if role is not None and role not in AGENT_ROLES:
                continue
            when = parse_time(comment.get("created_at"))
            if when is not None:
                times.append((when, author))
        kept = _SeenReplies(updated_at=updated_at, requester_id=requester_id, newest_comment_id=newest,
                            comment_count=comment_count,
                            times=_first_and_last(times),
                            authors={a: authors[a] for _, a in _first_and_last(times) if a in authors})
        if updated_at is not None and self.remembers_comments:
            with self._replies_lock:
                self._replies.pop(ticket_id, None)
                self._replies[ticket_id] = kept
                while len(self._replies) > REMEMBERED_TICKETS:
                    self._replies.pop(next(iter(self._replies)))
        return kept.result()

    def _comments_newer_than(self, ticket_id: str, newest_seen: str | None,
                             sideloads: dict[str, list]) -> list[dict]:
        """Newest first, up to the newest comment already seen (Zendesk never deletes a comment, it only
        redacts one; should it be gone, every page is read)."""
        out: list[dict] = []
        url: str | None = f"/api/v2/tickets/{ticket_id}/comments"
        query: dict[str, Any] | None = {"sort": "-created_at", "include": "users", "page[size]": NEWER_COMMENTS_PAGE}
        while url:
            data = self.client.request("GET", url, params=query) or {}
            query = None
            for name, value in data.items():
                if name == "users" and isinstance(value, list):
                    sideloads.setdefault(name, []).extend(value)
            for comment in data.get("comments") or []:
                if newest_seen is not None and str(comment.get("id")) == newest_seen:
                    return out
                out.append(comment)
            meta, links = data.get("meta") or {}, data.get("links") or {}
            url = links.get("next") if meta.get("has_more") else None
        return out

    def _remember_stamp(self, ticket_id: str, sent_on: str, stamp: str) -> None:
        """After our own update (guarded by safe_update on the stamp the replies were read at) the ticket
        has only our own comments more, which never count as agent replies: the replies stay valid."""
        with self._replies_lock:
            seen = self._replies.get(ticket_id)
            if seen is not None and seen.updated_at == sent_on:
                seen.updated_at = stamp

    def webhook_ticket_stamp(self, payload: bytes) -> datetime | None:
        """`detail.updated_at` of an event-subscription body (the ticket after the change; its `time` is when
        the event was emitted and may lie in a later second), or `updated_at` of the README's trigger body
        ({{ticket.updated_at_with_timestamp}}). Hints and other bodies: None."""
        try:
            body = json.loads(payload)
        except (TypeError, ValueError, RecursionError):
            return None
        if not isinstance(body, dict):
            return None
        if str(body.get("type") or "").startswith("zen:event-type:ticket."):
            detail = body.get("detail")
            return parse_time(detail.get("updated_at")) if isinstance(detail, dict) else None
        if "ticket_id" in body and "current_user_id" in body:
            return parse_time(body.get("updated_at"))
        return None

    def changed_since(self, watermark: str | None, *, initial_lookback: timedelta = timedelta(hours=1)) -> Iterator[tuple[str, str]]:
        """Tickets changed since `watermark` via the cursor-based incremental export.

        `watermark` is an export cursor, or digits = a unix start time; None starts `initial_lookback`
        ago. Each ticket is yielded with the watermark that is safe to persist once it is processed: the
        previous cursor for all but the last ticket of a page, the page's `after_cursor` for the last, so
        a crash mid-page replays that page (at-least-once) instead of skipping its rest."""
        if watermark and not watermark.isdigit():
            params: dict[str, Any] = {"cursor": watermark}
            current = watermark
        else:
            start = int(watermark) if watermark else int((self._clock() - initial_lookback).timestamp())
            params = {"start_time": start}
            current = str(start)
        while True:
            page = self.client.get("/api/v2/incremental/tickets/cursor", **params) or {}
            tickets = page.get("tickets") or []
            after = page.get("after_cursor") or current
            seen: set[str] = set()
            for index, ticket in enumerate(tickets):
                ticket_id = str(ticket["id"])
                last = index == len(tickets) - 1
                if ticket_id in seen and not last:
                    continue
                seen.add(ticket_id)
                yield ticket_id, after if last else current
            if page.get("end_of_stream") or not page.get("after_cursor") or page.get("after_cursor") == current:
                return
            current = after
            params = {"cursor": after}

    # ------------------------------------------------------------------ write
    def build_updates(self, ticket: Ticket, decision: Decision) -> list[dict[str, Any]]:
        """The ticket bodies `apply` would send (without `safe_update`/`updated_stamp`), in order.

        The first update carries every field change plus the customer reply (or the note when there is
        no reply); an internal note that shares the decision with a reply goes in a second, comment-only
        update. Reply first: the customer-visible text and the level tag (hence the SLA policy) land
        together under one safe_update, so a stale snapshot sends the customer nothing; the note is
        informational and cannot overwrite anything an agent changed."""
        changes: dict[str, Any] = {}
        if decision.priority and decision.priority != ticket.priority:
            changes["priority"] = decision.priority
        if decision.owner_group and decision.owner_group != ticket.group:
            group = self.matrix.groups.get(decision.owner_group)
            if group is None or group.zendesk is None:
                raise Permanent(f"matrix group {decision.owner_group!r} has no Zendesk group id")
            changes["group_id"] = int(group.zendesk)

        current_tags = {t.lower() for t in ticket.tags}
        add: list[str] = [t.lower() for t in decision.add_tags]
        remove: list[str] = [t.lower() for t in decision.remove_tags]
        custom_fields: list[dict[str, Any]] = []
        for name, value in decision.field_updates.items():
            mapping = self.matrix.fields.get(name)
            if mapping is None or mapping.zendesk is None:
                raise Permanent(f"matrix field {name!r} has no Zendesk mapping")
            zd = mapping.zendesk
            if zd.read_only:
                raise Permanent(f"matrix field {name!r} is an organization/user field; the service only reads it")
            if zd.tag_prefix is not None:
                prefix = zd.tag_prefix.lower()
                new_tag = prefixed_tag(zd.tag_prefix, to_zendesk_value(zd, value)) if value not in (None, "") else None
                if new_tag:
                    add.append(new_tag)
                # The old value's tag goes: for `level` this takes the previous level's SLA policy off.
                remove.extend(t for t in current_tags if t.startswith(prefix) and t != new_tag)
            else:
                if ticket.fields.get(name) == value:
                    continue
                custom_fields.append({"id": zd.custom_field, "value": to_zendesk_value(zd, value)})
        add_tags = sorted({t for t in add if t not in current_tags})
        remove_tags = sorted({t for t in remove if t in current_tags and t not in add})
        if add_tags:
            changes["additional_tags"] = add_tags
        if remove_tags:
            changes["remove_tags"] = remove_tags
        if custom_fields:
            changes["custom_fields"] = custom_fields

        comments = []
        if decision.public_reply:
            comments.append({"body": decision.public_reply, "public": True})
        if decision.internal_note:
            comments.append({"body": decision.internal_note, "public": False})
        if not changes and not comments:
            return []
        updates = [dict(changes)]
        if comments:
            updates[0]["comment"] = comments[0]
            updates.extend({"comment": comment} for comment in comments[1:])
        return updates

    def apply(self, ticket: Ticket, decision: Decision, progress: ApplyProgress | None = None) -> ApplyResult:
        """Send `build_updates` in order, each under safe_update; before every update after the first,
        `progress` hears which parts Zendesk has confirmed and which the next update carries (a worker
        killed between the reply and the note update is recovered from that, see integration.pipeline).

        `sent` of a raised error: once any PUT of this apply may have been stored (it succeeded, or it
        failed with an unknown outcome, or met 409), every error raised says `sent=None`; `sent=False`
        comes through only when nothing of this apply can have reached Zendesk."""
        updates = self.build_updates(ticket, decision)
        result = ApplyResult()
        if updates:
            # A decision's updates are taken together, so a deferred decision is never half sent.
            wait = self.ticket_update_budget.try_acquire(str(ticket.id), len(updates))
            if wait > 0:
                raise not_sent(RateLimited(
                    f"Zendesk ticket {ticket.id}: {TICKET_UPDATES_PER_WINDOW} updates in "
                    f"{TICKET_UPDATE_WINDOW_SECONDS // 60} minutes reached; deferred", retry_after=wait))
        stamp = ticket.version_token
        # Our own comments from this apply are newer than the snapshot the decision was made from; an
        # identical comment from an earlier cycle (the same data request sent last week) is not.
        since = ticket.updated_at or parse_time(ticket.version_token)
        path = f"/api/v2/tickets/{ticket.id}"
        maybe_written = False
        chained = stamp is not None
        try:
            for index, changes in enumerate(updates):
                if index and progress is not None:
                    progress(list(result.parts), _update_parts(changes))
                for attempt in range(NOTE_CONFLICT_ROUNDS + 1):
                    # Every write is guarded: a retried PUT after an ambiguous timeout gets 409 instead of
                    # posting its comment twice, and an agent's concurrent edit is never overwritten.
                    body = {**changes, "safe_update": True, "updated_stamp": stamp} if stamp else changes
                    try:
                        response = self.client.request("PUT", path, body={"ticket": body}) or {}
                    except Conflict:
                        # 409 after an attempt that timed out may mean that attempt was stored.
                        maybe_written = True
                        comment = changes.get("comment")
                        if comment is None or (index == 0 and len(changes) > 1):
                            # A first update with field changes: the pipeline re-fetches and sees whether
                            # they are on the ticket (then the update was stored: `recovered`, no resend).
                            raise
                        stamp, posted = self._stamp_and_posted(ticket.id, comment, since)
                        # The fresh stamp may include someone else's change the decision never saw: from
                        # here on the ticket Zendesk returns is no longer "the snapshot plus our writes".
                        chained = False
                        if posted:
                            # An earlier, ambiguous attempt stored this comment-only update. Sending it
                            # again would repeat the comment; raising Conflict would let the pipeline
                            # decide again and repeat a customer reply (it cannot see a comment on the
                            # ticket's fields). Not counted in `writes` (no call of ours was confirmed);
                            # the request list records it.
                            result.requests.append({"method": "PUT", "path": path, "status": 409,
                                                    "already_stored": True, "comment_public": comment.get("public")})
                            result.parts.extend(_update_parts(changes))
                            break
                        # The first update raises: the pipeline re-fetches and re-decides. A later one is
                        # the comment-only note of a decision whose reply and fields are already written:
                        # it cannot overwrite an agent's edit, so it is re-sent on the fresh stamp.
                        if index == 0 or attempt == NOTE_CONFLICT_ROUNDS:
                            raise
                        continue
                    except ConnectorError as error:
                        if (index == 0 and attempt == 0 and isinstance(error, Permanent)
                                and _moves_assigned_group(changes, ticket) and _assignee_not_in_group(error)):
                            # Zendesk refused the move (422, nothing stored): resend once, assignee cleared.
                            updates[:] = _unassign_for_move(updates, ticket, self.matrix, decision.owner_group)
                            changes = updates[0]
                            result.requests.append({"method": "PUT", "path": path, "status": 422,
                                                    "assignee_not_in_group": True})
                            continue
                        if error.sent is not False:
                            maybe_written = True
                        raise
                    maybe_written = True
                    result.writes += 1
                    result.requests.append({"method": "PUT", "path": path, "status": 200,
                                            "comment_public": (changes.get("comment") or {}).get("public")})
                    new_stamp = (response.get("ticket") or {}).get("updated_at")
                    if new_stamp and stamp:
                        self._remember_stamp(ticket.id, stamp, new_stamp)
                    stamp = new_stamp or stamp
                    # Each update is guarded by the stamp of the one before, the first by the snapshot's:
                    # the returned version is the snapshot plus our writes (what their echo reports).
                    result.updated_at = parse_time(new_stamp) if chained else None
                    result.parts.extend(_update_parts(changes))
                    if index == 0 and _moves_assigned_group(changes, ticket) and \
                            (response.get("ticket") or {}).get("assignee_id", ticket.assignee.id) is None:
                        # The account unassigned silently: the note still says so (in the note not sent
                        # yet, or in one more internal comment when the note went with this update).
                        updates[:] = _unassign_for_move(updates, ticket, self.matrix, decision.owner_group,
                                                        sent=1)
                    break
        except ConnectorError as error:
            if maybe_written:
                error.sent = None
            raise
        return result

    def _stamp_and_posted(self, ticket_id: str, comment: Mapping[str, Any],
                          since: datetime | None) -> tuple[str | None, bool]:
        """The ticket's current updated_at, and whether `comment` is among its latest comments by the
        integration user, created after `since` (the snapshot's updated_at). Without `since` nothing
        counts as posted: a duplicate is better than a lost comment."""
        stamp = ((self.client.get(f"/api/v2/tickets/{ticket_id}") or {}).get("ticket") or {}).get("updated_at")
        if since is None:
            return stamp, False
        latest = (self.client.get(f"/api/v2/tickets/{ticket_id}/comments", sort="-created_at",
                                  **{"page[size]": 10}) or {}).get("comments") or []
        own = self.own_user_id()

        def ours_since(c: Mapping[str, Any]) -> bool:
            created = parse_time(c.get("created_at"))
            # Strictly newer: a comment from the snapshot's very second may be an earlier cycle's (its
            # write set that updated_at). Missing our own same-second comment costs a duplicate at
            # worst; counting an old one would silently drop this comment.
            return created is not None and created > since

        posted = any(str(c.get("author_id")) == own and c.get("body") == comment["body"]
                     and bool(c.get("public")) == bool(comment.get("public", True)) and ours_since(c)
                     for c in latest)
        return stamp, posted

    def own_comments(self, ticket_id: str, since: datetime | None) -> list[PostedComment]:
        """The integration user's comments on the ticket created strictly after `since` (vendor time),
        among its latest 100: what crash recovery looks for before sending a reply or note again."""
        latest = (self.client.get(f"/api/v2/tickets/{ticket_id}/comments", sort="-created_at",
                                  **{"page[size]": 100}) or {}).get("comments") or []
        own = self.own_user_id()
        posted = []
        for comment in latest:
            created = parse_time(comment.get("created_at"))
            if str(comment.get("author_id")) != own or (since is not None and (created is None or created <= since)):
                continue
            posted.append(PostedComment(body=str(comment.get("body") or ""), public=bool(comment.get("public")),
                                        created_at=created))
        return posted


# ------------------------------------------------------------------- group moves of assigned tickets
# Zendesk allows only an assignee who is a member of the ticket's group. Moving an assigned ticket to a
# group its assignee is not in is refused with 422 on most accounts, e.g. {"error": "RecordInvalid",
# "description": "Record validation errors", "details": {"assignee": [{"description": "Assignee: is not a
# member of the group"}]}} (zenpy issue #628); some accounts instead store the move and unassign. Neither
# case is known before the write without reading group memberships on every move, so the move is sent as
# is (one PUT when the assignee is a member, the common case) and only a refusal costs a second PUT.
def _moves_assigned_group(changes: Mapping[str, Any], ticket: Ticket) -> bool:
    return "group_id" in changes and "assignee_id" not in changes and bool(ticket.assignee and ticket.assignee.id)


def _assignee_not_in_group(error: ConnectorError) -> bool:
    text = str(error).lower()
    return "assignee" in text and "not a member of the group" in text


def unassign_note(ticket: Ticket, matrix: Matrix, group_key: str | None) -> str:
    """The sentence the internal note carries when a move of the service unassigned the ticket."""
    person = ticket.assignee.name or ticket.assignee.email or ticket.assignee.id if ticket.assignee else "?"
    group = matrix.groups.get(group_key or "")
    label = (group.label if group is not None and group.label else group_key) or "the new group"
    return f"Assignee {person} is not in {label}; unassigned so the ticket could move."


def _unassign_for_move(updates: list[dict[str, Any]], ticket: Ticket, matrix: Matrix, group_key: str | None,
                       *, sent: int = 0) -> list[dict[str, Any]]:
    """`updates` with the first one clearing the assignee (unless `sent` of them already went) and the
    unassignment said in the internal note: appended to the first unsent internal comment, else one more
    internal comment (in the first update when it has none and is unsent, else its own update)."""
    sentence = unassign_note(ticket, matrix, group_key)
    out = [dict(u) for u in updates]
    if sent == 0:
        out[0]["assignee_id"] = None
    for update in out[sent:]:
        comment = update.get("comment")
        if comment is not None and not comment.get("public", True):
            update["comment"] = {**comment, "body": f"{comment['body']}\n\n{sentence}"}
            return out
    if sent == 0 and "comment" not in out[0]:
        out[0]["comment"] = {"body": sentence, "public": False}
    else:
        out.append({"comment": {"body": sentence, "public": False}})
    return out


def _update_parts(changes: Mapping[str, Any]) -> list[str]:
    """The decision parts (connectors.base.PART_*) one ticket update carries."""
    parts = [PART_FIELDS] if any(key != "comment" for key in changes) else []
    comment = changes.get("comment")
    if comment:
        parts.append(PART_REPLY if comment.get("public", True) else PART_NOTE)
    return parts


# ------------------------------------------------------------------------------ construction
def build_from_env(matrix: Matrix, **kwargs: Any) -> ZendeskConnector | None:
    """The connector configured by ZENDESK_* variables, or None when none of the credential settings is
    set (dry run). Raises ConfigurationError when some are set but the set is incomplete. No network call.
    `kwargs` go to ZendeskConnector (e.g. `database_url=`, `redis_url=` for the shared request budget)."""
    settings = ZendeskSettings()
    if not settings.check_complete():
        return None
    return ZendeskConnector(settings, matrix, **kwargs)
