"""The inputs of the terminology operations, typed: by query string (GET), where a Coding is
written `system|code`, or by Parameters body (POST), where it is a valueCoding, and resources
(valueSet, codeSystem, conceptMap) may be given whole. Each problem is a 400 naming the input."""
from __future__ import annotations

from typing import Any

from adapter.fhir.outcomes import FhirError, Issue, bad_request
from adapter.fhir.validation import validate
from adapter.gateway.core import FhirRequest
from adapter.gateway.operation_inputs import operation_values

__all__ = ["Inputs"]


def _coding_of(value: Any, name: str) -> dict[str, Any]:
    if isinstance(value, str):  # GET: system|code, or a bare code
        system, bar, code = value.rpartition("|")
        value = {"system": system, "code": code} if bar and system else {"code": code}
    if not isinstance(value, dict) or not isinstance(value.get("code"), str) or not value["code"] \
            or not all(isinstance(value.get(k, ""), str) for k in ("system", "version", "display")):
        raise bad_request(f"parameter {name!r} must be a Coding with a code (GET: system|code)", name)
    return value


class Inputs:
    """The inputs of one call, checked against what the operation takes: `known` are used;
    `ignored` are R4's and change nothing here (e.g. displayLanguage: one language is held);
    any other name is refused as not supported, rather than silently not honoured."""

    def __init__(self, req: FhirRequest, operation: str, known: set[str], ignored: frozenset[str] = frozenset()) -> None:
        self.values = operation_values(req)
        unknown = sorted({name for name, _ in self.values} - known - ignored)
        if unknown:
            raise FhirError(400, [Issue("not-supported", f"parameter {name!r} is not supported by this server's "
                                        f"${operation} (it takes {', '.join(sorted(known))})", name)
                                  for name in unknown])

    def one(self, name: str) -> Any | None:
        found = [v for k, v in self.values if k == name]
        if len(found) > 1:
            raise bad_request(f"parameter {name!r} is given {len(found)} times; it takes one value", name)
        return found[0] if found else None

    def text(self, name: str) -> str | None:
        value = self.one(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise bad_request(f"parameter {name!r} must be a non-empty string", name)
        return value

    def texts(self, name: str) -> list[str]:
        found = [v for k, v in self.values if k == name]
        if not all(isinstance(v, str) for v in found):
            raise bad_request(f"parameter {name!r} must be a string", name)
        return [item for v in found for item in v.split(",") if item]  # GET a,b as POST's repeats

    def flag(self, name: str) -> bool | None:
        value = self.one(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad_request(f"parameter {name!r} must be true or false", name)

    def count(self, name: str) -> int | None:
        value = self.one(name)
        if value is None:
            return None
        if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10 ** 9:
            return value
        raise bad_request(f"parameter {name!r} must be a whole number, 0 or more", name)

    def coding(self, name: str) -> dict[str, Any] | None:
        value = self.one(name)
        return None if value is None else _coding_of(value, name)

    def codings(self, name: str) -> list[dict[str, Any]] | None:
        """A CodeableConcept's codings (GET: one, as system|code)."""
        value = self.one(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [_coding_of(value, name)]
        if not isinstance(value, dict) or not isinstance(value.get("coding"), list) or not value["coding"]:
            raise bad_request(f"parameter {name!r} must be a CodeableConcept with at least one coding", name)
        return [_coding_of(c, name) for c in value["coding"]]

    def resource(self, name: str, rtype: str) -> dict[str, Any] | None:
        value = self.one(name)
        if value is None:
            return None
        if isinstance(value, str):
            raise bad_request(f"parameter {name!r} is a {rtype} resource: send it in a Parameters body (POST)", name)
        issues = validate(value, expected_type=rtype)
        if issues:
            raise FhirError(400, [Issue(i.code, f"parameter {name!r}: {i.diagnostics}", name) for i in issues])
        return value  # type: ignore[no-any-return]
