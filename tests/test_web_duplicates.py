"""The web app's Duplicates view in a real headless Chromium against a real server, on the library of
test_duplicates (270 generated scenes plus two exact copies, a re-encode, a resize, a crop and a burst,
indexed with the shipped model): the Near and Exact presets, the keeper first and marked, paging with
"More groups", a click on a card searching by it, and a phone-width window.

With LATENTDEX_SCREENSHOTS=FOLDER, the view with its Near groups is also saved there as
web-duplicates.png.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from browser_support import (
    browser_fixture,  # noqa: F401
    browser_logs,
    screenshot,
    set_window,
    wait_for,
    wait_for_count,
)
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait
from test_duplicates import (
    COPIES,
    CROP_GROUPS,
    EXACT_GROUP,
    NEAR_GROUPS_WITH_FILES,
    REGION_GROUPS,
    SCENES,
    Library,
    build_library,
)

from latentdex.models.inference import LatentCodec
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig

pytestmark = pytest.mark.slow
SCREENSHOTS = os.environ.get("LATENTDEX_SCREENSHOTS")
GROUPS = '[data-testid="duplicate-group"]'
CARDS = '[data-testid="duplicate-card"]'
SUMMARY = '[data-testid="duplicates-summary"]'
MORE = '[data-testid="duplicates-more"]'
TIMES = "\N{MULTIPLICATION SIGN}"  # between width and height on the cards


@dataclass
class Site:
    running: RunningServer
    library: Library

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.running.http_port}/"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    library = build_library(tmp_path_factory.mktemp("web-duplicates"))
    live = LiveStore(library.store)
    running = start_server(QueryEngine(LatentCodec.load(), live), ServerConfig(port=0, http_port=0))
    try:
        yield Site(running, library)
    finally:
        running.stop(0)
        live.close()


def open_duplicates(browser: webdriver.Chrome, site: Site) -> None:
    browser.get("about:blank")  # a fresh page: from another view of the app, a new hash would not reload
    browser.get(f"{site.url}#duplicates")
    wait_for(browser, '[data-testid="duplicates-run"]')
    WebDriverWait(browser, 10).until(
        lambda d: "Images" in d.find_element(By.CSS_SELECTOR, "[data-testid=status]").text
    )
    browser_logs(browser)  # start each test with an empty console


def find(
    browser: webdriver.Chrome,
    preset: str = "Near",
    page_size: int | None = None,
    groups: int = NEAR_GROUPS_WITH_FILES,
) -> list[WebElement]:
    """Choose the preset (and page size), press Find duplicates, and wait for `groups` groups."""
    Select(browser.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-preset"]')).select_by_visible_text(
        {
            "Near": "Near — re-encodes, resizes, crops",
            "Exact": "Exact — identical files",
            "Similar": "Similar — more edits",
        }[preset]
    )
    if page_size is not None:
        field = browser.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-page-size"]')
        field.clear()
        field.send_keys(str(page_size))
    browser.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-run"]').click()
    WebDriverWait(browser, 60).until(
        lambda d: (
            "scanned" in d.find_element(By.CSS_SELECTOR, SUMMARY).text
            and not d.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-busy"]').is_displayed()
        )
    )
    return wait_for_count(browser, GROUPS, groups)


def searches(browser: webdriver.Chrome) -> int:
    return int(browser.execute_script("return (window.latentdex && window.latentdex.searchCount) || 0"))


def thumbnails_loaded(browser: webdriver.Chrome, css: str) -> bool:
    script = (
        "return [...document.querySelectorAll(arguments[0])].every(i => i.complete && i.naturalWidth > 0)"
    )
    return bool(browser.execute_script(script, css))


def test_near_shows_the_groups_with_the_keeper_first_and_marked(
    browser: webdriver.Chrome, site: Site
) -> None:
    set_window(browser, 1280, 900)
    open_duplicates(browser, site)
    nav = browser.find_element(By.CSS_SELECTOR, '[data-testid="nav-duplicates"]')
    assert nav.get_attribute("aria-current") == "page"
    assert browser.title == "latentdex · Duplicates"
    groups = find(browser, "Near")
    summary = browser.find_element(By.CSS_SELECTOR, SUMMARY).text
    scanned = SCENES + COPIES
    assert summary == f"7 groups, 15 images, 8 copies beside their keepers, of {scanned} images scanned"

    first = groups[0]
    cards = first.find_elements(By.CSS_SELECTOR, CARDS)
    assert [c.get_attribute("data-path") for c in cards] == EXACT_GROUP
    assert first.find_element(By.CSS_SELECTOR, "h3").text == "Group 1 · 3 images"
    assert first.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-exact"]').text == "exact copies"
    keeper = cards[0]
    assert first.get_attribute("data-keeper") == keeper.get_attribute("data-id")
    assert keeper.get_attribute("data-role") == "keeper"
    assert keeper.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-keep"]').text == "Keep"
    assert keeper.get_attribute("data-path") == "copies/scene-000.jpg"
    name = keeper.find_element(By.CSS_SELECTOR, ".card-open").accessible_name
    assert name.startswith("Keep: copies/scene-000.jpg")
    for copy in cards[1:]:
        assert copy.get_attribute("data-role") == "copy"
        assert "0 from keeper · same file" in copy.text and f"320{TIMES}240 · JPEG ·" in copy.text
        assert (
            "distance 0 from the keeper, the same file"
            in copy.find_element(By.CSS_SELECTOR, ".card-open").accessible_name
        )

    # the others are not exact: a re-encode, a resize and two crops, each with its distance and size
    others = {
        tuple(c.get_attribute("data-path") for c in g.find_elements(By.CSS_SELECTOR, CARDS)): g
        for g in groups[1:]
    }
    assert set(others) == {
        ("copies/reencoded.jpg", "scenes/scene-001.png"),
        ("scenes/scene-002.webp", "copies/small.png"),
        *(tuple(group) for group in CROP_GROUPS),
        *(tuple(group) for group in REGION_GROUPS),  # found by the server reading their files
    }
    for group in groups[1:]:
        assert not group.find_elements(By.CSS_SELECTOR, '[data-testid="duplicates-exact"]')
        assert "Group" in group.find_element(By.CSS_SELECTOR, "h3").text
    resized = others[("scenes/scene-002.webp", "copies/small.png")].find_elements(By.CSS_SELECTOR, CARDS)
    assert f"320{TIMES}240 · WEBP" in resized[0].text and f"160{TIMES}120 · PNG" in resized[1].text
    assert re.search(
        r"^0\.0*[1-9]\d* from keeper$", resized[1].find_element(By.CSS_SELECTOR, ".card-dist").text
    )
    assert "same file" not in resized[1].text
    assert not browser.find_element(By.CSS_SELECTOR, MORE).is_displayed()
    rule = browser.find_element(By.CSS_SELECTOR, "[data-dup-threshold]").text
    assert re.search(
        r"Near.*distance at most 0\.0\d+, or pHash within \d+ bits and distance at most 0\.\d+, "
        r"or one picture inside the other in their files",
        rule,
    )

    WebDriverWait(browser, 10).until(lambda d: thumbnails_loaded(d, f"{CARDS} img"))
    assert browser_logs(browser) == []
    if SCREENSHOTS:
        browser.execute_script("window.scrollTo(0, 0)")
        screenshot(browser, Path(SCREENSHOTS) / "web-duplicates.png")


def test_exact_shows_only_the_identical_files(browser: webdriver.Chrome, site: Site) -> None:
    open_duplicates(browser, site)
    find(browser, "Near")
    (group,) = find(browser, "Exact", groups=1)  # a new search replaces the groups shown
    assert [c.get_attribute("data-path") for c in group.find_elements(By.CSS_SELECTOR, CARDS)] == EXACT_GROUP
    assert group.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-exact"]').is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, SUMMARY).text.startswith("1 group, 3 images, 2 copies")
    assert "Exact" in browser.find_element(By.CSS_SELECTOR, "[data-dup-threshold]").text
    assert browser_logs(browser) == []


def test_more_groups_appends_the_next_page_until_the_last(browser: webdriver.Chrome, site: Site) -> None:
    open_duplicates(browser, site)
    find(browser, "Near", page_size=1, groups=1)
    more = browser.find_element(By.CSS_SELECTOR, MORE)
    for shown in range(2, NEAR_GROUPS_WITH_FILES + 1):
        assert more.is_displayed() and f"{shown - 1} of {NEAR_GROUPS_WITH_FILES}" in more.text
        more.click()
        groups = wait_for_count(browser, GROUPS, shown)
        # the keyboard goes on from the first group added
        WebDriverWait(browser, 10).until(
            lambda d, n=shown: d.switch_to.active_element.get_attribute("id") == f"dup-group-{n}"
        )
    headings = [g.find_element(By.CSS_SELECTOR, "h3").text for g in groups]
    assert headings == [
        "Group 1 · 3 images",
        *(f"Group {n} · 2 images" for n in range(2, NEAR_GROUPS_WITH_FILES + 1)),
    ]
    WebDriverWait(browser, 10).until(lambda d: not d.find_element(By.CSS_SELECTOR, MORE).is_displayed())
    assert browser_logs(browser) == []


def test_a_clicked_or_entered_card_opens_a_search_by_it(browser: webdriver.Chrome, site: Site) -> None:
    open_duplicates(browser, site)
    groups = find(browser, "Near")
    card = groups[0].find_elements(By.CSS_SELECTOR, CARDS)[1]
    path = card.get_attribute("data-path")
    before = searches(browser)
    card.find_element(By.CSS_SELECTOR, ".card-open").click()
    WebDriverWait(browser, 20).until(lambda d: searches(d) > before)
    assert browser.current_url.endswith("#search")
    assert f"Similar to {path}" in browser.find_element(By.CSS_SELECTOR, "[data-query-title]").text

    open_duplicates(browser, site)
    groups = find(browser, "Near")
    card = groups[1].find_elements(By.CSS_SELECTOR, CARDS)[1]
    path = card.get_attribute("data-path")
    before = searches(browser)
    card.find_element(By.CSS_SELECTOR, ".card-open").send_keys(Keys.ENTER)
    WebDriverWait(browser, 20).until(lambda d: searches(d) > before)
    assert f"Similar to {path}" in browser.find_element(By.CSS_SELECTOR, "[data-query-title]").text
    assert browser_logs(browser) == []


def test_the_controls_are_labelled_and_come_in_order(browser: webdriver.Chrome, site: Site) -> None:
    open_duplicates(browser, site)
    preset = browser.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-preset"]')
    page_size = browser.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-page-size"]')
    run = browser.find_element(By.CSS_SELECTOR, '[data-testid="duplicates-run"]')
    assert preset.accessible_name == "Which copies" and page_size.accessible_name == "Groups per page"
    assert Select(preset).first_selected_option.text.startswith("Near")
    preset.send_keys(Keys.TAB)
    assert browser.switch_to.active_element == page_size
    page_size.send_keys(Keys.TAB)
    assert browser.switch_to.active_element == run
    groups = find(browser, "Near")
    run.send_keys(Keys.TAB)  # after the button, the first group's cards, keeper first
    assert browser.switch_to.active_element.accessible_name.startswith("Keep: copies/scene-000.jpg")
    assert groups[0].find_element(By.CSS_SELECTOR, "ul").accessible_name == "Group 1 · 3 images"
    help_text = browser.find_element(By.CSS_SELECTOR, '[data-view="duplicates"] .dup-help').text
    assert "deletes and moves nothing" in help_text and "--emit-script review.sh" in help_text


def test_at_phone_width_the_groups_do_not_scroll_sideways(browser: webdriver.Chrome, site: Site) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        open_duplicates(browser, site)
        find(browser, "Near")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390, f"#duplicates is {width} px wide at a 390 px window"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
