"""Starts the view's server for ``paraflow ui`` and keeps it up until Ctrl-C."""

from __future__ import annotations

import asyncio
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from paraflow.ui.cluster import KubeCluster
from paraflow.ui.server import TOKEN, make_app


@dataclass(frozen=True)
class Options:
    name: str | None  # a workflow to open; None: the namespace's list
    namespace: str
    address: str
    port: int
    browser: bool
    endpoint: str | None  # MinIO as this machine reaches it, if not as the workflow says


def serve(options: Options, say: Callable[[str], None]) -> None:
    asyncio.run(_serve(options, say))


async def _serve(options: Options, say: Callable[[str], None]) -> None:
    app = make_app(KubeCluster(endpoint=options.endpoint))
    runner = web.AppRunner(app, handle_signals=True)
    await runner.setup()
    await web.TCPSite(runner, options.address, options.port).start()
    bound = runner.addresses[0][1]
    host = f"[{options.address}]" if ":" in options.address else options.address
    where = f"#/ns/{quote(options.namespace)}" + (f"/wf/{quote(options.name)}" if options.name else "")
    url = f"http://{host}:{bound}/{app[TOKEN]}/{where}"
    say(f"paraflow ui: {url}")
    if options.address not in ("127.0.0.1", "localhost", "::1"):
        say(f"[yellow]listening on {options.address}: anyone who can reach it and has the URL acts as you[/]")
    if options.browser:
        webbrowser.open(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
