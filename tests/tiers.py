"""A pytest plugin (loaded by conftest): the test tiers, what each needs to run, and how long a test
of it may take before it counts as hung. Every test carries exactly one tier marker; collection
fails for one that does not, or that asks for a fixture its tier does not have.

The README's Tests section maps every test file to its tier and says why it can fail there.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Tier:
    needs: str
    # pytest-timeout's budget for one test of the tier: a few times its slowest test, so a hang
    # fails that test instead of eating CI's 90 minutes.
    timeout_seconds: int
    # Fixtures that reach what the tier does not have (a cluster, MinIO): asking for one is a
    # mis-filed test.
    forbidden_fixtures: frozenset[str] = frozenset()


STORAGE_FIXTURES = frozenset({"storage_env", "s3", "s3_second", "bucket", "archive", "bucket_second"})
CLUSTER_FIXTURES = frozenset(
    {"test_env", "kube", "core", "batch", "custom", "namespace", "crd", "operator", "operator_session"}
)

TIERS: dict[str, Tier] = {
    "unit": Tier(
        "pure logic and our own adapters' decision paths, with fakes: no cluster, no MinIO, no network",
        timeout_seconds=60,
        forbidden_fixtures=STORAGE_FIXTURES | CLUSTER_FIXTURES | {"browser"},
    ),
    "storage": Tier(
        "the two MinIO servers only (the worker's replication engine, partitioner and SDK)",
        timeout_seconds=300,
        forbidden_fixtures=CLUSTER_FIXTURES,
    ),
    "browser": Tier(
        "headless Chromium (Debian's package, hack/chromium.sh) and the Map Run view's server over a cluster "
        "of our own (tests/ui_fakes.py): no cluster, no MinIO",
        timeout_seconds=300,
        forbidden_fixtures=STORAGE_FIXTURES | CLUSTER_FIXTURES,
    ),
    "cluster": Tier(
        "an apiserver, its controllers and MinIO, with pods that run (the local cluster's pod runner is enough)",
        timeout_seconds=600,
    ),
    "runtime": Tier(
        "real containers: our images, the kubelet's own reasons, probes, a Helm-installed Deployment, "
        "CoreDNS and kube-proxy (kind in make test, or your own cluster)",
        timeout_seconds=900,
    ),
    "local": Tier(
        "the local cluster itself: its pod runner, KWOK nodes, audit log, or restarts of its processes",
        timeout_seconds=900,
    ),
}

# Not tiers: they narrow where a test of a tier can run.
OTHER_MARKERS = {
    "serial": "shares nothing with a test running beside it: restarts cluster processes, stops the "
    "shared operator, counts every write in the audit log, or times a Lease; runs alone, after the parallel part",
    "kwok": "needs KWOK fake nodes (the local cluster)",
    "cluster_dns": "needs the cluster's DNS (kind, most clusters; not the local cluster): "
    "deselected where there is none",
    "kueue": "needs Kueue (kind in make test, installed by hack/kueue.sh): deselected where there is none",
}


def tier_problem(nodeid: str, tiers: list[str], fixtures: set[str]) -> str | None:
    """Why a collected test is mis-filed, or None."""
    if len(tiers) != 1:
        found = ", ".join(tiers) or "none"
        return f"{nodeid}: needs exactly one tier marker of {sorted(TIERS)} (found: {found})"
    tier = tiers[0]
    wrong = sorted(fixtures & TIERS[tier].forbidden_fixtures)
    if wrong:
        return f"{nodeid}: a {tier} test asks for {wrong}, which its tier does not have ({TIERS[tier].needs})"
    return None


def pytest_configure(config: pytest.Config) -> None:
    for name, tier in TIERS.items():
        config.addinivalue_line("markers", f"{name}: tier: {tier.needs}")
    for name, text in OTHER_MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Before `-m` deselects anything (a test with no tier would match no tier's run and never run):
    every test has one tier and asks only for fixtures its tier has; each gets its tier's timeout
    unless it names its own."""
    problems = []
    for item in items:
        tiers = [name for name in TIERS if item.get_closest_marker(name)]
        callspec = getattr(item, "callspec", None)
        parameters = set(callspec.params) if callspec else set()  # a parameter named like a fixture is not one
        problem = tier_problem(item.nodeid, tiers, set(getattr(item, "fixturenames", ())) - parameters)
        if problem:
            problems.append(problem)
        elif not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(TIERS[tiers[0]].timeout_seconds))
    if problems:
        raise pytest.UsageError("mis-filed tests (see tests/tiers.py):\n" + "\n".join(problems))
