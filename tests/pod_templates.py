"""Pod templates that break paraflow's contract, each with the message that must name the field:
shared by the unit test (the operator's check) and the cluster test (the apiserver's CEL)."""

from __future__ import annotations

from typing import Any

from tests.workflows import WORKER_IMAGE

# (case, the spec.<step> fields to set, the message the user must see)
CONFLICTS: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "restart-policy",
        "processor",
        {"podTemplate": {"spec": {"restartPolicy": "OnFailure"}}},
        "processor.podTemplate.spec.restartPolicy: paraflow sets Never",
    ),
    (
        "plain-sidecar",
        "processor",
        {"podTemplate": {"spec": {"containers": [{"name": "proxy", "image": "envoy:1"}]}}},
        "processor.podTemplate.spec.containers: only one named 'processor'",
    ),
    (
        "main-image",
        "processor",
        {"podTemplate": {"spec": {"containers": [{"name": "processor", "image": "other:1"}]}}},
        "processor.podTemplate.spec.containers[processor].image: set by paraflow from processor.image",
    ),
    (
        "main-command",
        "reduce",
        {"podTemplate": {"spec": {"containers": [{"name": "reduce", "command": ["sh"]}]}}},
        "reduce.podTemplate.spec.containers[reduce].command: set by paraflow from reduce.command",
    ),
    (
        "main-security",
        "partitioner",
        {"podTemplate": {"spec": {"containers": [{"name": "partitioner", "securityContext": {"privileged": True}}]}}},
        "partitioner.podTemplate.spec.containers[partitioner].securityContext: set by paraflow from "
        "partitioner.container.securityContext",
    ),
    (
        "main-resources",
        "processor",
        {"podTemplate": {"spec": {"containers": [{"name": "processor", "resources": {"limits": {"cpu": 1}}}]}}},
        "processor.podTemplate.spec.containers[processor].resources: set by paraflow from processor.resources",
    ),
    (
        "reserved-env",
        "processor",
        {
            "podTemplate": {
                "spec": {"containers": [{"name": "processor", "env": [{"name": "PARAFLOW_PARTITION", "value": "7"}]}]}
            }
        },
        "processor.podTemplate.spec.containers[processor].env: PARAFLOW_* variables are paraflow's",
    ),
    (
        "pod-run-as",
        "processor",
        {"podTemplate": {"spec": {"securityContext": {"runAsUser": 0}}}},
        "processor.podTemplate.spec.securityContext: runAsUser, runAsGroup, runAsNonRoot, fsGroup, seccompProfile "
        "are set from processor.securityContext",
    ),
    (
        "reserved-label",
        "reduce",
        {"podTemplate": {"metadata": {"labels": {"paraflow.dev/workflow": "other"}}}},
        "reduce.podTemplate.metadata.labels: paraflow.dev/*, batch.kubernetes.io/*, kueue.x-k8s.io/*, "
        "app.kubernetes.io/managed-by, job-name, controller-uid are paraflow's, the Job controller's or Kueue's",
    ),
    (
        "job-controller-label",
        "processor",
        {"podTemplate": {"metadata": {"labels": {"job-name": "other"}}}},
        "processor.podTemplate.metadata.labels: paraflow.dev/*",
    ),
    (
        "kueue-label-on-pods",
        "processor",
        {"podTemplate": {"metadata": {"labels": {"kueue.x-k8s.io/queue-name": "team"}}}},
        "processor.podTemplate.metadata.labels: paraflow.dev/*",
    ),
    (
        "main-restarts-in-pod",
        "processor",
        {"podTemplate": {"spec": {"containers": [{"name": "processor", "restartPolicy": "Always"}]}}},
        "processor.podTemplate.spec.containers[processor].restartPolicy: a container restarted in its pod",
    ),
    (
        "node-selector-twice",
        "processor",
        {"nodeSelector": {"pool": "a"}, "podTemplate": {"spec": {"nodeSelector": {"pool": "b"}}}},
        "processor.nodeSelector and processor.podTemplate.spec.nodeSelector are both set; set one",
    ),
    (
        "service-account-twice",
        "processor",
        {"serviceAccountName": "a", "podTemplate": {"spec": {"serviceAccountName": "b"}}},
        "processor.serviceAccountName and processor.podTemplate.spec.serviceAccountName are both set; set one",
    ),
    (
        "annotation-twice",
        "processor",
        {"podAnnotations": {"k": "1"}, "podTemplate": {"metadata": {"annotations": {"k": "2"}}}},
        "processor.podTemplate.metadata.annotations: a key also in processor.podAnnotations",
    ),
]

# Every kind of setting the issue names, in one template a processor may carry.
EVERYTHING: dict[str, Any] = {
    "metadata": {"labels": {"team": "logs"}, "annotations": {"example.com/cost-centre": "42"}},
    "spec": {
        "volumes": [{"name": "config", "configMap": {"name": "settings"}}, {"name": "scratch", "emptyDir": {}}],
        "containers": [
            {
                "name": "processor",
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/settings", "readOnly": True},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
                "env": [{"name": "FROM_TEMPLATE", "value": "yes"}],
            }
        ],
        "initContainers": [
            {"name": "helper", "image": WORKER_IMAGE, "restartPolicy": "Always", "command": ["sleep", "3600"]}
        ],
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": "batch-high",
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [{"key": "pool", "operator": "Exists"}]}}
                ]
            }
        },
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
        "runtimeClassName": "runc",
        "hostAliases": [{"ip": "10.0.0.1", "hostnames": ["storage.internal"]}],
        "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]},
        "automountServiceAccountToken": True,
    },
}
