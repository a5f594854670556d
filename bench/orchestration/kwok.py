"""Where benchmark pods run: the local cluster's KWOK nodes, which complete a pod without running
it, at once or after the task length its annotation asks for (``hack/kwok/pod-complete.yaml``)."""

from __future__ import annotations

from typing import Any

KWOK: dict[str, Any] = {
    "nodeSelector": {"type": "kwok"},
    "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
}
DELAY_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"


def pod_annotations(task_seconds: float) -> dict[str, str]:
    """A pod's annotations asking KWOK to complete it ``task_seconds`` after it is ready."""
    return {DELAY_ANNOTATION: f"{task_seconds:g}s"} if task_seconds else {}


def pod_metadata(task_seconds: float) -> dict[str, Any]:
    annotations = pod_annotations(task_seconds)
    return {"annotations": annotations} if annotations else {}
