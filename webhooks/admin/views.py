"""Admin console routes: sign-in (password or OIDC), matrix, tickets in flight, ticket timeline (repin),
metrics charts, dead letters (retry). Every POST carries a CSRF token (Flask-WTF), checked in this
blueprint only: the signed webhook routes never see it. Viewers read; admins also retry and repin."""
from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from functools import wraps
from typing import Any, Callable

from flask import (Blueprint, Flask, Response, abort, current_app, flash, redirect, render_template, request,
                   session, url_for)
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from service.settings import Settings
from webhooks.admin import data
from webhooks.admin.auth import AttemptLimiter, ConsoleSettings, Passwords, oidc_role, session_key

log = logging.getLogger("webhooks.admin")

ENABLE_HINT = ("The admin console is disabled: no credentials are configured. Set ADMIN_PASSWORD_HASH (or "
               "ADMIN_PASSWORD) and optionally VIEWER_PASSWORD_HASH, or OIDC_ISSUER, OIDC_CLIENT_ID and "
               "OIDC_CLIENT_SECRET, then restart.")


class Console:
    """Per-app console state: credentials, the attempt limiter, and the service runtime (built on first use)."""

    def __init__(self, settings: Settings, console: ConsoleSettings, clock: Callable[[], datetime],
                 runtime: Any = None):
        self.settings = settings
        self.console = console
        self.clock = clock
        self.passwords = Passwords.of(console)
        self.limiter = AttemptLimiter(console.login_attempts, console.login_window_seconds)
        self._runtime = runtime
        self.oauth: Any = None

    @property
    def enabled(self) -> bool:
        return bool(self.passwords.hashes) or self.console.oidc_enabled

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from service.runtime import get_runtime

            self._runtime = get_runtime(self.settings)
        return self._runtime

    def matrix(self) -> Any:
        return self.runtime.matrix()


def _console() -> Console:
    return current_app.extensions["admin_console"]


blueprint = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates",
                      static_folder="static", static_url_path="/static")
csrf = CSRFProtect()
OPEN_ENDPOINTS = {"admin.login", "admin.login_oidc", "admin.oidc_callback", "admin.static"}


def _signed_in() -> dict[str, Any] | None:
    user = session.get("admin")
    if not user or user.get("until", 0) < datetime.now(timezone.utc).timestamp():
        return None
    return user


@blueprint.before_request
def _guard() -> Any:
    if request.method == "POST":
        csrf.protect()  # CSRFError (400) for a POST without a valid token, signed in or not
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    if _signed_in() is None:
        if request.method != "GET":
            abort(401, "sign in first")
        return redirect(url_for("admin.login", next=request.full_path if request.query_string else request.path))
    return None


@blueprint.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@blueprint.errorhandler(HTTPException)
def _refused(exc: HTTPException) -> tuple[str, int]:
    return render_template("admin/message.html", title=exc.name, message=exc.description), exc.code or 500


@blueprint.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError) -> tuple[str, int]:
    return render_template("admin/message.html", title="Refused", message=f"Refused: {exc.description}"), 400


@blueprint.app_template_filter("when")
def _when(value: datetime | str | None) -> str:
    if not value:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@blueprint.context_processor
def _context() -> dict[str, Any]:
    console = current_app.extensions.get("admin_console")
    return {"user": _signed_in(), "oidc_enabled": bool(console and console.console.oidc_enabled),
            "password_enabled": bool(console and console.passwords.hashes)}


def admin_only(view: Callable) -> Callable:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user = _signed_in()
        if user is None or user.get("role") != "admin":
            abort(403, "this needs the admin role")
        return view(*args, **kwargs)
    return wrapper


def _start_session(name: str, role: str) -> None:
    session.clear()  # a fresh session at sign-in (no fixation)
    hours = _console().console.session_hours
    session["admin"] = {"name": name, "role": role,
                        "until": (datetime.now(timezone.utc) + timedelta(hours=hours)).timestamp()}
    session.permanent = True


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/admin") and not target.startswith("//"):
        return target
    return url_for("admin.tickets")


