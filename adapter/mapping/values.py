"""Source values to FHIR values: numbers with either decimal mark, dates in a site's formats.

Each parser returns the FHIR value or raises ValueError with a reason fit for a rejection.
"""
from __future__ import annotations

import decimal
import re
from datetime import datetime

__all__ = ["parse_decimal", "parse_date"]

_NUMBER = re.compile(r"^[+-]?(\d+([.]\d*)?|[.]\d+)([eE][+-]?\d+)?$")


def parse_decimal(text: str, decimal_mark: str = ".") -> decimal.Decimal:
    """A number as written, digits kept; `decimal_mark` is "." or ",".

    Examples:
        >>> parse_decimal("6,30", ","), parse_decimal(" 18.3 ")
        (Decimal('6.30'), Decimal('18.3'))
    """
    raw = text.strip()
    if decimal_mark == ",":
        if "." in raw:
            raise ValueError("not a number: a '.' where this source writes decimal commas")
        raw = raw.replace(",", ".")
    if not _NUMBER.match(raw):
        raise ValueError("not a number")
    value = decimal.Decimal(raw)
    if value and not -308 <= value.adjusted() <= 308:  # beyond what other systems read as a double
        raise ValueError("not a number in range")
    return value


def parse_date(text: str, formats: list[str]) -> str:
    """A FHIR date (YYYY-MM-DD) from the first of the site's strptime formats that fits.

    Examples:
        >>> parse_date("14/03/2019", ["%d/%m/%Y"])
        '2019-03-14'
    """
    raw = text.strip()
    for fmt in formats:
        try:
            return datetime.strptime(raw, fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"not a valid date (expected {' or '.join(formats)})")
