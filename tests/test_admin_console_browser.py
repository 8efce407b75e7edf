"""The admin console in headless Chromium (Selenium with Debian's chromium and chromium-driver; nothing is
downloaded): the real app factory served on a free local port over the seeded week. Skips with the reason
when Chromium is absent, unless REQUIRE_BROWSER=1 (.ci/run), where that is a failure. Each page is saved
as /tmp/console-<page>.png for a person to look at."""
from __future__ import annotations

import json
import os
import shutil
import threading

import pytest
from werkzeug.serving import make_server

from integration.store.events import list_events
from tests.support.console_app import ADMIN_PASSWORD, console_app, console_env, seed

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")


def _browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(path)):
            return f"{path} not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[test])"
    return None


@pytest.fixture(scope="module")
def browser():
    missing = _browser_missing()
    if missing:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail(f"REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    built = seed(f"sqlite:///{tmp_path_factory.mktemp('console-browser') / 'console.db'}")
    yield built
    built.dispose()


@pytest.fixture(scope="module")
def console(history):
    with console_env():
        app = console_app(history.database_url)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def shot(driver, name: str) -> None:
    driver.save_screenshot(f"/tmp/console-{name}.png")


def text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def signed_in(driver, console: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{console}/admin/tickets")
    if driver.find_elements(By.ID, "signed-in-as"):
        return
    driver.find_element(By.ID, "password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    assert "admin" in text(driver, "#signed-in-as")


def test_not_signed_in_the_browser_lands_on_the_sign_in_page(browser, console):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{console}/admin/matrix")
    assert browser.current_url.startswith(f"{console}/admin/login")
    assert not browser.find_elements(By.ID, "levels")
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.ID, "sign-in").click()
    assert text(browser, "#login-error") == "Wrong password."
    shot(browser, "login")


def test_sign_in_and_read_the_matrix_table(browser, console):
    from selenium.webdriver.common.by import By

    signed_in(browser, console)
    browser.find_element(By.ID, "nav-matrix").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#levels tbody tr")
    assert [row.get_attribute("data-level") for row in rows] == ["L1", "L2", "L3", "L4"]
    l3 = browser.find_element(By.CSS_SELECTOR, '#levels tr[data-level="L3"]').text
    assert "acknowledge" in l3 and "incident_commander" in l3
    outage = browser.find_element(By.CSS_SELECTOR, '#rules tr[data-rule="enterprise-outage"] .hits').text
    assert outage == "2"  # 301 placed, 701 held short of L3 for data; the dry-run outage 501 is not a live hit
    assert browser.find_elements(By.CSS_SELECTOR, "#zendesk-sla tbody tr")
    shot(browser, "matrix")


def test_open_a_ticket_timeline_from_tickets_in_flight(browser, console, history):
    from selenium.webdriver.common.by import By

    signed_in(browser, console)
    row = browser.find_element(By.CSS_SELECTOR, '#tickets tr[data-ticket="zendesk:602"]')
    assert row.get_attribute("data-state") in ("ok", "warning", "breached")
    shot(browser, "tickets")
    row.find_element(By.CSS_SELECTOR, "a.timeline-link").click()
    assert "L2" in text(browser, "#ticket-level")
    decisions = [e.text for e in browser.find_elements(By.CSS_SELECTOR, '#timeline li[data-kind="decision"]')]
    assert any("L1 -> L2" in d and history.breach_reason in d for d in decisions), decisions
    assert any(e.text for e in browser.find_elements(By.CSS_SELECTOR, '#timeline li[data-kind="timer"]'))
    assert browser.find_elements(By.ID, "repin")  # an admin may repin
    shot(browser, "ticket")


def test_read_the_escalations_chart(browser, console):
    from selenium.webdriver.common.by import By

    signed_in(browser, console)
    browser.get(f"{console}/admin/metrics?weeks=2")
    canvas = browser.find_element(By.ID, "chart-escalations")
    assert canvas.get_attribute("data-drawn") == "4"  # one dataset per level: Chart.js drew it
    labels = json.loads(canvas.get_attribute("data-labels"))
    assert labels == ["2026-W48", "2026-W49"]
    drawn = browser.execute_script(
        "const c = Chart.getChart(arguments[0]);"
        "return Object.fromEntries(c.data.datasets.map(d => [d.label, d.data]));", canvas)
    # Week 48: 301 placed straight at L3 (the dry-run 501 is not drawn); 605 set to L2 by hand.
    # Week 49 (Mon 11-30): 602's acknowledge breach moved it to L2.
    assert drawn["L3"] == [1, 0] and drawn["L4"] == [0, 0]
    assert drawn["L2"] == [1, 1]
    tta = browser.execute_script(
        "const c = Chart.getChart(arguments[0]);"
        "return Object.fromEntries(c.data.datasets.map(d => [d.label, d.data]));",
        browser.find_element(By.ID, "chart-tta"))
    # Business minutes on Mon-Fri 08:00-18:00 Berlin: L1 603 30, 601 50 (Fri 17:30 -> Mon 08:20), 604 90
    # (Tue 17:00 -> Wed 08:30): median 50; L3 301 10. No acknowledgement of an entry in week 49 yet.
    assert tta["L1"] == [50, None] and tta["L3"] == [10, None]
    assert browser.execute_script("return Chart.getChart(arguments[0]).data.labels;",
                                  browser.find_element(By.ID, "chart-attainment"))
    shot(browser, "metrics")


def test_retry_a_dead_letter_and_see_it_requeued(browser, console, history):
    from selenium.webdriver.common.by import By

    signed_in(browser, console)
    browser.find_element(By.ID, "nav-dead").click()
    row = browser.find_element(By.CSS_SELECTOR, f'#dead-letters tr[data-event="{history.dead_event_id}"]')
    assert "NotFound" in row.text
    shot(browser, "dead-letters")
    row.find_element(By.CSS_SELECTOR, "button.retry").click()
    assert f"event {history.dead_event_id} is pending again" in text(browser, ".flash.ok")
    assert browser.find_elements(By.ID, "no-dead-letters")
    (event,) = [e for e in list_events(history.live.db) if e.id == history.dead_event_id]
    assert (event.status, event.attempts) == ("pending", 0)
