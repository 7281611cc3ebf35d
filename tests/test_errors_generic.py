"""A failure inside the server tells the client only that it happened: the SQL, its parameters
and the exception go to the log."""
from __future__ import annotations

import logging
import time

from sqlalchemy import text

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}


def test_a_failed_export_is_a_generic_500_and_logged(client, store, caplog):
    store.load([{"resourceType": "Patient", "id": "p1"}])
    with store.engine.begin() as conn:  # the database fails under the export: its table is gone
        conn.execute(text("ALTER TABLE resources RENAME TO resources_gone"))
    caplog.set_level(logging.ERROR, logger="adapter")
    kick = client.get("/fhir/$export?_type=Patient", headers=ASYNC)
    assert kick.status_code == 202, kick.data
    status_url = kick.headers["Content-Location"].split("/fhir", 1)[1]
    for _ in range(200):
        status = client.get(f"/fhir{status_url}")
        if status.status_code != 202:
            break
        time.sleep(0.05)
    assert status.status_code == 500, status.data
    issue = status.get_json(force=True)["issue"][0]
    assert issue["code"] == "exception" and "logged" in issue["diagnostics"]
    assert len(status.data) < 400
    for leak in ("SELECT", "resources_gone", "SQL", "sqlalche", "Error"):
        assert leak not in status.data.decode(), status.data
    assert any("resources" in r.getMessage() + str(r.exc_info) for r in caplog.records)
