"""java.time types on Spinnaker's allow-list: ChronoUnit (`T(ChronoUnit).DAYS.between(a, b)`), DayOfWeek
(`T(DayOfWeek).SATURDAY`) and TemporalAdjusters (`date.with(T(TemporalAdjusters).next(...))`).

Days of the week are their names as text, the same value `LocalDate.getDayOfWeek()` gives here, so
`T(LocalDate).now().getDayOfWeek() == T(java.time.DayOfWeek).SATURDAY` holds on a Saturday.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from graylane.expressions.methods import (
    LOCAL_DATE_METHODS,
    LOCAL_DATE_TIME_METHODS,
    MethodEnv,
    Table,
    fail,
    need_int,
    need_str,
)
from graylane.expressions.semantics import Instant, JavaObject, type_name

DAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")

_MICROS = {"MICROS": 1, "MILLIS": 1_000, "SECONDS": 1_000_000, "MINUTES": 60_000_000, "HOURS": 3_600_000_000,
           "HALF_DAYS": 43_200_000_000, "DAYS": 86_400_000_000}
_MONTHS = {"MONTHS": 1, "YEARS": 12, "DECADES": 120, "CENTURIES": 1200, "MILLENNIA": 12000}
_TITLES = {"MICROS": "Micros", "MILLIS": "Millis", "SECONDS": "Seconds", "MINUTES": "Minutes", "HOURS": "Hours",
           "HALF_DAYS": "HalfDays", "DAYS": "Days", "WEEKS": "Weeks", "MONTHS": "Months", "YEARS": "Years",
           "DECADES": "Decades", "CENTURIES": "Centuries", "MILLENNIA": "Millennia"}


def _toward_zero(a: int, b: int) -> int:
    q = abs(a) // b
    return q if a >= 0 else -q


def _months_between(start: dt.date, end: dt.date) -> int:
    """LocalDate.until(end, MONTHS): whole months, counting a month only once its day is reached."""
    months = (end.year * 12 + end.month) - (start.year * 12 + start.month)
    if months > 0 and end.day < start.day:
        months -= 1
    elif months < 0 and end.day > start.day:
        months += 1
    return months


class ChronoUnit(JavaObject):
    """A java.time.temporal.ChronoUnit constant; `between(start, end)` as Java computes it."""

    __slots__ = ("name",)
    JAVA_TYPE = "ChronoUnit"
    METHODS: ClassVar[Table] = {}

    def __init__(self, name: str) -> None:
        self.name = name

    def java_text(self) -> str:
        return _TITLES[self.name]

    def plain(self) -> Any:
        return self.name  # Jackson writes an enum by its name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChronoUnit) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def between(self, env: MethodEnv, start: Any, end: Any) -> int:
        if type(start) is not type(end) or not isinstance(start, dt.date | Instant):
            raise fail(env, f"ChronoUnit.{self.name}.between needs two LocalDates, two LocalDateTimes or two "
                            f"Instants, not {type_name(start)} and {type_name(end)}")
        if isinstance(start, Instant):
            assert isinstance(end, Instant)
            if self.name not in _MICROS:
                raise self._unsupported(env)
            return self._time_between(end.moment - start.moment)
        if isinstance(start, dt.datetime):
            assert isinstance(end, dt.datetime)
            if self.name in _MICROS:
                return self._time_between(end - start)
            end_date = end.date()  # a date unit counts a day only once its time of day is reached
            if end_date > start.date() and end.time() < start.time():
                end_date -= dt.timedelta(days=1)
            elif end_date < start.date() and end.time() > start.time():
                end_date += dt.timedelta(days=1)
            return self._date_between(env, start.date(), end_date)
        assert isinstance(end, dt.date)
        return self._date_between(env, start, end)

    def _time_between(self, delta: dt.timedelta) -> int:
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return _toward_zero(micros, _MICROS[self.name])

    def _date_between(self, env: MethodEnv, start: dt.date, end: dt.date) -> int:
        if self.name == "DAYS":
            return (end - start).days
        if self.name == "WEEKS":
            return _toward_zero((end - start).days, 7)
        if self.name in _MONTHS:
            return _toward_zero(_months_between(start, end), _MONTHS[self.name])
        raise self._unsupported(env)

    def _unsupported(self, env: MethodEnv) -> Exception:
        return fail(env, f"ChronoUnit.{self.name} cannot measure between these values "
                         f"(UnsupportedTemporalTypeException: Unsupported unit: {_TITLES[self.name]})")


ChronoUnit.METHODS = {
    "between": (2, 2, lambda env, unit, a, b: unit.between(env, a, b)),
    "toString": (0, 0, lambda env, unit: unit.java_text()),
    "name": (0, 0, lambda env, unit: unit.name),
    "equals": (1, 1, lambda env, unit, other: unit == other),
}

CHRONO_UNIT_FIELDS: dict[str, Any] = {name: ChronoUnit(name) for name in _TITLES}


def _unit_named(env: MethodEnv, name: Any) -> ChronoUnit:
    text = need_str(env, name, "the unit name")
    if text not in CHRONO_UNIT_FIELDS:
        raise fail(env, f"no ChronoUnit named {text!r} (IllegalArgumentException); names: {', '.join(_TITLES)}")
    return CHRONO_UNIT_FIELDS[text]


CHRONO_UNIT_STATICS: Table = {"valueOf": (1, 1, _unit_named)}


def _day_of(env: MethodEnv, number: Any) -> str:
    n = need_int(env, number, "the day number")
    if not 1 <= n <= 7:
        raise fail(env, f"invalid value for DayOfWeek: {n} (DateTimeException)")
    return DAYS[n - 1]


def _day_named(env: MethodEnv, name: Any) -> str:
    text = need_str(env, name, "the day name")
    if text not in DAYS:
        raise fail(env, f"no DayOfWeek named {text!r} (IllegalArgumentException); names: {', '.join(DAYS)}")
    return text


DAY_OF_WEEK_STATICS: Table = {
    "of": (1, 1, _day_of),
    "valueOf": (1, 1, _day_named),
}
DAY_OF_WEEK_FIELDS: dict[str, Any] = {name: name for name in DAYS}


# -- TemporalAdjusters and LocalDate.with(adjuster) ------------------------------------------------

def _last_day(year: int, month: int) -> int:
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return (following - dt.timedelta(days=1)).day


def _in_month(day: dt.date, weekday: int, ordinal: int) -> dt.date:
    """dayOfWeekInMonth(ordinal, weekday): ordinal 1 is the first, -1 the last, 0 the last of the month before."""
    if ordinal >= 0:
        first = day.replace(day=1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (ordinal - 1))
    last = day.replace(day=_last_day(day.year, day.month))
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7 - 7 * (ordinal + 1))


class Adjuster(JavaObject):
    """A TemporalAdjuster from T(java.time.temporal.TemporalAdjusters); applied by `date.with(adjuster)`."""

    __slots__ = ("describe", "shift")
    JAVA_TYPE = "TemporalAdjuster"

    def __init__(self, describe: str, shift: Any) -> None:
        self.describe, self.shift = describe, shift

    def java_text(self) -> str:
        return f"TemporalAdjusters.{self.describe}"


def _weekday(env: MethodEnv, value: Any) -> int:
    name = need_str(env, value, "the day (T(java.time.DayOfWeek).MONDAY)")
    if name not in DAYS:
        raise fail(env, f"no DayOfWeek named {name!r}; names: {', '.join(DAYS)}")
    return DAYS.index(name)


def _relative(env: MethodEnv, value: Any, kind: str) -> Adjuster:
    wd = _weekday(env, value)

    def shift(d: dt.date) -> dt.date:
        ahead = (wd - d.weekday()) % 7
        behind = (d.weekday() - wd) % 7
        if kind == "next":
            return d + dt.timedelta(days=ahead or 7)
        if kind == "nextOrSame":
            return d + dt.timedelta(days=ahead)
        if kind == "previous":
            return d - dt.timedelta(days=behind or 7)
        return d - dt.timedelta(days=behind)
    return Adjuster(f"{kind}({DAYS[wd]})", shift)


def _fixed(name: str, shift: Any) -> tuple[int, int, Any]:
    return (0, 0, lambda env: Adjuster(f"{name}()", shift))


TEMPORAL_ADJUSTERS_STATICS: Table = {
    "next": (1, 1, lambda env, d: _relative(env, d, "next")),
    "nextOrSame": (1, 1, lambda env, d: _relative(env, d, "nextOrSame")),
    "previous": (1, 1, lambda env, d: _relative(env, d, "previous")),
    "previousOrSame": (1, 1, lambda env, d: _relative(env, d, "previousOrSame")),
    "firstDayOfMonth": _fixed("firstDayOfMonth", lambda d: d.replace(day=1)),
    "lastDayOfMonth": _fixed("lastDayOfMonth", lambda d: d.replace(day=_last_day(d.year, d.month))),
    "firstDayOfNextMonth": _fixed("firstDayOfNextMonth",
                                  lambda d: d.replace(day=_last_day(d.year, d.month)) + dt.timedelta(days=1)),
    "firstDayOfYear": _fixed("firstDayOfYear", lambda d: d.replace(month=1, day=1)),
    "lastDayOfYear": _fixed("lastDayOfYear", lambda d: d.replace(month=12, day=31)),
    "firstDayOfNextYear": _fixed("firstDayOfNextYear", lambda d: d.replace(year=d.year + 1, month=1, day=1)),
    "firstInMonth": (1, 1, lambda env, d: Adjuster("firstInMonth()", _ordinal(env, 1, d))),
    "lastInMonth": (1, 1, lambda env, d: Adjuster("lastInMonth()", _ordinal(env, -1, d))),
    "dayOfWeekInMonth": (2, 2, lambda env, n, d: Adjuster("dayOfWeekInMonth()",
                                                          _ordinal(env, need_int(env, n, "the ordinal"), d))),
}


def _ordinal(env: MethodEnv, ordinal: int, day: Any) -> Any:
    wd = _weekday(env, day)
    return lambda d: _in_month(d, wd, ordinal)


def with_adjuster(env: MethodEnv, value: Any, adjuster: Any) -> Any:
    """LocalDate.with(adjuster) / LocalDateTime.with(adjuster): the time of day is kept."""
    if not isinstance(adjuster, Adjuster):
        raise fail(env, "with() takes a TemporalAdjusters value, e.g. "
                        f"T(java.time.temporal.TemporalAdjusters).next(T(java.time.DayOfWeek).MONDAY), "
                        f"not {type_name(adjuster)}")
    try:
        if isinstance(value, dt.datetime):
            return dt.datetime.combine(adjuster.shift(value.date()), value.time())
        return adjuster.shift(value)
    except (OverflowError, ValueError) as exc:
        raise fail(env, f"date out of range: {exc}") from None


LOCAL_DATE_METHODS["with"] = (1, 1, with_adjuster)  # the date tables live in methods; `with` needs adjusters
LOCAL_DATE_TIME_METHODS["with"] = (1, 1, with_adjuster)
