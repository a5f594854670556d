"""``paraflow``: run the operator, and watch workflows from a terminal.

Plain ``kubectl`` is always enough; this adds a live progress view and exit codes a script can
use (0 succeeded, 1 failed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paraflow import constants as c

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(stderr=True)
TERMINAL = ("Succeeded", "Failed")


@app.callback()
def _root() -> None:
    """paraflow: Map-state fan-out on Kubernetes."""


@app.command()
def operator(
    namespace: Annotated[list[str] | None, typer.Option("--namespace", "-n", help="Watch only these")] = None,
    liveness: Annotated[str | None, typer.Option(help="e.g. http://0.0.0.0:8080/healthz")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator (all namespaces unless --namespace is given)."""
    import kopf

    from paraflow import handlers  # noqa: F401  (registers the handlers)

    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespace, namespaces=namespace or (), liveness_endpoint=liveness, standalone=True
        )
    )


def _load_config() -> None:
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def _custom_api() -> Any:
    from kubernetes import client

    _load_config()
    return client.CustomObjectsApi()


@app.command("check-install")
def check_install(
    namespace: Annotated[str, typer.Option("--namespace", "-n")],
    deployment: Annotated[str, typer.Option()] = "paraflow",
    timeout: Annotated[float, typer.Option()] = 120,
) -> None:
    """Exit 0 once the CRD is served and the operator Deployment is available (helm test)."""
    from kubernetes import client

    _load_config()
    crd_name = f"{c.PLURAL}.{c.GROUP}"
    deadline = time.monotonic() + timeout
    problem = ""
    while time.monotonic() < deadline:
        crd = client.ApiextensionsV1Api().read_custom_resource_definition(crd_name)
        conditions = (crd.status.conditions if crd.status else None) or []
        served = any(x.type == "Established" and x.status == "True" for x in conditions)
        dep = client.AppsV1Api().read_namespaced_deployment(deployment, namespace)
        available = dep.status is not None and (dep.status.available_replicas or 0) >= 1
        if served and available:
            console.print(f"CRD {crd_name} is served; deployment {namespace}/{deployment} is available")
            return
        problem = "CRD not established" if not served else f"deployment {namespace}/{deployment} not available"
        time.sleep(2)
    console.print(f"[red]{problem} after {timeout:.0f}s[/]")
    raise typer.Exit(1)


@app.command()
def watch(
    name: str,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 3600,
) -> None:
    """Show a workflow's progress until it finishes; exit 0 if it succeeded, 1 if it failed."""
    api = _custom_api()
    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(name, total=None, detail="")
        while True:
            obj = api.get_namespaced_custom_object(c.GROUP, c.VERSION, namespace, c.PLURAL, name)
            status = obj.get("status") or {}
            counts = status.get("partitions") or {}
            phase = status.get("phase", "Pending")
            total = counts.get("total") or None
            done = counts.get("succeeded", 0) + counts.get("failed", 0)
            detail = f"running {counts.get('running', 0)}  failed {counts.get('failed', 0)}"
            progress.update(task, total=total, completed=done, description=f"{name} [bold]{phase}[/]", detail=detail)
            if phase in TERMINAL:
                break
            if time.monotonic() > deadline:
                console.print(f"[red]gave up after {timeout:.0f}s in phase {phase}[/]")
                raise typer.Exit(2)
            time.sleep(1)
    message = status.get("message", "")
    if phase == "Succeeded":
        console.print(f"[green]{name} succeeded[/]: {message}")
        console.print(f"result manifest: {status.get('manifest', '')}")
        return
    console.print(f"[red]{name} failed[/]: {message}")
    raise typer.Exit(1)


def main() -> None:
    app()
