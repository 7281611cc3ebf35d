"""Results derived from the store, kept while the store is unchanged.

Kept on the store object (Repository.derived) under the handle's view (site, scopes, exchange
policy: a site's client never gets what the centre's read) and the store's generation, which
changes with every committed write: a result is used only while no write has committed since it
was computed, so nothing is ever served stale. When a write has, every result of that kind is
dropped as the new one is kept; a few per kind are kept at most.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from adapter.store.repository import Repository

__all__ = ["remember", "KEPT"]

KEPT = 16  # results kept per kind and store
_LOCK = threading.Lock()
T = TypeVar("T")


def remember(repo: Repository, kind: str, key: Hashable, compute: Callable[[], T]) -> T:
    """compute(), or the result kept for (the handle's view, key) at the store's generation."""
    generation = repo.generation()
    if generation is None:
        return compute()
    kept: dict[Any, Any] = repo.derived().setdefault(kind, {})
    full = (repo.view(), key)
    with _LOCK:
        hit = kept.get(full)
        if hit is not None and hit[0] == generation:
            kept[full] = kept.pop(full)  # newest last
            return hit[1]  # type: ignore[no-any-return]
        # One computation per result at a time: readers who ask while it is being built wait for
        # it rather than build it too (ten people opening the study page after a write would
        # otherwise cost ten times the reads, all at once).
        builds: dict[Any, threading.Lock] = repo.derived().setdefault("being built", {})
        building = builds.setdefault((kind, full), threading.Lock())
    with building:
        with _LOCK:
            hit = kept.get(full)
            if hit is not None and hit[0] == generation:
                return hit[1]  # type: ignore[no-any-return]
        try:
            with _collector_paused():
                value = compute()
            return _keep(kept, full, generation, value)
        finally:  # kept by now (or failed): a reader arriving later finds it, or builds anew
            with _LOCK:
                builds.pop((kind, full), None)


def _keep(kept: dict[Any, Any], full: Any, generation: Hashable, value: T) -> T:
    with _LOCK:
        for stale in [k for k, (at, _) in kept.items() if at != generation or k == full]:
            del kept[stale]
        kept[full] = (generation, value)
        while len(kept) > KEPT:
            del kept[next(iter(kept))]
    return value


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Building a result makes hundreds of thousands of small acyclic objects (parsed resources),
    and their allocation sets off the cyclic collector, whose full passes walk every live object:
    0.8-1.2 s of a 2 s report at 10,000 children. Reference counting frees them all the same.
    Whoever paused it (not a nested call, nor another thread's) starts it again."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
