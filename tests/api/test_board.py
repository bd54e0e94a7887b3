"""The dispatcher board in real headless Chromium: an alert pushed on the Redis stream
appears live, its Acknowledge button publishes to ff.alert-acks, vans and geofences are
drawn. A screenshot is kept under .fleetflow/artifacts/."""
import pathlib
import shutil
import time

import pytest

from fleetflow import contracts, topics
from tests.api.test_alerts import xadd_alert

pytestmark = pytest.mark.stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / ".fleetflow" / "artifacts"


@pytest.fixture
def browser():
    if not (pathlib.Path(CHROMIUM).exists() and pathlib.Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are installed by `fleetflow setup`; run it first")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_board_shows_live_alert_and_acknowledges_it(live_api, browser, make_key, redis_client, topic_tail,
                                                    run_id):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    vid = f"BOARD{run_id}"
    now_ms = int(time.time() * 1000)
    redis_client.hset(f"ff:vehicle:{vid}", mapping={"lat": 52.52, "lon": 13.405, "status": "STALLED",
                                                     "speed_mps": 0, "last_event_time_ms": now_ms})
    redis_client.geoadd("ff:vehicles:geo", (13.405, 52.52, vid))
    acks = topic_tail(topics.ALERT_ACKS.name)
    try:
        h = make_key("dispatcher")
        raw_key = h["Authorization"].split(" ", 1)[1]
        browser.get(f"{live_api}/board")
        wait = WebDriverWait(browser, 20)
        browser.find_element(By.ID, "api-key").send_keys(raw_key)
        browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "conn"), "live"))

        alert_id = f"VEHICLE_STALLED:VEHICLE:{vid}"
        xadd_alert(redis_client, alert_id, severity="CRITICAL", entity_id=vid)
        selector = f'li.alert[data-alert-id="{alert_id}"]'
        item = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, selector)))
        assert "VEHICLE_STALLED" in item.text and vid in item.text and "CRITICAL" in item.get_attribute("class")

        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'circle.van[data-vehicle-id="{vid}"]')))
        assert browser.find_element(By.CSS_SELECTOR, f'#vehicles tr[data-vehicle-id="{vid}"]').text.startswith(vid)

        item.find_element(By.CSS_SELECTOR, "button.ack").click()
        wait.until(lambda d: "acked" in d.find_element(By.CSS_SELECTOR, selector).get_attribute("class"))
        got = []
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            got = [contracts.decode(v, expected="alert_acks")[1] for _, v in acks()]
        assert [(a["alert_id"], a["action"], a["actor"]) for a in got] == [
            (alert_id, "ACK", raw_key.split("_")[1])]
        assert browser.find_element(By.ID, "error").text == ""

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "dispatcher-board.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        # No request left the machine: every resource the page loaded is from the API itself.
        urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert urls and all(u.startswith(live_api) for u in urls), urls
    finally:
        redis_client.zrem("ff:vehicles:geo", vid)
        redis_client.delete(f"ff:vehicle:{vid}")
