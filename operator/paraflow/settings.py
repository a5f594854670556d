"""Operator settings, read from ``PARAFLOW_*`` env vars (the Helm chart sets them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from paraflow.planning.lease import Timings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARAFLOW_", extra="ignore")

    worker_image: str = Field("paraflow/worker:0.1.0", description="Image of the built-in partitioner")
    worker_image_pull_policy: str = Field("IfNotPresent", description="No registry? keep IfNotPresent/Never")
    worker_log_format: Literal["text", "json"] = Field(
        "text", description="How paraflow's own pods (partitioner, replication) write their log lines"
    )
    # Safety net only: passes are woken by the workflow's and its Jobs' events. A missed
    # event (a watch that silently stalled) costs at most this long.
    resync_seconds: float = Field(30.0, gt=0)
    # Many Job events arrive in bursts (500 pods finishing); one pass serves the whole burst.
    debounce_seconds: float = Field(0.2, ge=0)
    # Backoff after a pass that raised (API or storage errors), doubling to the cap.
    error_backoff_seconds: float = Field(2.0, gt=0)
    error_backoff_max_seconds: float = Field(60.0, gt=0)
    # The kubernetes client is synchronous; it runs in this many threads, never on the loop.
    api_threads: int = Field(16, ge=1, le=256)
    # Writes to the apiserver, across all workflows (token bucket): protects the control plane.
    api_write_qps: float = Field(50.0, gt=0)
    api_write_burst: int = Field(100, ge=1)
    api_request_timeout_seconds: float = Field(30.0, gt=0)
    storage_timeout_seconds: float = Field(30.0, gt=0)
    # Watches are re-established this often, and a silent stream is dropped after the
    # inactivity timeout (kopf#585: streams that stall forever without an error).
    watch_server_timeout_seconds: int = Field(300, ge=10)
    watch_client_timeout_seconds: float = Field(330.0, ge=10)
    secret_cache_seconds: float = Field(10.0, ge=0)
    # A child Job with no pod ready or finished for this long is asked why (FailedCreate Events,
    # unschedulable or image-pull-failing pods): one round of at most stall_checks_per_pass Jobs
    # per stall_seconds and workflow.
    stall_seconds: float = Field(8.0, gt=0)
    stall_checks_per_pass: int = Field(3, ge=0, le=50)
    # Jobs one workflow's pass may create; more wait for the next pass, a second later.
    max_creates_per_pass: int = Field(500, ge=1)
    # succeededJobs: Delete keeps a running workflow's newest succeeded partition Jobs up to this
    # many, and deletes all of them once it has finished (as the PodGC controller's threshold
    # does for pods): deletes cost the control plane as much as a third of the creates, so a run
    # of up to this many partitions pays none while it runs, and a larger one stays bounded.
    succeeded_jobs_kept_while_running: int = Field(1000, ge=0)
    # Prometheus metrics on this port; 0 turns them off.
    metrics_port: int = Field(9090, ge=0, le=65535)
    # One active replica, chosen by a coordination.k8s.io/v1 Lease (client-go's defaults): a
    # standby takes over this long after the leader's last renewal, and a leader that could not
    # renew for the deadline stops writing first. Off: this process always acts (one replica only).
    leader_election: bool = True
    lease_name: str = Field("paraflow-operator", min_length=1)
    # Empty: the namespace the operator's pod runs in (its ServiceAccount's), else "default".
    lease_namespace: str = ""
    lease_duration_seconds: float = Field(15.0, gt=0)
    lease_renew_deadline_seconds: float = Field(10.0, gt=0)
    lease_retry_period_seconds: float = Field(2.0, gt=0)
    # This replica's name in the Lease; empty: its host name (the pod's name) and a random suffix.
    identity: str = ""

    @model_validator(mode="after")
    def _lease_timings_hold(self) -> Settings:
        self.lease_timings()
        return self

    def lease_timings(self) -> Timings:
        return Timings(self.lease_duration_seconds, self.lease_renew_deadline_seconds, self.lease_retry_period_seconds)
