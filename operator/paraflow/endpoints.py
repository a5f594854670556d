"""The operator's one HTTP server: ``GET <liveness path>`` answers with this replica's state (200
while healthy, 503 once ``state()["healthy"]`` is false), and ``GET /metrics`` with Prometheus'
text format. One aiohttp app on the event loop, listening on the liveness port and the metrics
port (one socket when they are the same).

Ours rather than kopf's probe and prometheus_client's thread: kopf stops the whole operator when
its endpoint cannot bind, and two replicas sharing one network (pods run as host processes, or
hostNetwork) would then leave only one running. Here a port that is taken is logged and the
replica runs on; on a real cluster its probe then fails and the kubelet says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)


async def serve(
    *, liveness: str | None, metrics_port: int, state: Callable[[], dict[str, Any]]
) -> web.AppRunner | None:
    """Starts what is asked (no liveness URL, metrics port 0: nothing); None when nothing listens."""
    app = web.Application()
    sites: set[tuple[str, int]] = set()
    if liveness:
        parts = urlsplit(liveness)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"--liveness needs a host and a port, e.g. http://0.0.0.0:8080/healthz, not {liveness!r}")

        async def healthz(_: web.Request) -> web.Response:
            now = state()
            return web.json_response(now, status=200 if now.get("healthy", True) else 503)

        app.router.add_get(parts.path or "/", healthz)
        sites.add((parts.hostname, parts.port))
    if metrics_port:

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics)
        sites.add(("0.0.0.0", metrics_port))
    if not sites:
        return None
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    listening = 0
    for host, port in sorted(sites):
        try:
            await web.TCPSite(runner, host, port).start()
            listening += 1
        except OSError as e:
            log.error(
                "not serving on %s:%d (%s): %s", host, port, ", ".join(r.canonical for r in app.router.resources()), e
            )
    if not listening:
        await runner.cleanup()
        return None
    return runner
