"""The limit a replication row is judged against: what the destination server itself can take.

Same server: one ``CopyObject`` per object, server-side, as every tool's same-server copy ends up
doing. Across servers: a PUT loop of bytes already in memory into the second server, so nothing
is read from the source and no tool's work is in the way. Both run in ``s3limit`` (Go, minio-go),
whose own CPU per request is small next to the server's, at the concurrency that does best on
the data set: a sweep on the first round picks it (``SWEEP``), the rounds after reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import measure

SOURCE = Path(__file__).resolve().parent / "s3limit"
CACHE = Path(os.environ.get("PARAFLOW_CACHE") or Path.home() / ".cache/paraflow") / "bin"
MiB = 1024**2


def sweep(size: int, *, copy: bool) -> tuple[str, ...]:
    """Settings to try, ``N`` requests in flight or ``N/single``, large objects PUT whole (no
    multipart): small objects are bound by requests in flight, large ones by bytes."""
    if size < MiB:
        return ("16", "64", "128")
    return ("2", "4", "8") if copy else ("2", "4", "8", "2/single", "4/single", "8/single")


def describe(setting: str) -> str:
    n, _, single = setting.partition("/")
    return f"{n} in flight" + (", one PUT each" if single else "")


def binary() -> Path:
    """s3limit, built once per version of its source (cached outside the repo, as hack/ does)."""
    digest = hashlib.sha256()
    for name in ("main.go", "go.mod", "go.sum"):
        digest.update((SOURCE / name).read_bytes())
    out = CACHE / f"s3limit-{digest.hexdigest()[:12]}" / "s3limit"
    if not out.exists():
        env = {
            **os.environ,
            "GOPROXY": os.environ.get("GOPROXY_OVERRIDE", "https://proxy.golang.org"),
            "GOFLAGS": "-buildvcs=false",
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
        }
        subprocess.run(["go", "build", "-trimpath", "-o", str(out), "."], cwd=SOURCE, env=env, check=True)
    return out


def run_limit(
    *,
    endpoint: str,
    creds: tuple[str, str],
    source: str | None,
    target: str,
    keys: list[str],
    size: int,
    setting: str,
) -> tuple[float, float]:
    """(seconds, peak RSS MiB) of writing ``keys`` into ``target``: copied from ``source`` on the
    same server, or PUT from memory when ``source`` is None. The seconds are the requests' own,
    from the first sent to the last answered. ``setting``: see :func:`sweep`."""
    concurrency, _, single = setting.partition("/")
    op = ["-op", "copy", "-src-bucket", source] if source else ["-op", "put", "-size", str(size)]
    op += ["-single"] if single else []
    env = {**os.environ, "AWS_ACCESS_KEY_ID": creds[0], "AWS_SECRET_ACCESS_KEY": creds[1]}
    with tempfile.NamedTemporaryFile("w", suffix=".keys") as keys_file:
        keys_file.write("\n".join(keys) + "\n")
        keys_file.flush()
        cmd = [str(binary()), "-endpoint", urlsplit(endpoint).netloc, "-dst-bucket", target, *op]
        _, rss, out = measure([*cmd, "-keys", keys_file.name, "-concurrency", str(concurrency)], env)
    return json.loads(out.strip().splitlines()[-1])["seconds"], rss
