"""The tail of a pod's log, bounded in memory however long the log: what the operator keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tail:
    """Fed a log chunk by chunk, holds at most about twice ``limit`` bytes at once."""

    limit: int
    total: int = 0
    _kept: bytearray = field(default_factory=bytearray)

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._kept += chunk
        if len(self._kept) > 2 * self.limit:
            del self._kept[: len(self._kept) - self.limit]

    @property
    def truncated(self) -> bool:
        return self.total > self.limit

    def text(self) -> bytes:
        """The last ``limit`` bytes; cut, it starts at a whole line when one begins in them.
        One copy of them, whatever was held."""
        if not self.truncated:
            return bytes(self._kept)
        first = len(self._kept) - self.limit
        newline = self._kept.find(b"\n", first, len(self._kept) - 1)
        return bytes(memoryview(self._kept)[first if newline < 0 else newline + 1 :])


def terminated_state(pod: Mapping[str, Any], container: str) -> dict[str, str]:
    """How the container ended, as the kept log's metadata (``paraflow logs`` prints it)."""
    found = {"pod-phase": str((pod.get("status") or {}).get("phase", ""))}
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        ended = (status.get("state") or {}).get("terminated") if status.get("name") == container else None
        if ended:
            found |= {"exit-code": str(ended.get("exitCode", "")), "reason": str(ended.get("reason", ""))}
    return found
