"""A pod log the operator kept in the run's prefix, as `paraflow logs` shows it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

META = "x-amz-meta-paraflow-"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{n / 1024:.1f} KiB"
    return f"{n / 1024**2:.1f} MiB"


@dataclass(frozen=True)
class KeptLog:
    pod: str
    text: str
    kept_bytes: int
    total_bytes: int
    exit_code: str = ""
    reason: str = ""

    @classmethod
    def read(cls, pod: str, data: bytes, headers: Mapping[str, str]) -> KeptLog:
        meta = {k.lower().removeprefix(META): v for k, v in headers.items() if k.lower().startswith(META)}
        return cls(
            pod=pod,
            text=data.decode(errors="replace"),
            kept_bytes=len(data),
            total_bytes=int(meta.get("total-bytes") or len(data)),
            exit_code=meta.get("exit-code", ""),
            reason=meta.get("reason", ""),
        )

    def describe(self) -> str:
        ended = f"exit {self.exit_code} ({self.reason})" if self.exit_code else "no exit recorded"
        size = (
            f"its last {_size(self.kept_bytes)} of {_size(self.total_bytes)}"
            if self.total_bytes > self.kept_bytes
            else "whole"
        )
        return f"(the copy the operator kept: {ended}, {size})"
