"""gunicorn settings that `fhir-adapter serve` loads with `--config python:adapter.gateway.gunicorn_conf`.

- The Server header: gunicorn writes `Server: gunicorn` from `gunicorn.http.wsgi.SERVER`, which
  each response reads when it is made; a neutral value there tells a scanner nothing about the
  software (the WSGI app cannot remove the header: gunicorn adds it after the app's own).
- worker_exit: a worker that stops (SIGTERM, restart) writes its queued audit events first.
"""
from __future__ import annotations

from typing import Any

import gunicorn.http.wsgi

SERVER_HEADER = "fhir"
gunicorn.http.wsgi.SERVER = SERVER_HEADER  # type: ignore[attr-defined]


def worker_exit(server: Any, worker: Any) -> None:
    from adapter.audit.writer import flush_all
    flush_all()
