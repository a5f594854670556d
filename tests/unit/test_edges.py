"""Promises at the edges, in the pure layers: retry semantics of non-retryable exit codes, a
failed run's status and manifest, redrive feedback, restricted pod security, run-scoped output
prefixes, diagnosis of pods that never run, and when a destination is the output itself."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from paraflow.k8s import builders
from paraflow.k8s.builders import WorkflowRef
from paraflow.models import WorkflowSpec
from paraflow.planning import planner, stalls
from paraflow.planning.planner import CreatePartition, CreateReplication, JobState, ReplicationTally
from paraflow.settings import Settings
from paraflow_worker import contract, identity
from tests.unit.builders import T0, make_spec, spec_dict
from tests.unit.test_planner import observe, part, partitioned
from tests.unit.test_planner_replication import repl
from tests.unit.test_planner_replication import spec as replicated_spec

pytestmark = pytest.mark.unit

WF = WorkflowRef("wf", "ns", "uid-1")


def non_retryable(p: int, a: int) -> planner.JobFacts:
    return dataclasses.replace(part(p, a, JobState.FAILED), retryable=False)


def test_a_partition_failing_with_a_non_retryable_exit_code_gets_no_new_attempt() -> None:
    spec = make_spec(retry={"maxAttempts": 3, "intervalSeconds": 0})
    result = planner.plan(spec, partitioned(2), observe(non_retryable(0, 1), part(1, 1, JobState.SUCCEEDED)))
    assert result.creates == []
    assert result.status.failed_indexes == "0"
    assert result.status.phase == "Failed"


def test_a_retryable_failure_still_gets_its_next_attempt() -> None:
    spec = make_spec(retry={"maxAttempts": 3, "intervalSeconds": 0})
    result = planner.plan(spec, partitioned(1), observe(part(0, 1, JobState.FAILED)))
    assert result.creates == [CreatePartition(0, 2)]


def test_a_redrive_gives_a_non_retryably_failed_partition_a_whole_new_round_of_attempts() -> None:
    """Redrive r starts at attempt maxAttempts x r + 1, with backoff inside the round as at first,
    and the partition fails for good after exactly maxAttempts more."""
    spec = make_spec(retry={"maxAttempts": 3, "intervalSeconds": 100, "jitter": "none"})
    jobs = [non_retryable(0, 1), part(1, 1, JobState.SUCCEEDED)]
    failed = planner.plan(spec, partitioned(2), observe(*jobs)).status
    redriven = planner.plan(spec, failed, observe(*jobs, redrive="fix"))
    assert redriven.creates == [CreatePartition(0, 4)]
    assert redriven.status.phase == "Running"

    jobs.append(part(0, 4, JobState.FAILED))
    waiting = planner.plan(spec, redriven.status, observe(*jobs, redrive="fix", now=T0 + dt.timedelta(seconds=50)))
    assert waiting.creates == []  # the first retry of the round waits intervalSeconds, as at first
    assert waiting.requeue_after == pytest.approx(50)
    due = planner.plan(spec, redriven.status, observe(*jobs, redrive="fix", now=T0 + dt.timedelta(seconds=100)))
    assert due.creates == [CreatePartition(0, 5)]
    jobs += [part(0, 5, JobState.FAILED), part(0, 6, JobState.FAILED)]
    spent = planner.plan(spec, due.status, observe(*jobs, redrive="fix", now=T0 + dt.timedelta(hours=1)))
    assert (spent.creates, spent.status.failed_indexes, spent.status.phase) == ([], "0", "Failed")


def test_job_facts_tell_a_pod_failure_policy_failure_from_an_ordinary_one() -> None:
    body = builders.partition_job(WF, make_spec(), 0, attempt=1, settings=Settings())

    def failed(reason: str) -> dict[str, Any]:
        cond = {"type": "Failed", "status": "True", "reason": reason, "lastTransitionTime": "2026-11-24T12:00:00Z"}
        return {**body, "status": {"conditions": [cond]}}

    policy = builders.job_facts(failed("PodFailurePolicy"))
    exhausted = builders.job_facts(failed("FailedIndexes"))
    assert policy is not None and not policy.retryable
    assert exhausted is not None and exhausted.retryable


def test_non_retryable_exit_codes_fail_the_job_through_the_pod_failure_policy() -> None:
    spec = make_spec(**{"processor.nonRetryableExitCodes": [42, 3, 42]})
    rules = builders.partition_job(WF, spec, 0, attempt=1, settings=Settings())["spec"]["podFailurePolicy"]["rules"]
    assert {
        "action": "FailJob",
        "onExitCodes": {"containerName": "processor", "operator": "In", "values": [3, 42]},
    } in (rules)


def test_a_failed_run_writes_its_manifest_once_nothing_runs_any_more() -> None:
    spec = make_spec(maxConcurrency=3)
    running = planner.plan(
        spec, partitioned(4), observe(non_retryable(0, 1), part(1, 1, JobState.SUCCEEDED), part(2, 1, JobState.ACTIVE))
    )
    assert running.status.phase == "Failed" and running.manifest is None  # partition 2 still runs
    settled = planner.plan(
        spec,
        running.status,
        observe(non_retryable(0, 1), part(1, 1, JobState.SUCCEEDED), part(2, 1, JobState.SUCCEEDED)),
    )
    assert settled.manifest == [(1, 1), (2, 1)]
    assert settled.status.succeeded_indexes == "1-2"
    assert settled.creates == []  # partition 3 never starts in a failed run


def test_replication_finishing_after_the_run_failed_is_still_counted_and_so_are_a_failed_jobs_copies() -> None:
    spec = replicated_spec(retry={"maxAttempts": 1})
    jobs = [non_retryable(0, 1), part(1, 1, JobState.SUCCEEDED), repl(1, 1, JobState.ACTIVE)]
    failed = planner.plan(spec, partitioned(2), observe(*jobs)).status
    assert failed.phase == "Failed"
    jobs[-1] = repl(1, 1, JobState.FAILED)
    tally = {"wf-r1-a1": ReplicationTally(copied=2, bytes=20, failed=1, first_failure="archive: k: boom")}
    counted = planner.plan(
        spec, failed, planner.Observed(jobs=jobs, generation=1, now=T0, uid="uid-1", reports=tally)
    ).status
    assert counted.replication is not None
    assert (counted.replication.objects, counted.replication.bytes, counted.replication.failed) == (2, 20, 1)
    assert counted.replication.failed_indexes == "1"
    assert counted.conditions[-1].reason == "FailureToleranceExceeded" or any(
        x.reason == "FailureToleranceExceeded" for x in counted.conditions
    )


def test_a_redrive_of_a_running_workflow_is_refused_with_a_warning() -> None:
    result = planner.plan(make_spec(), partitioned(2), observe(part(0, 1, JobState.ACTIVE), redrive="now"))
    assert result.status.redrive.count == 0
    assert [(e.type, e.reason) for e in result.events] == [("Warning", "RedriveIgnored")]
    assert "still Running" in result.events[0].message


def test_a_redrive_of_a_succeeded_workflow_re_runs_its_replication_to_restore_replicas() -> None:
    spec = replicated_spec()
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED)]
    jobs += [repl(0, 1, JobState.SUCCEEDED), repl(1, 1, JobState.SUCCEEDED)]
    tallies = {"wf-r0-a1": ReplicationTally(copied=1), "wf-r1-a1": ReplicationTally(copied=1)}
    done = planner.plan(spec, partitioned(2), planner.Observed(jobs, 1, T0, "uid-1", reports=tallies)).status
    assert done.phase == "Succeeded" and done.replication is not None and done.replication.objects == 2

    redriven = planner.plan(spec, done, observe(*jobs, redrive="restore"))

    assert [x for x in redriven.creates if isinstance(x, CreateReplication)] == [
        CreateReplication(0, 4, winner=1),  # the first attempt of redrive 1's round (maxAttempts 3)
        CreateReplication(1, 4, winner=1),
    ]
    assert redriven.status.phase == "Replicating"
    assert redriven.status.replication is not None and redriven.status.replication.objects == 0
    assert [e.reason for e in redriven.events if e.reason.startswith("Redrive")] == ["Redriven"]


def test_a_succeeded_workflow_without_replication_says_why_a_redrive_does_nothing() -> None:
    jobs = [part(0, 1, JobState.SUCCEEDED)]
    done = planner.plan(make_spec(), partitioned(1), observe(*jobs)).status
    result = planner.plan(make_spec(), done, observe(*jobs, redrive="again"))
    assert result.creates == []
    assert "nothing failed" in result.events[0].message


def test_outputs_are_scoped_by_the_runs_uid() -> None:
    env = builders.partition_job(WF, make_spec(), 3, attempt=2, settings=Settings())["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    prefix = next(e["value"] for e in env if e["name"] == contract.Env.OUTPUT_PREFIX)
    assert prefix == "daily/uid-1/p3/a2/"
    other = WorkflowRef("wf", "other-namespace", "uid-2")
    env2 = builders.partition_job(other, make_spec(), 3, attempt=2, settings=Settings())["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert next(e["value"] for e in env2["env"] if e["name"] == contract.Env.OUTPUT_PREFIX) != prefix


def every_pod_template(spec: WorkflowSpec) -> list[dict[str, Any]]:
    settings = Settings()
    jobs = [
        builders.partitioner_job(WF, spec, 1, settings=settings),
        builders.partition_job(WF, spec, 0, attempt=1, settings=settings),
        builders.replication_job(WF, spec, 0, attempt=1, winner=1, settings=settings),
        builders.replication_job(WF, spec, None, attempt=1, winner=0, settings=settings),
    ]
    return [j["spec"]["template"]["spec"] for j in jobs]


def violates_restricted(pod: dict[str, Any]) -> list[str]:
    """The checks of Pod Security ``restricted`` that a Job's pod template can fail."""
    problems = []
    ctx = pod.get("securityContext", {})
    if ctx.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile")
    for container in pod["containers"]:
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append("capabilities")
        if sc.get("runAsNonRoot", ctx.get("runAsNonRoot")) is not True:
            problems.append("runAsNonRoot")
        if sc.get("runAsUser", ctx.get("runAsUser")) == 0:
            problems.append("runAsUser")
    return problems


