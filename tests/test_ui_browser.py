"""The web view in a real headless Chromium: a live ``exptrack ui`` subprocess and a report file.

Each test drives Debian's ``chromium`` through ``chromedriver`` (selenium), the way a person
uses the page: it loads with no console error, the table holds the expected rows, the filter
box filters, every chart draws, selecting runs opens the comparison, stored script payloads stay
text, and the report makes no network request.  Screenshots land in the test's tmp directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("plotly")
pytest.importorskip("selenium")

from click.testing import CliRunner
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from ui_support import MODEL_BYTES, XSS_METRIC, XSS_PARAM, XSS_TAG, hostile_store, live_ui

from exptrack.cli import cli

WAIT = 30.0  # seconds; a hang guard for the page to reach a state, not a speed requirement
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):  # CI installs them (.ci/run): missing there is a failure, not a skip
        raise RuntimeError("chromium and chromedriver are required in CI (apt-get install chromium chromium-driver)")
    pytest.skip("chromium / chromedriver not installed", allow_module_level=True)

# Before any page script runs: record calls of alert() (what every payload tries) instead of
# opening a dialog.
_TRAP = "window.__xss = []; window.alert = function (x) { window.__xss.push(String(x)); };"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,900"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _TRAP})
        driver.set_script_timeout(WAIT)
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while True:
        try:
            value = condition()
        except Exception:  # the DOM is still changing (a stale element): retry until the guard
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def click(driver: Any, selector: str) -> None:
    """Click once the element is there; the table may be redrawn under the cursor (a poll, the
    columns arriving), so a stale element is looked up again."""

    def attempt() -> bool:
        driver.find_element(By.CSS_SELECTOR, selector).click()
        return True

    wait_for(attempt, f"a click on {selector}")


def rows(driver: Any) -> list[str]:
    return [row.get_attribute("data-run-id") for row in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr")]


def console_errors(driver: Any, expected: str = "\0") -> list[str]:
    """SEVERE console entries, except the browser's note of a 400 the test asked for on purpose."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and expected not in entry["message"]]


def assert_no_script_ran(driver: Any) -> None:
    assert driver.execute_script("return window.__xss") == []
    assert driver.find_elements(By.CSS_SELECTOR, "img") == []  # a payload never became an element
    assert driver.execute_script("return document.querySelectorAll('[onerror],[onload]').length") == 0


def show(driver: Any, view: str) -> None:
    driver.execute_script("location.hash = arguments[0]", "#" + view)


def chart_drawn(driver: Any, selector: str) -> int:
    return int(driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector))


def curve_points(driver: Any, selector: str) -> int:
    """Vertices of the longest line drawn under ``selector`` (an empty trace has none)."""
    return int(driver.execute_script(
        "return Math.max(0, ...[...document.querySelectorAll(arguments[0])]"
        ".map((p) => (p.getAttribute('d') || '').split(/[MLHV]/).length - 1));", selector))


def check_views(driver: Any, tmp_path: Path, prefix: str) -> None:
    """Every chart draws non-empty SVG; screenshots of each view."""
    show(driver, "parallel")
    assert wait_for(lambda: chart_drawn(driver, "#parallel-chart svg .lines path") >= 40, "parallel coordinates")
    labels = driver.find_element(By.ID, "parallel-chart").text
    assert XSS_PARAM in labels  # categorical axis labelled in full, as text
    assert "(missing)" in labels  # runs without params.depth are drawn on a "missing" tick
    driver.save_screenshot(str(tmp_path / f"{prefix}-parallel.png"))
    show(driver, "scatter")
    assert wait_for(lambda: chart_drawn(driver, "#scatter-chart .main-svg .point") >= 10, "param vs metric")
    driver.save_screenshot(str(tmp_path / f"{prefix}-scatter.png"))
    show(driver, "history")
    assert wait_for(lambda: chart_drawn(driver, "#history-chart .scatterlayer .trace") >= 2, "optimization history")
    assert wait_for(lambda: curve_points(driver, "#history-chart .scatterlayer .js-line") >= 2, "best-so-far line")
    driver.save_screenshot(str(tmp_path / f"{prefix}-history.png"))


