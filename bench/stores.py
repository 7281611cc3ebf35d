"""The stores a benchmark compares: a fresh SQLite file and, when it answers, PostgreSQL.

PostgreSQL is FHIR_ADAPTER_BENCH_PG (default postgresql://root@127.0.0.1:5432/test); each run
gets a throwaway schema, dropped at the end. `--db URL` options replace both.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
import uuid
from collections.abc import Iterator

import psycopg

PG_DEFAULT = os.environ.get("FHIR_ADAPTER_BENCH_PG", "postgresql://root@127.0.0.1:5432/test")


def _conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg", "postgresql")


@contextlib.contextmanager
def temporary_stores(db_urls: list[str] | None = None) -> Iterator[list[tuple[str, str]]]:
    """(label, database URL) of each store to measure, all empty."""
    if db_urls:
        yield [("SQLite" if u.startswith("sqlite") else "PostgreSQL" if u.startswith("postgres")
                else u, u) for u in db_urls]
        return
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("SQLite", f"sqlite:///{pathlib.Path(tmp) / 'bench.db'}")]
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        try:
            with psycopg.connect(_conninfo(PG_DEFAULT), autocommit=True, connect_timeout=3) as conn:
                conn.execute(f'CREATE SCHEMA "{schema}"')
        except psycopg.Error as exc:
            print(f"PostgreSQL left out: {str(exc).strip().splitlines()[0]}")
            schema = ""
        if schema:
            sep = "&" if "?" in PG_DEFAULT else "?"
            stores.append(("PostgreSQL", f"{PG_DEFAULT}{sep}options=-csearch_path%3D{schema}"))
        try:
            yield stores
        finally:
            if schema:
                with psycopg.connect(_conninfo(PG_DEFAULT), autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
