"""The reference table of external codes (mappings/reference/codes.yaml): the LOINC, SNOMED CT,
ICD-10, NCIt and HL7 codes and the UCUM units the adapter writes, from the project's clinical
reference. The catalogue is checked against it when it loads; tests/test_emitted_codes.py checks
every code the adapter emits against it and the code systems the adapter serves."""
from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass
from typing import Any

from adapter.fhir.units import UnitError, check_unit
from adapter.yamlspec import SpecError, load_checked, package_schema

__all__ = ["Reference", "load_reference", "REFERENCE"]

REFERENCE = pathlib.Path(__file__).resolve().parent.parent.parent / "mappings" / "reference" / "codes.yaml"


@dataclass(frozen=True)
class Reference:
    path: str
    data: dict[str, Any]

    def knows(self, system: str, code: str) -> bool:
        return code in self.data["systems"].get(system, {}).get("codes", {})

    @property
    def units(self) -> tuple[str, ...]:
        return tuple(self.data["units"])


@functools.cache
def load_reference(path: str | pathlib.Path = REFERENCE) -> Reference:
    """Read and check the table: its schema, and every unit UCUM (SpecError names the lines)."""
    data, lines = load_checked(path, package_schema("adapter.mapping", "reference.schema.json"))
    problems = []
    for i, unit in enumerate(data["units"]):
        try:
            check_unit(unit)
        except UnitError as exc:
            problems.append(lines.problem(("units", i), str(exc)))
    if problems:
        raise SpecError(problems)
    return Reference(str(path), data)