def test_live_page(browser: Any, store: Path, tmp_path: Path) -> None:
    tracker, ids = hostile_store(store)
    with live_ui(store) as url:
        browser.get(url)
        assert wait_for(lambda: len(rows(browser)) == len(ids), "the table's rows")
        assert rows(browser) == ids[::-1]  # newest first
        assert console_errors(browser) == []  # the page loaded cleanly
        table_text = browser.find_element(By.ID, "runs-table").text
        assert XSS_PARAM in table_text  # shown as text
        assert XSS_TAG in table_text
        assert f"metrics.{XSS_METRIC}" in table_text
        browser.save_screenshot(str(tmp_path / "live-runs.png"))

        # the filter box filters, with the CLI's language; a mistake shows the caret
        box = browser.find_element(By.ID, "filter")
        box.send_keys("params.model = 'rf'", Keys.ENTER)
        expected = {run.run_id for run in tracker.runs(where="params.model = 'rf'")}
        assert wait_for(lambda: set(rows(browser)) == expected, "the filtered rows")
        box.clear()
        box.send_keys("metrics.accuracy >> 1", Keys.ENTER)
        error = wait_for(lambda: browser.find_element(By.ID, "filter-error").is_displayed()
                         and browser.find_element(By.ID, "filter-error"), "the filter error")
        assert "^" in error.text
        assert "unknown operator" in error.text
        box.clear()
        box.send_keys(Keys.ENTER)
        assert wait_for(lambda: len(rows(browser)) == len(ids), "all rows again")

        # sort by a column (server side)
        click(browser, '#runs-table th[data-column="metrics.accuracy"]')
        best = tracker.best_run("accuracy").run_id
        assert wait_for(lambda: rows(browser)[0] == best, "the best run first")

        # select two runs, open the comparison: differences only by default
        rf_runs = [run.run_id for run in tracker.runs(where="params.model = 'rf'")][:2]
        for run_id in rf_runs:
            click(browser, f'tr[data-run-id="{run_id}"] input[type=checkbox]')
        click(browser, "#compare-selected")
        assert wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr"), "the comparison")
        compared = browser.find_elements(By.CSS_SELECTOR, "#compare-table tbody tr")
        fields = {tr.get_attribute("data-field") for tr in compared}
        assert "params.lr" in fields
        assert "metrics.accuracy" in fields
        assert "params.model" not in fields  # the same in both runs
        click(browser, "#compare-diff-only")
        assert wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#compare-table tr[data-field="params.model"]'),
                        "all fields")
        browser.save_screenshot(str(tmp_path / "live-compare.png"))

        check_views(browser, tmp_path, "live")

        # learning curves of the selected run that logged a history
        browser.execute_script("ET.state.selected = new Set([arguments[0]])", tracker.best_run("val_loss").run_id)
        show(browser, "curves")
        assert wait_for(lambda: curve_points(browser, "#curves-chart .scatterlayer .js-line") >= 5, "learning curves")
        browser.save_screenshot(str(tmp_path / "live-curves.png"))

        # the run page: sections, reproduce steps, the history chart
        history_run = tracker.best_run("val_loss").run_id
        show(browser, "run/" + history_run)
        assert wait_for(lambda: history_run in browser.find_element(By.ID, "reproduce-steps").text, "the run page")
        assert wait_for(lambda: curve_points(browser, "#run-history-chart .js-line") >= 5, "the run's history")
        sections = {s.get_attribute("data-section") for s in browser.find_elements(By.CSS_SELECTOR, ".run-section")}
        assert {"reproduce", "params", "metrics", "history", "artifacts"} <= sections
        link = browser.find_element(By.CSS_SELECTOR, "#artifact-list a")
        assert link.get_attribute("href").endswith(f"/api/runs/{history_run}/artifacts/model.pkl")
        downloaded = browser.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then((r) => r.arrayBuffer())"
            ".then((b) => done(Array.from(new Uint8Array(b))));", link.get_attribute("href"))
        assert bytes(downloaded) == MODEL_BYTES
        browser.save_screenshot(str(tmp_path / "live-run.png"))

        assert_no_script_ran(browser)
        assert console_errors(browser, expected="where=metrics.accuracy+%3E%3E+1") == []


