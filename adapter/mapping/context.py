"""What every builder works with: the row's scope and the site's key (Context), ids that are
the same on every ingest (safe_id: site, record key, visit, item), keyed hashes, and the FHIR
pieces builders share (a coded concept, a UCUM quantity, an Observation's common elements).

Every hash of source values is keyed with the site's pseudonym key: an unkeyed one could be
recomputed over candidate values by anyone holding the public mapping.
"""
from __future__ import annotations

import decimal
import functools
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import Any

from adapter.mapping.fields import Problem, Scope, Value, date_of, decimal_of, evaluate, fields_of, text_of
from adapter.mapping.spec import MappingSpec, Rule

__all__ = ["Context", "safe_id", "keyed_hash", "patient_id", "coded", "ucum_quantity", "observation_shell",
           "UCUM", "STUDY_EXTENSION", "PQ_TRANSLATION"]

UCUM = "http://unitsofmeasure.org"
STUDY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
PQ_TRANSLATION = "http://hl7.org/fhir/StructureDefinition/iso21090-PQ-translation"
_ID_SAFE = re.compile(r"^[A-Za-z0-9.\-]+$")


def safe_id(key: bytes, *parts: str) -> str:
    """A FHIR id from parts; a keyed hash of them when a part has other characters or it
    passes 64.

    Examples:
        >>> safe_id(b"k", "site-a", "A0001", "month-3", "barthel")
        'site-a-A0001-month-3-barthel'
        >>> safe_id(b"k", "site-c", "患者1") != safe_id(b"other key", "site-c", "患者1")
        True
    """
    joined = "-".join(parts)
    if len(joined) <= 64 and _ID_SAFE.match(joined):
        return joined
    return f"{parts[0][:30]}-{keyed_hash(key, joined.encode())[:32]}"


def keyed_hash(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 (hex) with the site's pseudonym key.

    Examples:
        >>> keyed_hash(b"k", b"x") == hmac.new(b"k", b"x", hashlib.sha256).hexdigest()
        True
    """
    mac = _keyed(key).copy()  # the key's pads hashed once, not for every row and id
    mac.update(data)
    return mac.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def patient_id(spec: MappingSpec, key: bytes, record: str) -> str:
    return safe_id(key, spec.site, record)


@dataclass
class Context:
    spec: MappingSpec
    key: bytes  # the site's pseudonym key
    record: str
    scope: Scope
    # what a builder that makes several independent resources could not make, without giving
    # up the rest: (problem, "Type/id" not made); and values it made nothing of (warnings)
    failures: list[tuple[Problem, list[str]]] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{patient_id(self.spec, self.key, self.record)}"}

    @property
    def study(self) -> dict[str, str]:
        return {"reference": f"ResearchStudy/{self.spec.catalogue.study}"}

    def value(self, rule: Rule, name: str) -> Value:
        expr = rule.fields.get(name)
        return Value(None, name) if expr is None else evaluate(expr, self.scope)

    def required(self, rule: Rule, name: str, what: str) -> Value:
        value = self.value(rule, name)
        if value.empty:
            why = f" ({value.note})" if value.note else self._unwhen(rule, name)
            raise Problem(value.label, "", f"missing {what}{why}")
        return value

    def _unwhen(self, rule: Rule, name: str) -> str:
        """The hint for a rule without `when:` that met a row with nothing for it (an adverse
        event rule on every row of a flat export): say how to keep it to its own rows."""
        if "when" in rule.data or "for_each" in rule.data or not self.empty(rule):
            return ""
        fields = fields_of(rule.fields[name])
        return (f" (the rule has no `when:`, so it runs on every row, and this row has nothing for it: add "
                f"`when: {{present: [{fields[0] if fields else '...'}]}}` or `when: {{visit: ...}}`)")

    def empty(self, rule: Rule) -> bool:
        """Every field the rule reads is empty here (constants and units aside)."""
        for name, expr in rule.fields.items():
            if name == "unit" or (isinstance(expr, dict) and "const" in expr):
                continue
            try:
                if not self.value(rule, name).empty:
                    return False
            except Problem:
                return False  # it holds something
        return True

    def date(self, value: Value) -> str:
        return date_of(value, self.spec.source["date_formats"], self.spec.source["format"] in ("xlsx", "xls"))

    @property
    def decimal_mark(self) -> str:
        return str(self.spec.source.get("decimal_mark", "."))

    def decimal(self, value: Value) -> decimal.Decimal:
        return decimal_of(value, self.decimal_mark)

    def code(self, value: Value, table: str) -> Any:
        codes = self.spec.catalogue.codes(table)
        key = text_of(value.raw).strip()
        if key not in codes:
            raise Problem(value.label, value.raw, f"unknown {table} {key!r} (expected {', '.join(codes)})")
        return codes[key]

    def visit_date(self) -> str:
        if self.scope.visit_date is None:
            table = self.scope.table or self.spec.tables[0]
            raise Problem(self.scope.get(table.visit_date).label if table.visit_date else table.visit_field, "",
                          "missing visit date" if table.visit_date else
                          f"no visit date: table {table.name or 'the source'} has none (`visit_date:`)")
        return self.scope.visit_date

    def id(self, *parts: str) -> str:
        return safe_id(self.key, self.spec.site, self.record, *parts)


def coded(ctx: Context, coding: dict[str, Any]) -> dict[str, Any]:
    full = ctx.spec.catalogue.coding(coding)
    return {"coding": [full], "text": full.get("display", full["code"])}


def ucum_quantity(number: decimal.Decimal, unit: str) -> dict[str, Any]:
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def observation_shell(ctx: Context, rid: str, concept: dict[str, Any], code: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid,
            "extension": [{"url": STUDY_EXTENSION, "valueReference": ctx.study}], "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": concept["category"]}]}],
            "code": coded(ctx, code), "subject": ctx.subject, "effectiveDateTime": ctx.visit_date()}
