"""The browser harness on a real page without the project's server: a static page served from a temporary
folder by `http.server`, driven in headless Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from browser_support import (
    browser_fixture,  # noqa: F401
    browser_logs,
    screenshot,
    set_window,
    upload,
    wait_for,
    wait_for_count,
)
from PIL import Image
from selenium import webdriver

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>harness</title><link rel="icon" href="data:,"></head>
<body>
<input id="photo" type="file" accept="image/*">
<p id="seen"></p>
<ul id="items"></ul>
<button id="fail" onclick="undefinedFunction()">fail</button>
<script>
document.getElementById("photo").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  const bitmap = await createImageBitmap(file);
  const seen = document.getElementById("seen");
  seen.textContent = `${file.name} ${file.size} ${bitmap.width}x${bitmap.height}`;
  seen.dataset.ready = "yes";
});
setTimeout(() => {
  for (let i = 0; i < 3; i++) {
    document.getElementById("items").append(Object.assign(document.createElement("li"), {textContent: i}));
  }
}, 200);
</script>
</body></html>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("site")
    (folder / "index.html").write_text(PAGE, encoding="utf-8")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_page_sees_an_uploaded_png_without_console_errors(
    browser: webdriver.Chrome, page_url: str, tmp_path: Path
) -> None:
    photo = tmp_path / "red square.png"
    Image.new("RGB", (37, 23), (200, 30, 30)).save(photo)
    browser.get(page_url)
    browser_logs(browser)  # only this page's errors count

    upload(browser, "#photo", photo)

    seen = wait_for(browser, "#seen[data-ready]")
    assert seen.text == f"red square.png {photo.stat().st_size} 37x23"
    assert browser_logs(browser) == []


def test_window_size_screenshot_counts_and_console_errors(
    browser: webdriver.Chrome, page_url: str, tmp_path: Path
) -> None:
    set_window(browser, 640, 480)
    browser.get(page_url)
    browser_logs(browser)

    assert browser.execute_script("return [innerWidth, innerHeight];") == [640, 480]
    assert [item.text for item in wait_for_count(browser, "#items li", 3)] == ["0", "1", "2"]
    with Image.open(screenshot(browser, tmp_path / "shots" / "page.png")) as shot:
        assert shot.size == (640, 480)

    wait_for(browser, "#fail").click()
    errors = browser_logs(browser)
    assert len(errors) == 1 and "undefinedFunction is not defined" in errors[0]
    set_window(browser, 1280, 900)