@pytest.mark.parametrize("partitioner", ["builtin", "container"])
def test_every_pod_paraflow_creates_passes_pod_security_restricted_by_default(partitioner: str) -> None:
    spec = replicated_spec()
    if partitioner == "container":
        spec = WorkflowSpec.model_validate(
            {**spec.model_dump(by_alias=True), "partitioner": {"container": {"image": "mine:1"}}}
        )
    for pod in every_pod_template(spec):
        assert violates_restricted(pod) == [], pod


def test_a_processor_can_run_as_its_own_user_or_explicitly_as_root() -> None:
    own = replicated_spec(processor={"image": "mine:1", "securityContext": {"runAsUser": 1000, "fsGroup": 2000}})
    pod = every_pod_template(own)[1]
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["fsGroup"]) == (1000, 2000)
    root = replicated_spec(processor={"image": "mine:1", "securityContext": {"runAsUser": 0, "runAsNonRoot": False}})
    assert violates_restricted(every_pod_template(root)[1]) == ["runAsNonRoot", "runAsUser"]
    with pytest.raises(ValidationError, match="runAsUser 0 is root"):
        WorkflowSpec.model_validate(spec_dict(**{"processor.securityContext": {"runAsUser": 0}}))


def test_the_partitioner_has_a_deadline() -> None:
    body = builders.partitioner_job(WF, make_spec(**{"partitioner.activeDeadlineSeconds": 120}), 1, settings=Settings())
    assert body["spec"]["activeDeadlineSeconds"] == 120


