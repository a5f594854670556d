"""Metrics where platform teams look for them: the chart's ServiceMonitor is accepted by an
apiserver holding prometheus-operator's own CRD (which checks its schema), and every query of the
chart's Grafana dashboard returns data from a real Prometheus (built from the Go module proxy,
hack/build.sh prometheus) scraping the operator while a workflow runs: a panel whose query
returns nothing fails."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from kubernetes import client, utils
from minio import Minio

from tests.e2e.chart import CHART, run, tool
from tests.operator_process import OperatorProcess, free_port
from tests.support import wait_for
from tests.workflows import create, upload_inputs, wait_phase, workflow

pytestmark = pytest.mark.cluster
DASHBOARD = CHART / "dashboards" / "paraflow.json"


def queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


# Targets a replicated run must move above 0 (a series exported at 0 all along is no proof):
# (panel title, target index); the others (queued, failed, errors, lag) may stay 0.
MOVED = {
    ("Runs by phase", 0),
    ("Partitions by state", 0),
    ("Queued, running, failed", 1),
    ("Time to finish", 0),
    ("Apiserver writes", 0),
    ("Replication bytes", 0),
    ("Replication bytes", 1),
    ("Jobs created", 0),
    ("Leader, passes and errors", 0),
    ("Leader, passes and errors", 1),
}


def install_servicemonitor_crd(kube: client.ApiClient) -> None:
    path = os.environ.get("PARAFLOW_TEST_SERVICEMONITOR_CRD", "")
    if not Path(path).is_file():
        raise RuntimeError(
            f'no ServiceMonitor CRD at {path!r}: hack/build.sh prometheus && eval "$(hack/cluster.sh env)"'
        )
    try:
        utils.create_from_yaml(kube, path)
    except utils.FailToCreateError as e:
        if any(getattr(x, "status", None) != 409 for x in e.api_exceptions):
            raise
    ext = client.ApiextensionsV1Api(kube)
    wait_for(
        lambda: (
            any(
                c.type == "Established" and c.status == "True"
                for c in ext.read_custom_resource_definition("servicemonitors.monitoring.coreos.com").status.conditions
                or []
            )
            or None
        ),
        30,
        "the ServiceMonitor CRD established",
    )


def render(*values: str, only: str) -> dict:
    out = run(tool("helm"), "template", "pf", str(CHART), "-n", "monitored", *values, "--show-only", only)
    doc: dict = yaml.safe_load(out)
    return doc


def test_the_charts_servicemonitor_is_accepted_by_prometheus_operators_crd_and_selects_the_metrics_service(
    kube: client.ApiClient, custom: client.CustomObjectsApi, namespace: str
) -> None:
    install_servicemonitor_crd(kube)
    values = ["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=kps"]
    monitor = render(*values, only="templates/servicemonitor.yaml")
    service = render(*values, only="templates/service.yaml")
    monitor["metadata"]["namespace"] = namespace
    created = custom.create_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "servicemonitors", monitor
    )
    assert created["metadata"]["labels"]["release"] == "kps"
    selector = created["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items(), "it selects the metrics Service"
    assert [e["port"] for e in created["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    # What the CRD's schema refuses, the apiserver refuses: the schema is really checked.
    monitor["metadata"]["name"] = "bad"
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    with pytest.raises(client.ApiException) as refused:
        custom.create_namespaced_custom_object("monitoring.coreos.com", "v1", namespace, "servicemonitors", monitor)
    assert refused.value.status == 422
    # And the chart's own values schema refuses an interval that is not a duration.
    bad = subprocess.run(
        [tool("helm"), "template", "pf", str(CHART), "--set", "metrics.serviceMonitor.interval=soon"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "interval" in bad.stderr


def test_the_dashboard_configmap_carries_the_dashboard_for_grafanas_sidecar() -> None:
    rendered = render("--set", "metrics.dashboard.enabled=true", only="templates/dashboard.yaml")
    assert rendered["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(rendered["data"]["paraflow.json"]) == json.loads(DASHBOARD.read_text())


@contextmanager
def prometheus(target: str) -> Iterator[str]:
    """A Prometheus scraping ``target`` every second; yields its URL."""
    work = Path(tempfile.mkdtemp(prefix="paraflow-prometheus-"))
    (work / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "paraflow", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    address = f"127.0.0.1:{free_port()}"
    log = (work / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={address}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://{address}"
        wait_for(lambda: _ready(url), 60, "Prometheus ready")
        yield url
    finally:
        process.terminate()
        process.wait(30)
        log.close()


def _ready(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200 or None
    except OSError:
        return None


def query(url: str, expr: str) -> list[dict]:
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(expr)}", timeout=10) as response:
        doc = json.load(response)
    assert doc["status"] == "success", doc
    result: list[dict] = doc["data"]["result"]
    return result


def test_every_dashboard_query_returns_data_from_a_prometheus_scraping_the_operator(
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    s3: Minio,
    namespace: str,
    bucket: str,
    archive: str,
    test_env: dict[str, str],
) -> None:
    with prometheus(f"127.0.0.1:{operator.metrics_port}") as url:
        # 8 partitions one at a time, 3 s each: long enough for the time to finish, whose rate
        # needs two of its 15 s steps of history, to have a value while the run goes on.
        upload_inputs(s3, bucket, 24)
        body = workflow("watched", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=1)
        body["spec"]["replication"] = {"destinations": [{"name": "archive", "bucket": archive}]}
        body["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "3"}]
        create(custom, namespace, body)
        wait_phase(custom, namespace, "watched", {"Succeeded"}, 180)
        empty = queries()
        deadline = time.monotonic() + 120  # rates and derivatives need a few scrapes after the run
        while empty and time.monotonic() < deadline:
            empty = [(title, expr) for title, expr in empty if not query(url, expr)]
            time.sleep(2)
        assert not empty, f"dashboard queries that return nothing: {empty}"
        targets = json.loads(DASHBOARD.read_text())["panels"]
        moved = {
            (p["title"], i): t["expr"] for p in targets for i, t in enumerate(p["targets"]) if (p["title"], i) in MOVED
        }
        assert set(moved) == MOVED, "every target expected to move is in the dashboard"
        still = [
            key
            for key, expr in moved.items()
            if not any(float(x["value"][1]) > 0 for x in query(url, f"max_over_time(({expr})[5m:1s])"))
        ]
        assert not still, f"dashboard queries that stayed at 0 through a replicated run: {still}"
