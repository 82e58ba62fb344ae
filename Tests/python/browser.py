"""Headless Chromium (Debian's chromium and chromium-driver, installed with apt-get when missing)
driven by Selenium, for the web UI test."""
import os
import shutil

from debian import ensure_packages


def ensure_chromium():
    ensure_packages("chromium", "chromium-driver",
                    present=lambda: shutil.which("chromium") and shutil.which("chromedriver"))


def headless_chromium(width=1366, height=900):
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}"]:
        options.add_argument(arg)
    # Given the driver's path, Selenium does not try to download one.
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
