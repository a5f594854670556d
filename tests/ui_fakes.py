"""A cluster of our own for the Map Run view (``paraflow.ui.cluster.Cluster``): workflows held in
memory, changed by the test, and a record of the actions the view asked for. The unit tests of
the server, the 100,000-partition render test and its benchmark draw any status through it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from paraflow.cli import actions
from paraflow.planning import indexsets

Doc = dict[str, Any]


def big_workflow(total: int, *, failed: set[int], running: set[int], name: str = "big") -> Doc:
    """A workflow of ``total`` partitions: the first half succeeded, ``failed`` and ``running``
    as given (their latest attempt 2), the rest pending."""
    succeeded = set(range(total // 2)) - failed - running
    return {
        "metadata": {
            "name": name,
            "namespace": "sim",
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-12-07T12:00:00Z",
        },
        "spec": {"maxConcurrency": 100},
        "status": {
            "phase": "Running",
            "startTime": "2026-12-07T12:00:00Z",
            "partitions": {
                "total": total,
                "succeeded": len(succeeded),
                "failed": len(failed),
                "running": len(running),
                "pending": total - len(succeeded) - len(failed) - len(running),
            },
            "succeededIndexes": indexsets.compress(succeeded),
            "failedIndexes": indexsets.compress(failed),
            "runningIndexes": indexsets.compress(running),
            "attempts": {"2": indexsets.compress(failed | running)},
        },
    }


class FakeCluster:
    def __init__(self, *workflows: Doc) -> None:
        self.docs = {(w["metadata"]["namespace"], w["metadata"]["name"]): w for w in workflows}
        self.acted: list[tuple[str, ...]] = []
        self.changed = threading.Condition()
        self.version = 0
        self.failures_refused = False  # as for a user who may not list Jobs or pods

    def delete(self, namespace: str, name: str) -> None:
        with self.changed:
            del self.docs[(namespace, name)]
            self.version += 1
            self.changed.notify_all()

    def update(self, wf: Doc) -> None:
        with self.changed:
            self.docs[(wf["metadata"]["namespace"], wf["metadata"]["name"])] = wf
            self.version += 1
            self.changed.notify_all()

    def workflows(self, namespace: str) -> list[Doc]:
        return [w for (ns, _), w in self.docs.items() if ns == namespace]

    def schedules(self, namespace: str) -> list[Doc]:
        return []

    def workflow(self, namespace: str, name: str) -> Doc:
        try:
            return self.docs[(namespace, name)]
        except KeyError:
            raise actions.NotFound(f"no workflow {namespace}/{name}") from None

    def follow(self, namespace: str, name: str, stop: threading.Event) -> Iterator[Doc]:
        seen = -1
        while not stop.is_set():
            with self.changed:
                if seen == self.version:
                    self.changed.wait(0.2)
                    continue
                seen = self.version
                doc = self.docs.get((namespace, name))
            if doc is None:
                raise actions.NotFound(f"{namespace}/{name} was deleted")
            yield doc

    def failures(self, wf: Doc) -> dict[int, str]:
        if self.failures_refused:
            raise PermissionError("jobs.batch is forbidden: User cannot list resource jobs")
        return {i: f"exit {i % 5 + 1} (Error)" for i in indexsets.expand(wf["status"].get("failedIndexes", ""))}

    def logs(self, wf: Doc, partition: int | None, attempt: int | None) -> actions.Logs:
        if partition not in indexsets.expand(wf["status"].get("failedIndexes", "")):
            raise actions.NotFound(f"partition {partition} has not started")
        return actions.Logs(f"partition {partition}", [(f"pod-{partition}", f"partition {partition} says hello\n")], [])

    def manifest(self, wf: Doc) -> Doc:
        raise actions.NotFound("no result manifest yet")

    def redrive(self, namespace: str, name: str) -> actions.Redrive:
        self.acted.append(("redrive", namespace, name))
        return actions.Redrive(True, True, f"redrive #1 of {namespace}/{name} started")

    def suspend(self, namespace: str, name: str, suspended: bool) -> str:
        self.acted.append(("suspend" if suspended else "resume", namespace, name))
        return "ok"

    def set_concurrency(self, namespace: str, name: str, limit: int) -> str:
        self.acted.append(("concurrency", namespace, name, str(limit)))
        return "ok"
