"""The treatment protocol as data: its spec, the FHIR definitions built from it, `$apply` and
`$adherence`."""
