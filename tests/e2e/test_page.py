"""The drawing page in headless Chromium (Debian's package, driven by Playwright): draw with the
mouse, classify, upload files, and keep a screenshot to look at."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from shared.config import REPO_ROOT
from tests.conftest import STROKES, draw_character, running_server

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT = REPO_ROOT / "artifacts" / "screenshots" / "page.png"
TIMEOUT_MS = 15_000

if not CHROMIUM.exists():
    pytest.skip("no /usr/bin/chromium: `make browser` installs Debian's chromium package",
                allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    context = browser.new_context(viewport={"width": 1100, "height": 860})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    sync_api.expect.set_options(timeout=TIMEOUT_MS)
    page.goto(url + "/")
    page.wait_for_selector("#model-info dt:text('Version')")
    return context, page


@pytest.fixture
def page(browser, http_server):
    context, page = open_page(browser, http_server.url)
    yield page
    context.close()


@pytest.fixture(scope="module")
def keyed_server(tiny_model_files, tmp_path_factory):
    """The local server with the public demo off, as a deployment with publicDemo=false."""
    with running_server(tiny_model_files, tmp_path_factory.mktemp("keyed_server"),
                        public_demo="off", torch_threads="1") as url:
        yield url


@pytest.fixture
def keyed_page(browser, keyed_server):
    context, page = open_page(browser, keyed_server)
    yield page
    context.close()


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes (0..1 coordinates) on the canvas with the mouse, as a person would."""
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=12)
        page.mouse.up()


def top_labels(page) -> list[str]:
    """The rendered top-3 (each label cell also says "digit", "upper case", ...)."""
    rows = page.locator("#results .row")
    sync_api.expect(rows).to_have_count(3)
    return [text.split()[0] for text in rows.locator(".label").all_inner_texts()]


def upload(page, name: str, mime_type: str, data: bytes) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": mime_type, "buffer": data}])


def test_draw_and_classify(page):
    draw(page, STROKES["7"])
    page.click("#classify")
    assert len(top_labels(page)) == 3
    page.locator("#preview").wait_for(state="visible")
    sync_api.expect(page.locator("#preview")).to_have_js_property("naturalWidth", 28)
    assert page.locator("#error").is_hidden()
    assert "Inference" in page.locator("#timings").inner_text()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_upload_an_image_file(page):
    upload(page, "ell.png", "image/png", draw_character(STROKES["L"]))
    assert len(top_labels(page)) == 3
    page.locator("#preview").wait_for(state="visible")


def test_the_shipped_model_reads_what_was_drawn(page, http_server):
    if not http_server.real_model:
        pytest.skip("model/emnist_edge.pt is absent: the tiny test model predicts noise")
    draw(page, STROKES["7"])
    page.click("#classify")
    assert top_labels(page)[0] == "7"
    upload(page, "ell.png", "image/png", draw_character(STROKES["L"]))
    sync_api.expect(page.locator("#results .row .label").first).to_contain_text("L")


def test_a_non_image_upload_shows_the_error_in_words(page):
    upload(page, "notes.txt", "text/plain", b"shopping list: milk, eggs")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "not an image" in error.inner_text().lower()
    assert page.locator("#results .row").count() == 0


def test_clear_resets_the_page(page):
    draw(page, STROKES["X"])
    page.click("#classify")
    top_labels(page)
    page.click("#clear")
    assert page.locator("#results .row").count() == 0
    assert page.locator("#preview-figure").is_hidden()
    page.click("#classify")  # nothing drawn: the page says so without asking the server
    assert "Draw a character first" in page.locator("#error").inner_text()


def test_the_page_classifies_through_the_anonymous_demo_route(page):
    sync_api.expect(page.locator("#route")).to_have_text("POST /api/demo/classify")
    assert page.locator("#key-box").is_hidden()
    draw(page, STROKES["7"])
    with page.expect_request("**/api/demo/classify") as sent:
        page.click("#classify")
    assert sent.value.method == "POST" and "x-functions-key" not in sent.value.headers
    assert sent.value.headers["content-type"] == "image/png"
    assert len(top_labels(page)) == 3


def test_the_page_sends_the_drawing_as_a_grey_png(page):
    """The page encodes its canvas as an 8-bit grey PNG (cheaper for the server to decode than
    the browser's RGBA one): a valid PNG of the canvas's size with the canvas's pixels. Read in
    the page (Chromium does not show a Blob body to the request event); the other tests
    classify what it sends."""
    from PIL import Image

    draw(page, STROKES["7"])
    sent, canvas = page.evaluate("""async () => {
        const c = document.getElementById("canvas");
        const pixels = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        const blob = await canvasBlob();
        return [Array.from(new Uint8Array(await blob.arrayBuffer())), Array.from(pixels)];
    }""")
    sent_image = Image.open(io.BytesIO(bytes(sent)))
    sent_image.load()  # checks every chunk's CRC and the zlib stream
    assert (sent_image.format, sent_image.mode, sent_image.size) == ("PNG", "L", (280, 280))
    rgba = np.array(canvas, np.uint8).reshape(280, 280, 4)
    assert (rgba[..., 3] == 255).all()  # opaque: nothing to composite
    expected = np.asarray(Image.fromarray(rgba[..., :3]).convert("L"))
    assert np.abs(np.asarray(sent_image, np.int16) - expected).max() <= 1
    assert (expected < 128).sum() > 500  # the strokes are there


def test_without_the_demo_the_page_asks_for_a_key_and_sends_it(keyed_page):
    page = keyed_page
    sync_api.expect(page.locator("#route")).to_have_text("POST /api/classify")
    page.locator("#key-box").wait_for(state="visible")
    draw(page, STROKES["7"])
    page.click("#classify")
    assert "enter a function key" in page.locator("#error").inner_text()
    page.fill("#key", "a-function-key")
    with page.expect_request("**/api/classify?*") as sent:
        page.click("#classify")
    assert sent.value.headers["x-functions-key"] == "a-function-key"
    assert sent.value.url.endswith("/api/classify?top_k=3&include_processed=true")
    assert len(top_labels(page)) == 3
    page.locator("#preview").wait_for(state="visible")
