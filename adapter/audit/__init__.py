"""The audit trail: an AuditEvent per FHIR request, built and written off the request path."""
