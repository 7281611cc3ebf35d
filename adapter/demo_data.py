"""Where the synthetic demo data are, and the key their pseudonyms are made with: shared by the
single-store demo (`fhir-adapter demo`), the multi-site demo (`fhir-adapter exchange demo`), the
tests and the benchmarks."""
from __future__ import annotations

import pathlib

__all__ = ["ROOT", "DEMO_DIR", "SITES_DIR", "DEMO_KEY", "PROTOCOL_SPEC"]

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "fixtures" / "demo"
SITES_DIR = ROOT / "fixtures" / "sites"
PROTOCOL_SPEC = ROOT / "mappings" / "protocol" / "ucmsc-cp-v1.yaml"
# The demo sites' pseudonym key: the demo data are synthetic, so this key protects nothing.
DEMO_KEY = b"demo-pseudonym-key: synthetic data only, not a secret"
