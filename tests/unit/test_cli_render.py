"""What `paraflow status` tells a person about a run's attempts and what it never started."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from paraflow.cli.render import status_table

pytestmark = pytest.mark.unit


def shown(obj: dict[str, object]) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(status_table(obj, {}))
    return out.getvalue()


def test_status_explains_why_attempt_numbers_jump_after_a_redrive_and_counts_what_a_failed_run_never_ran() -> None:
    text = shown(
        {
            "metadata": {"name": "wf", "namespace": "ns"},
            "spec": {"retry": {"maxAttempts": 3}},
            "status": {
                "phase": "Failed",
                "partitions": {"total": 10, "succeeded": 6, "failed": 1, "notRun": 3},
                "attempts": {"7": "4"},
                "redrive": {"count": 2, "lastToken": "t"},
            },
        }
    )
    assert "redrive r starts what it re-runs at attempt 3 x r + 1 (this round: attempt 7)" in text
    assert "3 not run (a redrive runs them)" in text


def test_status_names_the_schedule_and_slot_behind_a_run() -> None:
    run = {
        "metadata": {
            "name": "daily-logs-29926080",
            "namespace": "web",
            "labels": {"paraflow.dev/schedule": "daily-logs"},
            "annotations": {"paraflow.dev/scheduled-time": "2026-11-25T00:00:00Z"},
        },
        "status": {"phase": "Running"},
    }
    assert re.search(r"schedule +daily-logs, slot 2026-11-25T00:00:00Z", shown(run))


def test_status_counts_partitions_queued_for_admission_and_shows_kueue_s_words() -> None:
    message = "3 Job(s) wait for admission in Kueue LocalQueue team-a: insufficient quota for cpu"
    text = shown(
        {
            "metadata": {"name": "wf", "namespace": "ns"},
            "status": {
                "phase": "Running",
                "message": message,
                "partitions": {"total": 5, "succeeded": 2, "queued": 3},
            },
        }
    )
    assert "3 queued (waiting for admission)" in text
    assert "insufficient quota for cpu" in text
