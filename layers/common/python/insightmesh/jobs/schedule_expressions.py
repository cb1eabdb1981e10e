"""Evaluate AWS EventBridge schedule expressions: ``rate(...)``, ``cron(...)`` and ``at(...)``.

The job API uses it to validate a schedule and show its next run; the local Lambda runtime
uses it to decide when scheduled functions fire. It covers both
EventBridge rules (always UTC) and EventBridge Scheduler schedules (which may carry a
``ScheduleExpressionTimezone``).

Semantics, following the AWS documentation:

``rate(value unit)``
    ``value`` is a positive integer; ``unit`` is ``minute``/``minutes``, ``hour``/``hours`` or
    ``day``/``days``, singular only when ``value`` is 1. A day is a fixed 24 hours, so DST never
    stretches or shrinks the period. Fire times are ``anchor + k * period`` (``k >= 0``), where the
    anchor is the ``start`` given to :func:`parse_schedule_expression` (the time the schedule was
    created) or the Unix epoch. The time zone does not affect rate schedules.

``cron(minutes hours day-of-month month day-of-week year)``
    Exactly six fields. Exactly one of day-of-month / day-of-week must be ``?``. Day-of-week numbers
    are 1-7 = SUN-SAT; names ``SUN``..``SAT`` and ``JAN``..``DEC`` are accepted (any case).
    ``,`` ``-`` ``*`` ``/`` are supported in every field (ranges may wrap around, e.g. ``FRI-MON``
    or ``22-2``, except in the year field). Day-of-month also accepts ``L`` (last day of the month)
    or ``nW`` (weekday nearest to day n, never leaving the month); day-of-week also accepts ``L``
    (Saturday, the last day of the week), ``nL`` (last weekday n of the month, e.g. ``6L`` = last
    Friday) or ``n#k`` (k-th weekday n of the month, e.g. ``2#1`` = first Monday). Those special
    forms must stand alone in their field. Years run 1970-2199.

    The expression is evaluated on the wall clock of the schedule's time zone. As EventBridge
    Scheduler documents for DST: a wall-clock time skipped when clocks spring forward does not
    fire, and a wall-clock time repeated when clocks fall back fires once (on its first
    occurrence).

``at(yyyy-mm-ddThh:mm:ss)``
    A one-off time on the wall clock of the schedule's time zone. An ambiguous time (clocks falling
    back) means its first occurrence; a time skipped by a spring-forward gap is moved forward by
    the length of the gap (e.g. 02:30 on a night when 02:00 becomes 03:00 fires at 03:30).
    Given ``not_before`` (the API passes "now"), a time at or before it is refused
    (:class:`PastScheduleError`): EventBridge Scheduler would fire a past ``at()`` at once.

An unknown time zone raises :class:`UnknownTimezoneError` (also a :class:`ScheduleExpressionError`),
whose message names the time zone rather than the expression.

All fire times returned are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import bisect
import calendar
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter  # type: ignore[import-untyped]

__all__ = ["PastScheduleError", "ScheduleExpression", "ScheduleExpressionError", "UnknownTimezoneError",
           "check_timezone", "parse_schedule_expression"]


class ScheduleExpressionError(ValueError):
    """A schedule expression (or its time zone) is malformed; the message quotes the expression."""


class UnknownTimezoneError(ScheduleExpressionError):
    """The time zone is not an IANA name; the message names the time zone, not the expression."""


class PastScheduleError(ScheduleExpressionError):
    """An ``at()`` time that is not after ``not_before``: it would fire at once, or never."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_YEAR = 1970
_MAX_YEAR = 2199

# croniter gives up when it finds no match within this many years of its start. The AWS year
# range spans 230 years, so a larger window means "no match" really is "never again".
_CRONITER_MAX_YEARS = _MAX_YEAR - _MIN_YEAR + 20

# Upper bound on candidate wall-clock times examined by one next_fire() call. Candidates are only
# skipped when they fall into a DST gap or a repeated hour, or when their year is excluded (each
# such skip jumps to the next allowed year), so a real search needs a few thousand at most.
_MAX_CRON_STEPS = 100_000

