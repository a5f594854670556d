"""The ``paraflow`` commands.

Imported for every command, ``--help`` included, so only what every command needs is imported here:
typer, rich's console, and paraflow's own small modules. The rest (the Kubernetes client, through
``kube``; pydantic's models, yaml, MinIO, kopf and asyncio) is imported by the commands that use
it, inside them; ``tests/unit/test_cli_imports.py`` holds that, ``bench/cli`` times it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from paraflow import constants as c
from paraflow.cli import actions, kube, schedules
from paraflow.planning import indexsets

if TYPE_CHECKING:
    from minio import Minio

    from paraflow.models import WorkflowSpec

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
console = Console(stderr=True, soft_wrap=True)  # long s3:// URLs stay on one line, copyable
out = Console(soft_wrap=True)
Namespace = Annotated[str, typer.Option("--namespace", "-n", help="Namespace of the workflow")]
app.add_typer(schedules.app, name="schedule")
app.command()(schedules.backfill)


@app.callback()
def _root() -> None:
    """paraflow: Map-state fan-out on Kubernetes (add --debug to any command for tracebacks)."""


@app.command()
def operator(
    namespace: Annotated[list[str] | None, typer.Option("--namespace", "-n", help="Watch only these")] = None,
    liveness: Annotated[str | None, typer.Option(help="e.g. http://0.0.0.0:8080/healthz")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    *,
    log_format: Annotated[str, typer.Option(help="full (with timestamps), plain or json")] = "full",
) -> None:
    """Run the operator (all namespaces unless --namespace is given)."""
    import asyncio
    import logging

    import kopf

    from paraflow import handlers  # noqa: F401  (registers the handlers)

    formats = {"full": kopf.LogFormat.FULL, "plain": kopf.LogFormat.PLAIN, "json": kopf.LogFormat.JSON}
    if log_format not in formats:
        raise typer.BadParameter(f"--log-format must be one of {', '.join(formats)}")
    kopf.configure(verbose=verbose, log_format=formats[log_format])
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    # An unreachable MinIO is reported once, as the Blocked condition and an Event; urllib3's
    # warning per retried request would repeat it on every pass.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    asyncio.run(
        kopf.operator(
            clusterwide=not namespace,
            namespaces=namespace or (),
            standalone=True,
            memo=kopf.Memo(liveness=liveness, namespaces=namespace or []),
        )
    )


def _load_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise typer.BadParameter(f"cannot read {path}: {e}") from e
    if not isinstance(doc, dict) or doc.get("kind") != c.KIND:
        raise typer.BadParameter(f"{path} is not a {c.KIND}")
    return doc


def _validate(doc: dict[str, Any]) -> WorkflowSpec:
    try:
        return actions.spec_of(doc)
    except actions.InvalidSpec as e:
        raise typer.BadParameter(str(e)) from e


@app.command()
def validate(file: Path) -> None:
    """Check a workflow file with the same rules as the operator (no cluster needed)."""
    _validate(_load_file(file))
    console.print(f"{file}: valid")


@app.command()
def submit(
    file: Path,
    namespace: Namespace = "default",
    watch_: Annotated[bool, typer.Option("--watch", "-w", help="Follow it to the end")] = False,
) -> None:
    """Validate (here, then by a server-side dry run), create, and optionally watch a workflow."""
    doc = _load_file(file)
    _validate(doc)
    kube.load()
    kube.create_workflow(namespace, doc, dry_run=True)
    created = kube.create_workflow(namespace, doc)
    name = created["metadata"]["name"]
    console.print(f"{c.KIND} {namespace}/{name} created")
    if watch_:
        _follow(name, namespace, 24 * 3600)


@app.command()
def watch(
    name: str,
    namespace: Namespace = "default",
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 24 * 3600,
) -> None:
    """Show a workflow's progress until it finishes; exit 0 if it succeeded, 1 if it failed."""
    kube.load()
    _follow(name, namespace, timeout)


