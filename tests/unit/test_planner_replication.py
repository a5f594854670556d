"""The planner's replication stage: pipelined per partition, or one run-wide copy after all."""

from __future__ import annotations

import pytest

from paraflow import constants as c
from paraflow.models import WorkflowStatus
from paraflow.planning import planner
from paraflow.planning.planner import CreatePartition, CreateReplication, JobFacts, JobState, ReplicationTally
from paraflow.reasons import ConditionType
from tests.unit.builders import T0, make_spec
from tests.unit.test_planner import observe, part, partitioned
from tests.unit.world import World

pytestmark = pytest.mark.unit

DESTS = [{"name": "archive", "bucket": "archive"}]


def repl(p: int | None, a: int, state: JobState) -> JobFacts:
    role = c.ROLE_REPLICATION if p is not None else c.ROLE_REPLICATION_ALL
    name = f"wf-r{p}-a{a}" if p is not None else f"wf-repl-a{a}"
    return JobFacts(name, role, p, a, state, T0 if state is not JobState.ACTIVE else None)


def spec(mode: str = "perPartition", **kw: object):  # type: ignore[no-untyped-def]
    return make_spec(replication={"mode": mode, "destinations": DESTS}, **kw)


def test_per_partition_replication_starts_as_soon_as_a_partition_succeeds() -> None:
    result = planner.plan(
        spec(maxConcurrency=2), partitioned(3), observe(part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.ACTIVE))
    )
    assert CreateReplication(0, 1, winner=1) in result.creates
    assert CreatePartition(2, 1) in result.creates
    assert result.status.phase == "Running"
    assert result.status.replication is not None and result.status.replication.pending == 1


def test_replication_copies_the_winning_attempt() -> None:
    result = planner.plan(spec(), partitioned(1), observe(part(0, 1, JobState.FAILED), part(0, 2, JobState.SUCCEEDED)))
    assert result.creates == [CreateReplication(0, 1, winner=2)]


def test_the_workflow_is_replicating_until_every_partition_is_copied_then_succeeds() -> None:
    jobs = [
        part(0, 1, JobState.SUCCEEDED),
        part(1, 1, JobState.SUCCEEDED),
        repl(0, 1, JobState.SUCCEEDED),
        repl(1, 1, JobState.ACTIVE),
    ]
    tally = {"wf-r0-a1": ReplicationTally(copied=3, bytes=300, skipped=1)}
    middle = planner.plan(spec(), partitioned(2), observe(*jobs)).status
    assert middle.phase == "Replicating"
    # The report is read once the Job finished; counts go into status, once.
    counted = planner.plan(
        spec(), partitioned(2), planner.Observed(jobs=jobs, generation=1, now=T0, uid="uid-1", reports=tally)
    ).status
    assert counted.replication is not None
    assert (counted.replication.objects, counted.replication.bytes, counted.replication.skipped) == (3, 300, 1)
    jobs[-1] = repl(1, 1, JobState.SUCCEEDED)
    done = planner.plan(
        spec(),
        counted,
        planner.Observed(
            jobs=jobs, generation=1, now=T0, uid="uid-1", reports={"wf-r1-a1": ReplicationTally(copied=2, bytes=20)}
        ),
    )
    assert done.status.phase == "Succeeded"
    assert done.status.replication is not None and done.status.replication.objects == 5
    assert any(x.type == ConditionType.REPLICATED and x.status == "True" for x in done.status.conditions)


def test_after_all_waits_for_the_fan_out_and_the_manifest() -> None:
    running = planner.plan(
        spec("afterAll"), partitioned(2), observe(part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.ACTIVE))
    )
    assert not any(isinstance(x, CreateReplication) for x in running.creates)
    fanned = planner.plan(
        spec("afterAll"), partitioned(2), observe(part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED))
    )
    assert fanned.manifest == [(0, 1), (1, 1)]
    assert fanned.creates == [CreateReplication(0, 1, winner=0)]
    assert fanned.status.phase == "Replicating"


def test_replication_that_fails_every_attempt_fails_the_workflow_and_a_redrive_retries_it() -> None:
    s = spec(**{"retry.maxAttempts": 1})
    jobs = [part(0, 1, JobState.SUCCEEDED), repl(0, 1, JobState.FAILED)]
    tally = {"wf-r0-a1": ReplicationTally(failed=2, first_failure="archive: p0/x: NoSuchBucket")}
    failed = planner.plan(s, partitioned(1), planner.Observed(jobs=jobs, generation=1, now=T0, uid="u", reports=tally))
    assert failed.status.phase == "Failed"
    assert failed.status.conditions[-1].reason == "ReplicationFailed"
    assert any(e.reason == "ReplicationFailed" and "NoSuchBucket" in e.message for e in failed.events)
    redriven = planner.plan(s, failed.status, observe(*jobs, redrive="again"))
    assert redriven.creates == [CreateReplication(0, 2, winner=1)]
    assert redriven.status.phase == "Replicating"


