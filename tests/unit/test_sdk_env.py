"""The SDK's objects are made from their pod's environment: outside a paraflow pod they exit
naming the first variable missing, and a client given to them is the one they use."""

from __future__ import annotations

import pytest
from minio import Minio

from paraflow_worker.contract import Env
from paraflow_worker.sdk import Reducer, Shard

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("kind", "pod"), [(Shard, "pod"), (Reducer, "reduce pod")])
def test_outside_a_paraflow_pod_the_sdk_exits_naming_the_missing_variable(
    kind: type[Shard] | type[Reducer], pod: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [v for k, v in vars(Env).items() if k.isupper()]:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SystemExit) as exited:
        kind.from_env(Minio("127.0.0.1:9", secure=False))
    assert str(exited.value) == f"paraflow sdk: missing env var {Env.WORKFLOW}: not in a paraflow {pod}?"


def test_a_shard_from_a_pods_environment_uses_the_client_it_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        Env.WORKFLOW: "wf",
        Env.PARTITION: "7",
        Env.ATTEMPT: "2",
        Env.SHARD: "1",
        Env.SHARD_COUNT: "3",
        Env.INPUT_BUCKET: "in",
        Env.RUN_BUCKET: "run",
        Env.RUN_PREFIX: "p/_paraflow/u/",
        Env.OUTPUT_BUCKET: "out",
        Env.OUTPUT_PREFIX: "o/",
    }
    for name, value in env.items():
        monkeypatch.setenv(str(name), value)
    client = Minio("127.0.0.1:9", secure=False)
    shard = Shard.from_env(client)
    assert shard.client is client
    assert (shard.workflow, shard.partition, shard.attempt, shard.shard, shard.shard_count) == ("wf", 7, 2, 1, 3)
    assert (shard.run_prefix, shard.output_prefix, shard.input_prefix) == ("p/_paraflow/u/", "o/", "")
