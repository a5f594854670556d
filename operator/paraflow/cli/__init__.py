"""``paraflow`` (also ``kubectl paraflow``): run the operator, and drive workflows from a terminal.

Plain kubectl is always enough; this adds live progress, readable status, logs by partition,
and one-word redrive/suspend/resume. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import json
import sys

from paraflow.cli.app import app, console


def main() -> None:
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app()
    except Exception as e:
        if debug:
            raise
        console.print(f"[red]error:[/] {describe(e)}", highlight=False)
        sys.exit(1)


def describe(error: Exception) -> str:
    """One line a person can act on, for the errors the CLI meets."""
    body = getattr(error, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message", body))
        except (ValueError, AttributeError):
            return str(body)
    return f"{type(error).__name__}: {error}" if not str(error) else str(error)
