"""The working group's page in a real browser: Debian's headless Chromium, driven through
Debian's chromedriver (Selenium), over HTTPS with a throwaway certificate.

The test reads what a person sees (the visible text of elements, the drawn size of the chart),
uses the page as a person would (the navigation links, the search box, the language switch, the
month menu, whose script switches the month), and keeps a screenshot of the page as the test's
artefact: ``test-artifacts/web-page.png``. The registry (on PostgreSQL) holds a flagged structure
with its case, a notice and an overdue referral (``web_support.fill``).

The page admits enrolled departments by their client certificate; headless Chromium has no
certificate store to present one from, so it reads the page through a loopback
``ClientCertificateProxy`` that presents the enrolled working group's certificate (the way the
demo takes its screenshot), after being shown that the page itself refuses it without one. The
browser is told to accept the test CA's certificate (``acceptInsecureCerts``), the WebDriver way
of trusting a test certificate; httpx checks certificates properly in ``test_web_http.py``.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_support import Registry
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.command import Command
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait
from web_support import FLAGGED, FLAGGED_CASE, Sample, fill, page_tls, serving, through_proxy

from registry.web.server import WebServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SCREENSHOT = ARTIFACTS / "web-page.png"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium, fresh profile; missing browser or driver fails the test, naming the
    package (``make services`` installs both)."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists() and shutil.which(path.name) is None:
            pytest.fail(f"{path} is missing (Debian: apt-get install {package}; make services)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests may run as root
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--lang=en-US",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    options.accept_insecure_certs = True
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def sample_page(pg_url: str, tmp_path: Path) -> Iterator[tuple[WebServer, str, Sample]]:
    """The page, the URL of the working group's proxy to it, and what the registry holds."""
    registry = Registry(pg_url, tmp_path / "keys", tmp_path)
    try:
        registry.init()
        sample = fill(registry)
        tls = page_tls(tmp_path / "tls", registry)
        with serving(pg_url, tls) as page, through_proxy(page, tls) as url:
            yield page, url, sample
    finally:
        registry.close()


def visible(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def click(driver: WebDriver, element_id: str) -> None:
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, element_id).click()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(old))


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_the_working_group_sees_its_page_in_chromium(
    browser: webdriver.Chrome, sample_page: tuple[WebServer, str, Sample]
) -> None:
    page, url, sample = sample_page
    # Straight to the page, without a client certificate: refused in the handshake.
    browser.get(page.url)
    assert FLAGGED not in browser.page_source
    browser.get(url)

    # The flagged structure with its case, in English by default.
    flagged = browser.find_element(By.CSS_SELECTOR, "ol.flagged").text
    assert FLAGGED in flagged and FLAGGED_CASE in flagged
    assert "No construction planning permit" in flagged and "Stop order" in flagged
    assert "110228-0042-0001" not in visible(browser)  # closed case: not flagged

    # The month's figures, drawn.
    chart = browser.find_element(By.ID, "home-chart")
    assert chart.is_displayed()
    assert chart.size["width"] > 100 and chart.size["height"] > 50
    bars = chart.find_elements(By.TAG_NAME, "rect")
    assert bars and all(bar.size["width"] > 0 and bar.size["height"] > 0 for bar in bars)

    # The inbox shows the notice; the overdue referral is counted against its finder.
    click(browser, "nav-inbox")
    notices = browser.find_element(By.ID, "notices").text
    assert sample.notice_id in notices and "Market regulation" in notices
    click(browser, "nav-overdue")
    counted = browser.find_element(By.ID, "per-department").text
    assert f"{sample.late_department} 1" in counted

    # Search by id, then by a part of the address, from the search box every page has.
    for query in (FLAGGED, "鼓楼东大街"):
        box = browser.find_element(By.ID, "search-q")
        box.clear()
        box.send_keys(query)
        click(browser, "search-go")
        results = browser.find_element(By.ID, "search-results").text
        assert FLAGGED in results, query
    browser.find_element(By.LINK_TEXT, FLAGGED).click()
    WebDriverWait(browser, 10).until(expected_conditions.title_contains(FLAGGED))
    assert "Flagged: a blocking case" in browser.find_element(By.ID, "standing").text

    # The month menu's script shows the month chosen.
    click(browser, "nav-figures")
    old = browser.find_element(By.TAG_NAME, "html")
    Select(browser.find_element(By.ID, "month-select")).select_by_value("2026-10")
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(old))
    assert "month=2026-10" in browser.current_url
    assert browser.find_element(By.ID, "month").text == "2026-10"
    assert browser.find_element(By.ID, "figures-chart").size["height"] > 0

    # 中文: the labels and the vocabulary switch; the choice is remembered.
    click(browser, "nav-flagged")
    click(browser, "lang-switch")
    home = visible(browser)
    assert "违法建设" in home and "未取得建设工程规划许可证" in home and "责令停止建设" in home
    assert "Flagged structures" not in home
    ARTIFACTS.mkdir(exist_ok=True)
    SCREENSHOT.unlink(missing_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    width, height = png_size(SCREENSHOT)
    assert width >= 800 and height >= 600
    click(browser, "nav-inbox")
    assert "通报" in visible(browser) and "市场监管" in visible(browser)

    # Nothing the page uses was refused by its own Content-Security-Policy, nothing failed.
    logged = browser.execute(Command.GET_LOG, {"type": "browser"})["value"]
    console = [str(entry["message"]) for entry in logged]
    assert not [m for m in console if "Content Security Policy" in m or "Refused" in m], console
    assert not [e for e in console if "error" in e.lower()], console

    # A write is refused: a form posted from the page gets 405.
    old = browser.find_element(By.TAG_NAME, "html")
    browser.execute_script(
        "const form = document.createElement('form');"
        "form.method = 'post'; form.action = '/';"
        "document.body.appendChild(form); form.submit();"
    )
    WebDriverWait(browser, 10).until(expected_conditions.staleness_of(old))
    assert "405 Method Not Allowed" in visible(browser)
