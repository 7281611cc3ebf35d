"""FHIR dates as ranges (https://hl7.org/fhir/R4/search.html#date).

A partial date stands for the whole period it names: `2020-05` is every instant of May 2020.
Ranges are inclusive pairs of UTC timestamps written as fixed-width text
(`YYYY-MM-DDTHH:MM:SS.ffffff`), so that text order is time order in every SQL store.
"""
from __future__ import annotations

import calendar
import functools
import re
from datetime import datetime, timedelta, timezone

__all__ = ["date_range", "MIN", "MAX", "format_instant", "now_instant"]

MIN = "0001-01-01T00:00:00.000000"
MAX = "9999-12-31T23:59:59.999999"

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})"
    r"(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_FMT = "%Y-%m-%dT%H:%M:%S.%f"


def _utc(moment: datetime, tz: str | None) -> datetime:
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        try:
            moment -= sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        except OverflowError:  # 0001-01-01T00:00+14:00 is before year 1 in UTC: the range's edge
            return datetime.min if sign > 0 else datetime.max
    return moment


@functools.lru_cache(maxsize=4096)  # pure: a visit's date, a batch's lastUpdated come again and again
def date_range(text: str) -> tuple[str, str]:
    """Inclusive UTC range of a FHIR date, dateTime or instant; ValueError if malformed.

    Examples:
        >>> date_range("2020-02")
        ('2020-02-01T00:00:00.000000', '2020-02-29T23:59:59.999999')
        >>> date_range("2020-03-01T10:00+02:00")
        ('2020-03-01T08:00:00.000000', '2020-03-01T08:00:59.999999')
        >>> date_range("2016-12-31T23:59:60Z")
        ('2016-12-31T23:59:59.000000', '2016-12-31T23:59:59.999999')
        >>> date_range("0001-01-01T00:00+14:00")[0]
        '0001-01-01T00:00:00.000000'

    """
    match = _DATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a FHIR date, dateTime or instant")
    g = match.groupdict()
    year, month, day = int(g["y"]), int(g["m"] or 1), int(g["d"] or 1)
    if g["m"] is None:
        low, high = datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
    elif g["d"] is None:
        last = calendar.monthrange(year, month)[1] if 1 <= month <= 12 else 0
        low = datetime(year, month, 1)
        high = datetime(year, month, last, 23, 59, 59, 999999)
    elif g["H"] is None:
        low = datetime(year, month, day)
        high = low + timedelta(days=1, microseconds=-1)
    else:
        # A leap second (`23:59:60`, valid FHIR) falls in the minute's last second: Python's
        # datetime has no second 60.
        hour, minute, second = int(g["H"]), int(g["M"]), min(int(g["S"] or 0), 59)
        if g["S"] is None:
            low = datetime(year, month, day, hour, minute)
            high = low + timedelta(minutes=1, microseconds=-1)
        elif g["f"] is None:
            low = datetime(year, month, day, hour, minute, second)
            high = low + timedelta(seconds=1, microseconds=-1)
        else:
            digits = g["f"][:6]
            low = datetime(year, month, day, hour, minute, second, int(digits.ljust(6, "0")))
            high = low + timedelta(microseconds=10 ** (6 - len(digits)) - 1)
        low, high = _utc(low, g["tz"]), _utc(high, g["tz"])
    return low.strftime(_FMT).rjust(26, "0"), high.strftime(_FMT).rjust(26, "0")


def format_instant(moment: datetime) -> str:
    """An R4 instant with microseconds, in UTC.

    Examples:
        >>> format_instant(datetime(2026, 1, 2, 3, 4, 5, 60, tzinfo=timezone.utc))
        '2026-01-02T03:04:05.000060Z'
    """
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_instant() -> str:
    return format_instant(datetime.now(timezone.utc))
