"""k-anonymity as a property of a policy: the quasi-identifiers it declares (what an attacker
could know of a child from elsewhere: the site, sex, age at enrolment, GMFCS level, CP subtype,
birth year), the minimum size k of a class of children sharing them, and generalisation
hierarchies (age bands, GMFCS I-II/III-V, subtype groups) applied in the policy's order until
k holds; a child whose class is still smaller has its quasi-identifiers withheld (suppressed).

A release (which level of each hierarchy, which children suppressed) is worked out on the site's
own data, as the policy would let it out (`release`), printed by `exchange check`, applied by
every export (deidentify.py), and checked again by the centre on what arrives (`classes_of`).
The quasi-identifiers are read from the shared resources themselves (`forms`), the same way at
the site and at the centre, so that what the site proved is what the centre can verify.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from adapter.fhir.sites import sites_of

__all__ = ["KAnonymity", "Release", "release", "forms", "classes_of", "withhold", "generalise", "GROUPS",
           "AGE_AT_ENROLMENT", "QI_NAMES", "WITHHELD"]

AGE_AT_ENROLMENT = "http://ucmsc-cp.example.org/fhir/StructureDefinition/age-at-enrolment"
# Codes of generalised values (a GMFCS group, a subtype group): this system, the policy's labels.
GROUPS = "http://ucmsc-cp.example.org/fhir/CodeSystem/exchange-generalised"
QI_NAMES = ("site", "sex", "age", "birth-year", "gmfcs", "cp-subtype")
WITHHELD = "*"
_ICD10 = "http://hl7.org/fhir/sid/icd-10"
_UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class KAnonymity:
    k: int
    max_suppressed: float  # the share of children whose quasi-identifiers may be withheld
    quasi_identifiers: tuple[str, ...]
    # per QI, its generalisation levels in order: age, a list of bands [low, high) in years;
    # gmfcs and cp-subtype, groups {label: [values]}; past the last level, the value is withheld
    hierarchies: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    steps: tuple[str, ...] = ()  # which QI to raise one level, in turn, until k holds

    def top(self, qi: str) -> int:
        """The level at which `qi` is withheld."""
        return len(self.hierarchies.get(qi, ())) + 1


@dataclass(frozen=True)
class Release:
    levels: dict[str, int]
    suppressed: frozenset[str]  # Patient ids (the site's) whose quasi-identifiers are withheld
    classes: Counter[tuple[str, ...]]  # class (the shared forms of its QIs) -> children in it
    children: int
    loss: dict[str, float]  # per QI: 0 kept exact .. 1 withheld, averaged over the children
    k: int
    max_suppressed: float

    @property
    def ok(self) -> bool:
        """k holds for every class, within the suppression the policy allows."""
        small = any(n < self.k for n in self.classes.values())
        return not small and len(self.suppressed) <= self.max_suppressed * max(self.children, 1)

    def distribution(self) -> Counter[int]:
        """Class size -> children in classes of that size (what `exchange check` prints)."""
        sizes: Counter[int] = Counter()
        for size in self.classes.values():
            sizes[size] += size
        return sizes


Child = tuple[str, dict[str, Any], list[dict[str, Any]]]  # (Patient id, Patient, its CP Conditions)
Share = Callable[[dict[str, Any], dict[str, int], bool], dict[str, Any] | None]


def release(config: KAnonymity, children: Iterable[Child], share: Share) -> Release:
    """The release of these children: generalisation steps in the policy's order until at most
    max_suppressed of them are in classes below k; those are suppressed. `share(resource,
    levels, withheld)` is the policy applied at those levels."""
    kids = list(children)
    levels = {qi: 0 for qi in config.quasi_identifiers}
    steps = [None, *config.steps]
    for number, step in enumerate(steps):
        if step is not None:
            levels[step] = min(levels[step] + 1, config.top(step))
        vectors = {pid: _vector(config, patient, conditions, levels, share) for pid, patient, conditions in kids}
        counts = Counter(vectors.values())
        small = frozenset(pid for pid, vector in vectors.items() if counts[vector] < config.k)
        if len(small) <= config.max_suppressed * max(len(kids), 1) or number == len(steps) - 1:
            break
    kept = Counter(v for pid, v in vectors.items() if pid not in small)
    loss = {qi: (sum(levels[qi] / config.top(qi) for pid in vectors if pid not in small)
                 + len(small) * (0 if qi == "site" else 1)) / max(len(kids), 1) for qi in config.quasi_identifiers}
    return Release(dict(levels), small, kept, len(kids), loss, config.k, config.max_suppressed)


def _vector(config: KAnonymity, patient: dict[str, Any], conditions: list[dict[str, Any]], levels: dict[str, int],
            share: Share) -> tuple[str, ...]:
    shared_patient = share(patient, levels, False) or {}
    shared_conditions = [c for c in (share(c, levels, False) for c in conditions) if c]
    found = forms(shared_patient, shared_conditions)
    return tuple(found.get(qi, WITHHELD) for qi in config.quasi_identifiers)


def forms(patient: dict[str, Any], conditions: list[dict[str, Any]]) -> dict[str, str]:
    """The quasi-identifiers of a child as they leave: from its shared Patient and Conditions."""
    out: dict[str, str] = {}
    sites = sites_of(patient)
    if len(sites) == 1:
        out["site"] = next(iter(sites))
    if isinstance(patient.get("gender"), str):
        out["sex"] = patient["gender"]
    if isinstance(patient.get("birthDate"), str):
        out["birth-year"] = patient["birthDate"]
    for ext in patient.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == AGE_AT_ENROLMENT:
            age, band = ext.get("valueAge") or {}, ext.get("valueRange") or {}
            out["age"] = f"{age.get('value')} {age.get('code')}" if age else \
                f"{(band.get('low') or {}).get('value')}-{(band.get('high') or {}).get('value')} a"
    for condition in conditions:
        for coding in (condition.get("code") or {}).get("coding") or []:
            if coding.get("system") in (_ICD10, GROUPS):
                out.setdefault("cp-subtype", str(coding.get("code")))
        for stage in condition.get("stage") or []:
            for coding in (stage.get("summary") or {}).get("coding") or []:
                if str(coding.get("code", "")).startswith("gmfcs-"):
                    out.setdefault("gmfcs", str(coding["code"]))
    return out


def classes_of(config: KAnonymity, children: Iterable[tuple[dict[str, Any], list[dict[str, Any]]]]
               ) -> Counter[tuple[str, ...]]:
    """The classes of children as they arrived (the centre's check); a child whose every
    quasi-identifier but its site is withheld is a suppressed one, in no class."""
    classes: Counter[tuple[str, ...]] = Counter()
    for patient, conditions in children:
        found = forms(patient, conditions)
        vector = tuple(found.get(qi, WITHHELD) for qi in config.quasi_identifiers)
        if any(v != WITHHELD for qi, v in zip(config.quasi_identifiers, vector, strict=True) if qi != "site"):
            classes[vector] += 1
    return classes


# -- applying a release to a shared resource -----------------------------------------------------

def withhold(out: dict[str, Any], config: KAnonymity) -> None:
    """A suppressed child: its quasi-identifiers go (the site stays: the data are the site's)."""
    generalise(out, config, {qi: config.top(qi) for qi in config.quasi_identifiers})


def generalise(out: dict[str, Any], config: KAnonymity, levels: dict[str, int]) -> None:
    """A shared Patient or Condition at the release's levels."""
    qis = set(config.quasi_identifiers)
    if out.get("resourceType") == "Patient":
        if "sex" in qis and levels.get("sex", 0) >= config.top("sex"):
            out.pop("gender", None)
        if "birth-year" in qis and levels.get("birth-year", 0) >= config.top("birth-year"):
            out.pop("birthDate", None)
        if "age" in qis:
            _age(out, config, levels.get("age", 0))
    elif out.get("resourceType") == "Condition":
        if "cp-subtype" in qis:
            _group_code(out, config, levels.get("cp-subtype", 0))
        if "gmfcs" in qis:
            _group_gmfcs(out, config, levels.get("gmfcs", 0))


def _age(out: dict[str, Any], config: KAnonymity, level: int) -> None:
    extensions = out.get("extension") or []
    for ext in extensions:
        if ext.get("url") != AGE_AT_ENROLMENT or "valueAge" not in ext or level == 0:
            continue
        if level >= config.top("age"):
            ext.clear()
            continue
        years = ext["valueAge"]["value"] / 12 if ext["valueAge"].get("code") == "mo" else ext["valueAge"]["value"]
        band = next(((lo, hi) for lo, hi in config.hierarchies["age"][level - 1] if lo <= years < hi), None)
        del ext["valueAge"]
        if band is None:
            ext.clear()
        else:
            ext["valueRange"] = {"low": _years(band[0]), "high": _years(band[1])}
    out["extension"] = [e for e in extensions if e]
    if not out["extension"]:
        del out["extension"]


def _years(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "a", "system": _UCUM, "code": "a"}


def _group_code(out: dict[str, Any], config: KAnonymity, level: int) -> None:
    code = out.get("code") or {}
    codings = [c for c in code.get("coding") or [] if c.get("system") == _ICD10]
    if level == 0 or not codings:
        return
    if level >= config.top("cp-subtype"):
        out.pop("code", None)
        return
    group = _group_of(config.hierarchies["cp-subtype"][level - 1], codings[0].get("code"))
    out["code"] = {"coding": [{"system": GROUPS, "code": f"cp-{group}"}]} if group else {}
    if not out["code"]:
        del out["code"]


def _group_gmfcs(out: dict[str, Any], config: KAnonymity, level: int) -> None:
    if level == 0 or not out.get("stage"):
        return
    if level >= config.top("gmfcs"):
        del out["stage"]
        return
    for stage in out["stage"]:
        codings = (stage.get("summary") or {}).get("coding") or []
        levels = [c.get("code", "").removeprefix("gmfcs-") for c in codings if str(c.get("code", "")).startswith("gmfcs-")]
        group = _group_of(config.hierarchies["gmfcs"][level - 1], int(levels[0])) if levels and levels[0].isdigit() \
            else None
        stage["summary"] = {"coding": [{"system": GROUPS, "code": f"gmfcs-{group}"}]} if group else {}
    out["stage"] = [s for s in out["stage"] if s.get("summary")]
    if not out["stage"]:
        del out["stage"]


def _group_of(groups: dict[str, list[Any]], value: Any) -> str | None:
    return next((label for label, members in groups.items() if value in members), None)
