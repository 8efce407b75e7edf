"""What several command modules need: the service settings (a bad setting is a one-line click error, never a
traceback) and the configured database."""
from __future__ import annotations

import click


def configured_settings():
    from pydantic import ValidationError

    from service.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise click.ClickException(f"invalid configuration: {problems}") from None


def configured_database():
    from integration.store.db import DatabaseConfigError, get_database

    try:
        return get_database(configured_settings().database_url)
    except DatabaseConfigError as exc:
        raise click.ClickException(str(exc)) from None
