"""A real headless Chromium for the web tests, driven through Selenium: Debian's `chromium` and
`chromium-driver`, found on this machine or installed with apt-get, and never anything downloaded by
Selenium itself.

A test module gets the session-wide `browser` fixture by importing it,
`from browser_support import browser_fixture  # noqa: F401`: under another name, so that the tests'
`browser` arguments do not shadow the import. It skips the test, with the reason, where Chromium cannot
be had (not installed, and not root or no apt-get, or apt-get failed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

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
    """A headless Chromium whose page area is `width` x `height` CSS pixels, its console kept for
    `browser_logs`. RuntimeError, with the reason, if it cannot be started. Quit it with `driver.quit()`."""
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


# One browser for the session however many modules import the fixture: pytest keeps a fixture imported
# into two modules as two fixtures, each with its own session-wide value. A failure is kept too, so that
# neither apt-get nor a start that failed is tried again for every module.
_session: dict[str, webdriver.Chrome | str] = {}


@pytest.fixture(scope="session", name="browser")
def browser_fixture() -> Iterator[webdriver.Chrome]:
    """The `browser` fixture: one headless Chromium for the whole test session, quit (with its processes)
    at the end. The test is skipped where Chromium cannot be had, and errors where it is here but does not
    start."""
    if not _session:
        if find_chromium() is None:
            _session["skip"] = UNAVAILABLE
        else:
            try:
                _session["driver"] = start_browser()
            except RuntimeError as exc:
                _session["error"] = str(exc)
    if "skip" in _session:
        pytest.skip(f"Chromium is not available here: {_session['skip']}")
    if "error" in _session:
        pytest.fail(str(_session["error"]), pytrace=False)
    driver = _session["driver"]
    assert isinstance(driver, webdriver.Chrome)
    yield driver
    if _session.pop("driver", None) is not None:
        driver.quit()


def wait_for(driver: webdriver.Chrome, css_selector: str, timeout: float = 10) -> WebElement:
    """The first element matching `css_selector`, once it is visible; TimeoutException otherwise."""
    return WebDriverWait(driver, timeout).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css_selector))
    )


def wait_for_count(
    driver: webdriver.Chrome, css_selector: str, n: int, timeout: float = 10
) -> list[WebElement]:
    """The elements matching `css_selector` once there are exactly `n` of them; TimeoutException otherwise."""

    found: list[WebElement] = []

    def counted(d: webdriver.Chrome) -> bool:
        found[:] = d.find_elements(By.CSS_SELECTOR, css_selector)
        return len(found) == n

    WebDriverWait(driver, timeout).until(counted)
    return found


def screenshot(driver: webdriver.Chrome, path: Path | str) -> Path:
    """A PNG of the page area at `path` (its folder made if need be)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"Chromium could not take a screenshot into {path}")
    return path


def set_window(driver: webdriver.Chrome, width: int, height: int) -> None:
    """Size the window so that the page area (innerWidth x innerHeight) is `width` x `height`."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return [window.innerWidth, window.innerHeight];")
    if inner != [width, height]:
        driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])


def upload(driver: webdriver.Chrome, input_css: str, path: Path | str, timeout: float = 10) -> None:
    """Choose the file at `path` in the `<input type=file>` at `input_css` (which may be hidden), as if
    picked in the file dialog: the input's change event fires."""
    element = WebDriverWait(driver, timeout).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, input_css))
    )
    element.send_keys(str(Path(path).resolve()))


def browser_logs(driver: webdriver.Chrome) -> list[str]:
    """The console errors (console.error, uncaught exceptions, failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
