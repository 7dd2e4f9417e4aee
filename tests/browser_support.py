"""A real headless Chromium for the web tests, driven through Selenium: Debian's `chromium` and
`chromium-driver`, found on this machine or installed with apt-get, and never anything downloaded by
Selenium itself.

A test module gets the session-wide `browser` fixture by importing it,
`from browser_support import browser_fixture  # noqa: F401`: under another name, so that the tests'
`browser` arguments do not shadow the import. It skips the test, with the reason, where Chromium cannot
be had (not installed, and not root or no apt-get, or apt-get failed).

The launcher itself (`find_chromium`, `start_browser`, `set_window`: flags, offline, window sizing) is
`bench.browser`, shared with the web benchmark; this module re-exports it and adds the fixture and the
tests' helpers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from bench.browser import UNAVAILABLE, find_chromium, set_window, start_browser

__all__ = [
    "browser_fixture",
    "browser_logs",
    "find_chromium",
    "screenshot",
    "set_window",
    "start_browser",
    "upload",
    "wait_for",
    "wait_for_count",
]

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
