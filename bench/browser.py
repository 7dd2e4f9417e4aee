"""A real headless Chromium, driven through Selenium, for the web tests and the web benchmark: Debian's
`chromium` and `chromium-driver`, found on this machine or installed with apt-get, and never anything
downloaded by Selenium itself.

`find_chromium` finds (or installs) the browser and its driver; `start_browser` starts one headless,
offline but for the loopback, with a page area of a given size (`set_window`). The tests' fixture
(`tests/browser_support.py`) and `bench.web_latency` both start their browser here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service

# /usr/bin/chromium is a shell wrapper that sources /etc/chromium.d, which adds flags of its own
# (--enable-remote-extensions, --load-extension=...); the binary it runs takes only ours.
BROWSERS = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
DRIVERS = ("/usr/bin/chromedriver",)
UNAVAILABLE = "no chromium and chromedriver here, and apt-get could not install them (it needs root)"

FLAGS = (
    "--headless=new",
    "--no-sandbox",  # the tests run as root in CI, where Chromium's sandbox refuses to start
    "--disable-dev-shm-usage",  # containers get a 64 MB /dev/shm
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    "--no-pings",
    "--password-store=basic",
    "--use-mock-keychain",
    "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider,AutofillServerCommunication",
    # Sign-in and update checks still look up accounts.google.com and clients2.google.com: nothing but
    # the loopback resolves (the rule applies to IP literals too).
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--remote-debugging-pipe",
)


def _first(candidates: tuple[str, ...], name: str) -> Path | None:
    for candidate in (*candidates, shutil.which(name)):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def _found() -> tuple[Path, Path] | None:
    browser, driver = _first(BROWSERS, "chromium"), _first(DRIVERS, "chromedriver")
    return (browser, driver) if browser and driver else None


def find_chromium() -> tuple[Path, Path] | None:
    """(browser, chromedriver), installing Debian's chromium and chromium-driver with apt-get if need be
    and possible (root, apt-get on the PATH); None where they cannot be had."""
    if found := _found():
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"],
    ):
        try:
            if subprocess.run(command, env=env, capture_output=True, timeout=900).returncode != 0:
                return None
        except subprocess.TimeoutExpired:
            return None
    return _found()


def start_browser(width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """A headless Chromium whose page area is `width` x `height` CSS pixels, its console kept (read it
    with `driver.get_log("browser")`). RuntimeError, with the reason, if it cannot be started. Quit it
    with `driver.quit()`."""
    found = find_chromium()
    if found is None:
        raise RuntimeError(UNAVAILABLE)
    browser, driver_path = found
    # Read by Selenium Manager, which an explicit driver path already keeps from running at all.
    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(browser)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(driver_path), service_args=["--log-level=OFF"])
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as exc:  # also urllib3's ReadTimeoutError, after 120 s of a browser that hangs
        service.stop()
        reason = exc.msg if isinstance(exc, WebDriverException) else repr(exc)
        raise RuntimeError(f"Chromium ({browser}) did not start under {driver_path}: {reason}") from exc
    try:
        set_window(driver, width, height)
    except WebDriverException:
        driver.quit()
        raise
    return driver


def set_window(driver: webdriver.Chrome, width: int, height: int) -> None:
    """Size the window so that the page area (innerWidth x innerHeight) is `width` x `height`."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    if inner != [width, height]:
        driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])
