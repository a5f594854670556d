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
        self._by_workflow: dict[str, dict[str, JobFacts]] = {}
        self._owner: dict[Key, str] = {}

    def jobs_of(self, workflow_uid: str) -> list[JobFacts]:
        return list(self._by_workflow.get(workflow_uid, {}).values())

    def __len__(self) -> int:
        return len(self._owner)

    def apply(self, event_type: str, job: Mapping[str, Any]) -> str | None:
        """One watch event (ADDED, MODIFIED, DELETED); the uid of the workflow to wake, if any."""
        meta = job.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            return self._remove(key)
        owner: str | None = (meta.get("labels") or {}).get(c.LABEL_WORKFLOW_UID)
        facts = job_facts(job) if owner else None
        if owner is None or facts is None:
            return self._remove(key)  # not (or no longer) a child Job we can judge
        if self._owner.get(key, owner) != owner:
            self._remove(key)  # relabelled by hand: it is the other workflow's now
        jobs = self._by_workflow.setdefault(owner, {})
        if jobs.get(facts.name) == facts:
            return None
        jobs[facts.name] = facts
        self._owner[key] = owner
        return owner

    def replace(self, namespace: str | None, jobs: Iterable[Mapping[str, Any]]) -> set[str]:
        """A fresh list of every Job in ``namespace`` (None: all namespaces) stands for all that
        exist there now: Jobs missing from it were deleted while no watch ran. The workflows to wake."""
        woken: set[str] = set()
        listed: set[Key] = set()
        for job in jobs:
            meta = job.get("metadata") or {}
            listed.add((meta.get("namespace", ""), meta.get("name", "")))
            owner = self.apply("ADDED", job)
            if owner is not None:
                woken.add(owner)
        for key in [k for k in self._owner if (namespace is None or k[0] == namespace) and k not in listed]:
            owner = self._remove(key)
            if owner is not None:
                woken.add(owner)
        return woken

    def _remove(self, key: Key) -> str | None:
        owner = self._owner.pop(key, None)
        if owner is None:
            return None
        jobs = self._by_workflow[owner]
        del jobs[key[1]]
        if not jobs:
            del self._by_workflow[owner]
        return owner
