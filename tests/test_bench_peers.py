"""The peers benchmark (bench/peers): fumifier's JSONata mapping makes the very Observations the
adapter makes from the same lab rows, so that the two rates compare the same work."""
from __future__ import annotations

import decimal
import json
import pathlib
import shutil

import pytest

from bench import peers


def test_lab_rows_map_through_the_adapter(tmp_path: pathlib.Path) -> None:
    export = tmp_path / "labs.csv"
    assert peers.write_rows(8, export) == 8
    timings, lines = peers.adapter_translate(export)
    assert timings["rows"] == 8 and timings["rejected"] == 0
    kinds = [json.loads(line)["resourceType"] for line in lines]
    assert kinds.count("Observation") == 8 * len(peers.COLUMNS)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed: the peer side cannot run")
def test_fumifier_mapping_makes_the_adapters_observations(tmp_path: pathlib.Path) -> None:
    if not peers.node_ready():
        pytest.skip("npm is not installed: fumifier cannot be installed")
    export = tmp_path / "labs.csv"
    peers.write_rows(5, export)
    _, lines = peers.adapter_translate(export)
    ours = {r["id"]: r for r in (json.loads(line, parse_float=decimal.Decimal) for line in lines)
            if r["resourceType"] == "Observation"}
    counts = peers.fumifier_map(export, tmp_path / "fumifier.ndjson")
    theirs = {r["id"]: r for r in (json.loads(line, parse_float=decimal.Decimal)
                                   for line in (tmp_path / "fumifier.ndjson").read_text().splitlines())}
    assert counts["rows"] == 5 and counts["resources"] == len(theirs) == 5 * len(peers.COLUMNS)
    assert theirs == ours  # ids, codes, values (as numbers), units, references, labels: all of it
