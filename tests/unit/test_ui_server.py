"""The Map Run view's server, with a cluster of our own: nothing is reachable without the start
token, an action needs it again in a header and a same-origin request (CSRF-safe), actions and
logs reach the cluster adapter, and the stream sends the run each time it changes."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from paraflow.ui.server import TOKEN_HEADER, make_app
from tests.ui_fakes import FakeCluster, big_workflow

pytestmark = [pytest.mark.unit, pytest.mark.asyncio(loop_scope="session")]
TOKEN = "t0ken-for-tests"
RUN = f"/{TOKEN}/api/namespaces/sim/workflows/big"


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster(big_workflow(10, failed={1}, running={7}))


@pytest.fixture
async def http(cluster: FakeCluster) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(make_app(cluster, token=TOKEN))) as test_client:
        yield test_client


async def test_without_the_token_nothing_is_served(http: TestClient) -> None:
    for path in ("/", "/wrong/", "/wrong/api/namespaces/sim/workflows", f"/{TOKEN}x/"):
        assert (await http.get(path)).status == 404, path
    page = await http.get(f"/{TOKEN}/")
    assert page.status == 200 and TOKEN in await page.text()


async def test_an_action_needs_the_token_header_and_its_own_origin(http: TestClient, cluster: FakeCluster) -> None:
    assert (await http.post(f"{RUN}/redrive")).status == 403
    assert (await http.post(f"{RUN}/redrive", headers={TOKEN_HEADER: "guess"})).status == 403
    other = {TOKEN_HEADER: TOKEN, "Origin": "http://evil.example"}
    assert (await http.post(f"{RUN}/redrive", headers=other)).status == 403
    assert cluster.acted == []
    done = await http.post(f"{RUN}/redrive", headers={TOKEN_HEADER: TOKEN})
    assert done.status == 200 and (await done.json())["ok"]
    assert cluster.acted == [("redrive", "sim", "big")]


async def test_suspend_resume_and_concurrency_reach_the_cluster_and_a_bad_limit_is_refused(
    http: TestClient, cluster: FakeCluster
) -> None:
    headers = {TOKEN_HEADER: TOKEN}
    for action, body in (("suspend", {}), ("resume", {}), ("concurrency", {"limit": 7})):
        assert (await http.post(f"{RUN}/{action}", json=body, headers=headers)).status == 200
    for bad in (0, 10001, "3", None):
        assert (await http.post(f"{RUN}/concurrency", json={"limit": bad}, headers=headers)).status == 400
    assert (await http.post(f"{RUN}/delete", headers=headers)).status == 404
    assert cluster.acted == [("suspend", "sim", "big"), ("resume", "sim", "big"), ("concurrency", "sim", "big", "7")]


async def test_the_run_view_and_the_logs_of_a_failed_partition(http: TestClient) -> None:
    view = await (await http.get(RUN)).json()
    assert view["cells"] == "4544400300"  # 0-4 succeeded but 1 failed; 7 retrying; the rest pending
    assert view["failed"] == [{"partition": 1, "attempt": 2, "why": "exit 2 (Error)"}]
    logs = await http.get(f"{RUN}/logs?partition=1")
    assert logs.status == 200 and "partition 1 says hello" in await logs.text()
    missing = await http.get(f"{RUN}/logs?partition=9")
    assert missing.status == 404 and "has not started" in await missing.text()
    assert (await http.get(f"/{TOKEN}/api/namespaces/sim/workflows/nope")).status == 404


async def test_the_stream_sends_the_run_again_when_it_changes(http: TestClient, cluster: FakeCluster) -> None:
    response = await http.get(f"{RUN}/stream")
    first = json.loads((await response.content.readline()).decode().removeprefix("data: "))
    assert first["partitions"]["succeeded"] == 4
    changed = copy.deepcopy(cluster.docs[("sim", "big")])
    changed["status"]["phase"] = "Failed"
    await asyncio.to_thread(cluster.update, changed)
    line = b""
    while not line.startswith(b"data: "):
        line = await asyncio.wait_for(response.content.readline(), 5)
    assert json.loads(line.decode().removeprefix("data: "))["phase"] == "Failed"
    response.close()


async def test_a_request_naming_the_server_by_another_host_is_refused(http: TestClient) -> None:
    """DNS rebinding: a page on another site that resolves its own name to 127.0.0.1."""
    assert (await http.get(f"/{TOKEN}/", headers={"Host": "evil.example"})).status == 403
    port = http.server.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        assert (await http.get(f"/{TOKEN}/", headers={"Host": host})).status == 200, host


async def test_bad_input_is_a_400_that_says_why(http: TestClient, cluster: FakeCluster) -> None:
    headers = {TOKEN_HEADER: TOKEN}
    response = await http.get(f"{RUN}/logs?partition=x")
    assert response.status == 400 and "whole number" in await response.text()
    for body in ("{bad", "[1]"):
        sent = await http.post(f"{RUN}/concurrency", data=body, headers={**headers, "Content-Type": "application/json"})
        assert sent.status == 400, body
    assert (await http.post(f"{RUN}/concurrency", json={"limit": True}, headers=headers)).status == 400
    assert cluster.acted == []


async def test_the_stream_of_a_missing_workflow_is_a_404_and_a_deleted_one_ends_saying_why(
    http: TestClient, cluster: FakeCluster
) -> None:
    assert (await http.get(f"/{TOKEN}/api/namespaces/sim/workflows/nope/stream")).status == 404
    response = await http.get(f"{RUN}/stream")
    await response.content.readline()
    await asyncio.to_thread(cluster.delete, "sim", "big")
    rest = (await asyncio.wait_for(response.content.read(), 5)).decode()
    assert "event: problem" in rest and "was deleted" in rest


async def test_the_run_is_drawn_when_why_partitions_failed_cannot_be_read(
    http: TestClient, cluster: FakeCluster
) -> None:
    cluster.failures_refused = True
    view = await (await http.get(RUN)).json()
    assert view["cells"] == "4544400300"
    assert "cannot be read" in view["note"] and "forbidden" in view["note"]
