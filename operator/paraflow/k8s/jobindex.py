"""Child Jobs' facts by workflow uid, as a watch of Jobs reports them.

Only the compact ``JobFacts`` are kept, never Job bodies. Each change answers which workflow
must look again, and only when what its planner sees changed: most of a Job's status updates
(an active count, a pod's readiness) change nothing a pass decides on, and wake nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from paraflow import constants as c
from paraflow.k8s.builders import job_facts
from paraflow.planning.tracking import JobFacts

Key = tuple[str, str]  # namespace, Job name


class JobIndex:
    def __init__(self) -> None:
        # Keyed by namespace and name too: a copy of a Job in another namespace (by hand, or by
        # a backup tool) keeps its labels, so one workflow uid can label Jobs in two namespaces.
        self._by_workflow: dict[str, dict[Key, JobFacts]] = {}
        self._owner: dict[Key, str] = {}

    def jobs_of(self, workflow_uid: str) -> list[JobFacts]:
        return list(self._by_workflow.get(workflow_uid, {}).values())

    def __len__(self) -> int:
        return len(self._owner)

    def apply(self, event_type: str, job: Mapping[str, Any]) -> set[str]:
        """One watch event (ADDED, MODIFIED, DELETED); the uids of the workflows to wake."""
        key = _key(job)
        owner: str | None = ((job.get("metadata") or {}).get("labels") or {}).get(c.LABEL_WORKFLOW_UID)
        facts = job_facts(job) if owner and event_type != "DELETED" else None
        woken: set[str] = set()
        previous = self._owner.get(key)
        if previous is not None and (facts is None or previous != owner):
            # Gone, no longer a child Job we can judge, or relabelled by hand to another workflow.
            self._remove(key)
            woken.add(previous)
        if facts is None or not owner:
            return woken
        jobs = self._by_workflow.setdefault(owner, {})
        if jobs.get(key) != facts:
            jobs[key] = facts
            self._owner[key] = owner
            woken.add(owner)
        return woken

    def replace(self, namespace: str | None, jobs: Iterable[Mapping[str, Any]]) -> set[str]:
        """A fresh list of every Job in ``namespace`` (None: all namespaces) stands for all that
        exist there now: Jobs missing from it were deleted while no watch ran. The workflows to wake."""
        woken: set[str] = set()
        listed: set[Key] = set()
        for job in jobs:
            listed.add(_key(job))
            woken |= self.apply("ADDED", job)
        for key in [k for k in self._owner if (namespace is None or k[0] == namespace) and k not in listed]:
            woken.add(self._owner[key])
            self._remove(key)
        return woken

    def _remove(self, key: Key) -> None:
        owner = self._owner.pop(key)
        jobs = self._by_workflow[owner]
        del jobs[key]
        if not jobs:
            del self._by_workflow[owner]


def _key(job: Mapping[str, Any]) -> Key:
    meta = job.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