def stalled(name: str, age: float) -> planner.JobFacts:
    job = part(0, 1, JobState.ACTIVE)
    return dataclasses.replace(job, name=name, stalled=True, created_at=T0 - dt.timedelta(seconds=age))


def test_only_jobs_stalled_long_enough_and_not_asked_lately_are_asked_about_oldest_first() -> None:
    jobs = [
        stalled("young", 2),
        stalled("old", 60),
        stalled("older", 90),
        stalled("asked", 100),
        part(1, 1, JobState.ACTIVE),
    ]
    due = stalls.to_ask(jobs, T0, 8, asked={"asked": 995.0}, clock=1000.0, limit=5)
    assert [j.name for j in due] == ["older", "old"]
    assert [j.name for j in stalls.to_ask(jobs, T0, 8, asked={}, clock=1000.0, limit=1)] == ["asked"]


def test_a_refused_pod_is_diagnosed_from_the_newest_failed_create_event_unless_pods_came_since() -> None:
    events = [
        {"reason": "FailedCreate", "message": "old", "lastTimestamp": "2026-11-24T12:00:00Z"},
        {
            "reason": "FailedCreate",
            "message": 'pods "x" is forbidden: violates PodSecurity "restricted:latest"',
            "lastTimestamp": "2026-11-24T12:00:05Z",
        },
    ]
    stall = stalls.diagnose("wf-part-a1", events, [])
    assert stall is not None and stall.reason == "FailedCreate" and "violates PodSecurity" in stall.message
    healed = [*events, {"reason": "SuccessfulCreate", "message": "ok", "lastTimestamp": "2026-11-24T12:00:09Z"}]
    assert stalls.diagnose("wf-part-a1", healed, []) is None  # the namespace was relabelled since


def test_what_the_pods_say_now_wins_over_an_old_refusal() -> None:
    events = [{"reason": "FailedCreate", "message": "old", "lastTimestamp": "2026-11-24T12:00:00Z"}]
    pulling = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull", "message": "x"}}}]}}
    assert stalls.diagnose("j", events, [pulling]) == stalls.Stall("j", "ErrImagePull", "x")


