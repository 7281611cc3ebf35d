"""The clinical catalogue (mappings/sites/catalogue.yaml): the codes, units and checks that
site mappings map into, with `local` codes resolved against the protocol's own CodeSystem."""
from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass
from typing import Any

from adapter.fhir.units import UnitError, check_unit
from adapter.protocol.build import build_resources
from adapter.protocol.spec import LOCAL, load_spec
from adapter.yamlspec import Lines, SpecError, load_checked, package_schema

__all__ = ["Catalogue", "load_catalogue"]


@dataclass(frozen=True)
class Catalogue:
    path: str
    data: dict[str, Any]
    local_system: str
    local_codes: dict[str, str]  # code -> display, from the protocol spec
    activities: dict[str, str]  # activity key -> ActivityDefinition canonical (url|version)
    lines: Lines
    arms: tuple[str, ...] = ()  # the protocol's arm keys (ResearchSubject.assignedArm)

    @property
    def base(self) -> str:
        return str(self.data["catalogue"]["base"])

    @property
    def study(self) -> str:
        return str(self.data["catalogue"]["study"])

    def observation(self, key: str) -> dict[str, Any]:
        return self.data["observations"][key]  # type: ignore[no-any-return]

    def codes(self, table: str) -> dict[str, Any]:
        return self.data["codes"][table]  # type: ignore[no-any-return]

    def coding(self, coding: dict[str, Any]) -> dict[str, Any]:
        """A catalogue coding as FHIR: `local` becomes the protocol CodeSystem, with its display."""
        if coding["system"] != LOCAL:
            return dict(coding)
        return {"system": self.local_system, "code": coding["code"],
                "display": coding.get("display") or self.local_codes[coding["code"]]}


def _codings(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    found: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    for key, obs in data["observations"].items():
        found.append((("observations", key, "code"), obs["code"]))
        found += [(("observations", key, "codes", k), c) for k, c in obs.get("codes", {}).items()]
        found += [(("observations", key, "components", k, "code"), c["code"])
                  for k, c in obs.get("components", {}).items()]
    for table in ("cp-type", "gmfcs", "adverse-event"):
        found += [(("codes", table, k), c) for k, c in data["codes"][table].items()]
    found += [(("codes", "route", k, "code"), r["code"]) for k, r in data["codes"]["route"].items()]
    found += [(("body_sites", k), {"system": LOCAL, "code": k}) for k in data["body_sites"]]
    return found


@functools.cache
def load_catalogue(path: str | pathlib.Path) -> Catalogue:
    """Read and check the catalogue: schema, local codes known to the protocol, activities the
    protocol defines, units that are UCUM. SpecError lists every problem with its line."""
    data, lines = load_checked(path, package_schema("adapter.mapping", "catalogue.schema.json"))
    protocol_path = pathlib.Path(path).parent / data["catalogue"]["protocol"]
    try:
        spec = load_spec(protocol_path)
    except SpecError as exc:
        raise SpecError([lines.problem(("catalogue", "protocol"), f"protocol spec {protocol_path}: "
                                       f"{exc.problems[0]}")]) from exc
    local = dict(spec.data["local_codes"])
    activities = {r["id"].removeprefix(f"{spec.protocol['id']}-"): f"{r['url']}|{r['version']}"
                  for r in build_resources(spec) if r["resourceType"] == "ActivityDefinition"}
    problems = [lines.problem(where, f"local code {c['code']!r} is not in the protocol's local_codes "
                              f"({protocol_path})") for where, c in _codings(data)
                if c["system"] == LOCAL and c["code"] not in local]
    used: list[tuple[tuple[Any, ...], str]] = [
        (("observations", k, "activity"), o["activity"]) for k, o in data["observations"].items()]
    used += [(("codes", "route", k, "activity"), r["activity"]) for k, r in data["codes"]["route"].items()]
    problems += [lines.problem(where, f"unknown protocol activity {a!r} (defined: {', '.join(sorted(activities))})")
                 for where, a in used if a not in activities]
    units: list[tuple[tuple[Any, ...], str]] = [
        (("observations", k, "unit"), o["unit"]) for k, o in data["observations"].items() if "unit" in o]
    units += [(("observations", k, "components", c, "unit"), comp["unit"])
              for k, o in data["observations"].items() for c, comp in o.get("components", {}).items()]
    for where, unit in units:
        try:
            check_unit(unit)
        except UnitError as exc:
            problems.append(lines.problem(where, str(exc)))
    if problems:
        raise SpecError(problems)
    return Catalogue(str(path), data, spec.code_system_url, local, activities, lines, tuple(spec.data["arms"]))

