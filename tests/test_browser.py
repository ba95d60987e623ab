"""A person's path through the app in a real browser: headless Chromium (Debian's, at
/usr/bin/chromium) driven by Playwright uploads a clip, asks, runs, and sees both answers and
the retention grid. Loopback only. Outside CI a machine without Chromium skips this test; in
CI (CI=true) a missing browser fails it loudly, since `make test` installs one."""

import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_app import CLIP, import_app, serving  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # Debian's; `make test` installs it
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.fixture(scope="module")
def browser():
    missing = []
    if not os.access(CHROMIUM, os.X_OK):
        missing.append(f"{CHROMIUM} (apt-get install -y chromium; `make test` does it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def url():
    with serving(import_app()) as served_url:
        yield served_url


def test_upload_run_and_see_both_answers_and_the_grid(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.wait_for_selector("#run", timeout=60_000)
        assert "meaningless" in page.inner_text("#banner")

        page.set_input_files("#video input[type=file]", str(CLIP))
        page.wait_for_selector("#video video", timeout=60_000)
        page.fill("#question textarea", "What is shown in this video?")
        frames = page.locator("#frames input[type=number]")
        frames.fill("8")
        frames.press("Enter")
        page.click("#run")

        page.wait_for_function(
            """() => ['#baseline-answer', '#compressed-answer'].every(
                   id => (document.querySelector(id + ' textarea')?.value || '').length > 0)""",
            timeout=120_000,
        )
        page.wait_for_function(
            "() => { const img = document.querySelector('#grid img'); return img && img.complete && img.naturalWidth > 0 }",
            timeout=60_000,
        )
        page.wait_for_function(
            "() => document.querySelector('#compressed-answer').innerText.includes('compressed — stc 2%')",
            timeout=30_000,
        )
        assert page.input_value("#baseline-answer textarea").strip()
        assert page.input_value("#compressed-answer textarea").strip()
        assert re.search(r"\bof 8 frames send no token", page.inner_text("#summary"))  # the 8-frame setting took
        costs = page.locator("#metrics").inner_text()  # a row per run: the baseline and stc 2%
        assert "visual tokens in LLM" in costs and "baseline" in costs and "stc 2%" in costs
    finally:
        page.close()


def test_compare_tab_shows_every_ticked_method(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(url)
        page.wait_for_selector("#run", timeout=60_000)
        page.set_input_files("#video input[type=file]", str(CLIP))
        page.wait_for_selector("#video video", timeout=60_000)
        page.fill("#question textarea", "Which way does it turn?")
        frames = page.locator("#frames input[type=number]")
        frames.fill("8")
        frames.press("Enter")
        page.get_by_role("tab", name="compare methods").click()
        ticked = page.locator("#compare-methods input[type=checkbox]:checked").count()
        assert ticked >= 2  # the paper's comparison is ticked at first
        page.click("#compare")

        page.wait_for_function(
            "() => { const img = document.querySelector('#compare-grids img'); return img && img.complete && img.naturalWidth > 0 }",
            timeout=120_000,
        )
        answers = page.locator("#compare-answers").inner_text()
        assert "baseline" in answers and "stc 2%" in answers
        assert page.locator("#compare-metrics").inner_text().count("2%") >= ticked
        assert "Which way does it turn?" in page.inner_text("#compare-summary")
    finally:
        page.close()