def test_a_redrive_of_failed_replication_resets_its_failures_and_deadline_clock() -> None:
    spec = replicated_spec(retry={"maxAttempts": 1})
    spec.replication.deadline_seconds = 60  # type: ignore[union-attr]
    jobs = [part(0, 1, JobState.SUCCEEDED), repl(0, 1, JobState.FAILED)]
    tally = {"wf-r0-a1": ReplicationTally(copied=5, failed=1, first_failure="archive: k: boom")}
    failed = planner.plan(spec, partitioned(1), planner.Observed(jobs, 1, T0, "uid-1", reports=tally)).status
    assert failed.phase == "Failed" and failed.replication is not None and failed.replication.failed == 1
    redriven = planner.plan(spec, failed, observe(*jobs, redrive="again", now=T0 + dt.timedelta(hours=2)))
    rs = redriven.status.replication
    assert rs is not None and (rs.failed, rs.objects) == (0, 5)  # copies made stay counted
    assert CreateReplication(0, 2, winner=1) in redriven.creates
    assert not [e for e in redriven.events if e.reason == "ReplicationDeadlineExceeded"]


def test_unschedulable_and_image_pull_failures_are_diagnosed_from_the_pods() -> None:
    unschedulable = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available",
                }
            ]
        }
    }
    pulling = {
        "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff", "message": "nope"}}}]}
    }
    creating = {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]}}
    assert stalls.diagnose("j", [], [unschedulable]) == stalls.Stall("j", "Unschedulable", "0/3 nodes are available")
    assert stalls.diagnose("j", [], [pulling]) == stalls.Stall("j", "ImagePullBackOff", "nope")
    assert stalls.diagnose("j", [], [creating]) is None  # still starting: nothing to say yet


def target(bucket: str, prefix: str) -> contract.ReplicationTarget:
    return contract.ReplicationTarget(name="d", bucket=bucket, prefix=prefix, endpoint="http://localhost:9000")


@pytest.mark.parametrize(
    ("bucket", "prefix", "storage", "refused"),
    [
        ("out", "daily/", identity.Storage.SAME, True),
        ("out", "", identity.Storage.SAME, True),  # the whole bucket holds the output prefix
        ("out", "daily/copy/", identity.Storage.UNKNOWN, True),  # cannot tell: refuse
        ("out", "daily/", identity.Storage.OTHER, False),  # another server with a same-named bucket
        ("out", "archive/", identity.Storage.SAME, False),  # the same bucket, apart from the output
        ("other", "daily/", identity.Storage.SAME, False),
    ],
)
def test_a_destination_is_refused_only_where_it_may_be_the_output_itself(
    bucket: str, prefix: str, storage: identity.Storage, refused: bool
) -> None:
    assert (identity.overlap_error(target(bucket, prefix), "out", "daily/", storage=storage) is not None) == refused


def test_replication_tasks_mark_replicas_with_the_workflow_and_run() -> None:
    task = builders.replication_task(WF, replicated_spec(), 0, winner=1, label="label")
    assert (task.workflow, task.run_uid) == ("ns/wf", "uid-1")


def test_a_replication_report_lists_each_deleted_replica_in_an_event() -> None:
    spec = replicated_spec("afterAll")
    jobs = [part(0, 1, JobState.SUCCEEDED), repl(None, 1, JobState.SUCCEEDED)]
    status = partitioned(1)
    status.manifest = "s3://out/m.json"
    tally = {"wf-repl-a1": ReplicationTally(deleted=3, deletions=("archive:'a'", "archive:'b'"), reports="s3://r/")}
    result = planner.plan(spec, status, planner.Observed(jobs, 1, T0, "uid-1", reports=tally))
    deleted = [e for e in result.events if e.reason == "ReplicasDeleted"]
    assert len(deleted) == 1
    assert "'a'" in deleted[0].message and "1 more" in deleted[0].message and "s3://r/" in deleted[0].message


def test_every_spec_field_kubectl_explain_shows_has_a_plain_description() -> None:
    import yaml

    from paraflow.crdgen import FOLDERS, WORKFLOW_FILE

    crd = yaml.safe_load((FOLDERS[0] / WORKFLOW_FILE).read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    missing, markup = [], []

    def walk(node: dict[str, Any], path: str) -> None:
        for name, child in (node.get("properties") or {}).items():
            where = f"{path}.{name}"
            if not child.get("description"):
                missing.append(where)
            elif "``" in child["description"]:
                markup.append(where)
            walk(child, where)
            walk(child.get("items") or {}, f"{where}[]")

    walk(spec, "spec")
    assert (missing, markup) == ([], [])
