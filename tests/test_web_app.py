"""The web app in a real headless Chromium against a real server (shipped model, the demo's sample
collection, loopback ports): search by upload, by clicking a result and with a filter; interpolation and
a live edit; bad uploads; the token; a phone-width window.

With LATENTDEX_SCREENSHOTS=FOLDER, the search and latent-space pages are also saved there as
web-search.png and web-latent.png (the README's pictures).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    browser_fixture,  # noqa: F401
    browser_logs,
    screenshot,
    upload,
    wait_for,
    wait_for_count,
)
from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.sample_collection import write_sample_collection
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig

pytestmark = pytest.mark.slow
TOKEN = "browser-s3cret"
MAX_BODY = 1024 * 1024  # small, so that a too-large upload is cheap to make
SCREENSHOTS = os.environ.get("LATENTDEX_SCREENSHOTS")
CARDS = '[data-testid="result-card"]'


@dataclass
class Site:
    running: RunningServer
    samples: list[Path]
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.running.http_port}/"


def run_site(folder: Path, token: str | None = None) -> Iterator[Site]:
    samples = write_sample_collection(folder / "samples")
    codec = LatentCodec.load()
    index_folder(folder / "samples", folder / "store", codec, IndexOptions(workers=1))
    live = LiveStore(folder / "store")
    config = ServerConfig(port=0, http_port=0, token=token, max_message_bytes=MAX_BODY)
    running = start_server(QueryEngine(codec, live), config)
    try:
        yield Site(running, samples, folder)
    finally:
        running.stop(0)
        live.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    yield from run_site(tmp_path_factory.mktemp("site"))


def open_page(browser: webdriver.Chrome, site: Site, view: str = "search") -> None:
    browser.get(f"{site.url}#{view}")
    wait_for(browser, '[data-testid="status"]')
    WebDriverWait(browser, 10).until(
        lambda d: "Images" in d.find_element(By.CSS_SELECTOR, "[data-testid=status]").text
    )
    browser_logs(browser)  # start each test with an empty console


def status_text(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.CSS_SELECTOR, '[data-testid="status"]').text


def searches(browser: webdriver.Chrome) -> int:
    return int(browser.execute_script("return (window.latentdex && window.latentdex.searchCount) || 0"))


def wait_for_search(browser: webdriver.Chrome, before: int, timeout: float = 20) -> None:
    WebDriverWait(browser, timeout).until(lambda d: searches(d) > before)


def set_k(browser: webdriver.Chrome, k: int) -> None:
    field = browser.find_element(By.CSS_SELECTOR, '[data-testid="k-input"]')
    field.clear()
    field.send_keys(str(k))


def card_paths(browser: webdriver.Chrome) -> list[str]:
    return [card.get_attribute("data-path") for card in browser.find_elements(By.CSS_SELECTOR, CARDS)]


def thumbnails_loaded(browser: webdriver.Chrome, css: str) -> bool:
    script = (
        "return [...document.querySelectorAll(arguments[0])].every(i => i.complete && i.naturalWidth > 0)"
    )
    return bool(browser.execute_script(script, css))


def console_errors(browser: webdriver.Chrome) -> list[str]:
    """Console errors other than the failed requests a test provoked on purpose (logged as 4xx)."""
    return [line for line in browser_logs(browser) if "the server responded with a status of 4" not in line]


def test_an_uploaded_photo_shows_k_results_with_thumbnails(browser: webdriver.Chrome, site: Site) -> None:
    open_page(browser, site)
    set_k(browser, 6)
    before = searches(browser)
    upload(browser, '[data-testid="file-input"]', site.samples[0])
    wait_for_search(browser, before)
    cards = wait_for_count(browser, CARDS, 6)
    assert len(cards) == 6 and card_paths(browser)[0] == site.samples[0].name
    WebDriverWait(browser, 10).until(lambda d: thumbnails_loaded(d, f"{CARDS} img"))
    alts = [img.get_attribute("alt") for img in browser.find_elements(By.CSS_SELECTOR, f"{CARDS} img")]
    assert alts == card_paths(browser)
    assert "6" in browser.find_element(By.CSS_SELECTOR, '[data-testid="announce"]').text
    assert browser.execute_script("return window.latentdex.lastSearchMs") > 0
    assert console_errors(browser) == []
    if SCREENSHOTS:
        screenshot(browser, Path(SCREENSHOTS) / "web-search.png")


def test_a_clicked_or_entered_result_starts_a_search_by_it(browser: webdriver.Chrome, site: Site) -> None:
    open_page(browser, site)
    set_k(browser, 5)
    before = searches(browser)
    upload(browser, '[data-testid="file-input"]', site.samples[1])
    wait_for_search(browser, before)
    third = browser.find_elements(By.CSS_SELECTOR, CARDS)[2]
    chosen = third.get_attribute("data-path")
    before = searches(browser)
    third.find_element(By.CSS_SELECTOR, ".card-open").click()
    wait_for_search(browser, before)
    assert chosen in browser.find_element(By.CSS_SELECTOR, "main").text
    assert chosen not in card_paths(browser)  # a search by id leaves the image itself out
    assert len(card_paths(browser)) == 5
    before = searches(browser)
    browser.find_elements(By.CSS_SELECTOR, CARDS)[0].find_element(By.CSS_SELECTOR, ".card-open").send_keys(
        Keys.ENTER
    )
    wait_for_search(browser, before)
    assert console_errors(browser) == []


def test_a_filter_narrows_the_results(browser: webdriver.Chrome, site: Site) -> None:
    open_page(browser, site)
    set_k(browser, 24)
    before = searches(browser)
    upload(browser, '[data-testid="file-input"]', site.samples[2])
    wait_for_search(browser, before)
    assert len(card_paths(browser)) == len(site.samples)
    browser.find_element(By.CSS_SELECTOR, '[data-testid="filter-path-prefix"]').send_keys("scene-00")
    before = searches(browser)
    browser.find_element(By.CSS_SELECTOR, '[data-testid="apply-filters"]').click()
    wait_for_search(browser, before)
    paths = card_paths(browser)
    expected = sorted(p.name for p in site.samples if p.name.startswith("scene-00"))
    assert sorted(paths) == expected and paths[0] == site.samples[2].name


def test_interpolation_and_a_live_edit_decode_frames_and_find_photos(
    browser: webdriver.Chrome, site: Site
) -> None:
    open_page(browser, site)
    set_k(browser, 8)
    before = searches(browser)
    upload(browser, '[data-testid="file-input"]', site.samples[3])
    wait_for_search(browser, before)
    cards = browser.find_elements(By.CSS_SELECTOR, CARDS)
    for card in cards[:3]:
        card.find_element(By.CSS_SELECTOR, '[data-testid="pick-a"]').click()
    for card in cards[-3:]:
        card.find_element(By.CSS_SELECTOR, '[data-testid="pick-b"]').click()
    browser.find_element(By.CSS_SELECTOR, '[data-testid="nav-latent"]').click()
    browser.find_element(By.CSS_SELECTOR, '[data-testid="interpolate-run"]').click()
    frames = wait_for_count(browser, '[data-testid="interpolate-strip"] [data-testid="frame"]', 8, timeout=20)
    assert len(frames) == 8
    WebDriverWait(browser, 10).until(lambda d: thumbnails_loaded(d, '[data-testid="interpolate-strip"] img'))
    strip_text = browser.find_element(By.CSS_SELECTOR, '[data-testid="interpolate-strip"]').text
    assert cards[2].get_attribute("data-path") in strip_text  # the nearest photo at t = 0 is A itself

    browser.find_element(By.CSS_SELECTOR, '[data-testid="direction-name"]').send_keys("browser-dir")
    browser.find_element(By.CSS_SELECTOR, '[data-testid="direction-create"]').click()
    WebDriverWait(browser, 20).until(
        lambda d: "browser-dir" in d.find_element(By.CSS_SELECTOR, '[data-testid="direction-result"]').text
    )
    WebDriverWait(browser, 10).until(
        lambda d: "browser-dir" in d.find_element(By.CSS_SELECTOR, '[data-testid="edit-direction"]').text
    )
    frame = browser.find_element(By.CSS_SELECTOR, '[data-testid="edit-frame"]')
    first = frame.get_attribute("src")
    slider = browser.find_element(By.CSS_SELECTOR, '[data-testid="edit-strength"]')
    slider.send_keys(Keys.END)
    WebDriverWait(browser, 20).until(lambda d: frame.get_attribute("src") not in (first, None, ""))
    assert frame.get_attribute("src").startswith("data:image/")
    nearest = '[data-testid="edit-nearest"] [data-testid="nearest-card"]'
    WebDriverWait(browser, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, nearest)) >= 1)
    assert console_errors(browser) == []
    if SCREENSHOTS:
        browser.execute_script("window.scrollTo(0, 0)")
        screenshot(browser, Path(SCREENSHOTS) / "web-latent.png")


def test_a_bad_upload_shows_the_error_and_the_page_keeps_working(
    browser: webdriver.Chrome, site: Site, tmp_path: Path
) -> None:
    open_page(browser, site)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("these are words, not pixels")
    upload(browser, '[data-testid="file-input"]', not_an_image)
    error = wait_for(browser, '[data-testid="error"]')
    WebDriverWait(browser, 10).until(lambda d: "image" in error.text.lower())
    too_large = tmp_path / "huge.png"
    noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
    Image.fromarray(noise).save(too_large)
    assert too_large.stat().st_size > MAX_BODY
    upload(browser, '[data-testid="file-input"]', too_large)
    WebDriverWait(browser, 10).until(lambda d: "bytes" in error.text)
    set_k(browser, 4)
    before = searches(browser)
    upload(browser, '[data-testid="file-input"]', site.samples[5])
    wait_for_search(browser, before)
    assert card_paths(browser)[0] == site.samples[5].name
    assert not error.is_displayed() or error.text.strip() == ""


def test_at_phone_width_no_view_scrolls_sideways(browser: webdriver.Chrome, site: Site) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        for view in ("search", "browse", "latent"):
            open_page(browser, site, view)
            width = browser.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, f"#{view} is {width} px wide at a 390 px window"
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_with_a_token_the_page_asks_for_it_and_refuses_a_wrong_one(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    for guarded in run_site(tmp_path, token=TOKEN):
        browser.delete_all_cookies()
        browser.get(f"{guarded.url}#search")
        token_input = wait_for(browser, '[data-testid="token-input"]')
        assert "Images" not in status_text(browser)
        token_input.send_keys("wrong-token")
        browser.find_element(By.CSS_SELECTOR, '[data-testid="token-submit"]').click()
        WebDriverWait(browser, 10).until(lambda d: "not accepted" in d.find_element(By.TAG_NAME, "body").text)
        assert "Images" not in status_text(browser)
        token_input.clear()
        token_input.send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, '[data-testid="token-submit"]').click()
        WebDriverWait(browser, 10).until(lambda d: "Images" in status_text(d))
        browser.delete_all_cookies()


def test_browse_pages_the_library_and_the_map_opens_a_search_from_the_keyboard(
    browser: webdriver.Chrome, site: Site
) -> None:
    open_page(browser, site, "browse")
    cards = '[data-testid="browse-grid"] [data-testid="browse-card"]'
    shown = wait_for_count(browser, cards, len(site.samples), timeout=20)
    assert sorted(c.get_attribute("data-path") for c in shown) == sorted(p.name for p in site.samples)
    before = searches(browser)
    shown[4].find_element(By.CSS_SELECTOR, ".card-open").click()
    wait_for_search(browser, before)
    assert shown_path_is_the_query(browser, site.samples[4].name)

    open_page(browser, site, "browse")
    atlas = wait_for(browser, '[data-testid="map-atlas"]', timeout=20)
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("return arguments[0].naturalWidth", atlas) > 0
    )
    reply = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch('/v1/RenderMap', {method: 'POST', body: JSON.stringify({columns: 16, rows: 12, cell: 64})})"
        ".then(r => r.json()).then(done)"
    )
    cell = reply["cells"][0]
    column, row = int(cell.get("column", 0)), int(cell.get("row", 0))
    frame = browser.find_element(By.CSS_SELECTOR, "[data-map-frame]")
    browser.execute_script("arguments[0].focus()", frame)  # the keyboard cursor starts at the top left
    keys = [Keys.ARROW_RIGHT] * column + [Keys.ARROW_DOWN] * row + [Keys.ENTER]
    before = searches(browser)
    ActionChains(browser).send_keys(*keys).perform()
    wait_for_search(browser, before)
    assert shown_path_is_the_query(browser, cell["path"])
    assert console_errors(browser) == []


def test_generate_draws_samples_with_the_nearest_photos(browser: webdriver.Chrome, site: Site) -> None:
    open_page(browser, site, "latent")
    count = browser.find_element(By.CSS_SELECTOR, '[data-testid="generate-count"]')
    count.clear()
    count.send_keys("4")
    browser.find_element(By.CSS_SELECTOR, '[data-testid="generate-run"]').click()
    frames = wait_for_count(browser, '[data-testid="generate-grid"] [data-testid="frame"]', 4, timeout=20)
    assert all(frame.get_attribute("src").startswith("data:image/") for frame in frames)
    grid_text = browser.find_element(By.CSS_SELECTOR, '[data-testid="generate-grid"]').text
    assert any(p.name in grid_text for p in site.samples)  # each sample shows its nearest real photo


def shown_path_is_the_query(browser: webdriver.Chrome, path: str) -> bool:
    """The results are a search from `path`: it is named above them and left out of them."""
    heading = browser.find_element(By.CSS_SELECTOR, '[data-view="search"]').text
    return path in heading and path not in card_paths(browser)
