"""Loading the study's definitions into a store: validated first, written through the store's
one write path (an unchanged spec loaded again writes nothing)."""
from __future__ import annotations

import pathlib

from adapter.errors import AdapterError
from adapter.fhir.validation import validate
from adapter.protocol.spec import Spec, load_spec
from adapter.store import open_store
from adapter.store.repository import Repository
from adapter.study.build import build_resources

__all__ = ["store_definitions", "load_protocol", "InvalidDefinition"]


class InvalidDefinition(AdapterError):
    """A definition the spec builds is not valid R4: the spec (or the builder) is to be fixed."""


def store_definitions(store: Repository, spec: Spec) -> tuple[int, int]:
    """(resources built, resources written) for the spec's definitions in `store`."""
    resources = build_resources(spec)
    for resource in resources:
        issues = validate(resource)
        if issues:
            raise InvalidDefinition(f"{resource['resourceType']}/{resource['id']}: {issues[0].diagnostics}")
    return len(resources), store.load(resources)


def load_protocol(db: str, spec_path: str | pathlib.Path) -> tuple[int, int]:
    """store_definitions() of the spec file into the store at `db`."""
    store = open_store(db)
    try:
        return store_definitions(store, load_spec(spec_path))
    finally:
        store.close()
