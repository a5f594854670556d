"""The liveness and readiness endpoint: ``GET <path>`` answers with this replica's state, 200
while it is healthy and 503 once it is not (``state()["healthy"]``).

Ours rather than kopf's: kopf stops the whole operator when its endpoint cannot bind, and two
replicas sharing one network (pods run as host processes, or hostNetwork) would then leave only
one running. Here a port that is taken is logged and the replica runs on; on a real cluster its
probe then fails and the kubelet says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

log = logging.getLogger(__name__)


async def serve(url: str, state: Callable[[], dict[str, Any]]) -> web.AppRunner | None:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"--liveness needs a host and a port, e.g. http://0.0.0.0:8080/healthz, not {url!r}")

    async def healthz(_: web.Request) -> web.Response:
        now = state()
        return web.json_response(now, status=200 if now.get("healthy", True) else 503)

    app = web.Application()
    app.router.add_get(parts.path or "/", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, parts.hostname, parts.port).start()
    except OSError as e:
        log.error("health endpoint not served: %s: %s", url, e)
        await runner.cleanup()
        return None
    return runner