# ------------------------------------------------------------------------------------ sign-in
@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    console = _console()
    if request.method == "GET":
        return render_template("admin/login.html", next=request.args.get("next", ""))
    client = request.remote_addr or "unknown"
    if console.limiter.blocked(client):
        log.warning("admin sign-in refused: too many failed attempts from %s", client)
        return render_template("admin/login.html", error="Too many failed attempts; wait a few minutes.",
                               next=request.form.get("next", "")), 429
    role = console.passwords.role_for(request.form.get("password", ""))
    if role is None:
        console.limiter.failed(client)
        log.info("admin sign-in failed from %s", client)
        return render_template("admin/login.html", error="Wrong password.", next=request.form.get("next", "")), 401
    console.limiter.succeeded(client)
    _start_session(f"password ({role})", role)
    log.info("admin sign-in as %s from %s", role, client)
    return redirect(_safe_next(request.form.get("next")))


@blueprint.post("/logout")
def logout() -> Any:
    session.clear()
    return redirect(url_for("admin.login"))


@blueprint.get("/login/oidc")
def login_oidc() -> Any:
    console = _console()
    if console.oauth is None:
        abort(404, "single sign-on is not configured")
    session["admin_next"] = _safe_next(request.args.get("next"))
    return console.oauth.oidc.authorize_redirect(url_for("admin.oidc_callback", _external=True))


@blueprint.get("/oidc/callback")
def oidc_callback() -> Any:
    console = _console()
    if console.oauth is None:
        abort(404, "single sign-on is not configured")
    from authlib.integrations.base_client.errors import OAuthError

    try:
        token = console.oauth.oidc.authorize_access_token()  # checks state, nonce and the ID token's signature
    except OAuthError as exc:  # a stale or forged callback, or the issuer refused: say which, never the token
        log.warning("admin OIDC sign-in refused: %s", exc.error)
        return render_template("admin/login.html", error=f"Single sign-on failed ({exc.error}); try again.",
                               next=""), 401
    claims = dict(token.get("userinfo") or {})
    role = oidc_role(claims, console.console)
    target = session.get("admin_next")
    _start_session(str(claims.get("email") or claims.get("preferred_username") or claims.get("sub", "oidc user")), role)
    log.info("admin sign-in through OIDC as %s", role)
    return redirect(_safe_next(target))


# ------------------------------------------------------------------------------------ pages
@blueprint.get("/")
def index() -> Any:
    return redirect(url_for("admin.tickets"))


@blueprint.get("/matrix")
def matrix() -> str:
    console = _console()
    loaded = console.matrix()
    db = console.runtime.db
    stored = data.versions(db, loaded.version)
    old, new = request.args.get("old"), request.args.get("new")
    compared = data.version_diff(db, old, new) if old and new else None
    return render_template("admin/matrix.html", loaded=loaded, levels=data.matrix_levels(loaded.matrix),
                           rules=data.matrix_rules(loaded.matrix, data.rule_hits(db)),
                           warnings=data.warnings(loaded), versions=stored, compared=compared,
                           zendesk=data.zendesk_policies(loaded.matrix), jsm=data.jsm_goals(loaded.matrix))


@blueprint.get("/tickets")
def tickets() -> str:
    console = _console()
    loaded = console.matrix()
    filters = {name: request.args.get(name) or None for name in ("level", "vendor", "state")}
    found = data.tickets_in_flight(console.runtime.db, loaded, console.clock(), **filters)
    return render_template("admin/tickets.html", tickets=found, filters=filters, limit=data.TICKETS_PER_PAGE,
                           levels=[level.id for level in loaded.matrix.levels], now=console.clock())


@blueprint.get("/tickets/<vendor>/<ticket_id>")
def ticket(vendor: str, ticket_id: str) -> str:
    console = _console()
    loaded = console.matrix()
    found = data.ticket_timeline(console.runtime.db, loaded, vendor, ticket_id, console.clock())
    if found is None:
        abort(404, f"the service holds no state for {vendor} ticket {ticket_id}")
    return render_template("admin/ticket.html", found=found, current_version=loaded.version,
                           versions=data.versions(console.runtime.db, loaded.version))


