"""The view's web server (aiohttp): the page, a JSON API under it, live updates as server-sent
events from a watch, and the actions.

Safety: it listens on 127.0.0.1 unless told otherwise; every path starts with a random token made
at start (``/<token>/...``), so another user of the machine, or a page in the browser that does
not know the token, reaches nothing. Actions are POSTs that must carry the token again in the
``X-Paraflow-Token`` header, which a cross-site form or image cannot set, and an ``Origin``, when
sent, that is this server's own: CSRF-safe. No Secret's content is ever sent to the page.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import ipaddress
import json
import logging
import secrets
import threading
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from paraflow.cli import actions, describe
from paraflow.ui.cluster import Cluster, Doc
from paraflow.ui.progress import History
from paraflow.ui.view import sample, summary, workflow_view

log = logging.getLogger(__name__)
TOKEN_HEADER = "X-Paraflow-Token"
PING = 15.0  # seconds between a stream's keep-alive comments
STATIC = resources.files("paraflow.ui") / "static"
CLUSTER: web.AppKey[Cluster] = web.AppKey("cluster", Cluster)
TOKEN: web.AppKey[str] = web.AppKey("token", str)
ADDRESS: web.AppKey[str] = web.AppKey("address", str)


class Follower:
    """One stream's link to the thread following its workflow: events go one way (each a
    server-sent event's text), stop the other."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.changes = asyncio.Queue[str | None]()
        self.stop = threading.Event()

    def send(self, view: Doc) -> None:
        self.loop.call_soon_threadsafe(self.changes.put_nowait, f"data: {json.dumps(view)}\n\n")

    def fail(self, why: str) -> None:
        """The page shows ``why`` and stops reconnecting: following again would fail again."""
        event = f"event: problem\ndata: {json.dumps({'message': why})}\n\n"
        self.loop.call_soon_threadsafe(self.changes.put_nowait, event)

    def end(self) -> None:
        self.stop.set()
        with contextlib.suppress(RuntimeError):  # the server's loop has closed: nobody waits
            self.loop.call_soon_threadsafe(self.changes.put_nowait, None)


class State:
    """What the server keeps between requests: each run's samples, and why its failed partitions
    failed (asked again only when the set of failed partitions changes)."""

    def __init__(self, now: Callable[[], dt.datetime]) -> None:
        self.now = now
        self.histories: dict[str, History] = {}
        self.failures: dict[str, tuple[str, dict[int, str], str]] = {}  # uid: (failedIndexes, why, note)
        self.lock = threading.Lock()
        self.followers: set[Follower] = set()  # one per open stream

    async def stop_following(self, _: web.Application) -> None:
        for follower in list(self.followers):
            follower.end()

    def view(self, cluster: Cluster, wf: Doc) -> Doc:
        uid, now = wf["metadata"].get("uid", ""), self.now()
        failed = (wf.get("status") or {}).get("failedIndexes", "")
        with self.lock:
            history = self.histories.setdefault(uid, History())
            history.add(sample(wf, now=now))
            samples = list(history.samples)
            known = self.failures.get(uid)
        if known is None or known[0] != failed:
            known = (failed, {}, "")
            if failed:
                try:
                    known = (failed, cluster.failures(wf), "")
                except Exception as e:  # the grid needs only the status: it is drawn anyway
                    known = (failed, {}, f"why partitions failed cannot be read: {describe(e)}")
            with self.lock:
                self.failures[uid] = known
        return workflow_view(wf, samples=samples, failures=known[1], now=now, note=known[2])


STATE: web.AppKey[State] = web.AppKey("state", State)


def make_app(
    cluster: Cluster,
    *,
    token: str | None = None,
    address: str = "127.0.0.1",
    now: Callable[[], dt.datetime] | None = None,
) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[ADDRESS] = address
    app[CLUSTER] = cluster
    app[TOKEN] = token or secrets.token_urlsafe(24)
    app[STATE] = State(now or (lambda: dt.datetime.now(dt.UTC)))
    app.on_shutdown.append(app[STATE].stop_following)
    app.add_routes(
        [
            web.get("/{token}/", _page),
            web.get("/{token}/static/plotly.min.js", _plotly),
            web.get("/{token}/static/{file}", _static),
            web.get("/{token}/api/namespaces/{ns}/workflows", _workflows),
            web.get("/{token}/api/namespaces/{ns}/schedules", _schedules),
            web.get("/{token}/api/namespaces/{ns}/workflows/{name}", _workflow),
            web.get("/{token}/api/namespaces/{ns}/workflows/{name}/stream", _stream),
            web.get("/{token}/api/namespaces/{ns}/workflows/{name}/logs", _logs),
            web.get("/{token}/api/namespaces/{ns}/workflows/{name}/manifest", _manifest),
            web.post("/{token}/api/namespaces/{ns}/workflows/{name}/{action}", _act),
        ]
    )
    return app


