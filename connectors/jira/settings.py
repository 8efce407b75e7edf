"""Jira Service Management settings (JIRA_* environment variables) and the options normalisation
reads from them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import AllOrNothingCredentials, credential_given
from connectors.customer_data import DEFAULT_TTL_SECONDS
from connectors.http import Redactor


VENDOR = "jira"
JSM_API = "/rest/servicedeskapi"
PAGE_SIZE = 100


# ------------------------------------------------------------------------------------------ settings
def split_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


class JiraSettings(AllOrNothingCredentials, BaseSettings):
    vendor_label: ClassVar[str] = "Jira"
    env_prefix_label: ClassVar[str] = "JIRA_"
    missing_separator: ClassVar[str] = ", "

    """Jira/JSM API settings. URL, email and token are optional here so the settings always load;
    `build_from_env` returns None (dry run) when none of them is set and raises ConfigurationError when
    only some are."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    url: str | None = Field(None, alias="JIRA_URL")  # https://your-domain.atlassian.net
    email: str | None = Field(None, alias="JIRA_EMAIL")  # the API user's login email (basic auth with the token)
    api_token: SecretStr | None = Field(None, alias="JIRA_API_TOKEN")
    project_keys_csv: str = Field("", alias="JIRA_PROJECT_KEYS")  # comma-separated, e.g. "SUP,OPS"
    api_version: int = Field(3, alias="JIRA_API_VERSION", ge=2, le=3)  # platform REST API version
    account_id: str | None = Field(None, alias="JIRA_ACCOUNT_ID")  # skip the `myself` lookup when set
    # Site-specific custom field ids of JSM's own fields (Jira admin > Issues > Custom fields).
    organization_field: str | None = Field(None, alias="JIRA_ORGANIZATION_FIELD")  # "Organizations"
    request_type_field: str | None = Field(None, alias="JIRA_REQUEST_TYPE_FIELD")  # "Request Type"
    # Status names (case-insensitive) with a neutral meaning beyond their status category.
    pending_statuses_csv: str = Field("Waiting for customer", alias="JIRA_PENDING_STATUSES")
    on_hold_statuses_csv: str = Field("Pending", alias="JIRA_ON_HOLD_STATUSES")
    closed_statuses_csv: str = Field("Closed,Canceled,Cancelled", alias="JIRA_CLOSED_STATUSES")
    # JQL without a zone is read in the API user's time zone; None = take it from `myself`.
    timezone_name: str | None = Field(None, alias="JIRA_TIMEZONE")
    timeout_seconds: float = Field(30.0, alias="JIRA_TIMEOUT_SECONDS", gt=0)
    # Other bots/apps whose public comments must not count as an agent's acknowledgement (account ids).
    non_agent_accounts_csv: str = Field("", alias="JIRA_NON_AGENT_ACCOUNTS")
    # JSM SLA metric names per matrix clock, when the project's differ from the defaults, e.g.
    # "acknowledge=Time to first response,resolve=Time to resolution" (see connectors.jira.sla).
    sla_metrics_csv: str = Field("", alias="JIRA_SLA_METRICS")
    # How long a JSM organization's properties (matrix `organization_property`) are reused before they are
    # read again.
    customer_data_ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, alias="JIRA_CUSTOMER_DATA_TTL_SECONDS", gt=0)
    # Client-side request budget per site, shared like Zendesk's (connectors.ratelimit.limiter_for). Jira
    # Cloud's own limits are cost-based and answered with 429 + Retry-After; this keeps a burst of events
    # from spending the site's quota that other apps share.
    requests_per_minute: int = Field(300, alias="JIRA_REQUESTS_PER_MINUTE", gt=0)

    @property
    def project_keys(self) -> list[str]:
        return split_list(self.project_keys_csv)

    @property
    def has_credentials(self) -> bool:
        return not self.missing_settings()

    def credential_settings_given(self) -> list[str]:
        """Names of the JIRA_* credential settings that are set (names only, never values)."""
        values = {"JIRA_URL": self.url, "JIRA_EMAIL": self.email, "JIRA_API_TOKEN": self.api_token}
        return [name for name, value in values.items() if credential_given(value)]

    def missing_settings(self) -> list[str]:
        given = self.credential_settings_given()
        return [name for name in ("JIRA_URL", "JIRA_EMAIL", "JIRA_API_TOKEN") if name not in given]

    def describe(self) -> str:
        """One line for the start-up banner: mode, identity and site; never the token."""
        if not self.credential_settings_given():
            return "dry run (no JIRA_* credentials): issues are read from webhooks, nothing is written"
        missing = self.missing_settings()
        if missing:
            return f"incomplete settings (missing {', '.join(missing)})"
        parts = urlsplit(str(self.url))
        where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return f"live as {self.email} on {where}"

    @property
    def sla_metric_names(self) -> dict[str, str]:
        pairs = (item.split("=", 1) for item in split_list(self.sla_metrics_csv) if "=" in item)
        return {clock.strip(): name.strip() for clock, name in pairs}

    def redactor(self) -> Redactor:
        """What must never appear in a message: the token and the login email in every encoded form, and
        the Basic credential the client sends (`base64("email:TOKEN")`)."""
        token = self.api_token.get_secret_value() if self.api_token is not None else ""
        return Redactor([token, self.email], basic_credentials=[(str(self.email), token)] if self.email else [])

    def status_config(self) -> "StatusConfig":
        return StatusConfig(
            pending=frozenset(s.lower() for s in split_list(self.pending_statuses_csv)),
            on_hold=frozenset(s.lower() for s in split_list(self.on_hold_statuses_csv)),
            closed=frozenset(s.lower() for s in split_list(self.closed_statuses_csv)),
        )


@dataclass(frozen=True)
class StatusConfig:
    pending: frozenset[str] = frozenset({"waiting for customer"})
    on_hold: frozenset[str] = frozenset({"pending"})
    closed: frozenset[str] = frozenset({"closed", "canceled", "cancelled"})


@dataclass(frozen=True)
class NormalizeOptions:
    """What normalization needs beyond the matrix (all from JiraSettings)."""

    server_url: str | None = None
    statuses: StatusConfig = StatusConfig()
    organization_field: str | None = None
    request_type_field: str | None = None
    own_account_id: str | None = None
    non_agents: frozenset[str] = frozenset()  # account ids whose public comments are not agent replies

    @classmethod
    def from_settings(cls, settings: JiraSettings, own_account_id: str | None = None) -> "NormalizeOptions":
        return cls(
            server_url=(settings.url or "").rstrip("/") or None,
            statuses=settings.status_config(),
            organization_field=settings.organization_field,
            request_type_field=settings.request_type_field,
            own_account_id=own_account_id or settings.account_id,
            non_agents=frozenset(split_list(settings.non_agent_accounts_csv)),
        )
