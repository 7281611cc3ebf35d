"""Search benchmark: p50/p99 of typical EHR searches as the store grows, SQLite beside PostgreSQL.

Usage: python -m bench.search [--sizes 10000,100000,1000000] [--queries 200] [--db URL ...]
                              [--heavy 10,1000,100000]

Each store (default: a fresh SQLite file and PostgreSQL when it answers, bench/stores.py) is
filled with generated children (1 Patient : 4 Procedures : 15 Observations, bench/ingest.py) up
to each size in turn; at each size every search runs `--queries` times through the gateway
(Flask test client: the whole FHIR request path without the network), on random children.
Printed: p50 and p99 per search, store and size, and the growth of p99 from the smallest size.

`--heavy`: then, at the largest size, one patient per number given with that many body weights
(`bench-heavy-<N>`); `Observation?subject=&code=` on each, its first page and the page its
`next` link leads to: a page must not cost more because a search has many matches.
"""
from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.ingest import LOINC, UCUM, generate
from bench.stores import temporary_stores

PER_CHILD = 20

SEARCHES: dict[str, Callable[[random.Random, int], str]] = {
    "patient+code": lambda rng, children: (
        f"Observation?subject=Patient/bench-child-{rng.randrange(children):06d}"
        "&code=http://loinc.org|29463-7"),
    "identifier": lambda rng, children: (
        f"Patient?identifier=urn:bench|bench-child-{rng.randrange(children):06d}"),
    "patient+date range": lambda rng, children: (
        f"Observation?patient=bench-child-{rng.randrange(children):06d}"
        "&date=ge2026-03-01&date=lt2026-07-01&_sort=-date"),
    "procedures of a patient": lambda rng, children: (
        f"Procedure?subject=Patient/bench-child-{rng.randrange(children):06d}&_sort=date"),
    "token, first page": lambda rng, children: "Procedure?status=completed&_count=20",
    "chained (subject:Patient.identifier)": lambda rng, children: (
        f"Observation?subject:Patient.identifier=urn:bench|bench-child-{rng.randrange(children):06d}"
        "&code=http://loinc.org|29463-7"),
    "_include (patient+code, include subject)": lambda rng, children: (
        f"Observation?subject=Patient/bench-child-{rng.randrange(children):06d}"
        "&code=http://loinc.org|29463-7&_include=Observation:subject"),
    "_revinclude (patient, its procedures)": lambda rng, children: (
        f"Patient?_id=bench-child-{rng.randrange(children):06d}&_revinclude=Procedure:subject"),
}


def heavy_patient(matches: int) -> Iterator[dict[str, Any]]:
    """A patient with `matches` body weights: one search of a patient with many matches."""
    pid = f"bench-heavy-{matches}"
    yield {"resourceType": "Patient", "id": pid, "identifier": [{"system": "urn:bench", "value": pid}]}
    for k in range(matches):
        yield {"resourceType": "Observation", "id": f"{pid}-obs-{k}", "status": "final",
               "code": {"coding": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}]},
               "subject": {"reference": f"Patient/{pid}"},
               "effectiveDateTime": f"20{10 + k % 16:02d}-{1 + k % 12:02d}-{1 + k % 28:02d}",
               "valueQuantity": {"value": 15 + k % 100, "unit": "kg", "system": UCUM, "code": "kg"}}


def _heavy(client: Any, store: Any, label: str, counts: list[int], queries: int,
           results: dict[tuple[str, str, int], tuple[float, float]]) -> None:
    for matches in counts:
        started = time.perf_counter()
        store.load(heavy_patient(matches), batch_size=1000)
        print(f"{label}: heavy patient of {matches:,} ({time.perf_counter() - started:.0f} s to load)", flush=True)
        first = (f"/fhir/Observation?subject=Patient/bench-heavy-{matches}&code=http://loinc.org|29463-7"
                 "&_count=20")
        response = client.get(first)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        links = {link["relation"]: link["url"] for link in response.get_json().get("link", [])}
        paths = {"heavy patient, first page": first}
        if "next" in links:
            paths["heavy patient, next page"] = "/fhir/" + links["next"].split("/fhir/", 1)[1]
        for name, path in paths.items():
            samples = []
            for _ in range(queries):
                t0 = time.perf_counter()
                response = client.get(path)
                samples.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.get_data(as_text=True)[:300]
            results[(label, name, matches)] = _percentiles(samples)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--db", action="append", help="database URL (repeatable; must be empty)")
    parser.add_argument("--heavy", default="", help="matches of the heavy patients, e.g. 10,1000,100000")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    heavy = sorted(int(s) for s in args.heavy.split(",") if s)
    from adapter.gateway.app import create_app
    results: dict[tuple[str, str, int], tuple[float, float]] = {}
    with temporary_stores(args.db) as stores:
        for label, url in stores:
            app = create_app({"DATABASE_URL": url})
            client = app.test_client()
            store = app.extensions["fhir_store"]
            source, loaded = generate(sizes[-1]), 0
            for size in sizes:
                started = time.perf_counter()
                loaded += store.load(itertools.islice(source, size - loaded), batch_size=1000)
                print(f"{label}: {loaded:,} resources ({time.perf_counter() - started:.0f} s to load)",
                      flush=True)
                children = loaded // PER_CHILD
                for name, make in SEARCHES.items():
                    rng = random.Random(7)
                    samples = []
                    for _ in range(args.queries):
                        path = make(rng, children)
                        t0 = time.perf_counter()
                        response = client.get(f"/fhir/{path}")
                        samples.append((time.perf_counter() - t0) * 1000)
                        assert response.status_code == 200, response.get_data(as_text=True)[:300]
                    results[(label, name, size)] = _percentiles(samples)
            if heavy:
                _heavy(client, store, label, heavy, args.queries, results)
            store.close()
    labels = list(dict.fromkeys(key[0] for key in results))
    print(f"\n{args.queries} queries per cell, ms (p50 / p99); growth = p99 at the largest size / "
          "p99 at the smallest")
    header = f"{'search':<26}{'store':<12}" + "".join(f"{size:>18,}" for size in sizes) + f"{'growth':>9}"
    print(header)
    for name in SEARCHES:
        for label in labels:
            cells = [results[(label, name, size)] for size in sizes]
            row = "".join(f"{p50:>9.2f} /{p99:>6.2f}" for p50, p99 in cells)
            print(f"{name:<26}{label:<12}{row}{cells[-1][1] / cells[0][1]:>8.1f}x")
    if heavy:
        print(f"\nheavy patient (at {sizes[-1]:,} resources), by matches: ms (p50 / p99)")
        print(f"{'search':<26}{'store':<12}" + "".join(f"{m:>18,}" for m in heavy) + f"{'growth':>9}")
        for name in ("heavy patient, first page", "heavy patient, next page"):
            for label in labels:
                found = [results.get((label, name, m)) for m in heavy]
                cells = [c for c in found if c is not None]
                if not cells:
                    continue
                row = "".join(f"{c[0]:>9.2f} /{c[1]:>6.2f}" if c else f"{'-':>18}" for c in found)
                print(f"{name:<26}{label:<12}{row}{cells[-1][1] / cells[0][1]:>8.1f}x")


if __name__ == "__main__":
    main()
