"""Completion webhooks: one POST of a run's summary, signed, retried with backoff.

A delivery never changes the run: it is the notifier's outcome, recorded in the schedule's
status and, when it fails, in a Warning Event. Receivers may see a delivery twice (an operator
restarted mid-delivery sends it again): ``X-Paraflow-Delivery`` (the run's uid) tells them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from paraflow.schedule_models import HookDelivery, WebhookSpec

Sleep = Callable[[float], Awaitable[None]]


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


async def deliver(
    hook: WebhookSpec,
    summary: dict[str, Any],
    *,
    secret: bytes | None,
    clock: Callable[[], dt.datetime],
    sleep: Sleep = asyncio.sleep,
) -> HookDelivery:
    body = json.dumps(summary, sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "X-Paraflow-Delivery": str(summary["uid"])}
    if secret is not None:
        headers["X-Paraflow-Signature"] = signature(secret, body)
    code: int | None = None
    error = ""
    attempts = 0
    timeout = aiohttp.ClientTimeout(total=hook.timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for attempts in range(1, hook.max_attempts + 1):
            try:
                async with session.post(hook.url, data=body, headers=headers) as response:
                    code = response.status
                    if 200 <= code < 300:
                        return record(summary, "Delivered", attempts, code=code, error="", clock=clock)
                    answer = (await response.content.read(200)).decode(errors="replace")
                    error = f"HTTP {code}: {answer}"
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
                # Whatever the receiver or the network did, it is the delivery's outcome, never
                # the pass's: the run is told once.
                code, error = None, f"{type(e).__name__}: {e}"[:300]
            if attempts < hook.max_attempts:
                await sleep(2.0 ** (attempts - 1))
    return record(summary, "Failed", attempts, code=code, error=error, clock=clock)


def record(
    summary: dict[str, Any],
    result: str,
    attempts: int,
    *,
    code: int | None,
    error: str,
    clock: Callable[[], dt.datetime],
) -> HookDelivery:
    return HookDelivery.model_validate(
        {
            "run": summary["workflow"],
            "phase": summary["phase"],
            "result": result,
            "attempts": attempts,
            "code": code,
            "error": error,
            "time": clock(),
        }
    )