def test_without_replication_status_has_no_replication_block() -> None:
    result = planner.plan(make_spec(), partitioned(1), observe(part(0, 1, JobState.SUCCEEDED)))
    assert result.status.replication is None
    assert result.status.phase == "Succeeded"
    assert isinstance(result.status, WorkflowStatus)


def test_a_finished_run_switched_from_per_partition_to_after_all_and_redriven_copies_once_run_wide_and_ends() -> None:
    """What a user does to get deleteSync: the old per-partition records mean nothing run-wide."""
    world = World(spec(), partitions=4)
    assert world.run().phase == "Succeeded"
    world.edit(**{"replication.mode": "afterAll"})
    world.redrive("mode")
    assert world.run().phase == "Succeeded", world.status
    run_wide = [j for j in world.jobs.values() if j.role == c.ROLE_REPLICATION_ALL]
    assert [j.state for j in run_wide] == [JobState.SUCCEEDED]
    assert world.status.replication is not None and world.status.replication.replicated_indexes == "0"


def test_a_run_switched_back_to_per_partition_and_redriven_copies_every_partition_again() -> None:
    world = World(spec("afterAll"), partitions=3)
    assert world.run().phase == "Succeeded"
    world.edit(**{"replication.mode": "perPartition"})
    world.redrive("back")
    assert world.run().phase == "Succeeded", world.status
    copied = sorted(j.partition for j in world.jobs.values() if j.role == c.ROLE_REPLICATION)
    assert copied == [0, 1, 2]
    assert world.status.replication is not None and world.status.replication.replicated_indexes == "0-2"


@pytest.mark.parametrize("mode", ["perPartition", "afterAll"])
def test_replicated_counts_partitions_like_its_neighbour_columns_and_comes_back_after_a_redrive(mode: str) -> None:
    world = World(spec(mode), partitions=5)
    done = world.run()
    assert done.phase == "Succeeded" and done.replication is not None
    assert (done.replication.partitions, done.replication.pending) == (5, 0)
    world.redrive("copy-again")
    world.step()
    assert world.status.replication is not None and world.status.replication.partitions == 0, "copying again"
    again = world.run()
    assert again.replication is not None and (again.replication.partitions, again.replication.pending) == (5, 0)


def test_while_the_run_wide_copy_waits_every_succeeded_partition_is_pending_replication() -> None:
    jobs = [part(0, 1, JobState.SUCCEEDED), part(1, 1, JobState.SUCCEEDED), repl(None, 1, JobState.ACTIVE)]
    status = partitioned(2)
    status.manifest = "s3://out/_paraflow/uid-1/manifest.json"
    result = planner.plan(spec("afterAll"), status, observe(*jobs))
    assert result.status.replication is not None
    assert (result.status.replication.partitions, result.status.replication.pending) == (0, 2)


def test_the_replicated_condition_counts_deletions_when_delete_sync_is_on() -> None:
    s = make_spec(replication={"mode": "afterAll", "destinations": DESTS, "deleteSync": True})
    status = partitioned(1)
    status.manifest = "s3://out/_paraflow/uid-1/manifest.json"
    jobs = [part(0, 1, JobState.SUCCEEDED), repl(None, 1, JobState.SUCCEEDED)]
    tally = {"wf-repl-a1": ReplicationTally(copied=2, bytes=20, deleted=3, deletions=("archive:old",))}
    done = planner.plan(s, status, planner.Observed(jobs=jobs, generation=1, now=T0, uid="u", reports=tally))
    replicated = next(x for x in done.status.conditions if x.type == ConditionType.REPLICATED)
    assert replicated.message.endswith("; 3 replica(s) deleted (deleteSync)")


def test_a_failed_run_has_no_replication_pending_since_nothing_will_copy_it() -> None:
    """Partition 1 fails for good in the pass partition 0 succeeds: the run fails before copying it."""

    def outcome(action: object) -> JobState:
        failing = isinstance(action, CreatePartition) and action.index == 1
        return JobState.FAILED if failing else JobState.SUCCEEDED

    world = World(spec(maxConcurrency=2, **{"retry.maxAttempts": 1}), partitions=4, outcome=outcome)
    status = world.run(passes=60, seconds=5)
    assert status.phase == "Failed" and status.replication is not None
    assert (status.partitions.succeeded, status.replication.partitions) == (1, 0)
    assert status.replication.pending == 0
