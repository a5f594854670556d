"""Deterministic child names: the same workflow, partition and attempt always give the same name,
so a repeated create (after a crash or a lost response) finds the object instead of duplicating it.
"""

from __future__ import annotations


def partitioner_job(workflow: str, attempt: int) -> str:
    return f"{workflow}-part-a{attempt}"


def partition_job(workflow: str, partition: int, attempt: int) -> str:
    return f"{workflow}-p{partition}-a{attempt}"


def replication_job(workflow: str, partition: int | None, attempt: int) -> str:
    """Per partition ``<wf>-r<i>-a<n>``; the run-wide copy ``<wf>-repl-a<n>``."""
    return f"{workflow}-repl-a{attempt}" if partition is None else f"{workflow}-r{partition}-a{attempt}"


def reduce_job(workflow: str, attempt: int) -> str:
    return f"{workflow}-reduce-a{attempt}"
