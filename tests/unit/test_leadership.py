"""One active replica: the Lease rules, the elector against a fake Lease with a fake clock, the
standby's loops, and the write fence. The property test drives several replicas through random
renewals, crashes, pauses and partitions and proves no two of them may ever write at once."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client

from paraflow.k8s.api import KubeApi
from paraflow.leadership import Elector
from paraflow.loops import WorkflowLoops
from paraflow.planning.lease import Conflict, NotLeading, Record, Timings, next_try_in
from paraflow.settings import Settings

pytestmark = pytest.mark.unit

TIMINGS = Timings(lease_duration=15, renew_deadline=10, retry_period=2)
WALL = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# What a graceful shutdown leaves: a Lease nobody holds, which the next replica may use at once.
FREED = Record("", 1, None, None, 0)


class FakeLease:
    """A Lease with the apiserver's optimistic concurrency: a write names the version it read."""

    def __init__(self, record: Record | None = FREED) -> None:
        self.record = record
        self.version = 0
        self.unreachable: set[str] = set()
        self.replies_lost: set[str] = set()  # the write lands, its response never arrives
        self.writes: list[str] = []

    def client(self, identity: str) -> FakeLeaseClient:
        return FakeLeaseClient(self, identity)


class FakeLeaseClient:
    def __init__(self, lease: FakeLease, identity: str) -> None:
        self.lease, self.identity = lease, identity

    def _reach(self) -> None:
        if self.identity in self.lease.unreachable:
            raise ConnectionError("apiserver unreachable")

    def get(self) -> tuple[Record, str] | None:
        self._reach()
        return None if self.lease.record is None else (self.lease.record, str(self.lease.version))

    def create(self, record: Record) -> str:
        self._reach()
        if self.lease.record is not None:
            raise Conflict("exists")
        return self._store(record)

    def replace(self, record: Record, version: str) -> str:
        self._reach()
        if version != str(self.lease.version):
            raise Conflict("stale")
        return self._store(record)

    def _store(self, record: Record) -> str:
        self.lease.record, self.lease.version = record, self.lease.version + 1
        self.lease.writes.append(record.holder)
        if self.identity in self.lease.replies_lost:
            raise TimeoutError("the response was lost")
        return str(self.lease.version)


def elector(lease: FakeLease, identity: str, clock: Clock) -> Elector:
    return Elector(lease.client(identity), identity, TIMINGS, clock=clock, wall=lambda: WALL)


def test_lease_timings_are_validated_as_client_go_does() -> None:
    with pytest.raises(ValueError, match="duration must exceed"):
        Timings(lease_duration=10, renew_deadline=10, retry_period=2)
    with pytest.raises(ValueError, match="renew deadline must exceed"):
        Timings(lease_duration=15, renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="lease"):
        Settings(lease_duration_seconds=5, lease_renew_deadline_seconds=10)


def test_the_first_replica_takes_the_lease_and_a_second_waits_a_whole_lease_after_the_last_renewal() -> None:
    lease, clock = FakeLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    assert a.try_acquire_or_renew() and a.leading()
    assert not b.try_acquire_or_renew() and not b.leading()
    clock.now += 14.9
    assert not b.try_acquire_or_renew(), "the lease is not over yet, seen from b"
    assert not a.leading(), "a never renewed: its gate shut at the renew deadline, before b may take it"
    clock.now += 0.2
    assert b.try_acquire_or_renew() and b.leading()
    assert lease.record is not None and (lease.record.holder, lease.record.transitions) == ("b", 2)


def test_a_renewing_leader_keeps_the_lease_and_keeps_its_acquire_time() -> None:
    lease, clock = FakeLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    a.try_acquire_or_renew()
    acquired = lease.record.acquire_time if lease.record else None
    for _ in range(20):
        clock.now += TIMINGS.retry_period
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    assert a.leading() and lease.record is not None
    assert (lease.record.acquire_time, lease.record.transitions) == (acquired, 1)


def test_a_leader_that_cannot_renew_stops_writing_at_its_deadline_before_anyone_may_take_over() -> None:
    lease, clock = FakeLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    lease.unreachable.add("a")
    clock.now += TIMINGS.renew_deadline
    with pytest.raises(NotLeading):
        a.fence()
    assert not b.try_acquire_or_renew(), "b must still wait: a's gate shut 5 s before b may take the lease"
    clock.now += TIMINGS.lease_duration - TIMINGS.renew_deadline
    assert b.try_acquire_or_renew()


