"""Golden tests of the Jobs the operator creates: a change to any field of a partition,
partitioner, reduce or replication Job shows up here as a diff to review (podFailurePolicy, labels,
ownerReferences, env, security). Regenerate on purpose with PARAFLOW_UPDATE_GOLDEN=1."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from paraflow.k8s import builders
from paraflow.k8s.api import TokenBucket
from paraflow.k8s.builders import WorkflowRef
from paraflow.settings import Settings
from tests.unit.builders import make_spec

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent / "golden"
WF = WorkflowRef("daily", "analytics", "0b8d5c1e-uid")
SETTINGS = Settings(worker_image="paraflow/worker:0.1.0", identity="golden")


class Plain(yaml.SafeDumper):
    """Every value written out where it is, no YAML anchors: the file reads like kubectl's output."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def spec() -> Any:
    return make_spec(
        **{
            "processor.shardsPerPartition": 2,
            "processor.nonRetryableExitCodes": [3, 2, 3],
            "processor.activeDeadlineSeconds": 600,
            "processor.podAnnotations": {"sidecar.istio.io/inject": "false"},
            "replication": {"destinations": [{"name": "archive", "bucket": "archive", "prefix": "logs/"}]},
        }
    )


def reduce_spec() -> Any:
    return make_spec(
        **{
            "processor.nodeSelector": {"pool": "batch"},
            "processor.podAnnotations": {"sidecar.istio.io/inject": "false"},
            "reduce": {"image": "registry.example/summarise:2", "args": ["--top", "10"], "activeDeadlineSeconds": 900},
            "replication": {
                "mode": "afterAll",
                "destinations": [{"name": "archive", "bucket": "archive", "prefix": "logs/"}],
            },
        }
    )


def jobs() -> dict[str, dict[str, Any]]:
    s = spec()
    return {
        "partition_job": builders.partition_job(WF, s, 7, attempt=2, settings=SETTINGS),
        "partitioner_job": builders.partitioner_job(WF, s, 1, settings=SETTINGS),
        "replication_job": builders.replication_job(WF, s, 7, attempt=1, winner=2, settings=SETTINGS),
        "reduce_job": builders.reduce_job(WF, reduce_spec(), 2, settings=SETTINGS),
        "replication_job_with_reduce": builders.replication_job(
            WF, reduce_spec(), None, attempt=1, winner=0, settings=SETTINGS, reduce_attempt=2
        ),
    }


@pytest.mark.parametrize("name", sorted(jobs()))
def test_each_child_job_matches_its_reviewed_golden_file(name: str) -> None:
    body = jobs()[name]
    path = GOLDEN / f"{name}.yaml"
    if os.environ.get("PARAFLOW_UPDATE_GOLDEN"):
        path.write_text(yaml.dump(body, Dumper=Plain, sort_keys=True))
    assert body == yaml.safe_load(path.read_text()), f"{name} changed: review it, then PARAFLOW_UPDATE_GOLDEN=1"


def test_a_partition_job_fails_at_once_on_a_non_retryable_exit_and_ignores_disruptions() -> None:
    job = jobs()["partition_job"]
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["action"] == "FailJob" and rules[1]["onExitCodes"]["values"] == [2, 3]
    assert job["spec"]["maxFailedIndexes"] == 0, "one failed shard fails the attempt"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ParallelWorkflow",
        "daily",
        WF.uid,
        True,
    )


def test_the_write_bucket_grants_a_burst_at_once_then_paces_writes_at_its_rate() -> None:
    now = [0.0]
    granted: list[float] = []

    async def sleep(seconds: float) -> None:
        # A real sleep always lets time pass; a fake one must too, past float rounding.
        now[0] += max(seconds, 1e-9)

    async def scenario() -> None:
        bucket = TokenBucket(10, 5, clock=lambda: now[0], sleep=sleep)
        for _ in range(25):
            await bucket.acquire()
            granted.append(round(now[0], 6))
        now[0] += 10  # idle: the bucket refills to its burst, no more
        for _ in range(7):
            await bucket.acquire()
            granted.append(round(now[0], 6))

    asyncio.run(scenario())
    assert granted[:5] == [0.0] * 5, "the burst goes at once"
    assert granted[5:25] == [round(0.1 * i, 6) for i in range(1, 21)], "then one write every 1/rate s"
    assert granted[25:30] == [12.0] * 5 and granted[30:] == [12.1, 12.2], "refilled to the burst only"
