"""The operator's one HTTP server answers health with the replica's state and /metrics with
Prometheus' text, on one port or two, and a port already taken (two replicas on one host
network) leaves the replica running without it instead of stopping it."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request

import pytest

from paraflow import endpoints, metrics

pytestmark = pytest.mark.unit


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> bytes:
    return bytes(urllib.request.urlopen(url, timeout=5).read())


def test_the_endpoint_reports_whether_this_replica_leads_and_a_taken_port_is_not_fatal() -> None:
    async def scenario() -> tuple[dict[str, object], bool]:
        url = f"http://127.0.0.1:{free_port()}/healthz"
        first = await endpoints.serve(liveness=url, metrics_port=0, state=lambda: {"leading": True, "workflows": 3})
        assert first is not None
        body = await asyncio.to_thread(lambda: json.loads(get(url)))
        second = await endpoints.serve(liveness=url, metrics_port=0, state=lambda: {"leading": False})
        await first.cleanup()
        return body, second is None

    body, second_refused = asyncio.run(scenario())
    assert body == {"leading": True, "workflows": 3}
    assert second_refused


def test_metrics_and_health_are_served_by_one_server_on_their_two_ports() -> None:
    async def scenario() -> tuple[bytes, dict[str, object]]:
        health_port, metrics_port = free_port(), free_port()
        metrics.LEADER.set(1)
        runner = await endpoints.serve(
            liveness=f"http://127.0.0.1:{health_port}/healthz",
            metrics_port=metrics_port,
            state=lambda: {"healthy": True},
        )
        assert runner is not None
        try:
            text = await asyncio.to_thread(get, f"http://127.0.0.1:{metrics_port}/metrics")
            state = await asyncio.to_thread(lambda: json.loads(get(f"http://127.0.0.1:{health_port}/healthz")))
        finally:
            await runner.cleanup()
        return text, state

    text, state = asyncio.run(scenario())
    assert b"paraflow_leader 1.0" in text
    assert state == {"healthy": True}


def test_nothing_asked_starts_nothing() -> None:
    assert asyncio.run(endpoints.serve(liveness=None, metrics_port=0, state=dict)) is None
