"""Small fluent builders for test inputs, in the style of jobset's MakeJobSet(...).Obj()."""

from __future__ import annotations

import datetime as dt
from typing import Any

from paraflow.models import WorkflowSpec

T0 = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)


def spec_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "storage": {"endpoint": "http://127.0.0.1:9000", "credentialsSecret": "minio-creds"},
        "input": {"bucket": "raw-logs", "prefix": "2026/11/24/"},
        "partitioner": {"builtin": {"maxItemsPerPartition": 10}},
        "processor": {"image": "python:3.11", "command": ["python", "-c", "pass"]},
        "output": {"bucket": "processed", "prefix": "daily/"},
    }
    for dotted, value in overrides.items():
        target = base
        *path, last = dotted.split(".")
        for part in path:
            target = target.setdefault(part, {})
        target[last] = value
    return base


def make_spec(**overrides: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(spec_dict(**overrides))
