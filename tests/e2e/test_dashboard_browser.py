"""The dashboard in a real browser: a ``tradepulse demo`` subprocess on a free port, driven
by headless Chromium (Debian's ``chromium`` and ``chromium-driver``, installed by
``scripts/ensure-services.sh``) through selenium.

Screenshots of every page go to ``test-artifacts/`` (the ``tour-*`` ones illustrate
``docs/tour.md``: copy them to ``docs/img/`` when the pages change).
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1440,900")  # fmt: skip
START_LIMIT_S = 10.0
WAIT_S = 20.0


class DemoProcess:
    def __init__(self, proc: subprocess.Popen[str], url: str, token: str, start_s: float) -> None:
        self.proc, self.url, self.token, self.start_s = proc, url, token, start_s

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig``; the exit status."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, deadline_s: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline_s:
                raise
        time.sleep(0.1)


def read_token(proc: subprocess.Popen[str], deadline_s: float) -> str:
    """The token of the ``sign-in token:`` line the demo prints."""
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.match(r"sign-in token: (\S+)", line)
        if match:
            return match.group(1)
        if time.monotonic() > deadline_s:
            break
    raise AssertionError(f"the demo printed no sign-in token (exit {proc.poll()})")


def start_demo(*args: str) -> DemoProcess:
    """``tradepulse demo`` on a free port, once it printed its token and serves ``/``."""
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradepulse", "demo", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        token = read_token(proc, started + START_LIMIT_S)
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, started + START_LIMIT_S)
    except BaseException:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        raise
    return DemoProcess(proc, url, token, time.monotonic() - started)


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoProcess]:
    running = start_demo("--tokens", "60", "--rate", "150", "--backfill", "600")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium and chromium-driver are needed: make services"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """``condition`` once truthy; an element re-rendered while read just means: try again."""
    wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,))  # fmt: skip
    return wait.until(condition, message=what)


def shot(browser: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def rows_text(browser: WebDriver) -> str:
    return str(browser.execute_script(
        "const b = document.querySelector('#tokens-table tbody'); return b ? b.textContent : ''"))


def compact_value(text: str) -> float:
    """``"1.8k"`` -> 1800 (the table's number format)."""
    number, suffix = re.match(r"([-\d.]+)([kMB]?)", text.strip()).groups()  # type: ignore[union-attr]
    return float(number) * {"": 1, "k": 1e3, "M": 1e6, "B": 1e9}[suffix]


def test_demo_starts_within_ten_seconds(demo: DemoProcess) -> None:
    assert demo.start_s < START_LIMIT_S


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_demo_stops_cleanly_on_a_signal(sig: signal.Signals) -> None:
    running = start_demo("--tokens", "10", "--backfill", "60")
    assert running.stop(sig) == 0


def test_top_tokens_table_rows_update_without_reloading(
    demo: DemoProcess, browser: WebDriver
) -> None:
    browser.get(demo.url)
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#tokens-table tbody tr"),
             "table rows")  # fmt: skip
    first = rows_text(browser)
    frames = int(browser.find_element(By.ID, "tokens-table").get_attribute("data-frames") or 0)
    wait_for(browser, lambda b: rows_text(b) != first, "a row to change")
    table = browser.find_element(By.ID, "tokens-table")
    assert int(table.get_attribute("data-frames") or 0) > frames
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
    shot(browser, "tour-tokens")


def test_clicking_a_header_sorts_the_table_by_that_statistic(
    demo: DemoProcess, browser: WebDriver
) -> None:
    browser.get(demo.url)
    selector = 'th[data-sort="window.1min.trade_count"]'
    header = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, selector),
                      "the 1min trades header")  # fmt: skip
    header[0].click()
    table = browser.find_element(By.ID, "tokens-table")
    assert table.get_attribute("data-sort") == "-window.1min.trade_count"

    def sorted_column(b: WebDriver) -> list[float] | None:
        cells = b.execute_script(
            "return [...document.querySelectorAll('#tokens-table tbody tr')]"
            ".map(r => r.children[3].firstChild.textContent)")  # fmt: skip
        values = [compact_value(c) for c in cells]
        return values if values and values == sorted(values, reverse=True) else None

    values = wait_for(browser, sorted_column, "rows in descending 1min trades")
    assert len(values) > 5


