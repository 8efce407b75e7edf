"""Shared fixtures. PostgreSQL and Redis tests skip with a visible reason where the services are absent;
`.ci/run` sets REQUIRE_SERVICES=1, which turns those skips into failures."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "matrix_config" / "examples"
# Vendor reference data (OpenAPI subsets, sample payloads, the vendor README): tests/vendor/SOURCE.md.
VENDOR_DIR = REPO_ROOT / "tests" / "vendor"

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _require(service: str, url: str, default_port: int) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    if _reachable(host, port):
        return
    reason = f"{service} not reachable at {host}:{port}"
    if os.environ.get("REQUIRE_SERVICES"):
        pytest.fail(f"{reason}, and REQUIRE_SERVICES is set (CI makes {service} mandatory)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    _require("PostgreSQL", POSTGRES_URL, 5432)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    _require("Redis", REDIS_URL, 6379)
    return REDIS_URL


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """A fresh, empty database for the test, once on a SQLite file and once in a temporary PostgreSQL
    schema (dropped afterwards, with the web sink's turn file of its URL)."""
    from integration.store.db import reset_databases
    from tests.support.fake_connector import postgres_schema_url

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/var/escalation.db"
        reset_databases()
        return
    url, drop = postgres_schema_url(request.getfixturevalue("postgres_url"))
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def enterprise_matrix_path() -> Path:
    return EXAMPLES / "enterprise.yaml"


@pytest.fixture(scope="session")
def vendor_dir() -> Path:
    return VENDOR_DIR
