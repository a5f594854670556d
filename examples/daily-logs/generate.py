"""Writes a realistic day of web-server access logs into MinIO: many gzip'd files of uneven size.

    python examples/daily-logs/generate.py --endpoint http://127.0.0.1:19000 --bucket raw-logs \\
        --prefix 2026/11/24/ --files 2000

Credentials come from PARAFLOW_S3_ACCESS_KEY / PARAFLOW_S3_SECRET_KEY. Deterministic per --seed.
Some lines are deliberately malformed, as in real logs.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import random
from concurrent.futures import ThreadPoolExecutor

from paraflow_worker.storage import make_client

PATHS = [
    "/",
    "/index.html",
    "/api/v1/orders",
    "/api/v1/users",
    "/api/v1/search",
    "/static/app.js",
    "/static/app.css",
    "/images/logo.png",
    "/login",
    "/logout",
    "/health",
    "/api/v1/cart",
    "/blog/2026/11/paraflow",
    "/docs/getting-started",
    "/favicon.ico",
]
PATH_WEIGHTS = [30, 25, 12, 8, 10, 20, 18, 15, 5, 3, 40, 6, 2, 4, 9]
STATUS = ["200", "200", "200", "200", "304", "301", "404", "500", "503", "403"]
METHODS = ["GET"] * 8 + ["POST", "PUT"]


def log_file(rnd: random.Random, host: int, hour: int, lines: int) -> bytes:
    out = io.StringIO()
    for n in range(lines):
        if rnd.random() < 0.002:
            out.write("garbled line without the format\n")
            continue
        ip = f"10.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
        path = rnd.choices(PATHS, PATH_WEIGHTS)[0]
        status = rnd.choice(STATUS)
        size = "-" if status == "304" else str(rnd.randint(200, 60_000))
        minute, second = divmod(n * 3600 // max(lines, 1), 60)
        out.write(
            f"{ip} - - [24/Nov/2026:{hour:02d}:{minute % 60:02d}:{second:02d} +0000] "
            f'"{rnd.choice(METHODS)} {path} HTTP/1.1" {status} {size} "-" "curl/8.5 host{host}"\n'
        )
    return gzip.compress(out.getvalue().encode(), compresslevel=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", default="raw-logs")
    parser.add_argument("--prefix", default="2026/11/24/")
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args()
    client = make_client(args.endpoint, os.environ["PARAFLOW_S3_ACCESS_KEY"], os.environ["PARAFLOW_S3_SECRET_KEY"])
    if not client.bucket_exists(args.bucket):
        client.make_bucket(args.bucket)
    hosts = max(1, args.files // 24)

    def write(i: int) -> int:
        rnd = random.Random(args.seed * 1_000_003 + i)
        lines = int(rnd.lognormvariate(5.0, 1.0)) + 1  # uneven: most small, a few large
        data = log_file(rnd, i % hosts, i // hosts % 24, lines)
        key = f"{args.prefix}host{i % hosts:03d}/access-{i // hosts % 24:02d}-{i:05d}.log.gz"
        client.put_object(args.bucket, key, io.BytesIO(data), len(data), content_type="application/gzip")
        return len(data)

    with ThreadPoolExecutor(16) as pool:
        total = sum(pool.map(write, range(args.files)))
    print(f"wrote {args.files} log files ({total / 1e6:.1f} MB gzip'd) to s3://{args.bucket}/{args.prefix}")


if __name__ == "__main__":
    main()
