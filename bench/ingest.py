"""Ingest benchmark: validated resources into each store, beside validation alone, in one run.

Usage: python -m bench.ingest [--resources 20000] [--db URL ...]

Without --db it measures a fresh SQLite file and, when it answers, PostgreSQL (bench/stores.py).
The same generated resources (children, their injections and observations) go into each store
twice through `fhir-adapter load`'s path: first already validated (new resources: version,
index, store in batches of 1,000 through COPY or executemany), then validated on the way (every resource
updated: version 2, index replaced). Printed: resources/s of both, beside validation alone,
the baseline. Target: PostgreSQL >= 5,000 resources/s written.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Iterator
from typing import Any

from adapter.fhir import jsonio
from adapter.fhir.validation import validate
from bench.stores import temporary_stores
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"


def generate(count: int) -> Iterator[dict[str, Any]]:
    """A child, four injections and observations, repeated: the shape of a site export."""
    n = 0
    child = 0
    while n < count:
        pid = f"bench-child-{child:06d}"
        ref = {"reference": f"Patient/{pid}"}
        batch: list[dict[str, Any]] = [{"resourceType": "Patient", "id": pid, "gender": "female",
                                        "birthDate": "2019-03-14",
                                        "identifier": [{"system": "urn:bench", "value": pid}]}]
        for k in range(4):
            batch.append({"resourceType": "Procedure", "id": f"{pid}-inj-{k}", "status": "completed",
                          "code": {"text": "UC-MSC injection"}, "subject": ref,
                          "performedDateTime": f"2026-01-{1 + 7 * k:02d}"})
        for k in range(15):
            batch.append({"resourceType": "Observation", "id": f"{pid}-obs-{k}", "status": "final",
                          "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                                    "code": "vital-signs"}]}],
                          "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
                          "subject": ref, "effectiveDateTime": f"2026-{1 + k % 12:02d}-15",
                          "valueQuantity": {"value": jsonio.parse(f"{15 + k / 10:.2f}"), "unit": "kg",
                                            "system": UCUM, "code": "kg"}})
        for item in batch[: count - n]:
            yield item
        n += len(batch)
        child += 1


def _validated(items: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for item in items:
        if validate(item):
            raise AssertionError(f"generated resource is invalid: {item['id']}")
        yield item


def measure_validation(items: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for _ in _validated(iter(items)):
        pass
    return len(items) / (time.perf_counter() - started)


def measure_store(url: str, items: list[dict[str, Any]], validating: bool) -> float:
    """Resources/s into a fresh store: already validated resources, or validating on the way."""
    from adapter.store import open_store
    store = open_store(url)
    try:
        started = time.perf_counter()
        written = store.load(_validated(iter(items)) if validating else iter(items))
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    assert written == len(items)
    return len(items) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=20000)
    parser.add_argument("--db", action="append",
                        help="database URL (repeatable; each is written to twice: use empty stores)")
    args = parser.parse_args()
    items = list(generate(args.resources))
    baseline = measure_validation(items)
    rows: list[tuple[str, float, float]] = []
    with temporary_stores(args.db) as stores:
        for label, url in stores:
            written = measure_store(url, items, validating=False)
            # the second run updates every resource: version 2, index replaced
            end_to_end = measure_store(url, items, validating=True)
            rows.append((label, written, end_to_end))
    print(f"{args.resources:,} resources (1 patient : 4 procedures : 15 observations), batches of 1,000, "
          f"{os.cpu_count()} cores")
    print(f"validation alone (the baseline): {baseline:,.0f} resources/s")
    print(f"{'store':<14}{'write validated /s':>20}{'validate+write /s':>20}{'vs validation':>15}")
    for label, written, end_to_end in rows:
        print(f"{label:<14}{written:>20,.0f}{end_to_end:>20,.0f}{end_to_end / baseline:>14.2f}x")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
