"""Durable state: database models and engine (db), leases, the JSON codec, events, timers, matrix versions
and the alembic migrations."""
