"""FHIR R4 adapter for the UC-MSC cerebral palsy treatment protocol."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ucmsc-fhir-adapter")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