def _named_host(host: str, address: str) -> bool:
    """Whether a request's Host names this server by a name a DNS rebinding could point here: a
    page on another site resolving its own name to 127.0.0.1 sends that name, never an address."""
    try:
        name = (urlsplit(f"http://{host}").hostname or "").rstrip(".")
    except ValueError:
        return True  # not a host at all
    if name in ("localhost", address.strip("[]").lower().rstrip(".")):
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return True
    return False


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    token = request.app[TOKEN]
    if _named_host(request.host, request.app[ADDRESS]):
        raise web.HTTPForbidden(text=f"not served to host {request.host!r}: use the URL `paraflow ui` printed")
    given = request.path.split("/", 2)[1] if request.path.count("/") >= 2 else ""
    if not secrets.compare_digest(given.encode(), token.encode()):
        raise web.HTTPNotFound(text="not here: open the URL `paraflow ui` printed, token included")
    if request.method != "GET":
        if not secrets.compare_digest(request.headers.get(TOKEN_HEADER, "").encode(), token.encode()):
            raise web.HTTPForbidden(text=f"an action needs the {TOKEN_HEADER} header")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text=f"an action from another origin ({origin}) is refused")
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException:
        raise
    except Exception as e:  # the API's refusals (404, 403, 422) reach the page as they are
        status = 404 if isinstance(e, actions.NotFound) else getattr(e, "status", None)
        response = web.Response(
            status=status if isinstance(status, int) and 400 <= status < 600 else 500, text=describe(e)
        )
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    response.headers["X-Frame-Options"] = "DENY"
    return response


@functools.cache
def _shipped(name: str) -> str | None:
    """A file of the view as installed (None: not one of them), read once per process."""
    return (STATIC / name).read_text() if name in {p.name for p in STATIC.iterdir()} else None


@functools.cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    text: str = get_plotlyjs()
    return text


async def _page(request: web.Request) -> web.Response:
    html = (_shipped("index.html") or "").replace("{{TOKEN}}", request.app[TOKEN])
    return web.Response(text=html, content_type="text/html")


async def _static(request: web.Request) -> web.Response:
    name = request.match_info["file"]
    types = {".js": "application/javascript", ".css": "text/css"}
    kind = next((t for ext, t in types.items() if name.endswith(ext)), None)
    text = _shipped(name) if kind is not None else None
    if kind is None or text is None:
        raise web.HTTPNotFound()
    return web.Response(text=text, content_type=kind)


async def _plotly(request: web.Request) -> web.Response:
    # The one large file (about 5 MB), the same for the life of the installed plotly: cached.
    return web.Response(
        text=_plotly_js(), content_type="application/javascript", headers={"Cache-Control": "private, max-age=86400"}
    )


