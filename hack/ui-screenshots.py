"""The screenshots of the Map Run view in the README and docs: `paraflow ui` as a user starts it,
in Debian's headless Chromium, on a workflow that is about to run (the demo's), once while it runs
and once when it is done.

    hack/chromium.sh && eval "$(hack/cluster.sh env)"
    .venv/bin/python hack/ui-screenshots.py -n paraflow-demo daily-logs   # then apply or submit it
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.browser import chromium, ui_process

IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"


def wait_until_running(name: str, namespace: str, timeout: float) -> None:
    """Until the workflow exists and is not final (a re-applied one may still be the old run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        phase = subprocess.run(
            ["kubectl", "get", "pwf", name, "-n", namespace, "-o", "jsonpath={.status.phase}"],
            capture_output=True,
            text=True,
        ).stdout
        if phase in ("Partitioning", "Running"):
            return
        time.sleep(1)
    raise SystemExit(f"{namespace}/{name} did not start running within {timeout:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflow")
    parser.add_argument("-n", "--namespace", default="default")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the run to end")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    wait_until_running(args.workflow, args.namespace, args.timeout)
    with ui_process(args.namespace, dict(os.environ)) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(url.replace(f"#/ns/{args.namespace}", f"#/ns/{args.namespace}/wf/{args.workflow}"))
        wait = args.timeout * 1000
        page.wait_for_function(
            "window.paraflow.view && window.paraflow.view.phase === 'Running' && "
            "window.paraflow.view.partitions.succeeded >= window.paraflow.view.partitions.total / 3",
            timeout=wait,
        )
        page.wait_for_timeout(1500)  # the plots' last redraw
        page.screenshot(path=str(IMAGES / "ui-running.png"), full_page=True)
        page.wait_for_function("['Succeeded', 'Failed'].includes(window.paraflow.view.phase)", timeout=wait)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(IMAGES / "ui-finished.png"), full_page=True)
    print(f"wrote {IMAGES}/ui-running.png and ui-finished.png")


if __name__ == "__main__":
    main()
