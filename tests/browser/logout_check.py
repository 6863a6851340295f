"""Drives Debian's Chromium (headless, through its own chromedriver) against the Django
test app and the gateway behind nginx, as a packing-station user would:

log in with the real login form -> the landing page -> open the demo label (a PDF) ->
log out with the landing page's button -> open the same label again, by navigation and
by Back: the label must not be shown.

Run by `tests/it/browser.rs`, which starts nginx, Django and the gateway. Exits 0 and
prints "ok" when every step held, else exits 1 naming the step.
"""

import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE = os.environ["BROWSER_BASE_URL"].rstrip("/")
USER = os.environ["BROWSER_USERNAME"]
PASSWORD = os.environ["BROWSER_PASSWORD"]
LABEL = os.environ["BROWSER_LABEL_PATH"]


def fail(step, detail):
    print(f"FAILED at {step}: {detail}", file=sys.stderr)
    sys.exit(1)


def content_type(driver):
    return driver.execute_script("return document.contentType")


def main():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("BROWSER_CHROMIUM", "/usr/bin/chromium")
    profile = tempfile.mkdtemp(prefix="label-gateway-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    # Never download: open PDFs in the browser, as a packing station does.
    options.add_experimental_option(
        "prefs", {"plugins.always_open_pdf_externally": False}
    )
    service = Service(os.environ.get("BROWSER_CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    wait = WebDriverWait(driver, 20)
    try:
        driver.get(f"{BASE}/accounts/login/?next=/test/home/")
        driver.find_element(By.ID, "id_username").send_keys(USER)
        driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
        driver.find_element(By.ID, "login-submit").click()
        try:
            wait.until(EC.presence_of_element_located((By.ID, "demo-label")))
        except Exception:
            fail("login", driver.page_source[:500])

        driver.find_element(By.ID, "demo-label").click()
        wait.until(lambda d: d.current_url.endswith(LABEL))
        wait.until(lambda d: content_type(d) == "application/pdf")

        driver.get(f"{BASE}/test/home/")
        wait.until(EC.presence_of_element_located((By.ID, "logout-submit")))
        driver.find_element(By.ID, "logout-submit").click()
        try:
            wait.until(EC.presence_of_element_located((By.ID, "id_username")))
        except Exception:
            fail("logout", driver.page_source[:500])

        # Navigation to the label after logout.
        driver.get(f"{BASE}{LABEL}")
        kind = content_type(driver)
        if kind == "application/pdf":
            fail("navigation after logout", "the label was shown")
        if "Label not available" not in driver.page_source:
            fail("navigation after logout", driver.page_source[:500])
        links = [a.get_attribute("href") for a in driver.find_elements(By.TAG_NAME, "a")]
        if not any("/accounts/login/?next=" in (h or "") for h in links):
            fail("navigation after logout", f"no way to log in: {links}")

        # Back through the history to the page that showed the label.
        for _ in range(5):
            driver.back()
            if driver.current_url.endswith(LABEL) and content_type(driver) == "application/pdf":
                fail("Back after logout", "the label was shown from the browser's cache")
        print("ok")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
