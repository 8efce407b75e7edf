"""Who may use the console: passwords from the environment (an admin one and a read-only one) and OIDC
(Authlib) when configured. Nothing here logs or returns a secret."""
from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from werkzeug.security import check_password_hash, generate_password_hash

Role = Literal["viewer", "admin"]


class ConsoleSettings(BaseSettings):
    """ADMIN_PASSWORD_HASH / ADMIN_PASSWORD sign in as admin, VIEWER_PASSWORD_HASH / VIEWER_PASSWORD read-only
    (a *_HASH is a werkzeug hash: `python -c "from werkzeug.security import generate_password_hash as g;
    print(g('...'))"`). OIDC_ISSUER + OIDC_CLIENT_ID + OIDC_CLIENT_SECRET enable single sign-on; members of
    OIDC_ADMIN_GROUP (in the OIDC_GROUPS_CLAIM claim) are admins, everyone else the issuer signs in reads."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    admin_password_hash: SecretStr | None = Field(None, alias="ADMIN_PASSWORD_HASH")
    admin_password: SecretStr | None = Field(None, alias="ADMIN_PASSWORD")
    viewer_password_hash: SecretStr | None = Field(None, alias="VIEWER_PASSWORD_HASH")
    viewer_password: SecretStr | None = Field(None, alias="VIEWER_PASSWORD")
    # Signs the session cookie; unset: derived from the configured credentials, so every worker agrees and a
    # changed password signs everyone out.
    secret_key: SecretStr | None = Field(None, alias="ADMIN_SECRET_KEY")
    oidc_issuer: str | None = Field(None, alias="OIDC_ISSUER")
    oidc_client_id: str | None = Field(None, alias="OIDC_CLIENT_ID")
    oidc_client_secret: SecretStr | None = Field(None, alias="OIDC_CLIENT_SECRET")
    oidc_groups_claim: str = Field("groups", alias="OIDC_GROUPS_CLAIM")
    oidc_admin_group: str | None = Field(None, alias="OIDC_ADMIN_GROUP")
    login_attempts: int = Field(5, alias="ADMIN_LOGIN_ATTEMPTS", gt=0)  # failed sign-ins per client ...
    login_window_seconds: int = Field(300, alias="ADMIN_LOGIN_WINDOW_SECONDS", gt=0)  # ... in this window
    session_hours: int = Field(8, alias="ADMIN_SESSION_HOURS", gt=0)
    cookie_secure: bool = Field(False, alias="ADMIN_COOKIE_SECURE")  # true behind TLS: the cookie only over HTTPS

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id and self.oidc_client_secret)


def _hash_of(hashed: SecretStr | None, plain: SecretStr | None) -> str | None:
    if hashed is not None and hashed.get_secret_value().strip():
        return hashed.get_secret_value().strip()
    if plain is not None and plain.get_secret_value():
        return generate_password_hash(plain.get_secret_value())
    return None


@dataclass
class Passwords:
    """The password hashes per role; `role_for` compares against every one (no early exit)."""

    hashes: dict[str, str]

    @classmethod
    def of(cls, settings: ConsoleSettings) -> "Passwords":
        found = {"admin": _hash_of(settings.admin_password_hash, settings.admin_password),
                 "viewer": _hash_of(settings.viewer_password_hash, settings.viewer_password)}
        return cls({role: value for role, value in found.items() if value})

    def role_for(self, password: str) -> Role | None:
        matches = [role for role, hashed in self.hashes.items() if check_password_hash(hashed, password)]
        if "admin" in matches:
            return "admin"
        return "viewer" if matches else None


@dataclass
class AttemptLimiter:
    """Failed sign-ins per client address in a sliding window (per process: each worker counts its own)."""

    attempts: int
    window_seconds: float
    clock: object = time.monotonic
    _failures: dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _recent(self, client: str, now: float) -> deque:
        failures = self._failures.setdefault(client, deque())
        while failures and now - failures[0] >= self.window_seconds:
            failures.popleft()
        return failures

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, self.clock())) >= self.attempts  # type: ignore[operator]

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()  # type: ignore[operator]
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # forget idle clients so a scan cannot grow memory for ever
                for key in [k for k, v in self._failures.items() if not v][:5_000]:
                    del self._failures[key]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)


def session_key(settings: ConsoleSettings) -> bytes:
    """ADMIN_SECRET_KEY, else a key derived from the credentials as configured (not from a hash made at start,
    which is salted differently in every worker), so every worker and restart accepts the same cookie."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode()
    values = [settings.admin_password_hash, settings.admin_password, settings.viewer_password_hash,
              settings.viewer_password, settings.oidc_client_secret]
    material = "\x00".join(value.get_secret_value() if value is not None else "" for value in values)
    return hmac.new(b"escalation-admin-session", material.encode(), hashlib.sha256).digest()


def oidc_role(claims: dict, settings: ConsoleSettings) -> Role:
    groups = claims.get(settings.oidc_groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    return "admin" if settings.oidc_admin_group and settings.oidc_admin_group in groups else "viewer"
