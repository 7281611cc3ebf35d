"""Source values to FHIR values: numbers with either decimal mark (or both, where the number
says which), dates in a site's formats or as a workbook holds them.

Each parser returns the FHIR value or raises ValueError with a reason fit for a rejection.
"""
from __future__ import annotations

import decimal
import re
from datetime import date, datetime, timedelta
from typing import Any

__all__ = ["parse_decimal", "parse_date"]

_NUMBER = re.compile(r"^[+-]?(\d+([.]\d*)?|[.]\d+)([eE][+-]?\d+)?$")


def parse_decimal(text: str, decimal_mark: str = ".") -> decimal.Decimal:
    """A number as written, digits kept; `decimal_mark` is ".", "," or "either": a site whose
    typed cells have decimal commas and whose numeric cells print points. Either is taken where
    the text says which: one mark, once, not after 1-3 digits and before exactly three (12,5,
    36.5 and 0,125);
    both marks, a mark twice, or "1,250" (a thousands separator, or 1.25?) are refused.

    Examples:
        >>> parse_decimal("6,30", ","), parse_decimal(" 18.3 "), parse_decimal("36,5", "either")
        (Decimal('6.30'), Decimal('18.3'), Decimal('36.5'))
    """
    raw = text.strip()
    if decimal_mark == "either":
        marks = [c for c in raw if c in ".,"]
        if len(set(marks)) > 1:
            raise ValueError("not a number: both decimal marks ('.' and ','), or a thousands separator")
        if len(marks) > 1:
            raise ValueError(f"not a number: {marks[0]!r} twice (thousands separators?)")
        if marks and re.fullmatch(r"[+-]?[1-9]\d{0,2}[.,]\d{3}", raw):  # 0,125 says which; 1,250 does not
            raise ValueError(f"ambiguous: {marks[0]!r} before three digits may be a thousands separator or a "
                             "decimal mark (write it without separators)")
        raw = raw.replace(",", ".")
    elif decimal_mark == ",":
        if "." in raw:
            raise ValueError("not a number: a '.' where this source writes decimal commas")
        raw = raw.replace(",", ".")
    if not _NUMBER.match(raw):
        raise ValueError("not a number")
    value = decimal.Decimal(raw)
    if value and not -308 <= value.adjusted() <= 308:  # beyond what other systems read as a double
        raise ValueError("not a number in range")
    return value


# Excel's day 1 is 1900-01-01 and it counts a 29 February 1900 that never was: from day 61
# (1900-03-01) on, day N is 1899-12-30 + N days. Day 2,958,465 is 9999-12-31.
_EXCEL_EPOCH = date(1899, 12, 30)
_LAST_SERIAL = 2_958_465


def parse_date(text: Any, formats: list[str], serials: bool = False) -> str:
    """A FHIR date (YYYY-MM-DD) from the first of the site's strptime formats that fits; a
    workbook's date cell as it is, and (`serials`: a workbook's) a number as Excel's serial day.

    Examples:
        >>> parse_date("14/03/2019", ["%d/%m/%Y"]), parse_date(45720, [], serials=True)
        ('2019-03-14', '2025-03-04')
    """
    if isinstance(text, datetime):
        return text.date().isoformat()
    if isinstance(text, date):
        return text.isoformat()
    if serials and isinstance(text, (int, decimal.Decimal, float)) and not isinstance(text, bool):
        if not 61 <= text <= _LAST_SERIAL:
            raise ValueError(f"not a valid date: {text} is no Excel date serial (61-{_LAST_SERIAL:,})")
        return (_EXCEL_EPOCH + timedelta(days=int(text))).isoformat()
    raw = str(text).strip()
    for fmt in formats:
        try:
            return datetime.strptime(raw, fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"not a valid date (expected {' or '.join(formats)})")
