"""Headless Chromium (Debian's chromium and chromium-driver, installed with apt-get when missing)
driven by Selenium, for the web UI test."""
import os
import shutil
import subprocess
import sys


def ensure_chromium():
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    print("installing chromium and chromium-driver with apt-get ...", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env)


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
