"""Site mappings: site exports (CSV, REDCap, NDJSON) read row by row into FHIR."""
