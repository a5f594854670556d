"""Starts the view's server for ``paraflow ui`` and keeps it up until Ctrl-C."""

from __future__ import annotations

import asyncio
import html
import os
import sys
import tempfile
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
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
    app = make_app(KubeCluster(endpoint=options.endpoint), address=options.address)
    # A closed tab cancels its stream's handler at once (and so its watch), not at the next write.
    runner = web.AppRunner(app, handle_signals=True, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, options.address, options.port).start()
    bound = runner.addresses[0][1]
    host = f"[{options.address}]" if ":" in options.address else options.address
    where = f"#/ns/{quote(options.namespace)}" + (f"/wf/{quote(options.name)}" if options.name else "")
    url = f"http://{host}:{bound}/{app[TOKEN]}/{where}"
    say(f"paraflow ui: {url}")
    if options.address not in ("127.0.0.1", "localhost", "::1"):
        say(f"[yellow]listening on {options.address}: anyone who can reach it and has the URL acts as you[/]")
    opener: Path | None = None
    try:
        opener = await asyncio.to_thread(_open, url) if options.browser else None
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        if opener is not None:
            opener.unlink(missing_ok=True)


def _open(url: str) -> Path | None:
    """Opens the page through a file only this user can read that redirects to it: the URL's
    token never appears on a browser's command line, which every user of the machine can read
    (/proc/<pid>/cmdline). Console browsers are not started (no display: the URL is printed)."""
    shown = ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")  # BROWSER: a helper of the user's (an IDE's)
    if sys.platform.startswith("linux") and not any(os.environ.get(name) for name in shown):
        return None
    fd, name = tempfile.mkstemp(prefix="paraflow-ui-", suffix=".html")  # mode 0600
    with os.fdopen(fd, "w") as page:
        page.write(f'<!doctype html><meta http-equiv="refresh" content="0;url={html.escape(url)}">')
    webbrowser.open(Path(name).as_uri())
    return Path(name)
