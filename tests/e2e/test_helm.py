"""The Helm chart for real: lint, server-side dry run, install, helm test, a workflow run by the
installed operator with its own ServiceAccount (not admin), least-privilege checks, no
credential leaks, upgrade with a changed value, uninstall."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from kubernetes import client
from minio import Minio

from tests.e2e.chart import CHART, installed, run, tool
from tests.operator_process import OperatorProcess
from tests.support import LeaseWatch, wait_for
from tests.workflows import create, events, get, partition_jobs, upload_inputs, wait_phase, workflow


@pytest.mark.cluster
def test_the_chart_lints_and_renders_objects_the_apiserver_accepts(crd: None, namespace: str) -> None:
    run(tool("helm"), "lint", "--strict", str(CHART))
    namespaced = ["--set", "watch.clusterWide=false", "--set", f"watch.namespaces={{{namespace},default}}"]
    for values in (["--set", "watch.clusterWide=true"], namespaced):
        rendered = run(tool("helm"), "template", "pf", str(CHART), "-n", "default", "--skip-tests", *values)
        out = run(tool("kubectl"), "apply", "--dry-run=server", "-f", "-", stdin=rendered)
        assert "deployment.apps/pf-paraflow created (server dry run)" in out


@pytest.mark.cluster
def test_the_plain_manifests_apply_on_the_server(crd: None, core: client.CoreV1Api) -> None:
    manifests = (CHART.parents[1] / "deploy" / "paraflow.yaml").read_text()
    core.create_namespace({"metadata": {"name": "paraflow-system"}})  # a dry run cannot create one
    try:
        out = run(
            tool("kubectl"),
            "apply",
            "--server-side",
            "--dry-run=server",
            "--force-conflicts",
            "-f",
            "-",
            stdin=manifests,
        )
    finally:
        core.delete_namespace("paraflow-system")
    assert "deployment.apps/paraflow serverside-applied (server dry run)" in out


@pytest.mark.cluster
def test_values_outside_the_schema_are_refused() -> None:
    done = subprocess.run(
        [tool("helm"), "template", "pf", str(CHART), "--set", "settings.apiThreads=0"], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "apiThreads" in done.stderr


@pytest.fixture
def release_namespace(core: client.CoreV1Api) -> str:
    return f"paraflow-system-{uuid.uuid4().hex[:5]}"


def can_i(sa: str, *args: str) -> bool:
    done = subprocess.run([tool("kubectl"), "auth", "can-i", *args, f"--as={sa}"], capture_output=True, text=True)
    return done.stdout.strip() == "yes"


# A real Deployment: probes, its ServiceAccount's token through the kubernetes Service; it stops
# the shared operator.
@pytest.mark.runtime
@pytest.mark.serial
def test_install_test_run_upgrade_uninstall_with_least_privilege(
    operator_session: OperatorProcess,
    custom: client.CustomObjectsApi,
    core: client.CoreV1Api,
    batch: client.BatchV1Api,
    s3: Minio,
    namespace: str,
    bucket: str,
    release_namespace: str,
    test_env: dict[str, str],
) -> None:
    helm, rel, relns = tool("helm"), "pf", release_namespace
    operator_session.kill()  # only the Helm-installed operator may act in this test
    with installed(rel, relns, namespace, core):
        run(helm, "test", rel, "-n", relns, "--timeout", "180s")

        sa = f"system:serviceaccount:{relns}:pf-paraflow"
        assert can_i(sa, "create", "jobs", "-n", namespace)
        assert can_i(sa, "get", "secrets", "-n", namespace)
        assert not can_i(sa, "get", "secrets", "-n", "kube-system"), "Secrets outside the watched namespaces"
        assert not can_i(sa, "list", "secrets", "-n", namespace), "listing every Secret is more than it needs"
        assert not can_i(sa, "delete", "nodes")
        # Jobs only where it runs workflows: succeededJobs: Delete removes succeeded partition Jobs.
        assert can_i(sa, "delete", "jobs", "-n", namespace)
        assert not can_i(sa, "delete", "jobs", "-n", "kube-system"), "Jobs outside the watched namespaces"
        assert not can_i(sa, "create", "pods", "-n", namespace)
        assert can_i(sa, "update", "leases/pf-paraflow", "-n", relns), "its own Lease, in its own namespace"
        assert not can_i(sa, "update", "leases/kube-scheduler", "-n", relns), "no other Lease"
        assert not can_i(sa, "create", "leases", "-n", namespace), "no Lease outside its own namespace"

        upload_inputs(s3, bucket, 9)
        create(custom, namespace, workflow("helmrun", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket))
        done = wait_phase(custom, namespace, "helmrun", {"Succeeded", "Failed"}, 180)
        assert done["status"]["phase"] == "Succeeded", done["status"]

        secret = test_env["PARAFLOW_TEST_S3_SECRET_KEY"]
        assert secret not in json.dumps(get(custom, namespace, "helmrun"))
        assert secret not in json.dumps(events(core, namespace, "helmrun"))
        pods = core.list_namespaced_pod(relns).items
        operator_pods = [p for p in pods if any(c.name == "operator" for c in p.spec.containers)]
        assert operator_pods, f"no operator pod in {relns}"
        for pod in operator_pods:
            log = core.read_namespaced_pod_log(pod.metadata.name, relns, container="operator")
            assert log.strip(), "the operator's log is readable through the API, as with kubectl logs"
            assert secret not in log

        operator_names = {p.metadata.name for p in operator_pods}
        assert len(operator_names) == 2, "a leader and a hot standby"
        lease = client.CoordinationV1Api().read_namespaced_lease("pf-paraflow", relns)
        assert lease.spec.holder_identity in operator_names

        # A rolling upgrade in the middle of a run: each old leader frees the Lease as it stops.
        upload_inputs(s3, bucket, 36, prefix="rolling/")
        rolling = workflow("rolling", test_env["PARAFLOW_TEST_S3_ENDPOINT"], bucket, maxConcurrency=2)
        rolling["spec"]["input"]["prefix"] = "rolling/"
        rolling["spec"]["processor"]["env"] = [{"name": "PARAFLOW_DEMO_SLEEP_SECONDS", "value": "2"}]
        leases = LeaseWatch(relns, "pf-paraflow")
        try:
            create(custom, namespace, rolling)
            wait_for(lambda: partition_jobs(batch, namespace, "rolling"), 60, "the run to start")
            run(
                helm,
                "upgrade",
                rel,
                str(CHART),
                "-n",
                relns,
                "--reuse-values",
                "--set",
                "settings.resyncSeconds=7",
                "--wait",
                "--timeout",
                "180s",
            )
            done = wait_phase(custom, namespace, "rolling", {"Succeeded", "Failed"}, 300)
        finally:
            leases.stop()
        assert done["status"]["phase"] == "Succeeded", done["status"]
        handovers = leases.handovers()
        print("\nrolling upgrade hand-overs:", [(h.new, round(h.gap_seconds, 2), h.released) for h in handovers])
        assert handovers, "the leader was replaced during the upgrade"
        assert all(h.released for h in handovers), "every hand-over went through a freed Lease, none waited it out"
        names = sorted(j.metadata.name for j in partition_jobs(batch, namespace, "rolling"))
        assert names == sorted(f"rolling-p{i}-a1" for i in range(12)), "one Job per partition, none twice"
        apps = client.AppsV1Api()
        env = {
            e.name: e.value
            for e in apps.read_namespaced_deployment("pf-paraflow", relns).spec.template.spec.containers[0].env
        }
        assert env["PARAFLOW_RESYNC_SECONDS"] == "7"

        run(helm, "uninstall", rel, "-n", relns, "--wait", "--timeout", "120s")
        assert not apps.list_namespaced_deployment(relns).items
        wait_for(lambda: not core.list_namespaced_pod(relns).items, 60, "operator pods to go")
        assert client.ApiextensionsV1Api().read_custom_resource_definition("parallelworkflows.paraflow.dev")
