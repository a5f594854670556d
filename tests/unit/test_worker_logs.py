"""The worker logs one line per event through ``logging``: JSON objects with kopf's field names
when the operator asks for json, readable text otherwise; every child pod is told which."""

from __future__ import annotations

import json
import logging

import pytest

from paraflow.k8s import builders
from paraflow.planning.actions import CreatePartition, CreatePartitioner
from paraflow.settings import Settings
from paraflow_worker import logs
from paraflow_worker.contract import Env
from tests.unit.builders import make_spec

pytestmark = pytest.mark.unit


def test_json_lines_carry_message_severity_and_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure({Env.LOG_FORMAT: "json"})
    logging.getLogger("paraflow_worker.replicate").warning("%s: copied %d", "archive", 3)
    line = json.loads(capsys.readouterr().out.strip())
    assert line["message"] == "archive: copied 3"
    assert line["severity"] == "warning"
    assert line["name"] == "paraflow_worker.replicate"
    assert "timestamp" in line


def test_text_is_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure({})
    logging.getLogger("paraflow_worker.partition").info("plan: %d partitions", 4)
    out = capsys.readouterr().out
    assert out.rstrip().endswith("INFO paraflow_worker.partition: plan: 4 partitions")


def test_paraflow_s_own_containers_are_told_the_log_format_and_a_user_s_processor_is_not() -> None:
    wf = builders.WorkflowRef("wf", "ns", "uid-1")
    settings = Settings(worker_log_format="json")
    job = builders.child_job(wf, make_spec(), CreatePartitioner(), partitioner_attempt=1, settings=settings)
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": Env.LOG_FORMAT, "value": "json"} in env
    partition = builders.child_job(wf, make_spec(), CreatePartition(0, 1), partitioner_attempt=1, settings=settings)
    assert Env.LOG_FORMAT not in {e["name"] for e in partition["spec"]["template"]["spec"]["containers"][0]["env"]}
