"""Run parameters and cron schedules: what a template may say, what it becomes for a slot, and
that a schedule's bad input is refused with the field named."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from paraflow import cron, template
from paraflow.schedule_models import ScheduleSpec
from tests.unit.builders import spec_dict

pytestmark = pytest.mark.unit

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
SLOT = dt.datetime(2026, 12, 7, 0, 30, tzinfo=dt.UTC)


def render(text: str, zone: dt.tzinfo = dt.UTC) -> str:
    return str(template.render({"input": {"prefix": text}}, SLOT, zone)["input"]["prefix"])


def test_the_slot_is_rfc3339_utc_by_default_and_formatted_in_the_schedule_zone() -> None:
    assert render("{{ scheduledTime }}") == "2026-12-07T00:30:00Z"
    assert render('{{scheduledTime|date "%Y/%m/%d %H:%M"}}', BERLIN) == "2026/12/07 01:30"


def test_shift_moves_the_slot_before_it_is_formatted() -> None:
    assert render('logs/{{ scheduledTime | shift "-1d" | date "%Y-%m-%d" }}/') == "logs/2026-12-06/"
    assert render('{{ scheduledTime | shift "+90m" | date "%H%M" }}') == "0200"


def test_an_hourly_shift_across_a_daylight_saving_change_never_skips_or_repeats_an_hour() -> None:
    """Hourly slots the night Berlin's clocks go forward, each reading the hour before it."""
    spring = [dt.datetime(2026, 3, 28, 23, tzinfo=dt.UTC) + dt.timedelta(hours=h) for h in range(4)]
    shown = [str(template.render({"p": '{{ scheduledTime | shift "-1h" }}'}, slot, BERLIN)["p"]) for slot in spring]
    assert shown == [f"{slot - dt.timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}" for slot in spring]
    local = [
        str(template.render({"p": '{{ scheduledTime | shift "-1h" | date "%H" }}'}, slot, BERLIN)["p"])
        for slot in spring
    ]
    assert local == ["23", "00", "01", "03"], "02:00 does not exist that night; no hour is read twice"


def test_a_date_comes_after_the_shifts() -> None:
    assert template.problems({"input": {"prefix": '{{ scheduledTime | date "%Y" | shift "-1d" }}'}})


def test_parameters_outside_their_places_or_unknown_are_problems_naming_the_field() -> None:
    found = template.problems(
        {
            "input": {"prefix": "{{ now }}"},
            "storage": {"endpoint": "http://{{ scheduledTime }}"},
            "output": {"prefix": '{{ scheduledTime | date "%Q" }}'},
            "processor": {"env": [{"name": "DAY", "value": '{{ scheduledTime | date "%d" }}'}]},
        }
    )
    assert [p.split(":")[0] for p in found] == ["input.prefix", "storage.endpoint", "output.prefix"]


@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=5),
            st.builds(
                lambda shifts, fmt: (
                    "{{ scheduledTime"
                    + "".join(f' | shift "{s}"' for s in shifts)
                    + (f' | date "{fmt}"' if fmt is not None else "")
                    + " }}"
                ),
                st.lists(st.from_regex(r"[+-]?[0-9]{1,3}[dhm]", fullmatch=True), max_size=2),
                st.one_of(st.none(), st.from_regex(r"([a-z/_ -]|%[YmdHMSj])*", fullmatch=True)),
            ),
        ),
        max_size=4,
    )
)
def test_whatever_the_admission_pattern_accepts_renders_to_text_without_parameters(parts: list[str]) -> None:
    text = "".join(parts)
    assert re.fullmatch(template.FIELD, text), text
    assert template.problems({"input": {"prefix": text}}) == []
    assert "{{" not in render(text)


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{"), max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="{"), max_size=40),
)
def test_odd_keys_around_a_parameter_pass_through_unchanged(before: str, after: str) -> None:
    """Unicode, spaces, '+', '%', a trailing '/': only the parameter is replaced, nothing is refused."""
    text = f'{before}{{{{ scheduledTime | date "%Y" }}}}{after}'
    assert template.problems({"input": {"prefix": text}}) == []
    assert render(text) == f"{before}2026{after}"
    assert render(before + after) == before + after


def test_cron_aliases_and_zones_follow_cronjob_and_dst() -> None:
    daily = cron.slots("@daily", "Europe/Berlin", dt.datetime(2026, 3, 28, 12, tzinfo=dt.UTC))
    first, second = next(daily), next(daily)
    assert (second - first) == dt.timedelta(hours=23), "the night the clocks go forward is an hour short"
    slots, more = cron.slots_between("* * * * *", "Etc/UTC", dt.datetime(2020, 1, 1, tzinfo=dt.UTC), until=SLOT, most=3)
    assert more and slots[-1] == SLOT and len(slots) == 3


def schedule_body(**fields: Any) -> dict[str, Any]:
    return {"schedule": "0 2 * * *", "workflowTemplate": {"spec": spec_dict()}, **fields}


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"schedule": "0 0 30 2 *"}, "Bad day-of-month"),
        ({"schedule": "61 * * * *"}, "should match pattern"),
        ({"timeZone": "Mars/Olympus"}, "unknown time zone"),
        ({"workflowTemplate": {"spec": spec_dict(**{"input.prefix": "{{ now }}/"})}}, "input.prefix"),
        ({"workflowTemplate": {"spec": spec_dict(**{"output.bucket": "raw-logs", "output.prefix": ""})}}, "overlap"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(fields: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        ScheduleSpec.model_validate(schedule_body(**fields))