def _follow(name: str, namespace: str, timeout: float) -> None:
    from paraflow.cli.render import WatchView
    from paraflow.models import TERMINAL

    deadline = time.monotonic() + timeout
    with WatchView.make(console) as progress:
        view = WatchView(progress)
        while True:
            obj = kube.get_workflow(name, namespace)
            view.update(obj)
            phase = (obj.get("status") or {}).get("phase", "Pending")
            if phase in TERMINAL:
                break
            if time.monotonic() > deadline:
                console.print(f"[red]gave up after {timeout:.0f}s in phase {phase}[/]")
                raise typer.Exit(2)
            time.sleep(1)
    status = obj.get("status") or {}
    if phase == "Succeeded":
        console.print(f"[green]{name} succeeded[/]: {status.get('message', '')}", highlight=False)
        console.print(f"result manifest: {status.get('manifest', '')}", highlight=False)
        return
    console.print(f"[red]{name} failed[/]: {status.get('message', '')}", highlight=False)
    raise typer.Exit(1)


@app.command()
def status(
    name: str,
    namespace: Namespace = "default",
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or yaml")] = "table",
) -> None:
    """Phase, counts, failed partitions with their last error, replication."""
    import yaml

    from paraflow.cli.render import status_table

    kube.load()
    obj = kube.get_workflow(name, namespace)
    if output == "json":
        out.print_json(json.dumps(obj.get("status") or {}))
        return
    if output == "yaml":
        out.print(yaml.safe_dump(obj.get("status") or {}, sort_keys=False), highlight=False)
        return
    out.print(status_table(obj, actions.failures(obj)))


@app.command()
def logs(
    name: str,
    partition: Annotated[int | None, typer.Option("--partition", "-p")] = None,
    namespace: Namespace = "default",
    *,
    shard: Annotated[int | None, typer.Option("--shard", "-s")] = None,
    attempt: Annotated[int | None, typer.Option("--attempt", "-a", help="Default: the latest")] = None,
    reduce: Annotated[bool, typer.Option("--reduce", help="The reduce step's pod instead of a partition's")] = False,
    kept: Annotated[bool, typer.Option("--kept", help="The copies kept in MinIO, even while the pods exist")] = False,
    endpoint: Annotated[str | None, typer.Option(help="Override spec.storage.endpoint (e.g. a port-forward)")] = None,
) -> None:
    """The logs of a partition's pods (one shard, or all), or of the reduce step's pod. Once the pods
    are gone, the copies the operator kept in the run's prefix (spec.logs), saying so."""
    if reduce == (partition is not None):
        raise typer.BadParameter("give either --partition N or --reduce")
    kube.load()
    wf = kube.get_workflow(name, namespace)
    try:
        found = actions.logs(wf, partition=partition, shard=shard, attempt=attempt, kept_only=kept, endpoint=endpoint)
    except (actions.NotFound, actions.InvalidSpec) as e:
        raise typer.BadParameter(str(e)) from e
    for pod, text in found.live:
        console.print(f"[bold]==> {pod}[/]", highlight=False)
        out.print(text, end="", highlight=False, markup=False)
    if found.kept and not kept:
        console.print(f"the pods of {found.what} are gone: their logs as the operator kept them", highlight=False)
    for log in found.kept:
        console.print(f"[bold]==> {log.pod}[/] {log.describe()}", highlight=False)
        out.print(log.text, end="", highlight=False, markup=False)


@app.command()
def redrive(
    name: str,
    namespace: Namespace = "default",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the operator's answer")] = 60,
) -> None:
    """Re-run what failed in a finished workflow (partitions, the reduce step, replication), or, on a Succeeded
    workflow with replication, copy every output again (restores deleted replicas). Waits for
    the operator to take it: exits 1 if the operator refused it, 2 if it did not answer."""
    kube.load()
    answer = actions.redrive(name, namespace, timeout=timeout)
    if answer.taken:
        console.print(answer.message, highlight=False)
        return
    console.print(f"[red]{answer.message}[/]", highlight=False)
    raise typer.Exit(1 if answer.answered else 2)


@app.command()
def suspend(name: str, namespace: Namespace = "default") -> None:
    """Start no new partitions (running ones finish)."""
    kube.load()
    console.print(actions.suspend(name, namespace))


