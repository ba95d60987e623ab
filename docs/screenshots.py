"""Retake the README's screenshots of the demo: the app as it starts offline (falling back to the
toy model, `toy/llava-onevision`), in headless Chromium: one Run of the synthetic colour example
at 10% retention (docs/screenshot.png) and "compare methods" on the synthetic flash example at
5% (docs/compare.png): a budget where stc keeps the flash and HoliTom, VisionZip and FastVID
lose it (at 2%, the paper's headline budget, the toy's stc loses this example too: README, "Demo").

    HF_HUB_OFFLINE=1 python docs/screenshots.py

Needs what the browser test needs: Debian's Chromium at $CHROMIUM (default /usr/bin/chromium)
and the playwright package (the `test` extra).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
RUN_RETENTION = "10"  # percent: the largest budget of the README's toy table
COMPARE_RETENTION = "5"  # percent: the README's case stc keeps (at 2% it is lost)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _app():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module.create_app([])  # the default model; offline, the fallback


def _open(browser, port: int, example: str, retention: str):
    """A page with ``example`` (a label of the examples list) filled in, at ``retention`` (percent)
    and 16 frames."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("#run", timeout=120_000)
    page.get_by_text(example).first.click()  # an example fills the inputs (it runs nothing)
    page.wait_for_selector("#video video", timeout=60_000)
    for control, value in (("#retention", retention), ("#frames", "16")):  # 16: all the clip has
        box = page.locator(f"{control} input[type=number]")
        box.fill(value)
        box.press("Enter")
    return page


def _image_ready(page, selector: str) -> None:
    page.wait_for_function(
        f"() => {{ const img = document.querySelector('{selector} img'); "
        "return img && img.complete && img.naturalWidth > 0 }",
        timeout=300_000,
    )


def run_tab(browser, port: int, out: Path) -> None:
    """The Run button on the colour example: both answers, the grid, the costs."""
    page = _open(browser, port, "synthetic clip (toy model): What colour is the small shape?", RUN_RETENTION)
    page.click("#run")
    page.wait_for_function(
        """() => ['#baseline-answer', '#compressed-answer'].every(
               id => (document.querySelector(id + ' textarea')?.value || '').length > 0)""",
        timeout=300_000,
    )
    _image_ready(page, "#grid")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out), full_page=True)
    page.close()


def compare_tab(browser, port: int, out: Path) -> None:
    """Compare methods (the default ticks) on the flash example (a shape in one of 16 frames)."""
    page = _open(browser, port, "synthetic clip (toy model): Which shape appeared briefly?", COMPARE_RETENTION)
    page.get_by_role("tab", name="compare methods").click()
    page.click("#compare")
    _image_ready(page, "#compare-grids")
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out), full_page=True)
    page.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    app = _app()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            run_tab(browser, port, ROOT / "docs" / "screenshot.png")
            compare_tab(browser, port, ROOT / "docs" / "compare.png")
            browser.close()
    finally:
        app.demo.close()
    print(f"docs/screenshot.png, docs/compare.png: the app on {app.state.startup.llm.model_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
