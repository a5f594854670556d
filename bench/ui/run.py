"""How long the Map Run view takes to draw a large run in a real browser (Debian's Chromium,
headless, through Playwright), with the status served by a cluster of our own.

    hack/chromium.sh && .venv/bin/python -m bench.ui.run

For 1,000, 10,000 and 100,000 partitions (half succeeded, one in 997 failed, 100 retrying),
each loaded five times in a fresh page: ``draw ms`` from the run's JSON in hand to the grid and
the progress plot drawn (the page's own ``performance.now()``), and ``page ms`` from navigation to
drawn (the 5 MB plotly.js cached after the first load). Goal: 100,000 partitions drawn in under a
second. Results: bench/results/ui-render.{json,md}.
"""

from __future__ import annotations

import statistics
from typing import Any

from tests.browser import chromium, served
from tests.ui_fakes import FakeCluster, big_workflow

from bench.common import machine, write_results

SIZES = (1_000, 10_000, 100_000)
LOADS = 5
GOAL_MS = 1000


def main() -> None:
    rows = []
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1600, "height": 1200})
        for total in SIZES:
            wf = big_workflow(
                total, failed=set(range(3, total // 2, 997)), running=set(range(total // 2 + 10, total // 2 + 110))
            )
            draws, pages = [], []
            with served(FakeCluster(wf)) as url:
                for _ in range(LOADS):
                    page = context.new_page()
                    page.goto(f"{url}#/ns/sim/wf/big")
                    page.wait_for_function("window.paraflow && window.paraflow.lastDrawMs !== null", timeout=60_000)
                    draws.append(page.evaluate("window.paraflow.lastDrawMs"))
                    pages.append(page.evaluate("window.paraflow.drawnAt"))
                    page.close()
            rows.append(
                {
                    "partitions": total,
                    "draw_ms_median": round(statistics.median(draws)),
                    "draw_ms": [round(d) for d in draws],
                    "page_ms_median": round(statistics.median(pages)),
                    "page_ms": [round(p) for p in pages],
                    "meets_goal": total != 100_000 or statistics.median(draws) < GOAL_MS,
                }
            )
            print(rows[-1], flush=True)
        version = browser.version
    write_results("ui-render", {"machine": machine(), "chromium": version, "rows": rows}, table(rows, version))


def table(rows: list[dict[str, Any]], version: str) -> str:
    lines = [
        f"# The Map Run view drawing a large run (bench/ui/run.py, Chromium {version}, headless)",
        "",
        "| partitions | draw ms (median of 5) | each | page load to drawn ms (median) | each |",
        "|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['partitions']:,} | {r['draw_ms_median']} | {', '.join(map(str, r['draw_ms']))} | "
            f"{r['page_ms_median']} | {', '.join(map(str, r['page_ms']))} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
