"""The root of every error the adapter raises on purpose.

Each layer raises its own kind (a FHIR error, a spec that does not check, a pull that failed,
...) under `AdapterError`, so that the two boundaries answer them in one place each: the
gateway as an OperationOutcome (adapter/gateway/app.py), the command line as a one-line message
and a non-zero exit (adapter/cli/__init__.py). Anything else reaching a boundary is a defect:
a logged 500, or a traceback.
"""
from __future__ import annotations

__all__ = ["AdapterError"]


class AdapterError(Exception):
    """An error the adapter means: its message is for the person who reads it.

    `status` and `code` are what the gateway answers when one reaches it (an OperationOutcome
    issue code, http://hl7.org/fhir/R4/valueset-issue-type.html); 500 means the server, not the
    request, is at fault. FhirError (adapter/fhir/outcomes.py) carries its own."""

    status: int = 500
    code: str = "exception"