def test_token_page_draws_candles_and_switches_timeframe(
    demo: DemoProcess, browser: WebDriver
) -> None:
    browser.get(demo.url)
    link = wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#tokens-table tbody a"),
                    "a token link")  # fmt: skip
    link[0].click()
    wait_for(browser, lambda b: int(b.find_element(By.ID, "chart").get_attribute("data-candles")
                                    or 0) >= 5, "1-minute candles")  # fmt: skip
    drawn = """
        return [...document.querySelectorAll('#chart canvas')].some(c => {
          if (!c.width || !c.height) return false;
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const colors = new Set();
          for (let i = 0; i < d.length; i += 4 * 97) colors.add(d[i] << 16 | d[i+1] << 8 | d[i+2]);
          return colors.size > 3;
        })"""
    wait_for(browser, lambda b: b.execute_script(drawn), "the chart canvas drawn")
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#window-stats tbody tr"),
             "window statistics over the WebSocket")  # fmt: skip
    note = browser.find_element(By.ID, "chart-note").text  # "<n> candles of 1m (...)"
    final = int(note.split()[0])
    wait_for(browser, lambda b: int(b.find_element(By.ID, "chart").get_attribute("data-candles")
                                    or 0) == final + 1, "the forming bar drawn live")  # fmt: skip
    shot(browser, "tour-token")
    ones = int(browser.find_element(By.ID, "chart").get_attribute("data-candles") or 0)
    browser.find_element(By.CSS_SELECTOR, 'button[data-tf="5m"]').click()
    wait_for(browser, lambda b: "of 5m" in b.find_element(By.ID, "chart-note").text, "5m candles")
    fives = int(browser.find_element(By.ID, "chart").get_attribute("data-candles") or 0)
    assert 1 <= fives < ones


def test_sign_in_with_the_printed_token_shows_the_user_and_survives_a_reload(
    demo: DemoProcess, browser: WebDriver
) -> None:
    browser.get(demo.url)
    assert browser.find_element(By.ID, "who").text == "not signed in"
    browser.find_element(By.ID, "signin-toggle").click()
    browser.find_element(By.ID, "token-input").send_keys(demo.token)
    browser.find_element(By.ID, "signin-button").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "who").text == "signed in as demo (admin)",
             "the signed-in user")  # fmt: skip
    browser.refresh()
    wait_for(browser, lambda b: b.find_element(By.ID, "who").text == "signed in as demo (admin)",
             "still signed in after a reload")  # fmt: skip
    wait_for(browser, lambda b: b.find_element(By.ID, "ws-status").text == "live", "socket live")


def test_a_forged_token_is_refused_and_the_market_stays_visible(
    demo: DemoProcess, browser: WebDriver
) -> None:
    browser.get(demo.url)
    forged = demo.token[:-4] + ("AAAA" if not demo.token.endswith("AAAA") else "BBBB")
    browser.find_element(By.ID, "signin-toggle").click()
    browser.find_element(By.ID, "token-input").send_keys(forged)
    browser.find_element(By.ID, "signin-button").click()
    wait_for(browser, lambda b: b.find_element(By.ID, "who").text.startswith("token refused"),
             "the refusal")  # fmt: skip
    wait_for(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#tokens-table tbody tr"),
             "table rows without a token")  # fmt: skip


def test_signed_in_link_opens_every_page(demo: DemoProcess, browser: WebDriver) -> None:
    sign_in(browser, demo, "alerts")
    wait_for(browser, lambda b: "alerts (live)" in b.find_element(By.CSS_SELECTOR, ".panel-head")
             .text, "the alert feed, live")  # fmt: skip
    assert browser.find_elements(By.ID, "alert-feed")
    shot(browser, "alerts")
    browser.get(f"{demo.url}#/rules")
    editor = wait_for(browser, lambda b: b.find_elements(By.ID, "rule-editor"), "the editor")
    assert '"conditions"' in editor[0].get_attribute("value")  # an example to start from
    wait_for(browser, lambda b: b.find_element(By.ID, "rule-status").text, "a validation result")
    shot(browser, "rules")
    assert browser.find_element(By.CSS_SELECTOR, "[data-nav=rules]").get_attribute(
        "class") == "active"  # fmt: skip


def sign_in(browser: WebDriver, demo: DemoProcess, page: str) -> None:
    browser.get(f"{demo.url}#token={demo.token}")
    wait_for(browser, lambda b: b.find_element(By.ID, "who").text.startswith("signed in"),
             "signed in")  # fmt: skip
    browser.get(f"{demo.url}#/{page}")


#: Click the enabled switch of the rule named arguments[0]; whether it was on (one script:
#: the table is re-rendered after every change, so no element is held across calls).
TOGGLE = """
    const row = [...document.querySelectorAll('#rules-table tbody tr')]
      .find(r => r.textContent.includes(arguments[0]));
    const box = row.querySelector('input[type=checkbox]');
    const was = box.checked;
    box.click();
    return was;"""


def rule_rows(browser: WebDriver, name: str) -> list[Any]:
    return [r for r in browser.find_elements(By.CSS_SELECTOR, "#rules-table tr") if name in r.text]


def test_rule_editor_validates_as_you_type_and_creates_a_rule(
    demo: DemoProcess, browser: WebDriver
) -> None:
    sign_in(browser, demo, "rules")
    editor = wait_for(browser, lambda b: b.find_elements(By.ID, "rule-editor"), "the editor")[0]
    bad = ('{"name": "every trade", "cooldown": 60, "conditions": {"all": ['
           '{"metric": "window.2min.trade_count", "op": ">=", "value": 0}]}}')  # fmt: skip
    editor.clear()
    editor.send_keys(bad)
    wait_for(browser, lambda b: "conditions.all[0].metric" in b.find_element(By.ID, "rule-errors")
             .text, "the error path")  # fmt: skip
    assert not browser.find_element(By.ID, "rule-create").is_enabled()
    editor.clear()
    editor.send_keys(bad.replace("2min", "1min"))
    wait_for(browser, lambda b: b.find_element(By.ID, "rule-status").text == "valid", "valid")
    shot(browser, "tour-rules")
    browser.find_element(By.ID, "rule-create").click()
    wait_for(browser, lambda b: rule_rows(b, "every trade"), "the new rule")
    assert browser.execute_script(TOGGLE, "every trade") is True  # it was enabled
    wait_for(browser, lambda b: [r for r in rule_rows(b, "every trade") if "v2" in r.text],
             "disabled as version 2")  # fmt: skip
    assert browser.execute_script(TOGGLE, "every trade") is False