def test_brushing_an_axis_filters_the_table(browser: Any, store: Path) -> None:
    tracker, ids = hostile_store(store)
    with live_ui(store) as url:
        browser.get(url + "#parallel")
        choice = wait_for(lambda: browser.find_element(By.CSS_SELECTOR, '#parallel-metric option[value="accuracy"]'),
                          "the metric chooser")
        Select(browser.find_element(By.ID, "parallel-metric")).select_by_value(choice.get_attribute("value"))
        zone = wait_for(lambda: browser.find_elements(
            By.CSS_SELECTOR, '#parallel-chart g.axis[data-axis="metrics.accuracy"] rect.brush-zone'), "the axes")[0]
        height = zone.size["height"]
        # drag over the upper half of the accuracy axis: the better runs
        ActionChains(browser).move_to_element_with_offset(zone, 0, -height // 2 + 2).click_and_hold() \
            .move_by_offset(0, height // 2 - 4).release().perform()
        where = wait_for(lambda: browser.find_element(By.ID, "filter").get_attribute("value"), "the brush's filter")
        assert "metrics.accuracy >=" in where
        expected = {run.run_id for run in tracker.runs(where=where)}
        assert 0 < len(expected) < len(ids)
        info = wait_for(lambda: browser.find_element(By.ID, "brush-info").text, "the brush summary")
        assert f"{len(expected)} runs" in info
        show(browser, "runs")
        assert wait_for(lambda: set(rows(browser)) == expected, "the brushed rows")
        assert console_errors(browser) == []


def test_live_updates_and_pauses_while_hidden(browser: Any, store: Path) -> None:
    tracker, ids = hostile_store(store, 3)
    with live_ui(store) as url:
        browser.get(url)
        assert wait_for(lambda: len(rows(browser)) == len(ids), "the first rows")
        new = tracker.log_run(params={"model": "fresh"}, metrics={"accuracy": 0.1})
        assert wait_for(lambda: rows(browser)[:1] == [new.run_id], "the appended run to appear")
        # hide the tab: polling stops; show it again: it resumes at once
        browser.execute_script(
            "Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});"
            "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});"
            "document.dispatchEvent(new Event('visibilitychange'));")
        polls = browser.execute_script("return ET.polls")
        time.sleep(3 * browser.execute_script("return ET.POLL_MS") / 1000)
        assert browser.execute_script("return ET.polls") == polls
        assert "paused" in browser.find_element(By.ID, "live-status").text
        hidden_run = tracker.log_run(params={"model": "while hidden"}, metrics={"accuracy": 0.2})
        time.sleep(1)
        assert hidden_run.run_id not in rows(browser)
        browser.execute_script(
            "Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});"
            "Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'visible'});"
            "document.dispatchEvent(new Event('visibilitychange'));")
        assert wait_for(lambda: rows(browser)[:1] == [hidden_run.run_id], "polling to resume")
        assert browser.execute_script("return ET.polls") > polls
        assert console_errors(browser) == []


def network_requests(driver: Any) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_report_opens_offline_with_the_same_views(browser: Any, store: Path, tmp_path: Path) -> None:
    tracker, ids = hostile_store(store)
    report = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["--store", str(store), "report", "-o", str(report)])
    assert result.exit_code == 0, result.output
    network_requests(browser)  # drain what the browser did before opening the file (its new tab page)
    browser.get(report.as_uri())
    assert wait_for(lambda: len(rows(browser)) == len(ids), "the report's rows")
    assert rows(browser) == ids[::-1]
    assert XSS_TAG in browser.find_element(By.ID, "runs-table").text
    browser.save_screenshot(str(tmp_path / "report-runs.png"))
    click(browser, '#runs-table th[data-column="metrics.accuracy"]')
    assert wait_for(lambda: rows(browser)[0] == tracker.best_run("accuracy").run_id, "the report sorted")
    for run_id in ids[:2]:
        click(browser, f'tr[data-run-id="{run_id}"] input[type=checkbox]')
    click(browser, "#compare-selected")
    assert wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, '#compare-table tr[data-field="params.lr"]'),
                    "the report's comparison")
    check_views(browser, tmp_path, "report")
    show(browser, "run/" + tracker.best_run("val_loss").run_id)
    assert wait_for(lambda: curve_points(browser, "#run-history-chart .js-line") >= 5, "the run page in the report")
    assert_no_script_ran(browser)
    assert console_errors(browser) == []
    requests = network_requests(browser)
    assert report.as_uri() in requests  # the log works: the file itself was requested
    assert all(url.startswith(("file:", "data:", "blob:", "chrome:")) for url in requests), requests


def test_experiment_chooser_lists_names_as_text(browser: Any, store: Path) -> None:
    _, ids = hostile_store(store, 3)
    with live_ui(store) as url:
        browser.get(url)
        assert wait_for(lambda: len(rows(browser)) == len(ids), "the first rows")
        # the list as /api/experiments gives it once the store has experiments (strings or objects)
        browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "ET.source.experiments = async () => ({experiments: [{name: 'wine', runs: 3}, arguments[0]]});"
            "ET.experiments().then(done);", XSS_PARAM)
        chooser = browser.find_element(By.ID, "experiment-chooser")
        assert chooser.is_displayed()
        options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#experiment option")]
        assert options == ["all", "wine (3)", XSS_PARAM]
        Select(browser.find_element(By.ID, "experiment")).select_by_value("wine")
        assert browser.find_element(By.ID, "filter").get_attribute("value") == "experiment = 'wine'"
        assert_no_script_ran(browser)
