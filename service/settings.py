"""Service configuration from the environment (pydantic-settings). Secrets are SecretStr: they never
print, log or reach the database. Vendor API settings live with their connectors
(connectors.zendesk.settings.ZendeskSettings, connectors.jira.settings.JiraSettings)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import redact_url

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def default_matrix_path() -> str:
    """The packaged example matrix, found from the installed package (any working directory)."""
    import matrix_config

    return str(Path(matrix_config.__file__).resolve().parent / "examples" / "enterprise.yaml")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    matrix_path: str = Field(default_factory=default_matrix_path, alias="MATRIX_PATH")
    database_url: str = Field("sqlite:///var/escalation.db", alias="DATABASE_URL")
    queue_url: str = Field("sqlite:///var/queue.db", alias="QUEUE_URL")
    dry_run: bool | None = Field(None, alias="DRY_RUN")  # None: dry run unless vendor credentials are set

    zendesk_webhook_secret: SecretStr | None = Field(None, alias="ZENDESK_WEBHOOK_SECRET")
    jira_webhook_secret: SecretStr | None = Field(None, alias="JIRA_WEBHOOK_SECRET")
    # JSM automation "Send web request" cannot sign: it sends this header with this shared secret instead.
    jira_shared_secret_header: str = Field("X-Escalation-Token", alias="JIRA_SHARED_SECRET_HEADER")
    jira_shared_secret: SecretStr | None = Field(None, alias="JIRA_SHARED_SECRET")

    # GET /metrics (webhooks.prometheus) asks for `Authorization: Bearer <METRICS_TOKEN>` when set; open when unset.
    metrics_token: SecretStr | None = Field(None, alias="METRICS_TOKEN")
    webhook_max_age_seconds: int = Field(300, alias="WEBHOOK_MAX_AGE_SECONDS", gt=0)
    webhook_max_body_bytes: int = Field(1024 * 1024, alias="WEBHOOK_MAX_BODY_BYTES", gt=0)

    # Workers and the durable pipeline (service.runtime / integration.pipeline).
    worker_concurrency: int = Field(2, alias="WORKER_CONCURRENCY", gt=0)  # worker threads per `escalation worker`
    # A pass renews its leases every LEASE_SECONDS/3 while it runs; one whose worker stopped renewing this
    # long (killed) is run again, and a timer in flight during the kill waits at most this long.
    lease_seconds: int = Field(30, alias="LEASE_SECONDS", gt=0)
    reconcile_interval_seconds: int = Field(30, alias="RECONCILE_INTERVAL_SECONDS", gt=0)
    scan_interval_seconds: int = Field(300, alias="SCAN_INTERVAL_SECONDS", gt=0)  # catch-up scan of changed tickets
    # "auto": one worker applies the Zendesk SLA plan every SLA_SYNC_INTERVAL_SECONDS; "off": by command only.
    sla_sync: Literal["off", "auto"] = Field("off", alias="SLA_SYNC")
    sla_sync_interval_seconds: int = Field(3600, alias="SLA_SYNC_INTERVAL_SECONDS", gt=0)  # with SLA_SYNC=auto
    max_attempts: int = Field(8, alias="MAX_ATTEMPTS", gt=0)  # transient failures before an event is dead-lettered
    shutdown_timeout_seconds: int = Field(20, alias="SHUTDOWN_TIMEOUT_SECONDS", ge=0)  # SIGTERM: finish passes this long
    log_level: str = Field("INFO", alias="LOG_LEVEL")
    # Where every worker shares the vendors' client-side request budgets (connectors.ratelimit); unset: a
    # redis:// QUEUE_URL, else a PostgreSQL DATABASE_URL, else one budget per process.
    redis_url: str | None = Field(None, alias="REDIS_URL")
    # Ticket snapshots (integration.snapshots, for `escalation replay`) older than this are pruned by the
    # worker's periodic jobs.
    snapshot_retention_days: int = Field(90, alias="SNAPSHOT_RETENTION_DAYS", gt=0)
    # Live matrix reload (service.matrix_reload): how often a process looks at MATRIX_PATH for a change when it
    # uses the matrix (0: at every use), and whether open tickets move to a reloaded version (default: no).
    matrix_watch_seconds: float = Field(5.0, alias="MATRIX_WATCH_SECONDS", ge=0)
    matrix_repin: Literal["none", "all"] = Field("none", alias="MATRIX_REPIN")

    @field_validator("sla_sync", mode="before")
    @classmethod
    def _sla_sync_word(cls, value: Any) -> Any:
        # "AUTO", " auto " and an empty SLA_SYNC= line mean what they say; anything else ("on") is refused.
        return (value.strip().lower() or "off") if isinstance(value, str) else value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_scheme(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, str) and not value.startswith(REDIS_SCHEMES):
            # The message never repeats the value: it may hold a password.
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    # DATABASE_URL, QUEUE_URL and REDIS_URL may hold passwords: whatever prints settings shows them redacted.
    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (redact_url(value) if value and name in ("database_url", "queue_url", "redis_url") else value)

    def describe_database(self) -> str:
        return redact_url(self.database_url)

    def describe_queue(self) -> str:
        return redact_url(self.queue_url)

    def describe_redis(self) -> str:
        return redact_url(self.redis_url)

