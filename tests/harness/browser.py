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
    """Click something that submits or navigates, and wait until the new page has replaced the old one."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, timeout).until(expected_conditions.staleness_of(old_page))
