"""Admin console through HTTP (Flask test client): disabled without credentials, sign-in and its rate limit,
CSRF on every POST, roles, OIDC wiring, the vendored chart library, and what the pages show for the
seeded week. tests/test_admin_console_browser.py drives the same pages in Chromium."""
from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from pathlib import Path

import pytest
import responses

from integration.store.events import list_events
from tests.support.console_app import ADMIN_PASSWORD, VIEWER_PASSWORD, console_app, console_env, seed

STATIC = Path(__file__).resolve().parents[1] / "webhooks" / "admin" / "static"


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    built = seed(f"sqlite:///{tmp_path_factory.mktemp('console') / 'console.db'}")
    yield built
    built.dispose()


@pytest.fixture
def app(history):
    with console_env():
        yield console_app(history.database_url)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def sign_in(client, password: str = ADMIN_PASSWORD):
    token = csrf_of(client.get("/admin/login").get_data(as_text=True))
    return client.post("/admin/login", data={"password": password, "csrf_token": token})


def test_without_credentials_the_console_is_off_and_says_how_to_enable_it(history, caplog):
    with console_env(ADMIN_PASSWORD="", VIEWER_PASSWORD=""), caplog.at_level(logging.WARNING):
        app = console_app(history.database_url)
    assert app.test_client().get("/admin/matrix").status_code == 404
    assert not [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/admin")]
    (line,) = [r.getMessage() for r in caplog.records if "admin console is disabled" in r.getMessage()]
    assert "ADMIN_PASSWORD_HASH" in line and "OIDC_ISSUER" in line


def test_pages_refuse_until_signed_in(app):
    client = app.test_client()
    for page in ("/admin/matrix", "/admin/tickets", "/admin/tickets/zendesk/301", "/admin/metrics", "/admin/dead-letters"):
        answer = client.get(page)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/admin/login"), page
    token = csrf_of(client.get("/admin/login").get_data(as_text=True))
    assert client.post("/admin/dead-letters/1/retry", data={"csrf_token": token}).status_code == 401


def test_a_post_without_csrf_token_is_refused_even_signed_in(app, history):
    client = app.test_client()
    assert client.post("/admin/login", data={"password": ADMIN_PASSWORD}).status_code == 400
    assert sign_in(client).status_code == 302
    answer = client.post(f"/admin/dead-letters/{history.dead_event_id}/retry")
    assert answer.status_code == 400 and "CSRF token is missing" in answer.get_data(as_text=True)
    assert [e.id for e in list_events(history.live.db, status="dead")] == [history.dead_event_id]


def test_wrong_passwords_are_rate_limited_per_client(app):
    client = app.test_client()
    for _ in range(5):
        assert sign_in(client, "guess").status_code == 401
    assert sign_in(client, ADMIN_PASSWORD).status_code == 429  # even the right one, until the window passes
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert sign_in(other, ADMIN_PASSWORD).status_code == 302


def test_a_password_hash_from_the_environment_signs_in_and_no_secret_reaches_the_log(history, caplog):
    from werkzeug.security import generate_password_hash

    with console_env(ADMIN_PASSWORD="", ADMIN_PASSWORD_HASH=generate_password_hash("hashed secret 1")), \
            caplog.at_level(logging.DEBUG):
        client = console_app(history.database_url).test_client()
        assert sign_in(client, "hashed secret 1").status_code == 302
        assert sign_in(client, VIEWER_PASSWORD).status_code == 302
        assert sign_in(client, "hashed secret 2").status_code == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "hashed secret" not in logged and VIEWER_PASSWORD not in logged
    assert "admin console at /admin: sign-in by password (password roles: admin, viewer)" in logged


def test_the_session_cookie_is_http_only_and_secure_when_asked(history):
    with console_env(ADMIN_COOKIE_SECURE="true"):
        client = console_app(history.database_url).test_client()
    cookie = sign_in(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie


def test_a_session_from_one_worker_is_accepted_by_another(history):
    # gunicorn runs several workers, each building the app from the same environment (ADMIN_PASSWORD is
    # hashed with a fresh salt in each): a sign-in on one must hold on the next.
    with console_env():
        first, second = console_app(history.database_url), console_app(history.database_url)
    client = first.test_client()
    sign_in(client)
    cookie = client.get_cookie("session")
    other = second.test_client()
    other.set_cookie("session", cookie.value)
    assert other.get("/admin/matrix").status_code == 200
    with console_env(ADMIN_PASSWORD="a new admin password"):
        changed = console_app(history.database_url).test_client()
    changed.set_cookie("session", cookie.value)
    assert changed.get("/admin/matrix").status_code == 302  # a changed password signs everyone out


def test_a_viewer_reads_but_cannot_retry_or_repin(app, history):
    client = app.test_client()
    sign_in(client, VIEWER_PASSWORD)
    page = client.get("/admin/dead-letters").get_data(as_text=True)
    assert "NotFound" in page and 'class="retry"' not in page
    token = csrf_of(page)
    assert client.post(f"/admin/dead-letters/{history.dead_event_id}/retry", data={"csrf_token": token}).status_code == 403
    assert client.post("/admin/tickets/zendesk/301/repin", data={"csrf_token": token, "version": "x"}).status_code == 403
    assert 'id="repin"' not in client.get("/admin/tickets/zendesk/301").get_data(as_text=True)


def test_webhook_routes_need_no_csrf_token(app):
    # The signed vendor routes answer on their own terms (no secret configured here: 503), never "CSRF".
    answer = app.test_client().post("/webhooks/zendesk", data=b"{}", content_type="application/json")
    assert "CSRF" not in answer.get_data(as_text=True)


@responses.activate
def test_oidc_sign_in_redirects_to_the_issuer_with_the_client_and_a_state(history):
    # A full round trip needs a real provider; this checks the wiring up to the redirect.
    issuer = "https://login.example.test/realms/support"
    responses.get(f"{issuer}/.well-known/openid-configuration", json={
        "issuer": issuer, "authorization_endpoint": f"{issuer}/auth", "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/certs", "userinfo_endpoint": f"{issuer}/userinfo"})
    with console_env(ADMIN_PASSWORD="", VIEWER_PASSWORD="", OIDC_ISSUER=issuer, OIDC_CLIENT_ID="escalation-console",
                     OIDC_CLIENT_SECRET="oidc-client-secret"):
        client = console_app(history.database_url).test_client()
        login = client.get("/admin/login").get_data(as_text=True)
        assert 'id="sign-in-oidc"' in login and 'id="password"' not in login
        answer = client.get("/admin/login/oidc")
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith(f"{issuer}/auth?")
    assert "client_id=escalation-console" in location and "state=" in location and "nonce=" in location
    assert "redirect_uri=http%3A%2F%2Flocalhost%2Fadmin%2Foidc%2Fcallback" in location
    assert "oidc-client-secret" not in location


@pytest.mark.parametrize("groups, role", [(["support-leads", "escalation-admins"], "admin"), (["support"], "viewer")])
@responses.activate
def test_oidc_callback_signs_in_with_the_role_of_the_group_claim(history, groups, role):
    # The issuer is played with mocked HTTP (discovery, token endpoint, JWKS) and an ID token signed with a
    # key made here; Authlib checks state, nonce, issuer, audience and signature.
    import time
    from urllib.parse import parse_qs, urlparse

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    issuer = "https://login.example.test/realms/support"
    key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"}, private=True)
    responses.get(f"{issuer}/.well-known/openid-configuration", json={
        "issuer": issuer, "authorization_endpoint": f"{issuer}/auth", "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/certs", "id_token_signing_alg_values_supported": ["RS256"]})
    responses.get(f"{issuer}/certs", json={"keys": [key.as_dict(private=False)]})
    with console_env(ADMIN_PASSWORD="", VIEWER_PASSWORD="", OIDC_ISSUER=issuer, OIDC_CLIENT_ID="escalation-console",
                     OIDC_CLIENT_SECRET="oidc-client-secret", OIDC_ADMIN_GROUP="escalation-admins"):
        client = console_app(history.database_url).test_client()
        query = parse_qs(urlparse(client.get("/admin/login/oidc?next=/admin/matrix").headers["Location"]).query)
        now = int(time.time())
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, {
            "iss": issuer, "aud": "escalation-console", "sub": "u-17", "email": "lead@example.test",
            "nonce": query["nonce"][0], "iat": now, "exp": now + 300, "groups": groups}, key)
        responses.post(f"{issuer}/token", json={"access_token": "at", "token_type": "Bearer", "expires_in": 300,
                                                "id_token": id_token})
        answer = client.get(f"/admin/oidc/callback?code=c-1&state={query['state'][0]}")
        assert answer.status_code == 302 and answer.headers["Location"] == "/admin/matrix"
        page = client.get("/admin/dead-letters").get_data(as_text=True)
        assert f"lead@example.test · {role}" in page
        assert ('class="retry"' in page) == (role == "admin")
        forged = console_app(history.database_url).test_client()
        refused = forged.get(f"/admin/oidc/callback?code=c-1&state={query['state'][0]}")  # no state in its session
        assert refused.status_code == 401 and "Single sign-on failed (mismatching_state)" in refused.get_data(as_text=True)


def test_vendored_chart_library_matches_its_recorded_version_and_hash():
    manifest = json.loads((STATIC / "VENDORED.json").read_text())
    entry = manifest["chart.umd.js"]
    assert entry["package"] == "chart.js" and re.fullmatch(r"\d+\.\d+\.\d+", entry["version"])
    assert hashlib.sha256((STATIC / "chart.umd.js").read_bytes()).hexdigest() == entry["sha256"]


def test_matrix_page_shows_levels_rules_with_hits_versions_and_vendor_sla_rows(app):
    client = app.test_client()
    sign_in(client)
    page = client.get("/admin/matrix").get_data(as_text=True)
    for level in ("L1", "L2", "L3", "L4"):
        assert f'data-level="{level}"' in page
    hits = dict(re.findall(r'data-rule="([^"]+)">.*?class="num hits">(\d+)<', page, re.S))
    assert hits["enterprise-outage"] == "2"  # 301 placed, 701 held for data (the dry-run 501 is not counted)
    assert 'id="zendesk-sla"' in page and "[matrix] " in page and 'id="jsm-goals"' in page


def test_tickets_in_flight_show_clock_states_and_filter(app):
    client = app.test_client()
    sign_in(client)
    page = client.get("/admin/tickets").get_data(as_text=True)
    assert 'data-ticket="zendesk:602"' in page and 'data-ticket="zendesk:301"' not in page  # 301 is solved
    breached = client.get("/admin/tickets?state=breached").get_data(as_text=True)
    assert re.findall(r'data-ticket="([^"]+)" data-state="(\w+)"', breached) and \
        {state for _, state in re.findall(r'data-ticket="([^"]+)" data-state="(\w+)"', breached)} == {"breached"}
    held = client.get("/admin/tickets?state=held").get_data(as_text=True)
    assert re.findall(r'data-ticket="([^"]+)"', held) == ["zendesk:701"]
    assert "for L3: account_id, affected_users, recent_changes" in held
    l3 = client.get("/admin/tickets?level=L3").get_data(as_text=True)
    assert re.findall(r'data-ticket="([^"]+)"', l3) == ["zendesk:501"]  # 301 was solved
    assert "<td>incident_commander, customer_contact</td>" in l3  # missing roles
    l2 = client.get("/admin/tickets?level=L2").get_data(as_text=True)
    assert 'data-ticket="zendesk:602"' in l2 and 'data-ticket="zendesk:603"' not in l2


@pytest.fixture
def second_version(history):
    """A second stored matrix version: the example with L2's acknowledge target 30m -> 20m."""
    from integration.store.matrix_versions import store_version
    from matrix_config.loader import load_matrix_text
    from tests.support.fake_connector import make_settings

    path = make_settings(history.database_url).matrix_path
    text = Path(path).read_text().replace("sla: {acknowledge: 30m, diagnose: 4h", "sla: {acknowledge: 20m, diagnose: 4h", 1)
    loaded = load_matrix_text(text, "draft.yaml")
    with history.live.db.session() as session:
        store_version(session, loaded, text)
    return loaded.version


def test_matrix_page_compares_two_stored_versions(app, history, second_version):
    client = app.test_client()
    sign_in(client)
    current = re.search(r'id="current-version">(\w+)<', client.get("/admin/matrix").get_data(as_text=True)).group(1)
    page = client.get(f"/admin/matrix?old={history.live.matrix().version}&new={second_version}").get_data(as_text=True)
    assert history.live.matrix().version.startswith(current)
    changes = re.findall(r'<li><code>([^<]+)</code></li>', page.split('id="diff-changes"')[1].split("</ul>")[0])
    assert changes == ["levels.L2.sla.acknowledge: 30m -&gt; 20m"]
    assert "-    sla: {acknowledge: 30m" in page and "+    sla: {acknowledge: 20m" in page
    unknown = client.get(f"/admin/matrix?old=ffffffff&new={second_version}").get_data(as_text=True)
    assert "no stored matrix version ffffffff" in unknown


def test_an_admin_repins_a_ticket_and_a_pass_is_queued(app, history, second_version):
    from integration.store.db import TicketStateRow

    client = app.test_client()
    sign_in(client)
    page = client.get("/admin/tickets/zendesk/603").get_data(as_text=True)
    answer = client.post("/admin/tickets/zendesk/603/repin", data={"csrf_token": csrf_of(page), "version": second_version},
                         follow_redirects=True)
    assert f"zendesk 603 is pinned to matrix {second_version[:12]}; a pass is queued" in answer.get_data(as_text=True)
    with history.live.db.session() as session:
        assert session.get(TicketStateRow, ("zendesk", "603")).matrix_version == second_version
    assert [e.event_type for e in list_events(history.live.db, status="pending") if e.ticket_id == "603"] == ["repin"]
    refused = client.post("/admin/tickets/zendesk/603/repin", data={"csrf_token": csrf_of(page), "version": "nope"},
                          follow_redirects=True)
    assert "matrix version nope is not stored" in refused.get_data(as_text=True)


@pytest.mark.postgres
def test_every_page_renders_on_postgresql(postgres_url):
    from tests.support.fake_connector import postgres_schema_url

    url, drop = postgres_schema_url(postgres_url)
    built = seed(url)
    try:
        with console_env():
            client = console_app(url).test_client()
        sign_in(client)
        for page in ("/admin/matrix", "/admin/metrics", "/admin/tickets/zendesk/602", "/admin/dead-letters"):
            assert client.get(page).status_code == 200, page
        held = client.get("/admin/tickets?state=held").get_data(as_text=True)
        assert re.findall(r'data-ticket="([^"]+)"', held) == ["zendesk:701"]
        metrics_page = client.get("/admin/metrics?weeks=2").get_data(as_text=True)
        escalations = re.search(r'id="chart-escalations"[^>]*data-series=\'([^\']+)\'', metrics_page).group(1)
        assert json.loads(html.unescape(escalations))["L3"] == [1, 0]
    finally:
        built.dispose()
        drop()