@blueprint.post("/tickets/<vendor>/<ticket_id>/repin")
@admin_only
def repin(vendor: str, ticket_id: str) -> Any:
    from integration.pipeline.admin import repin as repin_ticket
    from integration.store.events import add_hint

    console = _console()
    version = request.form.get("version", "").strip()
    try:
        repin_ticket(console.runtime.db, vendor, ticket_id, version)
    except KeyError as exc:
        flash(str(exc.args[0]), "error")
        return redirect(url_for("admin.ticket", vendor=vendor, ticket_id=ticket_id))
    add_hint(console.runtime.db, vendor, ticket_id, "repin", key=uuid.uuid4().hex)  # a pass re-decides with it
    console.runtime.enqueue_ticket(vendor, ticket_id)
    log.info("admin %s repinned %s %s to matrix %s", _signed_in()["name"], vendor, ticket_id, version)
    flash(f"{vendor} {ticket_id} is pinned to matrix {version[:12]}; a pass is queued", "ok")
    return redirect(url_for("admin.ticket", vendor=vendor, ticket_id=ticket_id))


@blueprint.get("/metrics")
def metrics() -> str:
    console = _console()
    loaded = console.matrix()
    weeks = max(1, min(int(request.args.get("weeks", "8") or 8), 52)) if request.args.get("weeks", "8").isdigit() else 8
    charts = data.chart_data(console.runtime.db, loaded.matrix, console.clock(), weeks)
    return render_template("admin/metrics.html", charts=charts, weeks=weeks,
                           chart_json={name: json.dumps(value) for name, value in charts.items()})


@blueprint.get("/dead-letters")
def dead_letters() -> str:
    console = _console()
    return render_template("admin/dead_letters.html", events=data.dead_letters(console.runtime.db))


@blueprint.post("/dead-letters/<int:event_id>/retry")
@admin_only
def retry(event_id: int) -> Any:
    from integration.store.events import retry_dead

    console = _console()
    requeued = retry_dead(console.runtime.db, [event_id])
    for vendor, ticket_id in requeued:
        console.runtime.enqueue_ticket(vendor, ticket_id)
    if requeued:
        log.info("admin %s retried dead letter %s", _signed_in()["name"], event_id)
        flash(f"event {event_id} is pending again (fresh attempts); {requeued[0][0]} {requeued[0][1]} is queued", "ok")
    else:
        flash(f"event {event_id} is not a dead letter (already retried?)", "error")
    return redirect(url_for("admin.dead_letters"))


# ------------------------------------------------------------------------------------ wiring
def register_console(app: Flask, settings: Settings, clock: Callable[[], datetime], *,
                     console_settings: ConsoleSettings | None = None, runtime: Any = None) -> Console:
    """Mount the console on `app`. With no credentials configured it mounts nothing (/admin answers 404, the
    app's routes stay exactly the webhook ones) and logs how to enable it."""
    console = Console(settings, console_settings or ConsoleSettings(), clock, runtime)
    app.extensions["admin_console"] = console
    if not console.enabled:
        log.warning(ENABLE_HINT)
        return console
    app.secret_key = session_key(console.console)
    app.config.update(WTF_CSRF_CHECK_DEFAULT=False,  # checked in the console's own before_request only
                      SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SECURE=console.console.cookie_secure,
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=console.console.session_hours))
    csrf.init_app(app)
    if console.console.oidc_enabled:
        from authlib.integrations.flask_client import OAuth

        oauth = OAuth(app)
        oauth.register("oidc", client_id=console.console.oidc_client_id,
                       client_secret=console.console.oidc_client_secret.get_secret_value(),  # type: ignore[union-attr]
                       server_metadata_url=console.console.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration",  # type: ignore[union-attr]
                       client_kwargs={"scope": "openid email profile"})
        console.oauth = oauth
    app.register_blueprint(blueprint)
    methods = [name for name, on in (("password", bool(console.passwords.hashes)),
                                     ("OIDC", console.console.oidc_enabled)) if on]
    roles = sorted(console.passwords.hashes)
    log.info("admin console at /admin: sign-in by %s%s", " and ".join(methods),
             f" (password roles: {', '.join(roles)})" if roles else "")
    return console
