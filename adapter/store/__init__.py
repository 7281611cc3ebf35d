"""Versioned resource store: one repository interface, SQL implementations behind it."""
from __future__ import annotations

from adapter.store.repository import HistoryPage, Repository, SearchPage, StoredResource

__all__ = ["open_store", "Repository", "StoredResource", "SearchPage", "HistoryPage"]


def open_store(url: str) -> Repository:
    """The store behind a database URL: sqlite:///path (embedded) for now."""
    if url.startswith("sqlite"):
        from adapter.store.sql_store import SqlStore
        return SqlStore(url)
    from adapter.fhir.outcomes import not_supported
    raise not_supported(f"database URL {url.split(':')[0]}: only sqlite:/// is supported so far "
                        "(PostgreSQL arrives with its own store)")
