"""Retry timing, like Step Functions' Retry: IntervalSeconds, BackoffRate, MaxDelaySeconds, Jitter.

Jitter is deterministic per (workflow, partition, attempt): every reconcile pass, including one
after an operator restart, computes the same due time, so a restart neither hurries nor delays
a retry.
"""

from __future__ import annotations

import hashlib

from paraflow.models import RetrySpec


def backoff_seconds(retry: RetrySpec, failed_attempt: int) -> float:
    """The wait before the attempt that follows ``failed_attempt`` (1-based), before jitter."""
    raw = retry.interval_seconds * retry.backoff_rate ** (failed_attempt - 1)
    return float(min(retry.max_delay_seconds, raw))


def doubling_backoff(base: float, failures: int, cap: float) -> float:
    """base, 2 x base, 4 x base... up to ``cap``, for the ``failures``-th failure in a row: an
    outage of hours (thousands of failures) must not overflow the float and end the retrying."""
    return min(base * 2.0 ** min(failures - 1, 64), cap)


def delay_seconds(retry: RetrySpec, failed_attempt: int, seed: str) -> float:
    ceiling = backoff_seconds(retry, failed_attempt)
    if retry.jitter == "none":
        return ceiling
    digest = hashlib.sha256(f"{seed}/{failed_attempt}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return ceiling * fraction
