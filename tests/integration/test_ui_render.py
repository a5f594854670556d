"""The Map Run view draws a 100,000-partition run from its status alone, every cell in the colour
of its state and every count right, in a real browser (Debian's Chromium), with a cluster of our
own (tests/ui_fakes.py) holding the status."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from paraflow.ui.grid import STATES, grid
from tests.browser import close_to, colours_at, keep_screenshot, page_of, served
from tests.ui_fakes import FakeCluster, big_workflow

pytestmark = pytest.mark.browser
# What a person is told each colour means (the page's legend, static/style.css and app.js).
COLOURS = {
    "pending": "#cfd8dc",
    "queued": "#8e24aa",
    "running": "#1e88e5",
    "retrying": "#fb8c00",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "notRun": "#90a4ae",
}
TOTAL = 100_000


def test_a_100000_partition_run_draws_every_cell_in_its_states_colour_with_every_count(browser: Browser) -> None:
    failed = set(range(3, TOTAL // 2, 97))  # more than the 200 the list shows
    running = set(range(60_000, 60_100))
    wf = big_workflow(TOTAL, failed=failed, running=running)
    expected = grid(wf["status"]).cells
    with served(FakeCluster(wf)) as url, page_of(browser, f"{url}#/ns/sim/wf/big", width=2400, height=1800) as page:
        page.wait_for_function("window.paraflow && window.paraflow.lastDrawMs !== null", timeout=60_000)
        counts = {state: int(page.inner_text(f"#count-{state}")) for state in STATES}
        assert counts == {
            "pending": TOTAL - TOTAL // 2 - len(running),
            "queued": 0,
            "running": 0,
            "retrying": len(running),  # their latest attempt is 2
            "succeeded": TOTAL // 2 - len(failed),
            "failed": len(failed),
            "notRun": 0,
        }
        assert page.inner_text("#count-total") == str(TOTAL)
        centres = page.evaluate(f"Array.from({{length: {TOTAL}}}, (_, i) => window.paraflow.cellCenter(i))")
        seen = colours_at(page, [(p["x"], p["y"]) for p in centres])
        wrong = [
            (i, STATES[int(code)], seen[i])
            for i, code in enumerate(expected)
            if not close_to(seen[i], COLOURS[STATES[int(code)]])
        ]
        assert not wrong, f"{len(wrong)} cells drawn in another colour than their state's, e.g. {wrong[:5]}"
        rows = page.locator("#failed tbody tr")
        assert rows.count() == min(len(failed), 200)
        assert rows.first.inner_text().split("\t")[:2] == ["3", "2"]
        assert f"the first 200 of {len(failed)}" in page.inner_text("#failed-note")
        keep_screenshot(page, "ui-100000-partitions.png")