_RATE_UNITS: dict[str, tuple[str, timedelta]] = {
    "minute": ("minutes", timedelta(minutes=1)),
    "hour": ("hours", timedelta(hours=1)),
    "day": ("days", timedelta(days=1)),
}
_PLURAL_UNITS = {plural: singular for singular, (plural, _) in _RATE_UNITS.items()}

_RATE_RE = re.compile(r"rate\(\s*(?P<value>\S+)\s+(?P<unit>\S+)\s*\)", re.ASCII)
_AT_RE = re.compile(r"at\((?P<timestamp>[^)]*)\)", re.ASCII)
_AT_TIMESTAMP_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", re.ASCII)
_CRON_RE = re.compile(r"cron\((?P<body>[^)]*)\)", re.ASCII)
_INT_RE = re.compile(r"[0-9]+", re.ASCII)

_MONTH_NAMES = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
_DOW_NAMES = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
# Longest month length, leap years included, used to reject day-of-month values no month can have.
_MAX_MONTH_DAYS = {month: calendar.monthrange(2000, month)[1] for month in range(1, 13)}


def _error(expression: str, reason: str) -> ScheduleExpressionError:
    return ScheduleExpressionError(f"invalid schedule expression {expression!r}: {reason}")


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int]
    wraps: bool


_MINUTES = _FieldSpec("minutes", 0, 59, {}, wraps=True)
_HOURS = _FieldSpec("hours", 0, 23, {}, wraps=True)
_DAY_OF_MONTH = _FieldSpec("day-of-month", 1, 31, {}, wraps=True)
_MONTH = _FieldSpec("month", 1, 12, _MONTH_NAMES, wraps=True)
_DAY_OF_WEEK = _FieldSpec("day-of-week", 1, 7, _DOW_NAMES, wraps=True)
_YEAR = _FieldSpec("year", _MIN_YEAR, _MAX_YEAR, {}, wraps=False)


@dataclass(frozen=True)
class _RateSchedule:
    period: timedelta
    anchor: datetime

    def next_fire(self, after: datetime) -> datetime | None:
        if after < self.anchor:
            return self.anchor
        periods = (after - self.anchor) // self.period + 1
        try:
            return (self.anchor + periods * self.period).astimezone(UTC)
        except OverflowError:
            return None


@dataclass(frozen=True)
class _AtSchedule:
    fire_at: datetime

    def next_fire(self, after: datetime) -> datetime | None:
        return self.fire_at if self.fire_at > after else None


@dataclass(frozen=True)
class _CronSchedule:
    croniter_expression: str  # the five standard fields, in croniter's dialect
    years: tuple[int, ...] | None  # sorted allowed years, None for every year
    zone: tzinfo

    def next_fire(self, after: datetime) -> datetime | None:
        # Walk candidate wall-clock times in the schedule's zone, in increasing order, starting
        # from the wall-clock time of `after`. Mapping a wall time to its first occurrence (fold=0)
        # is increasing, so no candidate before the start can fire after `after`; candidates that
        # do not exist (DST gap) or map to an instant <= `after` (the repeated hour) are skipped.
        cursor = after.astimezone(self.zone).replace(tzinfo=None, fold=0)
        iterator = croniter(self.croniter_expression, cursor, max_years_between_matches=_CRONITER_MAX_YEARS)
        for _ in range(_MAX_CRON_STEPS):
            if self.years is not None:
                index = bisect.bisect_left(self.years, cursor.year)
                if index == len(self.years):
                    return None
                if self.years[index] > cursor.year:
                    cursor = datetime(self.years[index], 1, 1) - timedelta(minutes=1)
            try:
                candidate: datetime = iterator.get_next(datetime, start_time=cursor)
            except CroniterBadDateError:
                return None  # no matching date within the whole supported year range
            cursor = candidate
            if self.years is not None and candidate.year not in self.years:
                continue  # the top of the loop jumps to the next allowed year
            local = candidate.replace(tzinfo=self.zone)
            instant = local.astimezone(UTC)
            if instant.astimezone(self.zone).replace(tzinfo=None) != candidate:
                continue  # skipped by a spring-forward gap: EventBridge Scheduler skips it too
            if instant > after:
                return instant
        raise RuntimeError(  # pragma: no cover - defensive bound, unreachable for valid input
            f"no fire time found for cron({self.croniter_expression}) within {_MAX_CRON_STEPS} steps"
        )


_Compiled = _RateSchedule | _AtSchedule | _CronSchedule


