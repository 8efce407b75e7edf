"""Zendesk Support settings (ZENDESK_* environment variables): credentials, account, budget, timeouts."""
from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.base import AllOrNothingCredentials, credential_given
from connectors.customer_data import DEFAULT_TTL_SECONDS
from connectors.http import Redactor


VENDOR = "zendesk"

AGENT_ROLES = {"agent", "admin"}
# ------------------------------------------------------------------------------------------ settings
class ZendeskSettings(AllOrNothingCredentials, BaseSettings):
    vendor_label: ClassVar[str] = "Zendesk"
    env_prefix_label: ClassVar[str] = "ZENDESK_"

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    subdomain: str | None = Field(None, alias="ZENDESK_SUBDOMAIN")
    base_url: str | None = Field(None, alias="ZENDESK_BASE_URL")  # sandbox or proxy, e.g. https://acme1.zendesk.com
    email: str | None = Field(None, alias="ZENDESK_EMAIL")
    api_token: SecretStr | None = Field(None, alias="ZENDESK_API_TOKEN")
    oauth_token: SecretStr | None = Field(None, alias="ZENDESK_OAUTH_TOKEN")
    # Client-side budget for all workers together; the plan's limit (Enterprise 700/min) minus headroom
    # for agents' apps and other integrations on the same account.
    requests_per_minute: int = Field(400, alias="ZENDESK_REQUESTS_PER_MINUTE", gt=0)
    user_id: str | None = Field(None, alias="ZENDESK_USER_ID")  # the integration user; else learned from users/me
    timeout_seconds: float = Field(30.0, alias="ZENDESK_TIMEOUT_SECONDS", gt=0)
    # How long an organization's / user's custom fields (matrix `organization_field` / `user_field`) are
    # reused before they are read again.
    customer_data_ttl_seconds: int = Field(DEFAULT_TTL_SECONDS, alias="ZENDESK_CUSTOMER_DATA_TTL_SECONDS", gt=0)

    @property
    def api_base(self) -> str | None:
        if self.base_url:
            return self.base_url.rstrip("/")
        if self.subdomain:
            return f"https://{self.subdomain}.zendesk.com"
        return None

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_base) and self._has_auth

    @property
    def _has_auth(self) -> bool:
        return credential_given(self.oauth_token) or (credential_given(self.email) and credential_given(self.api_token))

    def credential_settings_given(self) -> list[str]:
        """Names of the ZENDESK_* credential settings that are set (names only, never values)."""
        values = {"ZENDESK_SUBDOMAIN": self.subdomain, "ZENDESK_BASE_URL": self.base_url,
                  "ZENDESK_EMAIL": self.email, "ZENDESK_API_TOKEN": self.api_token,
                  "ZENDESK_OAUTH_TOKEN": self.oauth_token}
        return [name for name, value in values.items() if credential_given(value)]

    def missing_settings(self) -> list[str]:
        """What is still needed for a live connector; [] when complete. Each item names settings only."""
        missing: list[str] = []
        if not self.api_base:
            missing.append("ZENDESK_SUBDOMAIN or ZENDESK_BASE_URL")
        if not self._has_auth:
            if credential_given(self.api_token):
                missing.append("ZENDESK_EMAIL (an API token authenticates together with the agent's email)")
            elif credential_given(self.email):
                missing.append("ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN")
            else:
                missing.append("ZENDESK_EMAIL + ZENDESK_API_TOKEN, or ZENDESK_OAUTH_TOKEN")
        return missing

    def describe(self) -> str:
        """One line for the start-up banner: mode, identity and account; never a token."""
        if not self.credential_settings_given():
            return "dry run (no ZENDESK_* credentials): tickets are read from webhooks, nothing is written"
        missing = self.missing_settings()
        if missing:
            return f"incomplete settings (missing {'; '.join(missing)})"
        parts = urlsplit(self.api_base or "")
        where = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        who = "with an OAuth token" if credential_given(self.oauth_token) else f"as {self.email}"
        return f"live {who} on {where}"

    def redactor(self) -> Redactor:
        """What must never appear in a message: both tokens in every encoded form, and the Basic
        credential Zendesk's API-token authentication sends (`base64("email/token:TOKEN")`)."""
        api_token = self.api_token.get_secret_value() if self.api_token is not None else ""
        oauth_token = self.oauth_token.get_secret_value() if self.oauth_token is not None else ""
        basic = [(f"{self.email}/token", api_token)] if self.email and api_token else []
        return Redactor([api_token, oauth_token], basic_credentials=basic)
