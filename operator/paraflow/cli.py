"""``paraflow``: the operator entry point (more user commands follow in ``paraflow.cli``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="paraflow: Map-state fan-out on Kubernetes")


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


def main() -> None:
    app()