async def _workflows(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(request.app[CLUSTER].workflows, request.match_info["ns"])
    return web.json_response([summary(wf) for wf in found])


async def _schedules(request: web.Request) -> web.Response:
    found = await asyncio.to_thread(request.app[CLUSTER].schedules, request.match_info["ns"])
    return web.json_response(
        [
            {
                "name": s["metadata"]["name"],
                "schedule": (s.get("spec") or {}).get("schedule", ""),
                "suspended": bool((s.get("spec") or {}).get("suspend")),
                "lastScheduleTime": (s.get("status") or {}).get("lastScheduleTime"),
                "nextScheduleTime": (s.get("status") or {}).get("nextScheduleTime"),
            }
            for s in found
        ]
    )


def _target(request: web.Request) -> tuple[Cluster, str, str]:
    """The cluster, and the namespace and name of the workflow a run's route names."""
    return request.app[CLUSTER], request.match_info["ns"], request.match_info["name"]


async def _workflow(request: web.Request) -> web.Response:
    cluster, ns, name = _target(request)
    wf = await asyncio.to_thread(cluster.workflow, ns, name)
    view = await asyncio.to_thread(request.app[STATE].view, cluster, wf)
    return web.json_response(view)


async def _stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the view each time the workflow changes (a watch, not polling), a
    comment every PING seconds (a closed tab is noticed), and a ``problem`` event, the last, when
    following fails (deleted, forbidden)."""
    cluster, ns, name = _target(request)
    await asyncio.to_thread(cluster.workflow, ns, name)  # none: 404, before the stream starts
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    follower = Follower(asyncio.get_running_loop())
    state = request.app[STATE]

    def follow() -> None:
        try:
            for wf in cluster.follow(ns, name, follower.stop):
                follower.send(state.view(cluster, wf))
        except Exception as e:
            if isinstance(e, actions.NotFound) or getattr(e, "status", None) in (401, 403, 404):
                follower.fail(describe(e))  # for good: the page says why and stops
            else:  # the connection dropped, a token expired: the page reconnects
                log.warning("following %s/%s: %s", ns, name, describe(e))
        finally:
            follower.end()

    state.followers.add(follower)
    # A thread of its own, not the loop's executor: a watch blocked in a read must not hold up
    # the server's exit (it ends by itself within the watch's timeout).
    threading.Thread(target=follow, daemon=True, name=f"follow-{ns}-{name}").start()
    try:
        while True:
            try:
                event = await asyncio.wait_for(follower.changes.get(), PING)
            except TimeoutError:
                event = ": ping\n\n"
            if event is None:
                break
            await response.write(event.encode())
    except ConnectionResetError:
        pass  # the page went away: its follower stops below
    finally:
        follower.stop.set()
        state.followers.discard(follower)
    return response


async def _logs(request: web.Request) -> web.Response:
    cluster, ns, name = _target(request)
    partition, attempt = _number(request, "partition"), _number(request, "attempt")
    wf = await asyncio.to_thread(cluster.workflow, ns, name)
    try:
        found: actions.Logs = await asyncio.to_thread(cluster.logs, wf, partition, attempt)
    except actions.NotFound as e:
        raise web.HTTPNotFound(text=str(e)) from e
    except actions.InvalidSpec as e:
        raise web.HTTPConflict(text=f"the workflow's spec: {e}") from e
    parts = [f"==> {pod}\n{text}" for pod, text in found.live]
    if found.kept:
        parts.insert(0, f"the pods of {found.what} are gone: their logs as the operator kept them\n")
    parts += [f"==> {log.pod} {log.describe()}\n{log.text}" for log in found.kept]
    return web.Response(text="\n".join(parts))


def _number(request: web.Request, name: str) -> int | None:
    given = request.query.get(name)
    if not given:
        return None
    if not given.isdigit():
        raise web.HTTPBadRequest(text=f"{name} is a whole number, not {given!r}")
    return int(given)


async def _manifest(request: web.Request) -> web.Response:
    cluster, ns, name = _target(request)
    wf = await asyncio.to_thread(cluster.workflow, ns, name)
    try:
        return web.json_response(await asyncio.to_thread(cluster.manifest, wf))
    except actions.NotFound as e:
        raise web.HTTPNotFound(text=str(e)) from e


async def _act(request: web.Request) -> web.Response:
    cluster, ns, name = _target(request)
    action = request.match_info["action"]
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError as e:
        raise web.HTTPBadRequest(text=f"the body is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body is a JSON object")
    if action == "redrive":
        answer: actions.Redrive = await asyncio.to_thread(cluster.redrive, ns, name)
        return web.json_response({"ok": answer.taken, "message": answer.message}, status=200 if answer.taken else 409)
    if action in ("suspend", "resume"):
        return web.json_response(
            {"ok": True, "message": await asyncio.to_thread(cluster.suspend, ns, name, action == "suspend")}
        )
    if action == "concurrency":
        limit = body.get("limit")
        if type(limit) is not int or not 1 <= limit <= 10000:  # a bool is an int to isinstance
            raise web.HTTPBadRequest(text="maxConcurrency is a whole number from 1 to 10000")
        return web.json_response(
            {"ok": True, "message": await asyncio.to_thread(cluster.set_concurrency, ns, name, limit)}
        )
    raise web.HTTPNotFound(text=f"no action {action!r}")
