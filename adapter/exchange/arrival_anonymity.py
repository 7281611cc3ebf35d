"""The centre's own check of k on what arrives: the site's children as the centre will hold them
(what it holds already, with what this pull brings in their place), classed by the policy's
quasi-identifiers as they arrived. A pull that would leave a class below k is refused whole:
a site whose software or policy lets too much through is caught at the door, not after."""
from __future__ import annotations

import collections
import pathlib
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from adapter.exchange.anonymity import classes_of
from adapter.exchange.policy import Policy
from adapter.fhir.search import parse_search
from adapter.fhir.sites import SITE_SYSTEM
from adapter.store.repository import Repository

__all__ = ["k_problem"]


def k_problem(store: Repository, site: str, policy: Policy, files: Iterable[tuple[str, pathlib.Path]]) -> str | None:
    """Why the pull's data would break the policy's k (None: they would not, or it declares none).
    `files`: (type, path) of the verified files not loaded yet."""
    config = policy.k_anonymity
    if config is None:
        return None
    patients = {r["id"]: r for r in _held(store, "Patient", site)}
    conditions = {r["id"]: r for r in _held(store, "Condition", site)}
    for rtype, path in files:
        if rtype in ("Patient", "Condition"):
            (patients if rtype == "Patient" else conditions).update((r["id"], r) for r in _lines(path))
    by_child: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for condition in conditions.values():
        by_child[((condition.get("subject") or {}).get("reference") or "").removeprefix("Patient/")].append(condition)
    classes = classes_of(config, ((p, by_child.get(pid, [])) for pid, p in patients.items()))
    small = sorted(n for n in classes.values() if n < config.k)
    if not small:
        return None
    return (f"the site's data would hold {len(small)} class(es) of children smaller than k = {config.k} "
            f"(sizes {small}) by the policy's quasi-identifiers ({', '.join(config.quasi_identifiers)}): "
            "the site's release is not what its policy proves")


def _held(store: Repository, rtype: str, site: str) -> Iterator[dict[str, Any]]:
    request = parse_search(rtype, [("_security", f"{SITE_SYSTEM}|{site}"), ("_count", "1000"), ("_total", "none")])
    for page in store.scan(request):
        for entry in page:
            yield orjson.loads(entry.data or b"{}")


def _lines(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield orjson.loads(line)
