"""The baseline: bare Flask answering with the very bytes the gateway served.

BENCH_BYTES_DIR holds read.json and search.json, captured from the gateway in the same run.
"""
from __future__ import annotations

import os
import pathlib

from flask import Flask, Response

_dir = pathlib.Path(os.environ.get("BENCH_BYTES_DIR", "."))
READ = (_dir / "read.json").read_bytes() if (_dir / "read.json").exists() else b"{}"
SEARCH = (_dir / "search.json").read_bytes() if (_dir / "search.json").exists() else b"{}"
app = Flask(__name__)


@app.get("/fhir/Observation/<rid>")
def read(rid: str) -> Response:
    return Response(READ, 200, {"ETag": 'W/"1"'}, content_type="application/fhir+json; charset=utf-8")


@app.get("/fhir/Observation")
def search() -> Response:
    return Response(SEARCH, 200, content_type="application/fhir+json; charset=utf-8")
