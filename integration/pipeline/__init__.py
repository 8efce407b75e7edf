"""The processing pass: one ticket, all of its pending events at once.

    process_ticket(vendor, ticket_id, deps=deps)   # events -> fetch once, decide once, write once
    fire_timer(timer_id, deps=deps)                # a due timer -> integration.clocks.on_timer
    reconcile_once(deps)                           # expired leases, forgotten events, overdue timers

Concurrency: a pass holds the lease `ticket:<vendor>:<id>` (table `leases`), renewed by a heartbeat
while it runs, so one ticket is handled by one worker at a time; a task that finds the lease taken
re-queues itself a moment later. Events are claimed (`pending -> processing`, `lease_until`) under
that lease; a worker killed with -9 stops renewing, and the reconciler puts its events back to pending.

Exactly-once writes on top of at-least-once delivery (the write-ahead intent):
1. decide on a fresh snapshot; if the decision writes to the ticket, first COMMIT a `decisions` row
   with status `applying` holding the decision and the state it leads to;
2. call `connector.apply` (Zendesk refuses stale snapshots with 409 -> Conflict -> re-fetch, re-decide,
   at most 3 times). A refusal does not prove nothing was written: the retry layer may re-send a PUT
   whose first attempt timed out after Zendesk stored it (the guarded retry then gets 409), and JSM
   may take the field PUT and then refuse the comment POST (404). So on Conflict and on permanent
   errors the ticket is re-fetched first: if any structured effect of the decision shows, the intent
   completes as `recovered` (state advanced, no second write, the error kept on the row); only
   otherwise is it closed (`conflict` -> decide again, or `failed` -> dead letter);
3. COMMIT in one transaction: the decision row -> `applied` with the API result, the ticket state,
   milestones/CSAT rows, timers, and the events -> `done`.
A crash between 1 and 3 leaves an `applying` row. A decision has up to three parts (fields, reply, note;
connectors.base.PART_*) and may take several requests (Zendesk: fields + reply, then the note; JSM:
field edit, reply, note); between two requests the connector reports progress and the intent row records
which parts the vendor confirmed and which go out next (`decisions.parts`). The next pass for the ticket
(the events are still pending, so there is one) re-fetches the ticket and checks each part on its own
(`_part_outcomes`): the fields on the ticket, the reply and the note among the integration user's own
comments newer than the decision's snapshot (`Connector.own_comments`). Nothing confirmed and no
structured effect visible -> the first request never landed -> `abandoned` and decided afresh.
Otherwise the stored state is committed as `recovered`, after sending what is missing:
- the internal note whenever it is not on the ticket: at least once, a duplicated note is acceptable, a
  lost warning is not;
- the customer reply only when its request had certainly not started (the recorded progress shows a
  later request without it): at most once, never twice. A comment-only intent whose connector said the
  call certainly did not reach the vendor (`ConnectorError.sent is False`: refused before sending,
  connect timeout, 429) is closed as `abandoned` at once and the next pass decides (and sends) again.
The outcome of each part (written / visible / resent / unconfirmed / not sent / assumed) is kept on the
row for `escalation history`. A connector whose `own_comments` cannot list them (None: a test double writing one
request per decision) has its comments taken as written with the fields, and a note-only intent sent again.

Failures: transient errors are retried with backoff; permanent ones (and MAX_ATTEMPTS) dead-letter the
pass's events, except a NotFound while a deletion/merge event of the ticket is pending (DELETION_EVENTS):
the ticket is gone on purpose, so its events are done, its timers cancelled and its state `deleted`.

Field and group mappings: a ticket pinned to an older matrix version is read and written through a
connector built for that version (`PassDeps.connector_for_version`), so a mapping change cannot break
it (see service.runtime.mapping_matrix for which mapping wins).

Modules: `deps` (PassDeps, results, constants), `claims` (ticket lease, heartbeat, claiming events),
`cycle` (process_ticket, fire_timer: fetch, decide, apply), `intent` (write-ahead intent, per-part
recovery), `commit` (the final commit), `failures` (backoff, dead letters, deleted tickets), `reconcile`
(the reconciler), `admin` (re-pinning, open tickets per version).
"""
from integration.pipeline.admin import open_tickets_by_version, repin, repin_open
from integration.pipeline.cycle import fire_timer, process_ticket, process_tickets
from integration.pipeline.deps import PassDeps, PassResult
from integration.pipeline.reconcile import ReconcileReport, reconcile_once

__all__ = [
    "PassDeps",
    "PassResult",
    "ReconcileReport",
    "fire_timer",
    "open_tickets_by_version",
    "process_ticket",
    "process_tickets",
    "reconcile_once",
    "repin",
    "repin_open",
]
