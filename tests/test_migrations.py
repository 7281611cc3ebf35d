"""Schema migrations: they build exactly the tables the store queries, on both databases."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from adapter.store.engines import make_engine
from adapter.store.migrate import current_revision, head_revision, upgrade
from adapter.store.schema import metadata


def test_migrations_match_the_schema_module(fresh_db_url):
    engine = make_engine(fresh_db_url)
    assert upgrade(engine) == (None, head_revision())
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # PostgreSQL's generated JSONB column lives in the migration only, on purpose.
    diff = [d for d in diff if not (d[0] == "remove_column" and d[3].name == "content")]
    assert diff == []
    engine.dispose()


def test_upgrade_is_idempotent_and_reports_revisions(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    assert upgrade(engine) == (head_revision(), head_revision())
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_postgresql_keeps_a_jsonb_copy(store):
    store.update({"resourceType": "Patient", "id": "p1", "gender": "female"})
    if store.engine.dialect.name != "postgresql":
        assert "content" not in {c["name"] for c in inspect(store.engine).get_columns("resources")}
        return
    with store.engine.connect() as conn:
        gender = conn.execute(text("SELECT content->>'gender' FROM resources WHERE res_id = 'p1'")).scalar()
    assert gender == "female"