def test_a_released_lease_is_taken_at_the_next_try_and_the_releaser_writes_nothing_after() -> None:
    lease, clock = FakeLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    a.release()
    with pytest.raises(NotLeading):
        a.fence()
    assert lease.record is not None and lease.record.holder == ""
    clock.now += TIMINGS.retry_period
    assert b.try_acquire_or_renew() and b.leading()


def test_a_leader_that_sees_another_holder_shuts_its_gate_at_once() -> None:
    lease, clock = FakeLease(), Clock()
    a = elector(lease, "a", clock)
    a.try_acquire_or_renew()
    assert lease.record is not None
    lease.record = Record("intruder", 15, WALL, WALL, 1)  # e.g. a replica with a skewed clock rate
    lease.version += 1
    assert not a.try_acquire_or_renew()
    assert not a.leading()


Step = tuple[str, int, float]
steps = st.lists(
    st.tuples(
        st.sampled_from(
            ["tick"] * 4 + ["pause", "resume", "cut", "lose-replies", "heal", "crash", "release", "delete"]
        ),
        st.integers(0, 2),
        st.one_of(st.sampled_from([0.5, 2.0, 5.0, 9.9, 10.0, 10.1, 14.9, 15.0, 15.1]), st.floats(0.1, 20)),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(steps)
def test_no_two_replicas_may_write_at_once_whatever_the_renewals_crashes_pauses_and_partitions(
    schedule: list[Step],
) -> None:
    """On a tick time passes and every replica that is not paused tries, the first one drawn first."""
    lease, clock = FakeLease(record=None), Clock()
    replicas = [elector(lease, f"r{i}", clock) for i in range(3)]
    paused: set[int] = set()
    restarts = 0
    for action, i, seconds in schedule:
        if action == "tick":
            clock.now += seconds
            for j in (i, *(j for j in range(3) if j != i)):
                if j not in paused:
                    with contextlib.suppress(ConnectionError, TimeoutError):
                        replicas[j].try_acquire_or_renew()
        elif action == "pause":  # GC, SIGSTOP, a blocked event loop: it tries nothing meanwhile
            paused.add(i)
        elif action == "resume":
            paused.discard(i)
        elif action == "cut":
            lease.unreachable.add(replicas[i].identity)
        elif action == "lose-replies":
            lease.replies_lost.add(replicas[i].identity)
        elif action == "heal":
            lease.unreachable.discard(replicas[i].identity)
            lease.replies_lost.discard(replicas[i].identity)
        elif action == "delete":  # `kubectl delete lease` by hand
            lease.record = None
            lease.version += 1
        elif action == "crash":
            restarts += 1
            replicas[i] = elector(lease, f"r{i}-{restarts}", clock)
        else:
            replicas[i].release()
        assert sum(r.leading() for r in replicas) <= 1, [r.identity for r in replicas if r.leading()]


def test_the_elector_announces_taking_and_losing_the_lease_as_it_happens() -> None:
    async def scenario() -> list[bool]:
        lease = FakeLease()
        quick = Timings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.1)
        a = Elector(lease.client("a"), "a", quick)
        changes: list[bool] = []

        async def on_change(leading: bool) -> None:
            changes.append(leading)

        task = asyncio.create_task(a.run(on_change))
        await asyncio.sleep(0.3)
        lease.unreachable.add("a")
        await asyncio.sleep(0.6)
        task.cancel()
        return changes

    assert asyncio.run(scenario()) == [True, False]


def test_a_standby_runs_no_pass_and_a_new_leader_runs_every_known_workflow_at_once() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        passes: list[str] = []
        forgotten: list[str] = []

        async def run_pass(body: Any, jobs: Any) -> float | None:
            passes.append(body["metadata"]["uid"])
            return None

        loops = WorkflowLoops(run_pass, lambda uid: [], 0, backoff=1, backoff_max=1, on_forget=forgotten.append)
        loops.observe("u1", {"metadata": {"uid": "u1"}})
        loops.observe("u2", {"metadata": {"uid": "u2"}})
        await asyncio.sleep(0.1)
        standby = list(passes)
        loops.activate()
        await asyncio.sleep(0.1)
        leading = sorted(passes)
        await loops.deactivate()
        dropped = sorted(forgotten)
        loops.wake("u1")
        loops.observe("u2", {"metadata": {"uid": "u2"}})
        await asyncio.sleep(0.1)
        assert sorted(passes) == leading, "no pass once the Lease is lost"
        await loops.stop()
        return standby, leading, dropped

    standby, leading, forgotten = asyncio.run(scenario())
    assert standby == []
    assert leading == ["u1", "u2"]
    assert forgotten == ["u1", "u2"], "per-run caches are dropped: the next leader may change anything"


def test_every_write_through_the_api_passes_the_fence_first_and_a_refused_one_is_not_sent() -> None:
    sent: list[str] = []

    def post_job(namespace: str, body: dict[str, Any], **_: Any) -> None:
        sent.append(body["metadata"]["name"])

    def refuse() -> float:
        raise NotLeading("standby")

    async def scenario() -> None:
        api = KubeApi(client.ApiClient(), 1, 100, write_burst=10, request_timeout=5, fence=refuse)
        api._post_job = post_job  # type: ignore[method-assign]
        with pytest.raises(NotLeading):
            await api.create_job({"metadata": {"name": "j", "namespace": "ns"}})
        with pytest.raises(NotLeading):
            await api.offload(sent.append, "manifest", writes=True)
        assert await api.offload(len, "read") == 4, "reads are never fenced"
        api.close()

    asyncio.run(scenario())
    assert sent == []


def test_a_candidate_tries_again_the_moment_the_lease_it_waits_for_runs_out() -> None:
    lease, clock = FakeLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    clock.now += 14.5
    assert next_try_in(b.observed, "b", clock.now, timings=TIMINGS, leading=False, draw=0.99) == pytest.approx(0.55)
    clock.now += 0.55
    assert b.try_acquire_or_renew()
    assert next_try_in(b.observed, "b", clock.now, timings=TIMINGS, leading=True, draw=0.99) == TIMINGS.retry_period
    idle = next_try_in(None, "c", clock.now, timings=TIMINGS, leading=False, draw=0.5)
    assert idle == pytest.approx(TIMINGS.retry_period * 1.1), "jittered, as client-go, when nothing is held"


def test_a_lease_deleted_by_hand_is_not_taken_while_its_holder_may_still_act() -> None:
    lease, clock = FakeLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    lease.record = None
    clock.now += 1
    assert not b.try_acquire_or_renew(), "b saw a hold it: it waits out that lease first"
    assert a.try_acquire_or_renew(), "the holder notices and creates it again"
    assert lease.record is not None and lease.record.holder == "a"
    assert not a.leading(), "but acts only once any holder it may have replaced has stopped"
    clock.now += TIMINGS.renew_deadline
    assert a.try_acquire_or_renew() and a.leading()


def test_a_replica_that_must_create_the_lease_acts_only_a_renew_deadline_later() -> None:
    lease, clock = FakeLease(record=None), Clock()
    a = elector(lease, "a", clock)
    assert a.try_acquire_or_renew() and not a.leading()
    for _ in range(5):
        clock.now += TIMINGS.retry_period
        a.try_acquire_or_renew()
    assert a.leading(), "once the renew deadline of a holder deleted before it has passed"


def test_a_release_racing_a_renewal_still_frees_the_lease() -> None:
    lease, clock = FakeLease(), Clock()
    a = elector(lease, "a", clock)
    a.try_acquire_or_renew()
    lease.version += 1  # a renewal in flight landed after a read the release relies on
    a.release()
    assert lease.record is not None and lease.record.holder == ""


def test_the_election_goes_on_when_reacting_to_it_fails() -> None:
    async def scenario() -> int:
        lease = FakeLease()
        a = Elector(lease.client("a"), "a", Timings(lease_duration=0.6, renew_deadline=0.4, retry_period=0.1))

        async def broken(leading: bool) -> None:
            raise RuntimeError("boom")

        task = asyncio.create_task(a.run(broken))
        await asyncio.sleep(0.5)
        alive = not task.done()
        task.cancel()
        return len(lease.writes) if alive else -1

    assert asyncio.run(scenario()) >= 3, "still renewing after the reaction raised"


def test_losing_the_lease_while_workflows_come_and_go_stops_every_pass() -> None:
    async def scenario() -> list[bool]:
        async def slow_pass(body: Any, jobs: Any) -> float | None:
            await asyncio.sleep(10)
            return None

        loops = WorkflowLoops(slow_pass, lambda uid: [], 0, backoff=1, backoff_max=1)
        loops.activate()
        for uid in ("u1", "u2", "u3"):
            loops.observe(uid, {"metadata": {"uid": uid}})
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(loops.deactivate())
        for uid in ("u4", "u5", "u6"):  # events in the middle of it
            await asyncio.sleep(0)
            loops.observe(uid, {"metadata": {"uid": uid}})
        await loops.forget("u2")
        await stopping
        return [loop.task is not None and not loop.task.done() for loop in loops.loops.values()]

    assert asyncio.run(scenario()) == [False] * 5


def test_a_pass_cut_short_by_the_gate_runs_again_on_the_next_event() -> None:
    async def scenario() -> int:
        calls: list[int] = []

        async def gated_pass(body: Any, jobs: Any) -> float | None:
            calls.append(1)
            if len(calls) == 1:
                raise NotLeading("gate shut for a moment")
            return None

        loops = WorkflowLoops(gated_pass, lambda uid: [], 0, backoff=1, backoff_max=1)
        loops.activate()
        loops.observe("u1", {"metadata": {"uid": "u1"}})
        await asyncio.sleep(0.05)
        loops.wake("u1")
        await asyncio.sleep(0.05)
        await loops.stop()
        return len(calls)

    assert asyncio.run(scenario()) == 2


def test_passes_started_by_taking_the_lease_run_in_the_handlers_context() -> None:
    """kopf posts Events through context variables set for its handlers; a pass started from the
    elector's task (a workflow seen before the Lease was taken) must still see them."""
    handler_var: contextvars.ContextVar[str] = contextvars.ContextVar("handler_var")

    async def scenario() -> list[str]:
        seen: list[str] = []

        async def run_pass(body: Any, jobs: Any) -> float | None:
            seen.append(handler_var.get("missing"))
            return None

        loops = WorkflowLoops(run_pass, lambda uid: [], 0, backoff=1, backoff_max=1)

        async def kopf_handler() -> None:
            handler_var.set("kopf")
            loops.observe("u1", {"metadata": {"uid": "u1"}})

        await asyncio.create_task(kopf_handler())
        await asyncio.create_task(asyncio.sleep(0), context=contextvars.Context())
        elector_task = asyncio.create_task(_activate(loops), context=contextvars.Context())
        await elector_task
        await asyncio.sleep(0.05)
        await loops.stop()
        return seen

    assert asyncio.run(scenario()) == ["kopf"]


async def _activate(loops: WorkflowLoops) -> None:
    loops.activate()


def test_a_standby_says_once_who_holds_the_lease_and_when_it_may_take_over(caplog: pytest.LogCaptureFixture) -> None:
    lease, clock = FakeLease(), Clock()
    a, b = elector(lease, "a", clock), elector(lease, "b", clock)
    a.try_acquire_or_renew()
    clock.now += 3
    with caplog.at_level("INFO", logger="paraflow.leadership"):
        b.try_acquire_or_renew()  # first sight of a's record: a whole lease from now
        clock.now += 2
        b.try_acquire_or_renew()
    said = [r.getMessage() for r in caplog.records if "standing by" in r.getMessage()]
    assert said == ["standing by as b: the Lease is held by a; taken over in 15s unless it renews"]


def test_a_restarted_replica_with_the_same_identity_takes_its_own_lease_back_at_once() -> None:
    """A container restarted in the same pod keeps the pod's name: it does not wait out itself."""
    lease, clock = FakeLease(), Clock()
    assert elector(lease, "pod-0", clock).try_acquire_or_renew()
    clock.now += 1
    restarted = elector(lease, "pod-0", clock)
    assert restarted.try_acquire_or_renew()
    assert lease.record is not None and lease.record.transitions == 1, "still its own tenure"
