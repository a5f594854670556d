"""Jobs the operator created that its watch has not shown yet.

The Job index follows a watch, which lags the create by a little, or by seconds on a loaded
control plane. A pass in that window would see fewer active Jobs than there are: it would create
the same Jobs again (a 409 each, every pass) and, worse, start other partitions beyond
maxConcurrency. Until a created Job shows up (or ``ttl`` passes), it counts as active. This is the
"expectations" of Kubernetes' own controllers.
"""

from __future__ import annotations

from collections.abc import Sequence

from paraflow.planning.tracking import JobFacts


class Expectations:
    def __init__(self, ttl_seconds: float = 60.0) -> None:
        self.ttl = ttl_seconds
        self._pending: dict[str, dict[str, tuple[JobFacts, float]]] = {}

    def expect(self, owner: str, job: JobFacts, now: float) -> None:
        self._pending.setdefault(owner, {})[job.name] = (job, now)

    def merge(self, owner: str, observed: Sequence[JobFacts], now: float) -> list[JobFacts]:
        """The observed Jobs plus those created and not seen yet; forgets what the watch shows."""
        pending = self._pending.get(owner)
        if not pending:
            return list(observed)
        seen = {job.name for job in observed}
        for name, (_, since) in list(pending.items()):
            if name in seen or now - since > self.ttl:
                del pending[name]
        return [*observed, *(job for job, _ in pending.values())]

    def forget(self, owner: str) -> None:
        self._pending.pop(owner, None)
