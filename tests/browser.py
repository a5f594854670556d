"""Headless Chromium for the Map Run view's tests and benchmark, and what a person would see in it:
the colour drawn at a point, screenshots kept as test artifacts."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("PARAFLOW_TEST_ARTIFACTS") or ROOT / "build" / "test-artifacts")


@contextmanager
def chromium() -> Iterator[Browser]:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("no chromium on PATH: hack/chromium.sh installs Debian's (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--disable-gpu", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()


def rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def colours_at(page: Page, points: list[tuple[float, float]]) -> list[tuple[int, int, int]]:
    """The colour drawn at each point of the page (CSS pixels of the viewport), from one screenshot."""
    shot = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
    scale = shot.width / page.viewport_size["width"] if page.viewport_size else 1
    return [shot.getpixel((int(x * scale), int(y * scale))) for x, y in points]  # type: ignore[misc]


def close_to(found: tuple[int, int, int], expected: str, tolerance: int = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(found, rgb(expected), strict=True))


def keep_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


@contextmanager
def ui_process(namespace: str, env: dict[str, str]) -> Iterator[str]:
    """``paraflow ui --no-open`` as a user starts it; yields the URL it printed (token included)."""
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("paraflow")), "ui", "--no-open", "-n", namespace],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        printed = ""
        for line in process.stdout:
            printed += line
            if "paraflow ui: http" in line:
                url = line.split("paraflow ui: ", 1)[1].strip()
                break
        else:
            raise RuntimeError(f"paraflow ui ended before printing its URL:\n{printed}")
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe from filling
        yield url
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def served(cluster: object) -> Iterator[str]:
    """The view's server over ``cluster`` in a thread and event loop of its own (Playwright's sync
    API holds this thread's); yields its URL, token included."""
    import asyncio

    from aiohttp import web

    from paraflow.ui.server import TOKEN, make_app

    app = make_app(cluster)  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the view's server did not start")
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/{app[TOKEN]}/"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


@contextmanager
def page_of(browser: Browser, url: str, *, width: int, height: int) -> Iterator[Page]:
    """A fresh page at ``url``, closed after (its event stream with it)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(url)
        yield page
    finally:
        page.close()
