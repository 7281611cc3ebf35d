"""How an outcome report reads the store: each search by one statement, parsed for reading.

A report reads a few searches over the whole study (its ResearchSubjects, the Encounters of the
outcome's visits, the Observations of its code), each by one statement over the search index
(Repository.scan at_once). Paging by keyset instead gathers the driving filter's matches again
for every page: 15x the work at 50,000 matches. Stored bytes passed every check when they were
written, so they are parsed with orjson (no duplicate-key or depth checks); a decimal arrives as
a float whose shortest text (`str`) is the number sent.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from adapter.fhir.search import parse_search
from adapter.store.repository import Repository

__all__ = ["matches", "PAGE"]

PAGE = 1000  # resources fetched at a time


def matches(repo: Repository, resource_type: str, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """Every match of a search, in id order, parsed."""
    request = parse_search(resource_type, params + [("_count", str(PAGE))])
    for page in repo.scan(request, at_once=True):
        for entry in page:
            if entry.data:
                yield orjson.loads(entry.data)