def test_alert_feed_shows_alerts_of_a_rule_created_through_the_api(
    demo: DemoProcess, browser: WebDriver
) -> None:
    rule = ('{"name": "any trade", "cooldown": 30, "conditions": {"all": ['
            '{"metric": "window.1min.trade_count", "op": ">=", "value": 1}]}}')  # fmt: skip
    request = urllib.request.Request(
        f"{demo.url}api/v1/rules", data=rule.encode(), method="POST",
        headers={"Authorization": f"Bearer {demo.token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
    sign_in(browser, demo, "alerts")
    def alerts_of_the_rule(b: WebDriver) -> list[Any]:
        return [li for li in b.find_elements(By.CSS_SELECTOR, "#alert-feed li")
                if "any trade" in li.text]  # fmt: skip

    wait_for(browser, alerts_of_the_rule, "an alert of the new rule")
    shot(browser, "tour-alerts")


def call(demo: DemoProcess, method: str, path: str, body: str | None = None) -> Any:
    """The JSON answer of an API call as the demo user (None for an empty answer)."""
    request = urllib.request.Request(
        f"{demo.url}api/v1/{path}", data=body.encode() if body else None, method=method,
        headers={"Authorization": f"Bearer {demo.token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read()
    return json.loads(text) if text else None


def test_alert_feed_gets_no_live_alert_when_the_dashboard_channel_is_muted(
    demo: DemoProcess, browser: WebDriver
) -> None:
    call(demo, "PUT", "user/profile",
         '{"alert_preferences": {"muted_channels": ["dashboard"]}}')  # fmt: skip
    rule_id = None
    try:
        sign_in(browser, demo, "alerts")
        wait_for(browser, lambda b: b.find_element(By.ID, "ws-status").text == "live",
                 "socket live")  # fmt: skip
        time.sleep(2.0)  # the subscription confirmed and the feed seeded: what comes is live
        rule_id = call(demo, "POST", "rules", (
            '{"name": "muted on the dashboard", "cooldown": 30, "conditions": {"all": ['
            '{"metric": "window.1min.trade_count", "op": ">=", "value": 1}]}}'))["id"]  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        while not call(demo, "GET", f"alerts?rule={rule_id}&limit=1")["alerts"]:
            assert time.monotonic() < deadline, "the rule never fired"
            time.sleep(0.2)
        time.sleep(2.0)  # live delivery takes milliseconds
        feed = browser.find_element(By.ID, "alert-feed").text
        assert "muted on the dashboard" not in feed
    finally:
        call(demo, "PUT", "user/profile", "{}")
        if rule_id is not None:
            call(demo, "DELETE", f"rules/{rule_id}")


def wait_for_tokens(demo: DemoProcess) -> None:
    """Until the demo's engine wrote its backfilled tokens (its first steps take a while)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{demo.url}api/v1/tokens?limit=1", timeout=2) as answer:
            if b'"total":0' not in answer.read():
                return
        time.sleep(0.2)
    raise AssertionError("the demo wrote no token")


def test_rule_editor_dry_run_shows_the_alerts_per_token(
    demo: DemoProcess, browser: WebDriver
) -> None:
    wait_for_tokens(demo)
    sign_in(browser, demo, "rules")
    editor = wait_for(browser, lambda b: b.find_elements(By.ID, "rule-editor"), "the editor")[0]
    editor.clear()
    editor.send_keys('{"name": "any trade", "cooldown": 120, "conditions": {"all": ['
                     '{"metric": "window.1min.trade_count", "op": ">=", "value": 1}]}}')
    wait_for(browser, lambda b: b.find_element(By.ID, "rule-dryrun").is_enabled(), "dry run on")
    browser.find_element(By.ID, "rule-dryrun").click()
    summary = wait_for(browser, lambda b: b.find_elements(By.ID, "dryrun-summary"),
                       "the dry run result")[0].text  # fmt: skip
    shot(browser, "rules-dry-run")
    total = int(summary.split(" ")[0])
    rows = browser.find_elements(By.CSS_SELECTOR, "#dryrun-table tbody tr")
    assert total > 0 and rows  # 10 minutes of backfilled trades: busy tokens fire
    counts = [int(r.find_elements(By.TAG_NAME, "td")[1].text) for r in rows]
    assert sum(counts) == total and counts == sorted(counts, reverse=True)
    assert ":" in rows[0].find_elements(By.TAG_NAME, "td")[2].text  # trigger times shown
