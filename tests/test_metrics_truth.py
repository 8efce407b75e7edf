"""The metrics tell the truth (issue 13), on a week of history seeded through the pipeline with the fake
helpdesk (tests/support/metrics_history.py has the timeline): a ticket placed straight at L3 is an L3
escalation, clocks are measured on the level's business calendar across a night and a weekend, a breached
and a met clock count as such, CSAT is compared before and after an incident, and dry-run rows stay
apart. Every expected value is worked out by hand in the comments (times UTC; Berlin = UTC+1)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from integration import metrics
from matrix_config.loader import load_matrix
from tests.support.fake_connector import postgres_schema_url
from tests.support.metrics_history import NOW, build_history, utc

INCIDENT_LEVELS = ("L3", "L4")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def history(request, tmp_path_factory):
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('metrics')}/escalation.db", None
    else:
        url, drop = postgres_schema_url(request.getfixturevalue("postgres_url"))
    built = build_history(url)
    yield built
    built.dispose()
    if drop:
        drop()


@pytest.fixture(scope="module")
def matrix(history):
    return history.live.matrix().matrix


def rows(items, *names):
    return [tuple(getattr(item, n) for n in names) for item in items]


# ------------------------------------------------------------------------------------ percentiles
def test_percentiles_are_nearest_rank():
    # n = 4: p50 -> rank ceil(0.5 * 4) = 2 -> 20; p90 -> rank ceil(3.6) = 4 -> 40; p25 -> rank 1 -> 10.
    assert [metrics.percentile([40, 10, 30, 20], p) for p in (25, 50, 90, 100)] == [10, 20, 40, 40]
    # n = 1: every percentile is the value.
    assert metrics.percentile([7.5], 90) == 7.5
    with pytest.raises(ValueError):
        metrics.percentile([], 50)


# ------------------------------------------------------------------------------------ escalation frequency
def test_every_entry_into_a_level_counts_and_a_placement_at_l3_is_an_l3_escalation(history):
    result = metrics.escalation_frequency(history.live.db, dry_run=False, since=utc(11, 23, 0))
    # From Mon 11-23 (404's placement on Oct 1 is before `since`):
    #   L1 bug      placed 603, 605, 604, 601, 602                 = 5
    #   L1 question placed 401, 402, 405, 403                      = 4
    #   L2 bug      605 set by hand (Tue), 602 moved up by breach  = 2
    #   L3 outage   301 placed straight at L3 by rule              = 1 (today's code counted 0)
    assert rows(result, "level", "issue_type", "escalations", "placed", "moved_up", "set_by_hand", "tickets") == [
        ("L1", "bug", 5, 5, 0, 0, 5),
        ("L1", "question", 4, 4, 0, 0, 4),
        ("L2", "bug", 2, 0, 1, 1, 2),
        ("L3", "outage", 1, 1, 0, 0, 1),
    ]


def test_escalations_per_organization_and_per_iso_week(history):
    db = history.live.db
    by_org = metrics.escalation_frequency(db, by=("organization",), dry_run=False, since=utc(11, 23, 0))
    # L1: 8 acme tickets (603 605 401 402 604 403 601 602) and globex's 405; L2 605+602; L3 301: all acme.
    assert rows(by_org, "level", "organization", "escalations") == [
        ("L1", "acme", 8), ("L1", "globex", 1), ("L2", "acme", 2), ("L3", "acme", 1)]
    by_week = metrics.escalation_frequency(db, by=("week",), dry_run=False, since=utc(11, 23, 0))
    # 2026-W48 is Mon 11-23 .. Sun 11-29: L1 9, L2 605 only, L3 301; 602 entered L2 on Mon 11-30 = W49.
    assert rows(by_week, "level", "week", "escalations", "set_by_hand", "moved_up") == [
        ("L1", "2026-W48", 9, 0, 0), ("L2", "2026-W48", 1, 1, 0), ("L2", "2026-W49", 1, 0, 1),
        ("L3", "2026-W48", 1, 0, 0)]
    with pytest.raises(ValueError, match="cannot group escalations by team"):
        metrics.escalation_frequency(db, by=("team",))


# ------------------------------------------------------------------------------------ time to milestone
def test_time_to_acknowledge_in_wall_clock_and_business_time_as_p50_p90_max(history, matrix):
    result = metrics.clock_times(history.live.db, matrix, clocks=("acknowledge",), dry_run=False)
    # L1 bug, calendar "business" (Mon-Fri 08-18 Berlin):
    #   603 Mon 08:00 -> 08:30          wall 1,800 s   business 1,800 s (09:00-09:30 Berlin)
    #   604 Tue 16:00 -> Wed 07:30      wall 15h30m = 55,800 s; business Tue 17:00-18:00 (3,600)
    #                                   + Wed 08:00-08:30 (1,800) = 5,400 s
    #   601 Fri 16:30 -> Mon 07:20      wall 62h50m = 226,200 s; business Fri 17:30-18:00 (1,800)
    #                                   + Mon 08:00-08:20 (1,200) = 3,000 s
    #   n = 3: p50 = rank ceil(1.5) = 2nd, p90 = rank ceil(2.7) = 3rd.
    #   wall [1800, 55800, 226200] -> p50 55,800, p90 226,200, max 226,200
    #   business [1800, 3000, 5400] -> p50 3,000, p90 5,400, max 5,400
    # L3 outage: 301 Wed 09:00 -> 09:10 = 600 s, in business hours both ways.
    assert rows(result, "level", "issue_type", "count", "wall_p50_seconds", "wall_p90_seconds", "wall_max_seconds",
                "business_p50_seconds", "business_p90_seconds", "business_max_seconds", "calendar") == [
        ("L1", "bug", 3, 55800.0, 226200.0, 226200.0, 3000.0, 5400.0, 5400.0, "business"),
        ("L3", "outage", 1, 600.0, 600.0, 600.0, 600.0, 600.0, 600.0, "business"),
    ]
    # Without a matrix there is no calendar: wall-clock only.
    (l1, _) = metrics.clock_times(history.live.db, clocks=("acknowledge",), dry_run=False)
    assert (l1.wall_p50_seconds, l1.business_p50_seconds, l1.calendar) == (55800.0, None, None)


def test_time_to_resolve_of_the_incident(history, matrix):
    (resolve,) = metrics.clock_times(history.live.db, matrix, clocks=("resolve",), dry_run=False)
    # 301 entered L3 Wed 09:00, solved Thu 09:00: wall 86,400 s; business Wed 10:00-18:00 Berlin (8 h)
    # + Thu 08:00-10:00 (2 h) = 36,000 s.
    assert rows([resolve], "level", "count", "wall_max_seconds", "business_max_seconds") == [("L3", 1, 86400.0, 36000.0)]


# ------------------------------------------------------------------------------------ SLA attainment
def test_attainment_counts_a_met_and_a_breached_clock_on_business_hours(history, matrix):
    result = metrics.sla_attainment(history.live.db, matrix, dry_run=False, now=NOW)
    by_key = {(a.level, a.clock, a.issue_type): a for a in result}
    # L1 acknowledge (target 1 h business), the five bug tickets placed at L1:
    #   603  1,800 s <= 3,600             met
    #   601  3,000 s <= 3,600             met   (entered Friday evening, acknowledged Monday morning)
    #   604  5,400 s >  3,600             breached: met after the target (across a night)
    #   602  breach timer fired Mon 07:45 breached, recorded (its 50 % warning fired at 07:15: 1 warning)
    #   605  left L1 Tue 09:00 unacknowledged; business Mon 10:00-18:00 = 8 h > 1 h: breached, ran out
    #   -> clocks 5, met 2, breached 3, open 0, attainment 2 / 5 = 0.4
    l1 = by_key[("L1", "acknowledge", "bug")]
    assert (l1.clocks, l1.met, l1.breached, l1.open, l1.warnings, l1.attainment) == (5, 2, 3, 0, 1, 0.4)
    # L3 (301): acknowledged in 600 s <= 15 min: met. Diagnose (2 h) and interim fix (8 h) had no milestone
    # before it was solved Thu 09:00: 10 business hours had run: breached. Resolve 36,000 s <= 2 d: met.
    assert [(c, by_key[("L3", c, "outage")].met, by_key[("L3", c, "outage")].breached)
            for c in ("acknowledge", "diagnose", "interim_fix", "resolve")] == [
        ("acknowledge", 1, 0), ("diagnose", 0, 1), ("interim_fix", 0, 1), ("resolve", 1, 0)]
    # L2 (605 from Tue 10:00 Berlin, 602 from Mon 08:45 Berlin): no acknowledgement, 30 min target long gone
    # at NOW (Mon 10:00 Berlin: 602 has run 75 min). Resolve (3 d) is still open for both.
    l2 = by_key[("L2", "acknowledge", "bug")]
    assert (l2.clocks, l2.breached, l2.attainment) == (2, 2, 0.0)
    assert (by_key[("L2", "resolve", "bug")].open, by_key[("L2", "resolve", "bug")].attainment) == (2, None)


def test_breach_reasons_name_what_the_service_recorded_or_what_the_timestamps_show(history, matrix):
    reasons = metrics.breach_reasons(history.live.db, matrix, dry_run=False, now=NOW)
    l1_ack = {r.reason: r.breaches for r in reasons if (r.level, r.clock) == ("L1", "acknowledge")}
    # 602's breach as the service recorded it; 604 met late; 605 and the five unanswered L1 question
    # tickets (404 401 402 405 403) ran out without an acknowledgement: 6.
    assert l1_ack == {history.breach_reason: 1, "met after the target": 1, "ran out without a milestone": 6}
    assert history.breach_reason == "L1 -> L2: breach of acknowledge"
    assert reasons == sorted(reasons, key=lambda r: -r.breaches)


# ------------------------------------------------------------------------------------ time in level
def test_time_in_each_level(history):
    result = metrics.time_in_level(history.live.db, dry_run=False, now=NOW)
    # L1 finished stays: 605 Mon 09:00 -> Tue 09:00 = 86,400 s; 602 Fri 16:45 -> Mon 07:45 = 63 h = 226,800 s.
    #   p50 = rank 1 = 86,400; p90 = rank ceil(1.8) = 2 = 226,800. Still at L1: 404 401 402 405 403 603 604 601 = 8.
    # L2: 605 and 602 are still there. L3: 301 from Wed 09:00 until solved Thu 09:00 = 86,400 s.
    assert rows(result, "level", "stays", "open", "p50_seconds", "p90_seconds", "max_seconds") == [
        ("L1", 2, 8, 86400.0, 226800.0, 226800.0),
        ("L2", 0, 2, None, None, None),
        ("L3", 1, 0, 86400.0, 86400.0, 86400.0),
    ]


# ------------------------------------------------------------------------------------ incidents and CSAT
def test_incidents_at_l3_l4_with_their_durations(history):
    (incident,) = metrics.incidents(history.live.db, INCIDENT_LEVELS, dry_run=False)
    assert (incident.ticket_id, incident.level, incident.entered_as, incident.organization, incident.requester,
            incident.started_at, incident.resolved_at, incident.duration_seconds) == (
        "301", "L3", "placed", "acme", "cust-1", utc(11, 25, 9), utc(11, 26, 9), 86400.0)
    # A window after it was resolved leaves it out; one it overlaps keeps it.
    assert metrics.incidents(history.live.db, INCIDENT_LEVELS, dry_run=False, since=utc(11, 27, 0)) == []
    assert len(metrics.incidents(history.live.db, INCIDENT_LEVELS, dry_run=False, since=utc(11, 26, 0))) == 1


def test_csat_of_the_organization_before_and_after_the_incident(history):
    (around,) = metrics.csat_around_incidents(history.live.db, INCIDENT_LEVELS, dry_run=False)
    # acme's ratings in the 30 days before Wed 11-25 09:00: 401 good (1), 402 bad (0) -> 2, 0.5. (404's bad
    # rating on Oct 1 is older than 30 days; 405's good one is globex's.)
    # After it was solved Thu 11-26 09:00: 301's own good rating Thu 12:00, 403 good Fri -> 2, 1.0.
    assert (around.customer, around.before_ratings, around.before_score, around.after_ratings,
            around.after_score) == ("organization acme", 2, 0.5, 2, 1.0)
    # A 1-day window keeps only 402 (Tue 10:00) before and 301 (Thu 12:00) after.
    (narrow,) = metrics.csat_around_incidents(history.live.db, INCIDENT_LEVELS, dry_run=False,
                                              window=timedelta(days=1))
    assert (narrow.before_ratings, narrow.before_score, narrow.after_ratings, narrow.after_score) == (1, 0.0, 1, 1.0)


def test_csat_escalated_vs_never_escalated_counts_a_placement_at_l3_as_escalated(history):
    result = metrics.csat_before_after_escalation(history.live.db, dry_run=False)
    # Never escalated: 404 bad, 401 good, 402 bad, 405 good, 403 good -> 5 ratings, 3/5 = 0.6.
    # Escalated: 301, placed straight at L3, rated good -> 1, 1.0.
    assert rows(result, "escalated", "ratings", "avg_score") == [(False, 5, 0.6), (True, 1, 1.0)]


# ------------------------------------------------------------------------------------ dry run apart
def test_dry_run_rows_are_kept_apart_everywhere(history, matrix):
    db = history.live.db
    # 501 was handled only by the dry-run service: it appears in the dry-run figures and in no live one.
    assert rows(metrics.escalation_frequency(db, dry_run=True), "level", "placed", "dry_run") == [("L3", 1, True)]
    (ack,) = metrics.clock_times(db, matrix, clocks=("acknowledge",), dry_run=True)
    assert (ack.level, ack.count, ack.wall_max_seconds, ack.dry_run) == ("L3", 1, 300.0, True)  # 12:00 -> 12:05
    assert rows(metrics.csat_before_after_escalation(db, dry_run=True), "escalated", "ratings", "dry_run") == [
        (True, 1, True)]
    (incident,) = metrics.incidents(db, INCIDENT_LEVELS, dry_run=True)
    assert (incident.ticket_id, incident.resolved_at, incident.dry_run) == ("501", None, True)
    # Asked for both, live and dry run come back as separate rows, never summed.
    both = metrics.escalation_frequency(db, since=utc(11, 23, 0))
    assert rows([c for c in both if c.level == "L3"], "escalations", "dry_run") == [(1, False), (1, True)]
    assert rows(metrics.time_to_acknowledge(db), "level", "count", "dry_run") == [
        ("L1", 3, False), ("L3", 1, False), ("L3", 1, True)]
    assert all(not c.dry_run for c in metrics.escalation_frequency(db, include_dry_run=False))
