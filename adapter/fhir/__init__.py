"""The FHIR core: validation, OperationOutcome, search definitions. Knows no HTTP and no SQL."""
