"""The Node fhir-kit-client (npm) against the live gateway: metadata, create, read, update,
search with paging to the end, _include, transaction, errors. `make install` runs npm ci in
tests/node when npm is there; .ci/run requires node (FHIR_ADAPTER_REQUIRE_NODE=1)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"


def _node() -> str:
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed"
    elif not (NODE_DIR / "node_modules" / "fhir-kit-client").exists():
        reason = "fhir-kit-client is not installed: npm ci --prefix tests/node"
    if reason:
        if os.environ.get("FHIR_ADAPTER_REQUIRE_NODE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return str(node)


def test_fhir_kit_client(live):
    check_what_fhir_kit_client_saw(live)


def check_what_fhir_kit_client_saw(base: str, token: str | None = None) -> None:
    node = _node()
    done = subprocess.run([node, str(NODE_DIR / "client.mjs"), base, *([token] if token else [])],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["fhirVersion"] == "4.0.1"
    assert seen["readGender"] == "female" and seen["updatedVersion"] == "2"
    assert seen["total"] == 23 and seen["paged"] == 23 and seen["pagedDistinct"] == 23
    assert seen["includeModes"] == ["include", "match"]
    assert seen["transactionType"] == "transaction-response"
    assert seen["transactionStatuses"] == ["201 Created", "201 Created"]
    assert seen["transactionSubject"] == seen["transactionPatient"]
    assert seen["missingStatus"] == 404 and seen["missingType"] == "OperationOutcome"
