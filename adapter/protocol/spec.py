"""Protocol specifications: YAML files checked by protocol.schema.json and by cross-references.

Every problem is reported as `file:line: key: message`, so an engineer can go straight to it.
"""
from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any


from adapter.yamlspec import SpecError, load_checked, package_schema

# The protocol specs this adapter ships (mappings/protocol/).
SPECS = pathlib.Path(__file__).resolve().parent.parent.parent / "mappings" / "protocol"

__all__ = ["SpecError", "Spec", "load_spec", "LOCAL", "SPECS"]

LOCAL = "local"  # the system name that means "the project's own CodeSystem"


@dataclass(frozen=True)
class Spec:
    path: str
    data: dict[str, Any]

    @property
    def protocol(self) -> dict[str, Any]:
        return self.data["protocol"]  # type: ignore[no-any-return]

    @property
    def base(self) -> str:
        return str(self.protocol["canonical_base"])

    @property
    def code_system_url(self) -> str:
        return f"{self.base}/CodeSystem/{self.protocol['id']}-local"

    @property
    def sites(self) -> tuple[str, ...]:
        """The trial's site codes (an Organization and a Location each); none when not given."""
        return tuple(self.data.get("sites", {}))

    def system(self, system: str) -> str:
        return self.code_system_url if system == LOCAL else system

    def canonical(self, rtype: str, rid: str) -> str:
        """`url|version` of a definition the spec makes (adapter/study/build.py names each so)."""
        return f"{self.base}/{rtype}/{rid}|{self.protocol['version']}"

    def activity_canonicals(self) -> dict[str, str]:
        """Each activity's key -> the canonical of its ActivityDefinition."""
        pid = self.protocol["id"]
        return {key: self.canonical("ActivityDefinition", f"{pid}-{key}") for key in self.data["activities"]}


def load_spec(path: str | pathlib.Path) -> Spec:
    """Read and check a spec; SpecError lists every problem with its line and key."""
    data, lines = load_checked(path, package_schema("adapter.protocol", "protocol.schema.json"))
    problems = [lines.problem(where, message) for where, message in _cross_references(data)]
    if problems:
        raise SpecError(problems)
    return Spec(str(path), data)


def _cross_references(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    found: list[tuple[tuple[Any, ...], str]] = []
    activities = data["activities"]
    local = data["local_codes"]

    def known(where: tuple[Any, ...], names: list[str]) -> None:
        for i, name in enumerate(names):
            if name not in activities:
                found.append((where + (i,), f"unknown activity {name!r} (defined: "
                              f"{', '.join(sorted(activities))})"))

    for name, activity in activities.items():
        codings = [(key, activity[key]) for key in ("code", "product") if key in activity] + [
            (("codes", i), c) for i, c in enumerate(activity.get("codes", []))]
        for key, coding in codings:
            if coding["system"] == LOCAL and coding["code"] not in local:
                path = ("activities", name) + (key if isinstance(key, tuple) else (key,)) + ("code",)
                found.append((path, f"local code {coding['code']!r} is not in local_codes"))
    sponsor = data.get("sponsor", {}).get("id")
    if sponsor in data.get("sites", {}):  # both are Organizations: one id would be one resource
        found.append((("sponsor", "id"), f"the sponsor's id {sponsor!r} is also a site code"))
    known(("baseline", "activities"), data["baseline"]["activities"])
    low, high = data["baseline"]["window"]
    if not low <= data["baseline"]["day"] <= high:
        found.append((("baseline", "day"), f"day {data['baseline']['day']} is outside its window "
                      f"[{low}, {high}]"))
    for arm_id, arm in data["arms"].items():
        days = [v["day"] for v in arm["visits"]]
        if days != sorted(set(days)) or days[0] != 0:
            found.append((("arms", arm_id, "visits"), "visit days must start at 0 and increase"))
        for i, visit in enumerate(arm["visits"]):
            known(("arms", arm_id, "visits", i, "activities"), visit["activities"])
            if not any(activities.get(a, {}).get("kind") == "procedure" for a in visit["activities"]):
                found.append((("arms", arm_id, "visits", i), "an injection visit needs a procedure activity"))
        known(("arms", arm_id, "every_injection_visit"), arm["every_injection_visit"])
    months = [f["months"] for f in data["follow_up"]]
    if months != sorted(set(months)):
        found.append((("follow_up",), "follow-up months must increase"))
    for i, visit in enumerate(data["follow_up"]):
        known(("follow_up", i, "activities"), visit["activities"])
    for key, outcome in data.get("outcomes", {}).items():
        found += _outcome_problems(key, outcome, local)
    return found


# What each outcome summary may not have (the schema requires what each needs).
_NOT_FOR = {"change": ("categories",), "shift": ("ratio",),
            "adverse-events": ("code", "baseline", "follow_up", "per", "ratio", "categories")}


def _outcome_problems(key: str, outcome: dict[str, Any], local: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    summary = outcome.get("summary", "change")
    found: list[tuple[tuple[Any, ...], str]] = [
        (("outcomes", key, name), f"not for an outcome of summary {summary!r}")
        for name in _NOT_FOR[summary] if name in outcome]
    codings = ([(("code",), outcome["code"])] if "code" in outcome else []) + [
        (("ratio", i, part), pair[part]) for i, pair in enumerate(outcome.get("ratio", []))
        for part in ("numerator", "denominator")] + [
        (("categories", i), c) for i, c in enumerate(outcome.get("categories", []))]
    for where, coding in codings:
        if coding["system"] == LOCAL and str(coding["code"]) not in local:
            found.append((("outcomes", key) + where + ("code",), f"local code {coding['code']!r} is not in local_codes"))
    labels = [str(c["label"]) for c in outcome.get("categories", [])]
    if len(set(labels)) != len(labels):
        found.append((("outcomes", key, "categories"), "category labels must be distinct"))
    if "baseline" in outcome and outcome["baseline"] in outcome.get("follow_up", []):
        found.append((("outcomes", key, "follow_up"), f"the baseline visit {outcome['baseline']!r} is not a follow-up"))
    return found
