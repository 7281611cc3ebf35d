"""The HTTP fuzzer (bench/fuzz.py) in the suite, bounded, on both stores, against the gateway as
it is deployed (`fhir-adapter serve`: gunicorn, its own process, real HTTP): never a 5xx, every
error an OperationOutcome, no answer over 5 s, and a refused request writes nothing.
`python -m bench.fuzz --minutes N` runs the same draws for longer."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from bench.fuzz import Probe, check, probes, send
from conftest import table_counts

EXAMPLES = 900  # per store: about 12 s each on this machine (`python -m bench.fuzz` runs longer)


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(probe=probes())
def test_no_request_crashes_hangs_or_half_writes(store, served, http, probe: Probe):
    before = table_counts(store)
    response, seconds = send(http, served, probe)
    assert check(probe, response, seconds) == []
    if response.status_code >= 400:
        assert table_counts(store) == before, str(probe)
