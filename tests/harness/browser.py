"""Headless Chromium from Debian, driven through selenium and Debian's chromedriver (no downloads)."""
from __future__ import annotations

import shutil

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1600", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                              options=options)
    driver.set_page_load_timeout(30)
    driver.implicitly_wait(10)
    return driver


def click_and_load(driver: webdriver.Chrome, element, timeout: float = 30) -> None:
    """Click something that submits or navigates, and wait until a new document has fully loaded.

    The old page is marked with a window property instead of watched through an element
    reference: while a navigation is in flight Chromium may answer questions about a detached
    node with an "unknown error" rather than a stale-element error.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("window.__atmosOldPage = true;")
    element.click()

    def new_page_loaded(drv) -> bool:
        try:
            return bool(drv.execute_script(
                "return window.__atmosOldPage === undefined && document.readyState === 'complete';"))
        except WebDriverException:
            return False

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(new_page_loaded)
