"""Tests for insightmesh.jobs.schedule_expressions (EventBridge rate/cron/at evaluation)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from insightmesh.jobs.schedule_expressions import (
    PastScheduleError,
    ScheduleExpression,
    ScheduleExpressionError,
    UnknownTimezoneError,
    check_timezone,
    parse_schedule_expression,
)

NEW_YORK = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(schedule: ScheduleExpression, after: datetime, count: int) -> list[datetime | None]:
    """The next `count` fire times after `after` (stops at the first None)."""
    result: list[datetime | None] = []
    current = after
    for _ in range(count):
        nxt = schedule.next_fire(current)
        result.append(nxt)
        if nxt is None:
            break
        current = nxt
    return result


# ------------------------------------------------------------------------------------------ rate


class TestRate:
    def test_every_five_minutes_anchored_at_epoch(self) -> None:
        schedule = parse_schedule_expression("rate(5 minutes)")
        assert fires(schedule, utc(2026, 1, 1, 0, 2), 3) == [
            utc(2026, 1, 1, 0, 5),
            utc(2026, 1, 1, 0, 10),
            utc(2026, 1, 1, 0, 15),
        ]

    def test_strictly_after(self) -> None:
        schedule = parse_schedule_expression("rate(5 minutes)")
        assert schedule.next_fire(utc(2026, 1, 1, 0, 5)) == utc(2026, 1, 1, 0, 10)
        assert schedule.next_fire(utc(2026, 1, 1, 0, 4, 59)) == utc(2026, 1, 1, 0, 5)

    def test_anchored_at_start(self) -> None:
        start = utc(2026, 1, 1, 0, 3, 30)
        schedule = parse_schedule_expression("rate(5 minutes)", start=start)
        assert fires(schedule, utc(2026, 1, 1, 0, 4), 2) == [
            utc(2026, 1, 1, 0, 8, 30),
            utc(2026, 1, 1, 0, 13, 30),
        ]
        assert schedule.next_fire(utc(2026, 1, 1, 0, 8, 30)) == utc(2026, 1, 1, 0, 13, 30)

    def test_first_fire_is_the_start_itself(self) -> None:
        start = utc(2026, 6, 1, 12)
        schedule = parse_schedule_expression("rate(2 hours)", start=start)
        assert schedule.next_fire(utc(2026, 1, 1)) == start  # never before the start
        assert schedule.next_fire(start - timedelta(microseconds=1)) == start
        assert schedule.next_fire(start) == utc(2026, 6, 1, 14)

    def test_singular_units_with_one(self) -> None:
        after = utc(2026, 1, 1, 0, 0, 30)
        assert parse_schedule_expression("rate(1 minute)").next_fire(after) == utc(2026, 1, 1, 0, 1)
        assert parse_schedule_expression("rate(1 hour)").next_fire(after) == utc(2026, 1, 1, 1)
        assert parse_schedule_expression("rate(1 day)").next_fire(after) == utc(2026, 1, 2)

    def test_plural_units(self) -> None:
        after = utc(2026, 1, 1, 0, 0, 30)
        assert parse_schedule_expression("rate(15 minutes)").next_fire(after) == utc(2026, 1, 1, 0, 15)
        assert parse_schedule_expression("rate(6 hours)").next_fire(after) == utc(2026, 1, 1, 6)
        # 2026-01-01 is 20454 days after the epoch; 20454 % 7 == 0, so it is itself a fire day.
        assert parse_schedule_expression("rate(7 days)").next_fire(after) == utc(2026, 1, 8)

    def test_day_is_always_24_hours_across_dst(self) -> None:
        # Created 08:00 EST on 2026-03-06; New York springs forward on 2026-03-08, but a rate day is
        # a fixed 24 hours, so the wall-clock time drifts to 09:00 EDT.
        start = datetime(2026, 3, 6, 8, tzinfo=ZoneInfo(NEW_YORK))
        schedule = parse_schedule_expression("rate(1 day)", NEW_YORK, start=start)
        assert fires(schedule, start, 3) == [utc(2026, 3, 7, 13), utc(2026, 3, 8, 13), utc(2026, 3, 9, 13)]

    def test_after_in_any_time_zone(self) -> None:
        schedule = parse_schedule_expression("rate(1 hour)")
        tokyo_after = datetime(2026, 1, 1, 9, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 00:30 UTC
        result = schedule.next_fire(tokyo_after)
        assert result == utc(2026, 1, 1, 1)
        assert result is not None and result.utcoffset() == timedelta(0)

    def test_start_in_other_zone_is_normalised(self) -> None:
        start = datetime(2026, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))
        schedule = parse_schedule_expression("rate(30 minutes)", start=start)
        assert schedule.next_fire(utc(2026, 1, 1, 0, 10)) == utc(2026, 1, 1, 0, 30)


# ------------------------------------------------------------------------------------------ cron


class TestCron:
    def test_every_five_minutes(self) -> None:
        schedule = parse_schedule_expression("cron(0/5 * * * ? *)")
        assert fires(schedule, utc(2026, 1, 1, 10, 2, 30), 3) == [
            utc(2026, 1, 1, 10, 5),
            utc(2026, 1, 1, 10, 10),
            utc(2026, 1, 1, 10, 15),
        ]
        assert schedule.next_fire(utc(2026, 1, 1, 10, 55)) == utc(2026, 1, 1, 11, 0)
        star_step = parse_schedule_expression("cron(*/5 * ? * * *)")
        assert star_step.next_fire(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 10)

    def test_result_is_aware_utc(self) -> None:
        result = parse_schedule_expression("cron(0 8 * * ? *)", NEW_YORK).next_fire(utc(2026, 1, 1))
        assert result == utc(2026, 1, 1, 13)
        assert result is not None and result.tzinfo is UTC

    def test_weekdays_at_eight_new_york_spring_forward(self) -> None:
        schedule = parse_schedule_expression("cron(0 8 ? * MON-FRI *)", NEW_YORK)
        # Thu 2026-03-05 and Fri 03-06 are EST (UTC-5); DST starts Sun 03-08; Mon 03-09 is EDT (UTC-4).
        assert fires(schedule, utc(2026, 3, 5), 4) == [
            utc(2026, 3, 5, 13),
            utc(2026, 3, 6, 13),
            utc(2026, 3, 9, 12),
            utc(2026, 3, 10, 12),
        ]

    def test_weekdays_at_eight_new_york_fall_back(self) -> None:
        schedule = parse_schedule_expression("cron(0 8 ? * MON-FRI *)", NEW_YORK)
        # DST ends Sun 2026-11-01.
        assert fires(schedule, utc(2026, 10, 29), 4) == [
            utc(2026, 10, 29, 12),
            utc(2026, 10, 30, 12),
            utc(2026, 11, 2, 13),
            utc(2026, 11, 3, 13),
        ]

    def test_numeric_weekdays_match_names(self) -> None:
        by_name = parse_schedule_expression("cron(0 8 ? * MON-FRI *)", NEW_YORK)
        by_number = parse_schedule_expression("cron(0 8 ? * 2-6 *)", NEW_YORK)
        after = utc(2026, 3, 1)
        assert fires(by_name, after, 10) == fires(by_number, after, 10)

    def test_wall_time_skipped_by_spring_forward_does_not_fire(self) -> None:
        schedule = parse_schedule_expression("cron(30 2 * * ? *)", NEW_YORK)
        # 02:30 on 2026-03-07 is EST; 02:30 on 03-08 does not exist; 03-09 is EDT.
        assert fires(schedule, utc(2026, 3, 7), 2) == [utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)]

    def test_wall_time_repeated_by_fall_back_fires_once(self) -> None:
        schedule = parse_schedule_expression("cron(30 1 * * ? *)", NEW_YORK)
        # 01:30 happens twice on 2026-11-01 (05:30Z EDT, 06:30Z EST); only the first fires.
        assert fires(schedule, utc(2026, 10, 31, 12), 2) == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]

    def test_frequent_schedule_across_fall_back(self) -> None:
        schedule = parse_schedule_expression("cron(0/15 * * * ? *)", NEW_YORK)
        # 01:30, 01:45 EDT, then the repeated 01:00-01:59 EST hour is not re-run: next is 02:00 EST.
        assert fires(schedule, utc(2026, 11, 1, 5, 20), 4) == [
            utc(2026, 11, 1, 5, 30),
            utc(2026, 11, 1, 5, 45),
            utc(2026, 11, 1, 7, 0),
            utc(2026, 11, 1, 7, 15),
        ]

    def test_after_inside_repeated_hour(self) -> None:
        schedule = parse_schedule_expression("cron(0/15 * * * ? *)", NEW_YORK)
        after = datetime(2026, 11, 1, 1, 10, tzinfo=ZoneInfo(NEW_YORK), fold=1)  # 01:10 EST = 06:10Z
        assert after.astimezone(UTC) == utc(2026, 11, 1, 6, 10)
        assert schedule.next_fire(after) == utc(2026, 11, 1, 7, 0)

    def test_frequent_schedule_across_spring_forward(self) -> None:
        schedule = parse_schedule_expression("cron(0/15 * * * ? *)", NEW_YORK)
        # 01:45 EST is 06:45Z; the next wall time that exists is 03:00 EDT = 07:00Z.
        assert fires(schedule, utc(2026, 3, 8, 6, 40), 3) == [
            utc(2026, 3, 8, 6, 45),
            utc(2026, 3, 8, 7, 0),
            utc(2026, 3, 8, 7, 15),
        ]

    def test_skipped_calendar_day(self) -> None:
        # Samoa skipped 2011-12-30 entirely when it moved across the date line.
        schedule = parse_schedule_expression("cron(0 12 * * ? *)", "Pacific/Apia")
        first, second = fires(schedule, utc(2011, 12, 29), 2)
        zone = ZoneInfo("Pacific/Apia")
        assert first is not None and second is not None
        assert first.astimezone(zone).date().isoformat() == "2011-12-29"
        assert second.astimezone(zone).date().isoformat() == "2011-12-31"

    def test_after_in_other_zone(self) -> None:
        schedule = parse_schedule_expression("cron(0 9 * * ? *)", "Europe/London")
        tokyo_after = datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Asia/Tokyo"))  # 03:00Z = 04:00 BST
        assert schedule.next_fire(tokyo_after) == utc(2026, 7, 1, 8)

    def test_rules_default_to_utc(self) -> None:
        schedule = parse_schedule_expression("cron(0 8 ? * MON-FRI *)")
        assert schedule.timezone == "UTC"
        assert schedule.next_fire(utc(2026, 3, 6, 9)) == utc(2026, 3, 9, 8)

    def test_last_day_of_month(self) -> None:
        schedule = parse_schedule_expression("cron(0 0 L * ? *)")
        assert fires(schedule, utc(2028, 1, 15), 4) == [
            utc(2028, 1, 31),
            utc(2028, 2, 29),  # leap year
            utc(2028, 3, 31),
            utc(2028, 4, 30),
        ]
        assert schedule.next_fire(utc(2026, 2, 1)) == utc(2026, 2, 28)

    def test_last_day_of_month_in_time_zone(self) -> None:
        schedule = parse_schedule_expression("cron(0 23 L * ? *)", NEW_YORK)
        # 23:00 EST on 2026-01-31 is 04:00Z on 02-01.
        assert schedule.next_fire(utc(2026, 1, 15)) == utc(2026, 2, 1, 4)

    def test_nth_weekday_of_month(self) -> None:
        first_monday = parse_schedule_expression("cron(0 9 ? * 2#1 *)")
        assert fires(first_monday, utc(2026, 1, 1), 3) == [
            utc(2026, 1, 5, 9),
            utc(2026, 2, 2, 9),
            utc(2026, 3, 2, 9),
        ]
        third_friday = parse_schedule_expression("cron(0 9 ? * FRI#3 *)")
        assert third_friday.next_fire(utc(2026, 1, 1)) == utc(2026, 1, 16, 9)

    def test_fifth_weekday_skips_months_without_one(self) -> None:
        fifth_monday = parse_schedule_expression("cron(0 9 ? * 2#5 *)")
        # 2026 months with five Mondays: March (30th), June (29th), August (31st).
        assert fires(fifth_monday, utc(2026, 1, 1), 3) == [
            utc(2026, 3, 30, 9),
            utc(2026, 6, 29, 9),
            utc(2026, 8, 31, 9),
        ]

    def test_last_weekday_of_month(self) -> None:
        last_friday = parse_schedule_expression("cron(0 9 ? * 6L *)")
        assert fires(last_friday, utc(2026, 1, 1), 3) == [
            utc(2026, 1, 30, 9),
            utc(2026, 2, 27, 9),
            utc(2026, 3, 27, 9),
        ]
        last_sunday = parse_schedule_expression("cron(0 9 ? * SUNL *)")
        assert last_sunday.next_fire(utc(2026, 1, 1)) == utc(2026, 1, 25, 9)

    def test_l_alone_in_day_of_week_is_saturday(self) -> None:
        schedule = parse_schedule_expression("cron(0 12 ? * L *)")
        assert fires(schedule, utc(2026, 1, 1), 2) == [utc(2026, 1, 3, 12), utc(2026, 1, 10, 12)]

    def test_day_of_week_numbering_starts_at_sunday(self) -> None:
        # 2026-01-04 is a Sunday, 2026-01-03 a Saturday.
        assert parse_schedule_expression("cron(0 12 ? * 1 *)").next_fire(utc(2026, 1, 1)) == utc(
            2026, 1, 4, 12
        )
        assert parse_schedule_expression("cron(0 12 ? * SUN *)").next_fire(utc(2026, 1, 1)) == utc(
            2026, 1, 4, 12
        )
        assert parse_schedule_expression("cron(0 12 ? * 7 *)").next_fire(utc(2026, 1, 1)) == utc(
            2026, 1, 3, 12
        )
        assert parse_schedule_expression("cron(0 12 ? * 2 *)").next_fire(utc(2026, 1, 1)) == utc(
            2026, 1, 5, 12
        )

    def test_day_of_week_list_and_wrapping_range(self) -> None:
        weekend = parse_schedule_expression("cron(0 12 ? * SAT,SUN *)")
        assert fires(weekend, utc(2026, 1, 1), 3) == [
            utc(2026, 1, 3, 12),
            utc(2026, 1, 4, 12),
            utc(2026, 1, 10, 12),
        ]
        fri_to_mon = parse_schedule_expression("cron(0 12 ? * FRI-MON *)")
        assert fires(fri_to_mon, utc(2026, 1, 1), 5) == [
            utc(2026, 1, 2, 12),
            utc(2026, 1, 3, 12),
            utc(2026, 1, 4, 12),
            utc(2026, 1, 5, 12),
            utc(2026, 1, 9, 12),
        ]

    def test_month_names(self) -> None:
        schedule = parse_schedule_expression("cron(0 0 1 JAN,jul ? *)")
        assert fires(schedule, utc(2026, 2, 1), 3) == [utc(2026, 7, 1), utc(2027, 1, 1), utc(2027, 7, 1)]
        quarter = parse_schedule_expression("cron(0 0 1 JAN-MAR ? *)")
        assert fires(quarter, utc(2026, 1, 15), 3) == [utc(2026, 2, 1), utc(2026, 3, 1), utc(2027, 1, 1)]

    def test_nearest_weekday(self) -> None:
        schedule = parse_schedule_expression("cron(0 0 15W * ? *)")
        # 2026-08-15 is a Saturday -> Friday 14th; 2026-11-15 is a Sunday -> Monday 16th.
        assert schedule.next_fire(utc(2026, 8, 1)) == utc(2026, 8, 14)
        assert schedule.next_fire(utc(2026, 11, 1)) == utc(2026, 11, 16)
        first = parse_schedule_expression("cron(0 0 1W * ? *)")
        # 2026-08-01 is a Saturday; W never leaves the month, so Monday 3rd.
        assert first.next_fire(utc(2026, 7, 20)) == utc(2026, 8, 3)

    def test_lists_ranges_and_steps(self) -> None:
        schedule = parse_schedule_expression("cron(0,30 9-17/4 * * ? *)")
        assert fires(schedule, utc(2026, 1, 1), 7) == [
            utc(2026, 1, 1, 9),
            utc(2026, 1, 1, 9, 30),
            utc(2026, 1, 1, 13),
            utc(2026, 1, 1, 13, 30),
            utc(2026, 1, 1, 17),
            utc(2026, 1, 1, 17, 30),
            utc(2026, 1, 2, 9),
        ]

    def test_wrapping_hour_range(self) -> None:
        schedule = parse_schedule_expression("cron(0 22-1 * * ? *)")
        assert fires(schedule, utc(2026, 1, 1, 12), 5) == [
            utc(2026, 1, 1, 22),
            utc(2026, 1, 1, 23),
            utc(2026, 1, 2, 0),
            utc(2026, 1, 2, 1),
            utc(2026, 1, 2, 22),
        ]

    def test_day_of_month_list(self) -> None:
        schedule = parse_schedule_expression("cron(0 6 1,15 * ? *)")
        assert fires(schedule, utc(2026, 1, 10), 3) == [
            utc(2026, 1, 15, 6),
            utc(2026, 2, 1, 6),
            utc(2026, 2, 15, 6),
        ]

    def test_day_31_skips_short_months(self) -> None:
        schedule = parse_schedule_expression("cron(0 0 31 * ? *)")
        assert fires(schedule, utc(2026, 1, 31, 1), 2) == [utc(2026, 3, 31), utc(2026, 5, 31)]

    def test_question_mark_in_either_day_field(self) -> None:
        every_day_a = parse_schedule_expression("cron(0 10 * * ? *)")
        every_day_b = parse_schedule_expression("cron(0 10 ? * * *)")
        after = utc(2026, 1, 1)
        assert fires(every_day_a, after, 5) == fires(every_day_b, after, 5)

    def test_specific_year(self) -> None:
        schedule = parse_schedule_expression("cron(0 0 1 1 ? 2030)")
        assert fires(schedule, utc(2026, 5, 1), 2) == [utc(2030, 1, 1), None]

    def test_year_range_exhaustion(self) -> None:
        schedule = parse_schedule_expression("cron(0 0 1 1 ? 2026-2027)")
        assert fires(schedule, utc(2025, 6, 1), 3) == [utc(2026, 1, 1), utc(2027, 1, 1), None]
        assert schedule.next_fire(utc(2027, 1, 1)) is None
        assert schedule.next_fire(utc(2031, 1, 1)) is None

    def test_year_exhausted_mid_year(self) -> None:
        schedule = parse_schedule_expression("cron(0 12 ? * MON *)", NEW_YORK)
        yearly = parse_schedule_expression("cron(0 12 ? * MON 2026)", NEW_YORK)
        # The last Monday of 2026 is 12-28; EST, so 17:00Z.
        assert yearly.next_fire(utc(2026, 12, 22)) == utc(2026, 12, 28, 17)
        assert yearly.next_fire(utc(2026, 12, 28, 17)) is None
        assert schedule.next_fire(utc(2026, 12, 28, 17)) == utc(2027, 1, 4, 17)

    def test_year_list_and_step(self) -> None:
        listed = parse_schedule_expression("cron(0 0 1 JAN ? 2027,2029)")
        assert fires(listed, utc(2026, 1, 1), 3) == [utc(2027, 1, 1), utc(2029, 1, 1), None]
        stepped = parse_schedule_expression("cron(0 0 1 JAN ? 2030/5)")
        assert fires(stepped, utc(2026, 1, 1), 2) == [utc(2030, 1, 1), utc(2035, 1, 1)]

    def test_year_with_no_matching_date(self) -> None:
        # 29 February never falls in 2027 or 2029-2031.
        schedule = parse_schedule_expression("cron(0 0 29 2 ? 2027,2029-2031)")
        assert schedule.next_fire(utc(2025, 1, 1)) is None
        leap = parse_schedule_expression("cron(0 0 29 FEB ? *)")
        assert fires(leap, utc(2026, 1, 1), 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]

    def test_year_boundary_in_time_zone(self) -> None:
        # 2026-12-31 23:30 in New York is 2027-01-01 04:30Z; the year field is read on the local clock.
        schedule = parse_schedule_expression("cron(30 23 31 DEC ? 2026)", NEW_YORK)
        assert fires(schedule, utc(2026, 6, 1), 2) == [utc(2027, 1, 1, 4, 30), None]

    def test_independent_of_after_seconds(self) -> None:
        schedule = parse_schedule_expression("cron(0 8 * * ? *)")
        assert schedule.next_fire(utc(2026, 1, 1, 7, 59, 59)) == utc(2026, 1, 1, 8)
        assert schedule.next_fire(utc(2026, 1, 1, 8)) == utc(2026, 1, 2, 8)
        assert schedule.next_fire(utc(2026, 1, 1, 8, 0, 1)) == utc(2026, 1, 2, 8)

    def test_whitespace_and_case_tolerance(self) -> None:
        schedule = parse_schedule_expression("  cron(0  8 ? *  mon-fri *) ")
        assert schedule.next_fire(utc(2026, 3, 6, 9)) == utc(2026, 3, 9, 8)


# -------------------------------------------------------------------------------------------- at


class TestAt:
    def test_utc(self) -> None:
        schedule = parse_schedule_expression("at(2026-03-01T09:30:00)")
        assert schedule.next_fire(utc(2026, 1, 1)) == utc(2026, 3, 1, 9, 30)
        assert schedule.next_fire(utc(2026, 3, 1, 9, 29, 59)) == utc(2026, 3, 1, 9, 30)

    def test_past_or_equal_returns_none(self) -> None:
        schedule = parse_schedule_expression("at(2026-03-01T09:30:00)")
        assert schedule.next_fire(utc(2026, 3, 1, 9, 30)) is None
        assert schedule.next_fire(utc(2027, 1, 1)) is None

    def test_in_time_zone(self) -> None:
        winter = parse_schedule_expression("at(2026-01-15T09:00:00)", NEW_YORK)
        summer = parse_schedule_expression("at(2026-07-15T09:00:00)", NEW_YORK)
        tokyo = parse_schedule_expression("at(2026-07-15T09:00:00)", "Asia/Tokyo")
        assert winter.next_fire(utc(2026, 1, 1)) == utc(2026, 1, 15, 14)
        assert summer.next_fire(utc(2026, 1, 1)) == utc(2026, 7, 15, 13)
        assert tokyo.next_fire(utc(2026, 1, 1)) == utc(2026, 7, 15, 0)

    def test_ambiguous_time_is_first_occurrence(self) -> None:
        schedule = parse_schedule_expression("at(2026-11-01T01:30:00)", NEW_YORK)
        assert schedule.next_fire(utc(2026, 1, 1)) == utc(2026, 11, 1, 5, 30)

    def test_time_in_dst_gap_moves_forward(self) -> None:
        schedule = parse_schedule_expression("at(2026-03-08T02:30:00)", NEW_YORK)
        # 02:30 does not exist; fires at 03:30 EDT.
        assert schedule.next_fire(utc(2026, 1, 1)) == utc(2026, 3, 8, 7, 30)

    def test_start_does_not_matter(self) -> None:
        schedule = parse_schedule_expression("at(2026-03-01T09:30:00)", start=utc(2026, 2, 1))
        assert schedule.next_fire(utc(2026, 1, 1)) == utc(2026, 3, 1, 9, 30)


# ------------------------------------------------------------------------------------- the object


class TestScheduleExpressionObject:
    def test_fields_and_equality(self) -> None:
        a = parse_schedule_expression("rate(5 minutes)", "Europe/Paris")
        b = ScheduleExpression("rate(5 minutes)", "Europe/Paris")
        assert a.expression == "rate(5 minutes)"
        assert a.timezone == "Europe/Paris"
        assert a == b
        assert hash(a) == hash(b)
        assert a != parse_schedule_expression("rate(5 minutes)")

    def test_frozen(self) -> None:
        schedule = parse_schedule_expression("rate(5 minutes)")
        with pytest.raises(dataclasses.FrozenInstanceError):
            schedule.expression = "rate(1 hour)"  # type: ignore[misc]

    def test_direct_construction_validates(self) -> None:
        with pytest.raises(ScheduleExpressionError):
            ScheduleExpression("rate(5 fortnights)")

    def test_error_is_a_value_error(self) -> None:
        assert issubclass(ScheduleExpressionError, ValueError)

    def test_naive_after_is_rejected(self) -> None:
        schedule = parse_schedule_expression("rate(5 minutes)")
        with pytest.raises(ValueError, match="timezone-aware"):
            schedule.next_fire(datetime(2026, 1, 1))

    def test_naive_start_is_rejected(self) -> None:
        with pytest.raises(ScheduleExpressionError, match="start must be a timezone-aware"):
            parse_schedule_expression("rate(5 minutes)", start=datetime(2026, 1, 1))


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        # empty / unknown shape
        ("", "the expression is empty"),
        ("   ", "the expression is empty"),
        ("every 5 minutes", "expected rate"),
        ("RATE(5 minutes)", "expected rate"),
        # rate
        ("rate(5)", "expected rate\\(value unit\\)"),
        ("rate(5minutes)", "expected rate\\(value unit\\)"),
        ("rate(5 minutes", "expected rate\\(value unit\\)"),
        ("rate(0 minutes)", "rate value '0' must be a positive whole number"),
        ("rate(-5 minutes)", "rate value '-5' must be a positive whole number"),
        ("rate(1.5 hours)", "rate value '1.5' must be a positive whole number"),
        ("rate(five minutes)", "rate value 'five' must be a positive whole number"),
        ("rate(5 weeks)", "unknown rate unit 'weeks'"),
        ("rate(5 seconds)", "unknown rate unit 'seconds'"),
        ("rate(1 minutes)", "use the singular unit 'minute' with a value of 1"),
        ("rate(1 hours)", "use the singular unit 'hour'"),
        ("rate(1 days)", "use the singular unit 'day'"),
        ("rate(5 minute)", "use the plural unit 'minutes' with a value of 5"),
        ("rate(2 hour)", "use the plural unit 'hours'"),
        ("rate(3 day)", "use the plural unit 'days'"),
        ("rate(99999999999 days)", "too large"),
        # cron shape
        ("cron(0 8 * * ?)", "exactly 6 fields .* got 5"),
        ("cron(0 0 8 * * ? *)", "exactly 6 fields .* got 7"),
        ("cron()", "exactly 6 fields .* got 0"),
        ("cron(0 8 * * ? *", "expected cron\\("),
        # day fields
        ("cron(0 8 * * * *)", "one of day-of-month and day-of-week must be '\\?'"),
        ("cron(0 8 1 * MON *)", "one of day-of-month and day-of-week must be '\\?'"),
        ("cron(0 8 ? * ? *)", "cannot both be '\\?'"),
        ("cron(? 8 * * ? *)", "'\\?' is only allowed in day-of-month or day-of-week, not in minutes"),
        ("cron(0 8 * ? ? *)", "not in month"),
        # numbers and ranges
        ("cron(60 8 * * ? *)", "minutes value 60 is out of range \\(0-59\\)"),
        ("cron(0 24 * * ? *)", "hours value 24 is out of range \\(0-23\\)"),
        ("cron(0 8 0 * ? *)", "day-of-month value 0 is out of range \\(1-31\\)"),
        ("cron(0 8 32 * ? *)", "day-of-month value 32 is out of range"),
        ("cron(0 8 1 13 ? *)", "month value 13 is out of range \\(1-12\\)"),
        ("cron(0 8 ? * 0 *)", "day-of-week value 0 is out of range \\(1-7\\)"),
        ("cron(0 8 ? * 8 *)", "day-of-week value 8 is out of range"),
        ("cron(0 8 * * ? 1969)", "year value 1969 is out of range \\(1970-2199\\)"),
        ("cron(0 8 * * ? 2200)", "year value 2200 is out of range"),
        ("cron(0 8 * * ? 2030-2026)", "year range '2030-2026' runs backwards"),
        ("cron(0 8 1 FOO ? *)", "month value 'FOO' is not valid; expected a number 1-12 or one of JAN"),
        ("cron(0 8 ? * FUN *)", "day-of-week value 'FUN' is not valid"),
        ("cron(0 8 ? * MONDAY *)", "day-of-week value 'MONDAY' is not valid"),
        ("cron(x 8 * * ? *)", "minutes value 'X' is not valid; expected a number 0-59"),
        ("cron(-5 8 * * ? *)", "minutes value '' is not valid"),
        ("cron(0,,5 8 * * ? *)", "minutes field has an empty list entry"),
        ("cron(*/0 8 * * ? *)", "minutes step '0' in '\\*/0' must be a whole number from 1 to 60"),
        ("cron(0/61 8 * * ? *)", "minutes step '61'"),
        ("cron(0/x 8 * * ? *)", "minutes step 'X'"),
        ("cron(1-2-3 8 * * ? *)", "minutes value '2-3' is not valid"),
        # special characters
        ("cron(L 8 * * ? *)", "minutes value 'L' is not valid"),
        ("cron(0 8 ? L * *)", "month value 'L' is not valid"),
        ("cron(0 8 LW * ? *)", "'LW' \\(last weekday of the month\\) is not supported"),
        ("cron(0 8 1,L * ? *)", "'L' and 'nW' must stand alone"),
        ("cron(0 8 1-5W * ? *)", "'W' takes a single day number"),
        ("cron(0 8 32W * ? *)", "day-of-month value 32 is out of range"),
        ("cron(0 8 L-3 * ? *)", "'L' and 'nW' must stand alone"),
        ("cron(0 8 ? * 2#0 *)", "the number after '#' must be 1-5"),
        ("cron(0 8 ? * 2#6 *)", "the number after '#' must be 1-5"),
        ("cron(0 8 ? * 8#1 *)", "day-of-week value 8 is out of range"),
        ("cron(0 8 ? * 2#1,3 *)", "'L', 'nL' and 'n#k' must stand alone"),
        ("cron(0 8 ? * MON-FRIL *)", "'L', 'nL' and 'n#k' must stand alone"),
        ("cron(0 8 ? * 8L *)", "day-of-week value 8 is out of range"),
        # never fires
        ("cron(0 8 30 2 ? *)", "never occurs in the selected month\\(s\\)"),
        ("cron(0 8 31 APR,JUN ? *)", "never occurs"),
        # at
        ("at(2026-13-01T00:00:00)", "'2026-13-01T00:00:00' is not a valid date and time"),
        ("at(2026-02-30T00:00:00)", "is not a valid date and time"),
        ("at(2026-01-01T24:00:00)", "is not a valid date and time"),
        ("at(2026-01-01 00:00:00)", "expected at\\(yyyy-mm-ddThh:mm:ss\\)"),
        ("at(2026-01-01T00:00)", "expected at\\(yyyy-mm-ddThh:mm:ss\\)"),
        ("at(2026-01-01T00:00:00Z)", "expected at\\(yyyy-mm-ddThh:mm:ss\\)"),
        ("at()", "expected at\\(yyyy-mm-ddThh:mm:ss\\)"),
    ],
)
def test_invalid_expressions(expression: str, message: str) -> None:
    with pytest.raises(ScheduleExpressionError, match=message) as excinfo:
        parse_schedule_expression(expression)
    # The message always quotes the offending expression.
    assert repr(expression) in str(excinfo.value)


@pytest.mark.parametrize(
    "timezone", ["Mars/Olympus_Mons", "", "not a zone", "../etc/passwd", "America/New York"]
)
def test_unknown_time_zone(timezone: str) -> None:
    with pytest.raises(UnknownTimezoneError, match="time zone") as excinfo:
        parse_schedule_expression("cron(0 8 * * ? *)", timezone)
    assert isinstance(excinfo.value, ScheduleExpressionError)
    assert "cron(" not in str(excinfo.value)  # the time zone is wrong, not the expression


def test_check_timezone_accepts_iana_names_and_refuses_others() -> None:
    assert check_timezone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(UnknownTimezoneError, match="unknown time zone 'Mars/Olympus'"):
        check_timezone("Mars/Olympus")


def test_an_at_time_not_after_not_before_is_refused_on_the_zones_wall_clock() -> None:
    # 09:30 in Tokyo is 00:30 UTC: at 01:00 UTC it has passed there, though 09:30 UTC has not.
    now = utc(2026, 3, 1, 1, 0)
    with pytest.raises(PastScheduleError, match=r"at\(2026-03-01T09:30:00\) is in the past") as excinfo:
        parse_schedule_expression("at(2026-03-01T09:30:00)", "Asia/Tokyo", not_before=now)
    assert "Asia/Tokyo" in str(excinfo.value) and "2026-03-01T10:00:00" in str(excinfo.value)
    assert parse_schedule_expression("at(2026-03-01T09:30:00)", "UTC", not_before=now).next_fire(now) is not None
    with pytest.raises(PastScheduleError, match=r"at\(2020-01-01T00:00:00\) is in the past"):
        parse_schedule_expression("at(2020-01-01T00:00:00)", not_before=now)
    with pytest.raises(PastScheduleError):  # "now" itself is not a time to come
        parse_schedule_expression("at(2026-03-01T01:00:00)", not_before=now)


def test_not_before_does_not_affect_rate_or_cron() -> None:
    now = utc(2026, 3, 1)
    for expression in ("rate(5 minutes)", "cron(0 8 * * ? 2020-2199)"):
        assert parse_schedule_expression(expression, NEW_YORK, not_before=now).next_fire(now) is not None


def test_unknown_time_zone_message_names_the_zone() -> None:
    with pytest.raises(ScheduleExpressionError, match="unknown time zone 'Mars/Olympus_Mons'"):
        parse_schedule_expression("rate(5 minutes)", "Mars/Olympus_Mons")


@pytest.mark.parametrize(
    "expression",
    [
        "rate(1 minute)",
        "rate(10 hours)",
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/15 * * * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(0 0 L * ? *)",
        "cron(0 0 3W * ? *)",
        "cron(30 2 ? JAN-MAR,NOV 1-7 2026-2030)",
        "at(2026-03-01T09:30:00)",
    ],
)
def test_documented_examples_parse(expression: str) -> None:
    # Examples in the style of the AWS EventBridge documentation.
    schedule = parse_schedule_expression(expression, NEW_YORK)
    assert schedule.next_fire(utc(2026, 1, 1)) is not None
