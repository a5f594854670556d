"""The documented vocabulary is the code's: docs/reasons.md lists every condition type, reason,
input reason and phase, and nothing else."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

from paraflow.models import Phase
from paraflow.reasons import ConditionType, Reason
from paraflow_worker.contract import InputReason

pytestmark = pytest.mark.unit

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reasons.md"


def _section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _first_column(title: str) -> set[str]:
    return set(re.findall(r"^\| `([A-Za-z]+)` \|", _section(title), flags=re.MULTILINE))


def test_every_condition_type_is_documented_and_no_other() -> None:
    assert _first_column("Condition types") == {t.value for t in ConditionType}


def test_every_reason_is_documented_and_no_other() -> None:
    assert _first_column("Reasons") == {r.value for r in Reason}


def test_every_input_reason_is_documented_and_no_other() -> None:
    assert _first_column("Input reasons (the partitioner's)") == {r.value for r in InputReason}


def test_every_phase_event_is_documented() -> None:
    named = set(re.findall(r"`([A-Za-z]+)`", _section("Phase Events")))
    assert named == set(typing.get_args(Phase))