@dataclass(frozen=True)
class ScheduleExpression:
    """A validated schedule expression. Construct it with :func:`parse_schedule_expression`.

    ``start`` anchors ``rate()`` expressions (see the module docstring); it does not affect
    ``cron()`` or ``at()``.
    """

    expression: str
    timezone: str = "UTC"
    start: datetime | None = None
    _compiled: _Compiled = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", _compile(self.expression, self.timezone, self.start))

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (timezone-aware, any zone), as an aware UTC
        datetime, or ``None`` when the schedule never fires again."""
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError(f"next_fire() needs a timezone-aware datetime, got naive {after!r}")
        return self._compiled.next_fire(after.astimezone(UTC))


def parse_schedule_expression(
    expression: str, timezone: str = "UTC", *, start: datetime | None = None, not_before: datetime | None = None
) -> ScheduleExpression:
    """Validate ``expression`` and return it ready for evaluation.

    ``timezone`` is an IANA name used for ``cron()`` and ``at()``; ``start`` (timezone-aware) is
    when the schedule was created, the anchor of ``rate()`` expressions (default: the Unix epoch).
    Raises :class:`ScheduleExpressionError` for anything malformed, :class:`UnknownTimezoneError`
    for an unknown time zone, and — when ``not_before`` (timezone-aware) is given —
    :class:`PastScheduleError` for an ``at()`` time at or before it, on the zone's wall clock.
    """
    parsed = ScheduleExpression(expression, timezone, start)
    if not_before is None or not isinstance(parsed._compiled, _AtSchedule):
        return parsed
    if not_before.tzinfo is None or not_before.utcoffset() is None:
        raise ValueError(f"not_before must be a timezone-aware datetime, got naive {not_before!r}")
    if parsed.next_fire(not_before) is None:
        local_now = not_before.astimezone(ZoneInfo(timezone)).replace(microsecond=0, tzinfo=None)
        raise PastScheduleError(
            f"{expression.strip()} is in the past: it is {local_now.isoformat()} in {timezone} now; "
            "give a time to come")
    return parsed


def _compile(expression: str, timezone: str, start: datetime | None) -> _Compiled:
    if not isinstance(expression, str):
        raise ScheduleExpressionError(f"schedule expression must be a string, got {expression!r}")
    text = expression.strip()
    if not text:
        raise _error(expression, "the expression is empty")
    zone = _load_zone(expression, timezone)
    if start is not None and (start.tzinfo is None or start.utcoffset() is None):
        raise _error(expression, f"start must be a timezone-aware datetime, got naive {start!r}")

    if text.startswith("rate("):
        return _compile_rate(expression, text, start)
    if text.startswith("cron("):
        return _compile_cron(expression, text, zone)
    if text.startswith("at("):
        return _compile_at(expression, text, zone)
    raise _error(
        expression,
        "expected rate(value unit), cron(minutes hours day-of-month month day-of-week year) "
        "or at(yyyy-mm-ddThh:mm:ss)",
    )


def _load_zone(expression: str, timezone: str) -> tzinfo:
    if not isinstance(timezone, str) or not timezone.strip():
        raise UnknownTimezoneError(f"the time zone must be a non-empty IANA name, got {timezone!r}")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimezoneError(
            f"unknown time zone {timezone!r} (expected an IANA name such as 'America/New_York')"
        ) from None


def check_timezone(timezone: str) -> str:
    """``timezone`` if it is an IANA name, else :class:`UnknownTimezoneError`."""
    _load_zone("", timezone)
    return timezone


# --------------------------------------------------------------------------------------------- rate


def _compile_rate(expression: str, text: str, start: datetime | None) -> _RateSchedule:
    match = _RATE_RE.fullmatch(text)
    if match is None:
        raise _error(expression, "expected rate(value unit), e.g. rate(5 minutes)")
    raw_value, unit = match["value"], match["unit"]
    if not _INT_RE.fullmatch(raw_value) or int(raw_value) == 0:
        raise _error(expression, f"rate value {raw_value!r} must be a positive whole number")
    value = int(raw_value)
    if unit in _RATE_UNITS:
        singular, plural = unit, _RATE_UNITS[unit][0]
        if value != 1:
            raise _error(expression, f"use the plural unit {plural!r} with a value of {value}")
    elif unit in _PLURAL_UNITS:
        singular = _PLURAL_UNITS[unit]
        if value == 1:
            raise _error(expression, f"use the singular unit {singular!r} with a value of 1")
    else:
        raise _error(
            expression,
            f"unknown rate unit {unit!r}; expected minute, minutes, hour, hours, day or days",
        )
    try:
        period = value * _RATE_UNITS[singular][1]
    except OverflowError:
        raise _error(expression, f"rate value {value} is too large") from None
    anchor = _EPOCH if start is None else start.astimezone(UTC)
    return _RateSchedule(period=period, anchor=anchor)


# ----------------------------------------------------------------------------------------------- at


def _compile_at(expression: str, text: str, zone: tzinfo) -> _AtSchedule:
    match = _AT_RE.fullmatch(text)
    if match is None or not _AT_TIMESTAMP_RE.fullmatch(match["timestamp"]):
        raise _error(expression, "expected at(yyyy-mm-ddThh:mm:ss), e.g. at(2026-03-01T09:30:00)")
    timestamp = match["timestamp"]
    try:
        local = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise _error(expression, f"{timestamp!r} is not a valid date and time") from None
    # fold=0: the first occurrence of an ambiguous time; a time inside a DST gap is interpreted
    # with the offset in force before the gap, i.e. moved forward by the gap's length.
    return _AtSchedule(fire_at=local.replace(tzinfo=zone).astimezone(UTC))


# --------------------------------------------------------------------------------------------- cron


def _compile_cron(expression: str, text: str, zone: tzinfo) -> _CronSchedule:
    match = _CRON_RE.fullmatch(text)
    if match is None:
        raise _error(expression, "expected cron(minutes hours day-of-month month day-of-week year)")
    fields = match["body"].split()
    if len(fields) != 6:
        raise _error(
            expression,
            f"cron() needs exactly 6 fields (minutes hours day-of-month month day-of-week year), "
            f"got {len(fields)}",
        )
    minutes, hours, day_of_month, month, day_of_week, year = (f.upper() for f in fields)

    if day_of_month == "?" and day_of_week == "?":
        raise _error(expression, "day-of-month and day-of-week cannot both be '?'; set one of them")
    if day_of_month != "?" and day_of_week != "?":
        raise _error(
            expression,
            "one of day-of-month and day-of-week must be '?' "
            f"(got {fields[2]!r} and {fields[4]!r}); AWS cannot combine them",
        )

    minute_values = _parse_field(expression, minutes, _MINUTES)
    hour_values = _parse_field(expression, hours, _HOURS)
    month_values = _parse_field(expression, month, _MONTH)
    dom_part = _croniter_day_of_month(expression, day_of_month, month_values)
    dow_part = _croniter_day_of_week(expression, day_of_week)
    year_values = _parse_field(expression, year, _YEAR)

    croniter_expression = " ".join(
        (_join(minute_values), _join(hour_values), dom_part, _join(month_values), dow_part)
    )
    try:
        croniter(croniter_expression, datetime(2000, 1, 1))
    except CroniterError as exc:  # a translation gap: report it rather than fail at fire time
        raise _error(expression, f"not supported by the cron evaluator: {exc}") from None
    return _CronSchedule(croniter_expression=croniter_expression, years=year_values, zone=zone)


def _join(values: tuple[int, ...] | None) -> str:
    return "*" if values is None else ",".join(str(v) for v in values)


def _croniter_day_of_month(expression: str, text: str, months: tuple[int, ...] | None) -> str:
    if text in ("?", "*"):
        return "*"
    if text == "L":
        return "L"
    if text == "LW":
        raise _error(expression, "'LW' (last weekday of the month) is not supported; use 'L' or 'nW'")
    if text.endswith("W"):
        day = text[:-1]
        if not _INT_RE.fullmatch(day):
            raise _error(expression, f"day-of-month {text!r}: 'W' takes a single day number, e.g. '15W'")
        value = _check_range(expression, int(day), _DAY_OF_MONTH)
        return f"{value}W"
    if _is_compound(text) and ("L" in text or "W" in text):
        raise _error(expression, f"day-of-month {text!r}: 'L' and 'nW' must stand alone in the field")
    days = _parse_field(expression, text, _DAY_OF_MONTH)
    if days is None:
        return "*"
    possible_months = range(1, 13) if months is None else months
    if all(days[0] > _MAX_MONTH_DAYS[m] for m in possible_months):
        raise _error(
            expression,
            f"day-of-month {text!r} never occurs in the selected month(s), so the schedule never fires",
        )
    return _join(days)


def _croniter_day_of_week(expression: str, text: str) -> str:
    # croniter numbers days 0-6 = SUN-SAT; AWS uses 1-7 = SUN-SAT.
    if text in ("?", "*"):
        return "*"
    if text == "L":
        return str(_DOW_NAMES["SAT"] - 1)  # the last day of the week
    if _is_compound(text) and any(_is_special_dow_token(token) for token in re.split(r"[,\-/]", text)):
        raise _error(expression, f"day-of-week {text!r}: 'L', 'nL' and 'n#k' must stand alone in the field")
    if "#" in text:
        day, _, nth = text.partition("#")
        weekday = _parse_single_value(expression, day, _DAY_OF_WEEK)
        if not _INT_RE.fullmatch(nth) or not 1 <= int(nth) <= 5:
            raise _error(expression, f"day-of-week {text!r}: the number after '#' must be 1-5 (e.g. '2#1')")
        return f"{weekday - 1}#{int(nth)}"
    if text.endswith("L"):
        weekday = _parse_single_value(expression, text[:-1], _DAY_OF_WEEK)
        return f"L{weekday - 1}"
    values = _parse_field(expression, text, _DAY_OF_WEEK)
    return _join(None if values is None else tuple(v - 1 for v in values))


def _is_compound(text: str) -> bool:
    return any(separator in text for separator in ",-/")


def _is_special_dow_token(token: str) -> bool:
    return token not in _DOW_NAMES and ("#" in token or token.endswith("L"))


def _parse_field(expression: str, text: str, spec: _FieldSpec) -> tuple[int, ...] | None:
    """Parse a standard field (``,`` ``-`` ``*`` ``/``) into sorted values; ``None`` means ``*``."""
    if text == "*":
        return None
    if text == "?":
        raise _error(expression, f"'?' is only allowed in day-of-month or day-of-week, not in {spec.name}")
    values: set[int] = set()
    for item in text.split(","):
        values.update(_parse_item(expression, item, spec))
    return tuple(sorted(values))


def _parse_item(expression: str, item: str, spec: _FieldSpec) -> list[int]:
    if not item:
        raise _error(expression, f"{spec.name} field has an empty list entry")
    base, slash, raw_step = item.partition("/")
    step = 1
    if slash:
        if not _INT_RE.fullmatch(raw_step) or not 1 <= int(raw_step) <= spec.high - spec.low + 1:
            raise _error(
                expression,
                f"{spec.name} step {raw_step!r} in {item!r} must be a whole number from 1 to "
                f"{spec.high - spec.low + 1}",
            )
        step = int(raw_step)
    if base == "*":
        return list(range(spec.low, spec.high + 1, step))
    first_text, dash, last_text = base.partition("-")
    first = _parse_single_value(expression, first_text, spec)
    if not dash:
        # "a/n" runs from a to the top of the range; a bare "a" is just a.
        return list(range(first, spec.high + 1, step)) if slash else [first]
    last = _parse_single_value(expression, last_text, spec)
    if first <= last:
        return list(range(first, last + 1, step))
    if not spec.wraps:
        raise _error(expression, f"{spec.name} range {base!r} runs backwards")
    wrapped = list(range(first, spec.high + 1)) + list(range(spec.low, last + 1))
    return wrapped[::step]


def _parse_single_value(expression: str, text: str, spec: _FieldSpec) -> int:
    if text in spec.names:
        return spec.names[text]
    if not _INT_RE.fullmatch(text):
        allowed = f"a number {spec.low}-{spec.high}"
        if spec.names:
            allowed += " or one of " + ", ".join(spec.names)
        raise _error(expression, f"{spec.name} value {text!r} is not valid; expected {allowed}")
    return _check_range(expression, int(text), spec)


def _check_range(expression: str, value: int, spec: _FieldSpec) -> int:
    if not spec.low <= value <= spec.high:
        raise _error(expression, f"{spec.name} value {value} is out of range ({spec.low}-{spec.high})")
    return value
