"""The R4 core value sets of the served types' required bindings, and their code systems, as
read-only resources (adapter/fhir/data/required-valuesets.json, written from the R4
definitions). Only the codes those value sets hold are known of each code system, so the
CodeSystems made here say `content: fragment`.
"""
from __future__ import annotations

import functools
import pathlib
from typing import Any

import orjson

from adapter.fhir.ids import computable_name

__all__ = ["core_value_set", "core_code_system"]

_DATA = pathlib.Path(__file__).resolve().parent.parent / "fhir" / "data" / "required-valuesets.json"


@functools.cache
def _value_sets() -> dict[str, dict[str, Any]]:
    """url -> a ValueSet whose compose lists its concepts, by system."""
    found: dict[str, dict[str, Any]] = {}
    for url, entry in orjson.loads(_DATA.read_bytes()).items():
        by_system: dict[str, list[dict[str, Any]]] = {}
        for c in entry["contains"]:
            by_system.setdefault(c["system"], []).append({"code": c["code"], "display": c["display"]}
                                                         if c.get("display") else {"code": c["code"]})
        found[url] = {"resourceType": "ValueSet", "id": entry["id"], "url": url, "version": entry["version"],
                      "name": entry["name"], "title": entry.get("title", entry["name"]),
                      "status": entry["status"], "immutable": True,
                      "compose": {"include": [{"system": s, "concept": cs} for s, cs in by_system.items()]}}
    return found


@functools.cache
def _code_systems() -> dict[str, dict[str, Any]]:
    """system -> a CodeSystem of the codes the core value sets hold of it."""
    concepts: dict[str, dict[str, dict[str, Any]]] = {}
    versions: dict[str, str] = {}
    for entry in orjson.loads(_DATA.read_bytes()).values():
        for c in entry["contains"]:
            concept = {k: c[k] for k in ("code", "display", "definition") if c.get(k)}
            concepts.setdefault(c["system"], {}).setdefault(c["code"], concept)
            versions.setdefault(c["system"], c.get("version") or entry["version"])
    found = {}
    for system, by_code in concepts.items():
        rid = system.rstrip("/").rsplit("/", 1)[-1]
        found[system] = {"resourceType": "CodeSystem", "id": rid, "url": system, "version": versions[system],
                         "name": computable_name(rid),
                         "status": "active", "content": "fragment", "caseSensitive": True,
                         "concept": list(by_code.values())}
    return found


def core_value_set(url: str, version: str | None = None) -> dict[str, Any] | None:
    vs = _value_sets().get(url)
    return vs if vs is not None and version in (None, vs["version"]) else None


def core_code_system(url: str, version: str | None = None) -> dict[str, Any] | None:
    cs = _code_systems().get(url)
    return cs if cs is not None and version in (None, cs["version"]) else None
