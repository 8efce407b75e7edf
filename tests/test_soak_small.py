"""A CI-sized scale-out soak (bench/bench_soak.py is the full one): real processes on PostgreSQL + Redis (the
web server as the Procfile runs it, two `escalation worker`s, the queue and the shared request budget on
Redis) against a Zendesk double over HTTP that answers some calls 429 with Retry-After and some 5xx (half
of the failed updates stored first). 300 signed webhooks over 60 tickets, a worker SIGKILLed while passes
run and restarted. Afterwards nothing is lost (every accepted event done, every ticket at the level,
priority and group the matrix gives its final state), no customer message was posted twice, and the double
never saw more requests in 60 s than ZENDESK_REQUESTS_PER_MINUTE."""
from __future__ import annotations

import pytest

from tests.support.soak_harness import SoakConfig, redis_db_url, run_soak

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

SOAK_REDIS_DB = 12  # the run flushes its Redis database: not the one the other tests share


def test_killed_workers_lose_nothing_repeat_no_message_and_keep_the_vendor_budget(postgres_url, redis_url):
    result = run_soak(SoakConfig(
        postgres_url=postgres_url, redis_url=redis_db_url(redis_url, SOAK_REDIS_DB),
        events=300, tickets=60, webs=1, workers=2, kill_every=2.0, max_kills=1,
        error_rate=0.05, rate_limited_rate=0.05, budget=3000, lease_seconds=3, reconcile_interval=2, timeout=120, seed=15))

    assert result.kills == 1
    assert result.accepted == 300
    assert result.double_counts.get("429 served", 0) > 0 and result.double_counts.get("5xx served", 0) > 0
    assert not result.timed_out, result.event_statuses
    assert result.lost_events == []
    assert result.wrong_tickets == []
    assert result.duplicate_messages == []
    assert result.over_budget == 0 and result.peak_in_window <= 3000
