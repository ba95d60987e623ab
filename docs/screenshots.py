"""Retake the README's screenshot of the demo: the app as it starts offline (falling back to the
toy model, `toy/llava-onevision`), one Run of the first synthetic example at 10% retention, in
headless Chromium.

    HF_HUB_OFFLINE=1 python docs/screenshots.py            # writes docs/screenshot.png

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
RETENTION = "10"  # percent: where the toy keeps the colour answer (README's toy table: 93%)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _app():
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    module.create_app([])  # the default model; offline, the fallback
    return module


def main() -> int:
    from playwright.sync_api import sync_playwright

    app = _app()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True)
    out = ROOT / "docs" / "screenshot.png"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#run", timeout=120_000)
            # the first example (the synthetic colour clip) fills the inputs; retention 10%; Run
            page.get_by_text("synthetic clip (toy model): What colour is the small shape?").first.click()
            page.wait_for_selector("#video video", timeout=60_000)
            retention = page.locator("#retention input[type=number]")
            retention.fill(RETENTION)
            retention.press("Enter")
            frames = page.locator("#frames input[type=number]")
            frames.fill("8")  # all the clip has
            frames.press("Enter")
            page.click("#run")
            page.wait_for_function(
                """() => ['#baseline-answer', '#compressed-answer'].every(
                       id => (document.querySelector(id + ' textarea')?.value || '').length > 0)""",
                timeout=300_000,
            )
            page.wait_for_function(
                "() => { const img = document.querySelector('#grid img'); return img && img.complete && img.naturalWidth > 0 }",
                timeout=120_000,
            )
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
    finally:
        app.demo.close()
    print(f"{out.relative_to(ROOT)}: the app on {app.STARTUP.llm.model_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
