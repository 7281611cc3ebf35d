"""The protocol the pages show: the study's spec, read once (its own module, so the legend and
the figures can name activities without importing the study page's module)."""
from __future__ import annotations

import functools

from adapter.protocol.spec import SPECS, Spec, load_spec

__all__ = ["spec"]


@functools.cache
def spec() -> Spec:
    return load_spec(SPECS / "ucmsc-cp-v1.yaml")
