"""HTTP gateway: Flask app factory and the FHIR REST interactions."""
