"""Every run ends, and no counter lies: hypothesis drives the planner through random sequences of
spec edits (replication mode and destinations, deleteSync, reduce, tolerance, concurrency,
suspend), redrives, Job outcomes (success, failure, a non-retryable exit, pods that never run)
and time, from every phase. After each step the counters must add up; and from any state, once
the cluster lets Jobs run again, the run must reach a terminal phase (or be Blocked, saying why)
within a bounded number of passes."""

from __future__ import annotations

import copy
import dataclasses

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from paraflow.models import TERMINAL
from paraflow.planning.planner import JobState
from tests.unit.builders import make_spec
from tests.unit.world import World

pytestmark = pytest.mark.unit

# Enough for the slowest way out: retries with backoff, a redrive's new round, the deadline.
PASSES_TO_END = 400
DESTINATIONS = [{"name": "archive", "bucket": "archive"}, {"name": "dev", "bucket": "dev"}]
REDUCE = {"image": "python:3.11", "command": ["python", "-c", "pass"]}


class Runs(RuleBasedStateMachine):
    world: World

    @initialize(
        partitions=st.integers(1, 6),
        mode=st.sampled_from([None, "perPartition", "afterAll"]),
        reduce=st.booleans(),
        concurrency=st.integers(1, 4),
    )
    def start(self, partitions: int, mode: str | None, reduce: bool, concurrency: int) -> None:
        extra: dict[str, object] = {"maxConcurrency": concurrency, "retry.intervalSeconds": 1, "retry.maxAttempts": 2}
        if reduce and mode == "perPartition":
            mode = "afterAll"  # a reduce step's outputs travel only with the run-wide copy
        if mode is not None:
            extra["replication"] = {"mode": mode, "destinations": DESTINATIONS[:1]}
        if reduce:
            extra["reduce"] = REDUCE
        self.world = World(make_spec(progressDeadlineSeconds=60, **extra), partitions, lambda _: JobState.ACTIVE)
        self.best_succeeded = 0

    @rule(seconds=st.sampled_from([0.5, 1, 5, 30]))
    def a_pass(self, seconds: float) -> None:
        self.world.step(seconds)

    @rule(data=st.data(), end=st.sampled_from(["succeeded", "failed", "non-retryable", "stalled"]))
    def a_job_ends(self, data: st.DataObject, end: str) -> None:
        active = sorted(n for n, j in self.world.jobs.items() if j.state is JobState.ACTIVE)
        if not active:
            return
        name = data.draw(st.sampled_from(active))
        job = self.world.jobs[name]
        if end == "stalled":
            self.world.jobs[name] = dataclasses.replace(job, stalled=True)
            return
        state = JobState.SUCCEEDED if end == "succeeded" else JobState.FAILED
        self.world.jobs[name] = dataclasses.replace(
            job, state=state, finished_at=self.world.now, retryable=end != "non-retryable", stalled=False
        )

    @rule(passes=st.integers(1, 60))
    def everything_runs_well_for_a_while(self, passes: int) -> None:
        """Jobs end well as soon as they start, for some passes: runs reach their later phases."""
        self.world.outcome = lambda _: JobState.SUCCEEDED
        self.world.finish_active()
        for _ in range(passes):
            self.world.step(10)
        self.world.outcome = lambda _: JobState.ACTIVE

    @rule(mode=st.sampled_from([None, "perPartition", "afterAll"]), two=st.booleans(), delete_sync=st.booleans())
    def edit_replication(self, mode: str | None, two: bool, delete_sync: bool) -> None:
        if mode is None:
            self.world.edit(replication=None)
            return
        self.world.edit(
            replication={
                "mode": mode,
                "destinations": DESTINATIONS[: 2 if two else 1],
                "deleteSync": delete_sync and mode == "afterAll",
            }
        )

    @rule(on=st.booleans())
    def edit_reduce(self, on: bool) -> None:
        self.world.edit(reduce=REDUCE if on else None)

    @rule(count=st.none() | st.integers(0, 3))
    def edit_tolerance(self, count: int | None) -> None:
        self.world.edit(failureTolerance={} if count is None else {"count": count})

    @rule(concurrency=st.integers(1, 6))
    def edit_concurrency(self, concurrency: int) -> None:
        self.world.edit(maxConcurrency=concurrency)

    @rule(on=st.booleans())
    def edit_suspend(self, on: bool) -> None:
        self.world.edit(suspend=on)

    @precondition(lambda self: self.world.status.phase in TERMINAL)
    @rule()
    def redrive(self) -> None:
        self.world.redrive(f"r{self.world.passes}")

    @invariant()
    def counters_add_up_and_never_pass_their_total(self) -> None:
        st_ = self.world.status
        counts = st_.partitions
        assert min(counts.pending, counts.running, counts.succeeded, counts.failed, counts.not_run) >= 0, counts
        if counts.total:
            assert (
                sum((counts.pending, counts.running, counts.succeeded, counts.failed, counts.not_run)) == counts.total
            )
        if st_.phase == "Failed":
            assert counts.pending == 0, "a failed run starts nothing more: nothing of it is pending"
        assert counts.succeeded >= self.best_succeeded, "a recorded success was lost"
        self.best_succeeded = counts.succeeded
        rs = st_.replication
        if rs is not None:
            assert min(rs.objects, rs.bytes, rs.skipped, rs.failed, rs.deleted, rs.pending) >= 0, rs

    @invariant()
    def a_blocked_run_says_why(self) -> None:
        if self.world.status.phase == "Blocked":
            assert self.world.status.message

    @rule()
    def the_run_ends_once_jobs_may_run(self) -> None:
        """From here, with the cluster healthy (every Job ends well) and the run not suspended, it
        must reach a terminal phase, and a redrive of it must end too."""
        world = copy.deepcopy(self.world)
        if world.spec.suspend:
            world.edit(suspend=False)
        world.outcome = lambda _: JobState.SUCCEEDED
        for name, job in list(world.jobs.items()):
            if job.state is JobState.ACTIVE:
                world.jobs[name] = dataclasses.replace(job, stalled=False)
        world.finish_active()
        end = world.run(passes=PASSES_TO_END, seconds=10)
        assert end.phase in TERMINAL, f"still {end.phase} after {PASSES_TO_END} passes: {end}"
        world.redrive(f"end-{world.passes}")
        again = world.run(passes=PASSES_TO_END, seconds=10)
        assert again.phase in TERMINAL, f"a redrive left it {again.phase}: {again}"

    def teardown(self) -> None:
        self.the_run_ends_once_jobs_may_run()


Runs.TestCase.settings = settings(max_examples=300, stateful_step_count=20, deadline=None)
test_every_run_ends_and_its_counters_add_up = Runs.TestCase
