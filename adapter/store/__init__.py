"""Versioned resource store: one repository interface, SQL implementations behind it."""
from __future__ import annotations

from adapter.store.repository import HistoryPage, Repository, SearchPage, StoredResource

__all__ = ["open_store", "Repository", "StoredResource", "SearchPage", "HistoryPage", "DEFAULT_DB"]

DEFAULT_DB = "sqlite:///var/adapter.db"  # the embedded store, relative to the working directory


def open_store(url: str, migrate: bool = True, statement_timeout: float | None = None,
               check_references: bool | None = None) -> Repository:
    """The store behind a database URL, migrated to the newest schema unless told otherwise.

    sqlite:///PATH is the embedded store; postgresql://USER@HOST:PORT/DBNAME the production one.
    `statement_timeout` (seconds) bounds its statements, as the gateway's must be (see
    `engines.bound_statements`); loads and ingests leave it unset. `check_references`: whether
    writes must hold only references that resolve (default: FHIR_ADAPTER_REFERENTIAL_INTEGRITY,
    on unless "off").
    """
    from adapter.store.engines import bound_statements
    from adapter.store.sql_store import SqlStore
    store = SqlStore(url, migrate=migrate, check_references=check_references)
    if statement_timeout is not None:
        bound_statements(store.engine, statement_timeout)
    return store
