"""The Map Run view, started as a user starts it (`paraflow ui`), follows a real run on the
cluster: counts and the ETA while it runs, failed partitions in red with their exit code and
their pod's log, and a Redrive button that redrives the workflow."""

from __future__ import annotations

import io

import pytest
from kubernetes import client
from minio import Minio
from playwright.sync_api import Browser

from tests.browser import close_to, colours_at, keep_screenshot, page_of, ui_process
from tests.operator_process import OperatorProcess
from tests.support import wait_for
from tests.workflows import create, get, patch, upload_inputs, wait_phase, workflow

pytestmark = pytest.mark.cluster
RED, GREEN = "#c62828", "#2e7d32"
FAILING = (3, 8)


def chaos(s3: Minio, bucket: str, wf: dict, partition: int) -> str:
    key = f"output/_paraflow/{wf['metadata']['uid']}/chaos/p{partition}"
    s3.put_object(bucket, key, io.BytesIO(b"3"), 1)
    return key


def test_the_view_follows_a_run_shows_its_failures_and_redrives_it(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    test_env: dict[str, str],
    browser: Browser,
) -> None:
    upload_inputs(s3, bucket, 15)
    body = workflow("shown", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=2, suspend=True)
    body["spec"]["partitioner"] = {"builtin": {"maxItemsPerPartition": 1}}  # 15 partitions
    body["spec"]["retry"] = {"maxAttempts": 1}
    body["spec"]["failureTolerance"] = {"count": 5}
    body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "3"}]
    wf = create(custom, namespace, body)
    wait_phase(custom, namespace, "shown", {"Suspended"}, 30)
    injected = [chaos(s3, bucket, wf, p) for p in FAILING]
    patch(custom, namespace, "shown", {"spec": {"suspend": False}})

    with (
        ui_process(namespace, {**test_env}) as url,
        page_of(
            browser, url.replace(f"#/ns/{namespace}", f"#/ns/{namespace}/wf/shown"), width=1400, height=1600
        ) as page,
    ):
        page.wait_for_function(
            "window.paraflow.view && window.paraflow.view.phase === 'Running' && "
            "window.paraflow.view.partitions.succeeded >= 1",
            timeout=120_000,
        )
        assert page.inner_text("#count-total") == "15"
        assert page.inner_text("#eta").startswith("ETA "), page.inner_text("#eta")
        keep_screenshot(page, "ui-running.png")

        page.wait_for_function("['Succeeded', 'Failed'].includes(window.paraflow.view.phase)", timeout=180_000)
        assert (page.inner_text("#count-succeeded"), page.inner_text("#count-failed")) == ("13", "2")
        centre = "(i) => window.paraflow.cellCenter(i)"
        points = [page.evaluate(centre, i) for i in (0, *FAILING)]
        seen = colours_at(page, [(p["x"], p["y"]) for p in points])
        assert close_to(seen[0], GREEN) and all(close_to(c, RED) for c in seen[1:]), seen
        rows = page.locator("#failed tbody tr")
        assert [rows.nth(i).inner_text().split("\t")[0] for i in range(rows.count())] == ["3", "8"]
        assert "exit 3" in rows.nth(0).inner_text()
        rows.nth(0).locator("a.logs").click()
        page.wait_for_function("document.getElementById('log').textContent.includes('injected failure')")
        keep_screenshot(page, "ui-finished.png")

        for key in injected:
            s3.remove_object(bucket, key)
        page.click("#redrive")
        page.wait_for_function("document.getElementById('action-result').textContent.includes('redrive #1')")
        assert get(custom, namespace, "shown")["status"]["redrive"]["count"] == 1
        page.wait_for_function(
            "window.paraflow.view.phase === 'Succeeded' && window.paraflow.view.partitions.succeeded === 15",
            timeout=120_000,
        )
        assert page.inner_text("#count-failed") == "0"
        wait_for(lambda: get(custom, namespace, "shown")["status"]["phase"] == "Succeeded" or None, 10, "Succeeded")
        keep_screenshot(page, "ui-redriven.png")
