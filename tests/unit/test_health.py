"""The health endpoint answers with the replica's state, and a port already taken (two replicas
on one host network) leaves the replica running without it instead of stopping it."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request

import pytest

from paraflow import health

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_endpoint_reports_whether_this_replica_leads_and_a_taken_port_is_not_fatal() -> None:
    async def scenario() -> tuple[dict[str, object], bool]:
        url = f"http://127.0.0.1:{free_port()}/healthz"
        first = await health.serve(url, lambda: {"leading": True, "workflows": 3})
        assert first is not None
        body = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(url, timeout=5).read()))
        second = await health.serve(url, lambda: {"leading": False, "workflows": 0})
        await first.cleanup()
        return body, second is None

    body, second_refused = asyncio.run(scenario())
    assert body == {"leading": True, "workflows": 3}
    assert second_refused
