"""Units as people write them: UCUM codes (what the Observations hold: `Cel`, `{score}`) to
what a clinician reads (`°C`, `/100`). A table, not a UCUM parser: these are the study's units,
and a code not in it is shown as it is."""
from __future__ import annotations

__all__ = ["display_unit", "outcome_unit"]

UCUM = {"Cel": "°C", "[degF]": "°F", "mm[Hg]": "mmHg", "10*9/L": "×10⁹/L", "10^9/L": "×10⁹/L",
        "10*6/kg": "×10⁶/kg", "10*6": "×10⁶", "mo": "months", "/min": "/min", "{score}": "points"}
# An annotation such as {score} says nothing of the scale: per observation code, what its
# score is out of (Barthel Index, GMFM-66: 0 to 100; MRC muscle strength: 0 to 5).
SCALE = {"96761-2": "/100", "gmfm-66": "/100", "273599009": "/5", "language-dq": "DQ"}
# The study page's outcomes are changes, read from no one Observation: their units by code.
OUTCOME_UNITS = {**SCALE, "gmfm-88-total": "%", "2465-3": "g/L"}


def outcome_unit(code: str) -> str:
    """The unit of an outcome's change, by its code ("" when not known).

    Examples:
        >>> outcome_unit("96761-2"), outcome_unit("gmfm-88-a"), outcome_unit("unknown")
        ('/100', '%', '')
    """
    return OUTCOME_UNITS.get(code, "%" if code.startswith("gmfm-88-") else "")


def display_unit(unit: str, code: str = "") -> str:
    """The unit to show for `unit` on a value of observation code `code`.

    Examples:
        >>> display_unit("Cel"), display_unit("{score}", "96761-2"), display_unit("kg")
        ('°C', '/100', 'kg')
    """
    if unit.startswith("{") and code in SCALE:
        return SCALE[code]
    return UCUM.get(unit, unit)