@app.command()
def resume(name: str, namespace: Namespace = "default") -> None:
    """Undo suspend."""
    kube.load()
    console.print(actions.resume(name, namespace))


@app.command("set-concurrency")
def set_concurrency(
    name: str, limit: Annotated[int, typer.Argument(min=1, max=10000)], namespace: Namespace = "default"
) -> None:
    """Change maxConcurrency of a running workflow; the next pass applies it."""
    kube.load()
    console.print(actions.set_concurrency(name, namespace, limit))


@app.command()
def ui(
    name: Annotated[str | None, typer.Argument(help="Open this workflow's run; default: the list")] = None,
    namespace: Namespace = "default",
    *,
    address: Annotated[
        str, typer.Option(help="Listen here; another address than 127.0.0.1 shares the view")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0: any free port")] = 0,
    browser: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in a browser")] = True,
    endpoint: Annotated[str | None, typer.Option(help="Override spec.storage.endpoint (e.g. a port-forward)")] = None,
) -> None:
    """The Map Run view in a browser: workflows and schedules, a run's partitions, progress and
    ETA, failed partitions with their logs, redrive, suspend/resume and maxConcurrency. Served
    from this machine with your kubeconfig (nothing runs in the cluster), at a URL with a fresh
    token; Ctrl-C stops it."""
    try:
        from paraflow.ui.serve import Options, serve
    except ImportError as e:
        raise typer.BadParameter(f"the view needs its extra: pip install 'paraflow[ui]' ({e})") from e
    serve(Options(name, namespace, address, port, browser, endpoint), say=console.print)


@app.command()
def plan(
    file: Path,
    namespace: Namespace = "default",
    endpoint: Annotated[str | None, typer.Option(help="Override spec.storage.endpoint (e.g. a port-forward)")] = None,
) -> None:
    """Dry-run the built-in partitioner from here and summarise the partitions it would make.
    Credentials: env PARAFLOW_S3_ACCESS_KEY/SECRET_KEY, else the workflow's Secret."""
    from paraflow.k8s.builders import reader_config
    from paraflow.models import parse_bytes
    from paraflow_worker.partition import partitions_of
    from paraflow_worker.readers import InputProblem

    spec = _validate(_load_file(file))
    builtin = spec.partitioner.builtin
    if builtin is None:
        raise typer.BadParameter("plan runs the built-in partitioner only; a container partitioner runs as a Job")
    client = actions.storage_client(spec, namespace, endpoint)
    partitions = partitions_of(
        client,
        spec.input.bucket,
        spec.input.prefix,
        key_glob=builtin.key_glob,
        max_items=builtin.max_items_per_partition,
        max_bytes=parse_bytes(builtin.max_bytes_per_partition),
        reader=reader_config(spec),
    )
    try:
        sizes = [(p.items, p.size) for p in partitions]
    except InputProblem as problem:
        console.print(f"[red]{problem.reason}[/]: {problem.message}")
        raise typer.Exit(1) from problem
    if not sizes:
        where = f"under s3://{spec.input.bucket}/{spec.input.prefix}" if spec.input.bucket else "in input.items"
        console.print(f"[red]no input items[/] {where}")
        raise typer.Exit(1)
    total_items, total_bytes = sum(n for n, _ in sizes), sum(b for _, b in sizes)
    limit = parse_bytes(builtin.max_bytes_per_partition)
    alone = [i for i, (n, b) in enumerate(sizes) if n == 1 and b > limit]
    if alone and spec.input.reader.format == "objects":
        console.print(
            f"[yellow]warning:[/] {len(alone)} object(s) larger than maxBytesPerPartition ({limit} bytes) each get "
            f"a partition of their own (partition(s) {alone[:10]}{' …' if len(alone) > 10 else ''})",
            highlight=False,
        )
    out.print(
        f"{len(sizes)} partitions, {total_items} items, {total_bytes} bytes "
        f"(items per partition {min(n for n, _ in sizes)}-{max(n for n, _ in sizes)}, "
        f"bytes {min(b for _, b in sizes)}-{max(b for _, b in sizes)}); "
        f"{spec.processor.shards_per_partition} shard(s) each, at most {spec.max_concurrency} at once",
        highlight=False,
    )


@app.command()
def gc(
    bucket: Annotated[str, typer.Option(help="The output bucket (spec.output.bucket)")],
    endpoint: Annotated[str, typer.Option(help="The storage endpoint (spec.storage.endpoint, or a port-forward)")],
    prefix: Annotated[str, typer.Option(help="The output prefix (spec.output.prefix)")] = "",
    *,
    secret: Annotated[
        str | None, typer.Option(help="NAMESPACE/NAME of a Secret with accessKey/secretKey (default: env)")
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove them (default: only list them)")] = False,
) -> None:
    """List, and with --delete remove, the run records and outputs of runs whose workflow no longer
    exists, under one output location. A live run's data and anything paraflow did not write stay."""
    from paraflow.cli import gc as runs
    from paraflow_worker.storage import make_client, remove_prefix

    kube.load()
    access, secret_key = os.environ.get("PARAFLOW_S3_ACCESS_KEY"), os.environ.get("PARAFLOW_S3_SECRET_KEY")
    if secret:
        namespace, _, name = secret.partition("/")
        creds = kube.read_secret(namespace, name)
        access, secret_key = creds["accessKey"], creds["secretKey"]
    if not access or not secret_key:
        raise typer.BadParameter("storage credentials: --secret NAMESPACE/NAME, or PARAFLOW_S3_ACCESS_KEY/SECRET_KEY")
    client = make_client(endpoint, access, secret_key)
    # Storage first, workflows second: a run whose first record lands after the listing is not
    # in it, and one listed there whose workflow was created meanwhile has a live uid.
    keys = list(runs.record_keys(client, bucket, prefix))
    found = runs.orphans(prefix, keys, kube.workflow_uids())
    if not found:
        out.print(f"no runs of deleted workflows under s3://{bucket}/{prefix}", highlight=False)
        return
    total = 0
    for orphan in found:
        records, outputs = (
            runs.listed(client, bucket, orphan.run_prefix),
            runs.listed(client, bucket, orphan.output_prefix),
        )
        total += records[0] + outputs[0]
        out.print(
            f"run {orphan.uid}: s3://{bucket}/{orphan.run_prefix} ({records[0]} objects, {records[1]} bytes), "
            f"s3://{bucket}/{orphan.output_prefix} ({outputs[0]} objects, {outputs[1]} bytes)",
            highlight=False,
        )
    if not delete:
        out.print(f"{len(found)} run(s) of deleted workflows, {total} objects: --delete removes them", highlight=False)
        return
    removed = sum(
        remove_prefix(client, bucket, where) for orphan in found for where in (orphan.output_prefix, orphan.run_prefix)
    )
    out.print(f"removed {removed} objects of {len(found)} run(s)", highlight=False)


@app.command()
def results(
    name: str,
    namespace: Namespace = "default",
    endpoint: Annotated[str | None, typer.Option(help="Override spec.storage.endpoint (e.g. a port-forward)")] = None,
    *,
    partial: Annotated[bool, typer.Option(help="Exit 0 even when some partitions failed")] = False,
) -> None:
    """Stream the results the winning attempts emitted (shard.emit), as JSONL on stdout, in
    partition and shard order (each line has its record's "index": sort by it for input order).
    Failed partitions have no results: they are named on stderr, and the exit code is 1 unless
    --partial. Credentials as for plan."""
    from paraflow_worker import contract
    from paraflow_worker.storage import get_json

    kube.load()
    doc = kube.get_workflow(name, namespace)
    spec = _validate(doc)
    where = (doc.get("status") or {}).get("manifest", "")
    if not where:
        phase = (doc.get("status") or {}).get("phase", "Pending")
        console.print(f"[red]{namespace}/{name} has no result manifest yet[/] (phase {phase})")
        raise typer.Exit(1)
    client = actions.storage_client(spec, namespace, endpoint)
    bucket, manifest = actions.read_manifest(client, where)
    for part in sorted(manifest.succeeded, key=lambda p: p.index):
        shards = client.list_objects(bucket, prefix=part.results_prefix)
        for record in sorted((o.object_name for o in shards if o.object_name), key=_shard_number):
            shard = get_json(client, bucket, record, model=contract.ShardResult)
            if shard.results is not None:
                _copy_lines(client, spec.output.bucket, shard.results)
    if manifest.failed:
        listed = indexsets.compress(manifest.failed)
        console.print(f"[yellow]partitions {listed} failed[/]: their results are missing (paraflow redrive {name})")
        if not partial:
            raise typer.Exit(1)


@app.command("reduce-output")
def reduce_output(
    name: str,
    output: Annotated[str | None, typer.Argument(help="An output's name, e.g. summary.json; none: list them")] = None,
    namespace: Namespace = "default",
    *,
    endpoint: Annotated[str | None, typer.Option(help="Override spec.storage.endpoint (e.g. a port-forward)")] = None,
) -> None:
    """Print one output of the reduce step's winning attempt to stdout, or list them (name, bytes,
    key). Credentials as for plan."""
    from minio.error import S3Error

    from paraflow_worker import contract
    from paraflow_worker.storage import get_json

    kube.load()
    doc = kube.get_workflow(name, namespace)
    spec = _validate(doc)
    status = doc.get("status") or {}
    reduced = status.get("reduce") or {}
    if spec.reduce is None:
        console.print(f"[red]{namespace}/{name} has no reduce step[/] (spec.reduce)")
        raise typer.Exit(1)
    if reduced.get("phase") != "Succeeded":
        console.print(
            f"[red]{namespace}/{name}: the reduce step has not succeeded[/] ({reduced.get('phase', 'Pending')})"
        )
        raise typer.Exit(1)
    client = actions.storage_client(spec, namespace, endpoint)
    bucket, _, run = str(status.get("runPrefix", "")).removeprefix("s3://").partition("/")
    key = contract.reduce_result_key(run, int(reduced["attempt"]))
    try:
        record = get_json(client, bucket, key, model=contract.ReduceResult)
    except S3Error as e:
        console.print(f"[red]cannot read the reduce step's record s3://{bucket}/{key}[/]: {e.code}")
        raise typer.Exit(1) from e
    names = {obj.key.removeprefix(record.output_prefix): obj for obj in record.outputs}
    if output is None:
        for each, obj in names.items():
            out.print(f"{each}\t{obj.size}\ts3://{spec.output.bucket}/{obj.key}", highlight=False)
        return
    if output not in names:
        console.print(f"[red]the reduce step wrote no {output!r}[/]; it wrote: {', '.join(names) or 'nothing'}")
        raise typer.Exit(1)
    _copy_lines(client, spec.output.bucket, names[output].key)


def _shard_number(key: str) -> int:
    return int(key.rsplit("/s", 1)[1].removesuffix(".json"))


def _copy_lines(client: Minio, bucket: str, key: str) -> None:
    response = client.get_object(bucket, key)
    try:
        for chunk in response.stream(1 << 20):
            sys.stdout.buffer.write(chunk)
    finally:
        response.close()
        response.release_conn()
    sys.stdout.flush()


@app.command("check-install")
def check_install(
    namespace: Annotated[str, typer.Option("--namespace", "-n")],
    deployment: Annotated[str, typer.Option()] = "paraflow",
    timeout: Annotated[float, typer.Option()] = 120,
) -> None:
    """Exit 0 once the CRDs are served and the operator Deployment is available (helm test)."""
    kube.load()
    crds = [f"{c.PLURAL}.{c.GROUP}", f"{c.SCHEDULE_PLURAL}.{c.GROUP}"]
    deadline = time.monotonic() + timeout
    problem = ""
    while time.monotonic() < deadline:
        missing = [name for name in crds if not kube.crd_served(name)]
        available = kube.deployment_available(deployment, namespace)
        if not missing and available:
            console.print(f"CRDs {', '.join(crds)} are served; deployment {namespace}/{deployment} is available")
            return
        problem = (
            f"CRD {missing[0]} not established" if missing else f"deployment {namespace}/{deployment} not available"
        )
        time.sleep(2)
    console.print(f"[red]{problem} after {timeout:.0f}s[/]")
    raise typer.Exit(1)
