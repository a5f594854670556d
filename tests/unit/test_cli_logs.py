"""`paraflow logs` for a partition without a Job says why: not started yet, or succeeded and
deleted under succeededJobs: Delete (its logs went with it)."""

from __future__ import annotations

import pytest

from paraflow.cli.actions import no_partition_job as _no_partition_job

pytestmark = pytest.mark.unit


def test_a_deleted_succeeded_partition_is_not_called_not_started() -> None:
    wf = {"metadata": {"name": "big"}, "status": {"succeededIndexes": "0-9,12"}}
    assert "succeeded and its Job was deleted" in _no_partition_job(wf, 12)
    assert _no_partition_job(wf, 11) == "partition 11 of big has not started"


def test_a_workflow_without_status_has_not_started_any_partition() -> None:
    assert _no_partition_job({"metadata": {"name": "new"}}, 0) == "partition 0 of new has not started"
