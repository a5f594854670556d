"""The worker's log lines: one line per event through ``logging``, as the operator writes them.

``PARAFLOW_LOG_FORMAT=json`` (the chart's ``settings.workerLogFormat``, set on paraflow's own
pods: the partitioner and replication) writes each line as
one JSON object with kopf's field names (``message``, ``timestamp``, ``severity``), so pod logs,
the operator's log and a log pipeline read them alike; ``text`` (the default) is for people.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from paraflow_worker.contract import Env

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _SeverityJson(JsonFormatter):
    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["severity"] = record.levelname.lower()


def configure(environ: dict[str, str] | None = None) -> None:
    """Logs to stdout (Kubernetes keeps it with the pod), in the format the environment asks."""
    fmt = (environ or {}).get(Env.LOG_FORMAT, "text")
    handler = logging.StreamHandler(sys.stdout)
    if fmt == "json":
        handler.setFormatter(_SeverityJson("%(message)s %(name)s", timestamp=True))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT, "%Y-%m-%dT%H:%M:%S%z"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
