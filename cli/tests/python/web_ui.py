"""Ember's web UI in headless Chromium (Debian's chromium + chromedriver, driven by Selenium),
as a person would see it. Called by cli/tests/web_ui.rs with a running scheduler that has a
succeeded job, a failed job, a lost executor and a running stream.

Usage: web_ui.py BASE_URL SCREENSHOT_DIR EXPECT_JSON
EXPECT_JSON: {"succeeded": ID, "failed": ID, "failed_error": TEXT, "stream": ID,
              "days": N, "top_product": ID, "executors_alive": N, "executors_lost": N}
Prints one JSON line of what it saw; exits 1 with the failed check on stderr.
"""

import json
import os
import sys

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

base, shots, expect = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
os.makedirs(shots, exist_ok=True)

options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("EMBER_CHROMIUM", "/usr/bin/chromium")
for flag in [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
]:
    options.add_argument(flag)
service = Service(executable_path=os.environ.get("EMBER_CHROMEDRIVER", "/usr/bin/chromedriver"))
driver = webdriver.Chrome(options=options, service=service)
seen = {}


def wait(what, condition, timeout=60):
    try:
        # The pages re-render as they refresh: an element found a moment ago may be gone (stale);
        # that is "not yet", not a failure.
        return WebDriverWait(
            driver, timeout, poll_frequency=0.25,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(lambda d: condition())
    except Exception:
        shot = os.path.join(shots, "failed.png")
        driver.save_screenshot(shot)
        body = driver.find_element(By.TAG_NAME, "body").text[:2000]
        raise AssertionError(f"{what}: not seen within {timeout} s on {driver.current_url}\n{body}")


def open_page(path):
    driver.get(base + path)
    wait(f"page {path} loaded", lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "true")


def rows(css):
    return driver.find_elements(By.CSS_SELECTOR, css)


def points(chart_id):
    charts = rows(f"#{chart_id}")
    if not charts:
        return 0
    canvas = charts[0].find_elements(By.TAG_NAME, "canvas")
    return int(charts[0].get_attribute("data-points") or 0) if canvas else 0


def shot(name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


try:
    # Jobs: both jobs, with their states; the filter keeps the failed one only.
    open_page("/ui/jobs")
    wait("the succeeded and the failed job", lambda: len(rows("#jobs-table tbody tr")) >= 2)
    states = {r.get_attribute("data-id"): r.get_attribute("data-state") for r in rows("#jobs-table tbody tr")}
    assert states.get(expect["succeeded"]) == "succeeded", states
    assert states.get(expect["failed"]) == "failed", states
    seen["jobs"] = states
    shot("jobs")
    open_page("/ui/jobs?state=failed")
    wait("the failed jobs only", lambda: {r.get_attribute("data-state") for r in rows("#jobs-table tbody tr")} == {"failed"})

    # A succeeded job: its stages, done, with rows and a physical plan.
    open_page(f"/ui/jobs/{expect['succeeded']}")
    wait("stages of the succeeded job", lambda: len(rows("tr.stage")) > 0)
    stage_states = [r.get_attribute("data-state") for r in rows("tr.stage")]
    assert all(s == "Successful" for s in stage_states), stage_states
    plans = [p.get_attribute("textContent") for p in rows("pre.plan")]
    assert any("Exec" in p for p in plans), plans
    written = driver.find_element(By.CSS_SELECTOR, "#card-rows-written .value").text
    version = driver.find_element(By.CSS_SELECTOR, "#card-table-version .value").text
    # The Delta table version the run committed, and the name that reads it over Flight SQL.
    assert expect["table_version"] is not None, expect
    assert f"v{expect['table_version']}" in version, version
    seen["succeeded"] = {"stages": len(stage_states), "rows_written": written, "table_version": version}
    shot("job-succeeded")

    # A failed job: its error, as the API gives it.
    open_page(f"/ui/jobs/{expect['failed']}")
    error = wait("the failed job's error", lambda: rows("#job-error") and rows("#job-error")[0].text)
    assert expect["failed_error"] in error, error
    seen["failed_error"] = error
    shot("job-failed")

    # Executors: alive ones with slots, and the lost one.
    open_page("/ui/executors")
    wait("executors", lambda: len(rows("#executors-table tbody tr")) == expect["executors_alive"] + expect["executors_lost"])
    ex_states = sorted(r.get_attribute("data-state") for r in rows("#executors-table tbody tr"))
    assert ex_states.count("alive") == expect["executors_alive"], ex_states
    assert ex_states.count("lost") == expect["executors_lost"], ex_states
    seen["executors"] = ex_states
    shot("executors")

    # Streaming: the running stream, then its page with charts that have data points.
    open_page("/ui/streaming")
    wait("the running stream", lambda: any(r.get_attribute("data-id") == expect["stream"] and r.get_attribute("data-state") == "running" for r in rows("#streams-table tbody tr")))
    shot("streaming")
    open_page(f"/ui/streaming/{expect['stream']}")
    wait("rate chart with 3 or more batches", lambda: points("chart-rates") >= 3)
    seen["stream_points"] = {c: points(c) for c in ["chart-rates", "chart-duration", "chart-rows", "chart-lag"]}
    assert all(n >= 3 for n in seen["stream_points"].values()), seen["stream_points"]
    assert len(rows("#lag-table tbody tr")) == 2, "two partitions in the lag table"
    assert len(rows("#batches-table tbody tr")) >= 3
    watermark = driver.find_element(By.CSS_SELECTOR, "#card-watermark .value").text
    assert watermark.startswith("2011-12-09"), watermark
    seen["watermark"] = watermark
    shot("stream")

    # Revenue dashboard: one point per day, the top product, live windows.
    open_page("/ui/dashboard")
    wait("daily chart", lambda: points("chart-daily") == expect["days"])
    top = rows("#top-products tbody tr")
    assert top and top[0].get_attribute("data-product") == expect["top_product"], [t.text for t in top]
    wait("window chart", lambda: points("chart-windows") >= 1, timeout=90)
    seen["dashboard"] = {"days": points("chart-daily"), "top": expect["top_product"], "windows": points("chart-windows")}
    shot("dashboard")

    # A day range: fewer points.
    driver.execute_script("document.getElementById('range-from').value = '2011-12-09'")
    driver.find_element(By.CSS_SELECTOR, "#range button").click()
    wait("the range's days", lambda: points("chart-daily") == expect["days"] - 1)
    shot("dashboard-range")
    print(json.dumps(seen))
except AssertionError as e:
    print(f"web UI check failed: {e}", file=sys.stderr)
    sys.exit(1)
finally:
    driver.quit()
