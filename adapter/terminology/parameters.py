"""Building the Parameters resources the operations answer with
(https://hl7.org/fhir/R4/parameters.html)."""
from __future__ import annotations

from typing import Any

__all__ = ["parameters", "param", "part", "coding", "validation"]


def param(name: str, kind: str, value: Any) -> dict[str, Any]:
    """One parameter with a value[x]: param("result", "Boolean", True)."""
    return {"name": name, f"value{kind}": value}


def part(name: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": name, "part": parts}


def parameters(items: list[dict[str, Any] | None]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [p for p in items if p is not None]}


def coding(system: str | None, code: str, display: str | None = None,
           version: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"system": system} if system else {}
    if version:
        found["version"] = version
    found["code"] = code
    if display:
        found["display"] = display
    return found


def validation(result: bool, message: str | None, display: str | None) -> dict[str, Any]:
    """The answer of a $validate-code."""
    return parameters([param("result", "Boolean", result),
                       param("message", "String", message) if message else None,
                       param("display", "String", display) if display else None])
